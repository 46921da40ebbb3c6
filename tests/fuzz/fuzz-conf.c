/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon/conf.c on arbitrary file contents, through conf_load() as iopfd reads
 * its file. What must hold for any bytes:
 * - the outcome is "parsed", or a refusal with a message naming the file
 *   (-EINVAL "FILE:LINE: ..." for text, -EINVAL "...contains a NUL byte",
 *   -EFBIG for a file too large); never a crash, a leak or a hang;
 * - what parsed prints (conf_dump()) as a file that parses to the same
 *   configuration: the dump of the dump is the same text, and conf_diff()
 *   between the two reports nothing.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conf.h"
#include "fuzz.h"
#include "util.h"

static char *dump(const struct conf *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	fuzz_check(f, "open_memstream: %m");
	conf_dump(c, f);
	fuzz_check(fclose(f) == 0, "dump");
	return text;
}

static void count_change(const char *section, const char *key, const char *old_value,
			 const char *new_value, enum conf_apply apply, void *userdata)
{
	fprintf(stderr, "changed: [%s] %s: %s -> %s\n", section, key, old_value, new_value);
	(*(unsigned *)userdata)++;
}

/* A memfd holding the input: a regular file, as conf_load() insists. */
static const char *input_file(const uint8_t *data, size_t size)
{
	static char path[64];
	static int fd = -1;

	if (fd < 0) {
		fd = memfd_create("fuzz-conf", MFD_CLOEXEC);
		fuzz_check(fd >= 0, "memfd_create: %m");
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	fuzz_check(ftruncate(fd, 0) == 0, "ftruncate: %m");
	fuzz_check(pwrite(fd, data, size, 0) == (ssize_t)size, "pwrite: %m");
	return path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_cleanup_free_ char *err = NULL, *text = NULL, *again = NULL, *err2 = NULL;
	const char *path = input_file(data, size);
	size_t plen = strlen(path);
	struct conf c, c2;
	unsigned changes = 0;
	int r;

	fuzz_check(conf_init(&c) == 0, "conf_init");
	r = conf_load(&c, path, false, &err);
	if (r < 0) {
		fuzz_check(r == -EINVAL || r == -EFBIG, "conf_load: %d (%s)", r,
			   err ? err : "no message");
		fuzz_check(err && strncmp(err, path, plen) == 0 && err[plen] == ':',
			   "the message names the file: %s", err ? err : "(null)");
		fuzz_check(r != -EFBIG || size > 65536, "-EFBIG for %zu bytes", size);
		conf_done(&c);
		return 0;
	}
	fuzz_check(!err, "a message without an error: %s", err);
	fuzz_check(!memchr(data, 0, size), "a NUL byte was accepted");

	/* what parsed prints as configuration that parses to itself */
	text = dump(&c);
	fuzz_check(conf_init(&c2) == 0, "conf_init");
	r = conf_parse_string(&c2, text, "dump", &err2);
	fuzz_check(r == 0, "the dump does not parse: %s\n%s", err2 ? err2 : "?", text);
	again = dump(&c2);
	fuzz_check(strcmp(text, again) == 0, "dump of the dump differs:\n%s\n---\n%s", text, again);
	conf_diff(&c, &c2, count_change, &changes);
	fuzz_check(changes == 0, "conf_diff found %u changes after a round trip", changes);
	conf_done(&c2);
	conf_done(&c);
	return 0;
}
