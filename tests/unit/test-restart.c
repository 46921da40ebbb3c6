/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Crash and restart of the engine (persist.c, iopf_engine_restore()), for real:
 * a child process runs an engine on a simulated accelerator and is killed at a
 * chosen point of the fault path (SIGKILL from inside a backend call). Its fds
 * went to the parent as they would to systemd's fd store; the parent starts an
 * engine on the dead one's arena and fds, and checks that every group the
 * child read is answered exactly once, SUCCESS where it resolves, that what it
 * mapped is unmapped exactly when the region goes, and that it serves on.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit-test.h"

#include "backend.h"
#include "engine.h"
#include "sim.h"
#include "state.h"
#include "test-fds.h"
#include "util.h"

#define IOVA   (UINT64_C(1) << 30)
#define LEN    (UINT64_C(4) << 20)
#define GROUPS 24u
#define PG     UINT64_C(4096)
#define WAIT   (UINT64_C(10) * 1000000000)

enum crash_at {
	CRASH_BEFORE_WRITE, /* read, resolved, mapped; no response written */
	CRASH_AFTER_WRITE,  /* responses written; the journal not yet cleared */
	CRASH_BEFORE_MAP,   /* the map call written down, not made */
	CRASH_AFTER_MAP,    /* the map call made, not tracked */
	CRASH_REMAP_FAILS,  /* as CRASH_BEFORE_MAP, and the next process's map of it fails */
};

static enum crash_at crash_at;
static struct iopf_sim *sim_of_test;
static const struct iopf_backend_ops *real_ops;
static struct iopf_backend_ops crash_ops;

static ssize_t crash_write(struct iopf_backend *b, const void *buf, size_t len)
{
	ssize_t r;

	if (crash_at == CRASH_BEFORE_WRITE)
		raise(SIGKILL);
	r = real_ops->fault_write(b, buf, len);
	if (crash_at == CRASH_AFTER_WRITE)
		raise(SIGKILL);
	return r;
}

static int crash_map(struct iopf_backend *b, const struct iopf_map_req *req)
{
	int r;

	if (crash_at == CRASH_BEFORE_MAP || crash_at == CRASH_REMAP_FAILS)
		raise(SIGKILL);
	r = real_ops->map(b, req);
	if (crash_at == CRASH_AFTER_MAP)
		raise(SIGKILL);
	return r;
}

/*
 * The real simulator backend, calling through @ops: a copy of its own ops in
 * *@real, which the caller then changes where it wants to step in.
 */
static int open_wrapped(int fault_fd, int iommufd, uint32_t ioas_id, struct iopf_backend **ret,
			const struct iopf_backend_ops **real, struct iopf_backend_ops *ops)
{
	int r = iopf_sim_backend_open(fault_fd, iommufd, ioas_id, ret);

	if (r < 0)
		return r;
	*real = (*ret)->ops;
	*ops = **real;
	(*ret)->ops = ops;
	return 0;
}

/* The child's simulator backend: the real one, killing the process at crash_at. */
static int crash_open(int fault_fd, int iommufd, uint32_t ioas_id, struct iopf_backend **ret)
{
	int r = open_wrapped(fault_fd, iommufd, ioas_id, ret, &real_ops, &crash_ops);

	crash_ops.fault_write = crash_write;
	crash_ops.map = crash_map;
	return r;
}

/* The next process's backend for CRASH_REMAP_FAILS: its first map call fails, as on ENOMEM. */
static const struct iopf_backend_ops *refusing_real_ops;
static struct iopf_backend_ops refusing_ops;
static unsigned maps_to_refuse;

static int refusing_map(struct iopf_backend *b, const struct iopf_map_req *req)
{
	if (maps_to_refuse) {
		maps_to_refuse--;
		return -ENOMEM;
	}
	return refusing_real_ops->map(b, req);
}

static int refusing_open(int fault_fd, int iommufd, uint32_t ioas_id, struct iopf_backend **ret)
{
	int r = open_wrapped(fault_fd, iommufd, ioas_id, ret, &refusing_real_ops, &refusing_ops);

	refusing_ops.map = refusing_map;
	return r;
}

/* ---- the fd store: names and fds over a socket, as sd_pid_notify_with_fds() sends them */

struct stored {
	char name[32];
	int fd;
};

struct store {
	struct stored v[64];
	unsigned n;
};

static int child_keep(void *userdata, const char *name, int fd)
{
	int sock = *(int *)userdata;
	char cbuf[CMSG_SPACE(sizeof(int))] = {};
	struct iovec iov = {.iov_base = (void *)name, .iov_len = strlen(name)};
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf,
		.msg_controllen = sizeof(cbuf),
	};

	CMSG_FIRSTHDR(&mh)->cmsg_level = SOL_SOCKET;
	CMSG_FIRSTHDR(&mh)->cmsg_type = SCM_RIGHTS;
	CMSG_FIRSTHDR(&mh)->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(CMSG_FIRSTHDR(&mh)), &fd, sizeof(int));
	return sendmsg(sock, &mh, 0) < 0 ? -errno : 0;
}

static void store_recv(int sock, struct store *st)
{
	for (;;) {
		char name[32] = {}, cbuf[CMSG_SPACE(sizeof(int))];
		struct iovec iov = {.iov_base = name, .iov_len = sizeof(name) - 1};
		struct msghdr mh = {
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = cbuf,
			.msg_controllen = sizeof(cbuf),
		};
		ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n <= 0)
			return;
		assert_true(st->n < ARRAY_SIZE(st->v));
		assert_non_null(CMSG_FIRSTHDR(&mh));
		snprintf(st->v[st->n].name, sizeof(st->v[st->n].name), "%s", name);
		memcpy(&st->v[st->n].fd, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof(int));
		st->n++;
	}
}

static int store_take(void *userdata, const char *name)
{
	struct store *st = userdata;

	for (unsigned i = 0; i < st->n; i++)
		if (st->v[i].fd >= 0 && strcmp(st->v[i].name, name) == 0)
			return TAKE_FD(st->v[i].fd);
	return -ENOENT;
}

static void store_close(struct store *st)
{
	for (unsigned i = 0; i < st->n; i++)
		safe_close(st->v[i].fd);
}

/* ---- the run */

/* The child: an engine that serves until crash_at kills it. Never returns. */
static void child(struct iopf_sim *sim, int state_fd, int sock, int memfd, int ready)
{
	const struct iopf_engine_config cfg = {
		.n_workers = 1,
		.sim_open = crash_open,
		.state_fd = state_fd,
		.fd_store = {.keep = child_keep, .userdata = &sock},
	};
	struct iopf_engine *e;
	uint64_t src, dom, reg;

	if (iopf_engine_new(&cfg, &e) < 0 || iopf_engine_restore(e, NULL, NULL, NULL, NULL) < 0 ||
	    iopf_engine_add_source(e, 7, fcntl(iopf_sim_fault_fd(sim), F_DUPFD_CLOEXEC, 3),
				   fcntl(iopf_sim_iommufd(sim), F_DUPFD_CLOEXEC, 3),
				   iopf_sim_ioas_id(sim, 0), &src) < 0 ||
	    iopf_engine_add_domain(e, src, 1, IOPF_PASID_NONE, &dom) < 0 ||
	    iopf_engine_add_region(e, dom, memfd, 0, IOVA, LEN, IOPF_ACCESS_READ, &reg) < 0)
		_exit(1);
	(void)!write(ready, "r", 1);
	for (;;)
		pause();
}

static void inject(struct iopf_sim *sim, unsigned first, unsigned n)
{
	for (unsigned i = first; i < first + n; i++) {
		/* one group a fault-around window apart: each needs a map call of its own */
		struct iopf_sim_fault f = {.addr = IOVA + i * 16 * PG,
					   .perm = IOMMU_PGFAULT_PERM_READ};
		struct iopf_sim_group g = {
			.dev_id = 1, .pasid = IOPF_PASID_NONE, .n = 1, .faults = &f, .tag = i};

		assert_int_equal(iopf_sim_inject(sim, &g, 1), 1);
	}
}

/* Harvest until @n answers came; each tag once, SUCCESS. */
static void expect_answers(struct iopf_sim *sim, unsigned first, unsigned n)
{
	bool seen[2 * GROUPS] = {};
	unsigned got = 0;

	while (got < n) {
		struct iopf_sim_answer a[2 * GROUPS];
		int k;

		assert_true(iopf_sim_wait(sim, WAIT) > 0);
		k = iopf_sim_harvest(sim, a, ARRAY_SIZE(a));
		assert_true(k >= 0);
		for (int i = 0; i < k; i++) {
			assert_true(a[i].tag >= first && a[i].tag < first + n);
			assert_false(seen[a[i].tag]);
			seen[a[i].tag] = true;
			assert_int_equal(a[i].code, IOMMUFD_PAGE_RESP_SUCCESS);
		}
		got += (unsigned)k;
	}
}

static void removed(void *userdata, int error)
{
	*(int *)userdata = error + 1;
}

static void run(enum crash_at at)
{
	const struct iopf_sim_config scfg = {.queue_depth = 256, .iommu_maps = 4096};
	struct iopf_engine_config cfg = {.n_workers = 1, .sim_open = iopf_sim_backend_open};
	struct iopf_engine_restored rs = {};
	struct iopf_sim_counts counts;
	struct store st = {};
	struct iopf_engine *e;
	struct iopf_state *fresh;
	int sv[2], ready[2], memfd, state_fd, status, done = 0;
	char c;
	pid_t pid;

	crash_at = at;
	assert_int_equal(iopf_sim_new(&scfg, &sim_of_test), 0);
	memfd = test_memfd(LEN);
	/* the arena the child starts on, as systemd would hand one back */
	assert_int_equal(iopf_state_new(&fresh), 0);
	state_fd = fcntl(iopf_state_fd(fresh), F_DUPFD_CLOEXEC, 3);
	iopf_state_free(fresh);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		close(ready[0]);
		child(sim_of_test, fcntl(state_fd, F_DUPFD_CLOEXEC, 3), sv[1], memfd, ready[1]);
	}
	close(sv[1]);
	close(ready[1]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	inject(sim_of_test, 0, GROUPS);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	store_recv(sv[0], &st);
	assert_int_equal(st.n, 3); /* fault fd, iommufd, the region's memory */

	/* the restart */
	cfg.state_fd = state_fd;
	if (at == CRASH_REMAP_FAILS) {
		cfg.sim_open = refusing_open;
		maps_to_refuse = 1;
	}
	assert_int_equal(iopf_engine_new(&cfg, &e), 0);
	assert_int_equal(iopf_engine_restore(e, store_take, NULL, &st, &rs), 0);
	assert_int_equal(rs.sources, 1);
	assert_int_equal(rs.domains, 1);
	assert_int_equal(rs.regions, 1);
	assert_int_equal(rs.dropped, 0);
	/* a map call that cannot be settled is left alone, and counted */
	assert_int_equal(rs.uncertain, at == CRASH_REMAP_FAILS ? 1 : 0);
	assert_int_equal(maps_to_refuse, 0);
	assert_true(rs.pending >= 1);
	expect_answers(sim_of_test, 0, GROUPS);
	/* the recovery is the worker's: wait until it wrote what the journal held */
	for (;;) {
		struct iopf_source_info si;
		uint64_t id;

		for (id = 1; iopf_engine_source_info(e, id, &si) != 0; id++)
			assert_true(id < 16);
		if (si.recovered == rs.pending)
			break;
		assert_true(si.recovered < rs.pending);
		usleep(1000);
	}
	assert_int_equal(iopf_sim_get_counts(sim_of_test, &counts), 0);
	/* answered twice only where the kernel refuses it: the dead one's own writes */
	assert_int_equal(counts.stats.answers, GROUPS);
	if (at == CRASH_AFTER_WRITE)
		assert_int_equal(counts.stats.bad_cookie, rs.pending);
	else
		assert_int_equal(counts.stats.bad_cookie, 0);
	assert_int_equal(counts.delivered, 0);
	printf("crash %d: %" PRIu64 " records recovered, %" PRIu64 " refused as answered\n", at,
	       rs.pending, counts.stats.bad_cookie);

	/* it serves on */
	inject(sim_of_test, GROUPS, GROUPS);
	expect_answers(sim_of_test, GROUPS, GROUPS);

	/* everything either process mapped goes with the region, exactly */
	assert_int_equal(iopf_sim_get_counts(sim_of_test, &counts), 0);
	assert_true(counts.maps >= 1);
	{
		struct iopf_region_info ri;
		uint64_t reg = 0;

		for (uint64_t id = 1; id < 16 && !reg; id++)
			if (iopf_engine_region_info(e, id, &ri) == 0)
				reg = id;
		assert_true(reg != 0);
		/* its gauge counts what the dead process mapped too */
		assert_int_equal(ri.bytes_mapped, counts.pages_mapped * PG);
		assert_int_equal(iopf_engine_remove_region(e, reg, removed, &done), 0);
		while (!done)
			(void)iopf_engine_dispatch(e);
		assert_int_equal(done, 1);
	}
	assert_int_equal(iopf_sim_get_counts(sim_of_test, &counts), 0);
	assert_int_equal(counts.maps, 0);
	assert_int_equal(counts.pages_mapped, 0);
	assert_int_equal(counts.stats.unmap_errors, 0);

	iopf_engine_free(e);
	store_close(&st);
	close(sv[0]);
	close(ready[0]);
	close(memfd);
	sim_of_test = iopf_sim_free(sim_of_test);
}

/* One test a crash point: the point is the test's initial state. */
static void test_crash(void **state)
{
	run(*(const enum crash_at *)*state);
}

static const enum crash_at points[] = {
	CRASH_BEFORE_WRITE, CRASH_AFTER_WRITE, CRASH_BEFORE_MAP, CRASH_AFTER_MAP, CRASH_REMAP_FAILS,
};

/* struct CMUnitTest: its name, the function, no setup or teardown, the crash point */
#define CRASH_TEST(i, name)                                                                        \
	{                                                                                          \
		name, test_crash, NULL, NULL, (void *)&points[i]                                   \
	}
TEST_MAIN(CRASH_TEST(0, "crash_before_write"), CRASH_TEST(1, "crash_after_write"),
	  CRASH_TEST(2, "crash_before_map"), CRASH_TEST(3, "crash_after_map"),
	  CRASH_TEST(4, "crash_remap_fails"))
