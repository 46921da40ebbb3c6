/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A hash map from a non-zero uint64_t id to a pointer: open addressing with
 * linear probing and backward-shift deletion, so lookups, inserts and removals
 * are O(1) expected whatever the order ids come and go in. The control plane
 * finds tenants and the objects they registered with it, so no request costs
 * a walk over everyone else's.
 */
#ifndef IOPF_IDMAP_H
#define IOPF_IDMAP_H

#include <stddef.h>
#include <stdint.h>

struct iopf_idmap_slot {
	uint64_t id; /* 0: empty */
	void *value;
};

/* Zero-initialised is empty. */
struct iopf_idmap {
	struct iopf_idmap_slot *v; /* owned; cap slots, a power of two (or NULL) */
	size_t cap, n;
};

/* Room for @extra more ids, so the next puts cannot fail for memory. Return: 0 or -ENOMEM. */
int iopf_idmap_reserve(struct iopf_idmap *m, size_t extra);
/* Return: 0, -EINVAL (id 0 or value NULL), -EEXIST, -ENOMEM (nothing changed). */
int iopf_idmap_put(struct iopf_idmap *m, uint64_t id, void *value);
/* The value of @id, or NULL. */
void *iopf_idmap_get(const struct iopf_idmap *m, uint64_t id);
/* Remove @id; returns its value, or NULL when it was not there. Shrinks when sparse. */
void *iopf_idmap_remove(struct iopf_idmap *m, uint64_t id);
/* Free the slots (not the values). */
void iopf_idmap_done(struct iopf_idmap *m);

#endif /* IOPF_IDMAP_H */
