/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Response batching against the fake kernel: short writes, EINVAL, hard errors. */
#include "dp-test.h"

#include "fake-backend.h"
#include "iopf/iopf.h"
#include "response.h"
#include "time-util.h"
#include "util.h"

struct fx {
	struct fake *f;
	struct iopf_backend *b;
	struct iopf_response_batch rb;
	struct iopf_counters c[2];
	uint32_t cookies[16];
};

/* @n groups read from the fake, so their cookies are outstanding. */
static void deliver(struct fx *x, unsigned n)
{
	struct iommu_hwpt_pgfault recs[16];

	for (unsigned i = 0; i < n; i++)
		fake_fault(x->f, 3, IOPF_PASID_NONE, 0x1000, 1);
	assert_int_equal(x->b->ops->fault_read(x->b, recs, sizeof(recs)),
			 (ssize_t)(n * sizeof(recs[0])));
	for (unsigned i = 0; i < n; i++)
		x->cookies[i] = recs[i].cookie;
}

static void queue_all(struct fx *x, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		iopf_response_add(&x->rb, x->cookies[i], i % 2, &x->c[i % 2]);
}

static int setup(void **state)
{
	struct fx *x = calloc(1, sizeof(*x));

	x->f = fake_new(false);
	x->b = fake_backend(x->f);
	assert_int_equal(iopf_response_batch_init(&x->rb, 16), 0);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;

	iopf_response_batch_fini(&x->rb);
	iopf_backend_close(x->b);
	fake_free(x->f);
	free(x);
	return 0;
}

/* The answer log must be exactly these cookie indexes, in order. */
static void expect_answers(struct fx *x, const unsigned *idx, size_t n)
{
	struct fake_answer *a;

	assert_int_equal(fake_answers(x->f, &a), n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(a[i].cookie, x->cookies[idx[i]]);
		assert_int_equal(a[i].code, idx[i] % 2);
	}
	free(a);
}

static void test_one_write(void **state)
{
	struct fx *x = *state;
	const unsigned all[] = {0, 1, 2, 3, 4, 5};

	deliver(x, 6);
	queue_all(x, 6);
	assert_int_equal(iopf_response_flush(&x->rb, x->b), 6);
	assert_int_equal(x->rb.n, 0);
	assert_int_equal(fake_writes(x->f), 1);
	expect_answers(x, all, 6);
	assert_true(fake_all_answered_once(x->f));
	/* nothing queued: no write */
	assert_int_equal(iopf_response_flush(&x->rb, x->b), 0);
	assert_int_equal(fake_writes(x->f), 1);
}

/*
 * The kernel answered some cookies itself (detach) and refuses their entries: each
 * refusal ends a write, the entry is counted stale and skipped, the rest resubmitted.
 */
static void test_refused_entries(void **state)
{
	static const struct {
		const char *what;
		unsigned n;		  /* groups delivered and queued */
		unsigned auto_mask;	  /* bit i: the kernel answered group i itself */
		int accepted;		  /* what the flush returns */
		uint64_t writes;	  /* write calls it took */
		unsigned want[6], n_want; /* the answer log, as group indexes */
		uint64_t stale[2];	  /* per counter: even groups, odd groups */
	} cases[] = {
		/* [0..5] stops at 2; [3..5] stops at 4; [5] */
		{"short writes", 6, 1u << 2 | 1u << 4, 4, 3, {0, 1, 3, 5}, 4, {2, 0}},
		/* EINVAL for [0..3], EINVAL for [1..3], then [2..3] */
		{"first entry refused", 4, 1u << 0 | 1u << 1, 2, 3, {2, 3}, 2, {1, 1}},
		{"all stale", 3, 7, 0, 3, {}, 0, {2, 1}},
		/* nothing left after the refused entry */
		{"last entry refused", 4, 1u << 3, 3, 1, {0, 1, 2}, 3, {0, 1}},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct fx *x;

		print_message("  %s\n", cases[i].what);
		setup((void **)&x);
		deliver(x, cases[i].n);
		for (unsigned k = 0; k < cases[i].n; k++)
			if (cases[i].auto_mask & (1u << k))
				assert_true(fake_auto_answer(x->f, x->cookies[k]));
		queue_all(x, cases[i].n);
		assert_int_equal(iopf_response_flush(&x->rb, x->b), cases[i].accepted);
		assert_int_equal(fake_writes(x->f), cases[i].writes);
		expect_answers(x, cases[i].want, cases[i].n_want);
		assert_int_equal(x->c[0].stale, cases[i].stale[0]);
		assert_int_equal(x->c[1].stale, cases[i].stale[1]);
		assert_true(fake_all_answered_once(x->f));
		assert_int_equal(fake_outstanding(x->f), 0);
		teardown((void **)&x);
	}
}

/*
 * A hard error keeps what was not written, for a later flush; an entry
 * auto-answered meanwhile is refused then (stale), never retried again.
 */
static void test_hard_error_keeps(void **state)
{
	struct fx *x = *state;
	/* cookies are reused: the second round's are the first round's numbers */
	const unsigned want[] = {0, 2}, more[] = {0, 2, 0, 2, 4, 5};

	deliver(x, 3);
	queue_all(x, 3);
	fake_fail_next_write(x->f, EIO);
	assert_int_equal(iopf_response_flush(&x->rb, x->b), -EIO);
	assert_int_equal(x->rb.n, 3);
	expect_answers(x, NULL, 0);
	assert_int_equal(x->c[0].stale + x->c[1].stale, 0);
	/* the kernel answers one itself (detach); the retry skips it as stale */
	assert_true(fake_auto_answer(x->f, x->cookies[1]));
	fake_fail_writes(x->f, EIO, 2);
	assert_int_equal(iopf_response_flush(&x->rb, x->b), -EIO);
	assert_int_equal(iopf_response_flush(&x->rb, x->b), -EIO);
	assert_int_equal(x->rb.n, 3);
	assert_int_equal(iopf_response_flush(&x->rb, x->b), 2);
	assert_int_equal(x->rb.n, 0);
	assert_int_equal(x->c[1].stale, 1);
	expect_answers(x, want, 2);
	assert_int_equal(fake_outstanding(x->f), 0);

	/* kept entries stay indexed: a duplicate queued after the failure still drops */
	deliver(x, 6);
	queue_all(x, 6);
	assert_true(fake_auto_answer(x->f, x->cookies[3]));
	assert_true(fake_auto_answer(x->f, x->cookies[1]));
	fake_fail_writes(x->f, EIO, 1);
	assert_int_equal(iopf_response_flush(&x->rb, x->b), -EIO);
	assert_int_equal(x->rb.n, 6);
	iopf_response_add(&x->rb, x->cookies[5], 1, &x->c[1]); /* the old entry drops */
	assert_int_equal(x->c[1].stale, 2);
	/* 0 taken, 1 refused, 2 taken, 3 refused, 4 and the new 5 taken */
	assert_int_equal(iopf_response_flush(&x->rb, x->b), 4);
	assert_int_equal(x->c[1].stale, 4);
	expect_answers(x, more, 6);
	assert_int_equal(fake_outstanding(x->f), 0);
}

/* EINTR is retried at once, with nothing read in between; discard forgets everything. */
static void test_eintr_and_discard(void **state)
{
	struct fx *x = *state;
	const unsigned want[] = {0, 1, 2};

	deliver(x, 3);
	queue_all(x, 3);
	fake_fail_next_write(x->f, EINTR);
	assert_int_equal(iopf_response_flush(&x->rb, x->b), 3);
	expect_answers(x, want, 3);

	deliver(x, 2);
	queue_all(x, 2);
	assert_int_equal(iopf_response_discard(&x->rb), 2);
	assert_int_equal(x->rb.n, 0);
	/* the index forgot them: the same cookies queue again without a stale count */
	queue_all(x, 2);
	assert_int_equal(x->c[0].stale + x->c[1].stale, 0);
	assert_int_equal(iopf_response_flush(&x->rb, x->b), 2);
}

static void test_reserve_keeps_entries(void **state)
{
	struct fx *x = *state;
	const unsigned want[] = {0, 1};

	deliver(x, 2);
	queue_all(x, 2);
	assert_int_equal(iopf_response_batch_reserve(&x->rb, 1000), 0);
	assert_int_equal(x->rb.cap, 1000);
	assert_int_equal(x->rb.n, 2);
	assert_int_equal(iopf_response_flush(&x->rb, x->b), 2);
	expect_answers(x, want, 2);
}

/*
 * Between two reads of one turn the kernel auto-answered a group and handed
 * its cookie to a group read next: only the later response may be written.
 */
static void test_reissued_cookie_in_batch(void **state)
{
	struct fx *x = *state;
	struct iommu_hwpt_pgfault rec;
	struct fake_answer *a;
	uint32_t c;

	deliver(x, 2); /* cookies 1, 2 */
	iopf_response_add(&x->rb, x->cookies[0], IOMMUFD_PAGE_RESP_SUCCESS, &x->c[0]);
	iopf_response_add(&x->rb, x->cookies[1], IOMMUFD_PAGE_RESP_SUCCESS, &x->c[0]);
	assert_true(fake_auto_answer(x->f, x->cookies[0]));
	fake_fault(x->f, 3, IOPF_PASID_NONE, 0x2000, 1);
	assert_int_equal(x->b->ops->fault_read(x->b, &rec, sizeof(rec)), (ssize_t)sizeof(rec));
	c = rec.cookie;
	assert_int_equal(c, x->cookies[0]); /* lowest free: re-issued */
	iopf_response_add(&x->rb, c, IOMMUFD_PAGE_RESP_INVALID, &x->c[1]);
	assert_int_equal(x->c[0].stale, 1); /* dropped at once, never written */

	assert_int_equal(iopf_response_flush(&x->rb, x->b), 2);
	assert_int_equal(fake_writes(x->f), 1);
	assert_int_equal(fake_answers(x->f, &a), 2);
	assert_int_equal(a[0].cookie, x->cookies[1]);
	assert_int_equal(a[1].cookie, c);
	assert_int_equal(a[1].code, IOMMUFD_PAGE_RESP_INVALID); /* the new group's answer */
	assert_int_equal(a[1].serial, 3);
	free(a);
	assert_true(fake_all_answered_once(x->f));

	/* the index forgets a batch once flushed: the same cookie is fine next time */
	deliver(x, 1);
	iopf_response_add(&x->rb, x->cookies[0], IOMMUFD_PAGE_RESP_SUCCESS, &x->c[0]);
	assert_int_equal(iopf_response_flush(&x->rb, x->b), 1);
	assert_int_equal(x->c[0].stale, 1);
}

/* Growing the batch keeps the cookie index right for entries already queued. */
static void test_reserve_reindexes(void **state)
{
	struct fx *x = *state;

	deliver(x, 3);
	queue_all(x, 3);
	assert_int_equal(iopf_response_batch_reserve(&x->rb, 4096), 0);
	iopf_response_add(&x->rb, x->cookies[1], IOMMUFD_PAGE_RESP_INVALID, &x->c[0]);
	assert_int_equal(x->c[1].stale, 1);
	assert_int_equal(iopf_response_flush(&x->rb, x->b), 3);
	assert_true(fake_all_answered_once(x->f));
}

/*
 * Cookies past the bitmap (more groups outstanding than the batch could hold,
 * e.g. another reader of the fd) take the hash: a re-issue is caught there too.
 */
static void test_reissued_big_cookie(void **state)
{
	struct fx *x = *state;
	enum { N = 1100 };
	struct iommu_hwpt_pgfault *recs = calloc(N, sizeof(*recs)), rec;
	struct fake_answer *a;
	uint32_t big1, big2, c;

	for (unsigned i = 0; i < N; i++)
		fake_fault(x->f, 3, IOPF_PASID_NONE, 0x1000, 1);
	assert_int_equal(x->b->ops->fault_read(x->b, recs, N * sizeof(*recs)),
			 (ssize_t)(N * sizeof(*recs)));
	big1 = recs[N - 60].cookie;
	big2 = recs[N - 50].cookie;
	assert_true(big1 >= x->rb.seen_bits && big2 >= x->rb.seen_bits);
	iopf_response_add(&x->rb, big1, IOMMUFD_PAGE_RESP_SUCCESS, &x->c[0]);
	iopf_response_add(&x->rb, recs[0].cookie, IOMMUFD_PAGE_RESP_SUCCESS, &x->c[0]);
	iopf_response_add(&x->rb, big2, IOMMUFD_PAGE_RESP_SUCCESS, &x->c[0]);
	assert_true(fake_auto_answer(x->f, big1));
	fake_fault(x->f, 3, IOPF_PASID_NONE, 0x2000, 1);
	assert_int_equal(x->b->ops->fault_read(x->b, &rec, sizeof(rec)), (ssize_t)sizeof(rec));
	c = rec.cookie;
	assert_int_equal(c, big1); /* the lowest free one */
	iopf_response_add(&x->rb, c, IOMMUFD_PAGE_RESP_INVALID, &x->c[1]);
	assert_int_equal(x->c[0].stale, 1);
	assert_int_equal(iopf_response_flush(&x->rb, x->b), 3);
	assert_int_equal(fake_answers(x->f, &a), 3);
	assert_int_equal(a[0].cookie, recs[0].cookie);
	assert_int_equal(a[1].cookie, big2);
	assert_int_equal(a[2].cookie, c);
	assert_int_equal(a[2].code, IOMMUFD_PAGE_RESP_INVALID);
	free(a);
	/* forgotten after the flush, big or small */
	iopf_response_add(&x->rb, recs[1].cookie, IOMMUFD_PAGE_RESP_SUCCESS, &x->c[0]);
	iopf_response_add(&x->rb, recs[N - 1].cookie, IOMMUFD_PAGE_RESP_SUCCESS, &x->c[0]);
	assert_int_equal(iopf_response_flush(&x->rb, x->b), 2);
	assert_int_equal(x->c[0].stale + x->c[1].stale, 1);
	free(recs);
}

/* Against a model: random batches of cookies, some repeated, small and big. */
static void test_dedupe_model(void **state)
{
	struct fx *x = *state;
	uint64_t rng = 7;

	for (unsigned round = 0; round < 2000; round++) {
		uint32_t cookies[16], last_of[16];
		unsigned n = 1 + round % 16, live = 0;
		uint64_t stale0 = x->c[0].stale;

		for (unsigned i = 0; i < n; i++) {
			rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
			/* a few values, so repeats are common; some past the bitmap */
			cookies[i] = (uint32_t)(rng >> 60) +
				     ((rng >> 40) & 1 ? 1 : (uint32_t)x->rb.seen_bits);
			iopf_response_add(&x->rb, cookies[i], 0, &x->c[0]);
		}
		/* the model: only the last entry of each cookie survives */
		for (unsigned i = 0; i < n; i++) {
			bool later = false;

			for (unsigned k = i + 1; k < n; k++)
				later |= cookies[k] == cookies[i];
			if (!later)
				last_of[live++] = cookies[i];
		}
		assert_int_equal(x->c[0].stale - stale0, n - live);
		/* what would be written, without a kernel: the surviving entries in order */
		{
			unsigned k = 0;

			for (size_t i = 0; i < x->rb.n; i++)
				if (x->rb.resp[i].code != UINT32_MAX)
					assert_int_equal(x->rb.resp[i].cookie, last_of[k++]);
			assert_int_equal(k, live);
		}
		fake_fail_next_write(x->f, EIO); /* nothing is outstanding: discard the batch */
		assert_int_equal(iopf_response_flush(&x->rb, x->b), -EIO);
		assert_int_equal(iopf_response_discard(&x->rb), live);
	}
}

/*
 * Latency is recorded once an entry is accepted, in its own histogram, from its
 * own read time: entries of several reads interleave across two histograms,
 * one entry has none, and one is refused (stale: no latency). Read times lie
 * seconds back so the buckets hold whatever the scheduler does meanwhile.
 */
static void test_latency_per_read(void **state)
{
	struct fx *x = *state;
	struct iopf_histogram h[2] = {};
	const uint64_t s = UINT64_C(1000000000), now = mono_ns();
	const uint64_t t_a = now - 5 * s - s / 2, t_b = now - 2 * s - s / 2;
	const unsigned b5 = iopf_histogram_bucket_of(6 * s), b2 = iopf_histogram_bucket_of(3 * s);

	assert_true(now > 6 * s);
	deliver(x, 6);
	assert_true(fake_auto_answer(x->f, x->cookies[3]));
	iopf_response_add_timed(&x->rb, x->cookies[0], 0, &x->c[0], &h[0], t_a);
	iopf_response_add_timed(&x->rb, x->cookies[1], 0, &x->c[0], &h[1], t_a);
	iopf_response_add_timed(&x->rb, x->cookies[2], 0, &x->c[0], &h[0], t_b);
	iopf_response_add_timed(&x->rb, x->cookies[3], 0, &x->c[1], &h[1], t_b);
	iopf_response_add_timed(&x->rb, x->cookies[4], 0, &x->c[0], NULL, t_b);
	iopf_response_add_timed(&x->rb, x->cookies[5], 0, &x->c[0], &h[1], t_a);
	assert_int_equal(iopf_response_flush(&x->rb, x->b), 5);
	assert_int_equal(x->c[1].stale, 1);

	assert_int_equal(h[0].count, 2);
	assert_int_equal(h[0].bucket[b5], 1);
	assert_int_equal(h[0].bucket[b2], 1);
	assert_int_equal(h[1].count, 2); /* cookies 1 and 5; 3 was refused */
	assert_int_equal(h[1].bucket[b5], 2);
	assert_true(h[1].sum_ns >= 2 * (now - t_a) && h[1].sum_ns < 2 * (now - t_a) + s);
	assert_true(h[0].sum_ns >= (now - t_a) + (now - t_b));
}

/*
 * Entries of one read and domain share one run (counters, histogram, read
 * time): a run cut by a write that failed half-way, a run emptied by a
 * re-issued cookie and a run rehomed to other counters all keep counting
 * on the right counters and histograms.
 */
static void test_runs(void **state)
{
	struct fx *x = *state;
	struct iopf_histogram h[2] = {};
	const uint64_t t = mono_ns();
	const unsigned want[] = {0, 2, 4};

	deliver(x, 6);
	/* run 0: groups 0-2 on c[0]; run 1: group 3 on c[1]; run 2: groups 4-5 on c[0] */
	for (unsigned i = 0; i < 6; i++)
		iopf_response_add_timed(&x->rb, x->cookies[i], i % 2, &x->c[i == 3], &h[i == 3],
					i < 4 ? t : t + 1);
	assert_int_equal(x->rb.n_runs, 3);
	/* 0 taken, 1 refused (stale on c[0]), then the write of 2-5 fails: run 0 is cut */
	assert_true(fake_auto_answer(x->f, x->cookies[1]));
	fake_fail_writes_after(x->f, 1, EIO, 1);
	assert_int_equal(iopf_response_flush(&x->rb, x->b), -EIO);
	assert_int_equal(x->rb.n, 4);
	assert_int_equal(x->rb.n_runs, 3);
	assert_int_equal(x->c[0].stale, 1);
	assert_int_equal(h[0].count, 1);
	/* group 3 auto-answered and its cookie queued again, as after a re-issue: run 1 empties */
	assert_true(fake_auto_answer(x->f, x->cookies[3]));
	iopf_response_add(&x->rb, x->cookies[3], 1, &x->c[0]);
	assert_int_equal(x->c[1].stale, 1);
	/* c[0]'s domain goes: its runs (0, 2 and the new one) count on c[1], with no latency */
	iopf_response_rehome(&x->rb, &x->c[0], &x->c[1]);
	/* 2 and 4 taken, 5 refused (stale on c[1] now), and the re-queued 3 too */
	assert_true(fake_auto_answer(x->f, x->cookies[5]));
	assert_int_equal(iopf_response_flush(&x->rb, x->b), 2);
	expect_answers(x, want, 3);
	assert_int_equal(x->rb.n, 0);
	assert_int_equal(x->rb.n_runs, 0);
	assert_int_equal(x->c[0].stale, 1);
	assert_int_equal(x->c[1].stale, 3);
	assert_int_equal(h[0].count, 1); /* the rehomed ones record nothing */
	assert_int_equal(h[1].count, 0);
}

TEST_MAIN(TEST(test_one_write), cmocka_unit_test(test_refused_entries), TEST(test_hard_error_keeps),
	  TEST(test_eintr_and_discard), TEST(test_reserve_keeps_entries),
	  TEST(test_reissued_cookie_in_batch), TEST(test_reserve_reindexes),
	  TEST(test_reissued_big_cookie), TEST(test_dedupe_model), TEST(test_latency_per_read),
	  TEST(test_runs));
