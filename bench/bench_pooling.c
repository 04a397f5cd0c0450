/* pooling: max_pool2d forward + backward (f32, NCHW) at the sizes of a
 * Fashion-MNIST CNN (2x2 pools after its two conv layers, batch 128) and of
 * the ResNet-18 stem (3x3, stride 2, padding 1, on 112x112, batch 8), against
 * PyTorch's CPU ops with the same thread count.
 *
 * nabla: one compiled graph with inputs x and gy and outputs y = max_pool2d(x)
 * and dx = its VJP with seed gy (nb_vjp), i.e. what a training step runs; a
 * second plan computes y alone. Only nb_session_run is timed (inputs fed once).
 * PyTorch: bench/torch_pooling.py, a child process of this one driven through
 * pipes (bench/torch_peer.h): x.requires_grad, y = F.max_pool2d(x),
 * y.backward(gy); and the forward under no_grad. Each side is calibrated on
 * its own, then repetitions alternate (nabla, PyTorch, nabla, ...) so that a
 * slow phase of the shared machine hits both; the figure is the median
 * (bench/common.h).
 *
 * Figures: time_ms of fwd+bwd and of fwd, ratio = nabla / PyTorch (below 1 is
 * better), and nabla's effective bandwidth (bytes one fwd+bwd must move: x
 * read twice, gy, y and dx; GB = 1e9 bytes) without a peer.
 */
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "nabla.h"
#include "torch_peer.h"

#define BENCH "pooling"

typedef struct pcase {
    int64_t n, c, h, w, k, s, p;
    const char *label;
} pcase;

static const pcase cases[] = {
    {128, 32, 28, 28, 2, 2, 0, "fmnist1_128x32x28x28_k2s2"},
    {128, 64, 14, 14, 2, 2, 0, "fmnist2_128x64x14x14_k2s2"},
    {8, 64, 112, 112, 3, 2, 1, "resnet18_stem_8x64x112x112_k3s2p1"},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static float *random_floats(int64_t n, uint64_t seed)
{
    float *v = malloc((size_t)n * sizeof(float));
    if (!v)
        bench_die(BENCH, "out of memory");
    nb_rng r;
    nb_rng_init(&r, seed);
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)nb_rng_normal(&r);
    return v;
}

static double sum_of(nb_session *s, const nb_node *n)
{
    nb_tensor t;
    if (nb_session_fetch(s, n, &t) != NB_OK)
        bench_die(BENCH, "fetch: %s", nb_last_error());
    double acc = 0;
    const float *d = nb_tensor_data(&t);
    for (int64_t i = 0; i < nb_tensor_numel(&t); i++)
        acc += d[i];
    nb_tensor_release(&t);
    return acc;
}

int main(void)
{
    int reps = bench_reps(), threads = torch_peer_threads(BENCH, reps);
    torch_peer tp;
    torch_peer_start(&tp, BENCH, "torch_pooling.py", threads);

    for (int i = 0; i < N_CASES; i++) {
        const pcase *c = &cases[i];
        nb_graph *g = nb_graph_new();
        int64_t xs[4] = {c->n, c->c, c->h, c->w};
        nb_node *x = nb_input(g, "x", NB_F32, 4, xs);
        nb_pool_args a = {{c->k, c->k}, {c->s, c->s}, {c->p, c->p}, false, true};
        nb_node *y = nb_max_pool2d(g, x, &a);
        nb_node *gy = nb_input(g, "gy", NB_F32, 4, nb_node_shape(y));
        nb_node *dx = NULL;
        if (nb_vjp(g, y, gy, 1, &x, &dx) != NB_OK || nb_graph_status(g) != NB_OK)
            bench_die(BENCH, "building: %s", nb_graph_error(g));
        nb_node *outs[2] = {y, dx};
        nb_plan *pfb = nb_compile(g, 2, outs, NULL), *pfw = nb_compile(g, 1, &y, NULL);
        if (!pfb || !pfw)
            bench_die(BENCH, "compile: %s", nb_last_error());
        nb_session *sfb = nb_session_new(pfb), *sfw = nb_session_new(pfw);
        if (!sfb || !sfw)
            bench_die(BENCH, "out of memory");
        int64_t nx = nb_shape_numel(4, xs), ny = nb_node_numel(y);
        float *xv = random_floats(nx, 1 + (uint64_t)i), *gv = random_floats(ny, 100 + (uint64_t)i);
        if (nb_session_feed_data(sfb, x, xv, (size_t)nx * 4) != NB_OK ||
            nb_session_feed_data(sfb, gy, gv, (size_t)ny * 4) != NB_OK ||
            nb_session_feed_data(sfw, x, xv, (size_t)nx * 4) != NB_OK)
            bench_die(BENCH, "feed: %s", nb_last_error());
        bench_run_session(sfb);
        /* each gy lands on exactly one input position: sum(dx) == sum(gy) */
        double sdx = sum_of(sfb, dx), sgy = 0, sabs = 0;
        for (int64_t j = 0; j < ny; j++) {
            sgy += gv[j];
            sabs += gv[j] < 0 ? -gv[j] : gv[j];
        }
        if (!(sdx - sgy <= 1e-5 * sabs && sgy - sdx <= 1e-5 * sabs))
            bench_die(BENCH, "%s: sum(dx) %.6g != sum(gy) %.6g", c->label, sdx, sgy);

        char spec[128], name[160];
        snprintf(spec, sizeof spec, "%lld,%lld,%lld,%lld,%lld,%lld,%lld", (long long)c->n,
                 (long long)c->c, (long long)c->h, (long long)c->w, (long long)c->k,
                 (long long)c->s, (long long)c->p);
        int pc = torch_peer_case(&tp, spec);
        double nb_fb, t_fb, nb_fw, t_fw;
        torch_peer_time_pair(&tp, bench_run_session, sfb, pc, "fb", reps, &nb_fb, &t_fb);
        torch_peer_time_pair(&tp, bench_run_session, sfw, pc, "fw", reps, &nb_fw, &t_fw);
        snprintf(name, sizeof name, "max_pool2d_fwd_bwd_%s", c->label);
        bench_emit(BENCH, name, "time_ms", nb_fb * 1e3, "torch", t_fb * 1e3);
        snprintf(name, sizeof name, "max_pool2d_fwd_%s", c->label);
        bench_emit(BENCH, name, "time_ms", nb_fw * 1e3, "torch", t_fw * 1e3);
        /* bytes one fwd+bwd must move: read x twice and gy, write y and dx */
        double bytes = 4.0 * (double)(3 * nx + 2 * ny);
        snprintf(name, sizeof name, "max_pool2d_fwd_bwd_%s", c->label);
        bench_emit_alone(BENCH, name, "gb_per_s", bytes / nb_fb / 1e9);

        free(xv);
        free(gv);
        nb_session_free(sfb);
        nb_session_free(sfw);
        nb_plan_free(pfb);
        nb_plan_free(pfw);
        nb_graph_free(g);
    }
    torch_peer_stop(&tp);
    return 0;
}
