/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iommufd and selftest-mock helpers for the real-kernel suite (see kt.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>
#include <linux/kcmp.h>

#include "kt.h"

static const char *log_name = "ktest";
static unsigned n_failures;

void kt_set_name(const char *name)
{
	log_name = name;
}

__attribute__((format(printf, 2, 0))) static void vlog(const char *tag, const char *fmt, va_list ap)
{
	char buf[1024];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	printf("[%s] %s%s\n", log_name, tag, buf);
	fflush(stdout);
}

void kt_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog("", fmt, ap);
	va_end(ap);
}

void kt_fail(const char *fmt, ...)
{
	va_list ap;

	n_failures++;
	va_start(ap, fmt);
	vlog("FAIL: ", fmt, ap);
	va_end(ap);
}

unsigned kt_failures(void)
{
	return n_failures;
}

void kt_skip(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog("SKIP: ", fmt, ap);
	va_end(ap);
}

uint64_t kt_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int xioctl(int fd, unsigned long req, void *arg)
{
	if (ioctl(fd, req, arg) < 0)
		return errno > 0 ? -errno : -EIO;
	return 0;
}

int kt_ioas_alloc(int iommufd, uint32_t *ret_ioas)
{
	struct iommu_ioas_alloc cmd = {.size = sizeof(cmd)};
	int r;

	r = xioctl(iommufd, IOMMU_IOAS_ALLOC, &cmd);
	if (r < 0)
		return r;
	*ret_ioas = cmd.out_ioas_id;
	return 0;
}

int kt_mock_domain(int iommufd, uint32_t ioas_id, uint32_t dev_flags, struct kt_dev *ret)
{
	struct mock_cmd cmd = {
		.size = sizeof(cmd),
		.op = dev_flags ? MOCK_OP_MOCK_DOMAIN_FLAGS : MOCK_OP_MOCK_DOMAIN,
		.id = ioas_id,
	};
	int r;

	if (dev_flags)
		cmd.mock_domain_flags.dev_flags = dev_flags;
	r = xioctl(iommufd, MOCK_CMD, &cmd);
	if (r < 0)
		return r;
	ret->stdev_id = cmd.mock_domain.out_stdev_id;
	ret->idev_id = cmd.mock_domain.out_idev_id;
	ret->mock_hwpt_id = cmd.mock_domain.out_hwpt_id;
	return 0;
}

int kt_mock_replace(int iommufd, uint32_t stdev_id, uint32_t pt_id)
{
	struct mock_cmd cmd = {
		.size = sizeof(cmd),
		.op = MOCK_OP_MOCK_DOMAIN_REPLACE,
		.id = stdev_id,
		.mock_domain_replace.pt_id = pt_id,
	};

	return xioctl(iommufd, MOCK_CMD, &cmd);
}

int kt_fault_alloc(int iommufd, uint32_t *ret_fault_id, int *ret_fault_fd)
{
	struct iommu_fault_alloc cmd = {.size = sizeof(cmd)};
	int r;

	r = xioctl(iommufd, IOMMU_FAULT_QUEUE_ALLOC, &cmd);
	if (r < 0)
		return r;
	*ret_fault_id = cmd.out_fault_id;
	*ret_fault_fd = (int)cmd.out_fault_fd;
	return 0;
}

int kt_hwpt_alloc(int iommufd, uint32_t flags, uint32_t dev_id, uint32_t pt_id, uint32_t data_type,
		  const void *data, uint32_t data_len, uint32_t fault_id, uint32_t *ret_hwpt)
{
	struct iommu_hwpt_alloc cmd = {
		.size = sizeof(cmd),
		.flags = flags,
		.dev_id = dev_id,
		.pt_id = pt_id,
		.data_type = data_type,
		.data_len = data_len,
		.data_uptr = (uintptr_t)data,
		.fault_id = fault_id,
	};
	int r;

	r = xioctl(iommufd, IOMMU_HWPT_ALLOC, &cmd);
	if (r < 0)
		return r;
	*ret_hwpt = cmd.out_hwpt_id;
	return 0;
}

int kt_destroy(int iommufd, uint32_t id)
{
	struct iommu_destroy cmd = {.size = sizeof(cmd), .id = id};

	return xioctl(iommufd, IOMMU_DESTROY, &cmd);
}

int kt_ioas_map(int iommufd, uint32_t ioas_id, const void *va, uint64_t length, uint64_t iova)
{
	struct iommu_ioas_map cmd = {
		.size = sizeof(cmd),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = ioas_id,
		.user_va = (uintptr_t)va,
		.length = length,
		.iova = iova,
	};

	return xioctl(iommufd, IOMMU_IOAS_MAP, &cmd);
}

int kt_ioas_unmap(int iommufd, uint32_t ioas_id, uint64_t iova, uint64_t length)
{
	struct iommu_ioas_unmap cmd = {
		.size = sizeof(cmd),
		.ioas_id = ioas_id,
		.iova = iova,
		.length = length,
	};

	return xioctl(iommufd, IOMMU_IOAS_UNMAP, &cmd);
}

int kt_check_map(const struct kt_world *w, uint64_t iova, uint64_t length, const void *uptr)
{
	struct mock_cmd cmd = {
		.size = sizeof(cmd),
		.op = MOCK_OP_MD_CHECK_MAP,
		.id = w->check_hwpt_id,
		.check_map = {.iova = iova, .length = length, .uptr = (uintptr_t)uptr},
	};

	return xioctl(w->iommufd, MOCK_CMD, &cmd);
}

int kt_trigger(const struct kt_world *w, uint32_t idev_id, uint32_t pasid, uint32_t grpid,
	       uint32_t perm, uint64_t addr)
{
	struct mock_cmd cmd = {
		.size = sizeof(cmd),
		.op = MOCK_OP_TRIGGER_IOPF,
		.trigger_iopf =
			{
				.dev_id = idev_id,
				.pasid = pasid,
				.grpid = grpid,
				.perm = perm,
				.addr = addr,
			},
	};

	return xioctl(w->iommufd, MOCK_CMD, &cmd);
}

const char *kt_layout_name(enum kt_layout l)
{
	switch (l) {
	case KT_LAYOUT_NESTED:
		return "nested";
	case KT_LAYOUT_PAGING:
		return "paging";
	case _KT_LAYOUT_MAX:
		break;
	}
	return "?";
}

int kt_layout_parse(const char *name, enum kt_layout *ret)
{
	for (unsigned l = 0; l < _KT_LAYOUT_MAX; l++)
		if (strcmp(name, kt_layout_name(l)) == 0) {
			*ret = l;
			return 0;
		}
	return -EINVAL;
}

static int pasid_cmd(const struct kt_world *w, unsigned op, unsigned dev, uint32_t pasid,
		     uint32_t hwpt_id)
{
	struct mock_cmd cmd = {.size = sizeof(cmd), .op = op, .id = w->dev[dev].stdev_id};

	if (op == MOCK_OP_PASID_DETACH) {
		cmd.pasid_detach.pasid = pasid;
	} else if (op == MOCK_OP_PASID_CHECK_HWPT) {
		cmd.pasid_check.pasid = pasid;
		cmd.pasid_check.hwpt_id = hwpt_id;
	} else {
		cmd.pasid_attach.pasid = pasid;
		cmd.pasid_attach.pt_id = hwpt_id;
	}
	return xioctl(w->iommufd, MOCK_CMD, &cmd);
}

static struct kt_attached *attached_find(struct kt_world *w, unsigned dev, uint32_t pasid)
{
	for (unsigned i = 0; i < w->n_attached; i++)
		if (w->attached[i].dev == dev && w->attached[i].pasid == pasid)
			return &w->attached[i];
	return NULL;
}

int kt_world_attach_pasid(struct kt_world *w, unsigned dev, uint32_t pasid)
{
	int r;

	if (w->layout != KT_LAYOUT_PAGING || pasid == 0)
		return 0;
	if (dev >= w->n_dev)
		return -EINVAL;
	if (attached_find(w, dev, pasid))
		return 0;
	if (w->n_attached == KT_MAX_ATTACHED)
		return -ENOSPC;
	r = pasid_cmd(w, MOCK_OP_PASID_ATTACH, dev, pasid, w->fault_hwpt_id);
	if (r < 0)
		return r;
	w->attached[w->n_attached++] =
		(struct kt_attached){.dev = dev, .pasid = pasid, .hwpt_id = w->fault_hwpt_id};
	return 0;
}

int kt_world_detach_pasid(struct kt_world *w, unsigned dev, uint32_t pasid)
{
	struct kt_attached *a = attached_find(w, dev, pasid);
	int r;

	if (!a)
		return 0;
	r = pasid_cmd(w, MOCK_OP_PASID_DETACH, dev, pasid, 0);
	if (r < 0)
		return r;
	*a = w->attached[--w->n_attached];
	return 0;
}

int kt_world_replace_pasid(struct kt_world *w, unsigned dev, uint32_t pasid, uint32_t hwpt_id)
{
	struct kt_attached *a = attached_find(w, dev, pasid);
	int r;

	if (!a)
		return -ENOENT;
	r = pasid_cmd(w, MOCK_OP_PASID_REPLACE, dev, pasid, hwpt_id);
	if (r < 0)
		return r;
	a->hwpt_id = hwpt_id;
	return 0;
}

int kt_world_check_pasid(const struct kt_world *w, unsigned dev, uint32_t pasid, uint32_t hwpt_id)
{
	if (w->layout != KT_LAYOUT_PAGING || dev >= w->n_dev)
		return -EINVAL;
	return pasid_cmd(w, MOCK_OP_PASID_CHECK_HWPT, dev, pasid, hwpt_id);
}

int kt_world_fault_hwpt(struct kt_world *w, uint32_t *ret_hwpt)
{
	if (w->layout != KT_LAYOUT_PAGING)
		return -EINVAL;
	return kt_hwpt_alloc(w->iommufd, IOMMU_HWPT_FAULT_ID_VALID | KT_HWPT_ALLOC_PASID,
			     w->dev[0].idev_id, w->ioas_id, IOMMU_HWPT_DATA_NONE, NULL, 0,
			     w->fault_id, ret_hwpt);
}

void kt_world_close(struct kt_world *w)
{
	/* PASIDs first: destroying a mock device detaches only its RID. */
	while (w->n_attached > 0) {
		struct kt_attached *a = &w->attached[w->n_attached - 1];
		int r = pasid_cmd(w, MOCK_OP_PASID_DETACH, a->dev, a->pasid, 0);

		if (r < 0)
			kt_log("PASID_DETACH(dev %u, pasid %#x): %s", w->dev[a->dev].idev_id,
			       a->pasid, strerror(-r));
		w->n_attached--;
	}
	/* Closing the iommufd destroys every object in it (unless iopfd still holds a dup). */
	if (w->fault_fd >= 0)
		close(w->fault_fd);
	if (w->iommufd >= 0)
		close(w->iommufd);
	*w = (struct kt_world){.iommufd = -1, .fault_fd = -1};
}

/* NESTED: a NEST_PARENT paging hwpt on the IOAS and a nested fault hwpt on it. */
static int fault_hwpt_nested(struct kt_world *w)
{
	static const struct mock_hwpt_data data = {.iotlb = MOCK_IOTLB_DEFAULT};
	int r;

	r = kt_hwpt_alloc(w->iommufd, IOMMU_HWPT_ALLOC_NEST_PARENT, w->dev[0].idev_id, w->ioas_id,
			  IOMMU_HWPT_DATA_NONE, NULL, 0, 0, &w->parent_hwpt_id);
	if (r < 0) {
		kt_log("HWPT_ALLOC(NEST_PARENT): %s", strerror(-r));
		return r;
	}
	r = kt_hwpt_alloc(w->iommufd, IOMMU_HWPT_FAULT_ID_VALID, w->dev[0].idev_id,
			  w->parent_hwpt_id, MOCK_HWPT_DATA_TYPE, &data, sizeof(data), w->fault_id,
			  &w->fault_hwpt_id);
	if (r < 0) {
		kt_log("HWPT_ALLOC(nested, FAULT_ID_VALID): %s", strerror(-r));
		return r;
	}
	w->check_hwpt_id = w->parent_hwpt_id;
	return 0;
}

/* PAGING: one PASID-capable paging hwpt on the IOAS that carries the fault queue. */
static int fault_hwpt_paging(struct kt_world *w)
{
	int r = kt_world_fault_hwpt(w, &w->fault_hwpt_id);

	if (r < 0) {
		kt_log("HWPT_ALLOC(paging, FAULT_ID_VALID | ALLOC_PASID): %s", strerror(-r));
		return r;
	}
	w->check_hwpt_id = w->fault_hwpt_id;
	return 0;
}

int kt_world_open(struct kt_world *w, unsigned n_dev, enum kt_layout layout)
{
	const uint32_t dev_flags = layout == KT_LAYOUT_PAGING ? MOCK_FLAGS_DEVICE_PASID : 0;
	int r;

	*w = (struct kt_world){.iommufd = -1, .fault_fd = -1};
	if (n_dev == 0 || n_dev > KT_MAX_DEV || layout >= _KT_LAYOUT_MAX)
		return -EINVAL;
	w->layout = layout;
	w->nested = layout == KT_LAYOUT_NESTED;

	w->iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (w->iommufd < 0) {
		r = -errno;
		kt_log("open /dev/iommu: %s", strerror(-r));
		goto fail;
	}
	r = kt_ioas_alloc(w->iommufd, &w->ioas_id);
	if (r < 0) {
		kt_log("IOAS_ALLOC: %s", strerror(-r));
		goto fail;
	}
	for (unsigned i = 0; i < n_dev; i++) {
		r = kt_mock_domain(w->iommufd, w->ioas_id, dev_flags, &w->dev[i]);
		if (r < 0) {
			kt_log("MOCK_DOMAIN%s: %s%s", dev_flags ? "_FLAGS(DEVICE_PASID)" : "",
			       strerror(-r), dev_flags ? "" : " (is CONFIG_IOMMUFD_TEST on?)");
			goto fail;
		}
		w->n_dev++;
	}
	r = kt_fault_alloc(w->iommufd, &w->fault_id, &w->fault_fd);
	if (r < 0) {
		kt_log("FAULT_QUEUE_ALLOC: %s", strerror(-r));
		goto fail;
	}
	r = w->nested ? fault_hwpt_nested(w) : fault_hwpt_paging(w);
	if (r < 0)
		goto fail;

	for (unsigned i = 0; i < w->n_dev; i++) {
		r = kt_mock_replace(w->iommufd, w->dev[i].stdev_id, w->fault_hwpt_id);
		if (r < 0) {
			kt_log("MOCK_DOMAIN_REPLACE(dev %u -> hwpt %u): %s", w->dev[i].idev_id,
			       w->fault_hwpt_id, strerror(-r));
			goto fail;
		}
	}
	return 0;

fail:
	kt_world_close(w);
	return r;
}

/*
 * A layout is there when a world can be built in it and, for PAGING, a PASID attached
 * (a kernel with paging fault hwpts but no PASID attach cannot serve PASID faults there).
 * The failed attempt logs why; that is the answer, not a failure.
 */
unsigned kt_layouts_probe(void)
{
	unsigned mask = 0;

	for (unsigned l = 0; l < _KT_LAYOUT_MAX; l++) {
		struct kt_world w;

		if (kt_world_open(&w, 1, l) < 0)
			continue;
		if (l != KT_LAYOUT_PAGING || kt_world_attach_pasid(&w, 0, 1) == 0)
			mask |= 1u << l;
		kt_world_close(&w);
	}
	return mask;
}

bool kt_has_map_file(const struct kt_world *w)
{
	struct iopf_iommu_ioas_map_file cmd = {
		.size = sizeof(cmd),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE,
		.ioas_id = w->ioas_id,
		.fd = -1,
		.length = 4096,
		.iova = MOCK_APERTURE_START,
	};
	int r = xioctl(w->iommufd, IOPF_IOMMU_IOAS_MAP_FILE, &cmd);

	return r != -ENOTTY && r != -EOPNOTSUPP;
}

int kt_pid_maps_file(pid_t pid, int fd)
{
	char path[64], line[512];
	struct stat st;
	int n = 0;
	FILE *f;

	if (fstat(fd, &st) < 0)
		return -errno;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	/* start-end perms offset major:minor inode [path] */
	while (fgets(line, sizeof(line), f)) {
		unsigned maj, min;
		unsigned long long ino;

		if (sscanf(line, "%*s %*s %*s %x:%x %llu", &maj, &min, &ino) != 3)
			continue;
		if (ino == (unsigned long long)st.st_ino && maj == major(st.st_dev) &&
		    min == minor(st.st_dev))
			n++;
	}
	fclose(f);
	return n;
}

int kt_mem_open(struct kt_mem *m, size_t size)
{
	int r;

	*m = (struct kt_mem){.memfd = -1};
	m->memfd = memfd_create("iopf-ktest", MFD_CLOEXEC);
	if (m->memfd < 0)
		return -errno;
	if (ftruncate(m->memfd, (off_t)size) < 0)
		goto fail_errno;
	m->va = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, m->memfd, 0);
	if (m->va == MAP_FAILED) {
		m->va = NULL;
		goto fail_errno;
	}
	m->size = size;
	/* Populate, with a distinct pattern per page, so every page has its own frame. */
	for (size_t off = 0; off < size; off += 4096)
		memset(m->va + off, (int)((off / 4096) & 0xff) | 1, 4096);
	return 0;

fail_errno:
	r = -errno;
	kt_mem_close(m);
	return r;
}

void kt_mem_close(struct kt_mem *m)
{
	if (m->va)
		munmap(m->va, m->size);
	if (m->memfd >= 0)
		close(m->memfd);
	*m = (struct kt_mem){.memfd = -1};
}

int kt_fault_readable(int fault_fd, int timeout_ms)
{
	struct pollfd p = {.fd = fault_fd, .events = POLLIN};
	int r;

	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return r > 0 && (p.revents & POLLIN) ? 1 : 0;
}

ssize_t kt_fault_read(int fault_fd, struct iommu_hwpt_pgfault *recs, size_t max)
{
	ssize_t n = read(fault_fd, recs, max * sizeof(*recs));

	if (n < 0)
		return -errno;
	if (n % (ssize_t)sizeof(*recs))
		return -EIO;
	return n / (ssize_t)sizeof(*recs);
}

int kt_fault_respond(int fault_fd, uint32_t cookie, uint32_t code)
{
	struct iommu_hwpt_page_response resp = {.cookie = cookie, .code = code};
	ssize_t n = write(fault_fd, &resp, sizeof(resp));

	if (n < 0)
		return -errno;
	return n == sizeof(resp) ? 0 : -EIO;
}

int kt_fault_probe_outstanding(int fault_fd, uint32_t max)
{
	int outstanding = 0;

	for (uint32_t cookie = 1; cookie <= max; cookie++) {
		int r = kt_fault_respond(fault_fd, cookie, IOMMUFD_PAGE_RESP_INVALID);

		if (r == 0)
			outstanding++;
		else if (r != -EINVAL)
			return r;
	}
	return outstanding;
}

int kt_pid_holds_file(pid_t pid, int fd)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int found = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char *end;
		long theirs = strtol(de->d_name, &end, 10);

		if (*end || end == de->d_name)
			continue;
		if (syscall(SYS_kcmp, getpid(), pid, KCMP_FILE, fd, theirs) == 0) {
			found = 1;
			break;
		}
		if (errno == ENOSYS || errno == EPERM) {
			found = -errno;
			break;
		}
	}
	closedir(d);
	return found;
}

int kt_lat_add(struct kt_lat *l, uint64_t ns)
{
	return u64vec_push(&l->v, ns);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

uint64_t kt_lat_pct(struct kt_lat *l, double q)
{
	size_t i, n = l->v.n;

	if (!n)
		return 0;
	qsort(l->v.v, n, sizeof(*l->v.v), cmp_u64);
	i = (size_t)(q * (double)(n - 1) + 0.5);
	return l->v.v[i < n ? i : n - 1];
}

void kt_lat_free(struct kt_lat *l)
{
	u64vec_done(&l->v);
}
