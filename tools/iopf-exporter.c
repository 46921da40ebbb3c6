/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iopf-exporter: iopfd's metrics in the Prometheus text exposition format
 * (version 0.0.4), served over HTTP (GET /metrics) on 127.0.0.1:9577 by
 * default ([Metrics] Listen= in iopfd.conf, or a socket systemd passes).
 *
 * A separate process on purpose: it holds no tenant fd and cannot touch the
 * data plane. It asks iopfd over D-Bus, like iopfctl, on every scrape; every
 * tenant's numbers need uid 0 or a uid of iopfd's [Metrics] Readers=. When
 * iopfd is not there it still answers, with iopfd_up 0.
 *
 * Families: iopfd_* (the daemon since it started, monotonic across tenants
 * coming and going), iopfd_tenant_* (per tenant: its name and uid, or its
 * uid, summed over its connections, see tenant_labels()) and, with --per-domain, iopfd_domain_*
 * (per live domain). Names follow Prometheus': base units (seconds, bytes)
 * last, counters in _total. Latency (fault read to response written) is a
 * histogram in seconds with 20 buckets made from iopfd's 65 finer ones. The
 * body is gzip'ed when the scraper asks for it.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <zlib.h>

#include "conf.h"
#include "histogram.h"
#include "iopf/client.h"
#include "iopf/iopf.h"
#include "list.h"
#include "util.h"
#include "wire-bus.h"

#define REQUEST_MAX	8192 /* request line and headers */
#define CONNECTIONS_MAX 32
#define IDLE_USEC	(UINT64_C(10) * 1000000) /* a client gets this long per request */
#define CALL_USEC	(UINT64_C(5) * 1000000)	 /* per D-Bus call to iopfd */
#define LISTEN_FDS_MAX	8

static const char *arg_config;
static const char *arg_listen;
static const char *arg_address;
static int arg_per_domain = -1;

/* --- what iopfd reports --- */

/* Counter names of iopfd's a{st} dictionaries that the exporter knows. */
enum field {
	F_FAULTS,
	F_GROUPS,
	F_SUCCESS,
	F_INVALID,
	F_STALE,
	F_PAGES_MAPPED,
	F_MAPS,
	F_COALESCED,
	F_BYTES_MAPPED,
	F_SOURCES,
	F_DOMAINS,
	F_REGIONS,
	F_REGION_BYTES,
	F_TENANTS,
	F_REASON0, /* then one per reason, in enum iopf_reason order */
	_F_MAX = F_REASON0 + _IOPF_REASON_MAX,
};

static const char *const field_names[F_REASON0] = {
	[F_FAULTS] = "faults",
	[F_GROUPS] = "groups",
	[F_SUCCESS] = "success",
	[F_INVALID] = "invalid",
	[F_STALE] = "stale",
	[F_PAGES_MAPPED] = "pages_mapped",
	[F_MAPS] = "maps",
	[F_COALESCED] = "coalesced",
	[F_BYTES_MAPPED] = "bytes_mapped",
	[F_SOURCES] = "sources",
	[F_DOMAINS] = "domains",
	[F_REGIONS] = "regions",
	[F_REGION_BYTES] = "region_bytes",
	[F_TENANTS] = "tenants",
};

struct row {
	char labels[320]; /* preformatted: uid="1000" (tenant_labels()), then a domain's */
	uint64_t tenant;  /* iopfd's id of the tenant (its connection) */
	uint32_t uid, pid;
	unsigned connections; /* tenants behind the row (aggregated rows) */
	uint64_t v[_F_MAX];
	struct iopf_histogram lat;
};

/* What a tenant's counter fields hold now rather than since it connected. */
static bool field_is_gauge(unsigned f)
{
	return f == F_BYTES_MAPPED || f == F_SOURCES || f == F_DOMAINS || f == F_REGIONS ||
	       f == F_REGION_BYTES || f == F_TENANTS;
}

/*
 * The labels of a tenant's series (iopfd_tenant_*, and the first ones of
 * iopfd_domain_*): what names a tenant across reconnects, never the id of its
 * connection: its name (a systemd unit, or what it gave with SetName) and
 * uid when it has one, else its uid alone. iopfd's fallbacks, "pid N uid M"
 * on the socket and the unique name ":1.42" on the system bus, name one
 * connection, so they are no label. The exporter groups tenants by the string
 * made here; SUMS_MAX bounds how many label sets it keeps.
 */
static bool name_is_stable(const char *name, uint32_t uid, uint32_t pid)
{
	char fallback[48];

	if (!name || !*name || name[0] == ':')
		return false;
	(void)snprintf(fallback, sizeof(fallback), "pid %" PRIu32 " uid %" PRIu32, pid, uid);
	return strcmp(name, fallback) != 0;
}

/* A label value as the text format wants it: \\, \" and \n escaped. */
static void label_value(const char *v, char *buf, size_t size)
{
	size_t n = 0;

	for (; *v && n + 3 < size; v++) {
		if (*v == '\\' || *v == '"' || *v == '\n') {
			buf[n++] = '\\';
			buf[n++] = *v == '\n' ? 'n' : *v;
		} else
			buf[n++] = *v;
	}
	buf[n] = '\0';
}

static void tenant_labels(const struct row *tenant, const char *name, char *buf, size_t size)
{
	char v[160]; /* a long unit name cut, never an escape */

	if (!name_is_stable(name, tenant->uid, tenant->pid)) {
		(void)snprintf(buf, size, "uid=\"%" PRIu32 "\"", tenant->uid);
		return;
	}
	label_value(name, v, sizeof(v));
	(void)snprintf(buf, size, "name=\"%s\",uid=\"%" PRIu32 "\"", v, tenant->uid);
}

struct snapshot {
	bool up;
	char version[32];
	uint32_t workers;
	struct row daemon;
	bool have_daemon;	       /* needs uid 0 */
	struct row *tenants, *domains; /* tenants by id */
	size_t n_tenants, n_domains;
	bool have_tenants; /* needs uid 0 */
	unsigned denied;   /* calls refused with AccessDenied */
};

static void snapshot_done(struct snapshot *s)
{
	free(s->tenants);
	free(s->domains);
	*s = (struct snapshot){};
}

static int push_row(struct row **v, size_t *n, struct row **ret)
{
	struct row *p = reallocarray(*v, *n + 1, sizeof(**v));

	if (!p)
		return -ENOMEM;
	*v = p;
	*ret = &p[(*n)++];
	**ret = (struct row){};
	return 0;
}

static void row_set(const char *key, uint64_t v, void *userdata)
{
	struct row *row = userdata;

	for (unsigned i = 0; i < F_REASON0; i++)
		if (strcmp(key, field_names[i]) == 0)
			row->v[i] = v;
	for (unsigned i = 0; i < _IOPF_REASON_MAX; i++)
		if (strcmp(key, iopf_wire_reason_name(i)) == 0)
			row->v[F_REASON0 + i] = v;
}

static int read_fields(sd_bus_message *m, struct row *row)
{
	return iopf_wire_read_counters(m, row_set, row);
}

struct daemon_link {
	sd_bus *bus; /* owned; NULL until connected, dropped on failure */
	char *address;
	const char *destination;
};

static int link_connect(struct daemon_link *d)
{
	int r;

	if (d->bus)
		return 0;
	if (strcmp(d->address, "system") == 0) {
		d->destination = IOPF_DBUS_NAME;
		r = sd_bus_open_system(&d->bus);
	} else {
		d->destination = NULL;
		r = sd_bus_new(&d->bus);
		if (r >= 0)
			r = sd_bus_set_address(d->bus, d->address);
		if (r >= 0)
			r = sd_bus_start(d->bus);
	}
	if (r < 0)
		d->bus = sd_bus_flush_close_unref(d->bus);
	return r;
}

static int call(struct daemon_link *d, struct snapshot *s, const char *method, sd_bus_message **ret)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
	sd_bus_error error = SD_BUS_ERROR_NULL;
	int r;

	r = sd_bus_message_new_method_call(d->bus, &m, d->destination, IOPF_DBUS_PATH,
					   IOPF_DBUS_INTERFACE, method);
	/* a scrape reports a stopped iopfd (iopfd_up 0); it must not start it */
	if (r >= 0)
		r = sd_bus_message_set_auto_start(m, 0);
	if (r >= 0)
		r = sd_bus_call(d->bus, m, CALL_USEC, &error, ret);
	if (r < 0 && sd_bus_error_has_name(&error, IOPF_ERROR_ACCESS_DENIED))
		s->denied++;
	sd_bus_error_free(&error);
	return r;
}

/* call(), the reply positioned inside its one array of @row. */
static int call_array(struct daemon_link *d, struct snapshot *s, const char *method,
		      const char *row, sd_bus_message **ret)
{
	int r = call(d, s, method, ret);

	return r < 0 ? r : sd_bus_message_enter_container(*ret, 'a', row);
}

/*
 * A property of a fixed-size type ('u', 't'), or 's' into a malloc'ed string.
 * Spelt out rather than sd_bus_get_property_*(), which cannot turn auto-start off.
 */
static int get_property(struct daemon_link *d, const char *name, char type, void *ret)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
	sd_bus_error error = SD_BUS_ERROR_NULL;
	const char sig[2] = {type, '\0'};
	const char *str;
	int r;

	r = sd_bus_message_new_method_call(d->bus, &m, d->destination, IOPF_DBUS_PATH,
					   "org.freedesktop.DBus.Properties", "Get");
	if (r >= 0)
		r = sd_bus_message_set_auto_start(m, 0);
	if (r >= 0)
		r = sd_bus_message_append(m, "ss", IOPF_DBUS_INTERFACE, name);
	if (r >= 0)
		r = sd_bus_call(d->bus, m, CALL_USEC, &error, &reply);
	sd_bus_error_free(&error);
	if (r >= 0)
		r = sd_bus_message_enter_container(reply, 'v', sig);
	if (r < 0)
		return r;
	if (type != 's')
		return sd_bus_message_read_basic(reply, type, ret) > 0 ? 0 : -EBADMSG;
	if (sd_bus_message_read_basic(reply, 's', &str) <= 0)
		return -EBADMSG;
	*(char **)ret = strdup(str);
	return *(char **)ret ? 0 : -ENOMEM;
}

static int cmp_tenant(const void *a, const void *b)
{
	const struct row *x = a, *y = b;

	return x->tenant < y->tenant ? -1 : x->tenant > y->tenant;
}

static const struct row *find_tenant(const struct row *v, size_t n, uint64_t tenant)
{
	const struct row key = {.tenant = tenant};

	return n ? bsearch(&key, v, n, sizeof(*v), cmp_tenant) : NULL;
}

static int query_tenants(struct daemon_link *d, struct snapshot *s)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
	const char *name;
	uint64_t tenant;
	uint32_t uid, pid;
	int r;

	r = call_array(d, s, "GetAllTenantMetrics", IOPF_WIRE_TENANT_METRICS, &m);
	while (r >= 0 &&
	       (r = sd_bus_message_enter_container(m, 'r', IOPF_WIRE_TENANT_METRICS_FIELDS)) > 0) {
		struct row *row;

		r = sd_bus_message_read(m, "tuus", &tenant, &uid, &pid, &name);
		if (r < 0)
			break;
		if (pid == (uint32_t)getpid()) {
			/* our own connection is a tenant too: leave it out */
			r = sd_bus_message_skip(m, "a{st}(ttat)");
		} else {
			r = push_row(&s->tenants, &s->n_tenants, &row);
			if (r >= 0) {
				row->tenant = tenant;
				row->uid = uid;
				row->pid = pid;
				row->connections = 1;
				tenant_labels(row, name, row->labels, sizeof(row->labels));
				r = read_fields(m, row);
			}
			if (r >= 0)
				r = iopf_wire_read_histogram(m, &row->lat);
		}
		if (r >= 0)
			r = sd_bus_message_exit_container(m);
	}
	if (r < 0)
		return r;
	if (s->n_tenants)
		qsort(s->tenants, s->n_tenants, sizeof(*s->tenants), cmp_tenant);
	s->have_tenants = true;
	return 0;
}

static int query_domains(struct daemon_link *d, struct snapshot *s)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
	uint64_t tenant, id, source;
	uint32_t dev, pasid;
	int r;

	r = call_array(d, s, "GetAllDomainMetrics", IOPF_WIRE_DOMAIN_METRICS_ALL, &m);
	while (r >= 0 && (r = sd_bus_message_enter_container(
				  m, 'r', IOPF_WIRE_DOMAIN_METRICS_ALL_FIELDS)) > 0) {
		const struct row *owner;
		struct row *row;
		char pbuf[16];

		r = sd_bus_message_read(m, "tttuu", &tenant, &id, &source, &dev, &pasid);
		if (r < 0)
			break;
		/* a tenant that came or went between the two calls: next scrape */
		owner = find_tenant(s->tenants, s->n_tenants, tenant);
		if (!owner) {
			r = sd_bus_message_skip(m, "a{st}(ttat)");
			if (r >= 0)
				r = sd_bus_message_exit_container(m);
			continue;
		}
		r = push_row(&s->domains, &s->n_domains, &row);
		if (r < 0)
			break;
		if (pasid == IOPF_PASID_NONE)
			(void)snprintf(pbuf, sizeof(pbuf), "none");
		else
			(void)snprintf(pbuf, sizeof(pbuf), "%" PRIu32, pasid);
		(void)snprintf(row->labels, sizeof(row->labels),
			       "%.190s,domain=\"%" PRIu64 "\",source=\"%" PRIu64
			       "\",dev_id=\"%" PRIu32 "\",pasid=\"%s\"",
			       owner->labels, id, source, dev, pbuf);
		r = read_fields(m, row);
		if (r >= 0)
			r = iopf_wire_read_histogram(m, &row->lat);
		if (r >= 0)
			r = sd_bus_message_exit_container(m);
	}
	return r;
}

static int query_daemon(struct daemon_link *d, struct snapshot *s)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
	int r;

	r = call(d, s, "GetDaemonMetrics", &m);
	if (r >= 0)
		r = read_fields(m, &s->daemon);
	if (r >= 0)
		r = iopf_wire_read_histogram(m, &s->daemon.lat);
	if (r >= 0)
		s->have_daemon = true;
	return r;
}

/* One try at a scrape's worth of iopfd's numbers. */
static int query_once(struct daemon_link *d, bool per_domain, struct snapshot *s)
{
	char *version = NULL;
	int r;

	*s = (struct snapshot){};
	r = link_connect(d);
	if (r >= 0)
		r = get_property(d, "Version", 's', &version);
	if (r >= 0) {
		(void)snprintf(s->version, sizeof(s->version), "%s", version);
		free(version);
		r = get_property(d, "Workers", 'u', &s->workers);
	}
	/* the operator views: AccessDenied unless we run as root */
	if (r >= 0) {
		r = query_daemon(d, s);
		if (r >= 0)
			r = query_tenants(d, s);
		if (r >= 0 && per_domain)
			r = query_domains(d, s);
		if (r == -EACCES || r == -EPERM || s->denied)
			r = 0; /* up, but only the public part */
	}
	if (r < 0) {
		d->bus = sd_bus_flush_close_unref(d->bus);
		snapshot_done(s);
		return r;
	}
	s->up = true;
	return 0;
}

/* Return: 0 (s->up says if iopfd answered). */
static int query(struct daemon_link *d, bool per_domain, struct snapshot *s)
{
	bool reused = d->bus;

	/* a connection from an earlier scrape may be to an iopfd that restarted since */
	if (query_once(d, per_domain, s) < 0 && reused)
		(void)query_once(d, per_domain, s);
	return 0;
}

/* --- tenants as Prometheus sees them --- */

/*
 * iopfd counts per connection, but a series must outlive a reconnect: the
 * exporter sums every tenant with the same labels (tenant_labels()), and keeps
 * the counters of those gone, as last scraped, so that the sums never go
 * backwards while it runs, across iopfd restarts too. What a tenant did
 * between its last scrape and its disconnect is in iopfd_* only. A label set
 * stays an hour after its last tenant left (gauges 0), up to SUMS_MAX of them.
 */
#define SUMS_MAX	4096
#define SUM_RETAIN_USEC (UINT64_C(3600) * 1000000)

struct tenant_sum {
	struct row gone;    /* labels; the counters of its tenants gone since */
	uint64_t seen_usec; /* when one of its tenants was last there */
};

struct tenant_book {
	struct row *last; /* the tenants of the previous scrape, by id */
	size_t n_last;
	struct tenant_sum *sums; /* by labels */
	size_t n_sums;
};

static void book_done(struct tenant_book *b)
{
	free(b->last);
	free(b->sums);
	*b = (struct tenant_book){};
}

static int cmp_sum(const void *a, const void *b)
{
	return strcmp(((const struct tenant_sum *)a)->gone.labels,
		      ((const struct tenant_sum *)b)->gone.labels);
}

static struct tenant_sum *sum_get(struct tenant_book *b, const char *labels)
{
	struct tenant_sum key, *p;
	size_t lo = 0, hi = b->n_sums;

	(void)snprintf(key.gone.labels, sizeof(key.gone.labels), "%s", labels);
	/* bsearch() must not be handed NULL, even for no elements */
	p = b->n_sums ? bsearch(&key, b->sums, b->n_sums, sizeof(*b->sums), cmp_sum) : NULL;
	if (p || b->n_sums >= SUMS_MAX)
		return p;
	p = reallocarray(b->sums, b->n_sums + 1, sizeof(*b->sums));
	if (!p)
		return NULL;
	b->sums = p;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(p[mid].gone.labels, labels) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	memmove(&p[lo + 1], &p[lo], (b->n_sums - lo) * sizeof(*p));
	b->n_sums++;
	p[lo] = (struct tenant_sum){};
	memcpy(p[lo].gone.labels, key.gone.labels, sizeof(key.gone.labels));
	return &p[lo];
}

/* @dst += @src: the counters and the latency, and the gauges too with @gauges. */
static void row_add(struct row *dst, const struct row *src, bool gauges)
{
	for (unsigned f = 0; f < _F_MAX; f++)
		if (gauges || !field_is_gauge(f))
			dst->v[f] += src->v[f];
	for (unsigned i = 0; i < IOPF_HIST_BUCKETS; i++)
		dst->lat.bucket[i] += src->lat.bucket[i];
	dst->lat.count += src->lat.count;
	dst->lat.sum_ns += src->lat.sum_ns;
	if (gauges)
		dst->connections += src->connections;
}

/*
 * book_update() - fold a scrape's tenants (s->have_tenants) into @b and make
 * the rows to export: one per label set, in label order.
 * Return: 0, -ENOMEM.
 */
static int book_update(struct tenant_book *b, const struct snapshot *s, uint64_t now,
		       struct row **ret, size_t *ret_n)
{
	struct row *last, *out;
	size_t n = 0;

	for (size_t i = 0; i < b->n_last; i++)
		if (!find_tenant(s->tenants, s->n_tenants, b->last[i].tenant)) {
			struct tenant_sum *sum = sum_get(b, b->last[i].labels);

			if (sum) { /* else too many label sets: forgotten */
				row_add(&sum->gone, &b->last[i], false);
				sum->seen_usec = now;
			}
		}
	for (size_t i = 0; i < s->n_tenants; i++) {
		struct tenant_sum *sum = sum_get(b, s->tenants[i].labels);

		if (sum)
			sum->seen_usec = now;
	}
	for (size_t i = 0; i < b->n_sums; i++)
		if (now - b->sums[i].seen_usec <= SUM_RETAIN_USEC)
			b->sums[n++] = b->sums[i];
	b->n_sums = n;

	last = malloc((s->n_tenants ? s->n_tenants : 1) * sizeof(*last));
	out = calloc(b->n_sums ? b->n_sums : 1, sizeof(*out));
	if (!last || !out) {
		free(last);
		free(out);
		return -ENOMEM;
	}
	if (s->n_tenants)
		memcpy(last, s->tenants, s->n_tenants * sizeof(*last));
	free(b->last);
	b->last = last;
	b->n_last = s->n_tenants;

	for (size_t i = 0; i < b->n_sums; i++)
		out[i] = b->sums[i].gone;
	for (size_t i = 0; i < s->n_tenants; i++) {
		struct tenant_sum key, *sum;

		memcpy(key.gone.labels, s->tenants[i].labels, sizeof(key.gone.labels));
		sum = b->n_sums ? bsearch(&key, b->sums, b->n_sums, sizeof(*b->sums), cmp_sum)
				: NULL;
		if (sum)
			row_add(&out[sum - b->sums], &s->tenants[i], true);
	}
	*ret = out;
	*ret_n = b->n_sums;
	return 0;
}

/* --- the exposition format --- */

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{labels,extra} value; either label part may be empty. */
static void sample(FILE *f, const char *name, const char *labels, const char *extra, uint64_t v)
{
	bool l = labels && *labels, e = extra && *extra;

	fprintf(f, "%s%s%s%s%s%s %" PRIu64 "\n", name, l || e ? "{" : "", l ? labels : "",
		l && e ? "," : "", e ? extra : "", l || e ? "}" : "", v);
}

/*
 * The buckets Prometheus gets: 1-2-5 per decade from 1 us to 0.5 s, then 1 s and
 * +Inf, 20 series a histogram. iopfd keeps its finer log-linear ones (1..9 per
 * decade up to 10 s) for iopfctl and the benchmarks; each bound here is one of
 * theirs, so a coarse bucket, the sum of the fine buckets up to its bound, is
 * exact. (Were a bound between two fine ones, it would count up to the fine
 * bound below it.) Seconds to 10 s fall in +Inf.
 */
static const uint64_t coarse_ns[] = {
	1000,	  2000,	     5000,	10000,	   20000,      50000,	 100000,
	200000,	  500000,    1000000,	2000000,   5000000,    10000000, 20000000,
	50000000, 100000000, 200000000, 500000000, 1000000000,
};

static void histogram(FILE *f, const char *name, const char *labels,
		      const struct iopf_histogram *lat)
{
	char bname[128], le[48];
	uint64_t cum = 0;
	unsigned i = 0;

	(void)snprintf(bname, sizeof(bname), "%s_bucket", name);
	for (size_t k = 0; k < ARRAY_SIZE(coarse_ns); k++) {
		for (; i < IOPF_HIST_BUCKETS && iopf_histogram_bound_ns(i) <= coarse_ns[k]; i++)
			cum += lat->bucket[i];
		(void)snprintf(le, sizeof(le), "le=\"%.9g\"", (double)coarse_ns[k] / 1e9);
		sample(f, bname, labels, le, cum);
	}
	for (; i < IOPF_HIST_BUCKETS; i++)
		cum += lat->bucket[i];
	sample(f, bname, labels, "le=\"+Inf\"", cum);
	fprintf(f, "%s_sum%s%s%s %.9f\n", name, labels && *labels ? "{" : "", labels ? labels : "",
		labels && *labels ? "}" : "", (double)lat->sum_ns / 1e9);
	/* the +Inf bucket is the count: a snapshot is consistent by construction */
	(void)snprintf(bname, sizeof(bname), "%s_count", name);
	sample(f, bname, labels, NULL, cum);
}

/* The families every level has: daemon (one row), tenant and domain (many). */
static void emit_level(FILE *f, const char *prefix, const struct row *rows, size_t n, bool objects)
{
	static const struct {
		const char *suffix, *type, *help;
		enum field field;
	} simple[] = {
		{"faults_total", "counter", "Fault records read.", F_FAULTS},
		{"stale_responses_total", "counter",
		 "Responses the kernel refused because it had answered the group itself (stale "
		 "cookie).",
		 F_STALE},
		{"pages_mapped_total", "counter", "Pages iopfd mapped.", F_PAGES_MAPPED},
		{"map_calls_total", "counter", "IOAS map calls.", F_MAPS},
		{"coalesced_faults_total", "counter",
		 "Faults on pages iopfd had already mapped, answered without a map.", F_COALESCED},
		{"pinned_bytes", "gauge", "Bytes iopfd has mapped (and so pinned) now.",
		 F_BYTES_MAPPED},
	};
	static const struct {
		const char *suffix, *help;
		enum field field;
	} held[] = {
		{"sources", "Fault sources registered now.", F_SOURCES},
		{"domains", "Domains (device, PASID) registered now.", F_DOMAINS},
		{"regions", "Memory regions registered now.", F_REGIONS},
		{"region_bytes",
		 "Bytes of registered regions: the most iopfd may pin (MaxPinnedBytes "
		 "bounds it per tenant).",
		 F_REGION_BYTES},
	};
	char name[96], extra[48];

	for (size_t k = 0; k < ARRAY_SIZE(simple); k++) {
		(void)snprintf(name, sizeof(name), "%s_%s", prefix, simple[k].suffix);
		family(f, name, simple[k].type, simple[k].help);
		for (size_t i = 0; i < n; i++)
			sample(f, name, rows[i].labels, NULL, rows[i].v[simple[k].field]);
	}

	(void)snprintf(name, sizeof(name), "%s_responses_total", prefix);
	family(f, name, "counter", "Fault groups answered, by response code.");
	for (size_t i = 0; i < n; i++) {
		sample(f, name, rows[i].labels, "code=\"success\"", rows[i].v[F_SUCCESS]);
		sample(f, name, rows[i].labels, "code=\"invalid\"", rows[i].v[F_INVALID]);
	}

	(void)snprintf(name, sizeof(name), "%s_response_reasons_total", prefix);
	family(f, name, "counter",
	       "Fault groups answered, by reason: resolved (SUCCESS); no_handler (unknown "
	       "device/PASID), outside_region, permission, map_error, bad_record, retired "
	       "(INVALID).");
	for (size_t i = 0; i < n; i++)
		for (unsigned r = 0; r < _IOPF_REASON_MAX; r++) {
			(void)snprintf(extra, sizeof(extra), "reason=\"%s\"",
				       iopf_wire_reason_name(r));
			sample(f, name, rows[i].labels, extra, rows[i].v[F_REASON0 + r]);
		}

	if (objects)
		for (size_t k = 0; k < ARRAY_SIZE(held); k++) {
			(void)snprintf(name, sizeof(name), "%s_%s", prefix, held[k].suffix);
			family(f, name, "gauge", held[k].help);
			for (size_t i = 0; i < n; i++)
				sample(f, name, rows[i].labels, NULL, rows[i].v[held[k].field]);
		}

	(void)snprintf(name, sizeof(name), "%s_fault_latency_seconds", prefix);
	family(f, name, "histogram",
	       "Time from reading a fault group to writing its response, in seconds.");
	for (size_t i = 0; i < n; i++)
		histogram(f, name, rows[i].labels, &rows[i].lat);
}

static void expose(FILE *f, const struct snapshot *s, const struct row *tenants, size_t n_tenants,
		   double scrape_seconds)
{
	family(f, "iopfd_up", "gauge", "Whether iopfd answered this scrape.");
	sample(f, "iopfd_up", NULL, NULL, s->up);
	if (s->up) {
		char labels[64];

		family(f, "iopfd_build_info", "gauge", "iopfd's version.");
		(void)snprintf(labels, sizeof(labels), "version=\"%s\"", s->version);
		sample(f, "iopfd_build_info", labels, NULL, 1);
		family(f, "iopfd_workers", "gauge", "Fault worker threads.");
		sample(f, "iopfd_workers", NULL, NULL, s->workers);
		family(f, "iopfd_exporter_access_denied", "gauge",
		       "1 when iopfd refused the every-tenant views (the exporter must run as "
		       "root or a user of iopfd's [Metrics] Readers=).");
		sample(f, "iopfd_exporter_access_denied", NULL, NULL, s->denied > 0);
	}
	if (s->have_daemon) {
		family(f, "iopfd_tenants", "gauge", "Tenants connected now.");
		sample(f, "iopfd_tenants", NULL, NULL, s->n_tenants);
		emit_level(f, "iopfd", &s->daemon, 1, true);
	}
	if (n_tenants) {
		family(f, "iopfd_tenant_connections", "gauge",
		       "Connections of the tenant now; its counters stay an hour after the last "
		       "one closed.");
		for (size_t i = 0; i < n_tenants; i++)
			sample(f, "iopfd_tenant_connections", tenants[i].labels, NULL,
			       tenants[i].connections);
		emit_level(f, "iopfd_tenant", tenants, n_tenants, true);
	}
	if (s->n_domains)
		emit_level(f, "iopfd_domain", s->domains, s->n_domains, false);
	family(f, "iopfd_exporter_scrape_duration_seconds", "gauge",
	       "How long asking iopfd took for this scrape.");
	fprintf(f, "iopfd_exporter_scrape_duration_seconds %.6f\n", scrape_seconds);
}

/* --- HTTP --- */

struct server;

struct client {
	struct server *srv;
	int fd;			  /* owned */
	sd_event_source *io;	  /* owned */
	sd_event_source *timeout; /* owned */
	char req[REQUEST_MAX + 1];
	size_t req_len;
	char *resp; /* owned; headers and body */
	size_t resp_len, resp_off;
	struct client *prev, *next;
};

struct server {
	sd_event *event;
	struct daemon_link daemon;
	struct tenant_book book;
	bool per_domain;
	struct client *clients;
	unsigned n_clients;
};

static struct client *client_free(struct client *c)
{
	if (!c)
		return NULL;
	LIST_REMOVE(c->srv->clients, c);
	c->srv->n_clients--;
	sd_event_source_disable_unref(c->io);
	sd_event_source_disable_unref(c->timeout);
	safe_close(c->fd);
	free(c->resp);
	free(c);
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* @headers: more header lines, each ending in CRLF, or "". */
static int respond(struct client *c, int status, const char *reason, const char *type,
		   const char *headers, const char *body, size_t body_len, bool head)
{
	FILE *f;

	f = open_memstream(&c->resp, &c->resp_len);
	if (!f)
		return -ENOMEM;
	fprintf(f,
		"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		"Connection: close\r\n%s%s\r\n",
		status, reason, type, body_len, status == 405 ? "Allow: GET, HEAD\r\n" : "",
		headers);
	if (!head)
		fwrite(body, 1, body_len, f);
	if (fclose(f) != 0)
		return -ENOMEM;
	c->resp_off = 0;
	return 0;
}

static int respond_text(struct client *c, int status, const char *reason, const char *text,
			bool head)
{
	return respond(c, status, reason, "text/plain; charset=utf-8", "", text, strlen(text),
		       head);
}

/*
 * Whether the request's Accept-Encoding takes gzip: "gzip" (or "x-gzip"), or
 * "*" when gzip is not named, with a q-value above 0.
 */
static bool accepts_gzip(const char *req)
{
	static const char header[] = "\naccept-encoding:";
	int gzip = -1, any = -1; /* -1 not named, else whether q > 0 */
	const char *p = req;

	while ((p = strchr(p, '\n'))) {
		const char *end;

		if (strncasecmp(p, header, sizeof(header) - 1) != 0) {
			p++;
			continue;
		}
		p += sizeof(header) - 1;
		end = p + strcspn(p, "\r\n");
		while (p < end) {
			size_t tok, elem = strcspn(p, ",\r\n");
			const char *q, *stop = p + elem;
			bool yes = true;

			p += strspn(p, " \t");
			tok = strcspn(p, " \t;,\r\n");
			q = strstr(p, "q=");
			if (q && q < stop)
				yes = strtod(q + 2, NULL) > 0;
			if ((tok == 4 && strncasecmp(p, "gzip", 4) == 0) ||
			    (tok == 6 && strncasecmp(p, "x-gzip", 6) == 0))
				gzip = yes;
			else if (tok == 1 && *p == '*')
				any = yes;
			p = stop < end ? stop + 1 : end;
		}
	}
	return gzip >= 0 ? gzip : any > 0;
}

/* @in compressed into a malloc'ed gzip stream. Return: 0, -ENOMEM, -EIO. */
static int gzip_body(const char *in, size_t len, char **ret, size_t *ret_len)
{
	z_stream z = {};
	char *out;
	uLong cap;
	int r;

	if (len > UINT32_MAX)
		return -EIO;
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16 /* gzip header */, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	cap = deflateBound(&z, len);
	out = malloc(cap);
	if (!out) {
		deflateEnd(&z);
		return -ENOMEM;
	}
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)len;
	z.next_out = (Bytef *)out;
	z.avail_out = (uInt)cap;
	r = deflate(&z, Z_FINISH);
	*ret_len = z.total_out;
	deflateEnd(&z);
	if (r != Z_STREAM_END) {
		free(out);
		return -EIO;
	}
	*ret = out;
	return 0;
}

static int serve_metrics(struct client *c, bool head)
{
	struct snapshot s;
	_cleanup_free_ struct row *tenants = NULL;
	size_t n_tenants = 0;
	char *body = NULL, *z;
	size_t len = 0, zlen;
	bool gz = false;
	double t0 = now_s();
	FILE *f;
	int r;

	(void)query(&c->srv->daemon, c->srv->per_domain, &s);
	if (s.have_tenants &&
	    book_update(&c->srv->book, &s, (uint64_t)(t0 * 1e6), &tenants, &n_tenants) < 0) {
		snapshot_done(&s);
		return -ENOMEM;
	}
	f = open_memstream(&body, &len);
	if (!f) {
		snapshot_done(&s);
		return -ENOMEM;
	}
	expose(f, &s, tenants, n_tenants, now_s() - t0);
	snapshot_done(&s);
	if (fclose(f) != 0) {
		free(body);
		return -ENOMEM;
	}
	/* plain when gzip fails: the scraper takes either */
	if (accepts_gzip(c->req) && gzip_body(body, len, &z, &zlen) >= 0) {
		free(body);
		body = z;
		len = zlen;
		gz = true;
	}
	r = respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8",
		    gz ? "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n"
		       : "Vary: Accept-Encoding\r\n",
		    body, len, head);
	free(body);
	return r;
}

/* The request line ("GET /metrics HTTP/1.1") and Accept-Encoding are all we look at. */
static int handle_request(struct client *c)
{
	char method[8], path[256], version[16];
	bool head;

	if (sscanf(c->req, "%7s %255s %15s", method, path, version) != 3 ||
	    strncmp(version, "HTTP/1.", 7) != 0)
		return respond_text(c, 400, "Bad Request", "bad request\n", false);
	head = strcmp(method, "HEAD") == 0;
	if (!head && strcmp(method, "GET") != 0)
		return respond_text(c, 405, "Method Not Allowed", "only GET and HEAD\n", false);
	if (strcmp(path, "/metrics") == 0 || strncmp(path, "/metrics?", 9) == 0)
		return serve_metrics(c, head);
	if (strcmp(path, "/") == 0)
		return respond_text(c, 200, "OK",
				    "iopf-exporter: iopfd metrics at /metrics (Prometheus text "
				    "format)\n",
				    head);
	return respond_text(c, 404, "Not Found", "not found; try /metrics\n", head);
}

static int on_client_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct client *c = userdata;
	ssize_t n;

	if (!c->resp) {
		n = read(fd, c->req + c->req_len, REQUEST_MAX - c->req_len);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n <= 0) {
			client_free(c);
			return 0;
		}
		c->req_len += (size_t)n;
		c->req[c->req_len] = '\0';
		if (!strstr(c->req, "\r\n\r\n") && !strstr(c->req, "\n\n")) {
			if (c->req_len < REQUEST_MAX)
				return 0;
			if (respond_text(c, 431, "Request Header Fields Too Large", "too large\n",
					 false) < 0) {
				client_free(c);
				return 0;
			}
		} else if (handle_request(c) < 0) {
			client_free(c);
			return 0;
		}
		(void)sd_event_source_set_io_events(s, EPOLLOUT);
	}
	while (c->resp_off < c->resp_len) {
		n = write(fd, c->resp + c->resp_off, c->resp_len - c->resp_off);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n <= 0)
			break;
		c->resp_off += (size_t)n;
	}
	(void)shutdown(fd, SHUT_WR);
	client_free(c);
	return 0;
}

static int on_client_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
	client_free(userdata);
	return 0;
}

static int on_accept(sd_event_source *s, int lfd, uint32_t revents, void *userdata)
{
	struct server *srv = userdata;
	struct client *c;
	int fd, r;

	fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return 0;
	if (srv->n_clients >= CONNECTIONS_MAX) {
		safe_close(fd);
		return 0;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		safe_close(fd);
		return 0;
	}
	c->srv = srv;
	c->fd = fd;
	LIST_PREPEND(srv->clients, c);
	srv->n_clients++;
	r = sd_event_add_io(srv->event, &c->io, fd, EPOLLIN, on_client_io, c);
	if (r >= 0)
		r = sd_event_add_time_relative(srv->event, &c->timeout, CLOCK_MONOTONIC, IDLE_USEC,
					       0, on_client_timeout, c);
	if (r < 0)
		client_free(c);
	return 0;
}

static int listen_on(const char *spec, int *ret_fd)
{
	struct sockaddr_storage ss;
	_cleanup_close_ int fd = -EBADF;
	socklen_t len;
	int one = 1;

	if (conf_parse_listen(spec, &ss, &len) < 0) {
		fprintf(stderr, "iopf-exporter: Listen=%s: not ADDRESS:PORT\n", spec);
		return -EINVAL;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return negative_errno();
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 64) < 0) {
		int r = negative_errno();

		fprintf(stderr, "iopf-exporter: cannot listen on %s: %s\n", spec, strerror(-r));
		return r;
	}
	*ret_fd = TAKE_FD(fd);
	return 0;
}

static void help(void)
{
	printf("Usage: iopf-exporter [OPTIONS]\n\n"
	       "Serve iopfd's metrics for Prometheus at http://LISTEN/metrics.\n\n"
	       "  --config FILE     iopfd's configuration (default %s):\n"
	       "                    [Metrics] Listen=, PerDomain=; [Daemon] ControlSocket=\n"
	       "  --listen ADDR:PORT  instead of [Metrics] Listen= (default %s)\n"
	       "  --address ADDR    iopfd's D-Bus address, or \"system\"\n"
	       "                    (default unix:path=ControlSocket)\n"
	       "  --per-domain      per-domain series too (default off; --no-per-domain)\n"
	       "  -h --help\n"
	       "  --version\n\n"
	       "A socket passed by systemd (iopf-exporter.socket) replaces --listen.\n"
	       "Every tenant's numbers need uid 0; otherwise only iopfd_up and the like.\n",
	       IOPFD_DEFAULT_CONFIG, IOPFD_METRICS_LISTEN);
}

static int parse_argv(int argc, char *argv[])
{
	enum {
		ARG_CONFIG = 0x100,
		ARG_LISTEN,
		ARG_ADDRESS,
		ARG_PER_DOMAIN,
		ARG_NO_PER_DOMAIN,
		ARG_VERSION,
	};
	static const struct option options[] = {
		{"config", required_argument, NULL, ARG_CONFIG},
		{"listen", required_argument, NULL, ARG_LISTEN},
		{"address", required_argument, NULL, ARG_ADDRESS},
		{"per-domain", no_argument, NULL, ARG_PER_DOMAIN},
		{"no-per-domain", no_argument, NULL, ARG_NO_PER_DOMAIN},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, ARG_VERSION},
		{},
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
		switch (c) {
		case ARG_CONFIG:
			arg_config = optarg;
			break;
		case ARG_LISTEN:
			arg_listen = optarg;
			break;
		case ARG_ADDRESS:
			arg_address = optarg;
			break;
		case ARG_PER_DOMAIN:
			arg_per_domain = 1;
			break;
		case ARG_NO_PER_DOMAIN:
			arg_per_domain = 0;
			break;
		case 'h':
			help();
			return 0;
		case ARG_VERSION:
			printf("iopf-exporter %s\n", IOPFD_VERSION);
			return 0;
		default:
			return -EINVAL;
		}
	if (optind < argc) {
		fprintf(stderr, "iopf-exporter: unexpected argument %s\n", argv[optind]);
		return -EINVAL;
	}
	return 1;
}

int main(int argc, char *argv[])
{
	_cleanup_free_ char *why = NULL;
	struct server srv = {};
	struct conf conf;
	sigset_t mask;
	int fds[LISTEN_FDS_MAX], n_fds = 0, n, r;

	r = parse_argv(argc, argv);
	if (r <= 0)
		return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
	if (conf_init(&conf) < 0)
		return EXIT_FAILURE;
	r = conf_load_all(&conf, arg_config ? arg_config : IOPFD_DEFAULT_CONFIG, !arg_config, &why);
	if (r < 0) {
		fprintf(stderr, "iopf-exporter: bad configuration: %s\n", why ? why : strerror(-r));
		conf_done(&conf);
		return EXIT_FAILURE;
	}
	srv.per_domain = arg_per_domain >= 0 ? arg_per_domain : conf.metrics_per_domain;
	if (arg_address)
		srv.daemon.address = strdup(arg_address);
	else if (asprintf(&srv.daemon.address, "unix:path=%s", conf.control_socket) < 0)
		srv.daemon.address = NULL;
	if (!srv.daemon.address) {
		conf_done(&conf);
		return EXIT_FAILURE;
	}

	/* systemd's sockets, or our own */
	n = sd_listen_fds(1);
	for (int i = 0; i < n && n_fds < LISTEN_FDS_MAX; i++)
		if (sd_is_socket(SD_LISTEN_FDS_START + i, AF_UNSPEC, SOCK_STREAM, 1) > 0) {
			fds[n_fds++] = SD_LISTEN_FDS_START + i;
			(void)fcntl(SD_LISTEN_FDS_START + i, F_SETFL, O_NONBLOCK);
		}
	if (n_fds == 0) {
		r = listen_on(arg_listen ? arg_listen : conf.metrics_listen, &fds[0]);
		if (r < 0) {
			conf_done(&conf);
			free(srv.daemon.address);
			return EXIT_FAILURE;
		}
		n_fds = 1;
	}
	conf_done(&conf);

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	(void)sigprocmask(SIG_BLOCK, &mask, NULL);
	(void)signal(SIGPIPE, SIG_IGN);

	r = sd_event_default(&srv.event);
	if (r >= 0)
		r = sd_event_add_signal(srv.event, NULL, SIGTERM, NULL, NULL);
	if (r >= 0)
		r = sd_event_add_signal(srv.event, NULL, SIGINT, NULL, NULL);
	for (int i = 0; r >= 0 && i < n_fds; i++)
		r = sd_event_add_io(srv.event, NULL, fds[i], EPOLLIN, on_accept, &srv);
	if (r < 0) {
		fprintf(stderr, "iopf-exporter: cannot set up the event loop: %s\n", strerror(-r));
		return EXIT_FAILURE;
	}
	(void)sd_notify(false, "READY=1\nSTATUS=Serving /metrics");
	r = sd_event_loop(srv.event);
	(void)sd_notify(false, "STOPPING=1");

	while (srv.clients)
		client_free(srv.clients);
	srv.daemon.bus = sd_bus_flush_close_unref(srv.daemon.bus);
	book_done(&srv.book);
	free(srv.daemon.address);
	sd_event_unref(srv.event);
	for (int i = 0; i < n_fds; i++)
		safe_close(fds[i]);
	return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
