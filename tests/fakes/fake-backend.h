/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A fake kernel behind the backend ops table, for data-plane tests.
 *
 * The fault queue follows docs/kernel-uapi.md: whole groups FIFO, cookies assigned
 * at read time (lowest free from 1, reused once answered), EINVAL when not even
 * the first group fits, writes processed in order stopping at the first bad
 * entry. The poll fd is an eventfd kept readable exactly while undelivered
 * groups exist. The IOAS keeps extents: EEXIST on overlap, unmap must name a
 * whole earlier map. Everything is logged for assertions, under one mutex so
 * tests may inspect it while a worker thread runs.
 */
#ifndef FAKE_BACKEND_H
#define FAKE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "uapi.h"

struct fake;

struct fake_answer {
	uint64_t serial; /* which delivered group (1, 2, ... in delivery order) */
	uint32_t cookie;
	uint32_t code;
};

struct fake_map_call {
	uint64_t iova, length;
	uint32_t prot;
	uint64_t offset;
	bool had_uptr;
	int result;
};

struct fake_mapping {
	uint64_t iova, length;
	bool foreign; /* mapped by "the tenant", not through map() */
};

struct fake *fake_new(bool map_needs_uptr);
void fake_free(struct fake *f);
/* A backend on @f; the engine may close it (then fake_closed() is true). */
struct iopf_backend *fake_backend(struct fake *f);
bool fake_closed(struct fake *f);

/* Queue one whole group; cookies are assigned when it is read. */
void fake_inject(struct fake *f, const struct iommu_hwpt_pgfault *recs, size_t n);
/* One single-record group with LAST_PAGE. pasid IOPF_PASID_NONE: no PASID_VALID. */
void fake_fault(struct fake *f, uint32_t dev_id, uint32_t pasid, uint64_t addr, uint32_t perm);
/*
 * While @block, a read waits inside fault_read() until let go: the worker
 * that reads is held there, and whatever is sent to it meanwhile waits.
 * fake_read_blocked(): a read waits there now.
 */
void fake_block_reads(struct fake *f, bool block);
bool fake_read_blocked(struct fake *f);
/* Queue raw records delivered as one read, cookies kept (malformed input). */
void fake_inject_raw(struct fake *f, const struct iommu_hwpt_pgfault *recs, size_t n);
/*
 * A read that cannot fit the first group returns 0, not EINVAL: no kernel does
 * this (6.12 and 7.2 both fail with EINVAL); the data plane copes defensively.
 */
void fake_set_too_small_returns_zero(struct fake *f, bool zero);

/* The kernel answers an outstanding cookie itself (detach). Return: false if not outstanding. */
bool fake_auto_answer(struct fake *f, uint32_t cookie);
/* Every read fails with -err (0: stop failing). */
void fake_fail_reads(struct fake *f, int err);
/* The next write fails with -err, consuming nothing. */
void fake_fail_next_write(struct fake *f, int err);
/* The next @count writes (-1: every one; err 0: none) fail with -err, consuming nothing. */
void fake_fail_writes(struct fake *f, int err, int count);
/* The same after @skip more writes that work as usual. */
void fake_fail_writes_after(struct fake *f, unsigned skip, int err, int count);
/* Map calls whose range holds @iova fail with -err (@count times; -1 forever). */
void fake_fail_map(struct fake *f, uint64_t iova, int err, int count);
/* Pretend the tenant mapped [iova, iova + length). */
void fake_premap(struct fake *f, uint64_t iova, uint64_t length);

size_t fake_pending(struct fake *f);	 /* groups not yet delivered */
size_t fake_outstanding(struct fake *f); /* delivered, not answered */
uint64_t fake_delivered(struct fake *f); /* groups delivered so far */
uint64_t fake_reads(struct fake *f);	 /* fault_read calls */
uint64_t fake_writes(struct fake *f);	 /* fault_write calls */
/* fault_read calls made while some delivered group was not answered yet */
uint64_t fake_reads_unanswered(struct fake *f);
/* Copy of the answer log (malloc'd); returns the count. */
size_t fake_answers(struct fake *f, struct fake_answer **ret);
/*
 * Where each read of @f that delivered groups came among those of every fake
 * (1, 2, ...: one sequence across fakes): the order one worker read them in.
 * Copy (malloc'd); returns the count.
 */
size_t fake_read_seqs(struct fake *f, uint64_t **ret);
size_t fake_map_calls(struct fake *f, struct fake_map_call **ret);
/* Mappings made through map() and still there (foreign ones excluded). */
size_t fake_mappings(struct fake *f, struct fake_mapping **ret);
uint64_t fake_bad_unmaps(struct fake *f); /* unmaps that did not name a whole map */
uint64_t fake_unmaps(struct fake *f);

/* Every delivered group answered exactly once (auto-answers count), none twice. */
bool fake_all_answered_once(struct fake *f);

#endif /* FAKE_BACKEND_H */
