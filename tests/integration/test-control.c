/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control plane over a real socket: each test starts its own iopfd
 * ($IOPFD) on a temporary socket with --allow-simulator, talks to it as one
 * or more tenants through libiopf-client (sd-bus for the operator views and
 * busctl for a generic peer), and stops it with SIGTERM, which must exit 0.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include "unit-test.h"
#include <systemd/sd-bus.h>

#include "fd-util.h"
#include "iopf/client.h"
#include "sim.h"
#include "test-fds.h"
#include "util.h"
#include "wire.h"

#define TEST_TIMEOUT_S 120 /* the whole program; meson has its own */
#define MAX_SOURCES    3
#define MAX_DOMAINS    3
#define MAX_REGIONS    4
#define MEM_SIZE       (UINT64_C(1) << 20)

struct daemon {
	pid_t pid;
	char dir[64];
	char sock[100];
	char addr[160];
	char conf[128];
};

static const char *iopfd_path(void)
{
	const char *p = getenv("IOPFD");

	return p && *p ? p : "iopfd";
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static bool socket_up(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static void daemon_start_full(struct daemon *d, bool allow_sim, bool system_bus)
{
	static const char conf_text[] = "[Daemon]\nWorkers=2\n[Limits]\nMaxSources=3\n"
					"MaxDomains=3\nMaxRegions=4\n";

	strcpy(d->dir, "/tmp/iopfd-test-XXXXXX");
	assert_non_null(mkdtemp(d->dir));
	assert_int_equal(chmod(d->dir, 0755), 0); /* other uids connect too */
	snprintf(d->sock, sizeof(d->sock), "%s/control", d->dir);
	snprintf(d->addr, sizeof(d->addr), "unix:path=%s", d->sock);
	snprintf(d->conf, sizeof(d->conf), "%s/iopfd.conf", d->dir);
	write_file(d->conf, conf_text);

	d->pid = fork();
	assert_true(d->pid >= 0);
	if (d->pid == 0) {
		const char *argv[] = {iopfd_path(),
				      "--config",
				      d->conf,
				      "--socket",
				      d->sock,
				      system_bus ? "--system-bus" : "--no-system-bus",
				      allow_sim ? "--allow-simulator" : NULL,
				      NULL};

		execvp(argv[0], (char **)argv);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		if (socket_up(d->sock))
			return;
		assert_int_equal(waitpid(d->pid, NULL, WNOHANG), 0); /* still running */
		usleep(10000);
	}
	fail_msg("iopfd did not come up on %s", d->sock);
}

static void daemon_start(struct daemon *d, bool allow_sim)
{
	daemon_start_full(d, allow_sim, false);
}

static void daemon_stop(struct daemon *d)
{
	int status = 0;

	assert_int_equal(kill(d->pid, SIGTERM), 0);
	for (int i = 0; i < 1000; i++) {
		pid_t p = waitpid(d->pid, &status, WNOHANG);

		if (p == d->pid)
			break;
		if (i == 999) {
			kill(d->pid, SIGKILL);
			waitpid(d->pid, &status, 0);
			fail_msg("iopfd did not exit on SIGTERM");
		}
		usleep(10000);
	}
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* it removes the socket it created */
	assert_int_equal(access(d->sock, F_OK), -1);
	unlink(d->conf);
	rmdir(d->dir);
}

static int setup(void **state)
{
	struct daemon *d = calloc(1, sizeof(*d));

	daemon_start(d, true);
	*state = d;
	return 0;
}

static int teardown(void **state)
{
	daemon_stop(*state);
	free(*state);
	return 0;
}

static struct iopf_client *tenant(struct daemon *d)
{
	struct iopf_client *c = NULL;

	assert_int_equal(iopf_client_connect(d->addr, &c), 0);
	return c;
}

/* A simulated device: its fault fd and "iommufd" are what a tenant registers. */
static struct iopf_sim *sim_new(void)
{
	struct iopf_sim_config cfg = {};
	struct iopf_sim *s = NULL;

	assert_int_equal(iopf_sim_new(&cfg, &s), 0);
	return s;
}

static int memfd(uint64_t size)
{
	int fd = test_memfd(size);

	assert_true(fd >= 0);
	return fd;
}

static uint64_t source_of(struct iopf_client *c, struct iopf_sim *s)
{
	uint64_t id = 0;
	int r = iopf_client_register_source(c, iopf_sim_fault_fd(s), iopf_sim_iommufd(s),
					    iopf_sim_ioas_id(s, 0), &id);

	if (r < 0)
		fail_msg("RegisterSource: %s (%s)", strerror(-r), iopf_client_last_error(c));
	return id;
}

static uint64_t domain_of(struct iopf_client *c, uint64_t source, uint32_t dev, uint32_t pasid)
{
	uint64_t id = 0;

	assert_int_equal(iopf_client_register_domain(c, source, dev, pasid, &id), 0);
	return id;
}

static void expect_error(struct iopf_client *c, int r, int error, const char *name,
			 const char *substring)
{
	const char *msg = iopf_client_last_error(c);

	if (r != error)
		fail_msg("got %d (%s), expected %d", r, msg ? msg : "-", error);
	assert_string_equal(iopf_client_last_error_name(c), name);
	assert_non_null(msg);
	if (substring && !strstr(msg, substring))
		fail_msg("message \"%s\" lacks \"%s\"", msg, substring);
}

/* What @c's call @r answered for an id it does not own: ENOENT, @substring in the message. */
static void expect_missing(struct iopf_client *c, int r, const char *substring)
{
	expect_error(c, r, -ENOENT, IOPF_ERROR_NO_SUCH_OBJECT, substring);
}

static uint64_t region_of(struct iopf_client *c, uint64_t domain, int fd, uint64_t offset,
			  uint64_t iova, uint64_t length, uint32_t access)
{
	uint64_t id = 0;

	assert_int_equal(iopf_client_add_region(c, domain, fd, offset, iova, length, access, &id),
			 0);
	return id;
}

/* How many sources (domains, regions) @c has; the listing must succeed. */
#define N_LISTED(kind, type)                                                                       \
	static size_t n_##kind(struct iopf_client *c)                                              \
	{                                                                                          \
		struct iopf_client_##type *l = NULL;                                               \
		size_t n = 0;                                                                      \
                                                                                                   \
		assert_int_equal(iopf_client_list_##kind(c, &l, &n), 0);                           \
		free(l);                                                                           \
		return n;                                                                          \
	}
N_LISTED(sources, source)
N_LISTED(domains, domain)
N_LISTED(regions, region)

/* An operator's connection (uid 0): what all tenants have, via the All methods. */
static unsigned count_all(struct daemon *d, const char *method, const char *row)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	sd_bus_error error = SD_BUS_ERROR_NULL;
	sd_bus *bus = NULL;
	unsigned n = 0;
	int r;

	assert_true(sd_bus_new(&bus) >= 0);
	assert_true(sd_bus_set_address(bus, d->addr) >= 0);
	assert_true(sd_bus_start(bus) >= 0);
	r = sd_bus_call_method(bus, NULL, "/org/iopfd", "org.iopfd.Manager1", method, &error,
			       &reply, NULL);
	if (r < 0)
		fail_msg("%s: %s", method, error.message);
	assert_true(sd_bus_message_enter_container(reply, 'a', row) >= 0);
	while ((r = sd_bus_message_skip(reply, row)) > 0)
		n++;
	assert_true(r >= 0);
	sd_bus_error_free(&error);
	sd_bus_flush_close_unref(bus);
	return n;
}

static bool wait_all_sources(struct daemon *d, unsigned want)
{
	for (int i = 0; i < 500; i++) {
		if (count_all(d, "ListAllSources", IOPF_WIRE_SOURCE_ALL) == want)
			return true;
		usleep(10000);
	}
	return false;
}

/* ---- tests ---- */

static void test_introspect_busctl(void **state)
{
	struct daemon *d = *state;
	char cmd[512], line[256];
	bool seen[3] = {};
	FILE *p;

	if (system("command -v busctl >/dev/null") != 0)
		skip();
	snprintf(cmd, sizeof(cmd), "busctl --address=%s introspect org.iopfd /org/iopfd 2>&1",
		 d->addr);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (fgets(line, sizeof(line), p)) {
		seen[0] |= strstr(line, ".RegisterSource") &&
			   strstr(line, IOPF_WIRE_REGISTER_SOURCE_IN);
		seen[1] |= strstr(line, ".AddRegion") && strstr(line, IOPF_WIRE_ADD_REGION_IN);
		seen[2] |= strstr(line, ".GetStats") && strstr(line, "a" IOPF_WIRE_STATS);
	}
	assert_int_equal(pclose(p), 0);
	assert_true(seen[0] && seen[1] && seen[2]);

	/* a generic peer can call, and gets a named error with a message */
	snprintf(cmd, sizeof(cmd),
		 "busctl --address=%s call org.iopfd /org/iopfd org.iopfd.Manager1 "
		 "RegisterDomain tuu 1 1 0x100000 2>&1",
		 d->addr);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(line, sizeof(line), p));
	assert_non_null(strstr(line, "pasid 0x100000 is out of range"));
	assert_int_not_equal(pclose(p), 0);
}

static void test_source_fd_kinds(void **state)
{
	static const struct {
		const char *what;
		enum test_fd fault, iommu;
		uint32_t ioas; /* 0: the sim's first */
		int error;
		const char *name, *msg;
	} cases[] = {
		{"pipe as fault_fd", TFD_PIPE, TFD_SIM_IOMMU, 0, -EBADF, IOPF_ERROR_BAD_FD,
		 "fault_fd is not an iommufd fault queue (it is pipe:"},
		{"/dev/null as fault_fd", TFD_DEVNULL, TFD_SIM_IOMMU, 0, -EBADF, IOPF_ERROR_BAD_FD,
		 "fault_fd is not an iommufd fault queue (it is /dev/null)"},
		{"socket as fault_fd", TFD_SOCKET, TFD_SIM_IOMMU, 0, -EBADF, IOPF_ERROR_BAD_FD,
		 "fault_fd is not an iommufd fault queue (it is socket:"},
		{"memfd as fault_fd", TFD_MEM, TFD_SIM_IOMMU, 0, -EBADF, IOPF_ERROR_BAD_FD,
		 "fault_fd is not an iommufd fault queue"},
		{"pipe as iommufd", TFD_SIM_FAULT, TFD_PIPE, 0, -EBADF, IOPF_ERROR_BAD_FD,
		 "iommufd is not an iommufd (it is pipe:"},
		{"socket as iommufd", TFD_SIM_FAULT, TFD_SOCKET, 0, -EBADF, IOPF_ERROR_BAD_FD,
		 "iommufd is not an iommufd (it is socket:"},
		{"/dev/null as iommufd", TFD_SIM_FAULT, TFD_DEVNULL, 0, -EBADF, IOPF_ERROR_BAD_FD,
		 "are not an iommufd fault queue and its iommufd"},
		{"plain memfd as iommufd", TFD_SIM_FAULT, TFD_MEM, 0, -EBADF, IOPF_ERROR_BAD_FD,
		 "are not an iommufd fault queue and its iommufd"},
		{"stray eventfd as fault_fd", TFD_EVENTFD, TFD_MEM, 0, -EBADF, IOPF_ERROR_BAD_FD,
		 "are not an iommufd fault queue and its iommufd"},
		{"ioas 0", TFD_SIM_FAULT, TFD_SIM_IOMMU, UINT32_MAX, -EINVAL,
		 IOPF_ERROR_INVALID_ARGUMENT, "ioas_id 0 is not an IOAS id"},
	};
	struct daemon *d = *state;
	struct iopf_client *c = tenant(d);
	struct iopf_sim *s = sim_new();
	uint64_t id = 0;

	const struct test_fds kinds = {iopf_sim_fault_fd(s), iopf_sim_iommufd(s), 4096};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int e1 = -EBADF, e2 = -EBADF;
		int f = test_fd(&kinds, cases[i].fault, &e1);
		int m = test_fd(&kinds, cases[i].iommu, &e2);
		uint32_t ioas = cases[i].ioas == UINT32_MAX ? 0 : iopf_sim_ioas_id(s, 0);
		int r;

		print_message("  %s\n", cases[i].what);
		r = iopf_client_register_source(c, f, m, ioas, &id);
		expect_error(c, r, cases[i].error, cases[i].name, cases[i].msg);
		safe_close(f);
		safe_close(m);
		safe_close(e1);
		safe_close(e2);
	}
	/* nothing was registered, and the good pair still works */
	assert_int_equal(n_sources(c), 0);
	assert_true(source_of(c, s) > 0);
	iopf_client_free(c);
	iopf_sim_free(s);
}

static void test_simulator_refused(void **state)
{
	struct daemon d = {};
	struct iopf_client *c;
	struct iopf_sim *s = sim_new();
	uint64_t id;
	int r;

	daemon_start(&d, false);
	c = tenant(&d);
	r = iopf_client_register_source(c, iopf_sim_fault_fd(s), iopf_sim_iommufd(s),
					iopf_sim_ioas_id(s, 0), &id);
	expect_error(c, r, -EOPNOTSUPP, IOPF_ERROR_NOT_SUPPORTED, "--allow-simulator");
	iopf_client_free(c);
	daemon_stop(&d);
	iopf_sim_free(s);
}

static void test_domain_args(void **state)
{
	struct daemon *d = *state;
	struct iopf_client *c = tenant(d);
	struct iopf_sim *s = sim_new();
	uint64_t src = source_of(c, s), id = 0, dom;
	int r;

	r = iopf_client_register_domain(c, src, 1, IOPF_PASID_MAX + 1, &id);
	expect_error(c, r, -EINVAL, IOPF_ERROR_INVALID_ARGUMENT, "pasid 0x100000 is out of range");
	r = iopf_client_register_domain(c, src, 1, 0xfffffffe, &id);
	expect_error(c, r, -EINVAL, IOPF_ERROR_INVALID_ARGUMENT, "out of range");
	r = iopf_client_register_domain(c, src + 1000, 1, 0, &id);
	expect_missing(c, r, "no fault source");

	dom = domain_of(c, src, 1, IOPF_PASID_NONE);
	assert_true(domain_of(c, src, 1, IOPF_PASID_MAX) != dom); /* ids say nothing of order */
	r = iopf_client_register_domain(c, src, 1, IOPF_PASID_NONE, &id);
	expect_error(c, r, -EEXIST, IOPF_ERROR_EXISTS, "already has domain");
	/* a successful call clears the last error */
	assert_true(domain_of(c, src, 2, IOPF_PASID_NONE) > 0);
	assert_null(iopf_client_last_error(c));
	iopf_client_free(c);
	iopf_sim_free(s);
}

static void test_region_args(void **state)
{
	enum { RW = IOPF_ACCESS_READ | IOPF_ACCESS_WRITE };
	static const struct {
		const char *what;
		enum test_fd fd;
		uint64_t offset, iova, length;
		uint32_t access;
		int error;
		const char *name, *msg;
	} cases[] = {
		{"unaligned iova", TFD_MEM, 0, 0x1000800, 0x1000, RW, -EINVAL,
		 IOPF_ERROR_INVALID_ARGUMENT, "iova 0x1000800 must be 4096-aligned"},
		{"unaligned length", TFD_MEM, 0, 0x1000000, 0x1800, RW, -EINVAL,
		 IOPF_ERROR_INVALID_ARGUMENT, "length 0x1800 must be a multiple of 4096"},
		{"unaligned offset", TFD_MEM, 0x10, 0x1000000, 0x1000, RW, -EINVAL,
		 IOPF_ERROR_INVALID_ARGUMENT, "offset 0x10 must be 4096-aligned"},
		{"zero length", TFD_MEM, 0, 0x1000000, 0, RW, -EINVAL, IOPF_ERROR_INVALID_ARGUMENT,
		 "length must not be 0"},
		{"iova wraps", TFD_MEM, 0, UINT64_MAX - 0xfff, 0x2000, RW, -EINVAL,
		 IOPF_ERROR_INVALID_ARGUMENT, "wraps around the IOVA space"},
		{"iova ends at 2^64", TFD_MEM, 0, UINT64_MAX - 0xfff, 0x1000, RW, -EINVAL,
		 IOPF_ERROR_INVALID_ARGUMENT, "wraps around"},
		{"offset wraps", TFD_MEM, UINT64_MAX - 0xfff, 0x1000000, 0x2000, RW, -EINVAL,
		 IOPF_ERROR_INVALID_ARGUMENT, "wraps around"},
		{"beyond the end of the fd", TFD_MEM, MEM_SIZE - 0x1000, 0x1000000, 0x2000, RW,
		 -EINVAL, IOPF_ERROR_INVALID_ARGUMENT, "ends beyond the fd's size 0x100000"},
		{"no access bits", TFD_MEM, 0, 0x1000000, 0x1000, 0, -EINVAL,
		 IOPF_ERROR_INVALID_ARGUMENT, "access 0x0 must be a non-empty subset"},
		{"unknown access bit", TFD_MEM, 0, 0x1000000, 0x1000, 0x10 | RW, -EINVAL,
		 IOPF_ERROR_INVALID_ARGUMENT, "access 0x13 must be a non-empty subset"},
		{"pipe", TFD_PIPE, 0, 0x1000000, 0x1000, RW, -EBADF, IOPF_ERROR_BAD_FD,
		 "fd is not a memfd or regular file (it is pipe:"},
		{"/dev/null", TFD_DEVNULL, 0, 0x1000000, 0x1000, RW, -EBADF, IOPF_ERROR_BAD_FD,
		 "(it is /dev/null)"},
		{"socket", TFD_SOCKET, 0, 0x1000000, 0x1000, RW, -EBADF, IOPF_ERROR_BAD_FD,
		 "(it is socket:"},
		{"directory", TFD_DIR, 0, 0x1000000, 0x1000, IOPF_ACCESS_READ, -EBADF,
		 IOPF_ERROR_BAD_FD, "fd is not a memfd or regular file"},
		{"read-only fd, writable region", TFD_MEM_RDONLY, 0, 0x1000000, 0x1000, RW, -EBADF,
		 IOPF_ERROR_BAD_FD, "read-only but access 0x3 includes WRITE"},
		{"overlap", TFD_MEM, 0, 0x2001000, 0x2000, RW, -EBUSY, IOPF_ERROR_OVERLAP,
		 "region 0x2001000+0x2000 overlaps region"},
	};
	struct daemon *d = *state;
	struct iopf_client *c = tenant(d);
	struct iopf_sim *s = sim_new();
	uint64_t src = source_of(c, s), dom = domain_of(c, src, 1, IOPF_PASID_NONE), id = 0, first;
	struct iopf_client_region *list = NULL;
	size_t n = 0;
	int mem = memfd(MEM_SIZE), r;
	const struct test_fds kinds = {iopf_sim_fault_fd(s), iopf_sim_iommufd(s), MEM_SIZE};
	char want[128];

	/* [0x2000000, 0x2002000) is taken: the overlap case collides with it */
	first = region_of(c, dom, mem, 0, 0x2000000, 0x2000, RW);

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int extra = -EBADF, fd = test_fd(&kinds, cases[i].fd, &extra);

		print_message("  %s\n", cases[i].what);
		r = iopf_client_add_region(c, dom, fd, cases[i].offset, cases[i].iova,
					   cases[i].length, cases[i].access, &id);
		expect_error(c, r, cases[i].error, cases[i].name, cases[i].msg);
		safe_close(fd);
		safe_close(extra);
	}
	snprintf(want, sizeof(want), "overlaps region %" PRIu64 " [0x2000000, 0x2002000)", first);
	r = iopf_client_add_region(c, dom, mem, 0, 0x1fff000, 0x2000, RW, &id);
	expect_error(c, r, -EBUSY, IOPF_ERROR_OVERLAP, want);

	/* unknown domain, with otherwise good arguments */
	r = iopf_client_add_region(c, dom + 1000, mem, 0, 0x3000000, 0x1000, RW, &id);
	expect_missing(c, r, "no domain");

	/* only the first region exists; adjacent ones are fine */
	assert_int_equal(iopf_client_list_regions(c, &list, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(list[0].id, first);
	assert_int_equal(list[0].iova, 0x2000000);
	assert_int_equal(list[0].length, 0x2000);
	assert_int_equal(list[0].access, RW);
	free(list);
	region_of(c, dom, mem, 0x2000, 0x2002000, 0x1000, IOPF_ACCESS_READ);
	region_of(c, dom, mem, 0, 0x1fff000, 0x1000, RW);
	close(mem);
	iopf_client_free(c);
	iopf_sim_free(s);
}

/*
 * AddRegions: all or none. An overlap inside the batch or with a region there,
 * a bad entry, or a batch beyond the budget adds nothing and names the entry;
 * a good batch's ids are the regions' own (RemoveRegion takes them).
 */
static void test_add_regions(void **state)
{
	enum { RW = IOPF_ACCESS_READ | IOPF_ACCESS_WRITE };
	struct daemon *d = *state;
	struct iopf_client *c = tenant(d);
	struct iopf_sim *s = sim_new();
	uint64_t src = source_of(c, s), dom = domain_of(c, src, 1, IOPF_PASID_NONE), ids[8] = {};
	int mem = memfd(MEM_SIZE), mem2 = memfd(MEM_SIZE), ro = fd_reopen(mem, O_RDONLY), r;
	struct iopf_client_new_region v[MAX_REGIONS + 1];
	uint64_t first;

	for (size_t i = 0; i < ARRAY_SIZE(v); i++)
		v[i] = (struct iopf_client_new_region){
			.domain_id = dom,
			.fd = i % 2 ? mem2 : mem,
			.iova = 0x4000000 + i * 0x10000,
			.length = 0x2000,
			.access = RW,
		};
	first = region_of(c, dom, mem, 0, 0x2000000, 0x2000, RW);

	/* entry 2 overlaps entry 0 of the same call */
	v[2].iova = v[0].iova + 0x1000;
	r = iopf_client_add_regions(c, v, 3, ids);
	expect_error(c, r, -EBUSY, IOPF_ERROR_OVERLAP, "region 2: ");
	assert_non_null(strstr(iopf_client_last_error(c), "overlaps region 0 of the same call"));
	v[2].iova = 0x4000000 + 2 * 0x10000;
	/* entry 1 overlaps a region there */
	v[1].iova = 0x2001000;
	r = iopf_client_add_regions(c, v, 3, ids);
	expect_error(c, r, -EBUSY, IOPF_ERROR_OVERLAP, "region 1: ");
	v[1].iova = 0x4010000;
	/* a bad fd, and a bad argument, named by their index */
	v[2].fd = ro;
	r = iopf_client_add_regions(c, v, 3, ids);
	expect_error(c, r, -EBADF, IOPF_ERROR_BAD_FD, "region 2: fd is open read-only");
	v[2].fd = mem;
	v[1].length = 0x1001;
	r = iopf_client_add_regions(c, v, 3, ids);
	expect_error(c, r, -EINVAL, IOPF_ERROR_INVALID_ARGUMENT, "region 1: length");
	v[1].length = 0x2000;
	v[0].domain_id = dom + 1000;
	r = iopf_client_add_regions(c, v, 3, ids);
	expect_missing(c, r, "region 0: ");
	v[0].domain_id = dom;
	/* one region is there already: MaxRegions more would pass the budget */
	r = iopf_client_add_regions(c, v, MAX_REGIONS, ids);
	expect_error(c, r, -EDQUOT, IOPF_ERROR_LIMIT, "MaxRegions");
	assert_int_equal(iopf_client_add_regions(c, v, 0, ids), -EINVAL);
	assert_int_equal(n_regions(c), 1);

	/* the budget exactly: every id works */
	assert_int_equal(iopf_client_add_regions(c, v, MAX_REGIONS - 1, ids), 0);
	assert_int_equal(n_regions(c), MAX_REGIONS);
	for (size_t i = 0; i < MAX_REGIONS - 1; i++) {
		assert_true(ids[i] != first);
		for (size_t k = 0; k < i; k++)
			assert_true(ids[k] != ids[i]);
		assert_int_equal(iopf_client_remove_region(c, ids[i]), 0);
	}
	assert_int_equal(n_regions(c), 1);
	close(ro);
	close(mem2);
	close(mem);
	iopf_client_free(c);
	iopf_sim_free(s);
}

static void test_unknown_ids(void **state)
{
	static const uint64_t ids[] = {0, 1, 999999, UINT64_MAX};
	struct daemon *d = *state;
	struct iopf_client *c = tenant(d);

	for (size_t i = 0; i < ARRAY_SIZE(ids); i++) {
		expect_missing(c, iopf_client_unregister_source(c, ids[i]), "no fault source");
		expect_missing(c, iopf_client_unregister_domain(c, ids[i]), "no domain");
		expect_missing(c, iopf_client_remove_region(c, ids[i]), "no region");
	}
	iopf_client_free(c);
}

/* Another tenant's ids answer exactly like ids that never existed. */
static void test_ownership(void **state)
{
	struct daemon *d = *state;
	struct iopf_client *a = tenant(d), *b = tenant(d);
	struct iopf_sim *s = sim_new();
	uint64_t src = source_of(a, s), dom = domain_of(a, src, 1, IOPF_PASID_NONE), reg, id, v;
	struct iopf_client_source *ls = NULL;
	struct iopf_client_domain *ld = NULL;
	struct iopf_client_region *lr = NULL;
	int mem = memfd(MEM_SIZE);
	char want[64], ghost[64];
	size_t n;

	reg = region_of(a, dom, mem, 0, 0x1000000, 0x10000, IOPF_ACCESS_READ);

	/* b cannot touch a's objects, and the answer is that of a missing id */
	snprintf(want, sizeof(want), "no fault source %" PRIu64, src);
	expect_missing(b, iopf_client_unregister_source(b, src), want);
	snprintf(ghost, sizeof(ghost), "no fault source %" PRIu64, src + 1000);
	expect_missing(b, iopf_client_unregister_source(b, src + 1000), ghost);
	snprintf(want, sizeof(want), "no domain %" PRIu64, dom);
	expect_missing(b, iopf_client_unregister_domain(b, dom), want);
	snprintf(want, sizeof(want), "no region %" PRIu64, reg);
	expect_missing(b, iopf_client_remove_region(b, reg), want);
	expect_missing(b, iopf_client_register_domain(b, src, 2, IOPF_PASID_NONE, &id),
		       "no fault source");
	expect_error(
		b, iopf_client_add_region(b, dom, mem, 0, 0x2000000, 0x1000, IOPF_ACCESS_READ, &id),
		-ENOENT, IOPF_ERROR_NO_SUCH_OBJECT, "no domain");
	assert_int_equal(iopf_client_domain_counter(b, dom, "faults", &v), -ENOENT);
	assert_int_equal(iopf_client_source_counter(b, src, "faults", &v), -ENOENT);

	/* b's listings are empty, a's are intact */
	assert_int_equal(n_sources(b), 0);
	assert_int_equal(n_domains(b), 0);
	assert_int_equal(n_regions(b), 0);
	assert_int_equal(iopf_client_list_sources(a, &ls, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ls[0].id, src);
	assert_string_equal(ls[0].backend, "sim");
	assert_int_equal(iopf_client_list_domains(a, &ld, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ld[0].id, dom);
	assert_int_equal(ld[0].source_id, src);
	assert_int_equal(ld[0].pasid, IOPF_PASID_NONE);
	assert_int_equal(iopf_client_list_regions(a, &lr, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(lr[0].id, reg);
	free(ls);
	free(ld);
	free(lr);
	assert_int_equal(iopf_client_domain_counter(a, dom, "faults", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(iopf_client_domain_counter(a, dom, "no_such_counter", &v), -ENOENT);
	assert_int_equal(iopf_client_source_counter(a, src, "no_handler", &v), 0);

	close(mem);
	iopf_client_free(a);
	iopf_client_free(b);
	iopf_sim_free(s);
}

static void test_disconnect_teardown(void **state)
{
	struct daemon *d = *state;
	struct iopf_client *a = tenant(d), *b = tenant(d);
	struct iopf_sim *sa = sim_new(), *sb = sim_new();
	uint64_t srca = source_of(a, sa), doma = domain_of(a, srca, 1, IOPF_PASID_NONE);
	uint64_t srcb = source_of(b, sb), domb = domain_of(b, srcb, 1, IOPF_PASID_NONE);
	int mem = memfd(MEM_SIZE);

	if (geteuid() != 0)
		skip(); /* the All views are uid 0's */
	region_of(a, doma, mem, 0, 0x1000000, 0x10000, IOPF_ACCESS_READ);
	region_of(b, domb, mem, 0, 0x1000000, 0x10000, IOPF_ACCESS_READ);
	assert_int_equal(count_all(d, "ListAllSources", IOPF_WIRE_SOURCE_ALL), 2);
	assert_int_equal(count_all(d, "ListAllDomains", IOPF_WIRE_DOMAIN_ALL), 2);
	assert_int_equal(count_all(d, "ListAllRegions", IOPF_WIRE_REGION_ALL), 2);

	/* a goes away without unregistering anything */
	a = iopf_client_free(a);
	assert_true(wait_all_sources(d, 1));
	assert_int_equal(count_all(d, "ListAllDomains", IOPF_WIRE_DOMAIN_ALL), 1);
	assert_int_equal(count_all(d, "ListAllRegions", IOPF_WIRE_REGION_ALL), 1);

	/* b is untouched and keeps working */
	assert_int_equal(n_regions(b), 1);
	region_of(b, domb, mem, 0, 0x2000000, 0x1000, IOPF_ACCESS_READ);
	/* a's sim fds were closed by the daemon: the sim itself is still ours */
	b = iopf_client_free(b);
	assert_true(wait_all_sources(d, 0));
	assert_int_equal(count_all(d, "ListAllRegions", IOPF_WIRE_REGION_ALL), 0);
	close(mem);
	iopf_sim_free(sa);
	iopf_sim_free(sb);
}

static void test_limits(void **state)
{
	struct daemon *d = *state;
	struct iopf_client *a = tenant(d), *b = tenant(d);
	struct iopf_sim *s = sim_new();
	uint64_t src[MAX_SOURCES], reg[MAX_REGIONS], dom = 0, id;
	int mem = memfd(MEM_SIZE), r;

	for (unsigned i = 0; i < MAX_SOURCES; i++)
		src[i] = source_of(a, s);
	r = iopf_client_register_source(a, iopf_sim_fault_fd(s), iopf_sim_iommufd(s),
					iopf_sim_ioas_id(s, 0), &id);
	expect_error(a, r, -EDQUOT, IOPF_ERROR_LIMIT, "MaxSources=3");
	/* per tenant: b still gets its own */
	assert_true(source_of(b, s) > 0);

	for (unsigned i = 0; i < MAX_DOMAINS; i++)
		dom = domain_of(a, src[i % MAX_SOURCES], i, IOPF_PASID_NONE);
	r = iopf_client_register_domain(a, src[0], 99, IOPF_PASID_NONE, &id);
	expect_error(a, r, -EDQUOT, IOPF_ERROR_LIMIT, "MaxDomains=3");

	for (unsigned i = 0; i < MAX_REGIONS; i++)
		reg[i] = region_of(a, dom, mem, 0, 0x1000000 + i * 0x10000, 0x1000,
				   IOPF_ACCESS_READ);
	r = iopf_client_add_region(a, dom, mem, 0, 0x3000000, 0x1000, IOPF_ACCESS_READ, &id);
	expect_error(a, r, -EDQUOT, IOPF_ERROR_LIMIT, "MaxRegions=4");

	/* a removal makes room again */
	assert_int_equal(iopf_client_remove_region(a, reg[0]), 0);
	region_of(a, dom, mem, 0, 0x3000000, 0x1000, IOPF_ACCESS_READ);
	close(mem);
	iopf_client_free(a);
	iopf_client_free(b);
	iopf_sim_free(s);
}

static void test_removal(void **state)
{
	struct daemon *d = *state;
	struct iopf_client *c = tenant(d);
	struct iopf_sim *s = sim_new();
	uint64_t src = source_of(c, s), dom = domain_of(c, src, 1, IOPF_PASID_NONE), reg, id;
	int mem = memfd(MEM_SIZE);

	reg = region_of(c, dom, mem, 0, 0x1000000, 0x1000, IOPF_ACCESS_READ);
	/* the reply comes once the engine is done: the region is gone by then */
	assert_int_equal(iopf_client_remove_region(c, reg), 0);
	assert_int_equal(n_regions(c), 0);
	expect_missing(c, iopf_client_remove_region(c, reg), "no region");

	/* a domain takes its regions with it; a source its domains */
	reg = region_of(c, dom, mem, 0, 0x1000000, 0x1000, IOPF_ACCESS_READ);
	assert_int_equal(iopf_client_unregister_domain(c, dom), 0);
	assert_int_equal(n_regions(c), 0);
	expect_missing(c, iopf_client_remove_region(c, reg), "no region");
	dom = domain_of(c, src, 1, IOPF_PASID_NONE); /* the key is free again */
	assert_int_equal(iopf_client_register_domain(c, src, 2, 7, &id), 0);
	assert_int_equal(iopf_client_unregister_source(c, src), 0);
	assert_int_equal(n_domains(c), 0);
	expect_missing(c, iopf_client_unregister_domain(c, dom), "no domain");
	close(mem);
	iopf_client_free(c);
	iopf_sim_free(s);
}

/* A peer that speaks garbage, or hangs up mid-handshake, harms nobody else. */
static void test_bad_peers(void **state)
{
	struct daemon *d = *state;
	struct iopf_client *c = tenant(d);
	struct iopf_sim *s = sim_new();
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	uint64_t src = source_of(c, s);
	struct iopf_client_source *ls = NULL;
	size_t n;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d->sock);
	for (int i = 0; i < 20; i++) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		if (i % 2)
			(void)!write(fd, "\0AUTH GARBAGE\r\nBEGIN\r\n\xff\xff\xff\xff", 27);
		close(fd);
	}
	/* a tenant that asks for a removal and hangs up before the answer */
	for (int i = 0; i < 5; i++) {
		_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
		sd_bus_error error = SD_BUS_ERROR_NULL;
		sd_bus *bus = NULL;
		uint64_t id;

		assert_true(sd_bus_new(&bus) >= 0);
		assert_true(sd_bus_set_address(bus, d->addr) >= 0);
		assert_true(sd_bus_negotiate_fds(bus, 1) >= 0);
		assert_true(sd_bus_start(bus) >= 0);
		assert_true(sd_bus_call_method(bus, NULL, "/org/iopfd", "org.iopfd.Manager1",
					       "RegisterSource", &error, &reply,
					       IOPF_WIRE_REGISTER_SOURCE_IN, iopf_sim_fault_fd(s),
					       iopf_sim_iommufd(s), iopf_sim_ioas_id(s, 0)) >= 0);
		assert_true(sd_bus_message_read(reply, IOPF_WIRE_ID, &id) > 0);
		assert_true(sd_bus_call_method_async(bus, NULL, NULL, "/org/iopfd",
						     "org.iopfd.Manager1", "UnregisterSource", NULL,
						     NULL, IOPF_WIRE_ID, id) >= 0);
		sd_bus_flush_close_unref(bus);
	}
	if (geteuid() == 0)
		assert_true(wait_all_sources(d, 1));

	assert_int_equal(iopf_client_list_sources(c, &ls, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ls[0].id, src);
	free(ls);
	iopf_client_free(c);
	iopf_sim_free(s);
}

static void test_all_views_need_root(void **state)
{
	struct daemon *d = *state;
	char cmd[512];

	if (geteuid() == 0) {
		/* as root, the All views answer; as nobody, AccessDenied */
		assert_int_equal(count_all(d, "ListAllSources", IOPF_WIRE_SOURCE_ALL), 0);
		snprintf(cmd, sizeof(cmd),
			 "setpriv --reuid=65534 --regid=65534 --clear-groups busctl --address=%s "
			 "call org.iopfd /org/iopfd org.iopfd.Manager1 ListAllSources 2>&1 | "
			 "grep -q 'needs uid 0'",
			 d->addr);
		if (system("command -v setpriv >/dev/null") == 0)
			assert_int_equal(system(cmd), 0);
	} else {
		snprintf(cmd, sizeof(cmd),
			 "busctl --address=%s call org.iopfd /org/iopfd org.iopfd.Manager1 "
			 "ListAllSources 2>&1 | grep -q 'needs uid 0'",
			 d->addr);
		assert_int_equal(system(cmd), 0);
	}
}

/*
 * The system bus: a private dbus-daemon stands in for it (sd-bus and the
 * client honour $DBUS_SYSTEM_BUS_ADDRESS). Tenants are unique names there;
 * one that leaves the bus loses its objects.
 */
struct system_bus {
	struct daemon d; /* first: the helpers take it as a struct daemon */
	char dir[32];
	char path[64];
	pid_t pid;
};

static int setup_system_bus(void **state)
{
	struct system_bus *sb = calloc(1, sizeof(*sb));
	char address[96], arg[128];

	if (system("command -v dbus-daemon >/dev/null") != 0) {
		free(sb);
		skip();
	}
	*state = sb;
	strcpy(sb->dir, "/tmp/iopfd-bus-XXXXXX");
	assert_non_null(mkdtemp(sb->dir));
	snprintf(sb->path, sizeof(sb->path), "%s/bus", sb->dir);
	snprintf(address, sizeof(address), "unix:path=%s", sb->path);
	sb->pid = fork();
	assert_true(sb->pid >= 0);
	if (sb->pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		/* it complains about fd limits in containers; and must not hold our stdout */
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		/* a session-type bus: it lets any name be owned, which is all we need */
		snprintf(arg, sizeof(arg), "--address=%s", address);
		execlp("dbus-daemon", "dbus-daemon", "--session", "--nofork", arg, NULL);
		_exit(127);
	}
	for (int i = 0; i < 500 && !socket_up(sb->path); i++)
		usleep(10000);
	assert_true(socket_up(sb->path));
	setenv("DBUS_SYSTEM_BUS_ADDRESS", address, 1);
	daemon_start_full(&sb->d, true, true);
	return 0;
}

static int teardown_system_bus(void **state)
{
	struct system_bus *sb = *state;

	if (sb->d.pid > 0)
		daemon_stop(&sb->d);
	unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
	if (sb->pid > 0) {
		kill(sb->pid, SIGTERM);
		waitpid(sb->pid, NULL, 0);
	}
	unlink(sb->path);
	rmdir(sb->dir);
	free(sb);
	return 0;
}

/*
 * The system bus: a private dbus-daemon stands in for it (sd-bus and the
 * client honour $DBUS_SYSTEM_BUS_ADDRESS). Tenants are unique names there;
 * one that leaves the bus loses its objects.
 */
static void test_system_bus(void **state)
{
	struct system_bus *sb = *state;
	struct daemon *d = &sb->d;
	struct iopf_client *a, *b;
	struct iopf_sim *s = sim_new();
	uint64_t src, dom;
	int mem = memfd(MEM_SIZE);

	assert_int_equal(iopf_client_connect("system", &a), 0);
	assert_int_equal(iopf_client_connect("system", &b), 0);
	src = source_of(a, s);
	dom = domain_of(a, src, 1, IOPF_PASID_NONE);
	region_of(a, dom, mem, 0, 0x1000000, 0x1000, IOPF_ACCESS_READ);
	/* the same rules as on the socket: b sees and touches nothing of a's */
	expect_missing(b, iopf_client_unregister_source(b, src), "no fault source");
	assert_int_equal(n_sources(b), 0);
	assert_int_equal(n_sources(a), 1);

	/* a leaves the bus: its objects go, the socket's operator view shows it */
	if (geteuid() == 0) {
		assert_int_equal(count_all(d, "ListAllRegions", IOPF_WIRE_REGION_ALL), 1);
		a = iopf_client_free(a);
		assert_true(wait_all_sources(d, 0));
		assert_int_equal(count_all(d, "ListAllRegions", IOPF_WIRE_REGION_ALL), 0);
	}
	/* b still works */
	assert_true(source_of(b, s) > 0);
	iopf_client_free(a);
	iopf_client_free(b);
	close(mem);
	iopf_sim_free(s);
}

/* Asked for the system bus with none reachable, iopfd warns and serves the socket. */
static void test_system_bus_unreachable(void **state)
{
	struct daemon d = {};
	struct iopf_client *c;

	setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/iopfd-test-bus", 1);
	daemon_start_full(&d, true, true);
	unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
	c = tenant(&d);
	assert_int_equal(n_sources(c), 0);
	iopf_client_free(c);
	daemon_stop(&d);
}

static const char *iopfctl_path(void)
{
	const char *p = getenv("IOPFCTL");

	return p && *p ? p : "iopfctl";
}

/* Run a shell command, return its stdout and exit status. */
static int run(char *out, size_t size, const char *fmt, ...) _printf_(3, 4);
static int run(char *out, size_t size, const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	size_t n;
	FILE *p;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	p = popen(cmd, "r");
	assert_non_null(p);
	n = fread(out, 1, size - 1, p);
	out[n] = '\0';
	return WEXITSTATUS(pclose(p));
}

/* Column @col of @line starts at the same offset as the header's column @col. */
static size_t column_start(const char *line, unsigned col)
{
	const char *p = line;

	for (unsigned i = 0; i < col; i++) {
		while (*p && *p != ' ')
			p++;
		while (*p == ' ')
			p++;
	}
	return (size_t)(p - line);
}

/* Where the extended regular expression @re first matches in @s, or NULL. */
static char *find_re(char *s, const char *re)
{
	regmatch_t m;
	regex_t r;
	int ok;

	if (regcomp(&r, re, REG_EXTENDED) != 0)
		return NULL;
	ok = regexec(&r, s, 1, &m, 0) == 0;
	regfree(&r);
	return ok ? s + m.rm_so : NULL;
}

static void test_iopfctl(void **state)
{
	struct daemon *d = *state;
	struct iopf_client *c = tenant(d);
	struct iopf_sim *s = sim_new();
	uint64_t src = source_of(c, s), dom = domain_of(c, src, 3, 5);
	char out[8192], *hdr, *row;
	int mem = memfd(MEM_SIZE);

	if (geteuid() != 0)
		skip(); /* the operator view */
	region_of(c, dom, mem, 0, 0x1000000, 0x3000, IOPF_ACCESS_READ | IOPF_ACCESS_WRITE);

	assert_int_equal(run(out, sizeof(out), "'%s' --address %s list", iopfctl_path(), d->addr),
			 0);
	/* ids are wide (they reveal nothing), so are their columns */
	assert_non_null(find_re(out, "TENANT +SOURCE +IOAS +BACKEND"));
	assert_non_null(strstr(out, "sim"));
	assert_non_null(strstr(out, "0x5")); /* the pasid */
	/* aligned columns: the region row's IOVA sits under the IOVA header */
	hdr = find_re(out, "TENANT +REGION");
	assert_non_null(hdr);
	row = strchr(hdr, '\n') + 1;
	assert_int_equal(column_start(hdr, 3), column_start(row, 3));
	assert_true(strncmp(row + column_start(row, 3), "0x1000000", 9) == 0);
	assert_non_null(strstr(row, "12.0KiB"));
	assert_non_null(strstr(row, "rw--"));

	assert_int_equal(run(out, sizeof(out), "'%s' --address %s stats", iopfctl_path(), d->addr),
			 0);
	assert_non_null(strstr(out, "FAULTS"));
	assert_non_null(strstr(out, "Unrouted"));

	/* --json is JSON, with every counter */
	if (system("command -v python3 >/dev/null") == 0) {
		assert_int_equal(
			run(out, sizeof(out),
			    "'%s' --address %s --json stats | python3 -c 'import json,sys; "
			    "d=json.load(sys.stdin); c=d[\"domains\"][0]; "
			    "assert c[\"pasid\"]==5 and c[\"dev_id\"]==3; "
			    "assert \"no_handler\" in d[\"unrouted\"][0][\"counters\"]; "
			    "print(\"ok\")'",
			    iopfctl_path(), d->addr),
			0);
		assert_string_equal(out, "ok\n");
		assert_int_equal(run(out, sizeof(out),
				     "'%s' --address %s --json list | python3 -c 'import json,sys; "
				     "d=json.load(sys.stdin); assert len(d[\"regions\"])==1; "
				     "assert d[\"domains\"][0][\"pasid\"]==5; print(\"ok\")'",
				     iopfctl_path(), d->addr),
				 0);
	}
	/* its own connection owns nothing */
	assert_int_equal(run(out, sizeof(out), "'%s' --address %s --mine sources 2>/dev/null",
			     iopfctl_path(), d->addr),
			 0);
	assert_string_equal(out, "SOURCE IOAS BACKEND\n");
	assert_int_not_equal(
		run(out, sizeof(out), "'%s' --address %s frobnicate 2>&1", iopfctl_path(), d->addr),
		0);
	assert_int_not_equal(run(out, sizeof(out),
				 "'%s' --address unix:path=/nonexistent list 2>&1", iopfctl_path()),
			     0);
	assert_non_null(strstr(out, "cannot connect"));
	close(mem);
	iopf_client_free(c);
	iopf_sim_free(s);
}

/* READY=1 once serving, STOPPING=1 on the way out. */
/* Read notify datagrams until one says @what (the timeout ends the wait). */
static bool recv_until(int fd, char *buf, size_t size, const char *what)
{
	for (unsigned i = 0; i < 64; i++) {
		ssize_t n = recv(fd, buf, size - 1, 0);

		if (n <= 0)
			return false;
		buf[n] = '\0';
		if (strstr(buf, what))
			return true;
	}
	return false;
}

static void test_sd_notify(void **state)
{
	char dir[] = "/tmp/iopfd-notify-XXXXXX", buf[256];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct daemon d = {};
	struct timeval tv = {.tv_sec = 5};
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", dir);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	setenv("NOTIFY_SOCKET", sa.sun_path, 1);
	daemon_start(&d, true);
	unsetenv("NOTIFY_SOCKET");

	/* FDSTORE=1 datagrams (the state arena) may come first */
	assert_true(recv_until(fd, buf, sizeof(buf), "READY=1"));
	daemon_stop(&d);
	assert_true(recv_until(fd, buf, sizeof(buf), "STOPPING=1"));
	close(fd);
	unlink(sa.sun_path);
	rmdir(dir);
}

static void test_check_config(void **state)
{
	static const struct {
		const char *text;
		int status;
		const char *out;
	} cases[] = {
		{"[Daemon]\nWorkers=4\nFaultAround=128K\n", 0, "configuration OK"},
		{"", 0, "configuration OK"},
		{"[Daemon]\nWorkers=4\nWorkers=lots\n", 1,
		 "iopfd.conf:3: Workers=lots: not a number"},
		{"[Daemon]\nFaultAround=12345\n", 1,
		 "iopfd.conf:2: FaultAround=12345: not a power of two"},
		{"[Limits]\nMaxRegions=0\n", 1, "iopfd.conf:2: MaxRegions=0"},
		{"[Daemon]\nFrobnicate=yes\n", 1,
		 "iopfd.conf:2: unknown key Frobnicate in section [Daemon]"},
		{"[Daemon]\nControlSocket=relative\n", 1,
		 "ControlSocket=relative: not an absolute path"},
		{"[Daemon]\nAllowSimulator=maybe\n", 1, "AllowSimulator=maybe: not a boolean"},
	};
	char dir[] = "/tmp/iopfd-conf-XXXXXX", path[64], cmd[256], out[512];

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/iopfd.conf", dir);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		FILE *p;
		size_t n;
		int st;

		write_file(path, cases[i].text);
		snprintf(cmd, sizeof(cmd), "'%s' --check-config --config %s 2>&1", iopfd_path(),
			 path);
		p = popen(cmd, "r");
		n = fread(out, 1, sizeof(out) - 1, p);
		out[n] = '\0';
		st = pclose(p);
		if (!strstr(out, cases[i].out))
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, out, cases[i].out);
		assert_int_equal(WEXITSTATUS(st), cases[i].status);
	}
	/* the command line overrides the file, and is checked the same way */
	write_file(path, "[Daemon]\nWorkers=4\n");
	snprintf(cmd, sizeof(cmd), "'%s' --check-config --config %s --workers 2000 2>&1",
		 iopfd_path(), path);
	assert_int_not_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "'%s' --check-config --config %s/missing 2>&1 | grep -q missing",
		 iopfd_path(), dir);
	assert_int_equal(system(cmd), 0);
	unlink(path);
	rmdir(dir);
}

static void on_alarm(int sig)
{
	static const char msg[] = "test-control: hard timeout, killing the process group\n";

	(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
	signal(SIGTERM, SIG_IGN);
	kill(0, SIGKILL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_introspect_busctl),
		TEST(test_source_fd_kinds),
		cmocka_unit_test(test_simulator_refused),
		TEST(test_domain_args),
		TEST(test_region_args),
		TEST(test_add_regions),
		TEST(test_unknown_ids),
		TEST(test_ownership),
		TEST(test_disconnect_teardown),
		TEST(test_limits),
		TEST(test_removal),
		TEST(test_bad_peers),
		TEST(test_all_views_need_root),
		TEST(test_iopfctl),
		cmocka_unit_test(test_sd_notify),
		cmocka_unit_test_setup_teardown(test_system_bus, setup_system_bus,
						teardown_system_bus),
		cmocka_unit_test(test_system_bus_unreachable),
		cmocka_unit_test(test_check_config),
	};

	/* A hung daemon fails the run instead of stalling it; take our children along. */
	(void)setpgid(0, 0);
	signal(SIGALRM, on_alarm);
	alarm(TEST_TIMEOUT_S);
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
