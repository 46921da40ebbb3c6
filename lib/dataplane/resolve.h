/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fault -> IOAS maps: permission and region checks, fault-around, and the
 * bookkeeping of exactly what the daemon mapped so it can be unmapped again.
 * Runs on the worker that owns the domain.
 */
#ifndef IOPF_RESOLVE_H
#define IOPF_RESOLVE_H

#include <stdint.h>

#include "backend.h"
#include "engine.h"
#include "persist.h"
#include "region.h"

struct iopf_resolver {
	struct iopf_backend *backend;
	struct iopf_journal *journal; /* the source's: map calls are written down there; or NULL */
	uint64_t fault_around;	      /* window bytes, power of two >= IOPF_PAGE_SIZE */
};

/*
 * iopf_resolve_fault() - make the page of @addr present in the IOAS.
 * @set: the domain's regions (caller holds the RCU read lock or owns them)
 * @perm: the record's perm; bits outside IOPF_ACCESS_ALL are ignored
 * @c: the domain's counters (maps, pages_mapped, bytes_mapped, coalesced)
 *
 * Maps each maximal run of pages in the fault-around window that the daemon
 * has not mapped yet, one map call per run, clipped to the region. A page the
 * daemon already mapped resolves at once ('coalesced'). EEXIST means someone
 * else mapped part of a run: the faulting page alone is retried, and EEXIST on
 * it resolves a fault that asks no WRITE (that mapping is not ours and is not
 * tracked); a WRITE is MAPPED_ELSEWHERE, since that mapping's access is unknown.
 *
 * Return: IOPF_REASON_RESOLVED, _OUTSIDE_REGION, _PERMISSION, _MAP_ERROR or
 * _MAPPED_ELSEWHERE.
 */
enum iopf_reason iopf_resolve_fault(const struct iopf_resolver *rs,
				    const struct iopf_region_set *set, uint64_t addr, uint32_t perm,
				    struct iopf_counters *c);

/*
 * iopf_resolve_unmap_region() - undo every map call the daemon made in @r.
 * Unmaps extent by extent (IOAS_UNMAP cannot split a map), forgets them all.
 * Return: 0, or the first unmap error (the rest is still attempted).
 */
int iopf_resolve_unmap_region(struct iopf_backend *b, struct iopf_region *r,
			      struct iopf_counters *c);

/* One map call of pages [first, first + n) of @r, tracked on success (and in @j while it runs). */
int iopf_resolve_map_run(struct iopf_backend *b, struct iopf_journal *j, struct iopf_region *r,
			 uint64_t first, uint64_t n, struct iopf_counters *c);
/*
 * iopf_resolve_readopt() - a restarted iopfd found the map call of
 * [iova, iova+length) of @r unfinished in a journal: the dead process may or
 * may not have made it. Tracked, wholly or in part: it was made, and is tracked
 * whole (the crash may have cut the tracking short). Otherwise map it again: 0 means
 * it was not there and now is, tracked; -EEXIST that something is there which
 * may be that call's or another's, so it is left alone (never unmapped: it
 * could be someone else's). Return: 0, -EEXIST, -EINVAL, or the map's -errno.
 */
int iopf_resolve_readopt(struct iopf_backend *b, struct iopf_region *r, uint64_t iova,
			 uint64_t length, struct iopf_counters *c);

/* Track [iova, iova+length) of @r as one of the daemon's map calls (checked by the caller). */
void iopf_resolve_adopt_extent(struct iopf_region *r, uint64_t iova, uint64_t length,
			       struct iopf_counters *c);

#endif /* IOPF_RESOLVE_H */
