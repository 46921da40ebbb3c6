/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iopf-echo: the raw baseline for iopfd on the simulator transport.
 *
 * It serves simulator fault queues exactly the way a fault worker would
 * (wait on the doorbell, read whole groups in batches, write one response per
 * group in one write) but answers SUCCESS without routing or mapping, so
 * iopf-sim can measure what the transport alone costs. Like iopfd's worker
 * (its multishot poll) it wakes on every ring (EPOLLET) and reads until
 * empty, so the backend need not keep the doorbell's level (set_edge). Sources come as
 * inherited fds: --source FAULT_FD:IOMMUFD:IOAS_ID, usually from iopf-sim --echo.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "backend.h"
#include "uapi.h"
#include "sim.h"
#include "util.h"

#define ECHO_MAX_SOURCES 4096

struct echo_worker {
	pthread_t thread;
	int epfd;
	struct iopf_backend **sources; /* not owned */
	bool *late;		       /* per source: its lock timed out, serve it again */
	unsigned n_sources, n_late;
	unsigned batch; /* records per read */
	uint64_t groups;
	int error;
};

static int stop_fd = -EBADF; /* eventfd every worker watches; written once on SIGTERM/SIGINT */

/*
 * Answer everything readable on @b now; returns groups answered or -errno.
 * @ret_late: the read found the tenant holding its lock (or holding it past
 * the daemon side's short wait: a preempted injector on a busy machine): groups may be
 * left, and no ring will come for them, so the caller serves @b again soon.
 */
static int serve(struct iopf_backend *b, struct iommu_hwpt_pgfault **buf, unsigned *cap,
		 struct iommu_hwpt_page_response *resp, bool *ret_late)
{
	int total = 0;

	for (;;) {
		ssize_t n = b->ops->fault_read(b, *buf, *cap * sizeof(**buf));
		unsigned k, nrec, nresp = 0;
		size_t off = 0;

		if (n == -EINVAL) {
			/* a group larger than the buffer: grow it, never drop */
			void *p = realloc(*buf, 2 * *cap * sizeof(**buf));

			if (!p)
				return -ENOMEM;
			*buf = p;
			*cap *= 2;
			continue;
		}
		/* -EBUSY: the lock is taken now (a few of those, then the backend waits) */
		*ret_late = n == -ETIMEDOUT || n == -EBUSY;
		if (*ret_late || n == 0)
			return total;
		if (n < 0)
			return (int)n;
		nrec = (unsigned)(n / (ssize_t)sizeof(**buf));
		/* a group's records are contiguous and share the cookie */
		for (k = 0; k < nrec; k++)
			if (k + 1 == nrec || (*buf)[k + 1].cookie != (*buf)[k].cookie)
				resp[nresp++] = (struct iommu_hwpt_page_response){
					.cookie = (*buf)[k].cookie,
					.code = IOMMUFD_PAGE_RESP_SUCCESS,
				};
		while (off < nresp * sizeof(*resp)) {
			ssize_t w = b->ops->fault_write(b, (uint8_t *)resp + off,
							nresp * sizeof(*resp) - off);
			if (w == -ETIMEDOUT || w == -EBUSY)
				continue; /* the same, for the answers: they must go, try again */
			if (w < 0)
				return (int)w;
			off += (size_t)w;
		}
		total += (int)nresp;
		/* as iopfd's worker does: the queue's word that it is empty saves the empty read */
		if (b->ops->readable && !b->ops->readable(b))
			return total;
	}
}

/* Serve source @idx of @w; 0 or -errno. */
static int serve_source(struct echo_worker *w, unsigned idx, struct iommu_hwpt_pgfault **buf,
			unsigned *cap, struct iommu_hwpt_page_response **resp)
{
	bool late = false;
	void *p = realloc(*resp, *cap * sizeof(**resp));
	int r;

	if (!p)
		return -ENOMEM;
	*resp = p;
	r = serve(w->sources[idx], buf, cap, *resp, &late);
	if (r < 0)
		return r;
	w->groups += (uint64_t)r;
	if (late != w->late[idx]) {
		w->late[idx] = late;
		w->n_late += late ? 1 : -1;
	}
	return 0;
}

static void *worker_run(void *arg)
{
	struct echo_worker *w = arg;
	unsigned cap = w->batch;
	struct iommu_hwpt_pgfault *buf = malloc(cap * sizeof(*buf));
	struct iommu_hwpt_page_response *resp = NULL;
	struct epoll_event ev[64];

	if (!buf) {
		w->error = -ENOMEM;
		return NULL;
	}
	for (;;) {
		/* sources whose lock timed out: again in a millisecond, rings or not */
		int n = epoll_wait(w->epfd, ev, ARRAY_SIZE(ev), w->n_late ? 1 : -1), i, r;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			w->error = -errno;
			break;
		}
		for (i = 0; i < n; i++) {
			if (ev[i].data.u32 == UINT32_MAX)
				goto out;
			r = serve_source(w, ev[i].data.u32, &buf, &cap, &resp);
			if (r < 0) {
				w->error = r;
				goto out;
			}
		}
		for (unsigned j = 0; w->n_late && j < w->n_sources; j++) {
			if (!w->late[j])
				continue;
			r = serve_source(w, j, &buf, &cap, &resp);
			if (r < 0) {
				w->error = r;
				goto out;
			}
		}
	}
out:
	free(buf);
	free(resp);
	return NULL;
}

static int parse_source(const char *s, int *ret_fault, int *ret_iommu, uint32_t *ret_ioas)
{
	int f, m;
	unsigned ioas;
	char tail;

	if (sscanf(s, "%d:%d:%u%c", &f, &m, &ioas, &tail) != 3 || f < 0 || m < 0)
		return -EINVAL;
	*ret_fault = f;
	*ret_iommu = m;
	*ret_ioas = ioas;
	return 0;
}

static void help(void)
{
	printf("Usage: iopf-echo [OPTIONS] --source FAULT_FD:IOMMUFD:IOAS_ID...\n\n"
	       "Answer SUCCESS to every fault group of simulator sources (no routing, no "
	       "mapping).\n\n"
	       "  --source F:M:I   a simulator fault fd, context memfd and IOAS id (inherited "
	       "fds)\n"
	       "  --threads N      worker threads, sources spread round robin (default 1)\n"
	       "  --batch N        records per read (default 256)\n"
	       "  --ready-fd FD    write one byte there once every source is open, then close it\n"
	       "  -h --help        this help\n"
	       "  --version        print the version and exit\n"
	       "Stops on SIGTERM or SIGINT and prints the groups it answered on stderr.\n");
}

/* Worker @i of @n_threads: sources i, i + n_threads, ... of @sources, its epoll, its thread. */
static int worker_start(struct echo_worker *w, unsigned i, unsigned n_threads,
			struct iopf_backend **sources, unsigned n_sources, unsigned batch)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
	int r;

	w->batch = batch;
	w->sources = calloc(n_sources / n_threads + 1, sizeof(*w->sources));
	w->late = calloc(n_sources / n_threads + 1, sizeof(*w->late));
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!w->sources || !w->late || w->epfd < 0 ||
	    epoll_ctl(w->epfd, EPOLL_CTL_ADD, stop_fd, &ev) < 0) {
		fprintf(stderr, "iopf-echo: %m\n");
		return -1;
	}
	for (unsigned j = i; j < n_sources; j += n_threads) {
		/* every ring a wakeup, and serve() reads until empty: no level needed */
		ev = (struct epoll_event){.events = EPOLLIN | EPOLLET, .data.u32 = w->n_sources};
		iopf_backend_set_edge(sources[j], true);
		w->sources[w->n_sources++] = sources[j];
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, sources[j]->poll_fd, &ev) < 0) {
			fprintf(stderr, "iopf-echo: epoll: %m\n");
			return -1;
		}
	}
	r = pthread_create(&w->thread, NULL, worker_run, w);
	if (r) {
		fprintf(stderr, "iopf-echo: thread: %s\n", strerror(r));
		return -1;
	}
	return 0;
}

/* Wait for every worker, add up their groups; -1 if one failed. */
static int workers_join(struct echo_worker *workers, unsigned n_threads, uint64_t *ret_groups)
{
	int ret = 0;

	for (unsigned i = 0; i < n_threads; i++) {
		pthread_join(workers[i].thread, NULL);
		*ret_groups += workers[i].groups;
		if (workers[i].error) {
			fprintf(stderr, "iopf-echo: worker %u: %s\n", i,
				strerror(-workers[i].error));
			ret = -1;
		}
		close(workers[i].epfd);
		free(workers[i].sources);
	}
	return ret;
}

int main(int argc, char *argv[])
{
	static const struct option options[] = {{"source", required_argument, NULL, 's'},
						{"threads", required_argument, NULL, 't'},
						{"batch", required_argument, NULL, 'b'},
						{"ready-fd", required_argument, NULL, 'r'},
						{"help", no_argument, NULL, 'h'},
						{"version", no_argument, NULL, 'V'},
						{}};
	static struct iopf_backend *sources[ECHO_MAX_SOURCES];
	struct echo_worker *workers;
	unsigned n_sources = 0, n_threads = 1, batch = 256, i;
	int ready_fd = -1, c, r, status = EXIT_SUCCESS;
	uint64_t groups = 0;
	sigset_t mask;

	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		int f, m;
		uint32_t ioas;

		switch (c) {
		case 's':
			if (n_sources >= ECHO_MAX_SOURCES ||
			    parse_source(optarg, &f, &m, &ioas) < 0) {
				fprintf(stderr, "iopf-echo: bad or too many --source: %s\n",
					optarg);
				return EXIT_FAILURE;
			}
			r = iopf_sim_backend_open(f, m, ioas, &sources[n_sources]);
			if (r < 0) {
				fprintf(stderr, "iopf-echo: source %s: %s\n", optarg, strerror(-r));
				return EXIT_FAILURE;
			}
			n_sources++;
			break;
		case 't':
			n_threads = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'b':
			batch = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'r':
			ready_fd = atoi(optarg);
			break;
		case 'h':
			help();
			return EXIT_SUCCESS;
		case 'V':
			printf("iopf-echo %s\n", IOPFD_VERSION);
			return EXIT_SUCCESS;
		default:
			return EXIT_FAILURE;
		}
	}
	if (!n_sources || n_threads < 1 || n_threads > 1024 || batch < 1 || batch > 65536) {
		help();
		return EXIT_FAILURE;
	}
	if (n_threads > n_sources)
		n_threads = n_sources;

	/* signals go to sigwait() below, never to a worker */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);

	stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	workers = calloc(n_threads, sizeof(*workers));
	if (stop_fd < 0 || !workers) {
		fprintf(stderr, "iopf-echo: %m\n");
		return EXIT_FAILURE;
	}
	for (i = 0; i < n_threads; i++)
		if (worker_start(&workers[i], i, n_threads, sources, n_sources, batch) < 0)
			return EXIT_FAILURE;
	if (ready_fd >= 0) {
		(void)!write(ready_fd, "R", 1);
		close(ready_fd);
	}

	for (;;) {
		int sig;

		if (sigwait(&mask, &sig) == 0)
			break;
	}
	(void)eventfd_write(stop_fd, 1);
	if (workers_join(workers, n_threads, &groups) < 0)
		status = EXIT_FAILURE;
	for (i = 0; i < n_sources; i++)
		iopf_backend_close(sources[i]);
	fprintf(stderr, "iopf-echo: %" PRIu64 " groups answered\n", groups);
	free(workers);
	return status;
}
