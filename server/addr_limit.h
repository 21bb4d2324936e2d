/*
 * addr_limit.h - connections per client address (--max-per-address): one
 * host cannot take every session slot or descriptor of the server.
 *
 * Usage sketch:
 *
 *     demixd_addr_limit *t;
 *     demixd_addr_limit_create(64, 1, &t);      // 64 each, loopback free
 *     demixd_addr_entry *e;
 *     if (demixd_addr_limit_acquire(t, sa, salen, &e) == 0)
 *         ... refuse: 429 ...
 *     ... the connection lives (e may be NULL: not counted) ...
 *     demixd_addr_limit_release(t, e);          // at its end
 *
 * Design. A connection is counted from its accept to its end; a
 * WebSocket session is a connection, so the live sessions of an address
 * are bounded by the same number. An address is the peer's IP (IPv4, or
 * IPv6; an IPv4-mapped IPv6 address is its IPv4 address), never a port.
 * Entries live in a hash table of fixed size (ADDR_LIMIT_BUCKETS chains),
 * one entry per address with connections open, allocated at its first
 * connection and freed with its last: memory follows the open
 * connections, not the addresses ever seen. With loopback_free, 127/8 and
 * ::1 are not counted (a proxy on the same host, or a local test, carries
 * many clients on one address).
 *
 * Thread context: any thread; one mutex guards the table (taken at accept
 * and at a connection's end only, never per message).
 */
#ifndef DEMIXD_ADDR_LIMIT_H
#define DEMIXD_ADDR_LIMIT_H

#include <sys/socket.h>

#include "demix_error.h"

typedef struct demixd_addr_limit demixd_addr_limit;
typedef struct demixd_addr_entry demixd_addr_entry;

/* max_per_address: connections per address, 0 = unlimited (every acquire
 * admits, nothing is counted). loopback_free: loopback peers are not
 * counted. DEMIX_OK, DEMIX_EARG (max < 0), DEMIX_ENOMEM. */
DEMIX_WARN_UNUSED int demixd_addr_limit_create(int max_per_address,
                                               int loopback_free,
                                               demixd_addr_limit **out);

/* Destroy (every entry released or not). NULL: no-op. */
void demixd_addr_limit_destroy(demixd_addr_limit *t);

/* Count a new connection from sa. 1: admitted, *entry is what to release
 * (NULL when it is not counted: unlimited, loopback, or an address family
 * other than IPv4/IPv6); 0: the address has max_per_address connections
 * already (*entry NULL); DEMIX_ENOMEM: no memory for a new address's entry
 * (refuse it too). */
int demixd_addr_limit_acquire(demixd_addr_limit *t, const struct sockaddr *sa,
                              socklen_t len, demixd_addr_entry **entry);

/* The connection ended. NULL: no-op. */
void demixd_addr_limit_release(demixd_addr_limit *t, demixd_addr_entry *entry);

/* Connections counted now for sa's address (tests, logs). */
int demixd_addr_limit_count(demixd_addr_limit *t, const struct sockaddr *sa,
                            socklen_t len);

/* Addresses with at least one connection counted now. */
int demixd_addr_limit_addresses(demixd_addr_limit *t);

/* The limit given at create. */
int demixd_addr_limit_max(const demixd_addr_limit *t);

#endif /* DEMIXD_ADDR_LIMIT_H */
