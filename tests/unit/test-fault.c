/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fault records -> groups, including every malformed shape; reading them
 * (buffer growth) against the fake kernel.
 */
#include "dp-test.h"

#include <string.h>

#include "fake-backend.h"
#include "fault-group.h"
#include "fault.h"
#include "iopf/iopf.h"

#define LAST IOMMU_PGFAULT_FLAGS_LAST_PAGE
#define PV   IOMMU_PGFAULT_FLAGS_PASID_VALID

static struct iommu_hwpt_pgfault rec(uint32_t cookie, uint32_t flags, uint32_t dev, uint32_t pasid)
{
	return (struct iommu_hwpt_pgfault){
		.cookie = cookie,
		.flags = flags,
		.dev_id = dev,
		.pasid = pasid,
		.addr = 0x1000,
	};
}

/*
 * Cut every group of @r and compare with the expected (first, n, cookie, masked, bad)
 * list. Cutting masks undefined flag bits in place: a second pass over the same
 * records finds the same groups with nothing left to mask.
 */
static void check(struct iommu_hwpt_pgfault *r, size_t n, const struct iopf_group *want,
		  size_t n_want)
{
	struct iommu_hwpt_pgfault *copy = n ? malloc(n * sizeof(*copy)) : NULL;
	struct iopf_group g, g2;
	size_t pos = 0, pos2 = 0, k = 0;

	/* the inline fast path and the general cut agree on every shape */
	if (n)
		memcpy(copy, r, n * sizeof(*copy));
	while (iopf_fault_cut_group(copy, n, &pos2, &g2)) {
		assert_true(iopf_fault_next_group(r, n, &pos, &g));
		assert_int_equal(pos, pos2);
		assert_true(fault_group_equal(&g, &g2));
		assert_true(k < n_want);
		assert_int_equal(g.masked, want[k].masked);
		k++;
	}
	assert_false(iopf_fault_next_group(r, n, &pos, &g));
	assert_int_equal(k, n_want);
	assert_memory_equal(r, copy, n * sizeof(*copy));
	free(copy);
	pos = 0;
	k = 0;
	while (iopf_fault_next_group(r, n, &pos, &g)) {
		assert_true(k < n_want);
		assert_int_equal(g.first, want[k].first);
		assert_int_equal(g.n, want[k].n);
		assert_int_equal(g.cookie, want[k].cookie);
		assert_int_equal(g.masked, 0);
		assert_int_equal(g.bad, want[k].bad);
		k++;
	}
	assert_int_equal(k, n_want);
	assert_int_equal(pos, n);
}

static void test_empty(void **state)
{
	struct iopf_group g;
	size_t pos = 0;

	assert_false(iopf_fault_next_group(NULL, 0, &pos, &g));
}

static void test_whole_groups(void **state)
{
	struct iommu_hwpt_pgfault r[] = {
		rec(1, LAST, 3, 0), rec(2, 0, 3, 0),	     rec(2, 0, 3, 0),
		rec(2, LAST, 3, 0), rec(1, LAST | PV, 3, 9), /* a reused cookie after LAST is a new
								group */
	};
	const struct iopf_group want[] = {
		{.first = 0, .n = 1, .cookie = 1},
		{.first = 1, .n = 3, .cookie = 2},
		{.first = 4, .n = 1, .cookie = 1},
	};
	struct iopf_group g;
	size_t pos = 0;

	check(r, 5, want, 3);
	assert_true(iopf_fault_next_group(r, 5, &pos, &g));
	assert_int_equal(g.dev_id, 3);
	assert_int_equal(g.pasid, IOPF_PASID_NONE); /* pasid field ignored without PASID_VALID */
	pos = 4;
	assert_true(iopf_fault_next_group(r, 5, &pos, &g));
	assert_int_equal(g.pasid, 9);
}

/* A multi-record group: every record's undefined bits masked and counted. */
static void test_unknown_flags_masked(void **state)
{
	struct iommu_hwpt_pgfault r[] = {
		rec(5, 0x4, 3, 0),
		rec(5, 0, 3, 0),
		rec(5, LAST | 0x4 | 0x80000000u, 3, 0),
	};
	const struct iopf_group want[] = {{.first = 0, .n = 3, .cookie = 5, .masked = 2}};

	check(r, 3, want, 1);
	assert_int_equal(r[0].flags, 0);
	assert_int_equal(r[1].flags, 0);
	assert_int_equal(r[2].flags, LAST);
}

/*
 * One-record groups, the shape the kernel delivers nearly always: a leaked bit
 * (bit 2, "response needs PASID") leaves the inline path, is masked and counted,
 * and the group keeps its key; clean records beside it count nothing.
 */
static void test_unknown_flags_one_record(void **state)
{
	struct iommu_hwpt_pgfault r[] = {
		rec(1, LAST, 3, 0),
		rec(2, LAST | 0x4, 3, 0),
		rec(3, LAST | PV | 0x4, 3, 9),
		rec(4, LAST | PV, 3, 9),
		rec(5, LAST | PV | 0x40000000u, 4, 0x12345),
	};
	const struct iopf_group want[] = {
		{.first = 0, .n = 1, .cookie = 1},
		{.first = 1, .n = 1, .cookie = 2, .masked = 1},
		{.first = 2, .n = 1, .cookie = 3, .masked = 1},
		{.first = 3, .n = 1, .cookie = 4},
		{.first = 4, .n = 1, .cookie = 5, .masked = 1},
	};
	struct iopf_group g;
	size_t pos;

	check(r, 5, want, 5);
	assert_int_equal(r[1].flags, LAST);
	assert_int_equal(r[2].flags, LAST | PV);
	assert_int_equal(r[4].flags, LAST | PV);
	/* masked in place already: the second pass sees clean records */
	pos = 2;
	assert_true(iopf_fault_next_group(r, 5, &pos, &g));
	assert_int_equal(g.pasid, 9);
	assert_int_equal(g.masked, 0);
	pos = 4;
	assert_true(iopf_fault_next_group(r, 5, &pos, &g));
	assert_int_equal(g.dev_id, 4);
	assert_int_equal(g.pasid, 0x12345);
	assert_false(g.bad);
}

/* A leaked bit does not hide a malformed group, and is still counted there. */
static void test_unknown_flags_bad_group(void **state)
{
	struct iommu_hwpt_pgfault r[] = {
		rec(6, PV | 0x4, 3, 1), rec(6, LAST | PV | 0x4, 3, 2), /* PASID changes */
		rec(7, LAST | PV | 0x4, 3, IOPF_PASID_MAX + 1),	       /* PASID out of range */
	};
	const struct iopf_group want[] = {
		{.first = 0, .n = 2, .cookie = 6, .masked = 2, .bad = true},
		{.first = 2, .n = 1, .cookie = 7, .masked = 1, .bad = true},
	};

	check(r, 3, want, 2);
}

static void test_cookie_changes_early(void **state)
{
	struct iommu_hwpt_pgfault r[] = {
		rec(7, 0, 3, 0),    rec(7, 0, 3, 0), /* no LAST_PAGE */
		rec(8, LAST, 3, 0), rec(9, 0, 3, 0), rec(10, 0, 3, 0), rec(10, LAST, 3, 0),
	};
	const struct iopf_group want[] = {
		{.first = 0, .n = 2, .cookie = 7, .bad = true},
		{.first = 2, .n = 1, .cookie = 8},
		{.first = 3, .n = 1, .cookie = 9, .bad = true},
		{.first = 4, .n = 2, .cookie = 10},
	};

	check(r, 6, want, 4);
}

static void test_batch_ends_mid_group(void **state)
{
	struct iommu_hwpt_pgfault r[] = {
		rec(1, LAST, 3, 0),
		rec(2, 0, 3, 0),
		rec(2, 0, 3, 0),
	};
	const struct iopf_group want[] = {
		{.first = 0, .n = 1, .cookie = 1},
		{.first = 1, .n = 2, .cookie = 2, .bad = true},
	};

	check(r, 3, want, 2);
}

static void test_mixed_keys(void **state)
{
	struct iommu_hwpt_pgfault dev[] = {rec(1, 0, 3, 0), rec(1, LAST, 4, 0), rec(2, LAST, 4, 0)};
	struct iommu_hwpt_pgfault pasid[] = {rec(1, PV, 3, 1), rec(1, LAST | PV, 3, 2)};
	struct iommu_hwpt_pgfault pv[] = {rec(1, PV, 3, 0), rec(1, LAST, 3, 0)};
	/* a later record with PASID_VALID and the value that means "no PASID" still mixes */
	struct iommu_hwpt_pgfault pv_none[] = {rec(1, 0, 3, 0),
					       rec(1, LAST | PV, 3, IOPF_PASID_NONE)};
	const struct iopf_group want_dev[] = {
		{.first = 0, .n = 2, .cookie = 1, .bad = true},
		{.first = 2, .n = 1, .cookie = 2},
	};
	const struct iopf_group want_one_bad[] = {{.first = 0, .n = 2, .cookie = 1, .bad = true}};

	check(dev, 3, want_dev, 2);
	check(pasid, 2, want_one_bad, 1);
	check(pv, 2, want_one_bad, 1);
	check(pv_none, 2, want_one_bad, 1);
}

static void test_pasid_out_of_range(void **state)
{
	struct iommu_hwpt_pgfault r[] = {
		rec(1, LAST | PV, 3, IOPF_PASID_MAX + 1),
		rec(2, LAST | PV, 3, IOPF_PASID_NONE), /* must not alias "no PASID" */
		rec(3, LAST | PV, 3, IOPF_PASID_MAX),
	};
	const struct iopf_group want[] = {
		{.first = 0, .n = 1, .cookie = 1, .bad = true},
		{.first = 1, .n = 1, .cookie = 2, .bad = true},
		{.first = 2, .n = 1, .cookie = 3},
	};

	check(r, 3, want, 3);
}

/* A group of @n records with LAST_PAGE on the last. */
static void inject_group(struct fake *f, size_t n)
{
	struct iommu_hwpt_pgfault r[16] = {};

	assert_true(n <= 16);
	for (size_t i = 0; i < n; i++) {
		r[i].dev_id = 3;
		r[i].flags = i + 1 == n ? LAST : 0;
	}
	fake_inject(f, r, n);
}

/*
 * EINVAL (the first group does not fit): the buffer doubles, response room
 * first, and the read is repeated; never beyond max. A backend returning 0
 * instead grows only after two polled reads in a row, never when not polled.
 */
static void test_read_grows(void **state)
{
	struct fake *f = fake_new(false);
	struct iopf_backend *b = fake_backend(f);
	struct iopf_response_batch rb;
	struct iopf_fault_buf fb;

	(void)state;
	assert_int_equal(iopf_response_batch_init(&rb, 1), 0);
	assert_int_equal(iopf_fault_buf_init(&fb, 1, 8), 0);
	assert_int_equal(iopf_fault_read(&fb, b, &rb, 10, true), 0); /* nothing queued */
	inject_group(f, 3);
	assert_int_equal(iopf_fault_read(&fb, b, &rb, 10, false), 3);
	assert_int_equal(fb.cap, 4);
	assert_int_equal(fb.n, 3);
	assert_false(fb.torn);
	assert_true(rb.cap >= 4 + 10);
	assert_true(fb.recs[2].flags & LAST);
	assert_int_equal(fb.recs[0].cookie, fb.recs[2].cookie);

	inject_group(f, 9); /* bigger than max: stays queued */
	assert_int_equal(iopf_fault_read(&fb, b, &rb, 10, true), -E2BIG);
	assert_int_equal(fb.cap, 8);
	assert_int_equal(fb.n, 0);
	assert_int_equal(fake_pending(f), 1);
	iopf_backend_close(b);
	fake_free(f);

	f = fake_new(false);
	b = fake_backend(f);
	fake_set_too_small_returns_zero(f, true);
	inject_group(f, 12);
	assert_int_equal(iopf_fault_read(&fb, b, &rb, 10, false), 0);
	assert_int_equal(iopf_fault_read(&fb, b, &rb, 10, false), 0);
	assert_int_equal(fb.cap, 8);
	assert_int_equal(iopf_fault_read(&fb, b, &rb, 10, true), 0);
	assert_int_equal(fb.cap, 8);
	fb.max = 16;
	assert_int_equal(iopf_fault_read(&fb, b, &rb, 10, true), 0);
	assert_int_equal(fb.cap, 16);
	assert_true(rb.cap >= 16 + 10);
	assert_int_equal(iopf_fault_read(&fb, b, &rb, 10, true), 12);
	iopf_backend_close(b);
	fake_free(f);
	iopf_fault_buf_fini(&fb);
	iopf_response_batch_fini(&rb);
}

/*
 * A budget smaller than the buffer: a read asks for that many records (whole
 * groups that fit), and a first group longer than the budget is read whole,
 * without growing the buffer and without dropping the group.
 */
static void test_read_budget(void **state)
{
	struct fake *f = fake_new(false);
	struct iopf_backend *b = fake_backend(f);
	struct iopf_response_batch rb;
	struct iopf_fault_buf fb;

	(void)state;
	assert_int_equal(iopf_response_batch_init(&rb, 8), 0);
	assert_int_equal(iopf_fault_buf_init(&fb, 8, 8), 0);
	for (int i = 0; i < 3; i++)
		inject_group(f, 1);
	inject_group(f, 3);
	fb.budget = 2;
	assert_int_equal(iopf_fault_read(&fb, b, &rb, 0, false), 2);
	fb.budget = 2;
	assert_int_equal(iopf_fault_read(&fb, b, &rb, 0, false), 1); /* the 3 do not fit in 2 */
	fb.budget = 2;
	assert_int_equal(iopf_fault_read(&fb, b, &rb, 0, false), 3);
	assert_true(fb.recs[2].flags & LAST);
	assert_int_equal(fb.cap, 8);
	assert_int_equal(fake_pending(f), 0);
	iopf_backend_close(b);
	fake_free(f);
	iopf_fault_buf_fini(&fb);
	iopf_response_batch_fini(&rb);
}

TEST_MAIN(cmocka_unit_test(test_empty), cmocka_unit_test(test_whole_groups),
	  cmocka_unit_test(test_unknown_flags_masked),
	  cmocka_unit_test(test_unknown_flags_one_record),
	  cmocka_unit_test(test_unknown_flags_bad_group),
	  cmocka_unit_test(test_cookie_changes_early), cmocka_unit_test(test_batch_ends_mid_group),
	  cmocka_unit_test(test_mixed_keys), cmocka_unit_test(test_pasid_out_of_range),
	  cmocka_unit_test(test_read_grows), cmocka_unit_test(test_read_budget));
