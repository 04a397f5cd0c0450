/* One compiled plan, run from two threads at once, each through its own
 * session: both must give the single-threaded result on every run. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "check_main.h"
#include "nabla.h"

#define N 64
#define D 256
#define RUNS 40

typedef struct {
    const nb_plan *plan;
    nb_node *x, *y;
    float input[N * D];
    float expected[N * 10];
    int mismatches;
    nb_status status;
} worker;

/* A 2-layer MLP with softmax, big enough that kernels use the thread pool. */
static void build(nb_graph *g, nb_node **x, nb_node **y)
{
    nb_rng rng;
    nb_rng_init(&rng, 7);
    *x = nb_input(g, "x", NB_F32, 2, (int64_t[]){N, D});
    nb_node *w1 = nb_param(g, "w1", NB_F32, 2, (int64_t[]){D, 128});
    nb_node *w2 = nb_param(g, "w2", NB_F32, 2, (int64_t[]){128, 10});
    nb_rng_fill_uniform(&rng, nb_node_value(w1), -0.1, 0.1);
    nb_rng_fill_uniform(&rng, nb_node_value(w2), -0.1, 0.1);
    nb_node *h = nb_tanh(g, nb_matmul(g, *x, w1));
    *y = nb_softmax(g, nb_matmul(g, h, w2), -1);
}

static nb_status run_once(nb_session *s, nb_node *x, nb_node *y, const float *in, float *out)
{
    nb_status st = nb_session_feed_data(s, x, in, sizeof(float) * N * D);
    if (st == NB_OK)
        st = nb_session_run(s);
    nb_tensor t = {0};
    if (st == NB_OK)
        st = nb_session_fetch(s, y, &t);
    if (st == NB_OK)
        memcpy(out, nb_tensor_data(&t), sizeof(float) * N * 10);
    nb_tensor_release(&t);
    return st;
}

static void *work(void *arg)
{
    worker *w = arg;
    nb_session *s = nb_session_new(w->plan);
    float out[N * 10];
    for (int r = 0; r < RUNS && s; r++) {
        w->status = run_once(s, w->x, w->y, w->input, out);
        if (w->status != NB_OK)
            break;
        for (int i = 0; i < N * 10; i++)
            w->mismatches += out[i] != w->expected[i];
    }
    nb_session_free(s);
    return NULL;
}

START_TEST(two_threads_one_plan)
{
    nb_graph *g = nb_graph_new();
    nb_node *x, *y;
    build(g, &x, &y);
    nb_plan *p = nb_compile(g, 1, &y, NULL);
    ck_assert_ptr_nonnull(p);
    static worker w[2];
    nb_rng rng;
    nb_rng_init(&rng, 11);
    nb_session *ref = nb_session_new(p);
    for (int k = 0; k < 2; k++) {
        w[k] = (worker){.plan = p, .x = x, .y = y};
        for (int i = 0; i < N * D; i++)
            w[k].input[i] = (float)(nb_rng_uniform(&rng) * 2 - 1);
        ck_assert_int_eq(run_once(ref, x, y, w[k].input, w[k].expected), NB_OK);
    }
    nb_session_free(ref);
    /* the two inputs differ, so a session mixing them up would be caught */
    ck_assert(memcmp(w[0].expected, w[1].expected, sizeof(w[0].expected)) != 0);
    pthread_t th[2];
    for (int k = 0; k < 2; k++)
        pthread_create(&th[k], NULL, work, &w[k]);
    for (int k = 0; k < 2; k++)
        pthread_join(th[k], NULL);
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(w[k].status, NB_OK);
        ck_assert_int_eq(w[k].mismatches, 0);
    }
    /* each row of a softmax sums to one */
    for (int i = 0; i < N; i++) {
        float sum = 0;
        for (int j = 0; j < 10; j++)
            sum += w[0].expected[i * 10 + j];
        ck_assert_float_eq_tol(sum, 1.0f, 1e-5);
    }
    nb_plan_free(p);
    nb_graph_free(g);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("threads");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, two_threads_one_plan);
    suite_add_tcase(s, tc);
    return nb_run_suite(s);
}
