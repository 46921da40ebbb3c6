/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The simulator's shared memory as iopfd sees it: a tenant owns that memory
 * and may write anything into it at any time. The input is a program: a few
 * honest groups first (the device side), then scribbles on the header, the
 * queue, the slots, the cookie table and the IOMMU tables interleaved with
 * every daemon-side operation (read, write, map, unmap, reopen). What must
 * hold whatever the tenant wrote:
 * - nothing crashes, hangs or touches memory outside the mapping (ASan);
 * - read returns 0, whole records (at most what was asked), or a clean error
 *   (-EINVAL, -EIO; -ESPIPE for a length that is not whole records); the
 *   groups it hands out carry distinct cookies in 1..queue depth;
 * - write returns whole responses (at most what was given) or -EINVAL/-EIO;
 * - map and unmap return 0 or a clean -errno; reopening a scribbled context
 *   succeeds or is refused with -EBADF.
 * The robust mutex itself is left alone: a tenant holding or corrupting it is
 * what the lock timeout (test-sim.c) is about.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include "fuzz.h"
#include "sim-backend.h"
#include "uapi.h"

#define REC  sizeof(struct iommu_hwpt_pgfault)
#define RESP sizeof(struct iommu_hwpt_page_response)
#define PG   IOPF_SIM_PAGE_SIZE
#define RW   (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)

static const struct iopf_sim_config cfg = SIM_TEST_CONFIG;

static bool one_of(long long r, const int *allowed, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (r == -allowed[i])
			return true;
	return false;
}

#define check_errno(r, what, ...)                                                                  \
	do {                                                                                       \
		static const int _ok[] = {__VA_ARGS__};                                            \
		fuzz_check((r) >= 0 || one_of((r), _ok, ARRAY_SIZE(_ok)), "%s: %lld", what,        \
			   (long long)(r));                                                        \
	} while (0)

struct shm {
	uint8_t *p;
	size_t size;
	size_t mutex_start, mutex_end; /* left alone */
};

static void poke(struct shm *m, size_t at, const void *v, size_t len)
{
	if (at >= m->size || len > m->size - at)
		return;
	if (at < m->mutex_end && at + len > m->mutex_start)
		return;
	memcpy(m->p + at, v, len);
}

static void do_read(struct iopf_backend *b, size_t len)
{
	struct iommu_hwpt_pgfault rec[64];
	bool taken[64] = {};
	ssize_t r = b->ops->fault_read(b, rec, len);

	if (len % REC) {
		fuzz_check(r == -ESPIPE, "read of %zu bytes: %zd", len, r);
		return;
	}
	check_errno(r, "read", EINVAL, EIO);
	if (r < 0)
		return;
	fuzz_check((size_t)r <= len && r % REC == 0, "read of %zu returned %zd", len, r);
	for (size_t i = 0; i < (size_t)r / REC; i++) {
		uint32_t c = rec[i].cookie;

		fuzz_check(c >= 1 && c <= cfg.queue_depth, "cookie %u", c);
		/* a group's records share its cookie; the next group has a new one */
		if (i && rec[i - 1].cookie == c)
			continue;
		fuzz_check(!taken[c], "cookie %u handed out twice in one read", c);
		taken[c] = true;
	}
}

static void do_write(struct iopf_backend *b, struct fuzz_in *in)
{
	struct iommu_hwpt_page_response resp[8];
	size_t n = 1 + fuzz_u8(in) % 8;
	ssize_t r;

	for (size_t i = 0; i < n; i++) {
		uint8_t k = fuzz_u8(in);

		resp[i].cookie = k & 0x80 ? fuzz_u32(in) : k % 24;
		resp[i].code = fuzz_u8(in) % 3;
	}
	r = b->ops->fault_write(b, resp, n * RESP);
	check_errno(r, "write", EINVAL, EIO);
	fuzz_check(r < 0 || ((size_t)r <= n * RESP && r % RESP == 0), "write returned %zd", r);
}

static void do_map(struct iopf_backend *b, int backing, struct fuzz_in *in)
{
	struct iopf_map_req req = {
		.iova = (uint64_t)(fuzz_u8(in) % 32) * PG,
		.length = (uint64_t)(1 + fuzz_u8(in) % 8) * PG,
		.prot = fuzz_u8(in) % 4,
		.fd = backing,
		.offset = (uint64_t)(fuzz_u8(in) % 16) * PG,
	};
	int r = b->ops->map(b, &req);

	check_errno(r, "map", EINVAL, EOVERFLOW, EBADF, ENOMEM, ENOSPC, EEXIST, EIO, ENOENT);
}

static void do_unmap(struct iopf_backend *b, struct fuzz_in *in)
{
	uint8_t k = fuzz_u8(in);
	uint64_t iova = (uint64_t)(k % 32) * PG, len = (uint64_t)(fuzz_u8(in) % 9) * PG;
	int r;

	if (k & 0x80)
		iova = 0, len = -PG; /* wraps */
	r = b->ops->unmap(b, iova, len);
	check_errno(r, "unmap", EINVAL, EOVERFLOW, ENOENT, EIO);
}

/* The device side, while the memory is still as it wrote it. */
static void inject_honest(struct iopf_sim *s, struct fuzz_in *in)
{
	unsigned groups = fuzz_u8(in) % 16;

	for (unsigned g = 0; g < groups; g++) {
		struct iopf_sim_fault f[8];
		struct iopf_sim_group grp = {
			.dev_id = fuzz_u8(in) % 4,
			.pasid = IOPF_PASID_NONE,
			.n = 1 + fuzz_u8(in) % cfg.max_group,
			.faults = f,
			.tag = g,
		};

		for (unsigned i = 0; i < grp.n; i++)
			f[i] = (struct iopf_sim_fault){.addr = (uint64_t)(g * 8 + i) * PG,
						       .perm = IOMMU_PGFAULT_PERM_READ};
		if (iopf_sim_inject(s, &grp, 1) != 1)
			break; /* full */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int backing = -1;
	struct fuzz_in in = {data, size};
	struct iopf_backend *b = NULL;
	struct iopf_sim *s;
	struct shm m;
	uint8_t first;
	int r;

	if (backing < 0) {
		backing = memfd_create("fuzz-backing", MFD_CLOEXEC);
		fuzz_check(backing >= 0 && ftruncate(backing, 32 * PG) == 0, "backing: %m");
	}
	fuzz_check(iopf_sim_new(&cfg, &s) == 0, "iopf_sim_new");
	m.p = __iopf_sim_shm(s, &m.size);
	m.mutex_start = ALIGN_UP(sizeof(struct iopf_sim_shm_hdr), 64);
	m.mutex_end = m.mutex_start + sizeof(pthread_mutex_t);

	first = fuzz_u8(&in);
	inject_honest(s, &in);
	if (first & 1) {
		/* scribbled before iopfd opens it: the header checks refuse or accept */
		uint32_t v = fuzz_u32(&in);

		poke(&m, (fuzz_u8(&in) % (sizeof(struct iopf_sim_shm_hdr) / 4)) * 4, &v, 4);
	}
	r = sim_backend_open_dup(s, 1 + (first >> 1) % 2, &b);
	/* refused: not a context (EBADF), not its doorbell (EXDEV), no such IOAS (ENOENT) */
	check_errno(r, "open", EBADF, EXDEV, ENOENT);

	while (b && !fuzz_done(&in)) {
		uint8_t op = fuzz_u8(&in);
		uint32_t v;

		switch (op % 9) {
		case 0: /* any byte */
			v = fuzz_u8(&in);
			poke(&m, fuzz_u32(&in) % m.size, &v, 1);
			break;
		case 1: /* a field of the mutable header */
			v = (uint32_t)fuzz_edgy_u64(&in, 1);
			poke(&m,
			     offsetof(struct iopf_sim_shm_hdr, pend_head) + 4 * (fuzz_u8(&in) % 16),
			     &v, 4);
			break;
		case 2: /* a word anywhere: queue, slots, cookie table, extents, page hash */
			v = fuzz_u32(&in);
			poke(&m, (fuzz_u32(&in) % m.size) & ~(size_t)3, &v, 4);
			break;
		case 3:
			do_read(b, (fuzz_u8(&in) % 18) * REC + (op & 0x80 ? 1 : 0));
			break;
		case 4:
			do_write(b, &in);
			break;
		case 5:
			do_map(b, backing, &in);
			break;
		case 6:
			do_unmap(b, &in);
			break;
		case 7:
			do_read(b, 64 * REC);
			break;
		case 8: /* iopfd opens the context again, as a second source would */
			sim_backend_close(b);
			b = NULL;
			r = sim_backend_open_dup(s, 1, &b);
			check_errno(r, "reopen", EBADF, EXDEV);
			break;
		}
	}
	sim_backend_close(b);
	iopf_sim_free(s);
	return 0;
}
