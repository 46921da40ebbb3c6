/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/control/control.c, the operations side, against the in-memory engine: live
 * limits and MaxPinnedBytes, totals that survive removals, who may read
 * whose metrics.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "control.h"
#include "fake-engine.h"
#include "sim.h"
#include "util.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)

struct fixture {
	struct iopf_engine *engine;
	struct iopf_control *control;
	uint64_t a, b, root;
	int fault_fd, iommufd, mem;
};

static int setup(void **state)
{
	struct iopf_engine_config cfg = {.n_workers = 1, .sim_open = iopf_sim_backend_open};
	struct iopf_control_limits limits = {
		.max_sources = 4,
		.max_domains = 4,
		.max_regions = 8,
		.max_pinned_bytes = 256 * KiB,
	};
	struct fixture *f = calloc(1, sizeof(*f));

	assert_int_equal(iopf_engine_new(&cfg, &f->engine), 0);
	assert_int_equal(iopf_control_new(f->engine, &limits, &f->control), 0);
	assert_int_equal(iopf_control_tenant_add(f->control, "a", 1000, 1000, 10, &f->a), 0);
	assert_int_equal(iopf_control_tenant_add(f->control, "b", 1001, 1001, 11, &f->b), 0);
	assert_int_equal(iopf_control_tenant_add(f->control, "root", 0, 0, 1, &f->root), 0);
	f->fault_fd = eventfd(0, EFD_CLOEXEC);
	f->iommufd = memfd_create("iopf-sim", MFD_CLOEXEC);
	f->mem = memfd_create("region", MFD_CLOEXEC);
	assert_int_equal(ftruncate(f->mem, (off_t)MiB), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	/* the engine first: the registry takes its retired statistics */
	iopf_engine_free(f->engine);
	iopf_control_free(f->control);
	close(f->fault_fd);
	close(f->iommufd);
	close(f->mem);
	free(f);
	return 0;
}

static uint64_t source(struct fixture *f, uint64_t tenant)
{
	struct iopf_control_error err = {};
	uint64_t id;

	if (iopf_control_register_source(f->control, tenant, f->fault_fd, f->iommufd, 1, &id,
					 &err) < 0)
		fail_msg("%s", err.message);
	return id;
}

static uint64_t domain(struct fixture *f, uint64_t tenant, uint64_t src, uint32_t dev)
{
	struct iopf_control_error err = {};
	uint64_t id;

	if (iopf_control_register_domain(f->control, tenant, src, dev, IOPF_PASID_NONE, &id, &err) <
	    0)
		fail_msg("%s", err.message);
	return id;
}

static int region(struct fixture *f, uint64_t tenant, uint64_t dom, uint64_t iova, uint64_t len,
		  struct iopf_control_error *err)
{
	uint64_t id;

	return iopf_control_add_region(f->control, tenant, dom, f->mem, 0, iova, len,
				       IOPF_ACCESS_READ, &id, err);
}

static void dispatch(struct fixture *f)
{
	(void)iopf_engine_dispatch(f->engine);
}

static void noop_done(void *userdata, int error)
{
}

/* MaxPinnedBytes bounds the sum of a tenant's region lengths, at AddRegion. */
static void test_max_pinned(void **state)
{
	struct fixture *f = *state;
	struct iopf_control_error err = {};
	uint64_t d = domain(f, f->a, source(f, f->a), 1);
	uint64_t d2 = domain(f, f->b, source(f, f->b), 1);

	assert_int_equal(region(f, f->a, d, 16 * MiB, 128 * KiB, &err), 0);
	assert_int_equal(region(f, f->a, d, 32 * MiB, 128 * KiB, &err), 0);
	assert_int_equal(region(f, f->a, d, 48 * MiB, 4 * KiB, &err), -EDQUOT);
	assert_string_equal(err.message,
			    "tenant's regions would cover 266240 bytes, more than "
			    "MaxPinnedBytes=262144 (what iopfd may pin for one tenant)");
	/* per tenant: b has its own budget */
	assert_int_equal(region(f, f->b, d2, 16 * MiB, 256 * KiB, &err), 0);

	/* what counts against it is in the tenant's totals */
	{
		struct iopf_control_stats st;

		assert_int_equal(iopf_control_tenant_stats(f->control, f->a, f->a, &st, &err), 0);
		assert_int_equal(st.region_bytes, 256 * KiB);
		assert_int_equal(st.regions, 2);
	}
}

/* A reload changes the limits for what comes next; what is there stays. */
static void test_set_limits(void **state)
{
	struct fixture *f = *state;
	struct iopf_control_error err = {};
	struct iopf_control_limits l = {
		.max_sources = 1, .max_domains = 4, .max_regions = 8, .max_pinned_bytes = 0};
	uint64_t s = source(f, f->a), id;

	assert_int_equal(iopf_control_register_source(f->control, f->a, f->fault_fd, f->iommufd, 1,
						      &id, &err),
			 0);
	assert_int_equal(iopf_control_set_limits(f->control, &l), 0);
	assert_int_equal(iopf_control_register_source(f->control, f->a, f->fault_fd, f->iommufd, 1,
						      &id, &err),
			 -EDQUOT);
	assert_string_equal(err.message, "tenant already has 2 fault sources (MaxSources=1)");
	/* max_pinned_bytes 0: none */
	assert_int_equal(region(f, f->a, domain(f, f->a, s, 1), 16 * MiB, MiB, &err), 0);

	/* out of range: refused, nothing changes */
	l.max_domains = 0;
	assert_int_equal(iopf_control_set_limits(f->control, &l), -EINVAL);
	l.max_domains = 4;
	l.max_pinned_bytes = 100;
	assert_int_equal(iopf_control_set_limits(f->control, &l), -EINVAL);
	assert_int_equal(iopf_control_set_limits(f->control, NULL), -EINVAL);
	assert_int_equal(iopf_control_register_source(f->control, f->b, f->fault_fd, f->iommufd, 1,
						      &id, &err),
			 0);
	assert_int_equal(iopf_control_register_source(f->control, f->b, f->fault_fd, f->iommufd, 1,
						      &id, &err),
			 -EDQUOT);
}

static struct iopf_counters counters(uint64_t faults, uint64_t bad)
{
	struct iopf_counters c = {.faults = faults, .groups = faults};

	c.success = faults - bad;
	c.invalid = bad;
	c.reasons[IOPF_REASON_RESOLVED] = faults - bad;
	c.reasons[IOPF_REASON_PERMISSION] = bad;
	c.bytes_mapped = 8192;
	return c;
}

static struct iopf_histogram latency(uint64_t n)
{
	struct iopf_histogram h = {};

	for (uint64_t i = 0; i < n; i++)
		iopf_histogram_record(&h, 1500 * (i + 1));
	return h;
}

/* Tenant and daemon totals keep the numbers of removed domains and of gone tenants. */
static void test_totals_survive_removal(void **state)
{
	struct fixture *f = *state;
	struct iopf_control_error err = {};
	struct iopf_control_stats st;
	uint64_t s = source(f, f->a), d1 = domain(f, f->a, s, 1), d2 = domain(f, f->a, s, 2);
	uint64_t db = domain(f, f->b, source(f, f->b), 1);
	struct iopf_counters c1 = counters(10, 2), c2 = counters(5, 1), cb = counters(7, 0);
	struct iopf_histogram h1 = latency(10), h2 = latency(5), hb = latency(7);

	assert_int_equal(__iopf_fake_engine_set_counters(d1, &c1), 0);
	assert_int_equal(__iopf_fake_engine_set_counters(d2, &c2), 0);
	assert_int_equal(__iopf_fake_engine_set_counters(db, &cb), 0);
	assert_int_equal(__iopf_fake_engine_set_latency(d1, &h1), 0);
	assert_int_equal(__iopf_fake_engine_set_latency(d2, &h2), 0);
	assert_int_equal(__iopf_fake_engine_set_latency(db, &hb), 0);

	assert_int_equal(iopf_control_tenant_stats(f->control, f->a, f->a, &st, &err), 0);
	assert_int_equal(st.counters.faults, 15);
	assert_int_equal(st.counters.reasons[IOPF_REASON_PERMISSION], 3);
	assert_int_equal(st.counters.bytes_mapped, 16384);
	assert_int_equal(st.latency.count, 15);
	assert_int_equal(st.domains, 2);
	assert_int_equal(st.sources, 1);

	/* in removal: gone from listings, still in totals; then folded in, still there */
	assert_int_equal(
		iopf_control_unregister_domain(f->control, f->a, d1, noop_done, NULL, &err), 0);
	assert_int_equal(iopf_control_tenant_stats(f->control, f->a, f->a, &st, &err), 0);
	assert_int_equal(st.counters.faults, 15);
	assert_int_equal(st.latency.count, 15);
	assert_int_equal(st.domains, 1);
	dispatch(f);
	assert_int_equal(iopf_control_tenant_stats(f->control, f->a, f->a, &st, &err), 0);
	assert_int_equal(st.counters.faults, 15);
	assert_int_equal(st.latency.count, 15);
	assert_int_equal(st.latency.sum_ns, h1.sum_ns + h2.sum_ns);
	assert_int_equal(st.counters.bytes_mapped, 8192); /* a gauge: only what is live */

	/* the daemon: everyone, and gone tenants too */
	assert_int_equal(iopf_control_total_stats(f->control, f->root, &st, &err), 0);
	assert_int_equal(st.counters.faults, 22);
	assert_int_equal(iopf_control_tenant_remove(f->control, f->b), 2);
	assert_int_equal(iopf_control_total_stats(f->control, 0, &st, &err), 0);
	assert_int_equal(st.counters.faults, 22); /* in removal */
	dispatch(f);
	assert_int_equal(iopf_control_total_stats(f->control, 0, &st, &err), 0);
	assert_int_equal(st.counters.faults, 22); /* folded into the daemon's totals */
	assert_int_equal(st.latency.count, 22);
	assert_int_equal(st.domains, 1);
}

struct seen {
	uint64_t ids[8];
	unsigned n;
};

static int collect(const struct iopf_tenant_info *t, const struct iopf_control_stats *st,
		   void *userdata)
{
	struct seen *s = userdata;

	assert_true(s->n < 8);
	s->ids[s->n++] = t->id;
	return 0;
}

/* A tenant reads its own metrics; only uid 0 (or the daemon itself) reads everyone's. */
static void test_visibility(void **state)
{
	struct fixture *f = *state;
	struct iopf_control_error err = {};
	struct iopf_control_stats st;
	struct seen s = {};

	assert_int_equal(iopf_control_foreach_tenant(f->control, f->a, false, collect, &s, &err),
			 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.ids[0], f->a);
	assert_int_equal(iopf_control_foreach_tenant(f->control, f->a, true, collect, &s, &err),
			 -EPERM);
	assert_int_equal(iopf_control_total_stats(f->control, f->a, &st, &err), -EPERM);
	assert_int_equal(iopf_control_tenant_stats(f->control, f->a, f->b, &st, &err), -ENOENT);
	assert_string_equal(err.message, "no tenant 2");
	assert_int_equal(iopf_control_tenant_stats(f->control, f->a, 99, &st, &err), -ENOENT);
	assert_string_equal(err.message, "no tenant 99"); /* the same answer: ids leak nothing */
	assert_int_equal(iopf_control_tenant_stats(f->control, 99, f->a, &st, &err), -ENOENT);

	/* root, and the daemon itself, see everyone in ascending order */
	s.n = 0;
	assert_int_equal(iopf_control_foreach_tenant(f->control, f->root, true, collect, &s, &err),
			 0);
	assert_int_equal(s.n, 3);
	assert_true(s.ids[0] == f->a && s.ids[1] == f->b && s.ids[2] == f->root);
	s.n = 0;
	assert_int_equal(iopf_control_foreach_tenant(f->control, 0, true, collect, &s, &err), 0);
	assert_int_equal(s.n, 3);
	assert_int_equal(iopf_control_foreach_tenant(f->control, 0, false, collect, &s, &err),
			 -ENOENT);
	assert_int_equal(iopf_control_tenant_stats(f->control, f->root, f->b, &st, &err), 0);
}

static int stop_early(const struct iopf_tenant_info *t, const struct iopf_control_stats *st,
		      void *userdata)
{
	return -ENOBUFS;
}

static void test_foreach_error(void **state)
{
	struct fixture *f = *state;
	struct iopf_control_error err = {};

	assert_int_equal(
		iopf_control_foreach_tenant(f->control, f->root, true, stop_early, NULL, &err),
		-ENOBUFS);
	assert_non_null(strstr(err.message, "cannot list tenants"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_max_pinned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_totals_survive_removal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_visibility, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreach_error, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
