/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A scripted tenant for the operations tests (tests/integration/test-ops.py).
 * It connects to iopfd (optionally as another uid), registers a simulated
 * fault source, one domain (dev_id 1, no PASID) and one read-only region,
 * then obeys one command per stdin line and answers with one JSON line:
 *
 *   faults GOOD NOHANDLER OUTSIDE PERM  inject single-record groups, wait for
 *                                       every answer: {"success":S,"invalid":I}
 *   counter NAME                        its own total: {"value":V} or {"error":E}
 *   latency                             its own latency count: {"count":N}
 *   domain-latency                      its domain's: {"count":N}
 *   source                              register one more source: {"error":E,"message":M}
 *   region BYTES                        add a region that size: {"error":E,"message":M}
 *   restarts                            how often the client library connected again by
 *                                       itself: {"value":N}
 *   unregister                          remove its source: {"error":E,"message":M}
 *   inject N                            inject N good single-record groups, no wait: {}
 *   wait N                              wait for N answers: {"answered":A,"success":S,...}
 *   start                               start its source (registered with --paused)
 *   simcounts                           the simulator's view: answers, refused answers,
 *                                       groups read and not answered, maps held
 *   quit                                (or end of input) disconnect and exit
 */
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "iopf/client.h"
#include "sim.h"
#include "util.h"

#define REGION_IOVA  (UINT64_C(16) << 20)
#define REGION_SIZE  (UINT64_C(256) << 10)
#define OUTSIDE_IOVA (UINT64_C(64) << 20)
#define WAIT_NS	     (UINT64_C(10) * 1000000000)

static struct iopf_client *client;
static const char *address;
static bool paused;	  /* --paused: the source is registered paused, started by "start" */
static unsigned restarts; /* the client library's restart callback ran */

static void on_restart(struct iopf_client *c, void *userdata)
{
	(void)c;
	(void)userdata;
	restarts++;
}
static struct iopf_sim *sim;
static uint64_t source_id, domain_id, region_id, next_iova = UINT64_C(1) << 30;
static unsigned next_page;

static int new_memfd(uint64_t size)
{
	int fd = memfd_create("ops-tenant", MFD_CLOEXEC);

	if (fd >= 0 && ftruncate(fd, (off_t)size) < 0)
		fd = safe_close(fd);
	return fd;
}

static void json_error(int r)
{
	const char *m = client ? iopf_client_last_error(client) : NULL;

	printf("{\"error\":%d,\"message\":\"", r);
	for (; m && *m; m++)
		if (*m == '"' || *m == '\\')
			printf("\\%c", *m);
		else if ((unsigned char)*m >= 0x20)
			putchar(*m);
	printf("\"}\n");
}

static int setup(void)
{
	struct iopf_sim_config cfg = {.queue_depth = 4096};
	_cleanup_close_ int mem = -EBADF;
	int r;

	r = iopf_client_connect(address, &client);
	if (r < 0)
		return fprintf(stderr, "ops-tenant: connect: %s\n", strerror(-r)), r;
	iopf_client_set_restart_callback(client, on_restart, NULL);
	r = iopf_sim_new(&cfg, &sim);
	if (r < 0)
		return fprintf(stderr, "ops-tenant: sim: %s\n", strerror(-r)), r;
	mem = new_memfd(REGION_SIZE);
	if (mem < 0)
		return -errno;
	r = (paused ? iopf_client_register_source_paused : iopf_client_register_source)(
		client, iopf_sim_fault_fd(sim), iopf_sim_iommufd(sim), iopf_sim_ioas_id(sim, 0),
		&source_id);
	if (r >= 0)
		r = iopf_client_register_domain(client, source_id, 1, IOPF_PASID_NONE, &domain_id);
	if (r >= 0)
		r = iopf_client_add_region(client, domain_id, mem, 0, REGION_IOVA, REGION_SIZE,
					   IOPF_ACCESS_READ, &region_id);
	if (r < 0)
		return fprintf(stderr, "ops-tenant: register: %s (%s)\n", strerror(-r),
			       iopf_client_last_error(client) ?: ""),
		       r;
	printf("{\"source\":%" PRIu64 ",\"domain\":%" PRIu64 ",\"region\":%" PRIu64 "}\n",
	       source_id, domain_id, region_id);
	return 0;
}

/* Inject one single-record group. */
static int inject(uint32_t dev_id, uint64_t addr, uint32_t perm)
{
	struct iopf_sim_fault f = {.addr = addr, .perm = perm};
	struct iopf_sim_group g = {
		.dev_id = dev_id, .pasid = IOPF_PASID_NONE, .n = 1, .faults = &f};

	return iopf_sim_inject(sim, &g, 1) == 1 ? 0 : -ENOSPC;
}

/* Harvest until @total answers came (bounded), and say how many and how they went. */
static void wait_answers(unsigned total)
{
	unsigned answered = 0, success = 0;
	struct iopf_sim_answer a[64];

	/* bounded: every group is answered, or the test fails on the count */
	for (unsigned tries = 0; answered < total && tries < 100; tries++) {
		int n;

		(void)iopf_sim_wait(sim, WAIT_NS / 100);
		while ((n = iopf_sim_harvest(sim, a, ARRAY_SIZE(a))) > 0)
			for (int i = 0; i < n; i++) {
				answered++;
				success += a[i].code == IOMMUFD_PAGE_RESP_SUCCESS;
			}
	}
	printf("{\"answered\":%u,\"success\":%u,\"invalid\":%u}\n", answered, success,
	       answered - success);
}

static int inject_good(unsigned n)
{
	int r = 0;

	for (unsigned i = 0; r >= 0 && i < n; i++)
		r = inject(1, REGION_IOVA + (uint64_t)(next_page++ % (REGION_SIZE / 4096)) * 4096,
			   IOMMU_PGFAULT_PERM_READ);
	return r;
}

static void cmd_faults(unsigned good, unsigned nohandler, unsigned outside, unsigned perm)
{
	unsigned total = good + nohandler + outside + perm;
	int r = 0;

	r = inject_good(good);
	for (unsigned i = 0; r >= 0 && i < nohandler; i++)
		r = inject(9, REGION_IOVA, IOMMU_PGFAULT_PERM_READ);
	for (unsigned i = 0; r >= 0 && i < outside; i++)
		r = inject(1, OUTSIDE_IOVA, IOMMU_PGFAULT_PERM_READ);
	for (unsigned i = 0; r >= 0 && i < perm; i++)
		r = inject(1, REGION_IOVA, IOMMU_PGFAULT_PERM_WRITE);
	if (r < 0) {
		printf("{\"error\":%d}\n", r);
		return;
	}
	wait_answers(total);
}

static void cmd_source(void)
{
	struct iopf_sim_config cfg = {};
	struct iopf_sim *s2;
	uint64_t id;
	int r;

	r = iopf_sim_new(&cfg, &s2);
	if (r >= 0) {
		r = iopf_client_register_source(client, iopf_sim_fault_fd(s2), iopf_sim_iommufd(s2),
						iopf_sim_ioas_id(s2, 0), &id);
		/* the daemon keeps its own copies of the fds */
		iopf_sim_free(s2);
	}
	json_error(r < 0 ? r : 0);
}

static void cmd_region(uint64_t bytes)
{
	_cleanup_close_ int mem = new_memfd(bytes);
	uint64_t id;
	int r;

	r = mem < 0 ? -errno
		    : iopf_client_add_region(client, domain_id, mem, 0, next_iova, bytes,
					     IOPF_ACCESS_READ, &id);
	if (r >= 0)
		next_iova += bytes;
	json_error(r < 0 ? r : 0);
}

static void cmd_counter(const char *name)
{
	uint64_t v;
	int r = iopf_client_tenant_counter(client, name, &v);

	if (r < 0)
		json_error(r);
	else
		printf("{\"value\":%" PRIu64 "}\n", v);
}

static void cmd_latency(bool domain)
{
	struct iopf_client_latency *l = NULL;
	int r = domain ? iopf_client_domain_latency(client, domain_id, &l)
		       : iopf_client_tenant_latency(client, &l);
	uint64_t sum = 0;

	if (r < 0) {
		json_error(r);
		return;
	}
	for (unsigned i = 0; i < iopf_client_latency_buckets(l); i++)
		sum += iopf_client_latency_bucket(l, i);
	printf("{\"count\":%" PRIu64 ",\"bucket_sum\":%" PRIu64 "}\n", iopf_client_latency_count(l),
	       sum);
	iopf_client_latency_free(l);
}

static void cmd_simcounts(void)
{
	struct iopf_sim_counts n;
	int r = iopf_sim_get_counts(sim, &n);

	if (r < 0) {
		printf("{\"error\":%d}\n", r);
		return;
	}
	printf("{\"answers\":%" PRIu64 ",\"bad_cookie\":%" PRIu64 ",\"injected\":%" PRIu64
	       ",\"queued\":%u,\"delivered\":%u,\"maps\":%u,\"pages_mapped\":%u,"
	       "\"backends\":%u}\n",
	       n.stats.answers, n.stats.bad_cookie, n.stats.injected_groups, n.queued, n.delivered,
	       n.maps, n.pages_mapped, n.backends);
}

int main(int argc, char *argv[])
{
	static const struct option options[] = {
		{"address", required_argument, NULL, 'a'},
		{"uid", required_argument, NULL, 'u'},
		{"paused", no_argument, NULL, 'P'},
		{},
	};
	long uid = -1;
	char line[256];
	int c;

	while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
		switch (c) {
		case 'a':
			address = optarg;
			break;
		case 'u':
			uid = strtol(optarg, NULL, 10);
			break;
		case 'P':
			paused = true;
			break;
		default:
			return 2;
		}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (uid >= 0 &&
	    (setgroups(0, NULL) < 0 || setresgid((gid_t)uid, (gid_t)uid, (gid_t)uid) < 0 ||
	     setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0)) {
		perror("ops-tenant: cannot change uid");
		return 2;
	}
	if (setup() < 0)
		return 1;

	while (fgets(line, sizeof(line), stdin)) {
		unsigned a, b, d, e;
		unsigned long long bytes;
		char name[64];

		if (sscanf(line, "faults %u %u %u %u", &a, &b, &d, &e) == 4)
			cmd_faults(a, b, d, e);
		else if (sscanf(line, "counter %63s", name) == 1)
			cmd_counter(name);
		else if (strncmp(line, "latency", 7) == 0)
			cmd_latency(false);
		else if (strncmp(line, "domain-latency", 14) == 0)
			cmd_latency(true);
		else if (strncmp(line, "source", 6) == 0)
			cmd_source();
		else if (sscanf(line, "region %llu", &bytes) == 1)
			cmd_region(bytes);
		else if (sscanf(line, "inject %u", &a) == 1) {
			int r = inject_good(a);

			if (r < 0)
				printf("{\"error\":%d}\n", r);
			else
				printf("{}\n");
		} else if (sscanf(line, "wait %u", &a) == 1)
			wait_answers(a);
		else if (strncmp(line, "start", 5) == 0)
			json_error(client ? iopf_client_start_source(client, source_id)
					  : -ENOTCONN);
		else if (strncmp(line, "restarts", 8) == 0)
			printf("{\"value\":%u}\n", restarts);
		else if (strncmp(line, "unregister", 10) == 0)
			json_error(client ? iopf_client_unregister_source(client, source_id)
					  : -ENOTCONN);
		else if (strncmp(line, "simcounts", 9) == 0)
			cmd_simcounts();
		else if (strncmp(line, "quit", 4) == 0)
			break;
		else
			printf("{\"error\":\"unknown command\"}\n");
	}
	client = iopf_client_free(client);
	sim = iopf_sim_free(sim);
	return 0;
}
