/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A tenant built the way the packaging test builds it: only with what
 * "pkg-config --cflags --libs iopf-client" says, against the installed files.
 * It prints where the dynamic linker found libiopf-client, checks the calls
 * that need no daemon, and with an address, a few that do.
 * Usage: tenant [ADDRESS]. Exit 0 when every check passed.
 */
#define _GNU_SOURCE /* dladdr() */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iopf/client.h>

static int failed;

static void check(int ok, const char *what)
{
	printf("%s: %s\n", ok ? "ok" : "FAIL", what);
	if (!ok)
		failed = 1;
}

static void with_daemon(const char *address)
{
	struct iopf_client *c = NULL;
	struct iopf_client_source *s = NULL;
	struct iopf_client_latency *l = NULL;
	uint64_t v = 1, id = 0;
	size_t n = 1;
	const char *name;

	check(iopf_client_connect(address, &c) == 0, "connect to the daemon");
	if (!c)
		return;
	check(iopf_client_list_sources(c, &s, &n) == 0 && n == 0 && !s,
	      "a new tenant lists no sources");
	check(iopf_client_tenant_counter(c, "sources", &v) == 0 && v == 0,
	      "its counter \"sources\" is 0");
	check(iopf_client_register_domain(c, 12345, 1, IOPF_PASID_NONE, &id) == -ENOENT,
	      "a domain of an unknown source is -ENOENT");
	name = iopf_client_last_error_name(c);
	check(name && strcmp(name, IOPF_ERROR_NO_SUCH_OBJECT) == 0,
	      "with the error name org.iopfd.Error.NoSuchObject");
	check(iopf_client_tenant_latency(c, &l) == 0 && l, "a latency snapshot");
	check(iopf_client_latency_buckets(l) > 1 &&
		      iopf_client_latency_bound_ns(l, iopf_client_latency_buckets(l) - 1) ==
			      UINT64_MAX,
	      "with buckets, the last one the overflow");
	check(iopf_client_latency_count(l) == 0 && iopf_client_latency_quantile_ns(l, 0.5) == 0,
	      "and nothing measured yet");
	iopf_client_latency_free(l);
	free(s);
	iopf_client_free(c);
}

int main(int argc, char *argv[])
{
	struct iopf_client *c = NULL;
	struct iopf_client_source *s = NULL;
	size_t n = 0;
	Dl_info info;

	if (!dladdr((void *)iopf_client_connect, &info) || !info.dli_fname) {
		puts("FAIL: dladdr does not know iopf_client_connect");
		return 1;
	}
	printf("libiopf-client: %s\n", info.dli_fname);

	check(iopf_client_connect("unix:path=/nonexistent/iopfd-control", &c) == -ENOENT && !c,
	      "connect where nothing listens is -ENOENT");
	check(iopf_client_list_sources_sized(NULL, 1, &s, &n) == -EINVAL,
	      "a list struct smaller than LIBIOPF_CLIENT_0's is -EINVAL");
	check(iopf_client_latency_buckets(NULL) == 0 && !iopf_client_latency_free(NULL),
	      "the latency accessors take NULL");
	check(!iopf_client_free(NULL), "iopf_client_free(NULL)");
	if (argc > 1)
		with_daemon(argv[1]);
	puts(failed ? "RESULT: FAIL" : "RESULT: PASS");
	return failed;
}
