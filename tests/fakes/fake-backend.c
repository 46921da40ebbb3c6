/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fake-backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "iopf/iopf.h"

#define MAX_COOKIE    4096
#define FIRST_SERIALS 65536

struct unit {
	struct iommu_hwpt_pgfault *recs;
	size_t n;
	bool raw;
};

struct fake {
	pthread_mutex_t lock;
	int efd;
	bool signalled;
	bool map_needs_uptr;
	bool closed;
	bool zero_if_too_small;
	pthread_cond_t unblocked; /* fake_block_reads() */
	bool block_reads;
	unsigned blocked; /* reads waiting in fake_read() now */
	struct iopf_backend_ops ops;

	struct unit *q;
	size_t q_head, q_n, q_cap;

	uint64_t cookie_serial[MAX_COOKIE + 1]; /* outstanding cookie -> serial, 0 = free */
	uint64_t next_serial;
	uint8_t *answered; /* per serial: times answered; n_serials entries */
	size_t n_serials;
	uint64_t delivered, reads, writes, unmaps, bad_unmaps;
	uint64_t reads_unanswered;	  /* reads while a delivered group was unanswered */
	int fail_write, fail_writes_left; /* left: -1 forever */
	unsigned fail_writes_skip;	  /* writes that work before those fail */
	int fail_reads;

	struct fake_answer *log;
	size_t n_log, cap_log;
	uint64_t *read_seqs; /* fake_read_seqs() */
	size_t n_read_seqs, cap_read_seqs;
	struct fake_map_call *calls;
	size_t n_calls, cap_calls;
	struct fake_mapping *maps;
	size_t n_maps, cap_maps;

	uint64_t fail_iova;
	int fail_err, fail_count;
};

#define GROW(arr, n, cap)                                                                          \
	do {                                                                                       \
		if ((n) == (cap)) {                                                                \
			(cap) = (cap) ? (cap)*2 : 16;                                              \
			(arr) = realloc((arr), (cap) * sizeof(*(arr)));                            \
			if (!(arr))                                                                \
				abort();                                                           \
		}                                                                                  \
	} while (0)

/* The next group's serial; the answer counts grow with them (long churn runs). */
static uint64_t new_serial(struct fake *f)
{
	uint64_t serial = ++f->next_serial;

	if (serial >= f->n_serials) {
		f->answered = realloc(f->answered, 2 * f->n_serials);
		if (!f->answered)
			abort();
		memset(f->answered + f->n_serials, 0, f->n_serials);
		f->n_serials *= 2;
	}
	return serial;
}

/* Keep the eventfd readable exactly while undelivered groups exist. Locked. */
static void update_level(struct fake *f)
{
	uint64_t v = 1;
	bool want = f->q_n > f->q_head;

	if (want && !f->signalled)
		(void)!write(f->efd, &v, sizeof(v));
	else if (!want && f->signalled)
		(void)!read(f->efd, &v, sizeof(v));
	f->signalled = want;
}

/* Delivering reads of every fake, numbered in one sequence (fake_read_seqs()). */
static uint64_t read_seq;

static uint32_t alloc_cookie(struct fake *f, uint64_t serial)
{
	for (uint32_t c = 1; c <= MAX_COOKIE; c++)
		if (!f->cookie_serial[c]) {
			f->cookie_serial[c] = serial;
			return c;
		}
	abort();
}

static ssize_t fake_read(struct iopf_backend *b, void *buf, size_t len)
{
	struct fake *f = b->priv;
	const size_t rec = sizeof(struct iommu_hwpt_pgfault);
	size_t done = 0;
	ssize_t r;

	if (len % rec)
		return -ESPIPE;
	pthread_mutex_lock(&f->lock);
	while (f->block_reads) {
		f->blocked++;
		pthread_cond_wait(&f->unblocked, &f->lock);
		f->blocked--;
	}
	f->reads++;
	for (uint32_t c = 1; c <= MAX_COOKIE; c++)
		if (f->cookie_serial[c]) {
			f->reads_unanswered++;
			break;
		}
	if (f->fail_reads) {
		r = -f->fail_reads;
		pthread_mutex_unlock(&f->lock);
		return r;
	}
	while (f->q_head < f->q_n) {
		struct unit *u = &f->q[f->q_head];

		if (u->n * rec > len - done)
			break;
		if (u->raw) {
			/* malformed input: keep cookies, each distinct one becomes outstanding */
			for (size_t i = 0; i < u->n; i++) {
				uint32_t c = u->recs[i].cookie;

				if (c && c <= MAX_COOKIE && !f->cookie_serial[c])
					f->cookie_serial[c] = new_serial(f);
			}
		} else {
			uint32_t c = alloc_cookie(f, new_serial(f));

			for (size_t i = 0; i < u->n; i++)
				u->recs[i].cookie = c;
		}
		memcpy((char *)buf + done, u->recs, u->n * rec);
		done += u->n * rec;
		free(u->recs);
		f->q_head++;
		f->delivered++;
	}
	if (done == 0 && f->q_head < f->q_n)
		r = f->zero_if_too_small ? 0 : -EINVAL;
	else
		r = (ssize_t)done;
	if (done > 0) {
		GROW(f->read_seqs, f->n_read_seqs, f->cap_read_seqs);
		f->read_seqs[f->n_read_seqs++] = __atomic_add_fetch(&read_seq, 1, __ATOMIC_RELAXED);
	}
	update_level(f);
	pthread_mutex_unlock(&f->lock);
	return r;
}

static ssize_t fake_write(struct iopf_backend *b, const void *buf, size_t len)
{
	struct fake *f = b->priv;
	const struct iommu_hwpt_page_response *resp = buf;
	size_t n = len / sizeof(*resp), i;
	ssize_t r;

	if (len % sizeof(*resp))
		return -ESPIPE;
	pthread_mutex_lock(&f->lock);
	f->writes++;
	if (f->fail_writes_left != 0 && f->fail_writes_skip > 0)
		f->fail_writes_skip--;
	else if (f->fail_writes_left != 0) {
		r = -f->fail_write;
		if (f->fail_writes_left > 0)
			f->fail_writes_left--;
		pthread_mutex_unlock(&f->lock);
		return r;
	}
	for (i = 0; i < n; i++) {
		uint32_t c = resp[i].cookie;
		uint64_t serial;

		if (resp[i].code > IOMMUFD_PAGE_RESP_INVALID)
			break;
		if (c == 0 || c > MAX_COOKIE || !f->cookie_serial[c])
			break;
		serial = f->cookie_serial[c];
		f->cookie_serial[c] = 0;
		f->answered[serial]++;
		GROW(f->log, f->n_log, f->cap_log);
		f->log[f->n_log++] = (struct fake_answer){serial, c, resp[i].code};
	}
	r = i == 0 && n > 0 ? -EINVAL : (ssize_t)(i * sizeof(*resp));
	pthread_mutex_unlock(&f->lock);
	return r;
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static int fake_map(struct iopf_backend *b, const struct iopf_map_req *req)
{
	struct fake *f = b->priv;
	int r = 0;

	pthread_mutex_lock(&f->lock);
	if (req->length == 0 || req->length % IOPF_PAGE_SIZE || req->iova % IOPF_PAGE_SIZE ||
	    (f->map_needs_uptr && !req->uptr))
		r = -EINVAL;
	else if (f->fail_count != 0 && overlaps(req->iova, req->length, f->fail_iova, 1)) {
		r = -f->fail_err;
		if (f->fail_count > 0)
			f->fail_count--;
	} else {
		for (size_t i = 0; i < f->n_maps; i++)
			if (overlaps(req->iova, req->length, f->maps[i].iova, f->maps[i].length))
				r = -EEXIST;
	}
	if (r == 0) {
		GROW(f->maps, f->n_maps, f->cap_maps);
		f->maps[f->n_maps++] = (struct fake_mapping){req->iova, req->length, false};
	}
	GROW(f->calls, f->n_calls, f->cap_calls);
	f->calls[f->n_calls++] = (struct fake_map_call){
		req->iova, req->length, req->prot, req->offset, req->uptr != NULL, r,
	};
	pthread_mutex_unlock(&f->lock);
	return r;
}

static int fake_unmap(struct iopf_backend *b, uint64_t iova, uint64_t length)
{
	struct fake *f = b->priv;
	int r = -ENOENT;

	pthread_mutex_lock(&f->lock);
	f->unmaps++;
	for (size_t i = 0; i < f->n_maps; i++)
		if (!f->maps[i].foreign && f->maps[i].iova == iova && f->maps[i].length == length) {
			f->maps[i] = f->maps[--f->n_maps];
			r = 0;
			break;
		}
	if (r < 0)
		f->bad_unmaps++;
	pthread_mutex_unlock(&f->lock);
	return r;
}

static void fake_destroy(struct iopf_backend *b)
{
	struct fake *f = b->priv;

	pthread_mutex_lock(&f->lock);
	f->closed = true;
	pthread_mutex_unlock(&f->lock);
}

struct fake *fake_new(bool map_needs_uptr)
{
	struct fake *f = calloc(1, sizeof(*f));

	if (!f)
		abort();
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->unblocked, NULL);
	f->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	f->answered = calloc(FIRST_SERIALS, 1);
	f->n_serials = FIRST_SERIALS;
	if (f->efd < 0 || !f->answered)
		abort();
	f->map_needs_uptr = map_needs_uptr;
	f->ops = (struct iopf_backend_ops){
		.name = "fake",
		.fault_read = fake_read,
		.fault_write = fake_write,
		.map = fake_map,
		.unmap = fake_unmap,
		.destroy = fake_destroy,
		.map_needs_uptr = map_needs_uptr,
	};
	return f;
}

void fake_free(struct fake *f)
{
	if (!f)
		return;
	for (size_t i = f->q_head; i < f->q_n; i++)
		free(f->q[i].recs);
	free(f->q);
	free(f->answered);
	free(f->log);
	free(f->calls);
	free(f->read_seqs);
	free(f->maps);
	close(f->efd);
	pthread_cond_destroy(&f->unblocked);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

struct iopf_backend *fake_backend(struct fake *f)
{
	struct iopf_backend *b = calloc(1, sizeof(*b));

	if (!b)
		abort();
	*b = (struct iopf_backend){
		.ops = &f->ops,
		.fault_fd = -EBADF, /* nothing for iopf_backend_close() to close */
		.iommufd = -EBADF,
		.ioas_id = 7,
		.poll_fd = f->efd,
		.priv = f,
	};
	return b;
}

bool fake_closed(struct fake *f)
{
	bool c;

	pthread_mutex_lock(&f->lock);
	c = f->closed;
	pthread_mutex_unlock(&f->lock);
	return c;
}

static void push(struct fake *f, const struct iommu_hwpt_pgfault *recs, size_t n, bool raw)
{
	struct unit u = {.n = n, .raw = raw};

	u.recs = malloc(n * sizeof(*recs));
	if (!u.recs)
		abort();
	memcpy(u.recs, recs, n * sizeof(*recs));
	pthread_mutex_lock(&f->lock);
	GROW(f->q, f->q_n, f->q_cap);
	f->q[f->q_n++] = u;
	update_level(f);
	pthread_mutex_unlock(&f->lock);
}

void fake_block_reads(struct fake *f, bool block)
{
	pthread_mutex_lock(&f->lock);
	f->block_reads = block;
	if (!block)
		pthread_cond_broadcast(&f->unblocked);
	pthread_mutex_unlock(&f->lock);
}

bool fake_read_blocked(struct fake *f)
{
	bool b;

	pthread_mutex_lock(&f->lock);
	b = f->blocked > 0;
	pthread_mutex_unlock(&f->lock);
	return b;
}

void fake_inject(struct fake *f, const struct iommu_hwpt_pgfault *recs, size_t n)
{
	push(f, recs, n, false);
}

void fake_inject_raw(struct fake *f, const struct iommu_hwpt_pgfault *recs, size_t n)
{
	push(f, recs, n, true);
}

void fake_fault(struct fake *f, uint32_t dev_id, uint32_t pasid, uint64_t addr, uint32_t perm)
{
	struct iommu_hwpt_pgfault r = {
		.flags = IOMMU_PGFAULT_FLAGS_LAST_PAGE,
		.dev_id = dev_id,
		.perm = perm,
		.addr = addr,
	};

	if (pasid != IOPF_PASID_NONE) {
		r.flags |= IOMMU_PGFAULT_FLAGS_PASID_VALID;
		r.pasid = pasid;
	}
	fake_inject(f, &r, 1);
}

void fake_set_too_small_returns_zero(struct fake *f, bool zero)
{
	pthread_mutex_lock(&f->lock);
	f->zero_if_too_small = zero;
	pthread_mutex_unlock(&f->lock);
}

bool fake_auto_answer(struct fake *f, uint32_t cookie)
{
	bool ok = false;

	pthread_mutex_lock(&f->lock);
	if (cookie && cookie <= MAX_COOKIE && f->cookie_serial[cookie]) {
		f->answered[f->cookie_serial[cookie]]++;
		f->cookie_serial[cookie] = 0;
		ok = true;
	}
	pthread_mutex_unlock(&f->lock);
	return ok;
}

void fake_fail_reads(struct fake *f, int err)
{
	pthread_mutex_lock(&f->lock);
	f->fail_reads = err;
	pthread_mutex_unlock(&f->lock);
}

void fake_fail_writes_after(struct fake *f, unsigned skip, int err, int count)
{
	pthread_mutex_lock(&f->lock);
	f->fail_write = err;
	f->fail_writes_left = err ? count : 0;
	f->fail_writes_skip = skip;
	pthread_mutex_unlock(&f->lock);
}

void fake_fail_writes(struct fake *f, int err, int count)
{
	fake_fail_writes_after(f, 0, err, count);
}

void fake_fail_next_write(struct fake *f, int err)
{
	fake_fail_writes(f, err, 1);
}

void fake_fail_map(struct fake *f, uint64_t iova, int err, int count)
{
	pthread_mutex_lock(&f->lock);
	f->fail_iova = iova;
	f->fail_err = err;
	f->fail_count = count;
	pthread_mutex_unlock(&f->lock);
}

void fake_premap(struct fake *f, uint64_t iova, uint64_t length)
{
	pthread_mutex_lock(&f->lock);
	GROW(f->maps, f->n_maps, f->cap_maps);
	f->maps[f->n_maps++] = (struct fake_mapping){iova, length, true};
	pthread_mutex_unlock(&f->lock);
}

#define GETTER(name, type, expr)                                                                   \
	type name(struct fake *f)                                                                  \
	{                                                                                          \
		type v;                                                                            \
		pthread_mutex_lock(&f->lock);                                                      \
		v = (expr);                                                                        \
		pthread_mutex_unlock(&f->lock);                                                    \
		return v;                                                                          \
	}

GETTER(fake_pending, size_t, f->q_n - f->q_head)
GETTER(fake_delivered, uint64_t, f->delivered)
GETTER(fake_reads, uint64_t, f->reads)
GETTER(fake_writes, uint64_t, f->writes)
GETTER(fake_bad_unmaps, uint64_t, f->bad_unmaps)
GETTER(fake_unmaps, uint64_t, f->unmaps)
GETTER(fake_reads_unanswered, uint64_t, f->reads_unanswered)

size_t fake_outstanding(struct fake *f)
{
	size_t n = 0;

	pthread_mutex_lock(&f->lock);
	for (uint32_t c = 1; c <= MAX_COOKIE; c++)
		n += f->cookie_serial[c] != 0;
	pthread_mutex_unlock(&f->lock);
	return n;
}

#define COPY_OUT(arr, n, ret)                                                                      \
	do {                                                                                       \
		size_t _n;                                                                         \
		pthread_mutex_lock(&f->lock);                                                      \
		_n = (n);                                                                          \
		*(ret) = malloc((_n ? _n : 1) * sizeof(**(ret)));                                  \
		if (!*(ret))                                                                       \
			abort();                                                                   \
		if (_n)                                                                            \
			memcpy(*(ret), (arr), _n * sizeof(**(ret)));                               \
		pthread_mutex_unlock(&f->lock);                                                    \
		return _n;                                                                         \
	} while (0)

size_t fake_answers(struct fake *f, struct fake_answer **ret)
{
	COPY_OUT(f->log, f->n_log, ret);
}

size_t fake_read_seqs(struct fake *f, uint64_t **ret)
{
	COPY_OUT(f->read_seqs, f->n_read_seqs, ret);
}

size_t fake_map_calls(struct fake *f, struct fake_map_call **ret)
{
	COPY_OUT(f->calls, f->n_calls, ret);
}

size_t fake_mappings(struct fake *f, struct fake_mapping **ret)
{
	struct fake_mapping *m;
	size_t n = 0;

	pthread_mutex_lock(&f->lock);
	m = malloc((f->n_maps ? f->n_maps : 1) * sizeof(*m));
	if (!m)
		abort();
	for (size_t i = 0; i < f->n_maps; i++)
		if (!f->maps[i].foreign)
			m[n++] = f->maps[i];
	pthread_mutex_unlock(&f->lock);
	*ret = m;
	return n;
}

bool fake_all_answered_once(struct fake *f)
{
	bool ok = true;

	pthread_mutex_lock(&f->lock);
	for (uint64_t s = 1; s <= f->next_serial; s++)
		if (f->answered[s] != 1)
			ok = false;
	pthread_mutex_unlock(&f->lock);
	return ok;
}
