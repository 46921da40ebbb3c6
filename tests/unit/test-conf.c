/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon/conf.c: every key, its bounds, and errors that name file:line and key;
 * the operations keys, exact printing (dump, diff, reload), drop-ins, and
 * hostile input: junk, binary, oversized and special files. Arbitrary contents
 * are tests/fuzz/fuzz-conf.c's.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include "unit-test.h"

#include "conf.h"
#include "util.h"

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* Parse @text into a fresh conf; returns the error (0 ok) and keeps the message. */
static int parse(struct conf *c, const char *text, char **err)
{
	assert_int_equal(conf_init(c), 0);
	return conf_parse_string(c, text, "t.conf", err);
}

static void expect_ok(const char *text, struct conf *ret)
{
	_cleanup_free_ char *err = NULL;

	if (parse(ret, text, &err) != 0)
		fail_msg("\"%s\" failed: %s", text, err ? err : "?");
}

static void expect_bad(const char *text, const char *msg)
{
	_cleanup_free_ char *err = NULL;
	struct conf c;
	int r = parse(&c, text, &err);

	if (r != -EINVAL || !err || !strstr(err, msg))
		fail_msg("\"%s\": r=%d \"%s\", wanted \"%s\"", text, r, err ? err : "(null)", msg);
	conf_done(&c);
}

static void test_defaults(void **state)
{
	struct conf c;

	assert_int_equal(conf_init(&c), 0);
	assert_int_equal(c.workers, 0);
	assert_string_equal(c.control_socket, IOPF_DEFAULT_SOCKET);
	assert_int_equal(c.fault_around, 65536);
	assert_int_equal(c.read_batch, 256);
	assert_false(c.allow_simulator);
	assert_false(c.system_bus);
	assert_int_equal(c.limits.max_sources, IOPF_CONTROL_DEFAULT_MAX_SOURCES);
	assert_int_equal(c.limits.max_domains, IOPF_CONTROL_DEFAULT_MAX_DOMAINS);
	assert_int_equal(c.limits.max_regions, IOPF_CONTROL_DEFAULT_MAX_REGIONS);
	assert_int_equal(c.log_level, LOG_INFO);
	assert_int_equal(c.log_target, CONF_LOG_AUTO);
	assert_int_equal(c.summary_usec, 10000000);
	assert_true(c.limits.max_pinned_bytes == UINT64_C(64) << 30);
	assert_string_equal(c.metrics_listen, "127.0.0.1:9577");
	assert_false(c.metrics_per_domain);
	assert_string_equal(c.metrics_readers, "iopf-exporter");
	conf_done(&c);
}

static void test_good(void **state)
{
	static const char text[] = "# comment\n"
				   "; another\n"
				   "[Daemon]\n"
				   "Workers = 8\n"
				   "ControlSocket=/run/x/ctl\n"
				   "FaultAround=2M\n"
				   "ReadBatch=0x40\n"
				   "AllowSimulator=yes\n"
				   "SystemBus=on\n"
				   "\n"
				   "[Limits]\n"
				   "MaxSources=1\n"
				   "MaxDomains=1000000\n"
				   "MaxRegions=77\n";
	_cleanup_free_ char *err = NULL;
	struct conf c;

	assert_int_equal(conf_init(&c), 0);
	assert_int_equal(conf_parse_string(&c, text, "t.conf", &err), 0);
	assert_null(err);
	assert_int_equal(c.workers, 8);
	assert_string_equal(c.control_socket, "/run/x/ctl");
	assert_int_equal(c.fault_around, 2 << 20);
	assert_int_equal(c.read_batch, 64);
	assert_true(c.allow_simulator);
	assert_true(c.system_bus);
	assert_int_equal(c.limits.max_sources, 1);
	assert_int_equal(c.limits.max_domains, 1000000);
	assert_int_equal(c.limits.max_regions, 77);
	conf_done(&c);
}

/* One table: each text must fail with exactly this message. */
static void test_bad(void **state)
{
	static const struct {
		const char *text, *msg;
	} cases[] = {
		{"[Daemon]\nWorkers=-1\n", "t.conf:2: Workers=-1: not a number between 0"},
		{"[Daemon]\nWorkers=1025\n", "t.conf:2: Workers=1025: not a number"},
		{"[Daemon]\nWorkers=4x\n", "t.conf:2: Workers=4x"},
		{"[Daemon]\nWorkers=\n", "t.conf:2: Workers=: not a number"},
		{"[Daemon]\nWorkers=99999999999999999999\n", "Workers=99999999999999999999"},
		{"[Daemon]\nControlSocket=run/x\n",
		 "t.conf:2: ControlSocket=run/x: not an absolute path"},
		{"[Daemon]\nFaultAround=4095\n", "FaultAround=4095: not a power of two"},
		{"[Daemon]\nFaultAround=12K\n", "FaultAround=12K: not a power of two"},
		{"[Daemon]\nFaultAround=2G\n", "FaultAround=2G: not a power of two"},
		{"[Daemon]\nFaultAround=99999999999999999G\n", "FaultAround="},
		{"[Daemon]\nFaultAround=K\n", "FaultAround=K"},
		{"[Daemon]\nReadBatch=0\n", "ReadBatch=0: not a number between 1 and 65536"},
		{"[Daemon]\nAllowSimulator=2\n", "AllowSimulator=2: not a boolean"},
		{"[Daemon]\nSystemBus=\n", "SystemBus=: not a boolean"},
		{"[Limits]\nMaxSources=0\n", "t.conf:2: MaxSources=0: not a number between 1 and"},
		{"[Limits]\nMaxDomains=1000001\n", "MaxDomains=1000001"},
		{"[Limits]\nMaxRegions=many\n", "MaxRegions=many"},
		{"[Daemon]\n\n\nFoo=1\n", "t.conf:4: unknown key Foo in section [Daemon]"},
		{"[Limits]\nWorkers=1\n", "t.conf:2: unknown key Workers in section [Limits]"},
		{"Workers=1\n", "t.conf:1: unknown key Workers in section []"},
		{"[Other]\nX=1\n", "unknown key X in section [Other]"},
		{"[Daemon\nWorkers=1\n", "t.conf:1: syntax error"},
		{"[Daemon]\njunk\n", "t.conf:2: syntax error"},
		/* the first error is the one reported */
		{"[Daemon]\nWorkers=1\nReadBatch=0\nWorkers=x\n", "t.conf:3: ReadBatch=0"},
		/* the operations keys */
		{"[Daemon]\nRefusedSummaryInterval=50ms\n", "RefusedSummaryInterval=50ms: not 0"},
		{"[Daemon]\nRefusedSummaryInterval=25h\n", "between 100ms and 24h"},
		{"[Daemon]\nRefusedSummaryInterval=1.5s\n", "RefusedSummaryInterval=1.5s"},
		{"[Daemon]\nRefusedSummaryInterval=-1s\n", "RefusedSummaryInterval=-1s"},
		{"[Daemon]\nRefusedSummaryInterval=5x\n", "RefusedSummaryInterval=5x"},
		{"[Daemon]\nRefusedSummaryInterval=s\n", "RefusedSummaryInterval=s"},
		{"[Daemon]\nRefusedSummaryInterval=99999999999999999999h\n",
		 "RefusedSummaryInterval="},
		{"[Daemon]\nRefusedSummaryInterval=9999999999999h\n", "RefusedSummaryInterval="},
		{"[Daemon]\nLogLevel=crit\n", "LogLevel=crit: not one of err"},
		{"[Daemon]\nLogLevel=7\n", "LogLevel=7"},
		{"[Daemon]\nLogTarget=syslog\n",
		 "LogTarget=syslog: not one of auto, journal, console"},
		{"[Limits]\nMaxPinnedBytes=0\n", "MaxPinnedBytes=0: not a size of at least 4096"},
		{"[Limits]\nMaxPinnedBytes=4095\n", "MaxPinnedBytes=4095"},
		{"[Limits]\nMaxPinnedBytes=lots\n", "MaxPinnedBytes=lots"},
		{"[Limits]\nMaxPinnedBytes=Infinity\n", "MaxPinnedBytes=Infinity"},
		{"[Limits]\nMaxPinnedBytes=18446744073709551615\n", "MaxPinnedBytes="},
		{"[Limits]\nMaxPinnedBytes=17179869184G\n", "MaxPinnedBytes="},
		{"[Metrics]\nPerDomain=maybe\n", "PerDomain=maybe: not a boolean"},
		{"[Metrics]\nListen=9577\n", "Listen=9577: not ADDRESS:PORT"},
		{"[Metrics]\nFoo=1\n", "unknown key Foo in section [Metrics]"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		expect_bad(cases[i].text, cases[i].msg);
}

static void test_long_line(void **state)
{
	char text[600];
	_cleanup_free_ char *err = NULL;
	struct conf c;

	snprintf(text, sizeof(text), "[Daemon]\nControlSocket=/%0500d\n", 0);
	assert_int_equal(conf_init(&c), 0);
	assert_int_equal(conf_parse_string(&c, text, "t.conf", &err), -EINVAL);
	assert_non_null(strstr(err, "t.conf:2: line longer than"));
	conf_done(&c);
}

static void test_socket_too_long(void **state)
{
	char path[140];
	_cleanup_free_ char *err = NULL;
	struct conf c;

	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	assert_int_equal(conf_init(&c), 0);
	assert_int_equal(conf_set(&c, "Daemon", "ControlSocket", path, &err), -EINVAL);
	assert_non_null(strstr(err, "longer than a unix socket path"));
	assert_string_equal(c.control_socket, IOPF_DEFAULT_SOCKET); /* unchanged */
	conf_done(&c);
}

static void test_load(void **state)
{
	char dir[] = "/tmp/test-conf-XXXXXX", path[64];
	_cleanup_free_ char *err = NULL;
	struct conf c;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/iopfd.conf", dir);
	assert_int_equal(conf_init(&c), 0);
	/* missing: fine for the default path, an error for an explicit one */
	assert_int_equal(conf_load(&c, path, true, &err), 0);
	assert_int_equal(conf_load(&c, path, false, &err), -ENOENT);
	assert_non_null(strstr(err, path));
	free(err);
	err = NULL;

	f = fopen(path, "w");
	fputs("[Daemon]\nWorkers=3\nReadBatch=nope\n", f);
	fclose(f);
	assert_int_equal(conf_load(&c, path, true, &err), -EINVAL);
	assert_non_null(strstr(err, ":3: ReadBatch=nope"));
	assert_non_null(strstr(err, path));
	free(err);
	err = NULL;

	/* a NUL byte is not text */
	f = fopen(path, "w");
	fwrite("[Daemon]\n\0Workers=1\n", 1, 20, f);
	fclose(f);
	assert_int_equal(conf_load(&c, path, true, &err), -EINVAL);
	assert_non_null(strstr(err, "NUL"));
	unlink(path);
	rmdir(dir);
	conf_done(&c);
}

/* conf/iopfd.conf lists every key, commented out at exactly its default. */
static void test_shipped_conf(void **state)
{
	static const char *const keys[] = {
		"Workers=",   "ControlSocket=", "FaultAround=", "ReadBatch=", "AllowSimulator=",
		"SystemBus=", "MaxSources=",	"MaxDomains=",	"MaxRegions="};
	const char *path = getenv("IOPFD_CONF");
	char text[8192], out[8192];
	_cleanup_free_ char *err = NULL;
	struct conf def, c;
	size_t n, o = 0;
	FILE *f;

	if (!path)
		skip();
	f = fopen(path, "re");
	assert_non_null(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	/* uncomment "#Key=value" lines, keep prose comments */
	for (size_t i = 0; i < n; i++) {
		bool line_start = i == 0 || text[i - 1] == '\n';

		if (line_start && text[i] == '#' && text[i + 1] >= 'A' && text[i + 1] <= 'Z')
			continue;
		out[o++] = text[i];
	}
	out[o] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (!strstr(out, keys[i]))
			fail_msg("%s does not list %s", path, keys[i]);

	assert_int_equal(conf_init(&def), 0);
	assert_int_equal(conf_init(&c), 0);
	if (conf_parse_string(&c, out, path, &err) < 0)
		fail_msg("%s", err);
	assert_int_equal(c.workers, def.workers);
	assert_string_equal(c.control_socket, def.control_socket);
	assert_int_equal(c.fault_around, def.fault_around);
	assert_int_equal(c.read_batch, def.read_batch);
	assert_int_equal(c.allow_simulator, def.allow_simulator);
	assert_int_equal(c.system_bus, def.system_bus);
	assert_memory_equal(&c.limits, &def.limits, sizeof(c.limits));
	conf_done(&c);
	conf_done(&def);
}

static void test_new_keys(void **state)
{
	static const struct {
		const char *line;
		uint64_t summary, pinned;
		int level;
	} good[] = {
		{"[Daemon]\nRefusedSummaryInterval=0\n", 0, UINT64_C(64) << 30, LOG_INFO},
		{"[Daemon]\nRefusedSummaryInterval=500ms\n", 500000, UINT64_C(64) << 30, LOG_INFO},
		{"[Daemon]\nRefusedSummaryInterval=2min\n", 120000000, UINT64_C(64) << 30,
		 LOG_INFO},
		{"[Daemon]\nRefusedSummaryInterval=1h\n", 3600000000, UINT64_C(64) << 30, LOG_INFO},
		{"[Daemon]\nRefusedSummaryInterval=30\n", 30000000, UINT64_C(64) << 30, LOG_INFO},
		{"[Daemon]\nRefusedSummaryInterval=100000us\n", 100000, UINT64_C(64) << 30,
		 LOG_INFO},
		{"[Limits]\nMaxPinnedBytes=infinity\n", 10000000, UINT64_MAX, LOG_INFO},
		{"[Limits]\nMaxPinnedBytes=1T\n", 10000000, UINT64_C(1) << 40, LOG_INFO},
		{"[Limits]\nMaxPinnedBytes=4096\n", 10000000, 4096, LOG_INFO},
		{"[Daemon]\nLogLevel=debug\n", 10000000, UINT64_C(64) << 30, LOG_DEBUG},
		{"[Daemon]\nLogLevel=error\n", 10000000, UINT64_C(64) << 30, LOG_ERR},
		{"[Daemon]\nLogLevel=warning\n", 10000000, UINT64_C(64) << 30, LOG_WARNING},
	};

	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		struct conf c;

		expect_ok(good[i].line, &c);
		assert_int_equal(c.summary_usec, good[i].summary);
		assert_true(c.limits.max_pinned_bytes == good[i].pinned);
		assert_int_equal(c.log_level, good[i].level);
		conf_done(&c);
	}
}

static void test_listen(void **state)
{
	static const char *const good[] = {"127.0.0.1:9577", "0.0.0.0:1",      "[::1]:65535",
					   "[::]:80",	     "[fe80::1]:9100", "10.1.2.3:8080"};
	static const char *const bad[] = {
		"",
		":9577",
		"127.0.0.1",
		"127.0.0.1:",
		"127.0.0.1:0",
		"127.0.0.1:08",
		"127.0.0.1:65536",
		"127.0.0.1:-1",
		"localhost:9577",
		"::1:9577",
		"[::1]",
		"[::1]9577",
		"[127.0.0.1]:80",
		"[]:80",
		"1.2.3.4.5:80",
		"127.0.0.1:0x50",
		"[::1]:80 ",
		"127.0.0.1:80:80",
	};
	struct sockaddr_storage ss;
	socklen_t len;

	for (size_t i = 0; i < ARRAY_SIZE(good); i++)
		if (conf_parse_listen(good[i], &ss, &len) != 0)
			fail_msg("%s refused", good[i]);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (conf_parse_listen(bad[i], &ss, &len) != -EINVAL)
			fail_msg("%s accepted", bad[i]);
	assert_int_equal(conf_parse_listen("[::1]:9577", &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_int_equal(conf_parse_listen(NULL, &ss, &len), -EINVAL);
}

static void note_missing(const char *name, void *userdata)
{
	char *seen = userdata;

	(void)strncat(seen, name, 63 - strlen(seen));
	(void)strncat(seen, ";", 63 - strlen(seen));
}

/* [Metrics] Readers=: names and uids, kept normalized; resolved at the caller's time. */
static void test_readers(void **state)
{
	char many[IOPF_CONTROL_READERS_MAX * 3 + 8] = "", seen[64] = "";
	uid_t uids[IOPF_CONTROL_READERS_MAX];
	struct conf c;

	expect_ok("[Metrics]\nReaders=  42\troot  no-such-user_x 0 \n", &c);
	assert_string_equal(c.metrics_readers, "42 root no-such-user_x 0");
	assert_int_equal(conf_resolve_readers(&c, uids, note_missing, seen), 3);
	assert_int_equal(uids[0], 42);
	assert_int_equal(uids[1], 0); /* root */
	assert_int_equal(uids[2], 0);
	assert_string_equal(seen, "no-such-user_x;");
	conf_done(&c);

	expect_ok("[Metrics]\nReaders=\n", &c); /* root alone */
	assert_string_equal(c.metrics_readers, "");
	assert_int_equal(conf_resolve_readers(&c, uids, NULL, NULL), 0);
	conf_done(&c);

	expect_ok("[Metrics]\nReaders=4294967294 _svc a.b-c\n", &c);
	assert_int_equal(conf_resolve_readers(&c, uids, NULL, NULL), 1);
	assert_int_equal(uids[0], 4294967294u);
	conf_done(&c);

	expect_bad("[Metrics]\nReaders=4294967295\n", "Readers=4294967295: not a space-separated");
	expect_bad("[Metrics]\nReaders=-1\n", "not a space-separated list");
	expect_bad("[Metrics]\nReaders=01\n", "not a space-separated list");
	expect_bad("[Metrics]\nReaders=a,b\n", "not a space-separated list");
	expect_bad("[Metrics]\nReaders=9user\n", "not a space-separated list");
	expect_bad("[Metrics]\nReaders=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
		   "not a space-separated");

	for (unsigned i = 0; i <= IOPF_CONTROL_READERS_MAX; i++)
		(void)snprintf(many + strlen(many), sizeof(many) - strlen(many), "%u ", i % 10);
	{
		_cleanup_free_ char *text = NULL;

		assert_true(asprintf(&text, "[Metrics]\nReaders=%s\n", many) > 0);
		expect_bad(text, "at most 64 user names or uids");
	}
	many[strlen(many) - 2] = '\0'; /* 64 now */
	{
		_cleanup_free_ char *text = NULL;

		assert_true(asprintf(&text, "[Metrics]\nReaders=%s\n", many) > 0);
		expect_ok(text, &c);
		assert_int_equal(conf_resolve_readers(&c, uids, NULL, NULL),
				 IOPF_CONTROL_READERS_MAX);
		conf_done(&c);
	}
	{
		/* longer than a file's line may be; conf_set() takes it (the command line) */
		_cleanup_free_ char *err = NULL;
		char longer[300] = "";

		for (unsigned i = 0; i < 9; i++)
			strcat(longer, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa ");
		assert_int_equal(conf_init(&c), 0);
		assert_int_equal(conf_set(&c, "Metrics", "Readers", longer, &err), -EINVAL);
		assert_string_equal(err, "longer than 255 bytes");
		assert_string_equal(c.metrics_readers, "iopf-exporter"); /* unchanged */
		conf_done(&c);
	}
}

/* What --dump-config prints parses back to the same configuration. */
static void test_dump_round_trip(void **state)
{
	static const char text[] = "[Daemon]\nWorkers=6\nFaultAround=2M\nReadBatch=100\n"
				   "LogLevel=notice\nLogTarget=console\n"
				   "RefusedSummaryInterval=1500ms\n"
				   "[Limits]\nMaxPinnedBytes=3000000\nMaxRegions=9\n"
				   "[Metrics]\nListen=[::1]:9100\nPerDomain=no\n";
	_cleanup_free_ char *dump = NULL, *dump2 = NULL, *err = NULL;
	size_t len = 0;
	struct conf a, b;
	FILE *f;

	expect_ok(text, &a);
	f = open_memstream(&dump, &len);
	conf_dump(&a, f);
	fclose(f);
	assert_non_null(strstr(dump, "RefusedSummaryInterval=1500ms\n"));
	assert_non_null(strstr(dump, "FaultAround=2M\n"));
	assert_non_null(strstr(dump, "MaxPinnedBytes=3000000\n"));
	assert_non_null(strstr(dump, "[Metrics]\nListen=[::1]:9100\nPerDomain=no\n"));
	assert_int_equal(parse(&b, dump, &err), 0);
	f = open_memstream(&dump2, &len);
	conf_dump(&b, f);
	fclose(f);
	assert_string_equal(dump, dump2);
	conf_done(&a);
	conf_done(&b);
}

struct change {
	char key[32], old_value[32], new_value[32];
	enum conf_apply apply;
};

struct changes {
	struct change v[16];
	unsigned n;
};

static void on_change(const char *section, const char *key, const char *old_value,
		      const char *new_value, enum conf_apply apply, void *userdata)
{
	struct changes *c = userdata;

	assert_true(c->n < 16);
	snprintf(c->v[c->n].key, 32, "%s", key);
	snprintf(c->v[c->n].old_value, 32, "%s", old_value);
	snprintf(c->v[c->n].new_value, 32, "%s", new_value);
	c->v[c->n].apply = apply;
	c->n++;
}

/* Reload: which keys changed, from what to what, and how they apply. */
static void test_diff(void **state)
{
	struct changes ch = {};
	struct conf a, b;

	expect_ok("[Daemon]\nWorkers=2\nFaultAround=64K\n[Limits]\nMaxSources=4\n", &a);
	expect_ok("[Daemon]\nWorkers=3\nFaultAround=128K\n[Limits]\nMaxSources=4\n"
		  "MaxPinnedBytes=infinity\n[Metrics]\nPerDomain=yes\n",
		  &b);
	conf_diff(&a, &b, on_change, &ch);
	assert_int_equal(ch.n, 4);
	assert_string_equal(ch.v[0].key, "Workers");
	assert_int_equal(ch.v[0].apply, CONF_APPLY_RESTART);
	assert_string_equal(ch.v[1].key, "FaultAround");
	assert_string_equal(ch.v[1].old_value, "64K");
	assert_string_equal(ch.v[1].new_value, "128K");
	assert_int_equal(ch.v[1].apply, CONF_APPLY_LIVE);
	assert_string_equal(ch.v[2].key, "MaxPinnedBytes");
	assert_string_equal(ch.v[2].new_value, "infinity");
	assert_int_equal(ch.v[2].apply, CONF_APPLY_NEW);
	assert_string_equal(ch.v[3].key, "PerDomain");
	assert_int_equal(ch.v[3].apply, CONF_APPLY_EXPORTER);

	/* a change applied through conf_set() from the printed value leaves nothing to diff */
	for (unsigned i = 0; i < ch.n; i++) {
		_cleanup_free_ char *err = NULL;
		const char *section = i == 2 ? "Limits" : i == 3 ? "Metrics" : "Daemon";

		assert_int_equal(conf_set(&a, section, ch.v[i].key, ch.v[i].new_value, &err), 0);
	}
	ch.n = 0;
	conf_diff(&a, &b, on_change, &ch);
	assert_int_equal(ch.n, 0);
	conf_done(&a);
	conf_done(&b);
}

struct tmpdir {
	char dir[64], conf[96], dropins[104];
};

static void tmpdir_make(struct tmpdir *t)
{
	strcpy(t->dir, "/tmp/test-conf-XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	snprintf(t->conf, sizeof(t->conf), "%s/iopfd.conf", t->dir);
	snprintf(t->dropins, sizeof(t->dropins), "%s.d", t->conf);
}

static void tmpdir_remove(struct tmpdir *t)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
	assert_int_equal(system(cmd), 0);
}

static void dropin(struct tmpdir *t, const char *name, const char *text)
{
	char path[200];

	(void)mkdir(t->dropins, 0755);
	snprintf(path, sizeof(path), "%s/%s", t->dropins, name);
	write_file(path, text);
}

static void test_dropins(void **state)
{
	_cleanup_free_ char *err = NULL;
	struct tmpdir t;
	struct conf c;

	tmpdir_make(&t);
	/* no main file, no directory: defaults */
	assert_int_equal(conf_init(&c), 0);
	assert_int_equal(conf_load_all(&c, t.conf, true, &err), 0);
	assert_int_equal(c.workers, 0);
	/* drop-ins without a main file still count */
	dropin(&t, "20-b.conf", "[Daemon]\nWorkers=5\n");
	dropin(&t, "10-a.conf", "[Daemon]\nWorkers=4\nReadBatch=7\n");
	dropin(&t, ".hidden.conf", "junk\n");
	dropin(&t, "30-c.conf.rpmsave", "junk\n");
	dropin(&t, "README", "junk\n");
	assert_int_equal(conf_load_all(&c, t.conf, true, &err), 0);
	assert_int_equal(c.workers, 5); /* name order: 20-b.conf last */
	assert_int_equal(c.read_batch, 7);
	/* the main file first, drop-ins over it */
	write_file(t.conf, "[Daemon]\nWorkers=1\nFaultAround=8K\n");
	conf_done(&c);
	assert_int_equal(conf_init(&c), 0);
	assert_int_equal(conf_load_all(&c, t.conf, false, &err), 0);
	assert_int_equal(c.workers, 5);
	assert_int_equal(c.fault_around, 8192);
	/* an error names its drop-in and line */
	dropin(&t, "40-bad.conf", "[Daemon]\n\nWorkers=lots\n");
	assert_int_equal(conf_load_all(&c, t.conf, false, &err), -EINVAL);
	assert_non_null(strstr(err, "iopfd.conf.d/40-bad.conf:3: Workers=lots"));
	conf_done(&c);
	tmpdir_remove(&t);
}

/* Things that are not configuration files where one is expected. */
static void test_hostile_files(void **state)
{
	_cleanup_free_ char *big = NULL;
	char path[200];
	struct tmpdir t;
	struct conf c;
	char *err = NULL;
	int fd;

	tmpdir_make(&t);
	assert_int_equal(conf_init(&c), 0);

	/* a FIFO must not block the daemon (nobody ever writes it) */
	assert_int_equal(mkfifo(t.conf, 0644), 0);
	assert_int_equal(conf_load(&c, t.conf, false, &err), -EINVAL);
	assert_non_null(strstr(err, "not a regular file"));
	free(err), err = NULL;
	unlink(t.conf);

	/* a directory, a device */
	assert_int_equal(mkdir(t.conf, 0755), 0);
	assert_int_equal(conf_load(&c, t.conf, false, &err), -EINVAL);
	free(err), err = NULL;
	rmdir(t.conf);
	assert_int_equal(conf_load(&c, "/dev/zero", false, &err), -EINVAL);
	free(err), err = NULL;

	/* a drop-in that is a directory */
	snprintf(path, sizeof(path), "%s/50-dir.conf", t.dropins);
	(void)mkdir(t.dropins, 0755);
	assert_int_equal(mkdir(path, 0755), 0);
	assert_int_equal(conf_load_all(&c, t.conf, true, &err), -EINVAL);
	assert_non_null(strstr(err, "50-dir.conf: not a regular file"));
	free(err), err = NULL;
	rmdir(path);

	/* too many drop-ins */
	for (unsigned i = 0; i <= IOPFD_DROPIN_MAX; i++) {
		char name[32];

		snprintf(name, sizeof(name), "%04u.conf", i);
		dropin(&t, name, "");
	}
	assert_int_equal(conf_load_all(&c, t.conf, true, &err), -E2BIG);
	assert_non_null(strstr(err, "more than 128 drop-ins"));
	free(err), err = NULL;
	tmpdir_remove(&t);

	/* larger than any sane configuration */
	tmpdir_make(&t);
	big = malloc(70 * 1024 + 1);
	memset(big, '#', 70 * 1024);
	big[70 * 1024] = '\0';
	write_file(t.conf, big);
	assert_int_equal(conf_load(&c, t.conf, false, &err), -EFBIG);
	free(err), err = NULL;

	/* unreadable: the error names the file (root reads anything: skip that part) */
	if (geteuid() != 0) {
		write_file(t.conf, "");
		assert_int_equal(chmod(t.conf, 0), 0);
		assert_int_equal(conf_load(&c, t.conf, false, &err), -EACCES);
		free(err), err = NULL;
	}
	fd = open(t.conf, O_WRONLY | O_TRUNC | O_CLOEXEC);
	assert_true(fd >= 0);
	close(fd);
	conf_done(&c);
	tmpdir_remove(&t);
}

/* Text that is odd but is configuration, and text that is not. */
static void test_hostile_text(void **state)
{
	static const struct {
		const char *text;
		int ok;
	} cases[] = {
		{"[Daemon]\r\nWorkers=3\r\n", 1},	  /* CRLF */
		{"\xef\xbb\xbf[Daemon]\nWorkers=3\n", 1}, /* UTF-8 BOM */
		{"  [Daemon]  \n  Workers  =  3  \n", 1},
		{"[Daemon]\nWorkers=1\nWorkers=3\n", 1}, /* the last one wins */
		{"[Daemon]\n[Daemon]\nWorkers=3\n", 1},
		{"[Daemon]\nWorkers=3 ; comment\n", 1},
		{"[Daemon]\nWorkers=3 # not a comment\n", 0},
		{"[Daemon]\n=3\n", 0},
		{"[Daemon]\nWorkers\n", 0},
		{"[Dae\x01mon]\nWorkers=3\n", 0},
		{"[Daemon]\nWork\xff"
		 "ers=3\n",
		 0},
		{"[Daemon]\nControlSocket=/run/\xff\xfe\n", 1}, /* a path is bytes */
		{"[Daemon]\nWorkers=\xd9\xa3\n", 0},		/* an Arabic-Indic three */
		{"[]\nWorkers=3\n", 0},
		{"[Daemon]]\nWorkers=3\n", 1}, /* inih reads the name up to the first ']' */
		{"[Daemon]\nWorkers=3\n[", 0},
		{"[Limits]\nMaxPinnedBytes=1G\x00junk\n", 1}, /* a string ends at NUL */
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *err = NULL;
		struct conf c;
		int r = parse(&c, cases[i].text, &err);

		if (cases[i].ok && r != 0)
			fail_msg("case %zu refused: %s", i, err ? err : "?");
		if (!cases[i].ok && (r != -EINVAL || !err || !strstr(err, "t.conf:")))
			fail_msg("case %zu: r=%d err=%s", i, r, err ? err : "(null)");
		if (cases[i].ok && strstr(cases[i].text, "Workers"))
			assert_int_equal(c.workers, 3);
		conf_done(&c);
	}
}

/*
 * conf/iopfd.conf lists every key of the table, commented out at exactly its
 * default as --dump-config prints it, in its section.
 */
static void test_shipped_conf_complete(void **state)
{
	const char *path = getenv("IOPFD_CONF");
	_cleanup_free_ char *dump = NULL, *text = NULL, *err = NULL;
	const char *section = NULL;
	size_t len = 0;
	struct conf c;
	char *line, *save;
	FILE *f;

	if (!path)
		skip();
	f = fopen(path, "re");
	assert_non_null(f);
	text = calloc(1, 65536);
	assert_int_equal(fread(text, 1, 65535, f) > 0, 1);
	fclose(f);
	/* the file itself is valid as shipped */
	assert_int_equal(conf_init(&c), 0);
	assert_int_equal(conf_parse_string(&c, text, path, &err), 0);

	f = open_memstream(&dump, &len);
	conf_dump(&c, f);
	fclose(f);
	conf_done(&c);
	for (line = strtok_r(dump, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char want[300];
		const char *at, *next;

		if (line[0] == '[') {
			snprintf(want, sizeof(want), "\n%s\n", line);
			section = strstr(text, want);
			if (!section)
				fail_msg("%s has no %s", path, line);
			continue;
		}
		snprintf(want, sizeof(want), "\n#%s\n", line);
		at = strstr(text, want);
		if (!at)
			fail_msg("%s does not list \"#%s\"", path, line);
		/* in the right section: after its header, before the next one */
		next = section ? strstr(section + 1, "\n[") : NULL;
		assert_true(section && at > section && (!next || at < next));
	}
}

TEST_MAIN(cmocka_unit_test(test_defaults), cmocka_unit_test(test_good), cmocka_unit_test(test_bad),
	  cmocka_unit_test(test_long_line), cmocka_unit_test(test_socket_too_long),
	  cmocka_unit_test(test_load), cmocka_unit_test(test_shipped_conf),
	  cmocka_unit_test(test_new_keys), cmocka_unit_test(test_listen),
	  cmocka_unit_test(test_readers), cmocka_unit_test(test_dump_round_trip),
	  cmocka_unit_test(test_diff), cmocka_unit_test(test_dropins),
	  cmocka_unit_test(test_hostile_files), cmocka_unit_test(test_hostile_text),
	  cmocka_unit_test(test_shipped_conf_complete));
