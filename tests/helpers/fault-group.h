/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Comparing two cuts of a fault batch (lib/dataplane/fault.h), field by field. */
#ifndef IOPF_TEST_FAULT_GROUP_H
#define IOPF_TEST_FAULT_GROUP_H

#include <stdbool.h>

#include "fault.h"

/* The same group: same records, key, cookie, masking and verdict (padding aside). */
static inline bool fault_group_equal(const struct iopf_group *a, const struct iopf_group *b)
{
	return a->first == b->first && a->n == b->n && a->cookie == b->cookie &&
	       a->dev_id == b->dev_id && a->pasid == b->pasid && a->masked == b->masked &&
	       a->bad == b->bad;
}

#endif /* IOPF_TEST_FAULT_GROUP_H */
