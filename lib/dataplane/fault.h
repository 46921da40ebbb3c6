/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fault records -> fault groups. Pure logic over a buffer the worker read.
 */
#ifndef IOPF_FAULT_H
#define IOPF_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iopf/iopf.h"
#include "uapi.h"

/* One group: records [first, first + n) of the buffer, answered once with @cookie. */
struct iopf_group {
	size_t first;
	size_t n;
	uint32_t cookie;
	uint32_t dev_id;
	uint32_t pasid; /* IOPF_PASID_NONE when PASID_VALID is clear */
	uint32_t masked; /* records whose flags had bits the uAPI does not define */
	bool bad;       /* malformed: answer INVALID, reason BAD_RECORD */
};

/*
 * iopf_fault_next_group() - cut the next group out of a batch of records.
 * (iopf_fault_cut_group() is the same for any shape, out of line.)
 * @recs: records as read; flag bits the uAPI does not define are masked in
 *        place (real drivers pass internal bits through; 6.12 and 7.2 copy
 *        them unmasked) and counted in @ret->masked
 * @n: number of records
 * @pos: in: first record not yet consumed; out: advanced past the group
 * @ret: the group
 *
 * A group is a run of records sharing one cookie that ends with LAST_PAGE. A
 * run that ends early (the cookie changes or the batch ends) or mixes dev_id,
 * PASID_VALID or pasid, or carries a PASID outside 20 bits, is returned with
 * bad set: it is still answered exactly once, with its cookie.
 *
 * Return: true with @ret filled, false when the batch is exhausted.
 */
bool iopf_fault_cut_group(struct iommu_hwpt_pgfault *recs, size_t n, size_t *pos,
			  struct iopf_group *ret);

/*
 * The shape nearly every group has, one clean record with LAST_PAGE, inline
 * in the worker's loop; anything else (several records, leaked flag bits, a
 * PASID out of range, a cut group) takes iopf_fault_cut_group().
 */
static inline bool iopf_fault_next_group(struct iommu_hwpt_pgfault *recs, size_t n, size_t *pos,
					 struct iopf_group *ret)
{
	const struct iommu_hwpt_pgfault *r;
	size_t i = *pos;

	if (i >= n)
		return false;
	r = &recs[i];
	if (r->flags == IOMMU_PGFAULT_FLAGS_LAST_PAGE ||
	    (r->flags == (IOMMU_PGFAULT_FLAGS_LAST_PAGE | IOMMU_PGFAULT_FLAGS_PASID_VALID) &&
	     r->pasid <= IOPF_PASID_MAX)) {
		*ret = (struct iopf_group){
			.first = i,
			.n = 1,
			.cookie = r->cookie,
			.dev_id = r->dev_id,
			.pasid = (r->flags & IOMMU_PGFAULT_FLAGS_PASID_VALID) ? r->pasid
									   : IOPF_PASID_NONE,
		};
		*pos = i + 1;
		return true;
	}
	return iopf_fault_cut_group(recs, n, pos, ret);
}

#endif /* IOPF_FAULT_H */
