/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * File descriptors of every kind a caller can hand iopfd, for the tables of
 * the request checks (unit, integration and fuzz tests alike): the right
 * kinds, the wrong ones, closed ones.
 */
#ifndef IOPF_TEST_FDS_H
#define IOPF_TEST_FDS_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fd-util.h"

/* A memfd of @size bytes, or -errno. */
static inline int test_memfd(uint64_t size)
{
	int fd = memfd_create("iopf-test", MFD_CLOEXEC);

	if (fd >= 0 && ftruncate(fd, (off_t)size) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

enum test_fd {
	TFD_SIM_FAULT,	/* a copy of the simulator's doorbell */
	TFD_SIM_IOMMU,	/* a copy of the simulator's context memfd */
	TFD_MEM,	/* a memfd of test_fds.mem_size bytes, read-write */
	TFD_MEM_RDONLY, /* the same file opened read-only */
	TFD_MEM_WRONLY,
	TFD_MEM_PATH, /* an O_PATH fd of it */
	TFD_PIPE,
	TFD_DEVNULL, /* a character device that is not /dev/iommu */
	TFD_SOCKET,
	TFD_EVENTFD, /* a stray eventfd, no simulator behind it */
	TFD_DIR,
	TFD_CLOSED, /* a number nothing is open at */
	TFD_NEG,
	_TFD_MAX,
};

struct test_fds {
	int sim_fault, sim_iommu; /* not owned */
	uint64_t mem_size;
};

/*
 * A new fd of kind @k (the caller closes it), and in *@extra another one to
 * close with it (the other end of a pipe, the memfd behind a reopened one),
 * left alone when there is none. Return: the fd, or -errno.
 */
static inline int test_fd(const struct test_fds *t, enum test_fd k, int *extra)
{
	int p[2], fd;

	switch (k) {
	case TFD_SIM_FAULT:
		return fcntl(t->sim_fault, F_DUPFD_CLOEXEC, 3);
	case TFD_SIM_IOMMU:
		return fcntl(t->sim_iommu, F_DUPFD_CLOEXEC, 3);
	case TFD_MEM:
		return test_memfd(t->mem_size);
	case TFD_MEM_RDONLY:
	case TFD_MEM_WRONLY:
	case TFD_MEM_PATH:
		fd = test_memfd(t->mem_size);
		*extra = fd;
		return fd_reopen(fd, k == TFD_MEM_RDONLY   ? O_RDONLY
				     : k == TFD_MEM_WRONLY ? O_WRONLY
							   : O_PATH);
	case TFD_PIPE:
	case TFD_SOCKET:
		if ((k == TFD_PIPE ? pipe2(p, O_CLOEXEC)
				   : socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p)) < 0)
			return -errno;
		*extra = p[1];
		return p[0];
	case TFD_DEVNULL:
		return open("/dev/null", O_RDWR | O_CLOEXEC);
	case TFD_EVENTFD:
		return eventfd(0, EFD_CLOEXEC);
	case TFD_DIR:
		return open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	case TFD_CLOSED:
		return 1000; /* nothing is open that high in the tests */
	case TFD_NEG:
	case _TFD_MAX:
		break;
	}
	return -1;
}

#endif /* IOPF_TEST_FDS_H */
