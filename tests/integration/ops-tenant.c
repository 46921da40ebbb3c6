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
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "scripted-tenant.h"
#include "util.h"

#define REGION_IOVA  (UINT64_C(16) << 20)
#define OUTSIDE_IOVA (UINT64_C(64) << 20)

static unsigned restarts; /* the client library's restart callback ran */

static void on_restart(struct iopf_client *c, void *userdata)
{
	(void)c;
	(void)userdata;
	restarts++;
}

static struct scripted_tenant t = {
	.name = "ops-tenant",
	.may_pause = true, /* --paused: the source is registered paused, started by "start" */
	.region_iova = REGION_IOVA,
	.region_size = UINT64_C(256) << 10,
	.region_access = IOPF_ACCESS_READ,
	/* bounded: every group is answered, or the test fails on the count */
	.wait_rounds = 100,
	.sim_config = {.queue_depth = 4096},
	.on_restart = on_restart,
};
static uint64_t next_iova = UINT64_C(1) << 30;

static void cmd_faults(unsigned good, unsigned nohandler, unsigned outside, unsigned perm)
{
	unsigned total = good + nohandler + outside + perm;
	int r = 0;

	r = scripted_tenant_inject_good(&t, good);
	for (unsigned i = 0; r >= 0 && i < nohandler; i++)
		r = scripted_tenant_inject(&t, 9, REGION_IOVA, IOMMU_PGFAULT_PERM_READ);
	for (unsigned i = 0; r >= 0 && i < outside; i++)
		r = scripted_tenant_inject(&t, 1, OUTSIDE_IOVA, IOMMU_PGFAULT_PERM_READ);
	for (unsigned i = 0; r >= 0 && i < perm; i++)
		r = scripted_tenant_inject(&t, 1, REGION_IOVA, IOMMU_PGFAULT_PERM_WRITE);
	if (r < 0) {
		printf("{\"error\":%d}\n", r);
		return;
	}
	scripted_tenant_cmd_wait(&t, total);
}

static void cmd_source(void)
{
	struct iopf_sim_config cfg = {};
	struct iopf_sim *s2;
	uint64_t id;
	int r;

	r = iopf_sim_new(&cfg, &s2);
	if (r >= 0) {
		r = iopf_client_register_source(t.client, iopf_sim_fault_fd(s2),
						iopf_sim_iommufd(s2), iopf_sim_ioas_id(s2, 0), &id);
		/* the daemon keeps its own copies of the fds */
		iopf_sim_free(s2);
	}
	scripted_tenant_json_error(&t, r < 0 ? r : 0);
}

static void cmd_region(uint64_t bytes)
{
	_cleanup_close_ int mem = scripted_tenant_memfd(&t, bytes);
	uint64_t id;
	int r;

	r = mem < 0 ? -errno
		    : iopf_client_add_region(t.client, t.domain_id, mem, 0, next_iova, bytes,
					     IOPF_ACCESS_READ, &id);
	if (r >= 0)
		next_iova += bytes;
	scripted_tenant_json_error(&t, r < 0 ? r : 0);
}

static void cmd_counter(const char *name)
{
	uint64_t v;
	int r = iopf_client_tenant_counter(t.client, name, &v);

	if (r < 0)
		scripted_tenant_json_error(&t, r);
	else
		printf("{\"value\":%" PRIu64 "}\n", v);
}

static void cmd_latency(bool domain)
{
	struct iopf_client_latency *l = NULL;
	int r = domain ? iopf_client_domain_latency(t.client, t.domain_id, &l)
		       : iopf_client_tenant_latency(t.client, &l);
	uint64_t sum = 0;

	if (r < 0) {
		scripted_tenant_json_error(&t, r);
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
	int r = iopf_sim_get_counts(t.sim, &n);

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

/* The commands but inject, wait and quit (tests/helpers/scripted-tenant.c). */
static bool command(const char *line)
{
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
	else if (strncmp(line, "start", 5) == 0)
		scripted_tenant_json_error(
			&t, t.client ? iopf_client_start_source(t.client, t.source_id) : -ENOTCONN);
	else if (strncmp(line, "restarts", 8) == 0)
		printf("{\"value\":%u}\n", restarts);
	else if (strncmp(line, "unregister", 10) == 0)
		scripted_tenant_json_error(
			&t, t.client ? iopf_client_unregister_source(t.client, t.source_id)
				     : -ENOTCONN);
	else if (strncmp(line, "simcounts", 9) == 0)
		cmd_simcounts();
	else
		return false;
	return true;
}

int main(int argc, char *argv[])
{
	return scripted_tenant_main(&t, argc, argv, command);
}
