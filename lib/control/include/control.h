/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control logic: tenants, who owns which engine object, per-tenant limits
 * and the validation of every request before it reaches the engine. It knows
 * nothing of D-Bus: the daemon's bus glue unpacks a call, calls in here with
 * the caller's tenant id, and turns the -errno and message into a reply.
 *
 * Ownership is the engine's `tenant` field on each object. A tenant sees only
 * its own objects: another tenant's id fails exactly like an id that never
 * existed (-ENOENT, same message). After iopf_control_hide_ids() the ids
 * callers see (objects' and tenants') are keyed permutations of the counters
 * behind them, so they reveal nothing of how many others came before.
 *
 * All calls are made from the control thread (the one that calls the engine).
 */
#ifndef IOPF_CONTROL_H
#define IOPF_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine.h"
#include "histogram.h"

struct iopf_control;

/*
 * Per-tenant limits; every count must be >= 1. max_pinned_bytes bounds the sum
 * of the tenant's region lengths, i.e. the most iopfd could ever pin for it,
 * checked when a region is added (a fault never fails for it); 0 or UINT64_MAX: none.
 * The per-user ones bound the sum over every tenant of one uid, so opening more
 * connections does not multiply what one user may make iopfd hold; 0: none.
 * max_fds_per_user counts the fds the engine keeps open: two per source (its
 * copies of the fault fd and the iommufd), one per region.
 */
struct iopf_control_limits {
	unsigned max_sources;
	unsigned max_domains;
	unsigned max_regions;
	uint64_t max_pinned_bytes;
	unsigned max_sources_per_user;
	unsigned max_domains_per_user;
	unsigned max_regions_per_user;
	uint64_t max_pinned_bytes_per_user;
	unsigned max_fds_per_user;
};
#define IOPF_CONTROL_DEFAULT_MAX_SOURCES 16u
#define IOPF_CONTROL_DEFAULT_MAX_DOMAINS 256u
#define IOPF_CONTROL_DEFAULT_MAX_REGIONS 4096u
#define IOPF_CONTROL_DEFAULT_MAX_PINNED	 (UINT64_C(64) << 30)
#define IOPF_CONTROL_PINNED_UNLIMITED	 UINT64_MAX
/* Per uid: what a host's worth of one user's VMMs needs, far below what the daemon can hold. */
#define IOPF_CONTROL_DEFAULT_MAX_SOURCES_PER_USER 256u
#define IOPF_CONTROL_DEFAULT_MAX_DOMAINS_PER_USER 4096u
#define IOPF_CONTROL_DEFAULT_MAX_REGIONS_PER_USER 65536u
#define IOPF_CONTROL_DEFAULT_MAX_PINNED_PER_USER  (UINT64_C(256) << 30)
#define IOPF_CONTROL_DEFAULT_MAX_FDS_PER_USER	  65536u
/* Every limit at its default: what iopf_control_new(NULL) and iopfd.conf start from. */
#define IOPF_CONTROL_LIMITS_DEFAULT                                                                \
	((struct iopf_control_limits){                                                             \
		.max_sources = IOPF_CONTROL_DEFAULT_MAX_SOURCES,                                   \
		.max_domains = IOPF_CONTROL_DEFAULT_MAX_DOMAINS,                                   \
		.max_regions = IOPF_CONTROL_DEFAULT_MAX_REGIONS,                                   \
		.max_pinned_bytes = IOPF_CONTROL_DEFAULT_MAX_PINNED,                               \
		.max_sources_per_user = IOPF_CONTROL_DEFAULT_MAX_SOURCES_PER_USER,                 \
		.max_domains_per_user = IOPF_CONTROL_DEFAULT_MAX_DOMAINS_PER_USER,                 \
		.max_regions_per_user = IOPF_CONTROL_DEFAULT_MAX_REGIONS_PER_USER,                 \
		.max_pinned_bytes_per_user = IOPF_CONTROL_DEFAULT_MAX_PINNED_PER_USER,             \
		.max_fds_per_user = IOPF_CONTROL_DEFAULT_MAX_FDS_PER_USER,                         \
	})
/* Fds the engine holds for one object. */
#define IOPF_CONTROL_SOURCE_FDS 2u
#define IOPF_CONTROL_REGION_FDS 1u
#define IOPF_CONTROL_LIMIT_MAX	1000000u

/* The human-readable reason a request failed; set whenever a call returns < 0. */
struct iopf_control_error {
	char message[256];
};

/*
 * iopf_control_new() - create the registry in front of @engine (not owned).
 * It takes the engine's retired-statistics callback (iopf_engine_set_retired_fn()),
 * so free the engine before the registry.
 * Return: 0, -EINVAL (a limit out of range), -ENOMEM.
 */
int iopf_control_new(struct iopf_engine *engine, const struct iopf_control_limits *limits,
		     struct iopf_control **ret);
/*
 * Free the tenant records. Does not call the engine: at shutdown the engine is
 * freed first and answers everything itself. NULL is fine. Returns NULL.
 */
struct iopf_control *iopf_control_free(struct iopf_control *c);

/*
 * iopf_control_hide_ids() - from now on every id going in or out of the
 * registry (tenants, sources, domains, regions) is a keyed permutation of the
 * counter behind it: unique, never 0, below 2^53, and unpredictable without
 * the key (random, drawn here). Without it ids are the counters themselves.
 * Return: 0, -EBUSY (ids were handed out already), -errno of getrandom().
 */
int iopf_control_hide_ids(struct iopf_control *c);

/*
 * iopf_control_set_limits() - new limits (reload). They apply to later requests;
 * what a tenant already has stays, even above them.
 * Return: 0 or -EINVAL (out of range; nothing changed).
 */
int iopf_control_set_limits(struct iopf_control *c, const struct iopf_control_limits *limits);

/*
 * iopf_control_set_fd_check() - ask @fn before each request that makes the
 * engine hold @need more fds (a source's two, a region's one); when it returns
 * < 0 the request fails with -EDQUOT, so the daemon refuses before it runs out.
 * NULL: no check.
 */
typedef int (*iopf_control_fd_check_fn)(void *userdata, unsigned need);
void iopf_control_set_fd_check(struct iopf_control *c, iopf_control_fd_check_fn fn, void *userdata);
/*
 * Who may read every tenant's objects and statistics, never change them: uid
 * 0 and the uids set here ([Metrics] Readers=, resolved by the daemon). Every
 * read-only view across tenants (@all listings, another tenant's totals, the
 * daemon's) asks iopf_control_may_read_all(); nothing that changes state does.
 * iopf_control_set_readers(): replaces the list (reload). 0 or -EINVAL (more
 * than IOPF_CONTROL_READERS_MAX; nothing changed).
 */
#define IOPF_CONTROL_READERS_MAX 64u
int iopf_control_set_readers(struct iopf_control *c, const uid_t *uids, size_t n);
bool iopf_control_may_read_all(const struct iopf_control *c, uid_t uid);
/* Fds the engine holds for tenants' objects now, those still being removed included. */
unsigned iopf_control_held_fds(struct iopf_control *c);

/*
 * iopf_control_restore() - after a crash or restart: on an engine created on
 * the arena the dead process left (iopf_engine_config.state_fd), bring back
 * the tenants that had registered something, with their ids and id keys, and
 * their objects (iopf_engine_restore(), fds by name from @take_fd). Sources
 * whose tenant is gone are removed. Call it first, instead of
 * iopf_control_hide_ids(). The restored tenants have no connection: the
 * daemon gives each back to its process (by pid) or removes it.
 * Return: 0; -EINVAL (refuse the arena: free the engine and registry, start
 * anew), -EBUSY (tenants already), -ENOMEM.
 */
int iopf_control_restore(struct iopf_control *c, iopf_engine_take_fd_fn take_fd, void *userdata,
			 struct iopf_engine_restored *ret);

/* A tenant: one D-Bus connection (peer-to-peer) or one unique name (system bus). */
struct iopf_tenant_info {
	uint64_t id;
	uid_t uid;
	gid_t gid;
	pid_t pid;
	const char *name;  /* for logs: the unique name or "pid N uid M" */
	const char *label; /* what it calls itself (SetName), or NULL */
	const char *unit;  /* its process's systemd unit, or NULL */
	bool registered;   /* it registered a source once (observers never do) */
};

/*
 * iopf_control_tenant_add() - record a new tenant with its peer credentials.
 * Return: 0, -EINVAL (empty name), -ENOMEM. Ids are never reused.
 */
int iopf_control_tenant_add(struct iopf_control *c, const char *name, uid_t uid, gid_t gid,
			    pid_t pid, uint64_t *ret_tenant);
/*
 * iopf_control_tenant_remove() - the tenant went away: remove each of its
 * regions, domains and sources through the engine (which answers the faults
 * it still holds and unmaps), then forget the tenant.
 * Return: the number of objects whose removal started, or -ENOENT.
 */
int iopf_control_tenant_remove(struct iopf_control *c, uint64_t tenant);
/*
 * iopf_control_buffered_add() - memory the daemon's transport holds for
 * @tenant (messages being read, replies the peer has not taken yet), summed
 * per uid: add @delta (negative to release what was charged) and return the
 * uid's total, so the transport can bound it per user. 0 for an unknown tenant.
 */
uint64_t iopf_control_buffered_add(struct iopf_control *c, uint64_t tenant, int64_t delta);
/* Tenants of @uid now (its connections, and its unique names on the system bus). */
unsigned iopf_control_user_tenants(struct iopf_control *c, uid_t uid);
/* 0 or -ENOENT; @ret->name lives as long as the tenant. */
int iopf_control_tenant_info(struct iopf_control *c, uint64_t tenant, struct iopf_tenant_info *ret);
unsigned iopf_control_n_tenants(struct iopf_control *c);
/*
 * Tenants that registered a source at least once (restored ones included):
 * what listings and counts show. A connection that only reads (iopfctl, the
 * exporter) stays a tenant inside, for the per-uid accounting, but is no
 * tenant to operators.
 */
unsigned iopf_control_n_registered_tenants(struct iopf_control *c);
/*
 * iopf_control_tenant_set_label() - what the tenant calls itself, for listings
 * and logs (struct iopf_tenant_info.label): up to IOPF_CONTROL_LABEL_MAX
 * bytes, no control characters; NULL or "" forgets it.
 * Return: 0, -ENOENT, -EINVAL, -ENOMEM.
 */
#define IOPF_CONTROL_LABEL_MAX 64u
int iopf_control_tenant_set_label(struct iopf_control *c, uint64_t tenant, const char *label);
/* The same for its systemd unit (struct iopf_tenant_info.unit). */
int iopf_control_tenant_set_unit(struct iopf_control *c, uint64_t tenant, const char *unit);

/*
 * iopf_control_register_source() - serve @tenant's fault queue.
 * Borrows @fault_fd and @iommufd: the engine gets F_DUPFD_CLOEXEC copies.
 * Return: 0; -EBADF (not a fault queue / iommufd), -EOPNOTSUPP (simulator
 * fds without --allow-simulator), -EINVAL, -EDQUOT (MaxSources, a per-user
 * limit), -ENOMEM.
 */
int iopf_control_register_source(struct iopf_control *c, uint64_t tenant, int fault_fd, int iommufd,
				 uint32_t ioas_id, uint64_t *ret_source_id,
				 struct iopf_control_error *err);

/*
 * The same with @flags: IOPF_ENGINE_SOURCE_PAUSED registers it paused, its
 * faults queued until iopf_control_start_source(), so that its domains and
 * regions are in place before the first fault is read. -EINVAL for other bits.
 */
int iopf_control_register_source_flags(struct iopf_control *c, uint64_t tenant, int fault_fd,
				       int iommufd, uint32_t ioas_id, uint32_t flags,
				       uint64_t *ret_source_id, struct iopf_control_error *err);
/* Start a paused source of @tenant. Return: 0, -ENOENT, -EALREADY (not paused). */
int iopf_control_start_source(struct iopf_control *c, uint64_t tenant, uint64_t source_id,
			      struct iopf_control_error *err);

/*
 * iopf_control_register_domain() - handler for (source, dev_id, pasid).
 * Return: 0; -ENOENT (no such source of this tenant), -EINVAL (pasid),
 * -EEXIST (key taken), -EDQUOT (MaxDomains, MaxDomainsPerUser), -ENOMEM.
 */
int iopf_control_register_domain(struct iopf_control *c, uint64_t tenant, uint64_t source_id,
				 uint32_t dev_id, uint32_t pasid, uint64_t *ret_domain_id,
				 struct iopf_control_error *err);

/*
 * iopf_control_add_region() - back [iova, iova+length) of a domain with @fd
 * (borrowed) at @offset. Checks fd kind and open mode, access bits, zero
 * length, page alignment, wrap-around, the fd's size and overlap with the
 * domain's other regions before calling the engine.
 * Return: 0; -ENOENT, -EINVAL, -EBADF, -EBUSY (overlap), -EDQUOT (MaxRegions,
 * MaxPinnedBytes, a per-user limit), -ENOMEM.
 */
int iopf_control_add_region(struct iopf_control *c, uint64_t tenant, uint64_t domain_id, int fd,
			    uint64_t offset, uint64_t iova, uint64_t length, uint32_t access,
			    uint64_t *ret_region_id, struct iopf_control_error *err);

/* One region of iopf_control_add_regions(): iopf_control_add_region()'s arguments. */
struct iopf_control_region {
	uint64_t domain_id;
	int fd; /* borrowed */
	uint64_t offset, iova, length;
	uint32_t access;
};
#define IOPF_CONTROL_ADD_REGIONS_MAX 4096u /* regions in one call */

/*
 * iopf_control_add_regions() - add @n regions (1..IOPF_CONTROL_ADD_REGIONS_MAX),
 * all or none: every entry is checked as iopf_control_add_region() checks one,
 * against the domains' regions and the batch's earlier entries, and the budgets
 * against the whole batch, before any is added. A refusal of an entry names
 * its index ("region 5: ..."). @ret_ids: room for @n ids, written on success.
 * Return: as iopf_control_add_region(); -EINVAL also for @n out of range.
 */
int iopf_control_add_regions(struct iopf_control *c, uint64_t tenant,
			     const struct iopf_control_region *v, size_t n, uint64_t *ret_ids,
			     struct iopf_control_error *err);

/*
 * Removal is asynchronous: on 0 the object is gone from every lookup and
 * @done(@userdata, error) runs later from iopf_engine_dispatch(), once the
 * engine answered its faults and unmapped. On < 0 @done is never called.
 * Return: 0, -ENOENT (no such object of this tenant), -errno of the engine.
 */
int iopf_control_unregister_source(struct iopf_control *c, uint64_t tenant, uint64_t source_id,
				   iopf_engine_done_fn done, void *userdata,
				   struct iopf_control_error *err);
int iopf_control_unregister_domain(struct iopf_control *c, uint64_t tenant, uint64_t domain_id,
				   iopf_engine_done_fn done, void *userdata,
				   struct iopf_control_error *err);
int iopf_control_remove_region(struct iopf_control *c, uint64_t tenant, uint64_t region_id,
			       iopf_engine_done_fn done, void *userdata,
			       struct iopf_control_error *err);

/*
 * Visit @tenant's live objects, oldest first; with @all every tenant's, which
 * only a tenant that iopf_control_may_read_all() (or @tenant 0, the daemon
 * itself) may ask for.
 * Return: 0, -EPERM, or fn's error.
 */
int iopf_control_foreach_source(struct iopf_control *c, uint64_t tenant, bool all,
				iopf_engine_source_fn fn, void *userdata,
				struct iopf_control_error *err);
int iopf_control_foreach_domain(struct iopf_control *c, uint64_t tenant, bool all,
				iopf_engine_domain_fn fn, void *userdata,
				struct iopf_control_error *err);
int iopf_control_foreach_region(struct iopf_control *c, uint64_t tenant, bool all,
				iopf_engine_region_fn fn, void *userdata,
				struct iopf_control_error *err);

/*
 * Statistics that never go backwards while their owner lives: a tenant's
 * since it connected, the daemon's since it started. Counters of removed
 * domains and sources are kept (folded in when the engine retires them);
 * bytes_mapped is what is mapped now. The object counts and region_bytes
 * (the sum of region lengths, what MaxPinnedBytes bounds) are current.
 */
struct iopf_control_stats {
	struct iopf_counters counters;
	struct iopf_histogram latency;
	uint64_t sources, domains, regions, region_bytes;
};

/*
 * iopf_control_tenant_stats() - @tenant's totals, asked by @caller: its own, or
 * any tenant's when the caller may read all (iopf_control_may_read_all()).
 * Return: 0, -ENOENT (unknown tenant, or another's to a non-root caller).
 */
int iopf_control_tenant_stats(struct iopf_control *c, uint64_t caller, uint64_t tenant,
			      struct iopf_control_stats *ret, struct iopf_control_error *err);
/*
 * iopf_control_foreach_tenant() - visit the caller alone, or with @all (callers
 * that iopf_control_may_read_all()) every tenant, oldest first, with its
 * totals. @caller 0 is the daemon itself (with @all only).
 * Return: 0, -EPERM, -ENOENT (unknown caller), or fn's error.
 */
typedef int (*iopf_control_tenant_fn)(const struct iopf_tenant_info *t,
				      const struct iopf_control_stats *st, void *userdata);
int iopf_control_foreach_tenant(struct iopf_control *c, uint64_t caller, bool all,
				iopf_control_tenant_fn fn, void *userdata,
				struct iopf_control_error *err);
/*
 * The daemon's totals since it started, every tenant's, gone ones too.
 * For callers that iopf_control_may_read_all() and @caller 0 (the daemon)
 * only: -EPERM.
 */
int iopf_control_total_stats(struct iopf_control *c, uint64_t caller,
			     struct iopf_control_stats *ret, struct iopf_control_error *err);
/*
 * Add the latency histogram of a domain (or of a source's unrouted groups) to
 * @ret. No ownership check: for iopf_control_foreach_*() callbacks, which
 * only visit what the caller may see. Return: 0 or -ENOENT.
 */
int iopf_control_domain_latency(struct iopf_control *c, uint64_t domain_id,
				struct iopf_histogram *ret);
int iopf_control_source_latency(struct iopf_control *c, uint64_t source_id,
				struct iopf_histogram *ret);

/* "resolved", "no_handler", ...; NULL when out of range. */
const char *iopf_reason_to_string(enum iopf_reason reason);

/* One named counter of struct iopf_counters, for statistics replies. */
struct iopf_counter_field {
	const char *name;
	uint64_t value;
};
#define IOPF_COUNTER_FIELDS_MAX (10 + _IOPF_REASON_MAX)
/* Fill @fields (room for IOPF_COUNTER_FIELDS_MAX) in a fixed order. Return: the count. */
size_t iopf_counters_to_fields(const struct iopf_counters *cnt, struct iopf_counter_field *fields);

#endif /* IOPF_CONTROL_H */
