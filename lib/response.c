/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "response.h"

#include <stdlib.h>

#include "counters.h"
#include "util.h"

/* EINTR/EAGAIN retries of one write before the batch counts as failed. */
#define WRITE_RETRIES 3

int iopf_response_batch_init(struct iopf_response_batch *rb, size_t cap)
{
	*rb = (struct iopf_response_batch){};
	return iopf_response_batch_reserve(rb, cap);
}

void iopf_response_batch_fini(struct iopf_response_batch *rb)
{
	free(rb->resp);
	free(rb->ctr);
	*rb = (struct iopf_response_batch){};
}

int iopf_response_batch_reserve(struct iopf_response_batch *rb, size_t cap)
{
	struct iommu_hwpt_page_response *resp;
	struct iopf_counters **ctr;

	if (cap <= rb->cap)
		return 0;
	resp = realloc(rb->resp, cap * sizeof(*resp));
	if (!resp)
		return -ENOMEM;
	rb->resp = resp;
	ctr = realloc(rb->ctr, cap * sizeof(*ctr));
	if (!ctr)
		return -ENOMEM;
	rb->ctr = ctr;
	rb->cap = cap;
	return 0;
}

int iopf_response_flush(struct iopf_response_batch *rb, struct iopf_backend *b)
{
	const size_t sz = sizeof(struct iommu_hwpt_page_response);
	size_t i = 0, accepted = 0;
	unsigned retries = 0;
	int r = 0;

	while (i < rb->n) {
		size_t left = rb->n - i;
		ssize_t w = b->ops->fault_write(b, &rb->resp[i], left * sz);

		if (w == (ssize_t)(left * sz)) {
			accepted += left;
			break;
		}
		if (w > 0 && (size_t)w < left * sz && w % (ssize_t)sz == 0) {
			/* Entries before k were consumed; entry k was refused. */
			size_t k = (size_t)w / sz;

			accepted += k;
			i += k;
			ctr_add(&rb->ctr[i]->stale, 1);
			i++;
			continue;
		}
		if (w == -EINVAL) {
			/* The first entry was refused: count it and go on with the rest. */
			ctr_add(&rb->ctr[i]->stale, 1);
			i++;
			continue;
		}
		if ((w == -EINTR || w == -EAGAIN) && retries++ < WRITE_RETRIES)
			continue;
		/* ESPIPE/EFAULT are our bugs; a zero or torn count is not kernel behaviour. */
		r = w < 0 ? (int)w : -EIO;
		break;
	}
	rb->n = 0;
	return r < 0 ? r : (int)accepted;
}
