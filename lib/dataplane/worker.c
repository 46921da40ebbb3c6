/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fault workers. Each is a thread with one io_uring ring that waits on a
 * multishot POLL_ADD per live source (its backend's poll_fd; one-shot before
 * 5.13) and a one-shot one on the command eventfd. The loop is in rounds: one
 * io_uring enter submits what is queued and reaps every completion, each
 * source whose fd woke goes on the ready list, then every source on the list
 * gets one turn of a few reads; each read's whole groups are routed, resolved
 * and answered with one write before the next read. A source whose turn ended
 * at the read bound, not on an empty read, stays on the list for the next
 * round. Commands (add and remove) run between rounds, outside any RCU read
 * section.
 */
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>

#include <liburing.h>

#include "counters.h"
#include "engine-internal.h"
#include "fault.h"
#include "resolve.h"
#include "util.h"
#include "time-util.h"

/*
 * user_data: a source's poll carries the source's (8-byte aligned) address,
 * its backoff timer the address | TAG_TIMER, the cancel of either that value
 * | TAG_CANCEL; the command eventfd's poll TAG_CMD (no source lives at 0).
 */
#define TAG_CMD	   UINT64_C(2)
#define TAG_CANCEL UINT64_C(1)
#define TAG_TIMER  UINT64_C(2)
#define TAG_KINDS  UINT64_C(7)

#define RING_ENTRIES 64
/*
 * Completions the ring keeps room for: a multishot poll the CQ has no room
 * for is ended by the kernel (and re-armed here), so enough for every source
 * to wake in one round.
 */
#define RING_CQ_ENTRIES 8192
/*
 * Records whose cache misses are taken together when faults scatter over
 * domains: 32 measured 12% faster than 16 at 65,536 domains, 64 no faster.
 */
#define PREFETCH_CHUNK 32

struct iopf_worker {
	struct iopf_worker_config cfg;
	pthread_t thread;
	struct io_uring ring;
	struct iopf_mailbox cmds; /* from the control thread */

	/* worker thread only */
	struct cds_list_head sources;
	/* sources due a turn next round (ready_node): woken since the last, then again */
	struct cds_list_head ready, again;
	unsigned n_sources;  /* on sources: more than one shares the turns (service_source()) */
	bool multishot;	     /* poll sources multishot (false: one-shot, before 5.13) */
	unsigned n_retiring; /* sources waiting for their poll cancellation */
	bool cmd_armed, stopping;

	sem_t started;
	int start_error;
	struct iopf_cmd stop_cmd;

	/* liveness: pings sent (control thread), pings answered (worker; release) */
	uint64_t ping_sent, pong;
	struct iopf_cmd ping_cmd;
};

static struct io_uring_sqe *get_sqe(struct iopf_worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	if (!sqe) {
		/* SQ full: push what is queued to make room. */
		(void)io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	/* A submit empties the SQ: still none means a broken ring, and no poll means no service. */
	if (!sqe)
		abort();
	return sqe;
}

static void arm_poll(struct iopf_worker *w, int fd, uint64_t tag, bool multishot)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	if (multishot)
		io_uring_prep_poll_multishot(sqe, fd, POLLIN);
	else
		io_uring_prep_poll_add(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, tag);
}

static uint64_t source_tag(struct iopf_source *s)
{
	return (uint64_t)(uintptr_t)s;
}

static void arm_timer(struct iopf_worker *w, struct iopf_source *s)
{
	struct io_uring_sqe *sqe;

	if (s->timer_armed)
		return;
	sqe = get_sqe(w);
	s->backoff_ts = (struct __kernel_timespec){
		.tv_sec = (long long)(s->backoff_ns / 1000000000),
		.tv_nsec = (long long)(s->backoff_ns % 1000000000),
	};
	io_uring_prep_timeout(sqe, &s->backoff_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, source_tag(s) | TAG_TIMER);
	s->timer_armed = true;
}

/*
 * Wait for the source again, after each turn (and once when it arrives): no
 * walk over every source per loop. Normally its poll, armed once and kept:
 * a multishot poll completes on every wakeup of the fd (a group queued on an
 * empty queue, for the simulator and the fake; every fault, for the kernel),
 * and a turn reads until a read comes back empty (or the backend's queue
 * says it is, queue_drained()) or the bound, after which the source is due
 * another turn (serve_ready()): nothing queued is left without a turn
 * coming. One-shot (before 5.13) it is armed after every turn, and its level
 * semantics do the same: on a still-readable fd it fires at once. In backoff
 * the timer instead: a poll would not fire for responses that wait for a
 * write, and would spin on a read that fails (a multishot poll may stay
 * armed meanwhile: its completions are ignored until the timer's turn works).
 */
static void arm_source(struct iopf_worker *w, struct iopf_source *s)
{
	if (s->retiring)
		return;
	if (s->backoff_ns) {
		arm_timer(w, s);
		return;
	}
	if (s->poll_armed)
		return;
	/* a multishot poll completes on every wakeup: the backend need not keep the level */
	iopf_backend_set_edge(s->backend, w->multishot);
	arm_poll(w, s->backend->poll_fd, source_tag(s), w->multishot);
	s->poll_armed = true;
	s->poll_multishot = w->multishot;
}

/* Give @s a turn next round, at the end of @list (@polled: its fd is known readable). */
static void queue_turn(struct cds_list_head *list, struct iopf_source *s, bool polled)
{
	if (s->on_ready) {
		s->ready_polled |= polled;
		return;
	}
	cds_list_add_tail(&s->ready_node, list);
	s->on_ready = true;
	s->ready_polled = polled;
}

/* @s woke: a turn next round, before the sources that are there again (serve_ready()). */
static void make_ready(struct iopf_worker *w, struct iopf_source *s, bool polled)
{
	queue_turn(&w->ready, s, polled);
}

static void unready(struct iopf_source *s)
{
	if (!s->on_ready)
		return;
	cds_list_del(&s->ready_node);
	s->on_ready = false;
}

/*
 * Only where a read came back empty at a turn's start with a multishot poll:
 * rare. The queue's own say where the backend has one: with a multishot poll
 * its poll_fd's level need not be kept (arm_source()).
 */
static bool still_readable(struct iopf_source *s)
{
	struct pollfd p = {.fd = s->backend->poll_fd, .events = POLLIN};

	if (s->backend->ops->readable)
		return s->backend->ops->readable(s->backend);

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/*
 * After a read that delivered: the backend's queue says nothing is left, so
 * the read that would come back empty is saved (at one fault a turn, one
 * read in two). A group queued after the look wakes the poll: it lands on an
 * empty queue (multishot, see arm_source()), or keeps the level up (one-shot).
 * A tenant that makes its queue look empty delays only its own groups.
 */
static bool queue_drained(struct iopf_source *s)
{
	return s->backend->ops->readable && !s->backend->ops->readable(s->backend);
}

/* The next, longer wait of a source whose write (or read) failed. */
static void back_off(struct iopf_source *s)
{
	if (!s->backoff_ns)
		s->backoff_ns = IOPF_BACKOFF_MIN_NS;
	else
		s->backoff_ns = s->backoff_ns >= IOPF_BACKOFF_MAX_NS / 2 ? IOPF_BACKOFF_MAX_NS
									 : 2 * s->backoff_ns;
}

static void set_broken(struct iopf_source *s, bool broken)
{
	if (s->broken == broken)
		return;
	s->broken = broken;
	__atomic_store_n(&s->broken_pub, broken, __ATOMIC_RELAXED);
}

/*
 * A read (or the poll) failed hard. The poll is level-triggered, so polling
 * again would spin on a persistent error: wait on the backoff timer instead
 * and read again then, for as long as it takes (a transient ENOMEM heals
 * after one retry). Broken, and counted, until a read works again.
 */
static void read_failed(struct iopf_source *s)
{
	ctr_add(&s->io_errors, 1);
	ctr_add(&s->read_errors, 1);
	set_broken(s, true);
	back_off(s);
}

/*
 * Cancel a source's pending poll (@kind 0) or timer (TAG_TIMER). ASYNC_CANCEL,
 * not POLL_REMOVE: a poll whose wakeup is being processed makes POLL_REMOVE
 * fail with EALREADY and do nothing, and if the fd is no longer readable by
 * then the poll silently re-arms and never completes. ASYNC_CANCEL marks it
 * cancelled either way.
 */
static void cancel_wait(struct iopf_worker *w, struct iopf_source *s, uint64_t kind)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_cancel64(sqe, source_tag(s) | kind, 0);
	io_uring_sqe_set_data64(sqe, source_tag(s) | kind | TAG_CANCEL);
	s->cancels_pending++;
}

/* @h: latency histogram to record in once written, from @t_read (NULL, 0: none). */
static void answer(struct iopf_source *s, uint32_t cookie, enum iopf_reason why,
		   struct iopf_counters *c, struct iopf_histogram *h, uint64_t t_read)
{
	iopf_response_add_timed(&s->rb, cookie,
				why == IOPF_REASON_RESOLVED ? IOMMUFD_PAGE_RESP_SUCCESS
							    : IOMMUFD_PAGE_RESP_INVALID,
				c, h, t_read);
	ctr_answer(c, why);
}

/*
 * Write the queued responses. Return: 0, or -errno with the unwritten ones
 * still queued: then nothing may be read from the source until they are
 * written (see iopf_response_flush()). -EBUSY: the backend could not write
 * without waiting (no error: try again later, see flush_failed()).
 */
static int flush(struct iopf_source *s)
{
	int r;

	if (s->rb.n > 0) {
		r = iopf_response_flush(&s->rb, s->backend);
		if (r < 0) {
			if (r != -EBUSY) {
				ctr_add(&s->io_errors, 1);
				ctr_add(&s->write_errors, 1);
			}
			return r;
		}
	}
	/* every group of the last read is answered (or held): its journal slots are free */
	iopf_journal_clear(&s->journal, s->journal_n);
	s->journal_n = 0;
	return 0;
}

/* The slots the last read filled, a torn last record included: answered before the next. */
static void journal_read(struct iopf_source *s)
{
	s->journal_n = s->buf.n + s->buf.torn;
}

/* Caller holds the RCU read lock. */
static enum iopf_reason resolve_group(const struct iopf_resolver *rs, struct iopf_source *s,
				      struct iopf_domain *d, const struct iopf_group *g)
{
	const struct iopf_region_set *set = iopf_rcu_dereference(d->regions);

	for (size_t i = g->first; i < g->first + g->n; i++) {
		enum iopf_reason why = iopf_resolve_fault(rs, set, s->buf.recs[i].addr,
							  s->buf.recs[i].perm, &d->counters);

		/* The device drops the whole group on INVALID: stop mapping for it. */
		if (why != IOPF_REASON_RESOLVED)
			return why;
	}
	return IOPF_REASON_RESOLVED;
}

/*
 * A cookie just read that a held group still has: the kernel answered the held
 * group itself (detach) and re-issued its cookie. Forget the held one, or
 * answering it later would answer the new group.
 */
static void forget_reissued(struct iopf_source *s, uint32_t cookie)
{
	for (size_t i = 0; i < s->n_held; i++)
		if (s->held[i].cookie == cookie) {
			ctr_add(&s->held[i].domain->counters.stale, 1);
			s->held[i] = s->held[--s->n_held];
			ctr_sub(&s->n_held_pub, 1);
			return;
		}
}

/*
 * A group of a domain whose handler answers later (IOPF_HANDLER_HOLD): keep it
 * in the held table. The first time, give the response batch room to answer
 * every held group besides a full read. Out of line: production never holds.
 * Return: false when it cannot be held (table full, no memory): resolve it.
 */
static __attribute__((noinline)) bool hold_group(struct iopf_source *s, struct iopf_domain *d,
						 uint32_t cookie)
{
	if (s->n_held >= IOPF_HELD_MAX)
		return false;
	if (!s->held_room) {
		if (iopf_response_batch_reserve(&s->rb, s->buf.cap + IOPF_HELD_MAX) < 0)
			return false;
		s->held_room = IOPF_HELD_MAX;
	}
	s->held[s->n_held++] = (struct iopf_held){.cookie = cookie, .domain = d};
	ctr_add(&s->n_held_pub, 1);
	return true;
}

/*
 * The last route looked up in this turn: groups come in runs from one device
 * and PASID. Valid only inside the read section it was filled in: it holds
 * what a lookup there returned, no more, so removal is unaffected.
 */
struct route_memo {
	bool valid;
	uint32_t dev_id, pasid;
	struct iopf_domain *d;
	size_t lookups; /* misses so far: how scattered the turn's faults are */
};

static struct iopf_domain *route(struct iopf_worker *w, struct iopf_source *s, struct route_memo *m,
				 uint32_t dev_id, uint32_t pasid)
{
	struct iopf_route_node *rn;

	if (m->valid && m->dev_id == dev_id && m->pasid == pasid)
		return m->d;
	rn = iopf_route_lookup(w->cfg.routes, s->id, dev_id, pasid);
	m->valid = true;
	m->dev_id = dev_id;
	m->pasid = pasid;
	m->d = rn ? caa_container_of(rn, struct iopf_domain, route) : NULL;
	m->lookups++;
	return m->d;
}

static uint32_t rec_pasid(const struct iommu_hwpt_pgfault *r)
{
	return (r->flags & IOMMU_PGFAULT_FLAGS_PASID_VALID) ? r->pasid : IOPF_PASID_NONE;
}

/*
 * Records [from, to) of a read whose faults scatter over many domains. Each
 * step of resolving such a fault misses the cache, and each step's address
 * comes from the one before: route slot, domain, region set, region, page
 * bitmap. Taking a chunk of records one step at a time issues the misses of
 * the chunk together, so they overlap instead of queueing one behind another.
 * Hints only: nothing is checked or kept here; handle_records() does the work.
 * Caller holds the RCU read lock.
 */
static void prefetch_records(struct iopf_worker *w, struct iopf_source *s, size_t from, size_t to)
{
	struct iopf_route_table *routes = w->cfg.routes;
	const struct iommu_hwpt_pgfault *rec = &s->buf.recs[from];
	const struct iopf_region_set *set[PREFETCH_CHUNK];
	size_t n = to - from;

	assert(n <= PREFETCH_CHUNK);
	for (size_t i = 0; i < n; i++)
		iopf_route_prefetch(routes, s->id, rec[i].dev_id, rec_pasid(&rec[i]));
	for (size_t i = 0; i < n; i++) {
		struct iopf_route_node *rn =
			iopf_route_lookup(routes, s->id, rec[i].dev_id, rec_pasid(&rec[i]));
		struct iopf_domain *d = rn ? caa_container_of(rn, struct iopf_domain, route) : NULL;

		set[i] = d ? iopf_rcu_dereference(d->regions) : NULL;
		if (!d)
			continue;
		__builtin_prefetch(set[i]);
		__builtin_prefetch(&d->counters.reasons[IOPF_REASON_RESOLVED], 1);
		__builtin_prefetch(&d->latency.count, 1);
		__builtin_prefetch(iopf_response_bucket_hint(&s->rb, &d->latency), 1);
	}
	for (size_t i = 0; i < n; i++)
		if (set[i])
			__builtin_prefetch(iopf_region_set_hint(set[i]));
	for (size_t i = 0; i < n; i++) {
		struct iopf_region *r = set[i] ? iopf_region_set_find(set[i], rec[i].addr) : NULL;

		if (r)
			__builtin_prefetch(
				&r->mapped[(rec[i].addr - r->iova) / IOPF_PAGE_SIZE / 64]);
	}
}

/*
 * Caller holds the RCU read lock; rb has room for @n more responses read at @t_read.
 * @rs, @m: the turn's resolver and route memo.
 */
static void handle_records(struct iopf_worker *w, struct iopf_source *s,
			   const struct iopf_resolver *rs, struct route_memo *m, size_t n,
			   uint64_t t_read)
{
	size_t pos = 0, fetched = 0;
	struct iopf_group g;

	while (iopf_fault_next_group(s->buf.recs, n, &pos, &g)) {
		struct iopf_domain *d;

		if (s->scattered && g.first >= fetched) {
			fetched = g.first + PREFETCH_CHUNK < n ? g.first + PREFETCH_CHUNK : n;
			prefetch_records(w, s, g.first, fetched);
		}
		d = route(w, s, m, g.dev_id, g.pasid);
		struct iopf_counters *c = d ? &d->counters : &s->unrouted;
		struct iopf_histogram *h = d ? &d->latency : &s->unrouted_latency;
		enum iopf_reason why;

		if (s->n_held > 0)
			forget_reissued(s, g.cookie);
		ctr_add(&c->faults, g.n);
		if (g.masked)
			ctr_add(&c->masked_flags, g.masked);
		if (g.bad)
			why = IOPF_REASON_BAD_RECORD;
		else if (!d)
			why = IOPF_REASON_NO_HANDLER;
		else if (__builtin_expect(__atomic_load_n(&d->handler, __ATOMIC_ACQUIRE) !=
						  IOPF_HANDLER_RESOLVE,
					  0) &&
			 hold_group(s, d, g.cookie))
			continue;
		else
			why = resolve_group(rs, s, d, &g);
		answer(s, g.cookie, why, c, h, t_read);
	}
}

/* How a turn ended. */
enum turn_end {
	TURN_DONE,     /* a read came back empty, or failed, or a write failed: wait */
	TURN_BOUND,    /* every read of the turn delivered: more may be queued */
	TURN_READABLE, /* the first read came back empty, yet the fd is readable */
};

/* How a turn whose flush() failed with @r ends: busy, the next round tries again; else back off. */
static enum turn_end flush_failed(struct iopf_source *s, int r)
{
	if (r == -EBUSY)
		return TURN_BOUND;
	back_off(s);
	return TURN_DONE;
}

/*
 * What resolving a source's faults needs, read once a turn: a reload may
 * change the fault-around window, and map calls are written in its journal.
 */
static struct iopf_resolver resolver_of(struct iopf_worker *w, struct iopf_source *s)
{
	return (struct iopf_resolver){
		.backend = s->backend,
		.journal = &s->journal,
		.fault_around = __atomic_load_n(w->cfg.fault_around, __ATOMIC_RELAXED),
	};
}

/*
 * One turn of a source, @polled readable or woken by its poll or its backoff
 * timer: at most IOPF_TURN_READS reads, each answered with one write before
 * the next read, so between two reads every group of the earlier one is
 * answered or held and s->buf holds exactly the last read's records until
 * they are. While other sources share the worker, the turn also reads at
 * most IOPF_TURN_SHARED_RECORDS records (a group longer than that whole):
 * the bounds keep one busy source from starving the others on this worker,
 * and a source still readable gets another turn in the next round.
 *
 * A multishot poll's completion says the fd woke, not that it is readable
 * now (a group read in a turn may have woken it after the turn began), so
 * those turns are not @polled. A read that comes back empty at the start of
 * such a turn is checked against the fd's level: still readable means a
 * backend that returns 0 for a group that does not fit (not the kernel, see
 * iopf_fault_read()), and the turn ends TURN_READABLE: the next one is @polled.
 */
static enum turn_end service_source(struct iopf_worker *w, struct iopf_source *s, bool polled)
{
	const struct iopf_resolver rs = resolver_of(w, s);
	struct route_memo memo = {};
	enum turn_end end = TURN_BOUND;
	bool failed = false;
	/* 0: no budget (alone on the worker, nobody to wait behind it) */
	size_t left = w->n_sources > 1 ? IOPF_TURN_SHARED_RECORDS : 0;
	size_t n, lookups;
	int r;

	/* Responses of an earlier read wait for a write: no read before they are written. */
	r = flush(s);
	if (r < 0)
		return flush_failed(s, r);

	rcu_read_lock();
	for (unsigned reads = 0; reads < IOPF_TURN_READS; reads++) {
		ssize_t got;

		s->buf.budget = left;
		got = iopf_fault_read(&s->buf, s->backend, &s->rb, s->held_room,
				      polled && reads == 0);

		if (s->buf.torn)
			ctr_add(&s->io_errors, 1); /* torn record: not kernel behaviour, skip it */
		if (got == -EBUSY)
			break; /* cannot read without waiting: TURN_BOUND, the next round tries */
		if (got < 0) {
			failed = true;
			end = TURN_DONE;
			break;
		}
		if (got == 0) {
			end = reads == 0 && w->multishot && still_readable(s) ? TURN_READABLE
									      : TURN_DONE;
			break;
		}
		n = (size_t)got;
		journal_read(s);
		lookups = memo.lookups;
		handle_records(w, s, &rs, &memo, n, mono_ns());
		/* a route lookup for more than one record in four: prefetch for the next read */
		s->scattered = (memo.lookups - lookups) * 4 > n;
		r = flush(s);
		if (r < 0) {
			end = flush_failed(s, r);
			break;
		}
		if (queue_drained(s)) {
			end = TURN_DONE;
			break;
		}
		if (left) {
			if (n >= left)
				break; /* the budget is spent: TURN_BOUND */
			left -= n;
		}
	}
	s->buf.budget = 0;
	rcu_read_unlock();

	if (failed)
		read_failed(s);
	else {
		set_broken(s, false);
		if (s->rb.n == 0)
			s->backoff_ns = 0; /* all is well again: back to the poll */
	}
	return end;
}

/*
 * A restored source (iopf_engine_restore()), before its first read: answer what
 * the dead process read and had not answered, resolved again against the
 * domains and regions restored with it. A group it answered after all, just
 * before it died, meets the kernel's refusal (counted stale) and nothing
 * else: a cookie is handed out again only by a read, and none happened since.
 */
static void recover_source(struct iopf_worker *w, struct iopf_source *s)
{
	const struct iopf_resolver rs = resolver_of(w, s);
	struct route_memo memo = {};
	size_t n = iopf_journal_pending(&s->journal);

	s->recover = false;
	if (n == 0)
		return;
	s->journal_n = n;
	rcu_read_lock();
	handle_records(w, s, &rs, &memo, n, mono_ns());
	rcu_read_unlock();
	if (flush(s) < 0)
		back_off(s); /* arm_source() then waits on the timer, not the poll */
	/* once their answers are written (or wait for a retry): what a watcher can wait for */
	ctr_add(&s->recovered, n);
}

/* Answer INVALID RETIRED every held group of @d (NULL: all of them). */
static void retire_held(struct iopf_worker *w, struct iopf_source *s, struct iopf_domain *d)
{
	size_t j = 0;

	for (size_t i = 0; i < s->n_held; i++) {
		struct iopf_held *h = &s->held[i];

		if (d && h->domain != d) {
			s->held[j++] = *h;
			continue;
		}
		/* its read time is not kept: a held group's latency is the tenant's */
		answer(s, h->cookie, IOPF_REASON_RETIRED, &h->domain->counters, NULL, 0);
		ctr_sub(&s->n_held_pub, 1);
	}
	s->n_held = j;
	if (flush(s) < 0) {
		/* between turns: retried on the timer, like a turn's failed write */
		back_off(s);
		arm_timer(w, s);
	}
}

/* Unmap what the daemon mapped for @d; the domain is unpublished and frozen. */
static int unmap_domain(struct iopf_source *s, struct iopf_domain *d)
{
	/* No updater any more: a plain dereference outside a read section is safe. */
	struct iopf_region_set *set = iopf_rcu_dereference(d->regions);
	struct iopf_region_set_iter it;
	int ret = 0;

	for (struct iopf_region *rg = iopf_region_set_first(set, &it); rg;
	     rg = iopf_region_set_next(&it)) {
		int r = iopf_resolve_unmap_region(s->backend, rg, &d->counters);

		if (r < 0 && ret == 0)
			ret = r;
	}
	return ret;
}

/*
 * A drain's turn: write what waits, then read (at most IOPF_TURN_READS reads
 * this turn, IOPF_DRAIN_MAX_READS in all) answering everything INVALID
 * RETIRED, one write per read. A backend that cannot go on without waiting
 * (-EBUSY, or -ETIMEDOUT: its lock stayed taken) keeps what it has and is
 * asked again next round, so a source that goes never holds its worker up,
 * for IOPF_DRAIN_BUSY_NS. A write that fails hard, or that long busy, ends
 * the drain: what it held is lost (counted; the fd's close leaves it to the
 * kernel), and nothing more is read.
 * Return: true when done, false when the source is due another turn.
 */
static bool drain_turn(struct iopf_source *s)
{
	int r = flush(s);

	for (unsigned reads = 0; r == 0; reads++) {
		struct iopf_group g;
		size_t pos = 0;
		uint64_t t_read;
		ssize_t got;

		if (s->drain_reads >= IOPF_DRAIN_MAX_READS)
			return true;
		if (reads == IOPF_TURN_READS)
			return false;
		got = iopf_fault_read(&s->buf, s->backend, &s->rb, s->held_room, false);
		if (got <= 0) {
			r = (int)got;
			break;
		}
		s->drain_reads++;
		s->drain_busy_since = 0;
		journal_read(s);
		t_read = mono_ns();
		while (iopf_fault_next_group(s->buf.recs, (size_t)got, &pos, &g)) {
			ctr_add(&s->unrouted.faults, g.n);
			answer(s, g.cookie, IOPF_REASON_RETIRED, &s->unrouted, &s->unrouted_latency,
			       t_read);
		}
		r = flush(s);
	}
	/* busy, or its lock timed out (the simulator's, after 20 ms busy): ask again */
	if (r == -EBUSY || r == -ETIMEDOUT) {
		uint64_t now = mono_ns();

		if (!s->drain_busy_since)
			s->drain_busy_since = now;
		if (now - s->drain_busy_since < IOPF_DRAIN_BUSY_NS)
			return false;
	}
	/* a read that came back empty or failed: done; a write that failed (or busy too long): lost
	 */
	if (r < 0 && s->rb.n)
		(void)iopf_response_discard(&s->rb);
	return true;
}

static void finish_source(struct iopf_worker *w, struct iopf_source *s)
{
	s->backend = iopf_backend_close(s->backend);
	iopf_mailbox_post(w->cfg.done, &s->rm_cmd.node);
}

/*
 * The poll's, the timer's and the cancels' CQEs name the source: free it after
 * the last, and after its drain.
 */
static void maybe_finish(struct iopf_worker *w, struct iopf_source *s)
{
	if (!s->retiring || s->draining || s->poll_armed || s->timer_armed || s->cancels_pending)
		return;
	s->retiring = false;
	w->n_retiring--;
	finish_source(w, s);
}

/* A turn of @s's drain: once done, it may finish; until then a turn every round. */
static void drain_step(struct iopf_worker *w, struct iopf_source *s)
{
	if (!drain_turn(s)) {
		queue_turn(&w->again, s, false);
		return;
	}
	s->draining = false;
	maybe_finish(w, s);
}

static void retire_source(struct iopf_worker *w, struct iopf_source *s)
{
	struct iopf_domain *d;
	int r;

	retire_held(w, s, NULL);
	cds_list_for_each_entry(d, &s->domains, snode)
	{
		r = unmap_domain(s, d);
		if (r < 0 && s->rm_cmd.error == 0)
			s->rm_cmd.error = r;
	}
	cds_list_del(&s->wnode);
	w->n_sources--;
	unready(s);
	/* A pending poll or timer names this source: finish when its CQEs are reaped. */
	if (s->poll_armed)
		cancel_wait(w, s, 0);
	if (s->timer_armed)
		cancel_wait(w, s, TAG_TIMER);
	s->retiring = true;
	w->n_retiring++;
	s->draining = true;
	drain_step(w, s);
}

static void retire_domain(struct iopf_worker *w, struct iopf_domain *d)
{
	struct iopf_source *s = d->source;

	retire_held(w, s, d);
	/* responses waiting for a write outlive the domain: count them on the source */
	iopf_response_rehome(&s->rb, &d->counters, &s->unrouted);
	d->rm_cmd.error = unmap_domain(s, d);
	iopf_mailbox_post(w->cfg.done, &d->rm_cmd.node);
}

static void retire_region(struct iopf_worker *w, struct iopf_eregion *er)
{
	struct iopf_domain *d = er->domain;

	er->rm_cmd.error = iopf_resolve_unmap_region(d->source->backend, er->r, &d->counters);
	iopf_mailbox_post(w->cfg.done, &er->rm_cmd.node);
}

static void run_commands(struct iopf_worker *w)
{
	CDS_LIST_HEAD(todo);
	struct iopf_cmd *c, *tmp;

	iopf_mailbox_take_all(&w->cmds, &todo);

	cds_list_for_each_entry_safe(c, tmp, &todo, node)
	{
		cds_list_del(&c->node);
		switch (c->type) {
		case IOPF_CMD_ADD_SOURCE: {
			struct iopf_source *s = c->obj;

			cds_list_add_tail(&s->wnode, &w->sources);
			w->n_sources++;
			if (s->recover)
				recover_source(w, s);
			arm_source(w, s);
			break;
		}
		case IOPF_CMD_REMOVE_SOURCE:
			retire_source(w, c->obj);
			break;
		case IOPF_CMD_REMOVE_DOMAIN:
			retire_domain(w, c->obj);
			break;
		case IOPF_CMD_REMOVE_REGION:
			retire_region(w, c->obj);
			break;
		case IOPF_CMD_STOP:
			w->stopping = true;
			break;
		case IOPF_CMD_PING:
			/* the node is off every list now: the control thread may queue it again */
			__atomic_store_n(&w->pong, __atomic_load_n(&w->ping_sent, __ATOMIC_RELAXED),
					 __ATOMIC_RELEASE);
			break;
		}
	}
}

/* A completion of @s's poll: the source is due a turn (or the poll failed). */
static void poll_done(struct iopf_worker *w, struct iopf_source *s, int res, unsigned cqe_flags)
{
	/* one-shot, or a multishot poll the kernel ended (an error, no CQ room) */
	if (!(cqe_flags & IORING_CQE_F_MORE))
		s->poll_armed = false;
	if (s->retiring) {
		maybe_finish(w, s);
		return;
	}
	if (res == -EINVAL && s->poll_multishot) {
		/* before 5.13: no multishot poll, one-shot for every source from now on */
		w->multishot = false;
		arm_source(w, s);
		return;
	}
	if (res < 0) {
		/* The poll itself failed: like a read, retried on the timer. */
		read_failed(s);
		arm_source(w, s);
		return;
	}
	if (s->backoff_ns)
		return; /* a multishot poll's wakeup in backoff: the timer's turn reads */
	if (res & POLLIN)
		make_ready(w, s, !w->multishot);
	else
		arm_source(w, s);
}

/*
 * One turn for every source due one when the round began: first those that
 * woke since the last round, in order, then those whose last turn ended at
 * its bound (TURN_BOUND, TURN_READABLE: they may have more), which go on
 * w->again for the next round. Round robin, and a source that wakes beside
 * busy ones waits at most the rest of the round it woke in: one bounded turn
 * of each busy source. One-shot polls stand in for the lists: its turn done,
 * the source is armed again, and a still-readable fd completes at once.
 */
static void serve_ready(struct iopf_worker *w)
{
	CDS_LIST_HEAD(round);
	struct iopf_source *s, *tmp;

	/* round = ready, then again */
	cds_list_splice(&w->again, &round);
	cds_list_splice(&w->ready, &round);
	CDS_INIT_LIST_HEAD(&w->again);
	CDS_INIT_LIST_HEAD(&w->ready);
	cds_list_for_each_entry_safe(s, tmp, &round, ready_node)
	{
		enum turn_end end;

		cds_list_del(&s->ready_node);
		s->on_ready = false;
		if (s->draining) {
			drain_step(w, s);
			continue;
		}
		end = service_source(w, s, s->ready_polled);
		/*
		 * Another turn next round: when more may be queued, which a multishot
		 * poll would not say again (a one-shot poll, armed again, fires on the
		 * level); and, whatever the poll, when a busy backend kept answers
		 * waiting, which no poll says.
		 */
		if ((end != TURN_DONE && w->multishot && s->poll_armed) ||
		    (s->rb.n && !s->backoff_ns))
			queue_turn(&w->again, s, end == TURN_READABLE);
		arm_source(w, s);
	}
}

static void reap(struct iopf_worker *w, bool *ret_cmds)
{
	struct io_uring_cqe *cqe;

	while (io_uring_peek_cqe(&w->ring, &cqe) == 0) {
		uint64_t tag = io_uring_cqe_get_data64(cqe);
		unsigned cqe_flags = cqe->flags;
		int res = cqe->res;
		struct iopf_source *s;

		io_uring_cqe_seen(&w->ring, cqe);
		if (tag == TAG_CMD) {
			w->cmd_armed = false;
			*ret_cmds = true;
			continue;
		}
		s = (struct iopf_source *)(uintptr_t)(tag & ~TAG_KINDS);
		if (tag & TAG_CANCEL) {
			uint64_t kind = tag & TAG_TIMER;

			s->cancels_pending--;
			/* Still armed after a failed cancel: ask again. */
			if (res < 0 && res != -ENOENT && (kind ? s->timer_armed : s->poll_armed))
				cancel_wait(w, s, kind);
			else
				maybe_finish(w, s);
			continue;
		}
		if (tag & TAG_TIMER) {
			s->timer_armed = false;
			if (s->retiring)
				maybe_finish(w, s);
			else {
				/* -ETIME: the backoff is over; retry what failed */
				ctr_add(&s->retries, 1);
				make_ready(w, s, false);
			}
			continue;
		}
		poll_done(w, s, res, cqe_flags);
	}
}

static int ring_init(struct iopf_worker *w)
{
	/* Best first; each fallback names the kernel that retires it. */
	static const unsigned flags[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, /* 6.1 */
		IORING_SETUP_SINGLE_ISSUER,				 /* 6.0 */
		0,
	};
	int r = -EINVAL;

	for (size_t i = 0; i < ARRAY_SIZE(flags) && r == -EINVAL; i++) {
		struct io_uring_params p = {
			.flags = flags[i] | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP, /* 5.6 */
			.cq_entries = RING_CQ_ENTRIES,
		};

		r = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
	}
	return r;
}

/*
 * Busy polling (BusyPoll=): with nothing left to do, keep entering the ring
 * without sleeping for @ns, then sleep. Each enter runs the ring's deferred
 * completions (IORING_SETUP_DEFER_TASKRUN posts them only in an enter), so a
 * wakeup that comes within the window is seen without a sleep and its wakeup.
 */
static int spin_then_wait(struct iopf_worker *w, uint64_t ns)
{
	uint64_t end = mono_ns() + ns;
	int r;

	do {
		r = io_uring_submit_and_get_events(&w->ring);
		if (r < 0 && r != -EINTR && r != -EBUSY && r != -EAGAIN)
			return r;
		if (io_uring_cq_ready(&w->ring))
			return r;
	} while (mono_ns() < end);
	return io_uring_submit_and_wait(&w->ring, 1);
}

static void *worker_main(void *arg)
{
	struct iopf_worker *w = arg;
	int r;

	rcu_register_thread();
	r = ring_init(w);
	w->start_error = r;
	sem_post(&w->started);
	if (r < 0) {
		rcu_unregister_thread();
		return NULL;
	}

	while (!w->stopping || w->n_retiring > 0) {
		bool cmds = false;

		if (!w->cmd_armed && !w->stopping) {
			arm_poll(w, iopf_mailbox_fd(&w->cmds), TAG_CMD, false);
			w->cmd_armed = true;
		}

		/* one enter a round: sources still due a turn must not wait for a completion */
		if (cds_list_empty(&w->ready) && cds_list_empty(&w->again)) {
			uint64_t spin = __atomic_load_n(w->cfg.busy_poll_ns, __ATOMIC_RELAXED);

			r = spin ? spin_then_wait(w, spin) : io_uring_submit_and_wait(&w->ring, 1);
		} else
			r = io_uring_submit_and_get_events(&w->ring);
		if (r < 0 && r != -EINTR && r != -EBUSY && r != -EAGAIN)
			break; /* the ring is unusable; the engine sees the thread exit */
		reap(w, &cmds);
		serve_ready(w);
		if (cmds)
			run_commands(w);
	}

	io_uring_queue_exit(&w->ring);
	rcu_unregister_thread();
	return NULL;
}

int iopf_worker_start(const struct iopf_worker_config *cfg, struct iopf_worker **ret)
{
	struct iopf_worker *w;
	int r;

	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->cfg = *cfg;
	r = iopf_mailbox_init(&w->cmds);
	if (r < 0) {
		free(w);
		return r;
	}
	CDS_INIT_LIST_HEAD(&w->sources);
	CDS_INIT_LIST_HEAD(&w->again);
	CDS_INIT_LIST_HEAD(&w->ready);
	w->multishot = true; /* until a poll says otherwise (poll_done()) */
	sem_init(&w->started, 0, 0);
	r = -pthread_create(&w->thread, NULL, worker_main, w);
	if (r < 0)
		goto fail;
	while (sem_wait(&w->started) < 0)
		; /* EINTR */
	if (w->start_error < 0) {
		r = w->start_error;
		(void)pthread_join(w->thread, NULL);
		goto fail;
	}
	*ret = w;
	return 0;
fail:
	iopf_mailbox_fini(&w->cmds);
	sem_destroy(&w->started);
	free(w);
	return r;
}

void iopf_worker_send(struct iopf_worker *w, struct iopf_cmd *c)
{
	iopf_mailbox_post(&w->cmds, &c->node);
}

bool iopf_worker_ping(struct iopf_worker *w)
{
	uint64_t sent = __atomic_load_n(&w->ping_sent, __ATOMIC_RELAXED);

	if (__atomic_load_n(&w->pong, __ATOMIC_ACQUIRE) != sent)
		return false;
	__atomic_store_n(&w->ping_sent, sent + 1, __ATOMIC_RELAXED);
	w->ping_cmd = (struct iopf_cmd){.type = IOPF_CMD_PING};
	iopf_worker_send(w, &w->ping_cmd);
	return true;
}

struct iopf_worker *iopf_worker_stop(struct iopf_worker *w)
{
	if (!w)
		return NULL;
	w->stop_cmd.type = IOPF_CMD_STOP;
	iopf_worker_send(w, &w->stop_cmd);
	(void)pthread_join(w->thread, NULL);
	iopf_mailbox_fini(&w->cmds);
	sem_destroy(&w->started);
	free(w);
	return NULL;
}
