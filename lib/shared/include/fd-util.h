/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What an fd is, in one place: the /proc/self/fd link that says its kind
 * ("anon_inode:[iommufd-pgfault]", "/dev/iommu", "/memfd:iopf-sim (deleted)"),
 * a description for error messages, and reopening it with other flags.
 */
#ifndef IOPF_FD_UTIL_H
#define IOPF_FD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The link target of @fd into @buf. Return: 0, -EBADF when @fd is not open, or -errno. */
int fd_link(int fd, char *buf, size_t size);
/* True when @fd is open and its link target is exactly @want. */
bool fd_link_is(int fd, const char *want);
/* True when @fd is an open file descriptor. */
bool fd_is_open(int fd);
/* True when /proc says @fd is an anonymous inode, and also when /proc cannot tell. */
bool fd_maybe_anon_inode(int fd);
/* "pipe:[1234]", "/dev/null", "a socket"...: what @fd is, for messages; never NULL. */
const char *fd_describe(int fd, char *buf, size_t size);
/* open(2) of /proc/self/fd/N: the same file with other access @flags (O_CLOEXEC added). */
int fd_reopen(int fd, int flags);
/*
 * Whether @fd can be read, and written when @want_write, through this very open
 * file: not O_PATH (it reports O_PATH in F_GETFL with access mode O_RDONLY, yet
 * grants no access at all), not write-only, not read-only when @want_write.
 * Return: 0, -EBADF when @fd is not open, -EACCES for an O_PATH fd, -EPERM for a
 * missing access mode. On success *@ret_accmode (when not NULL) is its O_ACCMODE.
 */
int fd_check_access(int fd, bool want_write, int *ret_accmode);
/*
 * The kernel's id of the eventfd @fd ("eventfd-id:" in /proc/self/fdinfo, Linux
 * 5.16 and later): unique among live eventfds, so two fds with one id are the
 * same eventfd. Return: 0, -EBADF (not open, or not an eventfd), -EOPNOTSUPP
 * (the kernel does not say), or -errno reading /proc.
 */
int fd_eventfd_id(int fd, uint32_t *ret);

#endif /* IOPF_FD_UTIL_H */
