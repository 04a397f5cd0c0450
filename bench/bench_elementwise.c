/* elementwise: a compiled nabla graph out = a + b on 16M f32 elements against
 * memcpy and against the same add as a bare C loop.
 *
 * Adding two 64 MiB arrays is bound by memory bandwidth, not arithmetic, so the
 * peers are the fastest ways to move those bytes: memcpy (1 read + 1 write of
 * 64 MiB, single-threaded, the libc's tuned copy) and a plain C loop doing the
 * same add (2 reads + 1 write), split over the same number of threads as nabla
 * with bare pthreads, to show what the hardware allows. Bandwidth counts the
 * bytes each side must move: nabla and the loop 3 x 64 MiB per run, memcpy
 * 2 x 64 MiB. GB = 1e9 bytes.
 *
 * The graph is compiled once and fed once; only nb_session_run is timed.
 * Repetitions of the three are interleaved.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "nabla.h"

#define BENCH "elementwise"
#define NUMEL ((int64_t)16 * 1024 * 1024)
#define ARRAY_BYTES ((size_t)NUMEL * sizeof(float))
#define MAX_THREADS 256

typedef struct {
    void *dst;
    const void *src;
} copy_ctx;

typedef struct {
    const float *a, *b;
    float *c;
    int64_t begin, end;
} add_chunk;

typedef struct {
    const float *a, *b;
    float *c;
    int threads;
} loop_ctx;

static void run_memcpy(void *p)
{
    copy_ctx *c = p;
    memcpy(c->dst, c->src, ARRAY_BYTES);
}

static void *add_range(void *p)
{
    add_chunk *k = p;
    const float *restrict a = k->a, *restrict b = k->b;
    float *restrict c = k->c;
    for (int64_t i = k->begin; i < k->end; i++)
        c[i] = a[i] + b[i];
    return NULL;
}

/* The add split in equal contiguous chunks; the caller does the first one. */
static void run_loop(void *p)
{
    loop_ctx *c = p;
    add_chunk ch[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    int n = c->threads > 1 ? c->threads : 1;
    for (int t = 0; t < n; t++)
        ch[t] = (add_chunk){c->a, c->b, c->c, NUMEL * t / n, NUMEL * (t + 1) / n};
    for (int t = 1; t < n; t++)
        if (pthread_create(&th[t], NULL, add_range, &ch[t]) != 0)
            bench_die(BENCH, "pthread_create failed");
    add_range(&ch[0]);
    for (int t = 1; t < n; t++)
        pthread_join(th[t], NULL);
}

static float *filled(float v)
{
    float *x = aligned_alloc(64, ARRAY_BYTES);
    if (!x)
        bench_die(BENCH, "out of memory");
    for (int64_t i = 0; i < NUMEL; i++)
        x[i] = v + (float)(i & 1023);
    return x;
}

/* Every element of nabla's output must equal the loop's. */
static void check_output(nb_session *s, const nb_node *out, const float *ref)
{
    nb_tensor t;
    if (nb_session_fetch(s, out, &t) != NB_OK)
        bench_die(BENCH, "fetch: %s", nb_last_error());
    if (memcmp(nb_tensor_data(&t), ref, ARRAY_BYTES) != 0)
        bench_die(BENCH, "nabla's add differs from the C loop");
    nb_tensor_release(&t);
}

static nb_session *build(nb_graph *g, nb_plan **plan, nb_node **out, const float *a,
                         const float *b)
{
    int64_t shape[1] = {NUMEL};
    nb_node *na = nb_input(g, "a", NB_F32, 1, shape);
    nb_node *nbn = nb_input(g, "b", NB_F32, 1, shape);
    *out = nb_add(g, na, nbn);
    if (nb_graph_status(g) != NB_OK)
        bench_die(BENCH, "graph: %s", nb_graph_error(g));
    *plan = nb_compile(g, 1, out, NULL);
    nb_session *s = *plan ? nb_session_new(*plan) : NULL;
    if (!s)
        bench_die(BENCH, "compile/session: %s", nb_last_error());
    if (nb_session_feed_data(s, na, a, ARRAY_BYTES) != NB_OK ||
        nb_session_feed_data(s, nbn, b, ARRAY_BYTES) != NB_OK)
        bench_die(BENCH, "feed: %s", nb_last_error());
    return s;
}

int main(void)
{
    int threads = nb_get_num_threads();
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    int reps = bench_reps();
    bench_note(BENCH, "threads %d (nabla and c_loop; memcpy is one thread); %d repetitions, "
                      "median", threads, reps);
    float *a = filled(1.0f), *b = filled(0.5f), *c = filled(0.0f), *dst = filled(0.0f);
    nb_graph *g = nb_graph_new();
    if (!g)
        bench_die(BENCH, "out of memory");
    nb_plan *plan;
    nb_node *out;
    nb_session *s = build(g, &plan, &out, a, b);

    copy_ctx mc = {dst, a};
    loop_ctx lc = {a, b, c, threads};
    bench_run_session(s);
    run_loop(&lc);
    check_output(s, out, c);

    bench_fn fns[3] = {bench_run_session, run_memcpy, run_loop};
    void *ctxs[3] = {s, &mc, &lc};
    double sec[3];
    bench_time_multi(3, fns, ctxs, reps, sec);

    const char *cs = "16777216_f32";
    double mb = (double)ARRAY_BYTES;
    bench_emit(BENCH, cs, "gb_per_s", 3 * mb / sec[0] * 1e-9, "memcpy", 2 * mb / sec[1] * 1e-9);
    bench_emit(BENCH, cs, "time_ms", sec[0] * 1e3, "memcpy", sec[1] * 1e3);
    bench_emit(BENCH, cs, "gb_per_s", 3 * mb / sec[0] * 1e-9, "c_loop", 3 * mb / sec[2] * 1e-9);
    bench_emit(BENCH, cs, "time_ms", sec[0] * 1e3, "c_loop", sec[2] * 1e3);

    nb_session_free(s);
    nb_plan_free(plan);
    nb_graph_free(g);
    free(a);
    free(b);
    free(c);
    free(dst);
    return 0;
}
