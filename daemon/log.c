/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <systemd/sd-journal.h>

#include "iopf/iopf.h"
#include "log.h"
#include "time-util.h"

int log_max_level = LOG_INFO;
static bool log_journal;       /* entries go to sd_journal_sendv() */
static bool log_null;	       /* entries go nowhere */
static bool log_prefix_levels; /* stderr is a journal stream: "<N>" prefixes keep levels */
static enum log_target log_target_chosen = LOG_TARGET_AUTO;

static const char *const level_names[] = {
	[LOG_EMERG] = "emerg", [LOG_ALERT] = "alert",	  [LOG_CRIT] = "crit",
	[LOG_ERR] = "err",     [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
	[LOG_INFO] = "info",   [LOG_DEBUG] = "debug",
};

static const char *const target_names[_LOG_TARGET_MAX] = {
	[LOG_TARGET_AUTO] = "auto",
	[LOG_TARGET_JOURNAL] = "journal",
	[LOG_TARGET_CONSOLE] = "console",
	[LOG_TARGET_NULL] = "null",
};

const char *log_level_to_string(int level)
{
	return level >= 0 && level < (int)ARRAY_SIZE(level_names) ? level_names[level] : NULL;
}

const char *log_target_to_string(enum log_target target)
{
	return (unsigned)target < _LOG_TARGET_MAX ? target_names[target] : NULL;
}

int log_target_from_string(const char *s)
{
	for (int i = 0; s && i < _LOG_TARGET_MAX; i++)
		if (strcmp(s, target_names[i]) == 0)
			return i;
	return -EINVAL;
}

int log_level_from_string(const char *s)
{
	if (!s)
		return -EINVAL;
	if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0')
		return s[0] - '0';
	if (strcmp(s, "error") == 0)
		return LOG_ERR;
	for (int i = 0; i < (int)ARRAY_SIZE(level_names); i++)
		if (strcmp(s, level_names[i]) == 0)
			return i;
	return -EINVAL;
}

/* $JOURNAL_STREAM is "DEV:INODE" of the stream systemd connected to stderr. */
static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_set_target(enum log_target target)
{
	bool stream = stderr_is_journal();

	log_target_chosen = target;
	log_prefix_levels = stream;
	log_null = false;
	switch (target) {
	case LOG_TARGET_AUTO:
		/* started by systemd (even with stderr elsewhere), or stderr is the journal */
		log_journal = stream || getenv("INVOCATION_ID");
		break;
	case LOG_TARGET_JOURNAL:
		log_journal = true;
		break;
	case LOG_TARGET_CONSOLE:
		log_journal = false;
		break;
	case LOG_TARGET_NULL:
	case _LOG_TARGET_MAX:
		log_journal = false;
		log_null = true;
		break;
	}
	/* sd_journal_send() drops entries silently when journald is not there: keep them */
	if (access(LOG_JOURNAL_SOCKET, F_OK) < 0)
		log_journal = false;
}

enum log_target log_get_target(void)
{
	return log_target_chosen;
}

void log_set_max_level(int level)
{
	if (level >= LOG_EMERG && level <= LOG_DEBUG)
		log_max_level = level;
}

void log_setup(enum log_target target, int level)
{
	int env = log_level_from_string(getenv("IOPFD_LOG_LEVEL"));

	log_max_level = env >= 0 ? env : level;
	log_set_target(target);
}

bool log_to_journal(void)
{
	return log_journal;
}

_printf_(3, 4) static void field(struct log_entry *e, size_t *k, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*k >= ARRAY_SIZE(e->fields) || e->n >= LOG_FIELDS_MAX)
		return;
	va_start(ap, fmt);
	n = vsnprintf(e->fields[*k], sizeof(e->fields[*k]), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(e->fields[*k]))
		n = sizeof(e->fields[*k]) - 1;
	e->iov[e->n++] = (struct iovec){e->fields[*k], (size_t)n};
	(*k)++;
}

/* Journal field values are text up to the end of the iovec; keep them on one line. */
static const char *one_line(const char *s, char *buf, size_t size)
{
	size_t i;

	for (i = 0; s[i] && i + 1 < size; i++)
		buf[i] = s[i] == '\n' ? ' ' : s[i];
	buf[i] = '\0';
	return buf;
}

void log_entry_build(struct log_entry *e, int level, int error, const struct log_ids *ids,
		     const char *file, int line, const char *func, const char *message)
{
	char reason[48], unit[112];
	size_t k = 0;
	int n;

	e->n = 0;
	n = snprintf(e->message, sizeof(e->message), "MESSAGE=%s", message);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(e->message))
		n = sizeof(e->message) - 1;
	e->iov[e->n++] = (struct iovec){e->message, (size_t)n};
	field(e, &k, "PRIORITY=%d", level);
	field(e, &k, "SYSLOG_IDENTIFIER=iopfd");
	if (error)
		field(e, &k, "ERRNO=%d", error < 0 ? -error : error);
	if (file) {
		field(e, &k, "CODE_FILE=%s", file);
		field(e, &k, "CODE_LINE=%d", line);
		field(e, &k, "CODE_FUNC=%s", func);
	}
	if (!ids)
		return;
	if (ids->message_id)
		field(e, &k, "MESSAGE_ID=%s", ids->message_id);
	if (ids->tenant)
		field(e, &k, "IOPF_TENANT=%" PRIu64, ids->tenant);
	if (ids->has_peer) {
		field(e, &k, "IOPF_TENANT_UID=%" PRIu32, ids->uid);
		field(e, &k, "IOPF_TENANT_PID=%" PRIu32, ids->pid);
	}
	if (ids->unit)
		field(e, &k, "IOPF_TENANT_UNIT=%s", one_line(ids->unit, unit, sizeof(unit)));
	if (ids->name)
		field(e, &k, "IOPF_TENANT_NAME=%s", one_line(ids->name, unit, sizeof(unit)));
	if (ids->source)
		field(e, &k, "IOPF_SOURCE=%" PRIu64, ids->source);
	if (ids->domain)
		field(e, &k, "IOPF_DOMAIN=%" PRIu64, ids->domain);
	if (ids->has_dev_id)
		field(e, &k, "IOPF_DEV_ID=%" PRIu32, ids->dev_id);
	if (ids->has_pasid) {
		if (ids->pasid == IOPF_PASID_NONE)
			field(e, &k, "IOPF_PASID=none");
		else
			field(e, &k, "IOPF_PASID=%" PRIu32, ids->pasid);
	}
	if (ids->reason)
		field(e, &k, "IOPF_REASON=%s", one_line(ids->reason, reason, sizeof(reason)));
	if (ids->event)
		field(e, &k, "IOPF_EVENT=%s", one_line(ids->event, reason, sizeof(reason)));
}

static void to_stderr(int level, const char *buf)
{
	if (log_prefix_levels)
		fprintf(stderr, "<%d>%s\n", level, buf);
	else
		fprintf(stderr, "iopfd: %s%s\n",
			level <= LOG_ERR       ? "error: "
			: level == LOG_WARNING ? "warning: "
					       : "",
			buf);
}

int log_internal(int level, int error, const struct log_ids *ids, const char *file, int line,
		 const char *func, const char *fmt, ...)
{
	int saved = errno;
	char buf[1024];
	va_list ap;

	if (error < 0)
		error = -error;
	if (level > log_max_level || log_null)
		goto out;

	errno = error; /* for %m */
	va_start(ap, fmt);
	(void)vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);

	if (log_journal) {
		struct log_entry e;

		log_entry_build(&e, level, error, ids, file, line, func, buf);
		if (sd_journal_sendv(e.iov, (int)e.n) >= 0)
			goto out;
		/* journald refused it (too big, gone): do not lose it */
	}
	to_stderr(level, buf);
out:
	errno = saved;
	return -error;
}

int ratelimit_below(struct ratelimit *rl)
{
	uint64_t now = mono_ns() / NSEC_PER_USEC;
	int dropped;

	if (rl->begin == 0 || now - rl->begin >= rl->interval_usec) {
		rl->begin = now;
		rl->n = 0;
	}
	if (rl->n >= rl->burst) {
		rl->suppressed++;
		return -1;
	}
	rl->n++;
	dropped = (int)rl->suppressed;
	rl->suppressed = 0;
	return dropped;
}
