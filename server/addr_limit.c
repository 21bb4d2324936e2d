/*
 * addr_limit.c - connections per client address (see addr_limit.h).
 *
 * Thread context: any thread, under t->lock.
 */
#include "addr_limit.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ADDR_LIMIT_BUCKETS 4096 /* chains; a power of two */

struct demixd_addr_entry {
    uint8_t addr[16]; /* IPv4 as ::ffff:a.b.c.d */
    int count;        /* connections open; the entry goes at 0 */
    demixd_addr_entry *next;
};

struct demixd_addr_limit {
    int max;
    int loopback_free;
    pthread_mutex_t lock;
    int addresses; /* entries, under lock */
    demixd_addr_entry *bucket[ADDR_LIMIT_BUCKETS]; /* under lock */
};

/* The address of sa as 16 bytes (IPv4 mapped into IPv6). 0, or -1 for
 * another family or a short length. */
static int addr_key(const struct sockaddr *sa, socklen_t len, uint8_t out[16])
{
    if (!sa)
        return -1;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6 &&
        len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        memcpy(out, &a->sin6_addr, 16);
        return 0;
    }
    return -1;
}

static int is_loopback(const uint8_t a[16])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t one[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                    0, 0, 0, 0, 0, 0, 0, 1};
    if (!memcmp(a, mapped, 12))
        return a[12] == 127; /* 127.0.0.0/8 */
    return !memcmp(a, one, 16);
}

/* FNV-1a over the 16 bytes. */
static unsigned bucket_of(const uint8_t a[16])
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ a[i]) * 16777619u;
    return h & (ADDR_LIMIT_BUCKETS - 1);
}

int demixd_addr_limit_create(int max_per_address, int loopback_free,
                             demixd_addr_limit **out)
{
    if (!out)
        return DEMIX_EARG;
    *out = NULL;
    if (max_per_address < 0)
        return DEMIX_EARG;
    demixd_addr_limit *t = calloc(1, sizeof *t);
    if (!t)
        return DEMIX_ENOMEM;
    t->max = max_per_address;
    t->loopback_free = loopback_free;
    if (pthread_mutex_init(&t->lock, NULL)) {
        free(t);
        return DEMIX_ENOMEM;
    }
    *out = t;
    return DEMIX_OK;
}

void demixd_addr_limit_destroy(demixd_addr_limit *t)
{
    if (!t)
        return;
    for (int b = 0; b < ADDR_LIMIT_BUCKETS; b++)
        while (t->bucket[b]) {
            demixd_addr_entry *e = t->bucket[b];
            t->bucket[b] = e->next;
            free(e);
        }
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* The entry for a, or NULL (under lock). */
static demixd_addr_entry *find(demixd_addr_limit *t, const uint8_t a[16])
{
    for (demixd_addr_entry *e = t->bucket[bucket_of(a)]; e; e = e->next)
        if (!memcmp(e->addr, a, 16))
            return e;
    return NULL;
}

int demixd_addr_limit_acquire(demixd_addr_limit *t, const struct sockaddr *sa,
                              socklen_t len, demixd_addr_entry **entry)
{
    *entry = NULL;
    uint8_t a[16];
    if (!t || t->max == 0 || addr_key(sa, len, a) ||
        (t->loopback_free && is_loopback(a)))
        return 1;
    pthread_mutex_lock(&t->lock);
    demixd_addr_entry *e = find(t, a);
    int rc = 1;
    if (e && e->count >= t->max) {
        rc = 0;
    } else if (e) {
        e->count++;
        *entry = e;
    } else if ((e = calloc(1, sizeof *e))) {
        memcpy(e->addr, a, 16);
        e->count = 1;
        unsigned b = bucket_of(a);
        e->next = t->bucket[b];
        t->bucket[b] = e;
        t->addresses++;
        *entry = e;
    } else {
        rc = DEMIX_ENOMEM;
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

void demixd_addr_limit_release(demixd_addr_limit *t, demixd_addr_entry *entry)
{
    if (!t || !entry)
        return;
    pthread_mutex_lock(&t->lock);
    if (--entry->count <= 0) {
        demixd_addr_entry **p = &t->bucket[bucket_of(entry->addr)];
        while (*p && *p != entry)
            p = &(*p)->next;
        if (*p) {
            *p = entry->next;
            t->addresses--;
            free(entry);
        }
    }
    pthread_mutex_unlock(&t->lock);
}

int demixd_addr_limit_count(demixd_addr_limit *t, const struct sockaddr *sa,
                            socklen_t len)
{
    uint8_t a[16];
    if (!t || addr_key(sa, len, a))
        return 0;
    pthread_mutex_lock(&t->lock);
    demixd_addr_entry *e = find(t, a);
    int n = e ? e->count : 0;
    pthread_mutex_unlock(&t->lock);
    return n;
}

int demixd_addr_limit_addresses(demixd_addr_limit *t)
{
    if (!t)
        return 0;
    pthread_mutex_lock(&t->lock);
    int n = t->addresses;
    pthread_mutex_unlock(&t->lock);
    return n;
}

int demixd_addr_limit_max(const demixd_addr_limit *t)
{
    return t ? t->max : 0;
}
