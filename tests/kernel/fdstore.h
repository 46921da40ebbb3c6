/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A stand-in for systemd's side of iopfd's crash-and-restart protocol, for the guest
 * (no systemd there): it owns the listening control socket (as iopfd.socket would), a
 * $NOTIFY_SOCKET datagram socket, and an fd store fed by sd_notify FDSTORE=1/FDNAME=
 * and emptied by FDSTOREREMOVE=1; it starts iopfd as systemd does after Restart=, with
 * $LISTEN_FDS, $LISTEN_FDNAMES and $LISTEN_PID holding the socket ("iopfd.socket")
 * first and then everything stored. Like systemd, an fd whose open file is already in
 * the store is not stored again (kcmp KCMP_FILE), whatever its name.
 */
#ifndef IOPF_KTEST_FDSTORE_H
#define IOPF_KTEST_FDSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct kfs;

/*
 * Bind and listen on @socket_path, bind the notify socket at @notify_path (both removed
 * first) and start receiving. iopfd's stdout and stderr go to @log_path (truncated).
 * Return: 0 or -errno.
 */
int kfs_open(const char *socket_path, const char *notify_path, const char *log_path,
	     struct kfs **ret);
/* Stop iopfd (SIGKILL) if it runs, close everything. NULL is fine. Returns NULL. */
struct kfs *kfs_close(struct kfs *s);

/*
 * Start @argv (argv[0] looked up in $PATH) with the socket and the store, and wait (at
 * most @timeout_ms) for its READY=1. Return: its pid, or -errno (-ECHILD: it exited
 * first; -ETIMEDOUT: not ready in time; the child is killed then).
 */
pid_t kfs_start(struct kfs *s, char *const argv[], int timeout_ms);
/* SIGKILL the running iopfd, reap it, and take every datagram it sent. Return: 0 or -errno. */
int kfs_kill(struct kfs *s);
/*
 * SIGTERM, wait at most @timeout_ms for it to exit, reap it, take its datagrams.
 * Return: its wait status (>= 0), or -ETIMEDOUT (then SIGKILLed) or -errno.
 */
int kfs_stop(struct kfs *s, int timeout_ms);
pid_t kfs_pid(const struct kfs *s);
/* Whether the running iopfd is still there (reaps it if not). */
bool kfs_alive(struct kfs *s);

/* The stored names, space-separated in store order, into @buf. Return: how many. */
unsigned kfs_names(struct kfs *s, char *buf, size_t size);
/* READY=1 datagrams seen so far; datagrams whose fds were refused as duplicates. */
unsigned kfs_ready_count(struct kfs *s);
unsigned kfs_dups(struct kfs *s);

#endif /* IOPF_KTEST_FDSTORE_H */
