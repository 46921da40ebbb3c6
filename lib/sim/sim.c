/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The simulator: an iommufd fault object and IOAS in a sealed memfd.
 *
 * Layout of the memfd (all offsets derived from the header's geometry, each
 * area 64-byte aligned):
 *
 *   header | mutex | pend ring | done ring | free stack | cookie->slot |
 *   cookie bitmap | group slots | map extents | page hash
 *
 * A group lives in one slot for its whole life:
 *   FREE -inject-> QUEUED -read-> DELIVERED -write/detach-> ANSWERED -harvest-> FREE
 * (detach also moves QUEUED straight to ANSWERED). QUEUED slots are listed in
 * the pend ring in FIFO order, ANSWERED ones in the done ring in answer order.
 * A cookie is a bit in the bitmap plus the slot it names; allocating the
 * lowest clear bit gives the kernel's "lowest free id from 1".
 *
 * The IOMMU is a table of map extents (one per map call) and an open-addressed
 * hash of IO pages -> extent, so EEXIST and "unmap covers whole maps" are
 * checked page by page without walking every extent.
 *
 * Both sides hold one process-shared robust mutex for every operation. The
 * device side rings the doorbell under it; the daemon's read that empties the
 * queue drains it under it too, so the level matches the queue whenever the
 * lock is free. The daemon side validates the geometry once at open, keeps a
 * private copy, and never trusts an index it reads from the memfd again.
 *
 * The daemon never writes to the doorbell. The tenant owns the eventfd too:
 * it can clear O_NONBLOCK on the shared file and drive the counter to its
 * maximum, and an eventfd write then blocks (pwritev2(RWF_NOWAIT) is not
 * supported on eventfds, and a poll for POLLOUT first races with the
 * tenant's own writes). Reads can be made non-blocking whatever the file's
 * flags (preadv2(RWF_NOWAIT)), so the daemon only drains. Where the level
 * could be down with groups queued (a tenant that read its own doorbell, or
 * a daemon before this one killed between its drain and its re-ring), the
 * daemon asks the device side to ring (ring_wanted), which it does at its
 * next locked call. Nor does the daemon wait long for the lock: a tenant may
 * hold it forever, and a worker serves others (see daemon_lock()).
 *
 * Limit of that trust: the mutex itself is glibc's. A robust mutex carries
 * the owner's robust-list pointers, which glibc follows on unlock, so a tenant
 * that rewrites them while the daemon holds the lock can make the daemon
 * write to an address of its choosing. That is why simulator sources are
 * refused unless the daemon runs with --allow-simulator (test use only).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "iopf/iopf.h"
#include "sim.h"
#include "util.h"
#include "time-util.h"
#include "fd-util.h"

#define SIM_MAGIC      UINT64_C(0x316d69732d66706f) /* "opf-sim1", little endian */
#define SIM_VERSION    1u
#define SIM_MAX_SIZE   (UINT64_C(1) << 31)
#define SIM_ALIGN      64u
#define SIM_PAGE_SHIFT 12
#define SIM_REC_SIZE   sizeof(struct iommu_hwpt_pgfault)
#define SIM_RESP_SIZE  sizeof(struct iommu_hwpt_page_response)
/* A page is never stored further than this from its hash home: bounds every probe. */
#define SIM_MAX_PROBE		    1024u
#define SIM_DEFAULT_LOCK_TIMEOUT_NS (200 * UINT64_C(1000000))
/*
 * What the daemon side waits for a lock the device side holds: long enough
 * for the device side's longest honest hold (a batch, or a preemption on a
 * busy machine), short enough that a tenant sitting on its lock costs a
 * worker little (a timed-out read puts its source in backoff).
 */
#define SIM_DAEMON_LOCK_WAIT_NS (5 * UINT64_C(1000000))
/*
 * How long reads and writes that find the lock taken come back at once
 * (-EBUSY, daemon_try_lock()) before they fail as a timed-out lock does:
 * longer than a scheduler's slice, so that a device side preempted while it
 * holds the lock is waited out (without sleeping), not backed off from.
 */
#define SIM_BUSY_NS (20 * UINT64_C(1000000))
/*
 * How long a read or a write spins on a lock found taken, when it was free at
 * the last try, before it fails -EBUSY: longer than the device side's honest
 * holds (an inject or a harvest, microseconds), so that those cost the worker
 * a short spin and the source not a whole round behind every other source's
 * turn. Only then: a tenant that keeps its lock, or takes it between the
 * worker's tries, costs the worker one such spin per time it let go.
 */
#define SIM_SPIN_NS (20 * UINT64_C(1000))
/* How long the device side spins on its lock before it sleeps on it (sim_lock()). */
#define SIM_DEVICE_SPIN_NS (50 * UINT64_C(1000))

#define READ_ONCE(x)	 (*(const volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))

_Static_assert(IOPF_SIM_PAGE_SIZE == IOPF_PAGE_SIZE, "the sim maps in daemon pages");
_Static_assert(IOMMUFD_PAGE_RESP_SUCCESS == 0 && IOMMUFD_PAGE_RESP_INVALID == 1, "response codes");

enum sim_slot_state {
	SIM_SLOT_FREE = 0,
	SIM_SLOT_QUEUED,
	SIM_SLOT_DELIVERED,
	SIM_SLOT_ANSWERED,
};

struct sim_slot {
	uint32_t state;
	uint32_t n;	 /* records */
	uint32_t cookie; /* while DELIVERED; kept once ANSWERED */
	uint32_t code;	 /* once ANSWERED */
	uint32_t dev_id; /* attach key, from the last record */
	uint32_t pasid;	 /* IOPF_PASID_NONE without PASID_VALID */
	uint32_t by_kernel;
	uint32_t _pad;
	uint64_t tag;
	uint64_t seq;
	uint64_t t_inject;
	uint64_t t_answer;
	struct iommu_hwpt_pgfault rec[]; /* max_group of them */
};

struct sim_extent {
	uint32_t ioas; /* index + 1; 0 = free */
	uint32_t prot;
	uint64_t iova;
	uint64_t length;
	uint64_t st_dev;
	uint64_t st_ino;
	uint64_t offset;
	uint32_t next_free; /* index + 1 */
	uint32_t _pad;
};

struct sim_page {
	uint64_t key; /* ioas index << 52 | iova >> 12 */
	uint32_t ext; /* index + 1; 0 = empty bucket */
	uint32_t _pad;
};

/* Geometry and pointers into one mapping; private to each process. */
struct sim_map {
	void *base;
	size_t size;
	struct iopf_sim_shm_hdr *hdr;
	pthread_mutex_t *mutex;
	uint32_t *pend, *done, *free_stack, *cookie_slot;
	uint64_t *cookie_bits;
	uint8_t *slots;
	struct sim_extent *ext;
	struct sim_page *pages;
	uint32_t depth, mask, max_group, slot_size, n_ioas, iommu_pages, buckets, bucket_bits, maps,
		cookie_words;
	int efd; /* the doorbell; not owned */
};

struct iopf_sim {
	struct sim_map m;
	int memfd;
	int efd;
};

struct sim_backend {
	struct sim_map m;
	uint32_t ioas_idx;
	bool emptied;	     /* the last read delivered the queue's last group and drained */
	bool edge;	     /* the reader wakes on every ring, not the level: no drain */
	bool lock_timed_out; /* the last lock timed out: only try, until one works */
	uint64_t busy_since; /* reads and writes have found the lock taken since (0: not) */
};

static uint64_t lock_timeout_ns = SIM_DEFAULT_LOCK_TIMEOUT_NS;

void __iopf_sim_set_lock_timeout(uint64_t ns)
{
	lock_timeout_ns = ns ? ns : SIM_DEFAULT_LOCK_TIMEOUT_NS;
}

/* ---- geometry ---- */

struct sim_geometry {
	uint32_t depth, max_group, n_ioas, iommu_pages, buckets, maps;
	uint32_t slot_size;
	size_t off_mutex, off_pend, off_done, off_free, off_cslot, off_cbits, off_slots, off_ext,
		off_pages, total;
};

static size_t align_up(size_t x)
{
	return ALIGN_UP(x, (size_t)SIM_ALIGN);
}

/* Check limits and lay the areas out; every input is bounded, so nothing overflows. */
static int geometry_compute(struct sim_geometry *g)
{
	size_t off;

	if (!is_power_of_2(g->depth) || g->depth > IOPF_SIM_MAX_DEPTH)
		return -EINVAL;
	if (g->max_group < 1 || g->max_group > IOPF_SIM_MAX_GROUP)
		return -EINVAL;
	if (g->n_ioas < 1 || g->n_ioas > IOPF_SIM_MAX_IOAS)
		return -EINVAL;
	if (g->iommu_pages < 1 || g->iommu_pages > IOPF_SIM_MAX_PAGES)
		return -EINVAL;
	if (g->maps < 1 || g->maps > IOPF_SIM_MAX_MAPS)
		return -EINVAL;
	/* load factor <= 1/2 keeps linear probes short */
	if (!is_power_of_2(g->buckets) || g->buckets < 2 * (uint64_t)g->iommu_pages ||
	    g->buckets > 4 * (uint64_t)IOPF_SIM_MAX_PAGES)
		return -EINVAL;

	g->slot_size =
		ALIGN_UP((uint32_t)(sizeof(struct sim_slot) + g->max_group * SIM_REC_SIZE), 8u);
	off = align_up(sizeof(struct iopf_sim_shm_hdr));
	g->off_mutex = off;
	off = align_up(off + sizeof(pthread_mutex_t));
	g->off_pend = off;
	off = align_up(off + (size_t)g->depth * 4);
	g->off_done = off;
	off = align_up(off + (size_t)g->depth * 4);
	g->off_free = off;
	off = align_up(off + (size_t)g->depth * 4);
	g->off_cslot = off;
	off = align_up(off + (size_t)g->depth * 4);
	g->off_cbits = off;
	off = align_up(off + (size_t)(g->depth + 63) / 64 * 8);
	g->off_slots = off;
	off = align_up(off + (size_t)g->depth * g->slot_size);
	g->off_ext = off;
	off = align_up(off + (size_t)g->maps * sizeof(struct sim_extent));
	g->off_pages = off;
	off = align_up(off + (size_t)g->buckets * sizeof(struct sim_page));
	g->total = off;
	if (g->total > SIM_MAX_SIZE)
		return -EINVAL;
	return 0;
}

static void map_setup(struct sim_map *m, void *base, const struct sim_geometry *g, int efd)
{
	uint8_t *p = base;

	m->base = base;
	m->size = g->total;
	m->hdr = base;
	m->mutex = (pthread_mutex_t *)(p + g->off_mutex);
	m->pend = (uint32_t *)(p + g->off_pend);
	m->done = (uint32_t *)(p + g->off_done);
	m->free_stack = (uint32_t *)(p + g->off_free);
	m->cookie_slot = (uint32_t *)(p + g->off_cslot);
	m->cookie_bits = (uint64_t *)(p + g->off_cbits);
	m->slots = p + g->off_slots;
	m->ext = (struct sim_extent *)(p + g->off_ext);
	m->pages = (struct sim_page *)(p + g->off_pages);
	m->depth = g->depth;
	m->mask = g->depth - 1;
	m->max_group = g->max_group;
	m->slot_size = g->slot_size;
	m->n_ioas = g->n_ioas;
	m->iommu_pages = g->iommu_pages;
	m->buckets = g->buckets;
	m->bucket_bits = (uint32_t)__builtin_ctz(g->buckets);
	m->maps = g->maps;
	m->cookie_words = (g->depth + 63) / 64;
	m->efd = efd;
}

/*
 * Read the geometry out of a header we do not trust: each field once, then
 * recompute the layout and require it to match the file exactly.
 */
static int geometry_from_header(const void *base, size_t size, struct sim_geometry *ret)
{
	const struct iopf_sim_shm_hdr *h = base;
	struct sim_geometry g = {};

	if (size < sizeof(*h))
		return -EBADF;
	if (READ_ONCE(h->magic) != SIM_MAGIC || READ_ONCE(h->version) != SIM_VERSION ||
	    READ_ONCE(h->hdr_size) != sizeof(*h))
		return -EBADF;
	g.depth = READ_ONCE(h->queue_depth);
	g.max_group = READ_ONCE(h->max_group);
	g.n_ioas = READ_ONCE(h->n_ioas);
	g.iommu_pages = READ_ONCE(h->iommu_pages);
	g.buckets = READ_ONCE(h->page_buckets);
	g.maps = READ_ONCE(h->iommu_maps);
	if (geometry_compute(&g) < 0)
		return -EBADF;
	if (READ_ONCE(h->slot_size) != g.slot_size || READ_ONCE(h->total_size) != g.total ||
	    size != g.total)
		return -EBADF;
	*ret = g;
	return 0;
}

static struct sim_slot *slot_at(const struct sim_map *m, uint32_t idx)
{
	return (struct sim_slot *)(m->slots + (size_t)idx * m->slot_size);
}

/* ---- the lock ---- */

/*
 * A process died holding the lock, in the middle of a read or a write. The
 * kernel's fault queue cannot be seen half-way through either (a process
 * dies only between system calls), so neither may this one: a read that had
 * not advanced pend_head is undone (its groups are queued again, their
 * cookies freed), an answer that made it into the done FIFO is completed,
 * and the cookie bits and the delivered count are made to agree with the
 * slots. The dead reader's copies of undone groups carry cookies that are
 * free now: answering them is refused, as for any stale cookie.
 */
static void sim_repair(struct sim_map *m)
{
	struct iopf_sim_shm_hdr *h = m->hdr;
	uint32_t delivered = 0;

	if (h->pend_tail - h->pend_head <= m->depth)
		for (uint32_t pos = h->pend_head; pos != h->pend_tail; pos++) {
			uint32_t idx = m->pend[pos & m->mask];

			if (idx < m->depth && slot_at(m, idx)->state == SIM_SLOT_DELIVERED)
				slot_at(m, idx)->state = SIM_SLOT_QUEUED;
		}
	if (h->done_tail - h->done_head <= m->depth)
		for (uint32_t pos = h->done_head; pos != h->done_tail; pos++) {
			uint32_t idx = m->done[pos & m->mask];

			if (idx < m->depth && slot_at(m, idx)->state == SIM_SLOT_DELIVERED)
				slot_at(m, idx)->state = SIM_SLOT_ANSWERED;
		}
	for (uint32_t c = 1; c <= m->depth; c++) {
		uint64_t bit = UINT64_C(1) << ((c - 1) % 64);
		uint32_t idx = m->cookie_slot[c - 1];
		bool held = idx < m->depth && slot_at(m, idx)->state == SIM_SLOT_DELIVERED &&
			    slot_at(m, idx)->cookie == c;

		if ((m->cookie_bits[(c - 1) / 64] & bit) && !held)
			m->cookie_bits[(c - 1) / 64] &= ~bit;
	}
	for (uint32_t idx = 0; idx < m->depth; idx++)
		delivered += slot_at(m, idx)->state == SIM_SLOT_DELIVERED;
	h->n_delivered = delivered;
	h->cookie_hint = 0;
}

/* Take the lock, waiting at most @wait_ns (0: only try). */
static int sim_lock_within(struct sim_map *m, uint64_t wait_ns)
{
	struct timespec ts;
	uint64_t deadline;
	int r;

	r = pthread_mutex_trylock(m->mutex);
	if (r == EBUSY && !wait_ns)
		return -ETIMEDOUT;
	if (r == EBUSY) {
		deadline = mono_ns() + wait_ns;
		ts.tv_sec = (time_t)(deadline / UINT64_C(1000000000));
		ts.tv_nsec = (long)(deadline % UINT64_C(1000000000));
		r = pthread_mutex_clocklock(m->mutex, CLOCK_MONOTONIC, &ts);
	}
	if (r == 0)
		return 0;
	if (r == EOWNERDEAD) {
		/* The holder died mid-update: put the queue back as the kernel's would be. */
		sim_repair(m);
		(void)pthread_mutex_consistent(m->mutex);
		m->hdr->stats.owner_died++;
		return 0;
	}
	if (r == ETIMEDOUT)
		return -ETIMEDOUT;
	/* ENOTRECOVERABLE, or a mutex somebody scribbled on */
	return -EIO;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* Take the lock, spinning on it for @spin_ns, then waiting at most @wait_ns more. */
static int sim_lock_spin(struct sim_map *m, uint64_t spin_ns, uint64_t wait_ns)
{
	uint64_t until = 0, now;
	int r;

	while ((r = sim_lock_within(m, 0)) == -ETIMEDOUT && spin_ns) {
		now = mono_ns();
		if (!until)
			until = now + spin_ns;
		else if (now >= until)
			break;
		cpu_relax();
	}
	return r == -ETIMEDOUT && wait_ns ? sim_lock_within(m, wait_ns) : r;
}

/*
 * The device side's lock: spun on for SIM_DEVICE_SPIN_NS first, then a
 * bounded wait, whose bound tests can change. The daemon side holds it for a
 * read or an answer, microseconds (a kernel mutex, too, spins while its owner
 * runs before it sleeps): a load generator asleep here wakes late, on a
 * virtual CPU by its exit from halt, and every group it injects after is late.
 */
static int sim_lock(struct sim_map *m)
{
	return sim_lock_spin(m, SIM_DEVICE_SPIN_NS, lock_timeout_ns);
}

/*
 * The daemon side's lock. A tenant holding its lock forever must not stall
 * the worker its source shares with others: one short wait (a spin of
 * SIM_SPIN_NS first, which outlasts the device side's honest holds, so that
 * the worker does not sleep on those), and after a wait that timed out only
 * tries (no wait) until a lock succeeds again, so one
 * turn of a locked source (its maps and its answers after a read) costs at
 * most one wait. A read that times out fails (-ETIMEDOUT): the worker retries
 * the source on its backoff timer, not at once.
 */
static int daemon_lock(struct sim_backend *sb)
{
	int r = sb->lock_timed_out ? sim_lock_within(&sb->m, 0)
				   : sim_lock_spin(&sb->m, SIM_SPIN_NS, SIM_DAEMON_LOCK_WAIT_NS);

	sb->lock_timed_out = r == -ETIMEDOUT;
	if (r == 0)
		sb->busy_since = 0;
	return r;
}

/*
 * A read's or a write's lock, never slept for: the device side holds it for
 * each inject and harvest and may be preempted holding it, and a worker asleep
 * on one tenant's lock would stall every source it serves. A lock found taken
 * is spun on for SIM_SPIN_NS if the last try got it; still taken, they fail -EBUSY, having done
 * nothing (the worker serves its other sources and tries again next round);
 * taken for SIM_BUSY_NS, they fail as a timed-out lock does (-ETIMEDOUT: the
 * source backs off) and only try until one gets it.
 */
static int daemon_try_lock(struct sim_backend *sb)
{
	/* free at the last try: spin a while (after a timeout, only tries: below) */
	int r = !sb->busy_since && !sb->lock_timed_out ? sim_lock_spin(&sb->m, SIM_SPIN_NS, 0)
						       : sim_lock_within(&sb->m, 0);
	uint64_t now;

	if (r == 0) {
		sb->busy_since = 0;
		sb->lock_timed_out = false;
		return 0;
	}
	if (r != -ETIMEDOUT || sb->lock_timed_out)
		return r;
	now = mono_ns();
	if (!sb->busy_since)
		sb->busy_since = now;
	if (now - sb->busy_since < SIM_BUSY_NS)
		return -EBUSY;
	sb->lock_timed_out = true;
	return -ETIMEDOUT;
}

static void sim_unlock(struct sim_map *m)
{
	(void)pthread_mutex_unlock(m->mutex);
}

/* ---- doorbell (under the lock) ---- */

/* The device side only: the daemon never writes to the doorbell (see the top). */
static void doorbell_ring(struct sim_map *m)
{
	uint64_t one = 1;

	/* The device side's own eventfd: it is O_NONBLOCK unless the tenant changed that. */
	(void)!write(m->efd, &one, sizeof(one));
	m->hdr->stats.doorbells++;
}

/* Device side, under the lock: ring if the daemon asked for it. */
static void doorbell_ring_wanted(struct sim_map *m)
{
	if (!READ_ONCE(m->hdr->ring_wanted))
		return;
	m->hdr->ring_wanted = 0;
	if (READ_ONCE(m->hdr->pend_head) != READ_ONCE(m->hdr->pend_tail))
		doorbell_ring(m);
}

static void doorbell_drain(struct sim_map *m)
{
	uint64_t v;
	struct iovec iov = {.iov_base = &v, .iov_len = sizeof(v)};

	/* RWF_NOWAIT: the peer shares the file and may have cleared O_NONBLOCK on it. */
	(void)preadv2(m->efd, &iov, 1, -1, RWF_NOWAIT);
}

/* Whether the doorbell is up, without touching it. */
static bool doorbell_is_up(const struct sim_map *m)
{
	struct pollfd p = {.fd = m->efd, .events = POLLIN};

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* ---- cookies (under the lock) ---- */

static int cookie_alloc(struct sim_map *m, uint32_t *ret)
{
	uint32_t w = READ_ONCE(m->hdr->cookie_hint);

	if (w >= m->cookie_words)
		w = 0;
	for (; w < m->cookie_words; w++) {
		uint64_t word = READ_ONCE(m->cookie_bits[w]);
		uint32_t bit, c;

		if (word == UINT64_MAX)
			continue;
		bit = (uint32_t)__builtin_ctzll(~word);
		c = w * 64 + bit;
		/* a delivered group holds a slot, so depth cookies can never all be in use */
		if (c >= m->depth)
			break;
		m->cookie_bits[w] = word | (UINT64_C(1) << bit);
		m->hdr->cookie_hint = w;
		*ret = c + 1;
		return 0;
	}
	m->hdr->stats.corrupt++;
	return -EIO;
}

static void cookie_free(struct sim_map *m, uint32_t cookie)
{
	uint32_t w = (cookie - 1) / 64;

	m->cookie_bits[w] &= ~(UINT64_C(1) << ((cookie - 1) % 64));
	if (w < READ_ONCE(m->hdr->cookie_hint) || READ_ONCE(m->hdr->cookie_hint) >= m->cookie_words)
		m->hdr->cookie_hint = w;
}

/* The slot index of an outstanding cookie, or -EINVAL. */
static int cookie_lookup(struct sim_map *m, uint32_t cookie)
{
	struct sim_slot *slot;
	uint32_t idx;

	if (cookie < 1 || cookie > m->depth)
		return -EINVAL;
	if (!(READ_ONCE(m->cookie_bits[(cookie - 1) / 64]) & (UINT64_C(1) << ((cookie - 1) % 64))))
		return -EINVAL;
	idx = READ_ONCE(m->cookie_slot[cookie - 1]);
	if (idx >= m->depth)
		return -EINVAL;
	slot = slot_at(m, idx);
	if (READ_ONCE(slot->state) != SIM_SLOT_DELIVERED || READ_ONCE(slot->cookie) != cookie)
		return -EINVAL;
	return (int)idx;
}

/* ---- answers (under the lock) ---- */

static bool done_has_room(struct sim_map *m)
{
	return READ_ONCE(m->hdr->done_tail) - READ_ONCE(m->hdr->done_head) < m->depth;
}

static void answer(struct sim_map *m, uint32_t idx, uint32_t code, bool by_kernel, uint64_t now)
{
	struct sim_slot *slot = slot_at(m, idx);
	uint32_t tail = READ_ONCE(m->hdr->done_tail);

	/* in this order, so that sim_repair() can finish an answer cut short */
	slot->code = code;
	slot->by_kernel = by_kernel;
	slot->t_answer = now;
	m->done[tail & m->mask] = idx;
	WRITE_ONCE(m->hdr->done_tail, tail + 1);
	slot->state = SIM_SLOT_ANSWERED;
}

static void answers_published(struct sim_map *m)
{
	__atomic_add_fetch(&m->hdr->answer_seq, 1, __ATOMIC_SEQ_CST);
}

static void answers_wake(struct sim_map *m)
{
	if (__atomic_load_n(&m->hdr->answer_waiters, __ATOMIC_SEQ_CST))
		(void)syscall(SYS_futex, &m->hdr->answer_seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* ---- the daemon's fault fd ---- */

/* Groups whose slots sim_fault_read() warms before it locks. */
#define SIM_PREFETCH_GROUPS 64u

/*
 * The device side wrote the queued slots on another CPU: under the lock, the
 * loop below would miss on each in turn, and the device side waits for the
 * lock all that time. Ask for them first, all at once, outside it. A hint
 * only: the indices are bounded so no address leaves the mapping, and nothing
 * read here is used again (the locked loop re-reads and re-checks all of it).
 */
static void prefetch_queued(const struct sim_map *m, size_t max_groups)
{
	uint32_t head = __atomic_load_n(&m->hdr->pend_head, __ATOMIC_RELAXED);
	uint32_t k = __atomic_load_n(&m->hdr->pend_tail, __ATOMIC_RELAXED) - head;

	if (k > m->depth)
		return;
	if (k > max_groups)
		k = (uint32_t)max_groups;
	if (k > SIM_PREFETCH_GROUPS)
		k = SIM_PREFETCH_GROUPS;
	for (; k; k--, head++) {
		uint32_t idx = __atomic_load_n(&m->pend[head & m->mask], __ATOMIC_RELAXED);
		const struct sim_slot *slot;

		if (idx >= m->depth)
			continue;
		slot = slot_at(m, idx);
		__builtin_prefetch(slot, 1);	  /* state, cookie: written on delivery */
		__builtin_prefetch(slot->rec, 0); /* the first records: copied out */
	}
}

static ssize_t sim_fault_read(struct iopf_backend *b, void *buf, size_t len)
{
	struct sim_backend *sb = b->priv;
	struct sim_map *m = &sb->m;
	struct iopf_sim_shm_hdr *h = m->hdr;
	uint8_t *out = buf;
	uint32_t head0, head, tail;
	bool drain = false;
	size_t done = 0;
	ssize_t rc = 0;
	int r;

	if (len % SIM_REC_SIZE)
		return -ESPIPE;

	prefetch_queued(m, len / SIM_REC_SIZE);
	r = daemon_try_lock(sb);
	if (r < 0)
		return r; /* -EBUSY: next round; -ETIMEDOUT: locked, retried on the backoff */

	h->stats.reads++;
	head = head0 = READ_ONCE(h->pend_head);
	tail = READ_ONCE(h->pend_tail);
	if (tail - head > m->depth) {
		h->stats.corrupt++;
		rc = -EIO;
		goto out;
	}

	while (head != tail && done < len) {
		uint32_t idx = READ_ONCE(m->pend[head & m->mask]);
		struct sim_slot *slot;
		uint32_t n, cookie, i;
		struct iommu_hwpt_pgfault *rec;

		if (idx >= m->depth) {
			h->stats.corrupt++;
			head++;
			continue;
		}
		slot = slot_at(m, idx);
		n = READ_ONCE(slot->n);
		if (READ_ONCE(slot->state) != SIM_SLOT_QUEUED || n < 1 || n > m->max_group) {
			h->stats.corrupt++;
			head++;
			continue;
		}
		/* whole groups only; an error only when not even the first one fits */
		if ((size_t)n * SIM_REC_SIZE > len - done) {
			if (!done)
				rc = -EINVAL;
			break;
		}
		r = cookie_alloc(m, &cookie);
		if (r < 0) {
			rc = r;
			break;
		}
		m->cookie_slot[cookie - 1] = idx;
		rec = (struct iommu_hwpt_pgfault *)(out + done);
		/*
		 * The cookie last, record by record: a reader killed half-way leaves
		 * whole records behind it and, at most, one without its cookie (the
		 * kernel's copy is never seen half-done; this one is, by whoever
		 * reads the dead process's buffer).
		 */
		for (i = 0; i < n; i++) {
			memcpy(&rec[i], &slot->rec[i], offsetof(struct iommu_hwpt_pgfault, cookie));
			__atomic_store_n(&rec[i].cookie, cookie, __ATOMIC_RELEASE);
		}
		slot->cookie = cookie;
		slot->state = SIM_SLOT_DELIVERED;
		h->n_delivered++;
		h->stats.delivered_groups++;
		h->stats.delivered_records += n;
		done += (size_t)n * SIM_REC_SIZE;
		head++;
	}
	/*
	 * Emptied: bring the doorbell down, under the lock, so no inject (which
	 * rings under it) can come between the empty queue and the drain. A read
	 * that found the queue empty need not when the read just before it
	 * emptied it: only a ring could have put the doorbell up since, a ring
	 * comes with a group (and a detach that takes the group away drains
	 * again), so this read would not be empty. That is the second read of
	 * every turn (servers read until 0): a syscall saved per turn. Any other
	 * empty read drains, so a spurious ring by the tenant (it owns the
	 * eventfd too) costs one wakeup at most. The drain never blocks
	 * (RWF_NOWAIT), whatever the tenant did to the file's flags. A reader
	 * that wakes on every ring, not on the level (sim_set_edge()), needs no
	 * drain at all: the device side rings whenever a group lands on an
	 * empty queue, and a ring is a wakeup whatever the count.
	 */
	drain = !sb->edge && head == tail && (head != head0 || !sb->emptied);
	sb->emptied = drain && head != head0;
	WRITE_ONCE(h->pend_head, head);
	if (drain)
		doorbell_drain(m);
out:
	sim_unlock(m);
	return done ? (ssize_t)done : rc;
}

static ssize_t sim_fault_write(struct iopf_backend *b, const void *buf, size_t len)
{
	struct sim_backend *sb = b->priv;
	struct sim_map *m = &sb->m;
	struct iopf_sim_shm_hdr *h = m->hdr;
	const uint8_t *in = buf;
	uint64_t now;
	size_t done = 0;
	ssize_t rc = 0;
	int r;

	if (len % SIM_RESP_SIZE)
		return -ESPIPE;
	if (!len)
		return 0;

	now = mono_ns();
	r = daemon_try_lock(sb);
	if (r < 0)
		return r; /* nothing written: as for a read */

	for (; done < len; done += SIM_RESP_SIZE) {
		struct iommu_hwpt_page_response resp;

		memcpy(&resp, in + done, sizeof(resp));
		if (resp.code != IOMMUFD_PAGE_RESP_SUCCESS &&
		    resp.code != IOMMUFD_PAGE_RESP_INVALID) {
			h->stats.bad_code++;
			rc = -EINVAL;
			break;
		}
		r = cookie_lookup(m, resp.cookie);
		if (r < 0) {
			h->stats.bad_cookie++;
			rc = -EINVAL;
			break;
		}
		if (!done_has_room(m)) {
			h->stats.corrupt++;
			rc = -EIO;
			break;
		}
		/* answered first: cut short after it, the cookie bit is freed by sim_repair() */
		answer(m, (uint32_t)r, resp.code, false, now);
		cookie_free(m, resp.cookie);
		h->n_delivered--;
		h->stats.answers++;
		if (resp.code == IOMMUFD_PAGE_RESP_INVALID)
			h->stats.answers_invalid++;
	}
	if (done)
		answers_published(m);
	sim_unlock(m);
	if (done)
		answers_wake(m);
	return done ? (ssize_t)done : rc;
}

/* ---- the IOMMU (under the lock) ---- */

static uint64_t page_key(uint32_t ioas_idx, uint64_t iova)
{
	return (uint64_t)ioas_idx << 52 | iova >> SIM_PAGE_SHIFT;
}

static uint32_t page_home(const struct sim_map *m, uint64_t key)
{
	return (uint32_t)((key * UINT64_C(0x9e3779b97f4a7c15)) >> (64 - m->bucket_bits));
}

/* The bucket holding @key, or -ENOENT. */
static int64_t page_find(const struct sim_map *m, uint64_t key)
{
	uint32_t i = page_home(m, key), probe;
	uint32_t limit = m->buckets < SIM_MAX_PROBE ? m->buckets : SIM_MAX_PROBE;

	for (probe = 0; probe < limit; probe++, i = (i + 1) & (m->buckets - 1)) {
		const struct sim_page *p = &m->pages[i];

		if (!READ_ONCE(p->ext))
			return -ENOENT;
		if (READ_ONCE(p->key) == key)
			return i;
	}
	return -ENOENT;
}

static int page_insert(struct sim_map *m, uint64_t key, uint32_t ext_idx)
{
	uint32_t i = page_home(m, key), probe;
	uint32_t limit = m->buckets < SIM_MAX_PROBE ? m->buckets : SIM_MAX_PROBE;

	for (probe = 0; probe < limit; probe++, i = (i + 1) & (m->buckets - 1)) {
		struct sim_page *p = &m->pages[i];

		if (!READ_ONCE(p->ext)) {
			p->key = key;
			p->ext = ext_idx + 1;
			return 0;
		}
	}
	return -ENOMEM;
}

/* Backward-shift deletion: later entries of the probe run move up, no tombstones. */
static void page_remove_at(struct sim_map *m, uint32_t hole)
{
	uint32_t bmask = m->buckets - 1, j = hole, steps;

	for (steps = 0; steps < m->buckets; steps++) {
		struct sim_page *p;
		uint32_t home;

		j = (j + 1) & bmask;
		p = &m->pages[j];
		if (!READ_ONCE(p->ext))
			break;
		home = page_home(m, READ_ONCE(p->key));
		/* move p into the hole unless its home lies cyclically in (hole, j] */
		if (((j - home) & bmask) >= ((j - hole) & bmask)) {
			m->pages[hole] = *p;
			hole = j;
		}
	}
	m->pages[hole].ext = 0;
	m->pages[hole].key = 0;
}

static void page_remove(struct sim_map *m, uint64_t key)
{
	int64_t i = page_find(m, key);

	if (i >= 0)
		page_remove_at(m, (uint32_t)i);
}

static int ext_alloc(struct sim_map *m, uint32_t *ret)
{
	uint32_t head = READ_ONCE(m->hdr->ext_free);
	struct sim_extent *e;

	if (!head)
		return -ENOSPC;
	if (head > m->maps) {
		m->hdr->stats.corrupt++;
		return -ENOSPC;
	}
	e = &m->ext[head - 1];
	if (READ_ONCE(e->ioas)) {
		m->hdr->stats.corrupt++;
		return -ENOSPC;
	}
	m->hdr->ext_free = READ_ONCE(e->next_free);
	*ret = head - 1;
	return 0;
}

static void ext_release(struct sim_map *m, uint32_t idx)
{
	struct sim_extent *e = &m->ext[idx];

	memset(e, 0, sizeof(*e));
	e->next_free = READ_ONCE(m->hdr->ext_free);
	m->hdr->ext_free = idx + 1;
}

/* Remove an extent and its pages. */
static void ext_unmap(struct sim_map *m, uint32_t ioas_idx, uint32_t idx)
{
	struct sim_extent *e = &m->ext[idx];
	uint64_t iova = READ_ONCE(e->iova), npages = READ_ONCE(e->length) >> SIM_PAGE_SHIFT, i;
	uint32_t cur;

	/* a scribbled length only costs this tenant time: bound it by the capacity */
	if (npages > m->iommu_pages)
		npages = m->iommu_pages;
	for (i = 0; i < npages; i++) {
		uint64_t key = page_key(ioas_idx, iova + (i << SIM_PAGE_SHIFT));
		int64_t at = page_find(m, key);

		if (at >= 0 && READ_ONCE(m->pages[at].ext) == idx + 1)
			page_remove_at(m, (uint32_t)at);
	}
	cur = READ_ONCE(m->hdr->n_pages_mapped);
	m->hdr->n_pages_mapped = cur >= npages ? cur - (uint32_t)npages : 0;
	if (READ_ONCE(m->hdr->n_maps))
		m->hdr->n_maps--;
	ext_release(m, idx);
}

/* The extent of a bucket, or -ENOENT when the entry is inconsistent. */
static int64_t page_extent(struct sim_map *m, uint32_t ioas_idx, int64_t at)
{
	uint32_t e = READ_ONCE(m->pages[at].ext);

	if (e < 1 || e > m->maps || READ_ONCE(m->ext[e - 1].ioas) != ioas_idx + 1) {
		m->hdr->stats.corrupt++;
		return -ENOENT;
	}
	return e - 1;
}

static int iommu_map(struct sim_map *m, uint32_t ioas_idx, uint64_t iova, uint64_t length,
		     uint32_t prot, const struct stat *st, uint64_t offset)
{
	uint64_t npages = length >> SIM_PAGE_SHIFT, i;
	struct sim_extent *e;
	uint32_t idx;
	int r;

	for (i = 0; i < npages; i++)
		if (page_find(m, page_key(ioas_idx, iova + (i << SIM_PAGE_SHIFT))) >= 0) {
			m->hdr->stats.map_eexist++;
			return -EEXIST;
		}
	if (READ_ONCE(m->hdr->n_pages_mapped) + npages > m->iommu_pages)
		return -ENOMEM;
	r = ext_alloc(m, &idx);
	if (r < 0)
		return r;
	for (i = 0; i < npages; i++) {
		r = page_insert(m, page_key(ioas_idx, iova + (i << SIM_PAGE_SHIFT)), idx);
		if (r < 0) {
			while (i--)
				page_remove(m, page_key(ioas_idx, iova + (i << SIM_PAGE_SHIFT)));
			ext_release(m, idx);
			return r;
		}
	}
	e = &m->ext[idx];
	e->ioas = ioas_idx + 1;
	e->prot = prot;
	e->iova = iova;
	e->length = length;
	e->st_dev = (uint64_t)st->st_dev;
	e->st_ino = (uint64_t)st->st_ino;
	e->offset = offset;
	e->next_free = 0;
	m->hdr->n_pages_mapped += (uint32_t)npages;
	m->hdr->n_maps++;
	m->hdr->stats.maps++;
	return 0;
}

static int cmp_extent_iova(const void *a, const void *b, void *userdata)
{
	const struct sim_map *m = userdata;
	uint64_t x = READ_ONCE(m->ext[*(const uint32_t *)a].iova);
	uint64_t y = READ_ONCE(m->ext[*(const uint32_t *)b].iova);

	return x < y ? -1 : x > y;
}

/*
 * Like iopt_unmap_iova_range(): walk the maps intersecting [iova, last] in
 * IOVA order, unmapping each one the range covers whole; a map the range
 * splits stops the walk with -ENOENT (those before it stay unmapped), and a
 * range that unmapped nothing is -ENOENT too.
 */
static int iommu_unmap(struct sim_map *m, uint32_t ioas_idx, uint64_t iova, uint64_t length)
{
	uint64_t last = iova + length - 1, npages = length >> SIM_PAGE_SHIFT, unmapped = 0;
	_cleanup_free_ uint32_t *list = NULL;
	uint32_t n = 0, i;

	if (npages <= 4 * (uint64_t)m->iommu_pages) {
		/* few pages: walk them, hopping over whole maps */
		uint64_t pg = 0;

		while (pg < npages) {
			int64_t at =
				page_find(m, page_key(ioas_idx, iova + (pg << SIM_PAGE_SHIFT)));
			int64_t e;
			uint64_t eiova, elast, next;

			if (at < 0) {
				pg++;
				continue;
			}
			e = page_extent(m, ioas_idx, at);
			if (e < 0)
				return -ENOENT;
			eiova = READ_ONCE(m->ext[e].iova);
			elast = eiova + READ_ONCE(m->ext[e].length) - 1;
			if (eiova < iova || elast > last || elast < eiova)
				return -ENOENT;
			ext_unmap(m, ioas_idx, (uint32_t)e);
			unmapped++;
			/* wraps to npages when the map ends at the top of the address space */
			next = (elast + 1 - iova) >> SIM_PAGE_SHIFT;
			/* a scribbled extent must not send the walk backwards */
			pg = next > pg ? next : pg + 1;
		}
		return unmapped ? 0 : -ENOENT;
	}

	/* a huge range: scan the extent table instead */
	list = malloc(sizeof(*list) * m->maps);
	if (!list)
		return -ENOMEM;
	for (i = 0; i < m->maps; i++) {
		const struct sim_extent *e = &m->ext[i];
		uint64_t eiova = READ_ONCE(e->iova), elen = READ_ONCE(e->length);

		if (READ_ONCE(e->ioas) != ioas_idx + 1 || !elen)
			continue;
		if (eiova <= last && eiova + elen - 1 >= iova)
			list[n++] = i;
	}
	qsort_r(list, n, sizeof(*list), cmp_extent_iova, m);
	for (i = 0; i < n; i++) {
		const struct sim_extent *e = &m->ext[list[i]];
		uint64_t eiova = READ_ONCE(e->iova), elast = eiova + READ_ONCE(e->length) - 1;

		if (eiova < iova || elast > last)
			return -ENOENT;
		ext_unmap(m, ioas_idx, list[i]);
		unmapped++;
	}
	return unmapped ? 0 : -ENOENT;
}

static int sim_map(struct iopf_backend *b, const struct iopf_map_req *req)
{
	struct sim_backend *sb = b->priv;
	struct sim_map *m = &sb->m;
	struct stat st;
	int r;

	if (!req->length || !IS_ALIGNED(req->iova, IOPF_SIM_PAGE_SIZE) ||
	    !IS_ALIGNED(req->length, IOPF_SIM_PAGE_SIZE) ||
	    !IS_ALIGNED(req->offset, IOPF_SIM_PAGE_SIZE))
		return -EINVAL;
	if (req->iova + req->length - 1 < req->iova || req->offset + req->length < req->offset)
		return -EOVERFLOW;
	if (!req->prot ||
	    (req->prot & ~(uint32_t)(IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)))
		return -EINVAL;
	/* IOAS_MAP_FILE: the backing must be a file holding the whole range */
	if (fstat(req->fd, &st) < 0)
		return -EBADF;
	/* and an fd that grants access: the kernel's fget() refuses O_PATH fds (EBADF) */
	if (fd_check_access(req->fd, false, NULL) == -EACCES)
		return -EBADF;
	if (!S_ISREG(st.st_mode) || req->offset + req->length > (uint64_t)st.st_size)
		return -EINVAL;
	if ((req->length >> SIM_PAGE_SHIFT) > m->iommu_pages)
		return -ENOMEM;

	r = daemon_lock(sb);
	if (r < 0)
		return r;
	r = iommu_map(m, sb->ioas_idx, req->iova, req->length, req->prot, &st, req->offset);
	sim_unlock(m);
	return r;
}

static int sim_unmap(struct iopf_backend *b, uint64_t iova, uint64_t length)
{
	struct sim_backend *sb = b->priv;
	struct sim_map *m = &sb->m;
	int r;

	if (!length || !IS_ALIGNED(iova, IOPF_SIM_PAGE_SIZE) ||
	    !IS_ALIGNED(length, IOPF_SIM_PAGE_SIZE))
		return -EINVAL;
	if (iova + length - 1 < iova)
		return -EOVERFLOW;

	r = daemon_lock(sb);
	if (r < 0)
		return r;
	r = iommu_unmap(m, sb->ioas_idx, iova, length);
	m->hdr->stats.unmaps++;
	if (r < 0)
		m->hdr->stats.unmap_errors++;
	sim_unlock(m);
	return r;
}

static void sim_destroy(struct iopf_backend *b)
{
	struct sim_backend *sb = b->priv;

	if (!sb)
		return;
	if (sb->m.base) {
		/*
		 * The device side waits for this to know the daemon let go of the
		 * context. One short wait: a tenant sitting on its lock now keeps
		 * its own count up, and stalls nobody.
		 */
		if (sim_lock_within(&sb->m, SIM_DAEMON_LOCK_WAIT_NS) == 0) {
			if (READ_ONCE(sb->m.hdr->backends))
				sb->m.hdr->backends--;
			sim_unlock(&sb->m);
		}
		(void)munmap(sb->m.base, sb->m.size);
	}
	free(sb);
	b->priv = NULL;
}

/*
 * The doorbell's level is kept (drained on the read that empties the queue)
 * only for readers that wait on it. A reader that switches back may find it
 * up with nothing queued: its next empty read drains (emptied is false).
 */
static void sim_set_edge(struct iopf_backend *b, bool edge)
{
	struct sim_backend *sb = b->priv;

	sb->edge = edge;
	sb->emptied = false;
}

/* Groups queued, without the lock: a hint, as the doorbell's level is (prefetch_queued()). */
static bool sim_readable(struct iopf_backend *b)
{
	const struct iopf_sim_shm_hdr *h = ((struct sim_backend *)b->priv)->m.hdr;

	return __atomic_load_n(&h->pend_head, __ATOMIC_RELAXED) !=
	       __atomic_load_n(&h->pend_tail, __ATOMIC_RELAXED);
}

static const struct iopf_backend_ops sim_ops = {
	.name = "sim",
	.fault_read = sim_fault_read,
	.fault_write = sim_fault_write,
	.map = sim_map,
	.unmap = sim_unmap,
	.destroy = sim_destroy,
	.map_needs_uptr = false,
	.set_edge = sim_set_edge,
	.readable = sim_readable,
};

/*
 * Is @efd the doorbell of the context at @base? Any eventfd passes for
 * "anon_inode:[eventfd]", and every eventfd has the same inode (the shared anon
 * inode), so fstat() cannot tell them apart, nor can kcmp(2) across processes
 * without ptrace rights. The kernel numbers eventfds (fdinfo "eventfd-id:",
 * Linux 5.16 and later; an IDA, so unique among live eventfds): iopf_sim_new()
 * records its doorbell's number in the header, and the fd handed to us must
 * carry it. We hold the eventfd, so its number cannot be freed and reused
 * under us. The header is the tenant's to write: this catches a stray eventfd
 * (a wrong fd, a doorbell of another context), not a tenant that lies, which
 * gains nothing: it owns both fds and could ring its doorbell at will anyway.
 */
static int doorbell_check(const void *base, int efd)
{
	const struct iopf_sim_shm_hdr *h = base;
	uint32_t id;
	int r;

	r = fd_eventfd_id(efd, &id);
	if (r == -EOPNOTSUPP)
		return -EXDEV; /* no number to compare: refuse rather than guess */
	if (r < 0)
		return -EBADF;
	if (id == UINT32_MAX || READ_ONCE(h->doorbell_id) != id + 1)
		return -EXDEV;
	return 0;
}

int iopf_sim_backend_open(int fault_fd, int iommufd, uint32_t ioas_id, struct iopf_backend **ret)
{
	_cleanup_free_ struct iopf_backend *b = NULL;
	_cleanup_free_ struct sim_backend *sb = NULL;
	struct sim_geometry g;
	struct stat st;
	void *base;
	int seals, r;

	if (!fd_link_is(fault_fd, "anon_inode:[eventfd]") ||
	    !fd_link_is(iommufd, "/memfd:" IOPF_SIM_MEMFD_NAME " (deleted)"))
		return -EBADF;
	/* without these seals the tenant could truncate the file under our mapping (SIGBUS) */
	seals = fcntl(iommufd, F_GET_SEALS);
	if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
		return -EBADF;
	if (fstat(iommufd, &st) < 0)
		return negative_errno();
	if (st.st_size < (off_t)sizeof(struct iopf_sim_shm_hdr) ||
	    (uint64_t)st.st_size > SIM_MAX_SIZE)
		return -EBADF;

	b = calloc(1, sizeof(*b));
	sb = calloc(1, sizeof(*sb));
	if (!b || !sb)
		return -ENOMEM;

	base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, iommufd, 0);
	if (base == MAP_FAILED)
		return negative_errno() == -ENOMEM ? -ENOMEM : -EBADF;
	/*
	 * Map it all now, on the control thread, not page by page on first
	 * touch on the worker (iopf_sim_new() allocates it all). Only when the
	 * tenant's file has no hole: the daemon never allocates a tenant's pages
	 * for it (best effort: MADV_POPULATE_WRITE is 5.14).
	 */
	if (lseek(iommufd, 0, SEEK_HOLE) >= st.st_size)
		(void)madvise(base, (size_t)st.st_size, MADV_POPULATE_WRITE);
	r = geometry_from_header(base, (size_t)st.st_size, &g);
	if (r < 0) {
		(void)munmap(base, (size_t)st.st_size);
		return r;
	}
	if (ioas_id < 1 || ioas_id > g.n_ioas) {
		(void)munmap(base, (size_t)st.st_size);
		return -ENOENT;
	}
	r = doorbell_check(base, fault_fd);
	if (r < 0) {
		(void)munmap(base, (size_t)st.st_size);
		return r;
	}
	map_setup(&sb->m, base, &g, fault_fd);
	sb->ioas_idx = ioas_id - 1;
	r = sim_lock_within(&sb->m, SIM_DAEMON_LOCK_WAIT_NS);
	if (r < 0) {
		(void)munmap(base, (size_t)st.st_size);
		return r;
	}
	sb->m.hdr->backends++;
	/*
	 * The kernel's queue polls readable while it holds groups. Groups queued
	 * with the doorbell down (see the top): the device side rings for them,
	 * as the daemon may not.
	 */
	if (READ_ONCE(sb->m.hdr->pend_head) != READ_ONCE(sb->m.hdr->pend_tail) &&
	    !doorbell_is_up(&sb->m))
		sb->m.hdr->ring_wanted = 1;
	sim_unlock(&sb->m);

	b->ops = &sim_ops;
	b->fault_fd = fault_fd;
	b->iommufd = iommufd;
	b->ioas_id = ioas_id;
	b->poll_fd = fault_fd;
	b->priv = TAKE_PTR(sb);
	*ret = TAKE_PTR(b);
	return 0;
}

/* ---- the device side ---- */

static int shm_init(void *base, const struct sim_geometry *g)
{
	struct iopf_sim_shm_hdr *h = base;
	pthread_mutexattr_t attr;
	struct sim_map m;
	uint32_t i;
	int r;

	h->magic = SIM_MAGIC;
	h->version = SIM_VERSION;
	h->hdr_size = sizeof(*h);
	h->slot_size = g->slot_size;
	h->queue_depth = g->depth;
	h->max_group = g->max_group;
	h->n_ioas = g->n_ioas;
	h->iommu_pages = g->iommu_pages;
	h->page_buckets = g->buckets;
	h->iommu_maps = g->maps;
	h->total_size = g->total;

	map_setup(&m, base, g, -EBADF);
	/* slot 0 is popped first */
	for (i = 0; i < g->depth; i++)
		m.free_stack[i] = g->depth - 1 - i;
	h->free_top = g->depth;
	for (i = 0; i < g->maps; i++)
		m.ext[i].next_free = i + 1 < g->maps ? i + 2 : 0;
	h->ext_free = 1;

	r = pthread_mutexattr_init(&attr);
	if (r)
		return -r;
	r = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	if (!r)
		r = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	if (!r)
		r = pthread_mutex_init(m.mutex, &attr);
	(void)pthread_mutexattr_destroy(&attr);
	return -r;
}

int iopf_sim_new(const struct iopf_sim_config *cfg, struct iopf_sim **ret)
{
	static const struct iopf_sim_config defaults = {
		.queue_depth = 1024,
		.max_group = 16,
		.n_ioas = 1,
		.iommu_pages = 65536,
		.iommu_maps = 16384,
	};
	_cleanup_free_ struct iopf_sim *s = NULL;
	_cleanup_close_ int memfd = -EBADF, efd = -EBADF;
	struct sim_geometry g = {};
	uint32_t doorbell_id;
	void *base;
	uint64_t depth;
	int r;

	if (!cfg)
		cfg = &defaults;
	depth = cfg->queue_depth ? cfg->queue_depth : defaults.queue_depth;
	if (depth > IOPF_SIM_MAX_DEPTH)
		return -EINVAL;
	g.depth = 1;
	while (g.depth < depth)
		g.depth <<= 1;
	g.max_group = cfg->max_group ? cfg->max_group : defaults.max_group;
	g.n_ioas = cfg->n_ioas ? cfg->n_ioas : defaults.n_ioas;
	g.iommu_pages = cfg->iommu_pages ? cfg->iommu_pages : defaults.iommu_pages;
	g.maps = cfg->iommu_maps ? cfg->iommu_maps : defaults.iommu_maps;
	if (g.iommu_pages > IOPF_SIM_MAX_PAGES)
		return -EINVAL;
	g.buckets = 2;
	while (g.buckets < 2 * g.iommu_pages)
		g.buckets <<= 1;
	r = geometry_compute(&g);
	if (r < 0)
		return r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	memfd = memfd_create(IOPF_SIM_MEMFD_NAME, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (memfd < 0)
		return negative_errno();
	if (ftruncate(memfd, (off_t)g.total) < 0)
		return negative_errno();
	if (fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		return negative_errno();
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (efd < 0)
		return negative_errno();
	/* the daemon checks the doorbell it is handed against this (doorbell_check()) */
	r = fd_eventfd_id(efd, &doorbell_id);
	if (r < 0)
		return r;
	if (doorbell_id == UINT32_MAX)
		return -EOVERFLOW;
	/*
	 * Allocated up front, by the device side and charged to it: the IOMMU's
	 * page hash scatters a map's pages over the whole table, so a table
	 * filled on demand costs a page allocation per page mapped, on the
	 * daemon's worker, until it is all there (a source's first fault-around
	 * took 70 us). A device's IOMMU tables exist before it faults.
	 */
	base = mmap(NULL, g.total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, memfd, 0);
	if (base == MAP_FAILED)
		return negative_errno();
	r = shm_init(base, &g);
	if (r < 0) {
		(void)munmap(base, g.total);
		return r;
	}
	((struct iopf_sim_shm_hdr *)base)->doorbell_id = doorbell_id + 1;
	map_setup(&s->m, base, &g, efd);
	s->memfd = TAKE_FD(memfd);
	s->efd = TAKE_FD(efd);
	*ret = TAKE_PTR(s);
	return 0;
}

struct iopf_sim *iopf_sim_free(struct iopf_sim *s)
{
	if (!s)
		return NULL;
	if (s->m.base)
		(void)munmap(s->m.base, s->m.size);
	safe_close(s->memfd);
	safe_close(s->efd);
	free(s);
	return NULL;
}

int iopf_sim_fault_fd(const struct iopf_sim *s)
{
	return s->efd;
}

int iopf_sim_iommufd(const struct iopf_sim *s)
{
	return s->memfd;
}

uint32_t iopf_sim_ioas_id(const struct iopf_sim *s, unsigned idx)
{
	return idx < s->m.n_ioas ? idx + 1 : 0;
}

uint32_t iopf_sim_queue_depth(const struct iopf_sim *s)
{
	return s->m.depth;
}

uint32_t iopf_sim_max_group(const struct iopf_sim *s)
{
	return s->m.max_group;
}

void *__iopf_sim_shm(struct iopf_sim *s, size_t *ret_size)
{
	if (ret_size)
		*ret_size = s->m.size;
	return s->m.base;
}

/* Take a free slot and queue it (under the lock). Return: slot, or NULL when full. */
static struct sim_slot *slot_queue(struct sim_map *m, uint64_t tag, uint64_t now)
{
	struct iopf_sim_shm_hdr *h = m->hdr;
	uint32_t top = READ_ONCE(h->free_top), tail, idx;
	struct sim_slot *slot;

	if (!top || top > m->depth)
		return NULL;
	idx = READ_ONCE(m->free_stack[top - 1]);
	if (idx >= m->depth)
		return NULL;
	slot = slot_at(m, idx);
	if (READ_ONCE(slot->state) != SIM_SLOT_FREE)
		return NULL;
	h->free_top = top - 1;
	slot->state = SIM_SLOT_QUEUED;
	slot->cookie = 0;
	slot->code = 0;
	slot->by_kernel = 0;
	slot->tag = tag;
	slot->seq = ++h->inject_seq;
	slot->t_inject = now;
	slot->t_answer = 0;
	tail = READ_ONCE(h->pend_tail);
	m->pend[tail & m->mask] = idx;
	WRITE_ONCE(h->pend_tail, tail + 1);
	return slot;
}

static void slot_set_key(struct sim_slot *slot)
{
	const struct iommu_hwpt_pgfault *last = &slot->rec[slot->n - 1];

	slot->dev_id = last->dev_id;
	slot->pasid =
		(last->flags & IOMMU_PGFAULT_FLAGS_PASID_VALID) ? last->pasid : IOPF_PASID_NONE;
}

static bool queue_empty(const struct sim_map *m)
{
	return READ_ONCE(m->hdr->pend_head) == READ_ONCE(m->hdr->pend_tail);
}

int iopf_sim_inject(struct iopf_sim *s, const struct iopf_sim_group *g, unsigned n)
{
	struct sim_map *m = &s->m;
	uint64_t now = mono_ns();
	unsigned k;
	bool was_empty;
	int r, rc = 0;

	r = sim_lock(m);
	if (r < 0)
		return r;
	doorbell_ring_wanted(m);
	was_empty = queue_empty(m);
	for (k = 0; k < n; k++) {
		struct sim_slot *slot;
		uint32_t i, flags;

		if (g[k].n < 1 || g[k].n > m->max_group || !g[k].faults ||
		    (g[k].pasid != IOPF_PASID_NONE && g[k].pasid > IOPF_PASID_MAX)) {
			rc = -EINVAL;
			break;
		}
		slot = slot_queue(m, g[k].tag, now);
		if (!slot) {
			rc = -ENOSPC;
			break;
		}
		flags = g[k].pasid != IOPF_PASID_NONE ? IOMMU_PGFAULT_FLAGS_PASID_VALID : 0;
		slot->n = g[k].n;
		for (i = 0; i < g[k].n; i++) {
			slot->rec[i] = (struct iommu_hwpt_pgfault){
				.flags = flags |
					 (i + 1 == g[k].n ? IOMMU_PGFAULT_FLAGS_LAST_PAGE : 0),
				.dev_id = g[k].dev_id,
				.pasid = g[k].pasid != IOPF_PASID_NONE ? g[k].pasid : 0,
				.grpid = g[k].grpid,
				.perm = g[k].faults[i].perm,
				.addr = g[k].faults[i].addr,
			};
		}
		slot_set_key(slot);
		m->hdr->stats.injected_groups++;
		m->hdr->stats.injected_records += g[k].n;
	}
	if (was_empty && !queue_empty(m))
		doorbell_ring(m);
	sim_unlock(m);
	return k ? (int)k : rc;
}

int iopf_sim_inject_raw(struct iopf_sim *s, const struct iommu_hwpt_pgfault *rec, unsigned n,
			uint64_t tag)
{
	struct sim_map *m = &s->m;
	struct sim_slot *slot;
	uint64_t now = mono_ns();
	bool was_empty;
	uint32_t i;
	int r;

	if (n < 1 || n > m->max_group || !rec)
		return -EINVAL;
	r = sim_lock(m);
	if (r < 0)
		return r;
	doorbell_ring_wanted(m);
	was_empty = queue_empty(m);
	slot = slot_queue(m, tag, now);
	if (!slot) {
		sim_unlock(m);
		return -ENOSPC;
	}
	slot->n = n;
	for (i = 0; i < n; i++) {
		slot->rec[i] = rec[i];
		slot->rec[i].cookie = 0;
	}
	slot_set_key(slot);
	m->hdr->stats.injected_groups++;
	m->hdr->stats.injected_records += n;
	if (was_empty)
		doorbell_ring(m);
	sim_unlock(m);
	return 0;
}

int iopf_sim_harvest(struct iopf_sim *s, struct iopf_sim_answer *out, unsigned max)
{
	struct sim_map *m = &s->m;
	struct iopf_sim_shm_hdr *h = m->hdr;
	uint32_t head, tail;
	unsigned k = 0;
	int r;

	r = sim_lock(m);
	if (r < 0)
		return r;
	doorbell_ring_wanted(m);
	head = READ_ONCE(h->done_head);
	tail = READ_ONCE(h->done_tail);
	if (tail - head > m->depth)
		head = tail - m->depth;
	for (; head != tail && k < max; head++) {
		uint32_t idx = READ_ONCE(m->done[head & m->mask]), top;
		struct sim_slot *slot;

		if (idx >= m->depth)
			continue;
		slot = slot_at(m, idx);
		if (slot->state != SIM_SLOT_ANSWERED)
			continue;
		out[k++] = (struct iopf_sim_answer){
			.tag = slot->tag,
			.seq = slot->seq,
			.t_inject = slot->t_inject,
			.t_answer = slot->t_answer,
			.dev_id = slot->dev_id,
			.pasid = slot->pasid,
			.n = slot->n,
			.code = slot->code,
			.cookie = slot->cookie,
			.by_kernel = slot->by_kernel,
		};
		slot->state = SIM_SLOT_FREE;
		top = READ_ONCE(h->free_top);
		if (top < m->depth) {
			m->free_stack[top] = idx;
			h->free_top = top + 1;
		}
	}
	WRITE_ONCE(h->done_head, head);
	sim_unlock(m);
	return (int)k;
}

int iopf_sim_wait(struct iopf_sim *s, uint64_t timeout_ns)
{
	struct iopf_sim_shm_hdr *h = s->m.hdr;
	struct timespec ts = {
		.tv_sec = (time_t)(timeout_ns / UINT64_C(1000000000)),
		.tv_nsec = (long)(timeout_ns % UINT64_C(1000000000)),
	};
	uint32_t seq;
	int ready;

	/* announce ourselves before sampling, so an answer after the sample wakes us */
	__atomic_add_fetch(&h->answer_waiters, 1, __ATOMIC_SEQ_CST);
	seq = __atomic_load_n(&h->answer_seq, __ATOMIC_SEQ_CST);
	ready = __atomic_load_n(&h->done_head, __ATOMIC_SEQ_CST) !=
		__atomic_load_n(&h->done_tail, __ATOMIC_SEQ_CST);
	if (!ready && timeout_ns)
		(void)syscall(SYS_futex, &h->answer_seq, FUTEX_WAIT, seq, &ts, NULL, 0);
	__atomic_sub_fetch(&h->answer_waiters, 1, __ATOMIC_SEQ_CST);
	return __atomic_load_n(&h->done_head, __ATOMIC_SEQ_CST) !=
	       __atomic_load_n(&h->done_tail, __ATOMIC_SEQ_CST);
}

static bool key_matches(const struct sim_slot *slot, uint32_t dev_id, uint32_t pasid)
{
	return slot->dev_id == dev_id && (pasid == IOPF_SIM_PASID_ANY || slot->pasid == pasid);
}

/* Is a group of the attach read and not answered? (under the lock) */
static bool delivered_matches(struct sim_map *m, uint32_t dev_id, uint32_t pasid)
{
	uint32_t w;

	for (w = 0; w < m->cookie_words; w++) {
		uint64_t word = m->cookie_bits[w];

		while (word) {
			uint32_t cookie = w * 64 + (uint32_t)__builtin_ctzll(word) + 1;
			int idx = cookie_lookup(m, cookie);

			word &= word - 1;
			if (idx >= 0 && key_matches(slot_at(m, (uint32_t)idx), dev_id, pasid))
				return true;
		}
	}
	return false;
}

static int detach(struct iopf_sim *s, uint32_t dev_id, uint32_t pasid, bool only_if_delivered)
{
	struct sim_map *m = &s->m;
	struct iopf_sim_shm_hdr *h = m->hdr;
	uint64_t now = mono_ns();
	uint32_t head, tail, keep, w;
	int r, n = 0;

	r = sim_lock(m);
	if (r < 0)
		return r;
	doorbell_ring_wanted(m);
	if (only_if_delivered && !delivered_matches(m, dev_id, pasid))
		goto out;

	/* queued groups: answered without ever being delivered, the rest keep their order */
	head = h->pend_head;
	tail = h->pend_tail;
	if (tail - head > m->depth)
		h->pend_head = head = tail - m->depth;
	for (keep = head; head != tail; head++) {
		uint32_t idx = m->pend[head & m->mask];
		struct sim_slot *slot;

		if (idx >= m->depth)
			continue;
		slot = slot_at(m, idx);
		if (slot->state == SIM_SLOT_QUEUED && key_matches(slot, dev_id, pasid) &&
		    done_has_room(m)) {
			answer(m, idx, IOMMUFD_PAGE_RESP_INVALID, true, now);
			h->stats.auto_invalid++;
			n++;
			continue;
		}
		m->pend[keep++ & m->mask] = idx;
	}
	h->pend_tail = keep;
	if (h->pend_head == keep)
		doorbell_drain(m);

	/* delivered groups: their cookies are freed, a later response to them is EINVAL */
	for (w = 0; w < m->cookie_words; w++) {
		uint64_t word = m->cookie_bits[w];

		while (word) {
			uint32_t bit = (uint32_t)__builtin_ctzll(word), cookie = w * 64 + bit + 1;
			int idx;

			word &= word - 1;
			idx = cookie_lookup(m, cookie);
			if (idx < 0 || !key_matches(slot_at(m, (uint32_t)idx), dev_id, pasid) ||
			    !done_has_room(m))
				continue;
			cookie_free(m, cookie);
			answer(m, (uint32_t)idx, IOMMUFD_PAGE_RESP_INVALID, true, now);
			h->n_delivered--;
			h->stats.auto_invalid++;
			n++;
		}
	}
	if (n)
		answers_published(m);
out:
	sim_unlock(m);
	if (n)
		answers_wake(m);
	return n;
}

int iopf_sim_detach(struct iopf_sim *s, uint32_t dev_id, uint32_t pasid)
{
	return detach(s, dev_id, pasid, false);
}

int iopf_sim_detach_delivered(struct iopf_sim *s, uint32_t dev_id, uint32_t pasid)
{
	return detach(s, dev_id, pasid, true);
}

int iopf_sim_lookup_many(struct iopf_sim *s, uint32_t ioas_id, const uint64_t *iova, size_t n,
			 struct iopf_sim_mapping *ret, int *ret_rc)
{
	struct sim_map *m = &s->m;
	int r;

	if (ioas_id < 1 || ioas_id > m->n_ioas) {
		for (size_t i = 0; i < n; i++)
			ret_rc[i] = -ENOENT;
		return 0;
	}
	r = sim_lock(m);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		uint64_t page = ALIGN_DOWN(iova[i], IOPF_SIM_PAGE_SIZE);
		int64_t at = page_find(m, page_key(ioas_id - 1, page));
		int64_t idx = at < 0 ? -ENOENT : page_extent(m, ioas_id - 1, at);
		const struct sim_extent *e;

		ret_rc[i] = idx < 0 ? -ENOENT : 0;
		if (idx < 0)
			continue;
		e = &m->ext[idx];
		ret[i] = (struct iopf_sim_mapping){
			.map_iova = e->iova,
			.map_length = e->length,
			.prot = e->prot,
			.st_dev = e->st_dev,
			.st_ino = e->st_ino,
			.offset = e->offset + (page - e->iova),
		};
	}
	sim_unlock(m);
	return 0;
}

int iopf_sim_lookup(struct iopf_sim *s, uint32_t ioas_id, uint64_t iova,
		    struct iopf_sim_mapping *ret)
{
	int rc, r = iopf_sim_lookup_many(s, ioas_id, &iova, 1, ret, &rc);

	return r < 0 ? r : rc;
}

uint32_t iopf_sim_peek_delivered(const struct iopf_sim *s)
{
	return __atomic_load_n(&s->m.hdr->n_delivered, __ATOMIC_RELAXED);
}

bool iopf_sim_peek_answered(const struct iopf_sim *s)
{
	return __atomic_load_n(&s->m.hdr->done_head, __ATOMIC_ACQUIRE) !=
	       __atomic_load_n(&s->m.hdr->done_tail, __ATOMIC_ACQUIRE);
}

int iopf_sim_get_counts(struct iopf_sim *s, struct iopf_sim_counts *ret)
{
	struct sim_map *m = &s->m;
	struct iopf_sim_shm_hdr *h = m->hdr;
	int r;

	r = sim_lock(m);
	if (r < 0)
		return r;
	*ret = (struct iopf_sim_counts){
		.queued = h->pend_tail - h->pend_head,
		.delivered = h->n_delivered,
		.answered = h->done_tail - h->done_head,
		.free = h->free_top,
		.pages_mapped = h->n_pages_mapped,
		.maps = h->n_maps,
		.backends = h->backends,
		.stats = h->stats,
	};
	sim_unlock(m);
	return 0;
}
