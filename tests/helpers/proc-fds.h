/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* How many fds this process has open, from /proc/self/fd: leak checks in tests. */
#ifndef IOPF_TEST_PROC_FDS_H
#define IOPF_TEST_PROC_FDS_H

#include <dirent.h>
#include <stdlib.h>

/* The entries of /proc/self/fd, "." and ".." and the directory's own fd included. */
static inline unsigned proc_fds_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;

	if (!d)
		abort();
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

#endif /* IOPF_TEST_PROC_FDS_H */
