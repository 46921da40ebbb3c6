/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "region.h"

#include <assert.h>
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
	switch (iopf_region_check_fd(fd, offset, length, access, &st, &accmode)) {
	case IOPF_REGION_FD_OK:
		break;
	case IOPF_REGION_FD_TOO_SHORT:
		return -EINVAL;
	default:
		return -EBADF;
	}

	words = (length / IOPF_PAGE_SIZE + WORD_BITS - 1) / WORD_BITS;
	/* Large calloc()s come from fresh anonymous mmaps: untouched words cost nothing. */
	if (!bits) {
		mapped = calloc(words, sizeof(uint64_t));
		start = calloc(words, sizeof(uint64_t));
		if (!mapped || !start)
			return -ENOMEM;
	}
	/* on a line of its own: its first fields are what every fault reads */
	r = calloc_lines(sizeof(*r));
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

uint64_t iopf_region_pages_tracked(const struct iopf_region *r)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < (r->n_pages + WORD_BITS - 1) / WORD_BITS; i++)
		n += (uint64_t)__builtin_popcountll(r->mapped[i]);
	return n;
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

/* ---- the set: a copy-on-write B+tree ---- */

/*
 * Every node is immutable once built: an update copies the path from the root
 * to the leaf it changes (and the siblings a split, merge or share touches)
 * and shares every other subtree with the set before it, so an add or a
 * removal costs O(log n) and readers never lock. Nodes are sized to their
 * entries (a copy is made anyway) and reference-counted: a set owns its root,
 * an inner node its children, so sets can be freed in any order. The counts
 * are written by the control thread (copies) and the call_rcu thread (frees),
 * never by readers.
 */
#define NODE_MAX 64u		/* entries: 512 bytes of keys, 8 cache lines */
#define NODE_MIN (NODE_MAX / 4) /* fewer, and a node below the root merges or shares */

struct iopf_region_set_node {
	unsigned n;
	unsigned cap;  /* the power of two >= n that key[] and the pointers have room for */
	unsigned refs; /* atomic */
	/*
	 * key[i]: a leaf's region i's iova; an inner node's child i's smallest
	 * iova; UINT64_MAX from n to cap, so a search takes log2(cap) + 1 steps
	 * whatever n is. Then cap pointers: regions (leaves, not owned) or
	 * children (owned references).
	 */
	uint64_t key[];
};

/* A node's entry while an update assembles the next node. */
struct ent {
	uint64_t key;
	void *p;
};

static void **node_p(const struct iopf_region_set_node *x)
{
	return (void **)&x->key[x->cap];
}

static void node_ref(struct iopf_region_set_node *x)
{
	__atomic_fetch_add(&x->refs, 1, __ATOMIC_RELAXED);
}

/* Drop a reference on @x, a node at height @h, and free what nobody else holds. */
static void node_unref(struct iopf_region_set_node *x, unsigned h)
{
	if (__atomic_sub_fetch(&x->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (h > 0)
		for (unsigned i = 0; i < x->n; i++)
			node_unref(node_p(x)[i], h - 1);
	free(x);
}

/* A new node (one reference, the caller's) of @n entries; takes the references @e holds. */
static struct iopf_region_set_node *node_new(const struct ent *e, unsigned n)
{
	struct iopf_region_set_node *x;

	unsigned cap = 1;

	assert(n > 0 && n <= NODE_MAX);
	while (cap < n)
		cap *= 2;
	x = malloc(sizeof(*x) + cap * (sizeof(uint64_t) + sizeof(void *)));
	if (!x)
		return NULL;
	x->n = n;
	x->cap = cap;
	x->refs = 1;
	for (unsigned i = 0; i < cap; i++) {
		x->key[i] = i < n ? e[i].key : UINT64_MAX;
		node_p(x)[i] = i < n ? e[i].p : NULL;
	}
	return x;
}

/* Copy @x's entries to @e, taking a reference on each child (height @h > 0). Return: how many. */
static unsigned node_load(const struct iopf_region_set_node *x, unsigned h, struct ent *e)
{
	for (unsigned i = 0; i < x->n; i++) {
		e[i] = (struct ent){x->key[i], node_p(x)[i]};
		if (h > 0)
			node_ref(e[i].p);
	}
	return x->n;
}

/* Undo node_load() and node_new()s not yet linked: drop what @e holds. */
static void ents_drop(const struct ent *e, unsigned n, unsigned h)
{
	for (unsigned i = 0; h > 0 && i < n; i++)
		node_unref(e[i].p, h - 1);
}

static void ent_insert(struct ent *e, unsigned *n, unsigned at, struct ent x)
{
	memmove(&e[at + 1], &e[at], (*n - at) * sizeof(*e));
	e[at] = x;
	(*n)++;
}

static void ent_remove(struct ent *e, unsigned *n, unsigned at)
{
	memmove(&e[at], &e[at + 1], (*n - at - 1) * sizeof(*e));
	(*n)--;
}

/* Index of the first key > @addr; branch-free halving over the packed keys. */
static unsigned node_upper(const struct iopf_region_set_node *x, uint64_t addr)
{
	unsigned i = 0;

	/* invariant: key[j] <= addr for every j < i; the steps add up to cap - 1 */
	for (unsigned step = x->cap / 2; step > 0; step /= 2)
		i = x->key[i + step - 1] <= addr ? i + step : i;
	i += x->key[i] <= addr;
	/* the padding is UINT64_MAX: <= an address of UINT64_MAX */
	return i < x->n ? i : x->n;
}

/*
 * Build the nodes of @e (height @h): one if they fit, else two halves (a
 * split). On failure everything @e holds is dropped.
 * Return: 0; -ENOMEM.
 */
static int build(struct ent *e, unsigned n, unsigned h, struct ent *ret, unsigned *ret_n)
{
	unsigned parts = n > NODE_MAX ? 2 : 1, at = 0;
	struct ent out[2];

	for (unsigned k = 0; k < parts; k++) {
		unsigned m = (n - at) / (parts - k);
		struct iopf_region_set_node *x = node_new(&e[at], m);

		if (!x) {
			if (k > 0)
				node_unref(out[0].p, h); /* gives back what it took from e[] */
			ents_drop(e + at, n - at, h);
			return -ENOMEM;
		}
		out[k] = (struct ent){x->key[0], x};
		at += m;
	}
	memcpy(ret, out, parts * sizeof(*out));
	*ret_n = parts;
	return 0;
}

/* Insert @r below @x (height @h): its replacement, one node or two, in @ret. */
static int insert_below(const struct iopf_region_set_node *x, unsigned h, struct iopf_region *r,
			struct ent *ret, unsigned *ret_n)
{
	struct ent e[NODE_MAX + 1], sub[2];
	unsigned i = node_upper(x, r->iova), n, c, m;
	int rc;

	if (h == 0) {
		n = node_load(x, 0, e);
		ent_insert(e, &n, i, (struct ent){r->iova, r});
		return build(e, n, 0, ret, ret_n);
	}
	c = i > 0 ? i - 1 : 0; /* below every key: the first child */
	rc = insert_below(node_p(x)[c], h - 1, r, sub, &m);
	if (rc < 0)
		return rc;
	n = node_load(x, h, e);
	node_unref(e[c].p, h - 1); /* the child replaced: the old set keeps its own reference */
	e[c] = sub[0];
	if (m == 2)
		ent_insert(e, &n, c + 1, sub[1]);
	return build(e, n, h, ret, ret_n);
}

/*
 * Remove @r below @x (height @h): its replacement in @ret (NULL when it is
 * left empty), which may hold fewer than NODE_MIN entries; the parent mends that.
 */
static int remove_below(const struct iopf_region_set_node *x, unsigned h,
			const struct iopf_region *r, struct iopf_region_set_node **ret)
{
	struct ent e[NODE_MAX + 1], out[2];
	struct iopf_region_set_node *sub;
	unsigned i = node_upper(x, r->iova), n, m, c;
	int rc;

	if (i == 0)
		return -ENOENT;
	c = i - 1;
	if (h == 0) {
		if (node_p(x)[c] != r)
			return -ENOENT;
		n = node_load(x, 0, e);
		ent_remove(e, &n, c);
		if (n == 0) {
			*ret = NULL;
			return 0;
		}
		*ret = node_new(e, n);
		return *ret ? 0 : -ENOMEM;
	}
	rc = remove_below(node_p(x)[c], h - 1, r, &sub);
	if (rc < 0)
		return rc;
	n = node_load(x, h, e);
	node_unref(e[c].p, h - 1);
	if (!sub)
		ent_remove(e, &n, c);
	else if (sub->n >= NODE_MIN || n == 1) {
		e[c] = (struct ent){sub->key[0], sub};
	} else {
		/* Too small: merge it with a sibling, or share their entries evenly. */
		unsigned s = c > 0 ? c - 1 : c + 1, lo = c < s ? c : s;
		const struct iopf_region_set_node *a = lo == c ? sub : e[lo].p;
		const struct iopf_region_set_node *b = lo == c ? e[s].p : sub;
		struct ent both[2 * NODE_MAX];
		unsigned k = node_load(a, h - 1, both);

		k += node_load(b, h - 1, both + k);
		e[c] = (struct ent){sub->key[0], sub}; /* so that the failure path drops it too */
		rc = build(both, k, h - 1, out, &m);
		if (rc < 0) {
			ents_drop(e, n, h);
			return rc;
		}
		node_unref(e[lo].p, h - 1);
		node_unref(e[lo + 1].p, h - 1);
		ent_remove(e, &n, lo);
		e[lo] = out[0];
		if (m == 2)
			ent_insert(e, &n, lo + 1, out[1]);
	}
	if (n == 0) {
		*ret = NULL;
		return 0;
	}
	*ret = node_new(e, n);
	if (!*ret) {
		ents_drop(e, n, h);
		return -ENOMEM;
	}
	return 0;
}

/* The region with the smallest iova below @x (height @h). */
static struct iopf_region *leftmost(const struct iopf_region_set_node *x, unsigned h)
{
	for (; h > 0; h--)
		x = node_p(x)[0];
	return node_p(x)[0];
}

static int set_new(struct iopf_region_set_node *root, unsigned height, size_t n,
		   struct iopf_region *hint, struct iopf_region_set **ret)
{
	struct iopf_region_set *s = calloc(1, sizeof(*s));

	if (!s) {
		node_unref(root, height);
		return -ENOMEM;
	}
	s->root = root;
	s->height = height;
	s->n = n;
	s->hint = hint;
	*ret = s;
	return 0;
}

struct iopf_region_set *iopf_region_set_free(struct iopf_region_set *s)
{
	if (s) {
		node_unref(s->root, s->height);
		free(s);
	}
	return NULL;
}

/*
 * The region with the largest iova <= @addr (NULL: none), and the smallest
 * iova above @addr (@ret_next_node[@ret_next_slot] at height @ret_next_h;
 * node NULL: none), from one descent.
 */
static struct iopf_region *neighbours(const struct iopf_region_set *s, uint64_t addr,
				      const struct iopf_region_set_node **ret_next_node,
				      unsigned *ret_next_slot, unsigned *ret_next_h)
{
	const struct iopf_region_set_node *x = s ? s->root : NULL;

	*ret_next_node = NULL;
	for (unsigned h = s ? s->height : 0; x; h--) {
		unsigned i = node_upper(x, addr);

		if (i < x->n) {
			*ret_next_node = x;
			*ret_next_slot = i;
			*ret_next_h = h;
		}
		if (i == 0)
			return NULL;
		if (h == 0)
			return node_p(x)[i - 1];
		x = node_p(x)[i - 1];
	}
	return NULL;
}

const struct iopf_region *iopf_region_set_overlap(const struct iopf_region_set *s, uint64_t iova,
						  uint64_t length)
{
	const struct iopf_region_set_node *next;
	struct iopf_region *prev;
	unsigned slot = 0, h = 0;

	prev = neighbours(s, iova, &next, &slot, &h);
	/* only the neighbours on each side can overlap */
	if (prev && iopf_region_last(prev) >= iova)
		return prev;
	if (next && next->key[slot] <= iova + (length - 1))
		return h == 0 ? node_p(next)[slot] : leftmost(node_p(next)[slot], h - 1);
	return NULL;
}

int iopf_region_set_add(const struct iopf_region_set *old, struct iopf_region *r,
			struct iopf_region_set **ret)
{
	struct ent e[2];
	unsigned m, height = old ? old->height : 0;
	int rc;

	if (iopf_region_set_overlap(old, r->iova, r->length))
		return -EBUSY;
	if (!old) {
		struct iopf_region_set_node *leaf;

		e[0] = (struct ent){r->iova, r};
		leaf = node_new(e, 1);
		return leaf ? set_new(leaf, 0, 1, r, ret) : -ENOMEM;
	}
	rc = insert_below(old->root, height, r, e, &m);
	if (rc < 0)
		return rc;
	if (m == 2) {
		/* the root split: a new root over both halves */
		struct iopf_region_set_node *root = node_new(e, 2);

		if (!root) {
			ents_drop(e, 2, height + 1);
			return -ENOMEM;
		}
		e[0] = (struct ent){root->key[0], root};
		height++;
		assert(height < IOPF_REGION_SET_MAX_HEIGHT);
	}
	return set_new(e[0].p, height, old->n + 1, r, ret);
}

int iopf_region_set_del(const struct iopf_region_set *old, const struct iopf_region *r,
			struct iopf_region_set **ret)
{
	struct iopf_region_set_node *root;
	unsigned height;
	int rc;

	if (!old)
		return -ENOENT;
	rc = remove_below(old->root, old->height, r, &root);
	if (rc < 0)
		return rc;
	if (!root) {
		*ret = NULL;
		return 0;
	}
	/* a root of one child gives way to it */
	for (height = old->height; height > 0 && root->n == 1; height--) {
		struct iopf_region_set_node *child = node_p(root)[0];

		node_ref(child);
		node_unref(root, height);
		root = child;
	}
	return set_new(root, height, old->n - 1, leftmost(root, height), ret);
}

_Static_assert(offsetof(struct iopf_region, n_pages) + sizeof(uint64_t) <= IOPF_CACHE_LINE,
	       "what a fault reads of its region is in the first line");

struct iopf_region *iopf_region_set_find(const struct iopf_region_set *s, uint64_t addr)
{
	const struct iopf_region_set_node *x;
	struct iopf_region *r;
	unsigned i;

	if (!s)
		return NULL;
	/* a non-empty set always has a hint */
	r = s->hint;
	if (addr - r->iova < r->length)
		return r;
	x = s->root;
	for (unsigned h = s->height;; h--) {
		i = node_upper(x, addr);
		if (i == 0)
			return NULL;
		if (h == 0)
			break;
		x = node_p(x)[i - 1];
	}
	r = node_p(x)[i - 1];
	if (addr - r->iova >= r->length)
		return NULL;
	/* the set is not const, only its published layout is: see struct iopf_region_set */
	((struct iopf_region_set *)s)->hint = r;
	return r;
}

struct iopf_region *iopf_region_set_first(const struct iopf_region_set *s,
					  struct iopf_region_set_iter *it)
{
	const struct iopf_region_set_node *x;

	if (!s)
		return NULL;
	it->height = s->height;
	x = s->root;
	for (unsigned h = s->height;; h--) {
		it->node[h] = x;
		it->slot[h] = 0;
		if (h == 0)
			break;
		x = node_p(x)[0];
	}
	return node_p(x)[0];
}

struct iopf_region *iopf_region_set_next(struct iopf_region_set_iter *it)
{
	unsigned h = 0;

	/* up to the first level with an entry left, then down its leftmost path */
	while (it->slot[h] + 1 >= it->node[h]->n)
		if (++h > it->height)
			return NULL;
	it->slot[h]++;
	for (; h > 0; h--) {
		it->node[h - 1] = node_p(it->node[h])[it->slot[h]];
		it->slot[h - 1] = 0;
	}
	return node_p(it->node[0])[it->slot[0]];
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
