/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <ini.h>

#include "conf.h"
#include "util.h"

#define CONF_FILE_MAX (64 * 1024) /* far above any sane iopfd.conf */

int conf_init(struct conf *conf)
{
	*conf = (struct conf){
		.workers = 0,
		.fault_around = IOPFD_FAULT_AROUND_DEFAULT,
		.read_batch = IOPFD_READ_BATCH_DEFAULT,
		.allow_simulator = false,
		.system_bus = false,
		.limits =
			{
				.max_sources = IOPF_CONTROL_DEFAULT_MAX_SOURCES,
				.max_domains = IOPF_CONTROL_DEFAULT_MAX_DOMAINS,
				.max_regions = IOPF_CONTROL_DEFAULT_MAX_REGIONS,
			},
	};
	conf->control_socket = strdup(IOPF_DEFAULT_SOCKET);
	return conf->control_socket ? 0 : -ENOMEM;
}

void conf_done(struct conf *conf)
{
	free(conf->control_socket);
	conf->control_socket = NULL;
}

_printf_(2, 3) static int bad(char **ret_error, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(ret_error, fmt, ap);
	va_end(ap);
	if (r < 0) {
		*ret_error = NULL;
		return -ENOMEM;
	}
	return -EINVAL;
}

/* Decimal (or 0x hex) without sign, spaces or trailing junk. */
static int parse_u64(const char *s, uint64_t *ret)
{
	unsigned long long v;
	char *end;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno)
		return -errno;
	if (*end)
		return -EINVAL;
	*ret = v;
	return 0;
}

static int parse_unsigned(const char *s, unsigned min, unsigned max, unsigned *ret)
{
	uint64_t v;
	int r = parse_u64(s, &v);

	if (r < 0)
		return r;
	if (v < min || v > max)
		return -ERANGE;
	*ret = (unsigned)v;
	return 0;
}

/* Bytes with an optional K, M or G (KiB, MiB, GiB) suffix, 1024-based. */
static int parse_size(const char *s, uint64_t *ret)
{
	static const struct {
		const char *suffix;
		unsigned shift;
	} units[] = {
		{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"K", 10}, {"M", 20}, {"G", 30}, {"B", 0},
	};
	char num[32];
	size_t len = s ? strlen(s) : 0;
	uint64_t v;
	int r;

	if (len == 0 || len >= sizeof(num))
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		size_t sl = strlen(units[i].suffix);

		if (len > sl && strcmp(s + len - sl, units[i].suffix) == 0) {
			memcpy(num, s, len - sl);
			num[len - sl] = '\0';
			r = parse_u64(num, &v);
			if (r < 0)
				return r;
			if (v > (UINT64_MAX >> units[i].shift))
				return -ERANGE;
			*ret = v << units[i].shift;
			return 0;
		}
	}
	return parse_u64(s, ret);
}

static int parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = {"1", "yes", "y", "true", "on"};
	static const char *const no[] = {"0", "no", "n", "false", "off"};

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
		if (strcasecmp(s, yes[i]) == 0)
			return *ret = true, 0;
	for (size_t i = 0; i < ARRAY_SIZE(no); i++)
		if (strcasecmp(s, no[i]) == 0)
			return *ret = false, 0;
	return -EINVAL;
}

static int set_workers(struct conf *conf, const char *v, char **err)
{
	if (parse_unsigned(v, 0, IOPFD_WORKERS_MAX, &conf->workers) < 0)
		return bad(err, "not a number between 0 (one per CPU) and %u", IOPFD_WORKERS_MAX);
	return 0;
}

static int set_socket(struct conf *conf, const char *v, char **err)
{
	char *copy;

	if (v[0] != '/')
		return bad(err, "not an absolute path");
	if (strlen(v) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
		return bad(err, "longer than a unix socket path may be (%zu bytes)",
			   sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1);
	copy = strdup(v);
	if (!copy)
		return -ENOMEM;
	free(conf->control_socket);
	conf->control_socket = copy;
	return 0;
}

static int set_fault_around(struct conf *conf, const char *v, char **err)
{
	uint64_t bytes;

	if (parse_size(v, &bytes) < 0 || !is_power_of_2(bytes) || bytes < IOPF_PAGE_SIZE ||
	    bytes > IOPFD_FAULT_AROUND_MAX)
		return bad(err,
			   "not a power of two between %" PRIu64 " and %" PRIu64
			   " bytes (K, M, G suffixes allowed)",
			   IOPF_PAGE_SIZE, IOPFD_FAULT_AROUND_MAX);
	conf->fault_around = bytes;
	return 0;
}

static int set_read_batch(struct conf *conf, const char *v, char **err)
{
	if (parse_unsigned(v, 1, IOPFD_READ_BATCH_MAX, &conf->read_batch) < 0)
		return bad(err, "not a number between 1 and %u", IOPFD_READ_BATCH_MAX);
	return 0;
}

static int set_bool(bool *field, const char *v, char **err)
{
	if (parse_bool(v, field) < 0)
		return bad(err, "not a boolean (yes/no, true/false, on/off, 1/0)");
	return 0;
}

static int set_limit(unsigned *field, const char *v, char **err)
{
	if (parse_unsigned(v, 1, IOPF_CONTROL_LIMIT_MAX, field) < 0)
		return bad(err, "not a number between 1 and %u", IOPF_CONTROL_LIMIT_MAX);
	return 0;
}

int conf_set(struct conf *conf, const char *section, const char *key, const char *value,
	     char **ret_error)
{
	*ret_error = NULL;
	if (strcmp(section, "Daemon") == 0) {
		if (strcmp(key, "Workers") == 0)
			return set_workers(conf, value, ret_error);
		if (strcmp(key, "ControlSocket") == 0)
			return set_socket(conf, value, ret_error);
		if (strcmp(key, "FaultAround") == 0)
			return set_fault_around(conf, value, ret_error);
		if (strcmp(key, "ReadBatch") == 0)
			return set_read_batch(conf, value, ret_error);
		if (strcmp(key, "AllowSimulator") == 0)
			return set_bool(&conf->allow_simulator, value, ret_error);
		if (strcmp(key, "SystemBus") == 0)
			return set_bool(&conf->system_bus, value, ret_error);
		return -ENOENT;
	}
	if (strcmp(section, "Limits") == 0) {
		if (strcmp(key, "MaxSources") == 0)
			return set_limit(&conf->limits.max_sources, value, ret_error);
		if (strcmp(key, "MaxDomains") == 0)
			return set_limit(&conf->limits.max_domains, value, ret_error);
		if (strcmp(key, "MaxRegions") == 0)
			return set_limit(&conf->limits.max_regions, value, ret_error);
		return -ENOENT;
	}
	return -ENOENT;
}

struct parse_state {
	struct conf *conf;
	const char *filename;
	const char *text; /* what the reader has not handed out yet */
	unsigned line;	  /* of the line inih is working on */
	int error;	  /* first failure */
	unsigned error_line;
	char *message; /* owned; of the first failure */
};

/* fgets() over a string, counting lines so errors can name them. */
static char *read_line(char *buf, int size, void *userdata)
{
	struct parse_state *st = userdata;
	size_t n = 0;

	if (!*st->text || size < 2)
		return NULL;
	while (st->text[n] && st->text[n] != '\n')
		n++;
	if (st->text[n] == '\n')
		n++;
	st->line++;
	if (n > (size_t)size - 1) {
		/* inih cannot take it whole; fail this line instead of parsing a stump */
		if (!st->error) {
			st->error = -EINVAL;
			st->error_line = st->line;
			(void)asprintf(&st->message, "%s:%u: line longer than %d characters",
				       st->filename, st->line, size - 2);
		}
		st->text += n;
		buf[0] = '\n';
		buf[1] = '\0';
		return buf;
	}
	memcpy(buf, st->text, n);
	buf[n] = '\0';
	st->text += n;
	return buf;
}

static int handle_value(void *userdata, const char *section, const char *key, const char *value)
{
	struct parse_state *st = userdata;
	_cleanup_free_ char *why = NULL;
	int r;

	if (st->error)
		return 0; /* keep the first error only */
	if (!key)	  /* a section header alone: nothing to set, but the name must be known */
		return 1;
	r = conf_set(st->conf, section, key, value ? value : "", &why);
	if (r < 0)
		st->error_line = st->line;
	if (r == -ENOENT) {
		st->error = -EINVAL;
		(void)asprintf(&st->message, "%s:%u: unknown key %s in section [%s]", st->filename,
			       st->line, key, section);
		return 0;
	}
	if (r < 0) {
		st->error = r;
		(void)asprintf(&st->message, "%s:%u: %s=%s: %s", st->filename, st->line, key,
			       value ? value : "", why ? why : strerror(-r));
		return 0;
	}
	return 1;
}

int conf_parse_string(struct conf *conf, const char *text, const char *filename, char **ret_error)
{
	struct parse_state st = {.conf = conf, .filename = filename, .text = text};
	int r;

	*ret_error = NULL;
	r = ini_parse_stream(read_line, &st, handle_value, &st);
	if (r > 0 && (!st.error || (unsigned)r < st.error_line)) {
		/* inih's own syntax error ("[Daemon" or a line without '=') came first */
		free(st.message);
		st.message = NULL;
		st.error = -EINVAL;
		(void)asprintf(&st.message, "%s:%d: syntax error", filename, r);
	} else if (r < 0 && !st.error) {
		st.error = -ENOMEM; /* inih could not allocate */
	}
	if (st.error) {
		*ret_error = st.message;
		return st.message || st.error != -EINVAL ? st.error : -ENOMEM;
	}
	return 0;
}

int conf_load(struct conf *conf, const char *path, bool missing_ok, char **ret_error)
{
	_cleanup_close_ int fd = -EBADF;
	_cleanup_free_ char *text = NULL;
	size_t n = 0;
	ssize_t k;

	*ret_error = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		if (errno == ENOENT && missing_ok)
			return 0;
		(void)asprintf(ret_error, "%s: %s", path, strerror(errno));
		return negative_errno();
	}
	text = malloc(CONF_FILE_MAX + 1);
	if (!text)
		return -ENOMEM;
	while ((k = read(fd, text + n, CONF_FILE_MAX + 1 - n)) > 0) {
		n += k;
		if (n > CONF_FILE_MAX) {
			(void)asprintf(ret_error, "%s: larger than %d bytes", path, CONF_FILE_MAX);
			return -EFBIG;
		}
	}
	if (k < 0) {
		(void)asprintf(ret_error, "%s: %s", path, strerror(errno));
		return negative_errno();
	}
	text[n] = '\0';
	if (strlen(text) != n) {
		(void)asprintf(ret_error, "%s: contains a NUL byte", path);
		return -EINVAL;
	}
	return conf_parse_string(conf, text, path, ret_error);
}
