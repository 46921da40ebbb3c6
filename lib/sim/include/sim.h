/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The simulator: a fault queue and an IOMMU in shared memory that behave like
 * an iommufd fault object and an IOAS (see docs/kernel-uapi.md).
 *
 * A simulated "iommufd" is a sealed memfd named "iopf-sim"; its fault fd is
 * an eventfd used as a level doorbell (non-zero exactly while undelivered
 * groups exist), rung whenever a group lands on an empty queue. A reader that
 * wakes on every ring rather than on the level tells its backend so
 * (iopf_backend_set_edge()): the level is then not kept, and the backend's
 * readable() tells whether groups are queued. A tenant hands both to iopfd like real fds; the
 * daemon wraps them with iopf_sim_backend_open() (below). This header is the device side: create a
 * context, inject page requests, harvest answers, detach a device, and inspect the simulated IOMMU.
 *
 * The shared memory is written by both processes. The daemon side trusts
 * nothing in it beyond what it validated at open and bounds-checks every
 * index it reads; the device side does the same, more cheaply.
 */
#ifndef IOPF_SIM_H
#define IOPF_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uapi.h"

#define IOPF_SIM_MEMFD_NAME "iopf-sim"
#define IOPF_SIM_PAGE_SIZE  UINT64_C(4096)

/* iopf_sim_detach(): every attach of the device, with or without PASID. */
#define IOPF_SIM_PASID_ANY UINT32_C(0xfffffffe)

/* Limits of a context (checked again by the daemon on the shared header). */
#define IOPF_SIM_MAX_DEPTH (UINT32_C(1) << 20)
#define IOPF_SIM_MAX_GROUP 256u
#define IOPF_SIM_MAX_IOAS  64u
#define IOPF_SIM_MAX_PAGES (UINT32_C(1) << 22)
#define IOPF_SIM_MAX_MAPS  (UINT32_C(1) << 22)

struct iopf_sim;
struct iopf_backend;

/*
 * iopf_sim_backend_open() - the daemon side: wrap a tenant's doorbell eventfd and
 * context memfd as a fault source (an iopf_backend_open_fn, lib/dataplane/include/engine.h).
 * The eventfd must be the context's own doorbell: the one whose kernel id
 * (fdinfo "eventfd-id") the context recorded in its header when it was made.
 * Return: 0, -EBADF for fds that are not a simulator context, -EXDEV for an
 * eventfd that is not the context's doorbell, -ENOMEM.
 */
int iopf_sim_backend_open(int fault_fd, int iommufd, uint32_t ioas_id, struct iopf_backend **ret);

struct iopf_sim_config {
	uint32_t queue_depth; /* groups in flight (queued + read + answered, not harvested); 0: 1024
			       */
	uint32_t max_group;   /* records per group; 0: 16 */
	uint32_t n_ioas;      /* IOAS ids are 1..n_ioas; 0: 1 */
	uint32_t iommu_pages; /* IO pages the IOMMU can hold; 0: 65536 */
	uint32_t iommu_maps;  /* map calls (extents) it can hold; 0: 16384 */
};

/*
 * iopf_sim_new() - create a context: the sealed memfd and the doorbell eventfd.
 * queue_depth is rounded up to a power of two.
 * Return: 0, -EINVAL (a limit exceeded), -ENOMEM, or a memfd/eventfd/mmap error.
 */
int iopf_sim_new(const struct iopf_sim_config *cfg, struct iopf_sim **ret);
/* Unmap and close. NULL is fine. Returns NULL. */
struct iopf_sim *iopf_sim_free(struct iopf_sim *s);

/* The fds a tenant registers; owned by the context (dup them to hand them on). */
int iopf_sim_fault_fd(const struct iopf_sim *s);
int iopf_sim_iommufd(const struct iopf_sim *s);
/* The id of IOAS @idx (0-based, < n_ioas). */
uint32_t iopf_sim_ioas_id(const struct iopf_sim *s, unsigned idx);
/* The queue depth after rounding, and the records-per-group limit. */
uint32_t iopf_sim_queue_depth(const struct iopf_sim *s);
uint32_t iopf_sim_max_group(const struct iopf_sim *s);

/* One page request of a group. */
struct iopf_sim_fault {
	uint64_t addr;
	uint32_t perm; /* IOMMU_PGFAULT_PERM_* */
};

/* A page request group as a device raises it. */
struct iopf_sim_group {
	uint32_t dev_id;
	uint32_t pasid; /* IOPF_PASID_NONE: no PASID_VALID */
	uint32_t grpid;
	uint32_t n; /* records, 1..max_group; LAST_PAGE goes on the last */
	const struct iopf_sim_fault *faults;
	uint64_t tag; /* opaque, handed back by iopf_sim_harvest() */
};

/*
 * iopf_sim_inject() - queue groups, as the IOMMU driver would on page requests.
 * The doorbell is rung only when the queue goes from empty to non-empty.
 * Return: groups queued (fewer than @n when the queue fills); -ENOSPC when
 * none fit, -EINVAL for a malformed first group, -ETIMEDOUT/-EIO (lock).
 */
int iopf_sim_inject(struct iopf_sim *s, const struct iopf_sim_group *g, unsigned n);

/*
 * iopf_sim_inject_raw() - queue one group of records exactly as given (the
 * cookie field is ignored), for tests that need odd records: missing or
 * misplaced LAST_PAGE, unknown flag bits, mixed PASIDs. The attach key used by
 * detach is the last record's (dev_id, pasid if PASID_VALID).
 * Return: 0, -EINVAL (n out of range), -ENOSPC, -ETIMEDOUT/-EIO.
 */
int iopf_sim_inject_raw(struct iopf_sim *s, const struct iommu_hwpt_pgfault *rec, unsigned n,
			uint64_t tag);

/* An answered group. */
struct iopf_sim_answer {
	uint64_t tag;
	uint64_t seq;	   /* injection order, from 1 */
	uint64_t t_inject; /* CLOCK_MONOTONIC ns */
	uint64_t t_answer; /* CLOCK_MONOTONIC ns, when the response was written */
	uint32_t dev_id;
	uint32_t pasid;	 /* IOPF_PASID_NONE without PASID_VALID */
	uint32_t n;	 /* records */
	uint32_t code;	 /* IOMMUFD_PAGE_RESP_* */
	uint32_t cookie; /* the cookie it was answered under; 0 if never read */
	bool by_kernel;	 /* auto-answered INVALID by iopf_sim_detach() */
};

/* Take up to @max answered groups, oldest answer first. Return: count, or -errno (lock). */
int iopf_sim_harvest(struct iopf_sim *s, struct iopf_sim_answer *out, unsigned max);

/*
 * Wait until answers may be ready to harvest or @timeout_ns passes (a shared
 * futex the daemon side wakes). Return: 1 answers ready, 0 timed out.
 */
int iopf_sim_wait(struct iopf_sim *s, uint64_t timeout_ns);

/*
 * iopf_sim_detach() - the device's attach goes away (hwpt detached or replaced):
 * answer INVALID, as the kernel does, its queued groups (never delivered) and
 * its read-but-unanswered groups (their cookies become free at once).
 * @pasid: IOPF_PASID_NONE for the RID attach, IOPF_SIM_PASID_ANY for all.
 * Return: groups answered, or -errno (lock).
 */
int iopf_sim_detach(struct iopf_sim *s, uint32_t dev_id, uint32_t pasid);

/*
 * iopf_sim_detach_delivered() - iopf_sim_detach(), but only if the daemon holds
 * a group of that attach it read and has not answered, checked under the same
 * lock: lets a test hit the stale-cookie window without racing the daemon.
 * Return: groups answered (0 when none was held), or -errno (lock).
 */
int iopf_sim_detach_delivered(struct iopf_sim *s, uint32_t dev_id, uint32_t pasid);

/* What the simulated IOMMU holds for one IO page. */
struct iopf_sim_mapping {
	uint64_t map_iova; /* the map call that created it */
	uint64_t map_length;
	uint32_t prot;	 /* IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE */
	uint64_t st_dev; /* backing file identity, as fstat() saw it */
	uint64_t st_ino;
	uint64_t offset; /* offset of this page in the backing file */
};

/* Look up the page holding @iova. Return: 0, -ENOENT (not mapped, no such IOAS), -errno. */
int iopf_sim_lookup(struct iopf_sim *s, uint32_t ioas_id, uint64_t iova,
		    struct iopf_sim_mapping *ret);
/*
 * The same for @n pages under one lock: ret_rc[i] is 0 with ret[i] filled, or
 * -ENOENT. A checker's batch costs one lock round trip, not one per page.
 * Return: 0, or -errno when the lock could not be taken (nothing filled).
 */
int iopf_sim_lookup_many(struct iopf_sim *s, uint32_t ioas_id, const uint64_t *iova, size_t n,
			 struct iopf_sim_mapping *ret, int *ret_rc);

/* Event counters, kept in the shared header. */
struct iopf_sim_stats {
	uint64_t injected_groups;
	uint64_t injected_records;
	uint64_t doorbells; /* empty -> non-empty transitions */
	uint64_t reads;	    /* fault_read calls */
	uint64_t delivered_groups;
	uint64_t delivered_records;
	uint64_t answers;	  /* accepted responses */
	uint64_t answers_invalid; /* ... with code INVALID */
	uint64_t bad_code;	  /* rejected: code not 0/1 */
	uint64_t bad_cookie;	  /* rejected: cookie not outstanding (double or stale answer) */
	uint64_t auto_invalid;	  /* answered INVALID by detach */
	uint64_t maps;
	uint64_t map_eexist;
	uint64_t unmaps;
	uint64_t unmap_errors;
	uint64_t corrupt;    /* inconsistent shared state the daemon side skipped */
	uint64_t owner_died; /* lock taken over from a dead holder */
};

struct iopf_sim_counts {
	uint32_t queued;    /* undelivered */
	uint32_t delivered; /* read, not answered */
	uint32_t answered;  /* answered, not harvested */
	uint32_t free;	    /* free group slots */
	uint32_t pages_mapped;
	uint32_t maps;	   /* live map extents */
	uint32_t backends; /* daemon-side backends open on the context; 0 once all released */
	struct iopf_sim_stats stats;
};

/*
 * Groups the daemon read and has not answered, without the lock: a racy hint
 * for pollers, which would starve the daemon if they hammered the lock.
 */
uint32_t iopf_sim_peek_delivered(const struct iopf_sim *s);
/*
 * Whether answers may wait to be harvested, without the lock: a racy hint (an
 * answer published just now may be missed) that lets a checker skip the lock
 * of a context with nothing for it. Return: true if the answered FIFO looked non-empty.
 */
bool iopf_sim_peek_answered(const struct iopf_sim *s);

/* Return: 0 or -errno (lock). */
int iopf_sim_get_counts(struct iopf_sim *s, struct iopf_sim_counts *ret);

/* Test hooks. */
/* Bounded wait for the shared lock (default 200 ms); 0 restores the default. */
void __iopf_sim_set_lock_timeout(uint64_t ns);
/* The shared mapping, for tests that scribble on it. */
void *__iopf_sim_shm(struct iopf_sim *s, size_t *ret_size);

/*
 * The shared layout, version 1, for tests. Everything below the header is at
 * offsets computed from the header's geometry; see lib/sim/sim.c.
 */
struct iopf_sim_shm_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t hdr_size;
	uint32_t slot_size;
	uint32_t queue_depth;
	uint32_t max_group;
	uint32_t n_ioas;
	uint32_t iommu_pages;
	uint32_t page_buckets;
	uint32_t iommu_maps;
	uint32_t ring_wanted; /* under the lock: groups queued, doorbell down; device side rings */
	uint64_t total_size;

	/* mutable; under the lock */
	uint32_t pend_head, pend_tail; /* undelivered FIFO, free-running */
	uint32_t done_head, done_tail; /* answered FIFO, free-running */
	uint32_t free_top;	       /* free slot stack */
	uint32_t cookie_hint;	       /* lowest cookie-bitmap word that may have a free bit */
	uint32_t n_delivered;
	uint32_t n_pages_mapped;
	uint32_t n_maps;
	uint32_t ext_free;   /* free extent list head, index + 1 */
	uint32_t answer_seq; /* futex word, bumped on every answer */
	uint32_t answer_waiters;
	uint32_t backends;    /* iopf_sim_backend_open() minus destroy */
	uint32_t doorbell_id; /* the doorbell's eventfd-id + 1 (fdinfo); set once */
	uint64_t inject_seq;
	struct iopf_sim_stats stats;
};

#endif /* IOPF_SIM_H */
