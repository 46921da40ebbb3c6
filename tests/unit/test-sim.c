/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The simulator against the fault-fd and IOAS semantics of docs/kernel-uapi.md:
 * device side (lib/sim/include/sim.h) in the test, daemon side through the backend ops.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit-test.h"

#include "backend.h"
#include "iopf/iopf.h"
#include "uapi.h"
#include "sim-backend.h"
#include "sim.h"
#include "util.h"
#include "fd-util.h"
#include "time-util.h"

#define REC  sizeof(struct iommu_hwpt_pgfault)
#define RESP sizeof(struct iommu_hwpt_page_response)
#define PG   IOPF_SIM_PAGE_SIZE

struct fx {
	struct iopf_sim *s;
	struct iopf_backend *b;
};

static int setup_cfg(void **state, const struct iopf_sim_config *cfg)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	assert_int_equal(iopf_sim_new(cfg, &fx->s), 0);
	assert_int_equal(sim_backend_open_dup(fx->s, 1, &fx->b), 0);
	*state = fx;
	return 0;
}

static int setup(void **state)
{
	const struct iopf_sim_config cfg = SIM_TEST_CONFIG;

	return setup_cfg(state, &cfg);
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	sim_backend_close(fx->b);
	iopf_sim_free(fx->s);
	free(fx);
	__iopf_sim_set_lock_timeout(0);
	return 0;
}

static ssize_t bread(struct fx *fx, void *buf, size_t len)
{
	return fx->b->ops->fault_read(fx->b, buf, len);
}

static ssize_t bwrite(struct fx *fx, const void *buf, size_t len)
{
	return fx->b->ops->fault_write(fx->b, buf, len);
}

static ssize_t respond(struct fx *fx, uint32_t cookie, uint32_t code)
{
	struct iommu_hwpt_page_response r = {.cookie = cookie, .code = code};

	return bwrite(fx, &r, sizeof(r));
}

/* Queue one group of @n pages at @addr.. for (dev, pasid). */
static void inject(struct fx *fx, uint32_t dev, uint32_t pasid, unsigned n, uint64_t addr,
		   uint64_t tag)
{
	struct iopf_sim_fault f[IOPF_SIM_MAX_GROUP];
	struct iopf_sim_group g = {
		.dev_id = dev,
		.pasid = pasid,
		.grpid = (uint32_t)tag & 0x1ff,
		.n = n,
		.faults = f,
		.tag = tag,
	};
	unsigned i;

	for (i = 0; i < n; i++)
		f[i] = (struct iopf_sim_fault){.addr = addr + i * PG,
					       .perm = IOMMU_PGFAULT_PERM_READ};
	assert_int_equal(iopf_sim_inject(fx->s, &g, 1), 1);
}

static bool doorbell_up(struct fx *fx)
{
	struct pollfd p = {.fd = fx->b->poll_fd, .events = POLLIN};

	assert_true(poll(&p, 1, 0) >= 0);
	return p.revents & POLLIN;
}

static struct iopf_sim_counts counts(struct fx *fx)
{
	struct iopf_sim_counts c;

	assert_int_equal(iopf_sim_get_counts(fx->s, &c), 0);
	return c;
}

/* ---- open ---- */

/* The doorbell of another context, or a header naming another eventfd: refused. */
static void test_open_rejects_stray_doorbell(void **state)
{
	struct fx *fx = *state;
	struct iopf_sim *other = NULL;
	struct iopf_backend *b = NULL;
	struct iopf_sim_shm_hdr *h = __iopf_sim_shm(fx->s, NULL);
	uint32_t id;

	assert_int_equal(iopf_sim_new(NULL, &other), 0);
	assert_int_equal(
		iopf_sim_backend_open(iopf_sim_fault_fd(other), iopf_sim_iommufd(fx->s), 1, &b),
		-EXDEV);
	assert_int_equal(
		iopf_sim_backend_open(iopf_sim_fault_fd(fx->s), iopf_sim_iommufd(other), 1, &b),
		-EXDEV);
	assert_null(b);
	/* the header records the doorbell's kernel id, + 1 */
	assert_int_equal(fd_eventfd_id(iopf_sim_fault_fd(fx->s), &id), 0);
	assert_int_equal(h->doorbell_id, id + 1);
	h->doorbell_id = 0;
	assert_int_equal(sim_backend_open_dup(fx->s, 1, &b), -EXDEV);
	h->doorbell_id = id + 1;
	/* a copy of the doorbell is the doorbell */
	assert_int_equal(sim_backend_open_dup(fx->s, 1, &b), 0);
	sim_backend_close(b);
	iopf_sim_free(other);
}

static void test_fd_eventfd_id(void **state)
{
	int a = eventfd(0, EFD_CLOEXEC), c = eventfd(0, EFD_CLOEXEC);
	int d = fcntl(a, F_DUPFD_CLOEXEC, 3), m = memfd_create("x", MFD_CLOEXEC);
	uint32_t ia, ic, id;

	(void)state;
	assert_int_equal(fd_eventfd_id(a, &ia), 0);
	assert_int_equal(fd_eventfd_id(c, &ic), 0);
	assert_int_equal(fd_eventfd_id(d, &id), 0);
	assert_int_equal(ia, id);
	assert_int_not_equal(ia, ic);
	assert_int_equal(fd_eventfd_id(m, &id), -EBADF);
	assert_int_equal(fd_eventfd_id(-1, &id), -EBADF);
	assert_int_equal(fd_eventfd_id(1000, &id), -EBADF);
	close(a);
	close(c);
	close(d);
	close(m);
}

static void test_open_rejects_wrong_fds(void **state)
{
	struct fx *fx = *state;
	struct iopf_backend *b = NULL;
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int other = memfd_create("not-sim", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	int unsealed = memfd_create(IOPF_SIM_MEMFD_NAME, MFD_CLOEXEC);
	int p[2];

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	/* swapped, wrong kinds, closed, unsealed, empty: all -EBADF, fds stay with the caller */
	assert_int_equal(
		iopf_sim_backend_open(iopf_sim_iommufd(fx->s), iopf_sim_fault_fd(fx->s), 1, &b),
		-EBADF);
	assert_int_equal(iopf_sim_backend_open(p[0], iopf_sim_iommufd(fx->s), 1, &b), -EBADF);
	assert_int_equal(iopf_sim_backend_open(efd, other, 1, &b), -EBADF);
	assert_int_equal(iopf_sim_backend_open(efd, unsealed, 1, &b), -EBADF);
	assert_int_equal(iopf_sim_backend_open(efd, -1, 1, &b), -EBADF);
	assert_int_equal(iopf_sim_backend_open(efd, 1000, 1, &b), -EBADF);
	assert_null(b);
	assert_true(fcntl(efd, F_GETFD) >= 0 && fcntl(p[0], F_GETFD) >= 0);
	/* an eventfd that is not the context's doorbell: -EXDEV */
	assert_int_equal(iopf_sim_backend_open(efd, iopf_sim_iommufd(fx->s), 1, &b), -EXDEV);
	assert_null(b);
	assert_int_equal(counts(fx).backends, 1);

	/* an IOAS the context does not have */
	assert_int_equal(sim_backend_open_dup(fx->s, 0, &b), -ENOENT);
	assert_int_equal(sim_backend_open_dup(fx->s, 3, &b), -ENOENT);
	assert_int_equal(counts(fx).backends, 1);
	assert_int_equal(sim_backend_open_dup(fx->s, 2, &b), 0);
	assert_int_equal(counts(fx).backends, 2);
	assert_string_equal(b->ops->name, "sim");
	assert_false(b->ops->map_needs_uptr);
	assert_int_equal(b->poll_fd, b->fault_fd);
	assert_int_equal(b->ioas_id, 2);
	sim_backend_close(b);
	assert_int_equal(counts(fx).backends, 1);

	close(efd);
	close(other);
	close(unsealed);
	close(p[0]);
	close(p[1]);
}

static void test_open_rejects_bad_header(void **state)
{
	struct fx *fx = *state;
	struct iopf_sim_shm_hdr *h = __iopf_sim_shm(fx->s, NULL), saved = *h;
	struct iopf_backend *b = NULL;

	h->magic ^= 1;
	assert_int_equal(sim_backend_open_dup(fx->s, 1, &b), -EBADF);
	*h = saved;
	h->version = 2;
	assert_int_equal(sim_backend_open_dup(fx->s, 1, &b), -EBADF);
	*h = saved;
	h->hdr_size = 8;
	assert_int_equal(sim_backend_open_dup(fx->s, 1, &b), -EBADF);
	*h = saved;
	/* geometry that no longer matches the file size */
	h->queue_depth = 32;
	assert_int_equal(sim_backend_open_dup(fx->s, 1, &b), -EBADF);
	*h = saved;
	h->queue_depth = 17; /* not a power of two */
	assert_int_equal(sim_backend_open_dup(fx->s, 1, &b), -EBADF);
	*h = saved;
	h->max_group = 0;
	assert_int_equal(sim_backend_open_dup(fx->s, 1, &b), -EBADF);
	*h = saved;
	h->iommu_pages = UINT32_MAX;
	assert_int_equal(sim_backend_open_dup(fx->s, 1, &b), -EBADF);
	*h = saved;
	h->page_buckets = 64; /* less than twice the pages */
	assert_int_equal(sim_backend_open_dup(fx->s, 1, &b), -EBADF);
	*h = saved;
	h->total_size += 64;
	assert_int_equal(sim_backend_open_dup(fx->s, 1, &b), -EBADF);
	*h = saved;
	assert_null(b);
	assert_int_equal(sim_backend_open_dup(fx->s, 1, &b), 0);
	sim_backend_close(b);
}

static void test_new_limits(void **state)
{
	struct iopf_sim *s = NULL;

	assert_int_equal(iopf_sim_new(&(struct iopf_sim_config){.max_group = 257}, &s), -EINVAL);
	assert_int_equal(iopf_sim_new(&(struct iopf_sim_config){.queue_depth = (1u << 20) + 1}, &s),
			 -EINVAL);
	assert_int_equal(iopf_sim_new(&(struct iopf_sim_config){.n_ioas = 65}, &s), -EINVAL);
	assert_null(s);
	assert_int_equal(iopf_sim_new(&(struct iopf_sim_config){.queue_depth = 100}, &s), 0);
	assert_int_equal(iopf_sim_queue_depth(s), 128);
	assert_int_equal(iopf_sim_ioas_id(s, 0), 1);
	assert_int_equal(iopf_sim_ioas_id(s, 1), 0);
	iopf_sim_free(s);
	assert_null(iopf_sim_free(NULL));
}

/* ---- read ---- */

static void test_read_counts_and_empty(void **state)
{
	struct fx *fx = *state;
	struct iommu_hwpt_pgfault rec[8];

	assert_int_equal(bread(fx, rec, sizeof(rec)), 0); /* empty: "nothing now" */
	assert_int_equal(bread(fx, rec, 39), -ESPIPE);
	assert_int_equal(bread(fx, rec, 41), -ESPIPE);
	assert_int_equal(bread(fx, rec, 0), 0);
	inject(fx, 1, IOPF_PASID_NONE, 1, 0x10000, 1);
	assert_int_equal(bread(fx, rec, 39), -ESPIPE); /* checked before anything is delivered */
	assert_int_equal(bread(fx, rec, 0), 0);
	assert_int_equal(counts(fx).queued, 1);
	assert_int_equal(bread(fx, rec, sizeof(rec)), REC);
	assert_int_equal(bread(fx, rec, sizeof(rec)), 0);
}

static void test_read_records(void **state)
{
	struct fx *fx = *state;
	struct iommu_hwpt_pgfault rec[8];

	inject(fx, 7, IOPF_PASID_NONE, 2, 0x20000, 1);
	inject(fx, 9, 0x1234, 3, 0x40000, 2);
	assert_int_equal(bread(fx, rec, sizeof(rec)), 5 * REC);

	assert_int_equal(rec[0].flags, 0);
	assert_int_equal(rec[1].flags, IOMMU_PGFAULT_FLAGS_LAST_PAGE);
	assert_int_equal(rec[0].dev_id, 7);
	assert_int_equal(rec[0].pasid, 0);
	assert_int_equal(rec[0].addr, 0x20000);
	assert_int_equal(rec[1].addr, 0x21000);
	assert_int_equal(rec[0].cookie, 1);
	assert_int_equal(rec[1].cookie, 1);
	assert_int_equal(rec[0].length, 0);
	assert_int_equal(rec[0].perm, IOMMU_PGFAULT_PERM_READ);

	assert_int_equal(rec[2].flags, IOMMU_PGFAULT_FLAGS_PASID_VALID);
	assert_int_equal(rec[4].flags,
			 IOMMU_PGFAULT_FLAGS_PASID_VALID | IOMMU_PGFAULT_FLAGS_LAST_PAGE);
	assert_int_equal(rec[3].pasid, 0x1234);
	assert_int_equal(rec[3].dev_id, 9);
	assert_int_equal(rec[3].grpid, 2);
	assert_int_equal(rec[2].cookie, 2);
	assert_int_equal(rec[4].cookie, 2);
	assert_int_equal(counts(fx).delivered, 2);
}

static void test_read_whole_groups_fifo(void **state)
{
	struct fx *fx = *state;
	struct iommu_hwpt_pgfault rec[8];

	inject(fx, 1, IOPF_PASID_NONE, 3, 0x10000, 1);
	inject(fx, 2, IOPF_PASID_NONE, 2, 0x20000, 2);
	inject(fx, 3, IOPF_PASID_NONE, 4, 0x30000, 3);

	/* 6 records of room: groups 1 and 2 fit, group 3 waits; never a partial group */
	assert_int_equal(bread(fx, rec, 6 * REC), 5 * REC);
	assert_int_equal(rec[0].dev_id, 1);
	assert_int_equal(rec[3].dev_id, 2);
	assert_int_equal(rec[4].flags, IOMMU_PGFAULT_FLAGS_LAST_PAGE);
	/* not even the first group fits: EINVAL, and nothing is lost */
	assert_int_equal(bread(fx, rec, 3 * REC), -EINVAL);
	assert_int_equal(bread(fx, rec, 1 * REC), -EINVAL);
	assert_true(doorbell_up(fx));
	assert_int_equal(counts(fx).queued, 1);
	assert_int_equal(bread(fx, rec, 4 * REC), 4 * REC);
	assert_int_equal(rec[0].dev_id, 3);
	assert_int_equal(rec[3].cookie, 3);
	assert_int_equal(rec[3].flags, IOMMU_PGFAULT_FLAGS_LAST_PAGE);
	assert_false(doorbell_up(fx));
}

static void test_read_raw_records_pass_through(void **state)
{
	struct fx *fx = *state;
	struct iommu_hwpt_pgfault in[2] = {
		{.flags = 1u << 2,
		 .dev_id = 4,
		 .grpid = 9,
		 .perm = 0xff,
		 .addr = 0x1234567,
		 .length = 77,
		 .cookie = 555},
		{.flags = 1u << 2 | IOMMU_PGFAULT_FLAGS_PASID_VALID, .dev_id = 5, .pasid = 3},
	};
	struct iommu_hwpt_pgfault rec[2];

	/* what the device sent is what the daemon reads; only the cookie is the queue's */
	assert_int_equal(iopf_sim_inject_raw(fx->s, in, 2, 42), 0);
	assert_int_equal(iopf_sim_inject_raw(fx->s, in, 0, 42), -EINVAL);
	assert_int_equal(iopf_sim_inject_raw(fx->s, in, 9, 42), -EINVAL);
	assert_int_equal(bread(fx, rec, sizeof(rec)), 2 * REC);
	assert_int_equal(rec[0].flags, 1u << 2);
	assert_int_equal(rec[0].perm, 0xff);
	assert_int_equal(rec[0].addr, 0x1234567);
	assert_int_equal(rec[0].length, 77);
	assert_int_equal(rec[0].cookie, 1);
	assert_int_equal(rec[1].cookie, 1);
	assert_int_equal(rec[1].pasid, 3);
	/* the attach key is the last record's: (5, pasid 3) */
	assert_int_equal(iopf_sim_detach(fx->s, 4, IOPF_SIM_PASID_ANY), 0);
	assert_int_equal(iopf_sim_detach(fx->s, 5, IOPF_PASID_NONE), 0);
	assert_int_equal(iopf_sim_detach(fx->s, 5, 3), 1);
}

/* ---- cookies ---- */

static void test_cookie_lowest_free_and_reuse(void **state)
{
	struct fx *fx = *state;
	struct iommu_hwpt_pgfault rec[8];
	unsigned i;

	for (i = 0; i < 4; i++)
		inject(fx, 1, IOPF_PASID_NONE, 1, 0x10000 + i * PG, i);
	assert_int_equal(bread(fx, rec, sizeof(rec)), 4 * REC);
	for (i = 0; i < 4; i++)
		assert_int_equal(rec[i].cookie, i + 1);

	/* answering 2 frees it: the next group gets 2 again, then 5 */
	assert_int_equal(respond(fx, 2, IOMMUFD_PAGE_RESP_SUCCESS), RESP);
	inject(fx, 1, IOPF_PASID_NONE, 1, 0x20000, 10);
	inject(fx, 1, IOPF_PASID_NONE, 1, 0x21000, 11);
	assert_int_equal(bread(fx, rec, sizeof(rec)), 2 * REC);
	assert_int_equal(rec[0].cookie, 2);
	assert_int_equal(rec[1].cookie, 5);

	/* free 1 and 4: lowest first */
	assert_int_equal(respond(fx, 4, IOMMUFD_PAGE_RESP_SUCCESS), RESP);
	assert_int_equal(respond(fx, 1, IOMMUFD_PAGE_RESP_INVALID), RESP);
	inject(fx, 1, IOPF_PASID_NONE, 1, 0x30000, 12);
	inject(fx, 1, IOPF_PASID_NONE, 1, 0x31000, 13);
	inject(fx, 1, IOPF_PASID_NONE, 1, 0x32000, 14);
	assert_int_equal(bread(fx, rec, sizeof(rec)), 3 * REC);
	assert_int_equal(rec[0].cookie, 1);
	assert_int_equal(rec[1].cookie, 4);
	assert_int_equal(rec[2].cookie, 6);
}

static void test_cookie_reuse_crosses_words(void **state)
{
	const struct iopf_sim_config cfg = {.queue_depth = 256, .max_group = 1};
	struct fx *fx;
	struct iommu_hwpt_pgfault rec[200];
	unsigned i;

	setup_cfg((void **)&fx, &cfg);
	/* 130 outstanding spans three bitmap words; freeing 70 must bring it back first */
	for (i = 0; i < 130; i++)
		inject(fx, 1, IOPF_PASID_NONE, 1, i * PG, i);
	assert_int_equal(bread(fx, rec, sizeof(rec)), 130 * REC);
	assert_int_equal(rec[129].cookie, 130);
	assert_int_equal(respond(fx, 70, 0), RESP);
	assert_int_equal(respond(fx, 129, 0), RESP);
	inject(fx, 1, IOPF_PASID_NONE, 1, 0, 1000);
	inject(fx, 1, IOPF_PASID_NONE, 1, 0, 1001);
	inject(fx, 1, IOPF_PASID_NONE, 1, 0, 1002);
	assert_int_equal(bread(fx, rec, sizeof(rec)), 3 * REC);
	assert_int_equal(rec[0].cookie, 70);
	assert_int_equal(rec[1].cookie, 129);
	assert_int_equal(rec[2].cookie, 131);
	teardown((void **)&fx);
}

/* ---- write ---- */

static void test_write_semantics(void **state)
{
	struct fx *fx = *state;
	struct iommu_hwpt_pgfault rec[8];
	struct iommu_hwpt_page_response resp[4];
	unsigned i;

	for (i = 0; i < 4; i++)
		inject(fx, 1, IOPF_PASID_NONE, 1, i * PG, i);
	assert_int_equal(bread(fx, rec, sizeof(rec)), 4 * REC);

	assert_int_equal(bwrite(fx, resp, 7), -ESPIPE);
	assert_int_equal(bwrite(fx, resp, 12), -ESPIPE);
	assert_int_equal(bwrite(fx, resp, 0), 0);

	/* stops at the first bad entry: short write of what was consumed */
	resp[0] = (struct iommu_hwpt_page_response){.cookie = 1, .code = 0};
	resp[1] = (struct iommu_hwpt_page_response){.cookie = 2, .code = 2};
	resp[2] = (struct iommu_hwpt_page_response){.cookie = 3, .code = 0};
	assert_int_equal(bwrite(fx, resp, 3 * RESP), RESP);
	/* the bad entry first: its error; the code is checked before the cookie */
	assert_int_equal(bwrite(fx, &resp[1], 2 * RESP), -EINVAL);
	assert_int_equal(counts(fx).stats.bad_code, 2);
	resp[1] = (struct iommu_hwpt_page_response){.cookie = 99, .code = 7};
	assert_int_equal(bwrite(fx, &resp[1], RESP), -EINVAL);
	assert_int_equal(counts(fx).stats.bad_code, 3);
	assert_int_equal(counts(fx).stats.bad_cookie, 0);

	/* double answer and never-issued cookies */
	assert_int_equal(respond(fx, 1, 0), -EINVAL);
	assert_int_equal(respond(fx, 0, 0), -EINVAL);
	assert_int_equal(respond(fx, 17, 0), -EINVAL);
	assert_int_equal(respond(fx, UINT32_MAX, 0), -EINVAL);
	assert_int_equal(respond(fx, 5, 0), -EINVAL);
	assert_int_equal(counts(fx).stats.bad_cookie, 5);

	/* batch: 2 and 3 fine, then 2 again is stale */
	resp[0] = (struct iommu_hwpt_page_response){.cookie = 2, .code = 1};
	resp[1] = (struct iommu_hwpt_page_response){.cookie = 3, .code = 0};
	resp[2] = (struct iommu_hwpt_page_response){.cookie = 2, .code = 0};
	resp[3] = (struct iommu_hwpt_page_response){.cookie = 4, .code = 0};
	assert_int_equal(bwrite(fx, resp, 4 * RESP), 2 * RESP);
	assert_int_equal(bwrite(fx, &resp[3], RESP), RESP);
	assert_int_equal(counts(fx).delivered, 0);
	assert_int_equal(counts(fx).answered, 4);
	assert_int_equal(counts(fx).stats.answers, 4);
	assert_int_equal(counts(fx).stats.answers_invalid, 1);
}

static void test_harvest(void **state)
{
	struct fx *fx = *state;
	struct iommu_hwpt_pgfault rec[8];
	struct iopf_sim_answer a[8];
	unsigned i;

	assert_int_equal(iopf_sim_harvest(fx->s, a, 8), 0);
	assert_false(iopf_sim_peek_answered(fx->s));
	for (i = 0; i < 3; i++)
		inject(fx, 1, i == 2 ? 5 : IOPF_PASID_NONE, 2, i * 0x10000, 100 + i);
	assert_int_equal(bread(fx, rec, sizeof(rec)), 6 * REC);
	assert_false(iopf_sim_peek_answered(fx->s)); /* read, not answered */
	assert_int_equal(respond(fx, 3, 0), RESP);
	assert_true(iopf_sim_peek_answered(fx->s));
	assert_int_equal(respond(fx, 1, 1), RESP);
	assert_int_equal(iopf_sim_wait(fx->s, 0), 1);
	/* answer order, one entry per group */
	assert_int_equal(iopf_sim_harvest(fx->s, a, 1), 1);
	assert_int_equal(a[0].tag, 102);
	assert_int_equal(a[0].code, 0);
	assert_int_equal(a[0].cookie, 3);
	assert_int_equal(a[0].seq, 3);
	assert_int_equal(a[0].n, 2);
	assert_int_equal(a[0].pasid, 5);
	assert_false(a[0].by_kernel);
	assert_true(a[0].t_answer >= a[0].t_inject && a[0].t_inject > 0);
	assert_int_equal(iopf_sim_harvest(fx->s, a, 8), 1);
	assert_int_equal(a[0].tag, 100);
	assert_int_equal(a[0].code, 1);
	assert_int_equal(a[0].pasid, IOPF_PASID_NONE);
	assert_int_equal(iopf_sim_harvest(fx->s, a, 8), 0);
	assert_false(iopf_sim_peek_answered(fx->s));
	assert_int_equal(iopf_sim_wait(fx->s, 1000), 0);
	assert_int_equal(counts(fx).free, 16 - 1);
}

static void *answer_later(void *arg)
{
	struct fx *fx = arg;

	usleep(20000);
	(void)respond(fx, 1, 0);
	return NULL;
}

static void test_wait_wakes(void **state)
{
	struct fx *fx = *state;
	struct iommu_hwpt_pgfault rec[1];
	pthread_t t;

	inject(fx, 1, IOPF_PASID_NONE, 1, 0, 1);
	assert_int_equal(bread(fx, rec, sizeof(rec)), REC);
	assert_int_equal(pthread_create(&t, NULL, answer_later, fx), 0);
	/* woken by the answer, long before this timeout */
	assert_int_equal(iopf_sim_wait(fx->s, 30 * UINT64_C(1000000000)), 1);
	pthread_join(t, NULL);
}

static void test_queue_full_and_bad_groups(void **state)
{
	struct fx *fx = *state;
	struct iopf_sim_fault f[9] = {};
	struct iopf_sim_group g[20];
	struct iopf_sim_answer a[16];
	struct iommu_hwpt_pgfault rec[16];
	unsigned i;

	for (i = 0; i < 20; i++)
		g[i] = (struct iopf_sim_group){
			.dev_id = 1, .pasid = IOPF_PASID_NONE, .n = 1, .faults = f, .tag = i};
	g[0].n = 9;
	assert_int_equal(iopf_sim_inject(fx->s, g, 1), -EINVAL);
	g[0].n = 0;
	assert_int_equal(iopf_sim_inject(fx->s, g, 1), -EINVAL);
	g[0].n = 1;
	g[0].pasid = IOPF_PASID_MAX + 1;
	assert_int_equal(iopf_sim_inject(fx->s, g, 1), -EINVAL);
	g[0].pasid = IOPF_PASID_NONE;
	/* depth 16 counts queued, delivered and unharvested groups alike */
	assert_int_equal(iopf_sim_inject(fx->s, g, 20), 16);
	assert_int_equal(iopf_sim_inject(fx->s, g, 1), -ENOSPC);
	assert_int_equal(bread(fx, rec, sizeof(rec)), 16 * REC);
	assert_int_equal(iopf_sim_inject(fx->s, g, 1), -ENOSPC);
	for (i = 0; i < 16; i++)
		assert_int_equal(respond(fx, i + 1, 0), RESP);
	assert_int_equal(iopf_sim_inject(fx->s, g, 1), -ENOSPC);
	assert_int_equal(iopf_sim_harvest(fx->s, a, 16), 16);
	assert_int_equal(iopf_sim_inject(fx->s, g, 20), 16);
}

/* ---- doorbell ---- */

static void test_doorbell_level(void **state)
{
	struct fx *fx = *state;
	struct iommu_hwpt_pgfault rec[8];

	assert_false(doorbell_up(fx));
	inject(fx, 1, IOPF_PASID_NONE, 1, 0, 1);
	assert_true(doorbell_up(fx));
	inject(fx, 1, IOPF_PASID_NONE, 1, 0, 2);
	inject(fx, 1, IOPF_PASID_NONE, 1, 0, 3);
	/* rung once, on empty -> non-empty */
	assert_int_equal(counts(fx).stats.doorbells, 1);
	assert_int_equal(bread(fx, rec, 2 * REC), 2 * REC);
	assert_true(doorbell_up(fx)); /* one undelivered left */
	assert_int_equal(bread(fx, rec, 2 * REC), REC);
	/* delivered-but-unanswered groups do not count */
	assert_false(doorbell_up(fx));
	assert_int_equal(counts(fx).delivered, 3);
	inject(fx, 1, IOPF_PASID_NONE, 1, 0, 4);
	assert_true(doorbell_up(fx));
	assert_int_equal(counts(fx).stats.doorbells, 2);
	/* detach empties the queue: the doorbell goes down with it */
	assert_int_equal(iopf_sim_detach(fx->s, 1, IOPF_SIM_PASID_ANY), 4);
	assert_false(doorbell_up(fx));
	/*
	 * A spurious ring (the tenant owns the eventfd too) is drained by the next
	 * empty reads: the first may skip it, since the read before it emptied the
	 * queue and no group came since (a server's second read of a turn).
	 */
	assert_int_equal(eventfd_write(iopf_sim_fault_fd(fx->s), 5), 0);
	assert_true(doorbell_up(fx));
	assert_int_equal(bread(fx, rec, sizeof(rec)), 0);
	assert_int_equal(bread(fx, rec, sizeof(rec)), 0);
	assert_false(doorbell_up(fx));
	/* after an empty read, at once */
	assert_int_equal(eventfd_write(iopf_sim_fault_fd(fx->s), 1), 0);
	assert_true(doorbell_up(fx));
	assert_int_equal(bread(fx, rec, sizeof(rec)), 0);
	assert_false(doorbell_up(fx));
	/* and a group read to the end always takes the doorbell down with it */
	inject(fx, 1, IOPF_PASID_NONE, 1, 0, 5);
	assert_int_equal(eventfd_write(iopf_sim_fault_fd(fx->s), 1), 0);
	assert_int_equal(bread(fx, rec, sizeof(rec)), REC);
	assert_false(doorbell_up(fx));
}

/* The device side of test_doorbell_races: inject in bursts, harvest as answers come. */
struct racer {
	struct iopf_sim *s;
	unsigned groups;
	int done;
};

static void *racer_inject(void *arg)
{
	struct racer *r = arg;
	struct iopf_sim_fault f = {.addr = 0x1000, .perm = IOMMU_PGFAULT_PERM_READ};
	struct iopf_sim_group g = {.dev_id = 1, .pasid = IOPF_PASID_NONE, .n = 1, .faults = &f};
	struct iopf_sim_answer a[16];
	unsigned sent = 0, seed = 1;

	while (sent < r->groups) {
		unsigned burst = 1 + (seed = seed * 1103515245 + 12345) % 4;

		for (unsigned k = 0; k < burst && sent < r->groups; k++)
			if (iopf_sim_inject(r->s, &g, 1) == 1)
				sent++;
		while (iopf_sim_harvest(r->s, a, 16) > 0)
			;
		if (seed & 0x100)
			sched_yield();
	}
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * The daemon drains the doorbell under the lock, when its read empties the
 * queue: however injections and reads interleave, a queued group never waits
 * behind a doorbell that is down. A lost wakeup shows as a poll timing out with groups
 * still queued.
 */
static void test_doorbell_races(void **state)
{
	struct fx *fx = *state;
	struct racer r = {.s = fx->s, .groups = 50000};
	struct iommu_hwpt_pgfault rec[16];
	unsigned got = 0;
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, racer_inject, &r), 0);
	while (got < r.groups) {
		struct pollfd p = {.fd = fx->b->poll_fd, .events = POLLIN};
		ssize_t n;

		if (poll(&p, 1, 1000) == 0) {
			/* quiet for 1 s: nothing may be left queued */
			assert_int_equal(counts(fx).queued, 0);
			continue;
		}
		/*
		 * One read per wakeup, not until empty: a server that relies on the
		 * doorbell alone is the one a lost ring would stall.
		 */
		n = bread(fx, rec, sizeof(rec));
		/* the injector holds the lock (-EBUSY), or held it past the daemon's wait */
		if (n == -EBUSY || n == -ETIMEDOUT)
			continue;
		assert_true(n >= 0);
		for (size_t i = 0; i < (size_t)n / REC; i++) {
			ssize_t w;

			while ((w = respond(fx, rec[i].cookie, 0)) == -ETIMEDOUT || w == -EBUSY)
				sched_yield();
			assert_int_equal(w, (ssize_t)RESP);
		}
		got += (unsigned)((size_t)n / REC);
	}
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(got, r.groups);
	assert_false(doorbell_up(fx));
}

static void test_doorbell_blocking_eventfd(void **state)
{
	struct fx *fx = *state;
	struct iommu_hwpt_pgfault rec[8];
	int fl = fcntl(fx->b->fault_fd, F_GETFL);

	/* the tenant clears O_NONBLOCK on the shared file: the daemon must still not block */
	assert_int_equal(fcntl(fx->b->fault_fd, F_SETFL, fl & ~O_NONBLOCK), 0);
	inject(fx, 1, IOPF_PASID_NONE, 1, 0, 1);
	assert_int_equal(eventfd_read(iopf_sim_fault_fd(fx->s), &(eventfd_t){0}), 0);
	assert_int_equal(bread(fx, rec, sizeof(rec)), REC);
	assert_int_equal(bread(fx, rec, sizeof(rec)), 0);
}

/*
 * The daemon never writes to the doorbell: with the tenant's eventfd blocking
 * and its counter at the maximum a write can reach (the next write of 1
 * blocks), opening a backend on a context with queued groups, reads and
 * answers all return.
 */
static void test_doorbell_daemon_never_writes(void **state)
{
	struct fx *fx = *state;
	int efd = iopf_sim_fault_fd(fx->s), fl = fcntl(efd, F_GETFL);
	struct iommu_hwpt_pgfault rec[8];
	struct iopf_backend *b2 = NULL;

	inject(fx, 1, IOPF_PASID_NONE, 1, 0, 1);
	inject(fx, 1, IOPF_PASID_NONE, 1, 0, 2);
	assert_int_equal(fcntl(efd, F_SETFL, fl & ~O_NONBLOCK), 0);
	assert_int_equal(eventfd_write(efd, UINT64_C(0xfffffffffffffffd)), 0);
	alarm(20); /* a daemon-side write that blocks fails the test rather than hanging it */
	assert_int_equal(sim_backend_open_dup(fx->s, 1, &b2), 0);
	assert_true(doorbell_up(fx));
	assert_int_equal(bread(fx, rec, REC), REC); /* not emptied: the doorbell stays */
	assert_true(doorbell_up(fx));
	assert_int_equal(respond(fx, rec[0].cookie, 0), RESP);
	assert_int_equal(bread(fx, rec, sizeof(rec)), REC); /* emptied: drained, not blocked */
	assert_false(doorbell_up(fx));
	assert_int_equal(bread(fx, rec, sizeof(rec)), 0);
	sim_backend_close(b2);
	alarm(0);
	assert_int_equal(fcntl(efd, F_SETFL, fl), 0);
}

/*
 * Groups queued with the doorbell down (here: the tenant read its own
 * doorbell) when a backend opens: the daemon does not ring, it asks the
 * device side to, which does at its next locked call.
 */
static void test_doorbell_ring_wanted(void **state)
{
	struct fx *fx = *state;
	struct iommu_hwpt_pgfault rec[8];
	struct iopf_backend *b2 = NULL;
	struct iopf_sim_answer a[4];
	struct iopf_sim_shm_hdr *h = __iopf_sim_shm(fx->s, NULL);

	inject(fx, 1, IOPF_PASID_NONE, 1, 0, 1);
	assert_int_equal(eventfd_read(iopf_sim_fault_fd(fx->s), &(eventfd_t){0}), 0);
	assert_false(doorbell_up(fx));
	assert_int_equal(sim_backend_open_dup(fx->s, 1, &b2), 0);
	assert_false(doorbell_up(fx));
	assert_int_equal(h->ring_wanted, 1);
	assert_int_equal(iopf_sim_harvest(fx->s, a, ARRAY_SIZE(a)), 0);
	assert_true(doorbell_up(fx));
	assert_int_equal(h->ring_wanted, 0);
	assert_int_equal(b2->ops->fault_read(b2, rec, sizeof(rec)), REC);
	assert_false(doorbell_up(fx));
	/* with the doorbell up, nothing is asked */
	inject(fx, 1, IOPF_PASID_NONE, 1, 0, 2);
	sim_backend_close(b2);
	assert_int_equal(sim_backend_open_dup(fx->s, 1, &b2), 0);
	assert_int_equal(h->ring_wanted, 0);
	sim_backend_close(b2);
}

/* ---- detach ---- */

static void test_detach_auto_invalid(void **state)
{
	struct fx *fx = *state;
	struct iommu_hwpt_pgfault rec[16];
	struct iopf_sim_answer a[16];
	unsigned i, kernel = 0;

	inject(fx, 1, IOPF_PASID_NONE, 1, 0x1000, 1); /* delivered */
	inject(fx, 2, IOPF_PASID_NONE, 1, 0x2000, 2); /* delivered, other device */
	inject(fx, 1, 7, 1, 0x3000, 3);		      /* delivered, dev 1 pasid 7 */
	assert_int_equal(bread(fx, rec, 3 * REC), 3 * REC);
	inject(fx, 1, IOPF_PASID_NONE, 2, 0x4000, 4); /* queued */
	inject(fx, 2, IOPF_PASID_NONE, 1, 0x5000, 5); /* queued, other device */
	inject(fx, 1, IOPF_PASID_NONE, 1, 0x6000, 6); /* queued */

	/* dev 1's RID attach goes: its delivered group and its two queued ones */
	assert_int_equal(iopf_sim_detach(fx->s, 1, IOPF_PASID_NONE), 3);
	assert_int_equal(iopf_sim_detach(fx->s, 1, IOPF_PASID_NONE), 0);
	assert_int_equal(counts(fx).delivered, 2);
	assert_int_equal(counts(fx).queued, 1);
	assert_int_equal(counts(fx).stats.auto_invalid, 3);

	/* the kernel answered cookie 1: a late response is EINVAL... */
	assert_int_equal(respond(fx, 1, 0), -EINVAL);
	/* ...until the cookie is reused by the next group read, which it then answers */
	assert_int_equal(bread(fx, rec, sizeof(rec)), REC);
	assert_int_equal(rec[0].dev_id, 2);
	assert_int_equal(rec[0].addr, 0x5000);
	assert_int_equal(rec[0].cookie, 1);

	assert_int_equal(iopf_sim_harvest(fx->s, a, 16), 3);
	for (i = 0; i < 3; i++) {
		assert_int_equal(a[i].code, IOMMUFD_PAGE_RESP_INVALID);
		assert_true(a[i].by_kernel);
		assert_int_equal(a[i].dev_id, 1);
		kernel |= 1u << a[i].tag;
	}
	assert_int_equal(kernel, 1u << 1 | 1u << 4 | 1u << 6);
	for (i = 0; i < 3; i++)
		if (a[i].tag == 4)
			assert_int_equal(a[i].cookie, 0); /* never delivered */

	/* every attach of dev 1 */
	assert_int_equal(iopf_sim_detach(fx->s, 1, IOPF_SIM_PASID_ANY), 1);
	assert_int_equal(respond(fx, 3, 0), -EINVAL);
	assert_int_equal(respond(fx, 2, 0), RESP);
	assert_int_equal(respond(fx, 1, 0), RESP);
	assert_int_equal(counts(fx).delivered, 0);
}

static void test_detach_delivered_only(void **state)
{
	struct fx *fx = *state;
	struct iommu_hwpt_pgfault rec[4];

	inject(fx, 1, IOPF_PASID_NONE, 1, 0x1000, 1);
	/* queued only: nothing is held, so nothing happens */
	assert_int_equal(iopf_sim_detach_delivered(fx->s, 1, IOPF_SIM_PASID_ANY), 0);
	assert_int_equal(counts(fx).queued, 1);
	assert_int_equal(bread(fx, rec, sizeof(rec)), REC);
	inject(fx, 1, IOPF_PASID_NONE, 1, 0x2000, 2);
	assert_int_equal(iopf_sim_detach_delivered(fx->s, 2, IOPF_SIM_PASID_ANY), 0);
	assert_int_equal(iopf_sim_detach_delivered(fx->s, 1, 5), 0);
	/* held by the daemon: the whole attach goes, queued group included */
	assert_int_equal(iopf_sim_detach_delivered(fx->s, 1, IOPF_PASID_NONE), 2);
	assert_int_equal(counts(fx).queued, 0);
	assert_int_equal(respond(fx, rec[0].cookie, 0), -EINVAL);
}

/* ---- IOMMU ---- */

static int make_backing(size_t size)
{
	int fd = memfd_create("backing", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	return fd;
}

static int bmap(struct fx *fx, uint64_t iova, uint64_t len, uint32_t prot, int fd, uint64_t off)
{
	struct iopf_map_req req = {
		.iova = iova,
		.length = len,
		.prot = prot,
		.fd = fd,
		.offset = off,
	};
	return fx->b->ops->map(fx->b, &req);
}

static int bunmap(struct fx *fx, uint64_t iova, uint64_t len)
{
	return fx->b->ops->unmap(fx->b, iova, len);
}

#define RW (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)

static void test_map_lookup(void **state)
{
	struct fx *fx = *state;
	struct iopf_sim_mapping mp;
	struct stat st;
	int fd = make_backing(16 * PG);

	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(bmap(fx, 0x100000, 4 * PG, RW, fd, 2 * PG), 0);
	assert_int_equal(iopf_sim_lookup(fx->s, 1, 0x102abc, &mp), 0);
	assert_int_equal(mp.prot, RW);
	assert_int_equal(mp.st_ino, st.st_ino);
	assert_int_equal(mp.st_dev, st.st_dev);
	assert_int_equal(mp.offset, 4 * PG);
	assert_int_equal(mp.map_iova, 0x100000);
	assert_int_equal(mp.map_length, 4 * PG);
	assert_int_equal(iopf_sim_lookup(fx->s, 1, 0x104000, &mp), -ENOENT);
	assert_int_equal(iopf_sim_lookup(fx->s, 1, 0xff000, &mp), -ENOENT);
	/* IOAS 2 is a separate address space */
	assert_int_equal(iopf_sim_lookup(fx->s, 2, 0x100000, &mp), -ENOENT);
	assert_int_equal(iopf_sim_lookup(fx->s, 3, 0x100000, &mp), -ENOENT);

	/* any page already mapped: EEXIST, and nothing changes */
	assert_int_equal(bmap(fx, 0x103000, 2 * PG, IOMMU_IOAS_MAP_READABLE, fd, 0), -EEXIST);
	assert_int_equal(bmap(fx, 0xff000, 2 * PG, IOMMU_IOAS_MAP_READABLE, fd, 0), -EEXIST);
	assert_int_equal(iopf_sim_lookup(fx->s, 1, 0xff000, &mp), -ENOENT);
	assert_int_equal(bmap(fx, 0x104000, PG, IOMMU_IOAS_MAP_READABLE, fd, 0), 0);
	assert_int_equal(iopf_sim_lookup(fx->s, 1, 0x104000, &mp), 0);
	assert_int_equal(mp.prot, IOMMU_IOAS_MAP_READABLE);
	assert_int_equal(mp.offset, 0);
	assert_int_equal(counts(fx).pages_mapped, 5);
	assert_int_equal(counts(fx).maps, 2);
	assert_int_equal(counts(fx).stats.map_eexist, 2);

	/* many at once: each page answered as alone, whatever its neighbours */
	{
		const uint64_t iova[] = {0x104000, 0xff000, 0x100fff, 0x104abc, 0x105000};
		struct iopf_sim_mapping many[5];
		int rc[5];

		assert_int_equal(iopf_sim_lookup_many(fx->s, 1, iova, 5, many, rc), 0);
		for (unsigned i = 0; i < 5; i++) {
			assert_int_equal(rc[i], iopf_sim_lookup(fx->s, 1, iova[i], &mp));
			if (rc[i] < 0)
				continue;
			assert_int_equal(many[i].map_iova, mp.map_iova);
			assert_int_equal(many[i].map_length, mp.map_length);
			assert_int_equal(many[i].prot, mp.prot);
			assert_int_equal(many[i].st_dev, mp.st_dev);
			assert_int_equal(many[i].st_ino, mp.st_ino);
			assert_int_equal(many[i].offset, mp.offset);
		}
		assert_int_equal(rc[1], -ENOENT);
		assert_int_equal(rc[2], 0);
		assert_int_equal(many[2].offset, 2 * PG);
		assert_int_equal(iopf_sim_lookup_many(fx->s, 3, iova, 5, many, rc), 0);
		for (unsigned i = 0; i < 5; i++)
			assert_int_equal(rc[i], -ENOENT);
	}
	close(fd);
}

static void test_map_validation(void **state)
{
	struct fx *fx = *state;
	int fd = make_backing(4 * PG), big = make_backing(128 * PG), p[2], path;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(bmap(fx, 0x1000, 0, RW, fd, 0), -EINVAL);
	assert_int_equal(bmap(fx, 0x1800, PG, RW, fd, 0), -EINVAL);
	assert_int_equal(bmap(fx, 0x1000, 100, RW, fd, 0), -EINVAL);
	assert_int_equal(bmap(fx, 0x1000, PG, RW, fd, 12), -EINVAL);
	assert_int_equal(bmap(fx, 0x1000, PG, 0, fd, 0), -EINVAL);
	assert_int_equal(bmap(fx, 0x1000, PG, 8, fd, 0), -EINVAL);
	assert_int_equal(bmap(fx, -PG, 2 * PG, RW, fd, 0), -EOVERFLOW);
	assert_int_equal(bmap(fx, 0x1000, PG, RW, -1, 0), -EBADF);
	assert_int_equal(bmap(fx, 0x1000, PG, RW, p[0], 0), -EINVAL); /* not a file */
	path = fd_reopen(fd, O_PATH); /* no access through it: fget() refuses it */
	assert_true(path >= 0);
	assert_int_equal(bmap(fx, 0x1000, PG, IOMMU_IOAS_MAP_READABLE, path, 0), -EBADF);
	close(path);
	assert_int_equal(bmap(fx, 0x1000, 2 * PG, RW, fd, 3 * PG), -EINVAL); /* past its end */
	assert_int_equal(bmap(fx, 0x1000, 65 * PG, RW, big, 0), -ENOMEM);    /* > capacity */
	assert_int_equal(counts(fx).maps, 0);
	assert_int_equal(bmap(fx, -PG, PG, RW, fd, 3 * PG), 0); /* the last page is fine */
	assert_int_equal(bunmap(fx, -PG, PG), 0);
	close(fd);
	close(big);
	close(p[0]);
	close(p[1]);
}

static void test_unmap_exact_extents(void **state)
{
	struct fx *fx = *state;
	struct iopf_sim_mapping mp;
	int fd = make_backing(64 * PG);

	assert_int_equal(bmap(fx, 0x10000, 4 * PG, RW, fd, 0), 0);
	assert_int_equal(bmap(fx, 0x14000, 2 * PG, RW, fd, 0), 0);
	assert_int_equal(bmap(fx, 0x20000, 1 * PG, RW, fd, 0), 0);

	assert_int_equal(bunmap(fx, 0x10000, 0), -EINVAL);
	assert_int_equal(bunmap(fx, 0x10800, PG), -EINVAL);
	/* nothing there */
	assert_int_equal(bunmap(fx, 0x30000, 4 * PG), -ENOENT);
	/* a subset or a tail of a map cannot be unmapped */
	assert_int_equal(bunmap(fx, 0x10000, 2 * PG), -ENOENT);
	assert_int_equal(bunmap(fx, 0x11000, 3 * PG), -ENOENT);
	assert_int_equal(bunmap(fx, 0xf000, 2 * PG), -ENOENT);
	assert_int_equal(counts(fx).maps, 3);
	assert_int_equal(counts(fx).pages_mapped, 7);

	/* a range covering two whole maps (and holes) unmaps both */
	assert_int_equal(bunmap(fx, 0x8000, 0x10000), 0);
	assert_int_equal(iopf_sim_lookup(fx->s, 1, 0x10000, &mp), -ENOENT);
	assert_int_equal(iopf_sim_lookup(fx->s, 1, 0x15000, &mp), -ENOENT);
	assert_int_equal(counts(fx).maps, 1);
	assert_int_equal(counts(fx).pages_mapped, 1);
	assert_int_equal(bunmap(fx, 0x20000, PG), 0);
	assert_int_equal(bunmap(fx, 0x20000, PG), -ENOENT);

	/* like the kernel: maps before the split one, in IOVA order, are already gone */
	assert_int_equal(bmap(fx, 0x40000, PG, RW, fd, 0), 0);
	assert_int_equal(bmap(fx, 0x41000, 2 * PG, RW, fd, 0), 0);
	assert_int_equal(bunmap(fx, 0x40000, 2 * PG), -ENOENT);
	assert_int_equal(iopf_sim_lookup(fx->s, 1, 0x40000, &mp), -ENOENT);
	assert_int_equal(iopf_sim_lookup(fx->s, 1, 0x41000, &mp), 0);
	/* the whole address space, scanning the extent table */
	assert_int_equal(bunmap(fx, 0, -PG), 0);
	assert_int_equal(counts(fx).maps, 0);
	assert_int_equal(counts(fx).pages_mapped, 0);
	assert_int_equal(bunmap(fx, 0, -PG), -ENOENT);
	close(fd);
}

static void test_map_capacity(void **state)
{
	struct fx *fx = *state;
	int fd = make_backing(64 * PG);
	unsigned i;

	/* 8 extents */
	for (i = 0; i < 8; i++)
		assert_int_equal(bmap(fx, i * 0x10000, PG, RW, fd, 0), 0);
	assert_int_equal(bmap(fx, 0x100000, PG, RW, fd, 0), -ENOSPC);
	assert_int_equal(bunmap(fx, 0x30000, PG), 0);
	/* 64 pages: 7 used, 57 left */
	assert_int_equal(bmap(fx, 0x100000, 58 * PG, RW, fd, 0), -ENOMEM);
	assert_int_equal(bmap(fx, 0x100000, 57 * PG, RW, fd, 0), 0);
	assert_int_equal(counts(fx).pages_mapped, 64);
	assert_int_equal(bunmap(fx, 0x100000, 57 * PG), 0);
	assert_int_equal(counts(fx).pages_mapped, 7);
	close(fd);
}

/* Many maps and unmaps in random order against a per-page model: hash deletion stays exact. */
static void test_iommu_churn(void **state)
{
	const struct iopf_sim_config cfg = {
		.queue_depth = 4, .iommu_pages = 4096, .iommu_maps = 4096};
	struct fx *fx;
	struct iopf_sim_mapping mp;
	enum { SPAN = 2048 };
	static uint16_t model[SPAN]; /* extent start page + 1 per page */
	static uint8_t mlen[SPAN];
	int fd = make_backing(SPAN * PG);
	unsigned i, step;

	setup_cfg((void **)&fx, &cfg);
	memset(model, 0, sizeof(model));
	srand(1);
	for (step = 0; step < 20000; step++) {
		unsigned start = (unsigned)rand() % SPAN, len = 1 + (unsigned)rand() % 8, k;
		bool busy = false;
		int r;

		if (start + len > SPAN)
			len = SPAN - start;
		for (k = 0; k < len; k++)
			busy |= model[start + k] != 0;
		if (rand() % 2) {
			r = bmap(fx, (uint64_t)start * PG, (uint64_t)len * PG, RW, fd,
				 (uint64_t)start * PG);
			assert_int_equal(r, busy ? -EEXIST : 0);
			if (!r) {
				for (k = 0; k < len; k++)
					model[start + k] = (uint16_t)(start + 1);
				mlen[start] = (uint8_t)len;
			}
		} else if (model[start]) {
			unsigned s0 = model[start] - 1, l0 = mlen[s0];

			r = bunmap(fx, (uint64_t)s0 * PG, (uint64_t)l0 * PG);
			assert_int_equal(r, 0);
			for (k = 0; k < l0; k++)
				model[s0 + k] = 0;
		}
	}
	for (i = 0; i < SPAN; i++) {
		int r = iopf_sim_lookup(fx->s, 1, (uint64_t)i * PG, &mp);

		assert_int_equal(r, model[i] ? 0 : -ENOENT);
		if (!r) {
			assert_int_equal(mp.map_iova, (uint64_t)(model[i] - 1) * PG);
			assert_int_equal(mp.offset, (uint64_t)i * PG);
		}
	}
	close(fd);
	teardown((void **)&fx);
}

/* ---- hostile shared memory (and tests/fuzz/fuzz-sim-shm.c) ---- */

static void test_hostile_indices(void **state)
{
	struct fx *fx = *state;
	struct iopf_sim_shm_hdr *h = __iopf_sim_shm(fx->s, NULL);
	struct iommu_hwpt_pgfault rec[16];
	uint32_t *pend = (uint32_t *)((uint8_t *)h + ALIGN_UP(sizeof(*h), 64) +
				      ALIGN_UP(sizeof(pthread_mutex_t), 64));
	uint32_t saved;
	int fd = make_backing(4 * PG);

	/* a queued entry naming a slot that does not exist is skipped */
	inject(fx, 1, IOPF_PASID_NONE, 1, 0x1000, 1);
	inject(fx, 2, IOPF_PASID_NONE, 1, 0x2000, 2);
	saved = pend[h->pend_head & 15];
	pend[h->pend_head & 15] = 0xdeadbeef;
	assert_int_equal(bread(fx, rec, sizeof(rec)), REC);
	assert_int_equal(rec[0].dev_id, 2);
	assert_true(counts(fx).stats.corrupt >= 1);
	(void)saved;

	/* a queue that claims more entries than slots */
	h->pend_tail = h->pend_head + 1000;
	assert_int_equal(bread(fx, rec, sizeof(rec)), -EIO);
	h->pend_tail = h->pend_head;

	/* cookie bitmap and cookie->slot table garbage: responses are refused, no crash */
	memset((uint8_t *)pend + 3 * 16 * 4, 0xff, 16 * 4 + 8);
	assert_int_equal(respond(fx, 1, 0), -EINVAL);
	assert_int_equal(respond(fx, 16, 0), -EINVAL);
	h->cookie_hint = 0xffffffff;
	inject(fx, 3, IOPF_PASID_NONE, 1, 0x3000, 3);
	/* every cookie looks taken: the read fails instead of reusing one */
	assert_int_equal(bread(fx, rec, sizeof(rec)), -EIO);

	/* extents and the page hash full of garbage */
	h->ext_free = 0xffffff;
	assert_int_equal(bmap(fx, 0x1000, PG, RW, fd, 0), -ENOSPC);
	h->n_pages_mapped = 0xfffffff0;
	assert_int_equal(bmap(fx, 0x1000, PG, RW, fd, 0), -ENOMEM);
	close(fd);
}

static void test_lock_owner_died(void **state)
{
	struct fx *fx = *state;
	pthread_mutex_t *mu = (pthread_mutex_t *)((uint8_t *)__iopf_sim_shm(fx->s, NULL) +
						  ALIGN_UP(sizeof(struct iopf_sim_shm_hdr), 64));
	struct iommu_hwpt_pgfault rec[4];
	int status;
	pid_t pid;

	inject(fx, 1, IOPF_PASID_NONE, 1, 0, 1);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* a tenant killed while holding the lock */
		pthread_mutex_lock(mu);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(bread(fx, rec, sizeof(rec)), REC);
	assert_int_equal(counts(fx).stats.owner_died, 1);
	assert_int_equal(respond(fx, 1, 0), RESP);
}

static void *hold_lock(void *arg)
{
	pthread_mutex_t *mu = arg;

	pthread_mutex_lock(mu);
	usleep(300000);
	pthread_mutex_unlock(mu);
	return NULL;
}

static void test_lock_timeout(void **state)
{
	struct fx *fx = *state;
	pthread_mutex_t *mu = (pthread_mutex_t *)((uint8_t *)__iopf_sim_shm(fx->s, NULL) +
						  ALIGN_UP(sizeof(struct iopf_sim_shm_hdr), 64));
	struct iommu_hwpt_pgfault rec[4];
	int fd = make_backing(PG);
	uint64_t t0;
	pthread_t t;

	inject(fx, 1, IOPF_PASID_NONE, 1, 0, 1);
	assert_int_equal(bread(fx, rec, sizeof(rec)), REC);
	__iopf_sim_set_lock_timeout(10 * 1000 * 1000);
	assert_int_equal(pthread_create(&t, NULL, hold_lock, mu), 0);
	usleep(20000);
	/*
	 * A peer sitting on the lock stalls nobody: reads and writes come back at
	 * once (-EBUSY, having done nothing: the worker serves its other sources
	 * and tries again next round) for 20 ms, then fail as a timed-out
	 * lock (the worker retries the source on its backoff timer); a map waits
	 * only while no call has timed out, and only tries after.
	 */
	t0 = mono_ns();
	for (unsigned i = 0;; i++) {
		ssize_t r = i % 2 ? respond(fx, 1, 0) : bread(fx, rec, sizeof(rec));

		if (r != -EBUSY) {
			assert_int_equal(r, -ETIMEDOUT);
			break;
		}
	}
	assert_true(mono_ns() - t0 >= 20000000);
	assert_true(mono_ns() - t0 < 250000000); /* nothing waited for the holder */
	assert_int_equal(bread(fx, rec, sizeof(rec)), -ETIMEDOUT);
	assert_int_equal(respond(fx, 1, 0), -ETIMEDOUT);
	assert_int_equal(bmap(fx, 0, PG, RW, fd, 0), -ETIMEDOUT);
	assert_int_equal(iopf_sim_harvest(fx->s, NULL, 0), -ETIMEDOUT); /* the device side too */
	pthread_join(t, NULL);
	assert_int_equal(respond(fx, 1, 0), RESP); /* still outstanding: nothing was written */
	assert_int_equal(bread(fx, rec, sizeof(rec)), 0);
	close(fd);
}

/* ---- the kernel's queue as a reference model, driven at random ---- */

struct mgroup {
	uint64_t tag;
	uint32_t n, dev;
};

static void test_model_random(void **state)
{
	const struct iopf_sim_config cfg = {.queue_depth = 64, .max_group = 4};
	struct fx *fx;
	struct mgroup queued[64];
	unsigned nq = 0;
	uint64_t out[66] = {}; /* cookie -> tag + 1 of the outstanding group */
	uint32_t outdev[66];
	bool answered[200000] = {};
	uint64_t tag = 0, harvested = 0;
	unsigned step;

	setup_cfg((void **)&fx, &cfg);
	srand(12345);
	for (step = 0; step < 20000; step++) {
		int op = rand() % 10;
		struct iopf_sim_counts c = counts(fx);

		assert_int_equal(c.queued, nq);
		if (op < 4) {
			uint32_t n = 1 + (uint32_t)rand() % 4, dev = 1 + (uint32_t)rand() % 3;

			if (c.free == 0)
				continue;
			tag++;
			inject(fx, dev, IOPF_PASID_NONE, n, 0, tag);
			queued[nq++] = (struct mgroup){.tag = tag, .n = n, .dev = dev};
		} else if (op < 6) {
			struct iommu_hwpt_pgfault rec[12];
			unsigned room = (unsigned)rand() % 13, used = 0, k = 0;
			ssize_t r = bread(fx, rec, room * REC);

			/* model: whole groups FIFO while they fit, lowest free cookie each */
			while (k < nq && used + queued[k].n <= room) {
				uint32_t ck = 1;
				unsigned i;

				while (out[ck])
					ck++;
				for (i = 0; i < queued[k].n; i++) {
					assert_int_equal(rec[used + i].cookie, ck);
					assert_int_equal(rec[used + i].dev_id, queued[k].dev);
				}
				out[ck] = queued[k].tag + 1;
				outdev[ck] = queued[k].dev;
				used += queued[k].n;
				k++;
			}
			if (k)
				assert_int_equal(r, used * REC);
			else if (nq && room)
				assert_int_equal(r, -EINVAL);
			else
				assert_int_equal(r, 0);
			memmove(queued, queued + k, (nq - k) * sizeof(*queued));
			nq -= k;
			assert_int_equal(doorbell_up(fx), nq > 0);
		} else if (op < 8) {
			struct iommu_hwpt_page_response resp[4];
			unsigned n = 1 + (unsigned)rand() % 4, i, good = 0;
			bool stop = false;
			bool seen[65] = {};
			ssize_t r;

			for (i = 0; i < n; i++) {
				resp[i].cookie = 1 + (uint32_t)rand() % 66;
				resp[i].code = rand() % 20 ? (uint32_t)rand() % 2 : 3;
			}
			/* model: in order, stop at the first bad entry */
			for (i = 0; i < n && !stop; i++) {
				uint32_t ck = resp[i].cookie;

				if (resp[i].code > 1 || ck > 64 || !out[ck] || seen[ck])
					stop = true;
				else {
					seen[ck] = true;
					good++;
				}
			}
			r = bwrite(fx, resp, n * RESP);
			assert_int_equal(r, good ? (ssize_t)(good * RESP) : -EINVAL);
			for (i = 0; i < good; i++) {
				answered[out[resp[i].cookie] - 1] = true;
				out[resp[i].cookie] = 0;
			}
		} else if (op < 9) {
			struct iopf_sim_answer a[64];
			int n = iopf_sim_harvest(fx->s, a, 64), i;

			assert_true(n >= 0);
			for (i = 0; i < n; i++) {
				assert_true(a[i].tag <= tag);
				if (!a[i].by_kernel)
					assert_true(answered[a[i].tag]);
			}
			harvested += (uint64_t)n;
		} else {
			uint32_t dev = 1 + (uint32_t)rand() % 3, ck;
			unsigned k, j = 0, expect = 0;

			for (k = 0; k < nq; k++)
				if (queued[k].dev == dev)
					expect++;
				else
					queued[j++] = queued[k];
			nq = j;
			for (ck = 1; ck <= 64; ck++)
				if (out[ck] && outdev[ck] == dev) {
					out[ck] = 0;
					expect++;
				}
			assert_int_equal(iopf_sim_detach(fx->s, dev, IOPF_SIM_PASID_ANY), expect);
			assert_int_equal(doorbell_up(fx), nq > 0);
		}
	}
	assert_true(harvested > 1000);
	assert_int_equal(counts(fx).stats.corrupt, 0);
	teardown((void **)&fx);
}

TEST_MAIN(TEST(test_open_rejects_wrong_fds), TEST(test_open_rejects_stray_doorbell),
	  cmocka_unit_test(test_fd_eventfd_id), TEST(test_open_rejects_bad_header),
	  cmocka_unit_test(test_new_limits), TEST(test_read_counts_and_empty),
	  TEST(test_read_records), TEST(test_read_whole_groups_fifo),
	  TEST(test_read_raw_records_pass_through), TEST(test_cookie_lowest_free_and_reuse),
	  cmocka_unit_test(test_cookie_reuse_crosses_words), TEST(test_write_semantics),
	  TEST(test_harvest), TEST(test_wait_wakes), TEST(test_queue_full_and_bad_groups),
	  TEST(test_doorbell_level), TEST(test_doorbell_races),
	  TEST(test_doorbell_blocking_eventfd), TEST(test_doorbell_daemon_never_writes),
	  TEST(test_doorbell_ring_wanted), TEST(test_detach_auto_invalid),
	  TEST(test_detach_delivered_only), TEST(test_map_lookup), TEST(test_map_validation),
	  TEST(test_unmap_exact_extents), TEST(test_map_capacity),
	  cmocka_unit_test(test_iommu_churn), TEST(test_hostile_indices),
	  TEST(test_lock_owner_died), TEST(test_lock_timeout), cmocka_unit_test(test_model_random));
