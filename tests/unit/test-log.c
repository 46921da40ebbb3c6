/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon/log.c: when entries go to the journal, the structured fields of an
 * entry, stderr formats and the rate limiter.
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "unit-test.h"

#include "iopf/iopf.h"
#include "log.h"

/* The entry's fields as one "A=1|B=2|" string. */
static void fields_of(const struct log_entry *e, char *buf, size_t size)
{
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < e->n; i++)
		len += snprintf(buf + len, size - len, "%.*s|", (int)e->iov[i].iov_len,
				(const char *)e->iov[i].iov_base);
}

static void test_entry_fields(void **state)
{
	const struct log_ids ids = {
		.tenant = 3,
		.source = 5,
		.domain = 7,
		.has_dev_id = true,
		.dev_id = 2,
		.has_pasid = true,
		.pasid = 0x10,
		.reason = "permission",
		.event = "refused-summary",
	};
	struct log_entry e;
	char f[2048];

	log_entry_build(&e, LOG_NOTICE, -EPERM, &ids, "bus.c", 42, "method_x", "hello");
	fields_of(&e, f, sizeof(f));
	assert_string_equal(f, "MESSAGE=hello|PRIORITY=5|SYSLOG_IDENTIFIER=iopfd|ERRNO=1|"
			       "CODE_FILE=bus.c|CODE_LINE=42|CODE_FUNC=method_x|IOPF_TENANT=3|"
			       "IOPF_SOURCE=5|IOPF_DOMAIN=7|IOPF_DEV_ID=2|IOPF_PASID=16|"
			       "IOPF_REASON=permission|IOPF_EVENT=refused-summary|");

	/* unset identities are left out; no PASID says so */
	log_entry_build(&e, LOG_INFO, 0,
			&(const struct log_ids){.has_pasid = true, .pasid = IOPF_PASID_NONE}, NULL,
			0, NULL, "x");
	fields_of(&e, f, sizeof(f));
	assert_string_equal(f, "MESSAGE=x|PRIORITY=6|SYSLOG_IDENTIFIER=iopfd|IOPF_PASID=none|");

	/* dev_id 0 and PASID 0 are real values when flagged */
	log_entry_build(&e, LOG_INFO, 0,
			&(const struct log_ids){.has_dev_id = true, .has_pasid = true}, NULL, 0,
			NULL, "x");
	fields_of(&e, f, sizeof(f));
	assert_non_null(strstr(f, "IOPF_DEV_ID=0|IOPF_PASID=0|"));
}

/* Field values cannot carry newlines (that would forge fields) or overflow. */
static void test_entry_hostile(void **state)
{
	char big[4000], f[8192];
	struct log_entry e;

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_entry_build(&e, LOG_ERR, 0, &(const struct log_ids){.reason = "a\nIOPF_TENANT=0"}, big,
			1, big, big);
	assert_true(e.n <= LOG_FIELDS_MAX);
	for (size_t i = 0; i < e.n; i++) {
		const char *v = e.iov[i].iov_base;

		assert_true(e.iov[i].iov_len < sizeof(e.message));
		if (strncmp(v, "IOPF_REASON=", 12) == 0)
			assert_null(memchr(v, '\n', e.iov[i].iov_len));
	}
	fields_of(&e, f, sizeof(f));
	assert_non_null(strstr(f, "IOPF_REASON=a IOPF_TENANT=0|"));
	assert_null(strstr(f, "|IOPF_TENANT=0|"));
}

static int capture_stderr(FILE **ret)
{
	FILE *f = tmpfile();
	int saved = dup(STDERR_FILENO);

	assert_non_null(f);
	fflush(stderr);
	assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
	*ret = f;
	return saved;
}

static void restore_stderr(int saved, FILE *f, char *buf, size_t size)
{
	size_t n;

	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(f);
	n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	fclose(f);
}

/*
 * The journal under systemd: $INVOCATION_ID, or $JOURNAL_STREAM naming our
 * stderr; and only when journald listens (else entries would vanish).
 */
static void test_target(void **state)
{
	bool journald = access(LOG_JOURNAL_SOCKET, F_OK) == 0;
	char stream[64], out[1024];
	struct stat st;
	FILE *f;
	int saved;

	unsetenv("INVOCATION_ID");
	unsetenv("JOURNAL_STREAM");
	unsetenv("IOPFD_LOG_LEVEL");
	log_setup(LOG_TARGET_AUTO, LOG_INFO);
	assert_false(log_to_journal());

	setenv("INVOCATION_ID", "0123456789abcdef0123456789abcdef", 1);
	log_setup(LOG_TARGET_AUTO, LOG_INFO);
	assert_int_equal(log_to_journal(), journald);
	log_setup(LOG_TARGET_JOURNAL, LOG_INFO);
	assert_int_equal(log_to_journal(), journald);
	log_setup(LOG_TARGET_CONSOLE, LOG_INFO);
	assert_false(log_to_journal());
	unsetenv("INVOCATION_ID");

	/* a stale $JOURNAL_STREAM (stderr redirected since) is not the journal */
	setenv("JOURNAL_STREAM", "1:2", 1);
	log_setup(LOG_TARGET_AUTO, LOG_INFO);
	assert_false(log_to_journal());

	saved = capture_stderr(&f);
	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	snprintf(stream, sizeof(stream), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", stream, 1);
	log_setup(LOG_TARGET_AUTO, LOG_NOTICE);
	assert_int_equal(log_to_journal(), journald);
	log_info("dropped: below the level");
	log_warning("kept %d", 1);
	restore_stderr(saved, f, out, sizeof(out));
	assert_null(strstr(out, "dropped"));
	/* without journald the entry goes to the stream, with its level for journald */
	if (!journald)
		assert_non_null(strstr(out, "<4>kept 1\n"));
	unsetenv("JOURNAL_STREAM");

	/* $IOPFD_LOG_LEVEL wins over the configuration */
	setenv("IOPFD_LOG_LEVEL", "debug", 1);
	log_setup(LOG_TARGET_CONSOLE, LOG_ERR);
	assert_int_equal(log_max_level, LOG_DEBUG);
	unsetenv("IOPFD_LOG_LEVEL");
}

static void test_console_format(void **state)
{
	char out[1024];
	FILE *f;
	int saved, r;

	log_setup(LOG_TARGET_CONSOLE, LOG_INFO);
	saved = capture_stderr(&f);
	r = log_error_errno(-ENOENT, "Cannot open %s: %m", "x");
	log_warning("careful");
	log_tenant(LOG_NOTICE, 4, "tenant says %s", "hi");
	restore_stderr(saved, f, out, sizeof(out));
	assert_int_equal(r, -ENOENT);
	assert_string_equal(out, "iopfd: error: Cannot open x: No such file or directory\n"
				 "iopfd: warning: careful\n"
				 "iopfd: tenant says hi\n");
}

static void test_ratelimit(void **state)
{
	struct ratelimit rl = RATELIMIT_INIT(UINT64_C(3600) * 1000000, 3);

	assert_int_equal(ratelimit_below(&rl), 0);
	assert_int_equal(ratelimit_below(&rl), 0);
	assert_int_equal(ratelimit_below(&rl), 0);
	for (unsigned i = 0; i < 5; i++)
		assert_int_equal(ratelimit_below(&rl), -1);
	assert_int_equal(rl.suppressed, 5);
	/* a new period: the first one through says how many were dropped */
	rl.begin -= rl.interval_usec;
	assert_int_equal(ratelimit_below(&rl), 5);
	assert_int_equal(ratelimit_below(&rl), 0);
}

TEST_MAIN(cmocka_unit_test(test_entry_fields), cmocka_unit_test(test_entry_hostile),
	  cmocka_unit_test(test_target), cmocka_unit_test(test_console_format),
	  cmocka_unit_test(test_ratelimit));
