/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fault.h"

#include "iopf/iopf.h"

static uint32_t record_pasid(const struct iommu_hwpt_pgfault *r)
{
	return (r->flags & IOMMU_PGFAULT_FLAGS_PASID_VALID) ? r->pasid : IOPF_PASID_NONE;
}

bool iopf_fault_next_group(struct iommu_hwpt_pgfault *recs, size_t n, size_t *pos,
			   struct iopf_group *ret)
{
	size_t i = *pos;
	struct iopf_group g;

	if (i >= n)
		return false;

	/* Drivers may leak internal flag bits: mask them, do not reject the record. */
	recs[i].flags &= IOPF_PGFAULT_KNOWN_FLAGS;
	g = (struct iopf_group){
		.first = i,
		.cookie = recs[i].cookie,
		.dev_id = recs[i].dev_id,
		.pasid = record_pasid(&recs[i]),
	};
	/* PASID_VALID with a value beyond 20 bits could alias IOPF_PASID_NONE. */
	g.bad = (recs[i].flags & IOMMU_PGFAULT_FLAGS_PASID_VALID) && recs[i].pasid > IOPF_PASID_MAX;

	for (;;) {
		const struct iommu_hwpt_pgfault *r = &recs[i];

		if (r->dev_id != g.dev_id || record_pasid(r) != g.pasid)
			g.bad = true;
		i++;
		if (r->flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE)
			break;
		if (i == n || recs[i].cookie != g.cookie) {
			/* The kernel delivers whole groups: a cut group is malformed. */
			g.bad = true;
			break;
		}
		recs[i].flags &= IOPF_PGFAULT_KNOWN_FLAGS;
	}

	g.n = i - g.first;
	*pos = i;
	*ret = g;
	return true;
}
