/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "bus.h"
#include "control.h"
#include "engine.h"
#include "log.h"
#include "fdstore.h"
#include "manager.h"
#include "time-util.h"
#if HAVE_SIMULATOR
#include "sim.h"
#endif

#define USEC_PER_SEC	   UINT64_C(1000000)
#define STATUS_PERIOD_USEC (10 * USEC_PER_SEC)
/* Refused-fault summaries: tenants named per period; the rest are counted. */
#define SUMMARY_TENANTS_MAX 16

/* Refused groups of one domain (or a source's unrouted ones) at the last summary. */
struct snap {
	uint64_t id; /* domain id, or source id when !domain */
	uint64_t tenant, source;
	bool domain;
	uint32_t dev_id, pasid;
	uint64_t refused[_IOPF_REASON_MAX];
	bool broken;	      /* a source whose reads fail now */
	uint64_t read_errors; /* a source's */
};

struct snaps {
	struct snap *v;
	size_t n, cap;
};

struct manager {
	struct manager_args args;	/* copy; the strings are argv's */
	struct conf conf;		/* running; reload updates what applies live */
	sd_event *event;		/* owned */
	struct iopf_engine *engine;	/* owned */
	sd_event_source *engine_source; /* owned */
	struct iopf_control *control;	/* owned */
	struct bus *bus;		/* owned */
	struct fdstore *store;		/* owned; what systemd keeps for us across restarts */
	bool restored;			/* carried on from the process before */

	/* watchdog: keep-alives only while every worker answers its ping */
	uint64_t watchdog_usec;		  /* 0: not asked for */
	int notify_fd;			  /* owned; connected to $NOTIFY_SOCKET, or -EBADF */
	sd_event_source *watchdog_source; /* owned */
	bool stalled;			  /* a worker missed a ping; said so once */
	unsigned stalled_worker;

	sd_event_source *summary_source; /* owned; NULL when RefusedSummaryInterval=0 */
	struct snaps last;		 /* at the last summary, by (domain, id) ascending */
	sd_event_source *status_source;	 /* owned; only under a service manager */
};

static enum log_target log_target_of(enum conf_log_target t)
{
	switch (t) {
	case CONF_LOG_AUTO:
		return LOG_TARGET_AUTO;
	case CONF_LOG_JOURNAL:
		return LOG_TARGET_JOURNAL;
	case CONF_LOG_CONSOLE:
		return LOG_TARGET_CONSOLE;
	}
	return LOG_TARGET_AUTO;
}

void manager_log_setup(const struct conf *conf)
{
	log_setup(log_target_of(conf->log_target), conf->log_level);
}

int manager_load_config(const struct manager_args *a, struct conf *ret)
{
	_cleanup_free_ char *why = NULL;
	struct conf conf;
	int r;

	r = conf_init(&conf);
	if (r < 0)
		return log_oom();
	r = conf_load_all(&conf, a->config ? a->config : IOPFD_DEFAULT_CONFIG, !a->config, &why);
	if (r < 0) {
		conf_done(&conf);
		return log_error_errno(r, "Bad configuration: %s", why ? why : strerror(-r));
	}
	for (unsigned i = 0; i < a->n_overrides; i++) {
		const struct manager_override *o = &a->overrides[i];

		free(why);
		why = NULL;
		r = conf_set(&conf, o->section, o->key, o->value, &why);
		if (r < 0) {
			conf_done(&conf);
			return log_error_errno(r, "--%s=%s: %s", o->option, o->value,
					       why ? why : strerror(-r));
		}
	}
	*ret = conf;
	return 0;
}

/* --- status --- */

/* Tell the service manager how we are, after @state ("READY=1\n", or ""). */
static void update_status(struct manager *m, const char *state, const char *prefix)
{
	struct iopf_control_stats st;

	if (iopf_control_total_stats(m->control, 0, &st, NULL) < 0) {
		(void)sd_notify(false, state);
		return;
	}
	(void)sd_notifyf(false,
			 "%sSTATUS=%sServing %u tenants (%" PRIu64 " fault sources, %" PRIu64
			 " domains); %" PRIu64 " fault groups answered, %" PRIu64 " refused",
			 state, prefix ? prefix : "", iopf_control_n_registered_tenants(m->control),
			 st.sources, st.domains, st.counters.groups, st.counters.invalid);
}

static int on_status_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct manager *m = userdata;

	update_status(m, "", NULL);
	(void)sd_event_source_set_time_relative(s, STATUS_PERIOD_USEC);
	(void)sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
	return 0;
}

/* --- watchdog --- */

/*
 * sd_notify() opens a socket for every message, so a daemon out of fds would
 * miss its keep-alives and be killed for it: the watchdog keeps one socket,
 * connected once. NULL/unsupported addresses fall back to sd_notify().
 */
static int notify_socket_open(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	_cleanup_close_ int fd = -EBADF;
	size_t len;

	if (!path || (path[0] != '/' && path[0] != '@'))
		return -EAFNOSUPPORT;
	len = strlen(path);
	if (len >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, offsetof(struct sockaddr_un, sun_path) + len) < 0)
		return -errno;
	return TAKE_FD(fd);
}

static void notify_keepalive(struct manager *m)
{
	static const char msg[] = "WATCHDOG=1";

	if (m->notify_fd >= 0 && send(m->notify_fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL) >= 0)
		return;
	(void)sd_notify(false, msg);
}

/*
 * Every quarter period: if every worker answered the ping sent last time,
 * send WATCHDOG=1 and ping again. A worker stuck in a turn (or dead) holds
 * the keep-alive back, and systemd restarts us after WatchdogSec.
 */
static int on_watchdog_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct manager *m = userdata;
	unsigned late = 0;
	int all = iopf_engine_ping(m->engine, &late);

	bus_set_workers_alive(m->bus, iopf_engine_workers_alive(m->engine));
	if (all == 1) {
		notify_keepalive(m);
		if (m->stalled)
			log_notice("Worker %u answers again; watchdog keep-alives resume.",
				   m->stalled_worker);
		m->stalled = false;
	} else if (!m->stalled) {
		m->stalled = true;
		m->stalled_worker = late;
		log_warning("Worker %u has not run its command queue for %" PRIu64
			    " ms; holding back the watchdog keep-alive.",
			    late, m->watchdog_usec / 4000);
	}
	(void)sd_event_source_set_time_relative(s, m->watchdog_usec / 4);
	(void)sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
	return 0;
}

static int watchdog_setup(struct manager *m)
{
	uint64_t usec = 0;
	int r;

	r = sd_watchdog_enabled(false, &usec);
	if (r < 0)
		log_warning_errno(r, "Ignoring a malformed watchdog request: %m");
	if (r <= 0)
		return 0;
	if (usec < 4000) /* a ping round trip must fit a quarter */
		usec = 4000;
	m->watchdog_usec = usec;
	m->notify_fd = notify_socket_open();
	if (m->notify_fd < 0)
		log_debug_errno(m->notify_fd, "Keep-alives go through sd_notify(): %m");
	(void)iopf_engine_ping(m->engine, NULL); /* the first keep-alive waits for its answers */
	r = sd_event_add_time_relative(m->event, &m->watchdog_source, CLOCK_MONOTONIC, usec / 4, 0,
				       on_watchdog_timer, m);
	if (r < 0)
		return log_error_errno(r, "Cannot arm the watchdog timer: %m");
	log_debug("Watchdog: keep-alive every %" PRIu64 " ms while every worker answers.",
		  usec / 4000);
	return 0;
}

/* --- refused-fault summaries --- */

static int snaps_push(struct snaps *s, const struct snap *x)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct snap *v = reallocarray(s->v, cap, sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = *x;
	return 0;
}

static void refused_of(const struct iopf_counters *c, uint64_t ret[_IOPF_REASON_MAX])
{
	for (unsigned i = 0; i < _IOPF_REASON_MAX; i++)
		ret[i] = c->reasons[i];
	/* answered, but not refused: the tenant's own teardown */
	ret[IOPF_REASON_RESOLVED] = 0;
	ret[IOPF_REASON_RETIRED] = 0;
}

static int snap_domain(const struct iopf_domain_info *i, void *userdata)
{
	struct snap x = {.id = i->id,
			 .tenant = i->tenant,
			 .source = i->source_id,
			 .domain = true,
			 .dev_id = i->dev_id,
			 .pasid = i->pasid};

	refused_of(&i->counters, x.refused);
	return snaps_push(userdata, &x);
}

static int snap_source(const struct iopf_source_info *i, void *userdata)
{
	struct snap x = {.id = i->id,
			 .tenant = i->tenant,
			 .source = i->id,
			 .broken = i->broken,
			 .read_errors = i->read_errors};

	refused_of(&i->unrouted, x.refused);
	return snaps_push(userdata, &x);
}

static int cmp_snap(const void *a, const void *b)
{
	const struct snap *x = a, *y = b;

	if (x->domain != y->domain)
		return x->domain < y->domain ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static const struct snap *snaps_find(const struct snaps *s, bool domain, uint64_t id)
{
	size_t lo = 0, hi = s->n;

	/* sources first, then domains; each ascending by id */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct snap *x = &s->v[mid];

		if (x->domain == domain && x->id == id)
			return x;
		if (x->domain < domain || (x->domain == domain && x->id < id))
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

struct tenant_delta {
	uint64_t tenant;
	uint64_t by_reason[_IOPF_REASON_MAX];
	uint64_t total;
	const struct snap *worst; /* the domain or source with the most refusals */
	uint64_t worst_total;
};

static int cmp_delta(const void *a, const void *b)
{
	const struct tenant_delta *x = a, *y = b;

	return x->tenant < y->tenant ? -1 : x->tenant > y->tenant;
}

static void log_tenant_summary(struct manager *m, const struct tenant_delta *d)
{
	struct iopf_tenant_info ti = {.name = "gone"};
	struct log_ids ids = {.tenant = d->tenant, .event = "refused-summary"};
	char reasons[256] = "", where[96] = "";
	uint64_t top = 0;
	size_t len = 0;

	(void)iopf_control_tenant_info(m->control, d->tenant, &ti);
	for (unsigned r = 0; r < _IOPF_REASON_MAX; r++) {
		if (!d->by_reason[r])
			continue;
		len += snprintf(reasons + len, sizeof(reasons) - len, "%s%s %" PRIu64,
				len ? ", " : "", iopf_reason_to_string(r), d->by_reason[r]);
		if (len >= sizeof(reasons))
			len = sizeof(reasons) - 1;
		if (d->by_reason[r] > top) {
			top = d->by_reason[r];
			ids.reason = iopf_reason_to_string(r);
		}
	}
	if (d->worst) {
		ids.source = d->worst->source;
		if (d->worst->domain) {
			ids.domain = d->worst->id;
			ids.has_dev_id = ids.has_pasid = true;
			ids.dev_id = d->worst->dev_id;
			ids.pasid = d->worst->pasid;
			if (d->worst->pasid == IOPF_PASID_NONE)
				(void)snprintf(where, sizeof(where),
					       "; most on source %" PRIu64 " dev_id %" PRIu32
					       " without PASID",
					       d->worst->source, d->worst->dev_id);
			else
				(void)snprintf(where, sizeof(where),
					       "; most on source %" PRIu64 " dev_id %" PRIu32
					       " PASID 0x%" PRIx32,
					       d->worst->source, d->worst->dev_id, d->worst->pasid);
		} else {
			(void)snprintf(where, sizeof(where),
				       "; most on source %" PRIu64 " for no registered domain",
				       d->worst->source);
		}
	}
	/* a failing map is ours to fix; the rest is the tenant's setup */
	if (d->by_reason[IOPF_REASON_MAP_ERROR])
		ids.message_id = IOPF_MESSAGE_MAP_ERRORS;
	log_full_ids(d->by_reason[IOPF_REASON_MAP_ERROR] ? LOG_WARNING : LOG_NOTICE, 0, &ids,
		     "Tenant %" PRIu64 " (%s): %" PRIu64
		     " fault groups refused in the last %.3gs (%s)%s.",
		     d->tenant, ti.name, d->total, (double)m->conf.summary_usec / 1e6, reasons,
		     where);
}

/* A source whose reads started (or stopped) failing: its device's faults wait meanwhile. */
static void log_source_health(const struct snap *x)
{
	struct log_ids ids = {.tenant = x->tenant, .source = x->id};

	if (!x->broken) {
		log_full_ids(LOG_NOTICE, 0, &ids,
			     "Tenant %" PRIu64 ": fault source %" PRIu64 " reads again.", x->tenant,
			     x->id);
		return;
	}
	ids.message_id = IOPF_MESSAGE_SOURCE_BROKEN;
	log_full_ids(LOG_WARNING, 0, &ids,
		     "Tenant %" PRIu64 ": reading fault source %" PRIu64 " fails (%" PRIu64
		     " failed reads so far); iopfd retries from 10 ms, doubling to 10 s, and "
		     "its device's faults wait meanwhile.",
		     x->tenant, x->id, x->read_errors);
}

static void summarize(struct manager *m)
{
	struct snaps cur = {};
	_cleanup_free_ struct tenant_delta *deltas = NULL;
	size_t n_deltas = 0, named = 0, more = 0;

	/* the registry's view (tenant 0: the daemon's), with the ids tenants are shown */
	if (iopf_control_foreach_source(m->control, 0, true, snap_source, &cur, NULL) < 0 ||
	    iopf_control_foreach_domain(m->control, 0, true, snap_domain, &cur, NULL) < 0)
		goto out;
	/* ids are not in order: snaps_find() needs them sorted */
	if (cur.n > 1)
		qsort(cur.v, cur.n, sizeof(*cur.v), cmp_snap);
	deltas = calloc(cur.n ? cur.n : 1, sizeof(*deltas));
	if (!deltas)
		goto out;

	for (size_t i = 0; i < cur.n; i++) {
		const struct snap *x = &cur.v[i], *prev = snaps_find(&m->last, x->domain, x->id);
		struct tenant_delta *d = NULL;
		uint64_t sum = 0;

		if (!x->domain && x->broken != (prev && prev->broken))
			log_source_health(x);
		for (unsigned r = 0; r < _IOPF_REASON_MAX; r++)
			sum += x->refused[r] - (prev ? prev->refused[r] : 0);
		if (!sum)
			continue;
		for (size_t k = 0; k < n_deltas; k++)
			if (deltas[k].tenant == x->tenant)
				d = &deltas[k];
		if (!d) {
			d = &deltas[n_deltas++];
			d->tenant = x->tenant;
		}
		for (unsigned r = 0; r < _IOPF_REASON_MAX; r++)
			d->by_reason[r] += x->refused[r] - (prev ? prev->refused[r] : 0);
		d->total += sum;
		if (sum > d->worst_total) {
			d->worst_total = sum;
			d->worst = x;
		}
	}
	qsort(deltas, n_deltas, sizeof(*deltas), cmp_delta);
	for (size_t k = 0; k < n_deltas; k++) {
		if (named++ < SUMMARY_TENANTS_MAX)
			log_tenant_summary(m, &deltas[k]);
		else
			more++;
	}
	if (more)
		log_notice("%zu more tenants had fault groups refused in the last %.3gs "
			   "(iopfctl stats shows them).",
			   more, (double)m->conf.summary_usec / 1e6);
out:
	free(m->last.v);
	m->last = cur;
}

static int on_summary_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct manager *m = userdata;

	summarize(m);
	(void)sd_event_source_set_time_relative(s, m->conf.summary_usec);
	(void)sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
	return 0;
}

static int summary_setup(struct manager *m)
{
	int r;

	m->summary_source = sd_event_source_disable_unref(m->summary_source);
	if (!m->conf.summary_usec)
		return 0;
	r = sd_event_add_time_relative(m->event, &m->summary_source, CLOCK_MONOTONIC,
				       m->conf.summary_usec, 0, on_summary_timer, m);
	if (r < 0)
		return log_error_errno(r, "Cannot arm the summary timer: %m");
	return 0;
}

/* --- reload --- */

struct reload {
	struct manager *m;
	unsigned applied, restart;
};

static void on_change(const char *section, const char *key, const char *old_value,
		      const char *new_value, enum conf_apply apply, void *userdata)
{
	struct reload *rl = userdata;
	_cleanup_free_ char *why = NULL;

	switch (apply) {
	case CONF_APPLY_LIVE:
	case CONF_APPLY_NEW:
		/* the value parsed once already: this cannot fail but for memory */
		if (conf_set(&rl->m->conf, section, key, new_value, &why) < 0) {
			log_error("[%s] %s=%s could not be applied: %s", section, key, new_value,
				  why ? why : "out of memory");
			return;
		}
		rl->applied++;
		log_info("[%s] %s changed from %s to %s%s.", section, key, old_value, new_value,
			 apply == CONF_APPLY_NEW ? " (for what is registered from now on)" : "");
		break;
	case CONF_APPLY_RESTART:
		rl->restart++;
		log_warning("[%s] %s changed from %s to %s, which only takes effect when iopfd "
			    "restarts; still using %s.",
			    section, key, old_value, new_value, old_value);
		break;
	case CONF_APPLY_EXPORTER:
		log_info("[%s] %s changed from %s to %s: iopf-exporter reads it when it "
			 "(re)starts; iopfd does not use it.",
			 section, key, old_value, new_value);
		break;
	}
}

static void reader_missing(const char *name, void *userdata)
{
	const struct conf *conf = userdata;

	/* the default names the exporter's user, which need not be installed */
	log_full_errno(strcmp(conf->metrics_readers, IOPFD_METRICS_READERS) == 0 ? LOG_DEBUG
										 : LOG_NOTICE,
		       0, "[Metrics] Readers=: no user %s; ignored until the next reload.", name);
}

/* [Metrics] Readers=, resolved now: at start and at each reload. */
static int apply_readers(struct manager *m)
{
	uid_t uids[IOPF_CONTROL_READERS_MAX];
	size_t n = conf_resolve_readers(&m->conf, uids, reader_missing, &m->conf);

	return iopf_control_set_readers(m->control, uids, n);
}

/* Push the running configuration into everything that changes live. */
static int apply_live(struct manager *m)
{
	int r;

	manager_log_setup(&m->conf);
	r = apply_readers(m);
	if (r >= 0)
		r = iopf_engine_set_fault_around(m->engine, m->conf.fault_around);
	if (r >= 0)
		r = iopf_engine_set_read_batch(m->engine, m->conf.read_batch);
	if (r >= 0)
		r = iopf_engine_set_busy_poll(m->engine, m->conf.busy_poll_usec * 1000);
	if (r >= 0)
		r = iopf_control_set_limits(m->control, &m->conf.limits);
	if (r < 0)
		return log_error_errno(r, "Cannot apply the configuration: %m");
	if (!!m->summary_source != !!m->conf.summary_usec ||
	    (m->summary_source &&
	     sd_event_source_set_time_relative(m->summary_source, m->conf.summary_usec) < 0))
		return summary_setup(m);
	return 0;
}

static void reload(struct manager *m)
{
	struct reload rl = {.m = m};
	struct conf fresh;
	int r;

	(void)sd_notifyf(false,
			 "RELOADING=1\nSTATUS=Reloading the configuration\nMONOTONIC_USEC=%" PRIu64,
			 now_ns(CLOCK_MONOTONIC) / NSEC_PER_USEC);
	log_info("Reloading the configuration.");
	r = manager_load_config(&m->args, &fresh);
	if (r < 0) {
		log_error("Reload failed; the running configuration stays as it was.");
		update_status(m, "READY=1\n", "Reload failed (see the log); ");
		return;
	}
	conf_diff(&m->conf, &fresh, on_change, &rl);
	conf_done(&fresh);
	(void)apply_live(m);
	bus_reloaded(m->bus); /* PropertiesChanged */
	if (!rl.applied && !rl.restart)
		log_info("Configuration reloaded: nothing changed.");
	else
		log_info("Configuration reloaded: %u changes applied%s.", rl.applied,
			 rl.restart ? ", some need a restart (see above)" : "");
	update_status(m, "READY=1\n", NULL);
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	reload(userdata);
	return 0;
}

/* --- heap --- */

#define TRIM_PERIOD_USEC   USEC_PER_SEC
#define TRIM_MIN_BYTES	   ((size_t)8 << 20)
#define TRIM_SETTLED_BYTES ((size_t)1 << 20)
/* Free bytes that move less than this in a second count as settled: tenants still serve. */
#define TRIM_JITTER_BYTES ((size_t)256 << 10)

/*
 * glibc keeps what free() gave back in its arenas and returns only the top of
 * each to the kernel: after a large tenant's teardown (tens of thousands of
 * small region and id records, freed on the call_rcu thread), 75-94 MB stayed
 * with the daemon. Once a second, if the arenas' free bytes grew by
 * TRIM_MIN_BYTES since the last trim (or by TRIM_SETTLED_BYTES, and the
 * teardown is over: less than TRIM_JITTER_BYTES of change in a second, as
 * other tenants go on allocating and freeing), malloc_trim(0) hands every free
 * page back. mallinfo2() walks the free lists, cheap against a trim and once a
 * second at most; free bytes that get used again lower the mark.
 */
static int on_trim_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
#ifdef __GLIBC__
	static size_t mark = SIZE_MAX; /* the arenas' free bytes after the last trim */
	static size_t last;	       /* ... a second ago */
	size_t free_bytes = mallinfo2().fordblks;
	bool settled =
		(free_bytes > last ? free_bytes - last : last - free_bytes) < TRIM_JITTER_BYTES;

	last = free_bytes;
	if (free_bytes < mark)
		mark = free_bytes;
	else if (free_bytes - mark >= TRIM_MIN_BYTES ||
		 (settled && free_bytes - mark >= TRIM_SETTLED_BYTES)) {
		(void)malloc_trim(0);
		mark = last = mallinfo2().fordblks;
		log_debug("Heap trimmed: %zu KiB were free in the arenas", free_bytes >> 10);
	}
#endif
	(void)sd_event_source_set_time_relative(s, TRIM_PERIOD_USEC);
	(void)sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
	return 0;
}

/* --- lifetime --- */

static int on_engine_fd(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct manager *m = userdata;
	int r;

	r = iopf_engine_dispatch(m->engine);
	if (r < 0)
		log_warning_errno(r, "Engine dispatch failed, ignoring: %m");
	return 0;
}

/* RLIMIT_MEMLOCK bounds what the kernel lets us pin without CAP_IPC_LOCK. */
static void check_memlock(struct manager *m)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_MEMLOCK, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return;
	if (m->conf.limits.max_pinned_bytes != IOPF_CONTROL_PINNED_UNLIMITED &&
	    (uint64_t)rl.rlim_cur >= m->conf.limits.max_pinned_bytes)
		return;
	/* worth a notice where the unit's LimitMEMLOCK= should have sized it */
	log_full_errno(getenv("INVOCATION_ID") ? LOG_NOTICE : LOG_DEBUG, 0,
		       "RLIMIT_MEMLOCK is %" PRIu64 " bytes, below MaxPinnedBytes: without "
		       "CAP_IPC_LOCK, kernel maps beyond it fail (counted as map_error).",
		       (uint64_t)rl.rlim_cur);
}

struct manager *manager_free(struct manager *m)
{
	if (!m)
		return NULL;
	/*
	 * Order matters: stop taking calls, let the engine answer every fault
	 * and unmap (it may still run done callbacks into the bus, and retire
	 * statistics into the registry), then drop the bookkeeping.
	 */
	bus_stop(m->bus);
	m->watchdog_source = sd_event_source_disable_unref(m->watchdog_source);
	m->summary_source = sd_event_source_disable_unref(m->summary_source);
	m->status_source = sd_event_source_disable_unref(m->status_source);
	m->engine_source = sd_event_source_disable_unref(m->engine_source);
	m->engine = iopf_engine_free(m->engine);
	m->control = iopf_control_free(m->control);
	m->bus = bus_free(m->bus);
	m->store = fdstore_free(m->store);
	m->event = sd_event_unref(m->event);
	m->notify_fd = safe_close(m->notify_fd);
	free(m->last.v);
	conf_done(&m->conf);
	free(m);
	return NULL;
}

/* ---- surviving a restart: the fd store (daemon/fdstore.h, docs/design.md) ---- */

static int store_keep(void *userdata, const char *name, int fd)
{
	return fdstore_push(userdata, name, fd);
}

static void store_drop(void *userdata, const char *name)
{
	(void)fdstore_remove(userdata, name);
}

static int store_take(void *userdata, const char *name)
{
	return fdstore_take(userdata, name);
}

struct sweeping {
	struct iopf_engine_fd_store store;
	iopf_backend_open_fn sim_open;
	unsigned sources, answered;
};

static void sweep_one(const char *name, int fd, void *userdata)
{
	struct sweeping *x = userdata;
	unsigned answered;

	(void)fd;
	if (iopf_engine_sweep_stored(name, store_take, &x->store, x->sim_open, &answered) > 0) {
		x->sources++;
		x->answered += answered;
	}
}

/* The state was refused: answer what its fault queues hold, forget everything it kept. */
static void sweep_stored(struct manager *m, iopf_backend_open_fn sim_open)
{
	struct sweeping x = {
		.store = {.drop = store_drop, .userdata = m->store},
		.sim_open = sim_open,
	};

	fdstore_foreach_passed(m->store, sweep_one, &x);
	log_notice("Answered INVALID %u fault groups on %u fault queues the process before had "
		   "read from.",
		   x.answered, x.sources);
}

static void forget_passed(const char *name, int fd, void *userdata)
{
	struct manager *m = userdata;

	(void)fd;
	log_debug("Dropping \"%s\" from the fd store: nothing of the process before needs it.",
		  name);
	(void)fdstore_remove(m->store, name);
}

/*
 * The engine and the registry: on the state the process before left in the
 * fd store when there is one, else new.
 */
static int registry_start(struct manager *m, struct iopf_engine_config *ecfg)
{
	struct iopf_engine_restored st = {};
	int state_fd = fdstore_take(m->store, "state"), r;

	if (state_fd >= 0) {
		ecfg->state_fd = state_fd; /* taken */
		r = iopf_engine_new(ecfg, &m->engine);
		if (r >= 0)
			r = iopf_control_new(m->engine, &m->conf.limits, &m->control);
		if (r >= 0)
			r = iopf_control_restore(m->control, store_take, m->store, &st);
		if (r >= 0) {
			log_info("Carrying on from the process before: %u fault sources, %u "
				 "domains, "
				 "%u regions; %" PRIu64 " fault records it had read are answered "
				 "before anything else (%u objects dropped, %u map calls left "
				 "alone).",
				 st.sources, st.domains, st.regions, st.pending, st.dropped,
				 st.uncertain);
			m->restored = true;
			return 0;
		}
		m->control = iopf_control_free(m->control);
		m->engine = iopf_engine_free(m->engine);
		if (r != -EINVAL)
			return log_error_errno(r, "Cannot carry on from the process before: %m");
		log_full_ids(LOG_ERR, 0,
			     &(const struct log_ids){.message_id = IOPF_MESSAGE_STATE_REFUSED},
			     "Refusing the state the process before left in the fd store: it is "
			     "not an iopfd state of this version, or it is damaged. Starting anew; "
			     "tenants register again.");
		(void)fdstore_remove(m->store, "state");
		sweep_stored(m, ecfg->sim_open);
		fdstore_foreach_passed(m->store, forget_passed, m);
	}
	ecfg->state_fd = 0;
	r = iopf_engine_new(ecfg, &m->engine);
	if (r < 0)
		return log_error_errno(r, "Cannot start the fault engine: %m");
	r = iopf_control_new(m->engine, &m->conf.limits, &m->control);
	if (r >= 0)
		r = iopf_control_hide_ids(m->control); /* ids must not count others' objects */
	if (r < 0)
		return log_error_errno(r, "Cannot create the tenant registry: %m");
	r = fdstore_push(m->store, "state", iopf_engine_state_fd(m->engine));
	if (r < 0)
		log_full_ids(LOG_WARNING, r,
			     &(const struct log_ids){.message_id = IOPF_MESSAGE_STATE_NOT_KEPT},
			     "Cannot keep the state in the fd store; a crash of iopfd will lose "
			     "the faults it holds: %m");
	return 0;
}

/*
 * SIGUSR2: hand over to the next iopfd (an upgrade) without tearing anything
 * down: exit as if killed, with EXIT_HANDOVER, which the unit restarts on
 * (RestartForceExitStatus=) while systemd keeps the fd store. The next process
 * carries on from the state and journals exactly as after a crash.
 */
static int on_sigusr2(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	(void)s;
	(void)si;
	(void)userdata;
	(void)sd_notify(false, "STOPPING=1\nSTATUS=Handing over to the next iopfd");
	log_notice("Handing over to the next iopfd: exiting with everything left in the fd store.");
	_exit(IOPFD_EXIT_HANDOVER);
}

int manager_new(const struct manager_args *a, struct conf *conf, struct manager **ret)
{
	struct iopf_engine_config ecfg = {
		.fd_store = {.keep = store_keep, .drop = store_drop},
		.n_workers = conf->workers,
		.fault_around = conf->fault_around,
		.read_batch = conf->read_batch,
		.busy_poll_ns = conf->busy_poll_usec * 1000,
#if HAVE_SIMULATOR
		.sim_open = conf->allow_simulator ? iopf_sim_backend_open : NULL,
#endif
	};
	struct manager *m;
	int r;

	m = calloc(1, sizeof(*m));
	if (!m) {
		conf_done(conf);
		return log_oom();
	}
	m->args = *a;
	m->notify_fd = -EBADF;
	ecfg.fd_store.userdata = NULL; /* set once the store is there */
	m->conf = *conf;
	*conf = (struct conf){};

	r = fdstore_new(&m->store);
	if (r < 0) {
		log_oom();
		goto fail;
	}
	ecfg.fd_store.userdata = m->store;
	r = sd_event_default(&m->event);
	if (r < 0) {
		log_error_errno(r, "Cannot create the event loop: %m");
		goto fail;
	}
	/* NULL handler: exit the loop with code 0. The signals were blocked in main(). */
	r = sd_event_add_signal(m->event, NULL, SIGTERM, NULL, NULL);
	if (r >= 0)
		r = sd_event_add_signal(m->event, NULL, SIGINT, NULL, NULL);
	if (r >= 0)
		r = sd_event_add_signal(m->event, NULL, SIGHUP, on_sighup, m);
	if (r >= 0)
		r = sd_event_add_signal(m->event, NULL, SIGUSR2, on_sigusr2, m);
	if (r < 0) {
		log_error_errno(r, "Cannot watch signals: %m");
		goto fail;
	}

	r = registry_start(m, &ecfg);
	if (r < 0)
		goto fail;
	r = apply_readers(m);
	if (r < 0) {
		log_error_errno(r, "Cannot apply [Metrics] Readers=: %m");
		goto fail;
	}
	r = sd_event_add_io(m->event, &m->engine_source, iopf_engine_get_fd(m->engine), EPOLLIN,
			    on_engine_fd, m);
	if (r < 0) {
		log_error_errno(r, "Cannot watch the engine: %m");
		goto fail;
	}
	r = bus_new(m->event, m->control, &m->conf, iopf_engine_n_workers(m->engine), m->store,
		    &m->bus);
	if (r >= 0 && m->restored)
		r = bus_adopt_tenants(m->bus);
	if (r < 0)
		goto fail;
	/* what nothing took is of no use to anyone now */
	fdstore_foreach_passed(m->store, forget_passed, m);

	r = watchdog_setup(m);
	if (r >= 0)
		r = summary_setup(m);
	if (r < 0)
		goto fail;
	/* floating: the loop owns it */
	r = sd_event_add_time_relative(m->event, NULL, CLOCK_MONOTONIC, TRIM_PERIOD_USEC,
				       TRIM_PERIOD_USEC / 4, on_trim_timer, NULL);
	if (r < 0) {
		log_error_errno(r, "Cannot arm the heap trim timer: %m");
		goto fail;
	}
	if (getenv("NOTIFY_SOCKET")) {
		r = sd_event_add_time_relative(m->event, &m->status_source, CLOCK_MONOTONIC,
					       STATUS_PERIOD_USEC, 0, on_status_timer, m);
		if (r < 0) {
			log_error_errno(r, "Cannot arm the status timer: %m");
			goto fail;
		}
	}
	check_memlock(m);
	*ret = m;
	return 0;
fail:
	manager_free(m);
	return r;
}

int manager_run(struct manager *m)
{
	int r;

	log_info("iopfd %s serving %s (%u workers%s%s).", IOPFD_VERSION, m->conf.control_socket,
		 iopf_engine_n_workers(m->engine),
		 m->conf.allow_simulator ? ", simulator allowed" : "",
		 m->watchdog_usec ? ", watchdog" : "");
	update_status(m, "READY=1\n", NULL);

	r = sd_event_loop(m->event);
	(void)sd_notify(false,
			"STOPPING=1\nSTATUS=Shutting down: answering held faults, unmapping");
	if (r < 0)
		return log_error_errno(r, "Event loop failed: %m");
	log_info("Shutting down: answering every held fault and unmapping.");
	return 0;
}
