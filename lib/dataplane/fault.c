/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fault.h"

#include <errno.h>
#include <stdlib.h>

#include "util.h"

#define PV IOMMU_PGFAULT_FLAGS_PASID_VALID
/* Polled-readable reads in a row giving 0 that mean "the first group does not fit". */
#define EMPTY_READS_GROW 2

/*
 * The one place the read buffer is allocated: (re)size it to @cap records,
 * keeping what it holds.
 */
static int fault_buf_grow(struct iopf_fault_buf *fb, size_t cap)
{
	if (fb->grow) {
		struct iommu_hwpt_pgfault *recs;
		int r = fb->grow(fb->grow_userdata, cap, &recs);

		if (r < 0)
			return r;
		fb->recs = recs;
	} else if (REALLOC_ARRAY(fb->recs, cap) < 0) {
		return -ENOMEM;
	}
	fb->cap = cap;
	return 0;
}

int iopf_fault_buf_init(struct iopf_fault_buf *fb, size_t cap, size_t max)
{
	*fb = (struct iopf_fault_buf){.max = max};
	return fault_buf_grow(fb, cap);
}

void iopf_fault_buf_init_at(struct iopf_fault_buf *fb, struct iommu_hwpt_pgfault *recs, size_t cap,
			    size_t max,
			    int (*grow)(void *userdata, size_t cap,
					struct iommu_hwpt_pgfault **ret_recs),
			    void *userdata)
{
	*fb = (struct iopf_fault_buf){
		.recs = recs,
		.cap = cap,
		.max = max,
		.grow = grow,
		.grow_userdata = userdata,
	};
}

void iopf_fault_buf_fini(struct iopf_fault_buf *fb)
{
	if (!fb->grow)
		free(fb->recs);
	*fb = (struct iopf_fault_buf){};
}

/* Double the buffer (room in @rb first). Rare; allocates. Return: 0 or -errno. */
static int grow(struct iopf_fault_buf *fb, struct iopf_response_batch *rb, size_t rb_extra)
{
	size_t cap;
	int r;

	if (fb->cap >= fb->max)
		return -E2BIG;
	cap = fb->cap * 2 < fb->max ? fb->cap * 2 : fb->max;
	r = iopf_response_batch_reserve(rb, cap + rb_extra);
	if (r < 0)
		return r;
	return fault_buf_grow(fb, cap);
}

ssize_t iopf_fault_read(struct iopf_fault_buf *fb, struct iopf_backend *b,
			struct iopf_response_batch *rb, size_t rb_extra, bool polled)
{
	const size_t rec = sizeof(struct iommu_hwpt_pgfault);

	for (;;) {
		size_t want = fb->budget && fb->budget < fb->cap ? fb->budget : fb->cap;
		ssize_t r = b->ops->fault_read(b, fb->recs, want * rec);
		int g;

		fb->n = 0;
		fb->torn = false;
		if (r == -EINVAL && want < fb->cap) {
			/* the first group is longer than the budget: read it whole */
			fb->budget = 0;
			continue;
		}
		if (r == -EINVAL) {
			/* Not even the first group fits (6.12 and 7.2): grow, never drop. */
			g = grow(fb, rb, rb_extra);
			if (g < 0)
				return g;
			continue;
		}
		if (r == -EINTR || r == -EAGAIN)
			return 0;
		if (r < 0)
			return r;
		if (r == 0) {
			/* Readable yet nothing: not the kernel (see fault.h); grow, defensively. */
			if (polled && ++fb->empty_reads >= EMPTY_READS_GROW) {
				fb->empty_reads = 0;
				(void)grow(fb, rb, rb_extra);
			}
			return 0;
		}
		fb->empty_reads = 0;
		fb->torn = r % (ssize_t)rec != 0;
		fb->n = (size_t)r / rec;
		return (ssize_t)fb->n;
	}
}

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
		if (r->dev_id != ret->dev_id || (flags & PV) != pv ||
		    (pv && r->pasid != ret->pasid))
			bad = true;
	}

	ret->n = i + 1 - ret->first;
	ret->masked = masked;
	ret->bad = bad;
	*pos = i + 1;
	return true;
}
