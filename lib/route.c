/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "route.h"

#include <stdlib.h>

#include "util.h"

struct iopf_route_table {
	struct cds_lfht *ht;
};

struct key {
	uint64_t source;
	uint32_t dev_id, pasid;
};

/* A 64-bit finaliser (splitmix64): keys are small sequential integers. */
static unsigned long mix(uint64_t x)
{
	x ^= x >> 30;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	x ^= x >> 27;
	x *= UINT64_C(0x94d049bb133111eb);
	x ^= x >> 31;
	return (unsigned long)x;
}

static unsigned long key_hash(const struct key *k)
{
	return mix(k->source ^ mix(((uint64_t)k->dev_id << 32) | k->pasid));
}

static int match(struct cds_lfht_node *node, const void *key)
{
	const struct iopf_route_node *n = caa_container_of(node, struct iopf_route_node, node);
	const struct key *k = key;

	return n->source == k->source && n->dev_id == k->dev_id && n->pasid == k->pasid;
}

int iopf_route_table_new(struct iopf_route_table **ret)
{
	struct iopf_route_table *t;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->ht = cds_lfht_new(64, 64, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
	if (!t->ht) {
		free(t);
		return -ENOMEM;
	}
	*ret = t;
	return 0;
}

struct iopf_route_table *iopf_route_table_free(struct iopf_route_table *t)
{
	if (!t)
		return NULL;
	(void)cds_lfht_destroy(t->ht, NULL);
	free(t);
	return NULL;
}

int iopf_route_add(struct iopf_route_table *t, struct iopf_route_node *n)
{
	struct key k = { n->source, n->dev_id, n->pasid };
	struct cds_lfht_node *got;

	cds_lfht_node_init(&n->node);
	__atomic_store_n(&n->published, 1, __ATOMIC_RELEASE);
	/* lfht updates walk the chains too, so they need a read section. */
	rcu_read_lock();
	got = cds_lfht_add_unique(t->ht, key_hash(&k), match, &k, &n->node);
	rcu_read_unlock();
	return got == &n->node ? 0 : -EEXIST;
}

void iopf_route_del(struct iopf_route_table *t, struct iopf_route_node *n)
{
	rcu_read_lock();
	(void)cds_lfht_del(t->ht, &n->node);
	rcu_read_unlock();
}

struct iopf_route_node *iopf_route_lookup(struct iopf_route_table *t, uint64_t source,
					  uint32_t dev_id, uint32_t pasid)
{
	struct key k = { source, dev_id, pasid };
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	struct iopf_route_node *n;

	cds_lfht_lookup(t->ht, key_hash(&k), match, &k, &it);
	node = cds_lfht_iter_get_node(&it);
	if (!node)
		return NULL;
	n = caa_container_of(node, struct iopf_route_node, node);
	(void)__atomic_load_n(&n->published, __ATOMIC_ACQUIRE);
	return n;
}
