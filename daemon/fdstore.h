/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * systemd's file descriptor store: the fds iopfd must not lose when it dies
 * (the state arena, tenants' fault fds, iommufds, memory fds and pidfds) are
 * handed to the service manager under a name (FDSTORE=1, FDNAME=) and taken
 * out again when their object goes (FDSTOREREMOVE=1). A restarted iopfd gets
 * them back as LISTEN_FDS with LISTEN_FDNAMES, beside the activation socket.
 * Without $NOTIFY_SOCKET the store is off and every call is a no-op.
 */
#ifndef IOPFD_FDSTORE_H
#define IOPFD_FDSTORE_H

#include <stdbool.h>

struct fdstore;

/* Take every passed fd ($LISTEN_FDS, $LISTEN_FDNAMES) in. Return: 0 or -ENOMEM. */
int fdstore_new(struct fdstore **ret);
/* Close what nobody took, then free. NULL ok; returns NULL. */
struct fdstore *fdstore_free(struct fdstore *f);

/* Whether pushing goes anywhere (a service manager is listening). */
bool fdstore_enabled(const struct fdstore *f);
/* Passed fds not taken yet. */
unsigned fdstore_n_passed(const struct fdstore *f);

/* The passed fd named @name, now the caller's; -ENOENT when there is none. */
int fdstore_take(struct fdstore *f, const char *name);
/* The first passed listening unix stream socket (socket activation), or -ENOENT. */
int fdstore_take_socket(struct fdstore *f);
/* Visit the names of passed fds not taken yet (for logging what is left over). */
void fdstore_foreach_passed(struct fdstore *f, void (*fn)(const char *name, int fd, void *ud),
			    void *ud);

/*
 * fdstore_push() - keep a copy of @fd under @name (unique; [A-Za-z0-9_.-], at
 * most 255 bytes) across restarts. fdstore_remove() drops it.
 * Return: 0 (also when the store is off), or -errno of the notify socket.
 */
int fdstore_push(struct fdstore *f, const char *name, int fd);
int fdstore_remove(struct fdstore *f, const char *name);

#endif /* IOPFD_FDSTORE_H */
