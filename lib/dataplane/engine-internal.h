/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the engine (control side, engine.c) and its workers (worker.c) share,
 * plus the test hooks. Not for the control plane: it uses engine.h.
 *
 * Ownership in one place:
 *  - The control thread creates, publishes, unpublishes and (via call_rcu)
 *    frees every object. Once removal starts an object is frozen: the control
 *    thread never touches it again until its completion comes back.
 *  - A source belongs to one worker; so do its domains and regions. That
 *    worker is the only thread that reads faults for them, maps, unmaps and
 *    writes their counters and page bitmaps.
 */
#ifndef IOPF_ENGINE_INTERNAL_H
#define IOPF_ENGINE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/time_types.h>

#include "rcu.h"

#include "backend.h"
#include "engine.h"
#include "fault.h"
#include "persist.h"
#include "histogram.h"
#include "mailbox.h"
#include "region.h"
#include "response.h"
#include "route.h"
#include "util.h"

struct iopf_worker;

enum iopf_cmd_type {
	IOPF_CMD_ADD_SOURCE,
	IOPF_CMD_REMOVE_SOURCE,
	IOPF_CMD_REMOVE_DOMAIN,
	IOPF_CMD_REMOVE_REGION,
	IOPF_CMD_STOP,
	IOPF_CMD_PING, /* liveness: the worker notes it ran its command queue */
};

/*
 * A command to a worker, and on the way back the completion of a removal.
 * Embedded in the object it concerns, so removal cannot fail for want of memory.
 */
struct iopf_cmd {
	struct cds_list_head node; /* worker's mailbox, then the engine's done mailbox */
	enum iopf_cmd_type type;
	void *obj;
	iopf_engine_done_fn done;
	void *userdata;
	int error; /* set by the worker: first unmap error, or 0 */
};

/*
 * How a domain's groups are handled, the one branch the fault path takes per
 * routed group. RESOLVE: map from the domain's regions and answer at once.
 * HOLD: keep the group in the source's held table and answer it later. That
 * is the seam a tenant-forwarded handler (an in-flight table answered when
 * the tenant replies) will use; today only the test hook
 * __iopf_engine_set_hold() sets it.
 */
enum iopf_handler_kind {
	IOPF_HANDLER_RESOLVE,
	IOPF_HANDLER_HOLD,
};

/* A group answered later (tenant-forwarded handlers); today only the test hook holds. */
struct iopf_held {
	uint32_t cookie;
	struct iopf_domain *domain;
};

struct iopf_source {
	uint64_t id; /* first: the engine's id index relies on it */
	uint64_t tenant;
	uint32_t ioas_id;
	unsigned worker;
	struct iopf_backend *backend; /* owned; closed by the worker when retired */
	struct cds_list_head domains; /* control: its live domains; frozen once removal starts */
	struct iopf_cmd add_cmd, rm_cmd;

	/* written by the worker, loaded relaxed by the control thread */
	struct iopf_counters unrouted;
	struct iopf_histogram unrouted_latency; /* read to response of unrouted groups */
	uint64_t io_errors;
	uint64_t write_errors; /* response writes that failed hard (their entries wait) */
	uint64_t read_errors;  /* fault reads (and polls) that failed hard */
	uint64_t retries;      /* turns run by the backoff timer */
	uint64_t recovered;    /* journal records answered after a restart */
	uint64_t n_held_pub;
	int broken_pub;

	struct cds_list_head rnode; /* control: engine->retiring_sources while removal runs */

	/* worker only */
	struct cds_list_head wnode; /* the worker's list of live sources */
	/*
	 * On the worker's ready list: due a turn in its next round (polled: its
	 * fd polled readable, or its last turn hit the read bound).
	 */
	struct cds_list_head ready_node;
	bool on_ready, ready_polled;
	bool poll_armed, timer_armed, retiring, broken;
	bool draining;		   /* retiring: its fd is read and answered, a turn a round */
	unsigned drain_reads;	   /* reads of that drain so far (IOPF_DRAIN_MAX_READS) */
	uint64_t drain_busy_since; /* its backend has said -EBUSY since (0: not) */
	bool poll_multishot;	   /* the armed poll is multishot */
	unsigned cancels_pending;  /* ASYNC_CANCELs of its poll or timer in flight */
	/*
	 * Not 0: waiting on the timer, not the poll, because responses wait for a
	 * write that failed (nothing is read until they are written) or reads fail.
	 */
	uint64_t backoff_ns;
	struct __kernel_timespec backoff_ts; /* the armed timer's; read at submission */
	bool scattered;			     /* the last read's faults went to many domains */
	struct iopf_fault_buf buf;	     /* owned; the last read's records */
	struct iopf_journal journal;	     /* owned; buf.recs are its slots (persist.h) */
	size_t journal_n;		 /* slots of the last read waiting for their responses */
	struct iopf_persist_source prec; /* its record; rewritten when the buffer grows */
	bool recover;			 /* restored: answer the journal before the first read */
	bool paused;			 /* registered, not handed to its worker yet (control) */
	struct iopf_response_batch rb;
	/*
	 * Owned; IOPF_HELD_MAX entries. NULL until a domain of the source first
	 * holds: the control thread allocates it then, before it publishes the
	 * domain's handler kind (release), and never changes it again.
	 */
	struct iopf_held *held;
	size_t n_held;
	size_t held_room; /* responses rb keeps room for, for held groups: 0 until one is held */

	struct rcu_head rcu;
};

/*
 * A worker resolving a fault reads the first line (the route key, regions,
 * handler) and writes the counters' first line and the histogram's totals
 * and one bucket: four lines a fault. Domains are allocated on a cache line
 * (domain_new()), so with 65,536 of them, each cold, none of those spills
 * into a fifth.
 */
struct iopf_domain {
	uint64_t id; /* first */
	uint64_t tenant;
	struct iopf_source *source;
	struct iopf_route_node route;
	struct iopf_region_set *regions; /* RCU-published; written by the control thread only */
	int handler;			 /* enum iopf_handler_kind: control stores (release) */
	unsigned n_regions;
	/*
	 * Up to the next line by hand: an aligned member would make the type's
	 * alignment a line, which list walks that compute an entry from the
	 * list's head (not a domain) then break (UBSan: misaligned access).
	 */
	uint8_t _pad0[8];
	struct iopf_counters counters; /* written by the worker, from the second line on */
	struct iopf_histogram latency; /* written by the worker: fault read to response written */
	struct cds_list_head eregions; /* control: its live struct iopf_eregion */
	struct cds_list_head snode;    /* in source->domains */
	struct cds_list_head rnode;    /* control: engine->retiring_domains while removal runs */
	struct iopf_cmd rm_cmd;
	struct rcu_head rcu;
};

/* The engine's wrapper around a region. */
struct iopf_eregion {
	uint64_t id; /* first */
	struct iopf_domain *domain;
	struct iopf_region *r;	    /* owned */
	struct iopf_state *state;   /* the arena its page bitmaps live in */
	uint64_t bits_off;	    /* their block */
	struct cds_list_head dnode; /* in domain->eregions */
	struct iopf_cmd rm_cmd;
	struct rcu_head rcu;
};

/*
 * worker.c, for the engine. A worker knows nothing of engine.c: it is handed
 * what it needs at start.
 */
struct iopf_worker_config {
	unsigned index;
	struct iopf_route_table *routes; /* looked up under the RCU read lock */
	const uint64_t *fault_around;	 /* window bytes; loaded relaxed once a turn */
	const uint64_t *busy_poll_ns;	 /* spin before sleeping; loaded relaxed once a round */
	struct iopf_mailbox *done;	 /* finished removals (struct iopf_cmd) go here */
};
/* Start a worker; returns once its ring is up. Return: 0 or -errno. */
int iopf_worker_start(const struct iopf_worker_config *cfg, struct iopf_worker **ret);
/* Queue @c and kick the worker; never blocks on the worker. */
void iopf_worker_send(struct iopf_worker *w, struct iopf_cmd *c);
/*
 * Liveness. iopf_worker_ping(): if the worker answered the previous ping, send
 * it a new one and return true; else return false and send nothing (the old
 * ping is still queued). Control thread only; never blocks.
 */
bool iopf_worker_ping(struct iopf_worker *w);
/* Send STOP, join, free. NULL ok; returns NULL. */
struct iopf_worker *iopf_worker_stop(struct iopf_worker *w);

/*
 * Test hooks.
 * __iopf_engine_add_backend(): iopf_engine_add_source() with an open backend
 * (fakes); takes @b on success.
 * __iopf_engine_set_hold(): make a domain hold its groups instead of answering
 * them, as a tenant-forwarded handler will (up to IOPF_HELD_MAX per source).
 * __iopf_engine_held(): how many groups a source holds now.
 */
int __iopf_engine_add_backend(struct iopf_engine *e, uint64_t tenant, struct iopf_backend *b,
			      uint64_t *ret_source_id);
int __iopf_engine_set_hold(struct iopf_engine *e, uint64_t domain_id, bool hold);
uint64_t __iopf_engine_held(struct iopf_engine *e, uint64_t source_id);

#endif /* IOPF_ENGINE_INTERNAL_H */
