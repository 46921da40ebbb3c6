/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* daemon/conf.c: every key, its bounds, and errors that name file:line and key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "conf.h"
#include "util.h"

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
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *err = NULL;
		struct conf c;
		int r;

		assert_int_equal(conf_init(&c), 0);
		r = conf_parse_string(&c, cases[i].text, "t.conf", &err);
		if (r != -EINVAL || !err || !strstr(err, cases[i].msg))
			fail_msg("case %zu: r=%d \"%s\", wanted \"%s\"", i, r, err ? err : "(null)",
				 cases[i].msg);
		conf_done(&c);
	}
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_long_line),
		cmocka_unit_test(test_socket_too_long),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_shipped_conf),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
