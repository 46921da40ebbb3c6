/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * org.iopfd.Manager1 at /org/iopfd: on a direct peer-to-peer unix socket
 * (one sd_bus per accepted connection, one tenant per connection) and,
 * optionally, on the system bus (one tenant per unique sender name).
 * Only glue: unpack a call, ask lib/control with the caller's tenant id,
 * pack the reply or map the -errno to an org.iopfd.Error name.
 */
#ifndef IOPFD_BUS_H
#define IOPFD_BUS_H

#include <stdbool.h>

#include <systemd/sd-event.h>

#include "conf.h"
#include "control.h"

struct bus;

/*
 * bus_new() - serve @control on @event.
 * @conf: the running configuration (borrowed; properties read it at call time).
 *   ControlSocket: the peer-to-peer socket, created with mode 0666 (a
 *   socket-activated fd is used instead when systemd passes one).
 *   SystemBus: also take IOPF_DBUS_NAME on the system bus; when the bus is not
 *   reachable or the name is refused, warn and serve the socket only.
 * @n_workers: for the Workers property.
 * @store: the fds systemd passed; the activation socket is taken from there.
 * Return: 0 or -errno (logged).
 */
struct fdstore;
int bus_new(sd_event *event, struct iopf_control *control, const struct conf *conf,
	    unsigned n_workers, struct fdstore *store, struct bus **ret);

/*
 * Drop every connection and unanswered request without calling the engine
 * (free the engine first: it answers everything), remove the socket. NULL ok.
 */
struct bus *bus_free(struct bus *b);

/* Stop accepting connections and calls; pending removals may still be answered. */
void bus_stop(struct bus *b);

/*
 * bus_adopt_tenants() - after iopf_control_restore(): each restored tenant
 * serves on while its process (the pidfd kept as "t<tenant>" in the fd store)
 * runs, until the process connects again and takes it over; tenants whose
 * process is gone are removed. Return: 0 or -errno (logged).
 */
int bus_adopt_tenants(struct bus *b);

/*
 * After a reload changed the configuration: PropertiesChanged for each
 * property of org.iopfd.Manager1 whose value changed, on the system bus and
 * to every peer-to-peer connection.
 */
void bus_reloaded(struct bus *b);

/* The watchdog's last ping: @alive workers answered it (WorkersAlive). NULL ok. */
void bus_set_workers_alive(struct bus *b, unsigned alive);

/* Connected peer-to-peer clients (tests, status). */
unsigned bus_n_connections(struct bus *b);

#endif /* IOPFD_BUS_H */
