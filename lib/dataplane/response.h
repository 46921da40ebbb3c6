/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Page responses of one source, batched over one read and written with one
 * write(2), with the kernel's "stop at the first bad entry" rule handled.
 */
#ifndef IOPF_RESPONSE_H
#define IOPF_RESPONSE_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "engine.h"
#include "histogram.h"
#include "uapi.h"

/* big cookie -> entry of the current batch; stale once gen moves on, so never cleared per turn */
struct iopf_response_slot {
	uint32_t cookie, gen, idx;
};

/*
 * Entries [first, the next run's first) share their domain's counters, their
 * latency histogram (or NULL) and the time their read returned: one read's
 * groups of one domain are a run, so a turn writes a few of these, not three
 * words per entry into lines gone cold since the source's last turn.
 */
struct iopf_response_run {
	size_t first;
	struct iopf_counters *ctr;
	struct iopf_histogram *hist;
	uint64_t t_read; /* CLOCK_MONOTONIC ns */
};

struct iopf_response_batch {
	struct iommu_hwpt_page_response *resp; /* owned */
	struct iopf_response_run *runs;	       /* owned; in entry order, each non-empty */
	size_t n_runs;
	size_t n, cap;
	size_t n_dropped; /* entries superseded by a re-issued cookie */
	/*
	 * The cookies queued in this batch. The kernel hands out the lowest free
	 * cookie, so they stay below the number of groups outstanding on the fd,
	 * which is what a bitmap of a few cache lines covers (sized from cap).
	 * Bigger ones (another reader of the fd, a scribbling simulator tenant)
	 * go to a hash that is otherwise never touched.
	 */
	uint64_t *seen; /* owned; bit c: cookie c queued, c < seen_bits */
	size_t seen_bits;
	struct iopf_response_slot *index; /* owned; cookies >= seen_bits, at most half full */
	size_t index_mask;
	uint32_t gen; /* of the current batch; never 0 */
	/*
	 * The latency bucket the last write recorded in: the next one is likely
	 * the same or a neighbour, on the same line of each histogram, so a
	 * caller can start loading it early (iopf_response_bucket_hint()).
	 */
	unsigned last_bucket;
};

/* A guess at the bucket of @h the next write records in (prefetch it, no more). */
static inline const uint64_t *iopf_response_bucket_hint(const struct iopf_response_batch *rb,
							const struct iopf_histogram *h)
{
	return &h->bucket[rb->last_bucket];
}

/* Return: 0 or -ENOMEM. */
int iopf_response_batch_init(struct iopf_response_batch *rb, size_t cap);
void iopf_response_batch_fini(struct iopf_response_batch *rb);
/* Grow to hold at least @cap entries, keeping queued ones. Return: 0 or -ENOMEM. */
int iopf_response_batch_reserve(struct iopf_response_batch *rb, size_t cap);

/*
 * iopf_response_add() - queue one response; the caller made room (no allocation).
 *
 * A cookie already queued in this batch means the kernel answered that group
 * itself (detach) and handed the cookie to a group read since: the earlier
 * entry would answer the new group, so it is dropped and counted 'stale' on
 * its counters. (Cookies are re-issued only at read time, and only we read,
 * so this can only happen between reads of one batch.)
 */
void iopf_response_add(struct iopf_response_batch *rb, uint32_t cookie, uint32_t code,
		       struct iopf_counters *ctr);
/*
 * iopf_response_add_timed() - iopf_response_add(), and once the kernel accepts the
 * response, record (the time it was written - @t_read_ns) in @hist (single writer:
 * the batch's worker). @hist NULL records nothing.
 */
void iopf_response_add_timed(struct iopf_response_batch *rb, uint32_t cookie, uint32_t code,
			     struct iopf_counters *ctr, struct iopf_histogram *hist,
			     uint64_t t_read_ns);

/*
 * iopf_response_flush() - write every queued response, each cookie at most once.
 *
 * The kernel processes entries in order and stops at the first one it refuses
 * (cookie no longer outstanding: the group was auto-answered on detach),
 * returning the bytes consumed, or -EINVAL when it refused the very first. That
 * entry is counted 'stale' on its counters, skipped and never retried; the
 * rest is resubmitted. Any other error (ESPIPE/EFAULT: our bug; a torn count;
 * EINTR/EAGAIN once retried a few times at once) stops the flush: the entries
 * not written yet stay queued, in order, for a later flush. That is safe only
 * because the caller reads nothing from the fd until they are written: only a
 * read re-issues a cookie, so a cookie the kernel auto-answered meanwhile is
 * refused (stale) on the retry instead of answering a new group.
 *
 * Return: entries the kernel accepted (the batch is empty), or -errno of a
 * hard error (the unwritten entries are still queued).
 */
int iopf_response_flush(struct iopf_response_batch *rb, struct iopf_backend *b);

/*
 * iopf_response_discard() - forget every queued entry without writing it (a
 * write that keeps failing at teardown). Return: how many were queued.
 */
size_t iopf_response_discard(struct iopf_response_batch *rb);

/*
 * iopf_response_rehome() - entries counted on @from (a domain going away while
 * they wait for a retried write) count their stale refusals on @to from now on,
 * and record no latency.
 */
void iopf_response_rehome(struct iopf_response_batch *rb, const struct iopf_counters *from,
			  struct iopf_counters *to);

#endif /* IOPF_RESPONSE_H */
