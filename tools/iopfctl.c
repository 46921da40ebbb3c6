/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iopfctl: look at what iopfd serves.
 *
 * A connection only ever sees its own objects, and iopfctl's connection owns
 * none, so by default root (the operator) asks for every tenant's objects
 * through the List*All / Get*All methods; --mine asks for the caller's own
 * (useful through a tenant's address, or to check the daemon is alive).
 *
 * Each command shows listings (iopfctl-listings.c: a column table per D-Bus
 * call) through one renderer (iopfctl-output.c), or the daemon's status
 * (iopfctl-status.c). "stats --watch" refreshes with rates per second.
 */
#include <ctype.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "iopf/client.h"
#include "iopfctl.h"
#include "time-util.h"
#include "util.h"
#include "wire.h"

enum json_mode arg_json = JSON_OFF;
bool arg_legend = true;
char **arg_columns;
bool arg_columns_add;
double arg_watch;
static const char *arg_address;
static int arg_all = -1;	/* -1: uid 0 gets everything */
static unsigned arg_iterations; /* --watch frames; 0: until interrupted */

int ctl_call(struct ctx *x, const char *interface, const char *method, sd_bus_message **ret,
	     const char *types, ...)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
	sd_bus_error error = SD_BUS_ERROR_NULL;
	va_list ap;
	int r;

	r = sd_bus_message_new_method_call(x->bus, &m, x->destination, IOPF_DBUS_PATH,
					   interface ? interface : IOPF_DBUS_INTERFACE, method);
	if (r >= 0 && types) {
		va_start(ap, types);
		r = sd_bus_message_appendv(m, types, ap);
		va_end(ap);
	}
	if (r >= 0)
		r = sd_bus_call(x->bus, m, 0, &error, ret);
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

int ctl_parse_error(int r)
{
	fprintf(stderr, "iopfctl: unexpected reply: %s\n", strerror(-r));
	return r;
}

/* --- commands --- */

struct verb {
	const char *name, *help;
	int (*run)(struct ctx *x, const struct verb *v);
	const struct listing *const *listings; /* NULL-terminated */
};

/* Each listing of @v, into one JSON object or one table after the other. */
static int show_listings(struct ctx *x, const struct verb *v, struct json_object *frame)
{
	int r = 0;

	for (const struct listing *const *l = v->listings; r >= 0 && *l; l++)
		if (*l != &listing_daemon_stats || x->all) /* the daemon's totals: root's */
			r = listing_show(x, *l, frame);
	return r;
}

static int run_once(struct ctx *x, const struct verb *v)
{
	struct json_object *frame = arg_json ? json_object_new_object() : NULL;
	int r;

	r = show_listings(x, v, frame);
	if (r >= 0 && arg_json)
		r = json_print(frame);
	json_object_put(frame);
	return r;
}

static void sleep_s(double s)
{
	struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - floor(s)) * 1e9)};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* stats, once or every arg_watch seconds; with --json one object per frame. */
static int run_stats(struct ctx *x, const struct verb *v)
{
	bool tty = isatty(STDOUT_FILENO);
	int r = 0;

	for (unsigned frame = 0;; frame++) {
		struct json_object *o = arg_json ? json_object_new_object() : NULL;

		if (arg_watch > 0 && !arg_json && arg_legend) {
			time_t wall = time(NULL);
			char when[64];

			strftime(when, sizeof(when), "%F %T", localtime(&wall));
			if (tty)
				printf("\033[H\033[2J"); /* home, clear */
			printf("iopfctl stats every %gs, %s (Ctrl-C to stop); rates per second "
			       "and latency percentiles over the last interval\n\n",
			       arg_watch, when);
		}
		x->n_tables = 0;
		r = show_listings(x, v, o);
		if (r >= 0 && arg_json) {
			if (arg_watch > 0) {
				double dt = rates_interval();

				json_object_object_add(o, "interval_s",
						       isnan(dt) ? NULL
								 : json_object_new_double(dt));
				/* when this frame was read: CLOCK_REALTIME, µs since the epoch */
				json_object_object_add(
					o, "timestamp_us",
					json_object_new_uint64(now_ns(CLOCK_REALTIME) /
							       NSEC_PER_USEC));
			}
			r = json_print(o);
		}
		json_object_put(o);
		fflush(stdout);
		if (r < 0 || arg_watch <= 0)
			break;
		if (arg_iterations && frame + 1 >= arg_iterations)
			break;
		rates_next_frame();
		sleep_s(arg_watch);
	}
	rates_free();
	return r;
}

static int run_status(struct ctx *x, const struct verb *v)
{
	return show_status(x);
}

static const struct verb verbs[] = {
	{"list", "sources, domains and regions", run_once,
	 (const struct listing *const[]){&listing_sources, &listing_domains, &listing_regions,
					 NULL}},
	{"sources", "fault sources", run_once,
	 (const struct listing *const[]){&listing_sources, NULL}},
	{"domains", "domains (device, PASID handlers)", run_once,
	 (const struct listing *const[]){&listing_domains, NULL}},
	{"regions", "memory regions", run_once,
	 (const struct listing *const[]){&listing_regions, NULL}},
	{"stats",
	 "per tenant and per domain: counters and fault latency\n"
	 "             percentiles; unrouted faults and health per source; daemon\n"
	 "             totals (root)",
	 run_stats,
	 (const struct listing *const[]){&listing_tenant_stats, &listing_domain_stats,
					 &listing_source_stats, &listing_daemon_stats, NULL}},
	{"status",
	 "version, uptime, workers, tenants, broken sources and the\n"
	 "             effective configuration",
	 run_status, (const struct listing *const[]){NULL}},
};

/* --- main --- */

static void help(void)
{
	printf("Usage: iopfctl [OPTIONS] [COMMAND]\n\n"
	       "Show what iopfd serves.\n\n"
	       "Commands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
		printf("  %-10s %s\n", verbs[i].name, verbs[i].help);
	printf("\nOptions:\n"
	       "  --address ADDR     D-Bus address, socket path, or \"system\"\n"
	       "                     (default $%s or %s)\n"
	       "  --json[=FORMAT]    JSON instead of tables: pretty, short (one line) or off;\n"
	       "                     plain --json is pretty on a terminal, else short\n"
	       "  -o --output=COLS   the columns to show, comma-separated (+COLS: the\n"
	       "                     default ones and these); names are the headers\n"
	       "  --no-legend        no headers, titles or --watch banner\n"
	       "  --all              every tenant's objects (uid 0; the default for root)\n"
	       "  --mine             only this connection's objects (the default otherwise)\n"
	       "  --watch[=SECS]     stats: refresh every SECS seconds (default 2), with rates\n"
	       "  -n --iterations N  stats --watch: stop after N frames\n"
	       "  --version          print the version\n"
	       "  -h --help          this help\n",
	       IOPF_ADDRESS_ENV, IOPF_DEFAULT_ADDRESS);
}

/* What sd-bus's error means here, before its own words. */
static const char *connect_hint(int r)
{
	switch (-r) {
	case ECONNREFUSED:
		return "no iopfd listening ";
	case ENOENT:
		return "no such socket ";
	case EACCES:
		return "not allowed ";
	default:
		return "";
	}
}

static int connect_bus(const char *address, sd_bus **ret, const char **ret_destination)
{
	_cleanup_free_ char *path_address = NULL;
	const char *shown;
	sd_bus *bus = NULL;
	int r;

	if (!address)
		address = getenv(IOPF_ADDRESS_ENV);
	if (!address || !*address)
		address = IOPF_DEFAULT_ADDRESS;
	shown = address;
	*ret_destination = NULL;
	if (strcmp(address, "system") == 0) {
		*ret_destination = IOPF_DBUS_NAME;
		r = sd_bus_open_system(&bus);
	} else {
		/* a D-Bus address has a transport ("unix:"); without one it is a socket path */
		if (!strchr(address, ':')) {
			path_address = iopf_wire_path_address(address);
			if (!path_address)
				return -ENOMEM;
			address = path_address;
		}
		r = sd_bus_new(&bus);
		if (r >= 0)
			r = sd_bus_set_address(bus, address);
		if (r >= 0)
			r = sd_bus_start(bus);
	}
	if (r < 0) {
		fprintf(stderr, "iopfctl: cannot connect to %s: %s%s%s%s\n", shown, connect_hint(r),
			*connect_hint(r) ? "(" : "", strerror(-r), *connect_hint(r) ? ")" : "");
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

static int parse_json(const char *s)
{
	if (!s)
		return isatty(STDOUT_FILENO) ? JSON_PRETTY : JSON_SHORT;
	if (strcmp(s, "pretty") == 0)
		return JSON_PRETTY;
	if (strcmp(s, "short") == 0)
		return JSON_SHORT;
	if (strcmp(s, "off") == 0)
		return JSON_OFF;
	return -EINVAL;
}

/* -o a,b,c or +a,b into arg_columns (lowercase names). */
static int parse_columns(const char *s)
{
	size_t n = 1;
	char *copy, *tok, *save;

	arg_columns_add = *s == '+';
	s += arg_columns_add;
	for (const char *p = s; *p; p++)
		n += *p == ',';
	free(arg_columns ? arg_columns[0] : NULL);
	free(arg_columns);
	arg_columns = calloc(n + 1, sizeof(*arg_columns));
	copy = strdup(s);
	if (!arg_columns || !copy) {
		free(copy);
		return -ENOMEM;
	}
	n = 0;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		for (char *c = tok; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		arg_columns[n++] = tok;
	}
	if (n == 0) {
		free(copy);
		return -EINVAL;
	}
	return 0; /* arg_columns[0] is the start of copy: freed with it */
}

/* Every -o name must be a column of one of the command's listings. */
static int check_columns(const struct verb *v)
{
	char buf[32], other[32];

	if (!arg_columns)
		return 0;
	if (!v->listings[0]) {
		fprintf(stderr, "iopfctl: -o goes with the listing commands, not %s\n", v->name);
		return -EINVAL;
	}
	for (char **name = arg_columns; *name; name++) {
		bool found = false;

		for (const struct listing *const *l = v->listings; *l; l++)
			found = found || listing_has_column(*l, *name);
		if (found)
			continue;
		fprintf(stderr, "iopfctl: %s has no column \"%s\"; it has:", v->name, *name);
		for (const struct listing *const *l = v->listings; *l; l++)
			for (size_t i = 0; i < (*l)->n_columns; i++) {
				bool seen = false;

				column_name(&(*l)->columns[i], buf);
				for (const struct listing *const *k = v->listings; k <= l; k++)
					seen = seen || (k < l && listing_has_column(*k, buf));
				for (size_t j = 0; j < i; j++)
					seen = seen || strcmp(column_name(&(*l)->columns[j], other),
							      buf) == 0;
				if (!seen)
					fprintf(stderr, " %s", buf);
			}
		fputc('\n', stderr);
		return -EINVAL;
	}
	return 0;
}

enum {
	ARG_ADDRESS = 0x100,
	ARG_JSON,
	ARG_NO_LEGEND,
	ARG_ALL,
	ARG_MINE,
	ARG_WATCH,
	ARG_VERSION,
};

/* One option of getopt_long(). Return: 1 go on, 0 done (--help, --version), -errno. */
static int parse_option(int c)
{
	char *end;
	int r;

	switch (c) {
	case ARG_ADDRESS:
		arg_address = optarg;
		return 1;
	case ARG_JSON:
		r = parse_json(optarg);
		if (r < 0) {
			fprintf(stderr, "iopfctl: --json=%s: not pretty, short or off\n", optarg);
			return r;
		}
		arg_json = r;
		return 1;
	case 'o':
		r = parse_columns(optarg);
		if (r < 0) {
			fprintf(stderr, "iopfctl: -o %s: no column names\n", optarg);
			return r;
		}
		return 1;
	case ARG_NO_LEGEND:
		arg_legend = false;
		return 1;
	case ARG_ALL:
		arg_all = 1;
		return 1;
	case ARG_MINE:
		arg_all = 0;
		return 1;
	case ARG_WATCH:
		arg_watch = 2;
		if (optarg && parse_seconds(optarg, &arg_watch) < 0) {
			fprintf(stderr, "iopfctl: --watch=%s: not 0.05 to 3600 seconds\n", optarg);
			return -EINVAL;
		}
		return 1;
	case 'n':
		errno = 0;
		arg_iterations = (unsigned)strtoul(optarg, &end, 10);
		if (errno || *end || !*optarg || arg_iterations == 0) {
			fprintf(stderr, "iopfctl: --iterations=%s: not a positive number\n",
				optarg);
			return -EINVAL;
		}
		return 1;
	case ARG_VERSION:
		printf("iopfctl %s\n", IOPFD_VERSION);
		return 0;
	case 'h':
		help();
		return 0;
	default:
		return -EINVAL;
	}
}

static int parse_args(int argc, char *argv[], const struct verb **ret_verb)
{
	static const struct option options[] = {
		{"address", required_argument, NULL, ARG_ADDRESS},
		{"json", optional_argument, NULL, ARG_JSON},
		{"output", required_argument, NULL, 'o'},
		{"no-legend", no_argument, NULL, ARG_NO_LEGEND},
		{"all", no_argument, NULL, ARG_ALL},
		{"mine", no_argument, NULL, ARG_MINE},
		{"watch", optional_argument, NULL, ARG_WATCH},
		{"iterations", required_argument, NULL, 'n'},
		{"version", no_argument, NULL, ARG_VERSION},
		{"help", no_argument, NULL, 'h'},
		{},
	};
	const char *cmd;
	int c, r;

	while ((c = getopt_long(argc, argv, "hn:o:", options, NULL)) >= 0) {
		r = parse_option(c);
		if (r <= 0)
			return r;
	}
	cmd = optind < argc ? argv[optind] : "list";
	if (optind + 1 < argc) {
		fprintf(stderr, "iopfctl: unexpected argument %s\n", argv[optind + 1]);
		return -EINVAL;
	}
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
		if (strcmp(cmd, verbs[i].name) == 0)
			*ret_verb = &verbs[i];
	if (!*ret_verb) {
		fprintf(stderr, "iopfctl: unknown command %s (see --help)\n", cmd);
		return -EINVAL;
	}
	if (arg_watch > 0 && (*ret_verb)->run != run_stats) {
		fprintf(stderr, "iopfctl: --watch goes with stats\n");
		return -EINVAL;
	}
	r = check_columns(*ret_verb);
	return r < 0 ? r : 1;
}

int main(int argc, char *argv[])
{
	const struct verb *v = NULL;
	struct ctx x = {};
	int r;

	r = parse_args(argc, argv, &v);
	if (r <= 0)
		goto done;
	x.all = arg_all < 0 ? geteuid() == 0 : arg_all;

	r = connect_bus(arg_address, &x.bus, &x.destination);
	if (r < 0)
		goto done;
	r = v->run(&x, v);
	if (r >= 0 && !x.all && !arg_json && v->listings[0] && isatty(STDERR_FILENO))
		fprintf(stderr, "(this connection's own objects only: a fresh connection has none; "
				"root sees every tenant)\n");
	sd_bus_flush_close_unref(x.bus);
done:
	free(arg_columns ? arg_columns[0] : NULL);
	free(arg_columns);
	return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
