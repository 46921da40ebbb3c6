/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What every fuzz target uses: the libFuzzer entry point, a check that aborts
 * (so libFuzzer, ASan and the replay driver all see a crash), and a reader
 * that shapes the input bytes into arguments. A target asserts what must hold
 * for any input; it never trusts the input to be well-formed.
 */
#ifndef IOPF_FUZZ_H
#define IOPF_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define fuzz_check(cond, ...)                                                                      \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);   \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* A refusal as the project returns them: a negative errno, nothing else. */
static inline bool fuzz_is_errno(long long r)
{
	return r < 0 && r >= -4095;
}

/* The input, consumed from the front; reads past the end give zeros. */
struct fuzz_in {
	const uint8_t *p;
	size_t n;
};

static inline bool fuzz_done(const struct fuzz_in *in)
{
	return in->n == 0;
}

/* @bytes (at most 8) little-endian bytes of the input. */
static inline uint64_t fuzz_take(struct fuzz_in *in, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes && in->n; i++, in->p++, in->n--)
		v |= (uint64_t)*in->p << (8 * i);
	return v;
}

static inline uint8_t fuzz_u8(struct fuzz_in *in)
{
	return (uint8_t)fuzz_take(in, 1);
}

static inline uint32_t fuzz_u32(struct fuzz_in *in)
{
	return (uint32_t)fuzz_take(in, 4);
}

static inline uint64_t fuzz_u64(struct fuzz_in *in)
{
	return fuzz_take(in, 8);
}

/*
 * A 64-bit argument the way a hostile caller picks one: mostly from the edges
 * that checks get wrong (0, page multiples, 2^64 - page, ...), sometimes raw.
 */
static inline uint64_t fuzz_edgy_u64(struct fuzz_in *in, uint64_t unit)
{
	static const uint64_t edges[] = {
		0,
		1,
		4096,
		8192,
		65536,
		1u << 20,
		UINT64_C(1) << 32,
		UINT64_C(1) << 63,
		UINT64_MAX - 4095,
		UINT64_MAX,
	};
	uint8_t k = fuzz_u8(in);

	if (k < 96)
		return (uint64_t)(k % 16) * unit; /* small multiples of @unit */
	if (k < 200)
		return edges[k % (sizeof(edges) / sizeof(edges[0]))];
	return fuzz_u64(in);
}

#endif /* IOPF_FUZZ_H */
