/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "persist.h"
#include "util.h"

#define JOURNAL_MAGIC UINT32_C(0x4c4e524a) /* "JRNL" */

struct journal_header {
	uint32_t magic;
	uint32_t cap;
	uint64_t source_id;
	uint64_t intent_iova, intent_length; /* the map call in flight */
	uint64_t reserved;
	struct iommu_hwpt_pgfault rec[];
};

static const struct iommu_hwpt_pgfault empty = {
	.flags = UINT32_MAX,
	.dev_id = UINT32_MAX,
	.pasid = UINT32_MAX,
	.grpid = UINT32_MAX,
	.cookie = UINT32_MAX,
};

static bool slot_empty(const struct iommu_hwpt_pgfault *r)
{
	return r->dev_id == UINT32_MAX && r->cookie == UINT32_MAX && r->flags == UINT32_MAX;
}

static size_t journal_bytes(size_t cap)
{
	return sizeof(struct journal_header) + cap * sizeof(struct iommu_hwpt_pgfault);
}

static void journal_attach(struct iopf_state *state, uint64_t off, size_t cap,
			   struct iopf_journal *ret)
{
	struct journal_header *h = iopf_state_at(state, off);

	*ret = (struct iopf_journal){.state = state, .off = off, .cap = cap, .rec = h->rec};
}

int iopf_journal_new(struct iopf_state *state, uint64_t source_id, size_t cap,
		     struct iopf_journal *ret)
{
	struct journal_header *h;
	uint64_t off;
	int r;

	r = iopf_state_alloc(state, journal_bytes(cap), &off);
	if (r < 0)
		return r;
	h = iopf_state_at(state, off);
	for (size_t i = 0; i < cap; i++)
		h->rec[i] = empty;
	h->cap = (uint32_t)cap;
	h->source_id = source_id;
	h->magic = JOURNAL_MAGIC;
	journal_attach(state, off, cap, ret);
	return 0;
}

int iopf_journal_adopt(struct iopf_state *state, uint64_t source_id, uint64_t off, size_t cap,
		       struct iopf_journal *ret)
{
	struct journal_header *h;
	int r;

	if (cap == 0 || cap > UINT32_MAX)
		return -EINVAL;
	r = iopf_state_claim(state, off, journal_bytes(cap));
	if (r < 0)
		return r;
	h = iopf_state_at(state, off);
	if (h->magic != JOURNAL_MAGIC || h->cap != cap || h->source_id != source_id)
		return -EINVAL;
	journal_attach(state, off, cap, ret);
	return 0;
}

void iopf_journal_free(struct iopf_journal *j)
{
	if (!j->state)
		return;
	iopf_state_release(j->state, j->off, journal_bytes(j->cap));
	*j = (struct iopf_journal){};
}

size_t iopf_journal_pending(const struct iopf_journal *j)
{
	size_t n = 0;

	while (n < j->cap && !slot_empty(&j->rec[n]))
		n++;
	return n;
}

void iopf_journal_clear(struct iopf_journal *j, size_t n)
{
	/*
	 * Plain stores in program order are enough: the next reader of this
	 * memory is a later process, after this one is dead.
	 */
	for (size_t i = n; i > 0; i--)
		j->rec[i - 1] = empty;
}

int iopf_journal_grow(struct iopf_journal *j, size_t cap, struct iopf_persist_source *srec)
{
	struct iopf_journal nj;
	int r;

	r = iopf_journal_new(j->state, srec->id, cap, &nj);
	if (r < 0)
		return r;
	srec->journal_off = nj.off;
	srec->journal_cap = (uint32_t)cap;
	/* the record names the new block before the old one goes */
	r = iopf_state_put(j->state, IOPF_PERSIST_KEY(IOPF_PERSIST_SOURCE, srec->id), srec,
			   sizeof(*srec));
	if (r < 0) {
		srec->journal_off = j->off;
		srec->journal_cap = (uint32_t)j->cap;
		iopf_journal_free(&nj);
		return r;
	}
	iopf_journal_free(j);
	*j = nj;
	return 0;
}

static struct journal_header *header_of(const struct iopf_journal *j)
{
	return iopf_state_at(j->state, j->off);
}

void iopf_journal_set_intent(struct iopf_journal *j, uint64_t iova, uint64_t length)
{
	struct journal_header *h = header_of(j);

	/* length last when setting, first when clearing: never a torn pair with length != 0 */
	if (length) {
		h->intent_iova = iova;
		__atomic_store_n(&h->intent_length, length, __ATOMIC_RELEASE);
	} else {
		__atomic_store_n(&h->intent_length, 0, __ATOMIC_RELEASE);
	}
}

bool iopf_journal_intent(const struct iopf_journal *j, uint64_t *ret_iova, uint64_t *ret_length)
{
	const struct journal_header *h = header_of(j);

	*ret_iova = h->intent_iova;
	*ret_length = h->intent_length;
	return h->intent_length != 0;
}

size_t iopf_persist_bits_size(uint64_t n_pages)
{
	return 2 * ((n_pages + 63) / 64) * sizeof(uint64_t);
}
