/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The engine's limits and defaults, in one place: the engine checks its
 * config and sizes its buffers with these, and the daemon's configuration
 * (daemon/conf.c) validates the same keys against the same numbers.
 * Included by engine.h.
 */
#ifndef IOPF_ENGINE_LIMITS_H
#define IOPF_ENGINE_LIMITS_H

#include <stdbool.h>
#include <stdint.h>

#include "iopf/iopf.h"

/* Worker threads (Workers=); 0 in the config means one per CPU, capped at this. */
#define IOPF_WORKERS_MAX 1024u

/* Fault-around window (FaultAround=): a power of two in [MIN, MAX]. */
#define IOPF_FAULT_AROUND_DEFAULT (UINT64_C(64) << 10)
#define IOPF_FAULT_AROUND_MIN	  IOPF_PAGE_SIZE
#define IOPF_FAULT_AROUND_MAX	  (UINT64_C(1) << 30)

/*
 * Busy polling (BusyPoll=): how long a worker with nothing to do keeps
 * checking its ring before it sleeps; 0, the default, sleeps at once.
 */
#define IOPF_BUSY_POLL_MAX_NS (UINT64_C(10) * 1000 * 1000)

/*
 * Records per fault-fd read (ReadBatch=). The read buffer starts there and
 * grows (doubling) up to IOPF_READ_MAX_RECORDS for a group that does not fit.
 */
#define IOPF_READ_BATCH_DEFAULT 256u
#define IOPF_READ_MAX_RECORDS	65536u
#define IOPF_READ_BATCH_MAX	IOPF_READ_MAX_RECORDS

/* Groups one source may hold across turns (IOPF_HANDLER_HOLD). */
#define IOPF_HELD_MAX 256u

/* Reads of one source per worker turn, each answered before the next. */
#define IOPF_TURN_READS 4u
/*
 * Records of one source per worker turn while other sources share the worker:
 * a group of another source waits behind at most that many of a busy one's.
 */
#define IOPF_TURN_SHARED_RECORDS 64u
/* Reads of the last drain of a removed source: a device may fault forever. */
#define IOPF_DRAIN_MAX_READS 64u
/*
 * How long that drain asks a busy backend (-EBUSY) again, a turn a round
 * (the worker serves its other sources meanwhile), before it gives up on
 * what the backend will not take: the fd's close then leaves those groups to
 * the kernel. The simulator's backend itself fails after 20 ms busy.
 */
#define IOPF_DRAIN_BUSY_NS (UINT64_C(1000) * 1000 * 1000)

/* Retries of a failed response write or fault read: MIN, doubling, at most MAX apart. */
#define IOPF_BACKOFF_MIN_NS (UINT64_C(10) * 1000 * 1000)
#define IOPF_BACKOFF_MAX_NS (UINT64_C(10) * 1000 * 1000 * 1000)

/* The rules of the settings above, for the engine and the configuration alike. */
static inline bool iopf_fault_around_ok(uint64_t bytes)
{
	return (bytes & (bytes - 1)) == 0 && bytes >= IOPF_FAULT_AROUND_MIN &&
	       bytes <= IOPF_FAULT_AROUND_MAX;
}

static inline bool iopf_read_batch_ok(uint64_t records)
{
	return records >= 1 && records <= IOPF_READ_BATCH_MAX;
}

static inline bool iopf_busy_poll_ok(uint64_t ns)
{
	return ns <= IOPF_BUSY_POLL_MAX_NS;
}

#endif /* IOPF_ENGINE_LIMITS_H */
