/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iopfd.conf, its drop-ins and the command-line options that override them.
 * One parser per key serves all three, so "--workers=x" and "Workers=x" fail
 * the same way. A table of keys drives parsing, printing (--dump-config),
 * and reload (which keys changed, and whether they apply live).
 * Pure: no logging; errors come back as a message (the config fuzz target
 * and the unit tests call conf_parse_string()). iopf-exporter shares it.
 */
#ifndef IOPFD_CONF_H
#define IOPFD_CONF_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "control.h"

#define IOPFD_DEFAULT_CONFIG IOPFD_SYSCONFDIR "/iopfd/iopfd.conf"
/* Workers, FaultAround and ReadBatch: the engine's own limits (engine-limits.h, via control.h). */
#define IOPFD_SUMMARY_DEFAULT_USEC (UINT64_C(10) * 1000000)
#define IOPFD_SUMMARY_MAX_USEC	   (UINT64_C(86400) * 1000000)
#define IOPFD_METRICS_LISTEN	   "127.0.0.1:9577"
/* [Metrics] Readers=: users besides root that may read every tenant's numbers */
#define IOPFD_METRICS_READERS	  "iopf-exporter"
#define IOPFD_METRICS_READERS_LEN 255u /* the value, as conf_dump() prints it */
/* Admission on the control socket; see [Limits] in conf/iopfd.conf. */
#define IOPFD_CONNECTIONS_DEFAULT	   4096u
#define IOPFD_CONNECTIONS_PER_USER_DEFAULT 256u
#define IOPFD_RESERVED_CONNECTIONS_DEFAULT 16u
#define IOPFD_CONNECTIONS_MAX		   1000000u
#define IOPFD_AUTH_TIMEOUT_DEFAULT_USEC	   (UINT64_C(5) * 1000000)
#define IOPFD_AUTH_TIMEOUT_MIN_USEC	   (UINT64_C(100) * 1000)
#define IOPFD_AUTH_TIMEOUT_MAX_USEC	   (UINT64_C(600) * 1000000)
/* What the transport buffers for one connection and one uid; see conf/iopfd.conf. */
#define IOPFD_MESSAGE_SIZE_DEFAULT	(UINT64_C(1) << 20)
#define IOPFD_MESSAGE_SIZE_MIN		(UINT64_C(4) << 10)
#define IOPFD_MESSAGE_SIZE_MAX		(UINT64_C(128) << 20) /* the D-Bus specification's */
#define IOPFD_QUEUED_BYTES_DEFAULT	(UINT64_C(8) << 20)
#define IOPFD_BUFFERED_PER_USER_DEFAULT (UINT64_C(32) << 20)
#define IOPFD_BUFFER_MIN		(UINT64_C(64) << 10)
#define IOPFD_BUFFER_MAX		(UINT64_C(1) << 40)
#define IOPFD_IO_TIMEOUT_DEFAULT_USEC	(UINT64_C(10) * 1000000)
/* File descriptors kept free for accepting, fds arriving with calls, logging. */
#define IOPFD_FD_RESERVE_DEFAULT 256u
#define IOPFD_FD_RESERVE_MIN	 16u
/* Drop-ins: FILE.d/ *.conf next to the main file, applied in name order after it. */
#define IOPFD_DROPIN_MAX 128u

enum conf_log_target {
	CONF_LOG_AUTO,	  /* the journal when started by systemd, else stderr */
	CONF_LOG_JOURNAL, /* structured entries through sd_journal_send() */
	CONF_LOG_CONSOLE, /* plain lines on stderr */
};

struct conf {
	/* [Daemon] */
	unsigned workers;	 /* 0: one per online CPU */
	char *control_socket;	 /* owned; absolute path */
	uint64_t fault_around;	 /* power of two, >= IOPF_PAGE_SIZE */
	uint64_t busy_poll_usec; /* 0: off */
	unsigned read_batch;
	bool allow_simulator;
	bool system_bus;
	int log_level; /* LOG_ERR..LOG_DEBUG */
	enum conf_log_target log_target;
	uint64_t summary_usec; /* refused-fault summaries: at most one per tenant per period; 0 off
				*/
	/* [Limits] */
	struct iopf_control_limits limits;
	unsigned max_connections;	   /* peer-to-peer connections in all */
	unsigned max_connections_per_user; /* of one uid; uid 0 is not capped */
	unsigned reserved_connections;	   /* of max_connections, for uid 0 only */
	uint64_t auth_timeout_usec;	   /* to finish the SASL handshake */
	unsigned fd_reserve;		   /* of RLIMIT_NOFILE, never spent on tenants' objects */
	uint64_t max_message_size;	   /* a message a peer sends */
	uint64_t max_queued_bytes;	   /* replies a peer has not taken; uid 0: no cap */
	uint64_t max_buffered_per_user;	   /* both, over a uid's connections; uid 0: no cap */
	uint64_t io_timeout_usec;	   /* a message to arrive whole, replies to move */
	/* [Metrics]: read by iopf-exporter; iopfd only validates them */
	char *metrics_listen; /* owned; "ADDR:PORT" */
	bool metrics_per_domain;
	/*
	 * Read by iopfd: user names or uids, one space between them, at most
	 * IOPF_CONTROL_READERS_MAX (conf_resolve_readers()); "" for root alone
	 */
	char *metrics_readers; /* owned */
};

/* How a changed key takes effect on reload. */
enum conf_apply {
	CONF_APPLY_LIVE,     /* at once */
	CONF_APPLY_NEW,	     /* for objects created from then on */
	CONF_APPLY_RESTART,  /* only when iopfd restarts */
	CONF_APPLY_EXPORTER, /* iopfd does not use it; iopf-exporter reads it when it starts */
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
 * conf_load() - read and parse @path alone. A missing file is fine when
 * @missing_ok (the default path): the defaults stay. Anything but a regular
 * file (a FIFO, a device, a directory) is refused without blocking.
 * Return: 0; -errno of open/read with *ret_error; -EINVAL as conf_parse_string().
 */
int conf_load(struct conf *conf, const char *path, bool missing_ok, char **ret_error);

/*
 * conf_load_all() - @path, then every "*.conf" in "@path.d/" in name order
 * (a missing directory is fine; at most IOPFD_DROPIN_MAX files).
 * Return: as conf_load(); the message names the file that failed.
 */
int conf_load_all(struct conf *conf, const char *path, bool missing_ok, char **ret_error);

/* Write every key with its value, as a configuration file would set it. */
void conf_dump(const struct conf *conf, FILE *f);

/* Called for each key whose value differs; values are formatted as conf_dump() does. */
typedef void (*conf_change_fn)(const char *section, const char *key, const char *old_value,
			       const char *new_value, enum conf_apply apply, void *userdata);
void conf_diff(const struct conf *old, const struct conf *new, conf_change_fn fn, void *userdata);

/*
 * conf_resolve_readers() - [Metrics] Readers= as uids, in order: a number is
 * taken as it is, a name is looked up (NSS) now. A name that does not resolve
 * is left out (and passed to @missing, when not NULL): its user may not exist
 * yet, and the next resolution (the daemon's next reload) picks it up.
 * @ret: room for IOPF_CONTROL_READERS_MAX uids.
 * Return: how many uids *@ret holds.
 */
size_t conf_resolve_readers(const struct conf *conf, uid_t *ret,
			    void (*missing)(const char *name, void *userdata), void *userdata);

/*
 * conf_parse_listen() - "127.0.0.1:9577" or "[::1]:9577" (IP literals only, port 1-65535).
 * Return: 0 or -EINVAL.
 */
int conf_parse_listen(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len);

#endif /* IOPFD_CONF_H */
