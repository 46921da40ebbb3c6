/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "region.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "uapi.h"
#include "util.h"

#define WORD_BITS 64u

static void bit_set(uint64_t *map, uint64_t i)
{
	map[i / WORD_BITS] |= UINT64_C(1) << (i % WORD_BITS);
}

static void bits_assign(uint64_t *map, uint64_t first, uint64_t n, bool value)
{
	/* Word at a time: fault-around windows are up to thousands of pages. */
	while (n > 0) {
		uint64_t off = first % WORD_BITS;
		uint64_t k = WORD_BITS - off < n ? WORD_BITS - off : n;
		uint64_t mask = (k == WORD_BITS ? ~UINT64_C(0) : ((UINT64_C(1) << k) - 1)) << off;

		if (value)
			map[first / WORD_BITS] |= mask;
		else
			map[first / WORD_BITS] &= ~mask;
		first += k;
		n -= k;
	}
}

/* First index in [from, to) whose bit equals @value, or @to. */
static uint64_t bit_find(const uint64_t *map, uint64_t from, uint64_t to, bool value)
{
	while (from < to) {
		uint64_t w = map[from / WORD_BITS];

		if (!value)
			w = ~w;
		w &= ~UINT64_C(0) << (from % WORD_BITS);
		if (w) {
			uint64_t i = ALIGN_DOWN(from, WORD_BITS) + (uint64_t)__builtin_ctzll(w);
			return i < to ? i : to;
		}
		from = ALIGN_DOWN(from, WORD_BITS) + WORD_BITS;
	}
	return to;
}

/* ---- files shared by a tenant's regions ---- */

/*
 * Tens of thousands of regions usually sit on a handful of memfds; a dup per
 * region would hit RLIMIT_NOFILE long before the region limit. So regions of
 * one tenant on one file opened with one access mode share a single dup. The
 * tenant is part of the key so no tenant's region ever holds another tenant's
 * fd; the access mode because the fd's mode decides what a view may map.
 * (st_dev, st_ino) names the file for as long as our dup keeps it alive.
 *
 * Regions are built on the control thread and freed on the call_rcu thread,
 * so the table and every count are under files_lock; the fault path only
 * reads region->fd and never takes it.
 */
struct iopf_region_file {
	struct iopf_region_file *next; /* hash chain */
	uint64_t tenant, dev, ino;
	int accmode;
	int fd;	     /* owned; closed with the last reference */
	size_t refs; /* under files_lock */
	/* the engine's, control thread only: its name in the fd store, live regions on it */
	uint64_t store_key;
	unsigned live;
};

static pthread_mutex_t files_lock = PTHREAD_MUTEX_INITIALIZER;
static struct iopf_region_file **files; /* buckets, under files_lock; NULL while empty */
static size_t files_mask, n_files;

static size_t file_hash(uint64_t tenant, uint64_t dev, uint64_t ino, int accmode)
{
	uint64_t x = ino * UINT64_C(0x9e3779b97f4a7c15) ^ dev ^
		     tenant * UINT64_C(0xbf58476d1ce4e5b9) ^ (uint64_t)accmode;

	return (size_t)(x ^ (x >> 29));
}

/* Keep at most one file per bucket on average. Under files_lock. Return: 0 or -ENOMEM. */
static int files_grow(void)
{
	size_t size = files ? 2 * (files_mask + 1) : 64;
	struct iopf_region_file **nb;

	if (files && n_files < files_mask + 1)
		return 0;
	nb = calloc(size, sizeof(*nb));
	if (!nb)
		return -ENOMEM;
	for (size_t i = 0; files && i <= files_mask; i++)
		while (files[i]) {
			struct iopf_region_file *f = files[i];
			size_t h = file_hash(f->tenant, f->dev, f->ino, f->accmode) & (size - 1);

			files[i] = f->next;
			f->next = nb[h];
			nb[h] = f;
		}
	free(files);
	files = nb;
	files_mask = size - 1;
	return 0;
}

/* Drop the buckets once no file is left (leak checks, idle daemons). Under files_lock. */
static void files_trim(void)
{
	if (n_files == 0) {
		free(files);
		files = NULL;
		files_mask = 0;
	}
}

/* Under files_lock. Return: the file for the key, or NULL. */
static struct iopf_region_file *file_find(uint64_t tenant, uint64_t dev, uint64_t ino, int accmode)
{
	struct iopf_region_file *f;

	if (!files)
		return NULL;
	for (f = files[file_hash(tenant, dev, ino, accmode) & files_mask]; f; f = f->next)
		if (f->tenant == tenant && f->dev == dev && f->ino == ino && f->accmode == accmode)
			return f;
	return NULL;
}

/* A reference on the shared file for (@tenant, @st, @accmode), dup'ing @fd if there is none. */
static int file_get(uint64_t tenant, int fd, const struct stat *st, int accmode,
		    struct iopf_region_file **ret)
{
	uint64_t dev = (uint64_t)st->st_dev, ino = (uint64_t)st->st_ino;
	struct iopf_region_file *f;
	size_t h;
	int r = 0;

	pthread_mutex_lock(&files_lock);
	f = file_find(tenant, dev, ino, accmode);
	if (f) {
		f->refs++;
		goto out;
	}
	f = calloc(1, sizeof(*f));
	r = f ? files_grow() : -ENOMEM;
	if (r == 0) {
		*f = (struct iopf_region_file){
			.tenant = tenant,
			.dev = dev,
			.ino = ino,
			.accmode = accmode,
			.refs = 1,
		};
		f->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (f->fd < 0)
			r = negative_errno();
	}
	if (r < 0) {
		free(f);
		files_trim();
		goto out;
	}
	h = file_hash(tenant, dev, ino, accmode) & files_mask;
	f->next = files[h];
	files[h] = f;
	n_files++;
out:
	pthread_mutex_unlock(&files_lock);
	if (r == 0)
		*ret = f;
	return r;
}

static void file_put(struct iopf_region_file *f)
{
	struct iopf_region_file **pp;
	bool last;

	if (!f)
		return;
	pthread_mutex_lock(&files_lock);
	last = --f->refs == 0;
	if (last) {
		pp = &files[file_hash(f->tenant, f->dev, f->ino, f->accmode) & files_mask];
		while (*pp != f)
			pp = &(*pp)->next;
		*pp = f->next;
		n_files--;
		files_trim();
	}
	pthread_mutex_unlock(&files_lock);
	if (last) {
		safe_close(f->fd);
		free(f);
	}
}

size_t iopf_region_files(void)
{
	size_t n;

	pthread_mutex_lock(&files_lock);
	n = n_files;
	pthread_mutex_unlock(&files_lock);
	return n;
}

/* ---- regions ---- */

static int check_fd(int fd, uint64_t offset, uint64_t length, uint32_t access, struct stat *ret_st,
		    int *ret_accmode)
{
	struct stat st;
	int fl;

	if (fstat(fd, &st) < 0)
		return negative_errno();
	/* Only files can be mapped at an offset: no pipes, sockets or devices. */
	if (!S_ISREG(st.st_mode))
		return -EBADF;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return negative_errno();
	/* IOAS_MAP pins through a view that must be readable, and writable for WRITE. */
	if ((fl & O_ACCMODE) == O_WRONLY)
		return -EBADF;
	if ((access & IOPF_ACCESS_WRITE) && (fl & O_ACCMODE) != O_RDWR)
		return -EBADF;
	if (st.st_size < 0 || offset + length > (uint64_t)st.st_size)
		return -EINVAL;
	*ret_st = st;
	*ret_accmode = fl & O_ACCMODE;
	return 0;
}

/*
 * IOAS_MAP knows only read and write. An instruction fetch reads memory, and
 * PRIV is a privilege level, not an access: both map readable, so a region
 * that allows only EXEC or PRIV still resolves its faults.
 */
static uint32_t region_prot(uint32_t access)
{
	uint32_t prot = 0;

	if (access & (IOPF_ACCESS_READ | IOPF_ACCESS_EXEC))
		prot |= IOMMU_IOAS_MAP_READABLE;
	if (access & IOPF_ACCESS_WRITE)
		prot |= IOMMU_IOAS_MAP_WRITEABLE;
	return prot ? prot : IOMMU_IOAS_MAP_READABLE;
}

int iopf_region_new(uint64_t tenant, int fd, uint64_t offset, uint64_t iova, uint64_t length,
		    uint32_t access, struct iopf_region **ret)
{
	return iopf_region_new_bits(tenant, fd, offset, iova, length, access, NULL, ret);
}

int iopf_region_new_bits(uint64_t tenant, int fd, uint64_t offset, uint64_t iova, uint64_t length,
			 uint32_t access, uint64_t *bits, struct iopf_region **ret)
{
	_cleanup_free_ struct iopf_region *r = NULL;
	_cleanup_free_ uint64_t *mapped = NULL, *start = NULL;
	struct iopf_region_file *file;
	struct stat st;
	size_t words;
	int accmode, rc;

	if (iopf_region_check_args(offset, iova, length, access) != IOPF_REGION_ARGS_OK)
		return -EINVAL;
	if (fd < 0)
		return -EBADF;
	rc = check_fd(fd, offset, length, access, &st, &accmode);
	if (rc < 0)
		return rc;

	words = (length / IOPF_PAGE_SIZE + WORD_BITS - 1) / WORD_BITS;
	/* Large calloc()s come from fresh anonymous mmaps: untouched words cost nothing. */
	if (!bits) {
		mapped = calloc(words, sizeof(uint64_t));
		start = calloc(words, sizeof(uint64_t));
		if (!mapped || !start)
			return -ENOMEM;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;

	rc = file_get(tenant, fd, &st, accmode, &file);
	if (rc < 0)
		return rc;

	*r = (struct iopf_region){
		.tenant = tenant,
		.iova = iova,
		.length = length,
		.offset = offset,
		.access = access,
		.prot = region_prot(access),
		.fd = file->fd,
		.file = file,
		.n_pages = length / IOPF_PAGE_SIZE,
		.mapped = bits ? bits : TAKE_PTR(mapped),
		.start = bits ? bits + words : TAKE_PTR(start),
		.bits_borrowed = bits != NULL,
	};
	*ret = TAKE_PTR(r);
	return 0;
}

struct iopf_region *iopf_region_free(struct iopf_region *r)
{
	if (!r)
		return NULL;
	if (r->uptr)
		(void)munmap(r->uptr, r->length);
	file_put(r->file);
	if (!r->bits_borrowed) {
		free(r->mapped);
		free(r->start);
	}
	free(r);
	return NULL;
}

void iopf_region_track(struct iopf_region *r, uint64_t first, uint64_t n)
{
	bits_assign(r->mapped, first, n, true);
	bit_set(r->start, first);
}

void iopf_region_untrack(struct iopf_region *r, uint64_t first, uint64_t n)
{
	bits_assign(r->mapped, first, n, false);
	bits_assign(r->start, first, 1, false);
}

bool iopf_region_next_hole(const struct iopf_region *r, uint64_t from, uint64_t to,
			   uint64_t *ret_first, uint64_t *ret_n)
{
	uint64_t first, end;

	if (to > r->n_pages)
		to = r->n_pages;
	first = bit_find(r->mapped, from, to, false);
	if (first >= to)
		return false;
	end = bit_find(r->mapped, first, to, true);
	*ret_first = first;
	*ret_n = end - first;
	return true;
}

bool iopf_region_next_extent(const struct iopf_region *r, uint64_t from, uint64_t *ret_first,
			     uint64_t *ret_n)
{
	uint64_t first, end_hole, end_start;

	first = bit_find(r->start, from, r->n_pages, true);
	if (first >= r->n_pages)
		return false;
	/* The extent ends at the first unmapped page or the next extent's start. */
	end_hole = bit_find(r->mapped, first, r->n_pages, false);
	end_start = bit_find(r->start, first + 1, r->n_pages, true);
	*ret_first = first;
	*ret_n = (end_hole < end_start ? end_hole : end_start) - first;
	return true;
}

int iopf_region_get_uptr(struct iopf_region *r, void **ret)
{
	void *p;
	int prot = 0;

	if (!r->uptr) {
		if (r->access & IOPF_ACCESS_READ)
			prot |= PROT_READ;
		if (r->access & IOPF_ACCESS_WRITE)
			prot |= PROT_WRITE;
		p = mmap(NULL, r->length, prot, MAP_SHARED, r->fd, (off_t)r->offset);
		if (p == MAP_FAILED)
			return negative_errno();
		r->uptr = p;
	}
	*ret = r->uptr;
	return 0;
}

static struct iopf_region_set *set_alloc(size_t n)
{
	struct iopf_region_set *s;

	s = calloc(1, sizeof(*s) + n * (sizeof(s->v[0]) + sizeof(s->iova[0])));
	if (s) {
		s->n = n;
		s->iova = (const uint64_t *)&s->v[n];
	}
	return s;
}

/* Fill iova[] once v[] is complete. */
static void set_seal(struct iopf_region_set *s)
{
	uint64_t *iova = (uint64_t *)&s->v[s->n];

	for (size_t i = 0; i < s->n; i++)
		iova[i] = s->v[i]->iova;
}

/* Index of the first region whose iova is > @addr; branch-free halving over iova[]. */
static size_t upper_bound(const struct iopf_region_set *s, uint64_t addr)
{
	size_t n = iopf_region_set_size(s), lo = 0;

	if (n == 0)
		return 0;
	/* invariant: iova[i] <= addr for every i < lo, and the answer is in [lo, lo + n] */
	while (n > 1) {
		size_t half = n / 2;

		lo = s->iova[lo + half] <= addr ? lo + half : lo;
		n -= half;
	}
	return lo + (s->iova[lo] <= addr);
}

int iopf_region_set_add(const struct iopf_region_set *old, struct iopf_region *r,
			struct iopf_region_set **ret)
{
	size_t n = iopf_region_set_size(old), i;
	struct iopf_region_set *s;

	i = upper_bound(old, r->iova);
	/* The neighbours on each side are the only candidates for an overlap. */
	if (i > 0 && iopf_region_last(old->v[i - 1]) >= r->iova)
		return -EBUSY;
	if (i < n && old->v[i]->iova <= iopf_region_last(r))
		return -EBUSY;

	s = set_alloc(n + 1);
	if (!s)
		return -ENOMEM;
	if (i > 0)
		memcpy(s->v, old->v, i * sizeof(s->v[0]));
	s->v[i] = r;
	if (n > i)
		memcpy(s->v + i + 1, old->v + i, (n - i) * sizeof(s->v[0]));
	set_seal(s);
	*ret = s;
	return 0;
}

int iopf_region_set_del(const struct iopf_region_set *old, const struct iopf_region *r,
			struct iopf_region_set **ret)
{
	size_t n = iopf_region_set_size(old), i;
	struct iopf_region_set *s;

	i = upper_bound(old, r->iova);
	if (i == 0 || old->v[i - 1] != r)
		return -ENOENT;
	i--;
	if (n == 1) {
		*ret = NULL;
		return 0;
	}
	s = set_alloc(n - 1);
	if (!s)
		return -ENOMEM;
	memcpy(s->v, old->v, i * sizeof(s->v[0]));
	memcpy(s->v + i, old->v + i + 1, (n - i - 1) * sizeof(s->v[0]));
	set_seal(s);
	*ret = s;
	return 0;
}

struct iopf_region *iopf_region_set_find(const struct iopf_region_set *s, uint64_t addr)
{
	struct iopf_region *r;
	size_t i;

	if (!s)
		return NULL;
	/* hint < n always: sets never change size, and it starts at 0 */
	r = s->v[s->hint];
	if (addr - s->iova[s->hint] < r->length)
		return r;
	i = upper_bound(s, addr);
	if (i == 0 || addr > iopf_region_last(s->v[i - 1]))
		return NULL;
	/* the set is not const, only its published layout is: see struct iopf_region_set */
	((struct iopf_region_set *)s)->hint = i - 1;
	return s->v[i - 1];
}

uint64_t *iopf_region_store_key(struct iopf_region *r)
{
	return &r->file->store_key;
}

unsigned iopf_region_file_live(struct iopf_region *r, int delta)
{
	r->file->live += delta;
	return r->file->live;
}
