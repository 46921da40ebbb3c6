/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fd-util.h"
#include "util.h"

static void proc_path(int fd, char *buf, size_t size)
{
	(void)snprintf(buf, size, "/proc/self/fd/%d", fd);
}

int fd_link(int fd, char *buf, size_t size)
{
	char path[64];
	ssize_t n;

	if (fd < 0)
		return -EBADF;
	if (size < 2)
		return -EINVAL;
	proc_path(fd, path, sizeof(path));
	n = readlink(path, buf, size - 1);
	if (n < 0)
		return errno == ENOENT ? -EBADF : negative_errno();
	buf[n] = '\0';
	return 0;
}

bool fd_link_is(int fd, const char *want)
{
	char link[256];

	return fd_link(fd, link, sizeof(link)) >= 0 && strcmp(link, want) == 0;
}

bool fd_is_open(int fd)
{
	return fd >= 0 && fcntl(fd, F_GETFD) >= 0;
}

bool fd_maybe_anon_inode(int fd)
{
	char link[128];

	if (fd_link(fd, link, sizeof(link)) < 0)
		return true;
	return strncmp(link, "anon_inode:", strlen("anon_inode:")) == 0;
}

const char *fd_describe(int fd, char *buf, size_t size)
{
	struct stat st;

	if (fd_link(fd, buf, size) >= 0 && buf[0])
		return buf;
	if (fd < 0 || fstat(fd, &st) < 0)
		return "not an open fd";
	switch (st.st_mode & S_IFMT) {
	case S_IFREG:
		return "a regular file";
	case S_IFDIR:
		return "a directory";
	case S_IFCHR:
		return "a character device";
	case S_IFBLK:
		return "a block device";
	case S_IFIFO:
		return "a pipe";
	case S_IFSOCK:
		return "a socket";
	default:
		return "an anonymous inode";
	}
}

int fd_reopen(int fd, int flags)
{
	char path[64];
	int r;

	if (fd < 0)
		return -EBADF;
	proc_path(fd, path, sizeof(path));
	r = open(path, flags | O_CLOEXEC);
	return r < 0 ? negative_errno() : r;
}

int fd_check_access(int fd, bool want_write, int *ret_accmode)
{
	int fl;

	if (fd < 0)
		return -EBADF;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return negative_errno();
	if (fl & O_PATH)
		return -EACCES;
	if ((fl & O_ACCMODE) == O_WRONLY)
		return -EPERM;
	if (want_write && (fl & O_ACCMODE) != O_RDWR)
		return -EPERM;
	if (ret_accmode)
		*ret_accmode = fl & O_ACCMODE;
	return 0;
}

int fd_eventfd_id(int fd, uint32_t *ret)
{
	_cleanup_close_ int info = -EBADF;
	char path[64], buf[512];
	const char *p;
	unsigned long v;
	char *end;
	ssize_t n;

	if (fd < 0)
		return -EBADF;
	(void)snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	info = open(path, O_RDONLY | O_CLOEXEC);
	if (info < 0)
		return errno == ENOENT ? -EBADF : negative_errno();
	/* a few short lines, written by the kernel in one go */
	n = read(info, buf, sizeof(buf) - 1);
	if (n < 0)
		return negative_errno();
	buf[n] = '\0';
	if (!strstr(buf, "\neventfd-count:"))
		return -EBADF;
	p = strstr(buf, "\neventfd-id:");
	if (!p)
		return -EOPNOTSUPP;
	p += strlen("\neventfd-id:");
	errno = 0;
	v = strtoul(p, &end, 10);
	if (errno || end == p || v > UINT32_MAX)
		return -EBADF;
	*ret = (uint32_t)v;
	return 0;
}
