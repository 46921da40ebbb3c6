/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A tenant that hands iopfd bad fds and sits on its simulator context, for
 * tests/integration/test-hostile-fds.py. It connects (optionally as another
 * uid), registers a simulated fault source, one domain (dev_id 1, no PASID)
 * and one read-write region, then obeys one command per stdin line and
 * answers with one JSON line ({"error":E,"message":M} unless said otherwise):
 *
 *   opath PATH ACCESS   add a region on an O_PATH fd of PATH (ACCESS: 1 READ, 3 READ|WRITE)
 *   stray               register a source: a new context's memfd, a fresh eventfd
 *   other-doorbell      register a source: a new context's memfd, its own context's doorbell
 *   regions N           add N one-page regions on one memfd: {"error":E,"added":K}
 *   inject N            inject N good single-record groups, no wait: {}
 *   wait N              wait (30 s at most) for N answers: {"answered":A,"success":S,...}
 *   ring                ring its own doorbell, as any tenant can: {}
 *   lock                take its context's lock and keep it: {}
 *   lock-sources N      register N more sources, ring and keep each one's lock: {"error":E,...}
 *   unlock              let every lock go: {}
 *   simcounts           what its context saw (without the lock): {"delivered":D}
 *   quit                (or end of input) disconnect and exit
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>

#include "scripted-tenant.h"
#include "util.h"

#define REGION_IOVA (UINT64_C(16) << 20)
#define REGION_SIZE (UINT64_C(64) << 10)
#define MANY_IOVA   (UINT64_C(1) << 32)

#define MAX_EXTRA 64

static struct scripted_tenant t = {
	.name = "hostile-tenant",
	.region_iova = REGION_IOVA,
	.region_size = REGION_SIZE,
	.region_access = IOPF_ACCESS_READ | IOPF_ACCESS_WRITE,
	/* bounded: a source in backoff (10 s at most) is read again well within it */
	.wait_rounds = 300,
	.sim_config = {.queue_depth = 1024},
};
static struct iopf_sim *extra[MAX_EXTRA]; /* lock-sources: contexts held locked */
static unsigned n_extra;
static uint64_t next_many;

static void cmd_opath(const char *path, uint32_t access)
{
	_cleanup_close_ int fd = open(path, O_PATH | O_CLOEXEC);
	uint64_t id;

	if (fd < 0) {
		scripted_tenant_json_error(&t, -errno);
		return;
	}
	scripted_tenant_json_error(&t, iopf_client_add_region(t.client, t.domain_id, fd, 0,
							      REGION_IOVA + REGION_SIZE, 4096,
							      access, &id));
}

/* A source on a new context's memfd and @efd, or a fresh eventfd when @efd < 0. */
static void cmd_stray(int efd)
{
	_cleanup_close_ int fresh = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct iopf_sim *s2;
	uint64_t id;
	int r;

	r = iopf_sim_new(NULL, &s2);
	if (r >= 0) {
		r = iopf_client_register_source(t.client, efd >= 0 ? efd : fresh,
						iopf_sim_iommufd(s2), iopf_sim_ioas_id(s2, 0), &id);
		iopf_sim_free(s2);
	}
	scripted_tenant_json_error(&t, r);
}

static void cmd_regions(unsigned n)
{
	_cleanup_close_ int mem = scripted_tenant_memfd(&t, (uint64_t)n * 4096);
	unsigned added = 0;
	uint64_t id;
	int r = mem < 0 ? -errno : 0;

	for (; r >= 0 && added < n; added++) {
		r = iopf_client_add_region(t.client, t.domain_id, mem, (uint64_t)added * 4096,
					   MANY_IOVA + next_many, 4096, IOPF_ACCESS_READ, &id);
		if (r < 0)
			break;
		next_many += 2 * 4096; /* apart: regions never merge */
	}
	printf("{\"error\":%d,\"added\":%u}\n", r < 0 ? r : 0, added);
}

/* A context's robust mutex, just past the header (lib/sim/sim.c's layout). */
static pthread_mutex_t *context_mutex(struct iopf_sim *s)
{
	return (pthread_mutex_t *)((uint8_t *)__iopf_sim_shm(s, NULL) +
				   ALIGN_UP(sizeof(struct iopf_sim_shm_hdr), 64));
}

static int lock_context(struct iopf_sim *s)
{
	/* the owner of a robust mutex that dies frees it: this one lives on */
	int r = pthread_mutex_lock(context_mutex(s));

	if (r == EOWNERDEAD)
		r = pthread_mutex_consistent(context_mutex(s));
	return -r;
}

static void cmd_lock_sources(unsigned n)
{
	int r = 0;

	for (unsigned i = 0; r >= 0 && i < n && n_extra < MAX_EXTRA; i++) {
		struct iopf_sim *s;
		uint64_t id;

		r = iopf_sim_new(NULL, &s);
		if (r < 0)
			break;
		r = iopf_client_register_source(t.client, iopf_sim_fault_fd(s), iopf_sim_iommufd(s),
						iopf_sim_ioas_id(s, 0), &id);
		if (r >= 0)
			r = lock_context(s);
		if (r >= 0 && eventfd_write(iopf_sim_fault_fd(s), 1) < 0)
			r = -errno;
		if (r < 0) {
			iopf_sim_free(s);
			break;
		}
		extra[n_extra++] = s;
	}
	scripted_tenant_json_error(&t, r);
}

/* The commands but inject, wait and quit (tests/helpers/scripted-tenant.c). */
static bool command(const char *line)
{
	char path[4000];
	unsigned a;

	if (sscanf(line, "opath %3999s %u", path, &a) == 2)
		cmd_opath(path, a);
	else if (strncmp(line, "stray", 5) == 0)
		cmd_stray(-1);
	else if (strncmp(line, "other-doorbell", 14) == 0)
		cmd_stray(iopf_sim_fault_fd(t.sim));
	else if (sscanf(line, "regions %u", &a) == 1)
		cmd_regions(a);
	else if (sscanf(line, "lock-sources %u", &a) == 1)
		cmd_lock_sources(a);
	else if (strncmp(line, "lock", 4) == 0) {
		int r = lock_context(t.sim);

		printf(r ? "{\"error\":%d}\n" : "{}\n", r);
	} else if (strncmp(line, "unlock", 6) == 0) {
		(void)pthread_mutex_unlock(context_mutex(t.sim));
		for (unsigned i = 0; i < n_extra; i++)
			(void)pthread_mutex_unlock(context_mutex(extra[i]));
		printf("{}\n");
	} else if (strncmp(line, "ring", 4) == 0)
		printf(eventfd_write(iopf_sim_fault_fd(t.sim), 1) < 0 ? "{\"error\":-1}\n"
								      : "{}\n");
	else if (strncmp(line, "simcounts", 9) == 0)
		printf("{\"delivered\":%u}\n", iopf_sim_peek_delivered(t.sim));
	else
		return false;
	return true;
}

int main(int argc, char *argv[])
{
	int r = scripted_tenant_main(&t, argc, argv, command);

	for (unsigned i = 0; i < n_extra; i++)
		iopf_sim_free(extra[i]);
	return r;
}
