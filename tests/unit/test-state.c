/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* lib/dataplane/state.c: the arena that outlives the process. */
#include "unit-test.h"

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state.h"
#include "util.h"

static void test_alloc_aligned_zeroed_distinct(void **state)
{
	static const size_t sizes[] = {1, 64, 65, 200, 4096, 5000, 1 << 20, 3};
	struct iopf_state *s;
	uint64_t off[ARRAY_SIZE(sizes)];

	(void)state;
	assert_int_equal(iopf_state_new(&s), 0);
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		size_t b = iopf_state_block_size(sizes[i]);
		uint8_t *p;

		assert_int_equal(iopf_state_alloc(s, sizes[i], &off[i]), 0);
		assert_true(b >= sizes[i] && b >= IOPF_STATE_MIN_BLOCK);
		assert_true(IS_ALIGNED(off[i], b));
		p = iopf_state_at(s, off[i]);
		for (size_t j = 0; j < b; j++)
			assert_int_equal(p[j], 0);
		memset(p, 0xa5, b);
		for (size_t j = 0; j < i; j++) {
			size_t bj = iopf_state_block_size(sizes[j]);

			assert_true(off[i] + b <= off[j] || off[j] + bj <= off[i]);
		}
	}
	/* released blocks come back zeroed, small and large */
	iopf_state_release(s, off[0], sizes[0]);
	iopf_state_release(s, off[6], sizes[6]);
	for (size_t i = 0; i < 2; i++) {
		size_t sz = i ? sizes[6] : sizes[0];
		uint64_t o;
		uint8_t *p;

		assert_int_equal(iopf_state_alloc(s, sz, &o), 0);
		p = iopf_state_at(s, o);
		for (size_t j = 0; j < iopf_state_block_size(sz); j++)
			assert_int_equal(p[j], 0);
	}
	assert_int_equal(iopf_state_alloc(s, 0, &off[0]), -EINVAL);
	assert_int_equal(iopf_state_alloc(s, (size_t)IOPF_STATE_MAX_BYTES, &off[0]), -EINVAL);
	iopf_state_free(s);
}

/* What one run wrote, the next one reads after adopting the memfd and claiming its blocks. */
static void test_adopt_claim_seal(void **state)
{
	struct iopf_state *s, *t;
	uint64_t a, b, c, d;
	int fd;

	(void)state;
	assert_int_equal(iopf_state_new(&s), 0);
	assert_int_equal(iopf_state_alloc(s, 100, &a), 0);
	assert_int_equal(iopf_state_alloc(s, 9000, &b), 0);
	assert_int_equal(iopf_state_alloc(s, 64, &c), 0);
	strcpy(iopf_state_at(s, a), "journal");
	strcpy(iopf_state_at(s, b), "bitmap");
	iopf_state_release(s, c, 64);
	fd = fcntl(iopf_state_fd(s), F_DUPFD_CLOEXEC, 3);
	assert_true(fd >= 0);
	iopf_state_free(s); /* the crash: only the fd store's copy is left */

	assert_int_equal(iopf_state_adopt(fd, &t), 0);
	/* not sealed: nothing new yet */
	assert_int_equal(iopf_state_alloc(t, 64, &d), -EBUSY);
	assert_int_equal(iopf_state_claim(t, a, 100), 0);
	assert_int_equal(iopf_state_claim(t, b, 9000), 0);
	assert_int_equal(iopf_state_seal(t), 0);
	assert_string_equal(iopf_state_at(t, a), "journal");
	assert_string_equal(iopf_state_at(t, b), "bitmap");
	/* everything not claimed is free again, and never one of the claimed blocks */
	for (int i = 0; i < 64; i++) {
		assert_int_equal(iopf_state_alloc(t, 64 + i * 50, &d), 0);
		assert_true(d + iopf_state_block_size(64 + i * 50) <= a || d >= a + 128);
		assert_true(d + iopf_state_block_size(64 + i * 50) <= b || d >= b + 16384);
	}
	iopf_state_free(t);
}

/* The arena is read back as untrusted input: a wrong file or a bad claim is refused. */
static void test_adopt_refuses(void **state)
{
	struct iopf_state *s, *t;
	uint64_t a, b;
	int fd, dup_fd;

	(void)state;
	/* not an arena */
	fd = memfd_create("not-state", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	assert_int_equal(iopf_state_adopt(fd, &t), -EINVAL);
	assert_int_equal(write(fd, "iopfdST1", 8), 8); /* magic, then a zero version */
	assert_int_equal(iopf_state_adopt(fd, &t), -EINVAL);
	close(fd);
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	assert_int_equal(iopf_state_adopt(fd, &t), -EINVAL);
	close(fd);

	assert_int_equal(iopf_state_new(&s), 0);
	assert_int_equal(iopf_state_alloc(s, 4096, &a), 0);
	assert_int_equal(iopf_state_alloc(s, 64, &b), 0);
	dup_fd = fcntl(iopf_state_fd(s), F_DUPFD_CLOEXEC, 3);
	iopf_state_free(s);
	assert_int_equal(iopf_state_adopt(dup_fd, &t), 0);
	assert_int_equal(iopf_state_claim(t, 0, 64), -EINVAL);		       /* the header */
	assert_int_equal(iopf_state_claim(t, a + 64, 4096), -EINVAL);	       /* misaligned */
	assert_int_equal(iopf_state_claim(t, UINT64_C(1) << 39, 64), -EINVAL); /* past the end */
	assert_int_equal(iopf_state_claim(t, a, 4096), 0);
	assert_int_equal(iopf_state_claim(t, a, 64), 0); /* inside the first: seal sees it */
	assert_int_equal(iopf_state_seal(t), -EINVAL);
	iopf_state_free(t);
}

struct seen {
	unsigned n;
	uint64_t sum;
};

static int visit(uint64_t key, const void *data, size_t len, void *userdata)
{
	struct seen *seen = userdata;
	uint64_t v;

	assert_int_equal(len, sizeof(v));
	memcpy(&v, data, sizeof(v));
	assert_int_equal(v, key * 3);
	seen->n++;
	seen->sum += key;
	return 0;
}

/* Records survive the process: inserted, replaced, deleted, then found again whole. */
static void test_records(void **state)
{
	struct seen seen = {};
	struct iopf_state *s, *t;
	uint64_t v, sum = 0, off;
	int fd;

	(void)state;
	assert_int_equal(iopf_state_new(&s), 0);
	for (uint64_t k = 1; k <= 1000; k++) {
		v = k; /* replaced below */
		assert_int_equal(iopf_state_put(s, k, &v, sizeof(v)), 0);
	}
	for (uint64_t k = 1; k <= 1000; k++) {
		v = k * 3;
		assert_int_equal(iopf_state_put(s, k, &v, sizeof(v)), 0);
		if (k % 3 == 0)
			assert_int_equal(iopf_state_del(s, k), 0);
		else
			sum += k;
	}
	assert_int_equal(iopf_state_del(s, 3), -ENOENT);
	assert_int_equal(iopf_state_put(s, 0, &v, sizeof(v)), -EINVAL);
	assert_int_equal(iopf_state_n_records(s), 667);
	fd = fcntl(iopf_state_fd(s), F_DUPFD_CLOEXEC, 3);
	iopf_state_free(s);

	assert_int_equal(iopf_state_adopt(fd, &t), 0);
	assert_int_equal(iopf_state_foreach_record(t, visit, &seen), 0);
	assert_int_equal(seen.n, 667);
	assert_int_equal(seen.sum, sum);
	assert_int_equal(iopf_state_seal(t), 0);
	/* the adopted table goes on working */
	v = 3 * 3;
	assert_int_equal(iopf_state_put(t, 3, &v, sizeof(v)), 0);
	assert_int_equal(iopf_state_del(t, 1), 0);
	assert_int_equal(iopf_state_n_records(t), 667);
	/* new blocks never land on a record */
	for (int i = 0; i < 200; i++)
		assert_int_equal(iopf_state_alloc(t, 64, &off), 0);
	fd = fcntl(iopf_state_fd(t), F_DUPFD_CLOEXEC, 3);
	iopf_state_free(t);
	seen = (struct seen){};
	assert_int_equal(iopf_state_adopt(fd, &t), 0);
	assert_int_equal(iopf_state_foreach_record(t, visit, &seen), 0);
	assert_int_equal(seen.n, 667);
	assert_int_equal(seen.sum, sum - 1 + 3);
	iopf_state_free(t);
}

static int find_value(uint64_t key, const void *data, size_t len, void *userdata)
{
	(void)key;
	*(const void **)userdata = data;
	(void)len;
	return 0;
}

/* A record whose bytes changed behind the arena's back refuses the whole state. */
static void test_records_corrupt(void **state)
{
	struct iopf_state *s, *t;
	const void *where = NULL;
	uint64_t v = 42;
	int fd;

	(void)state;
	assert_int_equal(iopf_state_new(&s), 0);
	assert_int_equal(iopf_state_put(s, 7, &v, sizeof(v)), 0);
	fd = fcntl(iopf_state_fd(s), F_DUPFD_CLOEXEC, 3);
	iopf_state_free(s);
	assert_int_equal(iopf_state_adopt(fd, &t), 0);
	assert_int_equal(iopf_state_foreach_record(t, find_value, &where), 0);
	((uint8_t *)where)[0] ^= 1;
	fd = fcntl(iopf_state_fd(t), F_DUPFD_CLOEXEC, 3);
	iopf_state_free(t);
	assert_int_equal(iopf_state_adopt(fd, &t), 0);
	assert_int_equal(iopf_state_foreach_record(t, find_value, &where), -EINVAL);
	iopf_state_free(t);
}

TEST_MAIN(cmocka_unit_test(test_records), cmocka_unit_test(test_records_corrupt),
	  cmocka_unit_test(test_alloc_aligned_zeroed_distinct),
	  cmocka_unit_test(test_adopt_claim_seal), cmocka_unit_test(test_adopt_refuses))
