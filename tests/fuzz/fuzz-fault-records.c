/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/dataplane/fault.c on arbitrary record bytes, then the responses a worker
 * queues for the groups (lib/dataplane/response.c) written to a backend that
 * keeps what it was given. What must hold for any records:
 * - the groups cover the records exactly, in order, each at least one record;
 *   the inline fast path and iopf_fault_cut_group() cut the same groups;
 * - a group is clean only when it is whole (ends with LAST_PAGE, one cookie,
 *   one dev_id and PASID, the PASID within 20 bits), and its key is its first
 *   record's; masking leaves only the flags the uAPI defines, and a second
 *   pass over the masked records finds the same groups with nothing to mask;
 * - every group is answered exactly once: one write carries each distinct
 *   cookie once, INVALID for a bad group, and a cookie seen twice in one
 *   batch counts the earlier group as dropped.
 */
#include <errno.h>
#include <string.h>

#include "backend.h"
#include "fault-group.h"
#include "fault.h"
#include "fuzz.h"
#include "response.h"
#include "util.h"

#define MAX_RECORDS 512

struct sink {
	struct iopf_backend b;
	struct iommu_hwpt_page_response got[MAX_RECORDS];
	size_t n, writes;
};

static ssize_t sink_write(struct iopf_backend *b, const void *buf, size_t len)
{
	struct sink *s = (struct sink *)b;
	size_t n = len / sizeof(s->got[0]);

	fuzz_check(len % sizeof(s->got[0]) == 0, "a torn response write of %zu bytes", len);
	fuzz_check(s->n + n <= MAX_RECORDS, "more responses than records");
	memcpy(s->got + s->n, buf, len);
	s->n += n;
	s->writes++;
	return (ssize_t)len;
}

static const struct iopf_backend_ops sink_ops = {
	.name = "fuzz-sink",
	.fault_write = sink_write,
};

static bool whole(const struct iommu_hwpt_pgfault *r, const struct iopf_group *g)
{
	const struct iommu_hwpt_pgfault *first = &r[g->first];
	bool pv = first->flags & IOMMU_PGFAULT_FLAGS_PASID_VALID;

	if (!(r[g->first + g->n - 1].flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE))
		return false;
	if (pv && first->pasid > IOPF_PASID_MAX)
		return false;
	for (size_t i = g->first; i < g->first + g->n; i++) {
		if (r[i].cookie != first->cookie || r[i].dev_id != first->dev_id ||
		    (bool)(r[i].flags & IOMMU_PGFAULT_FLAGS_PASID_VALID) != pv ||
		    (pv && r[i].pasid != first->pasid))
			return false;
		if (i < g->first + g->n - 1 && (r[i].flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE))
			return false;
	}
	return true;
}

/* Cut every group of @r (masking in place); returns the count, groups in @g. */
static size_t cut_all(struct iommu_hwpt_pgfault *r, size_t n, struct iopf_group *g)
{
	struct iommu_hwpt_pgfault *copy = malloc(n * sizeof(*r) + 1);
	size_t pos = 0, pos2 = 0, k = 0;
	struct iopf_group g2;

	fuzz_check(copy, "out of memory");
	memcpy(copy, r, n * sizeof(*r));
	while (iopf_fault_cut_group(copy, n, &pos2, &g2)) {
		fuzz_check(k < n, "more groups than records");
		fuzz_check(iopf_fault_next_group(r, n, &pos, &g[k]), "fast path ended early");
		fuzz_check(pos == pos2 && fault_group_equal(&g[k], &g2),
			   "fast path and cut disagree at record %zu", g2.first);
		k++;
	}
	fuzz_check(!iopf_fault_next_group(r, n, &pos, &g2), "fast path goes on");
	fuzz_check(memcmp(r, copy, n * sizeof(*r)) == 0, "the two paths masked differently");
	free(copy);
	return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct iommu_hwpt_pgfault r[MAX_RECORDS], orig[MAX_RECORDS];
	static struct iopf_group g[MAX_RECORDS], again[MAX_RECORDS];
	static struct sink sink = {.b = {.ops = &sink_ops, .fault_fd = -EBADF}};
	size_t n = size / sizeof(r[0]), k, at = 0, distinct = 0;
	struct iopf_counters ctr = {};
	struct iopf_response_batch rb;
	int written;

	if (n > MAX_RECORDS)
		n = MAX_RECORDS;
	memcpy(r, data, n * sizeof(r[0]));
	memcpy(orig, r, n * sizeof(r[0]));

	k = cut_all(r, n, g);
	for (size_t i = 0; i < k; i++) {
		const struct iommu_hwpt_pgfault *first = &orig[g[i].first];
		uint32_t masked = 0;

		fuzz_check(g[i].first == at && g[i].n >= 1, "group %zu does not follow on", i);
		at += g[i].n;
		fuzz_check(g[i].cookie == first->cookie && g[i].dev_id == first->dev_id,
			   "group %zu key is not its first record's", i);
		fuzz_check(g[i].pasid == ((first->flags & IOMMU_PGFAULT_FLAGS_PASID_VALID)
						  ? first->pasid
						  : IOPF_PASID_NONE),
			   "group %zu pasid", i);
		for (size_t j = g[i].first; j < g[i].first + g[i].n; j++) {
			masked += orig[j].flags != r[j].flags;
			fuzz_check(r[j].flags == (orig[j].flags & IOPF_PGFAULT_KNOWN_FLAGS),
				   "record %zu flags 0x%x masked to 0x%x", j, orig[j].flags,
				   r[j].flags);
		}
		fuzz_check(g[i].masked == masked, "group %zu masked %u, counted %u", i, masked,
			   g[i].masked);
		fuzz_check(g[i].bad == !whole(r, &g[i]), "group %zu bad=%d", i, g[i].bad);
	}
	fuzz_check(at == n, "groups cover %zu of %zu records", at, n);
	/* masked records cut the same way, with nothing left to mask */
	fuzz_check(cut_all(r, n, again) == k, "second pass differs");
	for (size_t i = 0; i < k; i++)
		fuzz_check(again[i].masked == 0 && again[i].first == g[i].first &&
				   again[i].n == g[i].n && again[i].bad == g[i].bad,
			   "second pass group %zu", i);

	/* one response per group, each distinct cookie written once */
	fuzz_check(iopf_response_batch_init(&rb, k ? k : 1) == 0, "batch init");
	for (size_t i = 0; i < k; i++)
		iopf_response_add(&rb, g[i].cookie,
				  g[i].bad ? IOMMUFD_PAGE_RESP_INVALID : IOMMUFD_PAGE_RESP_SUCCESS,
				  &ctr);
	sink.n = 0;
	sink.writes = 0;
	written = iopf_response_flush(&rb, &sink.b);
	for (size_t i = 0; i < k; i++) {
		bool later = false;
		size_t hits = 0;

		for (size_t j = i + 1; j < k && !later; j++)
			later = g[j].cookie == g[i].cookie;
		if (later)
			continue; /* superseded by the later group with its cookie */
		distinct++;
		for (size_t j = 0; j < sink.n; j++)
			if (sink.got[j].cookie == g[i].cookie) {
				hits++;
				fuzz_check(sink.got[j].code ==
						   (g[i].bad ? IOMMUFD_PAGE_RESP_INVALID
							     : IOMMUFD_PAGE_RESP_SUCCESS),
					   "cookie %u answered with code %u", g[i].cookie,
					   sink.got[j].code);
			}
		fuzz_check(hits == 1, "cookie %u answered %zu times", g[i].cookie, hits);
	}
	fuzz_check(written == (int)distinct && sink.n == distinct,
		   "flush accepted %d, wrote %zu, %zu distinct cookies", written, sink.n, distinct);
	fuzz_check(sink.writes == (distinct ? 1 : 0), "%zu writes for one batch", sink.writes);
	fuzz_check(ctr.stale == k - distinct, "%zu groups, %zu distinct cookies, %llu stale", k,
		   distinct, (unsigned long long)ctr.stale);
	fuzz_check(rb.n == 0, "batch not empty after flush");
	iopf_response_batch_fini(&rb);
	return 0;
}
