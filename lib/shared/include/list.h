/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Intrusive doubly-linked lists, NULL at both ends. An item carries its two
 * links, prev and next, or any other pair named by the _BY forms (an item on
 * more than one list). A list is its head pointer; a queue, appended to, is
 * its head and tail pointers (the _TAIL forms). A removed item's links are
 * NULL again. Every argument is evaluated more than once.
 */
#ifndef IOPF_LIST_H
#define IOPF_LIST_H

#define LIST_PREPEND_BY(prev, next, head, item)                                                    \
	do {                                                                                       \
		(item)->prev = NULL;                                                               \
		(item)->next = (head);                                                             \
		if (head)                                                                          \
			(head)->prev = (item);                                                     \
		(head) = (item);                                                                   \
	} while (0)

#define LIST_REMOVE_BY(prev, next, head, item)                                                     \
	do {                                                                                       \
		if ((item)->prev)                                                                  \
			(item)->prev->next = (item)->next;                                         \
		else                                                                               \
			(head) = (item)->next;                                                     \
		if ((item)->next)                                                                  \
			(item)->next->prev = (item)->prev;                                         \
		(item)->prev = (item)->next = NULL;                                                \
	} while (0)

#define LIST_APPEND_TAIL_BY(prev, next, head, tail, item)                                          \
	do {                                                                                       \
		(item)->prev = (tail);                                                             \
		(item)->next = NULL;                                                               \
		if (tail)                                                                          \
			(tail)->next = (item);                                                     \
		else                                                                               \
			(head) = (item);                                                           \
		(tail) = (item);                                                                   \
	} while (0)

#define LIST_REMOVE_TAIL_BY(prev, next, head, tail, item)                                          \
	do {                                                                                       \
		if (!(item)->next)                                                                 \
			(tail) = (item)->prev;                                                     \
		LIST_REMOVE_BY(prev, next, head, item);                                            \
	} while (0)

#define LIST_PREPEND(head, item)	   LIST_PREPEND_BY(prev, next, head, item)
#define LIST_REMOVE(head, item)		   LIST_REMOVE_BY(prev, next, head, item)
#define LIST_APPEND_TAIL(head, tail, item) LIST_APPEND_TAIL_BY(prev, next, head, tail, item)
#define LIST_REMOVE_TAIL(head, tail, item) LIST_REMOVE_TAIL_BY(prev, next, head, tail, item)

#endif /* IOPF_LIST_H */
