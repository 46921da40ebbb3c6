/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reading fault records, with the kernel's quirks, and cutting them into
 * fault groups (pure logic over the buffer read).
 */
#ifndef IOPF_FAULT_H
#define IOPF_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend.h"
#include "iopf/iopf.h"
#include "response.h"
#include "uapi.h"

/*
 * A source's read buffer: between two reads it holds exactly the records of
 * the last one (the worker answers them before it reads again).
 */
struct iopf_fault_buf {
	struct iommu_hwpt_pgfault *recs; /* owned; see fault_buf_grow() in fault.c */
	size_t cap;			 /* records recs holds */
	size_t max;			 /* cap grows (doubling) up to this for a huge group */
	size_t n;			 /* records the last read delivered */
	size_t budget;			 /* records the next read asks for, at most (0: cap) */
	bool torn;			 /* the last read's byte count was not whole records */
	unsigned empty_reads;		 /* polled-readable reads in a row that gave 0 */
	/* NULL: recs is allocated here. Else the owner's: it grows there (the source's journal) */
	int (*grow)(void *userdata, size_t cap, struct iommu_hwpt_pgfault **ret_recs);
	void *grow_userdata;
};

/* @cap records now, growing up to @max. Return: 0 or -ENOMEM. */
int iopf_fault_buf_init(struct iopf_fault_buf *fb, size_t cap, size_t max);
/* The same on the owner's @recs (@cap of them), which @grow replaces by a bigger one. */
void iopf_fault_buf_init_at(struct iopf_fault_buf *fb, struct iommu_hwpt_pgfault *recs, size_t cap,
			    size_t max,
			    int (*grow)(void *userdata, size_t cap,
					struct iommu_hwpt_pgfault **ret_recs),
			    void *userdata);
void iopf_fault_buf_fini(struct iopf_fault_buf *fb);

/*
 * iopf_fault_read() - read whole groups from @b into @fb.
 * @rb: the batch that answers what is read: whenever the buffer grows, @rb
 *      is first given room for its new capacity + @rb_extra responses, so
 *      everything read can be answered without allocating
 * @polled: the fd polled readable and nothing was read since
 *
 * When not even the first queued group fits, the kernel fails the read with
 * EINVAL and keeps the group (6.12 and 7.2 alike): the buffer grows and the
 * read is repeated, never dropping the group, up to @fb->max records. The
 * kernel returns 0 only when nothing is queued; 0 right after the fd polled
 * readable is not kernel behaviour, but a backend that did that would never
 * deliver the group: after a few such reads in a row the buffer grows too.
 * A read under a @fb->budget smaller than the buffer asks for that many
 * records; a first group longer than the budget is read whole all the same.
 *
 * Return: records read (> 0; @fb->torn when the count had a partial record
 * at the end, which is ignored), 0 for nothing now (EINTR and EAGAIN too), or
 * -errno: the read's error, -E2BIG when a group does not fit @fb->max
 * records, -ENOMEM.
 */
ssize_t iopf_fault_read(struct iopf_fault_buf *fb, struct iopf_backend *b,
			struct iopf_response_batch *rb, size_t rb_extra, bool polled);

/* One group: records [first, first + n) of the buffer, answered once with @cookie. */
struct iopf_group {
	size_t first;
	size_t n;
	uint32_t cookie;
	uint32_t dev_id;
	uint32_t pasid;	 /* IOPF_PASID_NONE when PASID_VALID is clear */
	uint32_t masked; /* records whose flags had bits the uAPI does not define */
	bool bad;	 /* malformed: answer INVALID, reason BAD_RECORD */
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
