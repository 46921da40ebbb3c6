/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Latency histograms: log-linear buckets from 1 us to 10 s (1..9 us, 10..90 us,
 * ..., 1..9 s, 10 s, then overflow), the shape Prometheus histograms want.
 * One writer per histogram (its worker), no locks: the writer stores with
 * relaxed atomics, readers load the same way and sum histograms of all workers.
 */
#ifndef IOPF_HISTOGRAM_H
#define IOPF_HISTOGRAM_H

#include <stdint.h>

#define IOPF_HIST_DECADES    7 /* 1 us .. 9.x s */
#define IOPF_HIST_PER_DECADE 9
/* finite buckets: 63 log-linear ones up to 9 s, then one for 10 s */
#define IOPF_HIST_FINITE  (IOPF_HIST_DECADES * IOPF_HIST_PER_DECADE + 1)
#define IOPF_HIST_BUCKETS (IOPF_HIST_FINITE + 1) /* + overflow (> 10 s) */

struct iopf_histogram {
	uint64_t count; /* the totals first: with a bucket, two lines a record */
	uint64_t sum_ns;
	uint64_t bucket[IOPF_HIST_BUCKETS]; /* non-cumulative counts */
};

/* Upper bound of bucket @i in ns (inclusive); UINT64_MAX for the overflow bucket. */
uint64_t iopf_histogram_bound_ns(unsigned i);
/* Index of the bucket that holds @ns. */
unsigned iopf_histogram_bucket_of(uint64_t ns);
/*
 * Single writer: count @n latencies of @ns each in bucket @b, which must be
 * iopf_histogram_bucket_of(@ns) (the caller computed it once for a run of them).
 */
static inline void iopf_histogram_record_n(struct iopf_histogram *h, unsigned b, uint64_t ns,
					   uint64_t n)
{
	/* one writer: plain read-modify-write, published with relaxed stores */
	__atomic_store_n(&h->bucket[b], h->bucket[b] + n, __ATOMIC_RELAXED);
	__atomic_store_n(&h->sum_ns, h->sum_ns + n * ns, __ATOMIC_RELAXED);
	__atomic_store_n(&h->count, h->count + n, __ATOMIC_RELAXED);
}

/* Single writer. */
void iopf_histogram_record(struct iopf_histogram *h, uint64_t ns);
/* Reader: add a relaxed snapshot of @src to @dst (dst is private to the reader). */
void iopf_histogram_merge(struct iopf_histogram *dst, const struct iopf_histogram *src);
/*
 * iopf_histogram_quantile() - upper bound in ns of the bucket holding quantile @q.
 * @q in [0, 1]. Return: 0 for an empty histogram, UINT64_MAX if in overflow.
 */
uint64_t iopf_histogram_quantile(const struct iopf_histogram *h, double q);

#endif /* IOPF_HISTOGRAM_H */
