/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The state arena: memory that outlives the process. One memfd, which the
 * daemon keeps in systemd's fd store, holds what a restarted iopfd needs to
 * carry on without losing a fault: each source's read buffer (the in-flight
 * journal: the records of its last read until their responses are written)
 * and each region's page bitmaps (what the daemon mapped, so it is unmapped
 * exactly when the region goes). See docs/design.md, "Crash and restart".
 *
 * Blocks are powers of two of at least IOPF_STATE_MIN_BLOCK bytes, each
 * aligned to its size, zeroed when handed out. The arena records nothing of
 * which blocks are in use: whoever owns a block keeps its offset (the
 * daemon's registry). After a restart the owners claim their blocks again and
 * iopf_state_seal() makes everything else free.
 *
 * Thread-safe: blocks are allocated by the control thread and, rarely, by a
 * worker growing its read buffer. The memory is shared with nobody but a
 * later iopfd, and it is read back as untrusted input all the same.
 */
#ifndef IOPF_STATE_H
#define IOPF_STATE_H

#include <stddef.h>
#include <stdint.h>

struct iopf_state;

#define IOPF_STATE_MIN_BLOCK 64u
/* The arena's address space, reserved at start; memory is used only as it is written. */
#define IOPF_STATE_MAX_BYTES (UINT64_C(1) << 40)

/*
 * iopf_state_new() - a fresh arena on a new memfd.
 * iopf_state_adopt() - the arena of an earlier run: takes @fd on success; checks
 * that it is one (its header, version and size) before trusting any of it.
 * Until iopf_state_seal() only iopf_state_claim() may hand out blocks.
 * Return: 0, -EINVAL (not an arena of this version: refuse it), -ENOMEM, -errno.
 */
int iopf_state_new(struct iopf_state **ret);
int iopf_state_adopt(int fd, struct iopf_state **ret);
/* Unmaps and closes; the blocks' contents die with the last fd on the memfd. NULL ok. */
struct iopf_state *iopf_state_free(struct iopf_state *s);

/* The memfd, for the fd store (not a copy: do not close). */
int iopf_state_fd(const struct iopf_state *s);

/*
 * A zeroed block of at least @size bytes at *ret_off.
 * Return: 0, -EINVAL (0 or too big), -ENOSPC (arena full), -ENOMEM, -EBUSY (not sealed).
 */
int iopf_state_alloc(struct iopf_state *s, size_t size, uint64_t *ret_off);
/* Give back the block at @off of @size bytes (as allocated); large ones return their memory. */
void iopf_state_release(struct iopf_state *s, uint64_t off, size_t size);
/* The block at @off; valid until iopf_state_free(). */
void *iopf_state_at(const struct iopf_state *s, uint64_t off);
/* The size a block of @size bytes really has. */
size_t iopf_state_block_size(size_t size);

/*
 * iopf_state_claim() - after iopf_state_adopt(): the block at @off of @size
 * bytes is in use again. Checks that it lies inside the arena, is aligned to
 * its size and overlaps no block claimed before.
 * Return: 0 or -EINVAL (refuse the state).
 */
int iopf_state_claim(struct iopf_state *s, uint64_t off, size_t size);
/* Every block not claimed is free now (and returns its memory). 0, -EINVAL, -ENOMEM. */
int iopf_state_seal(struct iopf_state *s);

/*
 * Records: small blobs under a non-zero key (the owner's kind and id) that a
 * restarted iopfd finds again. Each sits in a block of its own, listed in a
 * table of (key, offset) slots: a record is written whole before its slot
 * names it and unlisted before its block is reused, so a crash at any point
 * leaves either the old record or the new one, never a torn one.
 *
 * iopf_state_put(): insert or replace the record under @key (sealed arenas).
 * Return: 0, -EINVAL (key 0, or longer than IOPF_STATE_RECORD_MAX), -ENOMEM, -ENOSPC.
 * iopf_state_del(): 0 or -ENOENT.
 * iopf_state_foreach_record(): after iopf_state_adopt(), before the claims of the
 * owners: check every record (place, size, checksum), claim its block and visit it.
 * @fn's < 0 stops the walk and is returned. Return: 0, -EINVAL (refuse the
 * state), -ENOMEM.
 */
#define IOPF_STATE_RECORD_MAX 4096u
int iopf_state_put(struct iopf_state *s, uint64_t key, const void *data, size_t len);
int iopf_state_del(struct iopf_state *s, uint64_t key);
typedef int (*iopf_state_record_fn)(uint64_t key, const void *data, size_t len, void *userdata);
int iopf_state_foreach_record(struct iopf_state *s, iopf_state_record_fn fn, void *userdata);
/* Records listed now. */
size_t iopf_state_n_records(const struct iopf_state *s);

#endif /* IOPF_STATE_H */
