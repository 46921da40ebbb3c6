/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reading wire.h's values from an sd-bus message, for every reader of the
 * daemon (libiopf-client, iopfctl, iopf-exporter). Not installed; header-only,
 * so the tools take it without linking anything of the library's.
 */
#ifndef IOPF_WIRE_BUS_H
#define IOPF_WIRE_BUS_H

#include <errno.h>
#include <string.h>

#include <systemd/sd-bus.h>

#include "histogram.h"
#include "wire.h"

/*
 * Read an IOPF_WIRE_HISTOGRAM at the message's position into @h. -EPROTO when
 * the daemon's buckets are not the ones this build knows: bounds would be
 * wrong, so say so rather than guess.
 */
static inline int iopf_wire_read_histogram(sd_bus_message *m, struct iopf_histogram *h)
{
	const void *buckets;
	size_t size;
	int r;

	*h = (struct iopf_histogram){};
	r = sd_bus_message_enter_container(m, 'r', "ttat");
	if (r >= 0)
		r = sd_bus_message_read(m, "tt", &h->count, &h->sum_ns);
	if (r >= 0)
		r = sd_bus_message_read_array(m, 't', &buckets, &size);
	if (r < 0)
		return r;
	if (size != sizeof(h->bucket))
		return -EPROTO;
	memcpy(h->bucket, buckets, size);
	return sd_bus_message_exit_container(m);
}

/*
 * Read the IOPF_WIRE_COUNTERS (a{st}) at the message's position, @fn called
 * with each name and value in the daemon's order. Return: 0 or -errno.
 */
static inline int iopf_wire_read_counters(sd_bus_message *m,
					  void (*fn)(const char *name, uint64_t v, void *userdata),
					  void *userdata)
{
	const char *name;
	uint64_t v;
	int r;

	r = sd_bus_message_enter_container(m, 'a', "{st}");
	if (r < 0)
		return r;
	while ((r = sd_bus_message_read(m, "{st}", &name, &v)) > 0)
		fn(name, v, userdata);
	if (r < 0)
		return r;
	return sd_bus_message_exit_container(m);
}

#endif
