/*
 * threadpool.c - the persistent thread pool of threadpool.h.
 *
 * Design. The current job is one 64-bit atomic "ticket": a generation (24
 * bits), the task count of the job (20 bits) and the next unclaimed task
 * (20 bits). A participant claims a task with a compare-and-swap of next
 * to next + 1 while next < tasks, so every index goes to exactly one
 * participant, and only then reads the job's function and argument: a job
 * cannot finish while one of its tasks is claimed and not yet done, so the
 * caller never rewrites them under a reader. A participant that held a
 * stale ticket value fails its swap (or, should the value recur, claims an
 * unclaimed task of the job now published, which is equally right). Each
 * finished task increments `done`; the caller returns when done == tasks,
 * so a job's last write happens before run() returns (the increments are
 * release operations, the caller's read an acquire). Jobs of more than
 * ROUND_MAX tasks run as several rounds.
 *
 * Waiting. Workers spin on the ticket for DEMIX_THREADPOOL_SPIN_US, then
 * sleep on `wake`; the caller broadcasts only when `sleepers` says someone
 * sleeps. The caller waits for `done` the same way, sleeping on `finished`
 * with `caller_waiting` set. Both hand-offs are the store-then-load pattern
 * on sequentially consistent atomics (the publisher stores the ticket and
 * then reads `sleepers`; a sleeper increments `sleepers` under the lock and
 * then reads the ticket), so at least one side sees the other: no wake-up
 * is lost.
 *
 * Thread context: run/create/destroy from one thread at a time per pool
 * (the "caller"); worker_main on each worker. Field ownership is noted at
 * each field.
 */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#if (defined(__x86_64__) || defined(__i386__)) &&                              \
    (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define cpu_relax() ((void)0)
#endif

#define FIELD_BITS 20
#define ROUND_MAX ((1 << FIELD_BITS) - 1)
#define FIELD_MASK ((uint64_t)ROUND_MAX)
#define GEN_MASK 0xffffffu
#define SPIN_CHECK_EVERY 64 /* cpu_relax() calls between clock reads */
#define SPIN_PURE_US 20     /* then yield the core at every clock read */

struct demix_threadpool {
    int threads;             /* participants, caller included; immutable */
    int workers_started;     /* caller only (create/destroy) */
    pthread_t *workers;      /* [threads - 1] */
    pthread_mutex_t lock;    /* guards the two waits below */
    pthread_cond_t wake;     /* workers sleep here for a new job or stop */
    pthread_cond_t finished; /* the caller sleeps here for the last task */

    _Atomic uint64_t ticket; /* gen | tasks | next: the current job */
    atomic_int done;         /* tasks of the current job finished */
    atomic_int sleepers;     /* workers blocked (or about to be) on wake */
    atomic_int caller_waiting; /* the caller is (about to be) on finished */
    atomic_int stop;         /* destroy: workers leave */
    atomic_int busy;         /* a run is in flight (misuse check) */

    /* The job. Written by the caller before the ticket is stored; read by a
     * participant only while it holds a claimed, unfinished task. */
    demix_threadpool_fn fn;
    void *arg;
    int base; /* task index of this round's task 0 */

    uint32_t gen; /* caller only */
};

static uint64_t make_ticket(uint32_t gen, int tasks)
{
    return ((uint64_t)(gen & GEN_MASK) << (2 * FIELD_BITS)) |
           ((uint64_t)tasks << FIELD_BITS);
}

static int ticket_tasks(uint64_t v)
{
    return (int)((v >> FIELD_BITS) & FIELD_MASK);
}

static int ticket_next(uint64_t v) { return (int)(v & FIELD_MASK); }

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A wait: spin on the condition, and after SPIN_PURE_US also yield the
 * core at each clock read, so that a thread waiting for this core (the
 * other side of this very hand-off when the machine is oversubscribed)
 * runs; after DEMIX_THREADPOOL_SPIN_US, block. */
typedef struct spinner {
    unsigned count;
    uint64_t start_us;
} spinner;

/* One turn of a wait loop: 1 to look again, 0 to block. */
static int spin_again(spinner *s)
{
    cpu_relax();
    if (++s->count % SPIN_CHECK_EVERY)
        return 1;
    uint64_t t = now_us();
    if (!s->start_us) {
        s->start_us = t;
        return 1;
    }
    if (t - s->start_us >= DEMIX_THREADPOOL_SPIN_US)
        return 0;
    if (t - s->start_us >= SPIN_PURE_US)
        sched_yield();
    return 1;
}

/* Claim and run tasks of the live job, starting from the ticket value v,
 * until none is left; returns the exhausted ticket value last seen. */
static uint64_t work(demix_threadpool *p, uint64_t v)
{
    for (;;) {
        int next = ticket_next(v), tasks = ticket_tasks(v);
        if (next >= tasks)
            return v;
        if (!atomic_compare_exchange_weak(&p->ticket, &v, v + 1))
            continue; /* v now holds the current value */
        p->fn(p->arg, p->base + next);
        if (atomic_fetch_add(&p->done, 1) + 1 == tasks &&
            atomic_load(&p->caller_waiting)) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->finished);
            pthread_mutex_unlock(&p->lock);
        }
        v = atomic_load(&p->ticket);
    }
}

/* Worker: wait until the ticket differs from `seen` (a new job) or stop. */
static uint64_t wait_for_job(demix_threadpool *p, uint64_t seen)
{
    uint64_t v;
    spinner s = {0, 0};
    do {
        v = atomic_load_explicit(&p->ticket, memory_order_acquire);
        if (v != seen || atomic_load_explicit(&p->stop, memory_order_relaxed))
            return v;
    } while (spin_again(&s));
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add(&p->sleepers, 1);
    while ((v = atomic_load(&p->ticket)) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->wake, &p->lock);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->lock);
    return v;
}

static void *worker_main(void *vp)
{
    demix_threadpool *p = vp;
    uint64_t seen = make_ticket(0, 0); /* the ticket create stored */
    for (;;) {
        uint64_t v = wait_for_job(p, seen);
        if (atomic_load(&p->stop))
            return NULL;
        seen = work(p, v);
    }
}

/* Caller: wait until `tasks` tasks of the current job are done. */
static void wait_done(demix_threadpool *p, int tasks)
{
    spinner s = {0, 0};
    do {
        if (atomic_load_explicit(&p->done, memory_order_acquire) >= tasks)
            return;
    } while (spin_again(&s));
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->caller_waiting, 1);
    while (atomic_load(&p->done) < tasks)
        pthread_cond_wait(&p->finished, &p->lock);
    atomic_store(&p->caller_waiting, 0);
    pthread_mutex_unlock(&p->lock);
}

static void run_round(demix_threadpool *p, int base, int tasks,
                      demix_threadpool_fn fn, void *arg)
{
    p->fn = fn;
    p->arg = arg;
    p->base = base;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    p->gen = (p->gen + 1) & GEN_MASK;
    uint64_t v = make_ticket(p->gen, tasks);
    atomic_store(&p->ticket, v); /* publishes the job (release) */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }
    work(p, v);
    wait_done(p, tasks);
}

int demix_threadpool_run(demix_threadpool *pool, int tasks,
                         demix_threadpool_fn fn, void *arg)
{
    if (!fn || tasks < 0)
        return DEMIX_EARG;
    if (pool)
        DEMIX_ASSERT(atomic_exchange(&pool->busy, 1) == 0 &&
                     "demix_threadpool_run: one run at a time per pool, "
                     "never from one of its own tasks");
    if (!pool || pool->threads == 1 || tasks <= 1) {
        for (int i = 0; i < tasks; i++)
            fn(arg, i);
    } else {
        for (int base = 0; base < tasks; base += ROUND_MAX) {
            int n = tasks - base < ROUND_MAX ? tasks - base : ROUND_MAX;
            run_round(pool, base, n, fn, arg);
        }
    }
    if (pool)
        atomic_store(&pool->busy, 0);
    return DEMIX_OK;
}

int demix_threadpool_threads(const demix_threadpool *pool)
{
    return pool ? pool->threads : 1;
}

/* Stop and join the started workers; free everything. */
static void teardown(demix_threadpool *p)
{
    atomic_store(&p->stop, 1);
    pthread_mutex_lock(&p->lock);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->workers_started; i++)
        pthread_join(p->workers[i], NULL);
    pthread_cond_destroy(&p->finished);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p->workers);
    free(p);
}

int demix_threadpool_create(int threads, demix_threadpool **out)
{
    if (!out)
        return DEMIX_EARG;
    *out = NULL;
    if (threads < 1 || threads > DEMIX_THREADPOOL_MAX_THREADS)
        return DEMIX_EARG;
    demix_threadpool *p = calloc(1, sizeof *p);
    if (!p)
        return DEMIX_ENOMEM;
    p->threads = threads;
    atomic_init(&p->ticket, make_ticket(0, 0));
    atomic_init(&p->done, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->caller_waiting, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->busy, 0);
    if (threads > 1) {
        p->workers = calloc((size_t)threads - 1, sizeof *p->workers);
        if (!p->workers) {
            free(p);
            return DEMIX_ENOMEM;
        }
    }
    if (pthread_mutex_init(&p->lock, NULL)) {
        free(p->workers);
        free(p);
        return DEMIX_ENOMEM;
    }
    if (pthread_cond_init(&p->wake, NULL)) {
        pthread_mutex_destroy(&p->lock);
        free(p->workers);
        free(p);
        return DEMIX_ENOMEM;
    }
    if (pthread_cond_init(&p->finished, NULL)) {
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        free(p->workers);
        free(p);
        return DEMIX_ENOMEM;
    }

    /* Workers inherit a full signal mask: signals stay with the driver. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = DEMIX_OK;
    for (int i = 0; i < threads - 1; i++) {
        if (pthread_create(&p->workers[i], NULL, worker_main, p)) {
            rc = DEMIX_ENOMEM;
            break;
        }
        p->workers_started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        teardown(p);
        return rc;
    }
    *out = p;
    return DEMIX_OK;
}

void demix_threadpool_destroy(demix_threadpool *pool)
{
    if (!pool)
        return;
    DEMIX_ASSERT(atomic_load(&pool->busy) == 0 &&
                 "demix_threadpool_destroy during a run");
    teardown(pool);
}
