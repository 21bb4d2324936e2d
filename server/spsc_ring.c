/*
 * spsc_ring.c - the lock-free single-producer single-consumer ring of
 * spsc_ring.h. The memory orders are the whole design; see the header.
 *
 * Thread context: push on the producer thread, pop on the consumer
 * thread, count on either.
 */
#include "spsc_ring.h"

#include <stdint.h>
#include <stdlib.h>

int demixd_spsc_ring_init(demixd_spsc_ring *r, size_t min_items)
{
    if (!r || min_items == 0 || min_items > SIZE_MAX / 4 / sizeof(void *))
        return DEMIX_EARG;
    size_t cap = 2;
    while (cap < min_items)
        cap <<= 1;
    r->items = calloc(cap, sizeof *r->items);
    if (!r->items)
        return DEMIX_ENOMEM;
    r->mask = cap - 1;
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    return DEMIX_OK;
}

void demixd_spsc_ring_free(demixd_spsc_ring *r)
{
    if (!r)
        return;
    free(r->items);
    r->items = NULL;
    r->mask = 0;
}

int demixd_spsc_ring_push(demixd_spsc_ring *r, void *item)
{
    size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (head - tail > r->mask)
        return 0;
    r->items[head & r->mask] = item;
    atomic_store_explicit(&r->head, head + 1, memory_order_release);
    return 1;
}

void *demixd_spsc_ring_pop(demixd_spsc_ring *r)
{
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    if (tail == head)
        return NULL;
    void *item = r->items[tail & r->mask];
    atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
    return item;
}

size_t demixd_spsc_ring_count(demixd_spsc_ring *r)
{
    size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    return head - tail;
}

size_t demixd_spsc_ring_capacity(const demixd_spsc_ring *r)
{
    return r->mask + 1;
}
