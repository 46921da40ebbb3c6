/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The routing table: (source id, dev_id, pasid) -> domain, an RCU-published
 * open-addressed hash (lib/dataplane/route.c). Workers look up inside an RCU read
 * section and take no lock; only the control thread adds and removes (it must
 * be a registered RCU thread: a resize frees the old array with call_rcu).
 * The node is embedded in the domain, which stays allocated for a grace period
 * after removal because other workers' lookups may still hold it.
 */
#ifndef IOPF_ROUTE_H
#define IOPF_ROUTE_H

#include <stdint.h>

#include "rcu.h"

struct iopf_route_table;

struct iopf_route_node {
	uint64_t source;
	uint32_t dev_id;
	uint32_t pasid; /* IOPF_PASID_NONE for faults without PASID_VALID */
};

/* Return: 0 or -ENOMEM. */
int iopf_route_table_new(struct iopf_route_table **ret);
/* The table must be empty. NULL ok; returns NULL. */
struct iopf_route_table *iopf_route_table_free(struct iopf_route_table *t);

/*
 * iopf_route_add() - publish @n under its key; the object around it must be
 * complete (the publication orders its initialisation before any reader's
 * use). Control thread only.
 * Return: 0, -EEXIST (key taken), -ENOMEM (the table had to grow).
 */
int iopf_route_add(struct iopf_route_table *t, struct iopf_route_node *n);
/* Unpublish @n; lookups that start afterwards miss it. Control thread only. */
void iopf_route_del(struct iopf_route_table *t, struct iopf_route_node *n);
/* Caller holds rcu_read_lock(). Return: the node or NULL. */
struct iopf_route_node *iopf_route_lookup(struct iopf_route_table *t, uint64_t source,
					  uint32_t dev_id, uint32_t pasid);
/*
 * Start loading the slot a lookup of this key reads first, so that lookups
 * of several keys overlap their cache misses. A hint: any key will do.
 * Caller holds rcu_read_lock().
 */
void iopf_route_prefetch(struct iopf_route_table *t, uint64_t source, uint32_t dev_id,
			 uint32_t pasid);

#endif /* IOPF_ROUTE_H */
