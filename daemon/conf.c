/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>

#include <ini.h>

#include "conf.h"
#include "parse.h"
#include "util.h"

#define CONF_FILE_MAX (64 * 1024) /* far above any sane iopfd.conf */

int conf_init(struct conf *conf)
{
	*conf = (struct conf){
		.workers = 0,
		.fault_around = IOPF_FAULT_AROUND_DEFAULT,
		.read_batch = IOPF_READ_BATCH_DEFAULT,
		.allow_simulator = false,
		.system_bus = false,
		.log_level = LOG_INFO,
		.log_target = CONF_LOG_AUTO,
		.summary_usec = IOPFD_SUMMARY_DEFAULT_USEC,
		.limits = IOPF_CONTROL_LIMITS_DEFAULT,
		.max_connections = IOPFD_CONNECTIONS_DEFAULT,
		.max_connections_per_user = IOPFD_CONNECTIONS_PER_USER_DEFAULT,
		.reserved_connections = IOPFD_RESERVED_CONNECTIONS_DEFAULT,
		.auth_timeout_usec = IOPFD_AUTH_TIMEOUT_DEFAULT_USEC,
		.fd_reserve = IOPFD_FD_RESERVE_DEFAULT,
		.max_message_size = IOPFD_MESSAGE_SIZE_DEFAULT,
		.max_queued_bytes = IOPFD_QUEUED_BYTES_DEFAULT,
		.max_buffered_per_user = IOPFD_BUFFERED_PER_USER_DEFAULT,
		.io_timeout_usec = IOPFD_IO_TIMEOUT_DEFAULT_USEC,
		.metrics_per_domain = false,
	};
	conf->control_socket = strdup(IOPF_DEFAULT_SOCKET);
	conf->metrics_listen = strdup(IOPFD_METRICS_LISTEN);
	conf->metrics_readers = strdup(IOPFD_METRICS_READERS);
	if (!conf->control_socket || !conf->metrics_listen || !conf->metrics_readers) {
		conf_done(conf);
		return -ENOMEM;
	}
	return 0;
}

void conf_done(struct conf *conf)
{
	free(conf->control_socket);
	conf->control_socket = NULL;
	free(conf->metrics_listen);
	conf->metrics_listen = NULL;
	free(conf->metrics_readers);
	conf->metrics_readers = NULL;
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

static const char *const level_names[] = {
	[LOG_EMERG] = "emerg", [LOG_ALERT] = "alert",	  [LOG_CRIT] = "crit",
	[LOG_ERR] = "err",     [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
	[LOG_INFO] = "info",   [LOG_DEBUG] = "debug",
};

static const char *const target_names[] = {
	[CONF_LOG_AUTO] = "auto",
	[CONF_LOG_JOURNAL] = "journal",
	[CONF_LOG_CONSOLE] = "console",
};

/* --- value printers: the inverse of the parsers, exact --- */

static void format_size(uint64_t v, char *buf, size_t size)
{
	static const char suffixes[] = "KMGT";
	int i;

	for (i = 3; i >= 0; i--) {
		uint64_t f = UINT64_C(1) << (10 * (i + 1));

		if (v >= f && v % f == 0) {
			(void)snprintf(buf, size, "%" PRIu64 "%c", v / f, suffixes[i]);
			return;
		}
	}
	(void)snprintf(buf, size, "%" PRIu64, v);
}

static void format_duration(uint64_t usec, char *buf, size_t size)
{
	if (usec == 0)
		(void)snprintf(buf, size, "0");
	else if (usec % (3600 * USEC_PER_SEC) == 0)
		(void)snprintf(buf, size, "%" PRIu64 "h", usec / (3600 * USEC_PER_SEC));
	else if (usec % (60 * USEC_PER_SEC) == 0)
		(void)snprintf(buf, size, "%" PRIu64 "min", usec / (60 * USEC_PER_SEC));
	else if (usec % USEC_PER_SEC == 0)
		(void)snprintf(buf, size, "%" PRIu64 "s", usec / USEC_PER_SEC);
	else if (usec % 1000 == 0)
		(void)snprintf(buf, size, "%" PRIu64 "ms", usec / 1000);
	else
		(void)snprintf(buf, size, "%" PRIu64 "us", usec);
}

/* --- keys --- */

static int set_workers(struct conf *conf, const char *v, char **err)
{
	if (parse_unsigned(v, 0, IOPF_WORKERS_MAX, &conf->workers) < 0)
		return bad(err, "not a number between 0 (one per CPU) and %u", IOPF_WORKERS_MAX);
	return 0;
}

static void get_workers(const struct conf *c, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%u", c->workers);
}

static int set_string(char **field, const char *v)
{
	char *copy = strdup(v);

	if (!copy)
		return -ENOMEM;
	free(*field);
	*field = copy;
	return 0;
}

static int set_socket(struct conf *conf, const char *v, char **err)
{
	if (v[0] != '/')
		return bad(err, "not an absolute path");
	if (strlen(v) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
		return bad(err, "longer than a unix socket path may be (%zu bytes)",
			   sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1);
	return set_string(&conf->control_socket, v);
}

static void get_socket(const struct conf *c, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%s", c->control_socket);
}

static int set_fault_around(struct conf *conf, const char *v, char **err)
{
	uint64_t bytes;

	if (parse_size(v, &bytes) < 0 || !iopf_fault_around_ok(bytes))
		return bad(err,
			   "not a power of two between %" PRIu64 " and %" PRIu64
			   " bytes (K, M, G suffixes allowed)",
			   IOPF_FAULT_AROUND_MIN, IOPF_FAULT_AROUND_MAX);
	conf->fault_around = bytes;
	return 0;
}

static void get_fault_around(const struct conf *c, char *buf, size_t size)
{
	format_size(c->fault_around, buf, size);
}

static int set_busy_poll(struct conf *c, const char *v, char **err)
{
	uint64_t usec;

	if (parse_duration(v, &usec) < 0 || usec > IOPF_BUSY_POLL_MAX_NS / 1000)
		return bad(err, "not 0 (off) or a duration up to %" PRIu64 "ms (e.g. 50us)",
			   IOPF_BUSY_POLL_MAX_NS / 1000000);
	c->busy_poll_usec = usec;
	return 0;
}

static void get_busy_poll(const struct conf *c, char *buf, size_t size)
{
	format_duration(c->busy_poll_usec, buf, size);
}

static int set_read_batch(struct conf *conf, const char *v, char **err)
{
	if (parse_unsigned(v, 1, IOPF_READ_BATCH_MAX, &conf->read_batch) < 0)
		return bad(err, "not a number between 1 and %u", IOPF_READ_BATCH_MAX);
	return 0;
}

static void get_read_batch(const struct conf *c, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%u", c->read_batch);
}

static int set_bool(bool *field, const char *v, char **err)
{
	if (parse_bool(v, field) < 0)
		return bad(err, "not a boolean (yes/no, true/false, on/off, 1/0)");
	return 0;
}

static void format_bool(bool v, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%s", v ? "yes" : "no");
}

static int set_allow_sim(struct conf *c, const char *v, char **err)
{
	int r = set_bool(&c->allow_simulator, v, err);

	if (r >= 0 && c->allow_simulator && !HAVE_SIMULATOR)
		return bad(err, "iopfd was built without the simulator (-Dsimulator=disabled)");
	return r;
}

static void get_allow_sim(const struct conf *c, char *buf, size_t size)
{
	format_bool(c->allow_simulator, buf, size);
}

static int set_system_bus(struct conf *c, const char *v, char **err)
{
	return set_bool(&c->system_bus, v, err);
}

static void get_system_bus(const struct conf *c, char *buf, size_t size)
{
	format_bool(c->system_bus, buf, size);
}

static int set_log_level(struct conf *c, const char *v, char **err)
{
	/* Below err would hide the daemon's own failures. */
	for (int i = LOG_ERR; i <= LOG_DEBUG; i++)
		if (strcmp(v, level_names[i]) == 0) {
			c->log_level = i;
			return 0;
		}
	if (strcmp(v, "error") == 0) {
		c->log_level = LOG_ERR;
		return 0;
	}
	return bad(err, "not one of err, warning, notice, info, debug");
}

static void get_log_level(const struct conf *c, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%s", level_names[c->log_level]);
}

static int set_log_target(struct conf *c, const char *v, char **err)
{
	for (size_t i = 0; i < ARRAY_SIZE(target_names); i++)
		if (strcmp(v, target_names[i]) == 0) {
			c->log_target = (enum conf_log_target)i;
			return 0;
		}
	return bad(err, "not one of auto, journal, console");
}

static void get_log_target(const struct conf *c, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%s", target_names[c->log_target]);
}

static int set_summary(struct conf *c, const char *v, char **err)
{
	uint64_t usec;

	if (parse_duration(v, &usec) < 0 || (usec && usec < 100000) ||
	    usec > IOPFD_SUMMARY_MAX_USEC)
		return bad(err, "not 0 (off) or a duration between 100ms and 24h (e.g. 10s, 1min)");
	c->summary_usec = usec;
	return 0;
}

static void get_summary(const struct conf *c, char *buf, size_t size)
{
	format_duration(c->summary_usec, buf, size);
}

static int set_limit(unsigned *field, const char *v, char **err)
{
	if (parse_unsigned(v, 1, IOPF_CONTROL_LIMIT_MAX, field) < 0)
		return bad(err, "not a number between 1 and %u", IOPF_CONTROL_LIMIT_MAX);
	return 0;
}

static int set_max_sources(struct conf *c, const char *v, char **err)
{
	return set_limit(&c->limits.max_sources, v, err);
}

static void get_max_sources(const struct conf *c, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%u", c->limits.max_sources);
}

static int set_max_domains(struct conf *c, const char *v, char **err)
{
	return set_limit(&c->limits.max_domains, v, err);
}

static void get_max_domains(const struct conf *c, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%u", c->limits.max_domains);
}

static int set_max_regions(struct conf *c, const char *v, char **err)
{
	return set_limit(&c->limits.max_regions, v, err);
}

static void get_max_regions(const struct conf *c, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%u", c->limits.max_regions);
}

static int set_pinned(uint64_t *field, const char *v, char **err)
{
	uint64_t bytes;

	if (strcmp(v, "infinity") == 0) {
		*field = IOPF_CONTROL_PINNED_UNLIMITED;
		return 0;
	}
	if (parse_size(v, &bytes) < 0 || bytes < IOPF_PAGE_SIZE ||
	    bytes == IOPF_CONTROL_PINNED_UNLIMITED)
		return bad(err,
			   "not a size of at least %" PRIu64
			   " bytes (K, M, G, T suffixes allowed) or \"infinity\"",
			   IOPF_PAGE_SIZE);
	*field = bytes;
	return 0;
}

static void format_pinned(uint64_t v, char *buf, size_t size)
{
	if (v == IOPF_CONTROL_PINNED_UNLIMITED)
		(void)snprintf(buf, size, "infinity");
	else
		format_size(v, buf, size);
}

static int set_max_pinned(struct conf *c, const char *v, char **err)
{
	return set_pinned(&c->limits.max_pinned_bytes, v, err);
}

static void get_max_pinned(const struct conf *c, char *buf, size_t size)
{
	format_pinned(c->limits.max_pinned_bytes, buf, size);
}

static int set_max_sources_per_user(struct conf *c, const char *v, char **err)
{
	return set_limit(&c->limits.max_sources_per_user, v, err);
}

static void get_max_sources_per_user(const struct conf *c, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%u", c->limits.max_sources_per_user);
}

static int set_max_domains_per_user(struct conf *c, const char *v, char **err)
{
	return set_limit(&c->limits.max_domains_per_user, v, err);
}

static void get_max_domains_per_user(const struct conf *c, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%u", c->limits.max_domains_per_user);
}

static int set_max_regions_per_user(struct conf *c, const char *v, char **err)
{
	return set_limit(&c->limits.max_regions_per_user, v, err);
}

static void get_max_regions_per_user(const struct conf *c, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%u", c->limits.max_regions_per_user);
}

static int set_max_pinned_per_user(struct conf *c, const char *v, char **err)
{
	return set_pinned(&c->limits.max_pinned_bytes_per_user, v, err);
}

static void get_max_pinned_per_user(const struct conf *c, char *buf, size_t size)
{
	format_pinned(c->limits.max_pinned_bytes_per_user, buf, size);
}

static int set_max_fds_per_user(struct conf *c, const char *v, char **err)
{
	/* a source holds two: as many sources and regions as one uid may have */
	if (parse_unsigned(v, IOPF_CONTROL_SOURCE_FDS, 2 * IOPF_CONTROL_LIMIT_MAX,
			   &c->limits.max_fds_per_user) < 0)
		return bad(err, "not a number between %u and %u", IOPF_CONTROL_SOURCE_FDS,
			   2 * IOPF_CONTROL_LIMIT_MAX);
	return 0;
}

static void get_max_fds_per_user(const struct conf *c, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%u", c->limits.max_fds_per_user);
}

static int set_connections(unsigned *field, unsigned min, const char *v, char **err)
{
	if (parse_unsigned(v, min, IOPFD_CONNECTIONS_MAX, field) < 0)
		return bad(err, "not a number between %u and %u", min, IOPFD_CONNECTIONS_MAX);
	return 0;
}

static int set_max_connections(struct conf *c, const char *v, char **err)
{
	return set_connections(&c->max_connections, 1, v, err);
}

static void get_max_connections(const struct conf *c, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%u", c->max_connections);
}

static int set_max_connections_per_user(struct conf *c, const char *v, char **err)
{
	return set_connections(&c->max_connections_per_user, 1, v, err);
}

static void get_max_connections_per_user(const struct conf *c, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%u", c->max_connections_per_user);
}

static int set_reserved_connections(struct conf *c, const char *v, char **err)
{
	return set_connections(&c->reserved_connections, 0, v, err);
}

static void get_reserved_connections(const struct conf *c, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%u", c->reserved_connections);
}

static int set_auth_timeout(struct conf *c, const char *v, char **err)
{
	uint64_t usec;

	if (parse_duration(v, &usec) < 0 || usec < IOPFD_AUTH_TIMEOUT_MIN_USEC ||
	    usec > IOPFD_AUTH_TIMEOUT_MAX_USEC)
		return bad(err, "not a duration between 100ms and 10min (e.g. 5s)");
	c->auth_timeout_usec = usec;
	return 0;
}

static void get_auth_timeout(const struct conf *c, char *buf, size_t size)
{
	format_duration(c->auth_timeout_usec, buf, size);
}

static int set_fd_reserve(struct conf *c, const char *v, char **err)
{
	return set_connections(&c->fd_reserve, IOPFD_FD_RESERVE_MIN, v, err);
}

static void get_fd_reserve(const struct conf *c, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%u", c->fd_reserve);
}

static int set_bytes(uint64_t *field, uint64_t min, uint64_t max, const char *v, char **err)
{
	char a[32], b[32];
	uint64_t bytes;

	if (parse_size(v, &bytes) < 0 || bytes < min || bytes > max) {
		format_size(min, a, sizeof(a));
		format_size(max, b, sizeof(b));
		return bad(err, "not a size between %s and %s (K, M, G, T suffixes allowed)", a, b);
	}
	*field = bytes;
	return 0;
}

static int set_max_message_size(struct conf *c, const char *v, char **err)
{
	return set_bytes(&c->max_message_size, IOPFD_MESSAGE_SIZE_MIN, IOPFD_MESSAGE_SIZE_MAX, v,
			 err);
}

static void get_max_message_size(const struct conf *c, char *buf, size_t size)
{
	format_size(c->max_message_size, buf, size);
}

static int set_max_queued_bytes(struct conf *c, const char *v, char **err)
{
	return set_bytes(&c->max_queued_bytes, IOPFD_BUFFER_MIN, IOPFD_BUFFER_MAX, v, err);
}

static void get_max_queued_bytes(const struct conf *c, char *buf, size_t size)
{
	format_size(c->max_queued_bytes, buf, size);
}

static int set_max_buffered_per_user(struct conf *c, const char *v, char **err)
{
	return set_bytes(&c->max_buffered_per_user, IOPFD_BUFFER_MIN, IOPFD_BUFFER_MAX, v, err);
}

static void get_max_buffered_per_user(const struct conf *c, char *buf, size_t size)
{
	format_size(c->max_buffered_per_user, buf, size);
}

static int set_io_timeout(struct conf *c, const char *v, char **err)
{
	uint64_t usec;

	if (parse_duration(v, &usec) < 0 || usec < IOPFD_AUTH_TIMEOUT_MIN_USEC ||
	    usec > IOPFD_AUTH_TIMEOUT_MAX_USEC)
		return bad(err, "not a duration between 100ms and 10min (e.g. 10s)");
	c->io_timeout_usec = usec;
	return 0;
}

static void get_io_timeout(const struct conf *c, char *buf, size_t size)
{
	format_duration(c->io_timeout_usec, buf, size);
}

static int set_listen(struct conf *c, const char *v, char **err)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (conf_parse_listen(v, &ss, &len) < 0)
		return bad(err, "not ADDRESS:PORT with an IP address (e.g. 127.0.0.1:9577, "
				"[::1]:9577) and a port between 1 and 65535");
	return set_string(&c->metrics_listen, v);
}

static void get_listen(const struct conf *c, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%s", c->metrics_listen);
}

static int set_per_domain(struct conf *c, const char *v, char **err)
{
	return set_bool(&c->metrics_per_domain, v, err);
}

static void get_per_domain(const struct conf *c, char *buf, size_t size)
{
	format_bool(c->metrics_per_domain, buf, size);
}

/* A uid as a decimal number: anything but (uid_t)-1, which means "none" to the kernel. */
static bool parse_uid(const char *s, size_t len, uid_t *ret)
{
	uint64_t v = 0;

	if (len == 0 || len > 10 || (s[0] == '0' && len > 1))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v >= UINT32_MAX)
		return false;
	*ret = (uid_t)v;
	return true;
}

/* What useradd and systemd-sysusers take, in short: [a-zA-Z_][a-zA-Z0-9_.-]*, 1-32 bytes. */
static bool user_name_ok(const char *s, size_t len)
{
	if (len == 0 || len > 32 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i]))
			return false;
	return true;
}

/* Calls @fn(word, length) on each space-separated word of @v; stops at fn's false. */
static bool foreach_word(const char *v, bool (*fn)(const char *w, size_t len, void *userdata),
			 void *userdata)
{
	while (*v) {
		size_t len;

		v += strspn(v, " \t");
		len = strcspn(v, " \t");
		if (len && !fn(v, len, userdata))
			return false;
		v += len;
	}
	return true;
}

struct readers_acc {
	char buf[IOPFD_METRICS_READERS_LEN + 1];
	size_t len;
	unsigned n;
	bool too_long;
};

static bool reader_add(const char *w, size_t len, void *userdata)
{
	struct readers_acc *a = userdata;
	uid_t uid;

	if (!parse_uid(w, len, &uid) && !user_name_ok(w, len))
		return false;
	if (++a->n > IOPF_CONTROL_READERS_MAX)
		return false;
	if (a->len + !!a->len + len > IOPFD_METRICS_READERS_LEN) {
		a->too_long = true;
		return false;
	}
	if (a->len)
		a->buf[a->len++] = ' ';
	memcpy(a->buf + a->len, w, len);
	a->len += len;
	a->buf[a->len] = '\0';
	return true;
}

static int set_readers(struct conf *c, const char *v, char **err)
{
	struct readers_acc a = {};

	if (!foreach_word(v, reader_add, &a))
		return bad(err,
			   a.too_long ? "longer than %u bytes"
				      : "not a space-separated list of at most %u user names or "
					"uids",
			   a.too_long ? IOPFD_METRICS_READERS_LEN : IOPF_CONTROL_READERS_MAX);
	return set_string(&c->metrics_readers, a.buf);
}

static void get_readers(const struct conf *c, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%s", c->metrics_readers);
}

struct resolve_acc {
	uid_t *v;
	size_t n;
	void (*missing)(const char *name, void *userdata);
	void *userdata;
};

static bool reader_resolve(const char *w, size_t len, void *userdata)
{
	struct resolve_acc *a = userdata;
	char name[33], pwbuf[4096];
	struct passwd pw, *res = NULL;
	uid_t uid;

	if (a->n >= IOPF_CONTROL_READERS_MAX)
		return false; /* set_readers() refused more */
	if (parse_uid(w, len, &uid)) {
		a->v[a->n++] = uid;
		return true;
	}
	if (len >= sizeof(name))
		return true;
	memcpy(name, w, len);
	name[len] = '\0';
	if (getpwnam_r(name, &pw, pwbuf, sizeof(pwbuf), &res) == 0 && res)
		a->v[a->n++] = res->pw_uid;
	else if (a->missing)
		a->missing(name, a->userdata);
	return true;
}

size_t conf_resolve_readers(const struct conf *conf, uid_t *ret,
			    void (*missing)(const char *name, void *userdata), void *userdata)
{
	struct resolve_acc a = {.v = ret, .missing = missing, .userdata = userdata};

	if (conf->metrics_readers)
		(void)foreach_word(conf->metrics_readers, reader_resolve, &a);
	return a.n;
}

struct conf_key {
	const char *section, *name;
	int (*set)(struct conf *c, const char *value, char **err);
	void (*get)(const struct conf *c, char *buf, size_t size);
	enum conf_apply apply;
};

static const struct conf_key keys[] = {
	{"Daemon", "Workers", set_workers, get_workers, CONF_APPLY_RESTART},
	{"Daemon", "ControlSocket", set_socket, get_socket, CONF_APPLY_RESTART},
	{"Daemon", "FaultAround", set_fault_around, get_fault_around, CONF_APPLY_LIVE},
	{"Daemon", "ReadBatch", set_read_batch, get_read_batch, CONF_APPLY_NEW},
	{"Daemon", "BusyPoll", set_busy_poll, get_busy_poll, CONF_APPLY_LIVE},
	{"Daemon", "AllowSimulator", set_allow_sim, get_allow_sim, CONF_APPLY_RESTART},
	{"Daemon", "SystemBus", set_system_bus, get_system_bus, CONF_APPLY_RESTART},
	{"Daemon", "LogLevel", set_log_level, get_log_level, CONF_APPLY_LIVE},
	{"Daemon", "LogTarget", set_log_target, get_log_target, CONF_APPLY_LIVE},
	{"Daemon", "RefusedSummaryInterval", set_summary, get_summary, CONF_APPLY_LIVE},
	{"Limits", "MaxSources", set_max_sources, get_max_sources, CONF_APPLY_NEW},
	{"Limits", "MaxDomains", set_max_domains, get_max_domains, CONF_APPLY_NEW},
	{"Limits", "MaxRegions", set_max_regions, get_max_regions, CONF_APPLY_NEW},
	{"Limits", "MaxPinnedBytes", set_max_pinned, get_max_pinned, CONF_APPLY_NEW},
	{"Limits", "MaxSourcesPerUser", set_max_sources_per_user, get_max_sources_per_user,
	 CONF_APPLY_NEW},
	{"Limits", "MaxDomainsPerUser", set_max_domains_per_user, get_max_domains_per_user,
	 CONF_APPLY_NEW},
	{"Limits", "MaxRegionsPerUser", set_max_regions_per_user, get_max_regions_per_user,
	 CONF_APPLY_NEW},
	{"Limits", "MaxPinnedBytesPerUser", set_max_pinned_per_user, get_max_pinned_per_user,
	 CONF_APPLY_NEW},
	{"Limits", "MaxFdsPerUser", set_max_fds_per_user, get_max_fds_per_user, CONF_APPLY_NEW},
	{"Limits", "MaxConnections", set_max_connections, get_max_connections, CONF_APPLY_NEW},
	{"Limits", "MaxConnectionsPerUser", set_max_connections_per_user,
	 get_max_connections_per_user, CONF_APPLY_NEW},
	{"Limits", "ReservedConnections", set_reserved_connections, get_reserved_connections,
	 CONF_APPLY_NEW},
	{"Limits", "AuthTimeout", set_auth_timeout, get_auth_timeout, CONF_APPLY_NEW},
	{"Limits", "FdReserve", set_fd_reserve, get_fd_reserve, CONF_APPLY_LIVE},
	{"Limits", "MaxMessageSize", set_max_message_size, get_max_message_size, CONF_APPLY_LIVE},
	{"Limits", "MaxQueuedBytes", set_max_queued_bytes, get_max_queued_bytes, CONF_APPLY_LIVE},
	{"Limits", "MaxBufferedBytesPerUser", set_max_buffered_per_user, get_max_buffered_per_user,
	 CONF_APPLY_LIVE},
	{"Limits", "IOTimeout", set_io_timeout, get_io_timeout, CONF_APPLY_LIVE},
	{"Metrics", "Listen", set_listen, get_listen, CONF_APPLY_EXPORTER},
	{"Metrics", "PerDomain", set_per_domain, get_per_domain, CONF_APPLY_EXPORTER},
	{"Metrics", "Readers", set_readers, get_readers, CONF_APPLY_LIVE},
};

int conf_set(struct conf *conf, const char *section, const char *key, const char *value,
	     char **ret_error)
{
	*ret_error = NULL;
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (strcmp(section, keys[i].section) == 0 && strcmp(key, keys[i].name) == 0)
			return keys[i].set(conf, value, ret_error);
	return -ENOENT;
}

void conf_dump(const struct conf *conf, FILE *f)
{
	const char *section = NULL;
	char buf[256];

	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		if (!section || strcmp(section, keys[i].section) != 0) {
			fprintf(f, "%s[%s]\n", section ? "\n" : "", keys[i].section);
			section = keys[i].section;
		}
		keys[i].get(conf, buf, sizeof(buf));
		fprintf(f, "%s=%s\n", keys[i].name, buf);
	}
}

void conf_diff(const struct conf *old, const struct conf *new, conf_change_fn fn, void *userdata)
{
	char a[256], b[256];

	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		keys[i].get(old, a, sizeof(a));
		keys[i].get(new, b, sizeof(b));
		if (strcmp(a, b) != 0)
			fn(keys[i].section, keys[i].name, a, b, keys[i].apply, userdata);
	}
}

int conf_parse_listen(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon, *h = s;
	size_t hlen;
	unsigned port;

	if (!s)
		return -EINVAL;
	colon = strrchr(s, ':');
	if (!colon || colon == s)
		return -EINVAL;
	hlen = (size_t)(colon - s);
	if (s[0] == '[') {
		/* [v6]:port */
		if (hlen < 3 || s[hlen - 1] != ']')
			return -EINVAL;
		h = s + 1;
		hlen -= 2;
	}
	if (hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (parse_unsigned(colon + 1, 1, 65535, &port) < 0 || colon[1] == '0')
		return -EINVAL;

	memset(ret, 0, sizeof(*ret));
	if (s[0] != '[') {
		struct sockaddr_in *in = (struct sockaddr_in *)ret;

		if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
			return -EINVAL;
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		*ret_len = sizeof(*in);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ret;

		if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
			return -EINVAL;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*ret_len = sizeof(*in6);
	}
	return 0;
}

/* --- files --- */

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
	struct stat st;
	size_t n = 0;
	ssize_t k;

	*ret_error = NULL;
	/* O_NONBLOCK: a FIFO planted in place of the file must not hang the daemon */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT && missing_ok)
			return 0;
		(void)asprintf(ret_error, "%s: %s", path, strerror(errno));
		return negative_errno();
	}
	if (fstat(fd, &st) < 0) {
		(void)asprintf(ret_error, "%s: %s", path, strerror(errno));
		return negative_errno();
	}
	if (!S_ISREG(st.st_mode)) {
		(void)asprintf(ret_error, "%s: not a regular file", path);
		return -EINVAL;
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

static int dropin_filter(const struct dirent *de)
{
	/* "*.conf", no hidden files (editor and package manager leftovers) */
	return de->d_name[0] != '.' && fnmatch("*.conf", de->d_name, 0) == 0;
}

int conf_load_all(struct conf *conf, const char *path, bool missing_ok, char **ret_error)
{
	_cleanup_free_ char *dir = NULL;
	struct dirent **names = NULL;
	int n, r;

	r = conf_load(conf, path, missing_ok, ret_error);
	if (r < 0)
		return r;
	if (asprintf(&dir, "%s.d", path) < 0) {
		dir = NULL;
		return -ENOMEM;
	}
	n = scandir(dir, &names, dropin_filter, alphasort);
	if (n < 0) {
		if (errno == ENOENT)
			return 0;
		r = negative_errno();
		(void)asprintf(ret_error, "%s: %s", dir, strerror(-r));
		return r;
	}
	if ((unsigned)n > IOPFD_DROPIN_MAX) {
		(void)asprintf(ret_error, "%s: more than %u drop-ins", dir, IOPFD_DROPIN_MAX);
		r = -E2BIG;
	}
	for (int i = 0; i < n; i++) {
		_cleanup_free_ char *file = NULL;

		if (r >= 0 && asprintf(&file, "%s/%s", dir, names[i]->d_name) < 0) {
			file = NULL;
			r = -ENOMEM;
		}
		if (r >= 0)
			r = conf_load(conf, file, false, ret_error);
		free(names[i]);
	}
	free(names);
	return r;
}
