/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The resolver against the fake kernel: checks, fault-around, EEXIST, errors, unmap. */
#include "dp-test.h"

#include <string.h>

#include "fake-backend.h"
#include "resolve.h"

#define PG   IOPF_PAGE_SIZE
#define KiB  UINT64_C(1024)
#define BASE UINT64_C(0x1000000)
#define R    IOPF_ACCESS_READ
#define W    IOPF_ACCESS_WRITE
#define X    IOPF_ACCESS_EXEC

struct fx {
	int memfd;
	struct fake *f;
	struct iopf_backend *b;
	struct iopf_resolver rs;
	struct iopf_region *r;
	struct iopf_region_set *set;
	struct iopf_counters c;
};

static int setup_mode(void **state, bool uptr)
{
	struct fx *x = calloc(1, sizeof(*x));

	x->memfd = test_memfd(1024 * PG);
	x->f = fake_new(uptr);
	x->b = fake_backend(x->f);
	x->rs = (struct iopf_resolver){.backend = x->b, .fault_around = 64 * KiB};
	*state = x;
	return 0;
}

static int setup(void **state)
{
	return setup_mode(state, false);
}

static int setup_uptr(void **state)
{
	return setup_mode(state, true);
}

static int teardown(void **state)
{
	struct fx *x = *state;

	if (x->set) {
		struct iopf_region_set_iter it;

		for (struct iopf_region *r = iopf_region_set_first(x->set, &it); r;
		     r = iopf_region_set_next(&it))
			iopf_region_free(r);
	}
	iopf_region_set_free(x->set);
	iopf_backend_close(x->b);
	fake_free(x->f);
	close(x->memfd);
	free(x);
	return 0;
}

static struct iopf_region *region(struct fx *x, uint64_t iova, uint64_t len, uint32_t access)
{
	struct iopf_region *r;
	struct iopf_region_set *n;

	assert_int_equal(iopf_region_new(1, x->memfd, 0, iova, len, access, &r), 0);
	assert_int_equal(iopf_region_set_add(x->set, r, &n), 0);
	iopf_region_set_free(x->set);
	x->set = n;
	return r;
}

/* The lowest region of the set. */
static struct iopf_region *first(struct fx *x)
{
	struct iopf_region_set_iter it;

	return iopf_region_set_first(x->set, &it);
}

static enum iopf_reason fault(struct fx *x, uint64_t addr, uint32_t perm)
{
	return iopf_resolve_fault(&x->rs, x->set, addr, perm, &x->c);
}

/* Map calls so far must be exactly these (iova, pages, result). */
static void expect_calls(struct fx *x, const uint64_t (*want)[3], size_t n)
{
	struct fake_map_call *c;
	size_t got = fake_map_calls(x->f, &c);

	assert_int_equal(got, n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(c[i].iova, want[i][0]);
		assert_int_equal(c[i].length, want[i][1] * PG);
		assert_int_equal(c[i].result, (int)(int64_t)want[i][2]);
	}
	free(c);
}

static void test_permission_and_outside(void **state)
{
	struct fx *x = *state;

	region(x, BASE, 64 * PG, R);
	region(x, BASE + 128 * PG, 16 * PG, R | W | X);
	assert_int_equal(fault(x, BASE, IOMMU_PGFAULT_PERM_WRITE), IOPF_REASON_PERMISSION);
	assert_int_equal(fault(x, BASE, IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_PRIV),
			 IOPF_REASON_PERMISSION);
	assert_int_equal(fault(x, BASE - 1, IOMMU_PGFAULT_PERM_READ), IOPF_REASON_OUTSIDE_REGION);
	assert_int_equal(fault(x, BASE + 64 * PG, IOMMU_PGFAULT_PERM_READ),
			 IOPF_REASON_OUTSIDE_REGION);
	expect_calls(x, NULL, 0);
	/* perm bits beyond IOPF_ACCESS_ALL are ignored, EXEC allowed where granted */
	assert_int_equal(fault(x, BASE + 128 * PG,
			       0x10 | IOMMU_PGFAULT_PERM_EXEC | IOMMU_PGFAULT_PERM_WRITE),
			 IOPF_REASON_RESOLVED);
	assert_int_equal(fault(x, BASE + 5 * PG + 7, 0), IOPF_REASON_RESOLVED);
	assert_int_equal(x->c.maps, 2);
}

static void test_window_clipping(void **state)
{
	struct fx *x = *state;
	struct fake_map_call *c;

	/* a region that starts and ends inside 64 KiB windows */
	region(x, BASE + 8 * PG, 20 * PG, R | W);
	assert_int_equal(fault(x, BASE + 9 * PG + 123, IOMMU_PGFAULT_PERM_READ),
			 IOPF_REASON_RESOLVED);
	assert_int_equal(fault(x, BASE + 27 * PG, IOMMU_PGFAULT_PERM_WRITE), IOPF_REASON_RESOLVED);
	const uint64_t want[][3] = {{BASE + 8 * PG, 8, 0}, {BASE + 16 * PG, 12, 0}};
	expect_calls(x, want, 2);
	assert_int_equal(fake_map_calls(x->f, &c), 2);
	assert_int_equal(c[0].offset, 0);
	assert_int_equal(c[1].offset, 8 * PG);
	assert_int_equal(c[0].prot, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE);
	free(c);
	assert_int_equal(x->c.pages_mapped, 20);
	assert_int_equal(x->c.bytes_mapped, 20 * PG);
	assert_int_equal(first(x)->bytes_mapped, 20 * PG);
}

static void test_no_remap_and_coalesce(void **state)
{
	struct fx *x = *state;

	region(x, BASE, 64 * PG, R);
	/* first a one-page window */
	x->rs.fault_around = PG;
	assert_int_equal(fault(x, BASE + 5 * PG, IOMMU_PGFAULT_PERM_READ), IOPF_REASON_RESOLVED);
	assert_int_equal(fault(x, BASE + 9 * PG, IOMMU_PGFAULT_PERM_READ), IOPF_REASON_RESOLVED);
	/* then 64 KiB: the holes around pages 5 and 9, the faulting page's hole first */
	x->rs.fault_around = 64 * KiB;
	assert_int_equal(fault(x, BASE + 7 * PG, IOMMU_PGFAULT_PERM_READ), IOPF_REASON_RESOLVED);
	const uint64_t want[][3] = {
		{BASE + 5 * PG, 1, 0}, {BASE + 9 * PG, 1, 0},  {BASE + 6 * PG, 3, 0},
		{BASE, 5, 0},	       {BASE + 10 * PG, 6, 0},
	};
	expect_calls(x, want, 5);
	/* everything in the window is ours now: duplicates coalesce without a call */
	assert_int_equal(fault(x, BASE + 15 * PG, IOMMU_PGFAULT_PERM_READ), IOPF_REASON_RESOLVED);
	assert_int_equal(fault(x, BASE + 5 * PG, IOMMU_PGFAULT_PERM_READ), IOPF_REASON_RESOLVED);
	assert_int_equal(x->c.coalesced, 2);
	assert_int_equal(x->c.maps, 5);
	assert_int_equal(x->c.pages_mapped, 16);

	/* unmap names each earlier call exactly */
	assert_int_equal(iopf_resolve_unmap_region(x->b, first(x), &x->c), 0);
	assert_int_equal(fake_unmaps(x->f), 5);
	assert_int_equal(fake_bad_unmaps(x->f), 0);
	assert_int_equal(x->c.bytes_mapped, 0);
	assert_int_equal(first(x)->bytes_mapped, 0);
	assert_false(iopf_region_page_mapped(first(x), 5));
	/* and mapping works again afterwards */
	assert_int_equal(fault(x, BASE + 5 * PG, IOMMU_PGFAULT_PERM_READ), IOPF_REASON_RESOLVED);
	assert_int_equal(x->c.maps, 6);
}

static void test_eexist(void **state)
{
	struct fx *x = *state;
	struct fake_mapping *m;

	region(x, BASE, 64 * PG, R);
	fake_premap(x->f, BASE + 8 * PG, PG); /* the tenant mapped page 8 itself */
	assert_int_equal(fault(x, BASE + 2 * PG, IOMMU_PGFAULT_PERM_READ), IOPF_REASON_RESOLVED);
	/* page 8 itself: its run fails, the single page fails too: resolved, not ours */
	assert_int_equal(fault(x, BASE + 8 * PG, IOMMU_PGFAULT_PERM_READ), IOPF_REASON_RESOLVED);
	const uint64_t want[][3] = {
		{BASE, 16, (uint64_t)-EEXIST},
		{BASE + 2 * PG, 1, 0},
		{BASE + 3 * PG, 13, (uint64_t)-EEXIST},
		{BASE + 8 * PG, 1, (uint64_t)-EEXIST},
	};
	expect_calls(x, want, 4);
	assert_true(iopf_region_page_mapped(first(x), 2));
	assert_false(iopf_region_page_mapped(first(x), 8));
	assert_int_equal(x->c.pages_mapped, 1);

	/* unmap leaves the tenant's mapping alone */
	assert_int_equal(iopf_resolve_unmap_region(x->b, first(x), &x->c), 0);
	assert_int_equal(fake_unmaps(x->f), 1);
	assert_int_equal(fake_mappings(x->f, &m), 0);
	free(m);

	/*
	 * A WRITE to a page mapped elsewhere (the region allows WRITE) is not
	 * resolved: that mapping's access is unknown. READ and EXEC are. Nothing
	 * is tracked either way.
	 */
	struct iopf_region *rw = region(x, BASE + 64 * PG, 64 * PG, R | W | X);
	fake_premap(x->f, BASE + 70 * PG, PG); /* e.g. another domain's read-only region */
	assert_int_equal(fault(x, BASE + 70 * PG, IOMMU_PGFAULT_PERM_WRITE),
			 IOPF_REASON_MAPPED_ELSEWHERE);
	assert_int_equal(
		fault(x, BASE + 70 * PG, IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE),
		IOPF_REASON_MAPPED_ELSEWHERE);
	assert_int_equal(fault(x, BASE + 70 * PG, IOMMU_PGFAULT_PERM_READ), IOPF_REASON_RESOLVED);
	assert_int_equal(fault(x, BASE + 70 * PG, IOMMU_PGFAULT_PERM_EXEC), IOPF_REASON_RESOLVED);
	assert_false(iopf_region_page_mapped(rw, 6));
	/* a WRITE to a page the region mapped itself: mapped once, then coalesced */
	assert_int_equal(fault(x, BASE + 66 * PG, IOMMU_PGFAULT_PERM_WRITE), IOPF_REASON_RESOLVED);
	assert_true(iopf_region_page_mapped(rw, 2));
	assert_int_equal(x->c.coalesced, 0);
	assert_int_equal(fault(x, BASE + 66 * PG, IOMMU_PGFAULT_PERM_WRITE), IOPF_REASON_RESOLVED);
	assert_int_equal(x->c.coalesced, 1);
	assert_int_equal(iopf_resolve_unmap_region(x->b, rw, &x->c), 0);
	assert_int_equal(fake_mappings(x->f, &m), 0);
	free(m);
}

static void test_map_error(void **state)
{
	struct fx *x = *state;

	region(x, BASE, 64 * PG, R);
	/* the run fails once, the page alone then works */
	fake_fail_map(x->f, BASE + 4 * PG, ENOMEM, 1);
	assert_int_equal(fault(x, BASE + 4 * PG, IOMMU_PGFAULT_PERM_READ), IOPF_REASON_RESOLVED);
	/* after a failed run the rest of the window is not fetched: it would fail too */
	const uint64_t want[][3] = {
		{BASE, 16, (uint64_t)-ENOMEM},
		{BASE + 4 * PG, 1, 0},
	};
	expect_calls(x, want, 2);
	assert_int_equal(x->c.pages_mapped, 1);

	/* persistent failure: MAP_ERROR */
	fake_fail_map(x->f, BASE + 20 * PG, EFAULT, -1);
	assert_int_equal(fault(x, BASE + 20 * PG, IOMMU_PGFAULT_PERM_READ), IOPF_REASON_MAP_ERROR);
	/* a failing single-page window goes straight to MAP_ERROR, no pointless retry */
	x->rs.fault_around = PG;
	assert_int_equal(fault(x, BASE + 20 * PG, IOMMU_PGFAULT_PERM_READ), IOPF_REASON_MAP_ERROR);
	const uint64_t want2[][3] = {
		{BASE, 16, (uint64_t)-ENOMEM},		 {BASE + 4 * PG, 1, 0},
		{BASE + 16 * PG, 16, (uint64_t)-EFAULT}, {BASE + 20 * PG, 1, (uint64_t)-EFAULT},
		{BASE + 20 * PG, 1, (uint64_t)-EFAULT},
	};
	expect_calls(x, want2, 5);
	/* prefetch failures elsewhere do not fail the fault */
	x->rs.fault_around = 64 * KiB;
	fake_fail_map(x->f, BASE + 48 * PG, EFAULT, -1);
	region(x, BASE + 64 * PG, PG, R); /* unrelated */
	assert_int_equal(fault(x, BASE + 40 * PG, IOMMU_PGFAULT_PERM_READ), IOPF_REASON_RESOLVED);
	assert_int_equal(iopf_resolve_unmap_region(x->b, first(x), &x->c), 0);
	assert_int_equal(fake_bad_unmaps(x->f), 0);
}

static void test_uptr(void **state)
{
	struct fx *x = *state;
	struct iopf_region *r = region(x, BASE, 64 * PG, R | W);
	struct fake_map_call *c;

	assert_int_equal(fault(x, BASE + PG, IOMMU_PGFAULT_PERM_WRITE), IOPF_REASON_RESOLVED);
	assert_non_null(r->uptr);
	assert_int_equal(fake_map_calls(x->f, &c), 1);
	assert_true(c[0].had_uptr);
	free(c);
	((char *)r->uptr)[3 * PG] = 'x'; /* writable shared view of the memfd */
	{
		char b;

		assert_int_equal(pread(x->memfd, &b, 1, 3 * PG), 1);
		assert_int_equal(b, 'x');
	}
	assert_int_equal(iopf_resolve_unmap_region(x->b, r, &x->c), 0);
}

/*
 * A restarted iopfd finds a map call in the journal whose tracking the crash
 * cut short: its pages marked, the extent's start not. It was made, so it is
 * tracked whole, and goes with the region in one exact unmap.
 */
static void test_readopt_half_tracked(void **state)
{
	struct fx *x = *state;
	struct iopf_region *r = region(x, BASE, 64 * PG, R);
	const struct iopf_map_req req = {.iova = BASE + 16 * PG,
					 .length = 16 * PG,
					 .prot = r->prot,
					 .fd = r->fd,
					 .offset = 16 * PG};
	struct fake_mapping *m;
	struct fake_map_call *c;

	assert_int_equal(x->b->ops->map(x->b, &req), 0);
	r->mapped[0] |= UINT64_C(0xf) << 16; /* 4 of its 16 pages marked when it died */
	assert_int_equal(iopf_resolve_readopt(x->b, r, BASE + 16 * PG, 16 * PG, &x->c), 0);
	for (uint64_t pg = 16; pg < 32; pg++)
		assert_true(iopf_region_page_mapped(r, pg));
	assert_int_equal(fake_map_calls(x->f, &c), 1); /* not made again */
	free(c);
	assert_int_equal(iopf_resolve_unmap_region(x->b, r, &x->c), 0);
	assert_int_equal(fake_bad_unmaps(x->f), 0);
	assert_int_equal(fake_unmaps(x->f), 1);
	assert_int_equal(fake_mappings(x->f, &m), 0);
	free(m);
}

TEST_MAIN(TEST(test_permission_and_outside), TEST(test_window_clipping),
	  TEST(test_no_remap_and_coalesce), TEST(test_eexist), TEST(test_map_error),
	  TEST_WITH(test_uptr, setup_uptr), TEST(test_readopt_half_tracked));
