/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Regions: validation, the sorted set (a copy-on-write B+tree) and its search, page bitmaps. */
#include "dp-test.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fd-util.h"
#include "uapi.h"
#include "region.h"
#include "util.h"

#define PG     IOPF_PAGE_SIZE
#define R      IOPF_ACCESS_READ
#define W      IOPF_ACCESS_WRITE
#define TENANT 1

static int memfd = -1;

static struct iopf_region *mk(uint64_t iova, uint64_t len)
{
	struct iopf_region *r;

	assert_int_equal(iopf_region_new(TENANT, memfd, 0, iova, len, R, &r), 0);
	return r;
}

static void test_new_validation(void **state)
{
	struct iopf_region *r;
	int p[2], ro;
	char path[] = "/tmp/iopf-test-XXXXXX";

	assert_int_equal(iopf_region_new(TENANT, memfd, 0, 0, 0, R, &r), -EINVAL);
	assert_int_equal(iopf_region_new(TENANT, memfd, 0, 1, PG, R, &r), -EINVAL);
	assert_int_equal(iopf_region_new(TENANT, memfd, 1, 0, PG, R, &r), -EINVAL);
	assert_int_equal(iopf_region_new(TENANT, memfd, 0, 0, PG + 1, R, &r), -EINVAL);
	assert_int_equal(iopf_region_new(TENANT, memfd, 0, 0, PG, 0, &r), -EINVAL);
	assert_int_equal(iopf_region_new(TENANT, memfd, 0, 0, PG, 0x10, &r), -EINVAL);
	/*
	 * Exclusive ends must be representable, as control checks too
	 * (iopf_region_check_args()): the page below the last is fine, a region
	 * ending at exactly 2^64 is refused, and so is one that wraps further.
	 */
	assert_int_equal(iopf_region_new(TENANT, memfd, 0, UINT64_MAX - 2 * PG + 1, PG, R, &r), 0);
	assert_int_equal(r->n_pages, 1);
	iopf_region_free(r);
	assert_int_equal(iopf_region_new(TENANT, memfd, 0, UINT64_MAX - PG + 1, PG, R, &r),
			 -EINVAL);
	assert_int_equal(iopf_region_new(TENANT, memfd, 0, UINT64_MAX - PG + 1, 2 * PG, R, &r),
			 -EINVAL);
	assert_int_equal(iopf_region_check_args(0, UINT64_MAX - PG + 1, PG, R),
			 IOPF_REGION_IOVA_WRAPS);
	assert_int_equal(iopf_region_check_args(0, UINT64_MAX - 2 * PG + 1, PG, R),
			 IOPF_REGION_ARGS_OK);
	/* beyond the file */
	assert_int_equal(iopf_region_new(TENANT, memfd, PG, 0, 1024 * PG, R, &r), -EINVAL);
	assert_int_equal(iopf_region_new(TENANT, memfd, 0, 0, 1024 * PG, R | W, &r), 0);
	assert_int_equal(r->prot, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE);
	assert_true(r->fd >= 0 && r->fd != memfd);
	assert_true(fcntl(r->fd, F_GETFD) & FD_CLOEXEC);
	iopf_region_free(r);
	/* fds that cannot be mapped */
	assert_int_equal(iopf_region_new(TENANT, -1, 0, 0, PG, R, &r), -EBADF);
	assert_int_equal(iopf_region_new(TENANT, 1000, 0, 0, PG, R, &r), -EBADF);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(iopf_region_new(TENANT, p[0], 0, 0, PG, R, &r), -EBADF);
	close(p[0]);
	close(p[1]);
	ro = mkstemp(path);
	assert_true(ro >= 0);
	assert_int_equal(ftruncate(ro, 16 * PG), 0);
	close(ro);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	unlink(path);
	assert_int_equal(iopf_region_new(TENANT, ro, 0, 0, PG, R | W, &r), -EBADF);
	assert_int_equal(iopf_region_new(TENANT, ro, 0, 0, 16 * PG, R, &r), 0);
	assert_int_equal(r->prot, IOMMU_IOAS_MAP_READABLE);
	iopf_region_free(r);
	close(ro);
	assert_null(iopf_region_free(NULL));
}

/* IOAS_MAP has only read and write: EXEC and PRIV map readable. */
static void test_prot(void **state)
{
	static const struct {
		uint32_t access, prot;
	} cases[] = {
		{R, IOMMU_IOAS_MAP_READABLE},
		{W, IOMMU_IOAS_MAP_WRITEABLE},
		{R | W, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE},
		{IOPF_ACCESS_EXEC, IOMMU_IOAS_MAP_READABLE},
		{IOPF_ACCESS_PRIV, IOMMU_IOAS_MAP_READABLE},
		{W | IOPF_ACCESS_EXEC, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE},
		{W | IOPF_ACCESS_PRIV, IOMMU_IOAS_MAP_WRITEABLE},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct iopf_region *r;

		assert_int_equal(iopf_region_new(TENANT, memfd, 0, 0, PG, cases[i].access, &r), 0);
		assert_int_equal(r->prot, cases[i].prot);
		iopf_region_free(r);
	}
}

/* Another open file description of @fd's file, with @flags. */
static int reopen(int fd, int flags)
{
	int r = fd_reopen(fd, flags);

	assert_true(r >= 0);
	return r;
}

static bool fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

/* One fd per (tenant, file, access mode), whatever fd the region was given. */
static void test_files_shared(void **state)
{
	int rw2 = reopen(memfd, O_RDWR), ro = reopen(memfd, O_RDONLY);
	struct iopf_region *a, *b, *c, *d, *e;
	struct stat st0, st1;
	int fd;

	assert_int_equal(iopf_region_files(), 0);
	assert_int_equal(iopf_region_new(TENANT, memfd, 0, 0x10000, PG, R | W, &a), 0);
	/* another fd on the same file, same mode: the same shared fd */
	assert_int_equal(iopf_region_new(TENANT, rw2, PG, 0x20000, PG, R, &b), 0);
	assert_int_equal(a->fd, b->fd);
	assert_int_equal(iopf_region_files(), 1);
	/* read-only: a view of it could not be writable, so a file of its own */
	assert_int_equal(iopf_region_new(TENANT, ro, 0, 0x30000, PG, R, &c), 0);
	assert_int_not_equal(c->fd, a->fd);
	/* another tenant never holds our fd */
	assert_int_equal(iopf_region_new(TENANT + 1, memfd, 0, 0x10000, PG, R | W, &d), 0);
	assert_int_not_equal(d->fd, a->fd);
	assert_int_not_equal(d->fd, c->fd);
	assert_int_equal(iopf_region_files(), 3);
	/* none of them is an fd the caller owns */
	for (int k = 0; k < 2; k++) {
		int theirs = k ? rw2 : ro;

		assert_int_not_equal(a->fd, theirs);
		assert_int_not_equal(c->fd, theirs);
		assert_int_not_equal(d->fd, theirs);
	}
	assert_int_not_equal(a->fd, memfd);
	close(rw2);
	close(ro);

	/* the shared fd lives while any region uses it */
	fd = a->fd;
	iopf_region_free(a);
	assert_true(fd_open(fd));
	assert_int_equal(fstat(b->fd, &st0), 0);
	assert_int_equal(fstat(memfd, &st1), 0);
	assert_int_equal(st0.st_ino, st1.st_ino);
	assert_int_equal(iopf_region_new(TENANT, memfd, 0, 0x40000, PG, R, &e), 0);
	assert_int_equal(e->fd, fd);
	iopf_region_free(b);
	iopf_region_free(e);
	assert_false(fd_open(fd));
	iopf_region_free(c);
	iopf_region_free(d);
	assert_int_equal(iopf_region_files(), 0);
}

/* Many files and tenants: the table grows, and empties again in any order. */
static void test_files_many(void **state)
{
	enum { FILES = 150, TENANTS = 2, PER = 3, N = FILES * TENANTS * PER };
	struct iopf_region **v = calloc(N, sizeof(*v));
	int fds[FILES];
	size_t k = 0;

	for (int f = 0; f < FILES; f++)
		fds[f] = test_memfd(PG);
	for (int t = 0; t < TENANTS; t++)
		for (int f = 0; f < FILES; f++)
			for (int i = 0; i < PER; i++, k++)
				assert_int_equal(
					iopf_region_new(t, fds[f], 0, k * PG, PG, R, &v[k]), 0);
	assert_int_equal(iopf_region_files(), FILES * TENANTS);
	for (int f = 0; f < FILES; f++)
		close(fds[f]);
	/* regions on one file share one fd: all PER of them */
	for (k = 0; k < N; k += PER)
		for (int i = 1; i < PER; i++)
			assert_int_equal(v[k + i]->fd, v[k]->fd);
	/* every other one first, then the rest */
	for (int pass = 0; pass < 2; pass++)
		for (k = pass; k < N; k += 2)
			iopf_region_free(v[k]);
	assert_int_equal(iopf_region_files(), 0);
	free(v);
}

/* The control thread builds regions while the call_rcu thread frees others on the same file. */
struct churn {
	int pipe[2];
};

static void *churn_free(void *arg)
{
	struct churn *c = arg;
	struct iopf_region *r;

	while (read(c->pipe[0], &r, sizeof(r)) == sizeof(r) && r)
		iopf_region_free(r);
	return NULL;
}

static void test_files_threads(void **state)
{
	struct churn c;
	pthread_t t;
	struct iopf_region *r;

	assert_int_equal(pipe2(c.pipe, O_CLOEXEC), 0);
	assert_int_equal(pthread_create(&t, NULL, churn_free, &c), 0);
	for (int i = 0; i < 2000; i++) {
		assert_int_equal(iopf_region_new(TENANT + (i % 3 == 0), memfd, 0, 0, PG, R, &r), 0);
		assert_true(fd_open(r->fd));
		assert_int_equal(write(c.pipe[1], &r, sizeof(r)), (ssize_t)sizeof(r));
	}
	r = NULL;
	assert_int_equal(write(c.pipe[1], &r, sizeof(r)), (ssize_t)sizeof(r));
	assert_int_equal(pthread_join(t, NULL), 0);
	close(c.pipe[0]);
	close(c.pipe[1]);
	assert_int_equal(iopf_region_files(), 0);
}

/* Region @k of @s in iova order, through the iterator. */
static struct iopf_region *nth(const struct iopf_region_set *s, size_t k)
{
	struct iopf_region_set_iter it;
	struct iopf_region *r = iopf_region_set_first(s, &it);

	while (r && k--)
		r = iopf_region_set_next(&it);
	return r;
}

static void test_set_overlap(void **state)
{
	struct iopf_region *a = mk(0x10000, 4 * PG), *b = mk(0x20000, 4 * PG);
	struct iopf_region_set *s1, *s2, *s3;
	struct {
		uint64_t iova, len;
		int want;
	} cases[] = {
		{0x10000 - PG, PG, 0},		/* adjacent below */
		{0x14000, PG, 0},		/* adjacent above */
		{0x10000 - PG, 2 * PG, -EBUSY}, /* overlaps the start */
		{0x13000, 2 * PG, -EBUSY},	/* overlaps the end */
		{0x11000, PG, -EBUSY},		/* inside */
		{0x0, 0x100000, -EBUSY},	/* around both */
		{0x14000, 0xc000, 0},		/* exactly the gap */
		{0x14000, 0xd000, -EBUSY},	/* the gap and one more */
	};

	assert_int_equal(iopf_region_set_add(NULL, b, &s1), 0);
	assert_int_equal(iopf_region_set_add(s1, a, &s2), 0);
	iopf_region_set_free(s1); /* the old set is the caller's to free (after a grace period) */
	assert_int_equal(s2->n, 2);
	assert_ptr_equal(nth(s2, 0), a);
	assert_ptr_equal(nth(s2, 1), b);
	assert_int_equal(iopf_region_set_add(s2, a, &s3), -EBUSY);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct iopf_region *c = mk(cases[i].iova, cases[i].len);
		int r = iopf_region_set_add(s2, c, &s3);

		assert_int_equal(r, cases[i].want);
		if (r < 0)
			assert_non_null(iopf_region_set_overlap(s2, c->iova, c->length));
		else
			assert_null(iopf_region_set_overlap(s2, c->iova, c->length));
		if (r == 0) {
			assert_int_equal(s3->n, 3);
			for (size_t k = 1; k < 3; k++)
				assert_true(nth(s3, k - 1)->iova < nth(s3, k)->iova);
			iopf_region_set_free(s3);
		}
		iopf_region_free(c);
	}
	/* del */
	assert_int_equal(iopf_region_set_del(s2, a, &s3), 0);
	assert_int_equal(s3->n, 1);
	assert_ptr_equal(nth(s3, 0), b);
	assert_int_equal(iopf_region_set_del(s3, a, &s1 /* unused */), -ENOENT);
	{
		struct iopf_region_set *empty = (void *)1;

		assert_int_equal(iopf_region_set_del(s3, b, &empty), 0);
		assert_null(empty);
	}
	iopf_region_set_free(s3);
	iopf_region_set_free(s2);
	iopf_region_free(a);
	iopf_region_free(b);
}

static void test_set_find(void **state)
{
	struct iopf_region *v[4] = {
		mk(0x10000, PG), mk(0x12000, 2 * PG), mk(0x100000, 16 * PG),
		mk(UINT64_MAX - 2 * PG + 1, PG), /* the highest region there can be */
	};
	struct iopf_region_set *s = NULL, *n;

	assert_null(iopf_region_set_find(NULL, 0x10000));
	/* inserted out of order */
	int order[] = {2, 0, 3, 1};
	for (int k = 0; k < 4; k++) {
		assert_int_equal(iopf_region_set_add(s, v[order[k]], &n), 0);
		iopf_region_set_free(s);
		s = n;
	}
	assert_null(iopf_region_set_find(s, 0));
	assert_null(iopf_region_set_find(s, 0xffff));
	assert_ptr_equal(iopf_region_set_find(s, 0x10000), v[0]);
	assert_ptr_equal(iopf_region_set_find(s, 0x10fff), v[0]);
	assert_null(iopf_region_set_find(s, 0x11000));
	assert_ptr_equal(iopf_region_set_find(s, 0x12000), v[1]);
	assert_ptr_equal(iopf_region_set_find(s, 0x13fff), v[1]);
	assert_null(iopf_region_set_find(s, 0x14000));
	assert_ptr_equal(iopf_region_set_find(s, 0x10ffff), v[2]);
	assert_null(iopf_region_set_find(s, 0x110000));
	assert_null(iopf_region_set_find(s, UINT64_MAX - 2 * PG));
	assert_ptr_equal(iopf_region_set_find(s, UINT64_MAX - 2 * PG + 1), v[3]);
	assert_ptr_equal(iopf_region_set_find(s, UINT64_MAX - PG), v[3]);
	assert_null(iopf_region_set_find(s, UINT64_MAX - PG + 1));
	assert_null(iopf_region_set_find(s, UINT64_MAX));
	iopf_region_set_free(s);
	for (int k = 0; k < 4; k++)
		iopf_region_free(v[k]);
}

/* The search against a linear scan, for every set size up to a few cache lines of keys. */
static void test_set_find_sizes(void **state)
{
	enum { MAX = 40 };
	struct iopf_region *v[MAX];
	struct iopf_region_set *s = NULL, *n;

	for (size_t k = 0; k < MAX; k++) {
		/* regions of 1..3 pages with gaps of 1..2 pages, added back to front */
		uint64_t iova = 0x100000 - (k + 1) * 5 * PG;

		v[k] = mk(iova, (1 + k % 3) * PG);
		assert_int_equal(iopf_region_set_add(s, v[k], &n), 0);
		iopf_region_set_free(s);
		s = n;
		for (uint64_t a = iova - PG; a < 0x100000 + PG; a += PG / 2) {
			struct iopf_region *want = NULL;

			for (size_t i = 0; i <= k; i++)
				if (a >= v[i]->iova && a <= iopf_region_last(v[i]))
					want = v[i];
			assert_ptr_equal(iopf_region_set_find(s, a), want);
		}
	}
	iopf_region_set_free(s);
	for (size_t k = 0; k < MAX; k++)
		iopf_region_free(v[k]);
}

/*
 * The tree against a reference (who owns each page), from a fixed seed: adds
 * that fit and adds that overlap, removals of members and of strangers,
 * growing to a few levels and shrinking back to nothing, so splits, merges,
 * shares and root changes all happen. Every few steps: the size, the order
 * the iterator gives, every region's edges and random addresses. Old sets
 * stay alive a while and must not change; they are freed out of order.
 */
#define RAND_PAGES  (1u << 15)
#define RAND_KEEP   8
#define RAND_ROUNDS 24000

static uint64_t rnd(uint64_t *x)
{
	/* xorshift64*: fixed seed, same run every time */
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * UINT64_C(2685821657736338717);
}

/* A bare region: the set reads only iova and length. */
static struct iopf_region *bare(uint64_t iova, uint64_t len)
{
	struct iopf_region *r = calloc(1, sizeof(*r));

	assert_non_null(r);
	r->iova = iova;
	r->length = len;
	return r;
}

/* Region @s against the reference: size, order, edges, a sample of addresses. */
static void check_against(const struct iopf_region_set *s, struct iopf_region **owner, size_t n,
			  uint64_t base, uint64_t *seed)
{
	struct iopf_region_set_iter it;
	struct iopf_region *r, *prev = NULL;
	size_t k = 0;

	assert_int_equal(iopf_region_set_size(s), n);
	for (r = iopf_region_set_first(s, &it); r; r = iopf_region_set_next(&it), k++) {
		uint64_t p = (r->iova - base) / PG;

		assert_ptr_equal(owner[p], r); /* a member, at its place */
		if (prev)
			assert_true(iopf_region_last(prev) < r->iova);
		assert_ptr_equal(iopf_region_set_find(s, r->iova), r);
		assert_ptr_equal(iopf_region_set_find(s, iopf_region_last(r)), r);
		assert_ptr_equal(iopf_region_set_find(s, r->iova - 1), p > 0 ? owner[p - 1] : NULL);
		p = (iopf_region_last(r) + 1 - base) / PG;
		assert_ptr_equal(iopf_region_set_find(s, iopf_region_last(r) + 1),
				 p < RAND_PAGES ? owner[p] : NULL);
		prev = r;
	}
	assert_int_equal(k, n);
	for (int i = 0; i < 64; i++) {
		uint64_t a = base + rnd(seed) % (RAND_PAGES * PG);

		assert_ptr_equal(iopf_region_set_find(s, a), owner[(a - base) / PG]);
	}
	assert_null(iopf_region_set_find(s, base - 1));
	assert_null(iopf_region_set_find(s, 0));
}

static void test_set_random(void **state)
{
	/* the pages run up to the last page below 2^64: the highest regions there can be */
	const uint64_t base = UINT64_MAX - (uint64_t)RAND_PAGES * PG - PG + 1;
	struct iopf_region **owner = calloc(RAND_PAGES, sizeof(*owner));
	struct iopf_region **live = calloc(RAND_PAGES, sizeof(*live));
	struct iopf_region_set *s = NULL, *n, *kept[RAND_KEEP] = {};
	size_t kept_n[RAND_KEEP] = {}, n_live = 0, peak = 0;
	struct iopf_region *kept_first[RAND_KEEP] = {};
	uint64_t seed = 0x9e3779b97f4a7c15;
	unsigned added = 0, refused = 0, removed = 0;

	assert_non_null(owner);
	assert_non_null(live);
	for (unsigned round = 0; round < RAND_ROUNDS || n_live > 0; round++) {
		/* grow for a third, churn for a third, then empty it */
		unsigned phase = round * 3 / RAND_ROUNDS, pct = phase == 0   ? 85
								: phase == 1 ? 50
									     : 5;
		bool add = n_live == 0 || rnd(&seed) % 100 < pct;

		if (add) {
			uint64_t len = 1 + rnd(&seed) % 4, p = rnd(&seed) % (RAND_PAGES - len + 1);
			struct iopf_region *r = bare(base + p * PG, len * PG);
			const struct iopf_region *hit =
				iopf_region_set_overlap(s, r->iova, r->length);
			bool busy = false;
			int rc;

			for (uint64_t q = p; q < p + len; q++)
				busy |= owner[q] != NULL;
			rc = iopf_region_set_add(s, r, &n);
			assert_int_equal(rc, busy ? -EBUSY : 0);
			if (busy) {
				/* the overlap named is a real one */
				assert_non_null(hit);
				assert_true(hit->iova <= iopf_region_last(r) &&
					    r->iova <= iopf_region_last(hit));
				free(r);
				refused++;
				continue;
			}
			assert_null(hit);
			for (uint64_t q = p; q < p + len; q++)
				owner[q] = r;
			live[n_live++] = r;
			added++;
		} else {
			size_t i = rnd(&seed) % n_live;
			struct iopf_region *r = live[i], *stranger = bare(r->iova, r->length);

			/* the same range, another region: not a member */
			assert_int_equal(iopf_region_set_del(s, stranger, &n), -ENOENT);
			free(stranger);
			assert_int_equal(iopf_region_set_del(s, r, &n), 0);
			for (uint64_t q = (r->iova - base) / PG;
			     q <= (iopf_region_last(r) - base) / PG; q++)
				owner[q] = NULL;
			live[i] = live[--n_live];
			/* freed later, with the sets that may still hold it */
			live[RAND_PAGES - 1 - removed] = r;
			removed++;
		}
		/* keep the old set a while: it must still be what it was */
		{
			unsigned k = round % RAND_KEEP;

			if (kept[k]) {
				assert_int_equal(iopf_region_set_size(kept[k]), kept_n[k]);
				assert_ptr_equal(nth(kept[k], 0), kept_first[k]);
				iopf_region_set_free(kept[k]);
			}
			kept[k] = s;
			kept_n[k] = iopf_region_set_size(s);
			kept_first[k] = nth(s, 0);
		}
		s = n;
		peak = n_live > peak ? n_live : peak;
		if (round % 97 == 0 || n_live < 40)
			check_against(s, owner, n_live, base, &seed);
	}
	check_against(s, owner, n_live, base, &seed);
	/* enough to build a few levels, and back to empty */
	assert_true(peak > 3000);
	assert_int_equal(n_live, 0);
	assert_null(s);
	assert_true(refused > 100);
	for (unsigned k = 0; k < RAND_KEEP; k++)
		iopf_region_set_free(kept[(k * 3) % RAND_KEEP]);
	for (unsigned i = 0; i < removed; i++)
		free(live[RAND_PAGES - 1 - i]);
	assert_int_equal(added, removed);
	free(live);
	free(owner);
}

/* Sequential adds and removes from either end: the shapes a tenant's loop makes. */
static void test_set_sequential(void **state)
{
	enum { N = 5000 };
	struct iopf_region **v = calloc(N, sizeof(*v));
	struct iopf_region_set *s = NULL, *n;
	struct iopf_region_set_iter it;
	size_t k = 0;

	for (size_t i = 0; i < N; i++) {
		v[i] = bare((2 * i + 1) * PG, PG);
		assert_int_equal(iopf_region_set_add(s, v[i], &n), 0);
		iopf_region_set_free(s);
		s = n;
	}
	for (struct iopf_region *r = iopf_region_set_first(s, &it); r;
	     r = iopf_region_set_next(&it))
		assert_ptr_equal(r, v[k++]);
	assert_int_equal(k, N);
	assert_null(iopf_region_set_find(s, 0));
	assert_null(iopf_region_set_find(s, 2 * N * PG + PG));
	for (size_t i = 0; i < N; i++) {
		assert_ptr_equal(iopf_region_set_find(s, (2 * i + 1) * PG + 17), v[i]);
		assert_null(iopf_region_set_find(s, (2 * i + 2) * PG));
	}
	/* from the front, then from the back */
	for (size_t i = 0; i < N / 2; i++) {
		assert_int_equal(iopf_region_set_del(s, v[i], &n), 0);
		iopf_region_set_free(s);
		s = n;
		assert_ptr_equal(nth(s, 0), v[i + 1]);
	}
	for (size_t i = N; i-- > N / 2;) {
		assert_int_equal(iopf_region_set_del(s, v[i], &n), 0);
		iopf_region_set_free(s);
		s = n;
		if (s)
			assert_ptr_equal(iopf_region_set_find(s, (2 * i - 1) * PG), v[i - 1]);
	}
	assert_null(s);
	for (size_t i = 0; i < N; i++)
		free(v[i]);
	free(v);
}

static void test_bitmaps(void **state)
{
	struct iopf_region *r = mk(0, 200 * PG);
	uint64_t f, n;

	assert_false(iopf_region_next_extent(r, 0, &f, &n));
	assert_true(iopf_region_next_hole(r, 0, 200, &f, &n));
	assert_int_equal(f, 0);
	assert_int_equal(n, 200);

	/* two adjacent extents across a word boundary, and one more after a gap */
	iopf_region_track(r, 60, 4);
	iopf_region_track(r, 64, 70);
	iopf_region_track(r, 140, 1);
	for (uint64_t p = 0; p < 200; p++)
		assert_int_equal(iopf_region_page_mapped(r, p), (p >= 60 && p < 134) || p == 140);

	assert_true(iopf_region_next_extent(r, 0, &f, &n));
	assert_int_equal(f, 60);
	assert_int_equal(n, 4);
	assert_true(iopf_region_next_extent(r, f + n, &f, &n));
	assert_int_equal(f, 64);
	assert_int_equal(n, 70);
	assert_true(iopf_region_next_extent(r, f + n, &f, &n));
	assert_int_equal(f, 140);
	assert_int_equal(n, 1);
	assert_false(iopf_region_next_extent(r, f + n, &f, &n));

	/* holes inside a window */
	assert_true(iopf_region_next_hole(r, 50, 150, &f, &n));
	assert_int_equal(f, 50);
	assert_int_equal(n, 10);
	assert_true(iopf_region_next_hole(r, 60, 150, &f, &n));
	assert_int_equal(f, 134);
	assert_int_equal(n, 6);
	assert_true(iopf_region_next_hole(r, 141, 150, &f, &n));
	assert_int_equal(f, 141);
	assert_int_equal(n, 9);
	assert_false(iopf_region_next_hole(r, 60, 134, &f, &n));
	assert_true(iopf_region_next_hole(r, 199, 1000, &f, &n)); /* clipped to the region */
	assert_int_equal(f, 199);
	assert_int_equal(n, 1);

	/* forgetting the middle extent leaves the others exact */
	iopf_region_untrack(r, 64, 70);
	assert_true(iopf_region_next_extent(r, 0, &f, &n));
	assert_int_equal(n, 4);
	assert_true(iopf_region_next_extent(r, f + n, &f, &n));
	assert_int_equal(f, 140);
	assert_false(iopf_region_page_mapped(r, 64));
	assert_true(iopf_region_page_mapped(r, 63));
	iopf_region_free(r);
}

static void test_uptr(void **state)
{
	struct iopf_region *r;
	void *p1, *p2;
	const char msg[] = "iopfd";

	assert_int_equal(pwrite(memfd, msg, sizeof(msg), 3 * PG + 10), (ssize_t)sizeof(msg));
	assert_int_equal(iopf_region_new(TENANT, memfd, 2 * PG, 0x40000, 4 * PG, R, &r), 0);
	assert_null(r->uptr);
	assert_int_equal(iopf_region_get_uptr(r, &p1), 0);
	assert_int_equal(iopf_region_get_uptr(r, &p2), 0);
	assert_ptr_equal(p1, p2); /* mapped once */
	assert_memory_equal((char *)p1 + PG + 10, msg, sizeof(msg));
	iopf_region_free(r);
}

static int group_setup(void **state)
{
	memfd = test_memfd(1024 * PG);
	return 0;
}

static int group_teardown(void **state)
{
	close(memfd);
	return 0;
}

TEST_MAIN_GROUP(group_setup, group_teardown, cmocka_unit_test(test_new_validation),
		cmocka_unit_test(test_prot), cmocka_unit_test(test_files_shared),
		cmocka_unit_test(test_files_many), cmocka_unit_test(test_files_threads),
		cmocka_unit_test(test_set_overlap), cmocka_unit_test(test_set_find),
		cmocka_unit_test(test_set_find_sizes), cmocka_unit_test(test_set_random),
		cmocka_unit_test(test_set_sequential), cmocka_unit_test(test_bitmaps),
		cmocka_unit_test(test_uptr));
