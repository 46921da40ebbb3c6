/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iopfctl status: the daemon at a glance, from what anyone may read (the
 * properties: version, start, workers, the effective configuration) and what
 * the caller may see (its sources' health; as root every tenant's, and the
 * number of tenants). Built as one JSON object, printed as it or as lines.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "iopfctl.h"
#include "time-util.h"
#include "util.h"
#include "wire.h"

/* Properties that are about iopfd rather than its configuration, and their JSON keys. */
static const struct {
	const char *property, *json;
} status_properties[] = {
	{"Version", "version"},
	{"Workers", "workers"},
	{"WorkersAlive", "workers_alive"},
	{"WorkersAliveTimestampMonotonic", "workers_alive_timestamp_monotonic_us"},
	{"StartTimestamp", "start_timestamp_us"},
	{"StartTimestampMonotonic", "start_timestamp_monotonic_us"},
	{"LatencyBuckets", NULL}, /* the histogram layout: not shown */
};

/* One property's value as JSON: strings and numbers; anything else is not shown (NULL). */
static int read_variant(sd_bus_message *m, struct json_object **ret)
{
	const char *contents, *s;
	uint64_t t;
	uint32_t u;
	char type;
	int r;

	*ret = NULL;
	r = sd_bus_message_peek_type(m, &type, &contents);
	if (r < 0)
		return r;
	r = sd_bus_message_enter_container(m, 'v', contents);
	if (r < 0)
		return r;
	if (strcmp(contents, "s") == 0) {
		r = sd_bus_message_read_basic(m, 's', &s);
		if (r >= 0)
			*ret = json_object_new_string(s);
	} else if (strcmp(contents, "u") == 0) {
		r = sd_bus_message_read_basic(m, 'u', &u);
		if (r >= 0)
			*ret = json_object_new_uint64(u);
	} else if (strcmp(contents, "t") == 0) {
		r = sd_bus_message_read_basic(m, 't', &t);
		if (r >= 0)
			*ret = json_object_new_uint64(t);
	} else
		r = sd_bus_message_skip(m, contents);
	if (r >= 0)
		r = sd_bus_message_exit_container(m);
	if (r < 0)
		*ret = (json_object_put(*ret), NULL);
	return r;
}

/* Every property: the daemon's into @st, the rest into @st's "configuration". */
static int status_properties_read(struct ctx *x, struct json_object *st)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	struct json_object *conf = json_object_new_object();
	const char *name;
	int r;

	r = ctl_call(x, "org.freedesktop.DBus.Properties", "GetAll", &reply, "s",
		     IOPF_DBUS_INTERFACE);
	if (r < 0) {
		json_object_put(conf);
		return r;
	}
	r = sd_bus_message_enter_container(reply, 'a', "{sv}");
	while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
		struct json_object *v, *into = conf;
		const char *key;

		r = sd_bus_message_read_basic(reply, 's', &name);
		if (r >= 0)
			r = read_variant(reply, &v);
		if (r >= 0)
			r = sd_bus_message_exit_container(reply);
		if (r < 0)
			break;
		key = name;
		for (size_t i = 0; i < ARRAY_SIZE(status_properties); i++)
			if (strcmp(name, status_properties[i].property) == 0) {
				into = st;
				key = status_properties[i].json;
			}
		if (v && key)
			json_object_object_add(into, key, v);
		else
			json_object_put(v);
	}
	if (r < 0) {
		json_object_put(conf);
		return ctl_parse_error(r);
	}
	json_object_object_add(st, "configuration", conf);
	return 0;
}

/* The caller's sources (as root everyone's): how many, and which are broken. */
static int status_sources_read(struct ctx *x, struct json_object *st)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	struct json_object *broken = json_object_new_array();
	struct json_object *paused = json_object_new_array();
	uint64_t n = 0, io_errors = 0, tenant, id;
	struct counters c;
	int r;

	json_object_object_add(st, "broken_sources", broken);
	json_object_object_add(st, "paused_sources", paused);
	r = ctl_call(x, NULL, x->all ? "GetAllSourceStats" : "GetSourceStats", &reply, NULL);
	if (r < 0)
		return r;
	r = sd_bus_message_enter_container(
		reply, 'a', x->all ? IOPF_WIRE_SOURCE_STATS_ALL : IOPF_WIRE_SOURCE_STATS);
	while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r',
							     x->all ? "tta{st}" : "ta{st}")) > 0) {
		if (x->all)
			r = sd_bus_message_read(reply, "tt", &tenant, &id);
		else
			r = sd_bus_message_read(reply, "t", &id);
		if (r >= 0)
			r = read_counters(reply, &c, NULL);
		if (r >= 0)
			r = sd_bus_message_exit_container(reply);
		if (r < 0)
			break;
		n++;
		io_errors += c.io_errors;
		if (c.broken)
			json_object_array_add(broken, json_object_new_uint64(id));
		if (c.paused)
			json_object_array_add(paused, json_object_new_uint64(id));
	}
	if (r < 0)
		return ctl_parse_error(r);
	json_object_object_add(st, "sources", json_object_new_uint64(n));
	json_object_object_add(st, "io_errors", json_object_new_uint64(io_errors));
	return 0;
}

/* Tenants (connections that registered something): the daemon's totals, uid 0 only. */
static int status_tenants_read(struct ctx *x, struct json_object *st)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	struct counters c;
	int r;

	if (!x->all) {
		json_object_object_add(st, "tenants", NULL);
		return 0;
	}
	r = ctl_call(x, NULL, "GetDaemonMetrics", &reply, NULL);
	if (r < 0)
		return r;
	r = read_counters(reply, &c, NULL);
	if (r < 0)
		return ctl_parse_error(r);
	json_object_object_add(st, "tenants", json_object_new_uint64(c.tenants));
	return 0;
}

static uint64_t get_u64(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_uint64(v) : 0;
}

static void uptime_add(struct json_object *st)
{
	uint64_t start = get_u64(st, "start_timestamp_monotonic_us");
	uint64_t now = now_ns(CLOCK_MONOTONIC) / NSEC_PER_USEC;

	/* an iopfd without the property: no uptime rather than a wrong one */
	if (start && now >= start)
		json_object_object_add(st, "uptime_us", json_object_new_uint64(now - start));
}

static const char *span_str(uint64_t us, char buf[static 64])
{
	uint64_t s = us / 1000000;

	if (s >= 86400)
		snprintf(buf, 64, "%" PRIu64 "d %" PRIu64 "h %" PRIu64 "min", s / 86400,
			 s % 86400 / 3600, s % 3600 / 60);
	else if (s >= 3600)
		snprintf(buf, 64, "%" PRIu64 "h %" PRIu64 "min %" PRIu64 "s", s / 3600,
			 s % 3600 / 60, s % 60);
	else if (s >= 60)
		snprintf(buf, 64, "%" PRIu64 "min %" PRIu64 "s", s / 60, s % 60);
	else
		snprintf(buf, 64, "%" PRIu64 ".%03" PRIu64 "s", s, us / 1000 % 1000);
	return buf;
}

static void status_print(struct json_object *st)
{
	struct json_object *v, *broken, *conf;
	const char *label = "Configuration:";
	char when[64] = "-", span[64];
	time_t t = (time_t)(get_u64(st, "start_timestamp_us") / 1000000);
	struct tm tm;
	size_t n;

	if (t && localtime_r(&t, &tm))
		strftime(when, sizeof(when), "%a %F %T %Z", &tm);
	printf("      Version: %s\n",
	       json_object_object_get_ex(st, "version", &v) ? json_object_get_string(v) : "-");
	printf("      Started: %s", when);
	if (json_object_object_get_ex(st, "uptime_us", &v))
		printf(", up %s", span_str(json_object_get_uint64(v), span));
	printf("\n      Workers: %" PRIu64, get_u64(st, "workers"));
	/* the watchdog's pings say which run: without a watchdog nobody asks */
	if (get_u64(st, "workers_alive_timestamp_monotonic_us"))
		printf(", %" PRIu64 " alive at the watchdog's last ping\n",
		       get_u64(st, "workers_alive"));
	else
		printf(" (alive: not checked, no watchdog)\n");
	if (json_object_object_get_ex(st, "tenants", &v) && v)
		printf("      Tenants: %" PRIu64 " connected (this iopfctl included)\n",
		       json_object_get_uint64(v));
	else
		printf("      Tenants: - (every tenant's view needs uid 0)\n");
	json_object_object_get_ex(st, "broken_sources", &broken);
	n = json_object_array_length(broken);
	printf("      Sources: %" PRIu64 ", %zu broken", get_u64(st, "sources"), n);
	for (size_t i = 0; i < n; i++)
		printf("%s%" PRIu64, i ? ", " : ": ",
		       json_object_get_uint64(json_object_array_get_idx(broken, i)));
	printf(" (%" PRIu64 " fault-fd I/O errors)", get_u64(st, "io_errors"));
	json_object_object_get_ex(st, "paused_sources", &broken);
	n = json_object_array_length(broken);
	if (n)
		printf(", %zu paused", n);
	printf("\n");
	json_object_object_get_ex(st, "configuration", &conf);
	json_object_object_foreach(conf, key, val)
	{
		printf("%14s %s=%s\n", label, key, json_object_get_string(val));
		label = "";
	}
}

int show_status(struct ctx *x)
{
	struct json_object *st = json_object_new_object();
	int r;

	r = status_properties_read(x, st);
	if (r >= 0)
		r = status_tenants_read(x, st);
	if (r >= 0)
		r = status_sources_read(x, st);
	if (r >= 0) {
		uptime_add(st);
		if (arg_json)
			r = json_print(st);
		else
			status_print(st);
	}
	json_object_put(st);
	return r;
}
