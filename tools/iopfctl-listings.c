/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What iopfctl lists: one column table per D-Bus call. A column with a wire
 * position is a field of the call's row; the others are derived from those
 * (END from IOVA and SIZE, FAULTS from the counters, P99 from the latency
 * histogram, GROUPS/S from this --watch frame's totals and the previous one's).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "iopfctl.h"
#include "time-util.h"
#include "util.h"
#include "wire.h"

/* --- rates between --watch frames --- */

struct rate_entry {
	uint64_t id, faults, groups;
	struct iopf_histogram lat; /* its latency histogram at that reading */
};

/* One listing's totals at this frame's reading and at the previous frame's. */
struct rate_set {
	struct rate_entry *prev, *cur; /* owned; prev sorted by id */
	size_t n_prev, n_cur, cap_prev, cap_cur;
	uint64_t prev_ns, cur_ns; /* CLOCK_MONOTONIC of each reading; 0: none yet */
};

static struct rate_set tenant_rates, domain_rates;

static int rate_entry_cmp(const void *a, const void *b)
{
	const struct rate_entry *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/* Per second since the previous reading; NAN without one or when a counter went back. */
static double rate(const struct rate_set *rs, uint64_t prev, uint64_t cur)
{
	if (!rs->prev_ns || rs->cur_ns <= rs->prev_ns || cur < prev)
		return NAN;
	return (double)(cur - prev) * 1e9 / (double)(rs->cur_ns - rs->prev_ns);
}

/*
 * Record @id's totals of this frame; set its rates, faults/s and groups/s, into
 * @ret, and turn @lat into the histogram of this interval when there is a
 * previous reading (else it stays the totals since the object came).
 */
static void rate_of(struct rate_set *rs, uint64_t id, const struct counters *c,
		    struct iopf_histogram *lat, union value ret[2])
{
	const struct rate_entry key = {.id = id}, *prev;

	if (rs->n_cur == rs->cap_cur) {
		size_t cap = rs->cap_cur ? rs->cap_cur * 2 : 64;
		struct rate_entry *p = reallocarray(rs->cur, cap, sizeof(*p));

		if (p) {
			rs->cur = p;
			rs->cap_cur = cap;
		}
	}
	/* short of memory: no rate for this one next time, nothing worse */
	if (rs->n_cur < rs->cap_cur)
		rs->cur[rs->n_cur++] = (struct rate_entry){id, c->faults, c->groups, *lat};
	/* the reading this row came from: the first row of a frame takes its time */
	if (rs->n_cur == 1 || !rs->cur_ns)
		rs->cur_ns = mono_ns();
	prev = rs->n_prev ? bsearch(&key, rs->prev, rs->n_prev, sizeof(key), rate_entry_cmp) : NULL;
	ret[0].d = prev ? rate(rs, prev->faults, c->faults) : NAN;
	ret[1].d = prev ? rate(rs, prev->groups, c->groups) : NAN;
	if (!prev || prev->lat.count > lat->count)
		return;
	/* the latency of this interval: what came since the previous reading */
	for (unsigned i = 0; i < IOPF_HIST_BUCKETS; i++)
		lat->bucket[i] = lat->bucket[i] >= prev->lat.bucket[i]
					 ? lat->bucket[i] - prev->lat.bucket[i]
					 : 0;
	lat->count -= prev->lat.count;
	lat->sum_ns -= lat->sum_ns >= prev->lat.sum_ns ? prev->lat.sum_ns : lat->sum_ns;
}

/* --watch: rates, and the row's latency (columns and JSON) over the interval. */
static void watch_latency(struct rate_set *rs, uint64_t id, struct row *row, union value rates[2],
			  union value *json)
{
	rate_of(rs, id, &row->c, &row->lat, rates);
	if (json->j) {
		json_object_put(json->j);
		json->j = latency_json(&row->lat);
	}
}

/* This frame's totals become the baseline; the old baseline's array takes the next ones. */
static void rate_set_next(struct rate_set *rs)
{
	struct rate_entry *p = rs->prev;
	size_t cap = rs->cap_prev;

	if (rs->n_cur)
		qsort(rs->cur, rs->n_cur, sizeof(*rs->cur), rate_entry_cmp);
	rs->prev = rs->cur;
	rs->cap_prev = rs->cap_cur;
	rs->n_prev = rs->n_cur;
	rs->prev_ns = rs->cur_ns;
	rs->cur = p;
	rs->cap_cur = cap;
	rs->n_cur = 0;
	rs->cur_ns = 0;
}

void rates_next_frame(void)
{
	rate_set_next(&tenant_rates);
	rate_set_next(&domain_rates);
}

double rates_interval(void)
{
	const struct rate_set *rs = &tenant_rates;

	if (!rs->prev_ns || rs->cur_ns <= rs->prev_ns)
		return NAN;
	return (double)(rs->cur_ns - rs->prev_ns) / 1e9;
}

void rates_free(void)
{
	struct rate_set *sets[] = {&tenant_rates, &domain_rates};

	for (size_t i = 0; i < ARRAY_SIZE(sets); i++) {
		free(sets[i]->prev);
		free(sets[i]->cur);
		*sets[i] = (struct rate_set){};
	}
}

/* --- derived columns shared by the statistics listings --- */

/* The percentiles a table shows (the upper bound of the bucket holding each), then MAX. */
static const double percentiles[] = {0.50, 0.99, 0.999};

/* The bound of the highest non-empty bucket: what the slowest response stayed under. */
static uint64_t latency_max_ns(const struct iopf_histogram *l)
{
	for (unsigned i = IOPF_HIST_BUCKETS; i-- > 0;)
		if (l->bucket[i])
			return iopf_histogram_bound_ns(i);
	return 0;
}

/* P50, P99, P99.9, MAX into four columns from @v. */
static void derive_latency(const struct iopf_histogram *h, union value *v)
{
	for (size_t i = 0; i < ARRAY_SIZE(percentiles); i++)
		v[i].u = iopf_histogram_quantile(h, percentiles[i]);
	v[ARRAY_SIZE(percentiles)].u = latency_max_ns(h);
}

/* clang-format off */
#define LATENCY_COLUMNS \
	{"P50", NULL, CELL_DURATION}, {"P99", NULL, CELL_DURATION}, \
	{"P99.9", NULL, CELL_DURATION}, {"MAX", NULL, CELL_DURATION}

/* FAULTS GROUPS SUCCESS INVALID STALE PAGES MAPPED: the counters of a domain or source. */
#define COUNTER_COLUMNS \
	{"FAULTS", NULL, CELL_U64}, {"GROUPS", NULL, CELL_U64}, {"SUCCESS", NULL, CELL_U64}, \
	{"INVALID", NULL, CELL_U64}, {"STALE", NULL, CELL_U64}, {"PAGES", NULL, CELL_U64}, \
	{"MAPPED", NULL, CELL_BYTES}
/* clang-format on */

static void derive_counters(const struct counters *c, union value *v)
{
	const uint64_t cols[] = {c->faults, c->groups,	     c->success,     c->invalid,
				 c->stale,  c->pages_mapped, c->bytes_mapped};

	for (size_t i = 0; i < ARRAY_SIZE(cols); i++)
		v[i].u = cols[i];
}

/* clang-format off */
#define RATE_COLUMNS \
	{"FAULTS/S", "faults_per_s", CELL_RATE, 0, COL_WATCH}, \
	{"GROUPS/S", "groups_per_s", CELL_RATE, 0, COL_WATCH}
/* clang-format on */

#define LISTING(n, ...) .name = (n), .columns = __VA_ARGS__, .n_columns = ARRAY_SIZE(__VA_ARGS__)

/* --- sources, domains, regions --- */

static const struct column source_columns[] = {
	{"TENANT", "tenant", CELL_U64, 0, COL_ALL},
	{"SOURCE", "id", CELL_U64, 1},
	{"IOAS", "ioas_id", CELL_U64, 2},
	{"BACKEND", "backend", CELL_STRING, 3},
};

const struct listing listing_sources = {
	LISTING("sources", source_columns), .method = "ListSources",
	.method_all = "ListAllSources",	    .row = IOPF_WIRE_SOURCE,
	.row_all = IOPF_WIRE_SOURCE_ALL,
};

static const struct column domain_columns[] = {
	{"TENANT", "tenant", CELL_U64, 0, COL_ALL}, {"DOMAIN", "id", CELL_U64, 1},
	{"SOURCE", "source", CELL_U64, 2},	    {"DEV", "dev_id", CELL_U64, 3},
	{"PASID", "pasid", CELL_PASID, 4},
};

const struct listing listing_domains = {
	LISTING("domains", domain_columns), .method = "ListDomains",
	.method_all = "ListAllDomains",	    .row = IOPF_WIRE_DOMAIN,
	.row_all = IOPF_WIRE_DOMAIN_ALL,
};

enum { REG_TENANT, REG_ID, REG_DOMAIN, REG_IOVA, REG_END, REG_SIZE, REG_ACCESS, REG_FLAGS };

static const struct column region_columns[] = {
	[REG_TENANT] = {"TENANT", "tenant", CELL_U64, 0, COL_ALL},
	[REG_ID] = {"REGION", "id", CELL_U64, 1},
	[REG_DOMAIN] = {"DOMAIN", "domain", CELL_U64, 2},
	[REG_IOVA] = {"IOVA", "iova", CELL_HEX, 3},
	[REG_END] = {"END", NULL, CELL_HEX},
	[REG_SIZE] = {"SIZE", "length", CELL_BYTES, 4},
	[REG_ACCESS] = {"ACCESS", "access", CELL_ACCESS, 5},
	[REG_FLAGS] = {NULL, "access_flags", CELL_ACCESS_FLAGS},
};

static void derive_region(struct ctx *x, const struct listing *l, struct row *row)
{
	row->v[REG_END].u = row->v[REG_IOVA].u + row->v[REG_SIZE].u;
	row->v[REG_FLAGS].u = row->v[REG_ACCESS].u;
}

const struct listing listing_regions = {
	LISTING("regions", region_columns), .method = "ListRegions",
	.method_all = "ListAllRegions",	    .row = IOPF_WIRE_REGION,
	.row_all = IOPF_WIRE_REGION_ALL,    .derive = derive_region,
};

/* --- statistics --- */

enum {
	TEN_ID,
	TEN_UID,
	TEN_PID,
	TEN_FAULTS,
	TEN_GROUPS,
	TEN_REFUSED,
	TEN_STALE,
	TEN_PINNED,
	TEN_P50, /* ... MAX */
	TEN_RATES = TEN_P50 + 4,
	TEN_NAME = TEN_RATES + 2,
	TEN_COUNTERS,
	TEN_LATENCY,
};

static const struct column tenant_stat_columns[] = {
	[TEN_ID] = {"TENANT", "tenant", CELL_U64, 1},
	[TEN_UID] = {"UID", "uid", CELL_U64, 2},
	[TEN_PID] = {"PID", "pid", CELL_U64, 3},
	[TEN_FAULTS] = {"FAULTS", NULL, CELL_U64},
	[TEN_GROUPS] = {"GROUPS", NULL, CELL_U64},
	[TEN_REFUSED] = {"REFUSED", NULL, CELL_U64},
	[TEN_STALE] = {"STALE", NULL, CELL_U64},
	[TEN_PINNED] = {"PINNED", NULL, CELL_BYTES},
	LATENCY_COLUMNS,
	RATE_COLUMNS,
	[TEN_NAME] = {"NAME", "name", CELL_STRING, 4},
	[TEN_COUNTERS] = {NULL, "counters", CELL_JSON, 5},
	[TEN_LATENCY] = {NULL, "latency", CELL_JSON, 6},
};

static void derive_tenant_stats(struct ctx *x, const struct listing *l, struct row *row)
{
	union value *v = row->v;

	v[TEN_FAULTS].u = row->c.faults;
	v[TEN_GROUPS].u = row->c.groups;
	v[TEN_REFUSED].u = row->c.invalid;
	v[TEN_STALE].u = row->c.stale;
	v[TEN_PINNED].u = row->c.bytes_mapped;
	if (arg_watch > 0) /* percentiles over the interval, once there is one */
		watch_latency(&tenant_rates, v[TEN_ID].u, row, &v[TEN_RATES], &v[TEN_LATENCY]);
	derive_latency(&row->lat, &v[TEN_P50]);
	/* this very connection in the operator's table: an observer, not worth a row */
	row->skip = x->all && v[TEN_PID].u == (uint64_t)getpid();
}

const struct listing listing_tenant_stats = {
	LISTING("tenants", tenant_stat_columns),
	.title = "Tenants (totals since each connected; latency: fault read to response written, "
		 "bucket upper bounds):",
	.method = "GetTenantMetrics",
	.method_all = "GetAllTenantMetrics",
	.row = IOPF_WIRE_TENANT_METRICS,
	.row_all = IOPF_WIRE_TENANT_METRICS,
	.derive = derive_tenant_stats,
};

enum {
	DOM_TENANT,
	DOM_ID,
	DOM_SOURCE,
	DOM_DEV,
	DOM_PASID,
	DOM_COUNTERS_0, /* FAULTS ... MAPPED */
	DOM_P50 = DOM_COUNTERS_0 + 7,
	DOM_WHY = DOM_P50 + 4,
	DOM_RATES,
	DOM_COUNTERS = DOM_RATES + 2,
	DOM_LATENCY,
};

static const struct column domain_stat_columns[] = {
	[DOM_TENANT] = {"TENANT", "tenant", CELL_U64, 0, COL_ALL},
	[DOM_ID] = {"DOMAIN", "id", CELL_U64, 1},
	[DOM_SOURCE] = {"SOURCE", "source", CELL_U64, 2},
	[DOM_DEV] = {"DEV", "dev_id", CELL_U64, 3},
	[DOM_PASID] = {"PASID", "pasid", CELL_PASID, 4},
	COUNTER_COLUMNS,
	LATENCY_COLUMNS,
	[DOM_WHY] = {"WHY-INVALID", NULL, CELL_STRING},
	RATE_COLUMNS,
	[DOM_COUNTERS] = {NULL, "counters", CELL_JSON, 5},
	[DOM_LATENCY] = {NULL, "latency", CELL_JSON, 6},
};

static void derive_domain_stats(struct ctx *x, const struct listing *l, struct row *row)
{
	derive_counters(&row->c, &row->v[DOM_COUNTERS_0]);
	row->v[DOM_WHY].s = row->c.why[0] ? row->c.why : "-";
	if (arg_watch > 0) /* percentiles over the interval, once there is one */
		watch_latency(&domain_rates, row->v[DOM_ID].u, row, &row->v[DOM_RATES],
			      &row->v[DOM_LATENCY]);
	derive_latency(&row->lat, &row->v[DOM_P50]);
}

const struct listing listing_domain_stats = {
	LISTING("domains", domain_stat_columns),
	.title = "Domains (live ones; counters since each was registered):",
	.method = "GetDomainMetrics",
	.method_all = "GetAllDomainMetrics",
	.row = IOPF_WIRE_DOMAIN_METRICS,
	.row_all = IOPF_WIRE_DOMAIN_METRICS_ALL,
	.derive = derive_domain_stats,
};

enum {
	SRC_TENANT,
	SRC_ID,
	SRC_COUNTERS_0, /* FAULTS ... MAPPED */
	SRC_WHY = SRC_COUNTERS_0 + 7,
	SRC_STATE,
	SRC_IO_ERRORS,
	SRC_COUNTERS,
};

static const struct column source_stat_columns[] = {
	[SRC_TENANT] = {"TENANT", "tenant", CELL_U64, 0, COL_ALL},
	[SRC_ID] = {"SOURCE", "source", CELL_U64, 1},
	COUNTER_COLUMNS,
	[SRC_WHY] = {"WHY-INVALID", NULL, CELL_STRING},
	[SRC_STATE] = {"STATE", NULL, CELL_STATE},
	[SRC_IO_ERRORS] = {"IO-ERRORS", NULL, CELL_U64, 0, COL_EXTRA},
	[SRC_COUNTERS] = {NULL, "counters", CELL_JSON, 2},
};

static void derive_source_stats(struct ctx *x, const struct listing *l, struct row *row)
{
	derive_counters(&row->c, &row->v[SRC_COUNTERS_0]);
	row->v[SRC_WHY].s = row->c.why[0] ? row->c.why : "-";
	row->v[SRC_STATE].u = row->c.broken;
	row->v[SRC_IO_ERRORS].u = row->c.io_errors;
}

const struct listing listing_source_stats = {
	LISTING("unrouted", source_stat_columns),
	.title = "Unrouted faults (no domain) and the health of each source:",
	.method = "GetSourceStats",
	.method_all = "GetAllSourceStats",
	.row = IOPF_WIRE_SOURCE_STATS,
	.row_all = IOPF_WIRE_SOURCE_STATS_ALL,
	.derive = derive_source_stats,
};

enum {
	DMN_FAULTS,
	DMN_GROUPS,
	DMN_REFUSED,
	DMN_STALE,
	DMN_P50, /* ... MAX */
	DMN_TENANTS = DMN_P50 + 4,
	DMN_COUNTERS,
	DMN_LATENCY,
};

static const struct column daemon_stat_columns[] = {
	[DMN_FAULTS] = {"FAULTS", NULL, CELL_U64},
	[DMN_GROUPS] = {"GROUPS", NULL, CELL_U64},
	[DMN_REFUSED] = {"REFUSED", NULL, CELL_U64},
	[DMN_STALE] = {"STALE", NULL, CELL_U64},
	LATENCY_COLUMNS,
	[DMN_TENANTS] = {"TENANTS", NULL, CELL_U64},
	[DMN_COUNTERS] = {NULL, "counters", CELL_JSON, 1},
	[DMN_LATENCY] = {NULL, "latency", CELL_JSON, 2},
};

static void derive_daemon_stats(struct ctx *x, const struct listing *l, struct row *row)
{
	row->v[DMN_FAULTS].u = row->c.faults;
	row->v[DMN_GROUPS].u = row->c.groups;
	row->v[DMN_REFUSED].u = row->c.invalid;
	row->v[DMN_STALE].u = row->c.stale;
	derive_latency(&row->lat, &row->v[DMN_P50]);
	row->v[DMN_TENANTS].u = row->c.tenants;
}

const struct listing listing_daemon_stats = {
	LISTING("daemon", daemon_stat_columns),
	.title = "iopfd since start (every tenant's, gone ones included; TENANTS: connected now):",
	.method = "GetDaemonMetrics",
	.method_all = "GetDaemonMetrics",
	.derive = derive_daemon_stats,
};
