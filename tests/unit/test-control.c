/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/control/control.c against the in-memory engine (tests/fakes/fake-engine.c, linked
 * in place of lib/dataplane/engine.c): validation tables, ownership, limits, teardown;
 * then the operations side: live limits and MaxPinnedBytes, totals that survive
 * removals, who may read whose metrics.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include "unit-test.h"

#include "control-count.h"
#include "control.h"
#include "wire.h"
#include "fake-engine.h"
#include "fd-util.h"
#include "proc-fds.h"
#include "test-fds.h"
#include "sim.h"
#include "util.h"

#define KiB	    (UINT64_C(1) << 10)
#define MiB	    (UINT64_C(1) << 20)
#define MAX_SOURCES 2
#define MAX_DOMAINS 3
#define MAX_REGIONS 4
#define MEM_SIZE    (UINT64_C(1) << 20)
#define RW	    (IOPF_ACCESS_READ | IOPF_ACCESS_WRITE)

struct fixture {
	struct iopf_engine *engine;
	struct iopf_control *control;
	uint64_t a, b, root; /* tenants: two users and an operator */
	int fault_fd, iommufd, mem;
};

static int sim_iommufd(void)
{
	int fd = memfd_create("iopf-sim", MFD_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

static int setup(void **state)
{
	struct iopf_engine_config cfg = {.n_workers = 1, .sim_open = iopf_sim_backend_open};
	struct iopf_control_limits limits = {MAX_SOURCES, MAX_DOMAINS, MAX_REGIONS};
	struct fixture *f = calloc(1, sizeof(*f));

	if (*state) /* a test that wants other limits passes them as its prestate */
		limits = *(struct iopf_control_limits *)*state;

	assert_int_equal(iopf_engine_new(&cfg, &f->engine), 0);
	assert_int_equal(iopf_control_new(f->engine, &limits, &f->control), 0);
	assert_int_equal(
		iopf_control_tenant_add(f->control, "pid 10 uid 1000", 1000, 1000, 10, &f->a), 0);
	assert_int_equal(
		iopf_control_tenant_add(f->control, "pid 11 uid 1001", 1001, 1001, 11, &f->b), 0);
	assert_int_equal(iopf_control_tenant_add(f->control, "pid 1 uid 0", 0, 0, 1, &f->root), 0);
	f->fault_fd = eventfd(0, EFD_CLOEXEC);
	f->iommufd = sim_iommufd();
	f->mem = test_memfd(MEM_SIZE);
	assert_true(f->mem >= 0);
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

/*
 * A new object of @tenant that must be accepted: a source on the fixture's fds, a domain
 * (@a dev_id, @b pasid) on source @parent, a region [@a, @a + @b) of f->mem in domain @parent.
 */
static uint64_t add(struct fixture *f, enum control_kind k, uint64_t tenant, uint64_t parent,
		    uint64_t a, uint64_t b)
{
	struct iopf_control_error err = {};
	uint64_t id = 0;
	int r = -EINVAL;

	switch (k) {
	case CONTROL_SOURCES:
		r = iopf_control_register_source(f->control, tenant, f->fault_fd, f->iommufd, 1,
						 &id, &err);
		break;
	case CONTROL_DOMAINS:
		r = iopf_control_register_domain(f->control, tenant, parent, (uint32_t)a,
						 (uint32_t)b, &id, &err);
		break;
	case CONTROL_REGIONS:
		r = iopf_control_add_region(f->control, tenant, parent, f->mem, 0, a, b, RW, &id,
					    &err);
		break;
	}
	if (r < 0)
		fail_msg("adding a %s: %s", (const char *[]){"source", "domain", "region"}[k],
			 err.message);
	return id;
}

#define add_source(f, tenant) add(f, CONTROL_SOURCES, tenant, 0, 0, 0)
#define add_domain(f, tenant, source, dev, pasid)                                                  \
	add(f, CONTROL_DOMAINS, tenant, source, dev, pasid)
#define add_region(f, tenant, domain, iova, length)                                                \
	add(f, CONTROL_REGIONS, tenant, domain, iova, length)

static void expect(int r, int error, const struct iopf_control_error *err, const char *substring)
{
	if (r != error)
		fail_msg("got %d (%s), expected %d", r, err->message, error);
	if (substring && !strstr(err->message, substring))
		fail_msg("message \"%s\" lacks \"%s\"", err->message, substring);
}

/* ---- tenants ---- */

static void test_tenants(void **state)
{
	struct fixture *f = *state;
	struct iopf_tenant_info ti;
	uint64_t id;

	assert_int_equal(iopf_control_n_tenants(f->control), 3);
	assert_true(f->a != f->b && f->b != f->root && f->a != 0);
	assert_int_equal(iopf_control_tenant_info(f->control, f->b, &ti), 0);
	assert_int_equal(ti.uid, 1001);
	assert_int_equal(ti.pid, 11);
	assert_string_equal(ti.name, "pid 11 uid 1001");
	assert_int_equal(iopf_control_tenant_add(f->control, "", 0, 0, 0, &id), -EINVAL);
	assert_int_equal(iopf_control_tenant_remove(f->control, 4242), -ENOENT);
	assert_int_equal(iopf_control_tenant_info(f->control, 4242, &ti), -ENOENT);

	/* ids are never reused */
	assert_int_equal(iopf_control_tenant_remove(f->control, f->b), 0);
	assert_int_equal(iopf_control_tenant_add(f->control, "again", 1, 1, 1, &id), 0);
	assert_true(id > f->root);
	assert_int_equal(iopf_control_n_tenants(f->control), 3);

	/* an unknown tenant can do nothing */
	struct iopf_control_error err = {};
	assert_int_equal(iopf_control_register_source(f->control, f->b, f->fault_fd, f->iommufd, 1,
						      &id, &err),
			 -ENOENT);
}

/* Only a tenant that registered a source counts; a label is checked and kept. */
static void test_registered_and_label(void **state)
{
	struct fixture *f = *state;
	struct iopf_tenant_info ti;
	char big[IOPF_CONTROL_LABEL_MAX + 2];

	assert_int_equal(iopf_control_n_registered_tenants(f->control), 0);
	assert_int_equal(iopf_control_tenant_info(f->control, f->a, &ti), 0);
	assert_false(ti.registered);
	assert_null(ti.label);
	add_source(f, f->a);
	assert_int_equal(iopf_control_n_registered_tenants(f->control), 1);
	assert_int_equal(iopf_control_tenant_info(f->control, f->a, &ti), 0);
	assert_true(ti.registered);

	assert_int_equal(iopf_control_tenant_set_label(f->control, f->a, "vm-7.service"), 0);
	assert_int_equal(iopf_control_tenant_info(f->control, f->a, &ti), 0);
	assert_string_equal(ti.label, "vm-7.service");
	assert_int_equal(iopf_control_tenant_set_label(f->control, f->a, "a\nb"), -EINVAL);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	assert_int_equal(iopf_control_tenant_set_label(f->control, f->a, big), -EINVAL);
	big[IOPF_CONTROL_LABEL_MAX] = 0;
	assert_int_equal(iopf_control_tenant_set_label(f->control, f->a, big), 0);
	assert_int_equal(iopf_control_tenant_set_label(f->control, 4242, "x"), -ENOENT);
	assert_int_equal(iopf_control_tenant_set_label(f->control, f->a, NULL), 0);
	assert_int_equal(iopf_control_tenant_info(f->control, f->a, &ti), 0);
	assert_null(ti.label);

	assert_true(iopf_control_tenant_remove(f->control, f->a) >= 0);
	assert_int_equal(iopf_control_n_registered_tenants(f->control), 0);
}

static void test_new_limits(void **state)
{
	static const struct iopf_control_limits bad[] = {
		{0, 1, 1},
		{1, 0, 1},
		{1, 1, 0},
		{IOPF_CONTROL_LIMIT_MAX + 1, 1, 1},
	};
	struct fixture *f = *state;
	struct iopf_control *c;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(iopf_control_new(f->engine, &bad[i], &c), -EINVAL);
	assert_int_equal(iopf_control_new(NULL, NULL, &c), -EINVAL);
	assert_int_equal(iopf_control_new(f->engine, NULL, &c), 0);
	assert_null(iopf_control_free(c));
	assert_null(iopf_control_free(NULL));
}

/* ---- RegisterSource ---- */

static void test_source_validation(void **state)
{
	static const struct {
		const char *what;
		enum test_fd fault, iommu;
		uint32_t ioas;
		int inject; /* the engine's answer, when it gets asked */
		int error;
		bool engine_called;
		const char *msg;
	} cases[] = {
		{"pipe fault_fd", TFD_PIPE, TFD_SIM_IOMMU, 1, 0, -EBADF, false,
		 "fault_fd is not an iommufd fault queue (it is pipe:["},
		{"/dev/null fault_fd", TFD_DEVNULL, TFD_SIM_IOMMU, 1, 0, -EBADF, false,
		 "/dev/null"},
		{"socket fault_fd", TFD_SOCKET, TFD_SIM_IOMMU, 1, 0, -EBADF, false, "socket:["},
		{"memfd fault_fd", TFD_MEM, TFD_SIM_IOMMU, 1, 0, -EBADF, false, "/memfd:iopf-test"},
		{"closed fault_fd", TFD_CLOSED, TFD_SIM_IOMMU, 1, 0, -EBADF, false,
		 "fault_fd is not an open file descriptor"},
		{"negative fault_fd", TFD_NEG, TFD_SIM_IOMMU, 1, 0, -EBADF, false,
		 "fault_fd is not an open"},
		{"pipe iommufd", TFD_SIM_FAULT, TFD_PIPE, 1, 0, -EBADF, false,
		 "iommufd is not an iommufd (it is pipe:["},
		{"socket iommufd", TFD_SIM_FAULT, TFD_SOCKET, 1, 0, -EBADF, false,
		 "(it is socket:["},
		{"closed iommufd", TFD_SIM_FAULT, TFD_CLOSED, 1, 0, -EBADF, false,
		 "iommufd is not an open file descriptor"},
		{"ioas 0", TFD_SIM_FAULT, TFD_SIM_IOMMU, 0, 0, -EINVAL, false, "ioas_id 0"},
		/* the engine's own verdicts, each with its own message */
		{"/dev/null iommufd", TFD_SIM_FAULT, TFD_DEVNULL, 1, 0, -EBADF, true,
		 "are not an iommufd fault queue and its iommufd"},
		{"plain memfd iommufd", TFD_SIM_FAULT, TFD_MEM, 1, 0, -EBADF, true,
		 "are not an iommufd fault queue"},
		{"engine ENOTTY", TFD_SIM_FAULT, TFD_SIM_IOMMU, 1, -ENOTTY, -EBADF, true,
		 "are not an iommufd fault queue"},
		{"stray eventfd (engine EXDEV)", TFD_EVENTFD, TFD_SIM_IOMMU, 1, -EXDEV, -EBADF,
		 true,
		 "fault_fd (anon_inode:[eventfd]) is not the doorbell of the simulator context"},
		{"engine EOPNOTSUPP", TFD_SIM_FAULT, TFD_SIM_IOMMU, 1, -EOPNOTSUPP, -EOPNOTSUPP,
		 true, "--allow-simulator"},
		{"engine EINVAL", TFD_SIM_FAULT, TFD_SIM_IOMMU, 7, -EINVAL, -EINVAL, true,
		 "ioas_id 7 is not usable"},
		{"engine ENOMEM", TFD_SIM_FAULT, TFD_SIM_IOMMU, 1, -ENOMEM, -ENOMEM, true,
		 "cannot serve fault source"},
	};
	struct fixture *f = *state;
	const struct test_fds kinds = {f->fault_fd, f->iommufd, 4096};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct iopf_control_error err = {};
		unsigned calls = __iopf_fake_engine_calls(FAKE_ADD_SOURCE), fds = proc_fds_count();
		int e1 = -EBADF, e2 = -EBADF;
		int fault = test_fd(&kinds, cases[i].fault, &e1),
		    iommu = test_fd(&kinds, cases[i].iommu, &e2);
		uint64_t id = 0;
		int r;

		print_message("  %s\n", cases[i].what);
		if (cases[i].inject)
			__iopf_fake_engine_fail_next(FAKE_ADD_SOURCE, cases[i].inject);
		r = iopf_control_register_source(f->control, f->a, fault, iommu, cases[i].ioas, &id,
						 &err);
		expect(r, cases[i].error, &err, cases[i].msg);
		assert_int_equal(__iopf_fake_engine_calls(FAKE_ADD_SOURCE) - calls,
				 cases[i].engine_called);
		/* the caller's fds are borrowed, and no copy leaks on failure */
		if (fault >= 0 && fault < 1000)
			assert_true(fcntl(fault, F_GETFD) >= 0);
		if (fault < 1000)
			safe_close(fault);
		if (iommu < 1000)
			safe_close(iommu);
		safe_close(e1);
		safe_close(e2);
		assert_int_equal(proc_fds_count(), fds);
	}
}

static void test_source_fds_are_copies(void **state)
{
	struct fixture *f = *state;
	unsigned fds = proc_fds_count();
	uint64_t id = add_source(f, f->a);
	struct iopf_source_info si;

	/* the engine holds two CLOEXEC copies; ours stay open */
	assert_int_equal(proc_fds_count(), fds + 2);
	assert_true(fcntl(f->fault_fd, F_GETFD) >= 0);
	assert_int_equal(iopf_engine_source_info(f->engine, id, &si), 0);
	assert_int_equal(si.tenant, f->a);
	assert_string_equal(si.backend, "sim");
}

/* ---- RegisterDomain ---- */

static void test_domain_validation(void **state)
{
	struct fixture *f = *state;
	uint64_t src = add_source(f, f->a), other = add_source(f, f->b), first;
	static const struct {
		const char *what;
		int source; /* 0: a's, 1: b's, 2: none */
		uint32_t dev, pasid;
		int inject;
		int error;
		const char *msg;
	} cases[] = {
		{"pasid 2^20", 0, 1, IOPF_PASID_MAX + 1, 0, -EINVAL,
		 "pasid 0x100000 is out of range (0..0xfffff, or 0xffffffff for no PASID)"},
		{"pasid 0xfffffffe", 0, 1, 0xfffffffe, 0, -EINVAL, "out of range"},
		{"unknown source", 2, 1, 0, 0, -ENOENT, "no fault source"},
		{"another tenant's source", 1, 1, 0, 0, -ENOENT, "no fault source"},
		{"duplicate key", 0, 1, IOPF_PASID_NONE, 0, -EEXIST, "already has domain"},
		{"engine EEXIST", 0, 2, 0, -EEXIST, -EEXIST, "already has a domain"},
		{"engine ENOMEM", 0, 2, 0, -ENOMEM, -ENOMEM, "cannot register domain"},
	};

	first = add_domain(f, f->a, src, 1, IOPF_PASID_NONE);
	assert_true(first > 0);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct iopf_control_error err = {};
		uint64_t s = cases[i].source == 0 ? src : cases[i].source == 1 ? other : 4242, id;
		int r;

		print_message("  %s\n", cases[i].what);
		if (cases[i].inject)
			__iopf_fake_engine_fail_next(FAKE_ADD_DOMAIN, cases[i].inject);
		r = iopf_control_register_domain(f->control, f->a, s, cases[i].dev, cases[i].pasid,
						 &id, &err);
		expect(r, cases[i].error, &err, cases[i].msg);
	}
	/* boundaries that are fine */
	assert_true(add_domain(f, f->a, src, 1, IOPF_PASID_MAX) > first);
	assert_true(add_domain(f, f->a, src, 1, 0) > first);
}

/* ---- AddRegion: one table ---- */

static void test_region_validation(void **state)
{
	static const struct {
		const char *what;
		enum test_fd fd;
		uint64_t offset, iova, length;
		uint32_t access;
		int inject;
		int error;
		bool engine_called;
		const char *msg;
	} cases[] = {
		{"unaligned iova", TFD_MEM, 0, 0x1000001, 0x1000, RW, 0, -EINVAL, false,
		 "iova 0x1000001 must be 4096-aligned"},
		{"unaligned length", TFD_MEM, 0, 0x1000000, 0xfff, RW, 0, -EINVAL, false,
		 "length 0xfff must be a multiple of 4096"},
		{"unaligned offset", TFD_MEM, 0x800, 0x1000000, 0x1000, RW, 0, -EINVAL, false,
		 "offset 0x800 must be 4096-aligned"},
		{"zero length", TFD_MEM, 0, 0x1000000, 0, RW, 0, -EINVAL, false,
		 "length must not be 0"},
		{"iova wraps", TFD_MEM, 0, 0xfffffffffffff000, 0x2000, RW, 0, -EINVAL, false,
		 "region 0xfffffffffffff000+0x2000 wraps around the IOVA space"},
		{"iova ends at 2^64", TFD_MEM, 0, 0xfffffffffffff000, 0x1000, RW, 0, -EINVAL, false,
		 "wraps around the IOVA space"},
		{"iova ends one page below 2^64", TFD_MEM, 0, 0xffffffffffffe000, 0x1000, RW, 0, 0,
		 true, NULL},
		{"offset wraps", TFD_MEM, 0xfffffffffffff000, 0x1000000, 0x2000, RW, 0, -EINVAL,
		 false, "offset 0xfffffffffffff000+0x2000 wraps around"},
		{"past the end of the fd", TFD_MEM, 0xff000, 0x1000000, 0x2000, RW, 0, -EINVAL,
		 false, "fd range 0xff000+0x2000 ends beyond the fd's size 0x100000"},
		{"access 0", TFD_MEM, 0, 0x1000000, 0x1000, 0, 0, -EINVAL, false,
		 "access 0x0 must be a non-empty subset of READ|WRITE|EXEC|PRIV (0xf)"},
		{"access 0x10", TFD_MEM, 0, 0x1000000, 0x1000, 0x10, 0, -EINVAL, false,
		 "access 0x10 must be"},
		{"access ~0", TFD_MEM, 0, 0x1000000, 0x1000, UINT32_MAX, 0, -EINVAL, false,
		 "access 0xffffffff"},
		{"pipe", TFD_PIPE, 0, 0x1000000, 0x1000, RW, 0, -EBADF, false,
		 "fd is not a memfd or regular file (it is pipe:["},
		{"/dev/null", TFD_DEVNULL, 0, 0x1000000, 0x1000, RW, 0, -EBADF, false,
		 "(it is /dev/null)"},
		{"socket", TFD_SOCKET, 0, 0x1000000, 0x1000, RW, 0, -EBADF, false,
		 "(it is socket:["},
		{"closed fd", TFD_CLOSED, 0, 0x1000000, 0x1000, RW, 0, -EBADF, false,
		 "fd is not an open file descriptor"},
		{"read-only fd, WRITE", TFD_MEM_RDONLY, 0, 0x1000000, 0x1000, RW, 0, -EBADF, false,
		 "fd is open read-only but access 0x3 includes WRITE"},
		{"write-only fd", TFD_MEM_WRONLY, 0, 0x1000000, 0x1000, IOPF_ACCESS_WRITE, 0,
		 -EBADF, false, "write-only"},
		/* O_PATH reports O_RDONLY yet grants nothing: refused, READ or WRITE */
		{"O_PATH fd, READ", TFD_MEM_PATH, 0, 0x1000000, 0x1000, IOPF_ACCESS_READ, 0, -EBADF,
		 false,
		 "is an O_PATH fd: it grants no access to the memory; open the file for "
		 "reading"},
		{"O_PATH fd, WRITE", TFD_MEM_PATH, 0, 0x1000000, 0x1000, RW, 0, -EBADF, false,
		 "for reading and writing"},
		/* overlaps: the engine refuses, the control plane names the region in the way */
		{"overlap below", TFD_MEM, 0, 0x1fff000, 0x2000, RW, 0, -EBUSY, true,
		 "region 0x1fff000+0x2000 overlaps region"},
		{"overlap inside", TFD_MEM, 0, 0x2001000, 0x1000, RW, 0, -EBUSY, true,
		 "[0x2000000, 0x2004000)"},
		{"overlap around", TFD_MEM, 0, 0x1fff000, 0x6000, RW, 0, -EBUSY, true,
		 "overlaps region"},
		/* the engine's verdicts */
		{"engine EBUSY", TFD_MEM, 0, 0x5000000, 0x1000, RW, -EBUSY, -EBUSY, true,
		 "overlaps another region"},
		{"engine ENODEV", TFD_MEM, 0, 0x5000000, 0x1000, RW, -ENODEV, -EBADF, true,
		 "cannot back a region"},
		{"engine EINVAL", TFD_MEM, 0, 0x5000000, 0x1000, RW, -EINVAL, -EINVAL, true,
		 "refused by the engine"},
		{"engine ENOMEM", TFD_MEM, 0, 0x5000000, 0x1000, RW, -ENOMEM, -ENOMEM, true,
		 "cannot add region"},
		/* read-only regions from read-only fds are fine */
		{"read-only fd, READ", TFD_MEM_RDONLY, 0, 0x6000000, 0x1000, IOPF_ACCESS_READ, 0, 0,
		 true, NULL},
		{"adjacent below", TFD_MEM, 0, 0x1ffe000, 0x2000, RW, 0, 0, true, NULL},
		{"adjacent above, PRIV only", TFD_MEM, 0, 0x2004000, 0x1000, IOPF_ACCESS_PRIV, 0, 0,
		 true, NULL},
		{"the whole fd", TFD_MEM, 0, 0x7000000, MEM_SIZE, IOPF_ACCESS_ALL, 0, 0, true,
		 NULL},
	};
	struct fixture *f = *state;
	const struct test_fds kinds = {f->fault_fd, f->iommufd, MEM_SIZE};
	uint64_t src = add_source(f, f->a);
	uint64_t dom = add_domain(f, f->a, src, 1, IOPF_PASID_NONE);

	add_region(f, f->a, dom, 0x2000000, 0x4000);

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct iopf_control_error err = {};
		unsigned calls = __iopf_fake_engine_calls(FAKE_ADD_REGION);
		int extra = -EBADF, fd = test_fd(&kinds, cases[i].fd, &extra);
		uint64_t id = 0;
		int r;

		print_message("  %s\n", cases[i].what);
		if (cases[i].inject)
			__iopf_fake_engine_fail_next(FAKE_ADD_REGION, cases[i].inject);
		r = iopf_control_add_region(f->control, f->a, dom, fd, cases[i].offset,
					    cases[i].iova, cases[i].length, cases[i].access, &id,
					    &err);
		expect(r, cases[i].error, &err, cases[i].msg);
		assert_int_equal(__iopf_fake_engine_calls(FAKE_ADD_REGION) - calls,
				 cases[i].engine_called);
		if (r == 0)
			assert_true(id > 0);
		if (fd < 1000)
			safe_close(fd);
		safe_close(extra);
	}
}

/* ---- ownership ---- */

static unsigned n_objects(struct fixture *f, enum control_kind k, uint64_t tenant, bool all)
{
	struct iopf_control_error err = {};
	unsigned n = 0;

	assert_int_equal(control_count(f->control, k, tenant, all, &n, &err), 0);
	return n;
}

#define n_sources(f, tenant, all) n_objects(f, CONTROL_SOURCES, tenant, all)
#define n_domains(f, tenant)	  n_objects(f, CONTROL_DOMAINS, tenant, false)
#define n_regions(f, tenant)	  n_objects(f, CONTROL_REGIONS, tenant, false)

static unsigned done_calls;
static int done_error;

static void count_done(void *userdata, int error)
{
	done_calls++;
	done_error = error;
}

static void test_ownership(void **state)
{
	struct fixture *f = *state;
	uint64_t src = add_source(f, f->a), dom = add_domain(f, f->a, src, 1, IOPF_PASID_NONE);
	uint64_t reg = add_region(f, f->a, dom, 0x1000000, 0x1000), id;
	unsigned removes[3] = {__iopf_fake_engine_calls(FAKE_REMOVE_SOURCE),
			       __iopf_fake_engine_calls(FAKE_REMOVE_DOMAIN),
			       __iopf_fake_engine_calls(FAKE_REMOVE_REGION)};
	struct iopf_control_error mine = {}, ghost = {};
	char want[64];

	/* b gets the answer of an id that never existed, with the same wording */
	expect(iopf_control_unregister_source(f->control, f->b, src, count_done, NULL, &mine),
	       -ENOENT, &mine, NULL);
	snprintf(want, sizeof(want), "no fault source %" PRIu64, src);
	assert_string_equal(mine.message, want);
	expect(iopf_control_unregister_source(f->control, f->b, 777, count_done, NULL, &ghost),
	       -ENOENT, &ghost, "no fault source 777");

	expect(iopf_control_unregister_domain(f->control, f->b, dom, count_done, NULL, &mine),
	       -ENOENT, &mine, NULL);
	snprintf(want, sizeof(want), "no domain %" PRIu64, dom);
	assert_string_equal(mine.message, want);
	expect(iopf_control_remove_region(f->control, f->b, reg, count_done, NULL, &mine), -ENOENT,
	       &mine, NULL);
	snprintf(want, sizeof(want), "no region %" PRIu64, reg);
	assert_string_equal(mine.message, want);
	/* not even root may touch another tenant's objects */
	expect(iopf_control_remove_region(f->control, f->root, reg, count_done, NULL, &mine),
	       -ENOENT, &mine, "no region");
	expect(iopf_control_register_domain(f->control, f->b, src, 9, 0, &id, &mine), -ENOENT,
	       &mine, "no fault source");
	expect(iopf_control_add_region(f->control, f->b, dom, f->mem, 0, 0x3000000, 0x1000, RW, &id,
				       &mine),
	       -ENOENT, &mine, "no domain");

	/* nothing reached the engine's removal paths, and a's objects are intact */
	assert_int_equal(__iopf_fake_engine_calls(FAKE_REMOVE_SOURCE), removes[0]);
	assert_int_equal(__iopf_fake_engine_calls(FAKE_REMOVE_DOMAIN), removes[1]);
	assert_int_equal(__iopf_fake_engine_calls(FAKE_REMOVE_REGION), removes[2]);
	assert_int_equal(done_calls, 0);
	assert_int_equal(n_sources(f, f->a, false), 1);
	assert_int_equal(n_domains(f, f->a), 1);
	assert_int_equal(n_regions(f, f->a), 1);
	/* listings are per tenant */
	assert_int_equal(n_sources(f, f->b, false), 0);
	assert_int_equal(n_domains(f, f->b), 0);
	assert_int_equal(n_regions(f, f->b), 0);
	/* b's overlapping region in its own domain is fine: overlap is per domain */
	uint64_t bsrc = add_source(f, f->b), bdom = add_domain(f, f->b, bsrc, 1, IOPF_PASID_NONE);
	assert_true(add_region(f, f->b, bdom, 0x1000000, 0x1000) > 0);
}

static void test_all_listing(void **state)
{
	struct fixture *f = *state;
	struct iopf_control_error err = {};
	unsigned n = 0;

	add_source(f, f->a);
	add_source(f, f->b);
	assert_int_equal(n_sources(f, f->root, false), 0);
	assert_int_equal(n_sources(f, f->root, true), 2);
	expect(control_count(f->control, CONTROL_SOURCES, f->a, true, &n, &err), -EPERM, &err,
	       "needs uid 0");
	expect(control_count(f->control, CONTROL_DOMAINS, f->b, true, &n, &err), -EPERM, &err,
	       "needs uid 0");
	expect(control_count(f->control, CONTROL_REGIONS, 4242, false, &n, &err), -ENOENT, &err,
	       "unknown tenant");
	assert_int_equal(n, 0);
}

/* ---- limits ---- */

static void test_limits(void **state)
{
	struct fixture *f = *state;
	struct iopf_control_error err = {};
	uint64_t src[MAX_SOURCES], dom = 0, reg = 0, id;
	unsigned calls;

	for (unsigned i = 0; i < MAX_SOURCES; i++)
		src[i] = add_source(f, f->a);
	calls = __iopf_fake_engine_calls(FAKE_ADD_SOURCE);
	expect(iopf_control_register_source(f->control, f->a, f->fault_fd, f->iommufd, 1, &id,
					    &err),
	       -EDQUOT, &err, "tenant already has 2 fault sources (MaxSources=2)");
	assert_int_equal(__iopf_fake_engine_calls(FAKE_ADD_SOURCE), calls);
	/* limits are per tenant */
	assert_true(add_source(f, f->b) > 0);

	for (unsigned i = 0; i < MAX_DOMAINS; i++)
		dom = add_domain(f, f->a, src[i % MAX_SOURCES], i, IOPF_PASID_NONE);
	expect(iopf_control_register_domain(f->control, f->a, src[0], 100, 0, &id, &err), -EDQUOT,
	       &err, "(MaxDomains=3)");

	for (unsigned i = 0; i < MAX_REGIONS; i++)
		reg = add_region(f, f->a, dom, 0x1000000 + i * 0x1000, 0x1000);
	expect(iopf_control_add_region(f->control, f->a, dom, f->mem, 0, 0x9000000, 0x1000, RW, &id,
				       &err),
	       -EDQUOT, &err, "tenant already has 4 regions (MaxRegions=4)");

	/* a removal frees its slot at once (the object is unpublished before done) */
	assert_int_equal(iopf_control_remove_region(f->control, f->a, reg, count_done, NULL, &err),
			 0);
	assert_true(add_region(f, f->a, dom, 0x9000000, 0x1000) > 0);

	/* removing a source takes its domains and their regions' slots with it */
	assert_int_equal(iopf_control_unregister_source(f->control, f->a,
							src[(MAX_DOMAINS - 1) % MAX_SOURCES],
							count_done, NULL, &err),
			 0);
	assert_true(add_region(f, f->a, add_domain(f, f->a, src[1], 200, IOPF_PASID_NONE),
			       0xa000000, 0x1000) > 0);
	assert_true(add_source(f, f->a) > 0);
}

/* ---- removal and teardown ---- */

static void test_async_removal(void **state)
{
	struct fixture *f = *state;
	struct iopf_control_error err = {};
	uint64_t src = add_source(f, f->a), dom = add_domain(f, f->a, src, 1, 0);
	uint64_t reg = add_region(f, f->a, dom, 0x1000000, 0x1000);

	done_calls = 0;
	assert_int_equal(iopf_control_remove_region(f->control, f->a, reg, count_done, NULL, &err),
			 0);
	/* gone from every lookup at once; done only from dispatch */
	assert_int_equal(n_regions(f, f->a), 0);
	assert_int_equal(done_calls, 0);
	assert_int_equal(iopf_engine_dispatch(f->engine), 1);
	assert_int_equal(done_calls, 1);
	assert_int_equal(done_error, 0);
	expect(iopf_control_remove_region(f->control, f->a, reg, count_done, NULL, &err), -ENOENT,
	       &err, "no region");

	/* an engine failure is reported and done never runs */
	__iopf_fake_engine_fail_next(FAKE_REMOVE_DOMAIN, -ENOMEM);
	expect(iopf_control_unregister_domain(f->control, f->a, dom, count_done, NULL, &err),
	       -ENOMEM, &err, "cannot remove domain");
	assert_int_equal(iopf_engine_dispatch(f->engine), 0);
	assert_int_equal(done_calls, 1);

	/* the source takes its domain with it */
	assert_int_equal(
		iopf_control_unregister_source(f->control, f->a, src, count_done, NULL, &err), 0);
	assert_int_equal(n_domains(f, f->a), 0);
	assert_int_equal(iopf_engine_dispatch(f->engine), 1);
	assert_int_equal(done_calls, 2);
}

static bool contains(const uint64_t *ids, unsigned n, uint64_t id)
{
	for (unsigned i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

static void test_teardown(void **state)
{
	struct fixture *f = *state;
	uint64_t s1 = add_source(f, f->a), s2 = add_source(f, f->a), sb = add_source(f, f->b);
	uint64_t d1 = add_domain(f, f->a, s1, 1, IOPF_PASID_NONE);
	uint64_t d2 = add_domain(f, f->a, s2, 1, 3);
	uint64_t db = add_domain(f, f->b, sb, 1, IOPF_PASID_NONE);
	const uint64_t *removed;
	unsigned n;

	add_region(f, f->a, d1, 0x1000000, 0x1000);
	add_region(f, f->a, d1, 0x2000000, 0x1000);
	add_region(f, f->a, d2, 0x1000000, 0x1000);
	add_region(f, f->b, db, 0x1000000, 0x1000);

	/* 2 sources + 2 domains + 3 regions */
	assert_int_equal(iopf_control_tenant_remove(f->control, f->a), 7);

	/* both of a's sources went to the engine, b's did not */
	removed = __iopf_fake_engine_removed(FAKE_REMOVE_SOURCE, &n);
	assert_int_equal(n, 2);
	assert_true(contains(removed, n, s1) && contains(removed, n, s2));
	assert_false(contains(removed, n, sb));
	/* nothing of a's is left anywhere, b is untouched */
	assert_int_equal(n_sources(f, f->root, true), 1);
	assert_int_equal(n_domains(f, f->b), 1);
	assert_int_equal(n_regions(f, f->b), 1);
	struct iopf_domain_info di;
	assert_int_equal(iopf_engine_domain_info(f->engine, d1, &di), -ENOENT);
	assert_int_equal(iopf_engine_domain_info(f->engine, d2, &di), -ENOENT);
	assert_int_equal(iopf_engine_domain_info(f->engine, db, &di), 0);
	/* the tenant is forgotten; its removal callbacks need nobody */
	struct iopf_tenant_info ti;
	assert_int_equal(iopf_control_tenant_info(f->control, f->a, &ti), -ENOENT);
	assert_int_equal(iopf_engine_dispatch(f->engine), 2);
	assert_int_equal(iopf_control_tenant_remove(f->control, f->a), -ENOENT);
	/* a tenant with nothing */
	assert_int_equal(iopf_control_tenant_remove(f->control, f->root), 0);
}

/* An engine that does not cascade still gets every object removed. */
static void test_teardown_sweeps(void **state)
{
	struct fixture *f = *state;
	uint64_t s1 = add_source(f, f->a), d1 = add_domain(f, f->a, s1, 1, 0);
	const uint64_t *removed;
	unsigned n;

	add_region(f, f->a, d1, 0x1000000, 0x1000);
	/* the source removal fails: domains and regions must still go */
	__iopf_fake_engine_fail_next(FAKE_REMOVE_SOURCE, -ENOMEM);
	assert_int_equal(iopf_control_tenant_remove(f->control, f->a), 3);
	removed = __iopf_fake_engine_removed(FAKE_REMOVE_DOMAIN, &n);
	assert_int_equal(n, 1);
	assert_int_equal(removed[0], d1);
	assert_int_equal(n_sources(f, f->root, true), 1); /* the source the engine kept */
}

/* ---- statistics and the error table ---- */

static void test_counter_fields(void **state)
{
	struct fixture *f = *state;
	struct iopf_counters cnt = {.faults = 1,
				    .groups = 2,
				    .success = 3,
				    .invalid = 4,
				    .stale = 5,
				    .pages_mapped = 6,
				    .maps = 7,
				    .coalesced = 8,
				    .bytes_mapped = 9,
				    .masked_flags = 10};
	struct iopf_counter_field fields[IOPF_COUNTER_FIELDS_MAX];
	size_t n;

	for (unsigned i = 0; i < _IOPF_REASON_MAX; i++)
		cnt.reasons[i] = 100 + i;
	n = iopf_counters_to_fields(&cnt, fields);
	assert_int_equal(n, IOPF_COUNTER_FIELDS_MAX);
	assert_string_equal(fields[0].name, "faults");
	assert_int_equal(fields[0].value, 1);
	assert_string_equal(fields[8].name, "bytes_mapped");
	assert_int_equal(fields[8].value, 9);
	assert_string_equal(fields[9].name, "masked_flags");
	assert_int_equal(fields[9].value, 10);
	for (unsigned i = 0; i < _IOPF_REASON_MAX; i++) {
		assert_string_equal(fields[10 + i].name, iopf_reason_to_string(i));
		assert_int_equal(fields[10 + i].value, 100 + i);
	}
	/* names are unique */
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			assert_string_not_equal(fields[i].name, fields[j].name);
	assert_string_equal(iopf_reason_to_string(IOPF_REASON_NO_HANDLER), "no_handler");
	assert_null(iopf_reason_to_string(_IOPF_REASON_MAX));
	assert_null(iopf_reason_to_string((enum iopf_reason) - 1));
	(void)f;
}

static void test_error_map(void **state)
{
	static const struct {
		int error;
		const char *name;
	} cases[] = {
		{-EINVAL, IOPF_ERROR_INVALID_ARGUMENT},
		{-ENOENT, IOPF_ERROR_NO_SUCH_OBJECT},
		{-EBUSY, IOPF_ERROR_OVERLAP},
		{-EEXIST, IOPF_ERROR_EXISTS},
		{-EDQUOT, IOPF_ERROR_LIMIT},
		{-EBADF, IOPF_ERROR_BAD_FD},
		{-ENOTTY, IOPF_ERROR_BAD_FD},
		{-EOPNOTSUPP, IOPF_ERROR_NOT_SUPPORTED},
		{-EPERM, IOPF_ERROR_ACCESS_DENIED},
		{-EACCES, IOPF_ERROR_ACCESS_DENIED},
		{-ENOMEM, IOPF_ERROR_INTERNAL},
		{EINVAL, IOPF_ERROR_INVALID_ARGUMENT},
	};
	static const struct {
		const char *name;
		int error;
	} back[] = {
		{IOPF_ERROR_INVALID_ARGUMENT, EINVAL},
		{IOPF_ERROR_NO_SUCH_OBJECT, ENOENT},
		{IOPF_ERROR_OVERLAP, EBUSY},
		{IOPF_ERROR_EXISTS, EEXIST},
		{IOPF_ERROR_LIMIT, EDQUOT},
		{IOPF_ERROR_BAD_FD, EBADF},
		{IOPF_ERROR_NOT_SUPPORTED, EOPNOTSUPP},
		{IOPF_ERROR_ACCESS_DENIED, EPERM},
		{IOPF_ERROR_INTERNAL, EIO},
		{"org.freedesktop.DBus.Error.Failed", 0},
		{NULL, 0},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		assert_string_equal(iopf_error_to_name(cases[i].error), cases[i].name);
	for (size_t i = 0; i < ARRAY_SIZE(back); i++)
		assert_int_equal(iopf_error_from_name(back[i].name), back[i].error);
	/* every name maps back to an errno that maps to the same name */
	for (size_t i = 0; i < ARRAY_SIZE(iopf_error_map); i++) {
		int e = iopf_error_from_name(iopf_error_map[i].name);

		assert_string_equal(iopf_error_to_name(e), iopf_error_map[i].name);
	}
}

/* ---- operations: live limits, totals, visibility ---- */

static int try_region(struct fixture *f, uint64_t tenant, uint64_t dom, uint64_t iova, uint64_t len,
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
	uint64_t d = add_domain(f, f->a, add_source(f, f->a), 1, IOPF_PASID_NONE);
	uint64_t d2 = add_domain(f, f->b, add_source(f, f->b), 1, IOPF_PASID_NONE);

	assert_int_equal(try_region(f, f->a, d, 16 * MiB, 128 * KiB, &err), 0);
	assert_int_equal(try_region(f, f->a, d, 32 * MiB, 128 * KiB, &err), 0);
	assert_int_equal(try_region(f, f->a, d, 48 * MiB, 4 * KiB, &err), -EDQUOT);
	assert_string_equal(err.message,
			    "tenant's regions would cover 266240 bytes, more than "
			    "MaxPinnedBytes=262144 (what iopfd may pin for one tenant)");
	/* per tenant: b has its own budget */
	assert_int_equal(try_region(f, f->b, d2, 16 * MiB, 256 * KiB, &err), 0);

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
	uint64_t s = add_source(f, f->a), id;

	assert_int_equal(iopf_control_register_source(f->control, f->a, f->fault_fd, f->iommufd, 1,
						      &id, &err),
			 0);
	assert_int_equal(iopf_control_set_limits(f->control, &l), 0);
	assert_int_equal(iopf_control_register_source(f->control, f->a, f->fault_fd, f->iommufd, 1,
						      &id, &err),
			 -EDQUOT);
	assert_string_equal(err.message, "tenant already has 2 fault sources (MaxSources=1)");
	/* max_pinned_bytes 0: none */
	assert_int_equal(try_region(f, f->a, add_domain(f, f->a, s, 1, IOPF_PASID_NONE), 16 * MiB,
				    MiB, &err),
			 0);

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
	uint64_t s = add_source(f, f->a);
	uint64_t d1 = add_domain(f, f->a, s, 1, IOPF_PASID_NONE);
	uint64_t d2 = add_domain(f, f->a, s, 2, IOPF_PASID_NONE);
	uint64_t db = add_domain(f, f->b, add_source(f, f->b), 1, IOPF_PASID_NONE);
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

struct seen_tenants {
	uint64_t ids[8];
	unsigned n;
};

static int collect_tenants(const struct iopf_tenant_info *t, const struct iopf_control_stats *st,
			   void *userdata)
{
	struct seen_tenants *s = userdata;

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
	struct seen_tenants s = {};

	assert_int_equal(
		iopf_control_foreach_tenant(f->control, f->a, false, collect_tenants, &s, &err), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.ids[0], f->a);
	assert_int_equal(
		iopf_control_foreach_tenant(f->control, f->a, true, collect_tenants, &s, &err),
		-EPERM);
	assert_int_equal(iopf_control_total_stats(f->control, f->a, &st, &err), -EPERM);
	assert_int_equal(iopf_control_tenant_stats(f->control, f->a, f->b, &st, &err), -ENOENT);
	assert_string_equal(err.message, "no tenant 2");
	assert_int_equal(iopf_control_tenant_stats(f->control, f->a, 99, &st, &err), -ENOENT);
	assert_string_equal(err.message, "no tenant 99"); /* the same answer: ids leak nothing */
	assert_int_equal(iopf_control_tenant_stats(f->control, 99, f->a, &st, &err), -ENOENT);

	/* root, and the daemon itself, see everyone in ascending order */
	s.n = 0;
	assert_int_equal(
		iopf_control_foreach_tenant(f->control, f->root, true, collect_tenants, &s, &err),
		0);
	assert_int_equal(s.n, 3);
	assert_true(s.ids[0] == f->a && s.ids[1] == f->b && s.ids[2] == f->root);
	s.n = 0;
	assert_int_equal(
		iopf_control_foreach_tenant(f->control, 0, true, collect_tenants, &s, &err), 0);
	assert_int_equal(s.n, 3);
	assert_int_equal(
		iopf_control_foreach_tenant(f->control, 0, false, collect_tenants, &s, &err),
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
	/* room for every success of the region table */
	static struct iopf_control_limits roomy = {1, 1, 100};
	/* operations: room for several objects, a small pinning budget */
	static struct iopf_control_limits ops = {
		.max_sources = 4,
		.max_domains = 4,
		.max_regions = 8,
		.max_pinned_bytes = 256 * KiB,
	};
	const struct CMUnitTest tests[] = {
		TEST(test_tenants),
		TEST(test_registered_and_label),
		TEST(test_new_limits),
		TEST(test_source_validation),
		TEST(test_source_fds_are_copies),
		TEST(test_domain_validation),
		cmocka_unit_test_prestate_setup_teardown(test_region_validation, setup, teardown,
							 &roomy),
		TEST(test_ownership),
		TEST(test_all_listing),
		TEST(test_limits),
		TEST(test_async_removal),
		TEST(test_teardown),
		TEST(test_teardown_sweeps),
		TEST(test_counter_fields),
		TEST(test_error_map),
#define O(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, &ops)
		O(test_max_pinned),
		O(test_set_limits),
		O(test_totals_survive_removal),
		O(test_visibility),
		O(test_foreach_error),
#undef O
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
