/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "scripted-tenant.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util.h"

#define WAIT_NS (UINT64_C(10) * 1000000000)

static int become(const struct scripted_tenant *t, long uid)
{
	if (setgroups(0, NULL) < 0 || setresgid((gid_t)uid, (gid_t)uid, (gid_t)uid) < 0 ||
	    setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0) {
		fprintf(stderr, "%s: cannot change uid: %s\n", t->name, strerror(errno));
		return 2;
	}
	return 0;
}

static int args(struct scripted_tenant *t, int argc, char *argv[])
{
	static const struct option options[] = {
		{"address", required_argument, NULL, 'a'},
		{"uid", required_argument, NULL, 'u'},
		{"paused", no_argument, NULL, 'P'},
		{},
	};
	long uid = -1;
	int c;

	while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
		switch (c) {
		case 'a':
			t->address = optarg;
			break;
		case 'u':
			uid = strtol(optarg, NULL, 10);
			break;
		case 'P':
			if (!t->may_pause)
				return 2;
			t->paused = true;
			break;
		default:
			return 2;
		}
	setvbuf(stdout, NULL, _IOLBF, 0);
	return uid >= 0 ? become(t, uid) : 0;
}

int scripted_tenant_memfd(const struct scripted_tenant *t, uint64_t size)
{
	int fd = memfd_create(t->name, MFD_CLOEXEC);

	if (fd >= 0 && ftruncate(fd, (off_t)size) < 0)
		fd = safe_close(fd);
	return fd;
}

void scripted_tenant_json_error(const struct scripted_tenant *t, int r)
{
	const char *m = r < 0 && t->client ? iopf_client_last_error(t->client) : NULL;

	printf("{\"error\":%d,\"message\":\"", r);
	for (; m && *m; m++)
		if (*m == '"' || *m == '\\')
			printf("\\%c", *m);
		else if ((unsigned char)*m >= 0x20)
			putchar(*m);
	printf("\"}\n");
}

static int setup(struct scripted_tenant *t)
{
	_cleanup_close_ int mem = -EBADF;
	int r;

	r = iopf_client_connect(t->address, &t->client);
	if (r < 0)
		return fprintf(stderr, "%s: connect: %s\n", t->name, strerror(-r)), r;
	if (t->on_restart)
		iopf_client_set_restart_callback(t->client, t->on_restart, NULL);
	r = iopf_sim_new(&t->sim_config, &t->sim);
	if (r < 0)
		return fprintf(stderr, "%s: sim: %s\n", t->name, strerror(-r)), r;
	mem = scripted_tenant_memfd(t, t->region_size);
	if (mem < 0)
		return -errno;
	r = (t->paused ? iopf_client_register_source_paused : iopf_client_register_source)(
		t->client, iopf_sim_fault_fd(t->sim), iopf_sim_iommufd(t->sim),
		iopf_sim_ioas_id(t->sim, 0), &t->source_id);
	if (r >= 0)
		r = iopf_client_register_domain(t->client, t->source_id, 1, IOPF_PASID_NONE,
						&t->domain_id);
	if (r >= 0)
		r = iopf_client_add_region(t->client, t->domain_id, mem, 0, t->region_iova,
					   t->region_size, t->region_access, &t->region_id);
	if (r < 0)
		return fprintf(stderr, "%s: register: %s (%s)\n", t->name, strerror(-r),
			       iopf_client_last_error(t->client) ?: ""),
		       r;
	printf("{\"source\":%" PRIu64 ",\"domain\":%" PRIu64 ",\"region\":%" PRIu64 "}\n",
	       t->source_id, t->domain_id, t->region_id);
	return 0;
}

int scripted_tenant_inject(struct scripted_tenant *t, uint32_t dev_id, uint64_t addr, uint32_t perm)
{
	struct iopf_sim_fault f = {.addr = addr, .perm = perm};
	struct iopf_sim_group g = {
		.dev_id = dev_id, .pasid = IOPF_PASID_NONE, .n = 1, .faults = &f};

	return iopf_sim_inject(t->sim, &g, 1) == 1 ? 0 : -ENOSPC;
}

int scripted_tenant_inject_good(struct scripted_tenant *t, unsigned n)
{
	int r = 0;

	for (unsigned i = 0; r >= 0 && i < n; i++)
		r = scripted_tenant_inject(
			t, 1,
			t->region_iova +
				(uint64_t)(t->next_page++ % (t->region_size / 4096)) * 4096,
			IOMMU_PGFAULT_PERM_READ);
	return r;
}

void scripted_tenant_cmd_inject(struct scripted_tenant *t, unsigned n)
{
	int r = scripted_tenant_inject_good(t, n);

	if (r < 0)
		printf("{\"error\":%d}\n", r);
	else
		printf("{}\n");
}

void scripted_tenant_cmd_wait(struct scripted_tenant *t, unsigned total)
{
	unsigned answered = 0, success = 0;
	struct iopf_sim_answer a[64];

	for (unsigned tries = 0; answered < total && tries < t->wait_rounds; tries++) {
		int n;

		(void)iopf_sim_wait(t->sim, WAIT_NS / 100);
		while ((n = iopf_sim_harvest(t->sim, a, ARRAY_SIZE(a))) > 0)
			for (int i = 0; i < n; i++) {
				answered++;
				success += a[i].code == IOMMUFD_PAGE_RESP_SUCCESS;
			}
	}
	printf("{\"answered\":%u,\"success\":%u,\"invalid\":%u}\n", answered, success,
	       answered - success);
}

int scripted_tenant_main(struct scripted_tenant *t, int argc, char *argv[],
			 bool (*command)(const char *line))
{
	char line[4096];
	int r;

	r = args(t, argc, argv);
	if (r)
		return r;
	if (setup(t) < 0)
		return 1;
	while (fgets(line, sizeof(line), stdin)) {
		unsigned n;

		if (sscanf(line, "inject %u", &n) == 1)
			scripted_tenant_cmd_inject(t, n);
		else if (sscanf(line, "wait %u", &n) == 1)
			scripted_tenant_cmd_wait(t, n);
		else if (strncmp(line, "quit", 4) == 0)
			break;
		else if (!command(line))
			printf("{\"error\":\"unknown command\"}\n");
	}
	t->client = iopf_client_free(t->client);
	t->sim = iopf_sim_free(t->sim);
	return 0;
}
