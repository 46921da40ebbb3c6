/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fd-store stand-in of the real-kernel suite (see fdstore.h). One thread receives
 * the notify datagrams; every datagram is taken off the socket and applied under the
 * store's lock, so after iopfd died, draining the socket under the lock leaves the store
 * exactly as the dead process left it (its datagrams were queued whole before it died).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/kcmp.h>

#include "fdstore.h"

#define MAX_FDS_PER_DGRAM 253 /* SCM_MAX_FD */
#define DGRAM_MAX	  4096
#define KFS_MAX_FDS	  512 /* fds passed to iopfd at most */

extern char **environ;

struct stored {
	char *name; /* owned */
	int fd;	    /* owned */
};

struct kfs {
	int listen_fd, notify_fd, log_fd;
	char notify_path[108];
	pthread_mutex_t lock;
	struct stored *v;
	size_t n, cap;
	unsigned ready, dups;
	pid_t pid; /* the running iopfd, or 0 */
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
};

static int bind_unix(int fd, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	(void)unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	return 0;
}

static bool same_file(int a, int b)
{
	pid_t me = getpid();

	return syscall(SYS_kcmp, me, me, KCMP_FILE, a, b) == 0;
}

/* Under the lock. Takes @fd (closed when refused). */
static void store_add(struct kfs *s, const char *name, int fd)
{
	for (size_t i = 0; i < s->n; i++)
		if (same_file(fd, s->v[i].fd)) {
			/* systemd keeps one entry per open file, under the name it came with */
			s->dups++;
			close(fd);
			return;
		}
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 32;
		struct stored *v = realloc(s->v, cap * sizeof(*v));

		if (!v) {
			close(fd);
			return;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n].name = strdup(name);
	if (!s->v[s->n].name) {
		close(fd);
		return;
	}
	s->v[s->n++].fd = fd;
}

/* Under the lock: FDSTOREREMOVE=1 drops every entry of the name, as systemd does. */
static void store_remove(struct kfs *s, const char *name)
{
	size_t k = 0;

	for (size_t i = 0; i < s->n; i++) {
		if (strcmp(s->v[i].name, name) == 0) {
			close(s->v[i].fd);
			free(s->v[i].name);
			continue;
		}
		s->v[k++] = s->v[i];
	}
	s->n = k;
}

/*
 * Under the lock: take one datagram and apply it. Return: 1 applied, 0 nothing there,
 * -errno.
 */
static int take_one(struct kfs *s)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * MAX_FDS_PER_DGRAM)];
	} control;
	char data[DGRAM_MAX + 1];
	struct iovec iov = {.iov_base = data, .iov_len = DGRAM_MAX};
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = &control,
		.msg_controllen = sizeof(control),
	};
	int fds[MAX_FDS_PER_DGRAM];
	size_t n_fds = 0;
	bool fdstore = false, remove = false;
	const char *name = "stored"; /* systemd's default FDNAME */
	ssize_t len;

	len = recvmsg(s->notify_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (len < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (size_t i = 0; i < k && n_fds < MAX_FDS_PER_DGRAM; i++)
				memcpy(&fds[n_fds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
		}
	if (mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC))
		fprintf(stderr, "fdstore: a truncated notify datagram (flags %#x)\n",
			(unsigned)mh.msg_flags);
	data[len] = '\0';
	for (char *line = data, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (strcmp(line, "FDSTORE=1") == 0)
			fdstore = true;
		else if (strcmp(line, "FDSTOREREMOVE=1") == 0)
			remove = true;
		else if (strncmp(line, "FDNAME=", 7) == 0)
			name = line + 7;
		else if (strcmp(line, "READY=1") == 0)
			s->ready++;
	}
	if (remove)
		store_remove(s, name);
	for (size_t i = 0; i < n_fds; i++) {
		if (fdstore)
			store_add(s, name, fds[i]);
		else
			close(fds[i]); /* fds without FDSTORE=1 are closed, as systemd does */
	}
	return 1;
}

static void *receiver(void *arg)
{
	struct kfs *s = arg;

	while (!atomic_load(&s->stop)) {
		struct pollfd p = {.fd = s->notify_fd, .events = POLLIN};
		int r = poll(&p, 1, 100);

		if (r < 0 && errno != EINTR)
			break;
		if (r <= 0)
			continue;
		pthread_mutex_lock(&s->lock);
		(void)take_one(s);
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

/* Take everything queued now (the dead process sent all it ever will). */
static void drain(struct kfs *s)
{
	pthread_mutex_lock(&s->lock);
	while (take_one(s) > 0)
		;
	pthread_mutex_unlock(&s->lock);
}

int kfs_open(const char *socket_path, const char *notify_path, const char *log_path,
	     struct kfs **ret)
{
	struct kfs *s = calloc(1, sizeof(*s));
	int r, sz = 4 << 20;

	if (!s)
		return -ENOMEM;
	s->listen_fd = s->notify_fd = s->log_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	atomic_init(&s->stop, false);
	if (strlen(notify_path) >= sizeof(s->notify_path)) {
		r = -ENAMETOOLONG;
		goto fail;
	}
	strcpy(s->notify_path, notify_path);

	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->listen_fd < 0) {
		r = -errno;
		goto fail;
	}
	r = bind_unix(s->listen_fd, socket_path);
	if (r < 0)
		goto fail;
	if (chmod(socket_path, 0666) < 0 || listen(s->listen_fd, 128) < 0) {
		r = -errno;
		goto fail;
	}
	s->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s->notify_fd < 0) {
		r = -errno;
		goto fail;
	}
	(void)setsockopt(s->notify_fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	r = bind_unix(s->notify_fd, notify_path);
	if (r < 0)
		goto fail;
	s->log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	if (s->log_fd < 0) {
		r = -errno;
		goto fail;
	}
	if (pthread_create(&s->thread, NULL, receiver, s) != 0) {
		r = -EAGAIN;
		goto fail;
	}
	s->thread_started = true;
	*ret = s;
	return 0;
fail:
	kfs_close(s);
	return r;
}

struct kfs *kfs_close(struct kfs *s)
{
	if (!s)
		return NULL;
	if (s->pid > 0)
		(void)kfs_kill(s);
	if (s->thread_started) {
		atomic_store(&s->stop, true);
		pthread_join(s->thread, NULL);
	}
	for (size_t i = 0; i < s->n; i++) {
		close(s->v[i].fd);
		free(s->v[i].name);
	}
	free(s->v);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->notify_fd >= 0) {
		close(s->notify_fd);
		(void)unlink(s->notify_path);
	}
	if (s->log_fd >= 0)
		close(s->log_fd);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return NULL;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void nap_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * The environment iopfd gets: ours without LISTEN_* and NOTIFY_SOCKET, then those; the
 * three from *ret_own on are allocated here, then @pid_slot ("LISTEN_PID=", the child
 * fills it in).
 */
static char **child_env(struct kfs *s, size_t n_fds, const char *names, char *pid_slot,
			size_t *ret_own)
{
	size_t n = 0, k = 0;
	char **env;

	while (environ[n])
		n++;
	env = calloc(n + 5, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "LISTEN_", 7) != 0 &&
		    strncmp(environ[i], "NOTIFY_SOCKET=", 14) != 0)
			env[k++] = environ[i];
	*ret_own = k;
	if (asprintf(&env[k++], "LISTEN_FDS=%zu", n_fds) < 0 ||
	    asprintf(&env[k++], "LISTEN_FDNAMES=%s", names) < 0 ||
	    asprintf(&env[k++], "NOTIFY_SOCKET=%s", s->notify_path) < 0) {
		free(env); /* (leaks what asprintf made: out of memory anyway) */
		return NULL;
	}
	env[k++] = pid_slot; /* "LISTEN_PID=" filled in by the child */
	return env;
}

/* In the child, async-signal-safe only: the decimal of @v after "LISTEN_PID=". */
static void put_pid(char *slot, pid_t v)
{
	char digits[16];
	int n = 0;

	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	slot += 11;
	while (n > 0)
		*slot++ = digits[--n];
	*slot = '\0';
}

pid_t kfs_start(struct kfs *s, char *const argv[], int timeout_ms)
{
	static char pid_slot[32] = "LISTEN_PID=";
	size_t n_fds, names_len = sizeof("iopfd.socket"), own;
	char *names, **env;
	int *fds;
	unsigned ready0;
	uint64_t deadline;
	pid_t pid;

	if (s->pid > 0)
		return -EBUSY;
	pthread_mutex_lock(&s->lock);
	n_fds = 1 + s->n;
	if (n_fds > KFS_MAX_FDS) {
		pthread_mutex_unlock(&s->lock);
		return -EMFILE;
	}
	for (size_t i = 0; i < s->n; i++)
		names_len += strlen(s->v[i].name) + 1;
	names = malloc(names_len);
	fds = malloc(n_fds * sizeof(*fds));
	if (!names || !fds) {
		pthread_mutex_unlock(&s->lock);
		free(names);
		free(fds);
		return -ENOMEM;
	}
	strcpy(names, "iopfd.socket");
	fds[0] = s->listen_fd;
	for (size_t i = 0; i < s->n; i++) {
		strcat(names, ":");
		strcat(names, s->v[i].name);
		fds[1 + i] = s->v[i].fd;
	}
	ready0 = s->ready;
	/* the stored fds stay ours while iopfd starts: the lock keeps the receiver off them */
	env = child_env(s, n_fds, names, pid_slot, &own);
	if (!env) {
		pthread_mutex_unlock(&s->lock);
		free(names);
		free(fds);
		return -ENOMEM;
	}
	pid = fork();
	if (pid == 0) {
		int tmp[KFS_MAX_FDS];

		(void)prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test that dies takes it along */
		signal(SIGPIPE, SIG_DFL);
		if (dup2(s->log_fd, STDOUT_FILENO) < 0 || dup2(s->log_fd, STDERR_FILENO) < 0)
			_exit(126);
		/* out of the way of 3..3+n first, then into place (dup2 clears CLOEXEC) */
		for (size_t i = 0; i < n_fds; i++) {
			tmp[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, (int)(3 + n_fds));
			if (tmp[i] < 0)
				_exit(126);
		}
		for (size_t i = 0; i < n_fds; i++)
			if (dup2(tmp[i], (int)(3 + i)) < 0)
				_exit(126);
		(void)syscall(SYS_close_range, 3 + n_fds, ~0U, 0);
		put_pid(pid_slot, getpid());
		execvpe(argv[0], argv, env);
		_exit(127);
	}
	pthread_mutex_unlock(&s->lock);
	for (size_t i = own; i < own + 3; i++)
		free(env[i]);
	free(env);
	free(names);
	free(fds);
	if (pid < 0)
		return -errno;
	s->pid = pid;

	deadline = now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		unsigned ready;

		pthread_mutex_lock(&s->lock);
		ready = s->ready;
		pthread_mutex_unlock(&s->lock);
		if (ready > ready0)
			return pid;
		if (!kfs_alive(s))
			return -ECHILD;
		if (now_ms() > deadline) {
			(void)kfs_kill(s);
			return -ETIMEDOUT;
		}
		nap_ms(5);
	}
}

bool kfs_alive(struct kfs *s)
{
	int status;

	if (s->pid <= 0)
		return false;
	if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
		s->pid = 0;
		drain(s);
		return false;
	}
	return true;
}

int kfs_kill(struct kfs *s)
{
	int status;

	if (s->pid <= 0)
		return -ESRCH;
	if (kill(s->pid, SIGKILL) < 0 && errno != ESRCH)
		return -errno;
	while (waitpid(s->pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	s->pid = 0;
	drain(s);
	return 0;
}

int kfs_stop(struct kfs *s, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	int status;

	if (s->pid <= 0)
		return -ESRCH;
	if (kill(s->pid, SIGTERM) < 0)
		return -errno;
	for (;;) {
		pid_t r = waitpid(s->pid, &status, WNOHANG);

		if (r == s->pid)
			break;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (now_ms() > deadline) {
			(void)kfs_kill(s);
			return -ETIMEDOUT;
		}
		nap_ms(10);
	}
	s->pid = 0;
	drain(s);
	return status;
}

pid_t kfs_pid(const struct kfs *s)
{
	return s->pid;
}

unsigned kfs_names(struct kfs *s, char *buf, size_t size)
{
	size_t off = 0;
	unsigned n;

	pthread_mutex_lock(&s->lock);
	if (size)
		buf[0] = '\0';
	for (size_t i = 0; i < s->n && size; i++) {
		int w = snprintf(buf + off, size - off, "%s%s", i ? " " : "", s->v[i].name);

		if (w < 0 || (size_t)w >= size - off)
			break;
		off += (size_t)w;
	}
	n = (unsigned)s->n;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* One of @s's counters, read under its lock. */
static unsigned locked_count(struct kfs *s, const unsigned *counter)
{
	unsigned r;

	pthread_mutex_lock(&s->lock);
	r = *counter;
	pthread_mutex_unlock(&s->lock);
	return r;
}

unsigned kfs_ready_count(struct kfs *s)
{
	return locked_count(s, &s->ready);
}

unsigned kfs_dups(struct kfs *s)
{
	return locked_count(s, &s->dups);
}
