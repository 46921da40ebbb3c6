/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iopf-kbare: the real-kernel suite's steps that need no daemon.
 *
 *   iopf-kbare layouts
 *	Print "KTEST-LAYOUTS <name>..." with the hwpt layouts this kernel offers (kt.h).
 *   iopf-kbare arrive [--layout L]
 *	A triggered fault must ARRIVE on the fault fd, with the fields the mock was given,
 *	and be answerable exactly once. A kernel without IOMMU_IOPF fails here instead of
 *	letting every later step pass vacuously. Also: FIFO batches, and the reads the queue
 *	refuses (EINVAL when the first group does not fit, ESPIPE for a torn count) and
 *	the response write's (EINVAL for a bad code; a short write at a bad entry).
 *   iopf-kbare pasid-kernel [--layout paging]
 *	What a fault server relies on when PASIDs attach and detach under it: detaching or
 *	replacing one PASID answers INVALID exactly that attach's groups (read or not) and
 *	no other; a fault on a PASID with nothing attached never reaches the queue.
 *   iopf-kbare bare [--layout L] [--faults N] [--window BYTES]
 *	The "no daemon" reference: trigger, poll, read, IOAS_MAP the fault-around window on
 *	a miss, MD_CHECK_MAP the page, write the response; one fault at a time. Prints
 *	faults/s and latency percentiles as a KTEST-METRIC line.
 *   iopf-kbare handoff-poll|handoff-uring|handoff-process [--layout L] [--faults N]
 *	The same work done by a second thread or process woken by poll(2) or io_uring.
 *
 * Exit: 0 pass, 1 fail, 77 skip (a prerequisite is absent), 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <liburing.h>

#include "kt.h"

#define ARRIVE_TIMEOUT_MS 2000
#define IOVA_BASE	  MOCK_APERTURE_START
#define QUIET_MS	  200 /* how long a fault that must not arrive is given */

static enum kt_layout layout = KT_LAYOUT_NESTED;

/* A world in the step's layout, with these PASIDs of device 0 attached (PAGING). */
static int world_open(struct kt_world *w, unsigned n_dev, const uint32_t *pasids, size_t n)
{
	int r = kt_world_open(w, n_dev, layout);

	if (r < 0) {
		kt_fail("cannot build the mock world (%s): %s", kt_layout_name(layout),
			strerror(-r));
		return r;
	}
	for (size_t i = 0; i < n; i++) {
		r = kt_world_attach_pasid(w, 0, pasids[i]);
		if (r < 0) {
			kt_fail("PASID_ATTACH(pasid %#x): %s", pasids[i], strerror(-r));
			kt_world_close(w);
			return r;
		}
	}
	return 0;
}

static int expect_nothing_pending(const struct kt_world *w, const char *when)
{
	struct iommu_hwpt_pgfault rec;
	ssize_t n;
	int r;

	r = kt_fault_readable(w->fault_fd, 0);
	if (r != 0) {
		kt_fail("%s: poll says a group is pending (%d)", when, r);
		return -1;
	}
	n = kt_fault_read(w->fault_fd, &rec, 1);
	if (n != 0) {
		kt_fail("%s: read of an empty queue returned %zd, not 0", when, n);
		return -1;
	}
	return 0;
}

struct arrive_case {
	unsigned dev;
	uint32_t pasid;
	uint32_t perm;
	uint64_t offset; /* from the page start: the mock passes addr through unaligned */
};

static int arrive_one(const struct kt_world *w, const struct arrive_case *c, uint32_t grpid,
		      uint64_t addr)
{
	struct iommu_hwpt_pgfault rec[4];
	uint32_t want_flags = IOMMU_PGFAULT_FLAGS_LAST_PAGE;
	ssize_t n;
	int r;

	if (c->pasid)
		want_flags |= IOMMU_PGFAULT_FLAGS_PASID_VALID;

	r = kt_trigger(w, w->dev[c->dev].idev_id, c->pasid, grpid, c->perm, addr);
	if (r < 0) {
		kt_fail("TRIGGER_IOPF(dev %u, pasid %u): %s", w->dev[c->dev].idev_id, c->pasid,
			strerror(-r));
		return -1;
	}
	r = kt_fault_readable(w->fault_fd, ARRIVE_TIMEOUT_MS);
	if (r != 1) {
		kt_fail("a triggered fault (dev %u, pasid %u) did not arrive on the fault fd "
			"within %d ms: is CONFIG_IOMMU_IOPF set?",
			w->dev[c->dev].idev_id, c->pasid, ARRIVE_TIMEOUT_MS);
		return -1;
	}
	n = kt_fault_read(w->fault_fd, rec, 4);
	if (n != 1) {
		kt_fail("read returned %zd records for one triggered fault", n);
		return -1;
	}
	if ((rec[0].flags & IOPF_PGFAULT_KNOWN_FLAGS) != want_flags ||
	    rec[0].dev_id != w->dev[c->dev].idev_id || rec[0].pasid != c->pasid ||
	    rec[0].grpid != grpid || rec[0].perm != c->perm || rec[0].addr != addr ||
	    rec[0].cookie == 0) {
		kt_fail("record mismatch: flags %#x dev %u pasid %u grp %u perm %#x addr %#" PRIx64
			" cookie %u; wanted flags %#x dev %u pasid %u grp %u perm %#x addr "
			"%#" PRIx64,
			rec[0].flags, rec[0].dev_id, rec[0].pasid, rec[0].grpid, rec[0].perm,
			(uint64_t)rec[0].addr, rec[0].cookie, want_flags, w->dev[c->dev].idev_id,
			c->pasid, grpid, c->perm, addr);
		return -1;
	}
	if (expect_nothing_pending(w, "after reading the only group") < 0)
		return -1;
	r = kt_fault_respond(w->fault_fd, rec[0].cookie, IOMMUFD_PAGE_RESP_SUCCESS);
	if (r < 0) {
		kt_fail("response to cookie %u: %s", rec[0].cookie, strerror(-r));
		return -1;
	}
	r = kt_fault_respond(w->fault_fd, rec[0].cookie, IOMMUFD_PAGE_RESP_SUCCESS);
	if (r != -EINVAL) {
		kt_fail("a second response to cookie %u gave %s, not EINVAL", rec[0].cookie,
			r ? strerror(-r) : "success");
		return -1;
	}
	kt_log("fault dev %u pasid %#x perm %#x arrived (cookie %u), answered once", rec[0].dev_id,
	       rec[0].pasid, rec[0].perm, rec[0].cookie);
	return 0;
}

/* Several groups queued, read in one batch, answered in one write. */
static int arrive_batch(const struct kt_world *w)
{
	struct iommu_hwpt_pgfault rec[8];
	struct iommu_hwpt_page_response resp[3];
	ssize_t n, m;

	for (uint32_t i = 0; i < 3; i++) {
		int r = kt_trigger(w, w->dev[0].idev_id, 0, 100 + i, IOMMU_PGFAULT_PERM_READ,
				   IOVA_BASE + 0x10000 + i * 4096);
		if (r < 0) {
			kt_fail("TRIGGER_IOPF: %s", strerror(-r));
			return -1;
		}
	}
	n = kt_fault_read(w->fault_fd, rec, 8);
	if (n != 3) {
		kt_fail("batch read returned %zd records, wanted 3", n);
		return -1;
	}
	for (unsigned i = 0; i < 3; i++) {
		if (rec[i].grpid != 100 + i) {
			kt_fail("batch not FIFO: record %u has group %u", i, rec[i].grpid);
			return -1;
		}
		resp[i] = (struct iommu_hwpt_page_response){.cookie = rec[i].cookie,
							    .code = IOMMUFD_PAGE_RESP_INVALID};
	}
	m = write(w->fault_fd, resp, sizeof(resp));
	if (m != (ssize_t)sizeof(resp)) {
		kt_fail("batch response wrote %zd of %zu bytes: %s", m, sizeof(resp),
			m < 0 ? strerror(errno) : "short");
		return -1;
	}
	if (kt_fault_probe_outstanding(w->fault_fd, 16) != 0) {
		kt_fail("a cookie is still outstanding after the batch response");
		return -1;
	}
	kt_log("3 groups read in one batch (FIFO) and answered in one write");
	return 0;
}

/*
 * Reads the queue refuses, and what stays queued: a buffer too small for the first group
 * is EINVAL, not 0, and the group stays for a read that fits; a count that is no multiple
 * of the record size is ESPIPE. Then the group is read and answered as usual.
 */
static int arrive_sizes(const struct kt_world *w)
{
	struct iommu_hwpt_pgfault rec[2];
	ssize_t n;
	int r;

	r = kt_trigger(w, w->dev[0].idev_id, 0, 77, IOMMU_PGFAULT_PERM_READ, IOVA_BASE + 0x20000);
	if (r < 0) {
		kt_fail("TRIGGER_IOPF: %s", strerror(-r));
		return -1;
	}
	n = read(w->fault_fd, rec, 0);
	if (n != -1 || errno != EINVAL) {
		kt_fail("a read with no room for the first group gave %zd (%s), not EINVAL", n,
			n < 0 ? strerror(errno) : "no error");
		return -1;
	}
	n = read(w->fault_fd, rec, sizeof(rec[0]) - 1);
	if (n != -1 || errno != ESPIPE) {
		kt_fail("a read of %zu bytes gave %zd (%s), not ESPIPE", sizeof(rec[0]) - 1, n,
			n < 0 ? strerror(errno) : "no error");
		return -1;
	}
	if (kt_fault_readable(w->fault_fd, 0) != 1) {
		kt_fail("the group did not stay queued after the refused reads");
		return -1;
	}
	n = kt_fault_read(w->fault_fd, rec, 2);
	if (n != 1 || rec[0].grpid != 77) {
		kt_fail("the read after the refused ones returned %zd records", n);
		return -1;
	}
	r = kt_fault_respond(w->fault_fd, rec[0].cookie, IOMMUFD_PAGE_RESP_INVALID);
	if (r < 0) {
		kt_fail("response to cookie %u: %s", rec[0].cookie, strerror(-r));
		return -1;
	}
	kt_log("no room for the first group: EINVAL, and it stays queued; a torn count: ESPIPE");
	return 0;
}

/*
 * The response write: a bad code is refused first (EINVAL, nothing taken), and a batch
 * stops at its first bad entry with a short write, the entries before it taken.
 */
static int arrive_write(const struct kt_world *w)
{
	struct iommu_hwpt_pgfault rec[4];
	struct iommu_hwpt_page_response resp[3];
	ssize_t n;

	for (uint32_t i = 0; i < 2; i++)
		if (kt_trigger(w, w->dev[0].idev_id, 0, 80 + i, IOMMU_PGFAULT_PERM_READ,
			       IOVA_BASE + 0x30000 + i * 4096) < 0) {
			kt_fail("TRIGGER_IOPF failed");
			return -1;
		}
	n = kt_fault_read(w->fault_fd, rec, 4);
	if (n != 2) {
		kt_fail("read %zd groups, wanted 2", n);
		return -1;
	}
	resp[0] = (struct iommu_hwpt_page_response){.cookie = rec[0].cookie, .code = 2};
	n = write(w->fault_fd, resp, sizeof(resp[0]));
	if (n != -1 || errno != EINVAL) {
		kt_fail("a response with code 2 gave %zd (%s), not EINVAL", n,
			n < 0 ? strerror(errno) : "no error");
		return -1;
	}
	resp[0].code = IOMMUFD_PAGE_RESP_SUCCESS;
	resp[1] = (struct iommu_hwpt_page_response){.cookie = rec[0].cookie + rec[1].cookie + 100,
						    .code = IOMMUFD_PAGE_RESP_SUCCESS};
	resp[2] = (struct iommu_hwpt_page_response){.cookie = rec[1].cookie,
						    .code = IOMMUFD_PAGE_RESP_SUCCESS};
	n = write(w->fault_fd, resp, sizeof(resp));
	if (n != (ssize_t)sizeof(resp[0])) {
		kt_fail("a batch with a bad second entry wrote %zd (%s), not %zu", n,
			n < 0 ? strerror(errno) : "bytes", sizeof(resp[0]));
		return -1;
	}
	if (kt_fault_respond(w->fault_fd, rec[1].cookie, IOMMUFD_PAGE_RESP_SUCCESS) < 0 ||
	    kt_fault_probe_outstanding(w->fault_fd, 16) != 0) {
		kt_fail("the entry after the bad one was not left for a second write");
		return -1;
	}
	kt_log("bad code: EINVAL, nothing taken; a bad entry in a batch: short write before it");
	return 0;
}

static int step_arrive(void)
{
	static const struct arrive_case cases[] = {
		{.dev = 0, .pasid = 0, .perm = IOMMU_PGFAULT_PERM_READ, .offset = 0},
		{.dev = 0, .pasid = 5, .perm = IOMMU_PGFAULT_PERM_WRITE, .offset = 0x123},
		{.dev = 1,
		 .pasid = 0x1234,
		 .perm = IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE,
		 .offset = 0x800},
		{.dev = 1,
		 .pasid = 0,
		 .perm = IOMMU_PGFAULT_PERM_EXEC | IOMMU_PGFAULT_PERM_PRIV,
		 .offset = 0xfff},
	};
	struct kt_world w;

	if (world_open(&w, 2, NULL, 0) < 0)
		return 1;
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (kt_world_attach_pasid(&w, cases[i].dev, cases[i].pasid) < 0) {
			kt_fail("PASID_ATTACH(pasid %#x)", cases[i].pasid);
			goto out;
		}
	kt_log("fault hwpt %u is %s (parent %u), devices %u and %u, fault queue %u",
	       w.fault_hwpt_id, w.nested ? "NESTED" : "PAGING", w.parent_hwpt_id, w.dev[0].idev_id,
	       w.dev[1].idev_id, w.fault_id);

	if (expect_nothing_pending(&w, "before any trigger") < 0)
		goto out;
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (arrive_one(&w, &cases[i], i + 1, IOVA_BASE + i * 4096 + cases[i].offset) < 0)
			goto out;
	if (arrive_batch(&w) < 0 || arrive_sizes(&w) < 0 || arrive_write(&w) < 0)
		goto out;
	(void)expect_nothing_pending(&w, "at the end");
out:
	kt_world_close(&w);
	return kt_failures() ? 1 : 0;
}

/* ------------------------------------------------------------ pasid-kernel */

struct pk_fault {
	uint32_t pasid, grpid;
	struct iommu_hwpt_pgfault rec; /* once read */
};

static int pk_trigger(const struct kt_world *w, struct pk_fault *f, uint32_t pasid, uint32_t grpid)
{
	int r;

	*f = (struct pk_fault){.pasid = pasid, .grpid = grpid};
	r = kt_trigger(w, w->dev[0].idev_id, pasid, grpid, IOMMU_PGFAULT_PERM_READ,
		       IOVA_BASE + (uint64_t)grpid * 4096);
	if (r < 0)
		kt_fail("TRIGGER_IOPF(pasid %#x, grp %u): %s", pasid, grpid, strerror(-r));
	return r;
}

/*
 * Read exactly the groups @want, in this order, in one read with room for @room (>= n)
 * records: room > n also proves that nothing else is queued.
 */
static int pk_read(const struct kt_world *w, struct pk_fault **want, size_t n, size_t room,
		   const char *when)
{
	struct iommu_hwpt_pgfault rec[8];
	ssize_t got = kt_fault_read(w->fault_fd, rec, room < 8 ? room : 8);

	if (got != (ssize_t)n) {
		kt_fail("%s: read %zd groups, wanted %zu", when, got, n);
		for (ssize_t i = 0; i < got; i++)
			kt_log("  got pasid %#x grp %u", rec[i].pasid, rec[i].grpid);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (rec[i].pasid != want[i]->pasid || rec[i].grpid != want[i]->grpid ||
		    rec[i].dev_id != w->dev[0].idev_id) {
			kt_fail("%s: record %zu is pasid %#x grp %u, wanted pasid %#x grp %u", when,
				i, rec[i].pasid, rec[i].grpid, want[i]->pasid, want[i]->grpid);
			return -1;
		}
		want[i]->rec = rec[i];
	}
	return 0;
}

/* Answer @f; @auto_answered: the kernel must already have answered it (EINVAL). */
static int pk_respond(const struct kt_world *w, const struct pk_fault *f, bool auto_answered,
		      const char *when)
{
	int r = kt_fault_respond(w->fault_fd, f->rec.cookie, IOMMUFD_PAGE_RESP_SUCCESS);

	if (auto_answered && r != -EINVAL) {
		kt_fail("%s: pasid %#x grp %u (cookie %u) was not answered by the kernel (%s)",
			when, f->pasid, f->grpid, f->rec.cookie, r ? strerror(-r) : "accepted");
		return -1;
	}
	if (!auto_answered && r != 0) {
		kt_fail("%s: pasid %#x grp %u (cookie %u) was answered behind our back (%s)", when,
			f->pasid, f->grpid, f->rec.cookie, strerror(-r));
		return -1;
	}
	return 0;
}

static int pk_quiet(const struct kt_world *w, const char *when)
{
	int r = kt_fault_readable(w->fault_fd, QUIET_MS);

	if (r != 0) {
		kt_fail("%s: a group is queued (%d)", when, r);
		return -1;
	}
	return 0;
}

static int step_pasid_kernel(void)
{
	static const uint32_t pasids[] = {7, 8};
	struct pk_fault f[12];
	struct kt_world w;
	uint32_t hwpt_b;
	int r;

	if (layout != KT_LAYOUT_PAGING) {
		kt_fail("pasid-kernel needs --layout paging");
		return 1;
	}
	if (world_open(&w, 1, pasids, 2) < 0)
		return 1;
	r = kt_world_fault_hwpt(&w, &hwpt_b);
	if (r < 0) {
		kt_fail("a second paging fault hwpt: %s", strerror(-r));
		goto out;
	}

	/* 1. Detach PASID 7 with groups of it read (unanswered) and queued. */
	if (pk_trigger(&w, &f[0], 0, 1) < 0 || pk_trigger(&w, &f[1], 7, 2) < 0 ||
	    pk_trigger(&w, &f[2], 8, 3) < 0 || pk_trigger(&w, &f[3], 7, 4) < 0 ||
	    pk_trigger(&w, &f[4], 8, 5) < 0 || pk_trigger(&w, &f[5], 0, 6) < 0)
		goto out;
	if (pk_read(&w, (struct pk_fault *[]){&f[0], &f[1], &f[2]}, 3, 3, "before detach") < 0)
		goto out;
	r = kt_world_detach_pasid(&w, 0, 7);
	if (r < 0) {
		kt_fail("PASID_DETACH(7): %s", strerror(-r));
		goto out;
	}
	/* before reading more: a freed cookie is reissued at the next read */
	if (pk_respond(&w, &f[1], true, "read group of the detached PASID") < 0 ||
	    pk_read(&w, (struct pk_fault *[]){&f[4], &f[5]}, 2, 8,
		    "after detach (the queued group of PASID 7 must be gone)") < 0 ||
	    pk_respond(&w, &f[0], false, "RID group across the detach") < 0 ||
	    pk_respond(&w, &f[2], false, "PASID 8 group across the detach") < 0 ||
	    pk_respond(&w, &f[4], false, "queued PASID 8 group") < 0 ||
	    pk_respond(&w, &f[5], false, "queued RID group") < 0)
		goto out;
	if (kt_world_check_pasid(&w, 0, 7, 0) < 0) {
		kt_fail("PASID 7 still attached after PASID_DETACH");
		goto out;
	}
	kt_log("detach of PASID 7: its read and its queued group answered by the kernel; "
	       "the RID's and PASID 8's untouched");

	/* 2. Replace PASID 8's hwpt with groups of it read and queued. */
	if (pk_trigger(&w, &f[6], 8, 7) < 0 || pk_trigger(&w, &f[7], 0, 8) < 0 ||
	    pk_read(&w, (struct pk_fault *[]){&f[6], &f[7]}, 2, 8, "before replace") < 0 ||
	    pk_trigger(&w, &f[8], 8, 9) < 0)
		goto out;
	r = kt_world_replace_pasid(&w, 0, 8, hwpt_b);
	if (r < 0) {
		kt_fail("PASID_REPLACE(8 -> hwpt %u): %s", hwpt_b, strerror(-r));
		goto out;
	}
	if (pk_respond(&w, &f[6], true, "read group of the replaced attach") < 0 ||
	    pk_quiet(&w, "after replace (the queued group of PASID 8 must be gone)") < 0 ||
	    pk_respond(&w, &f[7], false, "RID group across the replace") < 0)
		goto out;
	if (kt_world_check_pasid(&w, 0, 8, hwpt_b) < 0) {
		kt_fail("PASID 8 is not on hwpt %u after PASID_REPLACE", hwpt_b);
		goto out;
	}
	if (pk_trigger(&w, &f[9], 8, 10) < 0 ||
	    pk_read(&w, (struct pk_fault *[]){&f[9]}, 1, 8, "PASID 8 through its new hwpt") < 0 ||
	    pk_respond(&w, &f[9], false, "PASID 8 through its new hwpt") < 0)
		goto out;
	kt_log("replace of PASID 8: its old attach's groups answered by the kernel; new faults "
	       "come through hwpt %u to the same queue",
	       hwpt_b);

	/* 3. Faults of a PASID with nothing attached never reach the queue. */
	if (pk_trigger(&w, &f[10], 9, 11) < 0 || pk_trigger(&w, &f[10], 7, 12) < 0 ||
	    pk_quiet(&w, "a fault on PASIDs with nothing attached") < 0 ||
	    pk_trigger(&w, &f[11], 0, 13) < 0 ||
	    pk_read(&w, (struct pk_fault *[]){&f[11]}, 1, 8, "the RID fault raised after them") <
		    0 ||
	    pk_respond(&w, &f[11], false, "the RID fault raised after them") < 0)
		goto out;
	kt_log("faults on PASIDs 9 (never attached) and 7 (detached) never reached the queue");
	if (kt_fault_probe_outstanding(w.fault_fd, 32) != 0)
		kt_fail("a cookie is still outstanding at the end");
	(void)expect_nothing_pending(&w, "at the end");
out:
	kt_world_close(&w);
	return kt_failures() ? 1 : 0;
}

/* The PASIDs the bare loop and the hand-off raise faults on (1 + i % 4). */
static const uint32_t bare_pasids[] = {1, 2, 3, 4};

static int step_bare(unsigned n_faults, uint64_t window)
{
	struct kt_world w;
	struct kt_mem mem;
	struct kt_lat lat = {0};
	uint8_t *mapped = NULL;
	uint64_t size = (uint64_t)n_faults * 4096, t_start, elapsed, maps = 0;
	int r, ret = 1;

	size = (size + window - 1) / window * window;
	if (world_open(&w, 1, bare_pasids, 4) < 0)
		return 1;
	r = kt_mem_open(&mem, size);
	if (r < 0) {
		kt_fail("memfd of %" PRIu64 " bytes: %s", size, strerror(-r));
		goto out_world;
	}
	mapped = calloc(size / window, 1);
	if (!mapped) {
		kt_fail("out of memory");
		goto out_mem;
	}

	t_start = kt_now_ns();
	for (unsigned i = 0; i < n_faults; i++) {
		struct iommu_hwpt_pgfault rec;
		uint64_t addr = IOVA_BASE + (uint64_t)i * 4096 + (i % 8) * 8, t0 = kt_now_ns();
		uint64_t page, win;
		ssize_t n;

		r = kt_trigger(&w, w.dev[0].idev_id, 1 + i % 4, i & 0x1ff,
			       IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE, addr);
		if (r < 0) {
			kt_fail("TRIGGER_IOPF #%u: %s", i, strerror(-r));
			goto out_mem;
		}
		r = kt_fault_readable(w.fault_fd, ARRIVE_TIMEOUT_MS);
		if (r != 1) {
			kt_fail("fault #%u did not arrive (%d)", i, r);
			goto out_mem;
		}
		n = kt_fault_read(w.fault_fd, &rec, 1);
		if (n != 1) {
			kt_fail("fault #%u: read returned %zd", i, n);
			goto out_mem;
		}
		page = rec.addr & ~UINT64_C(4095);
		win = (page - IOVA_BASE) / window;
		if (!mapped[win]) {
			r = kt_ioas_map(w.iommufd, w.ioas_id, mem.va + win * window, window,
					IOVA_BASE + win * window);
			if (r < 0) {
				kt_fail("IOAS_MAP for fault #%u: %s", i, strerror(-r));
				goto out_mem;
			}
			mapped[win] = 1;
			maps++;
		}
		r = kt_check_map(&w, page, 4096, mem.va + (page - IOVA_BASE));
		if (r < 0) {
			kt_fail("MD_CHECK_MAP for fault #%u: %s", i, strerror(-r));
			goto out_mem;
		}
		r = kt_fault_respond(w.fault_fd, rec.cookie, IOMMUFD_PAGE_RESP_SUCCESS);
		if (r < 0) {
			kt_fail("response for fault #%u: %s", i, strerror(-r));
			goto out_mem;
		}
		(void)kt_lat_add(&lat, kt_now_ns() - t0);
	}
	elapsed = kt_now_ns() - t_start;

	if (kt_fault_probe_outstanding(w.fault_fd, 16) != 0) {
		kt_fail("a cookie is still outstanding after the loop");
		goto out_mem;
	}
	printf("KTEST-METRIC name=bare layout=%s faults=%u seconds=%.3f fps=%.0f p50_us=%.1f "
	       "p90_us=%.1f "
	       "p99_us=%.1f max_us=%.1f maps=%" PRIu64 " window=%" PRIu64 "\n",
	       kt_layout_name(layout), n_faults, (double)elapsed / 1e9,
	       n_faults / ((double)elapsed / 1e9), kt_lat_pct(&lat, 0.50) / 1e3,
	       kt_lat_pct(&lat, 0.90) / 1e3, kt_lat_pct(&lat, 0.99) / 1e3,
	       kt_lat_pct(&lat, 1.0) / 1e3, maps, window);
	fflush(stdout);
	ret = 0;
out_mem:
	free(mapped);
	kt_lat_free(&lat);
	kt_mem_close(&mem);
out_world:
	kt_world_close(&w);
	return kt_failures() ? 1 : ret;
}

/*
 * The bare loop split across two threads the way iopfd splits it: a server thread
 * waits for the fault fd (poll(2), or an io_uring POLL_ADD like iopfd's workers), reads,
 * maps and answers; the main thread raises one fault at a time and polls MD_CHECK_MAP
 * for its page, as the load scenario does. The difference to "bare" is the cost of the
 * wake-up and hand-off alone, without anything of iopfd.
 */
struct handoff {
	struct kt_world *w;
	struct kt_mem *mem;
	bool uring;
	bool process; /* the server is a child process, not a thread */
	atomic_bool stop;
	int error;
};

static int handoff_serve_one(struct handoff *h)
{
	struct iommu_hwpt_pgfault rec[16];
	ssize_t n = kt_fault_read(h->w->fault_fd, rec, 16);

	for (ssize_t i = 0; i < n; i++) {
		uint64_t page = rec[i].addr & ~UINT64_C(4095);
		int r = kt_ioas_map(h->w->iommufd, h->w->ioas_id, h->mem->va + (page - IOVA_BASE),
				    4096, page);

		if (r < 0 && r != -EEXIST)
			return r;
		r = kt_fault_respond(h->w->fault_fd, rec[i].cookie, IOMMUFD_PAGE_RESP_SUCCESS);
		if (r < 0)
			return r;
	}
	return n < 0 ? (int)n : 0;
}

static void *handoff_server(void *arg)
{
	struct handoff *h = arg;
	struct io_uring ring;
	int r = 0;

	if (h->uring) {
		struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER |
						     IORING_SETUP_DEFER_TASKRUN};

		r = io_uring_queue_init_params(8, &ring, &p);
		if (r < 0) {
			h->error = r;
			return NULL;
		}
	}
	while (!atomic_load(&h->stop) && r >= 0) {
		if (h->uring) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			struct io_uring_cqe *cqe;
			struct __kernel_timespec ts = {.tv_nsec = 100000000};

			io_uring_prep_poll_add(sqe, h->w->fault_fd, POLLIN);
			r = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, NULL);
			if (r == -ETIME || r == -EINTR) {
				/* a poll still armed: cancel it before arming the next */
				io_uring_prep_cancel64(io_uring_get_sqe(&ring), 0,
						       IORING_ASYNC_CANCEL_ANY);
				(void)io_uring_submit_and_wait(&ring, 2);
				while (io_uring_peek_cqe(&ring, &cqe) == 0)
					io_uring_cqe_seen(&ring, cqe);
				r = 0;
				continue;
			}
			if (r < 0)
				break;
			io_uring_cqe_seen(&ring, cqe);
		} else {
			r = kt_fault_readable(h->w->fault_fd, 100);
			if (r <= 0)
				continue;
		}
		r = handoff_serve_one(h);
	}
	if (r < 0)
		h->error = r;
	if (h->uring)
		io_uring_queue_exit(&ring);
	return NULL;
}

static int step_handoff(unsigned n_faults, bool uring, bool process)
{
	struct kt_world w;
	struct kt_mem mem;
	struct kt_lat lat = {0};
	struct handoff h = {.w = &w, .mem = &mem, .uring = uring, .process = process};
	const char *name = process ? "handoff-process" : uring ? "handoff-uring" : "handoff-poll";
	pid_t child = -1;
	uint64_t t_start, elapsed;
	pthread_t th;
	int r, ret = 1;

	if (world_open(&w, 1, bare_pasids, 4) < 0)
		return 1;
	r = kt_mem_open(&mem, (uint64_t)n_faults * 4096);
	if (r < 0) {
		kt_fail("memfd: %s", strerror(-r));
		goto out_world;
	}
	if (process) {
		fflush(stdout);
		child = fork();
		if (child == 0) {
			handoff_server(&h);
			_exit(h.error ? 1 : 0);
		}
		if (child < 0) {
			kt_fail("fork: %s", strerror(errno));
			goto out_mem;
		}
	} else if (pthread_create(&th, NULL, handoff_server, &h) != 0) {
		kt_fail("pthread_create failed");
		goto out_mem;
	}
	t_start = kt_now_ns();
	for (unsigned i = 0; i < n_faults && !h.error; i++) {
		uint64_t page = IOVA_BASE + (uint64_t)i * 4096, t0 = kt_now_ns();
		uint64_t deadline = t0 + UINT64_C(20000000000);

		r = kt_trigger(&w, w.dev[0].idev_id, 1 + i % 4, i & 0x1ff,
			       IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE, page);
		if (r < 0) {
			kt_fail("TRIGGER_IOPF #%u: %s", i, strerror(-r));
			break;
		}
		while (kt_check_map(&w, page, 4096, mem.va + (uint64_t)i * 4096) != 0) {
			if (kt_now_ns() > deadline) {
				kt_fail("fault #%u not resolved by the server thread", i);
				break;
			}
			sched_yield();
		}
		(void)kt_lat_add(&lat, kt_now_ns() - t0);
	}
	elapsed = kt_now_ns() - t_start;
	if (process) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	} else {
		atomic_store(&h.stop, true);
		pthread_join(th, NULL);
	}
	if (h.error)
		kt_fail("server thread: %s", strerror(-h.error));
	if (kt_failures())
		goto out_mem;
	printf("KTEST-METRIC name=%s layout=%s faults=%u seconds=%.3f fps=%.0f p50_us=%.1f "
	       "p90_us=%.1f p99_us=%.1f max_us=%.1f maps=%u window=4096\n",
	       name, kt_layout_name(layout), n_faults, (double)elapsed / 1e9,
	       n_faults / ((double)elapsed / 1e9), kt_lat_pct(&lat, 0.50) / 1e3,
	       kt_lat_pct(&lat, 0.90) / 1e3, kt_lat_pct(&lat, 0.99) / 1e3,
	       kt_lat_pct(&lat, 1.0) / 1e3, n_faults);
	fflush(stdout);
	ret = 0;
out_mem:
	kt_lat_free(&lat);
	kt_mem_close(&mem);
out_world:
	kt_world_close(&w);
	return kt_failures() ? 1 : ret;
}

static int usage(void)
{
	fprintf(stderr, "usage: iopf-kbare layouts\n"
			"       iopf-kbare arrive|pasid-kernel [--layout nested|paging]\n"
			"       iopf-kbare bare [--layout L] [--faults N] [--window BYTES]\n"
			"       iopf-kbare handoff-poll|handoff-uring|handoff-process [--layout L] "
			"[--faults N]\n");
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"faults", required_argument, NULL, 'n'},
					     {"window", required_argument, NULL, 'w'},
					     {"layout", required_argument, NULL, 'l'},
					     {}};
	unsigned long n_faults = 10000;
	unsigned long long window = 65536;
	const char *step;
	int c;

	if (argc < 2)
		return usage();
	step = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
		switch (c) {
		case 'n':
			n_faults = strtoul(optarg, NULL, 0);
			break;
		case 'w':
			window = strtoull(optarg, NULL, 0);
			break;
		case 'l':
			if (kt_layout_parse(optarg, &layout) < 0)
				return usage();
			break;
		default:
			return usage();
		}
	}
	if (n_faults == 0 || n_faults > 100000 || window < 4096 || (window & (window - 1)))
		return usage();

	kt_set_name(step);
	if (strcmp(step, "layouts") == 0) {
		unsigned mask = kt_layouts_probe();

		printf("KTEST-LAYOUTS");
		for (unsigned l = 0; l < _KT_LAYOUT_MAX; l++)
			if (mask & (1u << l))
				printf(" %s", kt_layout_name(l));
		printf("\n");
		fflush(stdout);
		return mask ? 0 : 1;
	}
	if (strcmp(step, "arrive") == 0)
		return step_arrive();
	if (strcmp(step, "pasid-kernel") == 0)
		return step_pasid_kernel();
	if (strcmp(step, "bare") == 0)
		return step_bare((unsigned)n_faults, window);
	if (strcmp(step, "handoff-poll") == 0)
		return step_handoff((unsigned)n_faults, false, false);
	if (strcmp(step, "handoff-uring") == 0)
		return step_handoff((unsigned)n_faults, true, false);
	if (strcmp(step, "handoff-process") == 0)
		return step_handoff((unsigned)n_faults, false, true);
	return usage();
}
