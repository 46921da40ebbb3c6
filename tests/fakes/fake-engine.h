/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * An in-memory engine behind lib/dataplane/include/engine.h for control-plane tests: no threads,
 * no kernel. Objects cascade like the real engine's (removing a source takes
 * its domains and their regions). Done callbacks are queued and run from
 * iopf_engine_dispatch(), kicked through an eventfd so a daemon event loop works.
 */
#ifndef IOPF_FAKE_ENGINE_H
#define IOPF_FAKE_ENGINE_H

#include <stdint.h>

#include "engine.h"

enum fake_engine_op {
	FAKE_ADD_SOURCE,
	FAKE_ADD_DOMAIN,
	FAKE_ADD_REGION,
	FAKE_REMOVE_SOURCE,
	FAKE_REMOVE_DOMAIN,
	FAKE_REMOVE_REGION,
	_FAKE_OP_MAX,
};

/* Make the next call of @op fail with @error (negative), once. */
void __iopf_fake_engine_fail_next(enum fake_engine_op op, int error);
/* How often @op was called (successful or not) since the engine was created. */
unsigned __iopf_fake_engine_calls(enum fake_engine_op op);
/* Ids passed to remove calls, in call order; @n gets the count. */
const uint64_t *__iopf_fake_engine_removed(enum fake_engine_op op, unsigned *n);
/* Set the counters of a domain (stats tests). 0 or -ENOENT. */
int __iopf_fake_engine_set_counters(uint64_t domain_id, const struct iopf_counters *cnt);
/* Set the latency histogram of a domain. 0 or -ENOENT. */
int __iopf_fake_engine_set_latency(uint64_t domain_id, const struct iopf_histogram *h);

#endif /* IOPF_FAKE_ENGINE_H */
