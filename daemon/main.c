/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iopfd: arguments and configuration, then one sd-event loop on the main
 * thread for signals, the engine's completion fd and D-Bus. The engine's
 * worker threads handle the faults; this thread handles none.
 *
 * struct manager is what a later daemon/manager.c will own (watchdog, reload).
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "bus.h"
#include "conf.h"
#include "control.h"
#include "engine.h"
#include "log.h"

struct manager {
	struct conf conf;
	sd_event *event;		/* owned */
	struct iopf_engine *engine;	/* owned */
	sd_event_source *engine_source; /* owned */
	struct iopf_control *control;	/* owned */
	struct bus *bus;		/* owned */
};

struct args {
	const char *config; /* NULL: the default path, missing is fine */
	bool check_config;
	/* command-line values, applied over the file in order */
	struct override {
		const char *option, *section, *key, *value;
	} overrides[16];
	unsigned n_overrides;
};

static void help(void)
{
	printf("Usage: iopfd [OPTIONS]\n\n"
	       "User-mode I/O page fault server for iommufd.\n\n"
	       "  --config FILE          configuration file (default %s)\n"
	       "  --socket PATH          control socket (default %s)\n"
	       "  --workers N            fault worker threads, 0 = one per CPU\n"
	       "  --fault-around BYTES   map window around a fault (power of two)\n"
	       "  --read-batch N         fault records per read\n"
	       "  --allow-simulator      accept simulator fault sources (testing only)\n"
	       "  --system-bus           also serve %s on the system bus\n"
	       "  --no-system-bus        serve the control socket only\n"
	       "  --check-config         parse the configuration, report and exit\n"
	       "  --version              print the version and exit\n"
	       "  -h --help              this help\n",
	       IOPFD_DEFAULT_CONFIG, IOPF_DEFAULT_SOCKET, IOPF_DBUS_NAME);
}

static int add_override(struct args *a, const char *option, const char *section, const char *key,
			const char *value)
{
	if (a->n_overrides >= ARRAY_SIZE(a->overrides))
		return log_error_errno(E2BIG, "Too many options.");
	a->overrides[a->n_overrides++] = (struct override){option, section, key, value};
	return 0;
}

/* Return: 1 to run, 0 to exit successfully (--help, --version), -errno (logged). */
static int parse_argv(int argc, char *argv[], struct args *a)
{
	enum {
		ARG_CONFIG = 0x100,
		ARG_SOCKET,
		ARG_WORKERS,
		ARG_FAULT_AROUND,
		ARG_READ_BATCH,
		ARG_ALLOW_SIM,
		ARG_SYSTEM_BUS,
		ARG_NO_SYSTEM_BUS,
		ARG_CHECK_CONFIG,
		ARG_VERSION,
	};
	static const struct option options[] = {
		{"config", required_argument, NULL, ARG_CONFIG},
		{"socket", required_argument, NULL, ARG_SOCKET},
		{"workers", required_argument, NULL, ARG_WORKERS},
		{"fault-around", required_argument, NULL, ARG_FAULT_AROUND},
		{"read-batch", required_argument, NULL, ARG_READ_BATCH},
		{"allow-simulator", no_argument, NULL, ARG_ALLOW_SIM},
		{"system-bus", no_argument, NULL, ARG_SYSTEM_BUS},
		{"no-system-bus", no_argument, NULL, ARG_NO_SYSTEM_BUS},
		{"check-config", no_argument, NULL, ARG_CHECK_CONFIG},
		{"version", no_argument, NULL, ARG_VERSION},
		{"help", no_argument, NULL, 'h'},
		{},
	};
	int c, r = 0;

	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
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
			a->check_config = true;
			break;
		case ARG_SOCKET:
			r = add_override(a, "--socket", "Daemon", "ControlSocket", optarg);
			break;
		case ARG_WORKERS:
			r = add_override(a, "--workers", "Daemon", "Workers", optarg);
			break;
		case ARG_FAULT_AROUND:
			r = add_override(a, "--fault-around", "Daemon", "FaultAround", optarg);
			break;
		case ARG_READ_BATCH:
			r = add_override(a, "--read-batch", "Daemon", "ReadBatch", optarg);
			break;
		case ARG_ALLOW_SIM:
			r = add_override(a, "--allow-simulator", "Daemon", "AllowSimulator", "yes");
			break;
		case ARG_SYSTEM_BUS:
			r = add_override(a, "--system-bus", "Daemon", "SystemBus", "yes");
			break;
		case ARG_NO_SYSTEM_BUS:
			r = add_override(a, "--no-system-bus", "Daemon", "SystemBus", "no");
			break;
		case '?':
			return -EINVAL; /* getopt said why */
		default:
			return log_error_errno(EINVAL, "Unhandled option %d.", c);
		}
		if (r < 0)
			return r;
	}
	if (optind < argc)
		return log_error_errno(EINVAL, "Unexpected argument: %s", argv[optind]);
	return 1;
}

/* The file, then the command line over it. Errors name file:line or the option. */
static int load_config(const struct args *a, struct conf *conf)
{
	_cleanup_free_ char *why = NULL;
	int r;

	r = conf_init(conf);
	if (r < 0)
		return log_oom();
	r = conf_load(conf, a->config ? a->config : IOPFD_DEFAULT_CONFIG, !a->config, &why);
	if (r < 0)
		return log_error_errno(r, "Bad configuration: %s", why ? why : strerror(-r));

	for (unsigned i = 0; i < a->n_overrides; i++) {
		const struct override *o = &a->overrides[i];

		free(why);
		why = NULL;
		r = conf_set(conf, o->section, o->key, o->value, &why);
		if (r < 0)
			return log_error_errno(r, "%s=%s: %s", o->option, o->value,
					       why ? why : strerror(-r));
	}
	return 0;
}

static int on_engine_fd(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct manager *m = userdata;
	int r;

	r = iopf_engine_dispatch(m->engine);
	if (r < 0)
		log_warning_errno(r, "Engine dispatch failed, ignoring: %m");
	return 0;
}

static struct manager *manager_free(struct manager *m)
{
	if (!m)
		return NULL;
	/*
	 * Order matters: stop taking calls, let the engine answer every fault
	 * and unmap (it may still run done callbacks into the bus), then drop
	 * the bookkeeping that referred to engine objects.
	 */
	bus_stop(m->bus);
	m->engine_source = sd_event_source_disable_unref(m->engine_source);
	m->engine = iopf_engine_free(m->engine);
	m->control = iopf_control_free(m->control);
	m->bus = bus_free(m->bus);
	m->event = sd_event_unref(m->event);
	conf_done(&m->conf);
	free(m);
	return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(struct manager *, manager_free);

static int manager_start(struct manager *m)
{
	struct iopf_engine_config ecfg = {
		.n_workers = m->conf.workers,
		.fault_around = m->conf.fault_around,
		.read_batch = m->conf.read_batch,
		.allow_sim = m->conf.allow_simulator,
	};
	int r;

	r = sd_event_default(&m->event);
	if (r < 0)
		return log_error_errno(r, "Cannot create the event loop: %m");
	/* NULL handler: exit the loop with code 0. The signals were blocked in main(). */
	r = sd_event_add_signal(m->event, NULL, SIGTERM, NULL, NULL);
	if (r >= 0)
		r = sd_event_add_signal(m->event, NULL, SIGINT, NULL, NULL);
	if (r < 0)
		return log_error_errno(r, "Cannot watch signals: %m");

	r = iopf_engine_new(&ecfg, &m->engine);
	if (r < 0)
		return log_error_errno(r, "Cannot start the fault engine: %m");
	r = sd_event_add_io(m->event, &m->engine_source, iopf_engine_get_fd(m->engine), EPOLLIN,
			    on_engine_fd, m);
	if (r < 0)
		return log_error_errno(r, "Cannot watch the engine: %m");

	r = iopf_control_new(m->engine, &m->conf.limits, &m->control);
	if (r < 0)
		return log_error_errno(r, "Cannot create the tenant registry: %m");

	return bus_new(m->event, m->control, m->conf.control_socket, m->conf.system_bus, &m->bus);
}

static int run(int argc, char *argv[])
{
	_cleanup_(manager_freep) struct manager *m = NULL;
	struct args args = {};
	sigset_t mask;
	int r;

	log_setup();
	r = parse_argv(argc, argv, &args);
	if (r <= 0)
		return r;

	m = calloc(1, sizeof(*m));
	if (!m)
		return log_oom();
	r = load_config(&args, &m->conf);
	if (r < 0)
		return r;
	if (args.check_config) {
		printf("configuration OK\n");
		return 0;
	}

	/* Before the engine starts threads, so only this thread's signalfd sees them. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		return log_error_errno(errno, "Cannot block signals: %m");
	/* A tenant that hangs up mid-reply must not kill us. */
	(void)signal(SIGPIPE, SIG_IGN);

	r = manager_start(m);
	if (r < 0)
		return r;

	log_info("iopfd %s serving %s (%u workers%s).", IOPFD_VERSION, m->conf.control_socket,
		 iopf_engine_n_workers(m->engine),
		 m->conf.allow_simulator ? ", simulator allowed" : "");
	(void)sd_notifyf(false, "READY=1\nSTATUS=Serving %s", m->conf.control_socket);

	r = sd_event_loop(m->event);
	(void)sd_notify(false, "STOPPING=1\nSTATUS=Shutting down");
	if (r < 0)
		return log_error_errno(r, "Event loop failed: %m");
	log_info("Shutting down: answering every held fault and unmapping.");
	return 0;
}

int main(int argc, char *argv[])
{
	int r = run(argc, argv);

	return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
