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

#endif /* IOPF_TEST_UNIT_TEST_H */
