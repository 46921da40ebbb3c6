/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iopf-sim: a simulated accelerator and its tenants.
 *
 * Each tenant registers with iopfd exactly as a real one would (its own
 * D-Bus connection through libiopf-client: a fault source, domains for
 * several devices and PASIDs, regions backed by memfds), except that its
 * "iommufd" is a simulator context (lib/sim/include/sim.h). The injector threads then
 * raise page-request groups and check every answer: one per group, the
 * expected code, and for SUCCESS that every page of the group is mapped in
 * the simulated IOMMU with a sound prot and the right backing (inode,
 * offset). It prints throughput, inject-to-answer latency and the number of
 * violations; any violation makes it exit 1.
 *
 * --echo serves the same contexts with tools/iopf-echo (no routing, no
 * mapping) for a baseline; --compare runs both and prints the ratios.
 *
 * IOVA layout of a tenant: domain d owns the slice [(d+1) << slice_shift, ...);
 * region r of it starts at slice + 2 * r * region_size, so the gap after each
 * region is a known "outside" address. Backing: one memfd per device, region
 * (pasid p, region r) at offset (p * regions + r) * region_size.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "iopf/client.h"
#include "iopf/iopf.h"
#include "parse.h"
#include "uapi.h"
#include "sim.h"
#include "u64vec.h"
#include "util.h"

#define SIM_MAX_GROUP_RECS 32u
#define NSEC		   UINT64_C(1000000000)
#define HIST_SUB	   32u
#define HIST_BUCKETS	   (60u * HIST_SUB)
#define MAX_VIOLATION_LOGS 20

enum pattern { PATTERN_SEQ, PATTERN_RANDOM, PATTERN_HOT };
enum target { TARGET_IOPFD, TARGET_ECHO };
enum event {
	EVENT_NONE,
	EVENT_CLOSE,	    /* tenant 0 closes its connection */
	EVENT_KILL,	    /* tenant 0's process (a child) is SIGKILLed */
	EVENT_UNREG_SOURCE, /* tenant 0 unregisters its source */
	EVENT_UNREG_DOMAIN, /* tenant 0 unregisters its first domain, keeps faulting on it */
	EVENT_DETACH,	    /* tenant 0's first device is detached (stale cookies) */
};

struct opts {
	const char *address;
	const char *echo_path;
	enum target target;
	bool compare;
	bool floor; /* measure the physical floor first */
	uint64_t floor_faults;
	unsigned tenants, devices, pasids, regions, group, window, injectors, echo_threads;
	uint64_t region_size;
	enum pattern pattern;
	uint64_t faults;
	double duration;
	double rate;
	unsigned bad_pct, dup_pct;
	enum event event;
	bool json, verbose;
	bool echo_strict; /* checker self-test: echo, judged as if it were iopfd */
	uint64_t seed;
	uint32_t queue_depth;
	double drain_timeout;
	unsigned check_every; /* check the mapping of one SUCCESS group in N */
	bool restarts;	      /* iopfd may be killed and restarted during the run */
	/* --storm: the last `storm` of the tenants, closed loop, driven by the first injector */
	unsigned storm, storm_window;
	bool spin; /* paced injectors poll the clock: never asleep when a group is due */
	uint64_t max_overtakes; /* 0: not measured */
};

static struct opts opt = {
	.tenants = 1,
	.devices = 2,
	.pasids = 1,
	.regions = 4,
	.group = 1,
	.window = 64,
	.injectors = 1,
	.echo_threads = 1,
	.region_size = 1 << 20,
	.pattern = PATTERN_SEQ,
	.faults = 100000,
	.seed = 1,
	.drain_timeout = 30,
	.check_every = 1,
	.floor_faults = 20000,
	.storm_window = 1024,
};

enum expect { EXPECT_SUCCESS, EXPECT_INVALID, EXPECT_EITHER };

struct region {
	uint64_t iova, length, offset;
	uint32_t access; /* IOPF_ACCESS_* */
	uint64_t id;
};

struct domain {
	uint32_t dev_id, pasid;
	unsigned dev_idx, pasid_idx;
	uint64_t id;
	uint64_t base;
	bool gone;	/* unregistered on purpose: faults on it must be INVALID */
	unsigned cur_r; /* seq pattern: next region and page in it */
	uint64_t cur_first;
	struct region *regions;
};

/* One record of a group in flight. */
struct rec {
	uint64_t addr;
	int32_t region; /* -1: outside every region */
	uint32_t perm;
};

/*
 * One group in flight; its index is the sim tag. Small, and its records apart
 * (tenant.recs, opt.group per flight): the checker touches one line per answer.
 */
struct flight {
	uint64_t t_sched; /* when it was due (paced); 0: closed loop, measured from the inject */
	uint64_t t_vis;	  /* --max-overtakes: after its inject (and doorbell) returned */
	uint32_t dom;
	uint8_t expect;
	uint8_t n;
	bool busy;
	bool check_map; /* SUCCESS must have mapped every page */
	bool kernel_ok; /* an INVALID by the "kernel" (detach) is fine, even after delivery */
	bool undelivered_kernel_ok; /* ... but only if the daemon never read it */
};

enum tenant_state { TENANT_LIVE, TENANT_RELEASING, TENANT_DONE };

#define DRAW_AHEAD 4u

struct tenant {
	unsigned idx;
	/* --max-overtakes: the spell of lock holds going on (calls closer than HOLD_GAP_NS) */
	uint64_t spell_start, spell_end;
	unsigned window; /* groups in flight at most: opt.window, or opt.storm_window */
	bool storm;	 /* a closed-loop storm tenant (--storm) */
	struct iopf_sim *sim;
	uint32_t ioas;
	struct iopf_client *client; /* NULL when a child registered it, or echo */
	pid_t child;
	int child_pipe; /* our end; the child exits when it closes */
	uint64_t source_id;
	int *dev_fd; /* backing memfd per device */
	struct stat *dev_st;
	struct domain *dom;
	unsigned n_dom;
	struct region *reg;
	struct flight *fl;
	struct rec *recs; /* opt.group per flight */
	uint32_t *free_fl;
	unsigned n_free;
	unsigned inflight;
	enum tenant_state state;
	bool active; /* on its injector's list of tenants with groups in flight */
	uint64_t release_deadline;
	uint64_t rng;
	uint64_t map_candidates; /* SUCCESS answers whose pages could be checked */
	unsigned last_dom;
	/* the last group's pages, for --dup */
	bool have_last;
	unsigned dup_dom, dup_r;
	uint64_t dup_first;
	/*
	 * Random patterns: the pages of the next DRAW_AHEAD groups, drawn ahead,
	 * so that their domains and regions are on their way into the cache
	 * while this group is made (with 65,536 domains each is a miss, and the
	 * generator, not the server, would set the rate).
	 */
	struct drawn {
		unsigned dom, r;
		uint64_t first;
	} ahead[DRAW_AHEAD];
	unsigned n_ahead, next_ahead;
};

static struct rec *flight_recs(const struct tenant *t, const struct flight *fl)
{
	return &t->recs[(size_t)(fl - t->fl) * opt.group];
}

struct hist {
	uint64_t b[HIST_BUCKETS];
	uint64_t n, max;
};

struct result {
	uint64_t inj_groups, inj_faults;
	uint64_t answered, success, invalid, by_kernel;
	uint64_t kernel_after_read; /* auto-answered after iopfd read them: stale cookies exercised
				     */
	uint64_t violations;
	uint64_t unanswered;
	uint64_t map_checked;	  /* SUCCESS groups whose every page was checked in the IOMMU */
	uint64_t t_first, t_last; /* first injection, last answer */
	struct hist lat;  /* answer - scheduled time (the inject time, closed loop): the headline */
	struct hist svc;  /* answer - actual inject time */
	struct hist late; /* actual inject - scheduled time: how late the injector ran (paced) */
	uint64_t behind;  /* paced groups injected more than one schedule period late */
	/* --max-overtakes: most storm groups answered while one of these groups waited */
	uint64_t overtakes_max, overtakes_sum, overtakes_n, overtakes_excluded;
	/* summed sim counters */
	uint64_t doorbells, reads, delivered_groups, delivered_records, bad_code, bad_cookie,
		corrupt, maps;
};

struct injector {
	pthread_t thread;
	unsigned idx;
	struct tenant **t;
	unsigned n_t;
	uint64_t quota; /* groups to inject; UINT64_MAX with a duration */
	double rate;	/* groups/s, 0 = closed loop */
	/* paced: group i is due at t0 + i / rate, on tenant i mod n_t */
	uint64_t t0;
	uint64_t next; /* the next scheduled group */
	unsigned rr;   /* its tenant */
	/* tenants with groups in flight: the only ones harvested */
	struct tenant **act;
	unsigned n_act;
	unsigned inflight;
	bool releasing; /* a tenant left mid-run: watch it let go */
	uint64_t drain_deadline;
	struct result res;
	unsigned events_done;
	bool storm; /* the storm tenants' injector: closed loop until the others are done */
	struct injector *storm_on; /* the storm's, driven from this one's thread (injector_run()) */
	/* --max-overtakes: storm answer times, or (visible, answered) pairs of the others */
	struct u64vec marks;
	/*
	 * ... and (start, end) of the others' spells of holding their simulator lock
	 * long enough to outlast the server's spin on it (a preempted injector, or
	 * calls back to back): the server tries again a round later, or backs off
	 */
	struct u64vec holds;
};

static struct tenant *tenants;
static uint64_t run_start, run_end_by;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned violation_logs;
static bool bad_cookie_expected;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(uint64_t *s)
{
	/* splitmix64: cheap, and every run with the same --seed is the same run */
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static unsigned rnd_below(uint64_t *s, unsigned n)
{
	/* the high half scaled to [0, n): a multiply, not a division */
	return (unsigned)(((rnd(s) >> 32) * n) >> 32);
}

_printf_(2, 3) static void violation(struct result *res, const char *fmt, ...)
{
	va_list ap;

	res->violations++;
	pthread_mutex_lock(&log_lock);
	if (violation_logs++ < MAX_VIOLATION_LOGS) {
		fprintf(stderr, "iopf-sim: VIOLATION: ");
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	pthread_mutex_unlock(&log_lock);
}

static void hist_add(struct hist *h, uint64_t v)
{
	unsigned idx;

	if (v < HIST_SUB) {
		idx = (unsigned)v;
	} else {
		unsigned msb = 63u - (unsigned)__builtin_clzll(v);

		idx = (msb - 4) * HIST_SUB + (unsigned)((v >> (msb - 5)) & (HIST_SUB - 1));
	}
	if (idx >= HIST_BUCKETS)
		idx = HIST_BUCKETS - 1;
	h->b[idx]++;
	h->n++;
	if (v > h->max)
		h->max = v;
}

static uint64_t hist_value(unsigned idx)
{
	unsigned msb;

	if (idx < HIST_SUB)
		return idx;
	msb = idx / HIST_SUB + 4;
	/* the middle of the bucket, where it is wider than 1 */
	return (UINT64_C(1) << msb) | ((uint64_t)(idx % HIST_SUB) << (msb - 5)) |
	       (msb >= 6 ? UINT64_C(1) << (msb - 6) : 0);
}

static uint64_t hist_pct(const struct hist *h, double pct)
{
	uint64_t want, seen = 0;
	unsigned i;

	if (!h->n)
		return 0;
	want = (uint64_t)(pct / 100.0 * (double)h->n);
	if ((double)want < pct / 100.0 * (double)h->n)
		want++;
	if (want < 1)
		want = 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= want)
			return hist_value(i) < h->max ? hist_value(i) : h->max;
	}
	return h->max;
}

static void hist_merge(struct hist *a, const struct hist *b)
{
	unsigned i;

	for (i = 0; i < HIST_BUCKETS; i++)
		a->b[i] += b->b[i];
	a->n += b->n;
	if (b->max > a->max)
		a->max = b->max;
}

static void result_merge(struct result *a, const struct result *b)
{

	a->inj_groups += b->inj_groups;
	a->inj_faults += b->inj_faults;
	a->answered += b->answered;
	a->success += b->success;
	a->invalid += b->invalid;
	a->by_kernel += b->by_kernel;
	a->kernel_after_read += b->kernel_after_read;
	a->violations += b->violations;
	a->unanswered += b->unanswered;
	a->map_checked += b->map_checked;
	if (b->t_first && (!a->t_first || b->t_first < a->t_first))
		a->t_first = b->t_first;
	if (b->t_last > a->t_last)
		a->t_last = b->t_last;
	a->behind += b->behind;
	if (b->overtakes_max > a->overtakes_max)
		a->overtakes_max = b->overtakes_max;
	a->overtakes_sum += b->overtakes_sum;
	a->overtakes_n += b->overtakes_n;
	a->overtakes_excluded += b->overtakes_excluded;
	hist_merge(&a->lat, &b->lat);
	hist_merge(&a->svc, &b->svc);
	hist_merge(&a->late, &b->late);
}

/* ---- layout ---- */

static unsigned slice_shift(void)
{
	uint64_t need = 2 * (uint64_t)opt.regions * opt.region_size;
	unsigned s = 21;

	while ((UINT64_C(1) << s) < need)
		s++;
	return s;
}

static int tenant_setup(struct tenant *t, unsigned idx)
{
	unsigned shift = slice_shift(), d, r, k;
	uint64_t pages, dev_size;
	struct iopf_sim_config cfg;
	int rc;

	*t = (struct tenant){.idx = idx, .child = -1, .child_pipe = -1};
	t->storm = idx >= opt.tenants - opt.storm;
	t->window = t->storm ? opt.storm_window : opt.window;
	t->rng = opt.seed * 1000003 + idx;
	t->n_dom = opt.devices * (opt.pasids ? opt.pasids : 1);
	pages = (uint64_t)t->n_dom * opt.regions * (opt.region_size / IOPF_PAGE_SIZE);
	if (pages > IOPF_SIM_MAX_PAGES)
		pages = IOPF_SIM_MAX_PAGES;
	cfg = (struct iopf_sim_config){
		/* a storm's window is its whole queue: closed loop, it keeps it full */
		.queue_depth = t->storm		 ? t->window
			       : opt.queue_depth ? opt.queue_depth
						 : 2 * t->window,
		.max_group = opt.group,
		.n_ioas = 1,
		.iommu_pages = (uint32_t)pages,
		.iommu_maps = (uint32_t)pages,
	};
	rc = iopf_sim_new(&cfg, &t->sim);
	if (rc < 0)
		return rc;
	t->ioas = iopf_sim_ioas_id(t->sim, 0);

	t->dev_fd = calloc(opt.devices, sizeof(*t->dev_fd));
	t->dev_st = calloc(opt.devices, sizeof(*t->dev_st));
	t->dom = calloc(t->n_dom, sizeof(*t->dom));
	t->reg = calloc((size_t)t->n_dom * opt.regions, sizeof(*t->reg));
	t->fl = calloc(t->window, sizeof(*t->fl));
	t->recs = calloc((size_t)t->window * opt.group, sizeof(*t->recs));
	t->free_fl = calloc(t->window, sizeof(*t->free_fl));
	if (!t->dev_fd || !t->dev_st || !t->dom || !t->reg || !t->fl || !t->recs || !t->free_fl)
		return -ENOMEM;
	for (k = 0; k < t->window; k++)
		t->free_fl[k] = t->window - 1 - k;
	t->n_free = t->window;

	dev_size = (uint64_t)(opt.pasids ? opt.pasids : 1) * opt.regions * opt.region_size;
	for (k = 0; k < opt.devices; k++) {
		char name[64];

		snprintf(name, sizeof(name), "iopf-sim-t%u-d%u", idx, k);
		t->dev_fd[k] = memfd_create(name, MFD_CLOEXEC);
		if (t->dev_fd[k] < 0)
			return -errno;
		/* sparse: the daemon maps it into the sim IOMMU, nobody touches the pages */
		if (ftruncate(t->dev_fd[k], (off_t)dev_size) < 0 ||
		    fstat(t->dev_fd[k], &t->dev_st[k]) < 0)
			return -errno;
	}
	for (d = 0; d < t->n_dom; d++) {
		struct domain *dm = &t->dom[d];

		dm->dev_idx = d / (opt.pasids ? opt.pasids : 1);
		dm->pasid_idx = d % (opt.pasids ? opt.pasids : 1);
		/* the same dev_ids in every tenant, on purpose */
		dm->dev_id = 1 + dm->dev_idx;
		dm->pasid = opt.pasids ? 1 + dm->pasid_idx : IOPF_PASID_NONE;
		dm->base = (uint64_t)(d + 1) << shift;
		dm->regions = &t->reg[(size_t)d * opt.regions];
		for (r = 0; r < opt.regions; r++)
			dm->regions[r] = (struct region){
				.iova = dm->base + 2 * r * opt.region_size,
				.length = opt.region_size,
				.offset = ((uint64_t)dm->pasid_idx * opt.regions + r) *
					  opt.region_size,
				/* odd regions are read-only: write faults there are permission
				   errors */
				.access = (r % 2) ? IOPF_ACCESS_READ
						  : IOPF_ACCESS_READ | IOPF_ACCESS_WRITE,
			};
	}
	return 0;
}

static void tenant_fini(struct tenant *t)
{
	unsigned k;

	t->client = iopf_client_free(t->client);
	if (t->child > 0) {
		kill(t->child, SIGKILL);
		waitpid(t->child, NULL, 0);
		t->child = -1;
	}
	t->child_pipe = safe_close(t->child_pipe);
	for (k = 0; t->dev_fd && k < opt.devices; k++)
		safe_close(t->dev_fd[k]);
	t->sim = iopf_sim_free(t->sim);
	free(t->dev_fd);
	free(t->dev_st);
	free(t->dom);
	free(t->reg);
	free(t->fl);
	free(t->recs);
	free(t->free_fl);
	memset(t, 0, sizeof(*t));
}

static int tenant_register(struct tenant *t, struct iopf_client *c)
{
	unsigned d, r;
	int rc;

	rc = iopf_client_register_source(c, iopf_sim_fault_fd(t->sim), iopf_sim_iommufd(t->sim),
					 t->ioas, &t->source_id);
	if (rc < 0) {
		fprintf(stderr, "iopf-sim: tenant %u: RegisterSource: %s (%s)\n", t->idx,
			strerror(-rc), iopf_client_last_error(c) ?: "");
		return rc;
	}
	for (d = 0; d < t->n_dom; d++) {
		struct domain *dm = &t->dom[d];

		rc = iopf_client_register_domain(c, t->source_id, dm->dev_id, dm->pasid, &dm->id);
		if (rc < 0) {
			fprintf(stderr, "iopf-sim: tenant %u: RegisterDomain(%u, %u): %s (%s)\n",
				t->idx, dm->dev_id, dm->pasid, strerror(-rc),
				iopf_client_last_error(c) ?: "");
			return rc;
		}
		for (r = 0; r < opt.regions; r++) {
			struct region *rg = &dm->regions[r];

			rc = iopf_client_add_region(c, dm->id, t->dev_fd[dm->dev_idx], rg->offset,
						    rg->iova, rg->length, rg->access, &rg->id);
			if (rc < 0) {
				fprintf(stderr, "iopf-sim: tenant %u: AddRegion: %s (%s)\n", t->idx,
					strerror(-rc), iopf_client_last_error(c) ?: "");
				return rc;
			}
		}
	}
	return 0;
}

/*
 * The tenant as a separate process, so that it can be killed: the child
 * registers and then waits for the parent to close the pipe (or for SIGKILL).
 */
static int tenant_spawn_child(struct tenant *t)
{
	int up[2], down[2];
	char c;
	pid_t pid;

	if (pipe2(up, O_CLOEXEC) < 0 || pipe2(down, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		struct iopf_client *cl = NULL;

		close(up[0]);
		close(down[1]);
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (iopf_client_connect(opt.address, &cl) < 0 || tenant_register(t, cl) < 0)
			_exit(1);
		(void)!write(up[1], "R", 1);
		(void)!read(down[0], &c, 1);
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	t->child = pid;
	t->child_pipe = down[1];
	if (read(up[0], &c, 1) != 1) {
		close(up[0]);
		return -ECONNREFUSED;
	}
	close(up[0]);
	return 0;
}

/* ---- echo ---- */

static pid_t echo_spawn(void)
{
	char exe[PATH_MAX], path[PATH_MAX + 16], **argv, num[16];
	unsigned i, n = 0;
	int ready[2];
	pid_t pid;
	ssize_t len;
	char c;

	if (opt.echo_path) {
		snprintf(path, sizeof(path), "%s", opt.echo_path);
	} else {
		len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (len < 0)
			return -errno;
		exe[len] = '\0';
		*strrchr(exe, '/') = '\0';
		snprintf(path, sizeof(path), "%s/iopf-echo", exe);
	}
	if (pipe2(ready, O_CLOEXEC) < 0)
		return -errno;
	argv = calloc(2 * opt.tenants + 8, sizeof(*argv));
	if (!argv)
		return -ENOMEM;
	argv[n++] = path;
	argv[n++] = "--threads";
	snprintf(num, sizeof(num), "%u", opt.echo_threads);
	argv[n++] = num;
	argv[n++] = "--ready-fd";
	if (asprintf(&argv[n++], "%d", ready[1]) < 0)
		return -ENOMEM;
	for (i = 0; i < opt.tenants; i++) {
		argv[n++] = "--source";
		if (asprintf(&argv[n++], "%d:%d:%u", iopf_sim_fault_fd(tenants[i].sim),
			     iopf_sim_iommufd(tenants[i].sim), tenants[i].ioas) < 0)
			return -ENOMEM;
	}
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* hand the sim fds over: exactly these lose CLOEXEC */
		(void)fcntl(ready[1], F_SETFD, 0);
		for (i = 0; i < opt.tenants; i++) {
			(void)fcntl(iopf_sim_fault_fd(tenants[i].sim), F_SETFD, 0);
			(void)fcntl(iopf_sim_iommufd(tenants[i].sim), F_SETFD, 0);
		}
		(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
		execv(path, argv);
		_exit(127);
	}
	close(ready[1]);
	for (i = 4; i < n; i += 2)
		free(argv[i]);
	free(argv);
	if (read(ready[0], &c, 1) != 1) {
		close(ready[0]);
		waitpid(pid, NULL, 0);
		fprintf(stderr, "iopf-sim: %s did not start\n", path);
		return -ECHILD;
	}
	close(ready[0]);
	return pid;
}

/* ---- injecting ---- */

static bool is_echo;

/* Build one group for tenant @t into @g/@f, recording what it expects in @fl. */
/* Start loading [p, p + len), len at most a line: it may straddle two. */
static void prefetch_span(const void *p, size_t len)
{
	__builtin_prefetch(p);
	__builtin_prefetch((const char *)p + len - 1);
}

/* Region @r of domain @d: computed, not loaded from the domain, so both can be prefetched at once.
 */
static struct region *region_of(const struct tenant *t, unsigned d, unsigned r)
{
	return &t->reg[(size_t)d * opt.regions + r];
}

/* A random pattern's pages for a group of @n: domain, region, first page. */
static void draw_pages(struct tenant *t, unsigned n, unsigned pages, struct drawn *ret)
{
	ret->dom = rnd_below(&t->rng, t->n_dom);
	/* hot: 90% of the faults on the first tenth of region 0; the rest spread at random */
	if (opt.pattern == PATTERN_HOT && rnd_below(&t->rng, 10) < 9) {
		unsigned hot = pages / 10 > n ? pages / 10 : n;

		ret->r = 0;
		ret->first = rnd_below(&t->rng, hot - n + 1);
		return;
	}
	ret->r = rnd_below(&t->rng, opt.regions);
	ret->first = rnd_below(&t->rng, pages - n + 1);
}

static void make_group(struct tenant *t, struct flight *fl, struct iopf_sim_group *g,
		       struct iopf_sim_fault *f)
{
	unsigned n = opt.group, d, r, i, bad = 0, bad_at = 0,
		 pages = (unsigned)(opt.region_size / IOPF_PAGE_SIZE);
	struct rec *rec = flight_recs(t, fl);
	struct domain *dm;
	struct region *rg;
	uint64_t first;
	bool dup = false;

	if (opt.dup_pct && t->have_last && rnd_below(&t->rng, 100) < opt.dup_pct)
		dup = true;
	/* pages: n consecutive pages of one region */
	if (n > pages)
		n = pages;
	if (opt.pattern == PATTERN_SEQ) {
		d = t->last_dom = t->last_dom + 1 >= t->n_dom ? 0 : t->last_dom + 1;
		dm = &t->dom[d];
		/* no division on the hot path: wrap by comparing */
		r = dm->cur_r;
		first = dm->cur_first;
		if (first + n > pages) {
			first = 0;
			r = r + 1 == opt.regions ? 0 : r + 1;
		}
		dm->cur_r = r;
		dm->cur_first = first + n;
	} else {
		struct drawn *a = &t->ahead[t->next_ahead];

		for (; t->n_ahead < DRAW_AHEAD; t->n_ahead++)
			draw_pages(t, n, pages,
				   &t->ahead[(t->next_ahead + t->n_ahead) % DRAW_AHEAD]);
		d = a->dom;
		r = a->r;
		first = a->first;
		/* and in its place the one after the others */
		draw_pages(t, n, pages, a);
		prefetch_span(&t->dom[a->dom], sizeof(struct domain));
		prefetch_span(region_of(t, a->dom, a->r), sizeof(struct region));
		t->next_ahead = (t->next_ahead + 1) % DRAW_AHEAD;
	}
	if (dup) {
		/* the same pages as the last group again, while it may still be in flight */
		d = t->dup_dom;
		first = t->dup_first;
		r = t->dup_r;
	}
	t->have_last = true;
	t->dup_dom = d;
	t->dup_r = r;
	t->dup_first = first;
	dm = &t->dom[d];
	rg = region_of(t, d, r);

	/* field by field: a compound literal would clear the whole flight first */
	fl->dom = d;
	fl->n = (uint8_t)n;
	fl->busy = true;
	fl->expect = EXPECT_SUCCESS;
	fl->check_map = true;
	fl->kernel_ok = fl->undelivered_kernel_ok = false;
	for (i = 0; i < n; i++) {
		uint32_t perm = IOMMU_PGFAULT_PERM_READ;

		if ((rg->access & IOPF_ACCESS_WRITE) && rnd_below(&t->rng, 2))
			perm |= IOMMU_PGFAULT_PERM_WRITE;
		rec[i].region = (int32_t)r;
		/* devices report unaligned addresses; the daemon must align them */
		rec[i].addr = rg->iova + (first + i) * IOPF_PAGE_SIZE + (rnd(&t->rng) & 0xff8);
		rec[i].perm = perm;
	}
	*g = (struct iopf_sim_group){.dev_id = dm->dev_id,
				     .pasid = dm->pasid,
				     .grpid = (uint32_t)(rnd(&t->rng) & 0x1ff),
				     .n = n,
				     .faults = f};

	if ((!is_echo || opt.echo_strict) && opt.bad_pct && rnd_below(&t->rng, 100) < opt.bad_pct) {
		bad = 1 + rnd_below(&t->rng, 3);
		bad_at = rnd_below(&t->rng, n);
	}
	switch (bad) {
	case 1: /* a PASID (or a device) nobody registered */
		if (rnd_below(&t->rng, 2))
			g->pasid = opt.pasids ? opt.pasids + 1 + rnd_below(&t->rng, 1000) : 7;
		else
			g->dev_id = opt.devices + 1 + rnd_below(&t->rng, 1000);
		fl->check_map = false;
		fl->expect = EXPECT_INVALID;
		break;
	case 2: /* more access than the region allows */
		if (rg->access & IOPF_ACCESS_WRITE)
			rec[bad_at].perm |= IOMMU_PGFAULT_PERM_EXEC;
		else
			rec[bad_at].perm |= IOMMU_PGFAULT_PERM_WRITE;
		fl->check_map = false;
		fl->expect = EXPECT_INVALID;
		break;
	case 3: /* in the gap after the region: inside the domain's slice, in no region */
		rec[bad_at].addr =
			rg->iova + rg->length + rnd_below(&t->rng, pages) * IOPF_PAGE_SIZE;
		rec[bad_at].region = -1;
		fl->check_map = false;
		fl->expect = EXPECT_INVALID;
		break;
	default:
		break;
	}
	if (dm->gone) {
		fl->expect = EXPECT_INVALID;
		fl->check_map = false;
	}
	if (is_echo && !opt.echo_strict) {
		fl->expect = EXPECT_SUCCESS;
		fl->check_map = false;
	}
	for (i = 0; i < n; i++)
		f[i] = (struct iopf_sim_fault){.addr = rec[i].addr, .perm = rec[i].perm};
}

static uint32_t needed_prot(uint32_t perm)
{
	uint32_t p = 0;

	if (perm & IOMMU_PGFAULT_PERM_READ)
		p |= IOMMU_IOAS_MAP_READABLE;
	if (perm & IOMMU_PGFAULT_PERM_WRITE)
		p |= IOMMU_IOAS_MAP_WRITEABLE;
	return p;
}

static uint32_t allowed_prot(uint32_t access)
{
	uint32_t p = 0;

	if (access & IOPF_ACCESS_READ)
		p |= IOMMU_IOAS_MAP_READABLE;
	if (access & IOPF_ACCESS_WRITE)
		p |= IOMMU_IOAS_MAP_WRITEABLE;
	return p;
}

/*
 * The group of answer @a if check_answer() will check its pages against the
 * IOMMU (a SUCCESS not expected to be INVALID, of a group that wants it, and
 * with --check-every N one such group in N), else NULL.
 */
static const struct flight *map_check_of(struct tenant *t, const struct iopf_sim_answer *a)
{
	const struct flight *fl;

	if (a->tag >= t->window || a->by_kernel || a->code != IOMMUFD_PAGE_RESP_SUCCESS)
		return NULL;
	fl = &t->fl[a->tag];
	if (!fl->busy || !fl->check_map || fl->expect == EXPECT_INVALID)
		return NULL;
	return t->map_candidates++ % opt.check_every == 0 ? fl : NULL;
}

/* --max-overtakes: one more mark (answer time, visible time, lock hold bound). */
static void add_mark(struct injector *in, struct u64vec *v, uint64_t x)
{
	if (u64vec_push(v, x) < 0) {
		violation(&in->res, "out of memory for the overtake marks");
		opt.max_overtakes = 0;
	}
}

/*
 * Sim calls of a non-storm tenant, which hold its lock: begin with
 * hold_start(), end with hold_end(). Calls less than HOLD_GAP_NS apart make
 * one spell, as a server spinning on the lock may not see the gaps; a spell
 * longer than the server spins (SIM_SPIN_NS, 20 us; noted from 15 us) may
 * have made its read or answer wait for the next round, behind every other
 * source's turn.
 */
#define HOLD_NOTE_NS (UINT64_C(15) * 1000)
#define HOLD_GAP_NS  (UINT64_C(5) * 1000)
/* Held this long, the server's read may have timed out on it and backed off (SIM_BUSY_NS, 20 ms).
 */
#define HOLD_BACKOFF_NS (UINT64_C(16) * 1000 * 1000)

static uint64_t hold_start(const struct tenant *t)
{
	return opt.max_overtakes && !t->storm ? now_ns() : 0;
}

/* The spell of @t ended: noted if long enough. */
static void spell_close(struct injector *in, struct tenant *t)
{
	if (t->spell_end - t->spell_start >= HOLD_NOTE_NS) {
		add_mark(in, &in->holds, t->spell_start);
		add_mark(in, &in->holds, t->spell_end);
	}
	t->spell_start = t->spell_end = 0;
}

static void hold_end(struct injector *in, struct tenant *t, uint64_t start)
{
	if (!start)
		return;
	if (t->spell_end && start - t->spell_end >= HOLD_GAP_NS)
		spell_close(in, t);
	if (!t->spell_end)
		t->spell_start = start;
	t->spell_end = now_ns();
}

/*
 * @mp, @rc: what the IOMMU holds for each page of the group when map_check_of()
 * named it (looked up for a whole harvest under one lock), else NULL. Code,
 * record count and exactly-once are checked for every answer.
 */
static void check_answer(struct tenant *t, struct injector *in, const struct iopf_sim_answer *a,
			 const struct iopf_sim_mapping *mp, const int *rc)
{
	struct result *res = &in->res;
	const struct rec *rec;
	struct flight *fl;
	struct domain *dm;
	uint64_t sched;
	unsigned i;

	if (a->tag >= t->window || !t->fl[a->tag].busy) {
		violation(res, "tenant %u: answer for unknown group tag %" PRIu64, t->idx, a->tag);
		return;
	}
	fl = &t->fl[a->tag];
	rec = flight_recs(t, fl);
	dm = &t->dom[fl->dom];
	res->answered++;
	res->t_last = a->t_answer > res->t_last ? a->t_answer : res->t_last;
	/* from when it was due, so that a late injector is not a fast server */
	sched = fl->t_sched && fl->t_sched <= a->t_inject ? fl->t_sched : a->t_inject;
	hist_add(&res->lat, a->t_answer - sched);
	hist_add(&res->svc, a->t_answer - a->t_inject);
	if (fl->t_sched)
		hist_add(&res->late, a->t_inject - sched);
	if (a->code == IOMMUFD_PAGE_RESP_SUCCESS)
		res->success++;
	else
		res->invalid++;
	if (a->by_kernel)
		res->by_kernel++;
	if (a->by_kernel && a->cookie)
		res->kernel_after_read++;
	if (opt.max_overtakes && !a->by_kernel) {
		if (!t->storm)
			add_mark(in, &in->marks, fl->t_vis);
		add_mark(in, &in->marks, a->t_answer);
	}

	if (a->n != fl->n)
		violation(res, "tenant %u: group answered with %u records, injected %u", t->idx,
			  a->n, fl->n);
	if (a->by_kernel) {
		if (!fl->kernel_ok && !(fl->undelivered_kernel_ok && a->cookie == 0))
			violation(res,
				  "tenant %u dev %u pasid %#x: group %s left for the kernel to "
				  "answer",
				  t->idx, dm->dev_id, dm->pasid,
				  a->cookie ? "read by iopfd" : "never read");
	} else if (fl->expect == EXPECT_SUCCESS && a->code != IOMMUFD_PAGE_RESP_SUCCESS) {
		violation(res,
			  "tenant %u dev %u pasid %#x addr %#" PRIx64 ": INVALID, expected SUCCESS",
			  t->idx, dm->dev_id, dm->pasid, rec[0].addr);
	} else if (fl->expect == EXPECT_INVALID && a->code != IOMMUFD_PAGE_RESP_INVALID) {
		violation(res,
			  "tenant %u dev %u pasid %#x addr %#" PRIx64 ": SUCCESS, expected INVALID",
			  t->idx, dm->dev_id, dm->pasid, rec[0].addr);
	} else if (mp) {
		res->map_checked++;
		for (i = 0; i < fl->n; i++, mp++, rc++) {
			const struct region *rg = region_of(t, fl->dom, (unsigned)rec[i].region);
			const struct stat *st = &t->dev_st[dm->dev_idx];
			uint64_t page = rec[i].addr & ~(IOPF_PAGE_SIZE - 1);
			uint32_t need = needed_prot(rec[i].perm), allow = allowed_prot(rg->access);

			if (*rc < 0) {
				violation(res,
					  "tenant %u dev %u pasid %#x: SUCCESS but page %#" PRIx64
					  " is not mapped",
					  t->idx, dm->dev_id, dm->pasid, page);
				break;
			}
			if ((mp->prot & need) != need || (mp->prot & ~allow)) {
				violation(res,
					  "tenant %u page %#" PRIx64
					  ": prot %#x, fault needs %#x, region allows %#x",
					  t->idx, page, mp->prot, need, allow);
				break;
			}
			if (mp->st_ino != (uint64_t)st->st_ino ||
			    mp->st_dev != (uint64_t)st->st_dev ||
			    mp->offset != rg->offset + (page - rg->iova)) {
				violation(res,
					  "tenant %u page %#" PRIx64 ": backed by ino %" PRIu64
					  " offset %#" PRIx64 ", expected ino %" PRIu64
					  " offset %#" PRIx64,
					  t->idx, page, mp->st_ino, mp->offset,
					  (uint64_t)st->st_ino, rg->offset + (page - rg->iova));
				break;
			}
		}
	}
	fl->busy = false;
	t->free_fl[t->n_free++] = (uint32_t)a->tag;
	t->inflight--;
	in->inflight--;
}

#define HARVEST_MAX 256u

static int harvest(struct tenant *t, struct injector *in)
{
	static __thread uint64_t pages[HARVEST_MAX * SIM_MAX_GROUP_RECS];
	static __thread struct iopf_sim_mapping mp[HARVEST_MAX * SIM_MAX_GROUP_RECS];
	static __thread int rc[HARVEST_MAX * SIM_MAX_GROUP_RECS];
	struct iopf_sim_answer a[HARVEST_MAX];
	size_t at[HARVEST_MAX];
	bool checked[HARVEST_MAX];
	int n, i, r, total = 0;

	/* nothing answered: no lock (a miss is picked up on the next pass) */
	if (!iopf_sim_peek_answered(t->sim))
		return 0;
	do {
		size_t np = 0;
		uint64_t held = hold_start(t);

		n = iopf_sim_harvest(t->sim, a, ARRAY_SIZE(a));
		hold_end(in, t, held);
		if (n < 0) {
			violation(&in->res, "tenant %u: harvest: %s", t->idx, strerror(-n));
			return 0;
		}
		/* every page a SUCCESS claims, looked up in one go */
		for (i = 0; i < n; i++) {
			const struct flight *fl = map_check_of(t, &a[i]);

			at[i] = np;
			checked[i] = fl;
			for (unsigned k = 0; fl && k < fl->n; k++)
				pages[np++] = flight_recs(t, fl)[k].addr;
		}
		held = hold_start(t);
		r = np ? iopf_sim_lookup_many(t->sim, t->ioas, pages, np, mp, rc) : 0;
		hold_end(in, t, held);
		if (r < 0) {
			violation(&in->res, "tenant %u: lookup: %s", t->idx, strerror(-r));
			for (size_t k = 0; k < np; k++)
				rc[k] = r;
		}
		for (i = 0; i < n; i++)
			check_answer(t, in, &a[i], checked[i] ? &mp[at[i]] : NULL, &rc[at[i]]);
		total += n;
	} while (n == (int)ARRAY_SIZE(a));
	return total;
}

/*
 * Inject up to @max groups on @t in one call; @sched: their scheduled times
 * (paced), or NULL (closed loop). Return: groups injected (0 when the window
 * or the queue is full).
 */
static int inject(struct tenant *t, struct injector *in, unsigned max, const uint64_t *sched)
{
	struct iopf_sim_group g[64];
	static __thread struct iopf_sim_fault f[64][SIM_MAX_GROUP_RECS];
	uint32_t tags[64];
	unsigned n = 0, i;
	uint64_t held;
	int r;

	if (max > ARRAY_SIZE(g))
		max = ARRAY_SIZE(g);
	while (n < max && t->n_free) {
		uint32_t tag = t->free_fl[--t->n_free];

		make_group(t, &t->fl[tag], &g[n], f[n]);
		t->fl[tag].t_sched = sched ? sched[n] : 0;
		g[n].tag = tag;
		tags[n] = tag;
		n++;
	}
	if (!n)
		return 0;
	held = hold_start(t);
	r = iopf_sim_inject(t->sim, g, n);
	hold_end(in, t, held);
	if (r < 0)
		r = 0;
	/* give back what did not fit */
	for (i = n; i-- > (unsigned)r;) {
		t->fl[tags[i]].busy = false;
		t->free_fl[t->n_free++] = tags[i];
	}
	for (i = 0; i < (unsigned)r; i++) {
		in->res.inj_faults += g[i].n;
		t->inflight++;
	}
	if (opt.max_overtakes && !t->storm && r > 0) {
		/* visible, and its doorbell rung: what the server answers from now on overtook it
		 */
		uint64_t vis = now_ns();

		for (i = 0; i < (unsigned)r; i++)
			t->fl[tags[i]].t_vis = vis;
	}
	in->inflight += (unsigned)r;
	in->res.inj_groups += (uint64_t)r;
	if (r && !t->active) {
		t->active = true;
		in->act[in->n_act++] = t;
	}
	if (r && !in->res.t_first)
		in->res.t_first = sched ? sched[0] : now_ns();
	return r;
}

/* ---- the mid-run event ---- */

static void mark_inflight(struct tenant *t, int dev_idx, int dom, bool kernel_ok,
			  bool undelivered_ok)
{
	unsigned k;

	for (k = 0; k < t->window; k++) {
		struct flight *fl = &t->fl[k];

		if (!fl->busy || (dev_idx >= 0 && t->dom[fl->dom].dev_idx != (unsigned)dev_idx) ||
		    (dom >= 0 && fl->dom != (uint32_t)dom))
			continue;
		if (fl->expect == EXPECT_SUCCESS)
			fl->expect = EXPECT_EITHER;
		/* pages may be unmapped by the teardown before we look */
		fl->check_map = false;
		fl->kernel_ok |= kernel_ok;
		fl->undelivered_kernel_ok |= undelivered_ok;
	}
}

/*
 * Detach tenant 0's devices at a moment iopfd holds groups it read but has
 * not answered (checked and done under the sim lock, so no race): its late
 * responses must then be refused as stale without hurting anyone else.
 * Return: groups auto-answered, 0 if iopfd never held one, -errno.
 */
static int detach_caught(struct tenant *t, struct injector *in)
{
	unsigned attempt, d;

	for (attempt = 0; attempt < 200; attempt++) {
		uint64_t deadline;
		int n = 0, r;

		/* keep iopfd busy with this tenant (a full window is fine too) */
		harvest(t, in);
		if (in->res.inj_groups < in->quota)
			(void)inject(t, in, 64, NULL);
		/* poll until iopfd has taken some of it off the queue */
		deadline = now_ns() + NSEC / 500;
		while (now_ns() < deadline) {
			/*
			 * The lock only when it is worth it (hammering it starves iopfd). Sleep
			 * between peeks: if iopfd's worker shares our CPU, a spin would only let
			 * it run whole read-to-answer turns; waking up preempts it mid-turn.
			 */
			if (!iopf_sim_peek_delivered(t->sim)) {
				struct timespec ts = {0, 1000 + (long)rnd_below(&t->rng, 20000)};

				nanosleep(&ts, NULL);
				continue;
			}
			for (d = 0; d < t->n_dom; d += opt.pasids ? opt.pasids : 1) {
				r = iopf_sim_detach_delivered(t->sim, t->dom[d].dev_id,
							      IOPF_SIM_PASID_ANY);
				if (r > 0) {
					if (!n)
						mark_inflight(t, -1, -1, true, true);
					n += r;
				}
			}
			if (n)
				return n;
		}
	}
	return 0;
}

static void run_event(struct injector *in)
{
	struct tenant *t = &tenants[0];
	int r;

	in->events_done++;
	switch (opt.event) {
	case EVENT_NONE:
		return;
	case EVENT_DETACH:
		r = detach_caught(t, in);
		if (opt.verbose)
			fprintf(stderr,
				"iopf-sim: detached while iopfd held read groups: %d "
				"auto-answered\n",
				r);
		if (r)
			return;
		/* the kernel answers dev 1's groups; iopfd's late responses must not hurt others */
		mark_inflight(t, 0, -1, true, true);
		r = iopf_sim_detach(t->sim, t->dom[0].dev_id, IOPF_SIM_PASID_ANY);
		if (opt.verbose)
			fprintf(stderr, "iopf-sim: detached dev %u: %d groups auto-answered\n",
				t->dom[0].dev_id, r);
		return;
	case EVENT_UNREG_DOMAIN:
		mark_inflight(t, -1, 0, false, false);
		r = iopf_client_unregister_domain(t->client, t->dom[0].id);
		if (r < 0)
			violation(&in->res, "UnregisterDomain: %s", strerror(-r));
		t->dom[0].gone = true;
		return;
	case EVENT_CLOSE:
	case EVENT_KILL:
	case EVENT_UNREG_SOURCE:
		/* groups iopfd never read are the kernel's to flush; read ones must be answered */
		mark_inflight(t, -1, -1, false, true);
		if (opt.event == EVENT_CLOSE) {
			t->client = iopf_client_free(t->client);
		} else if (opt.event == EVENT_KILL) {
			kill(t->child, SIGKILL);
			waitpid(t->child, NULL, 0);
			t->child = -1;
		} else {
			r = iopf_client_unregister_source(t->client, t->source_id);
			if (r < 0)
				violation(&in->res, "UnregisterSource: %s", strerror(-r));
		}
		t->state = TENANT_RELEASING;
		in->releasing = true;
		t->release_deadline = now_ns() + (uint64_t)(opt.drain_timeout * 1e9);
		if (opt.verbose)
			fprintf(stderr, "iopf-sim: tenant 0 gone with %u groups in flight\n",
				t->inflight);
		return;
	}
}

/* A tenant that went away: once iopfd let go of its context, flush what it never read. */
static void check_released(struct tenant *t, struct injector *in)
{
	struct iopf_sim_counts c;
	unsigned d;

	if (t->state != TENANT_RELEASING || iopf_sim_get_counts(t->sim, &c) < 0)
		return;
	if (c.backends && now_ns() < t->release_deadline)
		return;
	if (c.backends)
		violation(&in->res, "tenant %u: iopfd still holds its source %.0f s after it left",
			  t->idx, opt.drain_timeout);
	if (c.delivered)
		violation(&in->res, "tenant %u: %u groups read by iopfd were never answered",
			  t->idx, c.delivered);
	/* the VMM tears the hwpts down: the kernel answers the rest */
	for (d = 0; d < t->n_dom; d += opt.pasids ? opt.pasids : 1)
		(void)iopf_sim_detach(t->sim, t->dom[d].dev_id, IOPF_SIM_PASID_ANY);
	t->state = TENANT_DONE;
}

/* ---- the injector's steps ---- */

/* At its share of the run's marks, injector 0 sets the mid-run event off. */
static void event_step(struct injector *in, uint64_t now)
{
	/* detach repeats (each one a chance to catch groups between read and answer); the rest end
	 * tenant 0 */
	unsigned n_events = opt.event == EVENT_DETACH ? 9 : 1, k1, parts;

	if (in->idx != 0 || opt.event == EVENT_NONE || in->events_done >= n_events)
		return;
	k1 = in->events_done + 1;
	parts = n_events + 1;
	if (run_end_by ? now >= run_start + (run_end_by - run_start) / parts * k1
		       : in->res.inj_groups >= in->quota / parts * k1)
		run_event(in);
}

/* A tenant left mid-run: watch each one let go (check_released()). */
static void released_step(struct injector *in)
{
	for (unsigned k = 0; in->releasing && k < in->n_t; k++)
		check_released(in->t[k], in);
}

/* Check the answers of every tenant with groups in flight. Return: answers taken. */
static int harvest_step(struct injector *in)
{
	int progress = 0;
	unsigned k;

	for (k = 0; k < in->n_act; k++) {
		struct tenant *t = in->act[k];

		progress += harvest(t, in);
		if (!t->inflight) {
			t->active = false;
			in->act[k--] = in->act[--in->n_act];
		}
	}
	return progress;
}

/* Injected all it should (or the duration is over), and nothing left in flight or too late. */
static bool drain_step(struct injector *in, uint64_t now)
{
	unsigned k;

	if (!in->inflight)
		return true;
	if (!in->drain_deadline)
		in->drain_deadline = now + (uint64_t)(opt.drain_timeout * 1e9);
	if (now <= in->drain_deadline)
		return false;
	for (k = 0; k < in->n_t; k++)
		if (in->t[k]->inflight)
			violation(&in->res, "tenant %u: %u groups never answered", in->t[k]->idx,
				  in->t[k]->inflight);
	in->res.unanswered += in->inflight;
	return true;
}

/*
 * Closed loop: each tenant's answers checked and its window refilled at once,
 * while its state is in cache: the flights and the queue slots its answers
 * free are the ones the refill takes (both are stacks). With a thousand
 * tenants, a sweep of all the answers and then one of all the refills found
 * every tenant's state cold twice a pass. Return: answers taken and groups
 * injected.
 */
static int inject_closed_step(struct injector *in)
{
	uint64_t allowed = in->quota - in->res.inj_groups;
	int progress = 0;
	unsigned k;

	for (k = 0; k < in->n_t; k++) {
		struct tenant *t = in->t[(in->rr + k) % in->n_t];
		int r;

		if (t->inflight)
			progress += harvest(t, in);
		if (t->state != TENANT_LIVE || !allowed)
			continue;
		r = inject(t, in, allowed < 64 ? (unsigned)allowed : 64, NULL);
		allowed -= (uint64_t)r;
		progress += r;
	}
	in->rr = in->rr + 1 >= in->n_t ? 0 : in->rr + 1;
	return progress;
}

static uint64_t sched_at(const struct injector *in, uint64_t i)
{
	return in->t0 + (uint64_t)((double)i * 1e9 / in->rate);
}

/*
 * Paced: every group whose scheduled time has come, each on its own tenant in
 * turn (so each rings that tenant's doorbell when it is due). Only overdue
 * groups for the same tenant go in one call, which with several tenants never
 * happens. A full window holds the schedule back: the groups behind it wait,
 * and their latency counts from when they were due. Return: groups injected.
 */
static int inject_paced_step(struct injector *in)
{
	uint64_t period = (uint64_t)(1e9 / in->rate), sched[64];
	unsigned skipped = 0;
	int progress = 0;

	while (in->res.inj_groups < in->quota && skipped < in->n_t) {
		struct tenant *t = in->t[in->rr];
		uint64_t now = now_ns(), left = in->quota - in->res.inj_groups;
		unsigned k = 0, max = in->n_t == 1 ? ARRAY_SIZE(sched) : 1, j;
		int r;

		if (sched_at(in, in->next) > now)
			break;
		if (t->state != TENANT_LIVE) {
			/* a tenant gone mid-run: its turn goes to the next */
			in->rr = in->rr + 1 >= in->n_t ? 0 : in->rr + 1;
			skipped++;
			continue;
		}
		while (k < max && k < left && (sched[k] = sched_at(in, in->next + k)) <= now)
			k++;
		r = inject(t, in, k, sched);
		if (r <= 0)
			break;
		for (j = 0; j < (unsigned)r; j++)
			in->res.behind += now - sched[j] > period;
		in->next += (uint64_t)r;
		in->rr = in->rr + 1 >= in->n_t ? 0 : in->rr + 1;
		skipped = 0;
		progress += r;
	}
	return progress;
}

/* Nothing to do now: sleep until the next group is due, or an answer may be. */
static void idle_step(struct injector *in, bool stop)
{
	struct timespec ts = {0, 20000};

	if (in->rate > 0 && !stop) {
		uint64_t due = sched_at(in, in->next), now = now_ns();

		if (due <= now) {
			/* due but the window is full: wait for answers */
			if (opt.spin)
				return;
			ts.tv_nsec = 5000;
		} else {
			if (due - now < 2000 || opt.spin)
				return;
			/* absolute: the time it takes to get here does not push the schedule */
			if (due - now > 200000)
				due = now + 200000;
			ts.tv_sec = (time_t)(due / NSEC);
			ts.tv_nsec = (long)(due % NSEC);
			(void)clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
			return;
		}
	} else if (in->n_t == 1) {
		(void)iopf_sim_wait(in->t[0]->sim, 1000000);
		return;
	}
	nanosleep(&ts, NULL);
}

/* Injectors of the tenants other than the storm's still injecting: the storm lasts as long. */
static unsigned victims_running;

/*
 * One pass of @in: check the answers, and inject what is due (paced) or what
 * the windows let in (closed loop). Adds what it did to @progress; *@stop
 * says it injects no more. Return: it injected all it should and nothing is
 * left in flight (or too late).
 */
static bool injector_pass(struct injector *in, int *progress, bool *stop)
{
	uint64_t now = now_ns();

	*stop = in->res.inj_groups >= in->quota || (run_end_by && now >= run_end_by) ||
		(in->storm && !__atomic_load_n(&victims_running, __ATOMIC_ACQUIRE));
	event_step(in, now);
	if (!*stop && in->rate == 0) {
		*progress += inject_closed_step(in);
		released_step(in);
		return false;
	}
	*progress += harvest_step(in);
	released_step(in);
	if (*stop && drain_step(in, now))
		return true;
	if (!*stop)
		*progress += inject_paced_step(in);
	return false;
}

/*
 * An injector's thread; the first one's also drives the storm (@in->storm_on),
 * a pass of it after each of its own. A storm is another device's load: it
 * must not make the paced groups late (the server's fairness is measured, not
 * the generator's), and a thread of its own would, by the scheduler's wakeup
 * latency of the paced one at every group. Riding along, a paced group waits
 * for at most one storm pass (one harvest, one window refill) and the thread
 * never sleeps while the storm runs.
 */
static void *injector_run(void *arg)
{
	struct injector *in = arg, *storm = in->storm_on;
	bool done = false, storm_done = !storm, stop = false, storm_stop = false;

	for (;;) {
		int progress = 0;

		if (!done && (done = injector_pass(in, &progress, &stop)))
			/* answered all it injected: the storm may stop */
			__atomic_sub_fetch(&victims_running, 1, __ATOMIC_RELEASE);
		if (!storm_done)
			storm_done = injector_pass(storm, &progress, &storm_stop);
		if (done && storm_done)
			return NULL;
		/* both running: no sleep */
		if (progress || (!done && !storm_done))
			continue;
		idle_step(done ? storm : in, done ? storm_stop : stop);
	}
}

/* ---- one run ---- */

static int wait_all_released(struct result *res)
{
	uint64_t deadline = now_ns() + (uint64_t)(opt.drain_timeout * 1e9);
	unsigned i;

	for (i = 0; i < opt.tenants; i++) {
		struct iopf_sim_counts c;

		for (;;) {
			if (iopf_sim_get_counts(tenants[i].sim, &c) < 0)
				break;
			/* after restarts the dead daemons' backends stay counted (see below) */
			if ((opt.restarts ? !c.delivered : !c.backends) || now_ns() > deadline)
				break;
			usleep(1000);
		}
		/*
		 * After a restart of iopfd the tenants are this process's, not its
		 * connection's (they go when it exits), and the dead daemons' backends
		 * are never counted down: only what was read and not answered counts.
		 */
		if (c.backends && !opt.restarts)
			violation(res, "tenant %u: its source was not released after disconnect",
				  i);
		if (c.delivered)
			violation(res, "tenant %u: %u groups left unanswered at disconnect", i,
				  c.delivered);
	}
	return 0;
}

static int tenants_new(void)
{
	unsigned i;
	int rc;

	tenants = calloc(opt.tenants, sizeof(*tenants));
	if (!tenants)
		return -ENOMEM;
	for (i = 0; i < opt.tenants; i++) {
		rc = tenant_setup(&tenants[i], i);
		if (rc < 0) {
			fprintf(stderr, "iopf-sim: tenant %u: %s\n", i, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

static void tenants_free(void)
{
	unsigned i;

	for (i = 0; tenants && i < opt.tenants; i++)
		tenant_fini(&tenants[i]);
	free(tenants);
	tenants = NULL;
}

/* Start iopf-echo on the tenants' contexts (*ret_echo), or register every tenant with iopfd. */
static int target_start(pid_t *ret_echo)
{
	unsigned i;
	int rc;

	if (is_echo) {
		*ret_echo = echo_spawn();
		return *ret_echo < 0 ? (int)*ret_echo : 0;
	}
	/* the killable tenant first, while we are single-threaded and connectionless */
	if (opt.event == EVENT_KILL) {
		rc = tenant_spawn_child(&tenants[0]);
		if (rc < 0) {
			fprintf(stderr, "iopf-sim: tenant 0 (child) failed to register\n");
			return rc;
		}
	}
	for (i = opt.event == EVENT_KILL ? 1 : 0; i < opt.tenants; i++) {
		rc = iopf_client_connect(opt.address, &tenants[i].client);
		if (rc < 0) {
			fprintf(stderr, "iopf-sim: connect to %s: %s\n",
				opt.address ?: "$" IOPF_ADDRESS_ENV, strerror(-rc));
			return rc;
		}
		rc = tenant_register(&tenants[i], tenants[i].client);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void echo_stop(pid_t *echo)
{
	if (*echo > 0) {
		kill(*echo, SIGTERM);
		waitpid(*echo, NULL, 0);
		*echo = -1;
	}
}

/* Every tenant leaves; iopfd must let go of each context with nothing unanswered. */
static void target_stop(pid_t *echo, struct result *res)
{
	unsigned i;

	echo_stop(echo);
	if (is_echo)
		return;
	for (i = 0; i < opt.tenants; i++) {
		tenants[i].client = iopf_client_free(tenants[i].client);
		if (tenants[i].child > 0) {
			kill(tenants[i].child, SIGKILL);
			waitpid(tenants[i].child, NULL, 0);
			tenants[i].child = -1;
		}
	}
	wait_all_released(res);
}

/* The injector threads: opt.injectors for the paced (or closed-loop) tenants, one for a storm. */
static unsigned n_injectors(void)
{
	return opt.injectors + (opt.storm ? 1 : 0);
}

/*
 * Tenants dealt round robin to the injectors, each with its share of the
 * faults and the rate; the storm tenants (the last opt.storm) all to the last
 * injector, closed loop, for as long as the others inject.
 */
static int injectors_new(struct injector **ret)
{
	unsigned victims = opt.tenants - opt.storm, i, k;
	uint64_t groups_total =
		opt.duration > 0 ? UINT64_MAX : (opt.faults + opt.group - 1) / opt.group;
	double group_rate = opt.rate / opt.group;
	struct injector *inj = calloc(n_injectors(), sizeof(*inj));

	if (!inj)
		return -ENOMEM;
	*ret = inj;
	for (i = 0; i < n_injectors(); i++) {
		struct injector *in = &inj[i];
		unsigned n = 0;

		in->idx = i;
		in->storm = i == opt.injectors;
		in->t = calloc(opt.tenants, sizeof(*in->t));
		in->act = calloc(opt.tenants, sizeof(*in->act));
		if (!in->t || !in->act)
			return -ENOMEM;
		if (in->storm) {
			for (k = victims; k < opt.tenants; k++)
				in->t[n++] = &tenants[k];
			in->n_t = n;
			in->quota = UINT64_MAX;
			continue;
		}
		for (k = i; k < victims; k += opt.injectors)
			in->t[n++] = &tenants[k];
		in->n_t = n;
		in->quota = groups_total == UINT64_MAX ? UINT64_MAX : groups_total * n / victims;
		in->rate = group_rate * n / victims;
	}
	return 0;
}

static void injectors_free(struct injector *inj)
{
	unsigned i;

	for (i = 0; inj && i < n_injectors(); i++) {
		free(inj[i].t);
		free(inj[i].act);
		u64vec_done(&inj[i].marks);
		u64vec_done(&inj[i].holds);
	}
	free(inj);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Storm answers in @st (sorted) strictly after @lo and before @hi. */
static size_t count_between(const uint64_t *st, size_t n, uint64_t lo, uint64_t hi)
{
	size_t a = 0, b = n, first;

	while (a < b) { /* the first > lo */
		size_t m = a + (b - a) / 2;

		if (st[m] <= lo)
			a = m + 1;
		else
			b = m;
	}
	first = a;
	b = n;
	while (a < b) { /* the first >= hi */
		size_t m = a + (b - a) / 2;

		if (st[m] < hi)
			a = m + 1;
		else
			b = m;
	}
	return a - first;
}

/*
 * Whether [@lo, @hi] meets a lock hold of @in, or the server's backoff after a
 * long one.
 */
static bool near_hold(const struct injector *in, uint64_t lo, uint64_t hi)
{
	/* a source whose read timed out is retried on a timer: 10 ms, doubling while it fails */
	const uint64_t backoff = UINT64_C(100) * 1000 * 1000;

	for (size_t k = 0; k + 1 < in->holds.n; k += 2) {
		uint64_t start = in->holds.v[k], end = in->holds.v[k + 1];

		if (end - start >= HOLD_BACKOFF_NS)
			end += backoff;
		if (lo <= end && hi >= start)
			return true;
	}
	return false;
}

/*
 * --max-overtakes: for every answered group of a non-storm tenant, the storm
 * groups the server answered between the moment it was visible (its inject
 * and doorbell returned) and its own answer. Both answer times are the
 * server's clock, in the order it wrote them; the visible time is taken after
 * the fact, so a preempted injector can only make the count smaller. A group
 * that waited while its own injector held the queue's lock (preempted) for
 * longer than the server spins on it, or long enough before it that the
 * server may have backed off the source, is left out (counted in
 * overtakes_excluded): that wait is the tenant's doing.
 */
static void overtakes(struct injector *inj, struct result *res)
{
	struct u64vec *st = &inj[opt.injectors].marks;
	unsigned i;

	qsort(st->v, st->n, sizeof(*st->v), cmp_u64);
	for (i = 0; i < opt.injectors; i++)
		for (size_t k = 0; k + 1 < inj[i].marks.n; k += 2) {
			uint64_t lo = inj[i].marks.v[k], hi = inj[i].marks.v[k + 1], n;

			if (near_hold(&inj[i], lo, hi)) {
				res->overtakes_excluded++;
				continue;
			}
			n = count_between(st->v, st->n, lo, hi);
			res->overtakes_sum += n;
			res->overtakes_n++;
			if (n > res->overtakes_max)
				res->overtakes_max = n;
		}
	if (res->overtakes_max > opt.max_overtakes)
		violation(res,
			  "a group waited while the storm had %" PRIu64
			  " groups answered (at most %" PRIu64 " allowed)",
			  res->overtakes_max, opt.max_overtakes);
}

/* @classes (with --storm): [0] the merged results of the other tenants, [1] the storm's. */
static void injectors_run(struct injector *inj, struct result *res, struct result *classes)
{
	double group_rate = opt.rate / opt.group;
	unsigned i;

	run_start = now_ns();
	run_end_by = opt.duration > 0 ? run_start + (uint64_t)(opt.duration * 1e9) : 0;
	victims_running = 0;
	for (i = 0; i < opt.injectors; i++)
		victims_running += inj[i].n_t ? 1 : 0;
	for (i = 0; i < n_injectors(); i++)
		/* the schedules interleave: together, one group every 1 / rate */
		inj[i].t0 =
			run_start +
			(group_rate > 0 && !inj[i].storm ? (uint64_t)(i * 1e9 / group_rate) : 0);
	if (opt.storm)
		inj[0].storm_on = &inj[opt.injectors];
	for (i = 0; i < opt.injectors; i++)
		if (inj[i].n_t)
			pthread_create(&inj[i].thread, NULL, injector_run, &inj[i]);
	for (i = 0; i < n_injectors(); i++) {
		if (inj[i].n_t && !inj[i].storm)
			pthread_join(inj[i].thread, NULL);
		if (opt.storm)
			result_merge(&classes[inj[i].storm], &inj[i].res);
	}
	if (opt.storm && opt.max_overtakes) {
		for (i = 0; i < opt.injectors; i++)
			for (unsigned k = 0; k < inj[i].n_t; k++)
				spell_close(&inj[i], inj[i].t[k]);
		overtakes(inj, &classes[0]);
	}
	if (opt.storm)
		for (i = 0; i < 2; i++)
			result_merge(res, &classes[i]);
	else
		for (i = 0; i < n_injectors(); i++)
			result_merge(res, &inj[i].res);
}

/* The simulator's own counters, summed over the tenants, and what they say about the server. */
static void sim_totals(struct result *res)
{
	unsigned i;

	for (i = 0; i < opt.tenants; i++) {
		struct iopf_sim_counts c;

		if (iopf_sim_get_counts(tenants[i].sim, &c) < 0)
			continue;
		res->doorbells += c.stats.doorbells;
		res->reads += c.stats.reads;
		res->delivered_groups += c.stats.delivered_groups;
		res->delivered_records += c.stats.delivered_records;
		res->bad_code += c.stats.bad_code;
		res->bad_cookie += c.stats.bad_cookie;
		res->corrupt += c.stats.corrupt;
		res->maps += c.stats.maps;
	}
	if (res->bad_code)
		violation(res, "%" PRIu64 " responses with a code other than SUCCESS/INVALID",
			  res->bad_code);
	if (res->bad_cookie && !bad_cookie_expected)
		violation(res, "%" PRIu64 " responses for cookies not outstanding (double answers)",
			  res->bad_cookie);
	if (res->corrupt)
		violation(res, "%" PRIu64 " inconsistencies in the shared queue", res->corrupt);
}

/*
 * One run against @target: set up, inject and check, tear down. With --storm,
 * @ret_classes[0] gets the other tenants' results, [1] the storm's.
 */
static int run(enum target target, struct result *out, struct result *ret_classes)
{
	struct injector *inj = NULL;
	struct result res = {}, classes[2] = {};
	pid_t echo = -1;
	int rc;

	is_echo = target == TARGET_ECHO;
	/* a restarted iopfd answers again what the dead one had just answered: refused */
	bad_cookie_expected = opt.event == EVENT_DETACH || opt.restarts;
	violation_logs = 0;
	rc = tenants_new();
	if (rc >= 0)
		rc = target_start(&echo);
	if (rc >= 0)
		rc = injectors_new(&inj);
	if (rc >= 0) {
		injectors_run(inj, &res, classes);
		target_stop(&echo, &res);
		sim_totals(&res);
		*out = res;
		if (ret_classes)
			memcpy(ret_classes, classes, sizeof(classes));
	}
	echo_stop(&echo);
	injectors_free(inj);
	tenants_free();
	return rc;
}

/* ---- output ---- */

static const char *pattern_name(enum pattern p)
{
	switch (p) {
	case PATTERN_SEQ:
		return "seq";
	case PATTERN_RANDOM:
		return "random";
	case PATTERN_HOT:
		return "hot";
	}
	return "?";
}

static const char *event_name(enum event e)
{
	switch (e) {
	case EVENT_NONE:
		return "none";
	case EVENT_CLOSE:
		return "close";
	case EVENT_KILL:
		return "kill";
	case EVENT_UNREG_SOURCE:
		return "unregister-source";
	case EVENT_UNREG_DOMAIN:
		return "unregister-domain";
	case EVENT_DETACH:
		return "detach";
	}
	return "?";
}

static double secs(const struct result *r)
{
	return r->t_last > r->t_first ? (double)(r->t_last - r->t_first) / 1e9 : 0;
}

static double fps(const struct result *r)
{
	return secs(r) > 0 ? (double)r->inj_faults / secs(r) : 0;
}

static double gps(const struct result *r)
{
	return secs(r) > 0 ? (double)r->answered / secs(r) : 0;
}

static void print_text_body(const struct result *r, bool paced);

static void print_text(const char *name, const struct result *r)
{
	printf("%s: tenants=%u devices=%u pasids=%u regions=%u (domains=%u, regions total=%u) "
	       "group=%u pattern=%s rate=%.0f window=%u bad=%u%% event=%s\n",
	       name, opt.tenants, opt.devices, opt.pasids, opt.regions,
	       opt.tenants * opt.devices * (opt.pasids ? opt.pasids : 1),
	       opt.tenants * opt.devices * (opt.pasids ? opt.pasids : 1) * opt.regions, opt.group,
	       pattern_name(opt.pattern), opt.rate, opt.window, opt.bad_pct, event_name(opt.event));
	print_text_body(r, opt.rate > 0);
}

static void print_text_body(const struct result *r, bool paced)
{
	printf("  injected   %" PRIu64 " faults in %" PRIu64 " groups, %.3f s\n", r->inj_faults,
	       r->inj_groups, secs(r));
	printf("  answered   %" PRIu64 " groups: success %" PRIu64 ", invalid %" PRIu64
	       " (by kernel %" PRIu64 ", of them after iopfd read them %" PRIu64
	       "), unanswered %" PRIu64 "\n",
	       r->answered, r->success, r->invalid, r->by_kernel, r->kernel_after_read,
	       r->unanswered);
	printf("  throughput %.0f faults/s, %.0f groups/s\n", fps(r), gps(r));
	printf("  latency    p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us (%s)\n",
	       hist_pct(&r->lat, 50) / 1e3, hist_pct(&r->lat, 99) / 1e3,
	       hist_pct(&r->lat, 99.9) / 1e3, r->lat.max / 1e3,
	       paced ? "from each group's scheduled time" : "from inject");
	if (paced) {
		printf("  service    p50 %.1f us, p99 %.1f us, p99.9 %.1f us (from the actual "
		       "inject)\n",
		       hist_pct(&r->svc, 50) / 1e3, hist_pct(&r->svc, 99) / 1e3,
		       hist_pct(&r->svc, 99.9) / 1e3);
		printf("  injector   late by p50 %.1f us, p99 %.1f us, max %.1f us; %" PRIu64
		       " groups more than one period late\n",
		       hist_pct(&r->late, 50) / 1e3, hist_pct(&r->late, 99) / 1e3,
		       r->late.max / 1e3, r->behind);
	}
	printf("  transport  %" PRIu64 " doorbells, %" PRIu64 " reads, %.1f records/read, %" PRIu64
	       " maps, rejected responses: %" PRIu64 " bad code, %" PRIu64 " stale cookie\n",
	       r->doorbells, r->reads,
	       r->reads ? (double)r->delivered_records / (double)r->reads : 0.0, r->maps,
	       r->bad_code, r->bad_cookie);
	printf("  checked    every answer's code; the pages of %" PRIu64 " SUCCESS groups "
	       "(1 in %u)\n",
	       r->map_checked, opt.check_every);
	printf("  violations %" PRIu64 "\n", r->violations);
}

/* bucket idx's largest value (ns); every sample counted in buckets 0..idx is <= it */
static uint64_t hist_upper(unsigned idx)
{
	unsigned msb;

	if (idx < HIST_SUB)
		return idx;
	msb = idx / HIST_SUB + 4;
	return ((UINT64_C(1) << msb) | ((uint64_t)(idx % HIST_SUB) << (msb - 5))) +
	       (UINT64_C(1) << (msb - 5)) - 1;
}

/*
 * ,"lat_hist":[[upper_ns,cumulative],...]: the latency distribution, one pair
 * per non-empty bucket, the bucket's upper bound (capped at the maximum) and
 * the groups answered within it so far; the last count is every group.
 */
static void print_json_hist(const struct hist *h)
{
	uint64_t seen = 0, ub;
	const char *sep = "";
	unsigned i;

	printf(",\"lat_hist\":[");
	for (i = 0; i < HIST_BUCKETS; i++) {
		if (!h->b[i])
			continue;
		seen += h->b[i];
		ub = i == HIST_BUCKETS - 1 || hist_upper(i) > h->max ? h->max : hist_upper(i);
		printf("%s[%" PRIu64 ",%" PRIu64 "]", sep, ub, seen);
		sep = ",";
	}
	printf("]");
}

static void print_json_fields(const struct result *r)
{
	printf("\"faults\":%" PRIu64 ",\"groups\":%" PRIu64 ",\"answered\":%" PRIu64
	       ",\"success\":%" PRIu64 ",\"invalid\":%" PRIu64 ",\"by_kernel\":%" PRIu64
	       ",\"kernel_after_read\":%" PRIu64 ",\"unanswered\":%" PRIu64
	       ",\"seconds\":%.6f,\"faults_per_s\":%.1f,"
	       "\"groups_per_s\":%.1f,\"p50_ns\":%" PRIu64 ",\"p99_ns\":%" PRIu64
	       ",\"p999_ns\":%" PRIu64 ",\"max_ns\":%" PRIu64 ",\"doorbells\":%" PRIu64
	       ",\"reads\":%" PRIu64 ",\"maps\":%" PRIu64 ",\"bad_code\":%" PRIu64
	       ",\"stale_cookie\":%" PRIu64 ",\"map_checked\":%" PRIu64 ",\"violations\":%" PRIu64,
	       r->inj_faults, r->inj_groups, r->answered, r->success, r->invalid, r->by_kernel,
	       r->kernel_after_read, r->unanswered, secs(r), fps(r), gps(r), hist_pct(&r->lat, 50),
	       hist_pct(&r->lat, 99), hist_pct(&r->lat, 99.9), r->lat.max, r->doorbells, r->reads,
	       r->maps, r->bad_code, r->bad_cookie, r->map_checked, r->violations);
	printf(",\"inject_p50_ns\":%" PRIu64 ",\"inject_p99_ns\":%" PRIu64
	       ",\"inject_p999_ns\":%" PRIu64 ",\"late_p50_ns\":%" PRIu64
	       ",\"late_p99_ns\":%" PRIu64 ",\"late_max_ns\":%" PRIu64 ",\"behind\":%" PRIu64,
	       hist_pct(&r->svc, 50), hist_pct(&r->svc, 99), hist_pct(&r->svc, 99.9),
	       hist_pct(&r->late, 50), hist_pct(&r->late, 99), r->late.max, r->behind);
	if (r->overtakes_n || r->overtakes_excluded)
		printf(",\"overtakes_max\":%" PRIu64 ",\"overtakes_mean\":%.1f"
		       ",\"overtakes_excluded\":%" PRIu64,
		       r->overtakes_max, (double)r->overtakes_sum / (double)(r->overtakes_n ?: 1),
		       r->overtakes_excluded);
	print_json_hist(&r->lat);
}

/* "name":{...}, with --storm also "victim":{...} and "storm":{...} in it (@cls) */
static void print_json_result(const char *name, const struct result *r, const struct result *cls)
{
	printf("\"%s\":{", name);
	print_json_fields(r);
	if (cls && opt.storm) {
		printf(",\"victim\":{");
		print_json_fields(&cls[0]);
		printf("},\"storm\":{");
		print_json_fields(&cls[1]);
		printf("}");
	}
	printf("}");
}

/* @a's percentile over @b's, 0 without @b */
static double pct_ratio(const struct result *a, const struct result *b, double pct)
{
	uint64_t d = hist_pct(&b->lat, pct);

	return d ? (double)hist_pct(&a->lat, pct) / (double)d : 0;
}

static void print_json(const struct result *floor, const struct result *echo,
		       const struct result *daemon, const struct result (*cls)[2])
{
	printf("{\"config\":{\"tenants\":%u,\"devices\":%u,\"pasids\":%u,\"regions\":%u,"
	       "\"domains_total\":%u,\"regions_total\":%u,\"region_size\":%" PRIu64 ",\"group\":%u,"
	       "\"pattern\":\"%s\",\"rate\":%.0f,\"latency_from\":\"%s\",\"window\":%u,\"bad_pct\":"
	       "%u,\"event\":\"%s\","
	       "\"check_every\":%u,\"storm\":%u,\"storm_window\":%u}",
	       opt.tenants, opt.devices, opt.pasids, opt.regions,
	       opt.tenants * opt.devices * (opt.pasids ? opt.pasids : 1),
	       opt.tenants * opt.devices * (opt.pasids ? opt.pasids : 1) * opt.regions,
	       opt.region_size, opt.group, pattern_name(opt.pattern), opt.rate,
	       opt.rate > 0 ? "schedule" : "inject", opt.window, opt.bad_pct, event_name(opt.event),
	       opt.check_every, opt.storm, opt.storm ? opt.storm_window : 0);
	if (floor) {
		printf(",");
		print_json_result("floor", floor, NULL);
	}
	if (echo) {
		printf(",");
		print_json_result("echo", echo, cls[0]);
	}
	if (daemon) {
		printf(",");
		print_json_result("iopfd", daemon, cls[1]);
	}
	printf(",\"ratio\":{");
	if (echo && daemon)
		printf("\"throughput\":%.3f,\"p50\":%.3f,\"p99\":%.3f%s",
		       fps(echo) > 0 ? fps(daemon) / fps(echo) : 0, pct_ratio(daemon, echo, 50),
		       pct_ratio(daemon, echo, 99), floor ? "," : "");
	if (floor)
		printf("\"iopfd_floor_p50\":%.3f,\"iopfd_floor_p99\":%.3f,\"echo_floor_p50\":%.3f,"
		       "\"echo_floor_p99\":%.3f",
		       daemon ? pct_ratio(daemon, floor, 50) : 0,
		       daemon ? pct_ratio(daemon, floor, 99) : 0,
		       echo ? pct_ratio(echo, floor, 50) : 0,
		       echo ? pct_ratio(echo, floor, 99) : 0);
	printf("}}\n");
}

/* ---- arguments ---- */

enum arg_kind { ARG_UNSIGNED, ARG_U64, ARG_DOUBLE, ARG_SIZE, ARG_STRING, ARG_FLAG, ARG_CALL };

/* One command-line option: its name, where its value goes, and its help. */
struct arg {
	const char *name;
	const char *metavar; /* NULL: takes no value */
	enum arg_kind kind;
	void *ptr;		    /* unsigned, uint64_t, double, const char * or bool */
	int (*call)(const char *v); /* ARG_CALL */
	const char *help;	    /* continuation lines start with \n */
};

static const char *const pattern_names[] = {
	[PATTERN_SEQ] = "seq", [PATTERN_RANDOM] = "random", [PATTERN_HOT] = "hot"};
static const char *const event_names[] = {
	[EVENT_NONE] = "none",
	[EVENT_CLOSE] = "close",
	[EVENT_KILL] = "kill",
	[EVENT_UNREG_SOURCE] = "unregister-source",
	[EVENT_UNREG_DOMAIN] = "unregister-domain",
	[EVENT_DETACH] = "detach",
};

static int choice(const char *v, const char *const *names, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(v, names[i]))
			return (int)i;
	return -EINVAL;
}

static int set_pattern(const char *v)
{
	int r = choice(v, pattern_names, ARRAY_SIZE(pattern_names));

	if (r >= 0)
		opt.pattern = (enum pattern)r;
	return r;
}

static int set_event(const char *v)
{
	int r = choice(v, event_names, ARRAY_SIZE(event_names));

	if (r >= 0)
		opt.event = (enum event)r;
	return r;
}

static int set_echo(const char *v)
{
	(void)v;
	opt.target = TARGET_ECHO;
	return 0;
}

static int set_echo_strict(const char *v)
{
	(void)v;
	opt.target = TARGET_ECHO;
	opt.echo_strict = true;
	return 0;
}

static void help(void);

static int show_help(const char *v)
{
	(void)v;
	help();
	exit(EXIT_SUCCESS);
}

static int show_version(const char *v)
{
	(void)v;
	printf("iopf-sim %s\n", IOPFD_VERSION);
	exit(EXIT_SUCCESS);
}

static const struct arg args[] = {
	{"address", "ADDR", ARG_STRING, &opt.address, NULL,
	 "iopfd's D-Bus address (default $" IOPF_ADDRESS_ENV ")"},
	{"tenants", "N", ARG_UNSIGNED, &opt.tenants, NULL,
	 "tenants, each its own connection and fault queue (1)"},
	{"devices", "N", ARG_UNSIGNED, &opt.devices, NULL,
	 "devices per tenant; dev_ids 1..N in every tenant (2)"},
	{"pasids", "N", ARG_UNSIGNED, &opt.pasids, NULL,
	 "PASID domains per device, 0 = one no-PASID domain (1)"},
	{"regions", "N", ARG_UNSIGNED, &opt.regions, NULL, "regions per domain (4)"},
	{"region-size", "BYTES", ARG_SIZE, &opt.region_size, NULL, "(1M; K/M/G suffixes)"},
	{"pattern", "P", ARG_CALL, NULL, set_pattern, "seq | random | hot (seq)"},
	{"group", "N", ARG_UNSIGNED, &opt.group, NULL, "records per page-request group (1)"},
	{"faults", "N", ARG_U64, &opt.faults, NULL, "faults to inject (100000)"},
	{"duration", "SECS", ARG_DOUBLE, &opt.duration, NULL, "inject for this long instead"},
	{"rate", "R", ARG_DOUBLE, &opt.rate, NULL,
	 "offered faults/s, 0 = saturation (closed loop) (0); paced: group i\n"
	 "is due at start + i / rate, latency counts from then"},
	{"window", "N", ARG_UNSIGNED, &opt.window, NULL, "groups in flight per tenant (64)"},
	{"bad", "PCT", ARG_UNSIGNED, &opt.bad_pct, NULL,
	 "groups that must be answered INVALID: unknown PASID/device,\n"
	 "permission mismatch, outside every region (0)"},
	{"dup", "PCT", ARG_UNSIGNED, &opt.dup_pct, NULL,
	 "groups repeating the previous group's pages (0)"},
	{"event", "E", ARG_CALL, NULL, set_event,
	 "mid-run, on tenant 0: close | kill | unregister-source |\n"
	 "unregister-domain | detach (none); detach repeats 9 times,\n"
	 "each while iopfd holds groups it read (stale cookies)"},
	{"injectors", "N", ARG_UNSIGNED, &opt.injectors, NULL, "injector threads (1)"},
	{"spin", NULL, ARG_FLAG, &opt.spin, NULL,
	 "paced: poll the clock for the next group instead of sleeping\n"
	 "(an injector's CPU busy; no wakeup latency in its lateness)"},
	{"storm", "N", ARG_UNSIGNED, &opt.storm, NULL,
	 "N more tenants, closed loop, their queues kept full between the\n"
	 "--tenants' groups while those inject; results per class (0)"},
	{"storm-window", "N", ARG_UNSIGNED, &opt.storm_window, NULL,
	 "a storm tenant's queue depth, all of it in flight (1024)"},
	{"max-overtakes", "N", ARG_U64, &opt.max_overtakes, NULL,
	 "with --storm: a violation if the server answers more than N\n"
	 "storm groups while a group of the others waits (visible, its\n"
	 "doorbell rung); counted on the server's answer times (0: off)"},
	{"queue-depth", "N", ARG_UNSIGNED, &opt.queue_depth, NULL,
	 "sim queue depth per tenant (2 x window)"},
	{"echo", NULL, ARG_CALL, NULL, set_echo, "run against iopf-echo instead of iopfd"},
	{"compare", NULL, ARG_FLAG, &opt.compare, NULL,
	 "run against iopf-echo, then iopfd, and print the ratios"},
	{"floor", NULL, ARG_FLAG, &opt.floor, NULL,
	 "first measure the physical floor: one tenant, one group at a\n"
	 "time, iopf-echo asleep on the doorbell between them"},
	{"floor-faults", "N", ARG_U64, &opt.floor_faults, NULL, "ping-pongs of the floor (20000)"},
	{"echo-strict", NULL, ARG_CALL, NULL, set_echo_strict,
	 "checker self-test: iopf-echo judged as iopfd (must fail)"},
	{"echo-path", "PATH", ARG_STRING, &opt.echo_path, NULL,
	 "the iopf-echo binary (next to this one)"},
	{"echo-threads", "N", ARG_UNSIGNED, &opt.echo_threads, NULL,
	 "iopf-echo worker threads (1)"},
	{"drain-timeout", "SECS", ARG_DOUBLE, &opt.drain_timeout, NULL,
	 "how long to wait for outstanding answers (30)"},
	{"restarts", NULL, ARG_FLAG, &opt.restarts, NULL,
	 "iopfd may be killed and restarted meanwhile: tenants stay until this process exits"},
	{"check-every", "N", ARG_UNSIGNED, &opt.check_every, NULL,
	 "check the IOMMU pages of one SUCCESS group in N; codes and\n"
	 "exactly-once are checked for every group (1: all)"},
	{"seed", "N", ARG_U64, &opt.seed, NULL, "(1)"},
	{"json", NULL, ARG_FLAG, &opt.json, NULL, "one JSON object on stdout"},
	{"verbose", NULL, ARG_FLAG, &opt.verbose, NULL, "-v: say what happens mid-run"},
	{"version", NULL, ARG_CALL, NULL, show_version, "print the version and exit"},
	{"help", NULL, ARG_CALL, NULL, show_help, "-h: this help"},
};

static void help(void)
{
	size_t i;

	printf("Usage: iopf-sim [OPTIONS]\n\n"
	       "Simulated accelerator and tenants for iopfd: inject page requests, check every "
	       "answer.\n\n");
	for (i = 0; i < ARRAY_SIZE(args); i++) {
		const char *h = args[i].help, *nl;
		int w = printf("  --%s%s%s", args[i].name, args[i].metavar ? " " : "",
			       args[i].metavar ?: "");

		for (;; h = nl + 1) {
			nl = strchr(h, '\n');
			printf("%*s%.*s\n", w < 23 ? 23 - w : 1, "",
			       nl ? (int)(nl - h) : (int)strlen(h), h);
			if (!nl)
				break;
			w = 0;
		}
	}
	printf("Exit status: 0 no violations, 1 violations, 2 setup failure, 77 a detach run\n"
	       "that never caught iopfd holding a read group (nothing stale was tested).\n");
}

static int arg_set(const struct arg *a, const char *v)
{
	char *end;

	switch (a->kind) {
	case ARG_UNSIGNED:
		return parse_unsigned(v, 0, UINT_MAX, a->ptr);
	case ARG_U64:
		return parse_u64(v, a->ptr);
	case ARG_SIZE:
		return parse_size(v, a->ptr);
	case ARG_DOUBLE:
		errno = 0;
		*(double *)a->ptr = strtod(v, &end);
		return errno || end == v || *end ? -EINVAL : 0;
	case ARG_STRING:
		*(const char **)a->ptr = v;
		return 0;
	case ARG_FLAG:
		*(bool *)a->ptr = true;
		return 0;
	case ARG_CALL:
		return a->call(v);
	}
	return -EINVAL;
}

/* What no combination of options may be. */
static int opts_check(void)
{
	if (!opt.tenants || !opt.devices || !opt.regions || !opt.group || !opt.window ||
	    !opt.injectors || !opt.echo_threads || !opt.check_every)
		return -EINVAL;
	if (opt.storm && (!opt.storm_window || opt.storm_window > IOPF_SIM_MAX_DEPTH ||
			  opt.storm > (1u << 24) - opt.tenants))
		return -EINVAL;
	if (opt.max_overtakes && !opt.storm)
		return -EINVAL;
	/* from here on opt.tenants counts the storm's too: the last opt.storm of them */
	opt.tenants += opt.storm;
	if (opt.group > SIM_MAX_GROUP_RECS || opt.group > IOPF_SIM_MAX_GROUP)
		return -EINVAL;
	if (opt.window > IOPF_SIM_MAX_DEPTH / 2 || opt.bad_pct > 100 || opt.dup_pct > 100)
		return -EINVAL;
	if (opt.region_size % IOPF_PAGE_SIZE || opt.region_size / IOPF_PAGE_SIZE < opt.group)
		return -EINVAL;
	if (opt.devices > 65536 || opt.pasids > IOPF_PASID_MAX - 1000 || opt.regions > 65536)
		return -EINVAL;
	if ((uint64_t)opt.devices * (opt.pasids ? opt.pasids : 1) * opt.tenants > 1u << 24)
		return -EINVAL;
	/* every domain's IOVA slice must fit below 2^63 */
	if (slice_shift() >= 62 || ((uint64_t)opt.devices * (opt.pasids ? opt.pasids : 1) + 1) >
					   (UINT64_C(1) << (63 - slice_shift())))
		return -EINVAL;
	if (opt.event != EVENT_NONE && (opt.target == TARGET_ECHO || opt.compare))
		return -EINVAL;
	if (opt.injectors > opt.tenants - opt.storm)
		opt.injectors = opt.tenants - opt.storm;
	if (opt.faults == 0 && opt.duration <= 0)
		return -EINVAL;
	return 0;
}

static int parse_argv(int argc, char *argv[])
{
	struct option options[ARRAY_SIZE(args) + 1] = {};
	size_t i;
	int c;

	for (i = 0; i < ARRAY_SIZE(args); i++)
		options[i] = (struct option){args[i].name,
					     args[i].metavar ? required_argument : no_argument,
					     NULL, 0x100 + (int)i};
	while ((c = getopt_long(argc, argv, "hv", options, NULL)) >= 0) {
		const struct arg *a = NULL;

		if (c == 'h' || c == 'v') {
			for (i = 0; i < ARRAY_SIZE(args); i++)
				if (!strcmp(args[i].name, c == 'h' ? "help" : "verbose"))
					a = &args[i];
		} else if (c >= 0x100 && c < 0x100 + (int)ARRAY_SIZE(args)) {
			a = &args[c - 0x100];
		}
		if (!a)
			return -EINVAL;
		if (arg_set(a, optarg) < 0) {
			fprintf(stderr, "iopf-sim: --%s: invalid value %s\n", a->name, optarg);
			return -EINVAL;
		}
	}
	if (optind < argc)
		return -EINVAL;
	return opts_check();
}

/*
 * The physical floor of the same run: one tenant, one group in flight, closed
 * loop, so iopf-echo sleeps on the doorbell before each group and the injector
 * on the answer after it. No server answers sooner than this.
 */
static int run_floor(struct result *out)
{
	struct opts saved = opt;
	int r;

	opt.tenants = opt.injectors = opt.window = opt.echo_threads = 1;
	opt.queue_depth = 0;
	opt.rate = opt.duration = 0;
	opt.faults = opt.floor_faults * opt.group;
	opt.bad_pct = opt.dup_pct = 0;
	opt.event = EVENT_NONE;
	opt.storm = 0;
	opt.max_overtakes = 0;
	r = run(TARGET_ECHO, out, NULL);
	opt = saved;
	return r;
}

/* --storm: each class of tenants on its own */
static void print_text_classes(const struct result *cls)
{
	const struct result *v = &cls[0], *st = &cls[1];

	printf("  victims    %" PRIu64 " groups, %.0f faults/s: p50 %.1f us, p99 %.1f us, p99.9 "
	       "%.1f us (%s); injector late p99 %.1f us\n",
	       v->answered, fps(v), hist_pct(&v->lat, 50) / 1e3, hist_pct(&v->lat, 99) / 1e3,
	       hist_pct(&v->lat, 99.9) / 1e3, opt.rate > 0 ? "from schedule" : "from inject",
	       hist_pct(&v->late, 99) / 1e3);
	if (v->overtakes_n || v->overtakes_excluded)
		printf("  overtakes  a victim group waited while at most %" PRIu64
		       " storm groups were answered (mean %.1f; %" PRIu64
		       " groups left out, their injector held the lock)\n",
		       v->overtakes_max, (double)v->overtakes_sum / (double)(v->overtakes_n ?: 1),
		       v->overtakes_excluded);
	printf("  storm      %u tenants, %u in flight each: %" PRIu64 " groups, %.0f faults/s, "
	       "p50 %.1f us, p99 %.1f us\n",
	       opt.storm, opt.storm_window, st->answered, fps(st), hist_pct(&st->lat, 50) / 1e3,
	       hist_pct(&st->lat, 99) / 1e3);
}

static void print_text_all(const struct result *floor, const struct result *echo,
			   const struct result *daemon, const struct result (*cls)[2])
{
	if (floor) {
		printf("floor: 1 tenant, 1 group in flight, iopf-echo asleep between groups\n");
		print_text_body(floor, false);
	}
	if (echo) {
		print_text("echo", echo);
		if (opt.storm)
			print_text_classes(cls[0]);
	}
	if (daemon) {
		print_text("iopfd", daemon);
		if (opt.storm)
			print_text_classes(cls[1]);
	}
	if (echo && daemon)
		printf("ratio: throughput %.3f, p50 %.3f, p99 %.3f (iopfd / echo)\n",
		       fps(echo) > 0 ? fps(daemon) / fps(echo) : 0, pct_ratio(daemon, echo, 50),
		       pct_ratio(daemon, echo, 99));
	if (floor && (echo || daemon))
		printf("floor ratio: p50 %.3f, p99 %.3f (%s / floor)\n",
		       pct_ratio(daemon ?: echo, floor, 50), pct_ratio(daemon ?: echo, floor, 99),
		       daemon ? "iopfd" : "echo");
}

int main(int argc, char *argv[])
{
	static struct result cls[2][2]; /* --storm: echo's, iopfd's; victims and storm each */
	struct result floor = {}, echo = {}, daemon = {};
	bool have_floor = false, have_echo = false, have_daemon = false;

	if (parse_argv(argc, argv) < 0) {
		fprintf(stderr, "iopf-sim: invalid arguments (see --help)\n");
		return 2;
	}
	/* an answer nobody reads is still an answer: a dead echo must not kill us */
	signal(SIGPIPE, SIG_IGN);
	/* paced injection sleeps in tens of microseconds; the default 50 us slack would blur it */
	(void)prctl(PR_SET_TIMERSLACK, 1000UL);

	if (opt.floor) {
		if (run_floor(&floor) < 0)
			return 2;
		have_floor = true;
	}
	if (opt.compare || opt.target == TARGET_ECHO) {
		if (run(TARGET_ECHO, &echo, cls[0]) < 0)
			return 2;
		have_echo = true;
	}
	if (opt.compare || opt.target == TARGET_IOPFD) {
		if (run(TARGET_IOPFD, &daemon, cls[1]) < 0)
			return 2;
		have_daemon = true;
	}
	if (opt.json)
		print_json(have_floor ? &floor : NULL, have_echo ? &echo : NULL,
			   have_daemon ? &daemon : NULL, cls);
	else
		print_text_all(have_floor ? &floor : NULL, have_echo ? &echo : NULL,
			       have_daemon ? &daemon : NULL, cls);
	if (floor.violations + echo.violations + daemon.violations)
		return 1;
	/* a detach run that never caught iopfd holding a group tested nothing special: skip */
	if (have_daemon && opt.event == EVENT_DETACH && !daemon.kernel_after_read) {
		fprintf(stderr,
			"iopf-sim: iopfd was never caught holding a read group; stale cookies "
			"untested\n");
		return 77;
	}
	return 0;
}
