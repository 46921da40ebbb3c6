/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iopfd: arguments, configuration, signals, then the manager's event loop
 * (daemon/manager.c). The engine's worker threads handle the faults; this
 * thread handles none.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "conf.h"
#include "log.h"
#include "manager.h"

static void help(void)
{
	printf("Usage: iopfd [OPTIONS]\n\n"
	       "User-mode I/O page fault server for iommufd.\n\n"
	       "  --config FILE          configuration file (default %s),\n"
	       "                         then FILE.d/*.conf drop-ins in name order\n"
	       "  --socket PATH          control socket (default %s)\n"
	       "  --workers N            fault worker threads, 0 = one per CPU\n"
	       "  --fault-around BYTES   map window around a fault (power of two)\n"
	       "  --read-batch N         fault records per read\n"
	       "  --log-level LEVEL      err, warning, notice, info or debug\n"
	       "  --log-target TARGET    auto, journal or console\n"
	       "  --allow-simulator      accept simulator fault sources (testing only)\n"
	       "  --system-bus           also serve %s on the system bus\n"
	       "  --no-system-bus        serve the control socket only\n"
	       "  --check-config         parse the configuration, report and exit\n"
	       "  --dump-config          print the effective configuration and exit\n"
	       "  --version              print the version and exit\n"
	       "  -h --help              this help\n\n"
	       "SIGHUP reloads the configuration; iopfd logs what changed and what\n"
	       "needs a restart. SIGUSR2 hands over to the next iopfd (an upgrade):\n"
	       "under systemd, with the fd store, no fault and no tenant is lost.\n",
	       IOPFD_DEFAULT_CONFIG, IOPF_DEFAULT_SOCKET, IOPF_DBUS_NAME);
}

static int add_override(struct manager_args *a, const char *option, const char *section,
			const char *key, const char *value)
{
	if (a->n_overrides >= ARRAY_SIZE(a->overrides))
		return log_error_errno(E2BIG, "Too many options.");
	a->overrides[a->n_overrides++] = (struct manager_override){option, section, key, value};
	return 0;
}

/*
 * Every tenant's fault fd, iommufd and region memfds are held open: take all
 * the fds the hard limit allows (the unit sets LimitNOFILE=); what iopfd keeps
 * free of them is [Limits] FdReserve=. iopfd uses no select(), so the soft
 * limit of 1024 has no reason to stay.
 */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		log_warning_errno(errno,
				  "Cannot raise RLIMIT_NOFILE to its hard limit, ignoring: %m");
}

enum action {
	ACTION_RUN,
	ACTION_CHECK,
	ACTION_DUMP,
};

/* Return: 1 to go on, 0 to exit successfully (--help, --version), -errno (logged). */
static int parse_argv(int argc, char *argv[], struct manager_args *a, enum action *action)
{
	enum {
		ARG_CONFIG = 0x100,
		ARG_CHECK_CONFIG,
		ARG_DUMP_CONFIG,
		ARG_VERSION,
		ARG_KEY, /* ARG_KEY + i: the option of keys[i] */
	};
	/* Options that set a key of [Daemon]: to @value, or to the option's argument. */
	static const struct {
		const char *key, *value;
	} keys[] = {
		{"ControlSocket"},   {"Workers"},   {"FaultAround"},	       {"ReadBatch"},
		{"LogLevel"},	     {"LogTarget"}, {"AllowSimulator", "yes"}, {"SystemBus", "yes"},
		{"SystemBus", "no"},
	};
	static const struct option options[] = {
		{"config", required_argument, NULL, ARG_CONFIG},
		{"check-config", no_argument, NULL, ARG_CHECK_CONFIG},
		{"dump-config", no_argument, NULL, ARG_DUMP_CONFIG},
		{"version", no_argument, NULL, ARG_VERSION},
		{"help", no_argument, NULL, 'h'},
		/* in the order of keys[] */
		{"socket", required_argument, NULL, ARG_KEY + 0},
		{"workers", required_argument, NULL, ARG_KEY + 1},
		{"fault-around", required_argument, NULL, ARG_KEY + 2},
		{"read-batch", required_argument, NULL, ARG_KEY + 3},
		{"log-level", required_argument, NULL, ARG_KEY + 4},
		{"log-target", required_argument, NULL, ARG_KEY + 5},
		{"allow-simulator", no_argument, NULL, ARG_KEY + 6},
		{"system-bus", no_argument, NULL, ARG_KEY + 7},
		{"no-system-bus", no_argument, NULL, ARG_KEY + 8},
		{},
	};
	int c, i, r;

	while ((c = getopt_long(argc, argv, "h", options, &i)) >= 0) {
		if (c >= ARG_KEY && c < ARG_KEY + (int)ARRAY_SIZE(keys)) {
			/* the long option's name, for messages: options[] is static */
			r = add_override(a, options[i].name, "Daemon", keys[c - ARG_KEY].key,
					 keys[c - ARG_KEY].value ?: optarg);
			if (r < 0)
				return r;
			continue;
		}
		switch (c) {
		case 'h':
			help();
			return 0;
		case ARG_VERSION:
			printf("iopfd %s\n", IOPFD_VERSION);
			return 0;
		case ARG_CONFIG:
			a->config = optarg;
			break;
		case ARG_CHECK_CONFIG:
			*action = ACTION_CHECK;
			break;
		case ARG_DUMP_CONFIG:
			*action = ACTION_DUMP;
			break;
		case '?':
			return -EINVAL; /* getopt said why */
		default:
			return log_error_errno(EINVAL, "Unhandled option %d.", c);
		}
	}
	if (optind < argc)
		return log_error_errno(EINVAL, "Unexpected argument: %s", argv[optind]);
	return 1;
}

static int run(int argc, char *argv[])
{
	_cleanup_(manager_freep) struct manager *m = NULL;
	struct manager_args args = {};
	enum action action = ACTION_RUN;
	struct conf conf;
	sigset_t mask;
	int r;

	log_setup(LOG_TARGET_AUTO, LOG_INFO);
	r = parse_argv(argc, argv, &args, &action);
	if (r <= 0)
		return r;

	/* --check-config answers on the terminal, whatever the configured target says */
	if (action != ACTION_RUN)
		log_setup(LOG_TARGET_CONSOLE, LOG_INFO);
	r = manager_load_config(&args, &conf);
	if (r < 0)
		return r;
	switch (action) {
	case ACTION_CHECK:
		printf("configuration OK\n");
		conf_done(&conf);
		return 0;
	case ACTION_DUMP:
		conf_dump(&conf, stdout);
		conf_done(&conf);
		return 0;
	case ACTION_RUN:
		break;
	}
	manager_log_setup(&conf);

	/* Before the engine starts threads, so only this thread's signalfd sees them. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR2);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
		conf_done(&conf);
		return log_error_errno(errno, "Cannot block signals: %m");
	}
	/* A tenant that hangs up mid-reply must not kill us. */
	(void)signal(SIGPIPE, SIG_IGN);
	raise_nofile();

	r = manager_new(&args, &conf, &m);
	if (r < 0)
		return r;
	return manager_run(m);
}

int main(int argc, char *argv[])
{
	int r = run(argc, argv);

	return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
