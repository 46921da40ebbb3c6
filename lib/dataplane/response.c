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
	free(rb->runs);
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
	/* a run per entry at most */
	if (index_resize(rb, cap) < 0 || REALLOC_ARRAY(rb->resp, cap) < 0 ||
	    REALLOC_ARRAY(rb->runs, cap) < 0)
		return -ENOMEM;
	rb->cap = cap;
	return 0;
}

/* The run of entry @i: the last one starting at or before it. */
static size_t run_of(const struct iopf_response_batch *rb, size_t i)
{
	size_t lo = 0, hi = rb->n_runs; /* runs[lo].first <= i < runs[hi].first */

	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (rb->runs[mid].first <= i)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* The counters of entry @i: its run's. */
static struct iopf_counters *ctr_of(const struct iopf_response_batch *rb, size_t i)
{
	return rb->runs[run_of(rb, i)].ctr;
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
	struct iopf_response_run *run;
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
		ctr_add(&ctr_of(rb, old)->stale, 1);
		rb->n_dropped++;
	}
	rb->resp[rb->n] = (struct iommu_hwpt_page_response){.cookie = cookie, .code = code};
	run = rb->n_runs ? &rb->runs[rb->n_runs - 1] : NULL;
	if (!run || run->ctr != ctr || run->hist != hist || run->t_read != t_read_ns)
		rb->runs[rb->n_runs++] = (struct iopf_response_run){
			.first = rb->n, .ctr = ctr, .hist = hist, .t_read = t_read_ns};
	rb->n++;
}

/* Entries of run @k: [runs[k].first, its end). */
static size_t run_end(const struct iopf_response_batch *rb, size_t k)
{
	return k + 1 < rb->n_runs ? rb->runs[k + 1].first : rb->n;
}

/* Squeeze out dropped entries, keeping the order; a run left empty goes. */
static void compact(struct iopf_response_batch *rb)
{
	size_t j = 0, kept_runs = 0;

	if (!rb->n_dropped)
		return;
	for (size_t k = 0; k < rb->n_runs; k++) {
		size_t first = j;

		for (size_t i = rb->runs[k].first; i < run_end(rb, k); i++)
			if (rb->resp[i].code != CODE_DROPPED)
				rb->resp[j++] = rb->resp[i];
		if (j > first) {
			rb->runs[kept_runs] = rb->runs[k];
			rb->runs[kept_runs++].first = first;
		}
	}
	rb->n = j;
	rb->n_runs = kept_runs;
	rb->n_dropped = 0;
}

/*
 * Entries [from, to) were just written: their latency ends now. A run's
 * entries share their read's time: one bucket, found once, for all of them.
 */
static void record_latency(struct iopf_response_batch *rb, size_t from, size_t to)
{
	uint64_t now = 0;

	if (from >= to)
		return;
	/* from the run holding @from: a write cut short many times does not walk them all again */
	for (size_t k = run_of(rb, from); k < rb->n_runs && rb->runs[k].first < to; k++) {
		const struct iopf_response_run *run = &rb->runs[k];
		size_t a = run->first > from ? run->first : from, e = run_end(rb, k);
		uint64_t lat;

		if (e > to)
			e = to;
		if (!run->hist || e <= a)
			continue;
		if (!now)
			now = mono_ns();
		lat = now > run->t_read ? now - run->t_read : 0;
		rb->last_bucket = iopf_histogram_bucket_of(lat);
		iopf_histogram_record_n(run->hist, rb->last_bucket, lat, e - a);
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
		size_t k = 0, kept_runs;

		memmove(rb->resp, rb->resp + done, keep * sizeof(*rb->resp));
		/* the first kept run is the one holding entry @done */
		while (run_end(rb, k) <= done)
			k++;
		kept_runs = rb->n_runs - k;
		memmove(rb->runs, rb->runs + k, kept_runs * sizeof(*rb->runs));
		rb->n_runs = kept_runs;
		rb->runs[0].first = done;
		for (size_t j = 0; j < kept_runs; j++)
			rb->runs[j].first -= done;
	} else if (keep == 0)
		rb->n_runs = 0;
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
	for (size_t k = 0; k < rb->n_runs; k++)
		if (rb->runs[k].ctr == from) {
			rb->runs[k].ctr = to;
			rb->runs[k].hist = NULL;
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
			ctr_add(&ctr_of(rb, i)->stale, 1);
			i++;
			continue;
		}
		if (w == -EINVAL || w == -ENOENT) {
			/*
			 * The first entry was refused (EINVAL; ENOENT tolerated too): count
			 * it and go on with the rest.
			 */
			ctr_add(&ctr_of(rb, i)->stale, 1);
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
