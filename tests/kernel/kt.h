/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The real-kernel suite's view of iommufd and the selftest mock: build a tenant's world
 * (iommufd, IOAS, mock devices, fault queue, fault-capable hwpt), raise faults, look at
 * the fault fd and at the mock's page table. Every call returns 0 (or a count) or -errno.
 */
#ifndef IOPF_KTEST_KT_H
#define IOPF_KTEST_KT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "uapi.h"
#include "mock.h"

#define KT_MAX_DEV 4

/* A mock device bound to a tenant's iommufd. */
struct kt_dev {
	uint32_t stdev_id;     /* the selftest object: MOCK_DOMAIN_REPLACE takes it */
	uint32_t idev_id;      /* the iommufd device id: faults carry it as dev_id */
	uint32_t mock_hwpt_id; /* the paging hwpt MOCK_DOMAIN attached it to first */
};

/* One tenant's iommufd world; every device is attached to fault_hwpt_id. */
struct kt_world {
	int iommufd;
	uint32_t ioas_id;
	uint32_t fault_id;
	int fault_fd;
	uint32_t parent_hwpt_id; /* NEST_PARENT under the nested fault hwpt; 0 in paging mode */
	uint32_t fault_hwpt_id;
	uint32_t check_hwpt_id; /* the paging hwpt MD_CHECK_MAP reads */
	bool nested;		/* 6.12: fault hwpt is NESTED; later kernels: PAGING */
	unsigned n_dev;
	struct kt_dev dev[KT_MAX_DEV];
};

/* Memory a tenant backs its IOVA with: a memfd and the tenant's own shared mapping. */
struct kt_mem {
	int memfd;
	uint8_t *va;
	size_t size;
};

/* Output: every line goes to stdout, prefixed, flushed (the console interleaves). */
void kt_set_name(const char *name);
void kt_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Log "FAIL: ..." and count it; kt_failures() returns the count so far. */
void kt_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
unsigned kt_failures(void);
/* Log "SKIP: ..." (a prerequisite is absent); main then exits 77. */
void kt_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

uint64_t kt_now_ns(void);

/* World. kt_world_open() builds all of it; kt_world_close() copes with half-built ones. */
int kt_world_open(struct kt_world *w, unsigned n_dev);
void kt_world_close(struct kt_world *w);

int kt_mem_open(struct kt_mem *m, size_t size);
void kt_mem_close(struct kt_mem *m);

/* Raw ioctls. */
int kt_ioas_alloc(int iommufd, uint32_t *ret_ioas);
int kt_mock_domain(int iommufd, uint32_t ioas_id, struct kt_dev *ret);
int kt_mock_replace(int iommufd, uint32_t stdev_id, uint32_t pt_id);
int kt_fault_alloc(int iommufd, uint32_t *ret_fault_id, int *ret_fault_fd);
int kt_hwpt_alloc(int iommufd, uint32_t flags, uint32_t dev_id, uint32_t pt_id, uint32_t data_type,
		  const void *data, uint32_t data_len, uint32_t fault_id, uint32_t *ret_hwpt);
int kt_destroy(int iommufd, uint32_t id);
int kt_ioas_map(int iommufd, uint32_t ioas_id, const void *va, uint64_t length, uint64_t iova);
int kt_ioas_unmap(int iommufd, uint32_t ioas_id, uint64_t iova, uint64_t length);
/* 0: [iova, iova+length) maps exactly the memory at uptr; -EINVAL: it does not. */
int kt_check_map(const struct kt_world *w, uint64_t iova, uint64_t length, const void *uptr);
/* pasid 0 raises a fault without PASID_VALID. */
int kt_trigger(const struct kt_world *w, uint32_t idev_id, uint32_t pasid, uint32_t grpid,
	       uint32_t perm, uint64_t addr);

/* Fault fd. */
/* 1 when undelivered groups exist (EPOLLIN), 0 on timeout; timeout_ms 0 only looks. */
int kt_fault_readable(int fault_fd, int timeout_ms);
/* Read up to max records; 0 means "nothing now". */
ssize_t kt_fault_read(int fault_fd, struct iommu_hwpt_pgfault *recs, size_t max);
int kt_fault_respond(int fault_fd, uint32_t cookie, uint32_t code);
/*
 * Probe cookies 1..max: answer each with INVALID and expect EINVAL (not outstanding).
 * Destructive for a cookie that was outstanding; call it only once nobody else will
 * answer on this fault fd. Return: the number of cookies that were outstanding.
 */
int kt_fault_probe_outstanding(int fault_fd, uint32_t max);

/* 1 when process @pid has an fd for the same open file as our @fd (kcmp), 0 if not. */
int kt_pid_holds_file(pid_t pid, int fd);

/* Latency samples and their percentiles. */
struct kt_lat {
	uint64_t *ns;
	size_t n, cap;
};
int kt_lat_add(struct kt_lat *l, uint64_t ns);
/* Sorts in place; q in [0,1]. */
uint64_t kt_lat_pct(struct kt_lat *l, double q);
void kt_lat_free(struct kt_lat *l);

#endif /* IOPF_KTEST_KT_H */
