/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Regions: IOVA ranges of a domain backed by a memory fd, the sorted set of a
 * domain's regions (RCU-published, immutable once published), and the page
 * bitmaps that remember what the daemon itself mapped.
 *
 * The struct is visible to the data plane (engine, resolver): the resolver
 * reads it on the fault path and a getter per field would only add noise.
 */
#ifndef IOPF_REGION_H
#define IOPF_REGION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rcu.h"

#include "engine.h"
#include "iopf/iopf.h"

/* An open file shared by a tenant's regions on one backing object; opaque. */
struct iopf_region_file;

struct iopf_region {
	/*
	 * What a fault reads first, on the one line iopf_region_new() aligns:
	 * where the region is, its bits, its rights, and what mapping it needs.
	 */
	uint64_t iova, length;
	uint64_t *mapped; /* owned unless bits_borrowed; see below */
	uint32_t access;  /* IOPF_ACCESS_* */
	uint32_t prot;	  /* IOMMU_IOAS_MAP_READABLE/WRITEABLE derived from access */
	uint64_t *start;  /* owned unless bits_borrowed; see below */
	uint64_t offset;
	int fd; /* file's fd, copied for the fault path; not owned */
	uint64_t n_pages;

	uint64_t id, domain_id; /* set by the engine before publishing */
	uint64_t tenant;
	struct iopf_region_file *file; /* owned reference; dropped in iopf_region_free() */
	/*
	 * Written only by the worker that owns the domain. 'mapped': the daemon
	 * mapped this page. 'start': this page begins one of the daemon's map
	 * calls; an extent runs over the following mapped pages up to the next
	 * start bit or hole, which is exactly what IOAS_UNMAP must be given.
	 */
	bool bits_borrowed;    /* both live in the caller's block (the state arena) */
	void *uptr;	       /* lazy MAP_SHARED view for IOAS_MAP; owned, munmapped on free */
	uint64_t bytes_mapped; /* worker writes, others load relaxed */

	struct rcu_head rcu;
};

/*
 * iopf_region_new() - validate and build a region of @tenant backed by @fd.
 * @access: non-zero subset of IOPF_ACCESS_ALL
 *
 * The arguments must pass iopf_region_check_args() (engine.h). @fd must be a regular file (memfd
 * included) opened for reading, and for writing too when @access has WRITE, with offset + length <=
 * its size.
 *
 * The region keeps an fd of its own on the file, shared with every other live
 * region of the same tenant on the same file (st_dev, st_ino) opened with the
 * same access mode: one dup per backing object, not per region, so the number
 * of regions is not bounded by RLIMIT_NOFILE. Thread-safe against
 * iopf_region_free() on another thread.
 *
 * Return: 0; -EINVAL (alignment, range, access, size), -EBADF (not a usable
 * fd), -EMFILE, -ENOMEM.
 */
int iopf_region_new(uint64_t tenant, int fd, uint64_t offset, uint64_t iova, uint64_t length,
		    uint32_t access, struct iopf_region **ret);
/*
 * The same with the page bitmaps in @bits, the caller's: room for both (mapped,
 * then start: iopf_persist_bits_size() bytes), zeroed or as an earlier run
 * left them, which the caller keeps and frees itself.
 */
int iopf_region_new_bits(uint64_t tenant, int fd, uint64_t offset, uint64_t iova, uint64_t length,
			 uint32_t access, uint64_t *bits, struct iopf_region **ret);
/*
 * Drops the file reference (the fd closes with the last region using it),
 * unmaps the view, frees. Does not touch the IOAS. Any thread. NULL ok, returns NULL.
 */
struct iopf_region *iopf_region_free(struct iopf_region *r);
/*
 * What the engine keeps per open file (control thread only): the key of its fd
 * in the fd store (0: not kept yet), and its live regions, changed by @delta
 * (removed ones still waiting for their grace period hold a reference, not a
 * life). One fd per file: systemd keeps an open file once, whatever its names.
 */
uint64_t *iopf_region_store_key(struct iopf_region *r);
unsigned iopf_region_file_live(struct iopf_region *r, int delta);

/* Open files shared by live regions, all tenants (tests, diagnostics). */
size_t iopf_region_files(void);

static inline uint64_t iopf_region_last(const struct iopf_region *r)
{
	return r->iova + r->length - 1;
}

/* Page-bitmap operations; worker only. Page numbers are relative to r->iova. */
static inline bool iopf_region_page_mapped(const struct iopf_region *r, uint64_t pg)
{
	/* inline: the resolver asks once per fault, and usually gets yes */
	return r->mapped[pg / 64] & (UINT64_C(1) << (pg % 64));
}
/*
 * Record one map call covering pages [first, first + n), all unmapped before
 * (or tracked as that very call already: tracking it again changes nothing).
 */
void iopf_region_track(struct iopf_region *r, uint64_t first, uint64_t n);
/* Pages tracked as mapped (a count over the bitmap: for a restart, not the fault path). */
uint64_t iopf_region_pages_tracked(const struct iopf_region *r);
/* Forget the extent beginning at @first (n pages). */
void iopf_region_untrack(struct iopf_region *r, uint64_t first, uint64_t n);
/* First maximal run of unmapped pages in [from, to). Return: false if none. */
bool iopf_region_next_hole(const struct iopf_region *r, uint64_t from, uint64_t to,
			   uint64_t *ret_first, uint64_t *ret_n);
/* First extent (one earlier map call) starting at or after @from. Return: false if none. */
bool iopf_region_next_extent(const struct iopf_region *r, uint64_t from, uint64_t *ret_first,
			     uint64_t *ret_n);
/* The daemon's view of the backing, mmapped on first use (worker). Return: 0 or -errno. */
int iopf_region_get_uptr(struct iopf_region *r, void **ret);

/*
 * An immutable, sorted, non-overlapping set of regions; NULL is the empty set.
 * A copy-on-write B+tree (region.c): an update builds a new set in O(log n),
 * sharing every node it does not change with the old one, which stays whole
 * for the readers that still see it. The nodes pack their keys (iova), so a
 * lookup searches a few cache lines per level instead of dereferencing a
 * region per step; up to 64 regions are one node.
 */
struct iopf_region_set_node;

#define IOPF_REGION_SET_MAX_HEIGHT 16 /* 2 * 8^15 regions: more than memory holds */

struct iopf_region_set {
	struct iopf_region_set_node *root; /* owned reference */
	size_t n;
	unsigned height; /* 0: the root is a leaf */
	/*
	 * The region iopf_region_set_find() found last (any region of the set
	 * before that). Faults come in runs on one region, and checking it first
	 * skips the search's chain of dependent loads. The one field written
	 * after publication, and only by the domain's worker: the only thread
	 * that searches a published set.
	 */
	struct iopf_region *hint;
	struct rcu_head rcu;
};

/* New set = @old + @r. Return: 0; -EBUSY (overlap), -ENOMEM. @old is left alone. */
int iopf_region_set_add(const struct iopf_region_set *old, struct iopf_region *r,
			struct iopf_region_set **ret);
/* New set = @old - @r (NULL when empty). Return: 0; -ENOENT, -ENOMEM. @old is left alone. */
int iopf_region_set_del(const struct iopf_region_set *old, const struct iopf_region *r,
			struct iopf_region_set **ret);
/*
 * Free @s (not its regions; the nodes it shares with other sets stay theirs),
 * once no reader can see it. Sets may be freed in any order. NULL ok, returns NULL.
 */
struct iopf_region_set *iopf_region_set_free(struct iopf_region_set *s);
/*
 * The region containing @addr; NULL if none. The last region found, then a
 * search down the tree. Updates the hint: the domain's worker only (see above).
 */
struct iopf_region *iopf_region_set_find(const struct iopf_region_set *s, uint64_t addr);
/* A region of @s overlapping [@iova, @iova + @length), @length > 0; NULL if none. Any thread. */
const struct iopf_region *iopf_region_set_overlap(const struct iopf_region_set *s, uint64_t iova,
						  uint64_t length);

static inline size_t iopf_region_set_size(const struct iopf_region_set *s)
{
	return s ? s->n : 0;
}

/* The region a lookup tries first (NULL for the empty set): for prefetching. */
static inline struct iopf_region *iopf_region_set_hint(const struct iopf_region_set *s)
{
	return s ? s->hint : NULL;
}

/*
 * Every region of a set, ascending iova:
 *	for (r = iopf_region_set_first(s, &it); r; r = iopf_region_set_next(&it))
 * The set must stay alive meanwhile (it does not change: sets are immutable).
 */
struct iopf_region_set_iter {
	const struct iopf_region_set_node *node[IOPF_REGION_SET_MAX_HEIGHT];
	unsigned slot[IOPF_REGION_SET_MAX_HEIGHT];
	unsigned height;
};
struct iopf_region *iopf_region_set_first(const struct iopf_region_set *s,
					  struct iopf_region_set_iter *it);
struct iopf_region *iopf_region_set_next(struct iopf_region_set_iter *it);

#endif /* IOPF_REGION_H */
