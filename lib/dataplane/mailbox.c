/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "mailbox.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include "util.h"

int iopf_mailbox_init(struct iopf_mailbox *mb)
{
	mb->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (mb->fd < 0)
		return negative_errno();
	pthread_mutex_init(&mb->lock, NULL);
	CDS_INIT_LIST_HEAD(&mb->items);
	return 0;
}

void iopf_mailbox_fini(struct iopf_mailbox *mb)
{
	mb->fd = safe_close(mb->fd);
	pthread_mutex_destroy(&mb->lock);
}

void iopf_mailbox_post(struct iopf_mailbox *mb, struct cds_list_head *node)
{
	pthread_mutex_lock(&mb->lock);
	cds_list_add_tail(node, &mb->items);
	pthread_mutex_unlock(&mb->lock);
	(void)eventfd_write(mb->fd, 1);
}

void iopf_mailbox_take_all(struct iopf_mailbox *mb, struct cds_list_head *ret)
{
	uint64_t v;

	/* reset the kick first: a post racing with this is taken now or kicks again */
	(void)!read(mb->fd, &v, sizeof(v)); /* EAGAIN is fine */
	pthread_mutex_lock(&mb->lock);
	cds_list_splice(&mb->items, ret);
	CDS_INIT_LIST_HEAD(&mb->items);
	pthread_mutex_unlock(&mb->lock);
}
