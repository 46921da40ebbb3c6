/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Compiled (never run) by run.sh before each boot, against the uapi headers and the
 * selftest header of the very kernel it boots (build-kernel.sh keeps both beside the
 * bzImage): our own definitions, lib/shared/include/uapi.h and mock.h, must say what the
 * kernel says. uapi.h then includes that kernel's <linux/iommufd.h> instead of its
 * fallback, so its _Static_asserts check the kernel's record layout too.
 *
 * run.sh defines KT_CHECK_PASID when the selftest header has the PASID operations and
 * KT_CHECK_HWPT_PASID when <linux/iommufd.h> has IOMMU_HWPT_ALLOC_PASID (both enums, so
 * the preprocessor cannot tell).
 */
#include <stddef.h>

#include <linux/iommufd.h>
#include "iommufd_test.h"

/* mock.h defines macros of the same names: take the kernel's values first. */
enum {
	K_APERTURE_START = MOCK_APERTURE_START,
	K_APERTURE_LAST = MOCK_APERTURE_LAST,
#ifdef KT_CHECK_PASID
	K_FLAGS_DEVICE_PASID = MOCK_FLAGS_DEVICE_PASID,
#endif
};

#include "mock.h"

#define SAME_OFFSET(ours, theirs, field)                                                           \
	_Static_assert(offsetof(struct ours, field) == offsetof(struct theirs, field),             \
		       #ours "." #field)
#define SAME_OFFSET2(ours, of, theirs, tf)                                                         \
	_Static_assert(offsetof(struct ours, of) == offsetof(struct theirs, tf), #ours "." #of)

_Static_assert(sizeof(struct mock_cmd) == sizeof(struct iommu_test_cmd), "iommu_test_cmd size");
SAME_OFFSET(mock_cmd, iommu_test_cmd, op);
SAME_OFFSET(mock_cmd, iommu_test_cmd, id);
SAME_OFFSET(mock_cmd, iommu_test_cmd, last);
SAME_OFFSET(mock_cmd, iommu_test_cmd, mock_domain.out_stdev_id);
SAME_OFFSET(mock_cmd, iommu_test_cmd, mock_domain.out_hwpt_id);
SAME_OFFSET(mock_cmd, iommu_test_cmd, mock_domain.out_idev_id);
SAME_OFFSET(mock_cmd, iommu_test_cmd, mock_domain_flags.dev_flags);
SAME_OFFSET(mock_cmd, iommu_test_cmd, mock_domain_replace.pt_id);
SAME_OFFSET(mock_cmd, iommu_test_cmd, check_map.iova);
SAME_OFFSET(mock_cmd, iommu_test_cmd, check_map.length);
SAME_OFFSET(mock_cmd, iommu_test_cmd, check_map.uptr);
SAME_OFFSET(mock_cmd, iommu_test_cmd, trigger_iopf.dev_id);
SAME_OFFSET(mock_cmd, iommu_test_cmd, trigger_iopf.pasid);
SAME_OFFSET(mock_cmd, iommu_test_cmd, trigger_iopf.grpid);
SAME_OFFSET(mock_cmd, iommu_test_cmd, trigger_iopf.perm);
SAME_OFFSET(mock_cmd, iommu_test_cmd, trigger_iopf.addr);
_Static_assert(MOCK_CMD == IOMMU_TEST_CMD, "IOMMU_TEST_CMD");
_Static_assert((int)MOCK_OP_MOCK_DOMAIN == (int)IOMMU_TEST_OP_MOCK_DOMAIN, "op MOCK_DOMAIN");
_Static_assert((int)MOCK_OP_MD_CHECK_MAP == (int)IOMMU_TEST_OP_MD_CHECK_MAP, "op MD_CHECK_MAP");
_Static_assert((int)MOCK_OP_MOCK_DOMAIN_REPLACE == (int)IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE,
	       "op MOCK_DOMAIN_REPLACE");
_Static_assert((int)MOCK_OP_MOCK_DOMAIN_FLAGS == (int)IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
	       "op MOCK_DOMAIN_FLAGS");
_Static_assert((int)MOCK_OP_TRIGGER_IOPF == (int)IOMMU_TEST_OP_TRIGGER_IOPF, "op TRIGGER_IOPF");
_Static_assert(MOCK_APERTURE_START == K_APERTURE_START, "mock aperture start");
_Static_assert(MOCK_APERTURE_LAST == K_APERTURE_LAST, "mock aperture last");
_Static_assert(MOCK_HWPT_DATA_TYPE == IOMMU_HWPT_DATA_SELFTEST, "selftest hwpt data type");
_Static_assert(MOCK_IOTLB_DEFAULT == IOMMU_TEST_IOTLB_DEFAULT, "selftest default iotlb");
SAME_OFFSET(mock_hwpt_data, iommu_hwpt_selftest, iotlb);

#ifdef KT_CHECK_PASID
_Static_assert((int)MOCK_OP_PASID_ATTACH == (int)IOMMU_TEST_OP_PASID_ATTACH, "op PASID_ATTACH");
_Static_assert((int)MOCK_OP_PASID_REPLACE == (int)IOMMU_TEST_OP_PASID_REPLACE, "op PASID_REPLACE");
_Static_assert((int)MOCK_OP_PASID_DETACH == (int)IOMMU_TEST_OP_PASID_DETACH, "op PASID_DETACH");
_Static_assert((int)MOCK_OP_PASID_CHECK_HWPT == (int)IOMMU_TEST_OP_PASID_CHECK_HWPT,
	       "op PASID_CHECK_HWPT");
_Static_assert(MOCK_FLAGS_DEVICE_PASID == K_FLAGS_DEVICE_PASID, "MOCK_FLAGS_DEVICE_PASID");
SAME_OFFSET(mock_cmd, iommu_test_cmd, pasid_attach.pasid);
SAME_OFFSET(mock_cmd, iommu_test_cmd, pasid_attach.pt_id);
SAME_OFFSET2(mock_cmd, pasid_attach.pt_id, iommu_test_cmd, pasid_replace.pt_id);
SAME_OFFSET(mock_cmd, iommu_test_cmd, pasid_detach.pasid);
SAME_OFFSET(mock_cmd, iommu_test_cmd, pasid_check.pasid);
SAME_OFFSET(mock_cmd, iommu_test_cmd, pasid_check.hwpt_id);
#endif

#ifdef KT_CHECK_HWPT_PASID
_Static_assert(KT_HWPT_ALLOC_PASID == IOMMU_HWPT_ALLOC_PASID, "IOMMU_HWPT_ALLOC_PASID");
#endif

#ifdef IOMMU_IOAS_MAP_FILE
_Static_assert(IOPF_IOMMU_IOAS_MAP_FILE == IOMMU_IOAS_MAP_FILE, "IOMMU_IOAS_MAP_FILE");
_Static_assert(sizeof(struct iopf_iommu_ioas_map_file) == sizeof(struct iommu_ioas_map_file),
	       "iommu_ioas_map_file size");
SAME_OFFSET(iopf_iommu_ioas_map_file, iommu_ioas_map_file, fd);
SAME_OFFSET(iopf_iommu_ioas_map_file, iommu_ioas_map_file, start);
SAME_OFFSET(iopf_iommu_ioas_map_file, iommu_ioas_map_file, length);
SAME_OFFSET(iopf_iommu_ioas_map_file, iommu_ioas_map_file, iova);
#endif

/* The flag bits iopfd keeps are exactly the ones this uAPI defines. */
_Static_assert(IOPF_PGFAULT_KNOWN_FLAGS ==
		       (IOMMU_PGFAULT_FLAGS_PASID_VALID | IOMMU_PGFAULT_FLAGS_LAST_PAGE),
	       "pgfault flags");

int main(void);
int main(void)
{
	return 0;
}
