/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What of the engine outlives the process, in its state arena (state.h):
 *
 *  - the in-flight journal of each source, which is simply its read buffer:
 *    the kernel reads records straight into it, and a slot goes back to
 *    "empty" only once the response of its group is written. The records a
 *    restarted iopfd finds there are exactly the groups read and not yet
 *    answered (see docs/design.md, "Crash and restart");
 *  - a record per source, domain and region, enough to build the object
 *    again with the same id around the fds the fd store kept;
 *  - each region's page bitmaps (region.h), so what the dead process mapped
 *    is unmapped exactly when its region goes.
 */
#ifndef IOPF_PERSIST_H
#define IOPF_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state.h"
#include "uapi.h"

/* Record keys: the kind in the top byte, the object's id below. */
enum iopf_persist_kind {
	IOPF_PERSIST_SOURCE = 1,
	IOPF_PERSIST_DOMAIN = 2,
	IOPF_PERSIST_REGION = 3,
	/* 0x80 and up: the control plane's (iopf_engine_record_put()) */
	IOPF_PERSIST_FOREIGN = 0x80,
};
#define IOPF_PERSIST_KEY(kind, id) (((uint64_t)(kind) << 56) | (id))
#define IOPF_PERSIST_KIND(key)	   ((unsigned)((key) >> 56))
#define IOPF_PERSIST_ID(key)	   ((key) & ((UINT64_C(1) << 56) - 1))

/* The backends a source record may name. */
enum iopf_persist_backend {
	IOPF_PERSIST_BACKEND_KERNEL = 1,
	IOPF_PERSIST_BACKEND_SIM = 2,
};

struct iopf_persist_source {
	uint32_t version; /* IOPF_PERSIST_VERSION */
	uint32_t backend; /* enum iopf_persist_backend */
	uint64_t id, tenant;
	uint32_t ioas_id;
	uint32_t journal_cap; /* records */
	uint64_t journal_off;
	uint32_t flags; /* IOPF_ENGINE_SOURCE_* */
	uint32_t reserved;
};
struct iopf_persist_domain {
	uint32_t version;
	uint32_t dev_id;
	uint64_t id, source_id, tenant;
	uint32_t pasid;
	uint32_t reserved;
};
struct iopf_persist_region {
	uint32_t version;
	uint32_t access;
	uint64_t id, domain_id, tenant;
	uint64_t iova, length, offset;
	uint64_t bits_off; /* the mapped and start bitmaps, one block */
	uint64_t file_key; /* its memory fd in the store: "r<file_key>", shared per file */
};
#define IOPF_PERSIST_VERSION 1u

/*
 * A source's journal: its read buffer in the arena. @rec[0..cap) are slots;
 * an empty slot holds the sentinel record, which no kernel or simulator
 * produces (every id field all ones).
 */
struct iopf_journal {
	struct iopf_state *state;
	uint64_t off;
	size_t cap;
	struct iommu_hwpt_pgfault *rec;
};

/* A new journal of @cap empty slots. Return: 0, -ENOMEM, -ENOSPC. */
int iopf_journal_new(struct iopf_state *state, uint64_t source_id, size_t cap,
		     struct iopf_journal *ret);
/*
 * An earlier run's journal of source @source_id at @off: claims its block and
 * checks its header. Return: 0 or -EINVAL (refuse the state).
 */
int iopf_journal_adopt(struct iopf_state *state, uint64_t source_id, uint64_t off, size_t cap,
		       struct iopf_journal *ret);
/* Give the block back (the source is gone). */
void iopf_journal_free(struct iopf_journal *j);
/* Records read and not answered: the slots before the first empty one. */
size_t iopf_journal_pending(const struct iopf_journal *j);
/*
 * Empty slots [0, n): their groups are answered. Last slot first, so a crash
 * half-way leaves a prefix of records that were read (answering those again
 * only meets the kernel's refusal), never a gap.
 */
void iopf_journal_clear(struct iopf_journal *j, size_t n);
/*
 * Room for @cap records, in a new block (all slots empty; only while nothing
 * is pending). Rewrites the source's record @srec to point at it. Any thread.
 * Return: 0, -ENOMEM, -ENOSPC.
 */
int iopf_journal_grow(struct iopf_journal *j, size_t cap, struct iopf_persist_source *srec);

/*
 * The map call in flight (iova, length), or none (0, 0): set before the call,
 * cleared after it is tracked, so a crash in between is seen (and whether it
 * was made or not, iopf_resolve_readopt() works out).
 */
void iopf_journal_set_intent(struct iopf_journal *j, uint64_t iova, uint64_t length);
bool iopf_journal_intent(const struct iopf_journal *j, uint64_t *ret_iova, uint64_t *ret_length);

/* Bytes of a region's bitmaps block for @n_pages pages (mapped, then start). */
size_t iopf_persist_bits_size(uint64_t n_pages);

#endif /* IOPF_PERSIST_H */
