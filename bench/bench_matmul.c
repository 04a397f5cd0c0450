/* matmul: a compiled nabla graph out = A @ B against a bare cblas_sgemm.
 *
 * nabla's CPU matmul hands the product to OpenBLAS, so the bare sgemm call on
 * the same sizes in the same process is the ceiling: the ratio shows what the
 * graph (executor, tape entry, arena) costs on top of the BLAS it wraps.
 * The graph is compiled once and its inputs fed once; only nb_session_run is
 * timed. Both sides use the same thread count (NABLA_NUM_THREADS or all
 * cores): nabla splits the product over its pool with OpenBLAS held to one
 * thread; the bare call runs OpenBLAS's own threading with that many threads
 * (set around each call). Repetitions are interleaved.
 *
 * Figures per size (M = K = N): "gflops" (2MNK / time, higher is better) and
 * "time_ms" (one product, lower is better).
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "nabla.h"

#define BENCH "matmul"

typedef struct {
    int m, k, n;
    const float *a, *b;
    float *c;
} sgemm_ctx;

static void run_sgemm(void *p)
{
    sgemm_ctx *c = p;
    openblas_set_num_threads(nb_get_num_threads());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->m, c->n, c->k, 1.0f, c->a, c->k,
                c->b, c->n, 0.0f, c->c, c->n);
    openblas_set_num_threads(1); /* nabla's setting */
}

/* n floats, 64-byte aligned like nabla's arena, so both sides see the same
 * alignment. */
static float *floats(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *v = aligned_alloc(64, bytes);
    if (!v)
        bench_die(BENCH, "out of memory");
    return v;
}

/* Uniform values in [-1, 1) from a small LCG (inputs need not be nabla's RNG). */
static float *random_floats(size_t n, uint32_t seed)
{
    float *v = floats(n);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        v[i] = (float)(seed >> 8) / (float)(1u << 23) - 1.0f;
    }
    return v;
}

/* Largest |nabla - sgemm| over the output, so a fast but wrong figure is caught. */
static double check_output(nb_session *s, const nb_node *out, const float *ref, size_t n)
{
    nb_tensor t;
    if (nb_session_fetch(s, out, &t) != NB_OK)
        bench_die(BENCH, "fetch: %s", nb_last_error());
    const float *got = nb_tensor_data(&t);
    double worst = 0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)got[i] - (double)ref[i]));
    nb_tensor_release(&t);
    return worst;
}

static void bench_size(int m, int reps)
{
    int k = m, n = m;
    int64_t sa[2] = {m, k}, sb[2] = {k, n};
    float *a = random_floats((size_t)m * k, 1), *b = random_floats((size_t)k * n, 2);
    float *c = floats((size_t)m * n);
    nb_graph *g = nb_graph_new();
    if (!g)
        bench_die(BENCH, "out of memory");
    nb_node *na = nb_input(g, "A", NB_F32, 2, sa);
    nb_node *nbn = nb_input(g, "B", NB_F32, 2, sb);
    nb_node *out = nb_matmul(g, na, nbn);
    if (nb_graph_status(g) != NB_OK)
        bench_die(BENCH, "graph: %s", nb_graph_error(g));
    nb_plan *plan = nb_compile(g, 1, &out, NULL);
    nb_session *s = plan ? nb_session_new(plan) : NULL;
    if (!s)
        bench_die(BENCH, "compile/session: %s", nb_last_error());
    if (nb_session_feed_data(s, na, a, (size_t)m * k * sizeof(float)) != NB_OK ||
        nb_session_feed_data(s, nbn, b, (size_t)k * n * sizeof(float)) != NB_OK)
        bench_die(BENCH, "feed: %s", nb_last_error());

    sgemm_ctx pc = {m, k, n, a, b, c};
    bench_run_session(s);
    run_sgemm(&pc);
    double err = check_output(s, out, c, (size_t)m * n);
    if (!(err <= 1e-3 * k))
        bench_die(BENCH, "%dx%dx%d: nabla differs from sgemm by %g", m, k, n, err);

    double tn, tp;
    bench_time_pair(bench_run_session, s, run_sgemm, &pc, reps, &tn, &tp);
    char cs[64];
    snprintf(cs, sizeof cs, "%dx%dx%d", m, k, n);
    double flop = 2.0 * m * n * k;
    bench_emit(BENCH, cs, "gflops", flop / tn * 1e-9, "cblas_sgemm", flop / tp * 1e-9);
    bench_emit(BENCH, cs, "time_ms", tn * 1e3, "cblas_sgemm", tp * 1e3);

    nb_session_free(s);
    nb_plan_free(plan);
    nb_graph_free(g);
    free(a);
    free(b);
    free(c);
}

int main(void)
{
    bench_note(BENCH, "threads: nabla %d, bare OpenBLAS %d; %d repetitions, median",
               nb_get_num_threads(), nb_get_num_threads(), bench_reps());
    static const int sizes[] = {256, 512, 1024};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        bench_size(sizes[i], bench_reps());
    return 0;
}
