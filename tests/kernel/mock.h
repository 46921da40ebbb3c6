/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The iommufd selftest mock (CONFIG_IOMMUFD_TEST): the part of its private ioctl that the
 * real-kernel suite drives. The kernel keeps this ABI in drivers/iommu/iommufd/iommufd_test.h,
 * which no uapi package ships; these definitions are ours, checked against the layout
 * below and, before each boot, against the very kernel's header (uapi-check.c). Only the
 * operations we use are spelled out; the union is padded to its full size (the same in
 * 6.12 and 7.2) because the kernel rejects a shorter command.
 */
#ifndef IOPF_KTEST_MOCK_H
#define IOPF_KTEST_MOCK_H

#include <stddef.h>
#include <stdint.h>
#include <linux/types.h>

#include "uapi.h"

/* IOMMU_TEST_CMD operation numbers; the PASID ones exist only where the mock has them. */
enum mock_op {
	MOCK_OP_MOCK_DOMAIN = 2,
	MOCK_OP_MD_CHECK_MAP = 3,
	MOCK_OP_MOCK_DOMAIN_REPLACE = 10,
	MOCK_OP_MOCK_DOMAIN_FLAGS = 12,
	MOCK_OP_TRIGGER_IOPF = 15,
	MOCK_OP_PASID_ATTACH = 18,
	MOCK_OP_PASID_REPLACE = 19,
	MOCK_OP_PASID_DETACH = 20,
	MOCK_OP_PASID_CHECK_HWPT = 21,
};

/* MOCK_DOMAIN_FLAGS: a device with a 20-bit PASID space (EINVAL where the mock lacks it). */
#define MOCK_FLAGS_DEVICE_PASID (1u << 2)

/*
 * HWPT_ALLOC flag: the hwpt may be attached to a PASID (and, on the RID, lets PASIDs be
 * attached beside it). Ours, whatever the host's headers say.
 */
#define KT_HWPT_ALLOC_PASID (1u << 3)

/* The mock IOMMU's aperture and its IO page size (PAGE_SIZE / 2). */
#define MOCK_APERTURE_START (UINT64_C(1) << 24)
#define MOCK_APERTURE_LAST  ((UINT64_C(1) << 31) - 1)
#define MOCK_IO_PAGE_SIZE   UINT64_C(2048)

/* Nested hwpt data for the mock driver: data_type and the default IOTLB tag. */
#define MOCK_HWPT_DATA_TYPE 0xdeadu
#define MOCK_IOTLB_DEFAULT  0xbadbeefu

struct mock_hwpt_data {
	__u32 iotlb;
};

struct mock_cmd {
	__u32 size;
	__u32 op;
	__u32 id;
	__u32 __reserved;
	union {
		struct {
			__u32 out_stdev_id;
			__u32 out_hwpt_id;
			__u32 out_idev_id; /* the iommufd device id faults carry */
		} mock_domain;
		struct {
			__u32 out_stdev_id;
			__u32 out_hwpt_id;
			__u32 out_idev_id;
			__u32 dev_flags;
		} mock_domain_flags;
		struct {
			__u32 pt_id;
		} mock_domain_replace;
		struct {
			__aligned_u64 iova;
			__aligned_u64 length;
			__aligned_u64 uptr;
		} check_map;
		struct {
			__u32 dev_id;
			__u32 pasid; /* 0: no PASID (the record lacks PASID_VALID) */
			__u32 grpid;
			__u32 perm;
			__u64 addr;
		} trigger_iopf;
		struct {
			__u32 pasid;
			__u32 pt_id; /* in: the hwpt; out: what got attached */
		} pasid_attach;	     /* also PASID_REPLACE; @id is the stdev id */
		struct {
			__u32 pasid;
		} pasid_detach;
		struct {
			__u32 pasid;
			__u32 hwpt_id; /* 0: check that nothing is attached */
		} pasid_check;
		/* the largest member (dirty tracking) is 48 bytes in 6.12 and 7.2 */
		__aligned_u64 __union_size[6];
	};
	__u32 last;
};

#define MOCK_CMD _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 32)

_Static_assert(sizeof(struct mock_cmd) == 72, "iommu_test_cmd is 72 bytes");
_Static_assert(offsetof(struct mock_cmd, op) == 4, "iommu_test_cmd.op");
_Static_assert(offsetof(struct mock_cmd, id) == 8, "iommu_test_cmd.id");
_Static_assert(offsetof(struct mock_cmd, mock_domain.out_stdev_id) == 16, "out_stdev_id");
_Static_assert(offsetof(struct mock_cmd, mock_domain.out_hwpt_id) == 20, "out_hwpt_id");
_Static_assert(offsetof(struct mock_cmd, mock_domain.out_idev_id) == 24, "out_idev_id");
_Static_assert(offsetof(struct mock_cmd, mock_domain_flags.dev_flags) == 28, "dev_flags");
_Static_assert(offsetof(struct mock_cmd, mock_domain_replace.pt_id) == 16, "replace.pt_id");
_Static_assert(offsetof(struct mock_cmd, pasid_attach.pasid) == 16, "pasid_attach.pasid");
_Static_assert(offsetof(struct mock_cmd, pasid_attach.pt_id) == 20, "pasid_attach.pt_id");
_Static_assert(offsetof(struct mock_cmd, pasid_detach.pasid) == 16, "pasid_detach.pasid");
_Static_assert(offsetof(struct mock_cmd, pasid_check.hwpt_id) == 20, "pasid_check.hwpt_id");
_Static_assert(offsetof(struct mock_cmd, check_map.iova) == 16, "check_map.iova");
_Static_assert(offsetof(struct mock_cmd, check_map.length) == 24, "check_map.length");
_Static_assert(offsetof(struct mock_cmd, check_map.uptr) == 32, "check_map.uptr");
_Static_assert(offsetof(struct mock_cmd, trigger_iopf.dev_id) == 16, "trigger.dev_id");
_Static_assert(offsetof(struct mock_cmd, trigger_iopf.pasid) == 20, "trigger.pasid");
_Static_assert(offsetof(struct mock_cmd, trigger_iopf.grpid) == 24, "trigger.grpid");
_Static_assert(offsetof(struct mock_cmd, trigger_iopf.perm) == 28, "trigger.perm");
_Static_assert(offsetof(struct mock_cmd, trigger_iopf.addr) == 32, "trigger.addr");
_Static_assert(offsetof(struct mock_cmd, last) == 64, "iommu_test_cmd.last");
_Static_assert(MOCK_CMD == _IO(';', 0xa0), "IOMMU_TEST_CMD is 0xa0");
_Static_assert(sizeof(struct mock_hwpt_data) == 4, "iommu_hwpt_selftest");

#endif /* IOPF_KTEST_MOCK_H */
