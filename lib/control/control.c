/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tenants, ownership, limits and request validation in front of the engine.
 * Every check that can be made here is made here, so a bad request gets a
 * message naming the argument; the engine checks again and its errno is the
 * fallback.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "control.h"
#include "fd-util.h"
#include "idhide.h"
#include "idmap.h"
#include "list.h"
#include "u64vec.h"
#include "util.h"
#include "wire.h"

/* Counters and latency of removed objects, kept so totals never go backwards. */
struct retired {
	struct iopf_counters counters; /* bytes_mapped unused: it is a gauge */
	struct iopf_histogram latency;
};

/* What a tenant (or a uid's tenants) holds, for the limits: exact on every add and removal. */
struct usage {
	unsigned sources, domains, regions;
	unsigned fds;	       /* the engine keeps open for them */
	uint64_t region_bytes; /* saturating; a tenant's is recounted when a removal meets it */
};

enum cobj_kind {
	COBJ_SOURCE,
	COBJ_DOMAIN,
	COBJ_REGION,
	_COBJ_KIND_MAX,
};

/*
 * An object a tenant registered, as the registry tracks it. The engine keeps
 * the object itself; this is its owner, its place in the tree (removing a
 * source removes its domains, a domain its regions) and what it counts
 * against the limits, so neither a limit check nor a teardown walks other
 * tenants' objects.
 */
struct cobj {
	uint64_t id; /* the engine's */
	enum cobj_kind kind;
	struct iopf_tenant *tenant;
	struct cobj *parent;		  /* a domain's source, a region's domain */
	struct cobj *children;		  /* a source's domains, a domain's regions */
	struct cobj *sib_prev, *sib_next; /* among the parent's children */
	struct cobj *prev, *next;	  /* the tenant's objects of this kind, oldest first */
	uint64_t length;		  /* a region's */
};

struct cobj_list {
	struct cobj *head, *tail;
};

/* Everything the tenants of one uid hold: the per-user limits count against it. */
struct iopf_user {
	uid_t uid;
	unsigned n_tenants; /* freed when the last one goes */
	struct usage usage;
	uint64_t buffered; /* bytes the daemon's transport holds for its tenants */
};

struct iopf_tenant {
	uint64_t id;
	uid_t uid;
	gid_t gid;
	pid_t pid;
	char *name;		/* owned */
	struct iopf_user *user; /* its uid's record */
	struct retired retired; /* of its removed domains and sources */
	struct usage usage;
	struct cobj_list objs[_COBJ_KIND_MAX]; /* owned; ascending engine id */
	bool persisted;	 /* its record is in the engine's arena: it registered something */
	bool registered; /* it registered a source once: a tenant, not an observer */
	char *label;	 /* owned; what it calls itself (SetName), or NULL */
	char *unit;	 /* owned; its process's systemd unit, or NULL */
	struct iopf_tenant *prev, *next; /* c->tenants, newest first */
};

struct iopf_control {
	struct iopf_engine *engine; /* not owned */
	struct iopf_control_limits limits;
	struct iopf_tenant *tenants; /* owned; newest first */
	unsigned n_tenants;
	unsigned n_registered;	      /* of them, those that registered something */
	struct iopf_idmap tenant_ids; /* id -> tenant */
	struct iopf_idmap users;      /* uid + 1 -> struct iopf_user (owned) */
	struct iopf_idmap objects;    /* engine id -> struct cobj */
	uint64_t next_tenant_id;
	struct retired retired; /* every removed object since start, gone tenants' too */
	struct usage usage;	/* everyone's */
	unsigned fds_removing;	/* of objects being removed: open until the engine is done */
	iopf_control_fd_check_fn fd_check;
	void *fd_check_userdata;
	/* besides uid 0, who may read every tenant's (never change it): [Metrics] Readers= */
	uid_t readers[IOPF_CONTROL_READERS_MAX];
	unsigned n_readers;
	/* with hide_ids, callers see keyed permutations of the engine's and our ids */
	bool hide_ids;
	struct iopf_idkey object_key, tenant_key;
};

_printf_(3, 4) static int fail(struct iopf_control_error *err, int r, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		va_start(ap, fmt);
		(void)vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return r;
}

static bool limit_ok(unsigned v)
{
	return v >= 1 && v <= IOPF_CONTROL_LIMIT_MAX;
}

/* 0 is fine for the per-user limits: none. */
static bool user_limit_ok(unsigned v)
{
	return v <= IOPF_CONTROL_LIMIT_MAX;
}

static bool limits_ok(const struct iopf_control_limits *l)
{
	return limit_ok(l->max_sources) && limit_ok(l->max_domains) && limit_ok(l->max_regions) &&
	       (l->max_pinned_bytes == 0 || l->max_pinned_bytes >= IOPF_PAGE_SIZE) &&
	       user_limit_ok(l->max_sources_per_user) && user_limit_ok(l->max_domains_per_user) &&
	       user_limit_ok(l->max_regions_per_user) &&
	       (l->max_pinned_bytes_per_user == 0 ||
		l->max_pinned_bytes_per_user >= IOPF_PAGE_SIZE) &&
	       l->max_fds_per_user <= 2 * IOPF_CONTROL_LIMIT_MAX;
}

static void normalize_limits(struct iopf_control_limits *l)
{
	if (l->max_pinned_bytes == 0)
		l->max_pinned_bytes = IOPF_CONTROL_PINNED_UNLIMITED;
	if (l->max_pinned_bytes_per_user == 0)
		l->max_pinned_bytes_per_user = IOPF_CONTROL_PINNED_UNLIMITED;
	if (l->max_sources_per_user == 0)
		l->max_sources_per_user = UINT_MAX;
	if (l->max_domains_per_user == 0)
		l->max_domains_per_user = UINT_MAX;
	if (l->max_regions_per_user == 0)
		l->max_regions_per_user = UINT_MAX;
	if (l->max_fds_per_user == 0)
		l->max_fds_per_user = UINT_MAX;
}

/* dst += src; bytes_mapped is a gauge and is left alone. */
static void counters_add(struct iopf_counters *dst, const struct iopf_counters *src)
{
	dst->faults += src->faults;
	dst->groups += src->groups;
	dst->success += src->success;
	dst->invalid += src->invalid;
	for (unsigned i = 0; i < _IOPF_REASON_MAX; i++)
		dst->reasons[i] += src->reasons[i];
	dst->stale += src->stale;
	dst->pages_mapped += src->pages_mapped;
	dst->maps += src->maps;
	dst->coalesced += src->coalesced;
}

static struct iopf_tenant *tenant_find(struct iopf_control *c, uint64_t id)
{
	return iopf_idmap_get(&c->tenant_ids, id);
}

/* The id a caller sees for the engine's object @id, and back. */
static uint64_t shown_id(const struct iopf_control *c, uint64_t id)
{
	return c->hide_ids ? iopf_idhide(&c->object_key, id) : id;
}

static uint64_t real_id(const struct iopf_control *c, uint64_t shown)
{
	return c->hide_ids ? iopf_idreveal(&c->object_key, shown) : shown;
}

static uint64_t shown_tenant(const struct iopf_control *c, uint64_t id)
{
	return c->hide_ids ? iopf_idhide(&c->tenant_key, id) : id;
}

/* The tenant a caller names by the id it was given. */
static struct iopf_tenant *tenant_get(struct iopf_control *c, uint64_t shown)
{
	return tenant_find(c, c->hide_ids ? iopf_idreveal(&c->tenant_key, shown) : shown);
}

/*
 * What of the registry outlives the process, as records in the engine's arena
 * (iopf_engine_record_put()): the id keys, and each tenant that registered
 * something. Which objects are whose, the engine's own records say.
 */
enum {
	RECORD_TENANT = 0x80,
	RECORD_KEYS = 0x81,
};
#define RECORD_VERSION 1u

struct tenant_record {
	uint32_t version;
	uint32_t uid, gid, pid;
	char name[64];
};

struct keys_record {
	uint32_t version;
	uint32_t hide_ids;
	struct iopf_idkey object_key, tenant_key;
};

static void persist_keys(struct iopf_control *c)
{
	struct keys_record rec = {
		.version = RECORD_VERSION,
		.hide_ids = c->hide_ids,
		.object_key = c->object_key,
		.tenant_key = c->tenant_key,
	};

	/* best effort, as the engine's own records: only a restart would miss it */
	(void)iopf_engine_record_put(c->engine, IOPF_ENGINE_RECORD_KEY(RECORD_KEYS, 1), &rec,
				     sizeof(rec));
}

/* A tenant becomes one a restart must know once it registers its first object. */
static void persist_tenant(struct iopf_control *c, struct iopf_tenant *t)
{
	struct tenant_record rec = {
		.version = RECORD_VERSION,
		.uid = t->uid,
		.gid = t->gid,
		.pid = (uint32_t)t->pid,
	};

	if (t->persisted)
		return;
	(void)snprintf(rec.name, sizeof(rec.name), "%s", t->name);
	t->persisted =
		iopf_engine_record_put(c->engine, IOPF_ENGINE_RECORD_KEY(RECORD_TENANT, t->id),
				       &rec, sizeof(rec)) == 0;
}

int iopf_control_hide_ids(struct iopf_control *c)
{
	if (c->n_tenants || c->usage.sources || c->usage.domains || c->usage.regions)
		return -EBUSY; /* ids handed out already would change */
	if (getrandom(&c->object_key, sizeof(c->object_key), 0) != sizeof(c->object_key) ||
	    getrandom(&c->tenant_key, sizeof(c->tenant_key), 0) != sizeof(c->tenant_key))
		return negative_errno();
	c->hide_ids = true;
	persist_keys(c);
	return 0;
}

/* The engine finished removing a domain or source: keep its numbers. */
static void on_retired(const struct iopf_engine_stats *st, void *userdata)
{
	struct iopf_control *c = userdata;
	struct iopf_tenant *t = tenant_find(c, st->tenant);

	counters_add(&c->retired.counters, st->counters);
	iopf_histogram_merge(&c->retired.latency, st->latency);
	if (t) { /* gone tenants only count in the daemon's totals */
		counters_add(&t->retired.counters, st->counters);
		iopf_histogram_merge(&t->retired.latency, st->latency);
	}
}

int iopf_control_new(struct iopf_engine *engine, const struct iopf_control_limits *limits,
		     struct iopf_control **ret)
{
	struct iopf_control *c;

	if (!engine || !ret)
		return -EINVAL;
	if (limits && !limits_ok(limits))
		return -EINVAL;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->engine = engine;
	c->next_tenant_id = 1;
	if (limits)
		c->limits = *limits;
	else
		c->limits = IOPF_CONTROL_LIMITS_DEFAULT;
	normalize_limits(&c->limits);
	iopf_engine_set_retired_fn(engine, on_retired, c);
	*ret = c;
	return 0;
}

int iopf_control_set_limits(struct iopf_control *c, const struct iopf_control_limits *limits)
{
	if (!limits || !limits_ok(limits))
		return -EINVAL;
	c->limits = *limits;
	normalize_limits(&c->limits);
	return 0;
}

int iopf_control_set_readers(struct iopf_control *c, const uid_t *uids, size_t n)
{
	if (n > IOPF_CONTROL_READERS_MAX || (n && !uids))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		c->readers[i] = uids[i];
	c->n_readers = (unsigned)n;
	return 0;
}

bool iopf_control_may_read_all(const struct iopf_control *c, uid_t uid)
{
	if (uid == 0)
		return true;
	for (unsigned i = 0; i < c->n_readers; i++)
		if (c->readers[i] == uid)
			return true;
	return false;
}

/* uid 0 is a valid key too: the map's keys start at 1. */
static uint64_t user_key(uid_t uid)
{
	return (uint64_t)uid + 1;
}

static struct iopf_user *user_get(struct iopf_control *c, uid_t uid)
{
	struct iopf_user *u = iopf_idmap_get(&c->users, user_key(uid));

	if (u)
		return u;
	u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->uid = uid;
	if (iopf_idmap_put(&c->users, user_key(uid), u) < 0) {
		free(u);
		return NULL;
	}
	return u;
}

static void user_unref(struct iopf_control *c, struct iopf_user *u)
{
	if (u && --u->n_tenants == 0)
		free(iopf_idmap_remove(&c->users, user_key(u->uid)));
}

uint64_t iopf_control_buffered_add(struct iopf_control *c, uint64_t tenant, int64_t delta)
{
	struct iopf_tenant *t = tenant_get(c, tenant);

	if (!t)
		return 0;
	/* the transport releases exactly what it charged: no wrap either way */
	t->user->buffered += (uint64_t)delta;
	return t->user->buffered;
}

unsigned iopf_control_user_tenants(struct iopf_control *c, uid_t uid)
{
	struct iopf_user *u = iopf_idmap_get(&c->users, user_key(uid));

	return u ? u->n_tenants : 0;
}

static struct iopf_tenant *tenant_free(struct iopf_control *c, struct iopf_tenant *t)
{
	if (t) {
		user_unref(c, t->user);
		free(t->name);
		free(t->label);
		free(t->unit);
		free(t);
	}
	return NULL;
}

static void cobj_list_free(struct cobj_list *l)
{
	while (l->head) {
		struct cobj *o = l->head;

		l->head = o->next;
		free(o);
	}
	l->tail = NULL;
}

struct iopf_control *iopf_control_free(struct iopf_control *c)
{
	if (!c)
		return NULL;
	while (c->tenants) {
		struct iopf_tenant *t = c->tenants;

		c->tenants = t->next;
		for (unsigned k = 0; k < _COBJ_KIND_MAX; k++)
			cobj_list_free(&t->objs[k]);
		tenant_free(c, t);
	}
	iopf_idmap_done(&c->tenant_ids);
	iopf_idmap_done(&c->users);
	iopf_idmap_done(&c->objects);
	free(c);
	return NULL;
}

static int tenant_new(struct iopf_control *c, uint64_t id, const char *name, uid_t uid, gid_t gid,
		      pid_t pid, struct iopf_tenant **ret);

int iopf_control_tenant_add(struct iopf_control *c, const char *name, uid_t uid, gid_t gid,
			    pid_t pid, uint64_t *ret_tenant)
{
	struct iopf_tenant *t;
	int r;

	if (!c || !name || !*name || !ret_tenant)
		return -EINVAL;
	r = tenant_new(c, c->next_tenant_id, name, uid, gid, pid, &t);
	if (r < 0)
		return r;
	c->next_tenant_id++;
	*ret_tenant = shown_tenant(c, t->id);
	return 0;
}

static int tenant_new(struct iopf_control *c, uint64_t id, const char *name, uid_t uid, gid_t gid,
		      pid_t pid, struct iopf_tenant **ret)
{
	struct iopf_tenant *t;
	int r;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->user = user_get(c, uid);
	if (t->user)
		t->user->n_tenants++;
	t->name = strdup(name);
	if (!t->name || !t->user) {
		tenant_free(c, t);
		return -ENOMEM;
	}
	t->id = id;
	r = iopf_idmap_put(&c->tenant_ids, t->id, t);
	if (r < 0) {
		tenant_free(c, t);
		return r;
	}
	t->uid = uid;
	t->gid = gid;
	t->pid = pid;
	LIST_PREPEND(c->tenants, t);
	c->n_tenants++;
	*ret = t;
	return 0;
}

int iopf_control_tenant_info(struct iopf_control *c, uint64_t tenant, struct iopf_tenant_info *ret)
{
	struct iopf_tenant *t = tenant_get(c, tenant);

	if (!t)
		return -ENOENT;
	*ret = (struct iopf_tenant_info){
		.id = tenant,
		.uid = t->uid,
		.gid = t->gid,
		.pid = t->pid,
		.name = t->name,
		.label = t->label,
		.unit = t->unit,
		.registered = t->registered,
	};
	return 0;
}

unsigned iopf_control_n_tenants(struct iopf_control *c)
{
	return c ? c->n_tenants : 0;
}

unsigned iopf_control_n_registered_tenants(struct iopf_control *c)
{
	return c ? c->n_registered : 0;
}

static int set_text(char **where, const char *label)
{
	char *copy = NULL;

	if (label && *label) {
		size_t n = strlen(label);

		if (n > IOPF_CONTROL_LABEL_MAX)
			return -EINVAL;
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)label[i] < 0x20 || label[i] == 0x7f)
				return -EINVAL;
		copy = strdup(label);
		if (!copy)
			return -ENOMEM;
	}
	free(*where);
	*where = copy;
	return 0;
}

int iopf_control_tenant_set_label(struct iopf_control *c, uint64_t tenant, const char *label)
{
	struct iopf_tenant *t = tenant_get(c, tenant);

	return t ? set_text(&t->label, label) : -ENOENT;
}

int iopf_control_tenant_set_unit(struct iopf_control *c, uint64_t tenant, const char *unit)
{
	struct iopf_tenant *t = tenant_get(c, tenant);

	return t ? set_text(&t->unit, unit) : -ENOENT;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return b > UINT64_MAX - a ? UINT64_MAX : a + b;
}

/* @t's object of @kind by the id @t was shown; someone else's is not found. */
static struct cobj *cobj_find(struct iopf_control *c, enum cobj_kind kind,
			      const struct iopf_tenant *t, uint64_t shown)
{
	struct cobj *o = iopf_idmap_get(&c->objects, real_id(c, shown));

	return o && o->kind == kind && o->tenant == t ? o : NULL;
}

static void usage_count(struct usage *u, const struct cobj *o, int sign)
{
	switch (o->kind) {
	case COBJ_SOURCE:
		u->sources += sign;
		u->fds += sign * (int)IOPF_CONTROL_SOURCE_FDS;
		break;
	case COBJ_DOMAIN:
		u->domains += sign;
		break;
	case COBJ_REGION:
		u->regions += sign;
		u->fds += sign * (int)IOPF_CONTROL_REGION_FDS;
		if (sign > 0)
			u->region_bytes = add_sat(u->region_bytes, o->length);
		else if (u->region_bytes != UINT64_MAX)
			u->region_bytes -= o->length;
		break;
	case _COBJ_KIND_MAX:
		break;
	}
}

/* A saturated sum cannot be taken apart: count it again from the regions left. */
static void usage_recount_bytes(struct usage *u, const struct cobj_list *regions)
{
	if (u->region_bytes != UINT64_MAX)
		return;
	u->region_bytes = 0;
	for (const struct cobj *o = regions->head; o; o = o->next)
		u->region_bytes = add_sat(u->region_bytes, o->length);
}

/*
 * An object record, allocated and with room in the map before the engine is
 * asked, so tracking what the engine created cannot fail. NULL: out of memory.
 */
static struct cobj *cobj_new(struct iopf_control *c)
{
	if (iopf_idmap_reserve(&c->objects, 1) < 0)
		return NULL;
	return calloc(1, sizeof(struct cobj));
}

/* Track @o, what the engine just created for @t under @parent (NULL for a source). */
static void cobj_link(struct iopf_control *c, struct cobj *o, struct iopf_tenant *t,
		      enum cobj_kind kind, uint64_t id, struct cobj *parent, uint64_t length)
{
	struct cobj_list *l = &t->objs[kind];

	*o = (struct cobj){.id = id, .kind = kind, .tenant = t, .parent = parent, .length = length};
	/* room was reserved, and the engine never hands out an id twice */
	(void)iopf_idmap_put(&c->objects, id, o);
	/* engine ids only grow: appending keeps the list ascending */
	LIST_APPEND_TAIL(l->head, l->tail, o);
	if (parent)
		LIST_PREPEND_BY(sib_prev, sib_next, parent->children, o);
	usage_count(&t->usage, o, +1);
	usage_count(&t->user->usage, o, +1);
	usage_count(&c->usage, o, +1);
}

/* Forget @o and everything under it (the engine removed them together). */
static unsigned cobj_drop(struct iopf_control *c, struct cobj *o)
{
	struct iopf_tenant *t = o->tenant;
	struct cobj_list *l = &t->objs[o->kind];
	unsigned n = 1;

	while (o->children)
		n += cobj_drop(c, o->children);
	if (o->parent)
		LIST_REMOVE_BY(sib_prev, sib_next, o->parent->children, o);
	LIST_REMOVE_TAIL(l->head, l->tail, o);
	(void)iopf_idmap_remove(&c->objects, o->id);
	usage_count(&t->usage, o, -1);
	usage_count(&t->user->usage, o, -1);
	usage_count(&c->usage, o, -1);
	if (o->kind == COBJ_REGION)
		usage_recount_bytes(&t->usage, &t->objs[COBJ_REGION]);
	free(o);
	return n;
}

/* Forget @o alone: its children stay, without a parent (the engine kept them). */
static void cobj_orphan_children(struct cobj *o)
{
	while (o->children) {
		struct cobj *k = o->children;

		o->children = k->sib_next;
		k->parent = NULL;
		k->sib_prev = k->sib_next = NULL;
	}
}

/*
 * The per-user limits, for @n more objects of @kind covering @bytes (regions):
 * the sum over every tenant of the uid, so more connections do not buy more.
 */
static int user_check(struct iopf_control *c, const struct iopf_tenant *t, enum cobj_kind kind,
		      unsigned n, uint64_t bytes, struct iopf_control_error *err)
{
	const struct iopf_control_limits *l = &c->limits;
	const struct iopf_user *u = t->user;
	unsigned uid = (unsigned)u->uid, fds = 0;

	switch (kind) {
	case COBJ_SOURCE:
		if ((uint64_t)u->usage.sources + n > l->max_sources_per_user)
			return fail(err, -EDQUOT,
				    "uid %u already has %u fault sources over its %u tenants "
				    "(MaxSourcesPerUser=%u)",
				    uid, u->usage.sources, u->n_tenants, l->max_sources_per_user);
		fds = IOPF_CONTROL_SOURCE_FDS;
		break;
	case COBJ_DOMAIN:
		if ((uint64_t)u->usage.domains + n > l->max_domains_per_user)
			return fail(err, -EDQUOT,
				    "uid %u already has %u domains over its %u tenants "
				    "(MaxDomainsPerUser=%u)",
				    uid, u->usage.domains, u->n_tenants, l->max_domains_per_user);
		break;
	case COBJ_REGION:
		if ((uint64_t)u->usage.regions + n > l->max_regions_per_user)
			return fail(err, -EDQUOT,
				    "uid %u already has %u regions over its %u tenants "
				    "(MaxRegionsPerUser=%u)",
				    uid, u->usage.regions, u->n_tenants, l->max_regions_per_user);
		if (l->max_pinned_bytes_per_user != IOPF_CONTROL_PINNED_UNLIMITED &&
		    add_sat(u->usage.region_bytes, bytes) > l->max_pinned_bytes_per_user)
			return fail(err, -EDQUOT,
				    "uid %u's regions would cover %" PRIu64 " bytes, more than "
				    "MaxPinnedBytesPerUser=%" PRIu64,
				    uid, add_sat(u->usage.region_bytes, bytes),
				    l->max_pinned_bytes_per_user);
		fds = IOPF_CONTROL_REGION_FDS;
		break;
	case _COBJ_KIND_MAX:
		break;
	}
	if ((uint64_t)u->usage.fds + (uint64_t)n * fds > l->max_fds_per_user)
		return fail(err, -EDQUOT,
			    "uid %u's tenants would hold %" PRIu64 " file descriptors in iopfd, "
			    "more than MaxFdsPerUser=%u",
			    uid, (uint64_t)u->usage.fds + (uint64_t)n * fds, l->max_fds_per_user);
	return 0;
}

/* The daemon-wide check: can iopfd hold @need more fds for tenants? */
static int fd_check(struct iopf_control *c, unsigned need, const char *what,
		    struct iopf_control_error *err)
{
	if (c->fd_check && c->fd_check(c->fd_check_userdata, need) < 0)
		return fail(err, -EDQUOT, "iopfd is short of file descriptors: no new %s for now",
			    what);
	return 0;
}

void iopf_control_set_fd_check(struct iopf_control *c, iopf_control_fd_check_fn fn, void *userdata)
{
	c->fd_check = fn;
	c->fd_check_userdata = userdata;
}

unsigned iopf_control_held_fds(struct iopf_control *c)
{
	return c->usage.fds + c->fds_removing;
}

/* Tenant teardown needs no reply: the tenant is gone. */
static void teardown_done(void *userdata, int error)
{
}

typedef int (*remove_engine_fn)(struct iopf_engine *e, uint64_t id, iopf_engine_done_fn done,
				void *userdata);

static const remove_engine_fn removers[_COBJ_KIND_MAX] = {
	[COBJ_SOURCE] = iopf_engine_remove_source,
	[COBJ_DOMAIN] = iopf_engine_remove_domain,
	[COBJ_REGION] = iopf_engine_remove_region,
};

/* The fds the engine holds for @o and everything under it. */
static unsigned cobj_fds(const struct cobj *o)
{
	unsigned n = o->kind == COBJ_SOURCE   ? IOPF_CONTROL_SOURCE_FDS
		     : o->kind == COBJ_REGION ? IOPF_CONTROL_REGION_FDS
					      : 0;

	for (const struct cobj *k = o->children; k; k = k->sib_next)
		n += cobj_fds(k);
	return n;
}

/* A removal in the engine: its fds stay counted until the engine is done with it. */
struct removal {
	struct iopf_control *c;
	unsigned fds;
	iopf_engine_done_fn done; /* NULL: nobody to tell */
	void *userdata;
};

static void removal_done(void *userdata, int error)
{
	struct removal *rm = userdata;

	rm->c->fds_removing -= rm->fds;
	if (rm->done)
		rm->done(rm->userdata, error);
	free(rm);
}

/* Remove @o in the engine, which takes what is under it along (@fds in all). */
static int engine_remove(struct iopf_control *c, const struct cobj *o, unsigned fds,
			 iopf_engine_done_fn done, void *userdata)
{
	struct removal *rm = malloc(sizeof(*rm));
	int r;

	if (!rm) /* then its fds count as closed at once */
		return removers[o->kind](c->engine, o->id, done ? done : teardown_done, userdata);
	*rm = (struct removal){.c = c, .fds = fds, .done = done, .userdata = userdata};
	r = removers[o->kind](c->engine, o->id, removal_done, rm);
	if (r < 0) {
		free(rm);
		return r;
	}
	c->fds_removing += fds;
	return 0;
}

int iopf_control_tenant_remove(struct iopf_control *c, uint64_t tenant)
{
	struct iopf_tenant *t = tenant_get(c, tenant);
	unsigned n = 0;

	if (!t)
		return -ENOENT;
	(void)iopf_idmap_remove(&c->tenant_ids, t->id);

	/*
	 * Sources first: removing one takes its domains and regions with it,
	 * and the worker answers the source's faults and unmaps in one pass.
	 * What the engine would not remove with its parent is swept on its own.
	 * Only the tenant's own objects are visited.
	 */
	for (unsigned k = 0; k < _COBJ_KIND_MAX; k++)
		while (t->objs[k].head) {
			struct cobj *o = t->objs[k].head;

			if (engine_remove(c, o, cobj_fds(o), NULL, NULL) < 0)
				cobj_orphan_children(o);
			n += cobj_drop(c, o);
		}

	if (t->persisted)
		(void)iopf_engine_record_del(c->engine,
					     IOPF_ENGINE_RECORD_KEY(RECORD_TENANT, t->id));
	LIST_REMOVE(c->tenants, t);
	c->n_tenants--;
	if (t->registered)
		c->n_registered--;
	tenant_free(c, t);
	return n > INT_MAX ? INT_MAX : (int)n;
}

int iopf_control_register_source(struct iopf_control *c, uint64_t tenant, int fault_fd, int iommufd,
				 uint32_t ioas_id, uint64_t *ret_source_id,
				 struct iopf_control_error *err)
{
	return iopf_control_register_source_flags(c, tenant, fault_fd, iommufd, ioas_id, 0,
						  ret_source_id, err);
}

int iopf_control_register_source_flags(struct iopf_control *c, uint64_t tenant, int fault_fd,
				       int iommufd, uint32_t ioas_id, uint32_t flags,
				       uint64_t *ret_source_id, struct iopf_control_error *err)
{
	_cleanup_close_ int fault_copy = -EBADF, iommu_copy = -EBADF;
	struct iopf_tenant *t = tenant_get(c, tenant);
	_cleanup_free_ struct cobj *o = NULL;
	char d1[128], d2[128];
	struct stat st;
	unsigned n;
	uint64_t id;
	int r;

	if (!t)
		return fail(err, -ENOENT, "unknown tenant");
	if (!fd_is_open(fault_fd))
		return fail(err, -EBADF, "fault_fd is not an open file descriptor");
	if (!fd_is_open(iommufd))
		return fail(err, -EBADF, "iommufd is not an open file descriptor");
	/* A fault queue (or a simulator doorbell) is always an anonymous inode. */
	if (!fd_maybe_anon_inode(fault_fd))
		return fail(err, -EBADF, "fault_fd is not an iommufd fault queue (it is %s)",
			    fd_describe(fault_fd, d1, sizeof(d1)));
	/* /dev/iommu is a character device; a simulator context is a memfd. */
	if (fstat(iommufd, &st) < 0 || (!S_ISCHR(st.st_mode) && !S_ISREG(st.st_mode)))
		return fail(err, -EBADF, "iommufd is not an iommufd (it is %s)",
			    fd_describe(iommufd, d2, sizeof(d2)));

	/* iommufd object ids (and simulator IOAS ids) start at 1 */
	if (ioas_id == 0)
		return fail(err, -EINVAL, "ioas_id 0 is not an IOAS id");

	n = t->usage.sources;
	if (n >= c->limits.max_sources)
		return fail(err, -EDQUOT, "tenant already has %u fault sources (MaxSources=%u)", n,
			    c->limits.max_sources);
	r = user_check(c, t, COBJ_SOURCE, 1, 0, err);
	if (r >= 0)
		r = fd_check(c, IOPF_CONTROL_SOURCE_FDS, "fault sources", err);
	if (r < 0)
		return r;
	o = cobj_new(c);
	if (!o)
		return fail(err, -ENOMEM, "out of memory");

	/* The caller's fds belong to its transport message; the engine keeps copies. */
	fault_copy = fcntl(fault_fd, F_DUPFD_CLOEXEC, 3);
	if (fault_copy < 0)
		return fail(err, negative_errno(), "cannot duplicate fault_fd: %s",
			    strerror(errno));
	iommu_copy = fcntl(iommufd, F_DUPFD_CLOEXEC, 3);
	if (iommu_copy < 0)
		return fail(err, negative_errno(), "cannot duplicate iommufd: %s", strerror(errno));

	if (flags & ~IOPF_ENGINE_SOURCE_PAUSED)
		return fail(err, -EINVAL, "unknown source flags 0x%" PRIx32, flags);
	r = iopf_engine_add_source_flags(c->engine, t->id, fault_copy, iommu_copy, ioas_id, flags,
					 &id);
	switch (r) {
	case 0:
		break;
	case -EBADF:
	case -ENOTTY:
		return fail(err, -EBADF,
			    "fault_fd (%s) and iommufd (%s) are not an iommufd fault queue and "
			    "its iommufd",
			    fd_describe(fault_fd, d1, sizeof(d1)),
			    fd_describe(iommufd, d2, sizeof(d2)));
	case -EXDEV:
		return fail(err, -EBADF,
			    "fault_fd (%s) is not the doorbell of the simulator context iommufd "
			    "(%s): hand over the eventfd the context was created with",
			    fd_describe(fault_fd, d1, sizeof(d1)),
			    fd_describe(iommufd, d2, sizeof(d2)));
	case -EOPNOTSUPP:
		return fail(err, r,
			    "this fault source is not supported (simulator fds need iopfd "
			    "--allow-simulator)");
	case -EINVAL:
		return fail(err, r, "ioas_id %" PRIu32 " is not usable with this iommufd", ioas_id);
	default:
		return fail(err, r, "cannot serve fault source: %s", strerror(-r));
	}

	/* The engine owns the copies now. */
	fault_copy = -EBADF;
	iommu_copy = -EBADF;
	cobj_link(c, TAKE_PTR(o), t, COBJ_SOURCE, id, NULL, 0);
	persist_tenant(c, t);
	if (!t->registered) {
		t->registered = true;
		c->n_registered++;
	}
	*ret_source_id = shown_id(c, id);
	return 0;
}

static const char *const cobj_names[_COBJ_KIND_MAX] = {
	[COBJ_SOURCE] = "fault source",
	[COBJ_DOMAIN] = "domain",
	[COBJ_REGION] = "region",
};

/* @t's object @id of @kind; another tenant's answers exactly like a missing one. */
static int cobj_lookup(struct iopf_control *c, enum cobj_kind kind, const struct iopf_tenant *t,
		       uint64_t id, struct cobj **ret, struct iopf_control_error *err)
{
	/* set either way: a caller's compiler need not see that fail() is negative */
	*ret = cobj_find(c, kind, t, id);
	if (!*ret)
		return fail(err, -ENOENT, "no %s %" PRIu64, cobj_names[kind], id);
	return 0;
}

int iopf_control_start_source(struct iopf_control *c, uint64_t tenant, uint64_t source_id,
			      struct iopf_control_error *err)
{
	struct iopf_tenant *t = tenant_get(c, tenant);
	struct cobj *o;
	int r;

	if (!t)
		return fail(err, -ENOENT, "unknown tenant");
	r = cobj_lookup(c, COBJ_SOURCE, t, source_id, &o, err);
	if (r < 0)
		return r;
	r = iopf_engine_start_source(c->engine, o->id);
	if (r == -EALREADY)
		return fail(err, -EINVAL, "fault source %" PRIu64 " is not paused", source_id);
	return r < 0 ? fail(err, r, "cannot start fault source %" PRIu64 ": %s", source_id,
			    strerror(-r))
		     : 0;
}

static const char *pasid_str(uint32_t pasid, char *buf, size_t size)
{
	if (pasid == IOPF_PASID_NONE)
		return "none";
	(void)snprintf(buf, size, "0x%" PRIx32, pasid);
	return buf;
}

/* The source's domain for (dev_id, pasid): its own domains only are visited. */
static uint64_t find_domain_key(struct iopf_control *c, const struct cobj *src, uint32_t dev_id,
				uint32_t pasid)
{
	struct iopf_domain_info i;

	for (const struct cobj *d = src->children; d; d = d->sib_next)
		if (iopf_engine_domain_info(c->engine, d->id, &i) >= 0 && i.dev_id == dev_id &&
		    i.pasid == pasid)
			return d->id;
	return 0;
}

int iopf_control_register_domain(struct iopf_control *c, uint64_t tenant, uint64_t source_id,
				 uint32_t dev_id, uint32_t pasid, uint64_t *ret_domain_id,
				 struct iopf_control_error *err)
{
	struct iopf_tenant *t = tenant_get(c, tenant);
	_cleanup_free_ struct cobj *o = NULL;
	struct cobj *src;
	char pbuf[16];
	uint64_t id, holder;
	unsigned n;
	int r;

	if (!t)
		return fail(err, -ENOENT, "unknown tenant");
	if (pasid != IOPF_PASID_NONE && pasid > IOPF_PASID_MAX)
		return fail(err, -EINVAL,
			    "pasid 0x%" PRIx32 " is out of range (0..0x%" PRIx32
			    ", or 0xffffffff for no PASID)",
			    pasid, IOPF_PASID_MAX);
	r = cobj_lookup(c, COBJ_SOURCE, t, source_id, &src, err);
	if (r < 0)
		return r;

	n = t->usage.domains;
	if (n >= c->limits.max_domains)
		return fail(err, -EDQUOT, "tenant already has %u domains (MaxDomains=%u)", n,
			    c->limits.max_domains);
	r = user_check(c, t, COBJ_DOMAIN, 1, 0, err);
	if (r < 0)
		return r;
	o = cobj_new(c);
	if (!o)
		return fail(err, -ENOMEM, "out of memory");

	r = iopf_engine_add_domain(c->engine, src->id, dev_id, pasid, &id);
	switch (r) {
	case 0:
		break;
	case -ENOENT:
		return fail(err, r, "no fault source %" PRIu64, source_id);
	case -EEXIST:
		/* Keys are per source and sources per tenant: our own list names the holder. */
		holder = find_domain_key(c, src, dev_id, pasid);
		if (holder)
			return fail(err, r,
				    "source %" PRIu64 " already has domain %" PRIu64
				    " for dev_id %" PRIu32 " pasid %s",
				    source_id, shown_id(c, holder), dev_id,
				    pasid_str(pasid, pbuf, sizeof(pbuf)));
		return fail(err, r,
			    "source %" PRIu64 " already has a domain for dev_id %" PRIu32
			    " pasid %s",
			    source_id, dev_id, pasid_str(pasid, pbuf, sizeof(pbuf)));
	case -EINVAL:
		return fail(err, r, "dev_id %" PRIu32 " pasid %s refused by the engine", dev_id,
			    pasid_str(pasid, pbuf, sizeof(pbuf)));
	default:
		return fail(err, r, "cannot register domain: %s", strerror(-r));
	}
	cobj_link(c, TAKE_PTR(o), t, COBJ_DOMAIN, id, src, 0);
	*ret_domain_id = shown_id(c, id);
	return 0;
}

/* Everything about one region that needs no state but the domain's: arguments, fd, owner. */
static int region_check(struct iopf_control *c, const struct iopf_tenant *t,
			const struct iopf_control_region *x, struct cobj **ret_dom,
			struct iopf_control_error *err)
{
	uint64_t offset = x->offset, iova = x->iova, length = x->length;
	uint32_t access = x->access;
	char desc[128];
	struct stat st = {};
	int fd = x->fd;

	/*
	 * Arguments first: they need no state and say most precisely what is wrong.
	 * The engine's own check decides; this only explains it.
	 */
	switch (iopf_region_check_args(offset, iova, length, access)) {
	case IOPF_REGION_ARGS_OK:
		break;
	case IOPF_REGION_BAD_ACCESS:
		return fail(err, -EINVAL,
			    "access 0x%" PRIx32
			    " must be a non-empty subset of READ|WRITE|EXEC|PRIV"
			    " (0x%x)",
			    access, IOPF_ACCESS_ALL);
	case IOPF_REGION_EMPTY:
		return fail(err, -EINVAL, "length must not be 0");
	case IOPF_REGION_IOVA_UNALIGNED:
		return fail(err, -EINVAL, "iova 0x%" PRIx64 " must be %" PRIu64 "-aligned", iova,
			    IOPF_PAGE_SIZE);
	case IOPF_REGION_LENGTH_UNALIGNED:
		return fail(err, -EINVAL, "length 0x%" PRIx64 " must be a multiple of %" PRIu64,
			    length, IOPF_PAGE_SIZE);
	case IOPF_REGION_OFFSET_UNALIGNED:
		return fail(err, -EINVAL, "offset 0x%" PRIx64 " must be %" PRIu64 "-aligned",
			    offset, IOPF_PAGE_SIZE);
	case IOPF_REGION_IOVA_WRAPS:
		/* exclusive ends must be representable: ending at 2^64 counts as wrapping */
		return fail(err, -EINVAL,
			    "region 0x%" PRIx64 "+0x%" PRIx64 " wraps around the IOVA space", iova,
			    length);
	case IOPF_REGION_OFFSET_WRAPS:
		return fail(err, -EINVAL, "offset 0x%" PRIx64 "+0x%" PRIx64 " wraps around", offset,
			    length);
	}

	switch (iopf_region_check_fd(fd, offset, length, access, &st, NULL)) {
	case IOPF_REGION_FD_OK:
		break;
	case IOPF_REGION_FD_NOT_OPEN:
		return fail(err, -EBADF, "fd is not an open file descriptor");
	case IOPF_REGION_FD_NOT_FILE:
		return fail(err, -EBADF, "fd is not a memfd or regular file (it is %s)",
			    fd_describe(fd, desc, sizeof(desc)));
	case IOPF_REGION_FD_NO_ACCESS:
		return fail(err, -EBADF,
			    "fd (%s) is an O_PATH fd: it grants no access to the memory; open the "
			    "file for reading%s",
			    fd_describe(fd, desc, sizeof(desc)),
			    (access & IOPF_ACCESS_WRITE) ? " and writing" : "");
	case IOPF_REGION_FD_WRITE_ONLY:
		return fail(err, -EBADF, "fd is open write-only and cannot be mapped");
	case IOPF_REGION_FD_READ_ONLY:
		return fail(err, -EBADF,
			    "fd is open read-only but access 0x%" PRIx32 " includes WRITE", access);
	case IOPF_REGION_FD_TOO_SHORT:
		return fail(err, -EINVAL,
			    "fd range 0x%" PRIx64 "+0x%" PRIx64
			    " ends beyond the fd's size 0x%" PRIx64,
			    offset, length, (uint64_t)st.st_size);
	}
	return cobj_lookup(c, COBJ_DOMAIN, t, x->domain_id, ret_dom, err);
}

/*
 * The budgets of @t for @n more regions covering @bytes (saturated), on
 * @files distinct fds: regions on one file share the engine's fd, so the
 * daemon needs at most one new fd per file, whatever the count of regions.
 */
static int region_budget(struct iopf_control *c, const struct iopf_tenant *t, unsigned n,
			 uint64_t bytes, unsigned files, struct iopf_control_error *err)
{
	const struct usage *u = &t->usage;
	uint64_t have = u->region_bytes;
	int r;

	if ((uint64_t)u->regions + n > c->limits.max_regions)
		return fail(err, -EDQUOT, "tenant already has %u regions (MaxRegions=%u)",
			    u->regions, c->limits.max_regions);
	if (c->limits.max_pinned_bytes != IOPF_CONTROL_PINNED_UNLIMITED &&
	    (have > c->limits.max_pinned_bytes || bytes > c->limits.max_pinned_bytes - have))
		return fail(err, -EDQUOT,
			    "tenant's regions would cover %" PRIu64 " bytes, more than "
			    "MaxPinnedBytes=%" PRIu64 " (what iopfd may pin for one tenant)",
			    add_sat(have, bytes), c->limits.max_pinned_bytes);
	r = user_check(c, t, COBJ_REGION, n, bytes, err);
	if (r >= 0)
		r = fd_check(c, files * IOPF_CONTROL_REGION_FDS, "regions", err);
	return r;
}

static int overlap_error(struct iopf_control *c, struct iopf_control_error *err, uint64_t iova,
			 uint64_t length, const struct iopf_region_info *hit)
{
	return fail(err, -EBUSY,
		    "region 0x%" PRIx64 "+0x%" PRIx64 " overlaps region %" PRIu64 " [0x%" PRIx64
		    ", 0x%" PRIx64 ")",
		    iova, length, shown_id(c, hit->id), hit->iova, hit->iova + hit->length);
}

/* Add @x, checked, to @dom; the budgets were checked too. */
static int region_add(struct iopf_control *c, struct iopf_tenant *t,
		      const struct iopf_control_region *x, struct cobj *dom, uint64_t *ret_id,
		      struct iopf_control_error *err)
{
	_cleanup_free_ struct cobj *o = NULL;
	struct iopf_region_info hit;
	char desc[128];
	uint64_t id;
	int r;

	o = cobj_new(c);
	if (!o)
		return fail(err, -ENOMEM, "out of memory");
	r = iopf_engine_add_region(c->engine, dom->id, x->fd, x->offset, x->iova, x->length,
				   x->access, &id);
	switch (r) {
	case 0:
		break;
	case -ENOENT:
		return fail(err, r, "no domain %" PRIu64, x->domain_id);
	case -EBUSY:
		/* Name the region in the way. */
		if (iopf_engine_region_overlap(c->engine, dom->id, x->iova, x->length, &hit) > 0)
			return overlap_error(c, err, x->iova, x->length, &hit);
		return fail(err, r, "region 0x%" PRIx64 "+0x%" PRIx64 " overlaps another region",
			    x->iova, x->length);
	case -EBADF:
	case -ENODEV:
	case -EACCES:
		return fail(err, -EBADF, "fd (%s) cannot back a region: %s",
			    fd_describe(x->fd, desc, sizeof(desc)), strerror(-r));
	case -EINVAL:
		return fail(err, r, "region 0x%" PRIx64 "+0x%" PRIx64 " refused by the engine",
			    x->iova, x->length);
	default:
		return fail(err, r, "cannot add region: %s", strerror(-r));
	}
	cobj_link(c, TAKE_PTR(o), t, COBJ_REGION, id, dom, x->length);
	*ret_id = id;
	return 0;
}

int iopf_control_add_region(struct iopf_control *c, uint64_t tenant, uint64_t domain_id, int fd,
			    uint64_t offset, uint64_t iova, uint64_t length, uint32_t access,
			    uint64_t *ret_region_id, struct iopf_control_error *err)
{
	const struct iopf_control_region x = {
		.domain_id = domain_id,
		.fd = fd,
		.offset = offset,
		.iova = iova,
		.length = length,
		.access = access,
	};
	struct iopf_tenant *t = tenant_get(c, tenant);
	struct cobj *dom;
	uint64_t id;
	int r;

	if (!t)
		return fail(err, -ENOENT, "unknown tenant");
	r = region_check(c, t, &x, &dom, err);
	if (r >= 0)
		r = region_budget(c, t, 1, length, 1, err);
	if (r >= 0)
		r = region_add(c, t, &x, dom, &id, err);
	if (r < 0)
		return r;
	*ret_region_id = shown_id(c, id);
	return 0;
}

/* Prefix @err's message with "region @i: ". Return: @r. */
static int entry_error(struct iopf_control_error *err, size_t i, int r)
{
	char m[sizeof(err->message)];

	if (err) {
		snprintf(m, sizeof(m), "%s", err->message);
		(void)fail(err, r, "region %zu: %s", i, m);
	}
	return r;
}

struct batch_entry {
	const struct cobj *dom;
	uint64_t iova, end; /* end exclusive: the arguments were checked, it does not wrap */
	size_t i;
};

static int batch_cmp(const void *a, const void *b)
{
	const struct batch_entry *x = a, *y = b;

	if (x->dom != y->dom)
		return x->dom->id < y->dom->id ? -1 : 1;
	if (x->iova != y->iova)
		return x->iova < y->iova ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

/*
 * Two entries of @e (@n, sorted here by domain and iova) that overlap, the
 * pair whose later entry comes first in the caller's order among those the
 * sweep meets (each entry against the earlier one reaching furthest).
 * Return: true if there is one.
 */
static bool batch_overlap(struct batch_entry *e, size_t n, size_t *ret_bad, size_t *ret_other)
{
	size_t bad = SIZE_MAX, other = 0, far = 0;

	qsort(e, n, sizeof(*e), batch_cmp);
	for (size_t k = 1; k < n; k++) {
		if (e[k].dom != e[k - 1].dom) {
			far = k;
			continue;
		}
		if (e[far].end > e[k].iova) {
			size_t later = e[k].i > e[far].i ? e[k].i : e[far].i;

			if (later < bad) {
				bad = later;
				other = e[k].i ^ e[far].i ^ later;
			}
		}
		if (e[k].end > e[far].end)
			far = k;
	}
	*ret_bad = bad;
	*ret_other = other;
	return bad != SIZE_MAX;
}

static int int_cmp(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return x < y ? -1 : x > y;
}

/* How many distinct fds the batch names (n when out of memory: the bound). */
static unsigned batch_files(const struct iopf_control_region *v, size_t n)
{
	_cleanup_free_ int *fds = calloc(n, sizeof(*fds));
	unsigned k = 0;

	if (!fds)
		return (unsigned)n;
	for (size_t i = 0; i < n; i++)
		fds[i] = v[i].fd;
	qsort(fds, n, sizeof(*fds), int_cmp);
	for (size_t i = 0; i < n; i++)
		k += i == 0 || fds[i] != fds[i - 1];
	return k;
}

int iopf_control_add_regions(struct iopf_control *c, uint64_t tenant,
			     const struct iopf_control_region *v, size_t n, uint64_t *ret_ids,
			     struct iopf_control_error *err)
{
	_cleanup_free_ struct batch_entry *e = NULL;
	_cleanup_free_ uint64_t *ids = NULL;
	struct iopf_tenant *t = tenant_get(c, tenant);
	struct iopf_region_info hit;
	uint64_t bytes = 0;
	size_t bad, other;
	int r;

	if (!t)
		return fail(err, -ENOENT, "unknown tenant");
	if (n == 0 || n > IOPF_CONTROL_ADD_REGIONS_MAX)
		return fail(err, -EINVAL, "%zu regions: a batch holds 1 to %u", n,
			    IOPF_CONTROL_ADD_REGIONS_MAX);
	e = calloc(n, sizeof(*e));
	ids = calloc(n, sizeof(*ids));
	if (!e || !ids)
		return fail(err, -ENOMEM, "out of memory");
	/* Everything is checked before anything is added: nothing to undo for a refusal. */
	for (size_t i = 0; i < n; i++) {
		struct cobj *dom;

		r = region_check(c, t, &v[i], &dom, err);
		if (r < 0)
			return entry_error(err, i, r);
		r = iopf_engine_region_overlap(c->engine, dom->id, v[i].iova, v[i].length, &hit);
		if (r > 0)
			return entry_error(err, i,
					   overlap_error(c, err, v[i].iova, v[i].length, &hit));
		e[i] = (struct batch_entry){
			.dom = dom,
			.iova = v[i].iova,
			.end = v[i].iova + v[i].length,
			.i = i,
		};
		bytes = add_sat(bytes, v[i].length);
	}
	if (batch_overlap(e, n, &bad, &other))
		return fail(err, -EBUSY,
			    "region %zu: region 0x%" PRIx64 "+0x%" PRIx64
			    " overlaps region %zu of the same call",
			    bad, v[bad].iova, v[bad].length, other);
	r = region_budget(c, t, (unsigned)n, bytes, batch_files(v, n), err);
	if (r < 0)
		return r;
	/* in the caller's order */
	for (size_t i = 0; i < n; i++) {
		struct cobj *dom = NULL;

		r = cobj_lookup(c, COBJ_DOMAIN, t, v[i].domain_id, &dom, err);
		if (r >= 0)
			r = region_add(c, t, &v[i], dom, &ids[i], err);
		if (r < 0) {
			/* the engine failed (memory, fds): what this call added goes again */
			for (size_t k = i; k-- > 0;) {
				struct cobj *o = iopf_idmap_get(&c->objects, ids[k]);

				if (o && engine_remove(c, o, cobj_fds(o), NULL, NULL) >= 0)
					(void)cobj_drop(c, o);
			}
			return entry_error(err, i, r);
		}
	}
	for (size_t i = 0; i < n; i++)
		ret_ids[i] = shown_id(c, ids[i]);
	return 0;
}

static int remove_object(struct iopf_control *c, enum cobj_kind kind, uint64_t tenant, uint64_t id,
			 iopf_engine_done_fn done, void *userdata, struct iopf_control_error *err)
{
	struct iopf_tenant *t = tenant_get(c, tenant);
	struct cobj *o;
	int r;

	if (!t)
		return fail(err, -ENOENT, "unknown tenant");
	r = cobj_lookup(c, kind, t, id, &o, err);
	if (r < 0)
		return r;
	r = engine_remove(c, o, cobj_fds(o), done, userdata);
	if (r == -ENOENT) {
		/* gone from the engine already: nothing left to count */
		(void)cobj_drop(c, o);
		return fail(err, r, "no %s %" PRIu64, cobj_names[kind], id);
	}
	if (r < 0)
		return fail(err, r, "cannot remove %s %" PRIu64 ": %s", cobj_names[kind], id,
			    strerror(-r));
	/* unpublished at once, with everything under it */
	(void)cobj_drop(c, o);
	return 0;
}

int iopf_control_unregister_source(struct iopf_control *c, uint64_t tenant, uint64_t source_id,
				   iopf_engine_done_fn done, void *userdata,
				   struct iopf_control_error *err)
{
	return remove_object(c, COBJ_SOURCE, tenant, source_id, done, userdata, err);
}

int iopf_control_unregister_domain(struct iopf_control *c, uint64_t tenant, uint64_t domain_id,
				   iopf_engine_done_fn done, void *userdata,
				   struct iopf_control_error *err)
{
	return remove_object(c, COBJ_DOMAIN, tenant, domain_id, done, userdata, err);
}

int iopf_control_remove_region(struct iopf_control *c, uint64_t tenant, uint64_t region_id,
			       iopf_engine_done_fn done, void *userdata,
			       struct iopf_control_error *err)
{
	return remove_object(c, COBJ_REGION, tenant, region_id, done, userdata, err);
}

/* Typed callbacks for visiting objects; only the one for the kind visited is called. */
struct visitor {
	iopf_engine_source_fn source;
	iopf_engine_domain_fn domain;
	iopf_engine_region_fn region;
	void *userdata;
};

static int visit_one(struct iopf_control *c, const struct cobj *o, const struct visitor *v)
{
	union {
		struct iopf_source_info s;
		struct iopf_domain_info d;
		struct iopf_region_info r;
	} i;

	switch (o->kind) {
	case COBJ_SOURCE:
		if (iopf_engine_source_info(c->engine, o->id, &i.s) < 0)
			return 0;
		return v->source(&i.s, v->userdata);
	case COBJ_DOMAIN:
		if (iopf_engine_domain_info(c->engine, o->id, &i.d) < 0)
			return 0;
		return v->domain(&i.d, v->userdata);
	case COBJ_REGION:
		if (iopf_engine_region_info(c->engine, o->id, &i.r) < 0)
			return 0;
		return v->region(&i.r, v->userdata);
	case _COBJ_KIND_MAX:
		break;
	}
	return 0;
}

/*
 * Visit @t's objects of @kind, ascending id, without walking anyone else's.
 * A callback may add objects; one that removes the next object ends the walk.
 */
static int visit_own(struct iopf_control *c, struct iopf_tenant *t, enum cobj_kind kind,
		     const struct visitor *v)
{
	for (const struct cobj *o = t->objs[kind].head; o;) {
		uint64_t next = o->next ? o->next->id : 0;
		int r = visit_one(c, o, v);

		if (r < 0)
			return r;
		o = next ? iopf_idmap_get(&c->objects, next) : NULL;
	}
	return 0;
}

/* A caller's callbacks get the ids the caller was shown. */
struct shower {
	struct iopf_control *c;
	const struct visitor *v;
};

static int show_source(const struct iopf_source_info *i, void *userdata)
{
	const struct shower *sh = userdata;
	struct iopf_source_info x = *i;

	x.id = shown_id(sh->c, i->id);
	x.tenant = shown_tenant(sh->c, i->tenant);
	return sh->v->source(&x, sh->v->userdata);
}

static int show_domain(const struct iopf_domain_info *i, void *userdata)
{
	const struct shower *sh = userdata;
	struct iopf_domain_info x = *i;

	x.id = shown_id(sh->c, i->id);
	x.source_id = shown_id(sh->c, i->source_id);
	x.tenant = shown_tenant(sh->c, i->tenant);
	return sh->v->domain(&x, sh->v->userdata);
}

static int show_region(const struct iopf_region_info *i, void *userdata)
{
	const struct shower *sh = userdata;
	struct iopf_region_info x = *i;

	x.id = shown_id(sh->c, i->id);
	x.domain_id = shown_id(sh->c, i->domain_id);
	x.tenant = shown_tenant(sh->c, i->tenant);
	return sh->v->region(&x, sh->v->userdata);
}

/*
 * @tenant's objects of @kind, or with @all (iopf_control_may_read_all()) every
 * tenant's; @tenant 0 with @all is the daemon itself.
 */
static int list_objects(struct iopf_control *c, uint64_t tenant, bool all, enum cobj_kind kind,
			const struct visitor *v, struct iopf_control_error *err)
{
	struct iopf_tenant *t = tenant ? tenant_get(c, tenant) : NULL;
	const struct shower sh = {.c = c, .v = v};
	const struct visitor shown = {
		.source = show_source,
		.domain = show_domain,
		.region = show_region,
		.userdata = (void *)&sh,
	};
	int r;

	if (!t && !(tenant == 0 && all))
		return fail(err, -ENOENT, "unknown tenant");
	if (all && t && !iopf_control_may_read_all(c, t->uid))
		return fail(err, -EPERM,
			    "listing every tenant's objects needs uid 0 or [Metrics] Readers=");
	if (!all)
		r = visit_own(c, t, kind, &shown);
	else if (kind == COBJ_SOURCE)
		r = iopf_engine_foreach_source(c->engine, 0, show_source, (void *)&sh);
	else if (kind == COBJ_DOMAIN)
		r = iopf_engine_foreach_domain(c->engine, 0, show_domain, (void *)&sh);
	else
		r = iopf_engine_foreach_region(c->engine, 0, show_region, (void *)&sh);
	if (r < 0)
		return fail(err, r, "cannot list %ss: %s", cobj_names[kind], strerror(-r));
	return 0;
}

int iopf_control_foreach_source(struct iopf_control *c, uint64_t tenant, bool all,
				iopf_engine_source_fn fn, void *userdata,
				struct iopf_control_error *err)
{
	return list_objects(c, tenant, all, COBJ_SOURCE,
			    &(const struct visitor){.source = fn, .userdata = userdata}, err);
}

int iopf_control_foreach_domain(struct iopf_control *c, uint64_t tenant, bool all,
				iopf_engine_domain_fn fn, void *userdata,
				struct iopf_control_error *err)
{
	return list_objects(c, tenant, all, COBJ_DOMAIN,
			    &(const struct visitor){.domain = fn, .userdata = userdata}, err);
}

int iopf_control_foreach_region(struct iopf_control *c, uint64_t tenant, bool all,
				iopf_engine_region_fn fn, void *userdata,
				struct iopf_control_error *err)
{
	return list_objects(c, tenant, all, COBJ_REGION,
			    &(const struct visitor){.region = fn, .userdata = userdata}, err);
}

/* --- statistics --- */

struct tenant_stats {
	struct iopf_tenant *t;
	struct iopf_control_stats st;
};

/* Where each object's numbers go: all to @one, or to its tenant's entry of @v. */
struct stats_acc {
	struct iopf_control *c;
	struct iopf_control_stats *one;
	struct tenant_stats *v; /* ascending tenant id */
	size_t n;
};

static struct iopf_control_stats *acc_pick(struct stats_acc *a, uint64_t tenant)
{
	size_t lo = 0, hi = a->n;

	if (a->one)
		return a->one;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (a->v[mid].t->id == tenant)
			return &a->v[mid].st;
		if (a->v[mid].t->id < tenant)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL; /* an object of a tenant removed meanwhile */
}

static int acc_domain(const struct iopf_domain_info *i, void *userdata)
{
	struct stats_acc *a = userdata;
	struct iopf_control_stats *st = acc_pick(a, i->tenant);

	if (st) {
		counters_add(&st->counters, &i->counters);
		st->counters.bytes_mapped += i->counters.bytes_mapped;
		(void)iopf_engine_domain_latency(a->c->engine, i->id, &st->latency);
		st->domains++;
	}
	return 0;
}

static int acc_source(const struct iopf_source_info *i, void *userdata)
{
	struct stats_acc *a = userdata;
	struct iopf_control_stats *st = acc_pick(a, i->tenant);

	if (st) {
		counters_add(&st->counters, &i->unrouted);
		(void)iopf_engine_source_latency(a->c->engine, i->id, &st->latency);
		st->sources++;
	}
	return 0;
}

static int acc_region(const struct iopf_region_info *i, void *userdata)
{
	struct stats_acc *a = userdata;
	struct iopf_control_stats *st = acc_pick(a, i->tenant);

	if (!st)
		return 0;
	st->regions++;
	st->region_bytes = add_sat(st->region_bytes, i->length);
	return 0;
}

static void acc_retiring(const struct iopf_engine_stats *es, void *userdata)
{
	struct stats_acc *a = userdata;
	struct iopf_control_stats *st = acc_pick(a, es->tenant);

	if (!st)
		return;
	counters_add(&st->counters, es->counters);
	st->counters.bytes_mapped += es->counters->bytes_mapped; /* still being unmapped */
	iopf_histogram_merge(&st->latency, es->latency);
}

static void stats_init(struct iopf_control_stats *st, const struct retired *retired)
{
	*st = (struct iopf_control_stats){.counters = retired->counters};
	st->counters.bytes_mapped = 0;
	iopf_histogram_merge(&st->latency, &retired->latency);
}

/* One pass over the engine's objects (@filter: a tenant id, or 0 for everyone). */
static void collect(struct stats_acc *a, uint64_t filter)
{
	struct iopf_engine *e = a->c->engine;

	(void)iopf_engine_foreach_domain(e, filter, acc_domain, a);
	(void)iopf_engine_foreach_source(e, filter, acc_source, a);
	(void)iopf_engine_foreach_region(e, filter, acc_region, a);
	iopf_engine_foreach_retiring(e, filter, acc_retiring, a);
}

/* @t's totals, from its own objects only; @t NULL: everyone's, the daemon's totals. */
static void collect_stats(struct iopf_control *c, struct iopf_tenant *t,
			  struct iopf_control_stats *ret)
{
	struct stats_acc a = {.c = c, .one = ret};
	const struct visitor v = {.source = acc_source, .domain = acc_domain, .userdata = &a};

	if (!t) {
		stats_init(ret, &c->retired);
		collect(&a, 0);
		return;
	}
	stats_init(ret, &t->retired);
	(void)visit_own(c, t, COBJ_DOMAIN, &v);
	(void)visit_own(c, t, COBJ_SOURCE, &v);
	ret->regions = t->usage.regions;
	ret->region_bytes = t->usage.region_bytes;
	iopf_engine_foreach_retiring(c->engine, t->id, acc_retiring, &a);
}

static void tenant_info_of(const struct iopf_control *c, const struct iopf_tenant *t,
			   struct iopf_tenant_info *ret)
{
	*ret = (struct iopf_tenant_info){
		.id = shown_tenant(c, t->id),
		.uid = t->uid,
		.gid = t->gid,
		.pid = t->pid,
		.name = t->name,
		.label = t->label,
		.unit = t->unit,
		.registered = t->registered,
	};
}

int iopf_control_tenant_stats(struct iopf_control *c, uint64_t caller, uint64_t tenant,
			      struct iopf_control_stats *ret, struct iopf_control_error *err)
{
	struct iopf_tenant *me = tenant_get(c, caller), *t = tenant_get(c, tenant);

	if (!me)
		return fail(err, -ENOENT, "unknown tenant");
	/* another's tenant id answers like one that does not exist */
	if (!t || (t != me && !iopf_control_may_read_all(c, me->uid)))
		return fail(err, -ENOENT, "no tenant %" PRIu64, tenant);
	collect_stats(c, t, ret);
	return 0;
}

int iopf_control_foreach_tenant(struct iopf_control *c, uint64_t caller, bool all,
				iopf_control_tenant_fn fn, void *userdata,
				struct iopf_control_error *err)
{
	_cleanup_free_ struct tenant_stats *v = NULL;
	struct iopf_tenant *me = tenant_get(c, caller);
	struct iopf_control_stats *st;
	struct iopf_tenant_info ti;
	struct stats_acc a = {.c = c};
	size_t n;
	int r;

	if (caller == 0 && all)
		goto all; /* the daemon itself */
	if (!me)
		return fail(err, -ENOENT, "unknown tenant");
	if (!all) {
		st = malloc(sizeof(*st));
		if (!st)
			return fail(err, -ENOMEM, "out of memory");
		collect_stats(c, me, st);
		tenant_info_of(c, me, &ti);
		r = fn(&ti, st, userdata);
		free(st);
		return r < 0 ? fail(err, r, "cannot list tenant: %s", strerror(-r)) : 0;
	}
	if (!iopf_control_may_read_all(c, me->uid))
		return fail(err, -EPERM, "listing every tenant needs uid 0 or [Metrics] Readers=");
all:
	/*
	 * Every tenant's totals in one pass over the objects, not one pass per
	 * tenant. The list is newest first, so ids descend: fill backwards.
	 */
	v = calloc(c->n_tenants ? c->n_tenants : 1, sizeof(*v));
	if (!v)
		return fail(err, -ENOMEM, "out of memory");
	n = c->n_tenants;
	for (struct iopf_tenant *t = c->tenants; t && n > 0; t = t->next) {
		v[--n].t = t;
		stats_init(&v[n].st, &t->retired);
	}
	a.v = v;
	a.n = c->n_tenants;
	collect(&a, 0);
	r = 0;
	for (size_t i = 0; i < a.n && r >= 0; i++) {
		tenant_info_of(c, v[i].t, &ti);
		r = fn(&ti, &v[i].st, userdata);
	}
	return r < 0 ? fail(err, r, "cannot list tenants: %s", strerror(-r)) : 0;
}

int iopf_control_total_stats(struct iopf_control *c, uint64_t caller,
			     struct iopf_control_stats *ret, struct iopf_control_error *err)
{
	struct iopf_tenant *me = tenant_get(c, caller);

	if (caller != 0 && !me) /* 0: the daemon itself */
		return fail(err, -ENOENT, "unknown tenant");
	if (me && !iopf_control_may_read_all(c, me->uid))
		return fail(err, -EPERM, "the daemon's totals need uid 0 or [Metrics] Readers=");
	collect_stats(c, NULL, ret);
	return 0;
}

int iopf_control_domain_latency(struct iopf_control *c, uint64_t domain_id,
				struct iopf_histogram *ret)
{
	return iopf_engine_domain_latency(c->engine, real_id(c, domain_id), ret);
}

int iopf_control_source_latency(struct iopf_control *c, uint64_t source_id,
				struct iopf_histogram *ret)
{
	return iopf_engine_source_latency(c->engine, real_id(c, source_id), ret);
}

const char *iopf_reason_to_string(enum iopf_reason reason)
{
	return iopf_wire_reason_name((unsigned)reason);
}

size_t iopf_counters_to_fields(const struct iopf_counters *cnt, struct iopf_counter_field *fields)
{
	size_t n = 0;

#define FIELD(f) fields[n++] = (struct iopf_counter_field){#f, cnt->f}
	FIELD(faults);
	FIELD(groups);
	FIELD(success);
	FIELD(invalid);
	FIELD(stale);
	FIELD(pages_mapped);
	FIELD(maps);
	FIELD(coalesced);
	FIELD(bytes_mapped);
	FIELD(masked_flags);
#undef FIELD
	for (unsigned i = 0; i < _IOPF_REASON_MAX; i++)
		fields[n++] =
			(struct iopf_counter_field){iopf_wire_reason_name(i), cnt->reasons[i]};
	return n;
}

/* ---- restore (iopf_control_restore()) ---- */

struct restoring {
	struct iopf_control *c;
	iopf_engine_take_fd_fn take_fd;
	void *take_fd_userdata;
	struct u64vec orphans; /* sources whose tenant did not come back */
};

static int restore_record(void *userdata, uint64_t key, const void *data, size_t len)
{
	struct restoring *x = userdata;
	struct iopf_control *c = x->c;
	uint64_t id = key & ((UINT64_C(1) << 56) - 1);

	switch (IOPF_ENGINE_RECORD_KIND(key)) {
	case RECORD_KEYS: {
		struct keys_record rec;

		if (len != sizeof(rec))
			return -EINVAL;
		memcpy(&rec, data, sizeof(rec));
		if (rec.version != RECORD_VERSION || rec.hide_ids > 1)
			return -EINVAL;
		c->hide_ids = rec.hide_ids;
		c->object_key = rec.object_key;
		c->tenant_key = rec.tenant_key;
		return 0;
	}
	case RECORD_TENANT: {
		struct tenant_record rec;
		struct iopf_tenant *t;
		int r;

		if (len != sizeof(rec))
			return -EINVAL;
		memcpy(&rec, data, sizeof(rec));
		rec.name[sizeof(rec.name) - 1] = 0;
		if (rec.version != RECORD_VERSION || id == 0 || !rec.name[0] || tenant_find(c, id))
			return -EINVAL;
		r = tenant_new(c, id, rec.name, rec.uid, rec.gid, (pid_t)rec.pid, &t);
		if (r < 0)
			return r;
		t->persisted = true;
		t->registered = true;
		c->n_registered++;
		if (id >= c->next_tenant_id)
			c->next_tenant_id = id + 1;
		return 0;
	}
	default:
		return -EINVAL; /* a kind this version does not know: not our arena */
	}
}

static int restore_take_fd(void *userdata, const char *name)
{
	struct restoring *x = userdata;

	return x->take_fd ? x->take_fd(x->take_fd_userdata, name) : -ENOENT;
}

/* Track an object the engine restored: its tenant is its owner again. */
static int adopt(struct restoring *x, enum cobj_kind kind, uint64_t id, uint64_t tenant,
		 uint64_t parent_id, uint64_t length)
{
	struct iopf_control *c = x->c;
	struct iopf_tenant *t = tenant_find(c, tenant);
	struct cobj *parent = parent_id ? iopf_idmap_get(&c->objects, parent_id) : NULL;
	struct cobj *o;

	if (!t || (parent_id && !parent))
		/* a source without its tenant goes; what hangs off it goes with it */
		return kind == COBJ_SOURCE ? u64vec_push(&x->orphans, id) : 0;
	o = cobj_new(c);
	if (!o)
		return -ENOMEM;
	cobj_link(c, o, t, kind, id, parent, length);
	return 0;
}

static int adopt_source(const struct iopf_source_info *i, void *userdata)
{
	return adopt(userdata, COBJ_SOURCE, i->id, i->tenant, 0, 0);
}

static int adopt_domain(const struct iopf_domain_info *i, void *userdata)
{
	return adopt(userdata, COBJ_DOMAIN, i->id, i->tenant, i->source_id, 0);
}

static int adopt_region(const struct iopf_region_info *i, void *userdata)
{
	return adopt(userdata, COBJ_REGION, i->id, i->tenant, i->domain_id, i->length);
}

int iopf_control_restore(struct iopf_control *c, iopf_engine_take_fd_fn take_fd, void *userdata,
			 struct iopf_engine_restored *ret)
{
	struct restoring x = {.c = c, .take_fd = take_fd, .take_fd_userdata = userdata};
	struct iopf_tenant *t, *next;
	int r;

	if (c->n_tenants || c->usage.sources)
		return -EBUSY;
	r = iopf_engine_restore(c->engine, restore_take_fd, restore_record, &x, ret);
	if (r < 0)
		goto out;
	r = iopf_engine_foreach_source(c->engine, 0, adopt_source, &x);
	if (r >= 0)
		r = iopf_engine_foreach_domain(c->engine, 0, adopt_domain, &x);
	if (r >= 0)
		r = iopf_engine_foreach_region(c->engine, 0, adopt_region, &x);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < x.orphans.n; i++)
		(void)iopf_engine_remove_source(c->engine, x.orphans.v[i], NULL, NULL);
	/* a tenant with nothing left is no tenant */
	for (t = c->tenants; t; t = next) {
		next = t->next;
		if (!t->objs[COBJ_SOURCE].head)
			(void)iopf_control_tenant_remove(c, shown_tenant(c, t->id));
	}
	if (c->hide_ids)
		persist_keys(c);
out:
	u64vec_done(&x.orphans);
	return r;
}
