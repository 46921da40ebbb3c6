/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The main() of a fuzz target built without libFuzzer (gcc, the ordinary test
 * builds): feed every corpus file to LLVMFuzzerTestOneInput(), then a seeded,
 * deterministic series of inputs made from them, so the corpora replay as
 * ordinary tests (under ASan too) and a target's checks run on every build.
 *
 *   fuzz-X [--seeded N] [--seed S] [--dict FILE] [--max-len L] PATH...
 *
 * PATH is a file or a directory of files (read in name order). A seeded input
 * is a corpus entry after a few mutations (bit flips, interesting values,
 * inserted, deleted or copied runs, dictionary tokens, a splice with another
 * entry), or, with a dictionary, a run of its tokens alone. A failing check
 * aborts; the input that did it is written to ./fuzz-crash-<target>.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"
#include "parse.h"
#include "util.h"

struct blob {
	uint8_t *data;
	size_t size;
};

struct blobs {
	struct blob *v;
	size_t n;
};

static void blobs_add(struct blobs *b, const uint8_t *data, size_t size)
{
	b->v = realloc(b->v, (b->n + 1) * sizeof(*b->v));
	fuzz_check(b->v, "out of memory");
	b->v[b->n].data = malloc(size ? size : 1);
	fuzz_check(b->v[b->n].data, "out of memory");
	if (size)
		memcpy(b->v[b->n].data, data, size);
	b->v[b->n++].size = size;
}

static void blobs_free(struct blobs *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->v[i].data);
	free(b->v);
}

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

static int read_file(const char *path, struct blobs *out)
{
	FILE *f = fopen(path, "re");
	static uint8_t buf[1 << 16];
	size_t n;

	if (!f)
		return -errno;
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	blobs_add(out, buf, n);
	return 0;
}

static int filter(const struct dirent *de)
{
	return de->d_name[0] != '.';
}

static int read_path(const char *path, struct blobs *out)
{
	struct dirent **names;
	struct stat st;
	int n, r = 0;

	if (stat(path, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return read_file(path, out);
	n = scandir(path, &names, filter, alphasort);
	if (n < 0)
		return -errno;
	for (int i = 0; i < n; i++) {
		char p[4096];

		snprintf(p, sizeof(p), "%s/%s", path, names[i]->d_name);
		if (r >= 0)
			r = read_file(p, out);
		free(names[i]);
	}
	free(names);
	return r;
}

/* One token of a libFuzzer/AFL dictionary line: name="value", \\ \" \xNN escapes. */
static void dict_line(const char *line, struct blobs *out)
{
	const char *q = strchr(line, '"');
	uint8_t tok[256];
	size_t n = 0;

	if (!q || line[strspn(line, " \t")] == '#')
		return;
	for (q++; *q && *q != '"' && n < sizeof(tok); q++) {
		if (*q == '\\' && q[1] == 'x' && q[2] && q[3]) {
			char hex[3] = {q[2], q[3], 0};

			tok[n++] = (uint8_t)strtoul(hex, NULL, 16);
			q += 3;
		} else if (*q == '\\' && q[1]) {
			tok[n++] = (uint8_t) * ++q;
		} else {
			tok[n++] = (uint8_t)*q;
		}
	}
	if (n)
		blobs_add(out, tok, n);
}

static int read_dict(const char *path, struct blobs *out)
{
	FILE *f = fopen(path, "re");
	char line[1024];

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		dict_line(line, out);
	fclose(f);
	return 0;
}

/* xorshift64*: the same series on every machine for one seed. */
static uint64_t next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * UINT64_C(2685821657736338717);
}

static size_t below(uint64_t *s, size_t n)
{
	return n ? (size_t)(next(s) % n) : 0;
}

/* Put @len bytes of @src at @at of @buf (holding *@n, room for @max), moving the rest up. */
static void insert(uint8_t *buf, size_t *n, size_t max, size_t at, const uint8_t *src, size_t len)
{
	if (len > max - *n)
		len = max - *n;
	memmove(buf + at + len, buf + at, *n - at);
	memmove(buf + at, src, len);
	*n += len;
}

static void mutate(uint8_t *buf, size_t *n, size_t max, const struct blobs *corpus,
		   const struct blobs *dict, uint64_t *s)
{
	static const uint32_t interesting[] = {0,	   1,	       0x7f,	   0x80,
					       0xff,	   0x1000,     0xffff,	   0x10000,
					       0x7fffffff, 0x80000000, 0xfffff000, 0xffffffff};
	size_t at = below(s, *n + 1);
	uint8_t tmp[64];

	switch (below(s, 8)) {
	case 0: /* flip a bit */
		if (*n)
			buf[at % *n] ^= (uint8_t)(1u << below(s, 8));
		break;
	case 1: /* a random byte */
		if (*n)
			buf[at % *n] = (uint8_t)next(s);
		break;
	case 2: { /* an interesting 32-bit value, little-endian */
		uint32_t v = interesting[below(s, ARRAY_SIZE(interesting))];

		if (*n >= 4) {
			at = below(s, *n - 3);
			memcpy(buf + at, &v, 4);
		}
		break;
	}
	case 3: /* delete a run */
		if (*n) {
			size_t len = 1 + below(s, min_size(*n - at % *n, (size_t)64));

			at %= *n;
			memmove(buf + at, buf + at + len, *n - at - len);
			*n -= len;
		}
		break;
	case 4: { /* insert random bytes */
		size_t len = 1 + below(s, sizeof(tmp));

		for (size_t i = 0; i < len; i++)
			tmp[i] = (uint8_t)next(s);
		insert(buf, n, max, at, tmp, len);
		break;
	}
	case 5: /* copy a run of the input elsewhere */
		if (*n) {
			size_t from = below(s, *n),
			       len = 1 + below(s, min_size(*n - from, sizeof(tmp)));

			memcpy(tmp, buf + from, len);
			insert(buf, n, max, at, tmp, len);
		}
		break;
	case 6: /* a dictionary token */
		if (dict->n) {
			const struct blob *t = &dict->v[below(s, dict->n)];

			insert(buf, n, max, at, t->data, t->size);
		}
		break;
	case 7: /* splice: the tail of another corpus entry */
		if (corpus->n) {
			const struct blob *o = &corpus->v[below(s, corpus->n)];
			size_t from = below(s, o->size + 1);

			*n = at;
			insert(buf, n, max, at, o->data + from, o->size - from);
		}
		break;
	}
}

/* The seeded input number @i into @buf: a mutated corpus entry, or dictionary tokens alone. */
static size_t make_input(uint8_t *buf, size_t max, const struct blobs *corpus,
			 const struct blobs *dict, uint64_t *s)
{
	size_t n = 0;

	if (dict->n && below(s, 4) == 0) {
		while (n < max && below(s, 24) != 0) {
			const struct blob *t = &dict->v[below(s, dict->n)];

			insert(buf, &n, max, n, t->data, t->size);
		}
		return n;
	}
	if (corpus->n) {
		const struct blob *b = &corpus->v[below(s, corpus->n)];

		n = min_size(b->size, max);
		memcpy(buf, b->data, n);
	}
	for (size_t k = 1 + below(s, 8); k > 0; k--)
		mutate(buf, &n, max, corpus, dict, s);
	return n;
}

static const char *target_name(const char *argv0)
{
	const char *slash = strrchr(argv0, '/');

	return slash ? slash + 1 : argv0;
}

/* The input being run, written out by the abort handler's caller: see run(). */
static const uint8_t *current;
static size_t current_size;
static const char *current_target;

static void save_current(int sig)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "fuzz-crash-%s", current_target);
	f = fopen(path, "we");
	if (f) {
		fwrite(current, 1, current_size, f);
		fclose(f);
		fprintf(stderr, "fuzz-replay: the input is in %s\n", path);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static void run(const uint8_t *data, size_t size)
{
	current = data;
	current_size = size;
	(void)LLVMFuzzerTestOneInput(data, size);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"seeded", required_argument, NULL, 'n'},
		{"seed", required_argument, NULL, 's'},
		{"dict", required_argument, NULL, 'd'},
		{"max-len", required_argument, NULL, 'l'},
		{},
	};
	struct blobs corpus = {}, dict = {};
	uint64_t seeded = 0, seed = 1, max_len = 4096;
	uint8_t *buf;
	int c, r;

	current_target = target_name(argv[0]);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
		switch (c) {
		case 'n':
		case 's':
		case 'l':
			r = parse_u64(optarg, c == 'n' ? &seeded : c == 's' ? &seed : &max_len);
			if (r < 0 || (c == 'l' && (max_len == 0 || max_len > (1u << 20)))) {
				fprintf(stderr, "%s: bad number \"%s\"\n", current_target, optarg);
				return 2;
			}
			break;
		case 'd':
			if (read_dict(optarg, &dict) < 0) {
				fprintf(stderr, "%s: cannot read %s: %m\n", current_target, optarg);
				return 2;
			}
			break;
		default:
			return 2;
		}
	}
	for (int i = optind; i < argc; i++) {
		r = read_path(argv[i], &corpus);
		if (r < 0) {
			fprintf(stderr, "%s: cannot read %s: %s\n", current_target, argv[i],
				strerror(-r));
			return 2;
		}
	}
	signal(SIGABRT, save_current);
	signal(SIGSEGV, save_current);

	for (size_t i = 0; i < corpus.n; i++)
		run(corpus.v[i].data, corpus.v[i].size);
	buf = malloc(max_len);
	fuzz_check(buf, "out of memory");
	seed = seed ? seed : 1; /* xorshift stays at 0 */
	for (uint64_t i = 0; i < seeded; i++) {
		size_t n = make_input(buf, max_len, &corpus, &dict, &seed);

		run(buf, n);
	}
	printf("%s: %zu corpus inputs and %" PRIu64 " seeded inputs passed\n", current_target,
	       corpus.n, seeded);
	free(buf);
	blobs_free(&corpus);
	blobs_free(&dict);
	return 0;
}
