/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The state arena (state.h): a buddy-style allocator without coalescing over
 * one memfd mapped once at a fixed size. A block of 2^k bytes sits at a
 * multiple of 2^k; a free list per size; a request splits a larger free block
 * or extends the end. The header at offset 0 holds the magic, the version and
 * the end; the free lists live in the process, rebuilt after a restart from
 * what the owners claim.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "state.h"
#include "util.h"

#define STATE_MAGIC   "iopfdST1"
#define STATE_VERSION 1u
/* The header's block; nothing else lives below it. */
#define HEADER_BYTES UINT64_C(4096)
/* The memfd grows in steps of this much. */
#define GROW_STEP (UINT64_C(2) << 20)
/* Blocks this big or bigger give their memory back when released. */
#define PUNCH_MIN UINT64_C(4096)
#define MIN_SHIFT 6
#define MAX_SHIFT 40

struct state_header {
	char magic[8];
	uint32_t version;
	uint32_t header_bytes;
	uint64_t end; /* blocks lie below this */
};

struct offsets {
	uint64_t *v;
	size_t n, cap;
};

struct claim {
	uint64_t off, size;
};

struct iopf_state {
	int fd;
	uint8_t *base;
	uint64_t file_size;
	pthread_mutex_t lock;
	bool sealed;
	struct offsets free[MAX_SHIFT + 1];
	struct claim *claims; /* until sealed */
	size_t n_claims, claims_cap;
};

static struct state_header *header(const struct iopf_state *s)
{
	return (struct state_header *)s->base;
}

static unsigned shift_of(uint64_t size)
{
	unsigned k = MIN_SHIFT;

	while ((UINT64_C(1) << k) < size)
		k++;
	return k;
}

size_t iopf_state_block_size(size_t size)
{
	return size > IOPF_STATE_MAX_BYTES ? 0 : (size_t)1 << shift_of(size);
}

static int push(struct offsets *o, uint64_t off)
{
	if (o->n == o->cap) {
		size_t cap = o->cap ? o->cap * 2 : 16;
		uint64_t *v = realloc(o->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		o->v = v;
		o->cap = cap;
	}
	o->v[o->n++] = off;
	return 0;
}

static void punch(struct iopf_state *s, uint64_t off, uint64_t len)
{
	/* Only memory, never correctness: a failed punch leaves zeroable pages behind. */
	if (len >= PUNCH_MIN)
		(void)fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
				(off_t)len);
}

/* Hand [from, to) to the free lists as the largest aligned blocks that tile it. */
static int free_range(struct iopf_state *s, uint64_t from, uint64_t to)
{
	while (from < to) {
		unsigned k = MIN_SHIFT;
		int r;

		while (k < MAX_SHIFT && IS_ALIGNED(from, UINT64_C(1) << (k + 1)) &&
		       from + (UINT64_C(1) << (k + 1)) <= to)
			k++;
		r = push(&s->free[k], from);
		if (r < 0)
			return r;
		from += UINT64_C(1) << k;
	}
	return 0;
}

static int grow(struct iopf_state *s, uint64_t end)
{
	uint64_t size;

	if (end <= s->file_size)
		return 0;
	size = ALIGN_UP(end, GROW_STEP);
	if (ftruncate(s->fd, (off_t)size) < 0)
		return negative_errno();
	s->file_size = size;
	return 0;
}

static int map(int fd, struct iopf_state **ret)
{
	struct iopf_state *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->base = mmap(NULL, IOPF_STATE_MAX_BYTES, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (s->base == MAP_FAILED) {
		int r = negative_errno();

		free(s);
		return r;
	}
	s->fd = fd;
	pthread_mutex_init(&s->lock, NULL);
	*ret = s;
	return 0;
}

int iopf_state_new(struct iopf_state **ret)
{
	_cleanup_close_ int fd = memfd_create("iopfd-state", MFD_CLOEXEC);
	struct iopf_state *s;
	int r;

	if (fd < 0)
		return negative_errno();
	if (ftruncate(fd, (off_t)GROW_STEP) < 0)
		return negative_errno();
	r = map(fd, &s);
	if (r < 0)
		return r;
	TAKE_FD(fd);
	s->file_size = GROW_STEP;
	memcpy(header(s)->magic, STATE_MAGIC, sizeof(header(s)->magic));
	header(s)->version = STATE_VERSION;
	header(s)->header_bytes = HEADER_BYTES;
	header(s)->end = HEADER_BYTES;
	s->sealed = true;
	*ret = s;
	return 0;
}

int iopf_state_adopt(int fd, struct iopf_state **ret)
{
	struct state_header h;
	struct stat st;
	struct iopf_state *s;
	int r;

	if (fstat(fd, &st) < 0)
		return negative_errno();
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < HEADER_BYTES ||
	    (uint64_t)st.st_size > IOPF_STATE_MAX_BYTES)
		return -EINVAL;
	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		return -EINVAL;
	if (memcmp(h.magic, STATE_MAGIC, sizeof(h.magic)) != 0 || h.version != STATE_VERSION ||
	    h.header_bytes != HEADER_BYTES || h.end < HEADER_BYTES ||
	    h.end > (uint64_t)st.st_size || !IS_ALIGNED(h.end, IOPF_STATE_MIN_BLOCK))
		return -EINVAL;
	r = map(fd, &s);
	if (r < 0)
		return r;
	s->file_size = (uint64_t)st.st_size;
	/* nothing above the end was handed out: make sure it reads as zeroes */
	punch(s, h.end, s->file_size - h.end);
	*ret = s;
	return 0;
}

struct iopf_state *iopf_state_free(struct iopf_state *s)
{
	if (!s)
		return NULL;
	(void)munmap(s->base, IOPF_STATE_MAX_BYTES);
	safe_close(s->fd);
	for (size_t k = 0; k < ARRAY_SIZE(s->free); k++)
		free(s->free[k].v);
	free(s->claims);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return NULL;
}

int iopf_state_fd(const struct iopf_state *s)
{
	return s->fd;
}

void *iopf_state_at(const struct iopf_state *s, uint64_t off)
{
	return s->base + off;
}

/* Caller holds the lock. */
static int alloc_locked(struct iopf_state *s, unsigned k, uint64_t *ret_off)
{
	uint64_t size = UINT64_C(1) << k, off, end;
	unsigned j;
	int r;

	if (s->free[k].n > 0) {
		*ret_off = s->free[k].v[--s->free[k].n];
		return 0;
	}
	/* split the smallest larger free block: its upper halves go back */
	for (j = k + 1; j <= MAX_SHIFT && s->free[j].n == 0; j++)
		;
	if (j <= MAX_SHIFT) {
		off = s->free[j].v[--s->free[j].n];
		r = free_range(s, off + size, off + (UINT64_C(1) << j));
		if (r < 0) {
			s->free[j].n++; /* still there */
			return r;
		}
		*ret_off = off;
		return 0;
	}
	off = ALIGN_UP(header(s)->end, size);
	end = off + size;
	if (end > IOPF_STATE_MAX_BYTES || end < off)
		return -ENOSPC;
	r = grow(s, end);
	if (r < 0)
		return r;
	r = free_range(s, header(s)->end, off);
	if (r < 0)
		return r;
	header(s)->end = end;
	*ret_off = off;
	return 0;
}

int iopf_state_alloc(struct iopf_state *s, size_t size, uint64_t *ret_off)
{
	unsigned k;
	uint64_t off;
	int r;

	if (size == 0 || size > IOPF_STATE_MAX_BYTES / 2)
		return -EINVAL;
	k = shift_of(size);
	pthread_mutex_lock(&s->lock);
	r = s->sealed ? alloc_locked(s, k, &off) : -EBUSY;
	pthread_mutex_unlock(&s->lock);
	if (r < 0)
		return r;
	/* big blocks were punched (zero) when freed or never written; small ones may hold data */
	if ((UINT64_C(1) << k) < PUNCH_MIN)
		memset(s->base + off, 0, UINT64_C(1) << k);
	*ret_off = off;
	return 0;
}

void iopf_state_release(struct iopf_state *s, uint64_t off, size_t size)
{
	unsigned k = shift_of(size);

	punch(s, off, UINT64_C(1) << k);
	pthread_mutex_lock(&s->lock);
	/* without room in the free list the block is lost to the address space only */
	(void)push(&s->free[k], off);
	pthread_mutex_unlock(&s->lock);
}

int iopf_state_claim(struct iopf_state *s, uint64_t off, size_t size)
{
	uint64_t b;

	if (s->sealed || size == 0 || size > IOPF_STATE_MAX_BYTES / 2)
		return -EINVAL;
	b = UINT64_C(1) << shift_of(size);
	if (off < HEADER_BYTES || !IS_ALIGNED(off, b) || off + b > header(s)->end)
		return -EINVAL;
	if (s->n_claims == s->claims_cap) {
		size_t cap = s->claims_cap ? s->claims_cap * 2 : 64;
		struct claim *v = realloc(s->claims, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->claims = v;
		s->claims_cap = cap;
	}
	s->claims[s->n_claims++] = (struct claim){.off = off, .size = b};
	return 0;
}

static int claim_cmp(const void *a, const void *b)
{
	const struct claim *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

int iopf_state_seal(struct iopf_state *s)
{
	uint64_t at = HEADER_BYTES;
	int r;

	if (s->sealed)
		return 0;
	qsort(s->claims, s->n_claims, sizeof(*s->claims), claim_cmp);
	for (size_t i = 0; i < s->n_claims; i++)
		if (s->claims[i].off < at)
			return -EINVAL; /* two owners claim one block */
		else
			at = s->claims[i].off + s->claims[i].size;
	at = HEADER_BYTES;
	for (size_t i = 0; i <= s->n_claims; i++) {
		uint64_t next = i < s->n_claims ? s->claims[i].off : header(s)->end;

		punch(s, at, next - at);
		r = free_range(s, at, next);
		if (r < 0)
			return r;
		if (i < s->n_claims)
			at = s->claims[i].off + s->claims[i].size;
	}
	free(s->claims);
	s->claims = NULL;
	s->n_claims = s->claims_cap = 0;
	s->sealed = true;
	return 0;
}
