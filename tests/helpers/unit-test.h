/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What every CMocka test file includes first, and the entries of its test table. */
#ifndef IOPF_TEST_UNIT_TEST_H
#define IOPF_TEST_UNIT_TEST_H

/* cmocka.h needs these before it */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* A test between the file's setup() and teardown(); TEST_WITH() names its own setup. */
#define TEST(fn)		cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define TEST_WITH(fn, setup_fn) cmocka_unit_test_setup_teardown(fn, setup_fn, teardown)

/* main(): run the tests listed (TEST(), cmocka_unit_test(), ...) as one group. */
#define TEST_MAIN(...) TEST_MAIN_GROUP(NULL, NULL, __VA_ARGS__)
/* The same between a group setup and teardown. */
#define TEST_MAIN_GROUP(group_setup, group_teardown, ...)                                          \
	int main(void)                                                                             \
	{                                                                                          \
		const struct CMUnitTest tests[] = {__VA_ARGS__};                                   \
                                                                                                   \
		return cmocka_run_group_tests(tests, group_setup, group_teardown);                 \
	}

#endif /* IOPF_TEST_UNIT_TEST_H */
