/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iopfctl: look at what iopfd serves.
 *
 * A connection only ever sees its own objects, and iopfctl's connection owns
 * none, so by default root (the operator) asks for every tenant's objects
 * through the List*All / Get*All methods; --mine asks for the caller's own
 * (useful through a tenant's address, or to check the daemon is alive).
 *
 * "stats" shows totals per tenant, per domain (with latency percentiles from
 * the daemon's log-linear histograms) and unrouted faults per source; --watch
 * refreshes it with rates, --json prints one object (per frame).
 */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-bus.h>

#include "histogram.h"
#include "iopf/client.h"
#include "iopf/iopf.h"
#include "util.h"
#include "wire.h"

static const char *arg_address;
static bool arg_json;
static int arg_all = -1;	/* -1: uid 0 gets everything */
static double arg_watch;	/* seconds between refreshes; 0: once */
static unsigned arg_iterations; /* --watch frames; 0: until interrupted */

/* --- an aligned text table --- */

#define TABLE_MAX_COLS 24

struct table {
	unsigned n_cols;
	char **cells; /* owned; row-major, header first */
	size_t n_cells, cap;
};

static int table_add(struct table *t, const char *fmt, ...) _printf_(2, 3);
static int table_add(struct table *t, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int r;

	if (t->n_cells == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		char **cells = reallocarray(t->cells, cap, sizeof(*cells));

		if (!cells)
			return -ENOMEM;
		t->cells = cells;
		t->cap = cap;
	}
	va_start(ap, fmt);
	r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	t->cells[t->n_cells++] = s;
	return 0;
}

static void table_print(struct table *t)
{
	size_t width[TABLE_MAX_COLS] = {};

	for (size_t i = 0; i < t->n_cells; i++) {
		size_t w = strlen(t->cells[i]);

		if (w > width[i % t->n_cols])
			width[i % t->n_cols] = w;
	}
	for (size_t i = 0; i < t->n_cells; i++) {
		unsigned col = i % t->n_cols;
		bool last = col == t->n_cols - 1;

		if (last)
			printf("%s\n", t->cells[i]);
		else
			printf("%-*s ", (int)width[col], t->cells[i]);
	}
}

static void table_done(struct table *t)
{
	for (size_t i = 0; i < t->n_cells; i++)
		free(t->cells[i]);
	free(t->cells);
}

/* --- helpers --- */

static const char *pasid_str(uint32_t pasid, char buf[static 16])
{
	if (pasid == IOPF_PASID_NONE)
		return "none";
	snprintf(buf, 16, "0x%" PRIx32, pasid);
	return buf;
}

static const char *access_str(uint32_t a, char buf[static 8])
{
	snprintf(buf, 8, "%c%c%c%c", a & IOPF_ACCESS_READ ? 'r' : '-',
		 a & IOPF_ACCESS_WRITE ? 'w' : '-', a & IOPF_ACCESS_EXEC ? 'x' : '-',
		 a & IOPF_ACCESS_PRIV ? 'p' : '-');
	return buf;
}

static const char *bytes_str(uint64_t v, char buf[static 32])
{
	static const char units[] = "KMGTPE";
	unsigned i = 0;

	if (v < 1024) {
		snprintf(buf, 32, "%" PRIu64 "B", v);
		return buf;
	}
	while (i < sizeof(units) - 2 && v >= (UINT64_C(1024) << (10 * (i + 1))))
		i++;
	snprintf(buf, 32, "%.1f%ciB", (double)v / (double)(UINT64_C(1024) << (10 * i)), units[i]);
	return buf;
}

static void json_pasid(uint32_t pasid)
{
	if (pasid == IOPF_PASID_NONE)
		printf("null");
	else
		printf("%" PRIu32, pasid);
}

/* Counter names are ours ([a-z_]); backends too. Still, escape what JSON needs. */
static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static int call(sd_bus *bus, const char *destination, const char *method, sd_bus_message **ret)
{
	sd_bus_error error = SD_BUS_ERROR_NULL;
	int r;

	r = sd_bus_call_method(bus, destination, IOPF_DBUS_PATH, IOPF_DBUS_INTERFACE, method,
			       &error, ret, NULL);
	if (r < 0) {
		fprintf(stderr, "iopfctl: %s failed: %s\n", method,
			error.message ? error.message : strerror(-r));
		if (sd_bus_error_has_name(&error, IOPF_ERROR_ACCESS_DENIED))
			fprintf(stderr,
				"iopfctl: use --mine, or run as root to see every tenant\n");
	}
	sd_bus_error_free(&error);
	return r;
}

struct ctx {
	sd_bus *bus;
	const char *destination;
	bool all;
	bool first_section; /* JSON: no comma before the first key */
};

static void json_key(struct ctx *x, const char *key)
{
	printf("%s\"%s\":", x->first_section ? "" : ",", key);
	x->first_section = false;
}

static int parse_error(int r)
{
	fprintf(stderr, "iopfctl: unexpected reply: %s\n", strerror(-r));
	return r;
}

/* --- sources, domains, regions --- */

static int show_sources(struct ctx *x)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	struct table t = {.n_cols = x->all ? 4 : 3};
	uint64_t tenant = 0, id;
	uint32_t ioas;
	const char *backend;
	bool first = true;
	int r;

	r = call(x->bus, x->destination, x->all ? "ListAllSources" : "ListSources", &reply);
	if (r < 0)
		return r;
	r = sd_bus_message_enter_container(reply, 'a', x->all ? IOPF_WIRE_SOURCE_ALL : IOPF_WIRE_SOURCE);
	if (r < 0)
		return parse_error(r);
	if (arg_json)
		json_key(x, "sources"), printf("[");
	else {
		if (x->all)
			table_add(&t, "TENANT");
		table_add(&t, "SOURCE");
		table_add(&t, "IOAS");
		table_add(&t, "BACKEND");
	}
	for (;;) {
		if (x->all)
			r = sd_bus_message_read(reply, IOPF_WIRE_SOURCE_ALL, &tenant, &id, &ioas, &backend);
		else
			r = sd_bus_message_read(reply, IOPF_WIRE_SOURCE, &id, &ioas, &backend);
		if (r <= 0)
			break;
		if (arg_json) {
			printf("%s{", first ? "" : ",");
			if (x->all)
				printf("\"tenant\":%" PRIu64 ",", tenant);
			printf("\"id\":%" PRIu64 ",\"ioas_id\":%" PRIu32 ",\"backend\":", id, ioas);
			json_string(backend);
			printf("}");
		} else {
			if (x->all)
				table_add(&t, "%" PRIu64, tenant);
			table_add(&t, "%" PRIu64, id);
			table_add(&t, "%" PRIu32, ioas);
			table_add(&t, "%s", backend);
		}
		first = false;
	}
	if (r < 0) {
		table_done(&t);
		return parse_error(r);
	}
	if (arg_json)
		printf("]");
	else
		table_print(&t);
	table_done(&t);
	return 0;
}

static int show_domains(struct ctx *x)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	struct table t = {.n_cols = x->all ? 5 : 4};
	uint64_t tenant = 0, id, source;
	uint32_t dev, pasid;
	bool first = true;
	char pbuf[16];
	int r;

	r = call(x->bus, x->destination, x->all ? "ListAllDomains" : "ListDomains", &reply);
	if (r < 0)
		return r;
	r = sd_bus_message_enter_container(reply, 'a', x->all ? IOPF_WIRE_DOMAIN_ALL : IOPF_WIRE_DOMAIN);
	if (r < 0)
		return parse_error(r);
	if (arg_json)
		json_key(x, "domains"), printf("[");
	else {
		if (x->all)
			table_add(&t, "TENANT");
		table_add(&t, "DOMAIN");
		table_add(&t, "SOURCE");
		table_add(&t, "DEV");
		table_add(&t, "PASID");
	}
	for (;;) {
		if (x->all)
			r = sd_bus_message_read(reply, IOPF_WIRE_DOMAIN_ALL, &tenant, &id, &source, &dev,
						&pasid);
		else
			r = sd_bus_message_read(reply, IOPF_WIRE_DOMAIN, &id, &source, &dev, &pasid);
		if (r <= 0)
			break;
		if (arg_json) {
			printf("%s{", first ? "" : ",");
			if (x->all)
				printf("\"tenant\":%" PRIu64 ",", tenant);
			printf("\"id\":%" PRIu64 ",\"source\":%" PRIu64 ",\"dev_id\":%" PRIu32
			       ",\"pasid\":",
			       id, source, dev);
			json_pasid(pasid);
			printf("}");
		} else {
			if (x->all)
				table_add(&t, "%" PRIu64, tenant);
			table_add(&t, "%" PRIu64, id);
			table_add(&t, "%" PRIu64, source);
			table_add(&t, "%" PRIu32, dev);
			table_add(&t, "%s", pasid_str(pasid, pbuf));
		}
		first = false;
	}
	if (r < 0) {
		table_done(&t);
		return parse_error(r);
	}
	if (arg_json)
		printf("]");
	else
		table_print(&t);
	table_done(&t);
	return 0;
}

static int show_regions(struct ctx *x)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	struct table t = {.n_cols = x->all ? 7 : 6};
	uint64_t tenant = 0, id, domain, iova, length;
	uint32_t access;
	bool first = true;
	char abuf[8], bbuf[32];
	int r;

	r = call(x->bus, x->destination, x->all ? "ListAllRegions" : "ListRegions", &reply);
	if (r < 0)
		return r;
	r = sd_bus_message_enter_container(reply, 'a', x->all ? IOPF_WIRE_REGION_ALL : IOPF_WIRE_REGION);
	if (r < 0)
		return parse_error(r);
	if (arg_json)
		json_key(x, "regions"), printf("[");
	else {
		if (x->all)
			table_add(&t, "TENANT");
		table_add(&t, "REGION");
		table_add(&t, "DOMAIN");
		table_add(&t, "IOVA");
		table_add(&t, "END");
		table_add(&t, "SIZE");
		table_add(&t, "ACCESS");
	}
	for (;;) {
		if (x->all)
			r = sd_bus_message_read(reply, IOPF_WIRE_REGION_ALL, &tenant, &id, &domain, &iova,
						&length, &access);
		else
			r = sd_bus_message_read(reply, IOPF_WIRE_REGION, &id, &domain, &iova, &length,
						&access);
		if (r <= 0)
			break;
		if (arg_json) {
			printf("%s{", first ? "" : ",");
			if (x->all)
				printf("\"tenant\":%" PRIu64 ",", tenant);
			printf("\"id\":%" PRIu64 ",\"domain\":%" PRIu64 ",\"iova\":%" PRIu64
			       ",\"length\":%" PRIu64 ",\"access\":%" PRIu32
			       ",\"access_flags\":\"%s\"}",
			       id, domain, iova, length, access, access_str(access, abuf));
		} else {
			if (x->all)
				table_add(&t, "%" PRIu64, tenant);
			table_add(&t, "%" PRIu64, id);
			table_add(&t, "%" PRIu64, domain);
			table_add(&t, "0x%" PRIx64, iova);
			table_add(&t, "0x%" PRIx64, iova + length);
			table_add(&t, "%s", bytes_str(length, bbuf));
			table_add(&t, "%s", access_str(access, abuf));
		}
		first = false;
	}
	if (r < 0) {
		table_done(&t);
		return parse_error(r);
	}
	if (arg_json)
		printf("]");
	else
		table_print(&t);
	table_done(&t);
	return 0;
}

/* --- statistics --- */

/* The counters a table shows; JSON has all of them. */
static const char *const stat_columns[] = {"faults", "groups",	     "success",	    "invalid",
					   "stale",  "pages_mapped", "bytes_mapped"};
/* Counter names that are reasons of INVALID answers (shown as "why"). */
static const char *const invalid_reasons[] = {"no_handler", "outside_region", "permission",
					      "map_error",  "bad_record",     "retired"};

struct counters {
	uint64_t col[ARRAY_SIZE(stat_columns)];
	char why[160];
};

/* Read an a{st}: print it as a JSON object, or collect columns and reasons. */
static int read_counters(sd_bus_message *reply, struct counters *c)
{
	const char *key;
	uint64_t v;
	bool first = true;
	size_t len = 0;
	int r;

	*c = (struct counters){};
	r = sd_bus_message_enter_container(reply, 'a', "{st}");
	if (r < 0)
		return r;
	if (arg_json)
		printf("{");
	while ((r = sd_bus_message_read(reply, "{st}", &key, &v)) > 0) {
		if (arg_json) {
			printf("%s", first ? "" : ",");
			json_string(key);
			printf(":%" PRIu64, v);
			first = false;
			continue;
		}
		for (size_t i = 0; i < ARRAY_SIZE(stat_columns); i++)
			if (strcmp(key, stat_columns[i]) == 0)
				c->col[i] = v;
		for (size_t i = 0; i < ARRAY_SIZE(invalid_reasons); i++)
			if (v && strcmp(key, invalid_reasons[i]) == 0 && len < sizeof(c->why))
				len += snprintf(c->why + len, sizeof(c->why) - len, "%s%s=%" PRIu64,
						len ? "," : "", key, v);
	}
	if (r < 0)
		return r;
	if (arg_json)
		printf("}");
	return sd_bus_message_exit_container(reply);
}

static void table_counters(struct table *t, const struct counters *c)
{
	char bbuf[32];

	for (size_t i = 0; i < ARRAY_SIZE(stat_columns); i++)
		if (strcmp(stat_columns[i], "bytes_mapped") == 0)
			table_add(t, "%s", bytes_str(c->col[i], bbuf));
		else
			table_add(t, "%" PRIu64, c->col[i]);
}

static void table_counter_header(struct table *t)
{
	static const char *const names[] = {"FAULTS", "GROUPS", "SUCCESS", "INVALID",
					    "STALE",  "PAGES",	"MAPPED"};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		table_add(t, "%s", names[i]);
}

/* --- latency --- */

/* The percentiles a table shows: the upper bound of the bucket holding each. */
static const struct {
	const char *header, *json;
	double q;
} percentiles[] = {
	{"P50", "p50_ns", 0.50},
	{"P99", "p99_ns", 0.99},
	{"P99.9", "p999_ns", 0.999},
};

/* Bucket bounds are round (1, 2, ... 9 times a power of ten): print them exactly. */
static const char *dur_str(uint64_t ns, char buf[static 24])
{
	if (ns == 0)
		snprintf(buf, 24, "-");
	else if (ns == UINT64_MAX)
		snprintf(buf, 24, ">10s");
	else if (ns % 1000000000 == 0)
		snprintf(buf, 24, "%" PRIu64 "s", ns / 1000000000);
	else if (ns % 1000000 == 0)
		snprintf(buf, 24, "%" PRIu64 "ms", ns / 1000000);
	else if (ns % 1000 == 0)
		snprintf(buf, 24, "%" PRIu64 "us", ns / 1000);
	else
		snprintf(buf, 24, "%" PRIu64 "ns", ns);
	return buf;
}

/* The bound of the highest non-empty bucket: what the slowest response stayed under. */
static uint64_t latency_max_ns(const struct iopf_histogram *l)
{
	for (unsigned i = IOPF_HIST_BUCKETS; i-- > 0;)
		if (l->bucket[i])
			return iopf_histogram_bound_ns(i);
	return 0;
}

static int read_latency(sd_bus_message *reply, struct iopf_histogram *l)
{
	const void *buckets;
	size_t size;
	int r;

	*l = (struct iopf_histogram){};
	r = sd_bus_message_enter_container(reply, 'r', "ttat");
	if (r >= 0)
		r = sd_bus_message_read(reply, "tt", &l->count, &l->sum_ns);
	if (r >= 0)
		r = sd_bus_message_read_array(reply, 't', &buckets, &size);
	if (r < 0)
		return r;
	memcpy(l->bucket, buckets, size < sizeof(l->bucket) ? size : sizeof(l->bucket));
	return sd_bus_message_exit_container(reply);
}

static void json_latency(const struct iopf_histogram *l)
{
	bool first = true;

	printf("{\"count\":%" PRIu64 ",\"sum_ns\":%" PRIu64, l->count, l->sum_ns);
	for (size_t i = 0; i < ARRAY_SIZE(percentiles); i++) {
		uint64_t v = iopf_histogram_quantile(l, percentiles[i].q);

		printf(",\"%s\":", percentiles[i].json);
		if (v == UINT64_MAX)
			printf("null"); /* above 10 s */
		else
			printf("%" PRIu64, v);
	}
	/* non-empty buckets only; "le_ns" null is the overflow bucket */
	printf(",\"buckets\":[");
	for (unsigned i = 0; i < IOPF_HIST_BUCKETS; i++) {
		uint64_t b = iopf_histogram_bound_ns(i);

		if (!l->bucket[i])
			continue;
		printf("%s{\"le_ns\":", first ? "" : ",");
		if (b == UINT64_MAX)
			printf("null");
		else
			printf("%" PRIu64, b);
		printf(",\"count\":%" PRIu64 "}", l->bucket[i]);
		first = false;
	}
	printf("]}");
}

static void table_latency_header(struct table *t)
{
	for (size_t i = 0; i < ARRAY_SIZE(percentiles); i++)
		table_add(t, "%s", percentiles[i].header);
}

static void table_latency(struct table *t, const struct iopf_histogram *l)
{
	char dbuf[24];

	for (size_t i = 0; i < ARRAY_SIZE(percentiles); i++)
		table_add(t, "%s",
			  dur_str(iopf_histogram_quantile(l, percentiles[i].q), dbuf));
}

/* --- per-tenant totals, with rates between --watch frames --- */

struct rate_prev {
	uint64_t tenant, groups;
};

struct rates {
	struct rate_prev *prev, *cur; /* owned */
	size_t n_prev, n_cur, cap;
	double elapsed; /* seconds since the previous frame; 0 on the first */
};

static double rate_of(struct rates *rt, uint64_t tenant, uint64_t groups)
{
	if (rt->n_cur < rt->cap)
		rt->cur[rt->n_cur++] = (struct rate_prev){tenant, groups};
	if (rt->elapsed <= 0)
		return NAN;
	for (size_t i = 0; i < rt->n_prev; i++)
		if (rt->prev[i].tenant == tenant && rt->prev[i].groups <= groups)
			return (double)(groups - rt->prev[i].groups) / rt->elapsed;
	return NAN;
}

static int show_tenant_stats(struct ctx *x, struct rates *rt)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	struct table t = {.n_cols = 13 + (arg_watch > 0)};
	struct iopf_histogram l;
	uint64_t tenant;
	uint32_t uid, pid;
	const char *name;
	struct counters c;
	bool first = true;
	char dbuf[24];
	int r;

	r = call(x->bus, x->destination, x->all ? "GetAllTenantMetrics" : "GetTenantMetrics",
		 &reply);
	if (r < 0)
		return r;
	r = sd_bus_message_enter_container(reply, 'a', IOPF_WIRE_TENANT_METRICS);
	if (r < 0)
		return parse_error(r);
	if (arg_json)
		json_key(x, "tenants"), printf("[");
	else {
		table_add(&t, "TENANT");
		table_add(&t, "UID");
		table_add(&t, "PID");
		table_add(&t, "FAULTS");
		table_add(&t, "GROUPS");
		table_add(&t, "REFUSED");
		table_add(&t, "STALE");
		table_add(&t, "PINNED");
		table_latency_header(&t);
		table_add(&t, "MAX");
		if (arg_watch > 0)
			table_add(&t, "GROUPS/S");
		table_add(&t, "NAME");
	}
	while ((r = sd_bus_message_enter_container(reply, 'r', "tuusa{st}(ttat)")) > 0) {
		r = sd_bus_message_read(reply, "tuus", &tenant, &uid, &pid, &name);
		if (r < 0)
			break;
		if (arg_json) {
			printf("%s{\"tenant\":%" PRIu64 ",\"uid\":%" PRIu32 ",\"pid\":%" PRIu32
			       ",\"name\":",
			       first ? "" : ",", tenant, uid, pid);
			json_string(name);
			printf(",\"counters\":");
		}
		r = read_counters(reply, &c);
		if (r >= 0)
			r = read_latency(reply, &l);
		if (r < 0)
			break;
		if (arg_json) {
			printf(",\"latency\":");
			json_latency(&l);
			printf("}");
		} else if (x->all && pid == (uint32_t)getpid()) {
			/* this very connection: an observer, not worth a row */
		} else {
			char bbuf[32];
			double rate = rate_of(rt, tenant, c.col[1]);

			table_add(&t, "%" PRIu64, tenant);
			table_add(&t, "%" PRIu32, uid);
			table_add(&t, "%" PRIu32, pid);
			table_add(&t, "%" PRIu64, c.col[0]);
			table_add(&t, "%" PRIu64, c.col[1]);
			table_add(&t, "%" PRIu64, c.col[3]);
			table_add(&t, "%" PRIu64, c.col[4]);
			table_add(&t, "%s", bytes_str(c.col[6], bbuf));
			table_latency(&t, &l);
			table_add(&t, "%s", dur_str(latency_max_ns(&l), dbuf));
			if (arg_watch > 0) {
				if (isnan(rate))
					table_add(&t, "-");
				else
					table_add(&t, "%.0f", rate);
			}
			table_add(&t, "%s", name);
		}
		first = false;
		r = sd_bus_message_exit_container(reply);
		if (r < 0)
			break;
	}
	if (r < 0) {
		table_done(&t);
		return parse_error(r);
	}
	if (arg_json)
		printf("]");
	else {
		printf("Tenants (totals since each connected; latency: fault read to response "
		       "written, bucket upper bounds):\n");
		table_print(&t);
	}
	table_done(&t);
	return 0;
}

static int show_domain_stats(struct ctx *x)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	const char *row = x->all ? "tttuua{st}(ttat)" : "ttuua{st}(ttat)";
	struct table t = {.n_cols = (x->all ? 5 : 4) + ARRAY_SIZE(stat_columns) +
				    ARRAY_SIZE(percentiles) + 1};
	struct iopf_histogram l;
	uint64_t tenant = 0, id, source;
	uint32_t dev, pasid;
	struct counters c;
	bool first = true;
	char pbuf[16];
	int r;

	r = call(x->bus, x->destination, x->all ? "GetAllDomainMetrics" : "GetDomainMetrics",
		 &reply);
	if (r < 0)
		return r;
	r = sd_bus_message_enter_container(reply, 'a',
					   x->all ? IOPF_WIRE_DOMAIN_METRICS_ALL : IOPF_WIRE_DOMAIN_METRICS);
	if (r < 0)
		return parse_error(r);
	if (arg_json)
		json_key(x, "domains"), printf("[");
	else {
		if (x->all)
			table_add(&t, "TENANT");
		table_add(&t, "DOMAIN");
		table_add(&t, "SOURCE");
		table_add(&t, "DEV");
		table_add(&t, "PASID");
		table_counter_header(&t);
		table_latency_header(&t);
		table_add(&t, "WHY-INVALID");
	}
	while ((r = sd_bus_message_enter_container(reply, 'r', row)) > 0) {
		if (x->all)
			r = sd_bus_message_read(reply, "tttuu", &tenant, &id, &source, &dev,
						&pasid);
		else
			r = sd_bus_message_read(reply, "ttuu", &id, &source, &dev, &pasid);
		if (r < 0)
			break;
		if (arg_json) {
			printf("%s{", first ? "" : ",");
			if (x->all)
				printf("\"tenant\":%" PRIu64 ",", tenant);
			printf("\"id\":%" PRIu64 ",\"source\":%" PRIu64 ",\"dev_id\":%" PRIu32
			       ",\"pasid\":",
			       id, source, dev);
			json_pasid(pasid);
			printf(",\"counters\":");
		}
		r = read_counters(reply, &c);
		if (r >= 0)
			r = read_latency(reply, &l);
		if (r < 0)
			break;
		if (arg_json) {
			printf(",\"latency\":");
			json_latency(&l);
			printf("}");
		} else {
			if (x->all)
				table_add(&t, "%" PRIu64, tenant);
			table_add(&t, "%" PRIu64, id);
			table_add(&t, "%" PRIu64, source);
			table_add(&t, "%" PRIu32, dev);
			table_add(&t, "%s", pasid_str(pasid, pbuf));
			table_counters(&t, &c);
			table_latency(&t, &l);
			table_add(&t, "%s", c.why[0] ? c.why : "-");
		}
		first = false;
		r = sd_bus_message_exit_container(reply);
		if (r < 0)
			break;
	}
	if (r < 0) {
		table_done(&t);
		return parse_error(r);
	}
	if (arg_json)
		printf("]");
	else {
		printf("\nDomains (live ones; counters since each was registered):\n");
		table_print(&t);
	}
	table_done(&t);
	return 0;
}

static int show_source_stats(struct ctx *x)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	const char *row = x->all ? "tta{st}" : "ta{st}";
	struct table t = {.n_cols = (x->all ? 2 : 1) + ARRAY_SIZE(stat_columns) + 1};
	uint64_t tenant = 0, id;
	struct counters c;
	bool first = true;
	int r;

	r = call(x->bus, x->destination, x->all ? "GetAllSourceStats" : "GetSourceStats", &reply);
	if (r < 0)
		return r;
	r = sd_bus_message_enter_container(reply, 'a', x->all ? IOPF_WIRE_SOURCE_STATS_ALL : IOPF_WIRE_SOURCE_STATS);
	if (r < 0)
		return parse_error(r);
	if (arg_json)
		json_key(x, "unrouted"), printf("[");
	else {
		if (x->all)
			table_add(&t, "TENANT");
		table_add(&t, "SOURCE");
		table_counter_header(&t);
		table_add(&t, "WHY-INVALID");
	}
	while ((r = sd_bus_message_enter_container(reply, 'r', row)) > 0) {
		if (x->all)
			r = sd_bus_message_read(reply, "tt", &tenant, &id);
		else
			r = sd_bus_message_read(reply, "t", &id);
		if (r < 0)
			break;
		if (arg_json) {
			printf("%s{", first ? "" : ",");
			if (x->all)
				printf("\"tenant\":%" PRIu64 ",", tenant);
			printf("\"source\":%" PRIu64 ",\"counters\":", id);
		}
		r = read_counters(reply, &c);
		if (r < 0)
			break;
		if (arg_json) {
			printf("}");
		} else {
			if (x->all)
				table_add(&t, "%" PRIu64, tenant);
			table_add(&t, "%" PRIu64, id);
			table_counters(&t, &c);
			table_add(&t, "%s", c.why[0] ? c.why : "-");
		}
		first = false;
		r = sd_bus_message_exit_container(reply);
		if (r < 0)
			break;
	}
	if (r < 0) {
		table_done(&t);
		return parse_error(r);
	}
	if (arg_json)
		printf("]");
	else {
		printf("\nUnrouted faults (no domain) per source:\n");
		table_print(&t);
	}
	table_done(&t);
	return 0;
}

/* The daemon's totals since it started (root): one line, or a JSON section. */
static int show_daemon_stats(struct ctx *x)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	struct iopf_histogram l;
	struct counters c;
	char b[4][24];
	int r;

	r = call(x->bus, x->destination, "GetDaemonMetrics", &reply);
	if (r < 0)
		return r;
	if (arg_json) {
		json_key(x, "daemon");
		printf("{\"counters\":");
	}
	r = read_counters(reply, &c);
	if (r >= 0)
		r = read_latency(reply, &l);
	if (r < 0)
		return parse_error(r);
	if (arg_json) {
		printf(",\"latency\":");
		json_latency(&l);
		printf("}");
		return 0;
	}
	printf("\niopfd since start: %" PRIu64 " faults, %" PRIu64 " groups answered (%" PRIu64
	       " refused, %" PRIu64 " stale); latency p50 %s, p99 %s, p99.9 %s, max %s\n",
	       c.col[0], c.col[1], c.col[3], c.col[4],
	       dur_str(iopf_histogram_quantile(&l, 0.5), b[0]),
	       dur_str(iopf_histogram_quantile(&l, 0.99), b[1]),
	       dur_str(iopf_histogram_quantile(&l, 0.999), b[2]),
	       dur_str(latency_max_ns(&l), b[3]));
	return 0;
}

static int show_stats(struct ctx *x, struct rates *rt)
{
	int r;

	r = show_tenant_stats(x, rt);
	if (r >= 0)
		r = show_domain_stats(x);
	if (r >= 0)
		r = show_source_stats(x);
	if (r >= 0 && x->all)
		r = show_daemon_stats(x);
	return r;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* stats, once or every arg_watch seconds; with --json one object per frame (a line each). */
static int watch_stats(struct ctx *x)
{
	struct rates rt = {.cap = 4096};
	bool tty = isatty(STDOUT_FILENO);
	double last = 0;
	int r = 0;

	rt.prev = calloc(rt.cap, sizeof(*rt.prev));
	rt.cur = calloc(rt.cap, sizeof(*rt.cur));
	if (!rt.prev || !rt.cur) {
		free(rt.prev);
		free(rt.cur);
		return -ENOMEM;
	}
	for (unsigned frame = 0;; frame++) {
		double now = now_s();

		rt.elapsed = last > 0 ? now - last : 0;
		last = now;
		rt.n_cur = 0;
		if (arg_watch > 0 && !arg_json) {
			time_t wall = time(NULL);
			char when[64];

			strftime(when, sizeof(when), "%F %T", localtime(&wall));
			if (tty)
				printf("\033[H\033[2J"); /* home, clear */
			printf("iopfctl stats every %gs, %s (Ctrl-C to stop)\n\n", arg_watch, when);
		}
		x->first_section = true;
		if (arg_json)
			printf("{");
		r = show_stats(x, &rt);
		if (arg_json && r >= 0)
			printf("}\n");
		fflush(stdout);
		if (r < 0 || arg_watch <= 0)
			break;
		if (arg_iterations && frame + 1 >= arg_iterations)
			break;
		/* this frame's totals are the next one's baseline */
		memcpy(rt.prev, rt.cur, rt.n_cur * sizeof(*rt.cur));
		rt.n_prev = rt.n_cur;
		struct timespec ts = {.tv_sec = (time_t)arg_watch,
				      .tv_nsec = (long)((arg_watch - floor(arg_watch)) * 1e9)};
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	free(rt.prev);
	free(rt.cur);
	return r;
}

/* --- main --- */

static void help(void)
{
	printf("Usage: iopfctl [OPTIONS] COMMAND\n\n"
	       "Show what iopfd serves.\n\n"
	       "Commands:\n"
	       "  list       sources, domains and regions\n"
	       "  sources    fault sources\n"
	       "  domains    domains (device, PASID handlers)\n"
	       "  regions    memory regions\n"
	       "  stats      per tenant and per domain: counters and fault latency\n"
	       "             percentiles; unrouted faults per source; daemon totals (root)\n\n"
	       "Options:\n"
	       "  --address ADDR   D-Bus address, or \"system\" (default $%s or %s)\n"
	       "  --json           JSON instead of tables\n"
	       "  --all            every tenant's objects (uid 0; the default for root)\n"
	       "  --mine           only this connection's objects (the default otherwise)\n"
	       "  --watch[=SECS]   stats: refresh every SECS seconds (default 2), with rates\n"
	       "  -n --iterations N  stats --watch: stop after N frames\n"
	       "  -h --help        this help\n",
	       IOPF_ADDRESS_ENV, IOPF_DEFAULT_ADDRESS);
}

static int connect_bus(const char *address, sd_bus **ret, const char **ret_destination)
{
	sd_bus *bus = NULL;
	int r;

	if (!address)
		address = getenv(IOPF_ADDRESS_ENV);
	if (!address || !*address)
		address = IOPF_DEFAULT_ADDRESS;
	if (strcmp(address, "system") == 0) {
		*ret_destination = IOPF_DBUS_NAME;
		r = sd_bus_open_system(&bus);
	} else {
		*ret_destination = NULL;
		r = sd_bus_new(&bus);
		if (r >= 0)
			r = sd_bus_set_address(bus, address);
		if (r >= 0)
			r = sd_bus_start(bus);
	}
	if (r < 0) {
		fprintf(stderr, "iopfctl: cannot connect to %s: %s\n", address, strerror(-r));
		sd_bus_unref(bus);
		return r;
	}
	*ret = bus;
	return 0;
}

static int parse_seconds(const char *s, double *ret)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0.05 && v <= 3600))
		return -EINVAL;
	*ret = v;
	return 0;
}

int main(int argc, char *argv[])
{
	enum { ARG_ADDRESS = 0x100, ARG_JSON, ARG_ALL, ARG_MINE, ARG_WATCH };
	static const struct option options[] = {
		{"address", required_argument, NULL, ARG_ADDRESS},
		{"json", no_argument, NULL, ARG_JSON},
		{"all", no_argument, NULL, ARG_ALL},
		{"mine", no_argument, NULL, ARG_MINE},
		{"watch", optional_argument, NULL, ARG_WATCH},
		{"iterations", required_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{},
	};
	struct ctx x = {.first_section = true};
	const char *cmd;
	char *end;
	int c, r = 0;

	while ((c = getopt_long(argc, argv, "hn:", options, NULL)) >= 0) {
		switch (c) {
		case ARG_ADDRESS:
			arg_address = optarg;
			break;
		case ARG_JSON:
			arg_json = true;
			break;
		case ARG_ALL:
			arg_all = 1;
			break;
		case ARG_MINE:
			arg_all = 0;
			break;
		case ARG_WATCH:
			arg_watch = 2;
			if (optarg && parse_seconds(optarg, &arg_watch) < 0) {
				fprintf(stderr, "iopfctl: --watch=%s: not 0.05 to 3600 seconds\n",
					optarg);
				return EXIT_FAILURE;
			}
			break;
		case 'n':
			errno = 0;
			arg_iterations = (unsigned)strtoul(optarg, &end, 10);
			if (errno || *end || !*optarg || arg_iterations == 0) {
				fprintf(stderr, "iopfctl: --iterations=%s: not a positive number\n",
					optarg);
				return EXIT_FAILURE;
			}
			break;
		case 'h':
			help();
			return EXIT_SUCCESS;
		default:
			return EXIT_FAILURE;
		}
	}
	cmd = optind < argc ? argv[optind] : "list";
	if (optind + 1 < argc) {
		fprintf(stderr, "iopfctl: unexpected argument %s\n", argv[optind + 1]);
		return EXIT_FAILURE;
	}
	if (strcmp(cmd, "list") != 0 && strcmp(cmd, "sources") != 0 &&
	    strcmp(cmd, "domains") != 0 && strcmp(cmd, "regions") != 0 &&
	    strcmp(cmd, "stats") != 0) {
		fprintf(stderr, "iopfctl: unknown command %s (see --help)\n", cmd);
		return EXIT_FAILURE;
	}
	if (arg_watch > 0 && strcmp(cmd, "stats") != 0) {
		fprintf(stderr, "iopfctl: --watch goes with stats\n");
		return EXIT_FAILURE;
	}
	x.all = arg_all < 0 ? geteuid() == 0 : arg_all;

	r = connect_bus(arg_address, &x.bus, &x.destination);
	if (r < 0)
		return EXIT_FAILURE;

	if (strcmp(cmd, "stats") == 0) {
		r = watch_stats(&x);
		goto done;
	}
	if (arg_json)
		printf("{");
	if (strcmp(cmd, "list") == 0) {
		r = show_sources(&x);
		if (r >= 0 && !arg_json)
			printf("\n");
		if (r >= 0)
			r = show_domains(&x);
		if (r >= 0 && !arg_json)
			printf("\n");
		if (r >= 0)
			r = show_regions(&x);
	} else if (strcmp(cmd, "sources") == 0)
		r = show_sources(&x);
	else if (strcmp(cmd, "domains") == 0)
		r = show_domains(&x);
	else
		r = show_regions(&x);
	if (arg_json && r >= 0)
		printf("}\n");
done:
	if (r >= 0 && !x.all && !arg_json && isatty(STDERR_FILENO))
		fprintf(stderr, "(this connection's own objects only: a fresh connection has none; "
				"root sees every tenant)\n");
	sd_bus_flush_close_unref(x.bus);
	return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
