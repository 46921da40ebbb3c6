/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The manager owns everything on the main thread: the sd-event loop, signals,
 * the engine, the tenant registry and the bus; it talks to systemd (READY,
 * STATUS, RELOADING, STOPPING, WATCHDOG), reloads the configuration on SIGHUP
 * and logs rate-limited summaries of refused faults. It handles no faults.
 */
#ifndef IOPFD_MANAGER_H
#define IOPFD_MANAGER_H

#include "conf.h"
#include "util.h"

struct manager;

/* The exit status of a handover (SIGUSR2): the unit restarts on it, keeping the fd store. */
#define IOPFD_EXIT_HANDOVER 75

/* Where the configuration comes from: kept for reloads. */
struct manager_args {
	const char *config; /* NULL: the default path, a missing file is fine */
	struct manager_override {
		const char *option, *section, *key, *value; /* option: its long name */
	} overrides[16]; /* command-line values, applied over the files in order */
	unsigned n_overrides;
};

/*
 * manager_load_config() - defaults, the file and its drop-ins, then the command line.
 * Return: 0 or -errno (logged, naming file:line or the option).
 */
int manager_load_config(const struct manager_args *a, struct conf *ret);

/*
 * manager_new() - start the engine, the registry and the bus with @conf
 * (taken over, also on failure). Signals must already be blocked.
 * Return: 0 or -errno (logged).
 */
int manager_new(const struct manager_args *a, struct conf *conf, struct manager **ret);
/* Serve until SIGTERM or SIGINT. Return: 0 or -errno (logged). */
int manager_run(struct manager *m);
struct manager *manager_free(struct manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct manager *, manager_free);

/* Log where and at which level @conf says. */
void manager_log_setup(const struct conf *conf);

#endif /* IOPFD_MANAGER_H */
