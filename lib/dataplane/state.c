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
#include "u64vec.h"
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
	uint64_t end;	    /* blocks lie below this */
	uint64_t table_off; /* the record table's block; 0: none yet */
};

/* The record table: a block of slots; a slot names a record by key once key != 0. */
struct slot {
	uint64_t key;
	uint64_t off;
};
struct table {
	uint64_t cap;
	struct slot v[];
};
struct record {
	uint32_t len;
	uint32_t reserved;
	uint64_t sum; /* of key, len and data */
	uint8_t data[];
};
#define TABLE_CAP_MAX (UINT64_C(1) << 24)
/* index: slot + 1; 0 empty; TOMB deleted */
#define TOMB UINT32_MAX

struct claim {
	uint64_t off, size;
};

struct iopf_state {
	int fd;
	uint8_t *base;
	uint64_t map_bytes; /* how much of the address space base reserves */
	uint64_t file_size;
	pthread_mutex_t lock;
	bool sealed;
	struct u64vec free[MAX_SHIFT + 1];
	struct claim *claims; /* until sealed */
	size_t n_claims, claims_cap;
	/* records: a private index from key to slot, and the free slots */
	uint32_t *index;
	size_t index_cap, index_used, n_records;
	uint32_t *free_slots;
	size_t n_free_slots;
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
		r = u64vec_push(&s->free[k], from);
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

/*
 * Map the memfd once, as large as the address space allows, so blocks never
 * move: IOPF_STATE_MAX_BYTES, else less where the process may not reserve
 * that much (a sanitizer's shadow, an RLIMIT_AS), never less than @need.
 */
static int map(int fd, uint64_t need, struct iopf_state **ret)
{
	struct iopf_state *s = calloc(1, sizeof(*s));
	int r = -ENOMEM;

	if (!s)
		return -ENOMEM;
	for (uint64_t size = IOPF_STATE_MAX_BYTES; size >= need && size >= GROW_STEP; size /= 16) {
		s->base =
			mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
		if (s->base != MAP_FAILED) {
			s->map_bytes = size;
			break;
		}
		r = negative_errno();
	}
	if (!s->map_bytes) {
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
	r = map(fd, GROW_STEP, &s);
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
	r = map(fd, (uint64_t)st.st_size, &s);
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
	(void)munmap(s->base, s->map_bytes);
	safe_close(s->fd);
	for (size_t k = 0; k < ARRAY_SIZE(s->free); k++)
		u64vec_done(&s->free[k]);
	free(s->claims);
	free(s->index);
	free(s->free_slots);
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
	if (end > s->map_bytes || end < off)
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

/* A zeroed block; caller holds the lock. */
static int alloc_zeroed_locked(struct iopf_state *s, size_t size, uint64_t *ret_off)
{
	unsigned k;
	int r;

	if (size == 0 || size > s->map_bytes / 2)
		return -EINVAL;
	if (!s->sealed)
		return -EBUSY;
	k = shift_of(size);
	r = alloc_locked(s, k, ret_off);
	if (r < 0)
		return r;
	/* big blocks were punched (zero) when freed or never written; small ones may hold data */
	if ((UINT64_C(1) << k) < PUNCH_MIN)
		memset(s->base + *ret_off, 0, UINT64_C(1) << k);
	return 0;
}

int iopf_state_alloc(struct iopf_state *s, size_t size, uint64_t *ret_off)
{
	int r;

	pthread_mutex_lock(&s->lock);
	r = alloc_zeroed_locked(s, size, ret_off);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static void release_locked(struct iopf_state *s, uint64_t off, size_t size)
{
	unsigned k = shift_of(size);

	punch(s, off, UINT64_C(1) << k);
	/* without room in the free list the block is lost to the address space only */
	(void)u64vec_push(&s->free[k], off);
}

void iopf_state_release(struct iopf_state *s, uint64_t off, size_t size)
{
	pthread_mutex_lock(&s->lock);
	release_locked(s, off, size);
	pthread_mutex_unlock(&s->lock);
}

int iopf_state_claim(struct iopf_state *s, uint64_t off, size_t size)
{
	uint64_t b;

	if (s->sealed || size == 0 || size > s->map_bytes / 2)
		return -EINVAL;
	b = UINT64_C(1) << shift_of(size);
	if (off < HEADER_BYTES || !IS_ALIGNED(off, b) || off + b > header(s)->end)
		return -EINVAL;
	if (s->n_claims == s->claims_cap) {
		size_t cap = s->claims_cap ? s->claims_cap * 2 : 64;

		if (REALLOC_ARRAY(s->claims, cap) < 0)
			return -ENOMEM;
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
	if (s->n_claims)
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

/* Records */

static uint64_t record_sum(uint64_t key, const void *data, uint32_t len)
{
	/* FNV-1a: catches a foreign or torn record, not an adversary (nobody else writes here) */
	const uint8_t *p = data;
	uint64_t h = UINT64_C(0xcbf29ce484222325);

	for (unsigned i = 0; i < 8; i++)
		h = (h ^ (uint8_t)(key >> (8 * i))) * UINT64_C(0x100000001b3);
	for (unsigned i = 0; i < 4; i++)
		h = (h ^ (uint8_t)(len >> (8 * i))) * UINT64_C(0x100000001b3);
	for (uint32_t i = 0; i < len; i++)
		h = (h ^ p[i]) * UINT64_C(0x100000001b3);
	return h;
}

static size_t index_hash(uint64_t key, size_t cap)
{
	return (size_t)((key * UINT64_C(0x9e3779b97f4a7c15)) >> 32) & (cap - 1);
}

static struct table *table(const struct iopf_state *s)
{
	uint64_t off = header(s)->table_off;

	return off ? (struct table *)(s->base + off) : NULL;
}

/* The index position of @key, or of the first free one on its probe sequence. */
static size_t index_find(const struct iopf_state *s, uint64_t key, bool *ret_found)
{
	struct table *t = table(s);
	size_t i = index_hash(key, s->index_cap), tomb = SIZE_MAX;

	for (;; i = (i + 1) & (s->index_cap - 1)) {
		uint32_t v = s->index[i];

		if (v == 0) {
			*ret_found = false;
			return tomb != SIZE_MAX ? tomb : i;
		}
		if (v == TOMB) {
			if (tomb == SIZE_MAX)
				tomb = i;
		} else if (t->v[v - 1].key == key) {
			*ret_found = true;
			return i;
		}
	}
}

/* Rebuild the index at @cap (a power of two) from what it lists now. */
static int index_rebuild(struct iopf_state *s, size_t cap)
{
	struct table *t = table(s);
	uint32_t *old = s->index;
	size_t old_cap = s->index_cap;

	s->index = calloc(cap, sizeof(*s->index));
	if (!s->index) {
		s->index = old;
		return -ENOMEM;
	}
	s->index_cap = cap;
	s->index_used = 0;
	for (size_t i = 0; i < old_cap; i++) {
		bool found;
		size_t at;

		if (old[i] == 0 || old[i] == TOMB)
			continue;
		at = index_find(s, t->v[old[i] - 1].key, &found);
		s->index[at] = old[i];
		s->index_used++;
	}
	free(old);
	return 0;
}

/* Room for one more record: a free slot and index space. Caller holds the lock. */
static int reserve_slot(struct iopf_state *s)
{
	struct table *t = table(s), *nt;
	uint64_t cap = t ? t->cap : 0, ncap, off;
	uint32_t *fs;
	int r;

	if (s->index_cap == 0 || (s->index_used + 1) * 2 > s->index_cap) {
		r = index_rebuild(s, s->index_cap ? s->index_cap * 2 : 128);
		if (r < 0)
			return r;
	}
	if (s->n_free_slots > 0)
		return 0;
	ncap = cap ? cap * 2 : 64;
	if (ncap > TABLE_CAP_MAX)
		return -ENOSPC;
	fs = realloc(s->free_slots, ncap * sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	s->free_slots = fs;
	r = alloc_zeroed_locked(s, sizeof(*nt) + ncap * sizeof(struct slot), &off);
	if (r < 0)
		return r;
	nt = (struct table *)(s->base + off);
	nt->cap = ncap;
	if (t)
		memcpy(nt->v, t->v, cap * sizeof(struct slot));
	/* one store switches tables: a crash sees the old one or the new one, both whole */
	__atomic_store_n(&header(s)->table_off, off, __ATOMIC_RELEASE);
	if (t)
		release_locked(s, (uint64_t)((uint8_t *)t - s->base),
			       sizeof(*t) + cap * sizeof(struct slot));
	for (uint64_t i = ncap; i > cap; i--)
		s->free_slots[s->n_free_slots++] = (uint32_t)(i - 1);
	return 0;
}

int iopf_state_put(struct iopf_state *s, uint64_t key, const void *data, size_t len)
{
	struct record *rec;
	struct slot *slot;
	uint64_t off, old;
	size_t at;
	bool found;
	int r;

	if (key == 0 || len > IOPF_STATE_RECORD_MAX)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	r = reserve_slot(s);
	if (r < 0)
		goto out;
	r = alloc_zeroed_locked(s, sizeof(*rec) + len, &off);
	if (r < 0)
		goto out;
	rec = (struct record *)(s->base + off);
	rec->len = (uint32_t)len;
	memcpy(rec->data, data, len);
	rec->sum = record_sum(key, data, (uint32_t)len);

	at = index_find(s, key, &found);
	if (found) {
		slot = &table(s)->v[s->index[at] - 1];
		old = slot->off;
		__atomic_store_n(&slot->off, off, __ATOMIC_RELEASE);
		release_locked(s, old, sizeof(*rec) + ((struct record *)(s->base + old))->len);
	} else {
		uint32_t i = s->free_slots[--s->n_free_slots];

		slot = &table(s)->v[i];
		slot->off = off;
		__atomic_store_n(&slot->key, key, __ATOMIC_RELEASE);
		if (s->index[at] == 0)
			s->index_used++;
		s->index[at] = i + 1;
		s->n_records++;
	}
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

int iopf_state_del(struct iopf_state *s, uint64_t key)
{
	struct slot *slot;
	size_t at;
	bool found = false;
	uint32_t i;

	pthread_mutex_lock(&s->lock);
	if (s->index_cap > 0)
		at = index_find(s, key, &found);
	if (!found) {
		pthread_mutex_unlock(&s->lock);
		return -ENOENT;
	}
	i = s->index[at] - 1;
	slot = &table(s)->v[i];
	__atomic_store_n(&slot->key, 0, __ATOMIC_RELEASE);
	release_locked(s, slot->off,
		       sizeof(struct record) + ((struct record *)(s->base + slot->off))->len);
	s->index[at] = TOMB;
	s->free_slots[s->n_free_slots++] = i; /* room: every slot has a place there */
	s->n_records--;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

size_t iopf_state_n_records(const struct iopf_state *s)
{
	return s->n_records;
}

/* Inside the arena, aligned as a block of @size must be. */
static bool block_ok(const struct iopf_state *s, uint64_t off, uint64_t size)
{
	uint64_t b = UINT64_C(1) << shift_of(size);

	return off >= HEADER_BYTES && IS_ALIGNED(off, b) && off + b <= header(s)->end &&
	       off + b > off;
}

int iopf_state_foreach_record(struct iopf_state *s, iopf_state_record_fn fn, void *userdata)
{
	uint64_t toff = header(s)->table_off, cap;
	struct table *t;
	int r;

	if (s->sealed)
		return -EINVAL;
	if (toff == 0)
		return 0;
	if (!block_ok(s, toff, sizeof(*t)))
		return -EINVAL;
	t = (struct table *)(s->base + toff);
	cap = t->cap;
	if (cap == 0 || cap > TABLE_CAP_MAX ||
	    !block_ok(s, toff, sizeof(*t) + cap * sizeof(struct slot)))
		return -EINVAL;
	r = iopf_state_claim(s, toff, sizeof(*t) + cap * sizeof(struct slot));
	if (r < 0)
		return r;
	s->free_slots = calloc(cap, sizeof(*s->free_slots));
	if (!s->free_slots)
		return -ENOMEM;
	r = index_rebuild(s, 128);
	if (r < 0)
		return r;
	for (uint64_t i = cap; i > 0; i--)
		if (!t->v[i - 1].key)
			s->free_slots[s->n_free_slots++] = (uint32_t)(i - 1);
	for (uint64_t i = 0; i < cap; i++) {
		uint64_t key = t->v[i].key, off = t->v[i].off;
		struct record *rec;
		size_t at;
		bool found;

		if (!key)
			continue;
		if (!block_ok(s, off, sizeof(*rec)))
			return -EINVAL;
		rec = (struct record *)(s->base + off);
		if (rec->len > IOPF_STATE_RECORD_MAX ||
		    !block_ok(s, off, sizeof(*rec) + rec->len) ||
		    rec->sum != record_sum(key, rec->data, rec->len))
			return -EINVAL;
		r = iopf_state_claim(s, off, sizeof(*rec) + rec->len);
		if (r < 0)
			return r;
		if ((s->index_used + 1) * 2 > s->index_cap) {
			r = index_rebuild(s, s->index_cap * 2);
			if (r < 0)
				return r;
		}
		at = index_find(s, key, &found);
		if (found)
			return -EINVAL; /* one key twice */
		s->index[at] = (uint32_t)i + 1;
		s->index_used++;
		s->n_records++;
		r = fn(key, rec->data, rec->len, userdata);
		if (r < 0)
			return r;
	}
	return 0;
}
