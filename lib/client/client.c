/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libiopf-client: include/iopf/client.h over sd-bus. A direct address gets a
 * peer-to-peer connection (no bus daemon, no Hello); "system" goes through the
 * system bus to IOPF_DBUS_NAME. Either way the connection is the tenant: free
 * the client and iopfd removes what it registered. When iopfd dies the
 * connection breaks; the next call (or iopf_client_process()) connects again
 * to the same address, and iopfd gives the process its objects back.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-bus.h>

#include "histogram.h"
#include "wire-bus.h"
#include "iopf/client.h"
#include "util.h"

#define _public_ __attribute__((visibility("default")))

struct iopf_client {
	sd_bus *bus;   /* owned */
	char *address; /* owned; what it connects (again) to: "system" or a D-Bus address */
	const char *destination; /* IOPF_DBUS_NAME on the system bus, NULL peer-to-peer */
	sd_bus_error error;	 /* owned; of the last failed call */
	iopf_client_restart_fn on_restart;
	void *restart_userdata;
	uint64_t tenant; /* its tenant's id, to take over again after a restart; 0: unknown */
};

/* The tenant this connection is, or 0 (an older iopfd, the system bus). */
static uint64_t tenant_id(struct iopf_client *c)
{
	sd_bus_message *reply = NULL;
	uint64_t id = 0;

	if (sd_bus_call_method(c->bus, c->destination, IOPF_DBUS_PATH, IOPF_DBUS_INTERFACE,
			       "GetTenantId", NULL, &reply, "") >= 0 &&
	    sd_bus_message_read(reply, IOPF_WIRE_ID, &id) < 0)
		id = 0;
	sd_bus_message_unref(reply);
	return id;
}

/* Open c->bus on c->address. Return: 0 or -errno. */
static int bus_open(struct iopf_client *c)
{
	int r;

	c->bus = sd_bus_unref(c->bus);
	if (strcmp(c->address, "system") == 0) {
		c->destination = IOPF_DBUS_NAME;
		return sd_bus_open_system(&c->bus);
	}
	r = sd_bus_new(&c->bus);
	if (r >= 0)
		r = sd_bus_set_address(c->bus, c->address);
	/* fault fds, iommufds and memfds travel as unix fds */
	if (r >= 0)
		r = sd_bus_negotiate_fds(c->bus, 1);
	if (r >= 0)
		r = sd_bus_start(c->bus);
	return r;
}

/*
 * A connection iopfd dropped (it died, or handed over to a new binary) is
 * replaced by a new one; the new iopfd hands this process's objects back.
 * Return: 0 (connected; also when it was all along) or -errno (iopfd is not
 * there yet: try again later).
 */
static int reconnect(struct iopf_client *c)
{
	int r;

	/* let sd-bus see a hangup that came meanwhile */
	while (sd_bus_is_open(c->bus) > 0 && (r = sd_bus_process(c->bus, NULL)) > 0)
		;
	if (sd_bus_is_open(c->bus) > 0)
		return 0;
	r = bus_open(c);
	if (r < 0)
		return r;
	/* take the tenant over again; if it is gone, this connection is a new tenant */
	if (c->tenant)
		(void)sd_bus_call_method(c->bus, c->destination, IOPF_DBUS_PATH,
					 IOPF_DBUS_INTERFACE, "Attach", NULL, NULL, IOPF_WIRE_ID,
					 c->tenant);
	c->tenant = tenant_id(c);
	if (c->on_restart)
		c->on_restart(c, c->restart_userdata);
	return 0;
}

_public_ int iopf_client_connect(const char *address, struct iopf_client **ret)
{
	_cleanup_free_ char *path_address = NULL;
	struct iopf_client *c;
	int r;

	if (!ret)
		return -EINVAL;
	if (!address)
		address = getenv(IOPF_ADDRESS_ENV);
	if (!address || !*address)
		address = IOPF_DEFAULT_ADDRESS;

	/* a D-Bus address has a transport ("unix:"); without one it is a socket path */
	if (strcmp(address, "system") != 0 && !strchr(address, ':')) {
		path_address = iopf_wire_path_address(address);
		if (!path_address)
			return -ENOMEM;
		address = path_address;
	}

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->error = SD_BUS_ERROR_NULL;
	c->address = strdup(address);
	r = c->address ? bus_open(c) : -ENOMEM;
	if (r >= 0 && !c->destination)
		c->tenant = tenant_id(c); /* peer-to-peer: the system bus has no Attach */
	if (r < 0) {
		iopf_client_free(c);
		return r;
	}
	*ret = c;
	return 0;
}

_public_ struct iopf_client *iopf_client_free(struct iopf_client *c)
{
	if (!c)
		return NULL;
	sd_bus_error_free(&c->error);
	/* Flush so calls already queued reach the daemon before the hangup. */
	sd_bus_flush_close_unref(c->bus);
	free(c->address);
	free(c);
	return NULL;
}

_public_ void iopf_client_set_restart_callback(struct iopf_client *c, iopf_client_restart_fn fn,
					       void *userdata)
{
	c->on_restart = fn;
	c->restart_userdata = userdata;
}

_public_ int iopf_client_fd(struct iopf_client *c)
{
	return sd_bus_get_fd(c->bus);
}

_public_ int iopf_client_events(struct iopf_client *c)
{
	return sd_bus_get_events(c->bus);
}

_public_ int iopf_client_process(struct iopf_client *c)
{
	int r;

	/* what came in (signals, a hangup); a hangup means iopfd restarts: connect again */
	while ((r = sd_bus_process(c->bus, NULL)) > 0)
		;
	if (sd_bus_is_open(c->bus) > 0 && r >= 0)
		return 0;
	return reconnect(c);
}

_public_ const char *iopf_client_last_error_name(const struct iopf_client *c)
{
	return c && sd_bus_error_is_set(&c->error) ? c->error.name : NULL;
}

_public_ const char *iopf_client_last_error(const struct iopf_client *c)
{
	if (!c || !sd_bus_error_is_set(&c->error))
		return NULL;
	return c->error.message ? c->error.message : c->error.name;
}

/* Keep the daemon's error and turn its name into -errno. */
static int call_failed(struct iopf_client *c, sd_bus_error *error, int r)
{
	int e;

	sd_bus_error_free(&c->error);
	if (!sd_bus_error_is_set(error)) {
		(void)sd_bus_error_set_errno(&c->error, r);
		return r;
	}
	e = iopf_error_from_name(error->name);
	if (!e)
		e = sd_bus_error_get_errno(error); /* org.freedesktop.DBus.Error.* and the like */
	sd_bus_error_move(&c->error, error);
	return e > 0 ? -e : (r < 0 ? r : -EIO);
}

/* A call of @method, its arguments still to append. */
static int new_call(struct iopf_client *c, const char *method, sd_bus_message **ret)
{
	sd_bus_error error = SD_BUS_ERROR_NULL;
	int r;

	if (!c)
		return -EINVAL;
	r = reconnect(c);
	if (r >= 0)
		r = sd_bus_message_new_method_call(c->bus, ret, c->destination, IOPF_DBUS_PATH,
						   IOPF_DBUS_INTERFACE, method);
	return r < 0 ? call_failed(c, &error, r) : 0;
}

/* Send @m (its arguments appended, @r their result); on success hand back the reply. */
static int send_call(struct iopf_client *c, sd_bus_message *m, int r, sd_bus_message **ret_reply)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	sd_bus_error error = SD_BUS_ERROR_NULL;

	if (r < 0)
		return call_failed(c, &error, r);
	r = sd_bus_call(c->bus, m, 0, &error, &reply);
	if (r < 0)
		return call_failed(c, &error, r);
	sd_bus_error_free(&c->error);
	if (ret_reply)
		*ret_reply = TAKE_PTR(reply);
	return 0;
}

/* Call @method; on success hand back the reply when @ret_reply is set. */
static int callv(struct iopf_client *c, const char *method, sd_bus_message **ret_reply,
		 const char *types, va_list ap)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
	int r = new_call(c, method, &m);

	if (r < 0)
		return r;
	return send_call(c, m, types ? sd_bus_message_appendv(m, types, ap) : 0, ret_reply);
}

static int call_reply(struct iopf_client *c, const char *method, sd_bus_message **ret_reply,
		      const char *types, ...)
{
	va_list ap;
	int r;

	va_start(ap, types);
	r = callv(c, method, ret_reply, types, ap);
	va_end(ap);
	return r;
}

/* Call @method and, when @ret_id is set, read the "t" it returns. */
/* Call @method, its reply positioned inside its one array of @row. */
static int call_array(struct iopf_client *c, const char *method, const char *row,
		      sd_bus_message **ret_reply)
{
	int r;

	r = call_reply(c, method, ret_reply, NULL);
	return r < 0 ? r : sd_bus_message_enter_container(*ret_reply, 'a', row);
}

static int call(struct iopf_client *c, const char *method, uint64_t *ret_id, const char *types, ...)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	va_list ap;
	uint64_t id;
	int r;

	va_start(ap, types);
	r = callv(c, method, &reply, types, ap);
	va_end(ap);
	if (r < 0)
		return r;
	if (ret_id) {
		r = sd_bus_message_read(reply, "t", &id);
		if (r < 0)
			return r; /* a daemon speaking another protocol */
		*ret_id = id;
	}
	return 0;
}

static int register_source(struct iopf_client *c, const char *method, int fault_fd, int iommufd,
			   uint32_t ioas_id, uint64_t *ret_source_id)
{
	if (!ret_source_id)
		return -EINVAL;
	/* sd-bus refuses negative fds itself; say so before a round trip */
	if (fault_fd < 0 || iommufd < 0)
		return -EBADF;
	return call(c, method, ret_source_id, IOPF_WIRE_REGISTER_SOURCE_IN, fault_fd, iommufd,
		    ioas_id);
}

_public_ int iopf_client_register_source(struct iopf_client *c, int fault_fd, int iommufd,
					 uint32_t ioas_id, uint64_t *ret_source_id)
{
	return register_source(c, "RegisterSource", fault_fd, iommufd, ioas_id, ret_source_id);
}

_public_ int iopf_client_register_source_paused(struct iopf_client *c, int fault_fd, int iommufd,
						uint32_t ioas_id, uint64_t *ret_source_id)
{
	return register_source(c, "RegisterSourcePaused", fault_fd, iommufd, ioas_id,
			       ret_source_id);
}

_public_ int iopf_client_start_source(struct iopf_client *c, uint64_t source_id)
{
	return call(c, "StartSource", NULL, IOPF_WIRE_ID, source_id);
}

_public_ int iopf_client_unregister_source(struct iopf_client *c, uint64_t source_id)
{
	return call(c, "UnregisterSource", NULL, "t", source_id);
}

_public_ int iopf_client_register_domain(struct iopf_client *c, uint64_t source_id, uint32_t dev_id,
					 uint32_t pasid, uint64_t *ret_domain_id)
{
	if (!ret_domain_id)
		return -EINVAL;
	return call(c, "RegisterDomain", ret_domain_id, IOPF_WIRE_REGISTER_DOMAIN_IN, source_id,
		    dev_id, pasid);
}

_public_ int iopf_client_unregister_domain(struct iopf_client *c, uint64_t domain_id)
{
	return call(c, "UnregisterDomain", NULL, "t", domain_id);
}

_public_ int iopf_client_add_region(struct iopf_client *c, uint64_t domain_id, int fd,
				    uint64_t offset, uint64_t iova, uint64_t length,
				    uint32_t access, uint64_t *ret_region_id)
{
	if (!ret_region_id)
		return -EINVAL;
	if (fd < 0)
		return -EBADF;
	return call(c, "AddRegion", ret_region_id, IOPF_WIRE_ADD_REGION_IN, domain_id, fd, offset,
		    iova, length, access);
}

/* The arguments of AddRegions: each distinct fd once, the regions naming theirs by index. */
static int append_regions(sd_bus_message *m, const struct iopf_client_new_region *v, size_t n)
{
	_cleanup_free_ uint32_t *index = calloc(n, sizeof(*index));
	int fds[IOPF_CLIENT_ADD_REGIONS_MAX_FDS];
	size_t n_fds = 0;
	int r;

	if (!index)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;

		/* a batch usually sits on a few memfds: a linear search is plenty */
		while (k < n_fds && fds[k] != v[i].fd)
			k++;
		if (k == n_fds) {
			if (n_fds == IOPF_CLIENT_ADD_REGIONS_MAX_FDS)
				return -E2BIG;
			fds[n_fds++] = v[i].fd;
		}
		index[i] = (uint32_t)k;
	}
	r = sd_bus_message_open_container(m, 'a', "h");
	for (size_t k = 0; r >= 0 && k < n_fds; k++)
		r = sd_bus_message_append(m, "h", fds[k]);
	if (r >= 0)
		r = sd_bus_message_close_container(m);
	if (r >= 0)
		r = sd_bus_message_open_container(m, 'a', IOPF_WIRE_ADD_REGIONS_ROW);
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = sd_bus_message_append(m, IOPF_WIRE_ADD_REGIONS_ROW, v[i].domain_id, index[i],
					  v[i].offset, v[i].iova, v[i].length, v[i].access);
	if (r >= 0)
		r = sd_bus_message_close_container(m);
	return r;
}

_public_ int iopf_client_add_regions(struct iopf_client *c, const struct iopf_client_new_region *v,
				     size_t n, uint64_t *ret_region_ids)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
	const void *ids;
	size_t size;
	int r;

	if (!v || !ret_region_ids || n == 0 || n > IOPF_CLIENT_ADD_REGIONS_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (v[i].fd < 0)
			return -EBADF;
	r = new_call(c, "AddRegions", &m);
	if (r < 0)
		return r;
	r = send_call(c, m, append_regions(m, v, n), &reply);
	if (r < 0)
		return r;
	r = sd_bus_message_read_array(reply, 't', &ids, &size);
	if (r < 0 || size != n * sizeof(uint64_t))
		return r < 0 ? r : -EBADMSG; /* a daemon speaking another protocol */
	memcpy(ret_region_ids, ids, size);
	return 0;
}

_public_ int iopf_client_remove_region(struct iopf_client *c, uint64_t region_id)
{
	return call(c, "RemoveRegion", NULL, "t", region_id);
}

/* Grow @*arr to hold @n + 1 elements of @size. */
static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
	void *p;

	if (n < *cap)
		return 0;
	p = reallocarray(*arr, *cap ? *cap * 2 : 8, size);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = *cap ? *cap * 2 : 8;
	return 0;
}

/*
 * The caller's array: @n elements of the caller's @size, each the first @size
 * bytes of ours (@own, of @own_size; zero beyond when the caller's is larger),
 * then @extra bytes for strings, in one block. NULL when it cannot be allocated.
 */
static void *pack(const void *own, size_t n, size_t own_size, size_t size, size_t extra,
		  char **ret_extra)
{
	size_t total;
	char *p;

	if (__builtin_mul_overflow(n, size, &total) || __builtin_add_overflow(total, extra, &total))
		return NULL;
	p = calloc(1, total ? total : 1);
	if (!p)
		return NULL;
	for (size_t i = 0; i < n; i++)
		memcpy(p + i * size, (const char *)own + i * own_size,
		       size < own_size ? size : own_size);
	*ret_extra = p + n * size;
	return p;
}

/* The size of each struct as LIBIOPF_CLIENT_0 has it: what a caller must pass at least. */
#define SOURCE_SIZE_0 (offsetof(struct iopf_client_source, backend) + sizeof(const char *))
#define DOMAIN_SIZE_0 (offsetof(struct iopf_client_domain, pasid) + sizeof(uint32_t))
#define REGION_SIZE_0 (offsetof(struct iopf_client_region, access) + sizeof(uint32_t))

/*
 * Call @method and read its array of @row into a new array of @own-byte
 * elements, one @read each. The reply stays the caller's: strings point into it.
 */
static int list_call(struct iopf_client *c, const char *method, const char *row, size_t own,
		     int (*read)(sd_bus_message *m, void *x), sd_bus_message **ret_reply,
		     void **ret_arr, size_t *ret_n)
{
	_cleanup_free_ char *arr = NULL;
	size_t n = 0, cap = 0;
	int r;

	r = call_array(c, method, row, ret_reply);
	while (r >= 0) {
		r = grow((void **)&arr, &cap, n, own);
		if (r < 0)
			return r;
		memset(arr + n * own, 0, own);
		r = read(*ret_reply, arr + n * own);
		if (r <= 0)
			break;
		n++;
	}
	if (r < 0)
		return r;
	*ret_arr = TAKE_PTR(arr);
	*ret_n = n;
	return 0;
}

/*
 * list_call(), then the elements as the caller's array of @size ones (NULL when
 * none); @size0 is the least a caller may pass.
 */
static int list(struct iopf_client *c, const char *method, const char *row, size_t own,
		size_t size0, int (*read)(sd_bus_message *m, void *x), size_t size, void **ret,
		size_t *ret_n)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	_cleanup_free_ void *arr = NULL;
	size_t n;
	char *extra;
	int r;

	if (!ret || !ret_n || size < size0)
		return -EINVAL;
	r = list_call(c, method, row, own, read, &reply, &arr, &n);
	if (r < 0)
		return r;
	*ret = n ? pack(arr, n, own, size, 0, &extra) : NULL;
	if (n && !*ret)
		return -ENOMEM;
	*ret_n = n;
	return 0;
}

static int read_source(sd_bus_message *m, void *x)
{
	struct iopf_client_source *s = x;

	return sd_bus_message_read(m, IOPF_WIRE_SOURCE, &s->id, &s->ioas_id, &s->backend);
}

_public_ int iopf_client_list_sources_sized(struct iopf_client *c, size_t size,
					    struct iopf_client_source **ret, size_t *ret_n)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	_cleanup_free_ struct iopf_client_source *arr = NULL;
	size_t n, extra = 0;
	char *out, *str;
	int r;

	if (!ret || !ret_n || size < SOURCE_SIZE_0)
		return -EINVAL;
	r = list_call(c, "ListSources", IOPF_WIRE_SOURCE, sizeof(*arr), read_source, &reply,
		      (void **)&arr, &n);
	if (r < 0)
		return r;
	/* the backend names point into the reply: copy them behind the array */
	for (size_t i = 0; i < n; i++)
		extra += strlen(arr[i].backend) + 1;
	out = n ? pack(arr, n, sizeof(*arr), size, extra, &str) : NULL;
	if (n && !out)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct iopf_client_source *o = (struct iopf_client_source *)(out + i * size);
		size_t len = strlen(arr[i].backend) + 1;

		o->backend = memcpy(str, arr[i].backend, len);
		str += len;
	}
	*ret = (struct iopf_client_source *)out;
	*ret_n = n;
	return 0;
}

static int read_domain(sd_bus_message *m, void *x)
{
	struct iopf_client_domain *d = x;

	return sd_bus_message_read(m, IOPF_WIRE_DOMAIN, &d->id, &d->source_id, &d->dev_id,
				   &d->pasid);
}

static int read_region(sd_bus_message *m, void *x)
{
	struct iopf_client_region *g = x;

	return sd_bus_message_read(m, IOPF_WIRE_REGION, &g->id, &g->domain_id, &g->iova, &g->length,
				   &g->access);
}

_public_ int iopf_client_list_domains_sized(struct iopf_client *c, size_t size,
					    struct iopf_client_domain **ret, size_t *ret_n)
{
	return list(c, "ListDomains", IOPF_WIRE_DOMAIN, sizeof(**ret), DOMAIN_SIZE_0, read_domain,
		    size, (void **)ret, ret_n);
}

_public_ int iopf_client_list_regions_sized(struct iopf_client *c, size_t size,
					    struct iopf_client_region **ret, size_t *ret_n)
{
	return list(c, "ListRegions", IOPF_WIRE_REGION, sizeof(**ret), REGION_SIZE_0, read_region,
		    size, (void **)ret, ret_n);
}

struct counter_wanted {
	const char *name;
	uint64_t *ret;
	bool found;
};

static void counter_take(const char *key, uint64_t v, void *userdata)
{
	struct counter_wanted *w = userdata;

	if (!w->found && strcmp(key, w->name) == 0) {
		*w->ret = v;
		w->found = true;
	}
}

/* Find @name in the a{st} the reply is positioned at. Return: 0, -ENOENT, -errno. */
static int read_counter(sd_bus_message *reply, const char *name, uint64_t *ret)
{
	struct counter_wanted w = {.name = name, .ret = ret};
	int r = iopf_wire_read_counters(reply, counter_take, &w);

	return r < 0 ? r : w.found ? 0 : -ENOENT;
}

/* Stats rows are "(t...a{st})": the object id first, the counters last. */
static int counter(struct iopf_client *c, const char *method, const char *row, uint64_t id,
		   const char *name, uint64_t *ret)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	char contents[32];
	uint64_t row_id;
	size_t len = strlen(row);
	int r;

	if (!name || !ret)
		return -EINVAL;
	/* IOPF_WIRE_STATS -> "ttuua{st}" for entering a struct */
	memcpy(contents, row + 1, len - 2);
	contents[len - 2] = '\0';
	r = call_array(c, method, row, &reply);
	if (r < 0)
		return r;
	/* row is "(t...a{st})": step into each struct, read the id, skip to the dict */
	while ((r = sd_bus_message_enter_container(reply, 'r', contents)) > 0) {
		r = sd_bus_message_read(reply, "t", &row_id);
		if (r < 0)
			return r;
		for (const char *t = row + 2; *t != 'a'; t++) {
			r = sd_bus_message_skip(reply, (char[]){*t, 0});
			if (r < 0)
				return r;
		}
		if (row_id == id)
			return read_counter(reply, name, ret);
		r = sd_bus_message_skip(reply, IOPF_WIRE_COUNTERS);
		if (r < 0)
			return r;
		r = sd_bus_message_exit_container(reply);
		if (r < 0)
			return r;
	}
	return r < 0 ? r : -ENOENT;
}

_public_ int iopf_client_domain_counter(struct iopf_client *c, uint64_t domain_id, const char *name,
					uint64_t *ret)
{
	return counter(c, "GetStats", IOPF_WIRE_STATS, domain_id, name, ret);
}

_public_ int iopf_client_source_counter(struct iopf_client *c, uint64_t source_id, const char *name,
					uint64_t *ret)
{
	return counter(c, "GetSourceStats", IOPF_WIRE_SOURCE_STATS, source_id, name, ret);
}

/* A snapshot of a histogram on the wire; its buckets are the library's own layout. */
struct iopf_client_latency {
	struct iopf_histogram h;
};

_public_ struct iopf_client_latency *iopf_client_latency_free(struct iopf_client_latency *l)
{
	free(l);
	return NULL;
}

_public_ uint64_t iopf_client_latency_count(const struct iopf_client_latency *l)
{
	return l ? l->h.count : 0;
}

_public_ uint64_t iopf_client_latency_sum_ns(const struct iopf_client_latency *l)
{
	return l ? l->h.sum_ns : 0;
}

_public_ unsigned iopf_client_latency_buckets(const struct iopf_client_latency *l)
{
	return l ? IOPF_HIST_BUCKETS : 0;
}

_public_ uint64_t iopf_client_latency_bucket(const struct iopf_client_latency *l, unsigned i)
{
	return l && i < IOPF_HIST_BUCKETS ? l->h.bucket[i] : 0;
}

_public_ uint64_t iopf_client_latency_bound_ns(const struct iopf_client_latency *l, unsigned i)
{
	return iopf_histogram_bound_ns(i);
}

_public_ uint64_t iopf_client_latency_quantile_ns(const struct iopf_client_latency *l, double q)
{
	return l ? iopf_histogram_quantile(&l->h, q) : 0;
}

/* A new snapshot of the IOPF_WIRE_HISTOGRAM at the reply's position. */
static int read_latency(sd_bus_message *reply, struct iopf_client_latency **ret)
{
	_cleanup_free_ struct iopf_client_latency *l = NULL;
	int r;

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	r = iopf_wire_read_histogram(reply, &l->h);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(l);
	return 0;
}

_public_ int iopf_client_domain_latency(struct iopf_client *c, uint64_t domain_id,
					struct iopf_client_latency **ret)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	uint64_t id;
	int r;

	if (!ret)
		return -EINVAL;
	r = call_array(c, "GetDomainMetrics", IOPF_WIRE_DOMAIN_METRICS, &reply);
	if (r < 0)
		return r;
	while ((r = sd_bus_message_enter_container(reply, 'r', IOPF_WIRE_DOMAIN_METRICS_FIELDS)) >
	       0) {
		r = sd_bus_message_read(reply, "t", &id);
		if (r >= 0)
			r = sd_bus_message_skip(reply, "tuua{st}");
		if (r >= 0 && id == domain_id)
			return read_latency(reply, ret);
		if (r >= 0)
			r = sd_bus_message_skip(reply, IOPF_WIRE_HISTOGRAM);
		if (r >= 0)
			r = sd_bus_message_exit_container(reply);
		if (r < 0)
			return r;
	}
	return r < 0 ? r : -ENOENT;
}

/* Position the reply of GetTenantMetrics at this client's a{st}. */
static int tenant_row(struct iopf_client *c, sd_bus_message **ret_reply)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	int r;

	r = call_array(c, "GetTenantMetrics", IOPF_WIRE_TENANT_METRICS, &reply);
	if (r < 0)
		return r;
	r = sd_bus_message_enter_container(reply, 'r', IOPF_WIRE_TENANT_METRICS_FIELDS);
	if (r == 0)
		return -ENOENT;
	if (r >= 0)
		r = sd_bus_message_skip(reply, "tuus");
	if (r < 0)
		return r;
	*ret_reply = TAKE_PTR(reply);
	return 0;
}

_public_ int iopf_client_tenant_counter(struct iopf_client *c, const char *name, uint64_t *ret)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	int r;

	if (!name || !ret)
		return -EINVAL;
	r = tenant_row(c, &reply);
	return r < 0 ? r : read_counter(reply, name, ret);
}

_public_ int iopf_client_tenant_latency(struct iopf_client *c, struct iopf_client_latency **ret)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	int r;

	if (!ret)
		return -EINVAL;
	r = tenant_row(c, &reply);
	if (r >= 0)
		r = sd_bus_message_skip(reply, IOPF_WIRE_COUNTERS);
	if (r >= 0)
		r = read_latency(reply, ret);
	return r < 0 ? r : 0;
}

/* Call org.freedesktop.DBus.Properties @method on the manager. */
static int properties_call(struct iopf_client *c, const char *method, sd_bus_message **ret,
			   const char *name)
{
	sd_bus_error error = SD_BUS_ERROR_NULL;
	int r;

	if (!c)
		return -EINVAL;
	r = name ? sd_bus_call_method(c->bus, c->destination, IOPF_DBUS_PATH,
				      "org.freedesktop.DBus.Properties", method, &error, ret, "ss",
				      IOPF_DBUS_INTERFACE, name)
		 : sd_bus_call_method(c->bus, c->destination, IOPF_DBUS_PATH,
				      "org.freedesktop.DBus.Properties", method, &error, ret, "s",
				      IOPF_DBUS_INTERFACE);
	if (r < 0)
		return call_failed(c, &error, r);
	sd_bus_error_free(&c->error);
	return 0;
}

/* The size of the struct as LIBIOPF_CLIENT_0 has it. */
#define DAEMON_INFO_SIZE_0 (offsetof(struct iopf_client_daemon_info, start_monotonic_usec) + 8)

_public_ int iopf_client_daemon_info_sized(struct iopf_client *c, size_t size,
					   struct iopf_client_daemon_info **ret)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	struct iopf_client_daemon_info x = {};
	const char *name, *version = "";
	char *out, *str;
	int r;

	if (!ret || size < DAEMON_INFO_SIZE_0)
		return -EINVAL;
	r = properties_call(c, "GetAll", &reply, NULL);
	if (r < 0)
		return r;
	r = sd_bus_message_enter_container(reply, 'a', "{sv}");
	while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
		r = sd_bus_message_read(reply, "s", &name);
		if (r < 0)
			return r;
		if (strcmp(name, "Version") == 0)
			r = sd_bus_message_read(reply, "v", "s", &version);
		else if (strcmp(name, "Workers") == 0)
			r = sd_bus_message_read(reply, "v", "u", &x.workers);
		else if (strcmp(name, "StartTimestamp") == 0)
			r = sd_bus_message_read(reply, "v", "t", &x.start_realtime_usec);
		else if (strcmp(name, "StartTimestampMonotonic") == 0)
			r = sd_bus_message_read(reply, "v", "t", &x.start_monotonic_usec);
		else
			r = sd_bus_message_skip(reply, "v");
		if (r >= 0)
			r = sd_bus_message_exit_container(reply);
	}
	if (r < 0)
		return r;
	out = pack(&x, 1, sizeof(x), size, strlen(version) + 1, &str);
	if (!out)
		return -ENOMEM;
	((struct iopf_client_daemon_info *)out)->version = strcpy(str, version);
	*ret = (struct iopf_client_daemon_info *)out;
	return 0;
}

_public_ int iopf_client_setting(struct iopf_client *c, const char *name, uint64_t *ret)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	const char *contents;
	uint32_t u;
	char type;
	int r;

	if (!name || !ret)
		return -EINVAL;
	r = properties_call(c, "Get", &reply, name);
	if (r == -EBADR || r == -ENXIO)
		return -ENOENT; /* UnknownProperty */
	if (r < 0)
		return r;
	r = sd_bus_message_peek_type(reply, &type, &contents);
	if (r < 0)
		return r;
	if (strcmp(contents, "t") == 0)
		return sd_bus_message_read(reply, "v", "t", ret) < 0 ? -EPROTO : 0;
	if (strcmp(contents, "u") == 0) {
		r = sd_bus_message_read(reply, "v", "u", &u);
		if (r < 0)
			return r;
		*ret = u;
		return 0;
	}
	return -ENOENT; /* not a number */
}
