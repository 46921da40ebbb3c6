/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iopfd.conf and the command-line options that override it. One parser per
 * key serves both, so "--workers=x" and "Workers=x" fail the same way.
 * Pure: no logging; errors come back as a message (the config fuzz target
 * and the unit tests call conf_parse_string()).
 */
#ifndef IOPFD_CONF_H
#define IOPFD_CONF_H

#include <stdbool.h>
#include <stdint.h>

#include "control.h"

#define IOPFD_DEFAULT_CONFIG	   IOPFD_SYSCONFDIR "/iopfd/iopfd.conf"
#define IOPFD_WORKERS_MAX	   1024u
#define IOPFD_FAULT_AROUND_DEFAULT (UINT64_C(64) << 10)
#define IOPFD_FAULT_AROUND_MAX	   (UINT64_C(1) << 30)
#define IOPFD_READ_BATCH_DEFAULT   256u
#define IOPFD_READ_BATCH_MAX	   65536u

struct conf {
	unsigned workers;      /* 0: one per online CPU */
	char *control_socket;  /* owned; absolute path */
	uint64_t fault_around; /* power of two, >= IOPF_PAGE_SIZE */
	unsigned read_batch;
	bool allow_simulator;
	bool system_bus;
	struct iopf_control_limits limits;
};

/* Defaults. Return: 0 or -ENOMEM. */
int conf_init(struct conf *conf);
void conf_done(struct conf *conf);

/*
 * conf_set() - parse one value into @conf.
 * @section, @key: as in the file ("Daemon", "Workers"); case-sensitive like systemd.
 * Return: 0; -EINVAL with *ret_error (malloc'ed) saying why; -ENOENT for an
 * unknown section or key; -ENOMEM.
 */
int conf_set(struct conf *conf, const char *section, const char *key, const char *value,
	     char **ret_error);

/*
 * conf_parse_string() - parse an INI text; @filename only names it in messages.
 * Unknown keys are errors too: a typo must not silently keep a default.
 * Return: 0; -EINVAL with *ret_error = "FILE:LINE: Key=value: reason"; -ENOMEM.
 */
int conf_parse_string(struct conf *conf, const char *text, const char *filename, char **ret_error);

/*
 * conf_load() - read and parse @path. A missing file is fine when @missing_ok
 * (the default path): the defaults stay.
 * Return: 0; -errno of open/read with *ret_error; -EINVAL as conf_parse_string().
 */
int conf_load(struct conf *conf, const char *path, bool missing_ok, char **ret_error);

#endif /* IOPFD_CONF_H */
