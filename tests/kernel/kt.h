/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The real-kernel suite's view of iommufd and the selftest mock: build a tenant's world
 * (iommufd, IOAS, mock devices, fault queue, fault-capable hwpt), raise faults, look at
 * the fault fd and at the mock's page table. Every call returns 0 (or a count) or -errno.
 */
#ifndef IOPF_KTEST_KT_H
#define IOPF_KTEST_KT_H

#include "u64vec.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "uapi.h"
#include "mock.h"

#define KT_MAX_DEV	4
#define KT_MAX_ATTACHED 32 /* PASID attachments one world keeps track of */

/*
 * How a world carries its fault queue. Which ones a kernel offers is probed
 * (kt_layouts_probe()), never read off its version.
 *  NESTED: the fault hwpt is NESTED on a NEST_PARENT paging hwpt; the RID is attached to
 *	it and the mock routes every PASID's faults to the RID's nested domain (6.12 on).
 *  PAGING: the fault hwpt is a PAGING hwpt on the IOAS (FAULT_ID_VALID, ALLOC_PASID),
 *	attached to the RID and to each PASID in use (devices made with
 *	MOCK_FLAGS_DEVICE_PASID); a PASID with nothing attached has no handler: its faults
 *	are answered by the kernel and never reach the queue.
 */
enum kt_layout {
	KT_LAYOUT_NESTED,
	KT_LAYOUT_PAGING,
	_KT_LAYOUT_MAX,
};

const char *kt_layout_name(enum kt_layout l);
/* Return: 0 and *ret, or -EINVAL for a name that is no layout. */
int kt_layout_parse(const char *name, enum kt_layout *ret);
/* Bit (1 << layout) set for each layout this kernel can build a world in. */
unsigned kt_layouts_probe(void);

/* A mock device bound to a tenant's iommufd. */
struct kt_dev {
	uint32_t stdev_id;     /* the selftest object: MOCK_DOMAIN_REPLACE takes it */
	uint32_t idev_id;      /* the iommufd device id: faults carry it as dev_id */
	uint32_t mock_hwpt_id; /* the paging hwpt MOCK_DOMAIN attached it to first */
};

/* A PASID of a device attached to a hwpt (PAGING layout). */
struct kt_attached {
	unsigned dev;
	uint32_t pasid;
	uint32_t hwpt_id;
};

/* One tenant's iommufd world; every device's RID is attached to fault_hwpt_id. */
struct kt_world {
	int iommufd;
	uint32_t ioas_id;
	uint32_t fault_id;
	int fault_fd;
	uint32_t parent_hwpt_id; /* NEST_PARENT under the nested fault hwpt; 0 in paging mode */
	uint32_t fault_hwpt_id;
	uint32_t check_hwpt_id; /* the paging hwpt MD_CHECK_MAP reads */
	enum kt_layout layout;
	bool nested; /* layout == KT_LAYOUT_NESTED */
	unsigned n_dev;
	struct kt_dev dev[KT_MAX_DEV];
	unsigned n_attached; /* PASIDs attached; kt_world_close() detaches them first */
	struct kt_attached attached[KT_MAX_ATTACHED];
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

/*
 * World. kt_world_open() builds all of it in @layout; kt_world_close() copes with
 * half-built ones, and detaches every PASID before the devices can go (a mock device
 * destroyed with a PASID still attached makes the kernel WARN).
 */
int kt_world_open(struct kt_world *w, unsigned n_dev, enum kt_layout layout);
void kt_world_close(struct kt_world *w);
/*
 * Attach PASID @pasid of device @dev (an index) to the fault hwpt, so that its faults
 * reach the queue. Nothing to do in the NESTED layout (the RID's nested hwpt takes every
 * PASID's faults), nor when it is attached already. Return: 0 or -errno.
 */
int kt_world_attach_pasid(struct kt_world *w, unsigned dev, uint32_t pasid);
/* Detach it (the kernel answers INVALID what it held of that attach). 0 when not attached. */
int kt_world_detach_pasid(struct kt_world *w, unsigned dev, uint32_t pasid);
/* PAGING layout: move an attached PASID to @hwpt_id (PASID_REPLACE). */
int kt_world_replace_pasid(struct kt_world *w, unsigned dev, uint32_t pasid, uint32_t hwpt_id);
/* PAGING layout: 0 when @pasid of @dev is attached to @hwpt_id (0: to nothing), else -EINVAL. */
int kt_world_check_pasid(const struct kt_world *w, unsigned dev, uint32_t pasid, uint32_t hwpt_id);
/* PAGING layout: one more PASID-capable paging fault hwpt on the world's IOAS and queue. */
int kt_world_fault_hwpt(struct kt_world *w, uint32_t *ret_hwpt);

int kt_mem_open(struct kt_mem *m, size_t size);
void kt_mem_close(struct kt_mem *m);

/* Raw ioctls. */
int kt_ioas_alloc(int iommufd, uint32_t *ret_ioas);
/* dev_flags: 0 (MOCK_DOMAIN), or MOCK_DOMAIN_FLAGS with these flags. */
int kt_mock_domain(int iommufd, uint32_t ioas_id, uint32_t dev_flags, struct kt_dev *ret);
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

/*
 * The kernel has IOMMU_IOAS_MAP_FILE: asked with fd -1 it fails with EBADF (any error but
 * ENOTTY/EOPNOTSUPP), where an older one does not know the ioctl. The daemon probes the same.
 */
bool kt_has_map_file(const struct kt_world *w);
/* Mappings of @fd's file (same device and inode) in /proc/@pid/maps: a count, or -errno. */
int kt_pid_maps_file(pid_t pid, int fd);

/* 1 when process @pid has an fd for the same open file as our @fd (kcmp), 0 if not. */
int kt_pid_holds_file(pid_t pid, int fd);

/* Latency samples and their percentiles. */
/* Latency samples, ns: a u64vec (lib/shared). */
struct kt_lat {
	struct u64vec v;
};
int kt_lat_add(struct kt_lat *l, uint64_t ns);
/* Sorts in place; q in [0,1]. */
uint64_t kt_lat_pct(struct kt_lat *l, double q);
void kt_lat_free(struct kt_lat *l);

#endif /* IOPF_KTEST_KT_H */
