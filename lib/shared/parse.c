/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Value parsers shared by the configuration, the tools and the tests. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "parse.h"
#include "util.h"

struct unit {
	const char *suffix;
	uint64_t factor;
};

/* Decimal (or 0x hex) without sign, spaces or trailing junk. */
int parse_u64(const char *s, uint64_t *ret)
{
	unsigned long long v;
	char *end;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno)
		return errno > 0 ? -errno : -EINVAL; /* never 0: callers rely on *ret being set */
	if (*end)
		return -EINVAL;
	*ret = v;
	return 0;
}

int parse_unsigned(const char *s, unsigned min, unsigned max, unsigned *ret)
{
	uint64_t v;
	int r = parse_u64(s, &v);

	if (r < 0)
		return r;
	if (v < min || v > max)
		return -ERANGE;
	*ret = (unsigned)v;
	return 0;
}

/* A number followed by one of @units (longest suffixes first), or by nothing when @plain. */
static int parse_with_unit(const char *s, const struct unit *units, size_t n_units, uint64_t plain,
			   uint64_t *ret)
{
	char num[32];
	size_t len = s ? strlen(s) : 0;
	uint64_t v;
	int r;

	if (len == 0 || len >= sizeof(num))
		return -EINVAL;
	for (size_t i = 0; i < n_units; i++) {
		size_t sl = strlen(units[i].suffix);

		if (len > sl && strcmp(s + len - sl, units[i].suffix) == 0) {
			memcpy(num, s, len - sl);
			num[len - sl] = '\0';
			r = parse_u64(num, &v);
			if (r < 0)
				return r;
			if (v > UINT64_MAX / units[i].factor)
				return -ERANGE;
			*ret = v * units[i].factor;
			return 0;
		}
	}
	if (!plain)
		return -EINVAL;
	r = parse_u64(s, &v);
	if (r < 0)
		return r;
	if (v > UINT64_MAX / plain)
		return -ERANGE;
	*ret = v * plain;
	return 0;
}

/* Bytes with an optional K, M, G or T (KiB...) suffix, 1024-based. */
int parse_size(const char *s, uint64_t *ret)
{
	static const struct unit units[] = {
		{"KiB", UINT64_C(1) << 10}, {"MiB", UINT64_C(1) << 20}, {"GiB", UINT64_C(1) << 30},
		{"TiB", UINT64_C(1) << 40}, {"K", UINT64_C(1) << 10},	{"M", UINT64_C(1) << 20},
		{"G", UINT64_C(1) << 30},   {"T", UINT64_C(1) << 40},	{"B", 1},
	};

	return parse_with_unit(s, units, ARRAY_SIZE(units), 1, ret);
}

/* A duration: "10s", "500ms", "2min", "1h", "250us"; a bare number is seconds. */
int parse_duration(const char *s, uint64_t *ret_usec)
{
	static const struct unit units[] = {
		{"min", 60 * USEC_PER_SEC}, {"ms", 1000}, {"us", 1}, {"s", USEC_PER_SEC},
		{"h", 3600 * USEC_PER_SEC},
	};

	return parse_with_unit(s, units, ARRAY_SIZE(units), USEC_PER_SEC, ret_usec);
}

int parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = {"1", "yes", "y", "true", "on"};
	static const char *const no[] = {"0", "no", "n", "false", "off"};

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
		if (strcasecmp(s, yes[i]) == 0)
			return *ret = true, 0;
	for (size_t i = 0; i < ARRAY_SIZE(no); i++)
		if (strcasecmp(s, no[i]) == 0)
			return *ret = false, 0;
	return -EINVAL;
}
