/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libiopf-client: how a tenant (VMM, user-space driver, container runtime)
 * hands its fault queue and memory to iopfd.
 *
 * Every call is synchronous and returns 0 or -errno; on a D-Bus error the
 * daemon's message is kept and iopf_client_last_error() returns it.
 * A client is not thread-safe: use one per thread. Closing the client (or the
 * process exiting) makes iopfd tear down everything the client registered,
 * answering every fault it still held.
 */
#ifndef IOPF_CLIENT_H
#define IOPF_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <iopf/iopf.h>

#ifdef __cplusplus
extern "C" {
#endif

struct iopf_client;

/*
 * iopf_client_connect() - connect to iopfd.
 * @address: a D-Bus address ("unix:path=/run/iopfd/control"), the path of the
 *           socket ("/run/iopfd/control": anything without a ':'), "system"
 *           for the system bus, or NULL for $IOPFD_ADDRESS, else IOPF_DEFAULT_ADDRESS.
 * Return: 0, or -errno (-ECONNREFUSED, -ENOENT when the daemon is not there).
 */
int iopf_client_connect(const char *address, struct iopf_client **ret);
/* Disconnect and free. NULL is fine. Returns NULL. */
struct iopf_client *iopf_client_free(struct iopf_client *c);

/* The D-Bus error name and message of the last failed call, or NULL. */
const char *iopf_client_last_error_name(const struct iopf_client *c);
const char *iopf_client_last_error(const struct iopf_client *c);

/*
 * A connection broken by iopfd dying (a crash, or an upgrade's handover) is
 * replaced by the next call, or by iopf_client_process(); the new iopfd gives
 * this process its objects back, with the same ids (if the process had one
 * client). @fn runs each time that happened, from the call that reconnected.
 */
typedef void (*iopf_client_restart_fn)(struct iopf_client *c, void *userdata);
void iopf_client_set_restart_callback(struct iopf_client *c, iopf_client_restart_fn fn,
				      void *userdata);
/*
 * The connection in the tenant's own event loop: poll iopf_client_fd() for
 * iopf_client_events() (POLLIN, POLLOUT), then call iopf_client_process(),
 * which also connects again after iopfd restarted.
 * Return: the fd / poll events / 0, or -errno (process: iopfd is not back yet).
 */
int iopf_client_fd(struct iopf_client *c);
int iopf_client_events(struct iopf_client *c);
int iopf_client_process(struct iopf_client *c);

/*
 * Register a fault source: the fault fd from IOMMU_FAULT_QUEUE_ALLOC, the
 * iommufd it came from and the IOAS that faults are resolved into.
 * The fds are duplicated by the transport; the caller keeps its own.
 * Return: 0, -EBADF (not a fault fd / iommufd), -EINVAL, -EDQUOT (limit), -errno.
 */
int iopf_client_register_source(struct iopf_client *c, int fault_fd, int iommufd, uint32_t ioas_id,
				uint64_t *ret_source_id);
/*
 * The same, paused: iopfd reads none of its faults (they wait, queued) until
 * iopf_client_start_source(), so the domains and regions can be registered
 * first and no fault is answered "no handler" in between.
 * start: 0, -ENOENT (not the caller's source), -EINVAL (not paused), -errno.
 */
int iopf_client_register_source_paused(struct iopf_client *c, int fault_fd, int iommufd,
				       uint32_t ioas_id, uint64_t *ret_source_id);
int iopf_client_start_source(struct iopf_client *c, uint64_t source_id);
int iopf_client_unregister_source(struct iopf_client *c, uint64_t source_id);

/*
 * Register the handler of (source, dev_id, pasid); pasid IOPF_PASID_NONE takes
 * faults without a PASID. Return: 0, -ENOENT, -EEXIST, -EINVAL, -EDQUOT, -errno.
 */
int iopf_client_register_domain(struct iopf_client *c, uint64_t source_id, uint32_t dev_id,
				uint32_t pasid, uint64_t *ret_domain_id);
int iopf_client_unregister_domain(struct iopf_client *c, uint64_t domain_id);

/*
 * Back [iova, iova+length) of a domain with @fd at @offset, allowing @access
 * (IOPF_ACCESS_*). Page aligned, inside the fd, not overlapping another region
 * of the domain. Return: 0, -ENOENT, -EINVAL, -EBADF, -EBUSY (overlap), -EDQUOT, -errno.
 */
int iopf_client_add_region(struct iopf_client *c, uint64_t domain_id, int fd, uint64_t offset,
			   uint64_t iova, uint64_t length, uint32_t access,
			   uint64_t *ret_region_id);

/* One region of iopf_client_add_regions(): iopf_client_add_region()'s arguments. */
struct iopf_client_new_region {
	uint64_t domain_id;
	int fd; /* the caller's; sent once per call however many regions name it */
	uint64_t offset, iova, length;
	uint32_t access;
};
#define IOPF_CLIENT_ADD_REGIONS_MAX	4096 /* regions in one call */
#define IOPF_CLIENT_ADD_REGIONS_MAX_FDS 253  /* distinct fds in one call (SCM_MAX_FD) */

/*
 * Add @n regions (1..IOPF_CLIENT_ADD_REGIONS_MAX, of any of the caller's
 * domains) in one message, all or none: on any error nothing is added, and
 * iopf_client_last_error() names the first entry refused ("region 5: ...").
 * The ids go to @ret_region_ids (room for @n), in the order of @v.
 * Return: as iopf_client_add_region(); -EINVAL (@n), -E2BIG (too many distinct fds).
 */
int iopf_client_add_regions(struct iopf_client *c, const struct iopf_client_new_region *v, size_t n,
			    uint64_t *ret_region_ids);
int iopf_client_remove_region(struct iopf_client *c, uint64_t region_id);

/*
 * The caller's own objects, ascending id (what this connection registered).
 * These structs may grow: later versions only append fields. The list calls
 * are macros that pass the size of the struct the caller was compiled with,
 * and the library fills exactly that much of each element (an older caller
 * keeps getting the fields it knows; appended ones it does not know are left
 * out), so never allocate or index these with a size of your own.
 */
struct iopf_client_source {
	uint64_t id;
	uint32_t ioas_id;
	const char *backend; /* "kernel", "sim"; valid as long as the array */
};
struct iopf_client_domain {
	uint64_t id, source_id;
	uint32_t dev_id, pasid;
};
struct iopf_client_region {
	uint64_t id, domain_id, iova, length;
	uint32_t access;
};

/*
 * List this client's objects into a malloc'ed array of @*ret_n elements of
 * @size bytes (one block: free() it; NULL when empty). Call them through the
 * macros below, which pass sizeof the caller's struct as @size.
 * Return: 0, -EINVAL (@size smaller than the first version of the struct), -errno.
 */
int iopf_client_list_sources_sized(struct iopf_client *c, size_t size,
				   struct iopf_client_source **ret, size_t *ret_n);
int iopf_client_list_domains_sized(struct iopf_client *c, size_t size,
				   struct iopf_client_domain **ret, size_t *ret_n);
int iopf_client_list_regions_sized(struct iopf_client *c, size_t size,
				   struct iopf_client_region **ret, size_t *ret_n);
#define iopf_client_list_sources(c, ret, ret_n)                                                    \
	iopf_client_list_sources_sized((c), sizeof(**(ret)), (ret), (ret_n))
#define iopf_client_list_domains(c, ret, ret_n)                                                    \
	iopf_client_list_domains_sized((c), sizeof(**(ret)), (ret), (ret_n))
#define iopf_client_list_regions(c, ret, ret_n)                                                    \
	iopf_client_list_regions_sized((c), sizeof(**(ret)), (ret), (ret_n))

/*
 * One statistics counter of a domain (GetStats) or of a source's unrouted
 * faults (GetSourceStats), by name: "faults", "groups", "success", "invalid",
 * "stale", "pages_mapped", "maps", "coalesced", "bytes_mapped" or a reason
 * ("resolved", "no_handler", "outside_region", "permission", "map_error",
 * "bad_record", "retired"). Return: 0, -ENOENT (no such object or counter), -errno.
 */
int iopf_client_domain_counter(struct iopf_client *c, uint64_t domain_id, const char *name,
			       uint64_t *ret);
int iopf_client_source_counter(struct iopf_client *c, uint64_t source_id, const char *name,
			       uint64_t *ret);

/*
 * Fault latency, from the daemon reading a fault to writing its response: a
 * snapshot of a histogram, opaque because its buckets are the daemon's to
 * choose. Today they are log-linear: 1..9 us, 10..90 us, ..., 1..9 s, 10 s,
 * then overflow. Bucket i counts latencies up to
 * iopf_client_latency_bound_ns(l, i) (inclusive) and above the bound of bucket
 * i-1; the last bucket is everything above the last finite bound.
 */
struct iopf_client_latency;

/* The latency of one of this client's domains. Return: 0, -ENOENT, -errno. */
int iopf_client_domain_latency(struct iopf_client *c, uint64_t domain_id,
			       struct iopf_client_latency **ret);
/* Free a snapshot. NULL is fine. Returns NULL. */
struct iopf_client_latency *iopf_client_latency_free(struct iopf_client_latency *l);
/* Responses measured, and their total latency in ns. */
uint64_t iopf_client_latency_count(const struct iopf_client_latency *l);
uint64_t iopf_client_latency_sum_ns(const struct iopf_client_latency *l);
/* The number of buckets of the snapshot (the last one is the overflow). */
unsigned iopf_client_latency_buckets(const struct iopf_client_latency *l);
/* The count of bucket @i (not cumulative); 0 beyond the last. */
uint64_t iopf_client_latency_bucket(const struct iopf_client_latency *l, unsigned i);
/* The upper bound of bucket @i in ns; UINT64_MAX for the overflow bucket and beyond. */
uint64_t iopf_client_latency_bound_ns(const struct iopf_client_latency *l, unsigned i);
/* The upper bound of the bucket holding quantile @q (0..1); 0 when empty. */
uint64_t iopf_client_latency_quantile_ns(const struct iopf_client_latency *l, double q);

/*
 * This client's totals since it connected, removed objects included: the
 * counter names above, and "sources", "domains", "regions", "region_bytes"
 * (what it holds now). Return: 0, -ENOENT (no such counter), -errno.
 */
int iopf_client_tenant_counter(struct iopf_client *c, const char *name, uint64_t *ret);
int iopf_client_tenant_latency(struct iopf_client *c, struct iopf_client_latency **ret);

/*
 * What iopfd says about itself: properties anyone may read. The struct may grow
 * like the list structs above: call it through the macro, which passes the
 * size the caller was compiled with; free() the result (one block).
 */
struct iopf_client_daemon_info {
	const char *version;	       /* iopfd's version; valid as long as the struct */
	uint32_t workers;	       /* fault worker threads */
	uint64_t start_realtime_usec;  /* when it started serving (CLOCK_REALTIME); 0: not told */
	uint64_t start_monotonic_usec; /* the same on CLOCK_MONOTONIC: uptime is now minus this */
};

/* Return: 0, -EINVAL (@size smaller than the first version of the struct), -errno. */
int iopf_client_daemon_info_sized(struct iopf_client *c, size_t size,
				  struct iopf_client_daemon_info **ret);
#define iopf_client_daemon_info(c, ret) iopf_client_daemon_info_sized((c), sizeof(**(ret)), (ret))

/*
 * A numeric setting of the running configuration, by its property name:
 * "FaultAround", "ReadBatch", "MaxSources", "MaxPinnedBytes", ... (org.iopfd(5)).
 * Return: 0, -ENOENT (no such numeric property), -errno.
 */
int iopf_client_setting(struct iopf_client *c, const char *name, uint64_t *ret);

#ifdef __cplusplus
}
#endif

#endif /* IOPF_CLIENT_H */
