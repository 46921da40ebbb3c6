/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The data plane as the control plane sees it.
 *
 * The engine owns the fault sources, domains and regions, the RCU routing
 * table and the worker threads. All iopf_engine_* calls are made from ONE
 * control thread; workers never wait on it. Removal is asynchronous: the
 * object is unpublished at once (no new fault reaches it), then its worker
 * answers every group it still holds, unmaps exactly what the daemon mapped
 * for it, and the done callback runs on the control thread from
 * iopf_engine_dispatch(). Memory is freed after an RCU grace period.
 */
#ifndef IOPF_ENGINE_H
#define IOPF_ENGINE_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "engine-limits.h"
#include "fd-util.h"
#include "histogram.h"
#include "iopf/iopf.h"

struct iopf_engine;
struct iopf_backend;

/*
 * Opens a fault source of a kind other than the kernel's (the simulator's
 * iopf_sim_backend_open()); same contract as iopf_kernel_backend_open().
 */
typedef int (*iopf_backend_open_fn)(int fault_fd, int iommufd, uint32_t ioas_id,
				    struct iopf_backend **ret);

/*
 * Where the engine keeps the fds it must not lose with the process (systemd's
 * fd store, in the daemon): @keep gets a copy of each fd it takes over, under a
 * name unique in the engine, @drop the name once the object is gone. Either
 * may be NULL. Names: "s<id>f" and "s<id>i" (a source's fault fd and iommufd),
 * "r<id>" (a region's memory fd), in decimal.
 */
struct iopf_engine_fd_store {
	int (*keep)(void *userdata, const char *name, int fd);
	void (*drop)(void *userdata, const char *name);
	void *userdata;
};

struct iopf_engine_config {
	unsigned n_workers;    /* 0: one per CPU the process may run on (its affinity) */
	uint64_t fault_around; /* window bytes: power of two >= IOPF_PAGE_SIZE; default 64 KiB */
	unsigned read_batch;   /* records per fault-fd read; default 256 (engine-limits.h) */
	uint64_t busy_poll_ns; /* spin this long before sleeping; 0 (default): sleep at once */
	iopf_backend_open_fn sim_open; /* accept simulator fault sources with it; NULL: refuse */
	/*
	 * > 0: the state arena (a memfd) of an earlier run, taken over (also on
	 * failure); iopf_engine_restore() must come next. Otherwise a new one.
	 */
	int state_fd;
	struct iopf_engine_fd_store fd_store;
};

/*
 * Counters of one domain, or of a source's faults that found no domain. What
 * every resolved fault counts comes first: one cache line (struct iopf_domain).
 */
struct iopf_counters {
	uint64_t faults;		    /* records read */
	uint64_t groups;		    /* groups answered */
	uint64_t success;		    /* groups answered SUCCESS */
	uint64_t invalid;		    /* groups answered INVALID */
	uint64_t coalesced;		    /* faults found already mapped by the daemon */
	uint64_t reasons[_IOPF_REASON_MAX]; /* groups by reason (RESOLVED first) */
	uint64_t stale;	       /* responses the kernel refused (already auto-answered) */
	uint64_t pages_mapped; /* pages the daemon mapped */
	uint64_t maps;	       /* map calls */
	uint64_t bytes_mapped; /* currently mapped by the daemon */
	uint64_t masked_flags; /* records with flag bits the uAPI lacks (masked) */
};

typedef void (*iopf_engine_done_fn)(void *userdata, int error);

/*
 * The thread calling iopf_engine_new() becomes the control thread: it is
 * registered as an RCU (memb) reader until the last engine it created is freed.
 * Return: 0, -EINVAL for a bad config, -ENOMEM, or a thread/io_uring error.
 */
int iopf_engine_new(const struct iopf_engine_config *cfg, struct iopf_engine **ret);
/*
 * Stops workers after answering every held group and unmapping everything.
 * Done callbacks of removals still pending run from here (they must not call
 * back into the engine). NULL ok.
 */
struct iopf_engine *iopf_engine_free(struct iopf_engine *e);

/*
 * The state arena's memfd: what a restarted iopfd needs (journals, object
 * records, page bitmaps). Not a copy; keep it where a restart finds it.
 */
int iopf_engine_state_fd(struct iopf_engine *e);

/*
 * iopf_engine_restore() - after iopf_engine_new() on an earlier run's arena:
 * build every source, domain and region it records again, with their ids,
 * around the fds @take_fd gives back by name (-ENOENT: none; the object and
 * what hangs off it are dropped, and so are sources whose fds are no longer
 * a fault queue). Records of the control plane go to @foreign. Only then do
 * the sources go live, each of them answering the groups the dead process
 * had read and not answered (resolved again, now that their domains are
 * there) before reading anything new.
 * Return: 0; -EINVAL: the arena is not trustworthy (nothing was built: free
 * the engine, start on a new arena); -ENOMEM; @foreign's error.
 */
typedef int (*iopf_engine_take_fd_fn)(void *userdata, const char *name);
typedef int (*iopf_engine_record_fn)(void *userdata, uint64_t key, const void *data, size_t len);
struct iopf_engine_restored {
	unsigned sources, domains, regions; /* built again */
	unsigned dropped;		    /* objects whose fds were missing or wrong */
	uint64_t pending;		    /* journaled records, answered before any read */
	/* map calls in flight at the crash left alone: blocked by another region's, or failing */
	unsigned uncertain;
};
int iopf_engine_restore(struct iopf_engine *e, iopf_engine_take_fd_fn take_fd,
			iopf_engine_record_fn foreign, void *userdata,
			struct iopf_engine_restored *ret);

/*
 * iopf_engine_sweep_stored() - when an earlier run's arena is refused, the
 * groups it had read are still waiting on their fault queue and no one knows
 * their cookies. Call it for each name the earlier run left in the fd store:
 * when @name is a source's fault fd, it takes that source's two fds with
 * @take, answers INVALID every cookie that can be outstanding (those below
 * IOPF_ENGINE_SWEEP_COOKIES) before anything reads the queue, and drops both
 * names with @store's drop. A cookie not outstanding is refused by the queue
 * and costs nothing. Other names are left alone: the store's names are the
 * engine's to parse (engine.c, "what outlives the process").
 * Return: 1 swept, with @ret_answered; 0 not a source's name; the backend's
 * error (the names dropped all the same).
 */
#define IOPF_ENGINE_SWEEP_COOKIES 65536u
int iopf_engine_sweep_stored(const char *name, iopf_engine_take_fd_fn take,
			     const struct iopf_engine_fd_store *store,
			     iopf_backend_open_fn sim_open, unsigned *ret_answered);

/*
 * Records of the control plane in the arena, restored through
 * iopf_engine_restore()'s @foreign. @key: IOPF_ENGINE_RECORD_KEY(kind, id),
 * kind 0x80..0xff. Return: 0, -EINVAL, -ENOMEM, -ENOSPC; del: 0 or -ENOENT.
 */
#define IOPF_ENGINE_RECORD_KEY(kind, id) (((uint64_t)(kind) << 56) | (id))
#define IOPF_ENGINE_RECORD_KIND(key)	 ((unsigned)((key) >> 56))
#define IOPF_ENGINE_RECORD_MAX		 4096u
int iopf_engine_record_put(struct iopf_engine *e, uint64_t key, const void *data, size_t len);
int iopf_engine_record_del(struct iopf_engine *e, uint64_t key);

/* The control loop watches this fd for POLLIN and then calls iopf_engine_dispatch(). */
int iopf_engine_get_fd(struct iopf_engine *e);
/* Runs pending done callbacks. Return: number run, or -errno. */
int iopf_engine_dispatch(struct iopf_engine *e);
unsigned iopf_engine_n_workers(struct iopf_engine *e);

/*
 * iopf_engine_add_source() - serve a fault fd.
 * Takes ownership of @fault_fd and @iommufd on success only.
 * Return: 0; -EBADF/-ENOTTY (wrong fd kinds), -EOPNOTSUPP (sim fds, not allowed), -ENOMEM.
 */
int iopf_engine_add_source(struct iopf_engine *e, uint64_t tenant, int fault_fd, int iommufd,
			   uint32_t ioas_id, uint64_t *ret_source_id);
/*
 * The same with @flags. IOPF_ENGINE_SOURCE_PAUSED: nothing reads the fault fd
 * (its groups stay queued) until iopf_engine_start_source(), so a tenant can
 * register its domains and regions first and no fault meets "no handler".
 */
#define IOPF_ENGINE_SOURCE_PAUSED 1u
int iopf_engine_add_source_flags(struct iopf_engine *e, uint64_t tenant, int fault_fd, int iommufd,
				 uint32_t ioas_id, uint32_t flags, uint64_t *ret_source_id);
/* Let a paused source's worker read it. Return: 0, -ENOENT, -EALREADY (not paused). */
int iopf_engine_start_source(struct iopf_engine *e, uint64_t source_id);
int iopf_engine_remove_source(struct iopf_engine *e, uint64_t source_id, iopf_engine_done_fn done,
			      void *userdata);

/*
 * iopf_engine_add_domain() - handler for (source, dev_id, pasid); pasid may be IOPF_PASID_NONE.
 * Return: 0; -ENOENT (no such source), -EEXIST (key taken), -EINVAL (pasid out of range), -ENOMEM.
 */
int iopf_engine_add_domain(struct iopf_engine *e, uint64_t source_id, uint32_t dev_id,
			   uint32_t pasid, uint64_t *ret_domain_id);
int iopf_engine_remove_domain(struct iopf_engine *e, uint64_t domain_id, iopf_engine_done_fn done,
			      void *userdata);

/* What iopf_region_check_args() found wrong, in the order it checks. */
enum iopf_region_arg_error {
	IOPF_REGION_ARGS_OK,
	IOPF_REGION_BAD_ACCESS, /* 0, or bits outside IOPF_ACCESS_ALL */
	IOPF_REGION_EMPTY,	/* length 0 */
	IOPF_REGION_IOVA_UNALIGNED,
	IOPF_REGION_LENGTH_UNALIGNED,
	IOPF_REGION_OFFSET_UNALIGNED,
	IOPF_REGION_IOVA_WRAPS,	  /* iova + length > 2^64 - 1 */
	IOPF_REGION_OFFSET_WRAPS, /* offset + length > 2^64 - 1 */
};

/*
 * iopf_region_check_args() - the one check of a region's arguments, made by
 * the control plane (which explains the error) and by the engine alike.
 * iova, offset and length page aligned, length > 0, access a non-zero subset
 * of IOPF_ACCESS_ALL, and both exclusive ends representable: a range ending at
 * exactly 2^64 (the last page of the IOVA space) is refused, so iova + length
 * never wraps anywhere it is computed (listings, overlap messages, clients).
 */
static inline enum iopf_region_arg_error iopf_region_check_args(uint64_t offset, uint64_t iova,
								uint64_t length, uint32_t access)
{
	const uint64_t page_mask = IOPF_PAGE_SIZE - 1;

	if (access == 0 || (access & ~(uint32_t)IOPF_ACCESS_ALL))
		return IOPF_REGION_BAD_ACCESS;
	if (length == 0)
		return IOPF_REGION_EMPTY;
	if (iova & page_mask)
		return IOPF_REGION_IOVA_UNALIGNED;
	if (length & page_mask)
		return IOPF_REGION_LENGTH_UNALIGNED;
	if (offset & page_mask)
		return IOPF_REGION_OFFSET_UNALIGNED;
	if (length > UINT64_MAX - iova)
		return IOPF_REGION_IOVA_WRAPS;
	if (length > UINT64_MAX - offset)
		return IOPF_REGION_OFFSET_WRAPS;
	return IOPF_REGION_ARGS_OK;
}

/* What iopf_region_check_fd() found wrong with a region's backing fd. */
enum iopf_region_fd_error {
	IOPF_REGION_FD_OK,
	IOPF_REGION_FD_NOT_OPEN,
	IOPF_REGION_FD_NOT_FILE,   /* not a regular file (memfd included): a pipe, socket, device */
	IOPF_REGION_FD_NO_ACCESS,  /* an O_PATH fd: it grants no access to the file */
	IOPF_REGION_FD_WRITE_ONLY, /* cannot be mapped at all */
	IOPF_REGION_FD_READ_ONLY,  /* the region's access includes WRITE */
	IOPF_REGION_FD_TOO_SHORT,  /* offset + length beyond the file's size */
};

/*
 * iopf_region_check_fd() - the one check of a region's backing fd, made by the
 * control plane (which explains the error) and by the engine alike: a regular
 * file, readable through this very fd (so not O_PATH: mapping the file it names
 * with the daemon's rights would lend the tenant those rights), writable too
 * for WRITE, holding [offset, offset + length). The arguments must have passed
 * iopf_region_check_args(). *@ret_st, when not NULL, is the file's stat once
 * the fd is open (for messages too), *@ret_accmode (O_ACCMODE) on OK. One
 * fstat() and one fcntl().
 */
static inline enum iopf_region_fd_error iopf_region_check_fd(int fd, uint64_t offset,
							     uint64_t length, uint32_t access,
							     struct stat *ret_st, int *ret_accmode)
{
	struct stat st;
	int accmode, r;

	if (fd < 0 || fstat(fd, &st) < 0)
		return IOPF_REGION_FD_NOT_OPEN;
	if (ret_st)
		*ret_st = st;
	/* Only files can be mapped at an offset: no pipes, sockets or devices. */
	if (!S_ISREG(st.st_mode))
		return IOPF_REGION_FD_NOT_FILE;
	/* IOAS_MAP pins through a view that must be readable, and writable for WRITE. */
	r = fd_check_access(fd, false, &accmode);
	if (r == -EACCES)
		return IOPF_REGION_FD_NO_ACCESS;
	if (r == -EPERM)
		return IOPF_REGION_FD_WRITE_ONLY;
	if (r < 0)
		return IOPF_REGION_FD_NOT_OPEN;
	if ((access & IOPF_ACCESS_WRITE) && accmode != O_RDWR)
		return IOPF_REGION_FD_READ_ONLY;
	if (st.st_size < 0 || offset + length > (uint64_t)st.st_size)
		return IOPF_REGION_FD_TOO_SHORT;
	if (ret_accmode)
		*ret_accmode = accmode;
	return IOPF_REGION_FD_OK;
}

/*
 * iopf_engine_add_region() - back [iova, iova+length) of a domain with @fd at @offset.
 * Does not take @fd: it keeps its own dup. The arguments must pass
 * iopf_region_check_args(); @fd mappable (a regular file or memfd) with
 * offset+length inside it.
 * Return: 0; -ENOENT (no such domain), -EINVAL, -EBADF, -EBUSY (overlaps a region
 * of the domain), -ENOMEM.
 */
int iopf_engine_add_region(struct iopf_engine *e, uint64_t domain_id, int fd, uint64_t offset,
			   uint64_t iova, uint64_t length, uint32_t access,
			   uint64_t *ret_region_id);
int iopf_engine_remove_region(struct iopf_engine *e, uint64_t region_id, iopf_engine_done_fn done,
			      void *userdata);

/* Introspection, for the control plane (ownership, listing, statistics). */
struct iopf_source_info {
	uint64_t id, tenant;
	uint32_t ioas_id;
	unsigned worker;
	const char *backend;	       /* "kernel", "sim" */
	struct iopf_counters unrouted; /* groups with no domain */
	uint64_t io_errors;	       /* fault-fd reads/writes that failed hard, torn reads */
	uint64_t write_errors; /* of those, response writes: their responses wait for a retry */
	uint64_t read_errors;  /* of those, fault reads (or polls): retried after a backoff */
	uint64_t retries;      /* turns run after a backoff (a failed write or read) */
	uint64_t recovered;    /* records a dead iopfd had read, answered by this one */
	bool paused;	       /* registered paused, not started yet */
	bool broken;	       /* the last read failed: retried from 10 ms, doubling to 10 s */
};
struct iopf_domain_info {
	uint64_t id, source_id, tenant;
	uint32_t dev_id, pasid;
	unsigned n_regions;
	struct iopf_counters counters; /* summed over workers */
};
struct iopf_region_info {
	uint64_t id, domain_id, tenant;
	uint64_t iova, length, offset;
	uint32_t access;
	uint64_t bytes_mapped;
};

/* 0 or -ENOENT. Removed (unpublished) objects are not found. */
int iopf_engine_source_info(struct iopf_engine *e, uint64_t id, struct iopf_source_info *ret);
int iopf_engine_domain_info(struct iopf_engine *e, uint64_t id, struct iopf_domain_info *ret);
int iopf_engine_region_info(struct iopf_engine *e, uint64_t id, struct iopf_region_info *ret);
/*
 * A region of domain @domain_id overlapping [@iova, @iova + @length), @length > 0,
 * in O(log n). Return: 1 and its info; 0 (none); -ENOENT (no such domain).
 */
int iopf_engine_region_overlap(struct iopf_engine *e, uint64_t domain_id, uint64_t iova,
			       uint64_t length, struct iopf_region_info *ret);

/* Visit live objects of @tenant (0 = every tenant), ascending id. Stop when fn returns < 0. */
typedef int (*iopf_engine_source_fn)(const struct iopf_source_info *i, void *userdata);
typedef int (*iopf_engine_domain_fn)(const struct iopf_domain_info *i, void *userdata);
typedef int (*iopf_engine_region_fn)(const struct iopf_region_info *i, void *userdata);
int iopf_engine_foreach_source(struct iopf_engine *e, uint64_t tenant, iopf_engine_source_fn fn,
			       void *userdata);
int iopf_engine_foreach_domain(struct iopf_engine *e, uint64_t tenant, iopf_engine_domain_fn fn,
			       void *userdata);
int iopf_engine_foreach_region(struct iopf_engine *e, uint64_t tenant, iopf_engine_region_fn fn,
			       void *userdata);

/*
 * Fault latency: fault read to response written, per domain (and per source
 * for unrouted groups), recorded by the owning worker without locks.
 * iopf_engine_*_latency() add a snapshot to @ret (merge on read).
 * Return: 0 or -ENOENT (no live object with that id).
 */
int iopf_engine_domain_latency(struct iopf_engine *e, uint64_t id, struct iopf_histogram *ret);
int iopf_engine_source_latency(struct iopf_engine *e, uint64_t id, struct iopf_histogram *ret);

/*
 * Statistics of an object being removed, or its final ones once removed.
 * @domain_id is 0 for a source's unrouted groups. Pointers live for the call.
 */
struct iopf_engine_stats {
	uint64_t tenant, source_id, domain_id;
	const struct iopf_counters *counters;
	const struct iopf_histogram *latency;
};
typedef void (*iopf_engine_stats_fn)(const struct iopf_engine_stats *st, void *userdata);

/*
 * iopf_engine_foreach_retiring() - visit what @tenant (0: everyone) has in removal:
 * domains unpublished but not yet retired by their worker, and sources likewise
 * (their unrouted stats, then their domains). The listings skip these objects;
 * statistics that must never go backwards (totals since start) add them, then
 * take over their final numbers from the retired callback.
 */
void iopf_engine_foreach_retiring(struct iopf_engine *e, uint64_t tenant, iopf_engine_stats_fn fn,
				  void *userdata);
/*
 * iopf_engine_set_retired_fn() - @fn gets the final statistics of every domain
 * and source (unrouted) whose removal completed, once each, from
 * iopf_engine_dispatch() or iopf_engine_free(), in the same call that stops
 * iopf_engine_foreach_retiring() from showing it. @fn must not call the engine.
 */
void iopf_engine_set_retired_fn(struct iopf_engine *e, iopf_engine_stats_fn fn, void *userdata);

/*
 * iopf_engine_ping() - are the workers alive? A ping is a command each worker
 * answers between two turns, so an answer proves its loop runs.
 * Checks that every worker answered the previous ping and pings them again
 * (a worker that did not answer keeps its old ping). Never blocks.
 * @ret_late: the first worker that has not answered, when the result is 0.
 * Return: 1 all answered, 0 some did not (yet).
 */
int iopf_engine_ping(struct iopf_engine *e, unsigned *ret_late);
/* How many workers had answered at the last iopf_engine_ping() (0 before the first). */
unsigned iopf_engine_workers_alive(struct iopf_engine *e);

/*
 * Settings that change while running (reload).
 * iopf_engine_set_fault_around(): the window of every later fault. 0 or -EINVAL.
 * iopf_engine_set_read_batch(): the read size of sources added later. 0 or -EINVAL.
 * iopf_engine_set_busy_poll(): each worker's spin before its next sleep. 0 or -EINVAL.
 */
int iopf_engine_set_fault_around(struct iopf_engine *e, uint64_t bytes);
int iopf_engine_set_read_batch(struct iopf_engine *e, unsigned records);
int iopf_engine_set_busy_poll(struct iopf_engine *e, uint64_t ns);

/*
 * The three setters above, for an engine whose struct iopf_engine holds its
 * struct iopf_engine_config as cfg (engine.c, tests/fakes/fake-engine.c): the
 * value checked by engine-limits.h's rule, then stored relaxed-atomic, since
 * workers read some of these settings as they run.
 */
#define IOPF_SETTING_STORE(field, v, ok)                                                           \
	((ok)(v) ? (__atomic_store_n(&(field), (v), __ATOMIC_RELAXED), 0) : -EINVAL)
#define IOPF_ENGINE_DEFINE_SETTERS()                                                               \
	int iopf_engine_set_fault_around(struct iopf_engine *e, uint64_t bytes)                    \
	{                                                                                          \
		return IOPF_SETTING_STORE(e->cfg.fault_around, bytes, iopf_fault_around_ok);       \
	}                                                                                          \
	int iopf_engine_set_read_batch(struct iopf_engine *e, unsigned records)                    \
	{                                                                                          \
		return IOPF_SETTING_STORE(e->cfg.read_batch, records, iopf_read_batch_ok);         \
	}                                                                                          \
	int iopf_engine_set_busy_poll(struct iopf_engine *e, uint64_t ns)                          \
	{                                                                                          \
		return IOPF_SETTING_STORE(e->cfg.busy_poll_ns, ns, iopf_busy_poll_ok);             \
	}

#endif /* IOPF_ENGINE_H */
