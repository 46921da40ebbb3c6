/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kernel boundary: every fault-fd read/write and every IOAS map/unmap goes
 * through a backend. "kernel" talks to a real iommufd; "sim" to the simulated
 * fault queue and IOMMU (lib/sim/sim.c); unit tests plug in fakes.
 */
#ifndef IOPF_BACKEND_H
#define IOPF_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine.h" /* iopf_backend_open_fn */

struct iopf_backend;

struct iopf_map_req {
	uint64_t iova;
	uint64_t length; /* multiple of IOPF_PAGE_SIZE */
	uint32_t prot;	 /* IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE */
	int fd;		 /* backing memory fd (not owned) */
	uint64_t offset; /* offset of iova's page in fd */
	void *uptr;	 /* the daemon's mapping of that memory, or NULL if none */
};

struct iopf_backend_ops {
	const char *name;
	/*
	 * read(2)/write(2) on the fault fd, kernel semantics: bytes, or -errno.
	 * Either may also fail -EBUSY (never the kernel's), having read or
	 * written nothing: it could not go on without waiting (the simulator's
	 * lock); the worker tries again next round, serving its other sources
	 * meanwhile.
	 */
	ssize_t (*fault_read)(struct iopf_backend *b, void *buf, size_t len);
	ssize_t (*fault_write)(struct iopf_backend *b, const void *buf, size_t len);
	/* IOMMU_IOAS_MAP(FIXED_IOVA) or IOAS_MAP_FILE: 0, -EEXIST if already mapped, or -errno. */
	int (*map)(struct iopf_backend *b, const struct iopf_map_req *req);
	/* IOMMU_IOAS_UNMAP of exactly one earlier map: 0 or -errno. */
	int (*unmap)(struct iopf_backend *b, uint64_t iova, uint64_t length);
	/* Release priv; fds are closed by iopf_backend_close(). May be NULL. */
	void (*destroy)(struct iopf_backend *b);
	/* true when map() needs req->uptr (IOAS_MAP without MAP_FILE). */
	bool map_needs_uptr;
	/*
	 * May be NULL. @edge: poll_fd is waited on by something that completes on
	 * every wakeup of it (a multishot io_uring poll, EPOLLET), not on its
	 * level, and reads until empty after each: a backend whose level costs
	 * work to keep (the simulator's doorbell drain) may stop keeping it while
	 * @edge holds, and must keep it again from the next read once unset. The
	 * kernel's fault fd needs neither: it wakes on every fault and keeps its level.
	 */
	void (*set_edge)(struct iopf_backend *b, bool edge);
	/* May be NULL (poll_fd's level then says): whether undelivered groups may exist now. */
	bool (*readable)(struct iopf_backend *b);
};

struct iopf_backend {
	const struct iopf_backend_ops *ops;
	int fault_fd; /* owned */
	int iommufd;  /* owned */
	uint32_t ioas_id;
	int poll_fd; /* POLLIN while undelivered groups exist; fault_fd or a sim doorbell */
	void *priv;  /* backend state */
};

/*
 * iopf_backend_open() - identify the fds a tenant handed over and wrap them.
 * @fault_fd: "anon_inode:[iommufd-pgfault]" (kernel) or a sim doorbell eventfd
 * @iommufd: /dev/iommu (kernel) or a sim context memfd
 * @sim_open: opens simulator fds (they share memory with the tenant: test use only),
 *            or NULL to refuse them
 *
 * Takes ownership of both fds only on success.
 * Return: 0, -EBADF/-ENOTTY for fds of the wrong kind, -EOPNOTSUPP for a sim fd
 * when !sim_open, -ENOMEM.
 */
int iopf_backend_open(int fault_fd, int iommufd, uint32_t ioas_id, iopf_backend_open_fn sim_open,
		      struct iopf_backend **ret);

static inline void iopf_backend_set_edge(struct iopf_backend *b, bool edge)
{
	if (b->ops->set_edge)
		b->ops->set_edge(b, edge);
}

/* Close the fds, destroy, free. NULL is fine. Returns NULL. */
struct iopf_backend *iopf_backend_close(struct iopf_backend *b);

/* The real-kernel backend; exported for the kernel harness and tests. */
int iopf_kernel_backend_open(int fault_fd, int iommufd, uint32_t ioas_id,
			     struct iopf_backend **ret);

#endif /* IOPF_BACKEND_H */
