/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A single-threaded in-memory stand-in for lib/dataplane/engine.c; see fake-engine.h. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#include "fake-engine.h"
#include "fd-util.h"
#include "util.h"

#define FAKE_MAX_OBJECTS 4096
#define FAKE_MAX_REMOVED 4096

enum obj_kind { OBJ_SOURCE, OBJ_DOMAIN, OBJ_REGION };

struct obj {
	bool live;
	enum obj_kind kind;
	uint64_t id, parent, tenant;
	uint32_t a, b; /* source: ioas_id; domain: dev_id, pasid; region: access */
	uint64_t iova, length, offset;
	int fd1, fd2; /* owned */
	bool sim;
	bool paused;   /* a source registered paused, not started */
	bool retiring; /* removed; its retired callback runs at the next dispatch */
	struct iopf_counters cnt;
	struct iopf_histogram lat;
};

struct pending {
	iopf_engine_done_fn done;
	void *userdata;
};

struct iopf_engine {
	struct iopf_engine_config cfg;
	int efd;
	uint64_t next_id;
	struct obj objs[FAKE_MAX_OBJECTS]; /* index = id - 1 */
	struct pending pending[FAKE_MAX_OBJECTS];
	unsigned n_pending;
	iopf_engine_stats_fn retired_fn;
	void *retired_userdata;
	unsigned pings;
};

/* Test hooks are global: there is one engine per test process. */
static int fail_next[_FAKE_OP_MAX];
static unsigned calls[_FAKE_OP_MAX];
static uint64_t removed[_FAKE_OP_MAX][FAKE_MAX_REMOVED];
static unsigned n_removed[_FAKE_OP_MAX];
static struct iopf_engine *the_engine;

void __iopf_fake_engine_fail_next(enum fake_engine_op op, int error)
{
	fail_next[op] = error;
}

unsigned __iopf_fake_engine_calls(enum fake_engine_op op)
{
	return calls[op];
}

const uint64_t *__iopf_fake_engine_removed(enum fake_engine_op op, unsigned *n)
{
	*n = n_removed[op];
	return removed[op];
}

static int hook(enum fake_engine_op op)
{
	int r = fail_next[op];

	calls[op]++;
	fail_next[op] = 0;
	return r;
}

int iopf_engine_new(const struct iopf_engine_config *cfg, struct iopf_engine **ret)
{
	struct iopf_engine *e = calloc(1, sizeof(*e));

	if (!e)
		return -ENOMEM;
	e->cfg = *cfg;
	e->next_id = 1;
	e->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e->efd < 0) {
		free(e);
		return -errno;
	}
	memset(calls, 0, sizeof(calls));
	memset(n_removed, 0, sizeof(n_removed));
	memset(fail_next, 0, sizeof(fail_next));
	the_engine = e;
	*ret = e;
	return 0;
}

static void obj_kill(struct obj *o)
{
	o->live = false;
	o->fd1 = safe_close(o->fd1);
	o->fd2 = safe_close(o->fd2);
}

struct iopf_engine *iopf_engine_free(struct iopf_engine *e)
{
	if (!e)
		return NULL;
	for (unsigned i = 0; i < e->next_id - 1; i++)
		if (e->objs[i].live)
			obj_kill(&e->objs[i]);
	/* Like the real engine's, a removal still pending gets its callback from free. */
	for (unsigned i = 0; i < e->n_pending; i++)
		e->pending[i].done(e->pending[i].userdata, 0);
	safe_close(e->efd);
	if (the_engine == e)
		the_engine = NULL;
	free(e);
	return NULL;
}

int iopf_engine_get_fd(struct iopf_engine *e)
{
	return e->efd;
}

/* A source's or a domain's statistics, as the engine hands them over (a source's counters: none).
 */
static void report_stats(const struct obj *o, iopf_engine_stats_fn fn, void *userdata)
{
	static const struct iopf_counters zero;

	fn(
		&(struct iopf_engine_stats){
			.tenant = o->tenant,
			.source_id = o->kind == OBJ_SOURCE ? o->id : o->parent,
			.domain_id = o->kind == OBJ_DOMAIN ? o->id : 0,
			.counters = o->kind == OBJ_DOMAIN ? &o->cnt : &zero,
			.latency = &o->lat,
		},
		userdata);
}

int iopf_engine_dispatch(struct iopf_engine *e)
{
	uint64_t v;
	unsigned n = e->n_pending;

	(void)!read(e->efd, &v, sizeof(v));
	/* Everything removed so far retires now, like completions of the real engine. */
	for (unsigned i = 0; i < e->next_id - 1; i++) {
		struct obj *o = &e->objs[i];

		if (!o->retiring)
			continue;
		o->retiring = false;
		if (e->retired_fn && o->kind != OBJ_REGION)
			report_stats(o, e->retired_fn, e->retired_userdata);
	}
	/* Callbacks may queue new removals: run only what was queued before. */
	struct pending run[FAKE_MAX_OBJECTS];
	memcpy(run, e->pending, n * sizeof(run[0]));
	memmove(e->pending, e->pending + n, (e->n_pending - n) * sizeof(run[0]));
	e->n_pending -= n;
	for (unsigned i = 0; i < n; i++)
		run[i].done(run[i].userdata, 0);
	return (int)n;
}

unsigned iopf_engine_n_workers(struct iopf_engine *e)
{
	return e->cfg.n_workers ? e->cfg.n_workers : 1;
}

/* A live object of @tenant under @parent; its id goes to *@ret_id. NULL: the table is full. */
static struct obj *obj_new(struct iopf_engine *e, enum obj_kind kind, uint64_t tenant,
			   uint64_t parent, uint64_t *ret_id)
{
	struct obj *o;

	if (e->next_id > FAKE_MAX_OBJECTS)
		return NULL;
	o = &e->objs[e->next_id - 1];
	*o = (struct obj){.live = true,
			  .kind = kind,
			  .id = e->next_id++,
			  .tenant = tenant,
			  .parent = parent,
			  .fd1 = -EBADF,
			  .fd2 = -EBADF};
	*ret_id = o->id;
	return o;
}

static struct obj *obj_get(struct iopf_engine *e, uint64_t id, enum obj_kind kind)
{
	if (id == 0 || id >= e->next_id)
		return NULL;
	if (!e->objs[id - 1].live || e->objs[id - 1].kind != kind)
		return NULL;
	return &e->objs[id - 1];
}

int iopf_engine_add_source(struct iopf_engine *e, uint64_t tenant, int fault_fd, int iommufd,
			   uint32_t ioas_id, uint64_t *ret_source_id)
{
	struct stat st;
	struct obj *o;
	bool sim;
	int r = hook(FAKE_ADD_SOURCE);

	if (r < 0)
		return r;
	if (fstat(iommufd, &st) < 0)
		return -EBADF;
	/* kernel: a pgfault anon inode + a char device; simulator: an eventfd + a memfd */
	if (fd_link_is(fault_fd, "anon_inode:[iommufd-pgfault]") && S_ISCHR(st.st_mode))
		sim = false;
	else if (fd_link_is(fault_fd, "anon_inode:[eventfd]") &&
		 fd_link_is(iommufd, "/memfd:iopf-sim (deleted)"))
		sim = true;
	else
		return -EBADF;
	if (sim && !e->cfg.sim_open)
		return -EOPNOTSUPP;
	o = obj_new(e, OBJ_SOURCE, tenant, 0, ret_source_id);
	if (!o)
		return -ENOMEM;
	o->a = ioas_id;
	o->fd1 = fault_fd;
	o->fd2 = iommufd;
	o->sim = sim;
	return 0;
}

/* The scripted failure of @op, if any, then the live parent (@id, @kind) into *@ret. */
static int add_under(struct iopf_engine *e, enum fake_engine_op op, uint64_t id, enum obj_kind kind,
		     struct obj **ret)
{
	int r = hook(op);

	if (r < 0)
		return r;
	*ret = obj_get(e, id, kind);
	return *ret ? 0 : -ENOENT;
}

int iopf_engine_add_domain(struct iopf_engine *e, uint64_t source_id, uint32_t dev_id,
			   uint32_t pasid, uint64_t *ret_domain_id)
{
	struct obj *s, *o;
	int r = add_under(e, FAKE_ADD_DOMAIN, source_id, OBJ_SOURCE, &s);

	if (r < 0)
		return r;
	if (pasid != IOPF_PASID_NONE && pasid > IOPF_PASID_MAX)
		return -EINVAL;
	for (unsigned i = 0; i < e->next_id - 1; i++) {
		struct obj *d = &e->objs[i];

		if (d->live && d->kind == OBJ_DOMAIN && d->parent == source_id && d->a == dev_id &&
		    d->b == pasid)
			return -EEXIST;
	}
	o = obj_new(e, OBJ_DOMAIN, s->tenant, source_id, ret_domain_id);
	if (!o)
		return -ENOMEM;
	o->a = dev_id;
	o->b = pasid;
	return 0;
}

int iopf_engine_add_region(struct iopf_engine *e, uint64_t domain_id, int fd, uint64_t offset,
			   uint64_t iova, uint64_t length, uint32_t access, uint64_t *ret_region_id)
{
	struct obj *d, *o;
	struct stat st;
	int r = add_under(e, FAKE_ADD_REGION, domain_id, OBJ_DOMAIN, &d);

	if (r < 0)
		return r;
	if (!length || !IS_ALIGNED(iova | offset | length, IOPF_PAGE_SIZE) ||
	    iova + length < iova || !access || (access & ~IOPF_ACCESS_ALL))
		return -EINVAL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return -EBADF;
	if (offset + length > (uint64_t)st.st_size)
		return -EINVAL;
	for (unsigned i = 0; i < e->next_id - 1; i++) {
		struct obj *x = &e->objs[i];

		if (x->live && x->kind == OBJ_REGION && x->parent == domain_id &&
		    iova < x->iova + x->length && x->iova < iova + length)
			return -EBUSY;
	}
	o = obj_new(e, OBJ_REGION, d->tenant, domain_id, ret_region_id);
	if (!o)
		return -ENOMEM;
	o->fd1 = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	o->iova = iova;
	o->length = length;
	o->offset = offset;
	o->a = access;
	return 0;
}

static int queue_done(struct iopf_engine *e, iopf_engine_done_fn done, void *userdata)
{
	uint64_t one = 1;

	/* kick even without a callback: retirements wait for the next dispatch */
	(void)!write(e->efd, &one, sizeof(one));
	if (!done)
		return 0;
	e->pending[e->n_pending++] = (struct pending){done, userdata};
	return 0;
}

static void record_removed(enum fake_engine_op op, uint64_t id)
{
	if (n_removed[op] < FAKE_MAX_REMOVED)
		removed[op][n_removed[op]++] = id;
}

/* Unpublish @id and everything below it. */
static void cascade(struct iopf_engine *e, uint64_t id)
{
	obj_kill(&e->objs[id - 1]);
	e->objs[id - 1].retiring = true;
	for (unsigned i = 0; i < e->next_id - 1; i++)
		if (e->objs[i].live && e->objs[i].parent == id && e->objs[i].kind != OBJ_SOURCE)
			cascade(e, e->objs[i].id);
}

static int remove_obj(struct iopf_engine *e, enum fake_engine_op op, enum obj_kind kind,
		      uint64_t id, iopf_engine_done_fn done, void *userdata)
{
	int r = hook(op);

	record_removed(op, id);
	if (r < 0)
		return r;
	if (!obj_get(e, id, kind))
		return -ENOENT;
	cascade(e, id);
	return queue_done(e, done, userdata);
}

int iopf_engine_remove_source(struct iopf_engine *e, uint64_t source_id, iopf_engine_done_fn done,
			      void *userdata)
{
	return remove_obj(e, FAKE_REMOVE_SOURCE, OBJ_SOURCE, source_id, done, userdata);
}

int iopf_engine_remove_domain(struct iopf_engine *e, uint64_t domain_id, iopf_engine_done_fn done,
			      void *userdata)
{
	return remove_obj(e, FAKE_REMOVE_DOMAIN, OBJ_DOMAIN, domain_id, done, userdata);
}

int iopf_engine_remove_region(struct iopf_engine *e, uint64_t region_id, iopf_engine_done_fn done,
			      void *userdata)
{
	return remove_obj(e, FAKE_REMOVE_REGION, OBJ_REGION, region_id, done, userdata);
}

static void fill_source(struct iopf_engine *e, const struct obj *o, struct iopf_source_info *i)
{
	*i = (struct iopf_source_info){.id = o->id,
				       .tenant = o->tenant,
				       .ioas_id = o->a,
				       .backend = o->sim ? "sim" : "kernel",
				       .paused = o->paused};
}

static void fill_domain(struct iopf_engine *e, const struct obj *o, struct iopf_domain_info *i)
{
	unsigned n = 0;

	for (unsigned k = 0; k < e->next_id - 1; k++)
		if (e->objs[k].live && e->objs[k].kind == OBJ_REGION && e->objs[k].parent == o->id)
			n++;
	*i = (struct iopf_domain_info){.id = o->id,
				       .source_id = o->parent,
				       .tenant = o->tenant,
				       .dev_id = o->a,
				       .pasid = o->b,
				       .n_regions = n,
				       .counters = o->cnt};
}

static void fill_region(struct iopf_engine *e, const struct obj *o, struct iopf_region_info *i)
{
	*i = (struct iopf_region_info){.id = o->id,
				       .domain_id = o->parent,
				       .tenant = o->tenant,
				       .iova = o->iova,
				       .length = o->length,
				       .offset = o->offset,
				       .access = o->a};
}

int iopf_engine_region_overlap(struct iopf_engine *e, uint64_t domain_id, uint64_t iova,
			       uint64_t length, struct iopf_region_info *ret)
{
	if (!obj_get(e, domain_id, OBJ_DOMAIN))
		return -ENOENT;
	for (unsigned i = 0; i < e->next_id - 1; i++) {
		struct obj *x = &e->objs[i];

		if (x->live && x->kind == OBJ_REGION && x->parent == domain_id &&
		    iova < x->iova + x->length && x->iova < iova + length) {
			fill_region(e, x, ret);
			return 1;
		}
	}
	return 0;
}

/* iopf_engine_<name>_info() and iopf_engine_foreach_<name>() of one object kind. */
#define INFO_AND_FOREACH(name, KIND)                                                               \
	int iopf_engine_##name##_info(struct iopf_engine *e, uint64_t id,                          \
				      struct iopf_##name##_info *ret)                              \
	{                                                                                          \
		struct obj *o = obj_get(e, id, KIND);                                              \
                                                                                                   \
		if (!o)                                                                            \
			return -ENOENT;                                                            \
		fill_##name(e, o, ret);                                                            \
		return 0;                                                                          \
	}                                                                                          \
	int iopf_engine_foreach_##name(struct iopf_engine *e, uint64_t tenant,                     \
				       iopf_engine_##name##_fn fn, void *userdata)                 \
	{                                                                                          \
		struct iopf_##name##_info i;                                                       \
		int r;                                                                             \
                                                                                                   \
		for (unsigned k = 0; k < e->next_id - 1; k++) {                                    \
			const struct obj *o = &e->objs[k];                                         \
                                                                                                   \
			if (!o->live || o->kind != KIND || (tenant && o->tenant != tenant))        \
				continue;                                                          \
			fill_##name(e, o, &i);                                                     \
			r = fn(&i, userdata);                                                      \
			if (r < 0)                                                                 \
				return r;                                                          \
		}                                                                                  \
		return 0;                                                                          \
	}
INFO_AND_FOREACH(source, OBJ_SOURCE)
INFO_AND_FOREACH(domain, OBJ_DOMAIN)
INFO_AND_FOREACH(region, OBJ_REGION)
#undef INFO_AND_FOREACH

/* The statistics hooks: set what the domain @id of the one engine reports (NULL: keep). */
static int set_hooked(uint64_t id, const struct iopf_counters *cnt, const struct iopf_histogram *h)
{
	struct obj *o = the_engine ? obj_get(the_engine, id, OBJ_DOMAIN) : NULL;

	if (!o)
		return -ENOENT;
	if (cnt)
		o->cnt = *cnt;
	if (h)
		o->lat = *h;
	return 0;
}

int __iopf_fake_engine_set_counters(uint64_t domain_id, const struct iopf_counters *cnt)
{
	return set_hooked(domain_id, cnt, NULL);
}

int __iopf_fake_engine_set_latency(uint64_t domain_id, const struct iopf_histogram *h)
{
	return set_hooked(domain_id, NULL, h);
}

static int merge_latency(struct iopf_engine *e, uint64_t id, enum obj_kind kind,
			 struct iopf_histogram *ret)
{
	struct obj *o = obj_get(e, id, kind);

	if (!o)
		return -ENOENT;
	iopf_histogram_merge(ret, &o->lat);
	return 0;
}

int iopf_engine_domain_latency(struct iopf_engine *e, uint64_t id, struct iopf_histogram *ret)
{
	return merge_latency(e, id, OBJ_DOMAIN, ret);
}

int iopf_engine_source_latency(struct iopf_engine *e, uint64_t id, struct iopf_histogram *ret)
{
	return merge_latency(e, id, OBJ_SOURCE, ret);
}

void iopf_engine_foreach_retiring(struct iopf_engine *e, uint64_t tenant, iopf_engine_stats_fn fn,
				  void *userdata)
{
	for (unsigned i = 0; i < e->next_id - 1; i++) {
		const struct obj *o = &e->objs[i];

		if (o->retiring && o->kind != OBJ_REGION && (!tenant || o->tenant == tenant))
			report_stats(o, fn, userdata);
	}
}

void iopf_engine_set_retired_fn(struct iopf_engine *e, iopf_engine_stats_fn fn, void *userdata)
{
	e->retired_fn = fn;
	e->retired_userdata = userdata;
}

/*
 * Workers that never hang, unless $IOPF_FAKE_STALL_AFTER_PINGS=N: from the
 * Nth ping on, worker 0 stops answering (watchdog tests of the daemon).
 */
int iopf_engine_ping(struct iopf_engine *e, unsigned *ret_late)
{
	const char *env = getenv("IOPF_FAKE_STALL_AFTER_PINGS");

	e->pings++;
	if (env && e->pings >= strtoul(env, NULL, 10)) {
		if (ret_late)
			*ret_late = 0;
		return 0;
	}
	return 1;
}

IOPF_ENGINE_DEFINE_SETTERS()

/*
 * What outlives the process: the fake has no arena. Records are accepted and
 * forgotten; a restore finds nothing (the real one is tested in test-restart).
 */
int iopf_engine_record_put(struct iopf_engine *e, uint64_t key, const void *data, size_t len)
{
	(void)e;
	(void)data;
	return IOPF_ENGINE_RECORD_KIND(key) < 0x80 || len > IOPF_ENGINE_RECORD_MAX ? -EINVAL : 0;
}

int iopf_engine_record_del(struct iopf_engine *e, uint64_t key)
{
	(void)e;
	(void)key;
	return 0;
}

int iopf_engine_restore(struct iopf_engine *e, iopf_engine_take_fd_fn take_fd,
			iopf_engine_record_fn foreign, void *userdata,
			struct iopf_engine_restored *ret)
{
	(void)e;
	(void)take_fd;
	(void)foreign;
	(void)userdata;
	if (ret)
		*ret = (struct iopf_engine_restored){};
	return 0;
}

int iopf_engine_state_fd(struct iopf_engine *e)
{
	(void)e;
	return -EBADF;
}

int iopf_engine_sweep_stored(const char *name, iopf_engine_take_fd_fn take,
			     const struct iopf_engine_fd_store *store,
			     iopf_backend_open_fn sim_open, unsigned *ret_answered)
{
	(void)name, (void)take, (void)store, (void)sim_open;
	*ret_answered = 0;
	return 0; /* the fake keeps nothing in a store */
}

/* Paused sources: the fake reads nothing anyway; it keeps the flag for the control tests. */
int iopf_engine_add_source_flags(struct iopf_engine *e, uint64_t tenant, int fault_fd, int iommufd,
				 uint32_t ioas_id, uint32_t flags, uint64_t *ret_source_id)
{
	int r = iopf_engine_add_source(e, tenant, fault_fd, iommufd, ioas_id, ret_source_id);

	if (r >= 0)
		obj_get(e, *ret_source_id, OBJ_SOURCE)->paused = flags & IOPF_ENGINE_SOURCE_PAUSED;
	return r;
}

int iopf_engine_start_source(struct iopf_engine *e, uint64_t source_id)
{
	struct obj *o = obj_get(e, source_id, OBJ_SOURCE);

	if (!o)
		return -ENOENT;
	if (!o->paused)
		return -EALREADY;
	o->paused = false;
	return 0;
}

unsigned iopf_engine_workers_alive(struct iopf_engine *e)
{
	return e->cfg.n_workers ? e->cfg.n_workers : 1;
}
