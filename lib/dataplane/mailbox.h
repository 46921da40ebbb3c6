/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A mailbox between two threads: any thread posts list nodes, the owner takes
 * them all at once when its eventfd polls readable. Commands go to a worker
 * this way, and finished removals come back to the engine. Posting never
 * blocks on the owner and never allocates (nodes are embedded in what they
 * carry).
 */
#ifndef IOPF_MAILBOX_H
#define IOPF_MAILBOX_H

#include <pthread.h>

#include "rcu.h"

struct iopf_mailbox {
	pthread_mutex_t lock;
	struct cds_list_head items; /* under lock */
	int fd;			    /* owned; eventfd, readable while items may be waiting */
};

/* Return: 0 or -errno (no eventfd). */
int iopf_mailbox_init(struct iopf_mailbox *mb);
/* Items still posted are left alone (they are embedded in their objects). */
void iopf_mailbox_fini(struct iopf_mailbox *mb);
/* Append @node and kick the owner. Any thread. */
void iopf_mailbox_post(struct iopf_mailbox *mb, struct cds_list_head *node);
/* Move everything posted so far, in order, to the empty list @ret, and reset the kick. */
void iopf_mailbox_take_all(struct iopf_mailbox *mb, struct cds_list_head *ret);

/* What the owner polls for POLLIN. */
static inline int iopf_mailbox_fd(const struct iopf_mailbox *mb)
{
	return mb->fd;
}

#endif /* IOPF_MAILBOX_H */
