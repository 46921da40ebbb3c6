/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fail-nth: run an engine scenario with the Nth allocation of our code failing,
 * for N = 1, 2, ... until a run sees no injected failure. Every run must end
 * with -ENOMEM or success, leave the fake kernel consistent (each group
 * answered once, nothing mapped, nothing unmapped wrongly) and, under ASan,
 * leak nothing. Only our objects' allocations are wrapped (-Wl,--wrap), not
 * those inside libc, liburcu or liburing.
 */
#include "dp-test.h"

#include <poll.h>

#include "engine-internal.h"
#include "fake-backend.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);

static int armed;	 /* inject only inside engine calls */
static unsigned fail_at; /* 1-based index of the allocation to fail */
static unsigned count;	 /* allocations seen while armed */

static bool should_fail(void)
{
	if (!__atomic_load_n(&armed, __ATOMIC_RELAXED))
		return false;
	return __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED) == fail_at;
}

void *__wrap_malloc(size_t n)
{
	return should_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
	return should_fail() ? NULL : __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
	return should_fail() ? NULL : __real_realloc(p, n);
}

#define ARMED(expr)                                                                                \
	({                                                                                         \
		__atomic_store_n(&armed, 1, __ATOMIC_RELAXED);                                     \
		__typeof__(expr) _r = (expr);                                                      \
		__atomic_store_n(&armed, 0, __ATOMIC_RELAXED);                                     \
		_r;                                                                                \
	})

static unsigned dones;

static void on_done(void *userdata, int error)
{
	dones++;
}

static uint64_t groups(struct iopf_engine *e, uint64_t dom)
{
	struct iopf_domain_info i;

	assert_int_equal(iopf_engine_domain_info(e, dom, &i), 0);
	return i.counters.groups;
}

static int scenario(struct fake *f, int memfd, bool *ret_opened)
{
	struct iopf_engine_config cfg = {.n_workers = 2, .read_batch = 2};
	struct iopf_engine *e = NULL;
	struct iopf_backend *b;
	uint64_t src, dom, reg1, reg2, dom2;
	struct iommu_hwpt_pgfault g[5] = {};
	int r;

	r = ARMED(iopf_engine_new(&cfg, &e));
	if (r < 0)
		return r;
	b = fake_backend(f);
	*ret_opened = true; /* from here on it must end up closed, by us or the engine */
	r = ARMED(__iopf_engine_add_backend(e, 1, b, &src));
	if (r < 0) {
		iopf_backend_close(b); /* not taken on failure */
		goto out;
	}
	r = ARMED(iopf_engine_add_domain(e, src, 3, IOPF_PASID_NONE, &dom));
	if (r < 0)
		goto out;
	r = ARMED(iopf_engine_add_domain(e, src, 3, 1, &dom2));
	if (r < 0)
		goto out;
	r = ARMED(iopf_engine_add_region(e, dom, memfd, 0, 0x100000, 0x100000, IOPF_ACCESS_READ,
					 &reg1));
	if (r < 0)
		goto out;
	r = ARMED(iopf_engine_add_region(e, dom, memfd, 0, 0x300000, 0x100000, IOPF_ACCESS_READ,
					 &reg2));
	if (r < 0)
		goto out;

	/* a 5-record group: with read_batch 2 the worker must grow its buffer */
	for (int i = 0; i < 5; i++) {
		g[i].dev_id = 3;
		g[i].perm = IOMMU_PGFAULT_PERM_READ;
		g[i].addr = 0x100000 + (uint64_t)i * 0x40000;
		g[i].flags = i == 4 ? IOMMU_PGFAULT_FLAGS_LAST_PAGE : 0;
	}
	g[3].addr = 0x300000;
	/* disarmed: the worker's own (rare) allocations are not what this counts */
	fake_inject(f, g, 5);
	WAIT_FOR(groups(e, dom) == 1);
	r = ARMED(iopf_engine_remove_region(e, reg2, on_done, NULL));
	if (r < 0)
		goto out;
	r = ARMED(iopf_engine_remove_domain(e, dom2, on_done, NULL));
out:
	e = iopf_engine_free(e);
	return r;
}

static void test_fail_nth(void **state)
{
	unsigned n;
	int memfd = test_memfd(0x100000);

	for (n = 1; n < 10000; n++) {
		struct fake *f = fake_new(false);
		struct fake_mapping *m;
		bool opened = false;
		int r;

		fail_at = n;
		count = 0;
		dones = 0;
		r = scenario(f, memfd, &opened);
		assert_true(r == 0 || r == -ENOMEM);
		assert_true(fake_all_answered_once(f));
		assert_int_equal(fake_outstanding(f), 0);
		assert_int_equal(fake_bad_unmaps(f), 0);
		assert_int_equal(fake_mappings(f, &m), 0);
		free(m);
		assert_int_equal(fake_closed(f), opened);
		fake_free(f);
		if (r == 0 && count < n)
			break; /* a whole run without an injected failure */
	}
	print_message("fail-nth: %u allocation points\n", n - 1);
	assert_true(n > 10 && n < 10000);
	close(memfd);
}

TEST_MAIN(cmocka_unit_test(test_fail_nth));
