/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Names and values shared by the daemon, its clients and its tests.
 */
#ifndef IOPF_IOPF_H
#define IOPF_IOPF_H

#include <stdint.h>

/* Domain key: a fault without PASID_VALID routes to the domain registered with this PASID. */
#define IOPF_PASID_NONE UINT32_C(0xffffffff)
#define IOPF_PASID_MAX	UINT32_C(0xfffff) /* PCIe PASIDs are 20 bits */

/* Region access; the same bits as IOMMU_PGFAULT_PERM_*. */
enum iopf_access {
	IOPF_ACCESS_READ = 1u << 0,
	IOPF_ACCESS_WRITE = 1u << 1,
	IOPF_ACCESS_EXEC = 1u << 2,
	IOPF_ACCESS_PRIV = 1u << 3,
	IOPF_ACCESS_ALL = 0xfu,
};

/* The page size iopfd maps with; regions and windows are multiples of it. */
#define IOPF_PAGE_SIZE UINT64_C(4096)

/* Why a fault group was answered the way it was (metrics and logs). */
enum iopf_reason {
	IOPF_REASON_RESOLVED = 0,   /* SUCCESS: every page of the group is mapped */
	IOPF_REASON_NO_HANDLER,	    /* INVALID: no domain for (source, dev_id, pasid) */
	IOPF_REASON_OUTSIDE_REGION, /* INVALID: address in no region of the domain */
	IOPF_REASON_PERMISSION,	    /* INVALID: requested access not allowed by the region */
	IOPF_REASON_MAP_ERROR,	    /* INVALID: the IOAS map failed */
	IOPF_REASON_BAD_RECORD,	    /* INVALID: malformed group (missing LAST_PAGE, mixed keys) */
	IOPF_REASON_RETIRED, /* INVALID: the handler or source went away with the group held */
	/* INVALID: a WRITE to a page someone else mapped (another domain of the IOAS, the tenant)
	 */
	IOPF_REASON_MAPPED_ELSEWHERE,
/*
 * New reasons go above this comment, and may come in any release: size
 * nothing by this enum outside iopfd (counters are read by name, see
 * iopf/client.h). The count below is iopfd's own, for the tables built
 * with its source tree; tests/headers checks that it is all tenants miss.
 */
#ifdef IOPF_BUILDING_IOPFD
	_IOPF_REASON_MAX,
#endif
};

/* D-Bus names. The same interface is served on the system bus and on the direct socket. */
#define IOPF_DBUS_NAME	     "org.iopfd"
#define IOPF_DBUS_PATH	     "/org/iopfd"
#define IOPF_DBUS_INTERFACE  "org.iopfd.Manager1"
#define IOPF_DEFAULT_ADDRESS "unix:path=/run/iopfd/control"
#define IOPF_DEFAULT_SOCKET  "/run/iopfd/control"
#define IOPF_ADDRESS_ENV     "IOPFD_ADDRESS"

/* D-Bus errors (each carries a human-readable message). */
#define IOPF_ERROR_INVALID_ARGUMENT "org.iopfd.Error.InvalidArgument"
#define IOPF_ERROR_NO_SUCH_OBJECT   "org.iopfd.Error.NoSuchObject"
#define IOPF_ERROR_OVERLAP	    "org.iopfd.Error.Overlap"
#define IOPF_ERROR_EXISTS	    "org.iopfd.Error.Exists"
#define IOPF_ERROR_LIMIT	    "org.iopfd.Error.LimitExceeded"
#define IOPF_ERROR_BAD_FD	    "org.iopfd.Error.BadFd"
#define IOPF_ERROR_NOT_SUPPORTED    "org.iopfd.Error.NotSupported"
#define IOPF_ERROR_ACCESS_DENIED    "org.iopfd.Error.AccessDenied"
#define IOPF_ERROR_INTERNAL	    "org.iopfd.Error.Internal"

#endif /* IOPF_IOPF_H */
