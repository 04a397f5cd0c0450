/* overhead: what nabla costs per tape entry when the work itself is nothing.
 *
 * The graph is a chain of 10,000 scalar (0-d f32) ops, y = y * c then
 * y = y + 1 alternately (c = -1, so every pair maps y back to itself and the
 * result and gradient can be checked exactly). Each op is one tape entry, so
 * run time / entries is the executor's per-entry cost: dispatch, argument
 * set-up, arena addressing. The peer does the same 10,000 scalar ops as a
 * plain C loop calling through a table of function pointers ("c_fnptr_loop"),
 * the least an interpreter of a tape can do.
 *
 * Also timed, without a peer: "compile_ms", nb_compile of the forward chain,
 * and "grad_compile_ms", nb_grad of the chain's end with respect to its start
 * plus nb_compile of (loss, gradient) as a training step would compile it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "nabla.h"

#define BENCH "overhead"
#define CHAIN 10000
#define C_MUL (-1.0)
#define X0 1.5

typedef float (*scalar_op)(float y, float k);

/* The peer's tape: one function pointer and one operand per op. Not static
 * and filled at run time, so the compiler cannot resolve the calls. */
scalar_op peer_ops[CHAIN];
float peer_args[CHAIN];
volatile float peer_sink;

__attribute__((noinline)) static float op_mul(float y, float k) { return y * k; }
__attribute__((noinline)) static float op_add(float y, float k) { return y + k; }

static void peer_setup(void)
{
    for (int i = 0; i < CHAIN; i++) {
        peer_ops[i] = i % 2 ? op_add : op_mul;
        peer_args[i] = i % 2 ? 1.0f : (float)C_MUL;
    }
}

static void run_peer(void *p)
{
    float y = *(const float *)p;
    for (int i = 0; i < CHAIN; i++)
        y = peer_ops[i](y, peer_args[i]);
    peer_sink = y;
}

/* The chain from a parameter x (set to X0); *x_out gets x, returns the end. */
static nb_node *build_chain(nb_graph *g, nb_node **x_out)
{
    static const int64_t no_dims[1] = {0}; /* 0-d: read by no one */
    nb_node *x = nb_param(g, "x", NB_F32, 0, no_dims);
    nb_node *c = nb_scalar(g, C_MUL, NB_F32);
    nb_node *one = nb_scalar(g, 1.0, NB_F32);
    nb_node *y = x;
    for (int i = 0; i < CHAIN; i++)
        y = i % 2 ? nb_add(g, y, one) : nb_mul(g, y, c);
    if (nb_graph_status(g) != NB_OK)
        bench_die(BENCH, "graph: %s", nb_graph_error(g));
    nb_tensor_fill(nb_node_value(x), X0);
    *x_out = x;
    return y;
}

static nb_graph *new_graph(void)
{
    nb_graph *g = nb_graph_new();
    if (!g)
        bench_die(BENCH, "out of memory");
    return g;
}

static nb_plan *compile_or_die(nb_graph *g, int n, nb_node *const *outs)
{
    nb_plan *p = nb_compile(g, n, outs, NULL);
    if (!p)
        bench_die(BENCH, "compile: %s", nb_last_error());
    return p;
}

/* The 0-d f32 value of node n after a run of s. */
static double fetch_scalar(nb_session *s, const nb_node *n)
{
    nb_tensor t;
    if (nb_session_fetch(s, n, &t) != NB_OK)
        bench_die(BENCH, "fetch: %s", nb_last_error());
    double v = nb_tensor_get_flat(&t, 0);
    nb_tensor_release(&t);
    return v;
}

/* Forward run per entry against the function-pointer loop. */
static void bench_run(int reps)
{
    nb_node *x;
    nb_graph *g = new_graph();
    nb_node *end = build_chain(g, &x);
    nb_plan *plan = compile_or_die(g, 1, &end);
    nb_session *s = nb_session_new(plan);
    if (!s)
        bench_die(BENCH, "session: out of memory");
    int entries = nb_plan_num_entries(plan);
    float x0 = (float)X0;
    bench_run_session(s);
    run_peer(&x0);
    if (fetch_scalar(s, end) != X0 || peer_sink != (float)X0)
        bench_die(BENCH, "chain gives %g (nabla) and %g (peer), not %g", fetch_scalar(s, end),
                  (double)peer_sink, X0);
    bench_note(BENCH, "forward plan: %d entries for %d ops", entries, CHAIN);

    double tn, tp;
    bench_time_pair(bench_run_session, s, run_peer, &x0, reps, &tn, &tp);
    bench_emit(BENCH, "chain_10000_scalar", "us_per_entry", tn / entries * 1e6, "c_fnptr_loop",
               tp / CHAIN * 1e6);
    nb_session_free(s);
    nb_plan_free(plan);
    nb_graph_free(g);
}

/* Median ms of nb_compile of the forward chain; a repetition is a batch of
 * compiles lasting >= BENCH_MIN_REP_S (frees are not timed). */
static void bench_compile(int reps)
{
    nb_node *x;
    nb_graph *g = new_graph();
    nb_node *end = build_chain(g, &x);
    double t0 = bench_now();
    nb_plan_free(compile_or_die(g, 1, &end));
    int batch = (int)ceil(BENCH_MIN_REP_S / fmax(bench_now() - t0, 1e-6));
    nb_plan **plans = malloc(sizeof *plans * (size_t)batch);
    double *t = malloc(sizeof *t * (size_t)reps);
    if (!plans || !t)
        bench_die(BENCH, "out of memory");
    for (int r = 0; r < reps; r++) {
        t0 = bench_now();
        for (int i = 0; i < batch; i++)
            plans[i] = compile_or_die(g, 1, &end);
        t[r] = (bench_now() - t0) / batch;
        for (int i = 0; i < batch; i++)
            nb_plan_free(plans[i]);
    }
    bench_emit_alone(BENCH, "chain_10000_scalar", "compile_ms", bench_median(t, reps) * 1e3);
    free(t);
    free(plans);
    nb_graph_free(g);
}

/* nb_grad + nb_compile(loss, grad) on a fresh graph; returns seconds. With
 * `check`, also runs the plan and checks loss and gradient. */
static double grad_compile_once(nb_graph *g, nb_node *x, nb_node *end, bool check)
{
    nb_node *outs[2] = {end, NULL};
    double t0 = bench_now();
    if (nb_grad(g, end, 1, &x, &outs[1]) != NB_OK)
        bench_die(BENCH, "nb_grad: %s", nb_last_error());
    nb_plan *p = compile_or_die(g, 2, outs);
    double dt = bench_now() - t0;
    if (check) {
        nb_session *s = nb_session_new(p);
        if (!s || nb_session_run(s) != NB_OK)
            bench_die(BENCH, "grad run: %s", nb_last_error());
        double v = fetch_scalar(s, end), d = fetch_scalar(s, outs[1]);
        if (v != X0 || d != 1.0)
            bench_die(BENCH, "loss %g and gradient %g, expected %g and 1", v, d, X0);
        bench_note(BENCH, "loss+grad plan: %d entries", nb_plan_num_entries(p));
        nb_session_free(s);
    }
    nb_plan_free(p);
    return dt;
}

/* Median ms of grad + compile. Each repetition is a batch on fresh graphs
 * (built and freed untimed), the batch lasting >= BENCH_MIN_REP_S. */
static void bench_grad_compile(int reps)
{
    nb_node *x, *end;
    nb_graph *g = new_graph();
    end = build_chain(g, &x);
    double once = grad_compile_once(g, x, end, true);
    nb_graph_free(g);
    int batch = (int)ceil(BENCH_MIN_REP_S / fmax(once, 1e-6));
    double *t = malloc(sizeof *t * (size_t)reps);
    if (!t)
        bench_die(BENCH, "out of memory");
    for (int r = 0; r < reps; r++) {
        double sum = 0;
        for (int i = 0; i < batch; i++) {
            g = new_graph();
            end = build_chain(g, &x);
            sum += grad_compile_once(g, x, end, false);
            nb_graph_free(g);
        }
        t[r] = sum / batch;
    }
    bench_emit_alone(BENCH, "chain_10000_scalar", "grad_compile_ms",
                     bench_median(t, reps) * 1e3);
    free(t);
}

int main(void)
{
    int reps = bench_reps();
    bench_note(BENCH, "threads %d; %d repetitions, median", nb_get_num_threads(), reps);
    peer_setup();
    bench_run(reps);
    bench_compile(reps);
    bench_grad_compile(reps);
    return 0;
}
