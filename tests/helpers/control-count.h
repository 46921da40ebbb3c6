/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* How many objects lib/control lists to a caller: the listings the tests compare. */
#ifndef IOPF_TEST_CONTROL_COUNT_H
#define IOPF_TEST_CONTROL_COUNT_H

#include <errno.h>

#include "control.h"

enum control_kind { CONTROL_SOURCES, CONTROL_DOMAINS, CONTROL_REGIONS };

#define CONTROL_COUNT_FN(name, info)                                                               \
	static inline int name(const struct info *i, void *userdata)                               \
	{                                                                                          \
		(*(unsigned *)userdata)++;                                                         \
		return 0;                                                                          \
	}
CONTROL_COUNT_FN(control_count_source, iopf_source_info)
CONTROL_COUNT_FN(control_count_domain, iopf_domain_info)
CONTROL_COUNT_FN(control_count_region, iopf_region_info)
#undef CONTROL_COUNT_FN

/*
 * Add to *@n the objects of kind @k iopf_control_foreach_*() visits for @tenant
 * (with @all, every tenant's). Return: as the listing: 0, -EPERM, -ENOENT.
 */
static inline int control_count(struct iopf_control *c, enum control_kind k, uint64_t tenant,
				bool all, unsigned *n, struct iopf_control_error *err)
{
	switch (k) {
	case CONTROL_SOURCES:
		return iopf_control_foreach_source(c, tenant, all, control_count_source, n, err);
	case CONTROL_DOMAINS:
		return iopf_control_foreach_domain(c, tenant, all, control_count_domain, n, err);
	case CONTROL_REGIONS:
		return iopf_control_foreach_region(c, tenant, all, control_count_region, n, err);
	}
	return -EINVAL;
}

#endif /* IOPF_TEST_CONTROL_COUNT_H */
