/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The D-Bus face of iopfd. Tenants are connections: the peer-to-peer socket
 * gives each accepted connection its own sd_bus (server mode) and tenant; on
 * the system bus a tenant is a unique name, tracked with sd_bus_track so its
 * objects go when the name does.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-id128.h>
#include <systemd/sd-login.h>

#include "bus.h"
#include "fdstore.h"
#include "list.h"
#include "u64vec.h"
#include "log.h"
#include "parse.h" /* USEC_PER_SEC */
#include "time-util.h"
#include "util.h"
#include "wire.h"

/* Messages one connection may process before the others get their turn. */
#define CONN_BURST 16u
/* Connections with work left that one turn of the ready queue serves. */
#define READY_BATCH 32u
/* File descriptors one peer-to-peer connection holds: the peer's socket, a socketpair, a pidfd. */
#define CONN_FDS 4u
/* Fds one message may carry (the kernel's SCM_MAX_FD). */
#define IN_FDS_MAX 253u
/* The SASL handshake, in bytes. */
#define AUTH_BYTES_MAX	     (16u * 1024)
#define IN_SET_DISCONNECT(r) ((r) == -ECONNRESET || (r) == -ENOTCONN || (r) == -EPIPE)
/* After EMFILE, accept() rests this long (or until a connection closes). */
#define ACCEPT_PAUSE_USEC (USEC_PER_SEC)
/* The real count of open fds is taken at most this often, when the estimate says short. */
#define FD_RECOUNT_USEC (USEC_PER_SEC / 4)
/* org.freedesktop.LogControl1, as systemd defines it (systemctl service-log-level). */
#define LOG_CONTROL_PATH      "/org/freedesktop/LogControl1"
#define LOG_CONTROL_INTERFACE "org.freedesktop.LogControl1"

struct pending;
struct conn;

enum deadline_kind {
	DEADLINE_AUTH, /* the D-Bus handshake: AuthTimeout= */
	DEADLINE_IN,   /* a message begun must arrive whole: IOTimeout= */
	DEADLINE_OUT,  /* replies waiting for the peer must move: IOTimeout= */
	_DEADLINE_MAX,
};

struct deadline {
	struct conn *conn;
	uint64_t at; /* CLOCK_MONOTONIC usec; 0: not queued */
	struct deadline *prev, *next;
};

/* Connections waiting for one kind of deadline, in deadline order, and its one timer. */
struct deadline_queue {
	struct deadline *head, *tail;
	sd_event_source *timer; /* owned; armed for head */
};

struct xbuf {
	uint8_t *p; /* owned */
	size_t len, cap;
	size_t off; /* sent so far */
};

/*
 * A peer-to-peer connection is not attached to the event loop the sd-bus way
 * (sd_bus_attach_event() adds an I/O, a timer and a prepare callback per
 * connection, and sd-event runs every prepare callback on every loop pass:
 * with n connections each pass cost O(n), and n closing at once cost O(n^2)).
 * Instead one edge-triggered I/O source per connection runs it when the
 * socket has news, and a connection that still has work after its burst
 * waits in the bus's ready queue, so a loop pass costs O(1) whatever the
 * number of connections.
 *
 * sd-bus has no bound on what it buffers per connection (a message up to
 * 128 MiB being read, any number of replies queued), so it does not read the
 * peer's socket: iopfd frames the peer's messages itself and hands sd-bus one
 * at a time over a socketpair, and takes whatever sd-bus writes into its own
 * buffer at once; both buffers are charged to the peer's uid.
 */
struct conn {
	struct bus *bus;
	sd_bus *sdbus;		/* owned */
	bool system;		/* the system bus connection: tenants by sender */
	uint64_t tenant;	/* peer-to-peer: this connection's tenant; 0 once gone */
	uid_t uid;		/* peer-to-peer: SO_PEERCRED at accept */
	pid_t pid;		/* peer-to-peer: the same */
	bool authed;		/* the handshake is done */
	int sock;		/* peer-to-peer: owned; the peer's socket */
	int pair;		/* peer-to-peer: owned; our end of sd-bus's socketpair */
	sd_event_source *io;	/* peer-to-peer: owned; the socket, edge-triggered */
	uint32_t io_events;	/* what io watches now */
	bool in_auth;		/* still forwarding the SASL lines */
	size_t auth_bytes;	/* forwarded so far */
	struct xbuf in;		/* the message being read */
	uint64_t in_need;	/* its size, once its header is in; 0 before */
	int in_fds[IN_FDS_MAX]; /* owned; the fds that came with it */
	unsigned n_in_fds;
	struct xbuf out;  /* what sd-bus wrote and the peer has not taken */
	uint64_t charged; /* in.cap + out.cap, charged to the uid */
	struct deadline deadlines[_DEADLINE_MAX];
	bool queued; /* on bus->ready_head */
	struct conn *ready_prev, *ready_next;
	struct pending *pending;      /* its removals waiting for the engine */
	int pidfd;		      /* peer-to-peer: owned; the peer process, or -EBADF */
	bool pidfd_kept;	      /* in the fd store as "t<tenant>": its tenant survives us */
	sd_event_source *free_source; /* system bus: owned; frees it after Disconnected */
	bool subscribed;	      /* peer-to-peer: on bus->subscribers (Subscribe()) */
	bool sdbus_idle;	      /* sd_bus_process() found nothing; nothing forwarded since */
	struct conn *prev, *next;     /* bus->conns */
};

/* An operator that called Subscribe(): it gets TenantAdded and TenantRemoved. */
struct subscriber {
	struct bus *bus;
	struct conn *conn;   /* the connection it is on (the system bus's, or its own) */
	char *name;	     /* system bus: owned; its unique name, the signals' destination */
	sd_bus_track *track; /* system bus: owned; empties when the name leaves the bus */
	struct subscriber *prev, *next;
};

struct sys_tenant {
	struct bus *bus;
	char *name; /* owned; the unique name */
	uint64_t tenant;
	sd_bus_track *track; /* owned; empties when the name leaves the bus */
	struct sys_tenant *prev, *next;
};

/* An Unregister/Remove call waiting for the engine's done callback. */
struct pending {
	struct bus *bus;
	struct conn *conn; /* the caller's connection; NULL once it is gone */
	sd_bus_message *m; /* owned ref */
	char what[64];	   /* "domain 7", for the error reply */
	uint64_t tenant, id;
	const char *signal; /* "SourceRemoved", "DomainRemoved" or NULL, sent once done */
	uint64_t *domains;  /* owned; a source's domains, which go with it */
	size_t n_domains;
	struct pending *prev, *next; /* conn->pending, or bus->orphans */
};

struct bus {
	sd_event *event;	      /* ref */
	struct iopf_control *control; /* not owned */
	const struct conf *conf;      /* not owned; the running configuration (reload changes it) */
	unsigned n_workers;	      /* for the Workers property */
	unsigned workers_alive;	      /* answered the watchdog's last ping */
	uint64_t workers_checked_us;  /* CLOCK_MONOTONIC of that ping; 0: never */
	uint64_t started_realtime_us, started_monotonic_us; /* StartTimestamp* properties */
	char *socket_path;				    /* owned */
	bool unlink_socket;				    /* we created the socket node */
	int listen_fd;					    /* owned */
	sd_event_source *listen_source;			    /* owned */
	struct conn *conns;				    /* peer-to-peer connections */
	unsigned n_conns;
	struct conn *ready_head, *ready_tail; /* connections with work left, oldest first */
	sd_event_source *ready_source;	      /* owned; enabled while the queue is not empty */
	struct deadline_queue deadlines[_DEADLINE_MAX];
	struct ratelimit refused_rl; /* admission refusals and drops logged */
	/* fds: what iopfd holds besides tenants' objects and connections, and how far off */
	unsigned fd_base;
	int fd_drift;		       /* the real count minus the estimate, at the last recount */
	uint64_t fd_recounted;	       /* CLOCK_MONOTONIC usec of the last recount */
	int64_t fd_limit;	       /* RLIMIT_NOFILE as of then */
	struct ratelimit fd_rl;	       /* "short of fds" logged */
	struct ratelimit accept_rl;    /* accept() failures logged */
	sd_event_source *accept_timer; /* owned; resumes accepting after EMFILE */
	bool accept_paused;
	struct conn *system; /* owned; NULL without the system bus */
	struct sys_tenant *sys_tenants;
	struct pending *orphans; /* removals whose connection went away meanwhile */
	struct fdstore *store;	 /* not owned; what survives a restart */
	struct waiting *waiting; /* restored tenants whose process has not come back yet */
	unsigned n_waiting;	 /* on that list: each holds a pidfd */
	struct subscriber *subscribers;
	uint64_t announced[16]; /* live_props[] as last announced (PropertiesChanged) */
};

/*
 * A tenant restored after iopfd restarted (iopf_control_restore()): its objects
 * serve on without a connection. When its process connects again (same pid
 * and uid) the connection takes it over; when the process exits, it goes.
 */
struct waiting {
	struct bus *bus;
	uint64_t tenant;
	pid_t pid;
	uid_t uid;
	int pidfd;		      /* owned */
	sd_event_source *exit_source; /* owned */
	struct waiting *prev, *next;
};

static int reply_error(sd_bus_error *error, int r, const struct iopf_control_error *err)
{
	return sd_bus_error_set(error, iopf_error_to_name(r),
				err && err->message[0] ? err->message : strerror(-r));
}

/* The caller's uid: the peer's on the socket, the sender's on the system bus. */
static int caller_uid(struct conn *c, sd_bus_message *m, uid_t *ret)
{
	_cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
	int r;

	if (!c->system) {
		*ret = c->uid;
		return 0;
	}
	if (!m)
		return -EPERM;
	r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID | SD_BUS_CREDS_AUGMENT, &creds);
	if (r >= 0)
		r = sd_bus_creds_get_euid(creds, ret);
	return r;
}

static int need_root(struct conn *c, sd_bus_message *m, sd_bus_error *error)
{
	uid_t uid = (uid_t)-1;

	if (caller_uid(c, m, &uid) < 0 || uid != 0)
		return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "needs uid 0");
	return 0;
}

/* What a journal entry about @tenant carries: its process, unit and name. */
static struct log_ids tenant_ids(struct bus *b, uint64_t tenant)
{
	struct log_ids ids = {.tenant = tenant};
	struct iopf_tenant_info ti;

	if (b->control && iopf_control_tenant_info(b->control, tenant, &ti) >= 0) {
		ids.has_peer = true;
		ids.uid = (uint32_t)ti.uid;
		ids.pid = (uint32_t)ti.pid;
		ids.unit = ti.unit;
		ids.name = ti.label;
	}
	return ids;
}

/* How the tenant is shown: the name it gave, else its unit, else "pid N uid M". */
static const char *tenant_display(const struct iopf_tenant_info *ti)
{
	return ti->label ? ti->label : ti->unit ? ti->unit : ti->name;
}

/* For logs: "vm7.service, pid 12 uid 0", or the connection's name alone. */
static void tenant_describe(struct bus *b, uint64_t tenant, char *buf, size_t size)
{
	struct iopf_tenant_info ti;

	if (!b->control || iopf_control_tenant_info(b->control, tenant, &ti) < 0)
		(void)snprintf(buf, size, "?");
	else if (ti.label || ti.unit)
		(void)snprintf(buf, size, "%s, %s", tenant_display(&ti), ti.name);
	else
		(void)snprintf(buf, size, "%s", ti.name);
}

/* The systemd unit of the tenant's process (its user unit if it runs in one), best effort. */
static void tenant_find_unit(struct bus *b, uint64_t tenant, pid_t pid)
{
	char *unit = NULL;

	if (pid <= 0)
		return;
	if (sd_pid_get_user_unit(pid, &unit) < 0 && sd_pid_get_unit(pid, &unit) < 0)
		return;
	(void)iopf_control_tenant_set_unit(b->control, tenant, unit);
	free(unit);
}

/* --- tenants that survive a restart --- */

static void tenant_store_name(uint64_t tenant, char *buf, size_t size)
{
	(void)snprintf(buf, size, "t%" PRIu64, tenant);
}

/*
 * Keep the peer's pidfd in the fd store once its tenant has registered
 * something: after a restart it tells whether the process still runs.
 */
static void tenant_keep(struct conn *c, uint64_t tenant)
{
	char name[32];
	int r;

	if (c->pidfd_kept || c->pidfd < 0)
		return;
	tenant_store_name(tenant, name, sizeof(name));
	r = fdstore_push(c->bus->store, name, c->pidfd);
	if (r < 0) {
		struct log_ids ids = tenant_ids(c->bus, tenant);

		ids.message_id = IOPF_MESSAGE_TENANT_NOT_KEPT;
		log_full_ids(LOG_WARNING, r, &ids,
			     "Cannot keep tenant %" PRIu64 "'s process in the fd store, its "
			     "objects will not survive a restart of iopfd: %m",
			     tenant);
	} else
		c->pidfd_kept = true;
}

static void tenant_unkeep(struct bus *b, uint64_t tenant)
{
	char name[32];

	tenant_store_name(tenant, name, sizeof(name));
	(void)fdstore_remove(b->store, name);
}

static void tenant_gone(struct bus *b, uint64_t tenant, const char *how);

static struct waiting *waiting_free(struct waiting *w)
{
	if (!w)
		return NULL;
	LIST_REMOVE(w->bus->waiting, w);
	w->bus->n_waiting--;
	sd_event_source_disable_unref(w->exit_source);
	safe_close(w->pidfd);
	free(w);
	return NULL;
}

static int on_waiting_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct waiting *w = userdata;
	struct bus *b = w->bus;
	uint64_t tenant = w->tenant;

	(void)s;
	(void)fd;
	(void)revents;
	waiting_free(w);
	tenant_gone(b, tenant, "exited while iopfd restarted");
	tenant_unkeep(b, tenant);
	return 0;
}

/* The restored tenant @tenant, if it was @pid's as @uid. */
static struct waiting *waiting_find(struct bus *b, uint64_t tenant, pid_t pid, uid_t uid)
{
	for (struct waiting *w = b->waiting; w; w = w->next)
		if (w->tenant == tenant && w->pid == pid && w->uid == uid)
			return w;
	return NULL;
}

static int collect_tenant(const struct iopf_tenant_info *t, const struct iopf_control_stats *st,
			  void *userdata)
{
	(void)st;
	return u64vec_push(userdata, t->id);
}

/* Whether the process behind @pidfd still runs (a pidfd polls readable once it exited). */
static bool pidfd_alive(int pidfd)
{
	struct pollfd p = {.fd = pidfd, .events = POLLIN};

	return poll(&p, 1, 0) == 0;
}

int bus_adopt_tenants(struct bus *b)
{
	struct u64vec a = {};
	unsigned kept = 0, gone = 0;
	int r;

	r = iopf_control_foreach_tenant(b->control, 0, true, collect_tenant, &a, NULL);
	for (size_t i = 0; r >= 0 && i < a.n; i++) {
		struct iopf_tenant_info ti;
		struct waiting *w;
		char name[32];
		int pidfd;

		tenant_store_name(a.v[i], name, sizeof(name));
		pidfd = fdstore_take(b->store, name);
		if (iopf_control_tenant_info(b->control, a.v[i], &ti) < 0 || pidfd < 0 ||
		    !pidfd_alive(pidfd) || !(w = calloc(1, sizeof(*w)))) {
			safe_close(pidfd);
			tenant_gone(b, a.v[i],
				    pidfd < 0 ? "did not come back (no process known)"
					      : "exited while iopfd restarted");
			tenant_unkeep(b, a.v[i]);
			gone++;
			continue;
		}
		*w = (struct waiting){
			.bus = b, .tenant = a.v[i], .pid = ti.pid, .uid = ti.uid, .pidfd = pidfd};
		tenant_find_unit(b, a.v[i], ti.pid);
		LIST_PREPEND(b->waiting, w);
		b->n_waiting++;
		r = sd_event_add_io(b->event, &w->exit_source, pidfd, EPOLLIN, on_waiting_exit, w);
		if (r < 0)
			log_error_errno(r, "Cannot watch the process of tenant %" PRIu64 ": %m",
					a.v[i]);
		kept++;
	}
	u64vec_done(&a);
	if (kept || gone)
		log_full_ids(LOG_NOTICE, 0,
			     &(const struct log_ids){.message_id = IOPF_MESSAGE_TENANTS_RESTORED},
			     "Tenants of the process before: %u serve on until their process exits "
			     "or connects again, %u gone.",
			     kept, gone);
	return r < 0 ? log_error_errno(r, "Cannot adopt the restored tenants: %m") : 0;
}

/*
 * A tenant went away: remove its objects, and say what it had, so a tenant that
 * leaves between two refused-fault summaries still shows up in the log.
 */
static void operators_signal(struct bus *b, const char *member, uint64_t tenant, const char *name);

static void tenant_gone(struct bus *b, uint64_t tenant, const char *how)
{
	struct iopf_tenant_info ti = {};
	struct iopf_control_stats *st = malloc(sizeof(*st));
	struct log_ids ids = tenant_ids(b, tenant);
	char name[160] = "?", unit[IOPF_CONTROL_LABEL_MAX + 1] = "",
	     label[IOPF_CONTROL_LABEL_MAX + 1] = "", refused[200] = "";
	bool have = false, registered = false;
	size_t len = 0;
	int n;

	/* all of it dies with the tenant */
	tenant_describe(b, tenant, name, sizeof(name));
	if (iopf_control_tenant_info(b->control, tenant, &ti) >= 0)
		registered = ti.registered;
	if (ids.unit)
		ids.unit = strncpy(unit, ids.unit, sizeof(unit) - 1);
	if (ids.name)
		ids.name = strncpy(label, ids.name, sizeof(label) - 1);
	if (st && iopf_control_tenant_stats(b->control, tenant, tenant, st, NULL) >= 0) {
		have = true;
		for (unsigned r = 0; r < _IOPF_REASON_MAX; r++) {
			if (r == IOPF_REASON_RESOLVED || !st->counters.reasons[r] ||
			    len >= sizeof(refused))
				continue;
			len += snprintf(refused + len, sizeof(refused) - len, "%s%s %" PRIu64,
					len ? ", " : ": ", iopf_reason_to_string(r),
					st->counters.reasons[r]);
		}
	}
	n = iopf_control_tenant_remove(b->control, tenant);
	if (registered)
		operators_signal(b, "TenantRemoved", tenant, NULL);
	if (n <= 0 && (!have || !st->counters.groups))
		log_full_ids(LOG_DEBUG, 0, &ids, "Tenant %" PRIu64 " (%s) %s.", tenant, name, how);
	else
		log_full_ids(LOG_INFO, 0, &ids,
			     "Tenant %" PRIu64 " (%s) %s, removing its %d objects; it had %" PRIu64
			     " fault groups answered, %" PRIu64 " INVALID%s.",
			     tenant, name, how, n > 0 ? n : 0, have ? st->counters.groups : 0,
			     have ? st->counters.invalid : 0, refused);
	free(st);
}

/* --- tenants on the system bus --- */

static struct sys_tenant *sys_tenant_free(struct sys_tenant *t)
{
	if (!t)
		return NULL;
	sd_bus_track_unref(t->track);
	free(t->name);
	free(t);
	return NULL;
}

static void sys_tenant_gone(struct sys_tenant *t)
{
	struct bus *b = t->bus;

	tenant_gone(b, t->tenant, "left the bus");
	LIST_REMOVE(b->sys_tenants, t);
	sys_tenant_free(t);
}

static int on_track_empty(sd_bus_track *track, void *userdata)
{
	sys_tenant_gone(userdata);
	return 0;
}

static int sys_tenant_get(struct conn *c, sd_bus_message *m, uint64_t *ret, sd_bus_error *error)
{
	struct bus *b = c->bus;
	_cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
	const char *sender = sd_bus_message_get_sender(m);
	struct sys_tenant *t;
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	pid_t pid = 0;
	int r;

	if (!sender)
		return sd_bus_error_set(error, IOPF_ERROR_ACCESS_DENIED, "caller has no bus name");
	for (t = b->sys_tenants; t; t = t->next)
		if (strcmp(t->name, sender) == 0) {
			*ret = t->tenant;
			return 0;
		}

	r = sd_bus_query_sender_creds(
		m, SD_BUS_CREDS_EUID | SD_BUS_CREDS_EGID | SD_BUS_CREDS_PID | SD_BUS_CREDS_AUGMENT,
		&creds);
	if (r < 0)
		return sd_bus_error_set_errnof(error, r, "Cannot identify caller %s: %m", sender);
	/* Without a uid the caller is nobody: it may still use its own objects. */
	(void)sd_bus_creds_get_euid(creds, &uid);
	(void)sd_bus_creds_get_egid(creds, &gid);
	(void)sd_bus_creds_get_pid(creds, &pid);

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->bus = b;
	t->name = strdup(sender);
	if (!t->name) {
		sys_tenant_free(t);
		return -ENOMEM;
	}
	r = sd_bus_track_new(c->sdbus, &t->track, on_track_empty, t);
	if (r >= 0)
		r = sd_bus_track_add_name(t->track, sender);
	if (r >= 0)
		r = iopf_control_tenant_add(b->control, sender, uid, gid, pid, &t->tenant);
	if (r < 0) {
		sys_tenant_free(t);
		return sd_bus_error_set_errnof(error, r, "Cannot track caller %s: %m", sender);
	}
	LIST_PREPEND(b->sys_tenants, t);
	tenant_find_unit(b, t->tenant, pid);
	log_debug("Tenant %s (pid %d uid %d) appeared on the system bus.", sender, (int)pid,
		  (int)uid);
	*ret = t->tenant;
	return 0;
}

static int get_tenant(struct conn *c, sd_bus_message *m, uint64_t *ret, sd_bus_error *error)
{
	if (c->system)
		return sys_tenant_get(c, m, ret, error);
	if (!c->tenant)
		return sd_bus_error_set(error, IOPF_ERROR_ACCESS_DENIED, "connection is closing");
	*ret = c->tenant;
	return 0;
}

/* --- asynchronous removal replies --- */

static struct pending *pending_free(struct pending *p)
{
	if (!p)
		return NULL;
	if (p->conn)
		LIST_REMOVE(p->conn->pending, p);
	else
		LIST_REMOVE(p->bus->orphans, p);
	sd_bus_message_unref(p->m);
	free(p->domains);
	free(p);
	return NULL;
}

static void ready_push(struct conn *c);

/* --- signals --- */

static struct sys_tenant *sys_tenant_find(struct bus *b, uint64_t tenant)
{
	for (struct sys_tenant *t = b->sys_tenants; t; t = t->next)
		if (t->tenant == tenant)
			return t;
	return NULL;
}

/* @member(@id) about one of @tenant's objects, to @tenant alone: no one else learns its ids. */
static void tenant_signal(struct conn *c, uint64_t tenant, const char *member, uint64_t id)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
	const char *dest = NULL;
	int r;

	if (c->system) {
		struct sys_tenant *t = sys_tenant_find(c->bus, tenant);

		if (!t)
			return;
		dest = t->name; /* unicast: a broadcast would tell everyone */
	} else if (c->tenant != tenant || sd_bus_is_ready(c->sdbus) <= 0)
		return;
	r = sd_bus_message_new_signal(c->sdbus, &m, IOPF_DBUS_PATH, IOPF_DBUS_INTERFACE, member);
	if (r >= 0 && dest)
		r = sd_bus_message_set_destination(m, dest);
	if (r >= 0)
		r = sd_bus_message_append(m, "t", id);
	if (r >= 0)
		r = sd_bus_send(c->sdbus, m, NULL);
	if (r < 0)
		log_debug_errno(r, "Cannot send %s to tenant %" PRIu64 ", ignoring: %m", member,
				tenant);
	else if (!c->system)
		ready_push(c);
}

static struct subscriber *subscriber_free(struct subscriber *s)
{
	if (!s)
		return NULL;
	LIST_REMOVE(s->bus->subscribers, s);
	if (s->conn && !s->conn->system)
		s->conn->subscribed = false;
	sd_bus_track_unref(s->track);
	free(s->name);
	free(s);
	return NULL;
}

static int on_subscriber_gone(sd_bus_track *track, void *userdata)
{
	subscriber_free(userdata);
	return 0;
}

/* TenantAdded(t, s) or TenantRemoved(t) (@name NULL) to every subscribed operator. */
static void operators_signal(struct bus *b, const char *member, uint64_t tenant, const char *name)
{
	for (struct subscriber *s = b->subscribers; s; s = s->next) {
		_cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
		struct conn *c = s->conn;
		int r;

		if (!c->system && sd_bus_is_ready(c->sdbus) <= 0)
			continue;
		r = sd_bus_message_new_signal(c->sdbus, &m, IOPF_DBUS_PATH, IOPF_DBUS_INTERFACE,
					      member);
		if (r >= 0 && s->name)
			r = sd_bus_message_set_destination(m, s->name);
		if (r >= 0)
			r = name ? sd_bus_message_append(m, "ts", tenant, name)
				 : sd_bus_message_append(m, "t", tenant);
		if (r >= 0)
			r = sd_bus_send(c->sdbus, m, NULL);
		if (r < 0)
			log_debug_errno(r, "Cannot send %s to a subscriber, ignoring: %m", member);
		else if (!c->system)
			ready_push(c);
	}
}

static void removal_done(void *userdata, int error)
{
	struct pending *p = userdata;
	struct conn *c = p->conn;
	int r;

	if (!c) { /* nobody to answer */
		pending_free(p);
		return;
	}
	if (error < 0)
		r = sd_bus_reply_method_errorf(p->m, iopf_error_to_name(error),
					       "cannot remove %s: %s", p->what, strerror(-error));
	else {
		for (size_t i = 0; i < p->n_domains; i++)
			tenant_signal(c, p->tenant, "DomainRemoved", p->domains[i]);
		if (p->signal)
			tenant_signal(c, p->tenant, p->signal, p->id);
		r = sd_bus_reply_method_return(p->m, NULL);
	}
	if (r < 0)
		log_debug_errno(r, "Cannot answer the removal of %s (caller gone?), ignoring: %m",
				p->what);
	pending_free(p);
	if (!c->system)
		ready_push(c); /* the reply is in sd-bus's socket: its turn takes it to the peer */
}

typedef int (*remove_fn)(struct iopf_control *c, uint64_t tenant, uint64_t id,
			 iopf_engine_done_fn done, void *userdata, struct iopf_control_error *err);

/* The domains of the source a removal takes with it: they get DomainRemoved too. */
static int collect_domain(const struct iopf_domain_info *i, void *userdata)
{
	struct pending *p = userdata;
	uint64_t *v;

	if (i->source_id != p->id)
		return 0;
	v = realloc(p->domains, (p->n_domains + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	p->domains = v;
	p->domains[p->n_domains++] = i->id;
	return 0;
}

static int remove_object(sd_bus_message *m, struct conn *c, const char *what, remove_fn fn,
			 sd_bus_error *error)
{
	struct iopf_control_error err = {};
	struct pending *p;
	uint64_t tenant, id;
	int r;

	r = sd_bus_message_read(m, "t", &id);
	if (r < 0)
		return r;
	r = get_tenant(c, m, &tenant, error);
	if (r < 0)
		return r;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->bus = c->bus;
	p->conn = c;
	p->m = sd_bus_message_ref(m);
	(void)snprintf(p->what, sizeof(p->what), "%s %" PRIu64, what, id);
	p->tenant = tenant;
	p->id = id;
	LIST_PREPEND(c->pending, p);
	if (fn == iopf_control_unregister_source) {
		p->signal = "SourceRemoved";
		/* best effort: without memory only the source's own signal goes */
		if (iopf_control_foreach_domain(c->bus->control, tenant, false, collect_domain, p,
						NULL) < 0)
			p->n_domains = 0;
	} else if (fn == iopf_control_unregister_domain)
		p->signal = "DomainRemoved";

	r = fn(c->bus->control, tenant, id, removal_done, p, &err);
	if (r < 0) {
		pending_free(p);
		return reply_error(error, r, &err);
	}
	log_debug("Tenant %" PRIu64 ": removing %s.", tenant, p->what);
	return 1; /* answered from removal_done() */
}

/* --- methods --- */

/* RegisterSource and RegisterSourcePaused (@flags: IOPF_ENGINE_SOURCE_PAUSED). */
static int register_source(sd_bus_message *m, struct conn *c, uint32_t flags, sd_bus_error *error)
{
	struct iopf_control_error err = {};
	struct log_ids ids;
	int fault_fd, iommufd;
	uint64_t tenant, id;
	struct iopf_tenant_info ti;
	bool was_registered;
	uint32_t ioas_id;
	int r;

	r = sd_bus_message_read(m, IOPF_WIRE_REGISTER_SOURCE_IN, &fault_fd, &iommufd, &ioas_id);
	if (r < 0)
		return r;
	r = get_tenant(c, m, &tenant, error);
	if (r < 0)
		return r;
	was_registered =
		iopf_control_tenant_info(c->bus->control, tenant, &ti) >= 0 && ti.registered;
	/* The message owns fault_fd and iommufd; control hands the engine copies. */
	r = iopf_control_register_source_flags(c->bus->control, tenant, fault_fd, iommufd, ioas_id,
					       flags, &id, &err);
	if (r < 0) {
		log_debug("Tenant %" PRIu64 ": RegisterSource refused: %s", tenant, err.message);
		return reply_error(error, r, &err);
	}
	ids = tenant_ids(c->bus, tenant);
	ids.source = id;
	log_full_ids(LOG_INFO, 0, &ids,
		     "Tenant %" PRIu64 ": fault source %" PRIu64 " registered (IOAS %" PRIu32
		     ")%s.",
		     tenant, id, ioas_id, flags & IOPF_ENGINE_SOURCE_PAUSED ? ", paused" : "");
	if (!c->system)
		tenant_keep(c, tenant);
	/* the reply first: a client learns the id before any signal names it */
	r = sd_bus_reply_method_return(m, "t", id);
	tenant_signal(c, tenant, "SourceAdded", id);
	if (!was_registered && iopf_control_tenant_info(c->bus->control, tenant, &ti) >= 0)
		operators_signal(c->bus, "TenantAdded", tenant, tenant_display(&ti));
	return r;
}

static int method_register_source(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	return register_source(m, userdata, 0, error);
}

static int method_register_source_paused(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	return register_source(m, userdata, IOPF_ENGINE_SOURCE_PAUSED, error);
}

static int method_start_source(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct iopf_control_error err = {};
	struct conn *c = userdata;
	uint64_t tenant, id;
	int r;

	r = sd_bus_message_read(m, IOPF_WIRE_ID, &id);
	if (r < 0)
		return r;
	r = get_tenant(c, m, &tenant, error);
	if (r < 0)
		return r;
	r = iopf_control_start_source(c->bus->control, tenant, id, &err);
	if (r < 0)
		return reply_error(error, r, &err);
	log_debug("Tenant %" PRIu64 ": fault source %" PRIu64 " started.", tenant, id);
	return sd_bus_reply_method_return(m, NULL);
}

static int method_get_tenant_id(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct conn *c = userdata;
	uint64_t tenant = 0; /* set whenever r >= 0: -O3 cannot tell */
	int r = get_tenant(c, m, &tenant, error);

	return r < 0 ? r : sd_bus_reply_method_return(m, IOPF_WIRE_ID, tenant);
}

/*
 * Attach(tenant): after iopfd restarted, a connection of the process that
 * owned @tenant before takes it over again (the tenant this connection started
 * with, which registered nothing, goes). Peer-to-peer only.
 */
static int method_attach(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct iopf_tenant_info ti;
	struct conn *c = userdata;
	struct waiting *w;
	uint64_t tenant;
	int r;

	r = sd_bus_message_read(m, IOPF_WIRE_ID, &tenant);
	if (r < 0)
		return r;
	if (c->system)
		return sd_bus_error_set(error, IOPF_ERROR_NOT_SUPPORTED,
					"Attach is for peer-to-peer connections");
	w = waiting_find(c->bus, tenant, c->pid, c->uid);
	if (!w || !c->tenant)
		return sd_bus_error_setf(error, IOPF_ERROR_NO_SUCH_OBJECT,
					 "no tenant %" PRIu64 " of this process waits", tenant);
	if (iopf_control_tenant_info(c->bus->control, c->tenant, &ti) < 0 || ti.registered)
		return sd_bus_error_set(error, IOPF_ERROR_EXISTS,
					"this connection's tenant has objects of its own");
	(void)iopf_control_tenant_remove(c->bus->control, c->tenant);
	c->tenant = w->tenant;
	c->pidfd_kept = true;
	safe_close(c->pidfd);
	c->pidfd = TAKE_FD(w->pidfd);
	waiting_free(w);
	log_info("Tenant %" PRIu64 " (pid %d uid %u) connected again after iopfd restarted.",
		 c->tenant, (int)c->pid, (unsigned)c->uid);
	return sd_bus_reply_method_return(m, NULL);
}

static int method_unregister_source(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	return remove_object(m, userdata, "fault source", iopf_control_unregister_source, error);
}

static int method_register_domain(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct iopf_control_error err = {};
	struct conn *c = userdata;
	struct log_ids ids;
	uint64_t tenant, source_id, id;
	uint32_t dev_id, pasid;
	int r;

	r = sd_bus_message_read(m, IOPF_WIRE_REGISTER_DOMAIN_IN, &source_id, &dev_id, &pasid);
	if (r < 0)
		return r;
	r = get_tenant(c, m, &tenant, error);
	if (r < 0)
		return r;
	r = iopf_control_register_domain(c->bus->control, tenant, source_id, dev_id, pasid, &id,
					 &err);
	if (r < 0) {
		log_debug("Tenant %" PRIu64 ": RegisterDomain refused: %s", tenant, err.message);
		return reply_error(error, r, &err);
	}
	ids = (struct log_ids){
		.tenant = tenant,
		.source = source_id,
		.domain = id,
		.has_dev_id = true,
		.dev_id = dev_id,
		.has_pasid = true,
		.pasid = pasid,
	};
	log_full_ids(LOG_DEBUG, 0, &ids,
		     "Tenant %" PRIu64 ": domain %" PRIu64 " registered (source %" PRIu64
		     " dev_id %" PRIu32 " pasid 0x%" PRIx32 ").",
		     tenant, id, source_id, dev_id, pasid);
	r = sd_bus_reply_method_return(m, "t", id);
	tenant_signal(c, tenant, "DomainAdded", id);
	return r;
}

static int method_unregister_domain(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	return remove_object(m, userdata, "domain", iopf_control_unregister_domain, error);
}

static int method_add_region(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct iopf_control_error err = {};
	struct conn *c = userdata;
	uint64_t tenant, domain_id, offset, iova, length, id;
	uint32_t access;
	int fd, r;

	r = sd_bus_message_read(m, IOPF_WIRE_ADD_REGION_IN, &domain_id, &fd, &offset, &iova,
				&length, &access);
	if (r < 0)
		return r;
	r = get_tenant(c, m, &tenant, error);
	if (r < 0)
		return r;
	r = iopf_control_add_region(c->bus->control, tenant, domain_id, fd, offset, iova, length,
				    access, &id, &err);
	if (r < 0) {
		log_debug("Tenant %" PRIu64 ": AddRegion refused: %s", tenant, err.message);
		return reply_error(error, r, &err);
	}
	log_debug("Tenant %" PRIu64 ": region %" PRIu64 " [0x%" PRIx64 ", 0x%" PRIx64
		  ") added to domain %" PRIu64 ".",
		  tenant, id, iova, iova + length, domain_id);
	return sd_bus_reply_method_return(m, "t", id);
}

/* AddRegions(fds, regions): up to IOPF_CONTROL_ADD_REGIONS_MAX regions, all or none. */
static int method_add_regions(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	_cleanup_free_ struct iopf_control_region *v = NULL;
	_cleanup_free_ uint64_t *ids = NULL;
	struct iopf_control_error err = {};
	struct conn *c = userdata;
	int fds[IN_FDS_MAX];
	size_t n_fds = 0, n = 0;
	uint64_t tenant;
	int r, fd;

	r = sd_bus_message_enter_container(m, 'a', "h");
	while (r >= 0 && (r = sd_bus_message_read(m, "h", &fd)) > 0) {
		if (n_fds == IN_FDS_MAX)
			return sd_bus_error_set(error, IOPF_ERROR_INVALID_ARGUMENT, "too many fds");
		fds[n_fds++] = fd;
	}
	if (r >= 0)
		r = sd_bus_message_exit_container(m);
	if (r >= 0)
		r = sd_bus_message_enter_container(m, 'a', IOPF_WIRE_ADD_REGIONS_ROW);
	if (r < 0)
		return r;
	for (size_t cap = 0;;) {
		struct iopf_control_region x;
		uint32_t index;

		r = sd_bus_message_read(m, IOPF_WIRE_ADD_REGIONS_ROW, &x.domain_id, &index,
					&x.offset, &x.iova, &x.length, &x.access);
		if (r < 0)
			return r;
		if (r == 0)
			break;
		if (n == IOPF_CONTROL_ADD_REGIONS_MAX)
			return sd_bus_error_setf(error, IOPF_ERROR_INVALID_ARGUMENT,
						 "more than %u regions in one call",
						 IOPF_CONTROL_ADD_REGIONS_MAX);
		if (n == cap) {
			/* as the rows come: a call of a few regions allocates for a few */
			cap = cap ? cap * 2 : 16;
			if (REALLOC_ARRAY(v, cap) < 0)
				return -ENOMEM;
		}
		if (index >= n_fds)
			return sd_bus_error_setf(error, IOPF_ERROR_INVALID_ARGUMENT,
						 "region %zu: fd index %" PRIu32
						 " beyond the %zu fds",
						 n, index, n_fds);
		x.fd = fds[index];
		v[n++] = x;
	}
	r = sd_bus_message_exit_container(m);
	if (r < 0)
		return r;
	r = get_tenant(c, m, &tenant, error);
	if (r < 0)
		return r;
	ids = calloc(n ? n : 1, sizeof(*ids));
	if (!ids)
		return -ENOMEM;
	r = iopf_control_add_regions(c->bus->control, tenant, v, n, ids, &err);
	if (r < 0) {
		log_debug("Tenant %" PRIu64 ": AddRegions refused: %s", tenant, err.message);
		return reply_error(error, r, &err);
	}
	log_debug("Tenant %" PRIu64 ": %zu regions added.", tenant, n);
	r = sd_bus_message_new_method_return(m, &reply);
	if (r >= 0)
		r = sd_bus_message_append_array(reply, 't', ids, n * sizeof(*ids));
	return r < 0 ? r : sd_bus_send(NULL, reply, NULL);
}

static int method_remove_region(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	return remove_object(m, userdata, "region", iopf_control_remove_region, error);
}

static int method_set_name(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct conn *c = userdata;
	struct log_ids ids;
	const char *name;
	uint64_t tenant;
	int r;

	r = sd_bus_message_read(m, "s", &name);
	if (r < 0)
		return r;
	r = get_tenant(c, m, &tenant, error);
	if (r < 0)
		return r;
	r = iopf_control_tenant_set_label(c->bus->control, tenant, name);
	if (r == -EINVAL)
		return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
					 "a name is at most %u bytes, without control characters",
					 IOPF_CONTROL_LABEL_MAX);
	if (r < 0)
		return r;
	ids = tenant_ids(c->bus, tenant);
	log_full_ids(LOG_DEBUG, 0, &ids, "Tenant %" PRIu64 " is called \"%s\" now.", tenant, name);
	return sd_bus_reply_method_return(m, NULL);
}

static int method_subscribe(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct conn *c = userdata;
	struct bus *b = c->bus;
	const char *sender = sd_bus_message_get_sender(m);
	struct subscriber *s;
	int r;

	r = need_root(c, m, error);
	if (r < 0)
		return r;
	for (s = b->subscribers; s; s = s->next)
		if (c->system ? s->name && sender && strcmp(s->name, sender) == 0 : s->conn == c)
			return sd_bus_reply_method_return(m, NULL); /* once is enough */
	if (c->system && !sender)
		return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED,
					"caller has no bus name");
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->bus = b;
	s->conn = c;
	LIST_PREPEND(b->subscribers, s);
	if (c->system) {
		s->name = strdup(sender);
		r = s->name ? sd_bus_track_new(c->sdbus, &s->track, on_subscriber_gone, s)
			    : -ENOMEM;
		if (r >= 0)
			r = sd_bus_track_add_name(s->track, sender);
		if (r < 0) {
			subscriber_free(s);
			return r;
		}
	} else
		c->subscribed = true;
	return sd_bus_reply_method_return(m, NULL);
}

/* Listings: one reply builder per kind; the "All" variants put the owning tenant first. */
struct listing {
	sd_bus_message *reply;
	struct iopf_control *ctl;
	bool all;
};

static int append_counters(sd_bus_message *reply, const struct iopf_counters *cnt)
{
	struct iopf_counter_field f[IOPF_COUNTER_FIELDS_MAX];
	size_t n = iopf_counters_to_fields(cnt, f);
	int r;

	r = sd_bus_message_open_container(reply, 'a', "{st}");
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = sd_bus_message_append(reply, "{st}", f[i].name, f[i].value);
	if (r >= 0)
		r = sd_bus_message_close_container(reply);
	return r;
}

/* A latency histogram: (count, sum_ns, buckets) with the LatencyBuckets bounds. */
static int append_histogram(sd_bus_message *reply, const struct iopf_histogram *h)
{
	int r;

	r = sd_bus_message_open_container(reply, 'r', "ttat");
	if (r >= 0)
		r = sd_bus_message_append(reply, "tt", h->count, h->sum_ns);
	if (r >= 0)
		r = sd_bus_message_append_array(reply, 't', h->bucket, sizeof(h->bucket));
	if (r >= 0)
		r = sd_bus_message_close_container(reply);
	return r;
}

/* Totals: the counters, then what the tenant (or daemon) holds now. */
static int append_totals(sd_bus_message *reply, const struct iopf_control_stats *st,
			 const struct iopf_counter_field *extra, size_t n_extra)
{
	struct iopf_counter_field f[IOPF_COUNTER_FIELDS_MAX];
	size_t n = iopf_counters_to_fields(&st->counters, f);
	int r;

	r = sd_bus_message_open_container(reply, 'a', "{st}");
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = sd_bus_message_append(reply, "{st}", f[i].name, f[i].value);
	if (r >= 0)
		r = sd_bus_message_append(reply, "{st}", "sources", st->sources);
	if (r >= 0)
		r = sd_bus_message_append(reply, "{st}", "domains", st->domains);
	if (r >= 0)
		r = sd_bus_message_append(reply, "{st}", "regions", st->regions);
	if (r >= 0)
		r = sd_bus_message_append(reply, "{st}", "region_bytes", st->region_bytes);
	for (size_t i = 0; r >= 0 && i < n_extra; i++)
		r = sd_bus_message_append(reply, "{st}", extra[i].name, extra[i].value);
	if (r >= 0)
		r = sd_bus_message_close_container(reply);
	if (r >= 0)
		r = append_histogram(reply, &st->latency);
	return r;
}

static int append_source(const struct iopf_source_info *i, void *userdata)
{
	struct listing *l = userdata;

	if (l->all)
		return sd_bus_message_append(l->reply, IOPF_WIRE_SOURCE_ALL, i->tenant, i->id,
					     i->ioas_id, i->backend);
	return sd_bus_message_append(l->reply, IOPF_WIRE_SOURCE, i->id, i->ioas_id, i->backend);
}

static int append_domain(const struct iopf_domain_info *i, void *userdata)
{
	struct listing *l = userdata;

	if (l->all)
		return sd_bus_message_append(l->reply, IOPF_WIRE_DOMAIN_ALL, i->tenant, i->id,
					     i->source_id, i->dev_id, i->pasid);
	return sd_bus_message_append(l->reply, IOPF_WIRE_DOMAIN, i->id, i->source_id, i->dev_id,
				     i->pasid);
}

static int append_region(const struct iopf_region_info *i, void *userdata)
{
	struct listing *l = userdata;

	if (l->all)
		return sd_bus_message_append(l->reply, IOPF_WIRE_REGION_ALL, i->tenant, i->id,
					     i->domain_id, i->iova, i->length, i->access);
	return sd_bus_message_append(l->reply, IOPF_WIRE_REGION, i->id, i->domain_id, i->iova,
				     i->length, i->access);
}

static int append_domain_stats(const struct iopf_domain_info *i, void *userdata)
{
	struct listing *l = userdata;
	int r;

	r = sd_bus_message_open_container(l->reply, 'r', l->all ? "tttuua{st}" : "ttuua{st}");
	if (r >= 0 && l->all)
		r = sd_bus_message_append(l->reply, "t", i->tenant);
	if (r >= 0)
		r = sd_bus_message_append(l->reply, "ttuu", i->id, i->source_id, i->dev_id,
					  i->pasid);
	if (r >= 0)
		r = append_counters(l->reply, &i->counters);
	if (r >= 0)
		r = sd_bus_message_close_container(l->reply);
	return r;
}

/*
 * A source's unrouted counters, then its health: io_errors (of them read_errors and
 * write_errors), retries, broken (1: its reads fail now, retried on a backoff) and
 * recovered (records a dead iopfd had read, answered by this one).
 */
static int append_source_counters(sd_bus_message *reply, const struct iopf_source_info *i)
{
	struct iopf_counter_field f[IOPF_COUNTER_FIELDS_MAX];
	size_t n = iopf_counters_to_fields(&i->unrouted, f);
	int r;

	r = sd_bus_message_open_container(reply, 'a', "{st}");
	for (size_t k = 0; r >= 0 && k < n; k++)
		r = sd_bus_message_append(reply, "{st}", f[k].name, f[k].value);
	if (r >= 0)
		r = sd_bus_message_append(reply, "{st}{st}{st}{st}{st}{st}{st}", "io_errors",
					  i->io_errors, "read_errors", i->read_errors,
					  "write_errors", i->write_errors, "retries", i->retries,
					  "broken", (uint64_t)i->broken, "paused",
					  (uint64_t)i->paused, "recovered", i->recovered);
	if (r >= 0)
		r = sd_bus_message_close_container(reply);
	return r;
}

static int append_source_stats(const struct iopf_source_info *i, void *userdata)
{
	struct listing *l = userdata;
	int r;

	r = sd_bus_message_open_container(l->reply, 'r', l->all ? "tta{st}" : "ta{st}");
	if (r >= 0 && l->all)
		r = sd_bus_message_append(l->reply, "t", i->tenant);
	if (r >= 0)
		r = sd_bus_message_append(l->reply, "t", i->id);
	if (r >= 0)
		r = append_source_counters(l->reply, i);
	if (r >= 0)
		r = sd_bus_message_close_container(l->reply);
	return r;
}

static int append_domain_metrics(const struct iopf_domain_info *i, void *userdata)
{
	struct listing *l = userdata;
	struct iopf_histogram h = {};
	int r;

	(void)iopf_control_domain_latency(l->ctl, i->id, &h);
	r = sd_bus_message_open_container(l->reply, 'r',
					  l->all ? IOPF_WIRE_DOMAIN_METRICS_ALL_FIELDS
						 : IOPF_WIRE_DOMAIN_METRICS_FIELDS);
	if (r >= 0 && l->all)
		r = sd_bus_message_append(l->reply, "t", i->tenant);
	if (r >= 0)
		r = sd_bus_message_append(l->reply, "ttuu", i->id, i->source_id, i->dev_id,
					  i->pasid);
	if (r >= 0)
		r = append_counters(l->reply, &i->counters);
	if (r >= 0)
		r = append_histogram(l->reply, &h);
	if (r >= 0)
		r = sd_bus_message_close_container(l->reply);
	return r;
}

static int append_tenant_metrics(const struct iopf_tenant_info *t,
				 const struct iopf_control_stats *st, void *userdata)
{
	struct listing *l = userdata;
	int r;

	/* a connection that never registered anything is an observer, not a tenant */
	if (l->all && !t->registered)
		return 0;
	r = sd_bus_message_open_container(l->reply, 'r', IOPF_WIRE_TENANT_METRICS_FIELDS);
	if (r >= 0)
		r = sd_bus_message_append(l->reply, "tuus", t->id, (uint32_t)t->uid,
					  (uint32_t)t->pid, t->label ? t->label : t->name);
	if (r >= 0)
		r = append_totals(l->reply, st, NULL, 0);
	if (r >= 0)
		r = sd_bus_message_close_container(l->reply);
	return r;
}

enum listing_kind {
	LISTING_SOURCES,
	LISTING_DOMAINS,
	LISTING_REGIONS,
	LISTING_DOMAIN_STATS,
	LISTING_SOURCE_STATS,
	LISTING_DOMAIN_METRICS,
	LISTING_TENANT_METRICS,
};

static int list_objects(sd_bus_message *m, struct conn *c, enum listing_kind kind, bool all,
			sd_bus_error *error)
{
	static const char *const row[][2] = {
		[LISTING_SOURCES] = {IOPF_WIRE_SOURCE, IOPF_WIRE_SOURCE_ALL},
		[LISTING_DOMAINS] = {IOPF_WIRE_DOMAIN, IOPF_WIRE_DOMAIN_ALL},
		[LISTING_REGIONS] = {IOPF_WIRE_REGION, IOPF_WIRE_REGION_ALL},
		[LISTING_DOMAIN_STATS] = {IOPF_WIRE_STATS, IOPF_WIRE_STATS_ALL},
		[LISTING_SOURCE_STATS] = {IOPF_WIRE_SOURCE_STATS, IOPF_WIRE_SOURCE_STATS_ALL},
		[LISTING_DOMAIN_METRICS] = {IOPF_WIRE_DOMAIN_METRICS, IOPF_WIRE_DOMAIN_METRICS_ALL},
		[LISTING_TENANT_METRICS] = {IOPF_WIRE_TENANT_METRICS, IOPF_WIRE_TENANT_METRICS},
	};
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	struct iopf_control_error err = {};
	struct iopf_control *ctl = c->bus->control;
	struct listing l = {.all = all, .ctl = c->bus->control};
	uint64_t tenant;
	int r;

	r = get_tenant(c, m, &tenant, error);
	if (r < 0)
		return r;
	r = sd_bus_message_new_method_return(m, &reply);
	if (r < 0)
		return r;
	r = sd_bus_message_open_container(reply, 'a', row[kind][all]);
	if (r < 0)
		return r;
	l.reply = reply;
	switch (kind) {
	case LISTING_SOURCES:
		r = iopf_control_foreach_source(ctl, tenant, all, append_source, &l, &err);
		break;
	case LISTING_DOMAINS:
		r = iopf_control_foreach_domain(ctl, tenant, all, append_domain, &l, &err);
		break;
	case LISTING_REGIONS:
		r = iopf_control_foreach_region(ctl, tenant, all, append_region, &l, &err);
		break;
	case LISTING_DOMAIN_STATS:
		r = iopf_control_foreach_domain(ctl, tenant, all, append_domain_stats, &l, &err);
		break;
	case LISTING_SOURCE_STATS:
		r = iopf_control_foreach_source(ctl, tenant, all, append_source_stats, &l, &err);
		break;
	case LISTING_DOMAIN_METRICS:
		r = iopf_control_foreach_domain(ctl, tenant, all, append_domain_metrics, &l, &err);
		break;
	case LISTING_TENANT_METRICS:
		r = iopf_control_foreach_tenant(ctl, tenant, all, append_tenant_metrics, &l, &err);
		break;
	}
	if (r < 0)
		return reply_error(error, r, &err);
	r = sd_bus_message_close_container(reply);
	if (r < 0)
		return r;
	return sd_bus_send(NULL, reply, NULL);
}

#define LISTING_METHODS(name, kind)                                                                \
	static int method_##name(sd_bus_message *m, void *userdata, sd_bus_error *error)           \
	{                                                                                          \
		return list_objects(m, userdata, kind, false, error);                              \
	}                                                                                          \
	static int method_##name##_all(sd_bus_message *m, void *userdata, sd_bus_error *error)     \
	{                                                                                          \
		return list_objects(m, userdata, kind, true, error);                               \
	}

LISTING_METHODS(list_sources, LISTING_SOURCES)
LISTING_METHODS(list_domains, LISTING_DOMAINS)
LISTING_METHODS(list_regions, LISTING_REGIONS)
LISTING_METHODS(get_stats, LISTING_DOMAIN_STATS)
LISTING_METHODS(get_source_stats, LISTING_SOURCE_STATS)
LISTING_METHODS(get_domain_metrics, LISTING_DOMAIN_METRICS)
LISTING_METHODS(get_tenant_metrics, LISTING_TENANT_METRICS)

static int method_get_daemon_metrics(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	struct iopf_control_error err = {};
	struct conn *c = userdata;
	struct iopf_control_stats *st;
	uint64_t tenant;
	int r;

	r = get_tenant(c, m, &tenant, error);
	if (r < 0)
		return r;
	st = malloc(sizeof(*st));
	if (!st)
		return -ENOMEM;
	r = iopf_control_total_stats(c->bus->control, tenant, st, &err);
	if (r < 0) {
		free(st);
		return reply_error(error, r, &err);
	}
	r = sd_bus_message_new_method_return(m, &reply);
	if (r >= 0) {
		/* tenants registered something; connections (and bus names) may be observers */
		const struct iopf_counter_field extra[] = {
			{"tenants", iopf_control_n_registered_tenants(c->bus->control)},
			{"connections", iopf_control_n_tenants(c->bus->control)},
		};

		r = append_totals(reply, st, extra, ARRAY_SIZE(extra));
	}
	free(st);
	if (r < 0)
		return r;
	return sd_bus_send(NULL, reply, NULL);
}

/* --- properties: settings a tenant may want to know, read at call time --- */

static int property_get(sd_bus *bus, const char *path, const char *interface, const char *property,
			sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
	struct conn *c = userdata;
	const struct conf *conf = c->bus->conf;

	if (strcmp(property, "Version") == 0)
		return sd_bus_message_append(reply, "s", IOPFD_VERSION);
	if (strcmp(property, "Workers") == 0)
		return sd_bus_message_append(reply, "u", c->bus->n_workers);
	if (strcmp(property, "WorkersAlive") == 0)
		return sd_bus_message_append(reply, "u", c->bus->workers_alive);
	if (strcmp(property, "WorkersAliveTimestampMonotonic") == 0)
		return sd_bus_message_append(reply, "t", c->bus->workers_checked_us);
	if (strcmp(property, "StartTimestamp") == 0)
		return sd_bus_message_append(reply, "t", c->bus->started_realtime_us);
	if (strcmp(property, "StartTimestampMonotonic") == 0)
		return sd_bus_message_append(reply, "t", c->bus->started_monotonic_us);
	if (strcmp(property, "FaultAround") == 0)
		return sd_bus_message_append(reply, "t", conf->fault_around);
	if (strcmp(property, "ReadBatch") == 0)
		return sd_bus_message_append(reply, "u", conf->read_batch);
	if (strcmp(property, "BusyPollUSec") == 0)
		return sd_bus_message_append(reply, "t", conf->busy_poll_usec);
	if (strcmp(property, "MaxSources") == 0)
		return sd_bus_message_append(reply, "u", conf->limits.max_sources);
	if (strcmp(property, "MaxDomains") == 0)
		return sd_bus_message_append(reply, "u", conf->limits.max_domains);
	if (strcmp(property, "MaxRegions") == 0)
		return sd_bus_message_append(reply, "u", conf->limits.max_regions);
	if (strcmp(property, "MaxPinnedBytes") == 0)
		return sd_bus_message_append(reply, "t", conf->limits.max_pinned_bytes);
	if (strcmp(property, "MaxSourcesPerUser") == 0)
		return sd_bus_message_append(reply, "u", conf->limits.max_sources_per_user);
	if (strcmp(property, "MaxDomainsPerUser") == 0)
		return sd_bus_message_append(reply, "u", conf->limits.max_domains_per_user);
	if (strcmp(property, "MaxRegionsPerUser") == 0)
		return sd_bus_message_append(reply, "u", conf->limits.max_regions_per_user);
	if (strcmp(property, "MaxPinnedBytesPerUser") == 0)
		return sd_bus_message_append(reply, "t", conf->limits.max_pinned_bytes_per_user);
	if (strcmp(property, "MaxFdsPerUser") == 0)
		return sd_bus_message_append(reply, "u", conf->limits.max_fds_per_user);
	if (strcmp(property, "LatencyBuckets") == 0) {
		uint64_t bounds[IOPF_HIST_FINITE];

		for (unsigned i = 0; i < IOPF_HIST_FINITE; i++)
			bounds[i] = iopf_histogram_bound_ns(i);
		return sd_bus_message_append_array(reply, 't', bounds, sizeof(bounds));
	}
	return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s",
				 property);
}

/*
 * The properties a reload may change, each announced with PropertiesChanged
 * when it does (bus_reloaded()).
 */
#define LIVE_PROP(name, member)                                                                    \
	{                                                                                          \
		name, offsetof(struct conf, member), sizeof(((struct conf *)NULL)->member)         \
	}
static const struct {
	const char *name;
	size_t offset, size;
} live_props[] = {
	LIVE_PROP("FaultAround", fault_around),
	LIVE_PROP("ReadBatch", read_batch),
	LIVE_PROP("BusyPollUSec", busy_poll_usec),
	LIVE_PROP("MaxSources", limits.max_sources),
	LIVE_PROP("MaxDomains", limits.max_domains),
	LIVE_PROP("MaxRegions", limits.max_regions),
	LIVE_PROP("MaxPinnedBytes", limits.max_pinned_bytes),
	LIVE_PROP("MaxSourcesPerUser", limits.max_sources_per_user),
	LIVE_PROP("MaxDomainsPerUser", limits.max_domains_per_user),
	LIVE_PROP("MaxRegionsPerUser", limits.max_regions_per_user),
	LIVE_PROP("MaxPinnedBytesPerUser", limits.max_pinned_bytes_per_user),
	LIVE_PROP("MaxFdsPerUser", limits.max_fds_per_user),
};
#undef LIVE_PROP

static uint64_t live_value(const struct conf *conf, size_t i)
{
	const char *p = (const char *)conf + live_props[i].offset;
	uint64_t v64;
	uint32_t v32;

	if (live_props[i].size == sizeof(v64)) {
		memcpy(&v64, p, sizeof(v64));
		return v64;
	}
	memcpy(&v32, p, sizeof(v32));
	return v32;
}

static void live_snapshot(struct bus *b)
{
	_Static_assert(ARRAY_SIZE(live_props) <= ARRAY_SIZE(b->announced), "room for live_props");
	for (size_t i = 0; i < ARRAY_SIZE(live_props); i++)
		b->announced[i] = live_value(b->conf, i);
}

void bus_reloaded(struct bus *b)
{
	const char *changed[ARRAY_SIZE(live_props) + 1] = {};
	size_t n = 0;

	if (!b)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(live_props); i++) {
		uint64_t v = live_value(b->conf, i);

		if (v != b->announced[i])
			changed[n++] = live_props[i].name;
		b->announced[i] = v;
	}
	if (!n)
		return;
	if (b->system)
		(void)sd_bus_emit_properties_changed_strv(b->system->sdbus, IOPF_DBUS_PATH,
							  IOPF_DBUS_INTERFACE, (char **)changed);
	for (struct conn *c = b->conns; c; c = c->next) {
		if (sd_bus_is_ready(c->sdbus) <= 0)
			continue;
		if (sd_bus_emit_properties_changed_strv(c->sdbus, IOPF_DBUS_PATH,
							IOPF_DBUS_INTERFACE, (char **)changed) >= 0)
			ready_push(c);
	}
}

/* --- org.freedesktop.LogControl1: root only (the bus policy and here) --- */

static int log_control_get(sd_bus *bus, const char *path, const char *interface,
			   const char *property, sd_bus_message *reply, void *userdata,
			   sd_bus_error *error)
{
	struct conn *c = userdata;
	int r;

	r = need_root(c, sd_bus_get_current_message(bus), error);
	if (r < 0)
		return r;
	if (strcmp(property, "LogLevel") == 0)
		return sd_bus_message_append(reply, "s", log_level_to_string(log_max_level));
	if (strcmp(property, "LogTarget") == 0)
		return sd_bus_message_append(reply, "s", log_target_to_string(log_get_target()));
	if (strcmp(property, "SyslogIdentifier") == 0)
		return sd_bus_message_append(reply, "s", "iopfd");
	return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s",
				 property);
}

static int log_control_set(sd_bus *bus, const char *path, const char *interface,
			   const char *property, sd_bus_message *value, void *userdata,
			   sd_bus_error *error)
{
	struct conn *c = userdata;
	const char *v;
	int r, k;

	r = need_root(c, sd_bus_get_current_message(bus), error);
	if (r < 0)
		return r;
	r = sd_bus_message_read(value, "s", &v);
	if (r < 0)
		return r;
	if (strcmp(property, "LogLevel") == 0) {
		k = log_level_from_string(v);
		if (k < 0)
			return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
						 "not a log level: %s", v);
		log_set_max_level(k);
	} else {
		k = log_target_from_string(v);
		if (k < 0)
			return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
						 "not a log target iopfd has (auto, journal, "
						 "console, null): %s",
						 v);
		log_set_target((enum log_target)k);
	}
	log_info("%s set to %s over D-Bus (until the next reload).", property, v);
	return 1;
}

static const sd_bus_vtable log_control_vtable[] = {
	SD_BUS_VTABLE_START(0),
	SD_BUS_WRITABLE_PROPERTY("LogLevel", "s", log_control_get, log_control_set, 0,
				 SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_WRITABLE_PROPERTY("LogTarget", "s", log_control_get, log_control_set, 0,
				 SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_PROPERTY("SyslogIdentifier", "s", log_control_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_VTABLE_END,
};

static const sd_bus_vtable manager_vtable[] = {
	SD_BUS_VTABLE_START(0),
	SD_BUS_METHOD_WITH_ARGS(
		"RegisterSource", SD_BUS_ARGS("h", fault_fd, "h", iommufd, "u", ioas_id),
		SD_BUS_RESULT("t", source_id), method_register_source, SD_BUS_VTABLE_UNPRIVILEGED),
	/* A source whose faults wait until StartSource: its domains and regions come first. */
	SD_BUS_METHOD_WITH_ARGS("RegisterSourcePaused",
				SD_BUS_ARGS("h", fault_fd, "h", iommufd, "u", ioas_id),
				SD_BUS_RESULT("t", source_id), method_register_source_paused,
				SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("StartSource", SD_BUS_ARGS("t", source_id), SD_BUS_NO_RESULT,
				method_start_source, SD_BUS_VTABLE_UNPRIVILEGED),
	/* The caller's tenant, and taking one over again after iopfd restarted. */
	SD_BUS_METHOD_WITH_ARGS("GetTenantId", SD_BUS_NO_ARGS, SD_BUS_RESULT("t", tenant_id),
				method_get_tenant_id, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("Attach", SD_BUS_ARGS("t", tenant_id), SD_BUS_NO_RESULT,
				method_attach, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("UnregisterSource", SD_BUS_ARGS("t", source_id), SD_BUS_NO_RESULT,
				method_unregister_source, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS(
		"RegisterDomain", SD_BUS_ARGS("t", source_id, "u", dev_id, "u", pasid),
		SD_BUS_RESULT("t", domain_id), method_register_domain, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("UnregisterDomain", SD_BUS_ARGS("t", domain_id), SD_BUS_NO_RESULT,
				method_unregister_domain, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("AddRegion",
				SD_BUS_ARGS("t", domain_id, "h", fd, "t", offset, "t", iova, "t",
					    length, "u", access),
				SD_BUS_RESULT("t", region_id), method_add_region,
				SD_BUS_VTABLE_UNPRIVILEGED),
	/* Many regions in one message, all or none (docs/dbus-api.md). */
	SD_BUS_METHOD_WITH_ARGS(
		"AddRegions",
		SD_BUS_ARGS(IOPF_WIRE_ADD_REGIONS_FDS, fds, "a" IOPF_WIRE_ADD_REGIONS_ROW, regions),
		SD_BUS_RESULT("at", region_ids), method_add_regions, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("RemoveRegion", SD_BUS_ARGS("t", region_id), SD_BUS_NO_RESULT,
				method_remove_region, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("SetName", SD_BUS_ARGS("s", name), SD_BUS_NO_RESULT,
				method_set_name, SD_BUS_VTABLE_UNPRIVILEGED),
	/* TenantAdded/TenantRemoved from now on: uid 0 only (checked here). */
	SD_BUS_METHOD_WITH_ARGS("Subscribe", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_subscribe,
				SD_BUS_VTABLE_UNPRIVILEGED),
	/* to the owning tenant alone */
	SD_BUS_SIGNAL_WITH_ARGS("SourceAdded", SD_BUS_ARGS("t", source_id), 0),
	SD_BUS_SIGNAL_WITH_ARGS("SourceRemoved", SD_BUS_ARGS("t", source_id), 0),
	SD_BUS_SIGNAL_WITH_ARGS("DomainAdded", SD_BUS_ARGS("t", domain_id), 0),
	SD_BUS_SIGNAL_WITH_ARGS("DomainRemoved", SD_BUS_ARGS("t", domain_id), 0),
	/* to subscribers */
	SD_BUS_SIGNAL_WITH_ARGS("TenantAdded", SD_BUS_ARGS("t", tenant, "s", name), 0),
	SD_BUS_SIGNAL_WITH_ARGS("TenantRemoved", SD_BUS_ARGS("t", tenant), 0),
	SD_BUS_METHOD_WITH_ARGS("ListSources", SD_BUS_NO_ARGS,
				SD_BUS_RESULT("a" IOPF_WIRE_SOURCE, sources), method_list_sources,
				SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("ListDomains", SD_BUS_NO_ARGS,
				SD_BUS_RESULT("a" IOPF_WIRE_DOMAIN, domains), method_list_domains,
				SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("ListRegions", SD_BUS_NO_ARGS,
				SD_BUS_RESULT("a" IOPF_WIRE_REGION, regions), method_list_regions,
				SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("GetStats", SD_BUS_NO_ARGS,
				SD_BUS_RESULT("a" IOPF_WIRE_STATS, domains), method_get_stats,
				SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("GetSourceStats", SD_BUS_NO_ARGS,
				SD_BUS_RESULT("a" IOPF_WIRE_SOURCE_STATS, sources),
				method_get_source_stats, SD_BUS_VTABLE_UNPRIVILEGED),
	/* Operator views across tenants: uid 0 only (checked in lib/control). */
	SD_BUS_METHOD_WITH_ARGS("ListAllSources", SD_BUS_NO_ARGS,
				SD_BUS_RESULT("a" IOPF_WIRE_SOURCE_ALL, sources),
				method_list_sources_all, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("ListAllDomains", SD_BUS_NO_ARGS,
				SD_BUS_RESULT("a" IOPF_WIRE_DOMAIN_ALL, domains),
				method_list_domains_all, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("ListAllRegions", SD_BUS_NO_ARGS,
				SD_BUS_RESULT("a" IOPF_WIRE_REGION_ALL, regions),
				method_list_regions_all, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("GetAllStats", SD_BUS_NO_ARGS,
				SD_BUS_RESULT("a" IOPF_WIRE_STATS_ALL, domains),
				method_get_stats_all, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("GetAllSourceStats", SD_BUS_NO_ARGS,
				SD_BUS_RESULT("a" IOPF_WIRE_SOURCE_STATS_ALL, sources),
				method_get_source_stats_all, SD_BUS_VTABLE_UNPRIVILEGED),
	/* Metrics with latency histograms; tenant totals survive removals. */
	SD_BUS_METHOD_WITH_ARGS("GetDomainMetrics", SD_BUS_NO_ARGS,
				SD_BUS_RESULT("a" IOPF_WIRE_DOMAIN_METRICS, domains),
				method_get_domain_metrics, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("GetAllDomainMetrics", SD_BUS_NO_ARGS,
				SD_BUS_RESULT("a" IOPF_WIRE_DOMAIN_METRICS_ALL, domains),
				method_get_domain_metrics_all, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("GetTenantMetrics", SD_BUS_NO_ARGS,
				SD_BUS_RESULT("a" IOPF_WIRE_TENANT_METRICS, tenants),
				method_get_tenant_metrics, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("GetAllTenantMetrics", SD_BUS_NO_ARGS,
				SD_BUS_RESULT("a" IOPF_WIRE_TENANT_METRICS, tenants),
				method_get_tenant_metrics_all, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS(
		"GetDaemonMetrics", SD_BUS_NO_ARGS,
		SD_BUS_RESULT(IOPF_WIRE_COUNTERS, counters, IOPF_WIRE_HISTOGRAM, latency),
		method_get_daemon_metrics, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_PROPERTY("Version", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_PROPERTY("Workers", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	/* workers that answered the watchdog's last ping, and when (0: no watchdog, never) */
	SD_BUS_PROPERTY("WorkersAlive", "u", property_get, 0, 0),
	SD_BUS_PROPERTY("WorkersAliveTimestampMonotonic", "t", property_get, 0, 0),
	SD_BUS_PROPERTY("StartTimestamp", "t", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_PROPERTY("StartTimestampMonotonic", "t", property_get, 0,
			SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_PROPERTY("LatencyBuckets", "at", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_PROPERTY("FaultAround", "t", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("ReadBatch", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("BusyPollUSec", "t", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("MaxSources", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("MaxDomains", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("MaxRegions", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("MaxPinnedBytes", "t", property_get, 0,
			SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("MaxSourcesPerUser", "u", property_get, 0,
			SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("MaxDomainsPerUser", "u", property_get, 0,
			SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("MaxRegionsPerUser", "u", property_get, 0,
			SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("MaxPinnedBytesPerUser", "t", property_get, 0,
			SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("MaxFdsPerUser", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_VTABLE_END,
};

/* --- peer-to-peer connections --- */

/*
 * Generic D-Bus clients (busctl --address=...) greet a peer as if it were a
 * bus daemon. Answer Hello with a unique-looking name so they carry on.
 */
static int method_hello(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct conn *c = userdata;
	char name[32];

	(void)snprintf(name, sizeof(name), ":1.%" PRIu64, c->tenant);
	return sd_bus_reply_method_return(m, "s", name);
}

static const sd_bus_vtable hello_vtable[] = {
	SD_BUS_VTABLE_START(0),
	SD_BUS_METHOD_WITH_ARGS("Hello", SD_BUS_NO_ARGS, SD_BUS_RESULT("s", unique_name),
				method_hello, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_VTABLE_END,
};

/* --- file descriptors --- */

/* Open fds of this process, for real: O(n), so only when the estimate says short. */
static int count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own */
}

static unsigned fds_estimate(struct bus *b)
{
	return b->fd_base + b->n_conns * CONN_FDS + b->n_waiting + (b->system ? 1 : 0) +
	       iopf_control_held_fds(b->control);
}

static int64_t fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return INT_MAX;
	return (int64_t)rl.rlim_cur;
}

/*
 * Can iopfd open @need more fds and still keep @reserve free? The estimate
 * (what iopfd held at start, plus each connection and object, plus the drift
 * the last recount found) is cheap; when it says no, a real count decides, at
 * most every FD_RECOUNT_USEC, so a refusal is never made on a stale guess.
 */
static bool fds_available(struct bus *b, unsigned need, unsigned reserve)
{
	int64_t limit, used = (int64_t)fds_estimate(b) + b->fd_drift;
	uint64_t now = 0;
	int real;

	limit = b->fd_limit;
	if (used + need + reserve <= limit)
		return true;
	(void)sd_event_now(b->event, CLOCK_MONOTONIC, &now);
	if (now - b->fd_recounted >= FD_RECOUNT_USEC && (real = count_open_fds()) >= 0) {
		/* read again with the count: only a prlimit(2) from outside moves it */
		b->fd_limit = limit = fd_limit();
		b->fd_recounted = now;
		b->fd_drift = real - (int)fds_estimate(b);
		used = real;
	}
	if (used + need + reserve <= limit)
		return true;
	if (ratelimit_below(&b->fd_rl) >= 0)
		log_full_ids(LOG_WARNING, 0,
			     &(const struct log_ids){.message_id = IOPF_MESSAGE_FDS_SHORT},
			     "Short of file descriptors: %" PRIi64 " open of RLIMIT_NOFILE=%" PRIi64
			     ", %u kept free (FdReserve=%u); refusing new objects and connections "
			     "of users other than root.",
			     used, limit, reserve, b->conf->fd_reserve);
	return false;
}

/* For the registry, before it lets the engine hold more fds. */
static int check_fds(void *userdata, unsigned need)
{
	struct bus *b = userdata;

	return fds_available(b, need, b->conf->fd_reserve) ? 0 : -EMFILE;
}

static void accept_resume(struct bus *b)
{
	if (!b->accept_paused || !b->listen_source)
		return;
	b->accept_paused = false;
	(void)sd_event_source_set_enabled(b->accept_timer, SD_EVENT_OFF);
	(void)sd_event_source_set_enabled(b->listen_source, SD_EVENT_ON);
}

/* accept() ran out of fds: rest instead of spinning on a socket that stays readable. */
static void accept_pause(struct bus *b, int error)
{
	if (ratelimit_below(&b->accept_rl) >= 0)
		log_warning_errno(error,
				  "Cannot accept connections (RLIMIT_NOFILE=%" PRIi64 "): %m; "
				  "pausing for %" PRIu64 " ms or until a connection closes.",
				  fd_limit(), ACCEPT_PAUSE_USEC / 1000);
	b->accept_paused = true;
	(void)sd_event_source_set_enabled(b->listen_source, SD_EVENT_OFF);
	(void)sd_event_source_set_time_relative(b->accept_timer, ACCEPT_PAUSE_USEC);
	(void)sd_event_source_set_enabled(b->accept_timer, SD_EVENT_ONESHOT);
}

static int on_accept_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	accept_resume(userdata);
	return 0;
}

/* --- deadlines: one FIFO and one timer per kind, every entry with the same timeout --- */

static void deadline_arm(struct bus *b, enum deadline_kind k)
{
	struct deadline_queue *q = &b->deadlines[k];

	if (!q->head) {
		(void)sd_event_source_set_enabled(q->timer, SD_EVENT_OFF);
		return;
	}
	(void)sd_event_source_set_time(q->timer, q->head->at);
	(void)sd_event_source_set_enabled(q->timer, SD_EVENT_ONESHOT);
}

static void deadline_stop(struct conn *c, enum deadline_kind k)
{
	struct deadline_queue *q = &c->bus->deadlines[k];
	struct deadline *d = &c->deadlines[k];
	bool head = q->head == d;

	if (!d->at)
		return;
	LIST_REMOVE_TAIL(q->head, q->tail, d);
	d->at = 0;
	if (head)
		deadline_arm(c->bus, k);
}

/*
 * (Re)start @c's deadline of kind @k. Every entry of a kind waits the same
 * timeout, so appending keeps the queue in deadline order and one timer
 * serves all (a reload that shortens a timeout leaves the older entries their
 * old deadline).
 */
static void deadline_start(struct conn *c, enum deadline_kind k)
{
	static const size_t timeouts[_DEADLINE_MAX] = {
		[DEADLINE_AUTH] = offsetof(struct conf, auth_timeout_usec),
		[DEADLINE_IN] = offsetof(struct conf, io_timeout_usec),
		[DEADLINE_OUT] = offsetof(struct conf, io_timeout_usec),
	};
	struct bus *b = c->bus;
	struct deadline_queue *q = &b->deadlines[k];
	struct deadline *d = &c->deadlines[k];
	uint64_t now = 0;

	deadline_stop(c, k);
	(void)sd_event_now(b->event, CLOCK_MONOTONIC, &now);
	d->at = now + *(const uint64_t *)((const char *)b->conf + timeouts[k]);
	LIST_APPEND_TAIL(q->head, q->tail, d);
	if (q->head == d)
		deadline_arm(b, k);
}

_printf_(2, 3) static void log_refused(struct bus *b, const char *fmt, ...)
{
	int dropped = ratelimit_below(&b->refused_rl);
	char msg[256];
	va_list ap;

	if (dropped < 0)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_full_ids(LOG_NOTICE, 0,
		     &(const struct log_ids){.message_id = IOPF_MESSAGE_CONNECTION_REFUSED},
		     dropped > 0 ? "%s (%d similar messages suppressed)" : "%s", msg, dropped);
}

/* --- buffers, charged to the peer's uid --- */

static void buf_charge(struct conn *c, int64_t delta)
{
	c->charged += (uint64_t)delta;
	if (c->tenant && c->bus->control)
		(void)iopf_control_buffered_add(c->bus->control, c->tenant, delta);
}

/* Room for @want bytes in @x, unless the peer's uid would then hold too much. */
static int buf_reserve(struct conn *c, struct xbuf *x, size_t want)
{
	size_t cap = x->cap ? x->cap : 4096;
	uint64_t total;
	uint8_t *p;

	if (want <= x->cap)
		return 0;
	while (cap < want)
		cap *= 2;
	total = c->tenant ? iopf_control_buffered_add(c->bus->control, c->tenant, 0) : 0;
	if (c->uid != 0 && total - x->cap + cap > c->bus->conf->max_buffered_per_user) {
		log_refused(c->bus,
			    "Closing a connection of uid %u: its connections would make iopfd "
			    "buffer %" PRIu64 " bytes, more than MaxBufferedBytesPerUser=%" PRIu64
			    ".",
			    (unsigned)c->uid, total - x->cap + cap,
			    c->bus->conf->max_buffered_per_user);
		return -ENOBUFS;
	}
	p = realloc(x->p, cap);
	if (!p)
		return -ENOMEM;
	x->p = p;
	buf_charge(c, (int64_t)cap - (int64_t)x->cap);
	x->cap = cap;
	return 0;
}

/* An emptied buffer is given back: an idle connection holds nothing. */
static void buf_free(struct conn *c, struct xbuf *x)
{
	buf_charge(c, -(int64_t)x->cap);
	free(x->p);
	*x = (struct xbuf){};
}

/* --- the ready queue --- */

static void ready_remove(struct conn *c)
{
	struct bus *b = c->bus;

	if (!c->queued)
		return;
	LIST_REMOVE_TAIL_BY(ready_prev, ready_next, b->ready_head, b->ready_tail, c);
	c->queued = false;
	if (!b->ready_head)
		(void)sd_event_source_set_enabled(b->ready_source, SD_EVENT_OFF);
}

/* @c has work left: it gets another turn after every connection queued before it. */
static void ready_push(struct conn *c)
{
	struct bus *b = c->bus;

	if (c->queued)
		return;
	LIST_APPEND_TAIL_BY(ready_prev, ready_next, b->ready_head, b->ready_tail, c);
	c->queued = true;
	(void)sd_event_source_set_enabled(b->ready_source, SD_EVENT_ON);
}

/* --- connections --- */

static struct conn *conn_free(struct conn *c)
{
	if (!c)
		return NULL;
	if (c->bus && !c->system) {
		LIST_REMOVE(c->bus->conns, c);
		c->bus->n_conns--;
		ready_remove(c);
		for (unsigned k = 0; k < _DEADLINE_MAX; k++)
			deadline_stop(c, k);
		accept_resume(c->bus); /* fds came free */
	}
	if (c->subscribed)
		for (struct subscriber *s = c->bus->subscribers; s; s = s->next)
			if (s->conn == c) {
				subscriber_free(s);
				break;
			}
	/* removals still running answer nobody */
	while (c->pending) {
		struct pending *p = c->pending;

		LIST_REMOVE(c->pending, p);
		p->conn = NULL;
		LIST_PREPEND(c->bus->orphans, p);
	}
	c->io = sd_event_source_disable_unref(c->io);
	sd_event_source_disable_unref(c->free_source);
	if (c->sdbus) {
		(void)sd_bus_detach_event(c->sdbus);
		/* No flush: a peer that does not read must not stall the daemon. */
		sd_bus_close_unref(c->sdbus);
	}
	for (unsigned i = 0; i < c->n_in_fds; i++)
		safe_close(c->in_fds[i]);
	safe_close(c->pidfd);
	buf_free(c, &c->in);
	buf_free(c, &c->out);
	safe_close(c->pair);
	safe_close(c->sock);
	free(c);
	return NULL;
}

static int on_conn_free(sd_event_source *s, void *userdata)
{
	struct conn *c = userdata;

	if (c->system && c->bus->system == c)
		c->bus->system = NULL;
	conn_free(c);
	return 0;
}

/* The peer hung up, broke the protocol or a limit: its objects go, then the connection. */
static void conn_gone(struct conn *c)
{
	uint64_t tenant = c->tenant;

	/* what the uid was charged goes before the tenant does */
	buf_free(c, &c->in);
	buf_free(c, &c->out);
	c->tenant = 0;
	if (tenant)
		tenant_gone(c->bus, tenant, "disconnected");
	if (c->pidfd_kept)
		tenant_unkeep(c->bus, tenant);
	conn_free(c);
}

/*
 * The SASL lines go to sd-bus as they come, complete lines only (peeked
 * first), up to and including BEGIN: from there on the stream is messages.
 * Return: 1 progress, 0 nothing to read, -errno to drop the connection.
 */
static int conn_read_auth(struct conn *c)
{
	char buf[1024];
	size_t start = c->auth_bytes ? 0 : 1, take = 0; /* the stream opens with a NUL byte */
	bool begin = false;
	ssize_t k;

	k = recv(c->sock, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
	if (k == 0)
		return -ECONNRESET;
	if (k < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	for (size_t i = start; i + 1 < (size_t)k && !begin; i++) {
		if (buf[i] != '\r' || buf[i + 1] != '\n')
			continue;
		begin = i - start == 5 && memcmp(buf + start, "BEGIN", 5) == 0;
		take = start = i + 2;
	}
	if (!take)
		return (size_t)k == sizeof(buf) ? -EBADMSG : 0; /* a line too long, or half a one */
	if (c->auth_bytes + take > AUTH_BYTES_MAX)
		return -EBADMSG;
	/* no cmsg buffer: fds sent during the handshake are a protocol error anyway */
	k = recv(c->sock, buf, take, MSG_DONTWAIT);
	if (k != (ssize_t)take)
		return k < 0 ? -errno : -EIO;
	k = send(c->pair, buf, take, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (k != (ssize_t)take) /* sd-bus drains its end at every turn: this always fits */
		return k < 0 ? -errno : -EIO;
	c->auth_bytes += take;
	c->sdbus_idle = false;
	c->in_auth = !begin;
	return 1;
}

/* Total size of a D-Bus message from its fixed 16-byte header. */
static int message_size(const uint8_t h[static 16], uint64_t *ret)
{
	uint32_t body, fields;

	if (h[3] != 1) /* protocol version */
		return -EBADMSG;
	if (h[0] == 'l') {
		body = (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 |
		       (uint32_t)h[7] << 24;
		fields = (uint32_t)h[12] | (uint32_t)h[13] << 8 | (uint32_t)h[14] << 16 |
			 (uint32_t)h[15] << 24;
	} else if (h[0] == 'B') {
		body = (uint32_t)h[7] | (uint32_t)h[6] << 8 | (uint32_t)h[5] << 16 |
		       (uint32_t)h[4] << 24;
		fields = (uint32_t)h[15] | (uint32_t)h[14] << 8 | (uint32_t)h[13] << 16 |
			 (uint32_t)h[12] << 24;
	} else
		return -EBADMSG;
	*ret = 16 + ALIGN_UP((uint64_t)fields, 8) + body;
	return 0;
}

/*
 * Read the next message from the peer, never past its end (the header says
 * where that is), so the fds that arrive meanwhile are its own, as sd-bus
 * would have it. A message larger than MaxMessageSize is refused at its
 * header; one begun must be whole within IOTimeout.
 * Return: 1 progress, 0 nothing to read, -errno to drop the connection.
 */
static int conn_read_message(struct conn *c)
{
	union {
		struct cmsghdr h;
		uint8_t buf[CMSG_SPACE(sizeof(int) * IN_FDS_MAX)];
	} control;
	size_t need = c->in_need ? c->in_need : 16;
	struct iovec iov;
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = &control,
		.msg_controllen = sizeof(control),
	};
	struct cmsghdr *cmsg;
	bool overflow = false;
	ssize_t k;
	int r;

	r = buf_reserve(c, &c->in, need);
	if (r < 0)
		return r;
	iov = (struct iovec){c->in.p + c->in.len, need - c->in.len};
	k = recvmsg(c->sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (k == 0)
		return -ECONNRESET;
	if (k < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	for (cmsg = CMSG_FIRSTHDR(&mh); cmsg; cmsg = CMSG_NXTHDR(&mh, cmsg)) {
		size_t n = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		const int *fds = (const int *)CMSG_DATA(cmsg);

		if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, fds + i, sizeof(fd));
			if (c->n_in_fds < IN_FDS_MAX)
				c->in_fds[c->n_in_fds++] = fd;
			else {
				safe_close(fd);
				overflow = true;
			}
		}
	}
	/* lost fds (iopfd short of them, or more than a message may carry) break the message */
	if (overflow || (mh.msg_flags & MSG_CTRUNC))
		return -EBADMSG;
	if (c->in.len == 0)
		deadline_start(c, DEADLINE_IN);
	c->in.len += (size_t)k;
	if (!c->in_need && c->in.len == 16) {
		uint64_t size;

		r = message_size(c->in.p, &size);
		if (r < 0)
			return r;
		if (size > c->bus->conf->max_message_size) {
			log_refused(c->bus,
				    "Closing a connection of uid %u: a message of %" PRIu64
				    " bytes, more than MaxMessageSize=%" PRIu64 ".",
				    (unsigned)c->uid, size, c->bus->conf->max_message_size);
			return -EMSGSIZE;
		}
		c->in_need = size;
	}
	return 1;
}

/* The message read goes to sd-bus, with its fds. Return: 1 done, 0 not yet, -errno. */
static int conn_forward(struct conn *c)
{
	while (c->in.off < c->in.len) {
		union {
			struct cmsghdr h;
			uint8_t buf[CMSG_SPACE(sizeof(int) * IN_FDS_MAX)];
		} control;
		struct iovec iov = {c->in.p + c->in.off, c->in.len - c->in.off};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		ssize_t k;

		if (c->in.off == 0 && c->n_in_fds) {
			mh.msg_control = &control;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * c->n_in_fds);
			memset(&control, 0, sizeof(control));
			CMSG_FIRSTHDR(&mh)->cmsg_level = SOL_SOCKET;
			CMSG_FIRSTHDR(&mh)->cmsg_type = SCM_RIGHTS;
			CMSG_FIRSTHDR(&mh)->cmsg_len = CMSG_LEN(sizeof(int) * c->n_in_fds);
			memcpy(CMSG_DATA(CMSG_FIRSTHDR(&mh)), c->in_fds, sizeof(int) * c->n_in_fds);
		}
		k = sendmsg(c->pair, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (k < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -errno;
		if (c->in.off == 0) { /* in flight: sd-bus gets its own copies */
			for (unsigned i = 0; i < c->n_in_fds; i++)
				safe_close(c->in_fds[i]);
			c->n_in_fds = 0;
		}
		c->in.off += (size_t)k;
		c->sdbus_idle = false;
	}
	buf_free(c, &c->in);
	c->in_need = 0;
	deadline_stop(c, DEADLINE_IN);
	return 1;
}

/* What sd-bus wrote goes to our buffer, so nothing of it is queued where we cannot see. */
static int conn_drain(struct conn *c)
{
	bool progress = false;
	uint8_t chunk[16 * 1024];

	for (;;) {
		ssize_t k = recv(c->pair, chunk, sizeof(chunk), MSG_DONTWAIT);
		int r;

		if (k == 0)
			return -ECONNRESET;
		if (k < 0) {
			if (errno != EAGAIN && errno != EINTR)
				return -errno;
			break;
		}
		r = buf_reserve(c, &c->out, c->out.len + (size_t)k);
		if (r < 0)
			return r;
		memcpy(c->out.p + c->out.len, chunk, (size_t)k);
		c->out.len += (size_t)k;
		progress = true;
		/* short: sd-bus, on this thread, wrote no more (a next step looks again anyway) */
		if ((size_t)k < sizeof(chunk))
			break;
	}
	if (c->uid != 0 && c->out.len - c->out.off > c->bus->conf->max_queued_bytes) {
		log_refused(c->bus,
			    "Closing a connection of uid %u: %zu bytes of replies not taken, more "
			    "than MaxQueuedBytes=%" PRIu64 ".",
			    (unsigned)c->uid, c->out.len - c->out.off,
			    c->bus->conf->max_queued_bytes);
		return -ENOBUFS;
	}
	return progress;
}

/* Replies to the peer, as far as it takes them; waiting ones must move within IOTimeout. */
static int conn_flush(struct conn *c)
{
	bool progress = false;

	while (c->out.off < c->out.len) {
		ssize_t k = send(c->sock, c->out.p + c->out.off, c->out.len - c->out.off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (k < 0) {
			if (errno != EAGAIN && errno != EINTR)
				return -errno;
			break;
		}
		c->out.off += (size_t)k;
		progress = true;
	}
	if (c->out.off == c->out.len) {
		buf_free(c, &c->out);
		deadline_stop(c, DEADLINE_OUT);
	} else if (progress || !c->deadlines[DEADLINE_OUT].at)
		deadline_start(c, DEADLINE_OUT);
	return progress;
}

/* Watch for writability only while replies wait for the peer. */
static void conn_update_events(struct conn *c)
{
	uint32_t want = EPOLLIN | EPOLLET | (c->out.len ? EPOLLOUT : 0);

	if (want == c->io_events)
		return;
	if (sd_event_source_set_io_events(c->io, want) >= 0)
		c->io_events = want;
}

/*
 * What one conn_run() learnt: the peer's socket came back empty (new data
 * would raise the edge and run it again), sd-bus's has nothing it wrote since
 * the last drain (it writes only while it processes, within this run, or
 * outside, before the next run). Either read again would find nothing.
 */
struct conn_dry {
	bool sock, pair;
};

/* One step of everything a connection may do. Return: > 0 progress, 0 none, -errno. */
static int conn_step(struct conn *c, struct conn_dry *dry)
{
	uint64_t queued = 0;
	int r, progress = 0;

	if (c->in_need && c->in.len == c->in_need) {
		r = conn_forward(c);
		if (r < 0)
			return r;
		progress |= r;
	}
	/*
	 * sd-bus reads what was forwarded, dispatches, answers into its socket.
	 * Once it found nothing it is asked again only when it was given more or
	 * holds messages of its own: its socket is ours alone, so it cannot have
	 * anything new otherwise (and asking costs a read that finds nothing).
	 */
	if (c->sdbus_idle) {
		uint64_t n_read = 0, n_write = 0;

		(void)sd_bus_get_n_queued_read(c->sdbus, &n_read);
		(void)sd_bus_get_n_queued_write(c->sdbus, &n_write);
		c->sdbus_idle = !n_read && !n_write;
	}
	for (unsigned i = 0; i < CONN_BURST && !c->sdbus_idle; i++) {
		r = sd_bus_process(c->sdbus, NULL);
		if (r < 0)
			return r;
		if (r == 0) {
			c->sdbus_idle = true;
			break;
		}
		progress = 1;
		dry->pair = false;
	}
	if (sd_bus_is_open(c->sdbus) <= 0)
		return -ENOTCONN;
	if (!dry->pair) {
		r = conn_drain(c);
		if (r < 0)
			return r;
		dry->pair = true;
	}
	r = conn_flush(c);
	if (r < 0)
		return r;
	progress |= r;
	/*
	 * The next message only once the last one is with sd-bus and the peer took
	 * its replies: a peer that does not read stops being read, so what it can
	 * make iopfd hold is one message and the replies to it.
	 */
	(void)sd_bus_get_n_queued_write(c->sdbus, &queued);
	if (!c->out.len && !queued && !(c->in_need && c->in.len == c->in_need) && !dry->sock) {
		r = c->in_auth ? conn_read_auth(c) : conn_read_message(c);
		if (r < 0)
			return r;
		dry->sock = r == 0;
		progress |= r;
	}
	return progress;
}

/*
 * Run @c until everything it could do hit EAGAIN (as the edge-triggered
 * source needs) or its burst is used up (then it queues for another turn).
 */
static void conn_run(struct conn *c)
{
	struct conn_dry dry = {};
	int r = 0;

	for (unsigned i = 0; i < CONN_BURST; i++) {
		r = conn_step(c, &dry);
		if (r <= 0)
			break;
	}
	if (r < 0) {
		if (!IN_SET_DISCONNECT(r))
			log_debug_errno(r, "Connection of tenant %" PRIu64 " failed: %m",
					c->tenant);
		conn_gone(c);
		return;
	}
	if (!c->authed && sd_bus_is_ready(c->sdbus) > 0) {
		c->authed = true;
		deadline_stop(c, DEADLINE_AUTH);
	}
	if (r > 0)
		ready_push(c);
	else
		ready_remove(c);
	conn_update_events(c);
}

static int on_conn_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	conn_run(userdata);
	return 0;
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata)
{
	static const char *const why[_DEADLINE_MAX] = {
		[DEADLINE_AUTH] = "no D-Bus handshake within AuthTimeout=",
		[DEADLINE_IN] = "a message not sent whole within IOTimeout=",
		[DEADLINE_OUT] = "replies not taken for IOTimeout=",
	};
	struct bus *b = userdata;

	for (unsigned k = 0; k < _DEADLINE_MAX; k++) {
		struct deadline_queue *q = &b->deadlines[k];

		if (q->timer != s)
			continue;
		while (q->head && q->head->at <= usec) {
			struct conn *c = q->head->conn;

			log_refused(b, "Closing a connection of uid %u: %s%" PRIu64 "ms.",
				    (unsigned)c->uid, why[k],
				    (k == DEADLINE_AUTH ? b->conf->auth_timeout_usec
							: b->conf->io_timeout_usec) /
					    1000);
			conn_gone(c);
		}
		deadline_arm(b, k);
	}
	return 0;
}

static int on_ready(sd_event_source *s, void *userdata)
{
	struct bus *b = userdata;

	for (unsigned i = 0; i < READY_BATCH && b->ready_head; i++) {
		struct conn *c = b->ready_head;

		ready_remove(c); /* conn_run() queues it again if it still has work */
		conn_run(c);
	}
	return 0;
}

/*
 * Takes @fd, the peer's socket (closed on failure too). sd-bus gets one end
 * of a socketpair and never sees the peer's socket: iopfd reads the peer
 * itself, one message at a time, and takes whatever sd-bus writes at once,
 * so what a peer makes iopfd hold is bounded and charged to its uid.
 */
static int conn_setup(struct conn *c, int fd)
{
	int pair[2] = {-EBADF, -EBADF};
	sd_id128_t id;
	int r;

	c->sock = fd;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) < 0)
		return -errno;
	c->pair = pair[0];
	r = sd_id128_randomize(&id);
	if (r < 0) {
		safe_close(pair[1]);
		return r;
	}
	r = sd_bus_new(&c->sdbus);
	if (r < 0) {
		safe_close(pair[1]);
		return r;
	}
	r = sd_bus_set_fd(c->sdbus, pair[1], pair[1]);
	if (r < 0) {
		safe_close(pair[1]);
		return r;
	}
	/* the bus closes pair[1] when freed */
	r = sd_bus_set_server(c->sdbus, 1, id);
	if (r < 0)
		return r;
	/* Authentication is the socket's job (mode, SO_PEERCRED): accept ANONYMOUS too. */
	r = sd_bus_set_anonymous(c->sdbus, 1);
	if (r < 0)
		return r;
	r = sd_bus_negotiate_fds(c->sdbus, 1);
	if (r < 0)
		return r;
	r = sd_bus_add_object_vtable(c->sdbus, NULL, IOPF_DBUS_PATH, IOPF_DBUS_INTERFACE,
				     manager_vtable, c);
	if (r < 0)
		return r;
	r = sd_bus_add_object_vtable(c->sdbus, NULL, "/org/freedesktop/DBus",
				     "org.freedesktop.DBus", hello_vtable, c);
	if (r < 0)
		return r;
	r = sd_bus_add_object_vtable(c->sdbus, NULL, LOG_CONTROL_PATH, LOG_CONTROL_INTERFACE,
				     log_control_vtable, c);
	if (r < 0)
		return r;
	r = sd_bus_start(c->sdbus);
	if (r < 0)
		return r;
	c->in_auth = true;
	c->io_events = EPOLLIN | EPOLLET;
	return sd_event_add_io(c->bus->event, &c->io, c->sock, c->io_events, on_conn_io, c);
}

/*
 * Admission, by the peer's uid: one uid may hold MaxConnectionsPerUser
 * connections, and the last ReservedConnections of MaxConnections are kept
 * for uid 0, so no user can lock out the others or the operator.
 */
static bool admit(struct bus *b, uid_t uid)
{
	const struct conf *conf = b->conf;
	unsigned max = conf->max_connections, reserved = conf->reserved_connections, mine;

	if (b->n_conns >= max) {
		log_refused(b,
			    "Refusing a connection of uid %u: %u connections already "
			    "(MaxConnections=%u).",
			    (unsigned)uid, b->n_conns, max);
		return false;
	}
	/* the operator may dip into half the fd reserve, others into none of it */
	if (!fds_available(b, CONN_FDS, uid == 0 ? conf->fd_reserve / 2 : conf->fd_reserve)) {
		log_refused(b, "Refusing a connection of uid %u: short of file descriptors.",
			    (unsigned)uid);
		return false;
	}
	if (uid == 0)
		return true;
	if (b->n_conns + reserved >= max) {
		log_refused(b,
			    "Refusing a connection of uid %u: the last %u connections are "
			    "reserved for uid 0 (ReservedConnections=%u).",
			    (unsigned)uid, max - b->n_conns, reserved);
		return false;
	}
	mine = iopf_control_user_tenants(b->control, uid);
	if (mine >= conf->max_connections_per_user) {
		log_refused(b,
			    "Refusing a connection of uid %u: it has %u already "
			    "(MaxConnectionsPerUser=%u).",
			    (unsigned)uid, mine, conf->max_connections_per_user);
		return false;
	}
	return true;
}

static int on_connection(sd_event_source *s, int listen_fd, uint32_t revents, void *userdata)
{
	struct bus *b = userdata;
	_cleanup_close_ int fd = -EBADF;
	struct ucred cred = {};
	socklen_t len = sizeof(cred);
	char name[64];
	struct conn *c;
	int r;

	fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
			return 0;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			accept_pause(b, errno);
			return 0;
		}
		log_warning_errno(errno, "Cannot accept a connection, ignoring: %m");
		return 0;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		log_warning_errno(errno, "Cannot get peer credentials, dropping connection: %m");
		return 0;
	}
	if (!admit(b, cred.uid))
		return 0;
	/* a peer that hung up already (a liveness probe) is not worth a tenant */
	if (recv(fd, name, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
		return 0;

	c = calloc(1, sizeof(*c));
	if (!c)
		return log_oom(), 0;
	c->bus = b;
	c->uid = cred.uid;
	c->pid = cred.pid;
	c->sock = c->pair = -EBADF;
	/* the process, not just a pid that could be reused: it outlives iopfd in the fd store */
	c->pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
	if (c->pidfd < 0)
		c->pidfd = -EBADF;
	for (unsigned k = 0; k < _DEADLINE_MAX; k++)
		c->deadlines[k].conn = c;
	LIST_PREPEND(b->conns, c);
	b->n_conns++;

	r = conn_setup(c, TAKE_FD(fd));
	if (r < 0) {
		/* A peer that hangs up at once (a liveness probe) is not worth a warning. */
		log_full_errno(r == -ECONNRESET || r == -EPIPE ? LOG_DEBUG : LOG_WARNING, r,
			       "Cannot set up a connection from pid %d, dropping it: %m",
			       (int)cred.pid);
		conn_free(c);
		return 0;
	}

	(void)snprintf(name, sizeof(name), "pid %d uid %u", (int)cred.pid, (unsigned)cred.uid);
	/* a tenant restored after a restart comes back with Attach(), not by pid alone */
	r = iopf_control_tenant_add(b->control, name, cred.uid, cred.gid, cred.pid, &c->tenant);
	if (r < 0) {
		log_warning_errno(r, "Cannot record tenant %s, dropping connection: %m", name);
		conn_free(c);
		return 0;
	}
	tenant_find_unit(b, c->tenant, cred.pid);
	log_debug("Tenant %" PRIu64 " (%s) connected.", c->tenant, name);
	deadline_start(c, DEADLINE_AUTH);
	/* the handshake may be waiting already */
	conn_run(c);
	return 0;
}

/* Stale socket nodes are removed; a live daemon on the path is an error. */
static int socket_path_prepare(const char *path)
{
	_cleanup_close_ int probe = -EBADF;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	_cleanup_free_ char *dir = strdup(path);
	char *slash;

	if (!dir)
		return log_oom();
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		/* Only the last component: a missing /run means something else is wrong. */
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return log_error_errno(errno, "Cannot create %s: %m", dir);
	}

	strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe < 0)
		return log_error_errno(errno, "Cannot create a socket: %m");
	if (connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return log_error_errno(EADDRINUSE, "Another daemon is serving %s.", path);
	if (errno == ECONNREFUSED && unlink(path) < 0 && errno != ENOENT)
		return log_error_errno(errno, "Cannot remove stale socket %s: %m", path);
	return 0;
}

static int bus_listen(struct bus *b, struct fdstore *store, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	_cleanup_close_ int fd = -EBADF;
	int r;

	/* Socket activation: systemd made the socket, permissions are its business. */
	fd = fdstore_take_socket(store);
	if (fd >= 0) {
		b->listen_fd = TAKE_FD(fd);
		(void)fcntl(b->listen_fd, F_SETFL, O_NONBLOCK);
		log_debug("Using the socket passed by systemd.");
		return 0;
	}

	if (strlen(path) >= sizeof(sa.sun_path))
		return log_error_errno(ENAMETOOLONG, "Socket path %s is too long.", path);
	r = socket_path_prepare(path);
	if (r < 0)
		return r;
	memcpy(sa.sun_path, path, strlen(path));

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return log_error_errno(errno, "Cannot create a socket: %m");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return log_error_errno(errno, "Cannot bind %s: %m", path);
	b->unlink_socket = true;
	/* Any local user may connect: tenants only ever reach their own objects. */
	if (chmod(path, 0666) < 0)
		return log_error_errno(errno, "Cannot make %s world-connectable: %m", path);
	if (listen(fd, SOMAXCONN) < 0)
		return log_error_errno(errno, "Cannot listen on %s: %m", path);
	b->listen_fd = TAKE_FD(fd);
	return 0;
}

/* --- the system bus --- */

static int on_system_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct bus *b = userdata;

	log_warning("Lost the system bus; its tenants are gone, serving the socket only.");
	/* Tenants first (their tracks belong to this bus), then the bus, after this dispatch. */
	while (b->sys_tenants)
		sys_tenant_gone(b->sys_tenants);
	for (struct subscriber *s = b->subscribers, *next; s; s = next) {
		next = s->next;
		if (s->conn == b->system)
			subscriber_free(s);
	}
	if (!b->system->free_source &&
	    sd_event_add_defer(b->event, &b->system->free_source, on_conn_free, b->system) < 0)
		log_warning("Cannot schedule freeing the system bus connection, leaking it.");
	return 0;
}

static int system_bus_setup(struct bus *b)
{
	struct conn *c;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return log_oom();
	c->bus = b;
	c->system = true;
	c->sock = c->pair = -EBADF;
	b->system = c;

	r = sd_bus_open_system(&c->sdbus);
	if (r < 0)
		goto fail;
	r = sd_bus_add_object_vtable(c->sdbus, NULL, IOPF_DBUS_PATH, IOPF_DBUS_INTERFACE,
				     manager_vtable, c);
	if (r >= 0)
		r = sd_bus_add_object_vtable(c->sdbus, NULL, LOG_CONTROL_PATH,
					     LOG_CONTROL_INTERFACE, log_control_vtable, c);
	if (r < 0)
		goto fail;
	r = sd_bus_match_signal(c->sdbus, NULL, "org.freedesktop.DBus.Local",
				"/org/freedesktop/DBus/Local", "org.freedesktop.DBus.Local",
				"Disconnected", on_system_disconnected, b);
	if (r < 0)
		goto fail;
	r = sd_bus_request_name(c->sdbus, IOPF_DBUS_NAME, 0);
	if (r < 0)
		goto fail;
	r = sd_bus_attach_event(c->sdbus, b->event, SD_EVENT_PRIORITY_NORMAL);
	if (r < 0)
		goto fail;
	log_info("Serving %s on the system bus.", IOPF_DBUS_NAME);
	return 0;
fail:
	/* Not fatal: the direct socket is what tenants need. */
	log_warning_errno(r, "Cannot serve %s on the system bus, serving the socket only: %m",
			  IOPF_DBUS_NAME);
	b->system = conn_free(c);
	return 0;
}

/* --- lifetime --- */

int bus_new(sd_event *event, struct iopf_control *control, const struct conf *conf,
	    unsigned n_workers, struct fdstore *store, struct bus **ret)
{
	const char *socket_path = conf->control_socket;
	bool system_bus = conf->system_bus;
	struct bus *b;
	int r;

	b = calloc(1, sizeof(*b));
	if (!b)
		return log_oom();
	b->event = sd_event_ref(event);
	b->control = control;
	b->conf = conf;
	b->store = store;
	b->n_workers = n_workers;
	b->started_realtime_us = now_ns(CLOCK_REALTIME) / NSEC_PER_USEC;
	b->started_monotonic_us = now_ns(CLOCK_MONOTONIC) / NSEC_PER_USEC;
	b->listen_fd = -EBADF;
	b->fd_limit = fd_limit();
	b->refused_rl = RATELIMIT_INIT(10 * USEC_PER_SEC, 10);
	b->fd_rl = RATELIMIT_INIT(10 * USEC_PER_SEC, 5);
	b->accept_rl = RATELIMIT_INIT(10 * USEC_PER_SEC, 5);
	b->socket_path = strdup(socket_path);
	if (!b->socket_path) {
		bus_free(b);
		return log_oom();
	}

	/* The name first: whoever sees the socket may expect the name to be there too. */
	if (system_bus) {
		r = system_bus_setup(b);
		if (r < 0)
			goto fail;
	}
	r = bus_listen(b, store, socket_path);
	if (r < 0)
		goto fail;
	r = sd_event_add_io(event, &b->listen_source, b->listen_fd, EPOLLIN, on_connection, b);
	if (r < 0) {
		log_error_errno(r, "Cannot watch %s: %m", socket_path);
		goto fail;
	}
	r = sd_event_add_defer(event, &b->ready_source, on_ready, b);
	if (r >= 0)
		r = sd_event_source_set_enabled(b->ready_source, SD_EVENT_OFF);
	for (unsigned k = 0; r >= 0 && k < _DEADLINE_MAX; k++) {
		r = sd_event_add_time(event, &b->deadlines[k].timer, CLOCK_MONOTONIC, 0, 0,
				      on_deadline, b);
		if (r >= 0)
			r = sd_event_source_set_enabled(b->deadlines[k].timer, SD_EVENT_OFF);
	}
	if (r >= 0)
		r = sd_event_add_time_relative(event, &b->accept_timer, CLOCK_MONOTONIC,
					       ACCEPT_PAUSE_USEC, 0, on_accept_timer, b);
	if (r >= 0)
		r = sd_event_source_set_enabled(b->accept_timer, SD_EVENT_OFF);
	if (r < 0) {
		log_error_errno(r, "Cannot set up the connection queue: %m");
		goto fail;
	}
	/* what iopfd holds before any tenant: the base of the fd estimate */
	r = count_open_fds();
	b->fd_base = r > 0 ? (unsigned)r - (b->system ? 1 : 0) : 0;
	iopf_control_set_fd_check(control, check_fds, b);
	live_snapshot(b);
	*ret = b;
	return 0;
fail:
	bus_free(b);
	return r;
}

void bus_stop(struct bus *b)
{
	if (b)
		b->listen_source = sd_event_source_disable_unref(b->listen_source);
}

void bus_set_workers_alive(struct bus *b, unsigned alive)
{
	if (!b)
		return;
	b->workers_alive = alive;
	b->workers_checked_us = now_ns(CLOCK_MONOTONIC) / NSEC_PER_USEC;
}

unsigned bus_n_connections(struct bus *b)
{
	return b ? b->n_conns : 0;
}

struct bus *bus_free(struct bus *b)
{
	if (!b)
		return NULL;
	b->control = NULL; /* freed already (the manager frees it first): nothing to charge */
	bus_stop(b);
	while (b->subscribers)
		subscriber_free(b->subscribers);
	while (b->conns)
		conn_free(b->conns);
	while (b->sys_tenants) {
		struct sys_tenant *t = b->sys_tenants;

		LIST_REMOVE(b->sys_tenants, t);
		sys_tenant_free(t);
	}
	b->system = conn_free(b->system);
	while (b->waiting)
		waiting_free(b->waiting);
	while (b->orphans)
		pending_free(b->orphans);
	b->ready_source = sd_event_source_disable_unref(b->ready_source);
	for (unsigned k = 0; k < _DEADLINE_MAX; k++)
		b->deadlines[k].timer = sd_event_source_disable_unref(b->deadlines[k].timer);
	b->accept_timer = sd_event_source_disable_unref(b->accept_timer);
	safe_close(b->listen_fd);
	if (b->unlink_socket)
		(void)unlink(b->socket_path);
	free(b->socket_path);
	sd_event_unref(b->event);
	free(b);
	return NULL;
}
