/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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
		{ 0, 0 },           { 1, 0 },           { 1000, 0 },          { 1001, 1 },
		{ 2000, 1 },        { 9000, 8 },        { 9001, 9 },          { 10000, 9 },
		{ 10001, 10 },      { 90000, 17 }, { 99999, 18 },      { 100000, 18 },       { 1500000, 28 },
		{ 9000000000ull, 62 }, { 9000000001ull, 63 }, { 10000000000ull, 63 },
		{ 10000000001ull, 64 }, { UINT64_MAX, 64 },
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
	struct iopf_histogram a = { 0 }, b = { 0 }, m = { 0 };

	assert_int_equal(iopf_histogram_quantile(&a, 0.5), 0);
	for (int i = 0; i < 90; i++)
		iopf_histogram_record(&a, 1500);     /* bucket 2 us */
	for (int i = 0; i < 9; i++)
		iopf_histogram_record(&b, 50000);    /* bucket 50 us */
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_bucket_of),
		cmocka_unit_test(test_quantile_and_merge),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
