/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The daemon side of a simulator context, as the tests open it: the backend on
 * copies of the context's fds (what iopfd gets over D-Bus), and its close
 * without lib/dataplane/kernel.c (iopf_backend_close() lives there).
 */
#ifndef IOPF_TEST_SIM_BACKEND_H
#define IOPF_TEST_SIM_BACKEND_H

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "backend.h"
#include "sim.h"
#include "util.h"

/* A small context: queue and IOMMU tables fill up within a few operations. */
#define SIM_TEST_CONFIG                                                                            \
	{                                                                                          \
		.queue_depth = 16, .max_group = 8, .n_ioas = 2, .iommu_pages = 64, .iommu_maps = 8 \
	}

/* iopf_sim_backend_open() on F_DUPFD_CLOEXEC copies of @s's fds; the copies go on failure. */
static inline int sim_backend_open_dup(struct iopf_sim *s, uint32_t ioas_id,
				       struct iopf_backend **ret)
{
	_cleanup_close_ int f = fcntl(iopf_sim_fault_fd(s), F_DUPFD_CLOEXEC, 3);
	_cleanup_close_ int m = fcntl(iopf_sim_iommufd(s), F_DUPFD_CLOEXEC, 3);
	int r;

	if (f < 0 || m < 0)
		return -errno;
	r = iopf_sim_backend_open(f, m, ioas_id, ret);
	if (r < 0)
		return r;
	f = m = -EBADF; /* the backend owns them */
	return 0;
}

/* What iopf_backend_close() does. NULL is fine. */
static inline void sim_backend_close(struct iopf_backend *b)
{
	if (!b)
		return;
	if (b->ops->destroy)
		b->ops->destroy(b);
	safe_close(b->fault_fd);
	safe_close(b->iommufd);
	free(b);
}

#endif /* IOPF_TEST_SIM_BACKEND_H */
