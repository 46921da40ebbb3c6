/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The one renderer of iopfctl's listings: read the rows of a reply by their
 * column table, print them with libsmartcols, or build them as JSON with json-c.
 */
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <libsmartcols/libsmartcols.h>

#include "iopf/iopf.h"
#include "iopfctl.h"
#include "util.h"
#include "wire-bus.h"

/* --- values as text and as JSON --- */

const char *bytes_str(uint64_t v, char buf[static 32])
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

/* Bucket bounds are round (1, 2, ... 9 times a power of ten): print them exactly. */
const char *dur_str(uint64_t ns, char buf[static 24])
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

static const char *access_str(uint64_t a, char buf[static 8])
{
	snprintf(buf, 8, "%c%c%c%c", a & IOPF_ACCESS_READ ? 'r' : '-',
		 a & IOPF_ACCESS_WRITE ? 'w' : '-', a & IOPF_ACCESS_EXEC ? 'x' : '-',
		 a & IOPF_ACCESS_PRIV ? 'p' : '-');
	return buf;
}

static const char *cell_text(enum cell cell, const union value *v, char buf[static 64])
{
	switch (cell) {
	case CELL_U64:
		snprintf(buf, 64, "%" PRIu64, v->u);
		return buf;
	case CELL_HEX:
		snprintf(buf, 64, "0x%" PRIx64, v->u);
		return buf;
	case CELL_PASID:
		if (v->u == IOPF_PASID_NONE)
			return "none";
		snprintf(buf, 64, "0x%" PRIx64, v->u);
		return buf;
	case CELL_BYTES:
		return bytes_str(v->u, buf);
	case CELL_ACCESS:
	case CELL_ACCESS_FLAGS:
		return access_str(v->u, buf);
	case CELL_DURATION:
		return dur_str(v->u, buf);
	case CELL_RATE:
		if (isnan(v->d))
			return "-";
		snprintf(buf, 64, "%.0f", v->d);
		return buf;
	case CELL_STRING:
		return v->s ? v->s : "";
	case CELL_STATE:
		return v->u ? "broken" : "ok";
	case CELL_JSON:
		break;
	}
	return "";
}

/* A new JSON value for @v; CELL_JSON hands over the row's object. NULL is JSON null. */
static struct json_object *cell_json(enum cell cell, union value *v)
{
	char buf[64];

	switch (cell) {
	case CELL_U64:
	case CELL_HEX:
	case CELL_BYTES:
	case CELL_ACCESS:
		return json_object_new_uint64(v->u);
	case CELL_PASID:
		return v->u == IOPF_PASID_NONE ? NULL : json_object_new_uint64(v->u);
	case CELL_DURATION:
		return v->u == UINT64_MAX ? NULL : json_object_new_uint64(v->u);
	case CELL_RATE:
		return isnan(v->d) ? NULL : json_object_new_double(v->d);
	case CELL_ACCESS_FLAGS:
	case CELL_STATE:
		return json_object_new_string(cell_text(cell, v, buf));
	case CELL_STRING:
		return json_object_new_string(v->s ? v->s : "");
	case CELL_JSON:
		return TAKE_PTR(v->j);
	}
	return NULL;
}

/* --- which columns --- */

const char *column_name(const struct column *col, char buf[static 32])
{
	const char *s = col->header ? col->header : col->json;
	size_t i;

	for (i = 0; s[i] && i < 31; i++)
		buf[i] = (char)tolower((unsigned char)s[i]);
	buf[i] = '\0';
	return buf;
}

/* -o names a column by its header (lowercase) or by its JSON key. */
static bool column_is(const struct column *col, const char *name)
{
	char buf[32];

	return strcmp(column_name(col, buf), name) == 0 ||
	       (col->json && strcmp(col->json, name) == 0);
}

bool listing_has_column(const struct listing *l, const char *name)
{
	for (size_t i = 0; i < l->n_columns; i++)
		if (column_is(&l->columns[i], name))
			return true;
	return false;
}

/* Can this view show @col at all: the tenant only in the all views, each output its own. */
static bool column_usable(const struct ctx *x, const struct column *col)
{
	if ((col->flags & COL_ALL) && !x->all)
		return false;
	return arg_json ? col->json != NULL : col->header != NULL;
}

static bool column_default(const struct column *col)
{
	if (col->flags & COL_EXTRA)
		return false;
	return !(col->flags & COL_WATCH) || arg_watch > 0;
}

static int find_column(const struct ctx *x, const struct listing *l, const char *name)
{
	for (size_t i = 0; i < l->n_columns; i++)
		if (column_usable(x, &l->columns[i]) && column_is(&l->columns[i], name))
			return (int)i;
	return -1;
}

/* The columns to show, in order, into @shown (n_columns of room). Returns how many. */
static size_t choose_columns(const struct ctx *x, const struct listing *l, unsigned *shown)
{
	size_t n = 0;

	if (!arg_columns || arg_columns_add)
		for (size_t i = 0; i < l->n_columns; i++)
			if (column_usable(x, &l->columns[i]) && column_default(&l->columns[i]))
				shown[n++] = (unsigned)i;
	for (char **name = arg_columns; name && *name; name++) {
		int i = find_column(x, l, *name);
		bool dup = false;

		for (size_t k = 0; i >= 0 && k < n; k++)
			dup = dup || shown[k] == (unsigned)i;
		if (i >= 0 && !dup)
			shown[n++] = (unsigned)i;
	}
	return n;
}

/* --- reading rows --- */

/* The column read from field @pos of a row (0: the owning tenant of the all views). */
static int wire_column(const struct listing *l, unsigned pos)
{
	for (size_t i = 0; i < l->n_columns; i++)
		if (pos == 0 ? (l->columns[i].flags & COL_ALL) != 0 : l->columns[i].wire == pos)
			return (int)i;
	return -1;
}

/* The percentiles of JSON's latency objects (the tables have theirs as columns). */
static const struct {
	const char *json;
	double q;
} json_percentiles[] = {{"p50_ns", 0.50}, {"p99_ns", 0.99}, {"p999_ns", 0.999}};

static struct json_object *json_bound(uint64_t ns)
{
	return ns == UINT64_MAX ? NULL : json_object_new_uint64(ns); /* null: above 10 s */
}

struct json_object *latency_json(const struct iopf_histogram *h)
{
	struct json_object *o = json_object_new_object(), *buckets = json_object_new_array();

	json_object_object_add(o, "count", json_object_new_uint64(h->count));
	json_object_object_add(o, "sum_ns", json_object_new_uint64(h->sum_ns));
	for (size_t i = 0; i < ARRAY_SIZE(json_percentiles); i++)
		json_object_object_add(
			o, json_percentiles[i].json,
			json_bound(iopf_histogram_quantile(h, json_percentiles[i].q)));
	/* non-empty buckets only; "le_ns" null is the overflow bucket */
	for (unsigned i = 0; i < IOPF_HIST_BUCKETS; i++) {
		struct json_object *b;

		if (!h->bucket[i])
			continue;
		b = json_object_new_object();
		json_object_object_add(b, "le_ns", json_bound(iopf_histogram_bound_ns(i)));
		json_object_object_add(b, "count", json_object_new_uint64(h->bucket[i]));
		json_object_array_add(buckets, b);
	}
	json_object_object_add(o, "buckets", buckets);
	return o;
}

/* Named counters a table shows, and the reasons of INVALID answers ("why"). */
static const struct {
	const char *name;
	size_t offset;
} counter_fields[] = {
	{"faults", offsetof(struct counters, faults)},
	{"groups", offsetof(struct counters, groups)},
	{"success", offsetof(struct counters, success)},
	{"invalid", offsetof(struct counters, invalid)},
	{"stale", offsetof(struct counters, stale)},
	{"pages_mapped", offsetof(struct counters, pages_mapped)},
	{"bytes_mapped", offsetof(struct counters, bytes_mapped)},
	{"tenants", offsetof(struct counters, tenants)},
	{"io_errors", offsetof(struct counters, io_errors)},
	{"broken", offsetof(struct counters, broken)},
	{"paused", offsetof(struct counters, paused)},
};

int read_counters(sd_bus_message *m, struct counters *c, struct json_object **ret_json)
{
	struct json_object *o = ret_json ? json_object_new_object() : NULL;
	const char *key;
	size_t len = 0;
	uint64_t v;
	int r;

	*c = (struct counters){};
	r = sd_bus_message_enter_container(m, 'a', "{st}");
	while (r >= 0 && (r = sd_bus_message_read(m, "{st}", &key, &v)) > 0) {
		if (o)
			json_object_object_add(o, key, json_object_new_uint64(v));
		for (size_t i = 0; i < ARRAY_SIZE(counter_fields); i++)
			if (strcmp(key, counter_fields[i].name) == 0)
				*(uint64_t *)((char *)c + counter_fields[i].offset) = v;
		/* every reason but "resolved" answers INVALID */
		for (unsigned i = IOPF_REASON_RESOLVED + 1; i < _IOPF_REASON_MAX; i++)
			if (v && strcmp(key, iopf_wire_reason_name(i)) == 0 && len < sizeof(c->why))
				len += snprintf(c->why + len, sizeof(c->why) - len, "%s%s=%" PRIu64,
						len ? "," : "", key, v);
	}
	if (r >= 0)
		r = sd_bus_message_exit_container(m);
	if (r < 0) {
		json_object_put(o);
		return r;
	}
	if (ret_json)
		*ret_json = o;
	return 0;
}

/* Drop what a row still owns (JSON objects not shown). */
static void row_clear(const struct listing *l, struct row *row)
{
	for (size_t i = 0; i < l->n_columns; i++) {
		if (l->columns[i].cell == CELL_JSON)
			json_object_put(row->v[i].j);
		row->v[i] = (union value){};
	}
	row->skip = false;
}

/* Read one row's fields, in order, into the columns they feed, then derive the others. */
static int read_row(struct ctx *x, const struct listing *l, sd_bus_message *m, struct row *row)
{
	unsigned pos = x->all && wire_column(l, 0) >= 0 ? 0 : 1;
	const char *contents;
	char type;
	int r;

	while ((r = sd_bus_message_peek_type(m, &type, &contents)) > 0) {
		int i = wire_column(l, pos++);
		union value *v = i >= 0 ? &row->v[i] : &(union value){};
		bool want_json = arg_json && i >= 0;

		if (type == SD_BUS_TYPE_ARRAY)
			r = read_counters(m, &row->c, want_json ? &v->j : NULL);
		else if (type == SD_BUS_TYPE_STRUCT) {
			r = iopf_wire_read_histogram(m, &row->lat);
			if (r >= 0 && want_json)
				v->j = latency_json(&row->lat);
		} else if (type == SD_BUS_TYPE_STRING)
			r = sd_bus_message_read_basic(m, type, &v->s);
		else if (type == SD_BUS_TYPE_UINT32) {
			uint32_t u32;

			r = sd_bus_message_read_basic(m, type, &u32);
			v->u = u32;
		} else
			r = sd_bus_message_read_basic(m, type, &v->u); /* 't' by the signature */
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	if (l->derive)
		l->derive(x, l, row);
	return 0;
}

/* --- showing --- */

struct output {
	const struct listing *l;
	unsigned *shown; /* owned; column indexes */
	size_t n_shown, n_rows;
	struct libscols_table *tb; /* table */
	struct json_object *rows;  /* JSON: an array, or the one row's object */
};

static void output_done(struct output *o)
{
	free(o->shown);
	scols_unref_table(o->tb);
	json_object_put(o->rows);
}

static int output_begin(struct ctx *x, const struct listing *l, struct output *o)
{
	*o = (struct output){.l = l};
	o->shown = calloc(l->n_columns, sizeof(*o->shown));
	if (!o->shown)
		return -ENOMEM;
	o->n_shown = choose_columns(x, l, o->shown);
	if (arg_json) {
		o->rows = l->row ? json_object_new_array() : NULL;
		return 0;
	}
	o->tb = scols_new_table();
	if (!o->tb)
		return -ENOMEM;
	scols_table_enable_noheadings(o->tb, !arg_legend);
	for (size_t i = 0; i < o->n_shown; i++)
		if (!scols_table_new_column(o->tb, l->columns[o->shown[i]].header, 0, 0))
			return -ENOMEM;
	return 0;
}

static int output_row(struct output *o, struct row *row)
{
	struct libscols_line *line;
	char buf[64];

	if (arg_json) {
		struct json_object *obj = json_object_new_object();

		for (size_t i = 0; i < o->n_shown; i++) {
			const struct column *col = &o->l->columns[o->shown[i]];

			json_object_object_add(obj, col->json,
					       cell_json(col->cell, &row->v[o->shown[i]]));
		}
		if (o->l->row)
			json_object_array_add(o->rows, obj);
		else {
			json_object_put(o->rows);
			o->rows = obj;
		}
		o->n_rows++;
		return 0;
	}
	if (row->skip)
		return 0;
	line = scols_table_new_line(o->tb, NULL);
	if (!line)
		return -ENOMEM;
	for (size_t i = 0; i < o->n_shown; i++) {
		unsigned c = o->shown[i];

		if (scols_line_set_data(line, i,
					cell_text(o->l->columns[c].cell, &row->v[c], buf)) < 0)
			return -ENOMEM;
	}
	o->n_rows++;
	return 0;
}

static int output_end(struct ctx *x, struct output *o, struct json_object *frame)
{
	if (arg_json) {
		if (o->rows)
			json_object_object_add(frame, o->l->name, TAKE_PTR(o->rows));
		return 0;
	}
	if (arg_legend && x->n_tables++ > 0)
		putchar('\n');
	if (arg_legend && o->l->title)
		printf("%s\n", o->l->title);
	if (o->n_rows > 0)
		return scols_print_table(o->tb) < 0 ? -EIO : 0;
	/* libsmartcols prints nothing for no rows: still say what was asked */
	for (size_t i = 0; arg_legend && i < o->n_shown; i++)
		printf("%s%s", o->l->columns[o->shown[i]].header, i + 1 < o->n_shown ? " " : "\n");
	return 0;
}

static int read_rows(struct ctx *x, const struct listing *l, sd_bus_message *m, struct output *o,
		     struct row *row)
{
	const char *sig = x->all ? l->row_all : l->row;
	char contents[64];
	size_t len;
	int r;

	if (!l->row) { /* the reply is the row */
		r = read_row(x, l, m, row);
		return r < 0 ? r : output_row(o, row);
	}
	len = strlen(sig); /* "(...)": the struct's contents without the parentheses */
	snprintf(contents, sizeof(contents), "%.*s", (int)(len - 2), sig + 1);
	r = sd_bus_message_enter_container(m, 'a', sig);
	while (r >= 0 && (r = sd_bus_message_enter_container(m, 'r', contents)) > 0) {
		r = read_row(x, l, m, row);
		if (r >= 0)
			r = sd_bus_message_exit_container(m);
		if (r >= 0)
			r = output_row(o, row);
		row_clear(l, row);
	}
	return r;
}

int listing_show(struct ctx *x, const struct listing *l, struct json_object *frame)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	struct output o;
	struct row row = {};
	int r;

	r = output_begin(x, l, &o);
	if (r < 0 || o.n_shown == 0) { /* -o named none of its columns: leave it out */
		output_done(&o);
		return r;
	}
	r = ctl_call(x, NULL, x->all && l->method_all ? l->method_all : l->method, &reply, NULL);
	row.v = r >= 0 ? calloc(l->n_columns, sizeof(*row.v)) : NULL;
	if (r >= 0 && !row.v)
		r = -ENOMEM;
	if (r >= 0) {
		r = read_rows(x, l, reply, &o, &row);
		if (r < 0)
			r = ctl_parse_error(r);
	}
	if (r >= 0)
		r = output_end(x, &o, frame);
	if (row.v)
		row_clear(l, &row);
	free(row.v);
	output_done(&o);
	return r;
}

int json_print(struct json_object *frame)
{
	int flags = JSON_C_TO_STRING_NOSLASHESCAPE |
		    (arg_json == JSON_PRETTY ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED
					     : JSON_C_TO_STRING_PLAIN);
	const char *s = json_object_to_json_string_ext(frame, flags);

	if (!s)
		return -ENOMEM;
	printf("%s\n", s);
	return 0;
}
