/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iopf-ktenant: a tenant of a real iopfd, running the real-kernel scenarios against the
 * iommufd selftest mock in the guest.
 *
 *   iopf-ktenant SCENARIO --address ADDR --daemon-pid PID [--layout nested|paging]
 *                [--window BYTES] [--faults N] [--tenants N] [--inflight N]
 *   iopf-ktenant restart --address unix:path=SOCKET [--layout L] [--window BYTES]
 *                [--log FILE] -- IOPFD-COMMAND...
 *
 * restart runs iopfd itself, under the fd-store stand-in (fdstore.h) that plays
 * systemd's part: it kills it with SIGKILL amid faults and starts it again (see
 * scenario_restart()).
 *
 * Each tenant owns an iommufd world (kt.h): IOAS, mock devices, a fault queue and the
 * fault-capable hwpt in the --layout asked for (kt.h), its memory in a memfd. It registers
 * the fault queue, domains and regions with iopfd through libiopf-client and raises
 * faults with TRIGGER_IOPF; iopfd reads them from its copy of the fault fd, maps the memfd
 * range into the tenant's IOAS (IOAS_MAP_FILE where the kernel has it, else IOAS_MAP of
 * its own mmap of the memfd) and answers. In the PAGING layout each PASID a domain is
 * registered for is attached to the fault hwpt first, as a real tenant would.
 *
 * How the tenant sees what iopfd did, without reading the fault fd itself:
 *  - "mapped": MD_CHECK_MAP on the paging hwpt under the fault hwpt, with the tenant's
 *    own address of the same memfd offset: the same shmem pages, so 0 proves iopfd
 *    mapped exactly the right memory. "nothing mapped": an IOAS_MAP of a scratch page
 *    at that IOVA succeeds (and is undone at once) instead of failing with EEXIST.
 *  - "answered": the mock's page_response does nothing visible, and the cookies are
 *    iopfd's. Two facts are combined. First, iopfd's own counters (GetAllStats over a
 *    second, root, D-Bus connection) must show every group answered with the right
 *    code and reason, and no stale response. Second, the kernel is asked: a response
 *    written for a cookie that is not outstanding fails with EINVAL; cookies are the
 *    lowest free ids from 1, so probing 1..(faults raised + slack) covers every group
 *    ever read. A probe that succeeds would answer someone else's group, so it runs
 *    only when nobody else can answer on that fd any more: after UnregisterSource has
 *    returned (iopfd replies only once its worker answered what it held and unmapped)
 *    or, for a tenant that vanished, once iopfd has closed its copy of the fault fd
 *    (kcmp). Any outstanding cookie then is a group iopfd read and never answered;
 *    EPOLLIN is a group it never read.
 * Every wait is a bounded retry loop on one of these conditions, never a fixed sleep.
 *
 * Exit: 0 pass, 1 fail, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "iopf/client.h"
#include "iopf/iopf.h"
#include "fdstore.h"
#include "kt.h"
#include "wire-bus.h"

#define WAIT_MS	    20000 /* bound on any wait for iopfd (TCG is slow, not this slow) */
#define PROBE_SLACK 8	  /* cookies probed beyond the number of faults raised */
#define REGION_IOVA (UINT64_C(32) << 20)
#define PAGE	    UINT64_C(4096)

static struct {
	const char *address;
	pid_t daemon_pid;
	uint64_t window;
	unsigned faults;
	unsigned tenants;
	unsigned inflight;
	enum kt_layout layout;
	const char *log_path; /* restart: where iopfd's output goes */
	char **daemon_argv;   /* restart: the iopfd command line, after "--" */
} opt = {.window = 65536,
	 .faults = 10000,
	 .tenants = 4,
	 .inflight = 1,
	 .log_path = "/tmp/iopfd-restart.log"};

static sd_bus *observer; /* root connection for GetAllStats; main thread only */

/* ---------------------------------------------------------------- small helpers */

static void sleep_us(unsigned us)
{
	struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Retry cond(arg) until it returns != 0 or WAIT_MS passes. Return: cond's last value. */
static int wait_until(int (*cond)(void *arg), void *arg)
{
	uint64_t deadline = kt_now_ns() + (uint64_t)WAIT_MS * 1000000;
	unsigned delay = 50;
	int r;

	for (;;) {
		r = cond(arg);
		if (r != 0 || kt_now_ns() > deadline)
			return r;
		sleep_us(delay);
		if (delay < 20000)
			delay *= 2;
	}
}

/* ---------------------------------------------------------------- iopfd's counters */

struct ctrs {
	bool found;
	uint64_t faults, groups, success, invalid, stale, pages_mapped, maps, coalesced;
	uint64_t bytes_mapped;
	uint64_t reason[_IOPF_REASON_MAX];
};

static void ctrs_set(struct ctrs *c, const char *name, uint64_t v)
{
	static const struct {
		const char *name;
		size_t off;
	} f[] = {
		{"faults", offsetof(struct ctrs, faults)},
		{"groups", offsetof(struct ctrs, groups)},
		{"success", offsetof(struct ctrs, success)},
		{"invalid", offsetof(struct ctrs, invalid)},
		{"stale", offsetof(struct ctrs, stale)},
		{"pages_mapped", offsetof(struct ctrs, pages_mapped)},
		{"maps", offsetof(struct ctrs, maps)},
		{"coalesced", offsetof(struct ctrs, coalesced)},
		{"bytes_mapped", offsetof(struct ctrs, bytes_mapped)},
	};

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (strcmp(f[i].name, name) == 0) {
			*(uint64_t *)((char *)c + f[i].off) = v;
			return;
		}
	for (unsigned i = 0; i < _IOPF_REASON_MAX; i++)
		if (strcmp(iopf_wire_reason_name(i), name) == 0) {
			c->reason[i] = v;
			return;
		}
}

/* iopf_wire_read_counters() into the struct ctrs @userdata, or with NULL past them. */
static void ctrs_take(const char *name, uint64_t v, void *userdata)
{
	if (userdata)
		ctrs_set(userdata, name, v);
}

/*
 * The counters of one object, from the operator view: a domain (GetAllStats) or, with
 * @source, the faults of a source that found no domain (GetAllSourceStats).
 */
static int stats_get(uint64_t id, bool source, struct ctrs *ret)
{
	sd_bus_error error = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	int r;

	*ret = (struct ctrs){0};
	r = sd_bus_call_method(observer, NULL, IOPF_DBUS_PATH, IOPF_DBUS_INTERFACE,
			       source ? "GetAllSourceStats" : "GetAllStats", &error, &reply, "");
	if (r < 0) {
		kt_log("%s: %s", source ? "GetAllSourceStats" : "GetAllStats",
		       error.message ? error.message : strerror(-r));
		sd_bus_error_free(&error);
		return r;
	}
	r = sd_bus_message_enter_container(reply, 'a', source ? "(tta{st})" : "(tttuua{st})");
	while (r >= 0 && (r = sd_bus_message_enter_container(
				  reply, 'r', source ? "tta{st}" : "tttuua{st}")) > 0) {
		uint64_t tenant, oid, source_id;
		uint32_t dev_id, pasid;

		if (source)
			r = sd_bus_message_read(reply, "tt", &tenant, &oid);
		else
			r = sd_bus_message_read(reply, "tttuu", &tenant, &oid, &source_id, &dev_id,
						&pasid);
		if (r < 0)
			break;
		r = iopf_wire_read_counters(reply, ctrs_take, oid == id ? ret : NULL);
		if (r < 0)
			break;
		if (oid == id)
			ret->found = true;
		r = sd_bus_message_exit_container(reply);
	}
	sd_bus_message_unref(reply);
	if (r < 0)
		kt_log("cannot parse the statistics reply: %s", strerror(-r));
	return r < 0 ? r : 0;
}

struct stats_wait {
	uint64_t id;
	bool source;
	uint64_t groups;
	struct ctrs c;
};

static int stats_reached(void *arg)
{
	struct stats_wait *s = arg;

	if (stats_get(s->id, s->source, &s->c) < 0)
		return -1;
	return s->c.found && s->c.groups >= s->groups;
}

/* Wait until iopfd counts @groups answered groups on the object; check the breakdown. */
/* @reason: every group must have it; -1 skips that check (the caller looks itself). */
static int expect_stats(const char *what, uint64_t id, bool source, uint64_t groups,
			uint64_t success, uint64_t invalid, int reason, struct ctrs *ret)
{
	struct stats_wait s = {.id = id, .source = source, .groups = groups};
	int r = wait_until(stats_reached, &s);

	if (ret)
		*ret = s.c;
	if (r <= 0) {
		kt_fail("%s: iopfd counts %" PRIu64 " of %" PRIu64 " groups answered after %d ms%s",
			what, s.c.groups, groups, WAIT_MS, s.c.found ? "" : " (object not listed)");
		return -1;
	}
	if (s.c.groups != groups || s.c.success != success || s.c.invalid != invalid ||
	    (reason >= 0 && s.c.reason[reason] != groups) || s.c.stale != 0) {
		kt_fail("%s: groups %" PRIu64 " success %" PRIu64 " invalid %" PRIu64 " %s %" PRIu64
			" stale %" PRIu64 "; wanted %" PRIu64 "/%" PRIu64 "/%" PRIu64
			", all %s, 0 stale",
			what, s.c.groups, s.c.success, s.c.invalid,
			reason >= 0 ? iopf_wire_reason_name(reason) : "-",
			reason >= 0 ? s.c.reason[reason] : 0, s.c.stale, groups, success, invalid,
			reason >= 0 ? iopf_wire_reason_name(reason) : "-");
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- a tenant */

struct tenant {
	char name[32];
	struct kt_world w;
	struct kt_mem mem;
	struct iopf_client *client;
	uint64_t source_id;
	bool registered;
	uint32_t n_triggered;
};

static const char *client_error(struct tenant *t, int r)
{
	const char *m = t->client ? iopf_client_last_error(t->client) : NULL;

	return m ? m : strerror(-r);
}

static void tenant_close(struct tenant *t)
{
	t->client = iopf_client_free(t->client);
	kt_mem_close(&t->mem);
	kt_world_close(&t->w);
}

/* The iommufd world and memory only; tenant_connect() registers it. */
static int tenant_build(struct tenant *t, const char *name, unsigned n_dev, uint64_t mem_size)
{
	int r;

	*t = (struct tenant){0};
	t->w = (struct kt_world){.iommufd = -1, .fault_fd = -1};
	t->mem = (struct kt_mem){.memfd = -1};
	snprintf(t->name, sizeof(t->name), "%s", name);
	r = kt_world_open(&t->w, n_dev, opt.layout);
	if (r < 0) {
		kt_fail("%s: cannot build the mock world (%s): %s", name,
			kt_layout_name(opt.layout), strerror(-r));
		return r;
	}
	r = kt_mem_open(&t->mem, mem_size);
	if (r < 0) {
		kt_fail("%s: memfd of %" PRIu64 " bytes: %s", name, mem_size, strerror(-r));
		tenant_close(t);
		return r;
	}
	return 0;
}

static int tenant_connect(struct tenant *t)
{
	int r;

	r = iopf_client_connect(opt.address, &t->client);
	if (r < 0) {
		kt_fail("%s: connect to %s: %s", t->name, opt.address, strerror(-r));
		return r;
	}
	r = iopf_client_register_source(t->client, t->w.fault_fd, t->w.iommufd, t->w.ioas_id,
					&t->source_id);
	if (r < 0) {
		kt_fail("%s: RegisterSource: %s", t->name, client_error(t, r));
		return r;
	}
	t->registered = true;
	return 0;
}

static int tenant_open(struct tenant *t, const char *name, unsigned n_dev, uint64_t mem_size)
{
	int r = tenant_build(t, name, n_dev, mem_size);

	if (r < 0)
		return r;
	r = tenant_connect(t);
	if (r < 0)
		tenant_close(t);
	return r;
}

/* Attach the PASID's faults to the queue (PAGING layout; nothing to do when NESTED). */
static int tenant_pasid(struct tenant *t, unsigned dev, uint32_t pasid)
{
	int r;

	if (pasid == IOPF_PASID_NONE)
		return 0;
	r = kt_world_attach_pasid(&t->w, dev, pasid);
	if (r < 0)
		kt_fail("%s: PASID_ATTACH(dev %u, pasid %#x): %s", t->name, t->w.dev[dev].idev_id,
			pasid, strerror(-r));
	return r;
}

/* RegisterDomain only: the PASID is left as it is. */
static int tenant_domain_only(struct tenant *t, unsigned dev, uint32_t pasid, uint64_t *ret)
{
	int r = iopf_client_register_domain(t->client, t->source_id, t->w.dev[dev].idev_id, pasid,
					    ret);
	if (r < 0)
		kt_fail("%s: RegisterDomain(dev %u, pasid %#x): %s", t->name, t->w.dev[dev].idev_id,
			pasid, client_error(t, r));
	return r;
}

/* RegisterDomain, with the PASID attached so that its faults reach the queue. */
static int tenant_domain(struct tenant *t, unsigned dev, uint32_t pasid, uint64_t *ret)
{
	if (tenant_pasid(t, dev, pasid) < 0)
		return -1;
	return tenant_domain_only(t, dev, pasid, ret);
}

static int tenant_region(struct tenant *t, uint64_t domain, uint64_t mem_off, uint64_t iova,
			 uint64_t length, uint32_t access)
{
	uint64_t id;
	int r = iopf_client_add_region(t->client, domain, t->mem.memfd, mem_off, iova, length,
				       access, &id);
	if (r < 0)
		kt_fail("%s: AddRegion(iova %#" PRIx64 " +%#" PRIx64 "): %s", t->name, iova, length,
			client_error(t, r));
	return r;
}

/* pasid: IOPF_PASID_NONE raises a fault without PASID_VALID. */
static int tenant_trigger(struct tenant *t, unsigned dev, uint32_t pasid, uint32_t perm,
			  uint64_t addr)
{
	int r = kt_trigger(&t->w, t->w.dev[dev].idev_id, pasid == IOPF_PASID_NONE ? 0 : pasid,
			   t->n_triggered & 0x1ff, perm, addr);

	if (r < 0)
		kt_fail("%s: TRIGGER_IOPF(dev %u, pasid %#x, addr %#" PRIx64 "): %s", t->name,
			t->w.dev[dev].idev_id, pasid, addr, strerror(-r));
	else
		t->n_triggered++;
	return r;
}

/* [iova, iova+length) maps exactly this tenant's memory at mem_off. */
static bool mapped_exact(struct tenant *t, uint64_t iova, uint64_t length, uint64_t mem_off)
{
	return kt_check_map(&t->w, iova, length, t->mem.va + mem_off) == 0;
}

struct map_wait {
	struct tenant *t;
	uint64_t iova, length, mem_off;
};

static int map_reached(void *arg)
{
	struct map_wait *m = arg;

	return mapped_exact(m->t, m->iova, m->length, m->mem_off);
}

static int expect_mapped(struct tenant *t, uint64_t iova, uint64_t length, uint64_t mem_off)
{
	struct map_wait m = {t, iova, length, mem_off};

	if (wait_until(map_reached, &m) <= 0) {
		kt_fail("%s: iova %#" PRIx64 " +%#" PRIx64 " does not map memfd offset %#" PRIx64
			" after %d ms",
			t->name, iova, length, mem_off, WAIT_MS);
		return -1;
	}
	return 0;
}

/*
 * Nothing at all is mapped in [iova, iova+length): mapping a scratch page there
 * succeeds. Undone at once. Only called when iopfd is not about to map there.
 */
static int iova_free(struct tenant *t, uint64_t iova, uint64_t length)
{
	for (uint64_t off = 0; off < length; off += PAGE) {
		int r = kt_ioas_map(t->w.iommufd, t->w.ioas_id, t->mem.va, PAGE, iova + off);

		if (r == -EEXIST)
			return 0;
		if (r < 0) {
			kt_fail("%s: scratch IOAS_MAP at %#" PRIx64 ": %s", t->name, iova + off,
				strerror(-r));
			return -1;
		}
		r = kt_ioas_unmap(t->w.iommufd, t->w.ioas_id, iova + off, PAGE);
		if (r < 0) {
			kt_fail("%s: scratch IOAS_UNMAP: %s", t->name, strerror(-r));
			return -1;
		}
	}
	return 1;
}

static int expect_unmapped(struct tenant *t, uint64_t iova, uint64_t length, const char *why)
{
	int r = iova_free(t, iova, length);

	if (r == 0)
		kt_fail("%s: something is mapped in iova %#" PRIx64 " +%#" PRIx64 " (%s)", t->name,
			iova, length, why);
	return r == 1 ? 0 : -1;
}

struct hold_wait {
	int fd;
};

static int released(void *arg)
{
	struct hold_wait *h = arg;
	int r = kt_pid_holds_file(opt.daemon_pid, h->fd);

	return r == 0 ? 1 : r < 0 ? r : 0;
}

/* iopfd has closed its copies of this tenant's fault fd and iommufd. */
static int expect_released(struct tenant *t)
{
	struct hold_wait h = {t->w.fault_fd};
	int r = wait_until(released, &h);

	if (r == 1) {
		h.fd = t->w.iommufd;
		r = wait_until(released, &h);
	}
	if (r != 1) {
		kt_fail("%s: iopfd (pid %d) still holds the tenant's %s after %d ms%s", t->name,
			(int)opt.daemon_pid, h.fd == t->w.fault_fd ? "fault fd" : "iommufd",
			WAIT_MS, r < 0 ? " (kcmp failed)" : "");
		return -1;
	}
	return 0;
}

/*
 * Nobody answers on this fault fd any more: every group iopfd read must have been
 * answered (no outstanding cookie). Undelivered groups are drained and answered here
 * when @drain, else they are a failure. Return: groups drained, or -1.
 */
static int expect_all_answered(struct tenant *t, bool drain)
{
	struct iommu_hwpt_pgfault rec[64];
	int outstanding, drained = 0;

	outstanding = kt_fault_probe_outstanding(t->w.fault_fd, t->n_triggered + PROBE_SLACK);
	if (outstanding != 0) {
		kt_fail("%s: %d group(s) read by iopfd were never answered%s", t->name, outstanding,
			outstanding < 0 ? " (probe failed)" : "");
		return -1;
	}
	while (kt_fault_readable(t->w.fault_fd, 0) == 1) {
		ssize_t n = kt_fault_read(t->w.fault_fd, rec, 64);

		if (n <= 0)
			break;
		if (!drain) {
			kt_fail("%s: %zd group(s) were never read by iopfd", t->name, n);
			return -1;
		}
		for (ssize_t i = 0; i < n; i++)
			if (rec[i].flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE)
				(void)kt_fault_respond(t->w.fault_fd, rec[i].cookie,
						       IOMMUFD_PAGE_RESP_INVALID);
		drained += (int)n;
	}
	return drained;
}

/* UnregisterSource returns once iopfd answered what it held and unmapped: check both. */
static int tenant_unregister(struct tenant *t, bool drain)
{
	int r;

	r = iopf_client_unregister_source(t->client, t->source_id);
	t->registered = false;
	if (r < 0) {
		kt_fail("%s: UnregisterSource: %s", t->name, client_error(t, r));
		return -1;
	}
	r = expect_all_answered(t, drain);
	if (r < 0)
		return -1;
	if (expect_released(t) < 0)
		return -1;
	return r;
}

static uint32_t grp_perm(unsigned i)
{
	static const uint32_t p[] = {
		IOMMU_PGFAULT_PERM_READ,
		IOMMU_PGFAULT_PERM_WRITE,
		IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE,
	};
	return p[i % 3];
}

/* ---------------------------------------------------------------- 1. regions */

struct rfault {
	unsigned dev;
	uint32_t pasid;
	uint32_t perm;
	uint64_t addr;
};

static int scenario_regions(void)
{
	/* three domains: (dev A, no PASID), (dev A, PASID 7), (dev B, PASID 0x99) */
	static const struct {
		unsigned dev;
		uint32_t pasid;
		uint64_t iova, mem_off, length;
		uint32_t access;
	} dom[] = {
		{0, IOPF_PASID_NONE, REGION_IOVA, 0, 256 << 10,
		 IOPF_ACCESS_READ | IOPF_ACCESS_WRITE},
		{0, 7, REGION_IOVA + (16 << 20), 256 << 10, 256 << 10, IOPF_ACCESS_READ},
		{1, 0x99, REGION_IOVA + (32 << 20), 512 << 10, 256 << 10, IOPF_ACCESS_ALL},
	};
	static const struct {
		unsigned dom;
		uint32_t perm;
		uint64_t off; /* from the region start; unaligned on purpose */
		unsigned expect_groups;
	} faults[] = {
		{0, IOMMU_PGFAULT_PERM_READ, 0x1000},
		{0, IOMMU_PGFAULT_PERM_WRITE, 0x12345},
		{0, IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE, 0x3f000},
		{1, IOMMU_PGFAULT_PERM_READ, 0x20010},
		{1, IOMMU_PGFAULT_PERM_READ, 0x20ff8}, /* same page again */
		{2, IOMMU_PGFAULT_PERM_WRITE, 0x8000},
		{2, IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_EXEC, 0x31000},
	};
	uint64_t domain_id[3];
	unsigned per_dom[3] = {0};
	struct tenant t;
	int ret = 1;

	if (tenant_open(&t, "regions", 2, 1 << 20) < 0)
		return 1;
	for (unsigned d = 0; d < 3; d++) {
		if (tenant_domain(&t, dom[d].dev, dom[d].pasid, &domain_id[d]) < 0 ||
		    tenant_region(&t, domain_id[d], dom[d].mem_off, dom[d].iova, dom[d].length,
				  dom[d].access) < 0)
			goto out;
	}

	for (unsigned i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
		unsigned d = faults[i].dom;
		uint64_t page_off = faults[i].off & ~(PAGE - 1);

		if (tenant_trigger(&t, dom[d].dev, dom[d].pasid, faults[i].perm,
				   dom[d].iova + faults[i].off) < 0)
			goto out;
		per_dom[d]++;
		if (expect_mapped(&t, dom[d].iova + page_off, PAGE, dom[d].mem_off + page_off) < 0)
			goto out;
		kt_log("dev %u pasid %#x perm %#x at %#" PRIx64 ": mapped to the right page",
		       t.w.dev[dom[d].dev].idev_id, dom[d].pasid, faults[i].perm,
		       dom[d].iova + faults[i].off);
	}
	for (unsigned d = 0; d < 3; d++) {
		char what[64];

		snprintf(what, sizeof(what), "domain (dev %u, pasid %#x)",
			 t.w.dev[dom[d].dev].idev_id, dom[d].pasid);
		if (expect_stats(what, domain_id[d], false, per_dom[d], per_dom[d], 0,
				 IOPF_REASON_RESOLVED, NULL) < 0)
			goto out;
	}
	if (kt_fault_readable(t.w.fault_fd, 0) != 0) {
		kt_fail("a group is still undelivered after all were counted answered");
		goto out;
	}
	if (tenant_unregister(&t, false) < 0)
		goto out;
	/* UnregisterSource also took iopfd's mappings away. */
	for (unsigned d = 0; d < 3; d++)
		if (expect_unmapped(&t, dom[d].iova, dom[d].length, "after UnregisterSource") < 0)
			goto out;
	kt_log("%u faults over 3 domains mapped and answered SUCCESS; none outstanding; "
	       "mappings gone after UnregisterSource",
	       t.n_triggered);
	ret = 0;
out:
	tenant_close(&t);
	return kt_failures() ? 1 : ret;
}

/* ---------------------------------------------------------------- 2. outside */

static int scenario_outside(void)
{
	const uint64_t rw = REGION_IOVA, ro = REGION_IOVA + (16 << 20), len = 64 << 10;
	static const char *const why[] = {"no region", "just past a region", "far away",
					  "write to read-only", "exec on read-only"};
	const struct {
		uint32_t perm;
		uint64_t addr;
		enum iopf_reason reason;
	} faults[] = {
		{IOMMU_PGFAULT_PERM_READ, REGION_IOVA + (8 << 20), IOPF_REASON_OUTSIDE_REGION},
		{IOMMU_PGFAULT_PERM_WRITE, rw + len, IOPF_REASON_OUTSIDE_REGION},
		{IOMMU_PGFAULT_PERM_READ, UINT64_C(0xfffffffffffff000), IOPF_REASON_OUTSIDE_REGION},
		{IOMMU_PGFAULT_PERM_WRITE, ro + 0x1000, IOPF_REASON_PERMISSION},
		{IOMMU_PGFAULT_PERM_EXEC | IOMMU_PGFAULT_PERM_READ, ro + 0x2000,
		 IOPF_REASON_PERMISSION},
	};
	struct tenant t;
	uint64_t domain_id;
	struct ctrs c;
	int ret = 1;

	if (tenant_open(&t, "outside", 1, 1 << 20) < 0)
		return 1;
	if (tenant_domain(&t, 0, IOPF_PASID_NONE, &domain_id) < 0 ||
	    tenant_region(&t, domain_id, 0, rw, len, IOPF_ACCESS_READ | IOPF_ACCESS_WRITE) < 0 ||
	    tenant_region(&t, domain_id, len, ro, len, IOPF_ACCESS_READ) < 0)
		goto out;

	for (unsigned i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
		if (tenant_trigger(&t, 0, IOPF_PASID_NONE, faults[i].perm, faults[i].addr) < 0)
			goto out;
	if (expect_stats("domain", domain_id, false, 5, 0, 5, -1, &c) < 0)
		goto out;
	if (c.reason[IOPF_REASON_OUTSIDE_REGION] != 3 || c.reason[IOPF_REASON_PERMISSION] != 2 ||
	    c.maps != 0 || c.pages_mapped != 0) {
		kt_fail("outside_region %" PRIu64 " (want 3), permission %" PRIu64 " (want 2), "
			"maps %" PRIu64 " (want 0)",
			c.reason[IOPF_REASON_OUTSIDE_REGION], c.reason[IOPF_REASON_PERMISSION],
			c.maps);
		goto out;
	}
	for (unsigned i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
		uint64_t page = faults[i].addr & ~(PAGE - 1);

		if (page >= MOCK_APERTURE_LAST)
			continue; /* outside the mock aperture: nothing can be mapped there */
		if (expect_unmapped(&t, page, PAGE, why[i]) < 0)
			goto out;
	}
	if (expect_unmapped(&t, rw, len, "rw region untouched") < 0 ||
	    expect_unmapped(&t, ro, len, "ro region refused") < 0)
		goto out;
	if (tenant_unregister(&t, false) < 0)
		goto out;
	kt_log("5 faults answered INVALID (3 outside_region, 2 permission), nothing mapped");
	ret = 0;
out:
	tenant_close(&t);
	return ret;
}

/* ---------------------------------------------------------------- 3. unknown */

static int scenario_unknown(void)
{
	struct tenant t;
	uint64_t domain_id;
	int ret = 1;

	if (tenant_open(&t, "unknown", 2, 256 << 10) < 0)
		return 1;
	/* only (dev A, PASID 5) has a handler; the kernel delivers the others too */
	if (tenant_domain(&t, 0, 5, &domain_id) < 0 ||
	    tenant_region(&t, domain_id, 0, REGION_IOVA, 256 << 10, IOPF_ACCESS_ALL) < 0 ||
	    tenant_pasid(&t, 0, 6) < 0 || tenant_pasid(&t, 1, 5) < 0)
		goto out;

	if (tenant_trigger(&t, 0, 6, IOMMU_PGFAULT_PERM_READ, REGION_IOVA) < 0 || /* PASID */
	    tenant_trigger(&t, 0, IOPF_PASID_NONE, IOMMU_PGFAULT_PERM_READ, REGION_IOVA) < 0 ||
	    tenant_trigger(&t, 1, 5, IOMMU_PGFAULT_PERM_READ, REGION_IOVA) < 0 || /* device */
	    tenant_trigger(&t, 1, IOPF_PASID_NONE, IOMMU_PGFAULT_PERM_WRITE, REGION_IOVA) < 0)
		goto out;
	if (expect_stats("unrouted faults of the source", t.source_id, true, 4, 0, 4,
			 IOPF_REASON_NO_HANDLER, NULL) < 0)
		goto out;
	if (expect_unmapped(&t, REGION_IOVA, 256 << 10, "faults without a handler") < 0)
		goto out;
	/* the source still serves its one domain */
	if (tenant_trigger(&t, 0, 5, IOMMU_PGFAULT_PERM_WRITE, REGION_IOVA + 0x5000) < 0 ||
	    expect_mapped(&t, REGION_IOVA + 0x5000, PAGE, 0x5000) < 0 ||
	    expect_stats("domain (dev A, pasid 5)", domain_id, false, 1, 1, 0, IOPF_REASON_RESOLVED,
			 NULL) < 0)
		goto out;
	if (tenant_unregister(&t, false) < 0)
		goto out;
	kt_log("4 faults of unknown (device, PASID) answered INVALID; the known one resolved");
	ret = 0;
out:
	tenant_close(&t);
	return ret;
}

/* ---------------------------------------------------------------- 4. collide */

static int scenario_collide(void)
{
	const uint64_t w = opt.window, len = 8 * opt.window;
	struct tenant a, b;
	uint64_t dom_a, dom_b;
	int ret = 1;

	if (tenant_open(&a, "collide-A", 1, len) < 0)
		return 1;
	if (tenant_open(&b, "collide-B", 1, len) < 0) {
		tenant_close(&a);
		return 1;
	}
	if (a.w.dev[0].idev_id != b.w.dev[0].idev_id || a.w.ioas_id != b.w.ioas_id) {
		kt_fail("the two iommufds did not produce colliding ids (dev %u/%u, ioas %u/%u)",
			a.w.dev[0].idev_id, b.w.dev[0].idev_id, a.w.ioas_id, b.w.ioas_id);
		goto out;
	}
	kt_log("both tenants have dev_id %u, ioas %u", a.w.dev[0].idev_id, a.w.ioas_id);
	/* same (dev_id, PASID) key, same IOVA, different memory */
	if (tenant_domain(&a, 0, IOPF_PASID_NONE, &dom_a) < 0 ||
	    tenant_domain(&b, 0, IOPF_PASID_NONE, &dom_b) < 0 ||
	    tenant_region(&a, dom_a, 0, REGION_IOVA, len, IOPF_ACCESS_ALL) < 0 ||
	    tenant_region(&b, dom_b, 0, REGION_IOVA, len, IOPF_ACCESS_ALL) < 0)
		goto out;
	/* distinct memory contents, so a mapping of the wrong memfd cannot pass */
	memset(b.mem.va, 0xb5, len);

	if (tenant_trigger(&a, 0, IOPF_PASID_NONE, IOMMU_PGFAULT_PERM_READ,
			   REGION_IOVA + 1 * w + 0x1000) < 0 ||
	    tenant_trigger(&b, 0, IOPF_PASID_NONE, IOMMU_PGFAULT_PERM_WRITE,
			   REGION_IOVA + 3 * w + 0x1000) < 0 ||
	    tenant_trigger(&a, 0, IOPF_PASID_NONE, IOMMU_PGFAULT_PERM_WRITE,
			   REGION_IOVA + 5 * w + 0x2000) < 0 ||
	    tenant_trigger(&b, 0, IOPF_PASID_NONE, IOMMU_PGFAULT_PERM_READ,
			   REGION_IOVA + 5 * w + 0x2000) < 0)
		goto out;
	if (expect_stats("tenant A's domain", dom_a, false, 2, 2, 0, IOPF_REASON_RESOLVED, NULL) <
		    0 ||
	    expect_stats("tenant B's domain", dom_b, false, 2, 2, 0, IOPF_REASON_RESOLVED, NULL) <
		    0)
		goto out;
	if (expect_mapped(&a, REGION_IOVA + 1 * w + 0x1000, PAGE, 1 * w + 0x1000) < 0 ||
	    expect_mapped(&a, REGION_IOVA + 5 * w + 0x2000, PAGE, 5 * w + 0x2000) < 0 ||
	    expect_mapped(&b, REGION_IOVA + 3 * w + 0x1000, PAGE, 3 * w + 0x1000) < 0 ||
	    expect_mapped(&b, REGION_IOVA + 5 * w + 0x2000, PAGE, 5 * w + 0x2000) < 0)
		goto out;
	/* and nothing crossed over */
	if (expect_unmapped(&a, REGION_IOVA + 3 * w, w, "B's fault must not map into A") < 0 ||
	    expect_unmapped(&b, REGION_IOVA + 1 * w, w, "A's fault must not map into B") < 0)
		goto out;
	if (tenant_unregister(&a, false) < 0 || tenant_unregister(&b, false) < 0)
		goto out;
	kt_log("colliding dev_id %u: every fault resolved in its own tenant's IOAS and memory",
	       a.w.dev[0].idev_id);
	ret = 0;
out:
	tenant_close(&b);
	tenant_close(&a);
	return ret;
}

/* ---------------------------------------------------------------- 5. teardown */

#define TEARDOWN_MEM (UINT64_C(4) << 20)
#define BURST_MAX    8192u /* bound on the faults one burst raises */
#define BURST_BEFORE 64u   /* faults raised before the teardown starts */
#define BURST_AFTER  16u   /* more raised after UnregisterSource: they must stay queued */

static int teardown_setup(struct tenant *t, uint64_t *ret_domain)
{
	if (tenant_domain(t, 0, IOPF_PASID_NONE, ret_domain) < 0 ||
	    tenant_region(t, *ret_domain, 0, REGION_IOVA, TEARDOWN_MEM, IOPF_ACCESS_ALL) < 0)
		return -1;
	return 0;
}

/*
 * A thread raising faults back to back over the region while the teardown happens, so
 * faults are in flight at every moment of it: queued, held by iopfd, being mapped.
 * @raised lives in shared memory: the "exits" tenant's parent reads it too.
 */
struct burst {
	const struct kt_world *w;
	atomic_uint *raised;
	atomic_bool stop;
	int error;
	pthread_t thread;
	/* what to raise: BURST_MAX faults over [REGION_IOVA, + TEARDOWN_MEM), no PASID */
	uint32_t pasid;
	uint64_t iova, span;
	unsigned max;
	unsigned pace_us; /* pause after each fault; 0: back to back */
};

static void *burst_run(void *arg)
{
	struct burst *b = arg;

	for (unsigned i = 0; i < b->max && !atomic_load(&b->stop); i++) {
		int r = kt_trigger(b->w, b->w->dev[0].idev_id, b->pasid, i & 0x1ff, grp_perm(i),
				   b->iova + (uint64_t)i * 3 * PAGE % b->span);
		if (r < 0) {
			b->error = r;
			break;
		}
		atomic_fetch_add(b->raised, 1);
		if (b->pace_us)
			sleep_us(b->pace_us);
	}
	return NULL;
}

/* Start @b, filled in by the caller (w, raised, what to raise). */
static int burst_launch(struct burst *b)
{
	atomic_init(&b->stop, false);
	b->error = 0;
	if (pthread_create(&b->thread, NULL, burst_run, b) != 0) {
		kt_fail("pthread_create failed");
		return -1;
	}
	return 0;
}

static int burst_start(struct burst *b, const struct kt_world *w, atomic_uint *raised)
{
	*b = (struct burst){.w = w,
			    .raised = raised,
			    .iova = REGION_IOVA,
			    .span = TEARDOWN_MEM,
			    .max = BURST_MAX};
	return burst_launch(b);
}

/* Bounded wait until the burst raised @n faults (or ended). */
static int burst_wait(struct burst *b, unsigned n)
{
	uint64_t deadline = kt_now_ns() + (uint64_t)WAIT_MS * 1000000;

	while (atomic_load(b->raised) < n && !b->error) {
		if (kt_now_ns() > deadline) {
			kt_fail("only %u faults raised in %d ms", atomic_load(b->raised), WAIT_MS);
			return -1;
		}
		sleep_us(100);
	}
	if (b->error) {
		kt_fail("TRIGGER_IOPF: %s", strerror(-b->error));
		return -1;
	}
	return 0;
}

static int burst_stop(struct burst *b)
{
	atomic_store(&b->stop, true);
	pthread_join(b->thread, NULL);
	if (b->error) {
		kt_fail("TRIGGER_IOPF: %s", strerror(-b->error));
		return -1;
	}
	return 0;
}

/* The third tenant, untouched by the others' teardown, still gets served. */
static int still_served(struct tenant *t, uint64_t domain, unsigned *n, const char *after)
{
	uint64_t off = (uint64_t)(*n) * 2 * opt.window + 0x3000;

	if (tenant_trigger(t, 0, IOPF_PASID_NONE, IOMMU_PGFAULT_PERM_READ, REGION_IOVA + off) < 0 ||
	    expect_mapped(t, REGION_IOVA + off, PAGE, off) < 0)
		return -1;
	(*n)++;
	if (expect_stats("bystander", domain, false, *n, *n, 0, IOPF_REASON_RESOLVED, NULL) < 0)
		return -1;
	kt_log("bystander tenant still served after %s", after);
	return 0;
}

/* (a) UnregisterSource while a thread keeps raising faults. */
static int teardown_unregister(struct tenant *by, uint64_t dom_by, unsigned *n_by)
{
	atomic_uint raised = 0;
	unsigned at_return;
	struct tenant t;
	struct burst b;
	uint64_t dom;
	int r, drained, ret = -1;

	if (tenant_open(&t, "unregisters", 1, TEARDOWN_MEM) < 0)
		return -1;
	if (teardown_setup(&t, &dom) < 0 || burst_start(&b, &t.w, &raised) < 0)
		goto out;
	if (burst_wait(&b, BURST_BEFORE) < 0) {
		(void)burst_stop(&b);
		goto out;
	}
	r = iopf_client_unregister_source(t.client, t.source_id);
	at_return = atomic_load(&raised);
	t.registered = false;
	if (r < 0) {
		kt_fail("UnregisterSource: %s", client_error(&t, r));
		(void)burst_stop(&b);
		goto out;
	}
	/* Faults raised from now on must stay queued: iopfd no longer reads this fd. */
	if (burst_stop(&b) < 0)
		goto out;
	t.n_triggered = atomic_load(&raised);
	for (unsigned i = 0; i < BURST_AFTER; i++)
		if (tenant_trigger(&t, 0, IOPF_PASID_NONE, IOMMU_PGFAULT_PERM_READ,
				   REGION_IOVA + (uint64_t)i * PAGE) < 0)
			goto out;
	drained = expect_all_answered(&t, true);
	if (drained < 0)
		goto out;
	if ((unsigned)drained < t.n_triggered - at_return) {
		kt_fail("%u faults were raised after UnregisterSource returned but only %d were "
			"still queued: iopfd read the fault fd after letting it go",
			t.n_triggered - at_return, drained);
		goto out;
	}
	if (expect_released(&t) < 0 ||
	    expect_unmapped(&t, REGION_IOVA, TEARDOWN_MEM, "iopfd's mappings after unregister") < 0)
		goto out;
	kt_log("unregistered amid a stream of %u faults (%u before the reply): iopfd answered "
	       "%u, %d stayed queued; none outstanding; its mappings and fds are gone",
	       t.n_triggered, at_return, t.n_triggered - (unsigned)drained, drained);
	ret = still_served(by, dom_by, n_by, "a tenant unregistered");
out:
	tenant_close(&t);
	return ret;
}

/* (b) A tenant process exits (no UnregisterSource) while its thread raises faults. */
static int teardown_exit(struct tenant *by, uint64_t dom_by, unsigned *n_by)
{
	atomic_uint *raised;
	struct tenant t;
	int status, drained, ret = -1;
	pid_t child;

	raised = mmap(NULL, sizeof(*raised), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
		      0);
	if (raised == MAP_FAILED) {
		kt_fail("mmap: %s", strerror(errno));
		return -1;
	}
	atomic_init(raised, 0);
	/* The parent keeps the world (fds, memory) to inspect it after the child died. */
	if (tenant_build(&t, "exits", 1, TEARDOWN_MEM) < 0)
		goto out_unmap;
	fflush(stdout);
	child = fork();
	if (child < 0) {
		kt_fail("fork: %s", strerror(errno));
		goto out;
	}
	if (child == 0) {
		struct burst b;
		uint64_t dom;

		kt_set_name("exits(child)");
		if (tenant_connect(&t) < 0 || teardown_setup(&t, &dom) < 0 ||
		    burst_start(&b, &t.w, raised) < 0 || burst_wait(&b, BURST_BEFORE) < 0)
			_exit(1);
		_exit(0); /* the burst thread dies mid-stream, the connection with us */
	}
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status)) {
		kt_fail("the exiting tenant failed before it could exit on purpose");
		goto out;
	}
	t.n_triggered = atomic_load(raised) + 1; /* + one trigger cut short by the exit */
	/* iopfd sees the connection drop, answers, unmaps and closes its copies. */
	if (expect_released(&t) < 0)
		goto out;
	drained = expect_all_answered(&t, true);
	if (drained < 0)
		goto out;
	if (expect_unmapped(&t, REGION_IOVA, TEARDOWN_MEM, "iopfd's mappings after exit") < 0)
		goto out;
	kt_log("tenant exited amid a stream of %u faults: %d stayed queued, the rest iopfd "
	       "answered; none outstanding; its mappings and fds are gone",
	       atomic_load(raised), drained);
	ret = still_served(by, dom_by, n_by, "a tenant exited");
out:
	tenant_close(&t);
out_unmap:
	munmap(raised, sizeof(*raised));
	return ret;
}

static int scenario_teardown(void)
{
	struct tenant by;
	uint64_t dom_by;
	unsigned n_by = 0;
	int ret = 1;

	if (tenant_open(&by, "bystander", 1, TEARDOWN_MEM) < 0)
		return 1;
	if (teardown_setup(&by, &dom_by) < 0 || still_served(&by, dom_by, &n_by, "setup") < 0 ||
	    teardown_unregister(&by, dom_by, &n_by) < 0 || teardown_exit(&by, dom_by, &n_by) < 0 ||
	    tenant_unregister(&by, false) < 0)
		goto out;
	ret = 0;
out:
	tenant_close(&by);
	return kt_failures() ? 1 : ret;
}

/* ---------------------------------------------------------------- 6. fault-around */

static int scenario_faultaround(void)
{
	const uint64_t w = opt.window, len = 4 * opt.window;
	/* a small region, not window aligned, past the big one */
	const uint64_t small_iova = REGION_IOVA + 8 * w + 0x3000, small_len = 2 * PAGE;
	const uint64_t small_off = len;
	struct tenant t;
	uint64_t dom, dom_small;
	struct ctrs c;
	int ret = 1;

	if (w <= PAGE) {
		kt_fail("--window %" PRIu64 " is a single page: nothing to fault around", w);
		return 1;
	}
	if (tenant_open(&t, "faultaround", 2, len + w) < 0)
		return 1;
	if (tenant_domain(&t, 0, IOPF_PASID_NONE, &dom) < 0 ||
	    tenant_region(&t, dom, 0, REGION_IOVA, len, IOPF_ACCESS_ALL) < 0 ||
	    tenant_domain(&t, 1, IOPF_PASID_NONE, &dom_small) < 0 ||
	    tenant_region(&t, dom_small, small_off, small_iova, small_len, IOPF_ACCESS_ALL) < 0)
		goto out;

	/* one fault in the middle of window 1 maps all of window 1, and only it */
	if (tenant_trigger(&t, 0, IOPF_PASID_NONE, IOMMU_PGFAULT_PERM_READ,
			   REGION_IOVA + w + w / 2 + 0x234) < 0 ||
	    expect_stats("domain", dom, false, 1, 1, 0, IOPF_REASON_RESOLVED, &c) < 0)
		goto out;
	if (!mapped_exact(&t, REGION_IOVA + w, w, w)) {
		kt_fail("the window %#" PRIx64 " +%#" PRIx64 " is not mapped whole",
			REGION_IOVA + w, w);
		goto out;
	}
	if (c.maps != 1 || c.pages_mapped != w / PAGE) {
		kt_fail("one fault made %" PRIu64 " maps of %" PRIu64
			" pages; wanted 1 of %" PRIu64,
			c.maps, c.pages_mapped, w / PAGE);
		goto out;
	}
	if (expect_unmapped(&t, REGION_IOVA, w, "window 0") < 0 ||
	    expect_unmapped(&t, REGION_IOVA + 2 * w, 2 * w, "windows 2-3") < 0)
		goto out;

	/* later faults in that window: answered, no second map */
	if (tenant_trigger(&t, 0, IOPF_PASID_NONE, IOMMU_PGFAULT_PERM_WRITE, REGION_IOVA + w) < 0 ||
	    tenant_trigger(&t, 0, IOPF_PASID_NONE, IOMMU_PGFAULT_PERM_READ,
			   REGION_IOVA + 2 * w - 8) < 0 ||
	    tenant_trigger(&t, 0, IOPF_PASID_NONE,
			   IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE,
			   REGION_IOVA + w + 0x1000) < 0 ||
	    expect_stats("domain", dom, false, 4, 4, 0, IOPF_REASON_RESOLVED, &c) < 0)
		goto out;
	if (c.maps != 1 || c.coalesced != 3) {
		kt_fail("faults inside a mapped window: %" PRIu64 " maps (want 1), %" PRIu64
			" coalesced (want 3)",
			c.maps, c.coalesced);
		goto out;
	}

	/* a region smaller than the window: the window is clipped to it */
	if (tenant_trigger(&t, 1, IOPF_PASID_NONE, IOMMU_PGFAULT_PERM_READ, small_iova + 0x10) <
		    0 ||
	    expect_stats("small domain", dom_small, false, 1, 1, 0, IOPF_REASON_RESOLVED, NULL) < 0)
		goto out;
	if (!mapped_exact(&t, small_iova, small_len, small_off)) {
		kt_fail("the small region is not mapped whole");
		goto out;
	}
	if (expect_unmapped(&t, small_iova - PAGE, PAGE, "page before the small region") < 0 ||
	    expect_unmapped(&t, small_iova + small_len, PAGE, "page after the small region") < 0)
		goto out;
	if (tenant_unregister(&t, false) < 0 ||
	    expect_unmapped(&t, REGION_IOVA, 9 * w, "after UnregisterSource") < 0)
		goto out;
	kt_log("one fault mapped its %" PRIu64 " KiB window in one map; 3 later faults in it "
	       "answered without mapping; a 2-page region was not overrun",
	       w >> 10);
	ret = 0;
out:
	tenant_close(&t);
	return ret;
}

/* ---------------------------------------------------------------- 7. mapfile */

struct maps_wait {
	int memfd;
	int n;
};

static int maps_gone(void *arg)
{
	struct maps_wait *m = arg;

	m->n = kt_pid_maps_file(opt.daemon_pid, m->memfd);
	return m->n == 0 ? 1 : m->n < 0 ? -1 : 0;
}

/*
 * Where the kernel has IOAS_MAP_FILE, iopfd maps tenant memory by (memfd, offset) and
 * never into its own address space: the tenant's memfd (device and inode) appears
 * nowhere in iopfd's /proc/PID/maps. Without it, iopfd falls back to IOAS_MAP of its own
 * view of the memfd, which it drops with the region.
 */
static int scenario_mapfile(void)
{
	const uint64_t len = 1 << 20;
	struct maps_wait m;
	struct tenant t;
	uint64_t dom;
	bool map_file;
	int n, ret = 1;

	if (tenant_open(&t, "mapfile", 1, len) < 0)
		return 1;
	map_file = kt_has_map_file(&t.w);
	if (tenant_domain(&t, 0, IOPF_PASID_NONE, &dom) < 0 ||
	    tenant_region(&t, dom, 0, REGION_IOVA, len, IOPF_ACCESS_ALL) < 0)
		goto out;
	for (unsigned i = 0; i < 4; i++) {
		uint64_t off = i * (len / 4) + 0x2000;

		if (tenant_trigger(&t, 0, IOPF_PASID_NONE,
				   IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE,
				   REGION_IOVA + off) < 0 ||
		    expect_mapped(&t, REGION_IOVA + off, PAGE, off) < 0)
			goto out;
	}
	if (expect_stats("domain", dom, false, 4, 4, 0, IOPF_REASON_RESOLVED, NULL) < 0)
		goto out;
	n = kt_pid_maps_file(opt.daemon_pid, t.mem.memfd);
	if (n < 0) {
		kt_fail("/proc/%d/maps: %s", (int)opt.daemon_pid, strerror(-n));
		goto out;
	}
	if (map_file && n != 0) {
		kt_fail("the kernel has IOAS_MAP_FILE, yet iopfd has %d mapping(s) of the tenant's "
			"memfd in its own address space",
			n);
		goto out;
	}
	if (!map_file && n == 0) {
		kt_fail("no IOAS_MAP_FILE here, yet iopfd holds no view of the memfd: how did it "
			"map?");
		goto out;
	}
	if (tenant_unregister(&t, false) < 0)
		goto out;
	m = (struct maps_wait){.memfd = t.mem.memfd};
	if (wait_until(maps_gone, &m) != 1) {
		kt_fail("iopfd still has %d mapping(s) of the memfd after UnregisterSource", m.n);
		goto out;
	}
	if (map_file)
		kt_log("IOAS_MAP_FILE: 4 faults mapped by (memfd, offset); the tenant's memfd "
		       "never "
		       "appeared in iopfd's address space");
	else
		kt_log("no IOAS_MAP_FILE: iopfd mapped through its own view of the memfd (%d "
		       "mapping), gone after UnregisterSource",
		       n);
	ret = 0;
out:
	tenant_close(&t);
	return kt_failures() ? 1 : ret;
}

/* ---------------------------------------------------------------- 8. PASID attach/detach */

#define PASID_A	    7u	/* detached, attached again, replaced, while B's faults flow */
#define PASID_B	    8u	/* its faults flow throughout: must be unaffected */
#define PASID_BATCH 16u /* faults raised on A right before it is detached or replaced */
#define A_IOVA	    REGION_IOVA
#define A_LEN	    (UINT64_C(1) << 20)
#define B_IOVA	    (REGION_IOVA + (UINT64_C(16) << 20))
#define B_LEN	    (UINT64_C(2) << 20)
#define RID_IOVA    (REGION_IOVA + (UINT64_C(32) << 20))
#define RID_LEN	    (UINT64_C(1) << 20)
#define A_OFF	    0 /* memfd offsets of the three regions */
#define B_OFF	    A_LEN
#define RID_OFF	    (A_LEN + B_LEN)

struct pasid_run {
	struct tenant t;
	uint64_t dom_a, dom_b, dom_rid;
	unsigned n_rid;	 /* markers raised on the RID */
	unsigned next_a; /* next page of A's region to fault */
};

/*
 * A fault on the RID, seen answered: every group queued before it has been read and
 * counted too (the queue is FIFO, and iopfd counts a read's groups in order).
 */
static int pasid_marker(struct pasid_run *p)
{
	if (tenant_trigger(&p->t, 0, IOPF_PASID_NONE, IOMMU_PGFAULT_PERM_READ,
			   RID_IOVA + (uint64_t)p->n_rid * PAGE) < 0)
		return -1;
	p->n_rid++;
	return expect_stats("RID domain", p->dom_rid, false, p->n_rid, p->n_rid, 0,
			    IOPF_REASON_RESOLVED, NULL);
}

static int pasid_raise_a(struct pasid_run *p, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint64_t off = (uint64_t)(p->next_a++ % (A_LEN / PAGE)) * PAGE;

		if (tenant_trigger(&p->t, 0, PASID_A, IOMMU_PGFAULT_PERM_WRITE, A_IOVA + off) < 0)
			return -1;
	}
	return 0;
}

/* @n faults on A, one at a time: each one mapped, all counted SUCCESS, none stale. */
static int pasid_serve_a(struct pasid_run *p, unsigned n, const char *when)
{
	struct ctrs c0, c;

	if (stats_get(p->dom_a, false, &c0) < 0)
		return -1;
	for (unsigned i = 0; i < n; i++) {
		uint64_t off = (uint64_t)(p->next_a % (A_LEN / PAGE)) * PAGE;

		if (pasid_raise_a(p, 1) < 0 ||
		    expect_mapped(&p->t, A_IOVA + off, PAGE, A_OFF + off) < 0)
			return -1;
	}
	/* expect_stats() would insist on 0 stale: A has some from earlier detaches */
	struct stats_wait sw = {.id = p->dom_a, .groups = c0.groups + n};

	(void)wait_until(stats_reached, &sw);
	c = sw.c;
	if (c.groups != c0.groups + n || c.success != c0.success + n || c.stale != c0.stale) {
		kt_fail("%s: PASID A answered %" PRIu64 " groups (%" PRIu64 " SUCCESS, %" PRIu64
			" stale) of %u",
			when, c.groups - c0.groups, c.success - c0.success, c.stale - c0.stale, n);
		return -1;
	}
	return 0;
}

/*
 * @what (detach or replace) of PASID A right after raising a batch on it. The kernel
 * answers INVALID what that attach still had: groups iopfd read but had not answered
 * (iopfd's answer is then refused and counted stale) and groups not read yet (iopfd
 * never sees them). Return: how many of the batch iopfd read, or -1.
 */
static int pasid_change(struct pasid_run *p, const char *what, int (*change)(struct pasid_run *))
{
	struct ctrs c0, c1;
	unsigned got, stale;
	int r;

	if (stats_get(p->dom_a, false, &c0) < 0 || pasid_raise_a(p, PASID_BATCH) < 0)
		return -1;
	r = change(p);
	if (r < 0) {
		kt_fail("%s of PASID %u: %s", what, PASID_A, strerror(-r));
		return -1;
	}
	if (pasid_marker(p) < 0 || stats_get(p->dom_a, false, &c1) < 0)
		return -1;
	got = (unsigned)(c1.groups - c0.groups);
	stale = (unsigned)(c1.stale - c0.stale);
	if (got > PASID_BATCH || stale > got || c1.faults - c0.faults != got) {
		kt_fail("%s: iopfd counts %u groups (%u stale, %" PRIu64
			" faults) of a batch of %u",
			what, got, stale, c1.faults - c0.faults, PASID_BATCH);
		return -1;
	}
	kt_log("%s of PASID %u amid %u of its faults: iopfd had read %u (%u of its answers "
	       "refused as answered already), the kernel answered the other %u itself",
	       what, PASID_A, PASID_BATCH, got, stale, PASID_BATCH - got);
	return (int)got;
}

static int change_detach(struct pasid_run *p)
{
	return kt_world_detach_pasid(&p->t.w, 0, PASID_A);
}

static uint32_t hwpt_b; /* the second paging fault hwpt PASID A is moved to */

static int change_replace(struct pasid_run *p)
{
	return kt_world_replace_pasid(&p->t.w, 0, PASID_A, hwpt_b);
}

static int scenario_pasid(void)
{
	atomic_uint raised_b = 0;
	struct pasid_run p = {0};
	struct ctrs c1, c2, cs;
	struct burst b;
	bool burst_on = false;
	int r, ret = 1;

	if (opt.layout != KT_LAYOUT_PAGING) {
		kt_fail("pasid needs --layout paging");
		return 1;
	}
	if (tenant_open(&p.t, "pasid", 1, A_LEN + B_LEN + RID_LEN) < 0)
		return 1;
	if (tenant_domain(&p.t, 0, PASID_A, &p.dom_a) < 0 ||
	    tenant_region(&p.t, p.dom_a, A_OFF, A_IOVA, A_LEN, IOPF_ACCESS_ALL) < 0 ||
	    tenant_domain(&p.t, 0, PASID_B, &p.dom_b) < 0 ||
	    tenant_region(&p.t, p.dom_b, B_OFF, B_IOVA, B_LEN, IOPF_ACCESS_ALL) < 0 ||
	    tenant_domain(&p.t, 0, IOPF_PASID_NONE, &p.dom_rid) < 0 ||
	    tenant_region(&p.t, p.dom_rid, RID_OFF, RID_IOVA, RID_LEN, IOPF_ACCESS_ALL) < 0)
		goto out;
	r = kt_world_fault_hwpt(&p.t.w, &hwpt_b);
	if (r < 0) {
		kt_fail("a second paging fault hwpt: %s", strerror(-r));
		goto out;
	}
	if (pasid_serve_a(&p, 2, "at the start") < 0)
		goto out;

	/* PASID B's faults flow from now to the end, paced so the queue never runs dry. */
	b = (struct burst){.w = &p.t.w,
			   .raised = &raised_b,
			   .pasid = PASID_B,
			   .iova = B_IOVA,
			   .span = B_LEN,
			   .max = 1u << 20,
			   .pace_us = 100};
	if (burst_launch(&b) < 0)
		goto out;
	burst_on = true;
	if (burst_wait(&b, BURST_BEFORE) < 0)
		goto out;

	/* 1. detach while faults flow */
	if (pasid_change(&p, "detach", change_detach) < 0)
		goto out;
	if (kt_world_check_pasid(&p.t.w, 0, PASID_A, 0) < 0) {
		kt_fail("PASID %u still attached after PASID_DETACH", PASID_A);
		goto out;
	}

	/* 2. with nothing attached, A's faults never reach the queue: iopfd counts nothing */
	if (stats_get(p.dom_a, false, &c1) < 0 || pasid_raise_a(&p, 8) < 0 ||
	    pasid_marker(&p) < 0 || stats_get(p.dom_a, false, &c2) < 0 ||
	    stats_get(p.t.source_id, true, &cs) < 0)
		goto out;
	if (c2.faults != c1.faults || c2.groups != c1.groups || cs.faults != 0) {
		kt_fail("iopfd counted faults of a PASID with nothing attached: domain %" PRIu64
			" -> %" PRIu64 " faults, unrouted %" PRIu64,
			c1.faults, c2.faults, cs.faults);
		goto out;
	}
	kt_log("8 faults on detached PASID %u: none reached iopfd", PASID_A);

	/* 3. attach again while faults flow */
	if (tenant_pasid(&p.t, 0, PASID_A) < 0 || pasid_serve_a(&p, 4, "after attaching again") < 0)
		goto out;
	kt_log("PASID %u attached again amid PASID %u's stream: served", PASID_A, PASID_B);

	/* 4. replace while faults flow */
	if (pasid_change(&p, "replace", change_replace) < 0)
		goto out;
	if (kt_world_check_pasid(&p.t.w, 0, PASID_A, hwpt_b) < 0) {
		kt_fail("PASID %u is not on hwpt %u after PASID_REPLACE", PASID_A, hwpt_b);
		goto out;
	}
	if (pasid_serve_a(&p, 4, "through its new hwpt") < 0)
		goto out;
	kt_log("PASID %u served through hwpt %u after the replace", PASID_A, hwpt_b);

	burst_on = false;
	if (burst_stop(&b) < 0)
		goto out;
	p.t.n_triggered += atomic_load(&raised_b);
	/* the other PASID saw none of it: every fault SUCCESS, not one stale */
	if (expect_stats("PASID B (its faults flowed throughout)", p.dom_b, false,
			 atomic_load(&raised_b), atomic_load(&raised_b), 0, IOPF_REASON_RESOLVED,
			 NULL) < 0)
		goto out;
	if (tenant_unregister(&p.t, false) < 0)
		goto out;
	kt_log("PASID %u's %u faults all answered SUCCESS across detach, attach and replace of "
	       "PASID %u; no cookie outstanding",
	       PASID_B, atomic_load(&raised_b), PASID_A);
	ret = 0;
out:
	if (burst_on)
		(void)burst_stop(&b);
	tenant_close(&p.t);
	return kt_failures() ? 1 : ret;
}

/*
 * A domain is registered for a PASID that the tenant never attached: its faults have no
 * handler in the kernel, which answers them itself. They never reach the queue, so iopfd
 * must not count them, in the domain or as unrouted.
 */
static int scenario_pasid_none(void)
{
	struct pasid_run p = {0};
	struct ctrs c, cs;
	int ret = 1;

	if (opt.layout != KT_LAYOUT_PAGING) {
		kt_fail("pasid-none needs --layout paging");
		return 1;
	}
	if (tenant_open(&p.t, "pasid-none", 1, A_LEN + B_LEN + RID_LEN) < 0)
		return 1;
	if (tenant_domain_only(&p.t, 0, PASID_A, &p.dom_a) < 0 ||
	    tenant_region(&p.t, p.dom_a, A_OFF, A_IOVA, A_LEN, IOPF_ACCESS_ALL) < 0 ||
	    tenant_domain(&p.t, 0, IOPF_PASID_NONE, &p.dom_rid) < 0 ||
	    tenant_region(&p.t, p.dom_rid, RID_OFF, RID_IOVA, RID_LEN, IOPF_ACCESS_ALL) < 0)
		goto out;
	if (kt_world_check_pasid(&p.t.w, 0, PASID_A, 0) < 0) {
		kt_fail("PASID %u is attached to something", PASID_A);
		goto out;
	}
	if (pasid_raise_a(&p, 4) < 0 || pasid_marker(&p) < 0 || stats_get(p.dom_a, false, &c) < 0 ||
	    stats_get(p.t.source_id, true, &cs) < 0)
		goto out;
	if (!c.found || c.faults != 0 || c.groups != 0 || cs.faults != 0 || cs.groups != 0) {
		kt_fail("faults on a PASID with nothing attached were counted: domain %" PRIu64
			" faults%s, unrouted %" PRIu64,
			c.faults, c.found ? "" : " (domain not listed)", cs.faults);
		goto out;
	}
	if (expect_unmapped(&p.t, A_IOVA, A_LEN, "faults that never reached the queue") < 0)
		goto out;
	/* the same domain, once the PASID is attached: served, so it was live all along */
	if (tenant_pasid(&p.t, 0, PASID_A) < 0 || pasid_serve_a(&p, 1, "once attached") < 0)
		goto out;
	if (tenant_unregister(&p.t, false) < 0)
		goto out;
	kt_log("4 faults on unattached PASID %u never reached iopfd (0 counted); once attached, "
	       "its domain served",
	       PASID_A);
	ret = 0;
out:
	tenant_close(&p.t);
	return kt_failures() ? 1 : ret;
}

/* ---------------------------------------------------------------- 9. load */

#define LOAD_PASID_IOVA (UINT64_C(1) << 30)

struct loader {
	struct tenant t;
	uint64_t dom[2];     /* (dev, no PASID) and (dev, PASID 1) */
	unsigned n;	     /* faults to raise */
	unsigned next, done; /* faults raised, faults seen resolved (in order) */
	unsigned picked;     /* faults seen taken off the queue by iopfd */
	uint64_t *t0;	     /* owned; raise time of each fault */
	uint64_t deadline;   /* for the oldest unresolved fault */
};

/*
 * Page i of a loader's memory: even pages fault through the no-PASID domain at
 * REGION_IOVA + i pages, odd ones through PASID 1 at LOAD_PASID_IOVA + i pages (the same
 * memfd behind both regions, each page faulted once).
 */
static uint64_t load_iova(unsigned i)
{
	return (i & 1 ? LOAD_PASID_IOVA : REGION_IOVA) + (uint64_t)i * PAGE;
}

/* Fault i resolved: its page maps exactly the right memory. */
static bool load_resolved(struct loader *l, unsigned i)
{
	return kt_check_map(&l->t.w, load_iova(i), PAGE, l->t.mem.va + (uint64_t)i * PAGE) == 0;
}

/*
 * One thread drives every tenant, round robin, so only one vCPU polls and iopfd's
 * workers keep the other: each tenant keeps up to opt.inflight faults outstanding,
 * raising the next as soon as its oldest is seen resolved. A fault's latency runs
 * from just before its TRIGGER_IOPF to the first look that finds its page mapped (a
 * look at every tenant costs one MD_CHECK_MAP each).
 * Return: 0, or -1 (logged) on an error or a fault unresolved after WAIT_MS.
 */
static int load_drive(struct loader *ld, unsigned n_ten, struct kt_lat *lat, struct kt_lat *pickup)
{
	unsigned left = n_ten;

	while (left) {
		bool progress = false;

		for (unsigned k = 0; k < n_ten; k++) {
			struct loader *l = &ld[k];
			uint64_t now;

			if (l->done == l->n)
				continue;
			/* no EPOLLIN: iopfd has read every group raised so far */
			if (l->picked < l->next && kt_fault_readable(l->t.w.fault_fd, 0) == 0) {
				uint64_t seen = kt_now_ns();

				for (; l->picked < l->next; l->picked++)
					(void)kt_lat_add(pickup, seen - l->t0[l->picked]);
			}
			while (l->done < l->next && load_resolved(l, l->done)) {
				(void)kt_lat_add(lat, kt_now_ns() - l->t0[l->done]);
				l->done++;
				l->deadline = 0;
				progress = true;
			}
			while (l->next < l->n && l->next - l->done < opt.inflight) {
				unsigned i = l->next;
				int r;

				l->t0[i] = kt_now_ns();
				r = kt_trigger(&l->t.w, l->t.w.dev[0].idev_id, i & 1, i & 0x1ff,
					       grp_perm(i), load_iova(i) + (i % 16) * 8);
				if (r < 0) {
					kt_fail("%s: TRIGGER_IOPF #%u: %s", l->t.name, i,
						strerror(-r));
					return -1;
				}
				l->next++;
				l->t.n_triggered = l->next;
				progress = true;
			}
			if (l->done == l->n) {
				left--;
				continue;
			}
			now = kt_now_ns();
			if (!l->deadline) {
				l->deadline = now + (uint64_t)WAIT_MS * 1000000;
			} else if (now > l->deadline) {
				kt_fail("%s: fault #%u (iova %#" PRIx64
					") not resolved after %d ms",
					l->t.name, l->done, load_iova(l->done), WAIT_MS);
				return -1;
			}
		}
		/* nothing moved: give the vCPU to iopfd's workers */
		if (!progress)
			sched_yield();
	}
	return 0;
}

static int scenario_load(void)
{
	unsigned n_ten = opt.tenants, per = (opt.faults + n_ten - 1) / n_ten, n_open = 0;
	struct loader *ld;
	struct kt_lat all = {0}, pickup = {0};
	uint64_t t0, t_mapped, t_answered, total = 0, maps = 0;
	unsigned unanswered = 0;
	int ret = 1;

	if (n_ten < 2 || n_ten > 16) {
		kt_fail("--tenants must be 2..16");
		return 1;
	}
	ld = calloc(n_ten, sizeof(*ld));
	if (!ld) {
		kt_fail("out of memory");
		return 1;
	}
	for (unsigned i = 0; i < n_ten; i++, n_open++) {
		char name[32];
		uint64_t len = (uint64_t)per * PAGE;

		snprintf(name, sizeof(name), "load-%u", i);
		ld[i].n = per;
		ld[i].t0 = calloc(per, sizeof(*ld[i].t0));
		if (!ld[i].t0) {
			kt_fail("out of memory");
			goto out;
		}
		if (tenant_open(&ld[i].t, name, 1, len) < 0)
			goto out;
		if (tenant_domain(&ld[i].t, 0, IOPF_PASID_NONE, &ld[i].dom[0]) < 0 ||
		    tenant_domain(&ld[i].t, 0, 1, &ld[i].dom[1]) < 0 ||
		    tenant_region(&ld[i].t, ld[i].dom[0], 0, REGION_IOVA, len, IOPF_ACCESS_ALL) <
			    0 ||
		    tenant_region(&ld[i].t, ld[i].dom[1], 0, LOAD_PASID_IOVA, len,
				  IOPF_ACCESS_ALL) < 0) {
			n_open++;
			goto out;
		}
	}

	t0 = kt_now_ns();
	if (load_drive(ld, n_ten, &all, &pickup) < 0)
		goto out;
	t_mapped = kt_now_ns();

	/* every group answered: iopfd's counts, then the kernel's view after unregister */
	for (unsigned i = 0; i < n_ten; i++)
		for (unsigned d = 0; d < 2; d++) {
			struct ctrs c;
			uint64_t want = per / 2 + (d == 0 ? per % 2 : 0);

			if (expect_stats(ld[i].t.name, ld[i].dom[d], false, want, want, 0,
					 IOPF_REASON_RESOLVED, &c) < 0)
				unanswered += (unsigned)(want > c.success ? want - c.success : 0);
			total += c.groups;
			maps += c.maps;
		}
	t_answered = kt_now_ns();
	for (unsigned i = 0; i < n_ten; i++)
		if (tenant_unregister(&ld[i].t, false) < 0)
			goto out;
	if (unanswered || total != (uint64_t)per * n_ten) {
		kt_fail("%u unanswered, %" PRIu64 " of %u answered", unanswered, total,
			per * n_ten);
		goto out;
	}
	kt_log("%" PRIu64 " faults over %u tenants: 0 unanswered, 0 wrong; all mapped after "
	       "%.3f s, all counted answered after %.3f s",
	       total, n_ten, (double)(t_mapped - t0) / 1e9, (double)(t_answered - t0) / 1e9);
	printf("KTEST-METRIC name=load layout=%s faults=%" PRIu64
	       " tenants=%u inflight=%u seconds=%.3f "
	       "fps=%.0f p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f maps=%" PRIu64
	       " window=%" PRIu64 "\n",
	       kt_layout_name(opt.layout), total, n_ten, opt.inflight,
	       (double)(t_answered - t0) / 1e9, (double)total / ((double)(t_answered - t0) / 1e9),
	       kt_lat_pct(&all, 0.50) / 1e3, kt_lat_pct(&all, 0.90) / 1e3,
	       kt_lat_pct(&all, 0.99) / 1e3, kt_lat_pct(&all, 1.0) / 1e3, maps, opt.window);
	kt_log("pickup (raise to iopfd's read): p50 %.1f us, p90 %.1f us, p99 %.1f us",
	       kt_lat_pct(&pickup, 0.50) / 1e3, kt_lat_pct(&pickup, 0.90) / 1e3,
	       kt_lat_pct(&pickup, 0.99) / 1e3);
	fflush(stdout);
	ret = 0;
out:
	for (unsigned i = 0; i < n_ten; i++) {
		free(ld[i].t0);
		if (i < n_open)
			tenant_close(&ld[i].t);
	}
	kt_lat_free(&all);
	kt_lat_free(&pickup);
	free(ld);
	return kt_failures() ? 1 : ret;
}

/* ---------------------------------------------------------------- 10. restart */

/*
 * iopfd killed (SIGKILL) while it holds groups it read and has not answered, and started
 * again through the fd-store stand-in (fdstore.h), as systemd would after Restart=. The
 * tenant registers once, before the first kill; its objects are restored, never
 * registered again. Two worlds (two sources, two workers) of two devices each, the
 * second device's faults on PASID 1. Each round raises RS_LIVE faults per device from a
 * thread per device and, once iopfd has resolved a few of them (1, 2, 4, 8, 16 of the
 * 160: early, while it still holds most of what it read), kills it; while it is dead RS_DEAD more
 * per device are raised (they stay queued); then the next one starts. Every fault has a
 * fault-around window of its own, so its page is mapped only if that fault was resolved. Proven
 * after each restart: every fault of the round maps exactly its memory, and the new process's
 * counters (read on a connection that takes the restored tenant over) show no INVALID and no fault
 * without a handler, and at least the faults queued while it was dead answered. At the end: a round
 * with no kill, UnregisterSource, nothing outstanding or queued, nothing mapped, only the state
 * left in the store, a clean stop. The records each restarted process found read and unanswered are
 * summed from its log line.
 */
#define RS_WORLDS    2
#define RS_DEVS	     2
#define RS_KILLS     5
#define RS_LIVE	     40 /* faults per device and round raised while iopfd runs */
#define RS_DEAD	     4	/* and while it is dead */
#define RS_PER_ROUND (RS_LIVE + RS_DEAD)
#define RS_ROUNDS    (RS_KILLS + 1) /* the last one has no kill */
#define RS_DEV_SPAN  (UINT64_C(64) << 20)
#define RS_START_MS  30000

struct rs_world {
	char name[16];
	struct kt_world w;
	struct kt_mem mem;
	uint64_t source;
	uint64_t dom[RS_DEVS];
};

static uint32_t rs_pasid(unsigned dev)
{
	return dev == 1 ? 1 : IOPF_PASID_NONE;
}

/* Fault j of device d: in window j of the device's region, at a page that varies. */
static uint64_t rs_iova(unsigned dev, unsigned j)
{
	return REGION_IOVA + dev * RS_DEV_SPAN + (uint64_t)j * opt.window +
	       (j % (opt.window / PAGE)) * PAGE + (j % 8) * 8;
}

static bool rs_resolved(struct rs_world *rw, unsigned dev, unsigned j)
{
	uint64_t page = rs_iova(dev, j) & ~(PAGE - 1);

	return kt_check_map(&rw->w, page, PAGE,
			    rw->mem.va + (page - REGION_IOVA - dev * RS_DEV_SPAN)) == 0;
}

static int rs_trigger(struct rs_world *rw, unsigned dev, unsigned j)
{
	uint32_t pasid = rs_pasid(dev);

	return kt_trigger(&rw->w, rw->w.dev[dev].idev_id, pasid == IOPF_PASID_NONE ? 0 : pasid,
			  j & 0x1ff, grp_perm(j), rs_iova(dev, j));
}

/* A thread raising faults [from, from + n) of one device back to back. */
struct rs_raiser {
	struct rs_world *rw;
	unsigned dev, from, n;
	int error;
	pthread_t thread;
};

static void *rs_raise(void *arg)
{
	struct rs_raiser *r = arg;

	for (unsigned j = r->from; j < r->from + r->n && !r->error; j++)
		r->error = rs_trigger(r->rw, r->dev, j);
	return NULL;
}

/*
 * The faults of round @round resolved so far (the live ones only, when @live_only),
 * counting no further than @enough (a look costs an ioctl a fault).
 */
static unsigned rs_count_resolved(struct rs_world *rws, unsigned round, bool live_only,
				  unsigned enough)
{
	unsigned n = 0;

	for (unsigned k = 0; k < RS_WORLDS; k++)
		for (unsigned d = 0; d < RS_DEVS; d++)
			for (unsigned i = 0; i < (live_only ? RS_LIVE : RS_PER_ROUND); i++) {
				n += rs_resolved(&rws[k], d, round * RS_PER_ROUND + i);
				if (n >= enough)
					return n;
			}
	return n;
}

struct rs_round_wait {
	struct rs_world *rws;
	unsigned round;
};

static int rs_round_done(void *arg)
{
	struct rs_round_wait *rw = arg;

	return rs_count_resolved(rw->rws, rw->round, false, UINT_MAX) ==
	       RS_WORLDS * RS_DEVS * RS_PER_ROUND;
}

/* Every fault of the round maps exactly its memory, within WAIT_MS. */
static int rs_expect_round(struct rs_world *rws, unsigned round)
{
	struct rs_round_wait w = {rws, round};

	if (wait_until(rs_round_done, &w) > 0)
		return 0;
	for (unsigned k = 0; k < RS_WORLDS; k++)
		for (unsigned d = 0; d < RS_DEVS; d++)
			for (unsigned i = 0; i < RS_PER_ROUND; i++) {
				unsigned j = round * RS_PER_ROUND + i;

				if (!rs_resolved(&rws[k], d, j))
					kt_fail("%s: round %u fault %u (dev %u, pasid %#x, iova "
						"%#" PRIx64 ", raised %s) not mapped after %d ms",
						rws[k].name, round, j, rws[k].w.dev[d].idev_id,
						rs_pasid(d), rs_iova(d, j),
						i < RS_LIVE ? "live" : "while iopfd was dead",
						WAIT_MS);
			}
	return -1;
}

/*
 * The running iopfd's view, through @c (a connection of ours: it owns the restored
 * tenant): no INVALID, nothing without a handler, at least @min_groups answered SUCCESS
 * on each domain. Adds the stale answers (the kernel refused them) to *stale.
 */
static int rs_expect_counters(struct iopf_client *c, struct rs_world *rws, uint64_t min_groups,
			      const char *when, uint64_t *stale)
{
	for (unsigned k = 0; k < RS_WORLDS; k++) {
		uint64_t src_invalid = 0;
		int r = iopf_client_source_counter(c, rws[k].source, "invalid", &src_invalid);

		if (r < 0) {
			kt_fail("%s: GetSourceStats(%" PRIu64 ") %s: %s", rws[k].name,
				rws[k].source, when, iopf_client_last_error(c) ?: strerror(-r));
			return -1;
		}
		if (src_invalid) {
			kt_fail("%s: %" PRIu64
				" faults of the source answered INVALID (no handler) "
				"%s",
				rws[k].name, src_invalid, when);
			return -1;
		}
		for (unsigned d = 0; d < RS_DEVS; d++) {
			uint64_t groups = 0, success = 0, invalid = 0, st = 0, nh = 0;

			r = iopf_client_domain_counter(c, rws[k].dom[d], "groups", &groups);
			if (r >= 0)
				r = iopf_client_domain_counter(c, rws[k].dom[d], "success",
							       &success);
			if (r >= 0)
				r = iopf_client_domain_counter(c, rws[k].dom[d], "invalid",
							       &invalid);
			if (r >= 0)
				r = iopf_client_domain_counter(c, rws[k].dom[d], "stale", &st);
			if (r >= 0)
				r = iopf_client_domain_counter(c, rws[k].dom[d], "no_handler", &nh);
			if (r < 0) {
				kt_fail("%s: GetStats(domain %" PRIu64 ") %s: %s", rws[k].name,
					rws[k].dom[d], when,
					iopf_client_last_error(c) ?: strerror(-r));
				return -1;
			}
			if (invalid || nh || success < min_groups) {
				kt_fail("%s: domain (dev %u, pasid %#x) %s: groups %" PRIu64
					" success %" PRIu64 " invalid %" PRIu64
					" no_handler %" PRIu64 "; wanted 0 invalid and >= %" PRIu64
					" success",
					rws[k].name, rws[k].w.dev[d].idev_id, rs_pasid(d), when,
					groups, success, invalid, nh, min_groups);
				return -1;
			}
			*stale += st;
		}
	}
	return 0;
}

/* Connect again from this process: iopfd hands the connection the restored tenant. */
static struct iopf_client *rs_reconnect(void)
{
	struct iopf_client *c = NULL;
	int r = iopf_client_connect(opt.address, &c);

	if (r < 0)
		kt_fail("connect to %s after the restart: %s", opt.address, strerror(-r));
	return c;
}

/* Sum N over iopfd's "...; N fault records it had read are answered..." lines. */
static int rs_log_recovered(const char *path, unsigned *per_kill, unsigned max, unsigned *n_lines,
			    unsigned *refused)
{
	char line[1024];
	FILE *f = fopen(path, "re");

	*n_lines = *refused = 0;
	if (!f) {
		kt_fail("cannot read iopfd's log %s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, " fault records it had read");
		unsigned dropped = 0;

		if (strstr(line, "Refusing the state"))
			(*refused)++;
		if (!p)
			continue;
		while (p > line && p[-1] >= '0' && p[-1] <= '9')
			p--;
		if (*n_lines < max)
			per_kill[*n_lines] = (unsigned)strtoul(p, NULL, 10);
		(*n_lines)++;
		p = strstr(line, "(");
		if (p && sscanf(p, "(%u objects dropped", &dropped) == 1 && dropped)
			kt_fail("a restart dropped %u objects: %s", dropped, line);
		line[strcspn(line, "\n")] = '\0';
		kt_log("%s", line);
	}
	fclose(f);
	return 0;
}

/* Print the end of iopfd's log (on a failure). */
static void rs_log_tail(const char *path)
{
	char line[1024];
	long lines = 0, skip;
	FILE *f = fopen(path, "re");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		lines++;
	skip = lines > 60 ? lines - 60 : 0;
	rewind(f);
	for (long i = 0; fgets(line, sizeof(line), f); i++)
		if (i >= skip) {
			line[strcspn(line, "\n")] = '\0';
			kt_log("iopfd log: %s", line);
		}
	fclose(f);
}

struct rs_names_wait {
	struct kfs *store;
	char names[1024];
};

static int rs_only_state(void *arg)
{
	struct rs_names_wait *n = arg;

	return kfs_names(n->store, n->names, sizeof(n->names)) == 1 &&
	       strcmp(n->names, "state") == 0;
}

static int scenario_restart(void)
{
	const uint64_t len = (uint64_t)RS_ROUNDS * RS_PER_ROUND * opt.window;
	const char *sock_path = opt.address + strlen("unix:path=");
	char notify_path[128], names[1024];
	struct rs_world rws[RS_WORLDS];
	struct iopf_client *client = NULL;
	struct kfs *store = NULL;
	unsigned n_open = 0, recovered[RS_KILLS + 4] = {0}, n_lines = 0, refused = 0;
	unsigned caught = 0, total_recovered = 0;
	uint64_t ready_ms[RS_KILLS], stale = 0;
	pid_t pid;
	int r, ret = 1;

	if (strncmp(opt.address, "unix:path=", 10) != 0 || !opt.daemon_argv) {
		kt_fail("restart needs --address unix:path=SOCKET and the iopfd command after --");
		return 1;
	}
	if (len > RS_DEV_SPAN) {
		kt_fail("--window %" PRIu64 " is too large for %u faults a device", opt.window,
			RS_ROUNDS * RS_PER_ROUND);
		return 1;
	}
	snprintf(notify_path, sizeof(notify_path), "%s.notify", sock_path);
	r = kfs_open(sock_path, notify_path, opt.log_path, &store);
	if (r < 0) {
		kt_fail("fd-store stand-in on %s, %s: %s", sock_path, notify_path, strerror(-r));
		return 1;
	}
	pid = kfs_start(store, opt.daemon_argv, RS_START_MS);
	if (pid < 0) {
		kt_fail("iopfd did not get ready: %s", strerror(-(int)pid));
		goto out;
	}
	kt_log("iopfd pid %d ready (fd store: LISTEN_FDS with iopfd.socket, NOTIFY_SOCKET %s)",
	       (int)pid, notify_path);

	/* register once: two sources, a domain per device, a region per domain */
	r = iopf_client_connect(opt.address, &client);
	if (r < 0) {
		kt_fail("connect to %s: %s", opt.address, strerror(-r));
		goto out;
	}
	for (; n_open < RS_WORLDS; n_open++) {
		struct rs_world *rw = &rws[n_open];

		*rw = (struct rs_world){0};
		rw->mem = (struct kt_mem){.memfd = -1};
		snprintf(rw->name, sizeof(rw->name), "world-%u", n_open);
		r = kt_world_open(&rw->w, RS_DEVS, opt.layout);
		if (r < 0) {
			kt_fail("%s: cannot build the mock world (%s): %s", rw->name,
				kt_layout_name(opt.layout), strerror(-r));
			goto out;
		}
		r = kt_mem_open(&rw->mem, len);
		if (r < 0) {
			n_open++;
			kt_fail("%s: memfd: %s", rw->name, strerror(-r));
			goto out;
		}
		r = iopf_client_register_source(client, rw->w.fault_fd, rw->w.iommufd,
						rw->w.ioas_id, &rw->source);
		if (r < 0) {
			n_open++;
			kt_fail("%s: RegisterSource: %s", rw->name,
				iopf_client_last_error(client) ?: strerror(-r));
			goto out;
		}
		for (unsigned d = 0; d < RS_DEVS; d++) {
			uint64_t region;

			if (rs_pasid(d) != IOPF_PASID_NONE)
				r = kt_world_attach_pasid(&rw->w, d, rs_pasid(d));
			if (r >= 0)
				r = iopf_client_register_domain(client, rw->source,
								rw->w.dev[d].idev_id, rs_pasid(d),
								&rw->dom[d]);
			/* the same memory behind both devices' regions: one stored open file */
			if (r >= 0)
				r = iopf_client_add_region(client, rw->dom[d], rw->mem.memfd, 0,
							   REGION_IOVA + d * RS_DEV_SPAN, len,
							   IOPF_ACCESS_ALL, &region);
			if (r < 0) {
				n_open++;
				kt_fail("%s: domain/region of dev %u pasid %#x: %s", rw->name,
					rw->w.dev[d].idev_id, rs_pasid(d),
					iopf_client_last_error(client) ?: strerror(-r));
				goto out;
			}
		}
	}
	kfs_names(store, names, sizeof(names));
	kt_log("registered 2 sources, 4 domains (PASID 1 on each second device), 4 regions; "
	       "the store holds: %s",
	       names);

	for (unsigned round = 0; round < RS_ROUNDS; round++) {
		const bool kill_it = round < RS_KILLS;
		const unsigned base = round * RS_PER_ROUND;
		/* early in the round, at a different point each time: 1, 2, 4, 8, 16 resolved */
		const unsigned kill_at = 1u << round;
		struct rs_raiser raisers[RS_WORLDS * RS_DEVS];
		unsigned n_raisers = 0, at_kill = 0;
		uint64_t t_kill, deadline;

		for (unsigned k = 0; k < RS_WORLDS; k++)
			for (unsigned d = 0; d < RS_DEVS; d++) {
				struct rs_raiser *ra = &raisers[n_raisers];

				*ra = (struct rs_raiser){.rw = &rws[k],
							 .dev = d,
							 .from = base,
							 .n = kill_it ? RS_LIVE : RS_PER_ROUND};
				if (pthread_create(&ra->thread, NULL, rs_raise, ra) != 0) {
					kt_fail("pthread_create failed");
					break;
				}
				n_raisers++;
			}
		if (!kill_it || n_raisers < RS_WORLDS * RS_DEVS)
			goto join;

		/* kill it amid the flow: once it resolved kill_at of the round's faults */
		deadline = kt_now_ns() + (uint64_t)WAIT_MS * 1000000;
		while ((at_kill = rs_count_resolved(rws, round, true, kill_at)) < kill_at) {
			if (kt_now_ns() > deadline) {
				kt_fail("round %u: only %u of %u faults resolved after %d ms",
					round, at_kill, RS_WORLDS * RS_DEVS * RS_LIVE, WAIT_MS);
				break;
			}
			sched_yield();
		}
		t_kill = kt_now_ns();
		r = kfs_kill(store);
		if (r < 0) {
			kt_fail("SIGKILL iopfd: %s", strerror(-r));
			goto join;
		}
		/* its connection died with iopfd: the library connects again and takes it over */
		at_kill = rs_count_resolved(rws, round, true, UINT_MAX); /* what it had mapped */
		/* while it is dead: more faults, which must stay queued */
		for (unsigned k = 0; k < RS_WORLDS; k++) {
			for (unsigned d = 0; d < RS_DEVS; d++)
				for (unsigned i = RS_LIVE; i < RS_PER_ROUND; i++) {
					r = rs_trigger(&rws[k], d, base + i);
					if (r < 0)
						kt_fail("%s: TRIGGER_IOPF while iopfd is dead: %s",
							rws[k].name, strerror(-r));
				}
			if (kt_fault_readable(rws[k].w.fault_fd, 0) != 1)
				kt_fail("%s: nothing queued while iopfd is dead", rws[k].name);
		}
		pid = kfs_start(store, opt.daemon_argv, RS_START_MS);
		if (pid < 0) {
			kt_fail("round %u: iopfd did not get ready again: %s", round,
				strerror(-(int)pid));
			goto join;
		}
		ready_ms[round] = (kt_now_ns() - t_kill) / 1000000;
		kt_log("round %u: SIGKILL, %u of %u live faults resolved by then; %u raised while "
		       "dead; "
		       "iopfd pid %d ready %" PRIu64 " ms after the kill",
		       round, at_kill, RS_WORLDS * RS_DEVS * RS_LIVE, RS_WORLDS * RS_DEVS * RS_DEAD,
		       (int)pid, ready_ms[round]);
	join:
		for (unsigned i = 0; i < n_raisers; i++) {
			pthread_join(raisers[i].thread, NULL);
			if (raisers[i].error)
				kt_fail("%s: TRIGGER_IOPF (dev %u): %s", raisers[i].rw->name,
					raisers[i].dev, strerror(-raisers[i].error));
		}
		if (kt_failures() || rs_expect_round(rws, round) < 0)
			goto out;
		/* the process now running answered what was queued while it was dead (or all) */
		if (!client && !(client = rs_reconnect()))
			goto out;
		if (rs_expect_counters(client, rws, kill_it ? RS_DEAD : RS_PER_ROUND,
				       kill_it ? "after the restart" : "in the last round",
				       &stale) < 0)
			goto out;
		kt_log("round %u: all %u faults mapped exactly; iopfd counts 0 invalid, 0 without "
		       "a handler",
		       round, RS_WORLDS * RS_DEVS * RS_PER_ROUND);
	}

	/* the end: unregister, and nothing is left outstanding, queued, mapped or stored */
	for (unsigned k = 0; k < RS_WORLDS; k++) {
		struct rs_world *rw = &rws[k];
		int outstanding;

		r = iopf_client_unregister_source(client, rw->source);
		if (r < 0) {
			kt_fail("%s: UnregisterSource(%" PRIu64 ") after the restarts: %s",
				rw->name, rw->source,
				iopf_client_last_error(client) ?: strerror(-r));
			goto out;
		}
		outstanding = kt_fault_probe_outstanding(
			rw->w.fault_fd, RS_DEVS * RS_ROUNDS * RS_PER_ROUND + PROBE_SLACK);
		if (outstanding != 0) {
			kt_fail("%s: %d group(s) read and never answered%s", rw->name, outstanding,
				outstanding < 0 ? " (probe failed)" : "");
			goto out;
		}
		if (kt_fault_readable(rw->w.fault_fd, 0) != 0) {
			kt_fail("%s: groups left queued, never read", rw->name);
			goto out;
		}
		for (unsigned d = 0; d < RS_DEVS; d++)
			for (unsigned j = 0; j < RS_ROUNDS * RS_PER_ROUND; j++) {
				uint64_t page = rs_iova(d, j) & ~(PAGE - 1);

				r = kt_ioas_map(rw->w.iommufd, rw->w.ioas_id, rw->mem.va, PAGE,
						page);
				if (r < 0) {
					kt_fail("%s: iova %#" PRIx64 " still mapped after "
						"UnregisterSource (%s)",
						rw->name, page, strerror(-r));
					goto out;
				}
				(void)kt_ioas_unmap(rw->w.iommufd, rw->w.ioas_id, page, PAGE);
			}
	}
	client = iopf_client_free(client);
	{
		struct rs_names_wait nw = {.store = store};

		if (wait_until(rs_only_state, &nw) <= 0) {
			kt_fail("the fd store still holds more than the state: %s", nw.names);
			goto out;
		}
	}
	r = kfs_stop(store, WAIT_MS);
	if (r < 0 || !WIFEXITED(r) || WEXITSTATUS(r) != 0) {
		kt_fail("iopfd did not stop cleanly on SIGTERM (%s %d)",
			r < 0 ? strerror(-r) : "status", r);
		goto out;
	}
	if (rs_log_recovered(opt.log_path, recovered, RS_KILLS + 4, &n_lines, &refused) < 0)
		goto out;
	if (n_lines != RS_KILLS || refused) {
		kt_fail("%u restarts carried on from the process before (want %u); %u refused its "
			"state",
			n_lines, RS_KILLS, refused);
		goto out;
	}
	for (unsigned k = 0; k < RS_KILLS; k++) {
		total_recovered += recovered[k];
		caught += recovered[k] > 0;
	}
	/* a kill may find the groups all answered; every one of them would prove nothing */
	if (caught == 0) {
		kt_fail("none of the %u kills caught a group read and unanswered", RS_KILLS);
		goto out;
	}
	{
		uint64_t sorted[RS_KILLS];

		memcpy(sorted, ready_ms, sizeof(sorted));
		for (unsigned i = 1; i < RS_KILLS; i++)
			for (unsigned j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
				uint64_t t = sorted[j];

				sorted[j] = sorted[j - 1];
				sorted[j - 1] = t;
			}
		kt_log("%u SIGKILLs amid faults: %u of them caught groups read and unanswered, "
		       "%u such records answered by the next process (%" PRIu64
		       " answers the kernel refused as already given); %u faults, all SUCCESS, "
		       "0 INVALID, 0 outstanding; kill to ready p50 %" PRIu64 " ms, max %" PRIu64
		       " ms",
		       RS_KILLS, caught, total_recovered, stale,
		       RS_WORLDS * RS_DEVS * RS_ROUNDS * RS_PER_ROUND, sorted[RS_KILLS / 2],
		       sorted[RS_KILLS - 1]);
		printf("KTEST-METRIC name=restart layout=%s kills=%u caught=%u recovered=%u "
		       "faults=%u invalid=0 stale=%" PRIu64 " ready_p50_ms=%" PRIu64
		       " ready_max_ms=%" PRIu64 "\n",
		       kt_layout_name(opt.layout), RS_KILLS, caught, total_recovered,
		       RS_WORLDS * RS_DEVS * RS_ROUNDS * RS_PER_ROUND, stale, sorted[RS_KILLS / 2],
		       sorted[RS_KILLS - 1]);
		fflush(stdout);
	}
	ret = 0;
out:
	if (kt_failures())
		rs_log_tail(opt.log_path);
	client = iopf_client_free(client);
	store = kfs_close(store); /* kills iopfd if it still runs */
	for (unsigned k = 0; k < n_open; k++) {
		kt_mem_close(&rws[k].mem);
		kt_world_close(&rws[k].w);
	}
	return kt_failures() ? 1 : ret;
}

/* ---------------------------------------------------------------- main */

static const struct {
	const char *name;
	int (*fn)(void);
} scenarios[] = {
	{"regions", scenario_regions},	     {"outside", scenario_outside},
	{"unknown", scenario_unknown},	     {"collide", scenario_collide},
	{"teardown", scenario_teardown},     {"faultaround", scenario_faultaround},
	{"mapfile", scenario_mapfile},	     {"pasid", scenario_pasid},
	{"pasid-none", scenario_pasid_none}, {"load", scenario_load},
	{"restart", scenario_restart},
};

static int usage(void)
{
	fprintf(stderr, "usage: iopf-ktenant SCENARIO --address ADDR --daemon-pid PID "
			"[--layout nested|paging] [--window BYTES] [--faults N] [--tenants N] "
			"[--inflight N]\n"
			"       iopf-ktenant restart --address unix:path=SOCKET [--layout L] "
			"[--window BYTES] [--log FILE] -- IOPFD-COMMAND...\n"
			"scenarios:");
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		fprintf(stderr, " %s", scenarios[i].name);
	fprintf(stderr, "\n");
	return 2;
}

static int observer_open(void)
{
	int r;

	r = sd_bus_new(&observer);
	if (r >= 0)
		r = sd_bus_set_address(observer, opt.address);
	if (r >= 0)
		r = sd_bus_start(observer);
	if (r < 0) {
		kt_fail("observer connection to %s: %s", opt.address, strerror(-r));
		observer = sd_bus_flush_close_unref(observer);
	}
	return r;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"address", required_argument, NULL, 'a'},
					     {"daemon-pid", required_argument, NULL, 'p'},
					     {"window", required_argument, NULL, 'w'},
					     {"faults", required_argument, NULL, 'n'},
					     {"tenants", required_argument, NULL, 't'},
					     {"inflight", required_argument, NULL, 'i'},
					     {"layout", required_argument, NULL, 'l'},
					     {"log", required_argument, NULL, 'L'},
					     {}};
	const char *name;
	bool own_daemon;
	int c, ret;

	if (argc < 2)
		return usage();
	name = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
		switch (c) {
		case 'a':
			opt.address = optarg;
			break;
		case 'p':
			opt.daemon_pid = (pid_t)strtol(optarg, NULL, 10);
			break;
		case 'w':
			opt.window = strtoull(optarg, NULL, 0);
			break;
		case 'n':
			opt.faults = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 't':
			opt.tenants = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'i':
			opt.inflight = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'l':
			if (kt_layout_parse(optarg, &opt.layout) < 0)
				return usage();
			break;
		case 'L':
			opt.log_path = optarg;
			break;
		default:
			return usage();
		}
	}
	own_daemon = strcmp(name, "restart") == 0;
	if (optind < argc)
		opt.daemon_argv = argv + optind;
	if (!opt.address || (!own_daemon && opt.daemon_pid <= 0) ||
	    (own_daemon && !opt.daemon_argv) || opt.window < PAGE ||
	    (opt.window & (opt.window - 1)) || opt.faults == 0 || opt.faults > 200000 ||
	    opt.inflight == 0 || opt.inflight > 4096)
		return usage();

	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		if (strcmp(scenarios[i].name, name) != 0)
			continue;
		kt_set_name(name);
		/* a vanished peer must not kill us mid-check */
		signal(SIGPIPE, SIG_IGN);
		/*
		 * restart runs its own iopfd, and must not connect before it registers: a
		 * later connection from this process takes its restored tenant over
		 */
		if (!own_daemon && observer_open() < 0)
			return 1;
		ret = scenarios[i].fn();
		observer = sd_bus_flush_close_unref(observer);
		if (ret == 0 && kt_failures() == 0)
			kt_log("PASS");
		return kt_failures() ? 1 : ret;
	}
	return usage();
}
