/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Single-writer counters (struct iopf_counters): the owning worker updates
 * them with relaxed atomic stores, the control thread reads them with relaxed
 * loads. No read-modify-write is needed because there is one writer.
 */
#ifndef IOPF_COUNTERS_H
#define IOPF_COUNTERS_H

#include <stdint.h>

#include "engine.h"

static inline void ctr_add(uint64_t *p, uint64_t n)
{
	__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static inline void ctr_sub(uint64_t *p, uint64_t n)
{
	__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) - n, __ATOMIC_RELAXED);
}

static inline uint64_t ctr_get(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* Count one answered group on @c. */
static inline void ctr_answer(struct iopf_counters *c, enum iopf_reason reason)
{
	ctr_add(&c->groups, 1);
	ctr_add(reason == IOPF_REASON_RESOLVED ? &c->success : &c->invalid, 1);
	ctr_add(&c->reasons[reason], 1);
}

/* Relaxed snapshot of counters another thread writes. */
static inline void ctr_snapshot(const struct iopf_counters *c, struct iopf_counters *ret)
{
	ret->faults = ctr_get(&c->faults);
	ret->groups = ctr_get(&c->groups);
	ret->success = ctr_get(&c->success);
	ret->invalid = ctr_get(&c->invalid);
	for (unsigned i = 0; i < _IOPF_REASON_MAX; i++)
		ret->reasons[i] = ctr_get(&c->reasons[i]);
	ret->stale = ctr_get(&c->stale);
	ret->pages_mapped = ctr_get(&c->pages_mapped);
	ret->maps = ctr_get(&c->maps);
	ret->coalesced = ctr_get(&c->coalesced);
	ret->bytes_mapped = ctr_get(&c->bytes_mapped);
	ret->masked_flags = ctr_get(&c->masked_flags);
}

#endif /* IOPF_COUNTERS_H */
