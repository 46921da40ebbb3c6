/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "route.h"

#include <stdlib.h>

#include "util.h"

/*
 * An open-addressed array of (hash, node) slots with linear probing, at most
 * half full (tombstones included), so every probe ends on an empty slot soon.
 * A lookup costs one hash, one or two slot cache lines and the node it returns
 * (which the caller is about to use anyway); liburcu's lfht spent about as
 * much again on bucket indirection, reversed-hash ordering and an indirect
 * match call for every fault.
 *
 * Only the control thread writes. A slot is written once: tag, then node with
 * release ordering; deleting swaps the node for TOMBSTONE and never frees the
 * slot, so a present key is always reachable from its home without crossing an
 * empty slot. When the table fills up (or is mostly tombstones) the control
 * thread builds a new one from the live nodes off to the side, publishes it
 * with one pointer exchange and frees the old one after a grace period.
 */

#define TOMBSTONE ((struct iopf_route_node *)(uintptr_t)1)
#define MIN_SLOTS 64u

struct slot {
	uint64_t tag;		      /* the key's hash; valid once node is non-NULL */
	struct iopf_route_node *node; /* NULL: never used (ends a probe); TOMBSTONE: deleted */
};

struct tab {
	size_t mask;	/* slots - 1 */
	unsigned shift; /* 64 - log2(slots): the home is the hash's top bits */
	struct rcu_head rcu;
	struct slot slot[];
};

struct iopf_route_table {
	struct tab *tab; /* RCU-published; replaced whole, never resized in place */
	size_t used;	 /* live + tombstones in tab; control thread only */
	size_t live;
};

/*
 * Keys are small sequential integers. Multiplying scatters them over the top
 * bits, which pick the home slot (Fibonacci hashing); the shift folds the
 * high half back so the full value also works as a tag.
 */
static uint64_t key_hash(uint64_t source, uint32_t dev_id, uint32_t pasid)
{
	uint64_t x = source * UINT64_C(0x9e3779b97f4a7c15) ^ ((uint64_t)dev_id << 32 | pasid);

	x ^= x >> 31;
	return x * UINT64_C(0xbf58476d1ce4e5b9);
}

static bool node_is(const struct iopf_route_node *n, uint64_t source, uint32_t dev_id,
		    uint32_t pasid)
{
	return n->source == source && n->dev_id == dev_id && n->pasid == pasid;
}

static struct tab *tab_new(size_t slots)
{
	struct tab *t = calloc(1, sizeof(*t) + slots * sizeof(t->slot[0]));

	if (!t)
		return NULL;
	t->mask = slots - 1;
	t->shift = 64 - (unsigned)__builtin_ctzll(slots);
	return t;
}

static void tab_free_rcu(struct rcu_head *h)
{
	free(caa_container_of(h, struct tab, rcu));
}

/* Put @n in the first empty slot of its probe sequence; @t is not full. Control thread. */
static void tab_put(struct tab *t, uint64_t h, struct iopf_route_node *n)
{
	size_t i = h >> t->shift;

	while (t->slot[i].node)
		i = (i + 1) & t->mask;
	__atomic_store_n(&t->slot[i].tag, h, __ATOMIC_RELAXED);
	/* the node and its tag are complete before a reader can see the pointer */
	__atomic_store_n(&t->slot[i].node, n, __ATOMIC_RELEASE);
}

/* The live slot of the key, or NULL. Control thread (plain reads of its own writes). */
static struct slot *tab_find(struct tab *t, uint64_t h, uint64_t source, uint32_t dev_id,
			     uint32_t pasid)
{
	for (size_t i = h >> t->shift; t->slot[i].node; i = (i + 1) & t->mask) {
		struct slot *s = &t->slot[i];

		if (s->node != TOMBSTONE && s->tag == h && node_is(s->node, source, dev_id, pasid))
			return s;
	}
	return NULL;
}

/* Rebuild from the live nodes, sized for one more at most a quarter full. Control thread. */
static int rebuild(struct iopf_route_table *rt)
{
	struct tab *old = rt->tab, *t;
	size_t slots = MIN_SLOTS;

	while (slots < 4 * (rt->live + 1))
		slots *= 2;
	t = tab_new(slots);
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i <= old->mask; i++) {
		struct iopf_route_node *n = old->slot[i].node;

		if (n && n != TOMBSTONE)
			tab_put(t, old->slot[i].tag, n);
	}
	/* Readers still in the old table see it as it was; it goes after they leave. */
	(void)iopf_rcu_xchg_pointer(&rt->tab, t);
	call_rcu(&old->rcu, tab_free_rcu);
	rt->used = rt->live;
	return 0;
}

int iopf_route_table_new(struct iopf_route_table **ret)
{
	struct iopf_route_table *rt;

	rt = calloc(1, sizeof(*rt));
	if (!rt)
		return -ENOMEM;
	rt->tab = tab_new(MIN_SLOTS);
	if (!rt->tab) {
		free(rt);
		return -ENOMEM;
	}
	*ret = rt;
	return 0;
}

struct iopf_route_table *iopf_route_table_free(struct iopf_route_table *rt)
{
	if (!rt)
		return NULL;
	/* no reader any more (the caller's contract): no grace period needed */
	free(rt->tab);
	free(rt);
	return NULL;
}

int iopf_route_add(struct iopf_route_table *rt, struct iopf_route_node *n)
{
	uint64_t h = key_hash(n->source, n->dev_id, n->pasid);
	int r;

	if (tab_find(rt->tab, h, n->source, n->dev_id, n->pasid))
		return -EEXIST;
	if (2 * (rt->used + 1) > rt->tab->mask + 1) {
		r = rebuild(rt);
		if (r < 0)
			return r;
	}
	tab_put(rt->tab, h, n);
	rt->used++;
	rt->live++;
	return 0;
}

void iopf_route_del(struct iopf_route_table *rt, struct iopf_route_node *n)
{
	struct slot *s = tab_find(rt->tab, key_hash(n->source, n->dev_id, n->pasid), n->source,
				  n->dev_id, n->pasid);

	if (!s || s->node != n)
		return;
	/* Lookups from now on miss; those already holding @n keep it for a grace period. */
	__atomic_store_n(&s->node, TOMBSTONE, __ATOMIC_RELEASE);
	rt->live--;
}

struct iopf_route_node *iopf_route_lookup(struct iopf_route_table *rt, uint64_t source,
					  uint32_t dev_id, uint32_t pasid)
{
	/*
	 * rcu_dereference() is an out-of-line call in liburcu unless built with
	 * _LGPL_SOURCE; an acquire load gives the same ordering inline.
	 */
	const struct tab *t = __atomic_load_n(&rt->tab, __ATOMIC_ACQUIRE);
	uint64_t h = key_hash(source, dev_id, pasid);

	for (size_t i = h >> t->shift;; i = (i + 1) & t->mask) {
		const struct slot *s = &t->slot[i];
		struct iopf_route_node *n = __atomic_load_n(&s->node, __ATOMIC_ACQUIRE);

		if (!n)
			return NULL;
		/* the tag first: a mismatch costs no access to another domain's memory */
		if (n != TOMBSTONE && __atomic_load_n(&s->tag, __ATOMIC_RELAXED) == h &&
		    node_is(n, source, dev_id, pasid))
			return n;
	}
}

void iopf_route_prefetch(struct iopf_route_table *rt, uint64_t source, uint32_t dev_id,
			 uint32_t pasid)
{
	const struct tab *t = __atomic_load_n(&rt->tab, __ATOMIC_ACQUIRE);

	__builtin_prefetch(&t->slot[key_hash(source, dev_id, pasid) >> t->shift]);
}
