/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "response.h"

#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "util.h"

/* EINTR/EAGAIN retries of one write before the batch counts as failed. */
#define WRITE_RETRIES 3
/* Marks an entry superseded by a later one with the same cookie; never written. */
#define CODE_DROPPED UINT32_MAX

int iopf_response_batch_init(struct iopf_response_batch *rb, size_t cap)
{
	*rb = (struct iopf_response_batch){};
	return iopf_response_batch_reserve(rb, cap);
}

void iopf_response_batch_fini(struct iopf_response_batch *rb)
{
	free(rb->resp);
	free(rb->ctr);
	free(rb->index);
	*rb = (struct iopf_response_batch){};
}

/* Size the cookie index for @cap entries; rebuilds it from the queued ones. */
static int index_resize(struct iopf_response_batch *rb, size_t cap)
{
	size_t size = 16;
	struct iopf_response_slot *index;

	while (size < 2 * cap)
		size *= 2;
	if (size - 1 <= rb->index_mask)
		return 0;
	index = calloc(size, sizeof(*index));
	if (!index)
		return -ENOMEM;
	free(rb->index);
	rb->index = index;
	rb->index_mask = size - 1;
	rb->gen = 1;
	for (size_t i = 0; i < rb->n; i++) {
		size_t h = (rb->resp[i].cookie * UINT32_C(0x9e3779b1)) & rb->index_mask;

		if (rb->resp[i].code == CODE_DROPPED)
			continue;
		while (rb->index[h].gen == rb->gen)
			h = (h + 1) & rb->index_mask;
		rb->index[h] = (struct iopf_response_slot){ rb->resp[i].cookie, rb->gen, (uint32_t)i };
	}
	return 0;
}

int iopf_response_batch_reserve(struct iopf_response_batch *rb, size_t cap)
{
	struct iommu_hwpt_page_response *resp;
	struct iopf_counters **ctr;

	if (cap <= rb->cap)
		return 0;
	if (index_resize(rb, cap) < 0)
		return -ENOMEM;
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

void iopf_response_add(struct iopf_response_batch *rb, uint32_t cookie, uint32_t code,
		       struct iopf_counters *ctr)
{
	size_t h = (cookie * UINT32_C(0x9e3779b1)) & rb->index_mask;

	assert(rb->n < rb->cap);
	for (; rb->index[h].gen == rb->gen; h = (h + 1) & rb->index_mask) {
		size_t old = rb->index[h].idx;

		if (rb->index[h].cookie != cookie)
			continue;
		/* auto-answered and re-issued between two reads: the old entry is stale */
		rb->resp[old].code = CODE_DROPPED;
		ctr_add(&rb->ctr[old]->stale, 1);
		break;
	}
	rb->index[h] = (struct iopf_response_slot){ cookie, rb->gen, (uint32_t)rb->n };
	rb->resp[rb->n] = (struct iommu_hwpt_page_response){ .cookie = cookie, .code = code };
	rb->ctr[rb->n] = ctr;
	rb->n++;
}

/* Squeeze out dropped entries, keeping the order. */
static void compact(struct iopf_response_batch *rb)
{
	size_t j = 0;

	for (size_t i = 0; i < rb->n; i++) {
		if (rb->resp[i].code == CODE_DROPPED)
			continue;
		rb->resp[j] = rb->resp[i];
		rb->ctr[j] = rb->ctr[i];
		j++;
	}
	rb->n = j;
}

/* Empty the batch; the index forgets it by moving to a new generation. */
static void reset(struct iopf_response_batch *rb)
{
	rb->n = 0;
	if (++rb->gen == 0) {
		/* wrapped after 2^32 batches: old stamps could look current again */
		memset(rb->index, 0, (rb->index_mask + 1) * sizeof(*rb->index));
		rb->gen = 1;
	}
}

int iopf_response_flush(struct iopf_response_batch *rb, struct iopf_backend *b)
{
	const size_t sz = sizeof(struct iommu_hwpt_page_response);
	size_t i = 0, accepted = 0;
	unsigned retries = 0;
	int r = 0;

	compact(rb);

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
	reset(rb);
	return r < 0 ? r : (int)accepted;
}
