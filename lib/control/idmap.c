/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>

#include "idmap.h"

#define IDMAP_MIN_CAP 16u

/* Ids are mostly sequential: mix them (splitmix64's finaliser) so runs spread out. */
static size_t slot_of(uint64_t id, size_t cap)
{
	id ^= id >> 30;
	id *= UINT64_C(0xbf58476d1ce4e5b9);
	id ^= id >> 27;
	id *= UINT64_C(0x94d049bb133111eb);
	id ^= id >> 31;
	return (size_t)id & (cap - 1);
}

static int resize(struct iopf_idmap *m, size_t cap)
{
	struct iopf_idmap_slot *v = calloc(cap, sizeof(*v));

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		size_t j;

		if (!m->v[i].id)
			continue;
		for (j = slot_of(m->v[i].id, cap); v[j].id; j = (j + 1) & (cap - 1))
			;
		v[j] = m->v[i];
	}
	free(m->v);
	m->v = v;
	m->cap = cap;
	return 0;
}

/* The slot holding @id, or the empty slot that ends its probe sequence. */
static size_t find(const struct iopf_idmap *m, uint64_t id)
{
	size_t i = slot_of(id, m->cap);

	while (m->v[i].id && m->v[i].id != id)
		i = (i + 1) & (m->cap - 1);
	return i;
}

int iopf_idmap_reserve(struct iopf_idmap *m, size_t extra)
{
	size_t cap = m->cap ? m->cap : IDMAP_MIN_CAP;

	/* at most half full: probe sequences stay short */
	while (cap / 2 < m->n + extra) {
		if (cap > SIZE_MAX / 4)
			return -ENOMEM;
		cap *= 2;
	}
	return cap == m->cap ? 0 : resize(m, cap);
}

int iopf_idmap_put(struct iopf_idmap *m, uint64_t id, void *value)
{
	size_t i;
	int r;

	if (!id || !value)
		return -EINVAL;
	r = iopf_idmap_reserve(m, 1);
	if (r < 0)
		return r;
	i = find(m, id);
	if (m->v[i].id)
		return -EEXIST;
	m->v[i] = (struct iopf_idmap_slot){id, value};
	m->n++;
	return 0;
}

void *iopf_idmap_get(const struct iopf_idmap *m, uint64_t id)
{
	size_t i;

	if (!id || !m->cap)
		return NULL;
	i = find(m, id);
	return m->v[i].id ? m->v[i].value : NULL;
}

void *iopf_idmap_remove(struct iopf_idmap *m, uint64_t id)
{
	size_t i, j, mask = m->cap - 1;
	void *value;

	if (!id || !m->cap)
		return NULL;
	i = find(m, id);
	if (!m->v[i].id)
		return NULL;
	value = m->v[i].value;
	m->v[i] = (struct iopf_idmap_slot){};
	m->n--;
	/* Backward shift: move up every later entry whose home is at or before the hole. */
	for (j = (i + 1) & mask; m->v[j].id; j = (j + 1) & mask) {
		size_t home = slot_of(m->v[j].id, m->cap);

		if (((j - home) & mask) >= ((j - i) & mask)) {
			m->v[i] = m->v[j];
			m->v[j] = (struct iopf_idmap_slot){};
			i = j;
		}
	}
	/* give memory back once a large tenant left; a failed shrink changes nothing */
	if (m->cap > IDMAP_MIN_CAP && 8 * m->n < m->cap)
		(void)resize(m, m->cap / 2);
	return value;
}

void iopf_idmap_done(struct iopf_idmap *m)
{
	free(m->v);
	*m = (struct iopf_idmap){};
}
