/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The real-kernel backend, and backend identification. The only code that
 * touches iommufd fds.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "backend.h"
#include "iopf/iopf.h"
#include "uapi.h"
#include "util.h"
#include "fd-util.h"

#define FAULT_FD_LINK "anon_inode:[iommufd-pgfault]"
#define IOMMUFD_PATH  "/dev/iommu"

static ssize_t kernel_fault_read(struct iopf_backend *b, void *buf, size_t len)
{
	ssize_t r = read(b->fault_fd, buf, len);

	return r < 0 ? negative_errno() : r;
}

static ssize_t kernel_fault_write(struct iopf_backend *b, const void *buf, size_t len)
{
	ssize_t r = write(b->fault_fd, buf, len);

	return r < 0 ? negative_errno() : r;
}

static int kernel_map_file(struct iopf_backend *b, const struct iopf_map_req *req)
{
	struct iopf_iommu_ioas_map_file cmd = {
		.size = sizeof(cmd),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | req->prot,
		.ioas_id = b->ioas_id,
		.fd = req->fd,
		.start = req->offset,
		.length = req->length,
		.iova = req->iova,
	};

	return ioctl(b->iommufd, IOPF_IOMMU_IOAS_MAP_FILE, &cmd) < 0 ? negative_errno() : 0;
}

static int kernel_map_uptr(struct iopf_backend *b, const struct iopf_map_req *req)
{
	struct iommu_ioas_map cmd = {
		.size = sizeof(cmd),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | req->prot,
		.ioas_id = b->ioas_id,
		.user_va = (uintptr_t)req->uptr,
		.length = req->length,
		.iova = req->iova,
	};

	if (!req->uptr)
		return -EINVAL;
	return ioctl(b->iommufd, IOMMU_IOAS_MAP, &cmd) < 0 ? negative_errno() : 0;
}

static int kernel_unmap(struct iopf_backend *b, uint64_t iova, uint64_t length)
{
	struct iommu_ioas_unmap cmd = {
		.size = sizeof(cmd),
		.ioas_id = b->ioas_id,
		.iova = iova,
		.length = length,
	};

	return ioctl(b->iommufd, IOMMU_IOAS_UNMAP, &cmd) < 0 ? negative_errno() : 0;
}

/* The kernel's ops, but for how a region is mapped. */
#define KERNEL_OPS(map_fn, needs_uptr)                                                             \
	{                                                                                          \
		.name = "kernel", .fault_read = kernel_fault_read,                                 \
		.fault_write = kernel_fault_write, .map = (map_fn), .unmap = kernel_unmap,         \
		.map_needs_uptr = (needs_uptr),                                                    \
	}

static const struct iopf_backend_ops kernel_ops_file = KERNEL_OPS(kernel_map_file, false);
/* Before 6.13 (no IOAS_MAP_FILE): map through the daemon's own mmap of the region. */
static const struct iopf_backend_ops kernel_ops_uptr = KERNEL_OPS(kernel_map_uptr, true);

/*
 * Is IOAS_MAP_FILE there? Ask with fd -1: a kernel that has it fails with
 * EBADF (or another argument error) without mapping anything; an older one
 * does not know the ioctl (ENOTTY).
 */
static bool probe_map_file(int iommufd, uint32_t ioas_id)
{
	struct iopf_iommu_ioas_map_file cmd = {
		.size = sizeof(cmd),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE,
		.ioas_id = ioas_id,
		.fd = -1,
		.length = IOPF_PAGE_SIZE,
	};

	if (ioctl(iommufd, IOPF_IOMMU_IOAS_MAP_FILE, &cmd) == 0)
		return true; /* cannot happen with fd -1 */
	return errno != ENOTTY && errno != EOPNOTSUPP;
}

int iopf_kernel_backend_open(int fault_fd, int iommufd, uint32_t ioas_id, struct iopf_backend **ret)
{
	struct iopf_backend *b;

	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	*b = (struct iopf_backend){
		.ops = probe_map_file(iommufd, ioas_id) ? &kernel_ops_file : &kernel_ops_uptr,
		.fault_fd = fault_fd,
		.iommufd = iommufd,
		.ioas_id = ioas_id,
		.poll_fd = fault_fd,
	};
	*ret = b;
	return 0;
}

static bool is_iommufd(int fd, const char *link)
{
	struct stat st;

	return strcmp(link, IOMMUFD_PATH) == 0 && fstat(fd, &st) == 0 && S_ISCHR(st.st_mode);
}

int iopf_backend_open(int fault_fd, int iommufd, uint32_t ioas_id, iopf_backend_open_fn sim_open,
		      struct iopf_backend **ret)
{
	char flink[PATH_MAX], ilink[PATH_MAX];
	int r;

	r = fd_link(fault_fd, flink, sizeof(flink));
	if (r < 0)
		return r;
	r = fd_link(iommufd, ilink, sizeof(ilink));
	if (r < 0)
		return r;

	if (strcmp(flink, FAULT_FD_LINK) == 0) {
		if (!is_iommufd(iommufd, ilink))
			return -ENOTTY;
		return iopf_kernel_backend_open(fault_fd, iommufd, ioas_id, ret);
	}
	if (sim_open)
		return sim_open(fault_fd, iommufd, ioas_id, ret);
	/* A sim pair (doorbell eventfd + context memfd) is refused by policy, not by kind. */
	if (strcmp(flink, "anon_inode:[eventfd]") == 0 && strncmp(ilink, "/memfd:", 7) == 0)
		return -EOPNOTSUPP;
	return -ENOTTY;
}

struct iopf_backend *iopf_backend_close(struct iopf_backend *b)
{
	if (!b)
		return NULL;
	if (b->ops && b->ops->destroy)
		b->ops->destroy(b);
	/* poll_fd is fault_fd or owned by priv (the destroy hook closes it). */
	safe_close(b->fault_fd);
	safe_close(b->iommufd);
	free(b);
	return NULL;
}
