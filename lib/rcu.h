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
#include <urcu/rculfhash.h>
#include <urcu/list.h>

#if defined(__SANITIZE_THREAD__)
#define IOPF_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define IOPF_TSAN 1
#endif
#endif

/*
 * Publish / read an RCU-protected pointer. liburcu's rcu_xchg_pointer() and
 * rcu_dereference() live in an uninstrumented library, so ThreadSanitizer
 * cannot see that they order the object's initialisation before the reader's
 * use. Under TSan the same orderings are spelt as compiler atomics (full
 * barrier exchange, acquire load), which it understands.
 */
#ifdef IOPF_TSAN
#define iopf_rcu_xchg_pointer(pp, v) __atomic_exchange_n((pp), (v), __ATOMIC_SEQ_CST)
#define iopf_rcu_dereference(p) __atomic_load_n(&(p), __ATOMIC_ACQUIRE)
#else
#define iopf_rcu_xchg_pointer(pp, v) rcu_xchg_pointer((pp), (v))
#define iopf_rcu_dereference(p) rcu_dereference(p)
#endif

#endif /* IOPF_RCU_H */
