/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The engine, control-thread side: objects, ids, publication and removal.
 * Fault handling lives in worker.c.
 *
 * Removal protocol (source, domain or region):
 *  1. unpublish at once (route table / region set), drop from the id index,
 *     so no new lookup finds it and no control call accepts its id;
 *  2. queue the object's embedded command to its worker; the worker, between
 *     turns, answers held groups RETIRED, unmaps the daemon's maps of it and
 *     (for a source) drains and closes the fault fd;
 *  3. the worker posts the command back as a completion; iopf_engine_dispatch()
 *     runs the done callback and call_rcu()-frees the object, because other
 *     workers' hash lookups may still be walking through its route node.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "engine-internal.h"
#include "resolve.h"
#include "util.h"

/*
 * Objects of one kind by ascending id; each object starts with its uint64_t id.
 * A removed object leaves its id with a NULL pointer, so the search still
 * works; the dead are squeezed out once they are half the vector. Removing
 * every domain of a tenant with 65,536 of them thus costs O(n log n), not
 * the O(n^2) of moving the tail down at each removal.
 */
struct idvec_entry {
	uint64_t id;
	void *p; /* NULL: removed */
};

struct idvec {
	struct idvec_entry *v;
	size_t n, cap, dead;
};

struct iopf_engine {
	struct iopf_engine_config cfg;
	struct iopf_worker **workers;
	unsigned *load; /* live sources per worker */
	struct iopf_route_table *routes;
	uint64_t next_id;
	struct idvec sources, domains, regions;
	struct iopf_state *state; /* owned; what outlives the process (persist.h) */
	unsigned alive;		  /* workers that answered the previous ping, at the last one */

	struct iopf_mailbox done; /* finished removals, posted by the workers */

	/* removal started, completion not dispatched yet (for statistics) */
	struct cds_list_head retiring_sources, retiring_domains;
	iopf_engine_stats_fn retired_fn;
	void *retired_userdata;
};

/*
 * The control thread reads and updates RCU structures, so it must be a
 * registered reader. Engines count registrations per thread so several
 * engines (tests) can share one thread.
 */
static __thread unsigned rcu_registrations;

static uint64_t id_of(const void *p)
{
	return *(const uint64_t *)p;
}

/* Index of the first entry whose id is > @id. */
static size_t idvec_upper(const struct idvec *x, uint64_t id)
{
	size_t lo = 0, hi = x->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (x->v[mid].id <= id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void *idvec_find(const struct idvec *x, uint64_t id)
{
	size_t i = idvec_upper(x, id);

	return i > 0 && x->v[i - 1].id == id ? x->v[i - 1].p : NULL;
}

static int idvec_reserve(struct idvec *x, size_t extra)
{
	size_t cap;

	if (x->n + extra <= x->cap)
		return 0;
	cap = x->cap ? x->cap * 2 : 16;
	while (cap < x->n + extra)
		cap *= 2;
	if (REALLOC_ARRAY(x->v, cap) < 0)
		return -ENOMEM;
	x->cap = cap;
	return 0;
}

/* Ids only grow, so appending keeps the order. Room was reserved. */
static void idvec_append(struct idvec *x, void *p)
{
	assert(x->n < x->cap && (x->n == 0 || x->v[x->n - 1].id < id_of(p)));
	x->v[x->n++] = (struct idvec_entry){.id = id_of(p), .p = p};
}

static void idvec_del(struct idvec *x, uint64_t id)
{
	size_t i = idvec_upper(x, id), j = 0;

	if (i == 0 || x->v[i - 1].id != id || !x->v[i - 1].p)
		return;
	x->v[i - 1].p = NULL;
	x->dead++;
	/* the last entry is always live: the dead at the end just go */
	while (x->n > 0 && !x->v[x->n - 1].p) {
		x->n--;
		x->dead--;
	}
	if (x->dead <= x->n / 2)
		return;
	for (i = 0; i < x->n; i++)
		if (x->v[i].p)
			x->v[j++] = x->v[i];
	x->n = j;
	x->dead = 0;
}

/* Object destructors; they run after a grace period, on the call_rcu thread. */

static void eregion_destroy(struct iopf_eregion *er)
{
	uint64_t n_pages = er->r->n_pages;

	iopf_region_free(er->r);
	iopf_state_release(er->state, er->bits_off, iopf_persist_bits_size(n_pages));
	free(er);
}

static void domain_destroy(struct iopf_domain *d)
{
	struct iopf_eregion *er, *tmp;

	cds_list_for_each_entry_safe(er, tmp, &d->eregions, dnode) eregion_destroy(er);
	iopf_region_set_free(d->regions); /* the tree only; its regions were just freed */
	free(d);
}

static void source_destroy(struct iopf_source *s)
{
	struct iopf_domain *d, *tmp;

	cds_list_for_each_entry_safe(d, tmp, &s->domains, snode) domain_destroy(d);
	iopf_backend_close(s->backend); /* NULL once its worker retired it */
	iopf_fault_buf_fini(&s->buf);
	iopf_journal_free(&s->journal);
	iopf_response_batch_fini(&s->rb);
	free(s->held);
	free(s);
}

static void source_free_rcu(struct rcu_head *h)
{
	source_destroy(caa_container_of(h, struct iopf_source, rcu));
}

static void domain_free_rcu(struct rcu_head *h)
{
	domain_destroy(caa_container_of(h, struct iopf_domain, rcu));
}

static void eregion_free_rcu(struct rcu_head *h)
{
	eregion_destroy(caa_container_of(h, struct iopf_eregion, rcu));
}

static void region_set_free_rcu(struct rcu_head *h)
{
	iopf_region_set_free(caa_container_of(h, struct iopf_region_set, rcu));
}

static int check_config(const struct iopf_engine_config *in, struct iopf_engine_config *ret)
{
	struct iopf_engine_config c = *in;

	if (c.fault_around == 0)
		c.fault_around = IOPF_FAULT_AROUND_DEFAULT;
	if (!iopf_fault_around_ok(c.fault_around))
		return -EINVAL;
	if (c.read_batch == 0)
		c.read_batch = IOPF_READ_BATCH_DEFAULT;
	if (!iopf_read_batch_ok(c.read_batch) || !iopf_busy_poll_ok(c.busy_poll_ns))
		return -EINVAL;
	if (c.n_workers == 0) {
		/* the CPUs this process may run on (taskset, CPUAffinity=), not all online ones */
		cpu_set_t set;
		int n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 0;

		if (n <= 0)
			n = (int)sysconf(_SC_NPROCESSORS_ONLN);
		c.n_workers =
			n > 0 ? ((unsigned)n < IOPF_WORKERS_MAX ? (unsigned)n : IOPF_WORKERS_MAX)
			      : 1;
	}
	if (c.n_workers > IOPF_WORKERS_MAX)
		return -EINVAL;
	*ret = c;
	return 0;
}

/* ---- what outlives the process (persist.h) ---- */

/* The fd store's names: kind, decimal id, what ("s12f": source 12's fault fd). */
static void fd_name(char *buf, size_t size, char kind, uint64_t id, const char *what)
{
	(void)snprintf(buf, size, "%c%" PRIu64 "%s", kind, id, what);
}

/* Whether @name is fd_name(@kind, id, @what) for some id, the one fd_name() would write. */
static bool fd_name_parse(const char *name, char kind, const char *what, uint64_t *ret_id)
{
	char again[32];
	uint64_t id;
	char *end;

	if (name[0] != kind || name[1] < '1' || name[1] > '9')
		return false;
	errno = 0;
	id = strtoull(name + 1, &end, 10);
	if (errno || strcmp(end, what) != 0)
		return false;
	fd_name(again, sizeof(again), kind, id, what);
	if (strcmp(again, name) != 0)
		return false;
	*ret_id = id;
	return true;
}

/* Best effort: an fd the store refused only means that object does not survive a crash. */
static void keep_fd(struct iopf_engine *e, char kind, uint64_t id, const char *what, int fd)
{
	char name[32];

	if (!e->cfg.fd_store.keep)
		return;
	fd_name(name, sizeof(name), kind, id, what);
	(void)e->cfg.fd_store.keep(e->cfg.fd_store.userdata, name, fd);
}

static void drop_fd(struct iopf_engine *e, char kind, uint64_t id, const char *what)
{
	char name[32];

	if (!e->cfg.fd_store.drop)
		return;
	fd_name(name, sizeof(name), kind, id, what);
	e->cfg.fd_store.drop(e->cfg.fd_store.userdata, name);
}

static uint32_t backend_kind(const struct iopf_backend *b)
{
	if (strcmp(b->ops->name, "kernel") == 0)
		return IOPF_PERSIST_BACKEND_KERNEL;
	if (strcmp(b->ops->name, "sim") == 0)
		return IOPF_PERSIST_BACKEND_SIM;
	return 0; /* test fakes: recorded, never restored */
}

/*
 * Records are best effort too: without room in the arena an object still
 * serves, it only would not survive a crash. The journal itself is always
 * there (the read buffer cannot exist without it).
 */
static void persist_source(struct iopf_engine *e, struct iopf_source *s)
{
	(void)iopf_state_put(e->state, IOPF_PERSIST_KEY(IOPF_PERSIST_SOURCE, s->id), &s->prec,
			     sizeof(s->prec));
}

static void persist_domain(struct iopf_engine *e, const struct iopf_domain *d)
{
	struct iopf_persist_domain rec = {
		.version = IOPF_PERSIST_VERSION,
		.dev_id = d->route.dev_id,
		.id = d->id,
		.source_id = d->source->id,
		.tenant = d->tenant,
		.pasid = d->route.pasid,
	};

	(void)iopf_state_put(e->state, IOPF_PERSIST_KEY(IOPF_PERSIST_DOMAIN, d->id), &rec,
			     sizeof(rec));
}

static void persist_region(struct iopf_engine *e, const struct iopf_eregion *er)
{
	const struct iopf_region *r = er->r;
	struct iopf_persist_region rec = {
		.version = IOPF_PERSIST_VERSION,
		.access = r->access,
		.id = er->id,
		.domain_id = er->domain->id,
		.tenant = r->tenant,
		.iova = r->iova,
		.length = r->length,
		.offset = r->offset,
		.bits_off = er->bits_off,
		.file_key = *iopf_region_store_key(er->r),
	};

	(void)iopf_state_put(e->state, IOPF_PERSIST_KEY(IOPF_PERSIST_REGION, er->id), &rec,
			     sizeof(rec));
}

/*
 * A region is added (or restored): its file's fd goes to the store the first
 * time, under the name of the first region on it, which its later regions
 * name too (systemd keeps one open file once, whatever it is called).
 */
static void keep_region_fd(struct iopf_engine *e, struct iopf_eregion *er, uint64_t restored_key)
{
	uint64_t *key = iopf_region_store_key(er->r);

	if (iopf_region_file_live(er->r, +1) == 1 && !*key) {
		/* a restored file is in the store already, under the name it had */
		*key = restored_key ? restored_key : er->id;
		if (!restored_key)
			keep_fd(e, 'r', *key, "", er->r->fd);
	}
}

/* A region's removal completed: it no longer needs to survive anything. */
static void forget_region_state(struct iopf_engine *e, const struct iopf_eregion *er)
{
	uint64_t key = *iopf_region_store_key(er->r);

	(void)iopf_state_del(e->state, IOPF_PERSIST_KEY(IOPF_PERSIST_REGION, er->id));
	if (iopf_region_file_live(er->r, -1) == 0) {
		drop_fd(e, 'r', key, "");
		*iopf_region_store_key(er->r) = 0;
	}
}

static void forget_domain_state(struct iopf_engine *e, const struct iopf_domain *d)
{
	const struct iopf_eregion *er;

	cds_list_for_each_entry(er, &d->eregions, dnode) forget_region_state(e, er);
	(void)iopf_state_del(e->state, IOPF_PERSIST_KEY(IOPF_PERSIST_DOMAIN, d->id));
}

static void forget_source_state(struct iopf_engine *e, const struct iopf_source *s)
{
	const struct iopf_domain *d;

	cds_list_for_each_entry(d, &s->domains, snode) forget_domain_state(e, d);
	(void)iopf_state_del(e->state, IOPF_PERSIST_KEY(IOPF_PERSIST_SOURCE, s->id));
	drop_fd(e, 's', s->id, "f");
	drop_fd(e, 's', s->id, "i");
}

int iopf_engine_state_fd(struct iopf_engine *e)
{
	return iopf_state_fd(e->state);
}

int iopf_engine_record_put(struct iopf_engine *e, uint64_t key, const void *data, size_t len)
{
	if (IOPF_ENGINE_RECORD_KIND(key) < IOPF_PERSIST_FOREIGN)
		return -EINVAL;
	return iopf_state_put(e->state, key, data, len);
}

int iopf_engine_record_del(struct iopf_engine *e, uint64_t key)
{
	if (IOPF_ENGINE_RECORD_KIND(key) < IOPF_PERSIST_FOREIGN)
		return -EINVAL;
	return iopf_state_del(e->state, key);
}

int iopf_engine_new(const struct iopf_engine_config *cfg, struct iopf_engine **ret)
{
	struct iopf_engine *e;
	int r;

	e = calloc(1, sizeof(*e));
	if (!e) {
		if (cfg->state_fd > 0)
			(void)close(cfg->state_fd); /* taken over, also on failure */
		return -ENOMEM;
	}
	r = check_config(cfg, &e->cfg);
	if (r == 0)
		r = iopf_mailbox_init(&e->done);
	if (r < 0) {
		if (cfg->state_fd > 0)
			(void)close(cfg->state_fd);
		free(e);
		return r;
	}
	if (rcu_registrations++ == 0)
		rcu_register_thread();
	e->next_id = 1;
	CDS_INIT_LIST_HEAD(&e->retiring_sources);
	CDS_INIT_LIST_HEAD(&e->retiring_domains);

	e->workers = calloc(e->cfg.n_workers, sizeof(*e->workers));
	e->load = calloc(e->cfg.n_workers, sizeof(*e->load));
	r = e->workers && e->load ? iopf_route_table_new(&e->routes) : -ENOMEM;
	if (r < 0) {
		if (cfg->state_fd > 0)
			(void)close(cfg->state_fd);
		goto fail;
	}
	r = cfg->state_fd > 0 ? iopf_state_adopt(cfg->state_fd, &e->state)
			      : iopf_state_new(&e->state);
	if (r < 0) {
		if (cfg->state_fd > 0)
			(void)close(cfg->state_fd);
		goto fail;
	}
	for (unsigned i = 0; i < e->cfg.n_workers; i++) {
		const struct iopf_worker_config wc = {
			.index = i,
			.routes = e->routes,
			.fault_around = &e->cfg.fault_around,
			.busy_poll_ns = &e->cfg.busy_poll_ns,
			.done = &e->done,
		};

		r = iopf_worker_start(&wc, &e->workers[i]);
		if (r < 0)
			goto fail;
	}
	*ret = e;
	return 0;
fail:
	iopf_engine_free(e);
	return r;
}

static int remove_source(struct iopf_engine *e, struct iopf_source *s, iopf_engine_done_fn done,
			 void *userdata);

struct iopf_engine *iopf_engine_free(struct iopf_engine *e)
{
	if (!e)
		return NULL;

	/* Retire everything through the workers: held groups answered, maps undone. */
	while (e->sources.n > 0)
		(void)remove_source(e, e->sources.v[e->sources.n - 1].p, NULL, NULL);
	for (unsigned i = 0; e->workers && i < e->cfg.n_workers; i++)
		e->workers[i] = iopf_worker_stop(e->workers[i]);
	/* Workers are gone: every completion, earlier ones too, is queued now. */
	(void)iopf_engine_dispatch(e);
	rcu_barrier();

	e->routes = iopf_route_table_free(e->routes);
	iopf_mailbox_fini(&e->done);
	e->state = iopf_state_free(e->state);
	free(e->workers);
	free(e->load);
	free(e->sources.v);
	free(e->domains.v);
	free(e->regions.v);
	free(e);
	if (--rcu_registrations == 0)
		rcu_unregister_thread();
	return NULL;
}

int iopf_engine_get_fd(struct iopf_engine *e)
{
	return iopf_mailbox_fd(&e->done);
}

unsigned iopf_engine_n_workers(struct iopf_engine *e)
{
	return e->cfg.n_workers;
}

/* Snapshot and hand over statistics another thread may still write. */
static void emit_stats(iopf_engine_stats_fn fn, void *userdata, uint64_t tenant, uint64_t source_id,
		       uint64_t domain_id, const struct iopf_counters *c,
		       const struct iopf_histogram *h)
{
	struct iopf_counters cs;
	struct iopf_histogram hs = {};

	ctr_snapshot(c, &cs);
	iopf_histogram_merge(&hs, h);
	fn(
		&(struct iopf_engine_stats){
			.tenant = tenant,
			.source_id = source_id,
			.domain_id = domain_id,
			.counters = &cs,
			.latency = &hs,
		},
		userdata);
}

static void emit_domain(iopf_engine_stats_fn fn, void *userdata, const struct iopf_domain *d)
{
	emit_stats(fn, userdata, d->tenant, d->source->id, d->id, &d->counters, &d->latency);
}

static void emit_source(iopf_engine_stats_fn fn, void *userdata, const struct iopf_source *s)
{
	const struct iopf_domain *d;

	emit_stats(fn, userdata, s->tenant, s->id, 0, &s->unrouted, &s->unrouted_latency);
	cds_list_for_each_entry(d, &s->domains, snode) emit_domain(fn, userdata, d);
}

void iopf_engine_foreach_retiring(struct iopf_engine *e, uint64_t tenant, iopf_engine_stats_fn fn,
				  void *userdata)
{
	const struct iopf_source *s;
	const struct iopf_domain *d;

	cds_list_for_each_entry(s, &e->retiring_sources, rnode) if (!tenant || s->tenant == tenant)
		emit_source(fn, userdata, s);
	cds_list_for_each_entry(d, &e->retiring_domains, rnode) if (!tenant || d->tenant == tenant)
		emit_domain(fn, userdata, d);
}

void iopf_engine_set_retired_fn(struct iopf_engine *e, iopf_engine_stats_fn fn, void *userdata)
{
	e->retired_fn = fn;
	e->retired_userdata = userdata;
}

int iopf_engine_dispatch(struct iopf_engine *e)
{
	CDS_LIST_HEAD(todo);
	struct iopf_cmd *c, *tmp;
	int n = 0;

	iopf_mailbox_take_all(&e->done, &todo);

	cds_list_for_each_entry_safe(c, tmp, &todo, node)
	{
		cds_list_del(&c->node);
		/* Final numbers first: the worker is done with the object. */
		if (c->type == IOPF_CMD_REMOVE_SOURCE) {
			struct iopf_source *s = c->obj;

			cds_list_del(&s->rnode);
			if (e->retired_fn)
				emit_source(e->retired_fn, e->retired_userdata, s);
		} else if (c->type == IOPF_CMD_REMOVE_DOMAIN) {
			struct iopf_domain *d = c->obj;

			cds_list_del(&d->rnode);
			if (e->retired_fn)
				emit_domain(e->retired_fn, e->retired_userdata, d);
		}
		if (c->done)
			c->done(c->userdata, c->error);
		switch (c->type) {
		case IOPF_CMD_REMOVE_SOURCE: {
			struct iopf_source *s = c->obj;

			forget_source_state(e, s);
			call_rcu(&s->rcu, source_free_rcu);
			break;
		}
		case IOPF_CMD_REMOVE_DOMAIN: {
			struct iopf_domain *d = c->obj;

			forget_domain_state(e, d);
			call_rcu(&d->rcu, domain_free_rcu);
			break;
		}
		case IOPF_CMD_REMOVE_REGION: {
			struct iopf_eregion *er = c->obj;

			forget_region_state(e, er);
			call_rcu(&er->rcu, eregion_free_rcu);
			break;
		}
		case IOPF_CMD_ADD_SOURCE:
		case IOPF_CMD_STOP:
		case IOPF_CMD_PING:
			break; /* never completed */
		}
		n++;
	}
	return n;
}

/* The read buffer's growth (iopf_fault_buf): a bigger journal, named in the source's record. */
static int source_grow_journal(void *userdata, size_t cap, struct iommu_hwpt_pgfault **ret_recs)
{
	struct iopf_source *s = userdata;
	int r = iopf_journal_grow(&s->journal, cap, &s->prec);

	if (r < 0)
		return r;
	*ret_recs = s->journal.rec;
	return 0;
}

/* @journal: an earlier run's (taken over, also on failure), or NULL for a new one. */
static int source_new(struct iopf_engine *e, struct iopf_journal *journal, struct iopf_source **ret)
{
	struct iopf_source *s;

	s = calloc(1, sizeof(*s));
	if (!s) {
		if (journal)
			iopf_journal_free(journal);
		return -ENOMEM;
	}
	CDS_INIT_LIST_HEAD(&s->domains);
	if (journal)
		s->journal = *journal;
	/* the id it will get: nothing else takes one on this thread before source_attach() */
	else if (iopf_journal_new(e->state, e->next_id, e->cfg.read_batch, &s->journal) < 0) {
		source_destroy(s);
		return -ENOMEM;
	}
	/* the read buffer is the journal's slots; it grows through the journal too */
	iopf_fault_buf_init_at(&s->buf, s->journal.rec, s->journal.cap, IOPF_READ_MAX_RECORDS,
			       source_grow_journal, s);
	/* Room for the answers of one read (held groups get theirs when there are some). */
	if (iopf_response_batch_init(&s->rb, s->buf.cap) < 0) {
		source_destroy(s);
		return -ENOMEM;
	}
	*ret = s;
	return 0;
}

/* A new source with its room in the index: all that adding one needs memory for. */
static int source_reserve_new(struct iopf_engine *e, struct iopf_source **ret)
{
	int r = idvec_reserve(&e->sources, 1);

	return r < 0 ? r : source_new(e, NULL, ret);
}

static void source_place(struct iopf_engine *e, struct iopf_source *s, uint64_t id, uint64_t tenant,
			 struct iopf_backend *b)
{
	unsigned best = 0;

	/* Least-loaded worker: a source is the unit of parallelism. */
	for (unsigned i = 1; i < e->cfg.n_workers; i++)
		if (e->load[i] < e->load[best])
			best = i;
	e->load[best]++;

	s->id = id;
	s->tenant = tenant;
	s->backend = b;
	s->ioas_id = b->ioas_id;
	s->worker = best;
	idvec_append(&e->sources, s);
	s->add_cmd = (struct iopf_cmd){.type = IOPF_CMD_ADD_SOURCE, .obj = s};
}

/* Cannot fail: memory and the index slot were reserved. */
static void source_attach(struct iopf_engine *e, struct iopf_source *s, uint64_t tenant,
			  struct iopf_backend *b, uint32_t flags)
{
	source_place(e, s, e->next_id++, tenant, b);
	s->paused = flags & IOPF_ENGINE_SOURCE_PAUSED;
	s->prec = (struct iopf_persist_source){
		.version = IOPF_PERSIST_VERSION,
		.backend = backend_kind(b),
		.id = s->id,
		.tenant = tenant,
		.ioas_id = b->ioas_id,
		.journal_cap = (uint32_t)s->journal.cap,
		.journal_off = s->journal.off,
		.flags = flags & IOPF_ENGINE_SOURCE_PAUSED,
	};
	persist_source(e, s);
	keep_fd(e, 's', s->id, "f", b->fault_fd);
	keep_fd(e, 's', s->id, "i", b->iommufd);
	if (!s->paused)
		iopf_worker_send(e->workers[s->worker], &s->add_cmd);
}

int iopf_engine_start_source(struct iopf_engine *e, uint64_t source_id)
{
	struct iopf_source *s = idvec_find(&e->sources, source_id);

	if (!s)
		return -ENOENT;
	if (!s->paused)
		return -EALREADY;
	s->paused = false;
	s->prec.flags &= ~IOPF_ENGINE_SOURCE_PAUSED;
	persist_source(e, s);
	iopf_worker_send(e->workers[s->worker], &s->add_cmd);
	return 0;
}

int __iopf_engine_add_backend(struct iopf_engine *e, uint64_t tenant, struct iopf_backend *b,
			      uint64_t *ret_source_id)
{
	struct iopf_source *s;
	int r;

	r = source_reserve_new(e, &s);
	if (r < 0)
		return r;
	source_attach(e, s, tenant, b, 0);
	*ret_source_id = s->id;
	return 0;
}

int iopf_engine_add_source(struct iopf_engine *e, uint64_t tenant, int fault_fd, int iommufd,
			   uint32_t ioas_id, uint64_t *ret_source_id)
{
	return iopf_engine_add_source_flags(e, tenant, fault_fd, iommufd, ioas_id, 0,
					    ret_source_id);
}

int iopf_engine_add_source_flags(struct iopf_engine *e, uint64_t tenant, int fault_fd, int iommufd,
				 uint32_t ioas_id, uint32_t flags, uint64_t *ret_source_id)
{
	struct iopf_backend *b;
	struct iopf_source *s;
	int r;

	/* Everything that can fail for want of memory first: the fds are ours only on success. */
	r = source_reserve_new(e, &s);
	if (r < 0)
		return r;
	r = iopf_backend_open(fault_fd, iommufd, ioas_id, e->cfg.sim_open, &b);
	if (r < 0) {
		source_destroy(s);
		return r;
	}
	source_attach(e, s, tenant, b, flags);
	*ret_source_id = s->id;
	return 0;
}

/* Drop a domain and its regions from the id index (control side of removal). */
static void forget_domain(struct iopf_engine *e, struct iopf_domain *d)
{
	struct iopf_eregion *er;

	iopf_route_del(e->routes, &d->route);
	cds_list_for_each_entry(er, &d->eregions, dnode) idvec_del(&e->regions, er->id);
	idvec_del(&e->domains, d->id);
}

/* Hand the removal of @obj to @worker in @cmd, the object's own; @done runs once it is done. */
static int send_removal(struct iopf_engine *e, unsigned worker, struct iopf_cmd *cmd,
			enum iopf_cmd_type type, void *obj, iopf_engine_done_fn done,
			void *userdata)
{
	*cmd = (struct iopf_cmd){.type = type, .obj = obj, .done = done, .userdata = userdata};
	iopf_worker_send(e->workers[worker], cmd);
	return 0;
}

static int remove_source(struct iopf_engine *e, struct iopf_source *s, iopf_engine_done_fn done,
			 void *userdata)
{
	struct iopf_domain *d;

	/* a paused source goes to its worker first: the removal drains it like any other */
	if (s->paused) {
		s->paused = false;
		iopf_worker_send(e->workers[s->worker], &s->add_cmd);
	}
	cds_list_for_each_entry(d, &s->domains, snode) forget_domain(e, d);
	idvec_del(&e->sources, s->id);
	cds_list_add_tail(&s->rnode, &e->retiring_sources);
	e->load[s->worker]--;
	return send_removal(e, s->worker, &s->rm_cmd, IOPF_CMD_REMOVE_SOURCE, s, done, userdata);
}

int iopf_engine_remove_source(struct iopf_engine *e, uint64_t source_id, iopf_engine_done_fn done,
			      void *userdata)
{
	struct iopf_source *s = idvec_find(&e->sources, source_id);

	if (!s)
		return -ENOENT;
	return remove_source(e, s, done, userdata);
}

_Static_assert(offsetof(struct iopf_domain, handler) + sizeof(int) <= IOPF_CACHE_LINE &&
		       offsetof(struct iopf_domain, regions) < IOPF_CACHE_LINE &&
		       offsetof(struct iopf_domain, counters) == IOPF_CACHE_LINE,
	       "what a fault reads of its domain is in the first line");
_Static_assert(offsetof(struct iopf_counters, reasons[IOPF_REASON_RESOLVED + 1]) <= IOPF_CACHE_LINE,
	       "what a resolved fault counts is in one line");

static int domain_new(struct iopf_engine *e, struct iopf_source *s, uint64_t id, uint32_t dev_id,
		      uint32_t pasid, struct iopf_domain **ret);

int iopf_engine_add_domain(struct iopf_engine *e, uint64_t source_id, uint32_t dev_id,
			   uint32_t pasid, uint64_t *ret_domain_id)
{
	struct iopf_source *s;
	struct iopf_domain *d;
	int r;

	if (pasid > IOPF_PASID_MAX && pasid != IOPF_PASID_NONE)
		return -EINVAL;
	s = idvec_find(&e->sources, source_id);
	if (!s)
		return -ENOENT;
	r = domain_new(e, s, e->next_id, dev_id, pasid, &d);
	if (r < 0)
		return r;
	e->next_id++;
	persist_domain(e, d);
	*ret_domain_id = d->id;
	return 0;
}

/* Build and publish domain @id of @s. Return: 0, -EEXIST (key taken), -ENOMEM. */
static int domain_new(struct iopf_engine *e, struct iopf_source *s, uint64_t id, uint32_t dev_id,
		      uint32_t pasid, struct iopf_domain **ret)
{
	struct iopf_domain *d;
	int r;

	r = idvec_reserve(&e->domains, 1);
	if (r < 0)
		return r;
	/* on a line of its own: the layout of struct iopf_domain counts on it */
	d = calloc_lines(sizeof(*d));
	if (!d)
		return -ENOMEM;

	/* Complete before it is published: a worker may find it at once. */
	d->id = id;
	d->tenant = s->tenant;
	d->source = s;
	CDS_INIT_LIST_HEAD(&d->eregions);
	d->route.source = s->id;
	d->route.dev_id = dev_id;
	d->route.pasid = pasid;
	r = iopf_route_add(e->routes, &d->route);
	if (r < 0) {
		free(d);
		return r;
	}
	cds_list_add_tail(&d->snode, &s->domains);
	idvec_append(&e->domains, d);
	*ret = d;
	return 0;
}

int iopf_engine_remove_domain(struct iopf_engine *e, uint64_t domain_id, iopf_engine_done_fn done,
			      void *userdata)
{
	struct iopf_domain *d = idvec_find(&e->domains, domain_id);

	if (!d)
		return -ENOENT;
	forget_domain(e, d);
	cds_list_del(&d->snode);
	cds_list_add_tail(&d->rnode, &e->retiring_domains);
	return send_removal(e, d->source->worker, &d->rm_cmd, IOPF_CMD_REMOVE_DOMAIN, d, done,
			    userdata);
}

/*
 * Build and publish region @id of @d. @bits_off: its bitmaps' block, which it
 * takes over (also on failure). Return: 0; -EINVAL, -EBADF, -EBUSY, -ENOMEM.
 */
static int region_new(struct iopf_engine *e, struct iopf_domain *d, uint64_t id, int fd,
		      uint64_t offset, uint64_t iova, uint64_t length, uint32_t access,
		      uint64_t bits_off, struct iopf_eregion **ret)
{
	struct iopf_region_set *set, *old;
	struct iopf_eregion *er;
	struct iopf_region *r;
	int rc;

	rc = iopf_region_new_bits(d->tenant, fd, offset, iova, length, access,
				  iopf_state_at(e->state, bits_off), &r);
	if (rc < 0) {
		iopf_state_release(e->state, bits_off,
				   iopf_persist_bits_size(length / IOPF_PAGE_SIZE));
		return rc;
	}
	er = calloc(1, sizeof(*er));
	if (!er) {
		iopf_region_free(r);
		iopf_state_release(e->state, bits_off,
				   iopf_persist_bits_size(length / IOPF_PAGE_SIZE));
		return -ENOMEM;
	}
	er->r = r;
	er->state = e->state;
	er->bits_off = bits_off;
	rc = idvec_reserve(&e->regions, 1);
	if (rc == 0)
		rc = iopf_region_set_add(d->regions, r, &set); /* -EBUSY on overlap */
	if (rc < 0) {
		eregion_destroy(er);
		return rc;
	}

	er->id = id;
	er->domain = d;
	r->id = er->id;
	r->domain_id = d->id;
	r->tenant = d->tenant;
	old = iopf_rcu_xchg_pointer(&d->regions, set);
	if (old)
		call_rcu(&old->rcu, region_set_free_rcu);
	cds_list_add_tail(&er->dnode, &d->eregions);
	d->n_regions++;
	idvec_append(&e->regions, er);
	*ret = er;
	return 0;
}

int iopf_engine_add_region(struct iopf_engine *e, uint64_t domain_id, int fd, uint64_t offset,
			   uint64_t iova, uint64_t length, uint32_t access, uint64_t *ret_region_id)
{
	struct iopf_eregion *er;
	struct iopf_domain *d;
	uint64_t bits_off;
	int rc;

	d = idvec_find(&e->domains, domain_id);
	if (!d)
		return -ENOENT;
	/* the bitmaps live in the arena, so a restarted iopfd knows what this one mapped */
	if (length == 0 || length % IOPF_PAGE_SIZE)
		return -EINVAL;
	rc = iopf_state_alloc(e->state, iopf_persist_bits_size(length / IOPF_PAGE_SIZE), &bits_off);
	if (rc < 0)
		return rc == -EINVAL ? -EINVAL : -ENOMEM;
	rc = region_new(e, d, e->next_id, fd, offset, iova, length, access, bits_off, &er);
	if (rc < 0)
		return rc;
	e->next_id++;
	keep_region_fd(e, er, 0);
	persist_region(e, er);
	*ret_region_id = er->id;
	return 0;
}

int iopf_engine_remove_region(struct iopf_engine *e, uint64_t region_id, iopf_engine_done_fn done,
			      void *userdata)
{
	struct iopf_eregion *er = idvec_find(&e->regions, region_id);
	struct iopf_region_set *set, *old;
	struct iopf_domain *d;
	int rc;

	if (!er)
		return -ENOENT;
	d = er->domain;
	rc = iopf_region_set_del(d->regions, er->r, &set);
	if (rc < 0)
		return rc; /* -ENOMEM, nothing changed */
	old = iopf_rcu_xchg_pointer(&d->regions, set);
	if (old)
		call_rcu(&old->rcu, region_set_free_rcu);
	cds_list_del(&er->dnode);
	d->n_regions--;
	idvec_del(&e->regions, er->id);
	return send_removal(e, d->source->worker, &er->rm_cmd, IOPF_CMD_REMOVE_REGION, er, done,
			    userdata);
}

static void source_info(const struct iopf_source *s, struct iopf_source_info *ret)
{
	*ret = (struct iopf_source_info){
		.id = s->id,
		.tenant = s->tenant,
		.ioas_id = s->ioas_id,
		.worker = s->worker,
		.backend = s->backend->ops->name,
		.io_errors = ctr_get(&s->io_errors),
		.write_errors = ctr_get(&s->write_errors),
		.read_errors = ctr_get(&s->read_errors),
		.retries = ctr_get(&s->retries),
		.recovered = ctr_get(&s->recovered),
		.paused = s->paused,
		.broken = __atomic_load_n(&s->broken_pub, __ATOMIC_RELAXED),
	};
	ctr_snapshot(&s->unrouted, &ret->unrouted);
}

static void domain_info(const struct iopf_domain *d, struct iopf_domain_info *ret)
{
	*ret = (struct iopf_domain_info){
		.id = d->id,
		.source_id = d->source->id,
		.tenant = d->tenant,
		.dev_id = d->route.dev_id,
		.pasid = d->route.pasid,
		.n_regions = d->n_regions,
	};
	ctr_snapshot(&d->counters, &ret->counters);
}

static void region_info(const struct iopf_eregion *er, struct iopf_region_info *ret)
{
	const struct iopf_region *r = er->r;

	*ret = (struct iopf_region_info){
		.id = er->id,
		.domain_id = r->domain_id,
		.tenant = r->tenant,
		.iova = r->iova,
		.length = r->length,
		.offset = r->offset,
		.access = r->access,
		.bytes_mapped = ctr_get(&r->bytes_mapped),
	};
}

/* iopf_engine_<name>_info(): the object @id of e-><name>s, as <name>_info() describes it. */
#define OBJECT_INFO(name, type)                                                                    \
	int iopf_engine_##name##_info(struct iopf_engine *e, uint64_t id,                          \
				      struct iopf_##name##_info *ret)                              \
	{                                                                                          \
		const type *o = idvec_find(&e->name##s, id);                                       \
                                                                                                   \
		if (!o)                                                                            \
			return -ENOENT;                                                            \
		name##_info(o, ret);                                                               \
		return 0;                                                                          \
	}

OBJECT_INFO(source, struct iopf_source)
OBJECT_INFO(domain, struct iopf_domain)
OBJECT_INFO(region, struct iopf_eregion)

int iopf_engine_region_overlap(struct iopf_engine *e, uint64_t domain_id, uint64_t iova,
			       uint64_t length, struct iopf_region_info *ret)
{
	struct iopf_domain *d = idvec_find(&e->domains, domain_id);
	const struct iopf_region *r;

	if (!d)
		return -ENOENT;
	/* the control thread writes the set: it reads it without a read section */
	r = iopf_region_set_overlap(d->regions, iova, length);
	if (!r)
		return 0;
	return iopf_engine_region_info(e, r->id, ret) == 0 ? 1 : 0;
}

/*
 * The visitors re-find their place by id after every callback, so a callback
 * may add or remove objects.
 */
#define FOREACH_OBJECT(vec, type, info_type, info_fn, tenant_of)                                   \
	do {                                                                                       \
		uint64_t last = 0;                                                                 \
		for (;;) {                                                                         \
			size_t i = idvec_upper((vec), last);                                       \
			const type *o;                                                             \
			info_type info;                                                            \
			int r;                                                                     \
                                                                                                   \
			if (i >= (vec)->n)                                                         \
				return 0;                                                          \
			o = (vec)->v[i].p;                                                         \
			last = (vec)->v[i].id;                                                     \
			if (!o || (tenant && tenant_of(o) != tenant))                              \
				continue;                                                          \
			info_fn(o, &info);                                                         \
			r = fn(&info, userdata);                                                   \
			if (r < 0)                                                                 \
				return r;                                                          \
		}                                                                                  \
	} while (0)

#define SOURCE_TENANT(o) ((o)->tenant)
#define DOMAIN_TENANT(o) ((o)->tenant)
#define REGION_TENANT(o) ((o)->r->tenant)

int iopf_engine_foreach_source(struct iopf_engine *e, uint64_t tenant, iopf_engine_source_fn fn,
			       void *userdata)
{
	FOREACH_OBJECT(&e->sources, struct iopf_source, struct iopf_source_info, source_info,
		       SOURCE_TENANT);
}

int iopf_engine_foreach_domain(struct iopf_engine *e, uint64_t tenant, iopf_engine_domain_fn fn,
			       void *userdata)
{
	FOREACH_OBJECT(&e->domains, struct iopf_domain, struct iopf_domain_info, domain_info,
		       DOMAIN_TENANT);
}

int iopf_engine_foreach_region(struct iopf_engine *e, uint64_t tenant, iopf_engine_region_fn fn,
			       void *userdata)
{
	FOREACH_OBJECT(&e->regions, struct iopf_eregion, struct iopf_region_info, region_info,
		       REGION_TENANT);
}

int __iopf_engine_set_hold(struct iopf_engine *e, uint64_t domain_id, bool hold)
{
	struct iopf_domain *d = idvec_find(&e->domains, domain_id);

	if (!d)
		return -ENOENT;
	/* a held table only for sources that hold: the worker may use it once it sees HOLD */
	if (hold && !d->source->held) {
		d->source->held = calloc(IOPF_HELD_MAX, sizeof(*d->source->held));
		if (!d->source->held)
			return -ENOMEM;
	}
	__atomic_store_n(&d->handler, hold ? IOPF_HANDLER_HOLD : IOPF_HANDLER_RESOLVE,
			 __ATOMIC_RELEASE);
	return 0;
}

uint64_t __iopf_engine_held(struct iopf_engine *e, uint64_t source_id)
{
	struct iopf_source *s = idvec_find(&e->sources, source_id);

	return s ? ctr_get(&s->n_held_pub) : 0;
}

/* @h, the histogram of an object found (NULL: none was), merged into *@ret. */
static int latency_merge(const struct iopf_histogram *h, struct iopf_histogram *ret)
{
	if (!h)
		return -ENOENT;
	iopf_histogram_merge(ret, h);
	return 0;
}

int iopf_engine_domain_latency(struct iopf_engine *e, uint64_t id, struct iopf_histogram *ret)
{
	struct iopf_domain *d = idvec_find(&e->domains, id);

	return latency_merge(d ? &d->latency : NULL, ret);
}

int iopf_engine_source_latency(struct iopf_engine *e, uint64_t id, struct iopf_histogram *ret)
{
	struct iopf_source *s = idvec_find(&e->sources, id);

	return latency_merge(s ? &s->unrouted_latency : NULL, ret);
}

int iopf_engine_ping(struct iopf_engine *e, unsigned *ret_late)
{
	unsigned alive = 0;
	int all = 1;

	for (unsigned i = 0; i < e->cfg.n_workers; i++) {
		if (iopf_worker_ping(e->workers[i])) {
			alive++;
			continue;
		}
		if (all && ret_late)
			*ret_late = i;
		all = 0;
	}
	e->alive = alive;
	return all;
}

unsigned iopf_engine_workers_alive(struct iopf_engine *e)
{
	return e->alive;
}

/* fault_around and busy_poll_ns read by the workers as they run; read_batch by source_new() */
IOPF_ENGINE_DEFINE_SETTERS()

/* ---- restore (iopf_engine_restore()) ---- */

/* The records of one kind, as the arena gave them. */
struct recvec {
	void *v;
	size_t n, cap, size;
};

struct restore {
	struct iopf_engine *e;
	iopf_engine_take_fd_fn take_fd;
	iopf_engine_record_fn foreign;
	void *userdata;
	struct recvec src, dom, reg;
	uint64_t max_id;
	struct file_fd *files;
	size_t n_files;
};

static int recvec_push(struct recvec *x, const void *data)
{
	if (x->n == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 64;
		void *v = realloc(x->v, cap * x->size);

		if (!v)
			return -ENOMEM;
		x->v = v;
		x->cap = cap;
	}
	memcpy((char *)x->v + x->n++ * x->size, data, x->size);
	return 0;
}

/* Every record is checked for what can be checked alone: kind, size, version, id. */
static int collect(uint64_t key, const void *data, size_t len, void *userdata)
{
	struct restore *x = userdata;
	unsigned kind = IOPF_PERSIST_KIND(key);
	uint64_t id = IOPF_PERSIST_ID(key);
	struct recvec *v;
	uint64_t rec_id;
	uint32_t version;

	if (kind >= IOPF_PERSIST_FOREIGN)
		return x->foreign ? x->foreign(x->userdata, key, data, len) : 0;
	v = kind == IOPF_PERSIST_SOURCE	  ? &x->src
	    : kind == IOPF_PERSIST_DOMAIN ? &x->dom
	    : kind == IOPF_PERSIST_REGION ? &x->reg
					  : NULL;
	if (!v || len != v->size)
		return -EINVAL;
	memcpy(&version, data, sizeof(version));
	/* every record has its id right after two 32-bit words */
	memcpy(&rec_id, (const char *)data + 8, sizeof(rec_id));
	if (version != IOPF_PERSIST_VERSION || rec_id != id || id == 0 || id >= UINT64_C(1) << 52)
		return -EINVAL;
	if (id > x->max_id)
		x->max_id = id;
	return recvec_push(v, data);
}

static int cmp_id(const void *a, const void *b)
{
	uint64_t x, y;

	memcpy(&x, (const char *)a + 8, sizeof(x));
	memcpy(&y, (const char *)b + 8, sizeof(y));
	return x < y ? -1 : x > y;
}

static int take_named_fd(struct restore *x, char kind, uint64_t id, const char *what)
{
	char name[32];

	fd_name(name, sizeof(name), kind, id, what);
	return x->take_fd ? x->take_fd(x->userdata, name) : -ENOENT;
}

/* A source whose fds did not come back: forget it (its blocks were claimed) and its names. */
static void drop_source(struct restore *x, struct iopf_persist_source *rec,
			struct iopf_journal *journal)
{
	struct iopf_engine *e = x->e;

	(void)iopf_state_del(e->state, IOPF_PERSIST_KEY(IOPF_PERSIST_SOURCE, rec->id));
	iopf_journal_free(journal);
	drop_fd(e, 's', rec->id, "f");
	drop_fd(e, 's', rec->id, "i");
}

static int restore_source(struct restore *x, struct iopf_persist_source *rec,
			  struct iopf_journal *journal, unsigned *ret_dropped)
{
	struct iopf_engine *e = x->e;
	_cleanup_close_ int fault_fd = take_named_fd(x, 's', rec->id, "f");
	_cleanup_close_ int iommufd = take_named_fd(x, 's', rec->id, "i");
	struct iopf_backend *b;
	struct iopf_source *s;
	int r;

	if (fault_fd < 0 || iommufd < 0 ||
	    iopf_backend_open(fault_fd, iommufd, rec->ioas_id, e->cfg.sim_open, &b) < 0) {
		drop_source(x, rec, journal);
		(*ret_dropped)++;
		return 0;
	}
	TAKE_FD(fault_fd);
	TAKE_FD(iommufd);
	r = idvec_reserve(&e->sources, 1);
	if (r < 0) {
		iopf_backend_close(b);
		iopf_journal_free(journal);
		return r;
	}
	r = source_new(e, journal, &s);
	if (r < 0) {
		iopf_backend_close(b);
		return r;
	}
	source_place(e, s, rec->id, rec->tenant, b);
	s->prec = *rec;
	s->recover = true;
	return 0;
}

static void drop_region(struct restore *x, const struct iopf_persist_region *rec)
{
	struct iopf_engine *e = x->e;

	(void)iopf_state_del(e->state, IOPF_PERSIST_KEY(IOPF_PERSIST_REGION, rec->id));
	iopf_state_release(e->state, rec->bits_off,
			   iopf_persist_bits_size(rec->length / IOPF_PAGE_SIZE));
}

/*
 * A region's file, by the key its fd is kept under: regions on one file share
 * it. Every file the records name is taken from the store once, up front,
 * into an array sorted by key (a restore may meet tens of thousands).
 */
struct file_fd {
	uint64_t key;
	int fd;	   /* owned; closed at the end of the restore */
	bool used; /* a restored region took it: its name stays in the store */
};

static int file_fd_cmp(const void *a, const void *b)
{
	const struct file_fd *x = a, *y = b;

	return x->key < y->key ? -1 : x->key > y->key;
}

static int restore_files_take(struct restore *x)
{
	const struct iopf_persist_region *reg = x->reg.v;
	size_t n = 0;

	if (!x->reg.n)
		return 0;
	x->files = calloc(x->reg.n, sizeof(*x->files));
	if (!x->files)
		return -ENOMEM;
	for (size_t i = 0; i < x->reg.n; i++)
		x->files[i] = (struct file_fd){.key = reg[i].file_key, .fd = -EBADF};
	qsort(x->files, x->reg.n, sizeof(*x->files), file_fd_cmp);
	for (size_t i = 0; i < x->reg.n; i++)
		if (n == 0 || x->files[n - 1].key != x->files[i].key)
			x->files[n++] = x->files[i];
	x->n_files = n;
	for (size_t i = 0; i < n; i++)
		x->files[i].fd = take_named_fd(x, 'r', x->files[i].key, "");
	return 0;
}

static int restore_file_fd(struct restore *x, uint64_t key, struct file_fd **ret)
{
	const struct file_fd k = {.key = key};

	*ret = x->n_files ? bsearch(&k, x->files, x->n_files, sizeof(k), file_fd_cmp) : NULL;
	return *ret ? (*ret)->fd : -ENOENT;
}

static void restore_files_done(struct restore *x)
{
	for (size_t i = 0; i < x->n_files; i++) {
		safe_close(x->files[i].fd);
		if (!x->files[i].used)
			drop_fd(x->e, 'r', x->files[i].key, "");
	}
	free(x->files);
}

/* Claim the journals' and bitmaps' blocks: any that is out of place refuses the arena. */
static int restore_claim(struct restore *x, struct iopf_journal *journals)
{
	struct iopf_persist_source *src = x->src.v;
	struct iopf_persist_region *reg = x->reg.v;
	int r;

	for (size_t i = 0; i < x->src.n; i++) {
		if (src[i].journal_cap == 0 || src[i].journal_cap > IOPF_READ_MAX_RECORDS)
			return -EINVAL;
		r = iopf_journal_adopt(x->e->state, src[i].id, src[i].journal_off,
				       src[i].journal_cap, &journals[i]);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < x->reg.n; i++) {
		if (reg[i].length == 0 || reg[i].length % IOPF_PAGE_SIZE)
			return -EINVAL;
		r = iopf_state_claim(x->e->state, reg[i].bits_off,
				     iopf_persist_bits_size(reg[i].length / IOPF_PAGE_SIZE));
		if (r < 0)
			return r;
	}
	return iopf_state_seal(x->e->state);
}

static int restore_build(struct restore *x, struct iopf_journal *journals,
			 struct iopf_engine_restored *st)
{
	struct iopf_engine *e = x->e;
	struct iopf_persist_source *src = x->src.v;
	struct iopf_persist_domain *dom = x->dom.v;
	struct iopf_persist_region *reg = x->reg.v;
	size_t i = 0;
	int r = 0;

	for (; i < x->src.n && r >= 0; i++)
		r = restore_source(x, &src[i], &journals[i], &st->dropped);
	/* the journals not handed to a source yet are freed by the caller */
	for (size_t j = 0; j < i; j++)
		journals[j] = (struct iopf_journal){};
	for (size_t j = 0; j < x->dom.n && r >= 0; j++) {
		struct iopf_source *s = idvec_find(&e->sources, dom[j].source_id);
		struct iopf_domain *d;

		if (!s || (dom[j].pasid > IOPF_PASID_MAX && dom[j].pasid != IOPF_PASID_NONE) ||
		    dom[j].tenant != s->tenant ||
		    domain_new(e, s, dom[j].id, dom[j].dev_id, dom[j].pasid, &d) < 0) {
			(void)iopf_state_del(e->state,
					     IOPF_PERSIST_KEY(IOPF_PERSIST_DOMAIN, dom[j].id));
			st->dropped++;
		}
	}
	if (r >= 0)
		r = restore_files_take(x);
	for (size_t j = 0; j < x->reg.n && r >= 0; j++) {
		struct iopf_domain *d = idvec_find(&e->domains, reg[j].domain_id);
		struct file_fd *file;
		struct iopf_eregion *er;
		uint64_t mapped;
		int fd = restore_file_fd(x, reg[j].file_key, &file);

		if (!d || fd < 0 || reg[j].tenant != d->tenant) {
			drop_region(x, &reg[j]);
			st->dropped++;
			continue;
		}
		/* the region keeps its own fd on the file; region_new() frees the block on failure
		 */
		r = region_new(e, d, reg[j].id, fd, reg[j].offset, reg[j].iova, reg[j].length,
			       reg[j].access, reg[j].bits_off, &er);
		if (r == -ENOMEM)
			break;
		if (r < 0) {
			(void)iopf_state_del(e->state,
					     IOPF_PERSIST_KEY(IOPF_PERSIST_REGION, reg[j].id));
			st->dropped++;
			r = 0;
			continue;
		}
		file->used = true;
		/* what the process before mapped is mapped still: the gauges say so */
		mapped = iopf_region_pages_tracked(er->r) * IOPF_PAGE_SIZE;
		ctr_add(&er->r->bytes_mapped, mapped);
		ctr_add(&d->counters.bytes_mapped, mapped);
		keep_region_fd(e, er, reg[j].file_key);
	}
	return r;
}

/* Whether a region of @s other than @self tracks any page of [iova, iova+length). */
static bool others_track(struct iopf_source *s, const struct iopf_region *self, uint64_t iova,
			 uint64_t length)
{
	struct iopf_domain *d;
	struct iopf_eregion *er;

	cds_list_for_each_entry(d, &s->domains, snode)
		cds_list_for_each_entry(er, &d->eregions, dnode)
	{
		const struct iopf_region *r = er->r;
		uint64_t from, to, h_first, h_n;

		if (r == self || iova > iopf_region_last(r) || iova + length - 1 < r->iova)
			continue;
		from = (iova > r->iova ? iova - r->iova : 0) / IOPF_PAGE_SIZE;
		to = (iova + length - 1 < iopf_region_last(r) ? iova + length - r->iova
							      : r->length) /
		     IOPF_PAGE_SIZE;
		/* a page tracked unless [from, to) is one hole */
		if (from < to && (!iopf_region_next_hole(r, from, to, &h_first, &h_n) ||
				  h_first != from || h_n != to - from))
			return true;
	}
	return false;
}

/*
 * A map call the dead process had in flight: settle it before the source goes
 * live (its worker does not know it yet, so this thread may use its backend).
 * Tracked: it was made and recorded. Not tracked: map it again. Refused as
 * already there: either that call was made, or something else sits there. If
 * another of the source's regions tracks a page of it, the call must have
 * failed: leave it. Otherwise nothing of iopfd's is there but that call, or a
 * mapping the tenant made itself in its own region: either way it is tracked
 * as iopfd's, to be unmapped with the region. A re-map that fails otherwise
 * (the kernel short of memory) says nothing of the call either: left alone too,
 * and counted with those.
 */
static void readopt_intent(struct iopf_source *s, struct iopf_engine_restored *st)
{
	uint64_t iova, length;
	struct iopf_domain *d;
	struct iopf_eregion *er;
	int r;

	if (!iopf_journal_intent(&s->journal, &iova, &length))
		return;
	cds_list_for_each_entry(d, &s->domains, snode)
		cds_list_for_each_entry(er, &d->eregions, dnode)
	{
		if (iova < er->r->iova || iova - er->r->iova >= er->r->length)
			continue;
		r = iopf_resolve_readopt(s->backend, er->r, iova, length, &d->counters);
		if (r == -EEXIST && !others_track(s, er->r, iova, length))
			iopf_resolve_adopt_extent(er->r, iova, length, &d->counters);
		else if (r < 0)
			st->uncertain++; /* what is there, if anything, is left alone */
		goto done;
	}
done:
	iopf_journal_set_intent(&s->journal, 0, 0);
}

int iopf_engine_restore(struct iopf_engine *e, iopf_engine_take_fd_fn take_fd,
			iopf_engine_record_fn foreign, void *userdata,
			struct iopf_engine_restored *ret)
{
	struct restore x = {
		.e = e,
		.take_fd = take_fd,
		.foreign = foreign,
		.userdata = userdata,
		.src.size = sizeof(struct iopf_persist_source),
		.dom.size = sizeof(struct iopf_persist_domain),
		.reg.size = sizeof(struct iopf_persist_region),
	};
	struct iopf_engine_restored st = {};
	struct iopf_journal *journals = NULL;
	struct iopf_source *s;
	int r;

	if (!e->cfg.state_fd || e->sources.n || e->next_id != 1)
		return -EBUSY; /* a new arena, or objects already: nothing to restore into */
	r = iopf_state_foreach_record(e->state, collect, &x);
	if (r < 0)
		goto out;
	if (x.src.n)
		qsort(x.src.v, x.src.n, x.src.size, cmp_id);
	if (x.dom.n)
		qsort(x.dom.v, x.dom.n, x.dom.size, cmp_id);
	if (x.reg.n)
		qsort(x.reg.v, x.reg.n, x.reg.size, cmp_id);
	journals = calloc(x.src.n + 1, sizeof(*journals));
	if (!journals) {
		r = -ENOMEM;
		goto out;
	}
	r = restore_claim(&x, journals);
	if (r < 0)
		goto out;
	e->next_id = x.max_id + 1;
	r = restore_build(&x, journals, &st);
	if (r < 0)
		goto out;

	/* everything is in place: only now may a source read */
	for (size_t i = 0; i < e->sources.n; i++) {
		s = e->sources.v[i].p;
		readopt_intent(s, &st);
		st.pending += iopf_journal_pending(&s->journal);
		/* paused before the crash: still the tenant's to start */
		s->paused = s->prec.flags & IOPF_ENGINE_SOURCE_PAUSED;
		if (!s->paused)
			iopf_worker_send(e->workers[s->worker], &s->add_cmd);
	}
	st.sources = (unsigned)e->sources.n;
	st.domains = (unsigned)e->domains.n;
	st.regions = (unsigned)e->regions.n;
	if (ret)
		*ret = st;
out:
	for (size_t i = 0; journals && i < x.src.n; i++)
		if (journals[i].state && r < 0)
			iopf_journal_free(&journals[i]);
	restore_files_done(&x);
	free(journals);
	free(x.src.v);
	free(x.dom.v);
	free(x.reg.v);
	return r;
}

static int sweep(int fault_fd, int iommufd, iopf_backend_open_fn sim_open, unsigned *ret_answered)
{
	struct iopf_backend *b;
	unsigned answered = 0;
	int r;

	r = iopf_backend_open(fault_fd, iommufd, 1, sim_open, &b);
	if (r < 0) {
		safe_close(fault_fd);
		safe_close(iommufd);
		return r;
	}
	/*
	 * Cookies are the lowest free ids of the queue's table, so those a dead
	 * process held are below what it could hold at once: a read's worth per
	 * source. Nothing was read since, so none of them is anyone else's now.
	 */
	for (uint32_t cookie = 0; cookie < IOPF_ENGINE_SWEEP_COOKIES; cookie++) {
		struct iommu_hwpt_page_response resp = {
			.cookie = cookie,
			.code = IOMMUFD_PAGE_RESP_INVALID,
		};

		if (b->ops->fault_write(b, &resp, sizeof(resp)) == (ssize_t)sizeof(resp))
			answered++;
	}
	iopf_backend_close(b);
	*ret_answered = answered;
	return 0;
}

int iopf_engine_sweep_stored(const char *name, iopf_engine_take_fd_fn take,
			     const struct iopf_engine_fd_store *store,
			     iopf_backend_open_fn sim_open, unsigned *ret_answered)
{
	char fault_name[32], iommu_name[32];
	uint64_t id;
	int r;

	if (!fd_name_parse(name, 's', "f", &id))
		return 0;
	fd_name(fault_name, sizeof(fault_name), 's', id, "f");
	fd_name(iommu_name, sizeof(iommu_name), 's', id, "i");
	r = sweep(take(store->userdata, fault_name), take(store->userdata, iommu_name), sim_open,
		  ret_answered);
	store->drop(store->userdata, fault_name);
	store->drop(store->userdata, iommu_name);
	return r < 0 ? r : 1;
}
