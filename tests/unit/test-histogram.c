/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/shared/histogram.c: bounds, buckets, quantiles and merging; as the
 * metrics use it: every bucket edge, quantiles at exact ranks, and one writer
 * per histogram read concurrently by a merging reader (in the TSan suite too):
 * snapshots are self-consistent and never go backwards, and the final merge is
 * exact.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "unit-test.h"

#include "histogram.h"

static void test_bounds(void **state)
{
	assert_int_equal(IOPF_HIST_FINITE, 64);
	assert_int_equal(iopf_histogram_bound_ns(0), 1000);
	assert_int_equal(iopf_histogram_bound_ns(8), 9000);
	assert_int_equal(iopf_histogram_bound_ns(9), 10000);
	assert_int_equal(iopf_histogram_bound_ns(62), 9000000000ull);
	assert_int_equal(iopf_histogram_bound_ns(63), 10000000000ull);
	assert_true(iopf_histogram_bound_ns(64) == UINT64_MAX);
	/* strictly increasing */
	for (unsigned i = 1; i < IOPF_HIST_BUCKETS; i++)
		assert_true(iopf_histogram_bound_ns(i) > iopf_histogram_bound_ns(i - 1));
}

static void test_bucket_of(void **state)
{
	static const struct {
		uint64_t ns;
		unsigned bucket;
	} cases[] = {
		{0, 0},
		{1, 0},
		{1000, 0},
		{1001, 1},
		{2000, 1},
		{9000, 8},
		{9001, 9},
		{10000, 9},
		{10001, 10},
		{90000, 17},
		{99999, 18},
		{100000, 18},
		{1500000, 28},
		{9000000000ull, 62},
		{9000000001ull, 63},
		{10000000000ull, 63},
		{10000000001ull, 64},
		{UINT64_MAX, 64},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned b = iopf_histogram_bucket_of(cases[i].ns);

		assert_int_equal(b, cases[i].bucket);
		/* the value lies within its bucket's bounds */
		assert_true(cases[i].ns <= iopf_histogram_bound_ns(b));
		if (b > 0)
			assert_true(cases[i].ns > iopf_histogram_bound_ns(b - 1));
	}
}

static void test_quantile_and_merge(void **state)
{
	struct iopf_histogram a = {0}, b = {0}, m = {0};

	assert_int_equal(iopf_histogram_quantile(&a, 0.5), 0);
	for (int i = 0; i < 90; i++)
		iopf_histogram_record(&a, 1500); /* bucket 2 us */
	for (int i = 0; i < 9; i++)
		iopf_histogram_record(&b, 50000);  /* bucket 50 us */
	iopf_histogram_record(&b, 20000000000ull); /* overflow */

	iopf_histogram_merge(&m, &a);
	iopf_histogram_merge(&m, &b);
	assert_int_equal(m.count, 100);
	assert_int_equal(m.sum_ns, 90 * 1500 + 9 * 50000 + 20000000000ull);
	assert_int_equal(iopf_histogram_quantile(&m, 0.5), 2000);
	assert_int_equal(iopf_histogram_quantile(&m, 0.9), 2000);
	assert_int_equal(iopf_histogram_quantile(&m, 0.91), 50000);
	assert_int_equal(iopf_histogram_quantile(&m, 0.99), 50000);
	assert_true(iopf_histogram_quantile(&m, 1.0) == UINT64_MAX);
	assert_int_equal(iopf_histogram_quantile(&m, 0), 2000);
}

static void test_every_edge(void **state)
{
	for (unsigned i = 0; i < IOPF_HIST_FINITE; i++) {
		uint64_t b = iopf_histogram_bound_ns(i);

		assert_int_equal(iopf_histogram_bucket_of(b), i);
		assert_int_equal(iopf_histogram_bucket_of(b + 1), i + 1);
		if (i > 0)
			assert_int_equal(
				iopf_histogram_bucket_of(iopf_histogram_bound_ns(i - 1) + 1), i);
	}
	/* 1 us .. 10 s, log-linear: 1..9 of each power of ten, then 10 s */
	assert_int_equal(iopf_histogram_bound_ns(0), 1000);
	assert_int_equal(iopf_histogram_bound_ns(IOPF_HIST_FINITE - 1), 10000000000ull);
	assert_int_equal(IOPF_HIST_BUCKETS, 65);
}

static void test_quantile_ranks(void **state)
{
	struct iopf_histogram h = {};

	/* 1000 values: 1..1000 us, ten per bucket step */
	for (uint64_t us = 1; us <= 1000; us++)
		iopf_histogram_record(&h, us * 1000);
	assert_int_equal(h.count, 1000);
	/* rank ceil(q * n): exactly at a bucket's last value stays in that bucket */
	assert_int_equal(iopf_histogram_quantile(&h, 0.009), 9000);  /* rank 9 */
	assert_int_equal(iopf_histogram_quantile(&h, 0.010), 10000); /* rank 10 */
	assert_int_equal(iopf_histogram_quantile(&h, 0.011), 20000); /* rank 11 */
	assert_int_equal(iopf_histogram_quantile(&h, 0.5), 500000);
	assert_int_equal(iopf_histogram_quantile(&h, 0.999), 1000000);
	assert_int_equal(iopf_histogram_quantile(&h, 1.0), 1000000);
	/* out-of-range q is clamped */
	assert_int_equal(iopf_histogram_quantile(&h, -1), 1000);
	assert_int_equal(iopf_histogram_quantile(&h, 2), 1000000);
}

#define WRITERS	   4
#define PER_WRITER 200000

struct shared {
	struct iopf_histogram h[WRITERS];
	uint64_t expect_sum[WRITERS];
	int done;
};

struct writer_arg {
	struct shared *s;
	unsigned idx;
};

static void *writer(void *arg)
{
	struct writer_arg *w = arg;
	uint64_t x = 0x9e3779b97f4a7c15 * (w->idx + 1), sum = 0;

	for (unsigned i = 0; i < PER_WRITER; i++) {
		uint64_t ns;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		ns = x % 20000000000ull; /* up to 20 s: overflow too */
		iopf_histogram_record(&w->s->h[w->idx], ns);
		sum += ns;
	}
	w->s->expect_sum[w->idx] = sum;
	return NULL;
}

/* One writer per histogram, a reader merging them while they run: no locks. */
static void test_concurrent_merge(void **state)
{
	static struct shared s;
	struct writer_arg args[WRITERS];
	pthread_t t[WRITERS];
	struct iopf_histogram last = {}, m;
	uint64_t sum = 0;

	memset(&s, 0, sizeof(s));
	for (unsigned i = 0; i < WRITERS; i++) {
		args[i] = (struct writer_arg){&s, i};
		assert_int_equal(pthread_create(&t[i], NULL, writer, &args[i]), 0);
	}
	for (unsigned round = 0; round < 2000 && last.count < WRITERS * PER_WRITER; round++) {
		uint64_t n = 0;

		memset(&m, 0, sizeof(m));
		for (unsigned i = 0; i < WRITERS; i++)
			iopf_histogram_merge(&m, &s.h[i]);
		for (unsigned b = 0; b < IOPF_HIST_BUCKETS; b++) {
			assert_true(m.bucket[b] >= last.bucket[b]); /* never backwards */
			n += m.bucket[b];
		}
		assert_int_equal(m.count, n); /* self-consistent: the count is the buckets' */
		assert_true(m.count >= last.count);
		last = m;
	}
	for (unsigned i = 0; i < WRITERS; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		sum += s.expect_sum[i];
	}
	memset(&m, 0, sizeof(m));
	for (unsigned i = 0; i < WRITERS; i++)
		iopf_histogram_merge(&m, &s.h[i]);
	assert_int_equal(m.count, WRITERS * PER_WRITER);
	assert_int_equal(m.sum_ns, sum);
	assert_true(m.bucket[IOPF_HIST_BUCKETS - 1] > 0); /* some above 10 s */
}

TEST_MAIN(cmocka_unit_test(test_bounds), cmocka_unit_test(test_bucket_of),
	  cmocka_unit_test(test_quantile_and_merge), cmocka_unit_test(test_every_edge),
	  cmocka_unit_test(test_quantile_ranks), cmocka_unit_test(test_concurrent_merge));
