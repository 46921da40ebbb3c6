/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The one table between -errno values and the D-Bus error names of iopf.h.
 * The daemon maps a failed call's errno to a name; libiopf-client maps the
 * name back. Header-only so the client library needs nothing of libiopf-core.
 */
#ifndef IOPF_ERROR_MAP_H
#define IOPF_ERROR_MAP_H

#include <errno.h>
#include <string.h>

#include "iopf/iopf.h"

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

#endif /* IOPF_ERROR_MAP_H */
