/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fault.h"

#define PV IOMMU_PGFAULT_FLAGS_PASID_VALID

/*
 * Mask the flag bits drivers may leak (the kernel copies its internal request
 * flags to user space as they are, e.g. "response needs PASID", bit 2), and
 * count the record in @masked. Written back only when something changes: a
 * store on every record makes the wider loads that follow wait for it (a
 * store-forwarding stall), and leaked bits are rare.
 */
static uint32_t known_flags(struct iommu_hwpt_pgfault *r, uint32_t *masked)
{
	uint32_t f = r->flags;

	if (f & ~(uint32_t)IOPF_PGFAULT_KNOWN_FLAGS) {
		f &= IOPF_PGFAULT_KNOWN_FLAGS;
		r->flags = f;
		(*masked)++;
	}
	return f;
}

bool iopf_fault_cut_group(struct iommu_hwpt_pgfault *recs, size_t n, size_t *pos,
			  struct iopf_group *ret)
{
	size_t i = *pos;
	struct iommu_hwpt_pgfault *r;
	uint32_t flags, pv, masked = 0;
	bool bad;

	if (i >= n)
		return false;

	r = &recs[i];
	flags = known_flags(r, &masked);
	pv = flags & PV;
	/* PASID_VALID with a value beyond 20 bits could alias IOPF_PASID_NONE. */
	bad = pv && r->pasid > IOPF_PASID_MAX;
	*ret = (struct iopf_group){
		.first = i,
		.cookie = r->cookie,
		.dev_id = r->dev_id,
		.pasid = pv ? r->pasid : IOPF_PASID_NONE,
	};

	/* Every record after the first must have the first one's key. */
	while (!(flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE)) {
		i++;
		if (i == n || recs[i].cookie != ret->cookie) {
			/* The kernel delivers whole groups: a cut group is malformed. */
			bad = true;
			i--;
			break;
		}
		r = &recs[i];
		flags = known_flags(r, &masked);
		if (r->dev_id != ret->dev_id || (flags & PV) != pv || (pv && r->pasid != ret->pasid))
			bad = true;
	}

	ret->n = i + 1 - ret->first;
	ret->masked = masked;
	ret->bad = bad;
	*pos = i + 1;
	return true;
}
