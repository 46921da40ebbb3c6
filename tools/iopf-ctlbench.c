/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iopf-ctlbench: how fast iopfd's control plane registers regions.
 *
 * One tenant (one connection, one simulated fault source) registers
 * --domains domains and --regions regions in each, one page apiece, all on
 * one memfd, with AddRegion calls or AddRegions batches of --batch, then
 * unregisters the source (which removes everything). It prints the time of
 * each phase, the calls and regions per second, the slowest single call, and
 * the rate over the first and the last tenth of the regions, which differ
 * when a call's cost grows with what is already registered. Beside it, the
 * floor of the same run: synchronous round trips between two threads over a
 * unix socket, each request as long as an AddRegion call and carrying one fd,
 * each reply as long as its answer: no single-call client goes faster.
 * With --depth N (one region a call), up to N AddRegion calls are sent ahead
 * of their answers, on a connection of its own, and the floor keeps as many
 * requests ahead: what iopfd serves when the client's round trip is not in
 * the way.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "iopf/client.h"
#include "iopf/iopf.h"
#include "sim.h"
#include "wire.h"

#define PAGE UINT64_C(4096)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double secs(uint64_t ns)
{
	return (double)ns / 1e9;
}

static void die(struct iopf_client *c, const char *what, int r)
{
	fprintf(stderr, "iopf-ctlbench: %s: %s (%s)\n", what, strerror(-r),
		c && iopf_client_last_error(c) ? iopf_client_last_error(c) : "");
	exit(1);
}

/* Request and reply sizes of an AddRegion call on the wire (header, fields, padding). */
#define FLOOR_REQUEST 232
#define FLOOR_REPLY   64
#define FLOOR_CALLS   20000

/* The floor's server: take each request and its fd, close the fd, answer. */
static void *floor_server(void *arg)
{
	int sk = *(int *)arg;
	char buf[FLOOR_REQUEST];

	for (;;) {
		union {
			struct cmsghdr h;
			char space[CMSG_SPACE(sizeof(int))];
		} cm;
		struct iovec io = {.iov_base = buf, .iov_len = sizeof(buf)};
		struct msghdr mh = {.msg_iov = &io,
				    .msg_iovlen = 1,
				    .msg_control = &cm,
				    .msg_controllen = sizeof(cm)};
		struct cmsghdr *h;

		if (recvmsg(sk, &mh, MSG_WAITALL | MSG_CMSG_CLOEXEC) != sizeof(buf))
			return NULL;
		h = CMSG_FIRSTHDR(&mh);
		if (h && h->cmsg_type == SCM_RIGHTS) {
			int fd;

			memcpy(&fd, CMSG_DATA(h), sizeof(fd));
			close(fd);
		}
		if (send(sk, buf, FLOOR_REPLY, 0) != FLOOR_REPLY)
			return NULL;
	}
}

/*
 * Round trips per second, each passing @fd, as in an AddRegion call, with up to
 * @depth requests sent ahead of their replies (1: synchronous).
 */
static double floor_calls_per_s(int fd, unsigned depth)
{
	char buf[FLOOR_REQUEST] = {0};
	pthread_t th;
	uint64_t t;
	int sk[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sk) < 0 ||
	    pthread_create(&th, NULL, floor_server, &sk[1]) != 0)
		return 0;
	t = now_ns();
	for (unsigned i = 0, answered = 0; answered < FLOOR_CALLS;) {
		union {
			struct cmsghdr h;
			char space[CMSG_SPACE(sizeof(int))];
		} cm = {};
		struct iovec io = {.iov_base = buf, .iov_len = sizeof(buf)};
		struct msghdr mh = {.msg_iov = &io,
				    .msg_iovlen = 1,
				    .msg_control = &cm,
				    .msg_controllen = sizeof(cm)};
		struct cmsghdr *h = CMSG_FIRSTHDR(&mh);

		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(h), &fd, sizeof(fd));
		if (i < FLOOR_CALLS && i - answered < depth) {
			if (sendmsg(sk[0], &mh, 0) != sizeof(buf))
				break;
			i++;
			continue;
		}
		if (recv(sk[0], buf, FLOOR_REPLY, MSG_WAITALL) != FLOOR_REPLY)
			break;
		answered++;
	}
	t = now_ns() - t;
	close(sk[0]); /* the server's recvmsg ends */
	pthread_join(th, NULL);
	close(sk[1]);
	return (double)FLOOR_CALLS / secs(t);
}

static void usage(void)
{
	fputs("usage: iopf-ctlbench --address ADDR [--domains N] [--regions N] [--batch N] "
	      "[--depth N] [--json]\n",
	      stderr);
	exit(2);
}

/* What the region calls took: the slowest, and the first and the last tenth of the regions. */
struct timing {
	uint64_t total, done, worst, first_ns, last_ns, tenth_start;
};

/*
 * @n regions done by a call that took @call ns, @dt ns after the previous one
 * was done: the same for one call at a time; with calls in flight the tenths
 * go by the time between answers, not by calls' overlapping round trips.
 */
static void timing_add(struct timing *tm, uint64_t n, uint64_t call, uint64_t dt)
{
	tm->worst = call > tm->worst ? call : tm->worst;
	tm->done += n;
	if (tm->done <= tm->total / 10)
		tm->first_ns += dt;
	if (tm->done > tm->total - tm->total / 10) {
		if (!tm->tenth_start)
			tm->tenth_start = tm->done - n;
		tm->last_ns += dt;
	}
}

/* Domain @d's device and PASID, as square as it goes: 256 devices, then PASIDs. */
static uint32_t domain_dev_id(unsigned long d)
{
	return (uint32_t)(d % 256);
}

static uint32_t domain_pasid(unsigned long d)
{
	return (uint32_t)(d / 256);
}

/* Region @k of a domain: every other page, so no two touch. */
static uint64_t region_iova(uint64_t k)
{
	return (1 + 2 * k) * PAGE;
}

/* Regions [@i, @i + @n) of domain @dom in one call. */
static void add_regions(struct iopf_client *c, uint64_t dom, int mem, uint64_t i, uint64_t n,
			bool batch)
{
	int r;

	if (batch) {
		struct iopf_client_new_region *v = calloc(n, sizeof(*v));
		uint64_t *ids = calloc(n, sizeof(*ids));

		if (!v || !ids)
			die(NULL, "calloc", -ENOMEM);
		for (uint64_t k = 0; k < n; k++)
			v[k] = (struct iopf_client_new_region){
				.domain_id = dom,
				.fd = mem,
				.iova = region_iova(i + k),
				.length = PAGE,
				.access = IOPF_ACCESS_READ,
			};
		r = iopf_client_add_regions(c, v, n, ids);
		free(v);
		free(ids);
	} else {
		uint64_t id;

		r = iopf_client_add_region(c, dom, mem, 0, region_iova(i), PAGE, IOPF_ACCESS_READ,
					   &id);
	}
	if (r < 0)
		die(c, batch ? "AddRegions" : "AddRegion", r);
}

struct run {
	unsigned long domains, regions, batch, depth;
	uint64_t t0, t_dom, t_reg, t_end; /* start, domains, regions, teardown done */
	struct timing tm;
	double floor;
};

/* --- many calls in flight: sd-bus's asynchronous calls on a connection of its own --- */

struct pipeline;

/* One AddRegion call in flight: its answer's userdata. */
struct pipeline_call {
	struct pipeline *p;
	uint64_t sent_at; /* when the call went out */
};

struct pipeline {
	sd_bus *bus;
	struct run *x;
	struct pipeline_call *calls; /* per region */
	uint64_t in_flight;
	uint64_t last_done; /* when the last answer came (the domains' end, at first) */
};

static void bus_die(const char *what, int r, const sd_bus_error *e)
{
	fprintf(stderr, "iopf-ctlbench: %s: %s (%s)\n", what, strerror(-r),
		e && e->message ? e->message : "");
	exit(1);
}

static uint64_t bus_call_t(sd_bus *bus, const char *method, const char *types, ...)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *m = NULL, *reply = NULL;
	uint64_t id = 0;
	va_list ap;
	int r;

	r = sd_bus_message_new_method_call(bus, &m, NULL, IOPF_DBUS_PATH, IOPF_DBUS_INTERFACE,
					   method);
	if (r >= 0) {
		va_start(ap, types);
		r = sd_bus_message_appendv(m, types, ap);
		va_end(ap);
	}
	if (r >= 0)
		r = sd_bus_call(bus, m, 0, &e, &reply);
	if (r >= 0 && sd_bus_message_has_signature(reply, "t"))
		r = sd_bus_message_read(reply, "t", &id);
	if (r < 0)
		bus_die(method, r, &e);
	sd_bus_error_free(&e);
	sd_bus_message_unref(reply);
	sd_bus_message_unref(m);
	return id;
}

static int on_added(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	const struct pipeline_call *call = userdata;
	struct pipeline *p = call->p;
	const sd_bus_error *e = sd_bus_message_get_error(m);
	uint64_t t = now_ns();

	if (e)
		bus_die("AddRegion", -sd_bus_message_get_errno(m), e);
	p->in_flight--;
	timing_add(&p->x->tm, 1, t - call->sent_at, t - p->last_done);
	p->last_done = t;
	return 0;
}

/*
 * The same registrations as the synchronous path, one region a call, with up to
 * x->depth AddRegion calls sent ahead of their answers: what iopfd serves when
 * a client does not wait out each round trip.
 */
static void run_pipelined(const char *address, struct iopf_sim *sim, int mem, struct run *x)
{
	struct pipeline p = {.x = x};
	uint64_t src, *dom, i = 0;
	int r;

	p.calls = calloc(x->tm.total, sizeof(*p.calls));
	dom = calloc(x->domains, sizeof(*dom));
	if (!p.calls || !dom)
		die(NULL, "calloc", -ENOMEM);
	r = sd_bus_new(&p.bus);
	if (r >= 0)
		r = sd_bus_set_address(p.bus, address);
	if (r >= 0)
		r = sd_bus_negotiate_fds(p.bus, 1);
	if (r >= 0)
		r = sd_bus_start(p.bus);
	if (r < 0)
		bus_die("connect", r, NULL);
	src = bus_call_t(p.bus, "RegisterSourcePaused", IOPF_WIRE_REGISTER_SOURCE_IN,
			 iopf_sim_fault_fd(sim), iopf_sim_iommufd(sim), iopf_sim_ioas_id(sim, 0));
	x->t0 = now_ns();
	for (unsigned long d = 0; d < x->domains; d++)
		dom[d] = bus_call_t(p.bus, "RegisterDomain", IOPF_WIRE_REGISTER_DOMAIN_IN, src,
				    domain_dev_id(d), domain_pasid(d));
	x->t_dom = p.last_done = now_ns();
	while (i < x->tm.total || p.in_flight) {
		while (i < x->tm.total && p.in_flight < x->depth) {
			p.calls[i] = (struct pipeline_call){.p = &p, .sent_at = now_ns()};
			r = sd_bus_call_method_async(
				p.bus, NULL, NULL, IOPF_DBUS_PATH, IOPF_DBUS_INTERFACE, "AddRegion",
				on_added, &p.calls[i], IOPF_WIRE_ADD_REGION_IN, dom[i / x->regions],
				mem, (uint64_t)0, region_iova(i % x->regions), PAGE,
				(uint32_t)IOPF_ACCESS_READ);
			if (r < 0)
				bus_die("AddRegion", r, NULL);
			p.in_flight++;
			i++;
		}
		r = sd_bus_process(p.bus, NULL);
		if (r == 0)
			r = sd_bus_wait(p.bus, UINT64_MAX);
		if (r < 0)
			bus_die("waiting for answers", r, NULL);
	}
	x->t_reg = now_ns();
	(void)bus_call_t(p.bus, "UnregisterSource", "t", src);
	x->t_end = now_ns();
	sd_bus_flush_close_unref(p.bus);
	free(p.calls);
	free(dom);
}

static void report(const struct run *x, bool json)
{
	const struct timing *tm = &x->tm;
	double reg = secs(x->t_reg - x->t_dom);
	uint64_t calls = x->batch ? (x->regions + x->batch - 1) / x->batch * x->domains : tm->total;
	double first = tm->first_ns ? (double)(tm->total / 10) / secs(tm->first_ns) : 0;
	double last = tm->last_ns ? (double)(tm->total - tm->tenth_start) / secs(tm->last_ns) : 0;

	if (json)
		printf("{\"domains\": %lu, \"regions_per_domain\": %lu, \"batch\": %lu, "
		       "\"domain_secs\": %.6f, \"region_secs\": %.6f, \"calls\": %" PRIu64
		       ", \"calls_per_s\": %.1f, \"regions_per_s\": %.1f, "
		       "\"first_tenth_regions_per_s\": %.1f, \"last_tenth_regions_per_s\": "
		       "%.1f, \"worst_call_secs\": %.6f, \"teardown_secs\": %.6f, "
		       "\"floor_calls_per_s\": %.1f, \"depth\": %lu}\n",
		       x->domains, x->regions, x->batch, secs(x->t_dom - x->t0), reg, calls,
		       (double)calls / reg, (double)tm->total / reg, first, last, secs(tm->worst),
		       secs(x->t_end - x->t_reg), x->floor, x->depth);
	else
		printf("domains %lu (%.3f s, %.0f/s), regions %" PRIu64 " in %" PRIu64
		       " calls: %.3f s, %.0f calls/s, %.0f regions/s (first tenth %.0f/s, "
		       "last %.0f/s), slowest call %.3f ms, teardown %.3f s; floor %.0f "
		       "calls/s\n",
		       x->domains, secs(x->t_dom - x->t0),
		       (double)x->domains / secs(x->t_dom - x->t0), tm->total, calls, reg,
		       (double)calls / reg, (double)tm->total / reg, first, last,
		       secs(tm->worst) * 1e3, secs(x->t_end - x->t_reg), x->floor);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"address", required_argument, NULL, 'a'},
		{"domains", required_argument, NULL, 'd'},
		{"regions", required_argument, NULL, 'r'},
		{"batch", required_argument, NULL, 'b'},
		{"depth", required_argument, NULL, 'D'},
		{"json", no_argument, NULL, 'j'},
		{},
	};
	const char *address = NULL;
	struct run x = {.domains = 1, .regions = 1000, .depth = 1};
	bool json = false;
	struct iopf_sim_config cfg = {};
	struct iopf_client *c = NULL;
	struct iopf_sim *sim = NULL;
	uint64_t src, *dom;
	int mem, r, o;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1)
		switch (o) {
		case 'a':
			address = optarg;
			break;
		case 'd':
			x.domains = strtoul(optarg, NULL, 0);
			break;
		case 'r':
			x.regions = strtoul(optarg, NULL, 0);
			break;
		case 'b':
			x.batch = strtoul(optarg, NULL, 0);
			break;
		case 'D':
			x.depth = strtoul(optarg, NULL, 0);
			break;
		case 'j':
			json = true;
			break;
		default:
			usage();
		}
	if (!address || x.domains == 0 || x.regions == 0 || x.domains > UINT32_MAX ||
	    x.depth == 0 || (x.depth > 1 && x.batch))
		usage();
	x.tm.total = (uint64_t)x.domains * x.regions;

	r = iopf_sim_new(&cfg, &sim);
	if (r < 0)
		die(NULL, "simulator", r);
	mem = memfd_create("iopf-ctlbench", MFD_CLOEXEC);
	if (mem < 0 || ftruncate(mem, (off_t)PAGE) < 0)
		die(NULL, "memfd", -errno);
	if (x.depth > 1) {
		run_pipelined(address, sim, mem, &x);
		goto done;
	}
	r = iopf_client_connect(address, &c);
	if (r < 0)
		die(NULL, "connect", r);
	r = iopf_client_register_source_paused(c, iopf_sim_fault_fd(sim), iopf_sim_iommufd(sim),
					       iopf_sim_ioas_id(sim, 0), &src);
	if (r < 0)
		die(c, "RegisterSource", r);

	dom = calloc(x.domains, sizeof(*dom));
	if (!dom)
		die(NULL, "calloc", -ENOMEM);
	x.t0 = now_ns();
	for (unsigned long d = 0; d < x.domains; d++) {
		r = iopf_client_register_domain(c, src, domain_dev_id(d), domain_pasid(d), &dom[d]);
		if (r < 0)
			die(c, "RegisterDomain", r);
	}
	x.t_dom = now_ns();

	for (unsigned long d = 0; d < x.domains; d++)
		for (uint64_t i = 0, n; i < x.regions; i += n) {
			uint64_t t = now_ns();

			n = x.batch ? (x.regions - i < x.batch ? x.regions - i : x.batch) : 1;
			add_regions(c, dom[d], mem, i, n, x.batch);
			t = now_ns() - t;
			timing_add(&x.tm, n, t, t);
		}
	x.t_reg = now_ns();
	r = iopf_client_unregister_source(c, src);
	if (r < 0)
		die(c, "UnregisterSource", r);
	x.t_end = now_ns();

	free(dom);
	iopf_client_free(c);
done:
	x.floor = floor_calls_per_s(mem, (unsigned)x.depth);
	report(&x, json);
	iopf_sim_free(sim);
	close(mem);
	return 0;
}
