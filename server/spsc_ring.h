/*
 * spsc_ring.h - a bounded single-producer single-consumer ring of
 * pointers, lock-free: how the scheduler hands a service thread the
 * streams that have news for it (scheduler.c, service.c).
 *
 * Usage sketch:
 *
 *     demixd_spsc_ring r;
 *     demixd_spsc_ring_init(&r, 1024);          // at start: all memory
 *     if (!demixd_spsc_ring_push(&r, item))     // producer thread only
 *         handle_full();                        // 0: no room, nothing kept
 *     void *item;
 *     while ((item = demixd_spsc_ring_pop(&r))) // consumer thread only
 *         use(item);
 *     demixd_spsc_ring_free(&r);
 *
 * Design: a power-of-two array and two free-running counters. The
 * producer writes the slot, then publishes it with a release store of
 * `head`; the consumer reads `head` with acquire, takes the slot, then
 * frees it with a release store of `tail`, which the producer reads with
 * acquire before reusing the slot. Each counter is written by one thread
 * only and sits on its own cache line. NULL items are not allowed (pop
 * returns NULL for empty).
 *
 * Memory: the array, at init; push and pop never allocate.
 *
 * Threads: push from one producer thread, pop from one consumer thread
 * (they may differ and run at once); init and free when neither runs.
 */
#ifndef DEMIXD_SPSC_RING_H
#define DEMIXD_SPSC_RING_H

#include <stdatomic.h>
#include <stddef.h>

#include "demix_error.h"

typedef struct demixd_spsc_ring {
    void **items;
    size_t mask; /* capacity - 1, capacity a power of two */
    _Alignas(64) atomic_size_t head; /* next write; the producer's */
    _Alignas(64) atomic_size_t tail; /* next read; the consumer's */
} demixd_spsc_ring;

/* Room for at least min_items (rounded up to a power of two, >= 2).
 * DEMIX_EARG for 0 or a size that overflows, DEMIX_ENOMEM. */
DEMIX_WARN_UNUSED int demixd_spsc_ring_init(demixd_spsc_ring *r,
                                            size_t min_items);
void demixd_spsc_ring_free(demixd_spsc_ring *r);

/* Append item (not NULL). 1: done; 0: the ring is full. Producer. */
int demixd_spsc_ring_push(demixd_spsc_ring *r, void *item);

/* The oldest item, or NULL when empty. Consumer. */
void *demixd_spsc_ring_pop(demixd_spsc_ring *r);

/* Items now in the ring (exact for either side's own view; a snapshot
 * otherwise). */
size_t demixd_spsc_ring_count(demixd_spsc_ring *r);

/* The capacity chosen by init. */
size_t demixd_spsc_ring_capacity(const demixd_spsc_ring *r);

#endif /* DEMIXD_SPSC_RING_H */
