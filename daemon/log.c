/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

int log_max_level = LOG_INFO;
static bool log_prefix_levels;

int log_level_from_string(const char *s)
{
	static const char *const names[] = {
		[LOG_EMERG] = "emerg", [LOG_ALERT] = "alert",	  [LOG_CRIT] = "crit",
		[LOG_ERR] = "err",     [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
		[LOG_INFO] = "info",   [LOG_DEBUG] = "debug",
	};

	if (!s)
		return -EINVAL;
	if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0')
		return s[0] - '0';
	if (strcmp(s, "error") == 0)
		return LOG_ERR;
	for (int i = 0; i < (int)ARRAY_SIZE(names); i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -EINVAL;
}

void log_setup(void)
{
	int level = log_level_from_string(getenv("IOPFD_LOG_LEVEL"));

	if (level >= 0)
		log_max_level = level;
	/* journald parses "<N>" prefixes on streams it connected (SyslogLevelPrefix=yes). */
	log_prefix_levels = getenv("JOURNAL_STREAM") != NULL;
}

int log_internal(int level, int error, const char *fmt, ...)
{
	int saved = errno;
	char buf[1024];
	va_list ap;

	if (error < 0)
		error = -error;
	if (level > log_max_level)
		goto out;

	errno = error; /* for %m */
	va_start(ap, fmt);
	(void)vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);

	if (log_prefix_levels)
		fprintf(stderr, "<%d>%s\n", level, buf);
	else
		fprintf(stderr, "iopfd: %s%s\n",
			level <= LOG_ERR       ? "error: "
			: level == LOG_WARNING ? "warning: "
					       : "",
			buf);
out:
	errno = saved;
	return -error;
}
