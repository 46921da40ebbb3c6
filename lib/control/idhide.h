/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Ids that reveal nothing: a keyed permutation of the engine's and the
 * registry's counters. Unique because it is a permutation, unpredictable
 * without the key (a 6-round Feistel network over 52 bits with SipHash-2-4
 * rounds), never 0, and below 2^53 so JSON readers keep them exact.
 */
#ifndef IOPF_IDHIDE_H
#define IOPF_IDHIDE_H

#include <stdint.h>

struct iopf_idkey {
	uint64_t k[2]; /* a SipHash key */
};

/* Ids of this many bits are permuted; larger ones (never reached) pass unchanged. */
#define IOPF_IDHIDE_BITS 52

/* The id to show for counter value @id (>= 1), and back. Both map 0 to 0. */
uint64_t iopf_idhide(const struct iopf_idkey *key, uint64_t id);
uint64_t iopf_idreveal(const struct iopf_idkey *key, uint64_t shown);

#endif /* IOPF_IDHIDE_H */
