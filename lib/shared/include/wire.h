/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The D-Bus wire, in one place: every method's argument and row signature
 * (docs/dbus-api.md describes the fields) and the one table between -errno
 * values and the error names of iopf.h. The daemon (daemon/bus.c) serves
 * these, and libiopf-client, iopfctl, iopf-exporter and the tests read them.
 * The daemon maps a failed call's errno to a name; the client maps it back.
 */
#ifndef IOPF_WIRE_H
#define IOPF_WIRE_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iopf/iopf.h"

/*
 * Why a group was answered as it was, as counters, metrics and logs name it
 * (enum iopf_reason order; a new reason gets its name here). NULL out of range.
 */
static inline const char *iopf_wire_reason_name(unsigned reason)
{
	static const char *const names[_IOPF_REASON_MAX] = {
		[IOPF_REASON_RESOLVED] = "resolved",
		[IOPF_REASON_NO_HANDLER] = "no_handler",
		[IOPF_REASON_OUTSIDE_REGION] = "outside_region",
		[IOPF_REASON_PERMISSION] = "permission",
		[IOPF_REASON_MAP_ERROR] = "map_error",
		[IOPF_REASON_BAD_RECORD] = "bad_record",
		[IOPF_REASON_RETIRED] = "retired",
		[IOPF_REASON_MAPPED_ELSEWHERE] = "mapped_elsewhere",
	};

	return reason < _IOPF_REASON_MAX ? names[reason] : NULL;
}

/* Arguments of the calls that create and remove objects; each create returns a "t" id. */
#define IOPF_WIRE_REGISTER_SOURCE_IN "hhu"    /* fault fd, iommufd, ioas_id */
#define IOPF_WIRE_REGISTER_DOMAIN_IN "tuu"    /* source_id, dev_id, pasid */
#define IOPF_WIRE_ADD_REGION_IN	     "thtttu" /* domain_id, fd, offset, iova, length, access */
/* AddRegions: fds, then rows (domain_id, fd index in fds, offset, iova, length, access) */
#define IOPF_WIRE_ADD_REGIONS_FDS "ah"
#define IOPF_WIRE_ADD_REGIONS_ROW "(tutttu)"
#define IOPF_WIRE_ADD_REGIONS_IN  IOPF_WIRE_ADD_REGIONS_FDS "a" IOPF_WIRE_ADD_REGIONS_ROW
#define IOPF_WIRE_ID		  "t"

/*
 * Rows of the list and statistics calls: "a" ROW. The operator's "All" variants
 * put the owning tenant's id first. Counters are a name -> value dictionary,
 * histograms are (count, sum_ns, per-bucket counts) over the LatencyBuckets property.
 */
#define IOPF_WIRE_COUNTERS	   "a{st}"
#define IOPF_WIRE_HISTOGRAM	   "(ttat)"
#define IOPF_WIRE_SOURCE	   "(tus)"  /* id, ioas_id, backend */
#define IOPF_WIRE_SOURCE_ALL	   "(ttus)" /* tenant, id, ioas_id, backend */
#define IOPF_WIRE_DOMAIN	   "(ttuu)" /* id, source_id, dev_id, pasid */
#define IOPF_WIRE_DOMAIN_ALL	   "(tttuu)"
#define IOPF_WIRE_REGION	   "(ttttu)" /* id, domain_id, iova, length, access */
#define IOPF_WIRE_REGION_ALL	   "(tttttu)"
#define IOPF_WIRE_STATS		   "(ttuu" IOPF_WIRE_COUNTERS ")" /* domain id, source, dev, pasid */
#define IOPF_WIRE_STATS_ALL	   "(tttuu" IOPF_WIRE_COUNTERS ")"
#define IOPF_WIRE_SOURCE_STATS	   "(t" IOPF_WIRE_COUNTERS ")" /* faults with no domain */
#define IOPF_WIRE_SOURCE_STATS_ALL "(tt" IOPF_WIRE_COUNTERS ")"

/* The metrics rows, and their fields alone, for entering and opening one row. */
#define IOPF_WIRE_DOMAIN_METRICS_FIELDS	    "ttuu" IOPF_WIRE_COUNTERS IOPF_WIRE_HISTOGRAM
#define IOPF_WIRE_DOMAIN_METRICS	    "(" IOPF_WIRE_DOMAIN_METRICS_FIELDS ")"
#define IOPF_WIRE_DOMAIN_METRICS_ALL_FIELDS "t" IOPF_WIRE_DOMAIN_METRICS_FIELDS
#define IOPF_WIRE_DOMAIN_METRICS_ALL	    "(" IOPF_WIRE_DOMAIN_METRICS_ALL_FIELDS ")"
#define IOPF_WIRE_TENANT_METRICS_FIELDS                                                            \
	"tuus" IOPF_WIRE_COUNTERS IOPF_WIRE_HISTOGRAM /* id, uid, pid, name */
#define IOPF_WIRE_TENANT_METRICS "(" IOPF_WIRE_TENANT_METRICS_FIELDS ")"

struct iopf_error_map_entry {
	int error; /* positive errno */
	const char *name;
};

/* Name -> errno takes the first row with that name, so list the canonical errno first. */
static const struct iopf_error_map_entry iopf_error_map[] = {
	{EINVAL, IOPF_ERROR_INVALID_ARGUMENT},
	{ERANGE, IOPF_ERROR_INVALID_ARGUMENT},
	{EOVERFLOW, IOPF_ERROR_INVALID_ARGUMENT},
	{ENOENT, IOPF_ERROR_NO_SUCH_OBJECT},
	{EBUSY, IOPF_ERROR_OVERLAP},
	{EEXIST, IOPF_ERROR_EXISTS},
	{EDQUOT, IOPF_ERROR_LIMIT},
	{EBADF, IOPF_ERROR_BAD_FD},
	{ENOTTY, IOPF_ERROR_BAD_FD}, /* an ioctl the fd does not know: wrong fd kind */
	{ENODEV, IOPF_ERROR_BAD_FD}, /* mmap of an fd that cannot be mapped */
	{EOPNOTSUPP, IOPF_ERROR_NOT_SUPPORTED},
	{EPERM, IOPF_ERROR_ACCESS_DENIED},
	{EACCES, IOPF_ERROR_ACCESS_DENIED},
	{EIO, IOPF_ERROR_INTERNAL},
};

/* Any errno (sign ignored) -> an IOPF_ERROR_* name; unknown ones are Internal. */
static inline const char *iopf_error_to_name(int error)
{
	if (error < 0)
		error = -error;
	for (size_t i = 0; i < sizeof(iopf_error_map) / sizeof(iopf_error_map[0]); i++)
		if (iopf_error_map[i].error == error)
			return iopf_error_map[i].name;
	return IOPF_ERROR_INTERNAL;
}

/* An IOPF_ERROR_* name -> positive errno, or 0 when it is not one of ours. */
static inline int iopf_error_from_name(const char *name)
{
	if (!name)
		return 0;
	for (size_t i = 0; i < sizeof(iopf_error_map) / sizeof(iopf_error_map[0]); i++)
		if (strcmp(iopf_error_map[i].name, name) == 0)
			return iopf_error_map[i].error;
	return 0;
}

/*
 * The D-Bus address of the unix socket at @path: "unix:path=" and the path, every
 * byte but [-0-9A-Za-z_/.*] %-escaped as the D-Bus specification's addresses ask.
 * Return: a malloc'ed string, or NULL when out of memory.
 */
static inline char *iopf_wire_path_address(const char *path)
{
	static const char prefix[] = "unix:path=";
	size_t len = strlen(path);
	char *a = malloc(sizeof(prefix) + 3 * len), *p;

	if (!a)
		return NULL;
	p = a + sprintf(a, "%s", prefix);
	for (; *path; path++) {
		unsigned char ch = (unsigned char)*path;

		if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= 'A' && ch <= 'Z') || strchr("-_/.*", ch))
			*p++ = (char)ch;
		else
			p += sprintf(p, "%%%02x", ch);
	}
	*p = '\0';
	return a;
}

#endif /* IOPF_WIRE_H */
