/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <systemd/sd-daemon.h>

#include "fdstore.h"
#include "log.h"
#include "util.h"

struct passed {
	char *name; /* owned; "unknown" when systemd gave none */
	int fd;	    /* owned; -EBADF once taken */
};

struct fdstore {
	bool enabled;
	struct passed *v;
	unsigned n, left;
};

/* By name, those without one last: a restore takes tens of thousands by name. */
static int passed_cmp(const void *a, const void *b)
{
	const struct passed *x = a, *y = b;

	if (!x->name || !y->name)
		return !x->name - !y->name;
	return strcmp(x->name, y->name);
}

static void free_names(char **names, int n)
{
	for (int i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
}

int fdstore_new(struct fdstore **ret)
{
	struct fdstore *f = calloc(1, sizeof(*f));
	char **names = NULL;
	int n;

	if (!f)
		return -ENOMEM;
	f->enabled = getenv("NOTIFY_SOCKET") != NULL;
	/* unset the variables: nothing iopfd starts inherits them */
	n = sd_listen_fds_with_names(true, &names);
	if (n < 0) {
		log_warning_errno(n, "Ignoring the file descriptors passed by systemd: %m");
		n = 0;
	}
	if (n > 0 && !(f->v = calloc((size_t)n, sizeof(*f->v)))) {
		for (int i = 0; i < n; i++)
			(void)close(SD_LISTEN_FDS_START + i);
		free_names(names, n);
		free(f);
		return -ENOMEM;
	}
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;

		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
		f->v[i].fd = fd;
		f->v[i].name = names ? TAKE_PTR(names[i]) : NULL;
	}
	free_names(names, n);
	f->n = f->left = (unsigned)n;
	if (n > 1)
		qsort(f->v, (size_t)n, sizeof(*f->v), passed_cmp);
	*ret = f;
	return 0;
}

struct fdstore *fdstore_free(struct fdstore *f)
{
	if (!f)
		return NULL;
	for (unsigned i = 0; i < f->n; i++) {
		if (f->v[i].fd >= 0)
			log_debug("Closing the passed fd \"%s\" that nothing claimed.",
				  f->v[i].name ?: "unknown");
		safe_close(f->v[i].fd);
		free(f->v[i].name);
	}
	free(f->v);
	free(f);
	return NULL;
}

bool fdstore_enabled(const struct fdstore *f)
{
	return f->enabled;
}

unsigned fdstore_n_passed(const struct fdstore *f)
{
	return f->left;
}

static int take(struct fdstore *f, unsigned i)
{
	int fd = TAKE_FD(f->v[i].fd);

	f->left--;
	return fd;
}

int fdstore_take(struct fdstore *f, const char *name)
{
	const struct passed key = {.name = (char *)name};
	struct passed *p = f->n ? bsearch(&key, f->v, f->n, sizeof(*f->v), passed_cmp) : NULL;

	/* names are unique in the store (systemd keeps one open file once, under one name) */
	return p && p->fd >= 0 ? take(f, (unsigned)(p - f->v)) : -ENOENT;
}

int fdstore_take_socket(struct fdstore *f)
{
	for (unsigned i = 0; i < f->n; i++)
		if (f->v[i].fd >= 0 && sd_is_socket_unix(f->v[i].fd, SOCK_STREAM, 1, NULL, 0) > 0)
			return take(f, i);
	return -ENOENT;
}

void fdstore_foreach_passed(struct fdstore *f, void (*fn)(const char *name, int fd, void *ud),
			    void *ud)
{
	for (unsigned i = 0; i < f->n; i++)
		if (f->v[i].fd >= 0)
			fn(f->v[i].name ?: "unknown", f->v[i].fd, ud);
}

int fdstore_push(struct fdstore *f, const char *name, int fd)
{
	char msg[300];
	int r;

	if (!f->enabled)
		return 0;
	(void)snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
	r = sd_pid_notify_with_fds(0, false, msg, &fd, 1);
	return r < 0 ? r : 0;
}

int fdstore_remove(struct fdstore *f, const char *name)
{
	int r;

	if (!f->enabled)
		return 0;
	r = sd_notifyf(false, "FDSTOREREMOVE=1\nFDNAME=%s", name);
	return r < 0 ? r : 0;
}
