/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Value parsers: the one place that says what a number, a size, a duration
 * and a boolean look like in iopfd.conf, on command lines and in tests.
 * Each returns 0 and sets *ret, or -EINVAL (not of that form) / -ERANGE
 * (too large, or outside [min, max]) and leaves *ret alone.
 */
#ifndef IOPF_PARSE_H
#define IOPF_PARSE_H

#include <stdbool.h>
#include <stdint.h>

#define USEC_PER_SEC UINT64_C(1000000)

/* Decimal (or 0x hex) without sign, spaces or trailing junk. */
int parse_u64(const char *s, uint64_t *ret);
int parse_unsigned(const char *s, unsigned min, unsigned max, unsigned *ret);
/* Bytes with an optional B, K, M, G or T (or KiB...) suffix, 1024-based. */
int parse_size(const char *s, uint64_t *ret);
/* "10s", "500ms", "2min", "1h", "250us"; a bare number is seconds. */
int parse_duration(const char *s, uint64_t *ret_usec);
/* 1/yes/y/true/on, 0/no/n/false/off, any case. */
int parse_bool(const char *s, bool *ret);

#endif /* IOPF_PARSE_H */
