/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers shared by the data-plane unit tests. */
#ifndef DP_TEST_H
#define DP_TEST_H

#include <errno.h>
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

#endif /* DP_TEST_H */
