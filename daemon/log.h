/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Daemon logging. Under systemd (INVOCATION_ID set, or stderr is the journal
 * stream named by $JOURNAL_STREAM) and with journald listening, entries go
 * to the journal with structured
 * fields: PRIORITY, ERRNO, CODE_*, SYSLOG_IDENTIFIER, MESSAGE_ID (entries an
 * operator must act on, explained in catalog/iopfd.catalog), and the
 * identities of what they are about (IOPF_TENANT=, IOPF_TENANT_UID=,
 * IOPF_TENANT_PID=, IOPF_TENANT_UNIT=, IOPF_TENANT_NAME=, IOPF_SOURCE=,
 * IOPF_DOMAIN=, IOPF_DEV_ID=, IOPF_PASID=, IOPF_REASON=, IOPF_EVENT=).
 * Otherwise plain lines on stderr.
 * Every helper taking an error sets errno from it, so "%m" works, and returns
 * it as -errno, so "return log_error_errno(r, "...: %m");" logs once and
 * propagates. Per-fault events are never logged: they go to metrics, and
 * the manager logs rate-limited summaries.
 */
#ifndef IOPFD_LOG_H
#define IOPFD_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <syslog.h>

#include "util.h"

/* Where sd_journal_send() sends (fixed in libsystemd). */
#define LOG_JOURNAL_SOCKET "/run/systemd/journal/socket"

/* Messages above this syslog level are dropped; LOG_INFO unless told otherwise. */
extern int log_max_level;

enum log_target {
	LOG_TARGET_AUTO, /* journal under systemd, else console */
	LOG_TARGET_JOURNAL,
	LOG_TARGET_CONSOLE,
	LOG_TARGET_NULL, /* nothing (org.freedesktop.LogControl1's "null") */
	_LOG_TARGET_MAX,
};

/*
 * MESSAGE_IDs of the entries an operator must act on; each has an entry in
 * catalog/iopfd.catalog (journalctl -x shows it). Never change one.
 */
#define IOPF_MESSAGE_STATE_REFUSED	"a4d84d69cfe047c284d73488d560de4e"
#define IOPF_MESSAGE_STATE_NOT_KEPT	"a76dd07b2d634daa94c66223cdaa80ba"
#define IOPF_MESSAGE_TENANTS_RESTORED	"521dd6476a764e2d9e5354139924c6ac"
#define IOPF_MESSAGE_TENANT_NOT_KEPT	"8b26db95815a4727b4de0c9830e43add"
#define IOPF_MESSAGE_FDS_SHORT		"a7b3a66917aa44da8089e3319cdaa5e5"
#define IOPF_MESSAGE_CONNECTION_REFUSED "4c644db24aa24cc29017f47c33ca002f"
#define IOPF_MESSAGE_MAP_ERRORS		"7893000c4bf045d082df4265c4e55adc"
#define IOPF_MESSAGE_SOURCE_BROKEN	"658adba6ed574734b6d5262521363147"

/* Parse "debug", "info", "notice", "warning", "err"/"error", "crit" or a digit. */
int log_level_from_string(const char *s);
/*
 * log_setup() - choose where entries go and the level. $IOPFD_LOG_LEVEL, when
 * valid, overrides @level (so a debug session needs no config change).
 */
void log_setup(enum log_target target, int level);
/* Whether entries go to the journal now. */
bool log_to_journal(void);
/* At run time (org.freedesktop.LogControl1): the level, and where entries go. */
void log_set_max_level(int level);
void log_set_target(enum log_target target);
enum log_target log_get_target(void);
/* "auto", "journal", "console", "null"; and back (-EINVAL for anything else). */
const char *log_target_to_string(enum log_target target);
int log_target_from_string(const char *s);
/* "emerg" ... "debug"; NULL out of range. */
const char *log_level_to_string(int level);

/* What an entry is about; zero/NULL members are left out. */
struct log_ids {
	uint64_t tenant, source, domain;
	bool has_dev_id, has_pasid;
	uint32_t dev_id, pasid; /* pasid IOPF_PASID_NONE prints as "none" */
	const char *reason;	/* "no_handler", ... */
	const char *event;	/* a stable name for entries worth matching: "refused-summary" */
	const char *message_id; /* IOPF_MESSAGE_* */
	/* the tenant's process, its systemd unit and the name it gave (NULL: none) */
	bool has_peer;
	uint32_t uid, pid;
	const char *unit, *name;
};

/* One journal entry, built without allocating (exposed for tests). */
#define LOG_FIELDS_MAX 24
struct log_entry {
	struct iovec iov[LOG_FIELDS_MAX];
	size_t n;
	char message[1100];
	char fields[LOG_FIELDS_MAX - 1][128];
};
void log_entry_build(struct log_entry *e, int level, int error, const struct log_ids *ids,
		     const char *file, int line, const char *func, const char *message);

_printf_(7, 8) int log_internal(int level, int error, const struct log_ids *ids, const char *file,
				int line, const char *func, const char *fmt, ...);

#define log_full_ids(level, error, ids, ...)                                                       \
	log_internal(level, error, ids, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_full_errno(level, error, ...) log_full_ids(level, error, NULL, __VA_ARGS__)
#define log_error_errno(error, ...)	  log_full_ids(LOG_ERR, error, NULL, __VA_ARGS__)
#define log_warning_errno(error, ...)	  log_full_ids(LOG_WARNING, error, NULL, __VA_ARGS__)
#define log_notice_errno(error, ...)	  log_full_ids(LOG_NOTICE, error, NULL, __VA_ARGS__)
#define log_info_errno(error, ...)	  log_full_ids(LOG_INFO, error, NULL, __VA_ARGS__)
#define log_debug_errno(error, ...)	  log_full_ids(LOG_DEBUG, error, NULL, __VA_ARGS__)
#define log_error(...)			  log_full_ids(LOG_ERR, 0, NULL, __VA_ARGS__)
#define log_warning(...)		  log_full_ids(LOG_WARNING, 0, NULL, __VA_ARGS__)
#define log_notice(...)			  log_full_ids(LOG_NOTICE, 0, NULL, __VA_ARGS__)
#define log_info(...)			  log_full_ids(LOG_INFO, 0, NULL, __VA_ARGS__)
#define log_debug(...)			  log_full_ids(LOG_DEBUG, 0, NULL, __VA_ARGS__)
/* An entry about one tenant: log_tenant(LOG_INFO, 3, "...", ...). */
#define log_tenant(level, t, ...)                                                                  \
	log_full_ids(level, 0, &(const struct log_ids){.tenant = (t)}, __VA_ARGS__)

/* An out-of-memory error, logged. */
#define log_oom() log_full_ids(LOG_ERR, ENOMEM, NULL, "Out of memory.")

/*
 * At most @burst entries per @interval_usec; the first one let through after
 * a suppression says how many were dropped (ratelimit_below() returns it).
 */
struct ratelimit {
	uint64_t interval_usec, begin;
	unsigned burst, n, suppressed;
};
#define RATELIMIT_INIT(usec, b) ((struct ratelimit){.interval_usec = (usec), .burst = (b)})
/* Return: -1 to drop this entry, else the number dropped since the last one let through. */
int ratelimit_below(struct ratelimit *rl);

#endif /* IOPFD_LOG_H */
