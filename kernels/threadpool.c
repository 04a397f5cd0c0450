/* The CPU thread pool: (nthreads - 1) persistent workers plus the caller.
 *
 * One job runs at a time. A caller takes the pool with a trylock on `busy`;
 * if someone else holds it (another session, or a nested nb_parallel_for from
 * inside a job) the caller runs its whole range inline instead.
 *
 * A job is [0, n) cut into nchunks contiguous chunks (at least `grain` items
 * each, up to NB_CHUNKS_PER_THREAD a thread). The chunks are not assigned:
 * the caller publishes the job in one atomic word (generation, chunk count,
 * next chunk) and wakes the workers it wants; then everyone, the caller
 * included, claims the next chunk with a compare-and-swap on that word until
 * none is left. So the caller never waits for a worker that has not started
 * (one descheduled by another process on a busy machine: the caller takes
 * its chunks), only for chunks already being run; and a thread that is
 * slowed down runs fewer chunks. A worker that wakes late sees a word of a
 * newer generation, or one with no chunk left, and claims nothing: a claim
 * succeeds only while its job is current, and a job stays current (its
 * fn, ctx and n unchanged) until every claimed chunk is done.
 *
 * Waiting: a worker spins on its ticket for up to SPIN_NS, then sleeps on a
 * condition variable. A futex wake costs tens of microseconds on small VMs,
 * about the time of a whole 32K-element chunk, so back-to-back kernels (the
 * common case in a tape) are handed over while the worker is still spinning.
 * The caller waits for the chunks still running by spinning, after SPIN_NS
 * with a sched_yield() between looks (so a worker that shares its CPU gets
 * it), and sleeps only after YIELD_NS. Sleeping uses the "flag, then
 * re-check" handshake with sequentially consistent atomics on both sides, so
 * no wake-up is lost.
 *
 * Keeping the threads on different CPUs: Linux may wake a thread on its
 * waker's CPU even while another CPU idles (seen with `perf sched` on a
 * 2-vCPU VM). A worker woken by the caller then waits for the caller's time
 * slice to end (2-4 ms) before it runs; a caller woken by a worker ends up
 * sharing the worker's CPU, the two taking turns on it while the other CPU
 * idles, and the load balancer, never seeing two runnable threads there,
 * leaves them so: MobileNetV2 ran at 2-2.3x its time for whole blocks of
 * runs. So the caller does not sleep within a job (above, short of
 * YIELD_NS), and each worker's affinity is its home CPUs (those it started
 * with) less the caller's CPU: the caller narrows it when it posts a job
 * from another CPU than before, which also moves a worker that is on the
 * caller's CPU now. A worker that finds another worker on its CPU when it
 * takes a job moves itself (keep_apart). With no CPU left to move to,
 * nothing is narrowed. None of this while the pool is shared: when a caller
 * found it busy in the last SHARED_NS (sessions run on several threads; a
 * nested call inside a job does not count), the callers left out run their
 * jobs inline, so there are more busy threads than CPUs. Then the workers
 * get their home CPUs back and the caller sleeps after SPIN_NS, and the
 * scheduler shares the CPUs out (two MobileNetV2 sessions ran 7% slower
 * with the narrowing and the long spin).
 * There is no spinning when there are more threads than CPUs to run them.
 *
 * Workers start lazily at the first parallel job, with an atexit hook that
 * joins them. Changing the thread count restarts the workers at the next job.
 * After fork() the child has no workers: an atfork handler forgets them so the
 * child starts its own when it needs them.
 */
#include "kernels/threadpool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* From OpenBLAS (the library links it through pkg-config 'openblas'). */
void openblas_set_num_threads(int num_threads);

#define NB_MAX_THREADS 1024
#define SPIN_NS 100000    /* 100 us */
#define YIELD_NS 20000000 /* 20 ms: the caller's wait before it sleeps */
#define SHARED_NS 100000000L /* 100 ms: how long a busy pool counts as shared */
/* the job word: generation << 32 | chunk count << 16 | next chunk */
#define MAX_CHUNKS 0xFFFF
#define WORD(gen, nch, next) ((uint64_t)(gen) << 32 | (uint64_t)(nch) << 16 | (uint64_t)(next))
#define WORD_NCH(w) ((int)(((w) >> 16) & 0xFFFF))
#define WORD_NEXT(w) ((int)((w)&0xFFFF))

typedef struct worker {
    _Alignas(64) atomic_uint_fast64_t ticket; /* bumped by the caller per job */
    atomic_int sleeping;                      /* 1 while waiting on cv */
    pthread_mutex_t m;
    pthread_cond_t cv;
    pthread_t thread;
    int index;      /* 1 .. nworkers */
    atomic_int cpu; /* where it took its last job; -1 unknown */
    atomic_int avoid; /* the CPU its affinity leaves out (the caller's); -1 none */
} worker;

typedef struct pool {
    pthread_mutex_t busy; /* held by the one caller that owns the workers now */
    worker *workers;      /* nworkers of them while started */
    int nworkers;
    bool started;
    long spin_ns; /* 0 when oversubscribed */
    atomic_bool stop;

    /* The current job: fn, ctx, n written by the caller before it publishes
     * `word`; unchanged while the job has claimed chunks not done. */
    nb_range_fn fn;
    void *ctx;
    int64_t n;
    uint32_t gen;
    _Alignas(64) atomic_uint_fast64_t word; /* WORD(generation, chunks, next chunk) */
    _Alignas(64) atomic_int done;           /* chunks of the current job done */
    atomic_int caller_sleeping;
    atomic_int caller_cpu; /* the caller's CPU when it posted the job */
    atomic_long busy_seen; /* when a caller last found the pool busy (now_ns) */
    bool shared;           /* the current job's caller saw that within SHARED_NS */
    cpu_set_t home;        /* the workers' affinity when they started (their creator's) */
    bool has_home;
    pthread_mutex_t done_m;
    pthread_cond_t done_cv;
} pool;

static pool g_pool = {
    .busy = PTHREAD_MUTEX_INITIALIZER,
    .done_m = PTHREAD_MUTEX_INITIALIZER,
    .done_cv = PTHREAD_COND_INITIALIZER,
    .caller_cpu = -1,
};

/* Set while this thread runs a chunk: a nb_parallel_for it makes then finds
 * the pool busy because it is nested, not because another caller has it. */
static _Thread_local bool tl_in_job;

/* Wanted thread count, caller included; 0 until first asked. */
static atomic_int g_num_threads;
static pthread_once_t g_hooks_once = PTHREAD_ONCE_INIT;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Start of chunk i of [0, n) split into k nearly equal parts (sizes differ
 * by at most one, so each is >= n / k). */
static inline int64_t chunk_begin(int64_t n, int k, int i)
{
    int64_t q = n / k, r = n % k;
    return (int64_t)i * q + (i < r ? i : r);
}

/* The CPUs this process may run on: its affinity mask (taskset, a cgroup's
 * cpuset), else the online count. */
static long online_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus < 1 ? 1 : cpus;
}

static int default_num_threads(void)
{
    const char *env = getenv("NABLA_NUM_THREADS");
    if (env && *env) {
        char *end = NULL;
        errno = 0;
        long v = strtol(env, &end, 10);
        if (errno == 0 && end != env && *end == '\0' && v >= 1)
            return v > NB_MAX_THREADS ? NB_MAX_THREADS : (int)v;
    }
    long cpus = online_cpus();
    return cpus > NB_MAX_THREADS ? NB_MAX_THREADS : (int)cpus;
}

/* OpenBLAS runs on one thread, always: nabla splits its GEMMs over its own
 * pool (kernels/gemm.c). OpenBLAS's threads would otherwise spin for a long
 * while after each threaded call, taking a core from the pool. */
static pthread_once_t g_blas_once = PTHREAD_ONCE_INIT;
static void blas_single(void) { openblas_set_num_threads(1); }

int nb_get_num_threads(void)
{
    int n = atomic_load_explicit(&g_num_threads, memory_order_relaxed);
    if (n > 0)
        return n;
    pthread_once(&g_blas_once, blas_single);
    int def = default_num_threads();
    int expected = 0;
    /* First reader wins; a concurrent nb_set_num_threads also wins. */
    if (!atomic_compare_exchange_strong(&g_num_threads, &expected, def))
        return expected;
    return def;
}

void nb_set_num_threads(int n)
{
    if (n < 1)
        n = default_num_threads();
    if (n > NB_MAX_THREADS)
        n = NB_MAX_THREADS;
    atomic_store(&g_num_threads, n);
    openblas_set_num_threads(1); /* see blas_single */
    /* Running workers of another count are replaced at the next job. */
}

/* ---- workers ----------------------------------------------------------- */

/* Wait until w's ticket differs from seen; returns the new ticket. */
static uint64_t worker_wait(worker *w, uint64_t seen, long spin_ns)
{
    uint64_t t = atomic_load_explicit(&w->ticket, memory_order_acquire);
    if (t != seen)
        return t;
    if (spin_ns > 0) {
        long t0 = now_ns();
        for (unsigned i = 1;; i++) {
            cpu_relax();
            t = atomic_load_explicit(&w->ticket, memory_order_acquire);
            if (t != seen)
                return t;
            if ((i & 63) == 0 && now_ns() - t0 > spin_ns)
                break;
        }
    }
    pthread_mutex_lock(&w->m);
    atomic_store(&w->sleeping, 1);
    while ((t = atomic_load(&w->ticket)) == seen)
        pthread_cond_wait(&w->cv, &w->m);
    atomic_store(&w->sleeping, 0);
    pthread_mutex_unlock(&w->m);
    return t;
}

/* Claim and run chunks of the current job until none is left. */
static void run_chunks(pool *p, bool caller)
{
    uint64_t w = atomic_load_explicit(&p->word, memory_order_acquire);
    for (;;) {
        int nch = WORD_NCH(w), next = WORD_NEXT(w);
        if (next >= nch)
            return;
        /* on failure w is reloaded: another claim, or a newer job */
        if (!atomic_compare_exchange_weak_explicit(&p->word, &w, w + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        tl_in_job = true;
        p->fn(p->ctx, chunk_begin(p->n, nch, next), chunk_begin(p->n, nch, next + 1));
        tl_in_job = false;
        if (atomic_fetch_add(&p->done, 1) + 1 == nch && !caller &&
            atomic_load(&p->caller_sleeping)) {
            pthread_mutex_lock(&p->done_m);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->done_m);
        }
        w = atomic_load_explicit(&p->word, memory_order_acquire);
    }
}

/* The workers' home CPUs less `avoid` and the CPUs in `busy` (NULL: none);
 * false when that leaves none (or there is no home mask). */
static bool home_less(const pool *p, int avoid, const cpu_set_t *busy, cpu_set_t *out)
{
    if (!p->has_home)
        return false;
    *out = p->home;
    if (avoid >= 0 && avoid < CPU_SETSIZE)
        CPU_CLR(avoid, out);
    if (busy) {
        cpu_set_t keep;
        CPU_XOR(&keep, out, busy);
        CPU_AND(out, out, &keep); /* out & ~busy */
    }
    return CPU_COUNT(out) > 0;
}

/* Caller side, at a post: keep w off the caller's CPU c (see the top), or
 * give w its home CPUs back when the pool is shared (c < 0). */
static void avoid_caller(const pool *p, worker *w, int c)
{
    cpu_set_t set;
    int now = atomic_load_explicit(&w->avoid, memory_order_relaxed);
    if (c == now)
        return;
    if (c < 0)
        set = p->home;
    else if (!home_less(p, c, NULL, &set))
        return;
    if (p->has_home && pthread_setaffinity_np(w->thread, sizeof set, &set) == 0)
        atomic_store_explicit(&w->avoid, c, memory_order_relaxed);
}

/* Worker side, at each job: if another worker is on w's CPU, move w to a CPU
 * no thread of the pool is on (narrow the mask, which migrates it at once,
 * then widen it back to home less the caller's CPU). */
static void keep_apart(pool *p, worker *w)
{
    int me = sched_getcpu();
    cpu_set_t busy, set;
    CPU_ZERO(&busy);
    for (int i = 0; i < p->nworkers; i++) {
        int c = atomic_load_explicit(&p->workers[i].cpu, memory_order_relaxed);
        if (&p->workers[i] != w && c >= 0 && c < CPU_SETSIZE)
            CPU_SET(c, &busy);
    }
    if (me >= 0 && me < CPU_SETSIZE && CPU_ISSET(me, &busy) &&
        home_less(p, atomic_load_explicit(&p->caller_cpu, memory_order_relaxed), &busy, &set) &&
        pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0) {
        if (!home_less(p, atomic_load_explicit(&w->avoid, memory_order_relaxed), NULL, &set))
            set = p->home;
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
        me = sched_getcpu();
    }
    atomic_store_explicit(&w->cpu, me, memory_order_relaxed);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    pool *p = &g_pool;
    uint64_t seen = 0; /* tickets start at 0 before the thread exists */
    long spin_ns = p->spin_ns;
    for (;;) {
        seen = worker_wait(w, seen, spin_ns);
        if (atomic_load(&p->stop))
            break;
        if (spin_ns > 0 && p->nworkers > 1)
            keep_apart(p, w);
        run_chunks(p, false);
    }
    return NULL;
}

/* Bump w's ticket (publishing its slot) and wake it if it sleeps. */
static void worker_post(worker *w)
{
    atomic_fetch_add(&w->ticket, 1);
    if (atomic_load(&w->sleeping)) {
        pthread_mutex_lock(&w->m);
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->m);
    }
}

/* Join all workers. Caller holds `busy`. */
static void stop_workers(void)
{
    pool *p = &g_pool;
    if (!p->started)
        return;
    atomic_store(&p->stop, true);
    for (int i = 0; i < p->nworkers; i++) {
        worker *w = &p->workers[i];
        atomic_fetch_add(&w->ticket, 1);
        pthread_mutex_lock(&w->m);
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->m);
    }
    for (int i = 0; i < p->nworkers; i++) {
        pthread_join(p->workers[i].thread, NULL);
        pthread_mutex_destroy(&p->workers[i].m);
        pthread_cond_destroy(&p->workers[i].cv);
    }
    free(p->workers);
    p->workers = NULL;
    p->nworkers = 0;
    p->started = false;
    atomic_store(&p->stop, false);
}

static void atexit_shutdown(void)
{
    /* At exit, never block: if a job is running (exit() called from inside
     * one), leave the workers alone rather than deadlock. */
    if (pthread_mutex_trylock(&g_pool.busy) != 0)
        return;
    stop_workers();
    pthread_mutex_unlock(&g_pool.busy);
}

/* In a forked child only the forking thread exists: forget the workers
 * (their memory is freed, their threads are gone) and reset the locks. */
static void atfork_child(void)
{
    pool *p = &g_pool;
    free(p->workers);
    p->workers = NULL;
    p->nworkers = 0;
    p->started = false;
    atomic_store(&p->stop, false);
    atomic_store(&p->word, 0);
    atomic_store(&p->done, 0);
    atomic_store(&p->caller_sleeping, 0);
    atomic_store(&p->caller_cpu, -1);
    atomic_store(&p->busy_seen, 0);
    pthread_mutex_init(&p->busy, NULL);
    pthread_mutex_init(&p->done_m, NULL);
    pthread_cond_init(&p->done_cv, NULL);
}

static void install_hooks(void)
{
    atexit(atexit_shutdown);
    pthread_atfork(NULL, NULL, atfork_child);
}

/* Make nthreads - 1 workers (fewer if thread creation fails). Caller holds
 * `busy`. Returns the number of workers running. */
static int start_workers(int nthreads)
{
    pool *p = &g_pool;
    if (p->started && p->nworkers == nthreads - 1)
        return p->nworkers;
    stop_workers();
    pthread_once(&g_hooks_once, install_hooks);

    int want = nthreads - 1;
    p->spin_ns = nthreads <= online_cpus() ? SPIN_NS : 0;
    p->has_home = pthread_getaffinity_np(pthread_self(), sizeof p->home, &p->home) == 0;
    p->workers = aligned_alloc(_Alignof(worker), sizeof(worker) * (size_t)(want > 0 ? want : 1));
    if (!p->workers)
        return 0;
    int made = 0;
    for (; made < want; made++) {
        worker *w = &p->workers[made];
        atomic_init(&w->ticket, 0);
        atomic_init(&w->sleeping, 0);
        atomic_init(&w->cpu, -1);
        atomic_init(&w->avoid, -1);
        w->index = made + 1;
        pthread_mutex_init(&w->m, NULL);
        pthread_cond_init(&w->cv, NULL);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            pthread_mutex_destroy(&w->m);
            pthread_cond_destroy(&w->cv);
            break;
        }
    }
    p->nworkers = made;
    p->started = true;
    return made;
}

/* Wait until all nch chunks of the current job are done (the ones left are
 * being run by workers): spin, then spin with yields, then sleep (see the
 * top of the file for why the caller sleeps so late). */
static void wait_done(pool *p, int nch)
{
    if (atomic_load_explicit(&p->done, memory_order_acquire) == nch)
        return;
    if (p->spin_ns > 0) {
        long t0 = now_ns(), t;
        for (unsigned i = 1;; i++) {
            cpu_relax();
            if (atomic_load_explicit(&p->done, memory_order_acquire) == nch)
                return;
            if ((i & 63) == 0 && (t = now_ns() - t0) > p->spin_ns) {
                if (t > YIELD_NS || p->shared)
                    break;
                sched_yield();
            }
        }
    }
    pthread_mutex_lock(&p->done_m);
    atomic_store(&p->caller_sleeping, 1);
    while (atomic_load(&p->done) != nch)
        pthread_cond_wait(&p->done_cv, &p->done_m);
    atomic_store(&p->caller_sleeping, 0);
    pthread_mutex_unlock(&p->done_m);
}

void nb_parallel_for(int64_t n, int64_t grain, nb_range_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    int nthreads = nb_get_num_threads();
    if (n <= grain || nthreads <= 1) {
        fn(ctx, 0, n);
        return;
    }
    int64_t max_chunks = n / grain; /* every chunk keeps >= grain items */
    if (max_chunks <= 1) {
        fn(ctx, 0, n);
        return;
    }
    if (pthread_mutex_trylock(&g_pool.busy) != 0) {
        if (!tl_in_job)
            atomic_store_explicit(&g_pool.busy_seen, now_ns(), memory_order_relaxed);
        fn(ctx, 0, n);
        return;
    }

    pool *p = &g_pool;
    int workers = start_workers(nthreads);
    int64_t want = (int64_t)(workers + 1) * NB_CHUNKS_PER_THREAD;
    if (want > MAX_CHUNKS)
        want = MAX_CHUNKS;
    int nch = (int)(max_chunks < want ? max_chunks : want);
    if (workers < 1) {
        pthread_mutex_unlock(&p->busy);
        fn(ctx, 0, n);
        return;
    }

    /* the previous job is complete (all its chunks done): its fields are free */
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->gen++;
    atomic_store(&p->done, 0);
    int wake = nch - 1 < workers ? nch - 1 : workers;
    if (p->spin_ns > 0) { /* (shared is read only where there is spinning) */
        p->shared = now_ns() - atomic_load_explicit(&p->busy_seen, memory_order_relaxed) < SHARED_NS;
        int c = p->shared ? -1 : sched_getcpu();
        atomic_store_explicit(&p->caller_cpu, c, memory_order_relaxed);
        for (int i = 0; i < wake; i++)
            avoid_caller(p, &p->workers[i], c);
    }
    atomic_store_explicit(&p->word, WORD(p->gen, nch, 0), memory_order_release);
    for (int i = 0; i < wake; i++)
        worker_post(&p->workers[i]);
    run_chunks(p, true);
    wait_done(p, nch);
    pthread_mutex_unlock(&p->busy);
}

void nb_threadpool_shutdown(void)
{
    pthread_mutex_lock(&g_pool.busy);
    stop_workers();
    pthread_mutex_unlock(&g_pool.busy);
}

double nb_now_seconds(void) { return 1e-9 * (double)now_ns(); }
