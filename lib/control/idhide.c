/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "idhide.h"

#define HALF_BITS (IOPF_IDHIDE_BITS / 2)
#define HALF_MASK ((UINT64_C(1) << HALF_BITS) - 1)
#define ROUNDS	  6u

static uint64_t rotl(uint64_t x, unsigned b)
{
	return (x << b) | (x >> (64 - b));
}

#define SIPROUND(v0, v1, v2, v3)                                                                   \
	do {                                                                                       \
		v0 += v1;                                                                          \
		v1 = rotl(v1, 13);                                                                 \
		v1 ^= v0;                                                                          \
		v0 = rotl(v0, 32);                                                                 \
		v2 += v3;                                                                          \
		v3 = rotl(v3, 16);                                                                 \
		v3 ^= v2;                                                                          \
		v0 += v3;                                                                          \
		v3 = rotl(v3, 21);                                                                 \
		v3 ^= v0;                                                                          \
		v2 += v1;                                                                          \
		v1 = rotl(v1, 17);                                                                 \
		v1 ^= v2;                                                                          \
		v2 = rotl(v2, 32);                                                                 \
	} while (0)

/* SipHash-2-4 of one 8-byte message (Aumasson and Bernstein's reference, specialised). */
static uint64_t siphash_u64(const struct iopf_idkey *key, uint64_t m)
{
	uint64_t v0 = key->k[0] ^ UINT64_C(0x736f6d6570736575);
	uint64_t v1 = key->k[1] ^ UINT64_C(0x646f72616e646f6d);
	uint64_t v2 = key->k[0] ^ UINT64_C(0x6c7967656e657261);
	uint64_t v3 = key->k[1] ^ UINT64_C(0x7465646279746573);
	const uint64_t last = UINT64_C(8) << 56; /* the length byte of an 8-byte message */

	v3 ^= m;
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	v0 ^= m;
	v3 ^= last;
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	v0 ^= last;
	v2 ^= 0xff;
	for (unsigned i = 0; i < 4; i++)
		SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t round_fn(const struct iopf_idkey *key, unsigned round, uint64_t half)
{
	return siphash_u64(key, (uint64_t)round << 32 | half) & HALF_MASK;
}

/* A permutation of [0, 2^52): a balanced Feistel network is one whatever its rounds. */
static uint64_t permute(const struct iopf_idkey *key, uint64_t x)
{
	uint64_t l = x >> HALF_BITS, r = x & HALF_MASK;

	for (unsigned i = 0; i < ROUNDS; i++) {
		uint64_t t = l ^ round_fn(key, i, r);

		l = r;
		r = t;
	}
	return l << HALF_BITS | r;
}

static uint64_t unpermute(const struct iopf_idkey *key, uint64_t y)
{
	uint64_t l = y >> HALF_BITS, r = y & HALF_MASK;

	for (unsigned i = ROUNDS; i-- > 0;) {
		uint64_t t = r ^ round_fn(key, i, l);

		r = l;
		l = t;
	}
	return l << HALF_BITS | r;
}

/*
 * 0 is "no id": walking the cycle past it (at most one more step, since only
 * 0 is left out) keeps [1, 2^52) onto itself, one to one. Ids outside are
 * passed as they are.
 */
static uint64_t walk(const struct iopf_idkey *key, uint64_t x,
		     uint64_t (*step)(const struct iopf_idkey *key, uint64_t x))
{
	uint64_t y;

	if (x == 0 || x >> IOPF_IDHIDE_BITS)
		return x;
	y = step(key, x);
	return y ? y : step(key, y);
}

uint64_t iopf_idhide(const struct iopf_idkey *key, uint64_t id)
{
	return walk(key, id, permute);
}

uint64_t iopf_idreveal(const struct iopf_idkey *key, uint64_t shown)
{
	return walk(key, shown, unpermute);
}
