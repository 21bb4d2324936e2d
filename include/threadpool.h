/*
 * threadpool.h - a small persistent thread pool that a driver creates, owns
 * and hands to the engine (demix_engine_options.pool), so that the CPU
 * backend can run the math of each step on several cores while the engine
 * itself starts no threads (style.md §2: threading belongs to the drivers).
 *
 * Usage sketch:
 *
 *     demix_threadpool *pool;
 *     long cpus = sysconf(_SC_NPROCESSORS_ONLN);
 *     if (demix_threadpool_create(cpus > 0 ? (int)cpus : 1, &pool))
 *         die("cannot start threads");
 *     opt.pool = pool;                    // before demix_engine_create()
 *     ... demix_engine_step() as usual, from one thread ...
 *     demix_engine_destroy(engine);
 *     demix_threadpool_destroy(pool);     // after every engine that uses it
 *
 *     // what the engine does inside, for each parallel stage:
 *     static void task(void *arg, int i) { ... part i of the work ... }
 *     demix_threadpool_run(pool, tasks, task, &job);
 *
 * Model. A pool of `threads` participants is the thread that calls run plus
 * threads - 1 workers, started by create and joined by destroy. run() hands
 * out the task indices 0..tasks-1, each exactly once, to whichever
 * participant asks next (the caller included, so a run never waits for a
 * sleeping worker to start) and returns when every task has finished.
 * Everything the caller wrote before run() is visible to every task, and
 * everything the tasks wrote is visible to the caller when run() returns.
 * Which thread runs a task is not fixed, so a task's result must not depend
 * on it; but one task index is never run by two threads at once, so
 * scratch space indexed by the task is safe to use.
 *
 * Wake-up. A worker that finds no task spins for DEMIX_THREADPOOL_SPIN_US
 * microseconds (the runs of one engine step follow each other within
 * microseconds, so it is awake for the next) and then sleeps on a condition
 * variable; the caller, once its own tasks are done, waits the same way for
 * the last ones. An idle pool uses no CPU.
 *
 * Memory. create allocates; run allocates nothing; destroy frees.
 * destroy(NULL) is a no-op.
 *
 * Threads. run(), create() and destroy() of one pool are called by one
 * thread at a time (a pool may serve several engines of that thread, one
 * run at a time); a task must not call run() on its own pool. Both misuses
 * are programmer errors and stop the process with an assertion. Workers run
 * with every signal blocked, so signals go to the driver's own threads.
 */
#ifndef DEMIX_THREADPOOL_H
#define DEMIX_THREADPOOL_H

#include "demix_error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct demix_threadpool demix_threadpool;

/* One task: arg as given to run(), task in 0..tasks-1. */
typedef void (*demix_threadpool_fn)(void *arg, int task);

/* Most participants a pool may have. */
#define DEMIX_THREADPOOL_MAX_THREADS 1024

/* How long an idle worker (and a waiting caller) spins before it sleeps. */
#define DEMIX_THREADPOOL_SPIN_US 200

/* Start threads - 1 workers (threads counts the caller of run too: 1 makes
 * a pool that runs everything on the caller). DEMIX_EARG when out is NULL
 * or threads is not in 1..DEMIX_THREADPOOL_MAX_THREADS, DEMIX_ENOMEM when
 * memory or a thread cannot be had (nothing is left running then). */
DEMIX_WARN_UNUSED int demix_threadpool_create(int threads,
                                              demix_threadpool **out);

/* Stop and join the workers, free the pool. Not while a run is in flight. */
void demix_threadpool_destroy(demix_threadpool *pool);

/* Participants, caller included; 1 for a NULL pool. */
int demix_threadpool_threads(const demix_threadpool *pool);

/* Run fn(arg, i) for i in 0..tasks-1 across the workers and the calling
 * thread; return when all have finished. A NULL pool runs them in order on
 * the calling thread. DEMIX_EARG (and nothing run) when fn is NULL or tasks
 * is negative; tasks 0 runs nothing. */
DEMIX_WARN_UNUSED int demix_threadpool_run(demix_threadpool *pool, int tasks,
                                           demix_threadpool_fn fn, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* DEMIX_THREADPOOL_H */
