/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Backend identification and the kernel backend's fallbacks, without a real
 * iommufd (the kernel harness covers that): fds of the wrong kind are refused
 * without being taken, and a "kernel" that lacks IOAS_MAP_FILE selects the
 * uptr map path.
 */
#include "dp-test.h"

#include <fcntl.h>
#include <sys/eventfd.h>

#include "backend.h"

static bool is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

static void test_identify(void **state)
{
	struct iopf_backend *b = NULL;
	int p[2], efd, mfd;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	efd = eventfd(0, EFD_CLOEXEC);
	mfd = test_memfd(4096);

	assert_int_equal(iopf_backend_open(p[0], p[1], 1, NULL, &b), -ENOTTY);
	assert_int_equal(iopf_backend_open(-1, p[1], 1, NULL, &b), -EBADF);
	assert_int_equal(iopf_backend_open(p[0], 1000, 1, NULL, &b), -EBADF);
	/* a simulator pair is refused by policy */
	assert_int_equal(iopf_backend_open(efd, mfd, 1, NULL, &b), -EOPNOTSUPP);
	assert_int_equal(iopf_backend_open(mfd, efd, 1, NULL, &b), -ENOTTY);
	assert_null(b);
	/* nothing was taken */
	assert_true(is_open(p[0]) && is_open(p[1]) && is_open(efd) && is_open(mfd));
	close(p[0]);
	close(p[1]);
	close(efd);
	close(mfd);
	assert_null(iopf_backend_close(NULL));
}

static void test_kernel_backend_fallbacks(void **state)
{
	struct iopf_backend *b;
	struct iopf_map_req req = {.iova = 0x10000, .length = 4096, .prot = 4};
	char buf[40];
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int mfd = test_memfd(4096);

	/* an fd that knows no iommufd ioctl: MAP_FILE probes as missing */
	assert_int_equal(iopf_kernel_backend_open(efd, mfd, 1, &b), 0);
	assert_string_equal(b->ops->name, "kernel");
	assert_true(b->ops->map_needs_uptr);
	assert_int_equal(b->poll_fd, efd);
	assert_int_equal(b->ops->map(b, &req), -EINVAL); /* no uptr */
	req.uptr = buf;
	assert_int_equal(b->ops->map(b, &req), -ENOTTY);
	assert_int_equal(b->ops->unmap(b, 0x10000, 4096), -ENOTTY);
	/* read/write errors come back as -errno */
	assert_int_equal(b->ops->fault_read(b, buf, 4), -EINVAL);
	assert_int_equal(b->ops->fault_read(b, buf, sizeof(buf)), -EAGAIN);
	b = iopf_backend_close(b);
	assert_false(is_open(efd));
	assert_false(is_open(mfd));
}

TEST_MAIN(cmocka_unit_test(test_identify), cmocka_unit_test(test_kernel_backend_fallbacks));
