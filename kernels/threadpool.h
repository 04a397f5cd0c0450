/* The CPU thread pool behind nabla's kernels.
 *
 * nb_parallel_for splits [0, n) into min(n / grain, NB_CHUNKS_PER_THREAD *
 * threads) contiguous chunks of nearly equal size (so at least `grain`
 * items each) and runs fn(ctx, begin, end) on them, the calling thread
 * included; the threads take chunks as they become free, so which thread
 * runs a chunk is not fixed (kernels must not tie scratch to chunks beyond
 * one chunk's run).
 * When the pool is already busy (another session running concurrently), the
 * caller runs the whole range itself, so concurrent sessions stay correct. */
#ifndef NB_THREADPOOL_H
#define NB_THREADPOOL_H

#include <stdint.h>

typedef void (*nb_range_fn)(void *ctx, int64_t begin, int64_t end);

#define NB_CHUNKS_PER_THREAD 4

/* Threads used by kernels, the caller included (default: online CPUs, or the
 * NABLA_NUM_THREADS environment variable). OpenBLAS is held to one thread
 * (set here and at the first nb_get_num_threads): nabla splits GEMMs over
 * this pool itself (kernels/gemm.h). */
void nb_set_num_threads(int n);
int nb_get_num_threads(void);

void nb_parallel_for(int64_t n, int64_t grain, nb_range_fn fn, void *ctx);

/* Join the workers (also done at exit). */
void nb_threadpool_shutdown(void);

/* Seconds on the monotonic clock (for timing passes and progress). */
double nb_now_seconds(void);

#endif
