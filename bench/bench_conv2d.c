/* conv2d: forward + backward of one convolution layer, nabla against
 * PyTorch's CPU conv (oneDNN in Debian's build), same thread count.
 *
 * nabla: a compiled graph with x, w and b as inputs, y = conv2d(x, w, b) and
 * its gradients dx, dw, db from nb_vjp with a fixed cotangent gy (an input
 * too); only nb_session_run is timed. A forward-only graph is timed as well.
 * PyTorch: bench/torch_conv2d.py, a child process of this one (bench/torch_peer.h,
 * same thread count) that times its own repetitions on request, so that
 * nabla's and PyTorch's repetitions are interleaved (nabla, PyTorch, nabla,
 * ...) and the medians compared; each repetition lasts >= 0.05 s.
 *
 * Cases: the two convolutions of a Fashion-MNIST CNN (batch 128, 1->32 on
 * 28x28 and 32->64 on 14x14) and a ResNet-18 layer (batch 8, 64->64 on
 * 56x56), all 3x3 with padding 1.
 *
 * Figures per case: time_ms of fwd+bwd and of fwd (ratio nabla / PyTorch,
 * below 1 is better); gflops of fwd+bwd (3x the forward's 2*N*CO*OH*OW*C*9
 * FLOPs; the PyTorch figure uses the same count) and the same nabla figure
 * beside the OpenBLAS sgemm ceiling measured in this run (1024^3 and the
 * case's own per-image GEMM shape, batched over the images).
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "nabla.h"
#include "torch_peer.h"

#define BENCH "conv2d"

typedef struct ccase {
    int64_t n, c, h, w, co, k, pad;
    const char *label;
} ccase;

static const ccase cases[] = {
    {128, 1, 28, 28, 32, 3, 1, "fmnist conv1 128x1x28x28->32"},
    {128, 32, 14, 14, 64, 3, 1, "fmnist conv2 128x32x14x14->64"},
    {8, 64, 56, 56, 64, 3, 1, "resnet18 layer1 8x64x56x56->64"},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static float *random_floats(size_t n, uint32_t seed, float scale)
{
    float *v = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!v)
        bench_die(BENCH, "out of memory");
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        v[i] = scale * ((float)(seed >> 8) / (float)(1u << 23) - 1.0f);
    }
    return v;
}

typedef struct sgemm_ctx {
    int m, n, k, batch;
    const float *a, *b;
    float *c;
} sgemm_ctx;

/* batch row-major products C (m x n) = A (m x k) B (k x n), B and C per batch */
static void run_sgemm(void *p)
{
    sgemm_ctx *s = p;
    openblas_set_num_threads(nb_get_num_threads()); /* nabla holds it to one */
    for (int i = 0; i < s->batch; i++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->m, s->n, s->k, 1.0f, s->a, s->k,
                    s->b + (size_t)i * s->k * s->n, s->n, 0.0f, s->c + (size_t)i * s->m * s->n,
                    s->n);
    openblas_set_num_threads(1);
}

static double sgemm_gflops(int m, int n, int k, int batch, int reps)
{
    float *a = random_floats((size_t)m * k, 1, 1), *b = random_floats((size_t)k * n * batch, 2, 1);
    float *c = random_floats((size_t)m * n * batch, 3, 1);
    sgemm_ctx s = {m, n, k, batch, a, b, c};
    double t = bench_time(run_sgemm, &s, reps);
    free(a), free(b), free(c);
    return 2.0 * m * n * k * batch / t * 1e-9;
}

/* y[n, o, i, j] by direct summation, to check a sample of nabla's output */
static double direct_y(const ccase *c, const float *x, const float *w, const float *b, int64_t n,
                       int64_t o, int64_t i, int64_t j)
{
    double acc = b[o];
    for (int64_t ci = 0; ci < c->c; ci++)
        for (int64_t p = 0; p < c->k; p++)
            for (int64_t q = 0; q < c->k; q++) {
                int64_t ih = i - c->pad + p, iw = j - c->pad + q;
                if (ih >= 0 && ih < c->h && iw >= 0 && iw < c->w)
                    acc += (double)w[((o * c->c + ci) * c->k + p) * c->k + q] *
                           x[((n * c->c + ci) * c->h + ih) * c->w + iw];
            }
    return acc;
}

typedef struct built {
    nb_graph *g;
    nb_plan *plan;
    nb_session *s;
    nb_node *y;
} built;

/* Compile y (and with grads, dx, dw, db) and feed every input. */
static built build(const ccase *c, bool grads, const float *x, const float *w, const float *b,
                   const float *gy)
{
    built r = {nb_graph_new(), NULL, NULL, NULL};
    int64_t xs[4] = {c->n, c->c, c->h, c->w}, ws[4] = {c->co, c->c, c->k, c->k}, bs[1] = {c->co};
    nb_node *nx = nb_input(r.g, "x", NB_F32, 4, xs), *nw = nb_input(r.g, "w", NB_F32, 4, ws);
    nb_node *nbias = nb_input(r.g, "b", NB_F32, 1, bs);
    nb_conv_args a = {{1, 1}, {c->pad, c->pad, c->pad, c->pad}, {1, 1}, {0, 0}, 1};
    r.y = nb_conv2d(r.g, nx, nw, nbias, &a);
    nb_node *outs[4] = {r.y};
    int nout = 1;
    nb_node *ngy = NULL;
    if (grads) {
        ngy = nb_input(r.g, "gy", NB_F32, 4, nb_node_shape(r.y));
        nb_node *wrt[3] = {nx, nw, nbias};
        if (nb_vjp(r.g, r.y, ngy, 3, wrt, outs + 1) != NB_OK)
            bench_die(BENCH, "nb_vjp: %s", nb_graph_error(r.g));
        nout = 4;
    }
    if (nb_graph_status(r.g) != NB_OK)
        bench_die(BENCH, "graph: %s", nb_graph_error(r.g));
    r.plan = nb_compile(r.g, nout, outs, NULL);
    r.s = r.plan ? nb_session_new(r.plan) : NULL;
    if (!r.s)
        bench_die(BENCH, "compile: %s", nb_last_error());
    size_t nxb = (size_t)nb_shape_numel(4, xs) * 4, nwb = (size_t)nb_shape_numel(4, ws) * 4;
    if (nb_session_feed_data(r.s, nx, x, nxb) != NB_OK ||
        nb_session_feed_data(r.s, nw, w, nwb) != NB_OK ||
        nb_session_feed_data(r.s, nbias, b, (size_t)c->co * 4) != NB_OK ||
        (ngy && nb_session_feed_data(r.s, ngy, gy, (size_t)nb_node_numel(r.y) * 4) != NB_OK))
        bench_die(BENCH, "feed: %s", nb_last_error());
    return r;
}

static void free_built(built *r)
{
    nb_session_free(r->s);
    nb_plan_free(r->plan);
    nb_graph_free(r->g);
}

int main(void)
{
    int reps = bench_reps(), threads = torch_peer_threads(BENCH, reps);
    torch_peer tp;
    torch_peer_start(&tp, BENCH, "torch_conv2d.py", threads);

    double ceiling = sgemm_gflops(1024, 1024, 1024, 1, reps);
    bench_emit_alone(BENCH, "sgemm 1024x1024x1024", "gflops", ceiling);

    for (int i = 0; i < N_CASES; i++) {
        const ccase *c = &cases[i];
        int64_t oh = c->h + 2 * c->pad - c->k + 1, ow = c->w + 2 * c->pad - c->k + 1;
        size_t nx = (size_t)(c->n * c->c * c->h * c->w), nw = (size_t)(c->co * c->c * c->k * c->k);
        size_t ny = (size_t)(c->n * c->co * oh * ow);
        float *x = random_floats(nx, 11, 1), *w = random_floats(nw, 12, 0.2f);
        float *b = random_floats((size_t)c->co, 13, 1), *gy = random_floats(ny, 14, 1);
        built fb = build(c, true, x, w, b, gy), fw = build(c, false, x, w, b, gy);
        bench_run_session(fb.s);
        nb_tensor ty;
        if (nb_session_fetch(fb.s, fb.y, &ty) != NB_OK)
            bench_die(BENCH, "fetch: %s", nb_last_error());
        const float *yv = nb_tensor_data(&ty);
        for (int k = 0; k < 64; k++) { /* a sample of outputs against direct sums */
            int64_t idx = (int64_t)(((uint64_t)k * 2654435761u) % ny);
            int64_t j = idx % ow, ii = idx / ow % oh, o = idx / (ow * oh) % c->co,
                    n = idx / (ow * oh * c->co);
            double want = direct_y(c, x, w, b, n, o, ii, j);
            if (fabs(yv[idx] - want) > 1e-3 * (1 + fabs(want)))
                bench_die(BENCH, "%s: y[%lld] is %g, direct sum %g", c->label, (long long)idx,
                          yv[idx], want);
        }
        nb_tensor_release(&ty);

        char spec[160];
        snprintf(spec, sizeof spec, "%lld,%lld,%lld,%lld,%lld,%lld,%lld", (long long)c->n,
                 (long long)c->c, (long long)c->h, (long long)c->w, (long long)c->co,
                 (long long)c->k, (long long)c->pad);
        int pc = torch_peer_case(&tp, spec);
        double s_fb, s_fw, t_fb, t_fw;
        torch_peer_time_pair(&tp, bench_run_session, fb.s, pc, "fb", reps, &s_fb, &t_fb);
        torch_peer_time_pair(&tp, bench_run_session, fw.s, pc, "fw", reps, &s_fw, &t_fw);
        double flop = 2.0 * (double)ny * (double)(c->c * c->k * c->k);
        char cs[160];
        snprintf(cs, sizeof cs, "%s fwd+bwd", c->label);
        bench_emit(BENCH, cs, "time_ms", s_fb * 1e3, "pytorch", t_fb * 1e3);
        bench_emit(BENCH, cs, "gflops", 3 * flop / s_fb * 1e-9, "pytorch", 3 * flop / t_fb * 1e-9);
        bench_emit(BENCH, cs, "gflops", 3 * flop / s_fb * 1e-9, "cblas_sgemm_1024", ceiling);
        /* the forward's own GEMM shape: (CO x C*9) @ (C*9 x OH*OW), per image */
        int batch = (int)c->n;
        double shape_ceiling = sgemm_gflops((int)c->co, (int)(oh * ow), (int)(c->c * c->k * c->k),
                                            batch, reps);
        char gs[96];
        snprintf(gs, sizeof gs, "cblas_sgemm_%lldx%lldx%lld_x%d", (long long)c->co,
                 (long long)(oh * ow), (long long)(c->c * c->k * c->k), batch);
        bench_emit(BENCH, cs, "gflops", 3 * flop / s_fb * 1e-9, gs, shape_ceiling);
        snprintf(cs, sizeof cs, "%s fwd", c->label);
        bench_emit(BENCH, cs, "time_ms", s_fw * 1e3, "pytorch", t_fw * 1e3);
        bench_emit(BENCH, cs, "gflops", flop / s_fw * 1e-9, "pytorch", flop / t_fw * 1e-9);
        free_built(&fb);
        free_built(&fw);
        free(x), free(w), free(b), free(gy);
    }
    torch_peer_stop(&tp);
    return 0;
}
