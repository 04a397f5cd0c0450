/* normalization: batch_norm (training) and layer_norm forward + backward
 * (f32) against PyTorch's CPU ops with the same thread count.
 *
 * Sizes: batch_norm after the conv layers of the Fashion-MNIST CNN
 * ((128,32,28,28), (128,64,14,14)) and in a ResNet-18 layer ((8,64,56,56));
 * layer_norm over the last dim of transformer-like rows ((128*49, 512) and
 * (8*196, 768)).
 *
 * nabla: one compiled graph with inputs x and gy, parameters gamma and beta
 * (and the running statistics as STATE nodes for batch norm), outputs
 * y and the VJPs of x, gamma and beta with seed gy (nb_vjp), i.e. what a
 * training step runs; a second plan computes y alone. Only nb_session_run is
 * timed (inputs fed once).
 * PyTorch: bench/torch_normalization.py, a child process of this one driven
 * through pipes (bench/torch_peer.h): x, weight, bias requiring grad,
 * y = F.batch_norm(..., training=True) or F.layer_norm, y.backward(gy); and
 * the forward under no_grad.
 *
 * Figures: time_ms of fwd+bwd and of fwd, ratio = nabla / PyTorch (below 1
 * is better), and nabla's effective bandwidth for fwd+bwd (bytes of x, y, gy
 * and dx, GB/s) without a peer. Each side's figure is the best of ROUNDS
 * medians (rounds alternate nabla and PyTorch; see main).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "nabla.h"
#include "torch_peer.h"

#define BENCH "normalization"

typedef struct ncase {
    int bn; /* 1: batch_norm (N, C, H, W); 0: layer_norm (R, D) */
    int64_t d[4];
    const char *label;
} ncase;

static const ncase cases[] = {
    {1, {128, 32, 28, 28}, "batch_norm_fmnist1_128x32x28x28"},
    {1, {128, 64, 14, 14}, "batch_norm_fmnist2_128x64x14x14"},
    {1, {8, 64, 56, 56}, "batch_norm_resnet18_8x64x56x56"},
    {0, {128 * 49, 512}, "layer_norm_6272x512"},
    {0, {8 * 196, 768}, "layer_norm_1568x768"},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static float *random_floats(int64_t n, uint64_t seed, double mean, double std)
{
    float *v = malloc((size_t)n * sizeof(float));
    if (!v)
        bench_die(BENCH, "out of memory");
    nb_rng r;
    nb_rng_init(&r, seed);
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)(mean + std * nb_rng_normal(&r));
    return v;
}

/* Sanity of one run: dbeta = sum of gy over everything but the affine dim,
 * and dx sums to zero over each normalised row or channel. */
static void check_grads(const ncase *c, nb_session *s, nb_node *dx, nb_node *dbeta,
                        const float *gy)
{
    nb_tensor tdx, tdb;
    if (nb_session_fetch(s, dx, &tdx) != NB_OK || nb_session_fetch(s, dbeta, &tdb) != NB_OK)
        bench_die(BENCH, "fetch: %s", nb_last_error());
    const float *vdx = nb_tensor_data(&tdx), *vdb = nb_tensor_data(&tdb);
    int64_t A = c->bn ? c->d[1] : c->d[1];
    int64_t outer = c->bn ? c->d[0] : c->d[0], inner = c->bn ? c->d[2] * c->d[3] : 1;
    double *sg = calloc((size_t)A, sizeof(double)), *sa = calloc((size_t)A, sizeof(double));
    double worst_dx = 0;
    for (int64_t o = 0; o < outer; o++) {
        double rowdx = 0, rowabs = 0;
        for (int64_t a = 0; a < A; a++)
            for (int64_t k = 0; k < inner; k++) {
                int64_t i = (o * A + a) * inner + k;
                sg[a] += gy[i];
                sa[a] += fabs(gy[i]);
                rowdx += vdx[i];
                rowabs += fabs(vdx[i]);
            }
        if (!c->bn) /* layer norm: dx sums to 0 per row */
            worst_dx = fmax(worst_dx, fabs(rowdx) / (rowabs + 1e-30));
    }
    if (c->bn) { /* batch norm: dx sums to 0 per channel */
        for (int64_t a = 0; a < A; a++) {
            double s1 = 0, s2 = 0;
            for (int64_t o = 0; o < outer; o++)
                for (int64_t k = 0; k < inner; k++) {
                    s1 += vdx[(o * A + a) * inner + k];
                    s2 += fabs(vdx[(o * A + a) * inner + k]);
                }
            worst_dx = fmax(worst_dx, fabs(s1) / (s2 + 1e-30));
        }
    }
    for (int64_t a = 0; a < A; a++)
        if (fabs(vdb[a] - sg[a]) > 1e-4 * sa[a] + 1e-4)
            bench_die(BENCH, "%s: dbeta[%lld] = %g, sum gy = %g", c->label, (long long)a, vdb[a],
                      sg[a]);
    if (worst_dx > 1e-3)
        bench_die(BENCH, "%s: dx does not sum to 0 (relative %g)", c->label, worst_dx);
    free(sg);
    free(sa);
    nb_tensor_release(&tdx);
    nb_tensor_release(&tdb);
}

/* Build, check and time case i: median seconds of fwd+bwd and fwd. */
static void time_nabla(int i, int reps, double *fb, double *fw)
{
    const ncase *c = &cases[i];
    int nd = c->bn ? 4 : 2;
    int64_t A = c->d[1];
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", NB_F32, nd, c->d);
    nb_node *gamma = nb_param(g, "weight", NB_F32, 1, &A);
    nb_node *beta = nb_param(g, "bias", NB_F32, 1, &A);
    nb_node *y;
    if (c->bn) {
        nb_node *rm = nb_state(g, "running_mean", NB_F32, 1, &A);
        nb_node *rv = nb_state(g, "running_var", NB_F32, 1, &A);
        nb_tensor_fill(nb_node_value(rv), 1.0);
        y = nb_batch_norm(g, x, gamma, beta, rm, rv, true, 0.1, 1e-5);
    } else {
        y = nb_layer_norm(g, x, 1, gamma, beta, 1e-5);
    }
    nb_tensor_fill(nb_node_value(gamma), 1.0);
    nb_node *gy = nb_input(g, "gy", NB_F32, nd, c->d);
    nb_node *wrt[3] = {x, gamma, beta}, *grads[3] = {NULL, NULL, NULL};
    if (nb_vjp(g, y, gy, 3, wrt, grads) != NB_OK || nb_graph_status(g) != NB_OK)
        bench_die(BENCH, "building: %s", nb_graph_error(g));
    nb_node *outs[4] = {y, grads[0], grads[1], grads[2]};
    nb_plan *pfb = nb_compile(g, 4, outs, NULL), *pfw = nb_compile(g, 1, &y, NULL);
    if (!pfb || !pfw)
        bench_die(BENCH, "compile: %s", nb_last_error());
    nb_session *sfb = nb_session_new(pfb), *sfw = nb_session_new(pfw);
    if (!sfb || !sfw)
        bench_die(BENCH, "out of memory");
    int64_t nx = nb_shape_numel(nd, c->d);
    float *xv = random_floats(nx, 1 + (uint64_t)i, 0.5, 2.0);
    float *gv = random_floats(nx, 100 + (uint64_t)i, 0.0, 1.0);
    if (nb_session_feed_data(sfb, x, xv, (size_t)nx * 4) != NB_OK ||
        nb_session_feed_data(sfb, gy, gv, (size_t)nx * 4) != NB_OK ||
        nb_session_feed_data(sfw, x, xv, (size_t)nx * 4) != NB_OK)
        bench_die(BENCH, "feed: %s", nb_last_error());
    bench_run_session(sfb);
    check_grads(c, sfb, grads[0], grads[2], gv);
    *fb = bench_time(bench_run_session, sfb, reps);
    *fw = bench_time(bench_run_session, sfw, reps);
    bench_note(BENCH, "%s: nabla fwd+bwd %.3f ms, fwd %.3f ms", c->label, *fb * 1e3, *fw * 1e3);
    free(xv);
    free(gv);
    nb_session_free(sfb);
    nb_session_free(sfw);
    nb_plan_free(pfb);
    nb_plan_free(pfw);
    nb_graph_free(g);
}

/* ROUNDS rounds of (all nabla cases, then the PyTorch peer); each side keeps
 * its best median per case, so a busy phase of a shared machine that hits
 * one side in one round does not decide the ratio. */
#define ROUNDS 2

int main(void)
{
    int reps = bench_reps(), threads = torch_peer_threads(BENCH, reps);
    bench_note(BENCH, "%d rounds, each side keeps its best median", ROUNDS);
    torch_peer tp;
    torch_peer_start(&tp, BENCH, "torch_normalization.py", threads);
    int pc[N_CASES]; /* the peer's case indices */
    for (int i = 0; i < N_CASES; i++) {
        const int64_t *d = cases[i].d;
        char spec[128];
        if (cases[i].bn)
            snprintf(spec, sizeof spec, "bn,%lld,%lld,%lld,%lld", (long long)d[0], (long long)d[1],
                     (long long)d[2], (long long)d[3]);
        else
            snprintf(spec, sizeof spec, "ln,%lld,%lld", (long long)d[0], (long long)d[1]);
        pc[i] = torch_peer_case(&tp, spec);
    }
    double nb_fb[N_CASES], nb_fw[N_CASES], t_fb[N_CASES], t_fw[N_CASES];
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < N_CASES; i++) {
            double fb, fw;
            time_nabla(i, reps, &fb, &fw);
            nb_fb[i] = r == 0 || fb < nb_fb[i] ? fb : nb_fb[i];
            nb_fw[i] = r == 0 || fw < nb_fw[i] ? fw : nb_fw[i];
        }
        for (int i = 0; i < N_CASES; i++) {
            double fb = torch_peer_time(&tp, pc[i], "fb", reps);
            double fw = torch_peer_time(&tp, pc[i], "fw", reps);
            t_fb[i] = r == 0 || fb < t_fb[i] ? fb : t_fb[i];
            t_fw[i] = r == 0 || fw < t_fw[i] ? fw : t_fw[i];
        }
    }
    torch_peer_stop(&tp);
    for (int i = 0; i < N_CASES; i++) {
        char name[160];
        double bytes = 4.0 * 4.0 * (double)nb_shape_numel(cases[i].bn ? 4 : 2, cases[i].d);
        snprintf(name, sizeof name, "%s_fwd_bwd", cases[i].label);
        bench_emit(BENCH, name, "time_ms", nb_fb[i] * 1e3, "torch", t_fb[i] * 1e3);
        snprintf(name, sizeof name, "%s_fwd", cases[i].label);
        bench_emit(BENCH, name, "time_ms", nb_fw[i] * 1e3, "torch", t_fw[i] * 1e3);
        snprintf(name, sizeof name, "%s_fwd_bwd", cases[i].label);
        bench_emit_alone(BENCH, name, "gb_per_s", bytes / nb_fb[i] / 1e9);
    }
    return 0;
}
