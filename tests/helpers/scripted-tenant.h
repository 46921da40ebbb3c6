/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the scripted tenants of tests/integration (ops-tenant, hostile-tenant) share:
 * their command line (--address, --uid, --paused where allowed), a connection with one
 * simulated fault source, one domain (dev_id 1, no PASID) and one region, announced as
 * a JSON line, single-record injections and the harvest of their answers.
 */
#ifndef IOPF_TEST_SCRIPTED_TENANT_H
#define IOPF_TEST_SCRIPTED_TENANT_H

#include <stdbool.h>
#include <stdint.h>

#include "iopf/client.h"
#include "sim.h"

struct scripted_tenant {
	/* set by the program */
	const char *name;     /* the start of its messages: "ops-tenant" */
	bool may_pause;	      /* --paused is an option */
	uint64_t region_iova; /* the region of the setup */
	uint64_t region_size;
	uint32_t region_access;
	unsigned wait_rounds; /* of WAIT_NS / 100 each, for the answers of "wait" */
	struct iopf_sim_config sim_config;
	void (*on_restart)(struct iopf_client *c, void *userdata); /* NULL: none */

	/* from the command line */
	const char *address;
	bool paused;

	/* from the setup */
	struct iopf_client *client;
	struct iopf_sim *sim;
	uint64_t source_id, domain_id, region_id;
	unsigned next_page; /* of the region, for the next good fault */
};

/*
 * scripted_tenant_main() - the program: read the command line (and become --uid's user),
 * connect, open the simulator context, register the source (paused if --paused), the
 * domain and the region and print their ids as a JSON line; then obey one command per
 * stdin line until "quit" or its end: "inject N" and "wait N" here, the others by
 * @command, which returns false for a line it does not know.
 * Return: the exit code (0; 1 if the setup failed, 2 for a bad command line).
 */
int scripted_tenant_main(struct scripted_tenant *t, int argc, char *argv[],
			 bool (*command)(const char *line));

/* A memfd of @size bytes named after the tenant, or -errno. */
int scripted_tenant_memfd(const struct scripted_tenant *t, uint64_t size);

/* {"error":R,"message":M}: M the daemon's last error when R < 0, else empty. */
void scripted_tenant_json_error(const struct scripted_tenant *t, int r);

/* One single-record group; 0, or -ENOSPC if the queue is full. */
int scripted_tenant_inject(struct scripted_tenant *t, uint32_t dev_id, uint64_t addr,
			   uint32_t perm);

/* @n good groups (read faults on the region's pages in turn); 0 or the first error. */
int scripted_tenant_inject_good(struct scripted_tenant *t, unsigned n);

/* The "inject N" command: @n good groups, no wait; prints {} or {"error":E}. */
void scripted_tenant_cmd_inject(struct scripted_tenant *t, unsigned n);

/*
 * The "wait N" command: harvest until @total answers came (at most wait_rounds waits),
 * and print {"answered":A,"success":S,"invalid":I}.
 */
void scripted_tenant_cmd_wait(struct scripted_tenant *t, unsigned total);

#endif
