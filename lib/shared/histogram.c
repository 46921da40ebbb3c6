/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "histogram.h"

static const uint64_t pow10_us[IOPF_HIST_DECADES + 1] = {
	1000ull,     10000ull,	   100000ull,	  1000000ull,
	10000000ull, 100000000ull, 1000000000ull, 10000000000ull,
};

uint64_t iopf_histogram_bound_ns(unsigned i)
{
	if (i >= IOPF_HIST_FINITE)
		return UINT64_MAX;
	if (i == IOPF_HIST_FINITE - 1)
		return pow10_us[IOPF_HIST_DECADES];
	return pow10_us[i / IOPF_HIST_PER_DECADE] * (i % IOPF_HIST_PER_DECADE + 1);
}

unsigned iopf_histogram_bucket_of(uint64_t ns)
{
	unsigned d = 0;
	uint64_t step;

	if (ns <= pow10_us[0])
		return 0;
	if (ns > pow10_us[IOPF_HIST_DECADES])
		return IOPF_HIST_FINITE;
	/* the decade whose steps of pow10_us[d] cover ns: ns <= 9 * pow10_us[d] */
	while (d < IOPF_HIST_DECADES - 1 && ns > 9 * pow10_us[d])
		d++;
	if (ns > 9 * pow10_us[d]) /* (9 s, 10 s] */
		return IOPF_HIST_FINITE - 1;
	step = pow10_us[d];
	/* smallest k in 1..9 with ns <= k * step */
	return d * IOPF_HIST_PER_DECADE + (unsigned)((ns + step - 1) / step) - 1;
}

void iopf_histogram_record(struct iopf_histogram *h, uint64_t ns)
{
	iopf_histogram_record_n(h, iopf_histogram_bucket_of(ns), ns, 1);
}

void iopf_histogram_merge(struct iopf_histogram *dst, const struct iopf_histogram *src)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < IOPF_HIST_BUCKETS; i++) {
		uint64_t v = __atomic_load_n(&src->bucket[i], __ATOMIC_RELAXED);

		dst->bucket[i] += v;
		n += v;
	}
	/* count is derived from the buckets read, so a snapshot is self-consistent */
	dst->count += n;
	dst->sum_ns += __atomic_load_n(&src->sum_ns, __ATOMIC_RELAXED);
}

uint64_t iopf_histogram_quantile(const struct iopf_histogram *h, double q)
{
	uint64_t rank, seen = 0;

	if (!h->count)
		return 0;
	if (q < 0)
		q = 0;
	if (q > 1)
		q = 1;
	/* the smallest bucket whose cumulative count reaches ceil(q * count), at least 1 */
	rank = (uint64_t)(q * (double)h->count);
	if ((double)rank < q * (double)h->count)
		rank++;
	if (!rank)
		rank = 1;
	for (unsigned i = 0; i < IOPF_HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= rank)
			return iopf_histogram_bound_ns(i);
	}
	return UINT64_MAX;
}
