/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "resolve.h"

#include "counters.h"
#include "util.h"

/*
 * The faulting page is mapped already, and not by this region (its bitmap
 * says it is not ours): by a region of another domain of the source, whose
 * IOAS they share, or by the tenant itself. Nothing here knows that mapping's
 * access, and a device told SUCCESS for a WRITE it cannot do would fault
 * again at once, forever. So only a fault that asks no WRITE resolves;
 * a WRITE is INVALID, reason MAPPED_ELSEWHERE. (A WRITE to a page this
 * region mapped is found in its bitmap and resolves without a map call: the
 * permission check already said the region allows it.)
 */
static enum iopf_reason mapped_elsewhere(uint32_t perm)
{
	return (perm & IOPF_ACCESS_WRITE) ? IOPF_REASON_MAPPED_ELSEWHERE : IOPF_REASON_RESOLVED;
}

/*
 * One map call for pages [first, first + n) of @r; tracked on success. With
 * @j, the call is written down in the source's journal while it runs, so a
 * restarted iopfd knows to look at that extent (iopf_resolve_readopt()).
 */
int iopf_resolve_map_run(struct iopf_backend *b, struct iopf_journal *j, struct iopf_region *r,
			 uint64_t first, uint64_t n, struct iopf_counters *c)
{
	uint64_t off = first * IOPF_PAGE_SIZE, len = n * IOPF_PAGE_SIZE;
	struct iopf_map_req req = {
		.iova = r->iova + off,
		.length = len,
		.prot = r->prot,
		.fd = r->fd,
		.offset = r->offset + off,
	};
	int rc;

	if (b->ops->map_needs_uptr) {
		void *base;

		rc = iopf_region_get_uptr(r, &base);
		if (rc < 0)
			return rc;
		req.uptr = (uint8_t *)base + off;
	}
	if (j)
		iopf_journal_set_intent(j, req.iova, len);
	rc = b->ops->map(b, &req);
	if (rc < 0) {
		if (j)
			iopf_journal_set_intent(j, 0, 0);
		return rc;
	}
	iopf_region_track(r, first, n);
	if (j)
		iopf_journal_set_intent(j, 0, 0);
	ctr_add(&r->bytes_mapped, len);
	ctr_add(&c->maps, 1);
	ctr_add(&c->pages_mapped, n);
	ctr_add(&c->bytes_mapped, len);
	return 0;
}

enum iopf_reason iopf_resolve_fault(const struct iopf_resolver *rs,
				    const struct iopf_region_set *set, uint64_t addr, uint32_t perm,
				    struct iopf_counters *c)
{
	uint64_t pg, from, to, win, win_last, h_first, h_n, pos;
	struct iopf_region *r;
	int rc;

	r = iopf_region_set_find(set, addr);
	if (!r)
		return IOPF_REASON_OUTSIDE_REGION;
	if ((perm & IOPF_ACCESS_ALL) & ~r->access)
		return IOPF_REASON_PERMISSION;

	pg = (addr - r->iova) / IOPF_PAGE_SIZE;
	if (iopf_region_page_mapped(r, pg)) {
		ctr_add(&c->coalesced, 1);
		return IOPF_REASON_RESOLVED;
	}

	/* The aligned window around the fault, clipped to the region (cannot wrap). */
	win = ALIGN_DOWN(addr, rs->fault_around);
	win_last = win + (rs->fault_around - 1);
	from = win > r->iova ? (win - r->iova) / IOPF_PAGE_SIZE : 0;
	to = win_last < iopf_region_last(r) ? (win_last - r->iova) / IOPF_PAGE_SIZE + 1
					    : r->n_pages;

	/* The run holding the faulting page first: if it fails, prefetch is pointless. */
	pos = from;
	for (;;) {
		/* pg is unmapped and inside [from, to), so some hole holds it. */
		if (!iopf_region_next_hole(r, pos, to, &h_first, &h_n))
			return IOPF_REASON_MAP_ERROR;
		if (h_first + h_n > pg)
			break;
		pos = h_first + h_n;
	}
	rc = iopf_resolve_map_run(rs->backend, rs->journal, r, h_first, h_n, c);
	if (rc < 0) {
		/* Someone else mapped part of the run, or the run is too much: just the page. */
		if (h_n > 1)
			rc = iopf_resolve_map_run(rs->backend, rs->journal, r, pg, 1, c);
		if (rc == -EEXIST)
			return mapped_elsewhere(perm);
		return rc < 0 ? IOPF_REASON_MAP_ERROR : IOPF_REASON_RESOLVED;
	}

	/* Best-effort fault-around of the other holes in the window. */
	pos = from;
	while (iopf_region_next_hole(r, pos, to, &h_first, &h_n)) {
		/* A failure here is not this fault's problem; a later fault retries. */
		(void)iopf_resolve_map_run(rs->backend, rs->journal, r, h_first, h_n, c);
		pos = h_first + h_n;
	}
	return IOPF_REASON_RESOLVED;
}

int iopf_resolve_unmap_region(struct iopf_backend *b, struct iopf_region *r,
			      struct iopf_counters *c)
{
	uint64_t first, n, pos = 0;
	int ret = 0;

	while (iopf_region_next_extent(r, pos, &first, &n)) {
		uint64_t len = n * IOPF_PAGE_SIZE;
		int rc = b->ops->unmap(b, r->iova + first * IOPF_PAGE_SIZE, len);

		if (rc < 0) {
			if (ret == 0)
				ret = rc;
		} else {
			ctr_sub(&r->bytes_mapped, len);
			ctr_sub(&c->bytes_mapped, len);
		}
		iopf_region_untrack(r, first, n);
		pos = first + n;
	}
	return ret;
}

int iopf_resolve_readopt(struct iopf_backend *b, struct iopf_region *r, uint64_t iova,
			 uint64_t length, struct iopf_counters *c)
{
	uint64_t first, n, h_first, h_n;

	if (iova < r->iova || length == 0 || length > r->length ||
	    iova - r->iova > r->length - length || (iova - r->iova) % IOPF_PAGE_SIZE ||
	    length % IOPF_PAGE_SIZE)
		return -EINVAL;
	first = (iova - r->iova) / IOPF_PAGE_SIZE;
	n = length / IOPF_PAGE_SIZE;
	/*
	 * The call was for a hole, and tracking starts only once it succeeded: a
	 * tracked page means it was made. The crash may have come half-way through
	 * the tracking (pages marked, the extent's start not yet): track it whole.
	 */
	if (!iopf_region_next_hole(r, first, first + n, &h_first, &h_n) || h_first != first ||
	    h_n != n) {
		iopf_region_track(r, first, n);
		return 0;
	}
	/* not tracked: map it again; what is already there cannot be told apart */
	return iopf_resolve_map_run(b, NULL, r, first, n, c);
}

void iopf_resolve_adopt_extent(struct iopf_region *r, uint64_t iova, uint64_t length,
			       struct iopf_counters *c)
{
	iopf_region_track(r, (iova - r->iova) / IOPF_PAGE_SIZE, length / IOPF_PAGE_SIZE);
	ctr_add(&r->bytes_mapped, length);
	ctr_add(&c->maps, 1);
	ctr_add(&c->pages_mapped, length / IOPF_PAGE_SIZE);
	ctr_add(&c->bytes_mapped, length);
}
