/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The D-Bus requests as daemon/bus.c hands them to lib/control once unpacked
 * (IOPF_WIRE_REGISTER_SOURCE_IN "hhu", IOPF_WIRE_REGISTER_DOMAIN_IN "tuu",
 * IOPF_WIRE_ADD_REGION_IN "thtttu", removals by id, listings, statistics),
 * with arguments shaped from the input: fds of every kind, ids of the caller's
 * objects, of other tenants' and made up, edge values for every number. Four
 * tenants (two of one uid, another user, root) call in any order, limits
 * change under them, tenants go away. lib/control runs against the in-memory
 * engine (tests/fakes/fake-engine.c). What must hold:
 * - every refusal is a clean -errno with a message, and the wire maps it to
 *   an error name of iopf.h other than Internal;
 * - another tenant's object answers exactly like a missing one (-ENOENT);
 * - a new object gets an id no live object of that tenant has; a success
 *   never exceeds the limits in force (per tenant and summed per uid);
 * - counts match: each tenant's statistics count what the model says is live,
 *   with the sum of its region lengths; after a dispatch the fds the engine
 *   holds are exactly two per source and one per region;
 * - every removal that returned 0 gets exactly one done callback;
 * - when everything is freed, no fd is left open.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "control-count.h"
#include "control.h"
#include "fake-engine.h"
#include "fuzz.h"
#include "proc-fds.h"
#include "sim.h"
#include "test-fds.h"
#include "util.h"
#include "wire.h"

#define N_TENANTS 4
#define MAX_OBJS  256
#define MEM_SIZE  (UINT64_C(1) << 20)

enum kind { K_SOURCE, K_DOMAIN, K_REGION, _K_MAX };

struct mobj {
	uint64_t id, parent;
	unsigned tenant; /* index */
	enum kind kind;
	uint64_t length;
	bool live;
};

struct model {
	struct iopf_control *c;
	struct iopf_engine *e;
	uint64_t tenant_id[N_TENANTS];
	struct mobj obj[MAX_OBJS];
	unsigned n_obj;
	struct iopf_control_limits limits;
	unsigned removals, dones; /* removals that returned 0; done callbacks run */
	int fd_budget;		  /* what the daemon's fd check lets through, in fds */
};

static const uid_t tenant_uid[N_TENANTS] = {1000, 1000, 1001, 0};

/* The fds a caller can pass, made once: the right kinds, the wrong ones, closed ones. */
static int fds[_TFD_MAX];
static struct iopf_sim *sim; /* lives as long as the process: its fds are in the table */

static void fds_init(void)
{
	struct test_fds kinds = {.mem_size = MEM_SIZE};

	fuzz_check(iopf_sim_new(&(struct iopf_sim_config){.n_ioas = 2}, &sim) == 0, "sim");
	kinds.sim_fault = iopf_sim_fault_fd(sim);
	kinds.sim_iommu = iopf_sim_iommufd(sim);
	for (unsigned k = 0; k < _TFD_MAX; k++) {
		int extra = -EBADF; /* kept open: a pipe's other end, a reopened memfd */

		fds[k] = test_fd(&kinds, k, &extra);
		fuzz_check(fds[k] >= 0 || k == TFD_NEG, "fd kind %u: %m", k);
	}
}

static int pick_fd(struct fuzz_in *in)
{
	return fds[fuzz_u8(in) % _TFD_MAX];
}

static void check_refusal(int r, const struct iopf_control_error *err, const char *what)
{
	const char *name = iopf_error_to_name(r);

	fuzz_check(fuzz_is_errno(r), "%s: %d", what, r);
	fuzz_check(err->message[0], "%s: %d without a message", what, r);
	fuzz_check(iopf_error_from_name(name) != 0 && strcmp(name, IOPF_ERROR_INTERNAL) != 0,
		   "%s: %d (%s) goes on the wire as %s", what, r, err->message, name);
}

static struct mobj *find(struct model *m, unsigned t, enum kind k, uint64_t id)
{
	for (unsigned i = 0; i < m->n_obj; i++) {
		struct mobj *o = &m->obj[i];

		if (o->live && o->tenant == t && o->kind == k && o->id == id)
			return o;
	}
	return NULL;
}

/* An id the way a caller names one: any tenant's object of @k (live or gone), or made up. */
static uint64_t pick_id(struct model *m, enum kind k, struct fuzz_in *in)
{
	uint8_t sel = fuzz_u8(in);
	unsigned n = 0, want;

	if (sel >= 0xf0)
		return fuzz_edgy_u64(in, 1);
	for (unsigned i = 0; i < m->n_obj; i++)
		n += m->obj[i].kind == k;
	if (!n)
		return sel;
	want = sel % n;
	for (unsigned i = 0; i < m->n_obj; i++)
		if (m->obj[i].kind == k && want-- == 0)
			return m->obj[i].id;
	return 0;
}

static unsigned count(struct model *m, bool by_uid, unsigned t, enum kind k, uint64_t *bytes)
{
	unsigned n = 0;

	if (bytes)
		*bytes = 0;
	for (unsigned i = 0; i < m->n_obj; i++) {
		const struct mobj *o = &m->obj[i];
		bool mine = by_uid ? tenant_uid[o->tenant] == tenant_uid[t] : o->tenant == t;

		if (o->live && mine && o->kind == k) {
			n++;
			if (bytes)
				*bytes += o->length;
		}
	}
	return n;
}

/* Gone from the model: @o and what hangs below it. */
static void kill(struct model *m, struct mobj *o)
{
	o->live = false;
	for (unsigned i = 0; i < m->n_obj; i++)
		if (m->obj[i].live && m->obj[i].tenant == o->tenant &&
		    m->obj[i].kind == o->kind + 1 && m->obj[i].parent == o->id)
			kill(m, &m->obj[i]);
}

static void add(struct model *m, unsigned t, enum kind k, uint64_t id, uint64_t parent,
		uint64_t length)
{
	fuzz_check(id != 0 && !find(m, t, k, id), "new id %llu is already taken",
		   (unsigned long long)id);
	if (m->n_obj == MAX_OBJS) { /* forget the oldest dead one */
		unsigned i;

		for (i = 0; i < MAX_OBJS && m->obj[i].live; i++)
			;
		fuzz_check(i < MAX_OBJS, "model full");
		memmove(&m->obj[i], &m->obj[i + 1], (MAX_OBJS - i - 1) * sizeof(m->obj[0]));
		m->n_obj--;
	}
	m->obj[m->n_obj++] = (struct mobj){
		.id = id, .parent = parent, .tenant = t, .kind = k, .length = length, .live = true};
}

static int fd_check(void *userdata, unsigned need)
{
	struct model *m = userdata;

	return m->fd_budget >= (int)need ? 0 : -EMFILE;
}

static void on_done(void *userdata, int error)
{
	struct model *m = userdata;

	fuzz_check(error == 0, "removal finished with %d", error);
	m->dones++;
}

static void op_source(struct model *m, unsigned t, struct fuzz_in *in)
{
	struct iopf_control_error err = {};
	int fault = pick_fd(in), iommu = pick_fd(in);
	uint32_t ioas = (uint32_t)fuzz_edgy_u64(in, 1);
	unsigned mine = count(m, false, t, K_SOURCE, NULL),
		 ours = count(m, true, t, K_SOURCE, NULL);
	uint64_t id = 0;
	int r = iopf_control_register_source(m->c, m->tenant_id[t], fault, iommu, ioas, &id, &err);

	if (r < 0) {
		check_refusal(r, &err, "RegisterFaultSource");
		return;
	}
	fuzz_check(mine < m->limits.max_sources, "source %u over MaxSources=%u", mine + 1,
		   m->limits.max_sources);
	fuzz_check(!m->limits.max_sources_per_user || ours < m->limits.max_sources_per_user,
		   "uid's source %u over MaxSourcesPerUser", ours + 1);
	fuzz_check(m->fd_budget >= 2, "a source past the fd check");
	add(m, t, K_SOURCE, id, 0, 0);
}

static void op_domain(struct model *m, unsigned t, struct fuzz_in *in)
{
	static const uint32_t pasids[] = {IOPF_PASID_NONE, 0, 1, IOPF_PASID_MAX, IOPF_PASID_MAX + 1,
					  UINT32_MAX - 1};
	struct iopf_control_error err = {};
	uint64_t src = pick_id(m, K_SOURCE, in), id = 0;
	uint32_t dev = (uint32_t)fuzz_edgy_u64(in, 1);
	uint8_t k = fuzz_u8(in);
	uint32_t pasid = k < 0xf0 ? pasids[k % ARRAY_SIZE(pasids)] : fuzz_u32(in);
	unsigned mine = count(m, false, t, K_DOMAIN, NULL);
	bool owned = find(m, t, K_SOURCE, src);
	int r = iopf_control_register_domain(m->c, m->tenant_id[t], src, dev, pasid, &id, &err);

	if (r < 0) {
		check_refusal(r, &err, "RegisterDomain");
		fuzz_check(owned || r == -ENOENT || r == -EINVAL,
			   "another tenant's source %llu: %d (%s)", (unsigned long long)src, r,
			   err.message);
		return;
	}
	fuzz_check(owned, "a domain on source %llu, not the caller's", (unsigned long long)src);
	fuzz_check(pasid == IOPF_PASID_NONE || pasid <= IOPF_PASID_MAX, "pasid 0x%x accepted",
		   pasid);
	fuzz_check(mine < m->limits.max_domains, "domain over MaxDomains");
	add(m, t, K_DOMAIN, id, src, 0);
}

static void op_region(struct model *m, unsigned t, struct fuzz_in *in)
{
	struct iopf_control_error err = {};
	uint64_t dom = pick_id(m, K_DOMAIN, in), id = 0, bytes, ubytes;
	int fd = pick_fd(in);
	uint64_t offset = fuzz_edgy_u64(in, IOPF_PAGE_SIZE), iova = fuzz_edgy_u64(in, MEM_SIZE);
	uint64_t length = fuzz_edgy_u64(in, IOPF_PAGE_SIZE);
	uint32_t access = fuzz_u8(in) % 32;
	unsigned mine = count(m, false, t, K_REGION, &bytes);
	bool owned = find(m, t, K_DOMAIN, dom);
	struct stat st = {};
	int r;

	(void)count(m, true, t, K_REGION, &ubytes);
	(void)fstat(fd, &st);
	r = iopf_control_add_region(m->c, m->tenant_id[t], dom, fd, offset, iova, length, access,
				    &id, &err);
	if (r < 0) {
		check_refusal(r, &err, "AddRegion");
		fuzz_check(owned || r == -ENOENT || r == -EINVAL || r == -EBADF,
			   "another tenant's domain %llu: %d (%s)", (unsigned long long)dom, r,
			   err.message);
		return;
	}
	fuzz_check(owned, "a region in domain %llu, not the caller's", (unsigned long long)dom);
	fuzz_check(length && IS_ALIGNED(iova | offset | length, IOPF_PAGE_SIZE) &&
			   length <= UINT64_MAX - iova && offset + length <= (uint64_t)st.st_size,
		   "region 0x%llx+0x%llx at offset 0x%llx accepted", (unsigned long long)iova,
		   (unsigned long long)length, (unsigned long long)offset);
	fuzz_check(access && !(access & ~(uint32_t)IOPF_ACCESS_ALL), "access 0x%x accepted",
		   access);
	fuzz_check(mine < m->limits.max_regions, "region over MaxRegions");
	fuzz_check(!m->limits.max_pinned_bytes || bytes + length <= m->limits.max_pinned_bytes,
		   "regions cover more than MaxPinnedBytes");
	fuzz_check(!m->limits.max_pinned_bytes_per_user ||
			   ubytes + length <= m->limits.max_pinned_bytes_per_user,
		   "uid's regions cover more than MaxPinnedBytesPerUser");
	add(m, t, K_REGION, id, dom, length);
}

static void op_remove(struct model *m, unsigned t, enum kind k, struct fuzz_in *in)
{
	struct iopf_control_error err = {};
	uint64_t id = pick_id(m, k, in), tenant = m->tenant_id[t];
	struct mobj *o = find(m, t, k, id);
	int r;

	switch (k) {
	case K_SOURCE:
		r = iopf_control_unregister_source(m->c, tenant, id, on_done, m, &err);
		break;
	case K_DOMAIN:
		r = iopf_control_unregister_domain(m->c, tenant, id, on_done, m, &err);
		break;
	case K_REGION:
	default:
		r = iopf_control_remove_region(m->c, tenant, id, on_done, m, &err);
		break;
	}
	if (!o) {
		fuzz_check(r == -ENOENT, "removing %llu, not the caller's: %d",
			   (unsigned long long)id, r);
		check_refusal(r, &err, "Unregister");
		return;
	}
	fuzz_check(r == 0, "removing its own object %llu: %d (%s)", (unsigned long long)id, r,
		   err.message);
	m->removals++;
	kill(m, o);
}

static void op_tenant_gone(struct model *m, unsigned t)
{
	char name[32];
	int r = iopf_control_tenant_remove(m->c, m->tenant_id[t]);

	fuzz_check(r >= 0, "tenant_remove: %d", r);
	for (unsigned i = 0; i < m->n_obj; i++)
		if (m->obj[i].tenant == t)
			m->obj[i].live = false;
	/* the same user connects again */
	snprintf(name, sizeof(name), "tenant %u again", t);
	fuzz_check(iopf_control_tenant_add(m->c, name, tenant_uid[t], tenant_uid[t], 100 + t,
					   &m->tenant_id[t]) == 0,
		   "tenant_add");
}

static void op_limits(struct model *m, struct fuzz_in *in)
{
	struct iopf_control_limits l = {
		.max_sources = fuzz_u8(in) % 6,
		.max_domains = fuzz_u8(in) % 8,
		.max_regions = fuzz_u8(in) % 12,
		.max_pinned_bytes = (uint64_t)(fuzz_u8(in) % 8) * 64 * 1024,
		.max_sources_per_user = fuzz_u8(in) % 8,
		.max_domains_per_user = fuzz_u8(in) % 10,
		.max_regions_per_user = fuzz_u8(in) % 16,
		.max_pinned_bytes_per_user = (uint64_t)(fuzz_u8(in) % 8) * 128 * 1024,
		.max_fds_per_user = fuzz_u8(in) % 32,
	};
	bool valid = l.max_sources && l.max_domains && l.max_regions;
	int r = iopf_control_set_limits(m->c, &l);

	fuzz_check(valid ? r == 0 : r == -EINVAL, "set_limits: %d", r);
	if (r == 0)
		m->limits = l;
	m->fd_budget = fuzz_u8(in) % 4;
}

static void check_counts(struct model *m, unsigned t)
{
	struct iopf_control_error err = {};
	struct iopf_control_stats st;
	unsigned n[_K_MAX] = {};
	uint64_t bytes;

	fuzz_check(iopf_control_tenant_stats(m->c, m->tenant_id[t], m->tenant_id[t], &st, &err) ==
			   0,
		   "tenant_stats: %s", err.message);
	fuzz_check(st.sources == count(m, false, t, K_SOURCE, NULL) &&
			   st.domains == count(m, false, t, K_DOMAIN, NULL) &&
			   st.regions == count(m, false, t, K_REGION, &bytes) &&
			   st.region_bytes == bytes,
		   "tenant %u: %llu/%llu/%llu objects, %llu bytes; the model says %u/%u/%u", t,
		   (unsigned long long)st.sources, (unsigned long long)st.domains,
		   (unsigned long long)st.regions, (unsigned long long)st.region_bytes,
		   count(m, false, t, K_SOURCE, NULL), count(m, false, t, K_DOMAIN, NULL),
		   count(m, false, t, K_REGION, NULL));
	for (enum control_kind k = CONTROL_SOURCES; k <= CONTROL_REGIONS; k++)
		fuzz_check(control_count(m->c, k, m->tenant_id[t], false, &n[k], &err) == 0,
			   "listing: %s", err.message);
	fuzz_check(n[K_SOURCE] == st.sources && n[K_DOMAIN] == st.domains &&
			   n[K_REGION] == st.regions,
		   "tenant %u lists %u/%u/%u objects", t, n[K_SOURCE], n[K_DOMAIN], n[K_REGION]);
	/* only root lists everyone */
	fuzz_check(control_count(m->c, CONTROL_SOURCES, m->tenant_id[t], true, &n[K_SOURCE],
				 &err) == (tenant_uid[t] == 0 ? 0 : -EPERM),
		   "listing all as uid %u", (unsigned)tenant_uid[t]);
}

static void dispatch(struct model *m)
{
	unsigned sources = 0, regions = 0;

	while (iopf_engine_dispatch(m->e) > 0)
		;
	fuzz_check(m->dones == m->removals, "%u removals, %u done callbacks", m->removals,
		   m->dones);
	for (unsigned i = 0; i < m->n_obj; i++) {
		sources += m->obj[i].live && m->obj[i].kind == K_SOURCE;
		regions += m->obj[i].live && m->obj[i].kind == K_REGION;
	}
	fuzz_check(iopf_control_held_fds(m->c) == 2 * sources + regions,
		   "the engine holds %u fds for %u sources and %u regions",
		   iopf_control_held_fds(m->c), sources, regions);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct model m;
	struct iopf_engine_config cfg = {.n_workers = 1, .sim_open = iopf_sim_backend_open};
	struct fuzz_in in = {data, size};
	unsigned before;

	if (!sim)
		fds_init();
	before = proc_fds_count();
	memset(&m, 0, sizeof(m));
	m.limits = (struct iopf_control_limits){
		.max_sources = 3,
		.max_domains = 4,
		.max_regions = 6,
		.max_pinned_bytes = 256 * 1024,
		.max_sources_per_user = 4,
		.max_regions_per_user = 8,
	};
	m.fd_budget = 1 << 20;
	fuzz_check(iopf_engine_new(&cfg, &m.e) == 0, "engine");
	fuzz_check(iopf_control_new(m.e, &m.limits, &m.c) == 0, "control");
	iopf_control_set_fd_check(m.c, fd_check, &m);
	for (unsigned t = 0; t < N_TENANTS; t++)
		fuzz_check(iopf_control_tenant_add(m.c, "tenant", tenant_uid[t], tenant_uid[t],
						   10 + t, &m.tenant_id[t]) == 0,
			   "tenant_add");

	for (unsigned steps = 0; !fuzz_done(&in) && steps < 256; steps++) {
		uint8_t op = fuzz_u8(&in);
		unsigned t = (op >> 4) % N_TENANTS;

		switch (op % 10) {
		case 0:
			op_source(&m, t, &in);
			break;
		case 1:
			op_domain(&m, t, &in);
			break;
		case 2:
			op_region(&m, t, &in);
			break;
		case 3:
			op_remove(&m, t, K_SOURCE, &in);
			break;
		case 4:
			op_remove(&m, t, K_DOMAIN, &in);
			break;
		case 5:
			op_remove(&m, t, K_REGION, &in);
			break;
		case 6:
			dispatch(&m);
			break;
		case 7:
			op_tenant_gone(&m, t);
			break;
		case 8:
			op_limits(&m, &in);
			break;
		case 9:
			break;
		}
		check_counts(&m, t);
	}
	dispatch(&m);
	for (unsigned t = 0; t < N_TENANTS; t++)
		check_counts(&m, t);
	m.e = iopf_engine_free(m.e);
	m.c = iopf_control_free(m.c);
	fuzz_check(proc_fds_count() == before, "%u fds open before, %u after", before,
		   proc_fds_count());
	return 0;
}
