/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The RCU routing table. */
#include "dp-test.h"

#include <pthread.h>

#include "iopf/iopf.h"
#include "route.h"

static struct iopf_route_node *node(uint64_t source, uint32_t dev, uint32_t pasid)
{
	struct iopf_route_node *n = calloc(1, sizeof(*n));

	assert_non_null(n);
	n->source = source;
	n->dev_id = dev;
	n->pasid = pasid;
	return n;
}

static struct iopf_route_node *lookup(struct iopf_route_table *t, uint64_t s, uint32_t d,
				      uint32_t p)
{
	struct iopf_route_node *n;

	rcu_read_lock();
	n = iopf_route_lookup(t, s, d, p);
	rcu_read_unlock();
	return n;
}

static void test_add_lookup_remove(void **state)
{
	struct iopf_route_table *t;
	struct iopf_route_node *a = node(1, 3, IOPF_PASID_NONE), *b = node(1, 3, 5),
			       *c = node(2, 3, IOPF_PASID_NONE), *dup = node(1, 3, 5);

	assert_int_equal(iopf_route_table_new(&t), 0);
	assert_null(lookup(t, 1, 3, IOPF_PASID_NONE));
	assert_int_equal(iopf_route_add(t, a), 0);
	assert_int_equal(iopf_route_add(t, b), 0);
	assert_int_equal(iopf_route_add(t, c), 0);
	assert_int_equal(iopf_route_add(t, dup), -EEXIST);

	/* PASID and no-PASID are different keys; so is the same dev_id on another source */
	assert_ptr_equal(lookup(t, 1, 3, IOPF_PASID_NONE), a);
	assert_ptr_equal(lookup(t, 1, 3, 5), b);
	assert_ptr_equal(lookup(t, 2, 3, IOPF_PASID_NONE), c);
	assert_null(lookup(t, 2, 3, 5));
	assert_null(lookup(t, 1, 4, IOPF_PASID_NONE));
	assert_null(lookup(t, 1, 3, 0));
	assert_null(lookup(t, 3, 3, IOPF_PASID_NONE));

	iopf_route_del(t, b);
	assert_null(lookup(t, 1, 3, 5));
	assert_ptr_equal(lookup(t, 1, 3, IOPF_PASID_NONE), a);
	/* the key is free again */
	assert_int_equal(iopf_route_add(t, dup), 0);
	assert_ptr_equal(lookup(t, 1, 3, 5), dup);

	iopf_route_del(t, a);
	iopf_route_del(t, c);
	iopf_route_del(t, dup);
	synchronize_rcu(); /* no reader may still walk through them */
	free(a);
	free(b);
	free(c);
	free(dup);
	t = iopf_route_table_free(t);
	assert_null(t);
}

/* Enough keys to make the table resize, with neighbouring values. */
static void test_many(void **state)
{
	enum { N = 5000 };
	struct iopf_route_table *t;
	struct iopf_route_node **v = calloc(N, sizeof(*v));

	assert_int_equal(iopf_route_table_new(&t), 0);
	for (unsigned i = 0; i < N; i++) {
		v[i] = node(i % 7 + 1, i, i % 3 ? i % 11 : IOPF_PASID_NONE);
		assert_int_equal(iopf_route_add(t, v[i]), 0);
	}
	for (unsigned i = 0; i < N; i++)
		assert_ptr_equal(lookup(t, i % 7 + 1, i, i % 3 ? i % 11 : IOPF_PASID_NONE), v[i]);
	for (unsigned i = 0; i < N; i += 2)
		iopf_route_del(t, v[i]);
	for (unsigned i = 0; i < N; i++) {
		struct iopf_route_node *n =
			lookup(t, i % 7 + 1, i, i % 3 ? i % 11 : IOPF_PASID_NONE);

		assert_ptr_equal(n, i % 2 ? v[i] : NULL);
	}
	for (unsigned i = 1; i < N; i += 2)
		iopf_route_del(t, v[i]);
	synchronize_rcu();
	for (unsigned i = 0; i < N; i++)
		free(v[i]);
	free(v);
	iopf_route_table_free(t);
}

struct reader {
	struct iopf_route_table *t;
	struct bg_threads bg;
	uint64_t hits;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;

	rcu_register_thread();
	while (bg_threads_running(&r->bg)) {
		for (uint32_t d = 0; d < 64; d++) {
			struct iopf_route_node *n;

			rcu_read_lock();
			n = iopf_route_lookup(r->t, 1, d, IOPF_PASID_NONE);
			/* a node found is complete and still allocated */
			if (n) {
				/* not cmocka: its failure path longjmps, which a thread cannot */
				if (n->dev_id != d || n->pasid != IOPF_PASID_NONE || n->source != 1)
					abort();
				__atomic_add_fetch(&r->hits, 1, __ATOMIC_RELAXED);
			}
			rcu_read_unlock();
		}
	}
	rcu_unregister_thread();
	return NULL;
}

struct free_node {
	struct iopf_route_node n;
	struct rcu_head rcu;
};

static void free_node_rcu(struct rcu_head *h)
{
	free(caa_container_of(h, struct free_node, rcu));
}

/* Readers take no lock while the control thread adds, removes and frees via call_rcu. */
static void test_concurrent_readers(void **state)
{
	struct reader r = {};
	struct free_node *live[64] = {};

	assert_int_equal(iopf_route_table_new(&r.t), 0);
	bg_threads_start(&r.bg, 2, reader_main, &r);
	for (unsigned round = 0; round < 20000; round++) {
		uint32_t d = (round * 37) % 64;

		if (live[d]) {
			iopf_route_del(r.t, &live[d]->n);
			call_rcu(&live[d]->rcu, free_node_rcu);
			live[d] = NULL;
		} else {
			struct free_node *f = calloc(1, sizeof(*f));

			assert_non_null(f);
			f->n.source = 1;
			f->n.dev_id = d;
			f->n.pasid = IOPF_PASID_NONE;
			assert_int_equal(iopf_route_add(r.t, &f->n), 0);
			live[d] = f;
		}
	}
	bg_threads_stop(&r.bg);
	for (int d = 0; d < 64; d++)
		if (live[d]) {
			iopf_route_del(r.t, &live[d]->n);
			call_rcu(&live[d]->rcu, free_node_rcu);
		}
	rcu_barrier();
	iopf_route_table_free(r.t);
}

static int group_setup(void **state)
{
	rcu_register_thread();
	return 0;
}

static int group_teardown(void **state)
{
	rcu_barrier();
	rcu_unregister_thread();
	return 0;
}

TEST_MAIN_GROUP(group_setup, group_teardown, cmocka_unit_test(test_add_lookup_remove),
		cmocka_unit_test(test_many), cmocka_unit_test(test_concurrent_readers));
