/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "response.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "counters.h"
#include "util.h"
#include "time-util.h"

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
	free(rb->hist);
	free(rb->t_read);
	free(rb->seen);
	free(rb->index);
	*rb = (struct iopf_response_batch){};
}

static size_t big_home(const struct iopf_response_batch *rb, uint32_t cookie)
{
	return (cookie * UINT32_C(0x9e3779b1)) & rb->index_mask;
}

/*
 * Note entry @idx's big cookie. Return: the entry queued earlier with the same
 * cookie (its slot now names @idx), or SIZE_MAX.
 */
static size_t big_put(struct iopf_response_batch *rb, uint32_t cookie, size_t idx)
{
	size_t h = big_home(rb, cookie), old = SIZE_MAX;

	for (; rb->index[h].gen == rb->gen; h = (h + 1) & rb->index_mask)
		if (rb->index[h].cookie == cookie) {
			old = rb->index[h].idx;
			break;
		}
	rb->index[h] = (struct iopf_response_slot){cookie, rb->gen, (uint32_t)idx};
	return old;
}

static bool seen_test_and_set(struct iopf_response_batch *rb, uint32_t cookie)
{
	uint64_t *w = &rb->seen[cookie / 64], bit = UINT64_C(1) << (cookie % 64);
	bool was = *w & bit;

	*w |= bit;
	return was;
}

/* The live entry of small cookie @cookie; only after a re-issue, so rare. */
static size_t find_queued(const struct iopf_response_batch *rb, uint32_t cookie)
{
	for (size_t i = rb->n; i-- > 0;)
		if (rb->resp[i].cookie == cookie && rb->resp[i].code != CODE_DROPPED)
			return i;
	return SIZE_MAX;
}

/* Size the cookie bitmap and hash for @cap entries; rebuilds both from the queued ones. */
static int index_resize(struct iopf_response_batch *rb, size_t cap)
{
	/* outstanding cookies <= this turn's entries + held groups (<= cap): room for both */
	size_t bits = 1024, size = 16;
	struct iopf_response_slot *index;
	uint64_t *seen;

	while (bits < 4 * cap)
		bits *= 2;
	while (size < 2 * cap)
		size *= 2;
	if (bits <= rb->seen_bits && size - 1 <= rb->index_mask)
		return 0;
	seen = calloc(bits / 64, sizeof(*seen));
	index = calloc(size, sizeof(*index));
	if (!seen || !index) {
		free(seen);
		free(index);
		return -ENOMEM;
	}
	free(rb->seen);
	free(rb->index);
	rb->seen = seen;
	rb->seen_bits = bits;
	rb->index = index;
	rb->index_mask = size - 1;
	rb->gen = 1;
	for (size_t i = 0; i < rb->n; i++) {
		uint32_t cookie = rb->resp[i].cookie;

		if (rb->resp[i].code == CODE_DROPPED)
			continue;
		if (cookie < rb->seen_bits)
			(void)seen_test_and_set(rb, cookie);
		else
			(void)big_put(rb, cookie, i);
	}
	return 0;
}

int iopf_response_batch_reserve(struct iopf_response_batch *rb, size_t cap)
{
	if (cap <= rb->cap)
		return 0;
	if (index_resize(rb, cap) < 0 || REALLOC_ARRAY(rb->resp, cap) < 0 ||
	    REALLOC_ARRAY(rb->ctr, cap) < 0 || REALLOC_ARRAY(rb->hist, cap) < 0 ||
	    REALLOC_ARRAY(rb->t_read, cap) < 0)
		return -ENOMEM;
	rb->cap = cap;
	return 0;
}

void iopf_response_add(struct iopf_response_batch *rb, uint32_t cookie, uint32_t code,
		       struct iopf_counters *ctr)
{
	iopf_response_add_timed(rb, cookie, code, ctr, NULL, 0);
}

void iopf_response_add_timed(struct iopf_response_batch *rb, uint32_t cookie, uint32_t code,
			     struct iopf_counters *ctr, struct iopf_histogram *hist,
			     uint64_t t_read_ns)
{
	size_t old = SIZE_MAX;

	assert(rb->n < rb->cap);
	if (cookie < rb->seen_bits) {
		if (__builtin_expect(seen_test_and_set(rb, cookie), 0))
			old = find_queued(rb, cookie);
	} else
		old = big_put(rb, cookie, rb->n);
	if (old != SIZE_MAX) {
		/* auto-answered and re-issued between two reads: the old entry is stale */
		rb->resp[old].code = CODE_DROPPED;
		ctr_add(&rb->ctr[old]->stale, 1);
		rb->n_dropped++;
	}
	rb->resp[rb->n] = (struct iommu_hwpt_page_response){.cookie = cookie, .code = code};
	rb->ctr[rb->n] = ctr;
	rb->hist[rb->n] = hist;
	rb->t_read[rb->n] = t_read_ns;
	rb->n++;
}

/* Squeeze out dropped entries, keeping the order. */
static void compact(struct iopf_response_batch *rb)
{
	size_t j = 0;

	if (!rb->n_dropped)
		return;
	for (size_t i = 0; i < rb->n; i++) {
		if (rb->resp[i].code == CODE_DROPPED)
			continue;
		rb->resp[j] = rb->resp[i];
		rb->ctr[j] = rb->ctr[i];
		rb->hist[j] = rb->hist[i];
		rb->t_read[j] = rb->t_read[i];
		j++;
	}
	rb->n = j;
	rb->n_dropped = 0;
}

/*
 * Entries [from, to) were just written: their latency ends now. Entries of one
 * read share its time, so the bucket is found once per read, not per entry.
 */
static void record_latency(struct iopf_response_batch *rb, size_t from, size_t to)
{
	uint64_t now = 0, t = 0, lat = 0;
	unsigned b = 0;

	for (size_t i = from; i < to; i++) {
		if (!rb->hist[i])
			continue;
		if (!now) {
			now = mono_ns();
			t = rb->t_read[i] + 1; /* differs from it: forces the first bucket_of */
		}
		if (rb->t_read[i] != t) {
			t = rb->t_read[i];
			lat = now > t ? now - t : 0;
			b = iopf_histogram_bucket_of(lat);
		}
		iopf_histogram_record_in(rb->hist[i], b, lat);
	}
}

/*
 * Forget entries [0, @done) and keep the rest, in order, at the front: clear
 * the bits of the forgotten small cookies (a dropped entry's cookie is also a
 * live entry's, and compact() ran, so none of them is a kept entry's); the
 * hash forgets by moving to a new generation, then re-learns the kept ones.
 */
static void forget_head(struct iopf_response_batch *rb, size_t done)
{
	size_t keep = rb->n - done;

	for (size_t i = 0; i < done; i++) {
		uint32_t cookie = rb->resp[i].cookie;

		if (cookie < rb->seen_bits)
			rb->seen[cookie / 64] &= ~(UINT64_C(1) << (cookie % 64));
	}
	if (keep > 0 && done > 0) {
		memmove(rb->resp, rb->resp + done, keep * sizeof(*rb->resp));
		memmove(rb->ctr, rb->ctr + done, keep * sizeof(*rb->ctr));
		memmove(rb->hist, rb->hist + done, keep * sizeof(*rb->hist));
		memmove(rb->t_read, rb->t_read + done, keep * sizeof(*rb->t_read));
	}
	rb->n = keep;
	rb->n_dropped = 0;
	if (++rb->gen == 0) {
		/* wrapped after 2^32 batches: old stamps could look current again */
		memset(rb->index, 0, (rb->index_mask + 1) * sizeof(*rb->index));
		rb->gen = 1;
	}
	for (size_t i = 0; i < keep; i++)
		if (rb->resp[i].cookie >= rb->seen_bits)
			(void)big_put(rb, rb->resp[i].cookie, i);
}

size_t iopf_response_discard(struct iopf_response_batch *rb)
{
	size_t n;

	compact(rb);
	n = rb->n;
	forget_head(rb, n);
	return n;
}

void iopf_response_rehome(struct iopf_response_batch *rb, const struct iopf_counters *from,
			  struct iopf_counters *to)
{
	for (size_t i = 0; i < rb->n; i++)
		if (rb->ctr[i] == from) {
			rb->ctr[i] = to;
			rb->hist[i] = NULL;
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
			record_latency(rb, i, rb->n);
			accepted += left;
			break;
		}
		if (w > 0 && (size_t)w < left * sz && w % (ssize_t)sz == 0) {
			/* Entries before k were consumed; entry k was refused. */
			size_t k = (size_t)w / sz;

			record_latency(rb, i, i + k);
			accepted += k;
			i += k;
			ctr_add(&rb->ctr[i]->stale, 1);
			i++;
			continue;
		}
		if (w == -EINVAL || w == -ENOENT) {
			/*
			 * The first entry was refused (EINVAL; ENOENT tolerated too): count
			 * it and go on with the rest.
			 */
			ctr_add(&rb->ctr[i]->stale, 1);
			i++;
			continue;
		}
		if ((w == -EINTR || w == -EAGAIN) && retries++ < WRITE_RETRIES)
			continue;
		if (w > 0) {
			/*
			 * A torn or oversized count (not kernel behaviour): what it may
			 * have covered is never written again; the rest waits.
			 */
			size_t k = (size_t)w >= left * sz ? left : ((size_t)w + sz - 1) / sz;

			i += k;
		}
		/*
		 * ESPIPE/EFAULT are our bugs; a zero or torn count is not kernel
		 * behaviour. Entries from i on stay queued for a later flush.
		 */
		r = w < 0 ? (int)w : -EIO;
		break;
	}
	forget_head(rb, r < 0 ? i : rb->n);
	return r < 0 ? r : (int)accepted;
}
