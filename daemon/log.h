/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Daemon logging: stderr, with "<N>" syslog-level prefixes when stderr is the
 * journal ($JOURNAL_STREAM), so journald keeps the levels. Every helper taking
 * an error sets errno from it, so "%m" works, and returns it as -errno, so
 * "return log_error_errno(r, "...: %m");" logs once and propagates.
 */
#ifndef IOPFD_LOG_H
#define IOPFD_LOG_H

#include <syslog.h>

#include "util.h"

/* Messages above this syslog level are dropped; LOG_INFO unless $IOPFD_LOG_LEVEL says otherwise. */
extern int log_max_level;

/* Parse "debug", "info", "notice", "warning", "err"/"error", "crit" or a digit. */
int log_level_from_string(const char *s);
void log_setup(void);

_printf_(3, 4) int log_internal(int level, int error, const char *fmt, ...);

#define log_full_errno(level, error, ...) log_internal(level, error, __VA_ARGS__)
#define log_error_errno(error, ...)	  log_internal(LOG_ERR, error, __VA_ARGS__)
#define log_warning_errno(error, ...)	  log_internal(LOG_WARNING, error, __VA_ARGS__)
#define log_notice_errno(error, ...)	  log_internal(LOG_NOTICE, error, __VA_ARGS__)
#define log_info_errno(error, ...)	  log_internal(LOG_INFO, error, __VA_ARGS__)
#define log_debug_errno(error, ...)	  log_internal(LOG_DEBUG, error, __VA_ARGS__)
#define log_error(...)			  log_internal(LOG_ERR, 0, __VA_ARGS__)
#define log_warning(...)		  log_internal(LOG_WARNING, 0, __VA_ARGS__)
#define log_notice(...)			  log_internal(LOG_NOTICE, 0, __VA_ARGS__)
#define log_info(...)			  log_internal(LOG_INFO, 0, __VA_ARGS__)
#define log_debug(...)			  log_internal(LOG_DEBUG, 0, __VA_ARGS__)

/* An out-of-memory error, logged. */
#define log_oom() log_internal(LOG_ERR, ENOMEM, "Out of memory.")

#endif /* IOPFD_LOG_H */
