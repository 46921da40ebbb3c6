/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * liburcu, memb flavour, with the generic names (rcu_read_lock(), call_rcu(),
 * ...) mapped to it. Include this instead of <urcu/...> flavour headers.
 */
#ifndef IOPF_RCU_H
#define IOPF_RCU_H

#ifndef URCU_API_MAP
#define URCU_API_MAP
#endif
#include <urcu/urcu-memb.h>
#include <urcu/list.h>

/*
 * Publish / read an RCU-protected pointer, as compiler atomics: a full-barrier
 * exchange (what rcu_xchg_pointer() is) and an acquire load (rcu_dereference()
 * is a consume load, which compilers promote to acquire). liburcu's own are
 * out-of-line calls unless built with _LGPL_SOURCE, one per fault on the fault
 * path, and live in an uninstrumented library, so ThreadSanitizer could not
 * see them order the object's initialisation before the reader's use.
 */
#define iopf_rcu_xchg_pointer(pp, v) __atomic_exchange_n((pp), (v), __ATOMIC_SEQ_CST)
#define iopf_rcu_dereference(p)	     __atomic_load_n(&(p), __ATOMIC_ACQUIRE)

#endif /* IOPF_RCU_H */
