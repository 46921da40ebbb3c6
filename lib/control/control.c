/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tenants, ownership, limits and request validation in front of the engine.
 * Every check that can be made here is made here, so a bad request gets a
 * message naming the argument; the engine checks again and its errno is the
 * fallback.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "control.h"
#include "util.h"
#include "fd-util.h"

/* Counters and latency of removed objects, kept so totals never go backwards. */
struct retired {
	struct iopf_counters counters; /* bytes_mapped unused: it is a gauge */
	struct iopf_histogram latency;
};

/*
 * What a tenant has registered, for its limits. Counting through the engine
 * visits every object, which made registering n objects O(n^2); so the counts
 * are kept here, bumped on each add, and recounted once after any removal
 * (removals cascade in the engine: a source takes its domains and regions).
 */
struct usage {
	unsigned sources, domains, regions;
	uint64_t region_bytes; /* saturating */
	bool valid;
};

struct iopf_tenant {
	uint64_t id;
	uid_t uid;
	gid_t gid;
	pid_t pid;
	char *name;		  /* owned */
	struct retired retired;	  /* of its removed domains and sources */
	struct usage usage;	  /* see struct usage */
	struct iopf_tenant *next; /* owned by the list */
};

struct iopf_control {
	struct iopf_engine *engine; /* not owned */
	struct iopf_control_limits limits;
	struct iopf_tenant *tenants; /* owned; newest first */
	unsigned n_tenants;
	uint64_t next_tenant_id;
	struct retired retired; /* every removed object since start, gone tenants' too */
};

_printf_(3, 4) static int fail(struct iopf_control_error *err, int r, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		va_start(ap, fmt);
		(void)vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return r;
}

static bool limit_ok(unsigned v)
{
	return v >= 1 && v <= IOPF_CONTROL_LIMIT_MAX;
}

static bool limits_ok(const struct iopf_control_limits *l)
{
	return limit_ok(l->max_sources) && limit_ok(l->max_domains) && limit_ok(l->max_regions) &&
	       (l->max_pinned_bytes == 0 || l->max_pinned_bytes >= IOPF_PAGE_SIZE);
}

static void normalize_limits(struct iopf_control_limits *l)
{
	if (l->max_pinned_bytes == 0)
		l->max_pinned_bytes = IOPF_CONTROL_PINNED_UNLIMITED;
}

/* dst += src; bytes_mapped is a gauge and is left alone. */
static void counters_add(struct iopf_counters *dst, const struct iopf_counters *src)
{
	dst->faults += src->faults;
	dst->groups += src->groups;
	dst->success += src->success;
	dst->invalid += src->invalid;
	for (unsigned i = 0; i < _IOPF_REASON_MAX; i++)
		dst->reasons[i] += src->reasons[i];
	dst->stale += src->stale;
	dst->pages_mapped += src->pages_mapped;
	dst->maps += src->maps;
	dst->coalesced += src->coalesced;
}

static struct iopf_tenant *tenant_find(struct iopf_control *c, uint64_t id)
{
	for (struct iopf_tenant *t = c->tenants; t; t = t->next)
		if (t->id == id)
			return t;
	return NULL;
}

/* The engine finished removing a domain or source: keep its numbers. */
static void on_retired(const struct iopf_engine_stats *st, void *userdata)
{
	struct iopf_control *c = userdata;
	struct iopf_tenant *t = tenant_find(c, st->tenant);

	counters_add(&c->retired.counters, st->counters);
	iopf_histogram_merge(&c->retired.latency, st->latency);
	if (t) { /* gone tenants only count in the daemon's totals */
		counters_add(&t->retired.counters, st->counters);
		iopf_histogram_merge(&t->retired.latency, st->latency);
	}
}

int iopf_control_new(struct iopf_engine *engine, const struct iopf_control_limits *limits,
		     struct iopf_control **ret)
{
	struct iopf_control *c;

	if (!engine || !ret)
		return -EINVAL;
	if (limits && !limits_ok(limits))
		return -EINVAL;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->engine = engine;
	c->next_tenant_id = 1;
	if (limits)
		c->limits = *limits;
	else
		c->limits = (struct iopf_control_limits){
			.max_sources = IOPF_CONTROL_DEFAULT_MAX_SOURCES,
			.max_domains = IOPF_CONTROL_DEFAULT_MAX_DOMAINS,
			.max_regions = IOPF_CONTROL_DEFAULT_MAX_REGIONS,
			.max_pinned_bytes = IOPF_CONTROL_DEFAULT_MAX_PINNED,
		};
	normalize_limits(&c->limits);
	iopf_engine_set_retired_fn(engine, on_retired, c);
	*ret = c;
	return 0;
}

int iopf_control_set_limits(struct iopf_control *c, const struct iopf_control_limits *limits)
{
	if (!limits || !limits_ok(limits))
		return -EINVAL;
	c->limits = *limits;
	normalize_limits(&c->limits);
	return 0;
}

static struct iopf_tenant *tenant_free(struct iopf_tenant *t)
{
	if (t) {
		free(t->name);
		free(t);
	}
	return NULL;
}

struct iopf_control *iopf_control_free(struct iopf_control *c)
{
	if (!c)
		return NULL;
	while (c->tenants) {
		struct iopf_tenant *t = c->tenants;

		c->tenants = t->next;
		tenant_free(t);
	}
	free(c);
	return NULL;
}

int iopf_control_tenant_add(struct iopf_control *c, const char *name, uid_t uid, gid_t gid,
			    pid_t pid, uint64_t *ret_tenant)
{
	struct iopf_tenant *t;

	if (!c || !name || !*name || !ret_tenant)
		return -EINVAL;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->name = strdup(name);
	if (!t->name) {
		tenant_free(t);
		return -ENOMEM;
	}
	t->id = c->next_tenant_id++;
	t->uid = uid;
	t->gid = gid;
	t->pid = pid;
	t->next = c->tenants;
	c->tenants = t;
	c->n_tenants++;
	*ret_tenant = t->id;
	return 0;
}

int iopf_control_tenant_info(struct iopf_control *c, uint64_t tenant, struct iopf_tenant_info *ret)
{
	struct iopf_tenant *t = tenant_find(c, tenant);

	if (!t)
		return -ENOENT;
	*ret = (struct iopf_tenant_info){
		.id = t->id,
		.uid = t->uid,
		.gid = t->gid,
		.pid = t->pid,
		.name = t->name,
	};
	return 0;
}

unsigned iopf_control_n_tenants(struct iopf_control *c)
{
	return c ? c->n_tenants : 0;
}

/* Object ids of one tenant, snapshot before removal (the engine's lists change under us). */
struct id_list {
	uint64_t *ids;
	size_t n, cap;
};

static int id_list_push(struct id_list *l, uint64_t id)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		uint64_t *ids = reallocarray(l->ids, cap, sizeof(*ids));

		if (!ids)
			return -ENOMEM;
		l->ids = ids;
		l->cap = cap;
	}
	l->ids[l->n++] = id;
	return 0;
}

static int collect_source(const struct iopf_source_info *i, void *userdata)
{
	return id_list_push(userdata, i->id);
}

static int collect_domain(const struct iopf_domain_info *i, void *userdata)
{
	return id_list_push(userdata, i->id);
}

static int collect_region(const struct iopf_region_info *i, void *userdata)
{
	return id_list_push(userdata, i->id);
}

static int count_source(const struct iopf_source_info *i, void *userdata)
{
	(*(unsigned *)userdata)++;
	return 0;
}

static int count_domain(const struct iopf_domain_info *i, void *userdata)
{
	(*(unsigned *)userdata)++;
	return 0;
}

static int count_region(const struct iopf_region_info *i, void *userdata)
{
	(*(unsigned *)userdata)++;
	return 0;
}

static int sum_region_bytes(const struct iopf_region_info *i, void *userdata)
{
	uint64_t *sum = userdata;

	/* each length fit a wrap-free range; saturate the sum all the same */
	*sum = i->length > UINT64_MAX - *sum ? UINT64_MAX : *sum + i->length;
	return 0;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return b > UINT64_MAX - a ? UINT64_MAX : a + b;
}

/* The tenant's usage, recounted through the engine only after a removal. */
static const struct usage *usage_get(struct iopf_control *c, struct iopf_tenant *t)
{
	if (!t->usage.valid) {
		t->usage = (struct usage){ .valid = true };
		(void)iopf_engine_foreach_source(c->engine, t->id, count_source,
						 &t->usage.sources);
		(void)iopf_engine_foreach_domain(c->engine, t->id, count_domain,
						 &t->usage.domains);
		(void)iopf_engine_foreach_region(c->engine, t->id, count_region,
						 &t->usage.regions);
		(void)iopf_engine_foreach_region(c->engine, t->id, sum_region_bytes,
						 &t->usage.region_bytes);
	}
	return &t->usage;
}

static void usage_invalidate(struct iopf_control *c, uint64_t tenant)
{
	struct iopf_tenant *t = tenant_find(c, tenant);

	if (t)
		t->usage.valid = false;
}

/* Tenant teardown needs no reply: the tenant is gone. */
static void teardown_done(void *userdata, int error)
{
}

int iopf_control_tenant_remove(struct iopf_control *c, uint64_t tenant)
{
	struct id_list ids = {};
	struct iopf_tenant **pp, *t = NULL;
	unsigned n = 0;

	for (pp = &c->tenants; *pp; pp = &(*pp)->next)
		if ((*pp)->id == tenant) {
			t = *pp;
			break;
		}
	if (!t)
		return -ENOENT;

	(void)iopf_engine_foreach_region(c->engine, tenant, count_region, &n);
	(void)iopf_engine_foreach_domain(c->engine, tenant, count_domain, &n);

	/*
	 * Sources first: removing one takes its domains and regions with it,
	 * and the worker answers the source's faults and unmaps in one pass.
	 * Then sweep whatever is still listed (nothing, with a cascading
	 * engine). Ids are snapshot before removing: the lists change under us.
	 */
	(void)iopf_engine_foreach_source(c->engine, tenant, collect_source, &ids);
	n += ids.n;
	for (size_t i = 0; i < ids.n; i++)
		(void)iopf_engine_remove_source(c->engine, ids.ids[i], teardown_done, NULL);

	ids.n = 0;
	(void)iopf_engine_foreach_domain(c->engine, tenant, collect_domain, &ids);
	for (size_t i = 0; i < ids.n; i++)
		(void)iopf_engine_remove_domain(c->engine, ids.ids[i], teardown_done, NULL);

	ids.n = 0;
	(void)iopf_engine_foreach_region(c->engine, tenant, collect_region, &ids);
	for (size_t i = 0; i < ids.n; i++)
		(void)iopf_engine_remove_region(c->engine, ids.ids[i], teardown_done, NULL);
	free(ids.ids);

	*pp = t->next;
	c->n_tenants--;
	tenant_free(t);
	return n > INT_MAX ? INT_MAX : (int)n;
}

int iopf_control_register_source(struct iopf_control *c, uint64_t tenant, int fault_fd, int iommufd,
				 uint32_t ioas_id, uint64_t *ret_source_id,
				 struct iopf_control_error *err)
{
	_cleanup_close_ int fault_copy = -EBADF, iommu_copy = -EBADF;
	struct iopf_tenant *t = tenant_find(c, tenant);
	char d1[128], d2[128];
	struct stat st;
	unsigned n;
	uint64_t id;
	int r;

	if (!t)
		return fail(err, -ENOENT, "unknown tenant");
	if (!fd_is_open(fault_fd))
		return fail(err, -EBADF, "fault_fd is not an open file descriptor");
	if (!fd_is_open(iommufd))
		return fail(err, -EBADF, "iommufd is not an open file descriptor");
	/* A fault queue (or a simulator doorbell) is always an anonymous inode. */
	if (!fd_maybe_anon_inode(fault_fd))
		return fail(err, -EBADF, "fault_fd is not an iommufd fault queue (it is %s)",
			    fd_describe(fault_fd, d1, sizeof(d1)));
	/* /dev/iommu is a character device; a simulator context is a memfd. */
	if (fstat(iommufd, &st) < 0 || (!S_ISCHR(st.st_mode) && !S_ISREG(st.st_mode)))
		return fail(err, -EBADF, "iommufd is not an iommufd (it is %s)",
			    fd_describe(iommufd, d2, sizeof(d2)));

	/* iommufd object ids (and simulator IOAS ids) start at 1 */
	if (ioas_id == 0)
		return fail(err, -EINVAL, "ioas_id 0 is not an IOAS id");

	n = usage_get(c, t)->sources;
	if (n >= c->limits.max_sources)
		return fail(err, -EDQUOT, "tenant already has %u fault sources (MaxSources=%u)", n,
			    c->limits.max_sources);

	/* The caller's fds belong to its transport message; the engine keeps copies. */
	fault_copy = fcntl(fault_fd, F_DUPFD_CLOEXEC, 3);
	if (fault_copy < 0)
		return fail(err, negative_errno(), "cannot duplicate fault_fd: %s",
			    strerror(errno));
	iommu_copy = fcntl(iommufd, F_DUPFD_CLOEXEC, 3);
	if (iommu_copy < 0)
		return fail(err, negative_errno(), "cannot duplicate iommufd: %s", strerror(errno));

	r = iopf_engine_add_source(c->engine, tenant, fault_copy, iommu_copy, ioas_id, &id);
	switch (r) {
	case 0:
		break;
	case -EBADF:
	case -ENOTTY:
		return fail(err, -EBADF,
			    "fault_fd (%s) and iommufd (%s) are not an iommufd fault queue and "
			    "its iommufd",
			    fd_describe(fault_fd, d1, sizeof(d1)),
			    fd_describe(iommufd, d2, sizeof(d2)));
	case -EOPNOTSUPP:
		return fail(err, r,
			    "this fault source is not supported (simulator fds need iopfd "
			    "--allow-simulator)");
	case -EINVAL:
		return fail(err, r, "ioas_id %" PRIu32 " is not usable with this iommufd", ioas_id);
	default:
		return fail(err, r, "cannot serve fault source: %s", strerror(-r));
	}

	/* The engine owns the copies now. */
	fault_copy = -EBADF;
	iommu_copy = -EBADF;
	t->usage.sources++;
	*ret_source_id = id;
	return 0;
}

static int source_lookup(struct iopf_control *c, uint64_t tenant, uint64_t id,
			 struct iopf_source_info *ret, struct iopf_control_error *err)
{
	/* Someone else's object answers exactly like a missing one. */
	if (iopf_engine_source_info(c->engine, id, ret) < 0 || ret->tenant != tenant)
		return fail(err, -ENOENT, "no fault source %" PRIu64, id);
	return 0;
}

static int domain_lookup(struct iopf_control *c, uint64_t tenant, uint64_t id,
			 struct iopf_domain_info *ret, struct iopf_control_error *err)
{
	if (iopf_engine_domain_info(c->engine, id, ret) < 0 || ret->tenant != tenant)
		return fail(err, -ENOENT, "no domain %" PRIu64, id);
	return 0;
}

static int region_lookup(struct iopf_control *c, uint64_t tenant, uint64_t id,
			 struct iopf_region_info *ret, struct iopf_control_error *err)
{
	if (iopf_engine_region_info(c->engine, id, ret) < 0 || ret->tenant != tenant)
		return fail(err, -ENOENT, "no region %" PRIu64, id);
	return 0;
}

static const char *pasid_str(uint32_t pasid, char *buf, size_t size)
{
	if (pasid == IOPF_PASID_NONE)
		return "none";
	(void)snprintf(buf, size, "0x%" PRIx32, pasid);
	return buf;
}

struct domain_key {
	uint64_t source_id;
	uint32_t dev_id, pasid;
	uint64_t found;
};

static int find_domain_key(const struct iopf_domain_info *i, void *userdata)
{
	struct domain_key *k = userdata;

	if (i->source_id == k->source_id && i->dev_id == k->dev_id && i->pasid == k->pasid) {
		k->found = i->id;
		return -EEXIST; /* stop */
	}
	return 0;
}

int iopf_control_register_domain(struct iopf_control *c, uint64_t tenant, uint64_t source_id,
				 uint32_t dev_id, uint32_t pasid, uint64_t *ret_domain_id,
				 struct iopf_control_error *err)
{
	struct iopf_source_info si;
	struct domain_key key = {.source_id = source_id, .dev_id = dev_id, .pasid = pasid};
	struct iopf_tenant *t = tenant_find(c, tenant);
	char pbuf[16];
	unsigned n;
	uint64_t id;
	int r;

	if (!t)
		return fail(err, -ENOENT, "unknown tenant");
	if (pasid != IOPF_PASID_NONE && pasid > IOPF_PASID_MAX)
		return fail(err, -EINVAL,
			    "pasid 0x%" PRIx32 " is out of range (0..0x%" PRIx32
			    ", or 0xffffffff for no PASID)",
			    pasid, IOPF_PASID_MAX);
	r = source_lookup(c, tenant, source_id, &si, err);
	if (r < 0)
		return r;

	n = usage_get(c, t)->domains;
	if (n >= c->limits.max_domains)
		return fail(err, -EDQUOT, "tenant already has %u domains (MaxDomains=%u)", n,
			    c->limits.max_domains);

	r = iopf_engine_add_domain(c->engine, source_id, dev_id, pasid, &id);
	switch (r) {
	case 0:
		break;
	case -ENOENT:
		return fail(err, r, "no fault source %" PRIu64, source_id);
	case -EEXIST:
		/* Keys are per source and sources per tenant: our own list names the holder. */
		(void)iopf_engine_foreach_domain(c->engine, tenant, find_domain_key, &key);
		if (key.found)
			return fail(err, r,
				    "source %" PRIu64 " already has domain %" PRIu64
				    " for dev_id %" PRIu32 " pasid %s",
				    source_id, key.found, dev_id,
				    pasid_str(pasid, pbuf, sizeof(pbuf)));
		return fail(err, r,
			    "source %" PRIu64 " already has a domain for dev_id %" PRIu32
			    " pasid %s",
			    source_id, dev_id, pasid_str(pasid, pbuf, sizeof(pbuf)));
	case -EINVAL:
		return fail(err, r, "dev_id %" PRIu32 " pasid %s refused by the engine", dev_id,
			    pasid_str(pasid, pbuf, sizeof(pbuf)));
	default:
		return fail(err, r, "cannot register domain: %s", strerror(-r));
	}
	t->usage.domains++;
	*ret_domain_id = id;
	return 0;
}

struct overlap {
	uint64_t domain_id, iova, length;
	struct iopf_region_info hit;
	bool found;
};

static int find_overlap(const struct iopf_region_info *i, void *userdata)
{
	struct overlap *o = userdata;

	/* Both ranges are non-empty and wrap-free, so end-exclusive compares are exact. */
	if (i->domain_id == o->domain_id && o->iova < i->iova + i->length &&
	    i->iova < o->iova + o->length) {
		o->hit = *i;
		o->found = true;
		return -EBUSY; /* stop */
	}
	return 0;
}

static int overlap_error(struct iopf_control_error *err, uint64_t iova, uint64_t length,
			 const struct iopf_region_info *hit)
{
	return fail(err, -EBUSY,
		    "region 0x%" PRIx64 "+0x%" PRIx64 " overlaps region %" PRIu64 " [0x%" PRIx64
		    ", 0x%" PRIx64 ")",
		    iova, length, hit->id, hit->iova, hit->iova + hit->length);
}

int iopf_control_add_region(struct iopf_control *c, uint64_t tenant, uint64_t domain_id, int fd,
			    uint64_t offset, uint64_t iova, uint64_t length, uint32_t access,
			    uint64_t *ret_region_id, struct iopf_control_error *err)
{
	struct overlap ov = {.domain_id = domain_id, .iova = iova, .length = length};
	struct iopf_tenant *t = tenant_find(c, tenant);
	struct iopf_domain_info di;
	const struct usage *u;
	char desc[128];
	struct stat st;
	uint64_t id, bytes;
	int r, flags;

	if (!t)
		return fail(err, -ENOENT, "unknown tenant");

	/* Arguments first: they need no state and say most precisely what is wrong. */
	if (access == 0 || (access & ~(uint32_t)IOPF_ACCESS_ALL))
		return fail(err, -EINVAL,
			    "access 0x%" PRIx32
			    " must be a non-empty subset of READ|WRITE|EXEC|PRIV"
			    " (0x%x)",
			    access, IOPF_ACCESS_ALL);
	if (length == 0)
		return fail(err, -EINVAL, "length must not be 0");
	if (!IS_ALIGNED(iova, IOPF_PAGE_SIZE))
		return fail(err, -EINVAL, "iova 0x%" PRIx64 " must be %" PRIu64 "-aligned", iova,
			    IOPF_PAGE_SIZE);
	if (!IS_ALIGNED(length, IOPF_PAGE_SIZE))
		return fail(err, -EINVAL, "length 0x%" PRIx64 " must be a multiple of %" PRIu64,
			    length, IOPF_PAGE_SIZE);
	if (!IS_ALIGNED(offset, IOPF_PAGE_SIZE))
		return fail(err, -EINVAL, "offset 0x%" PRIx64 " must be %" PRIu64 "-aligned",
			    offset, IOPF_PAGE_SIZE);
	/* Exclusive ends must be representable: a range ending at 2^64 counts as wrapping. */
	if (length > UINT64_MAX - iova)
		return fail(err, -EINVAL,
			    "region 0x%" PRIx64 "+0x%" PRIx64 " wraps around the IOVA space", iova,
			    length);
	if (length > UINT64_MAX - offset)
		return fail(err, -EINVAL, "offset 0x%" PRIx64 "+0x%" PRIx64 " wraps around", offset,
			    length);

	if (!fd_is_open(fd))
		return fail(err, -EBADF, "fd is not an open file descriptor");
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return fail(err, -EBADF, "fd is not a memfd or regular file (it is %s)",
			    fd_describe(fd, desc, sizeof(desc)));
	flags = fcntl(fd, F_GETFL);
	if (flags < 0)
		return fail(err, -EBADF, "fd is not an open file descriptor");
	if ((flags & O_ACCMODE) == O_WRONLY)
		return fail(err, -EBADF, "fd is open write-only and cannot be mapped");
	if ((access & IOPF_ACCESS_WRITE) && (flags & O_ACCMODE) == O_RDONLY)
		return fail(err, -EBADF,
			    "fd is open read-only but access 0x%" PRIx32 " includes WRITE", access);
	if (st.st_size < 0 || offset + length > (uint64_t)st.st_size)
		return fail(err, -EINVAL,
			    "fd range 0x%" PRIx64 "+0x%" PRIx64
			    " ends beyond the fd's size 0x%" PRIx64,
			    offset, length, (uint64_t)st.st_size);

	r = domain_lookup(c, tenant, domain_id, &di, err);
	if (r < 0)
		return r;

	u = usage_get(c, t);
	if (u->regions >= c->limits.max_regions)
		return fail(err, -EDQUOT, "tenant already has %u regions (MaxRegions=%u)",
			    u->regions, c->limits.max_regions);

	bytes = u->region_bytes;
	if (c->limits.max_pinned_bytes != IOPF_CONTROL_PINNED_UNLIMITED &&
	    (bytes > c->limits.max_pinned_bytes || length > c->limits.max_pinned_bytes - bytes))
		return fail(err, -EDQUOT,
			    "tenant's regions would cover %" PRIu64 " bytes, more than "
			    "MaxPinnedBytes=%" PRIu64 " (what iopfd may pin for one tenant)",
			    length > UINT64_MAX - bytes ? UINT64_MAX : bytes + length,
			    c->limits.max_pinned_bytes);

	r = iopf_engine_add_region(c->engine, domain_id, fd, offset, iova, length, access, &id);
	switch (r) {
	case 0:
		break;
	case -ENOENT:
		return fail(err, r, "no domain %" PRIu64, domain_id);
	case -EBUSY:
		/* Name the region in the way; only the refusal pays for the search. */
		(void)iopf_engine_foreach_region(c->engine, tenant, find_overlap, &ov);
		if (ov.found)
			return overlap_error(err, iova, length, &ov.hit);
		return fail(err, r, "region 0x%" PRIx64 "+0x%" PRIx64 " overlaps another region",
			    iova, length);
	case -EBADF:
	case -ENODEV:
	case -EACCES:
		return fail(err, -EBADF, "fd (%s) cannot back a region: %s",
			    fd_describe(fd, desc, sizeof(desc)), strerror(-r));
	case -EINVAL:
		return fail(err, r, "region 0x%" PRIx64 "+0x%" PRIx64 " refused by the engine",
			    iova, length);
	default:
		return fail(err, r, "cannot add region: %s", strerror(-r));
	}
	t->usage.regions++;
	t->usage.region_bytes = add_sat(t->usage.region_bytes, length);
	*ret_region_id = id;
	return 0;
}

static int removal_error(struct iopf_control_error *err, int r, const char *what, uint64_t id)
{
	if (r == -ENOENT)
		return fail(err, r, "no %s %" PRIu64, what, id);
	return fail(err, r, "cannot remove %s %" PRIu64 ": %s", what, id, strerror(-r));
}

int iopf_control_unregister_source(struct iopf_control *c, uint64_t tenant, uint64_t source_id,
				   iopf_engine_done_fn done, void *userdata,
				   struct iopf_control_error *err)
{
	struct iopf_source_info i;
	int r;

	r = source_lookup(c, tenant, source_id, &i, err);
	if (r < 0)
		return r;
	r = iopf_engine_remove_source(c->engine, source_id, done, userdata);
	usage_invalidate(c, tenant);
	if (r < 0)
		return removal_error(err, r, "fault source", source_id);
	return 0;
}

int iopf_control_unregister_domain(struct iopf_control *c, uint64_t tenant, uint64_t domain_id,
				   iopf_engine_done_fn done, void *userdata,
				   struct iopf_control_error *err)
{
	struct iopf_domain_info i;
	int r;

	r = domain_lookup(c, tenant, domain_id, &i, err);
	if (r < 0)
		return r;
	r = iopf_engine_remove_domain(c->engine, domain_id, done, userdata);
	usage_invalidate(c, tenant);
	if (r < 0)
		return removal_error(err, r, "domain", domain_id);
	return 0;
}

int iopf_control_remove_region(struct iopf_control *c, uint64_t tenant, uint64_t region_id,
			       iopf_engine_done_fn done, void *userdata,
			       struct iopf_control_error *err)
{
	struct iopf_region_info i;
	int r;

	r = region_lookup(c, tenant, region_id, &i, err);
	if (r < 0)
		return r;
	r = iopf_engine_remove_region(c->engine, region_id, done, userdata);
	usage_invalidate(c, tenant);
	if (r < 0)
		return removal_error(err, r, "region", region_id);
	return 0;
}

/* The engine's filter value for a listing: 0 visits every tenant. */
static int listing_tenant(struct iopf_control *c, uint64_t tenant, bool all, uint64_t *ret,
			  struct iopf_control_error *err)
{
	struct iopf_tenant *t = tenant_find(c, tenant);

	if (!t)
		return fail(err, -ENOENT, "unknown tenant");
	if (all && t->uid != 0)
		return fail(err, -EPERM, "listing every tenant's objects needs uid 0");
	*ret = all ? 0 : tenant;
	return 0;
}

int iopf_control_foreach_source(struct iopf_control *c, uint64_t tenant, bool all,
				iopf_engine_source_fn fn, void *userdata,
				struct iopf_control_error *err)
{
	uint64_t filter = 0; /* gcc -O3 cannot see listing_tenant() set it */
	int r;

	r = listing_tenant(c, tenant, all, &filter, err);
	if (r < 0)
		return r;
	r = iopf_engine_foreach_source(c->engine, filter, fn, userdata);
	if (r < 0)
		return fail(err, r, "cannot list fault sources: %s", strerror(-r));
	return 0;
}

int iopf_control_foreach_domain(struct iopf_control *c, uint64_t tenant, bool all,
				iopf_engine_domain_fn fn, void *userdata,
				struct iopf_control_error *err)
{
	uint64_t filter = 0; /* gcc -O3 cannot see listing_tenant() set it */
	int r;

	r = listing_tenant(c, tenant, all, &filter, err);
	if (r < 0)
		return r;
	r = iopf_engine_foreach_domain(c->engine, filter, fn, userdata);
	if (r < 0)
		return fail(err, r, "cannot list domains: %s", strerror(-r));
	return 0;
}

int iopf_control_foreach_region(struct iopf_control *c, uint64_t tenant, bool all,
				iopf_engine_region_fn fn, void *userdata,
				struct iopf_control_error *err)
{
	uint64_t filter = 0; /* gcc -O3 cannot see listing_tenant() set it */
	int r;

	r = listing_tenant(c, tenant, all, &filter, err);
	if (r < 0)
		return r;
	r = iopf_engine_foreach_region(c->engine, filter, fn, userdata);
	if (r < 0)
		return fail(err, r, "cannot list regions: %s", strerror(-r));
	return 0;
}

/* --- statistics --- */

struct tenant_stats {
	struct iopf_tenant *t;
	struct iopf_control_stats st;
};

/* Where each object's numbers go: all to @one, or to its tenant's entry of @v. */
struct stats_acc {
	struct iopf_control *c;
	struct iopf_control_stats *one;
	struct tenant_stats *v; /* ascending tenant id */
	size_t n;
};

static struct iopf_control_stats *acc_pick(struct stats_acc *a, uint64_t tenant)
{
	size_t lo = 0, hi = a->n;

	if (a->one)
		return a->one;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (a->v[mid].t->id == tenant)
			return &a->v[mid].st;
		if (a->v[mid].t->id < tenant)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL; /* an object of a tenant removed meanwhile */
}

static int acc_domain(const struct iopf_domain_info *i, void *userdata)
{
	struct stats_acc *a = userdata;
	struct iopf_control_stats *st = acc_pick(a, i->tenant);

	if (st) {
		counters_add(&st->counters, &i->counters);
		st->counters.bytes_mapped += i->counters.bytes_mapped;
		(void)iopf_engine_domain_latency(a->c->engine, i->id, &st->latency);
		st->domains++;
	}
	return 0;
}

static int acc_source(const struct iopf_source_info *i, void *userdata)
{
	struct stats_acc *a = userdata;
	struct iopf_control_stats *st = acc_pick(a, i->tenant);

	if (st) {
		counters_add(&st->counters, &i->unrouted);
		(void)iopf_engine_source_latency(a->c->engine, i->id, &st->latency);
		st->sources++;
	}
	return 0;
}

static int acc_region(const struct iopf_region_info *i, void *userdata)
{
	struct stats_acc *a = userdata;
	struct iopf_control_stats *st = acc_pick(a, i->tenant);

	if (!st)
		return 0;
	st->regions++;
	return sum_region_bytes(i, &st->region_bytes);
}

static void acc_retiring(const struct iopf_engine_stats *es, void *userdata)
{
	struct stats_acc *a = userdata;
	struct iopf_control_stats *st = acc_pick(a, es->tenant);

	if (!st)
		return;
	counters_add(&st->counters, es->counters);
	st->counters.bytes_mapped += es->counters->bytes_mapped; /* still being unmapped */
	iopf_histogram_merge(&st->latency, es->latency);
}

static void stats_init(struct iopf_control_stats *st, const struct retired *retired)
{
	*st = (struct iopf_control_stats){.counters = retired->counters};
	st->counters.bytes_mapped = 0;
	iopf_histogram_merge(&st->latency, &retired->latency);
}

/* One pass over the engine's objects (@filter: a tenant id, or 0 for everyone). */
static void collect(struct stats_acc *a, uint64_t filter)
{
	struct iopf_engine *e = a->c->engine;

	(void)iopf_engine_foreach_domain(e, filter, acc_domain, a);
	(void)iopf_engine_foreach_source(e, filter, acc_source, a);
	(void)iopf_engine_foreach_region(e, filter, acc_region, a);
	iopf_engine_foreach_retiring(e, filter, acc_retiring, a);
}

/* @filter: a tenant id, or 0 for everyone; @retired: what to start from. */
static void collect_stats(struct iopf_control *c, uint64_t filter, const struct retired *retired,
			  struct iopf_control_stats *ret)
{
	struct stats_acc a = {.c = c, .one = ret};

	stats_init(ret, retired);
	collect(&a, filter);
}

static void tenant_info_of(const struct iopf_tenant *t, struct iopf_tenant_info *ret)
{
	*ret = (struct iopf_tenant_info){
		.id = t->id,
		.uid = t->uid,
		.gid = t->gid,
		.pid = t->pid,
		.name = t->name,
	};
}

int iopf_control_tenant_stats(struct iopf_control *c, uint64_t caller, uint64_t tenant,
			      struct iopf_control_stats *ret, struct iopf_control_error *err)
{
	struct iopf_tenant *me = tenant_find(c, caller), *t = tenant_find(c, tenant);

	if (!me)
		return fail(err, -ENOENT, "unknown tenant");
	/* another's tenant id answers like one that does not exist */
	if (!t || (t != me && me->uid != 0))
		return fail(err, -ENOENT, "no tenant %" PRIu64, tenant);
	collect_stats(c, t->id, &t->retired, ret);
	return 0;
}

int iopf_control_foreach_tenant(struct iopf_control *c, uint64_t caller, bool all,
				iopf_control_tenant_fn fn, void *userdata,
				struct iopf_control_error *err)
{
	_cleanup_free_ struct tenant_stats *v = NULL;
	struct iopf_tenant *me = tenant_find(c, caller);
	struct iopf_control_stats *st;
	struct iopf_tenant_info ti;
	struct stats_acc a = {.c = c};
	size_t n;
	int r;

	if (caller == 0 && all)
		goto all; /* the daemon itself */
	if (!me)
		return fail(err, -ENOENT, "unknown tenant");
	if (!all) {
		st = malloc(sizeof(*st));
		if (!st)
			return fail(err, -ENOMEM, "out of memory");
		collect_stats(c, me->id, &me->retired, st);
		tenant_info_of(me, &ti);
		r = fn(&ti, st, userdata);
		free(st);
		return r < 0 ? fail(err, r, "cannot list tenant: %s", strerror(-r)) : 0;
	}
	if (me->uid != 0)
		return fail(err, -EPERM, "listing every tenant needs uid 0");
all:
	/*
	 * Every tenant's totals in one pass over the objects, not one pass per
	 * tenant. The list is newest first, so ids descend: fill backwards.
	 */
	v = calloc(c->n_tenants ? c->n_tenants : 1, sizeof(*v));
	if (!v)
		return fail(err, -ENOMEM, "out of memory");
	n = c->n_tenants;
	for (struct iopf_tenant *t = c->tenants; t && n > 0; t = t->next) {
		v[--n].t = t;
		stats_init(&v[n].st, &t->retired);
	}
	a.v = v;
	a.n = c->n_tenants;
	collect(&a, 0);
	r = 0;
	for (size_t i = 0; i < a.n && r >= 0; i++) {
		tenant_info_of(v[i].t, &ti);
		r = fn(&ti, &v[i].st, userdata);
	}
	return r < 0 ? fail(err, r, "cannot list tenants: %s", strerror(-r)) : 0;
}

int iopf_control_total_stats(struct iopf_control *c, uint64_t caller,
			     struct iopf_control_stats *ret, struct iopf_control_error *err)
{
	struct iopf_tenant *me = tenant_find(c, caller);

	if (caller != 0 && !me) /* 0: the daemon itself */
		return fail(err, -ENOENT, "unknown tenant");
	if (me && me->uid != 0)
		return fail(err, -EPERM, "the daemon's totals need uid 0");
	collect_stats(c, 0, &c->retired, ret);
	return 0;
}

int iopf_control_domain_latency(struct iopf_control *c, uint64_t domain_id,
				struct iopf_histogram *ret)
{
	return iopf_engine_domain_latency(c->engine, domain_id, ret);
}

int iopf_control_source_latency(struct iopf_control *c, uint64_t source_id,
				struct iopf_histogram *ret)
{
	return iopf_engine_source_latency(c->engine, source_id, ret);
}

static const char *const reason_names[_IOPF_REASON_MAX] = {
	[IOPF_REASON_RESOLVED] = "resolved",
	[IOPF_REASON_NO_HANDLER] = "no_handler",
	[IOPF_REASON_OUTSIDE_REGION] = "outside_region",
	[IOPF_REASON_PERMISSION] = "permission",
	[IOPF_REASON_MAP_ERROR] = "map_error",
	[IOPF_REASON_BAD_RECORD] = "bad_record",
	[IOPF_REASON_RETIRED] = "retired",
};

const char *iopf_reason_to_string(enum iopf_reason reason)
{
	if ((unsigned)reason >= _IOPF_REASON_MAX)
		return NULL;
	return reason_names[reason];
}

size_t iopf_counters_to_fields(const struct iopf_counters *cnt, struct iopf_counter_field *fields)
{
	size_t n = 0;

#define FIELD(f) fields[n++] = (struct iopf_counter_field){#f, cnt->f}
	FIELD(faults);
	FIELD(groups);
	FIELD(success);
	FIELD(invalid);
	FIELD(stale);
	FIELD(pages_mapped);
	FIELD(maps);
	FIELD(coalesced);
	FIELD(bytes_mapped);
#undef FIELD
	for (unsigned i = 0; i < _IOPF_REASON_MAX; i++)
		fields[n++] = (struct iopf_counter_field){reason_names[i], cnt->reasons[i]};
	return n;
}
