/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "region.h"

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "iopf/uapi.h"
#include "util.h"

#define WORD_BITS 64u

static bool bit_test(const uint64_t *map, uint64_t i)
{
	return map[i / WORD_BITS] & (UINT64_C(1) << (i % WORD_BITS));
}

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

static int check_fd(int fd, uint64_t offset, uint64_t length, uint32_t access)
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

int iopf_region_new(int fd, uint64_t offset, uint64_t iova, uint64_t length, uint32_t access,
		    struct iopf_region **ret)
{
	_cleanup_free_ struct iopf_region *r = NULL;
	_cleanup_free_ uint64_t *mapped = NULL, *start = NULL;
	size_t words;
	int dfd, rc;

	if (length == 0 || !IS_ALIGNED(iova, IOPF_PAGE_SIZE) || !IS_ALIGNED(offset, IOPF_PAGE_SIZE) ||
	    !IS_ALIGNED(length, IOPF_PAGE_SIZE))
		return -EINVAL;
	/* last byte must not wrap; an end of exactly 2^64 is fine */
	if (iova + (length - 1) < iova || offset + (length - 1) < offset)
		return -EINVAL;
	if (access == 0 || (access & ~(uint32_t)IOPF_ACCESS_ALL))
		return -EINVAL;
	if (fd < 0)
		return -EBADF;
	rc = check_fd(fd, offset, length, access);
	if (rc < 0)
		return rc;

	words = (length / IOPF_PAGE_SIZE + WORD_BITS - 1) / WORD_BITS;
	/* Large calloc()s come from fresh anonymous mmaps: untouched words cost nothing. */
	mapped = calloc(words, sizeof(uint64_t));
	start = calloc(words, sizeof(uint64_t));
	r = calloc(1, sizeof(*r));
	if (!mapped || !start || !r)
		return -ENOMEM;

	dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (dfd < 0)
		return negative_errno();

	*r = (struct iopf_region){
		.iova = iova,
		.length = length,
		.offset = offset,
		.access = access,
		.prot = region_prot(access),
		.fd = dfd,
		.n_pages = length / IOPF_PAGE_SIZE,
		.mapped = TAKE_PTR(mapped),
		.start = TAKE_PTR(start),
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
	safe_close(r->fd);
	free(r->mapped);
	free(r->start);
	free(r);
	return NULL;
}

bool iopf_region_page_mapped(const struct iopf_region *r, uint64_t pg)
{
	return bit_test(r->mapped, pg);
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

	s = calloc(1, sizeof(*s) + n * sizeof(s->v[0]));
	if (s)
		s->n = n;
	return s;
}

/* Index of the first region whose iova is > @addr. */
static size_t upper_bound(const struct iopf_region_set *s, uint64_t addr)
{
	size_t lo = 0, hi = iopf_region_set_size(s);

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->v[mid]->iova <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
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
	*ret = s;
	return 0;
}

struct iopf_region *iopf_region_set_find(const struct iopf_region_set *s, uint64_t addr)
{
	size_t i = upper_bound(s, addr);

	if (i == 0)
		return NULL;
	return addr <= iopf_region_last(s->v[i - 1]) ? s->v[i - 1] : NULL;
}
