/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The iommufd fault-queue uAPI that iopfd relies on.
 *
 * We use the build host's <linux/iommufd.h> when it has the fault queue
 * (meson defines HAVE_LINUX_IOMMUFD_FAULT_QUEUE), and otherwise carry
 * ABI-compatible definitions from Linux 6.12.  Retire the fallback once the
 * oldest supported build host ships linux-libc-dev >= 6.11.
 */
#ifndef IOPF_UAPI_H
#define IOPF_UAPI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <linux/types.h>

#if defined(HAVE_LINUX_IOMMUFD_FAULT_QUEUE) && HAVE_LINUX_IOMMUFD_FAULT_QUEUE
#include <linux/iommufd.h>
#else

#define IOMMUFD_TYPE		(';')

enum {
	IOMMUFD_CMD_BASE = 0x80,
	IOMMUFD_CMD_DESTROY = IOMMUFD_CMD_BASE,
	IOMMUFD_CMD_IOAS_ALLOC = 0x81,
	IOMMUFD_CMD_IOAS_IOVA_RANGES = 0x84,
	IOMMUFD_CMD_IOAS_MAP = 0x85,
	IOMMUFD_CMD_IOAS_UNMAP = 0x86,
	IOMMUFD_CMD_HWPT_ALLOC = 0x89,
	IOMMUFD_CMD_FAULT_QUEUE_ALLOC = 0x8e,
};

struct iommu_destroy {
	__u32 size;
	__u32 id;
};
#define IOMMU_DESTROY		_IO(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY)

struct iommu_ioas_alloc {
	__u32 size;
	__u32 flags;
	__u32 out_ioas_id;
};
#define IOMMU_IOAS_ALLOC	_IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC)

enum iommufd_ioas_map_flags {
	IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0,
	IOMMU_IOAS_MAP_WRITEABLE = 1 << 1,
	IOMMU_IOAS_MAP_READABLE = 1 << 2,
};

struct iommu_ioas_map {
	__u32 size;
	__u32 flags;
	__u32 ioas_id;
	__u32 __reserved;
	__aligned_u64 user_va;
	__aligned_u64 length;
	__aligned_u64 iova;
};
#define IOMMU_IOAS_MAP		_IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP)

struct iommu_ioas_unmap {
	__u32 size;
	__u32 ioas_id;
	__aligned_u64 iova;
	__aligned_u64 length;
};
#define IOMMU_IOAS_UNMAP	_IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_UNMAP)

enum iommufd_hwpt_alloc_flags {
	IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0,
	IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1,
	IOMMU_HWPT_FAULT_ID_VALID = 1 << 2,
};

enum iommu_hwpt_data_type {
	IOMMU_HWPT_DATA_NONE = 0,
	IOMMU_HWPT_DATA_VTD_S1 = 1,
	IOMMU_HWPT_DATA_ARM_SMMUV3 = 2,
};

struct iommu_hwpt_alloc {
	__u32 size;
	__u32 flags;
	__u32 dev_id;
	__u32 pt_id;
	__u32 out_hwpt_id;
	__u32 __reserved;
	__u32 data_type;
	__u32 data_len;
	__aligned_u64 data_uptr;
	__u32 fault_id;
	__u32 __reserved2;
};
#define IOMMU_HWPT_ALLOC	_IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_ALLOC)

enum iommu_hwpt_pgfault_flags {
	IOMMU_PGFAULT_FLAGS_PASID_VALID = (1 << 0),
	IOMMU_PGFAULT_FLAGS_LAST_PAGE = (1 << 1),
};

enum iommu_hwpt_pgfault_perm {
	IOMMU_PGFAULT_PERM_READ = (1 << 0),
	IOMMU_PGFAULT_PERM_WRITE = (1 << 1),
	IOMMU_PGFAULT_PERM_EXEC = (1 << 2),
	IOMMU_PGFAULT_PERM_PRIV = (1 << 3),
};

struct iommu_hwpt_pgfault {
	__u32 flags;
	__u32 dev_id;
	__u32 pasid;
	__u32 grpid;
	__u32 perm;
	__u32 __reserved;
	__aligned_u64 addr;
	__u32 length;
	__u32 cookie;
};

enum iommufd_page_response_code {
	IOMMUFD_PAGE_RESP_SUCCESS = 0,
	IOMMUFD_PAGE_RESP_INVALID = 1,
};

struct iommu_hwpt_page_response {
	__u32 cookie;
	__u32 code;
};

struct iommu_fault_alloc {
	__u32 size;
	__u32 flags;
	__u32 out_fault_id;
	__u32 out_fault_fd;
};
#define IOMMU_FAULT_QUEUE_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_FAULT_QUEUE_ALLOC)

#endif /* !HAVE_LINUX_IOMMUFD_FAULT_QUEUE */

/* IOMMU_IOAS_MAP_FILE arrived in 6.13; defined here whatever the host headers say. */
#define IOPF_IOMMUFD_CMD_IOAS_MAP_FILE 0x8f
struct iopf_iommu_ioas_map_file {
	__u32 size;
	__u32 flags;
	__u32 ioas_id;
	__s32 fd;
	__aligned_u64 start;
	__aligned_u64 length;
	__aligned_u64 iova;
};
#define IOPF_IOMMU_IOAS_MAP_FILE _IO(IOMMUFD_TYPE, IOPF_IOMMUFD_CMD_IOAS_MAP_FILE)

/* The layout we depend on, as docs/kernel-uapi.md gives it. */
_Static_assert(sizeof(struct iommu_hwpt_pgfault) == 40, "pgfault record size");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, flags) == 0, "pgfault.flags");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, dev_id) == 4, "pgfault.dev_id");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, pasid) == 8, "pgfault.pasid");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, grpid) == 12, "pgfault.grpid");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, perm) == 16, "pgfault.perm");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, addr) == 24, "pgfault.addr");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, length) == 32, "pgfault.length");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, cookie) == 36, "pgfault.cookie");
_Static_assert(sizeof(struct iommu_hwpt_page_response) == 8, "page response size");
_Static_assert(sizeof(struct iommu_fault_alloc) == 16, "fault alloc size");
_Static_assert(sizeof(struct iommu_hwpt_alloc) == 48, "hwpt alloc size");
_Static_assert(sizeof(struct iommu_ioas_map) == 40, "ioas map size");
_Static_assert(sizeof(struct iommu_ioas_unmap) == 24, "ioas unmap size");
_Static_assert(sizeof(struct iopf_iommu_ioas_map_file) == 40, "ioas map file size");
_Static_assert(IOMMU_FAULT_QUEUE_ALLOC == _IO(';', 0x8e), "fault queue ioctl");

#define IOPF_PGFAULT_KNOWN_FLAGS (IOMMU_PGFAULT_FLAGS_PASID_VALID | IOMMU_PGFAULT_FLAGS_LAST_PAGE)
#define IOPF_PGFAULT_KNOWN_PERM                                                                    \
	(IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE | IOMMU_PGFAULT_PERM_EXEC |            \
	 IOMMU_PGFAULT_PERM_PRIV)

#endif /* IOPF_UAPI_H */
