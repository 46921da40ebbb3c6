/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A growable array of uint64_t: ids, offsets, samples. */
#ifndef IOPF_U64VEC_H
#define IOPF_U64VEC_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

struct u64vec {
	uint64_t *v;
	size_t n, cap;
};

/* Append @x, doubling the room from 16. Return: 0 or -ENOMEM (nothing changed). */
static inline int u64vec_push(struct u64vec *a, uint64_t x)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 16;
		uint64_t *v = realloc(a->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n++] = x;
	return 0;
}

static inline void u64vec_done(struct u64vec *a)
{
	free(a->v);
	*a = (struct u64vec){};
}

#endif /* IOPF_U64VEC_H */
