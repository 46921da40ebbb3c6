/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iopfctl's parts. A listing (iopfctl-listings.c) is one D-Bus call whose rows
 * become a table: a table of columns says, for each, its header, its JSON key,
 * where its value comes from (a field of the D-Bus row, or derived from them)
 * and how to print it. One renderer (iopfctl-output.c) prints any listing with
 * libsmartcols, or adds it to a JSON object built with json-c and printed
 * whole at the end, so a call failing half-way never prints half an object.
 */
#ifndef IOPFCTL_H
#define IOPFCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <systemd/sd-bus.h>

#include "histogram.h"

enum json_mode {
	JSON_OFF,
	JSON_SHORT,  /* one line */
	JSON_PRETTY, /* indented */
};

/* The options (iopfctl.c). */
extern enum json_mode arg_json;
extern bool arg_legend;	     /* headers, titles, the --watch banner */
extern char **arg_columns;   /* -o: column names, NULL-terminated; NULL: the defaults */
extern bool arg_columns_add; /* -o +COL,...: the defaults and these */
extern double arg_watch;     /* seconds between --watch frames; 0: once */

/* One connection to iopfd, and what the command shows. */
struct ctx {
	sd_bus *bus;
	const char *destination; /* IOPF_DBUS_NAME on the system bus, NULL peer-to-peer */
	bool all;		 /* every tenant's objects (the *All* calls) */
	unsigned n_tables;	 /* tables printed so far: a blank line between two */
};

/* Call @method without arguments; on failure say why on stderr. Return: 0 or -errno. */
int ctl_call(struct ctx *x, const char *interface, const char *method, sd_bus_message **ret,
	     const char *types, ...);
/* Say that a reply did not have the expected shape. Returns @r. */
int ctl_parse_error(int r);

/* --- columns and their renderer (iopfctl-output.c) --- */

/* How a value is printed: in a table, and in JSON. */
enum cell {
	CELL_U64,	   /* decimal; a number */
	CELL_HEX,	   /* 0x...; a number */
	CELL_PASID,	   /* 0x... or "none"; a number or null */
	CELL_BYTES,	   /* 12.0KiB; a number */
	CELL_ACCESS,	   /* rwxp flags; the bits as a number */
	CELL_ACCESS_FLAGS, /* rwxp flags; the same string */
	CELL_DURATION,	   /* a bucket bound: 20us, "-" when empty, ">10s"; ns or null */
	CELL_RATE,	   /* per second, "-" when not known yet; a number or null */
	CELL_STRING,
	CELL_STATE, /* 0 "ok", else "broken"; the same string */
	CELL_JSON,  /* JSON only: an object built from the row (counters, latency) */
};

#define COL_ALL	  (1u << 0) /* the owning tenant: only in the every-tenant views, read first */
#define COL_WATCH (1u << 1) /* shown by default only with --watch */
#define COL_EXTRA (1u << 2) /* shown only when -o names it */

struct column {
	const char *header; /* the table's; NULL: JSON only. Lowercased, the -o name */
	const char *json;   /* the JSON key; NULL: table only */
	enum cell cell;
	unsigned wire; /* position in the caller's own D-Bus row, from 1; 0: derived */
	unsigned flags;
};

union value {
	uint64_t u;
	double d;
	const char *s;	       /* into the reply, or static */
	struct json_object *j; /* owned by the row until shown */
};

/* The counters of an a{st} a table shows; JSON has every one. */
struct counters {
	uint64_t faults, groups, success, invalid, stale, pages_mapped, bytes_mapped;
	uint64_t tenants, io_errors, broken, paused;
	char why[160]; /* reasons of INVALID answers: "permission=1,..." */
};

struct row {
	union value *v; /* one per column of the listing */
	struct counters c;
	struct iopf_histogram lat;
	bool skip; /* derive() says the table leaves it out */
};

struct listing {
	const char *name;  /* JSON section: "sources" */
	const char *title; /* above the table, with the legend; NULL: none */
	const char *method, *method_all;
	const char *row, *row_all; /* the reply's "a" ROW signature; NULL: the reply is one row */
	const struct column *columns;
	size_t n_columns;
	/* fill the derived columns of @row; NULL: none */
	void (*derive)(struct ctx *x, const struct listing *l, struct row *row);
};

/* The -o name of @col (its header lowercased; its JSON key works too), in @buf. */
const char *column_name(const struct column *col, char buf[static 32]);
/* Does @l have a column named @name? */
bool listing_has_column(const struct listing *l, const char *name);

/*
 * Call @l's method and show its rows: print the table, or with --json add the
 * rows to @frame under @l->name. Return: 0 or -errno (said on stderr).
 */
int listing_show(struct ctx *x, const struct listing *l, struct json_object *frame);

/* Read the a{st} at the reply's position into @c and, when @ret_json is set, an object. */
int read_counters(sd_bus_message *m, struct counters *c, struct json_object **ret_json);

/* Print @frame as --json says: the whole object, or nothing when it cannot be formatted. */
int json_print(struct json_object *frame);

/* Text of the value printers, shared with status. */
const char *bytes_str(uint64_t v, char buf[static 32]);
const char *dur_str(uint64_t ns, char buf[static 24]);

/* --- listings (iopfctl-listings.c) --- */

extern const struct listing listing_sources, listing_domains, listing_regions;
extern const struct listing listing_tenant_stats, listing_domain_stats, listing_source_stats,
	listing_daemon_stats;

/* The rates of the --watch frames: the next frame's baseline is this one's totals. */
void rates_next_frame(void);
/* Seconds between the last two readings of the tenants' totals; NAN on the first frame. */
double rates_interval(void);
void rates_free(void);

/* --- status (iopfctl-status.c) --- */

int show_status(struct ctx *x);

/* A latency histogram as JSON: count, sum_ns, percentiles, the non-empty buckets. */
struct json_object *latency_json(const struct iopf_histogram *h);

#endif /* IOPFCTL_H */
