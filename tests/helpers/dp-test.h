/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers shared by the data-plane unit tests. */
#ifndef DP_TEST_H
#define DP_TEST_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "test-fds.h"
#include "unit-test.h"

/*
 * Wait for a condition another thread makes true: poll it with a generous
 * bound (10 s). No test asserts on timing; the bound only turns a hang into a
 * failure.
 */
#define WAIT_FOR(cond)                                                                             \
	do {                                                                                       \
		unsigned _i;                                                                       \
		for (_i = 0; !(cond) && _i < 10000; _i++)                                          \
			usleep(1000);                                                              \
		assert_true(cond);                                                                 \
	} while (0)

/*
 * Background threads of a concurrency test, all on one fn(arg): they run while
 * bg_threads_running() and bg_threads_stop() ends them (raises the flag, joins them).
 */
#define BG_THREADS_MAX 4
struct bg_threads {
	pthread_t th[BG_THREADS_MAX];
	unsigned n;
	int stop;
};

static inline void bg_threads_start(struct bg_threads *t, unsigned n, void *(*fn)(void *),
				    void *arg)
{
	assert_true(n <= BG_THREADS_MAX);
	for (t->n = 0; t->n < n; t->n++)
		assert_int_equal(pthread_create(&t->th[t->n], NULL, fn, arg), 0);
}

static inline bool bg_threads_running(struct bg_threads *t)
{
	return !__atomic_load_n(&t->stop, __ATOMIC_RELAXED);
}

static inline void bg_threads_stop(struct bg_threads *t)
{
	__atomic_store_n(&t->stop, 1, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < t->n; i++)
		assert_int_equal(pthread_join(t->th[i], NULL), 0);
}

#endif /* DP_TEST_H */
