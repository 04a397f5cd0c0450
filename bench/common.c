/* Timing and reporting helpers shared by the benchmarks (see common.h). */
#include "common.h"

#include "graph/session.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double bench_rep(bench_fn fn, void *ctx, int64_t iters)
{
    double t0 = bench_now();
    for (int64_t i = 0; i < iters; i++)
        fn(ctx);
    return (bench_now() - t0) / (double)iters;
}

int64_t bench_calibrate(bench_fn fn, void *ctx, double min_s)
{
    fn(ctx); /* first call pays for page faults and lazy set-up */
    int64_t iters = 1;
    for (;;) {
        double total = bench_rep(fn, ctx, iters) * (double)iters;
        if (total >= min_s)
            return iters;
        if (total < min_s / 10)
            iters *= 10;
        else
            iters = (int64_t)ceil((double)iters * 1.1 * min_s / total);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double bench_time(bench_fn fn, void *ctx, int reps)
{
    double *t = malloc(sizeof(double) * (size_t)reps);
    if (!t)
        bench_die("common", "out of memory");
    int64_t iters = bench_calibrate(fn, ctx, BENCH_MIN_REP_S);
    for (int r = 0; r < reps; r++)
        t[r] = bench_rep(fn, ctx, iters);
    double med = bench_median(t, reps);
    free(t);
    return med;
}

void bench_time_multi(int n, const bench_fn *fns, void *const *ctxs, int reps, double *sec)
{
    double *t = malloc(sizeof(double) * (size_t)(n * reps));
    int64_t *iters = malloc(sizeof(int64_t) * (size_t)n);
    if (!t || !iters)
        bench_die("common", "out of memory");
    for (int i = 0; i < n; i++)
        iters[i] = bench_calibrate(fns[i], ctxs[i], BENCH_MIN_REP_S);
    for (int r = 0; r < reps; r++)
        for (int i = 0; i < n; i++)
            t[i * reps + r] = bench_rep(fns[i], ctxs[i], iters[i]);
    for (int i = 0; i < n; i++)
        sec[i] = bench_median(t + i * reps, reps);
    free(iters);
    free(t);
}

void bench_time_pair(bench_fn a, void *ctx_a, bench_fn b, void *ctx_b, int reps,
                     double *sec_a, double *sec_b)
{
    bench_fn fns[2] = {a, b};
    void *ctxs[2] = {ctx_a, ctx_b};
    double sec[2];
    bench_time_multi(2, fns, ctxs, reps, sec);
    *sec_a = sec[0];
    *sec_b = sec[1];
}

/* A JSON number, or null for NaN/inf (which JSON cannot hold). */
static void put_num(double v, const char *fmt)
{
    if (isfinite(v))
        printf(fmt, v);
    else
        fputs("null", stdout);
}

static void put_head(const char *bench, const char *bcase, const char *metric, double nabla)
{
    printf("{\"bench\": \"%s\", \"case\": \"%s\", \"metric\": \"%s\", \"nabla\": ", bench,
           bcase, metric);
    put_num(nabla, "%.4g");
}

void bench_emit(const char *bench, const char *bcase, const char *metric, double nabla,
                const char *peer, double peer_value)
{
    put_head(bench, bcase, metric, nabla);
    printf(", \"peer\": \"%s\", \"peer_value\": ", peer);
    put_num(peer_value, "%.4g");
    fputs(", \"ratio\": ", stdout);
    put_num(peer_value != 0 ? nabla / peer_value : NAN, "%.3g");
    fputs("}\n", stdout);
    fflush(stdout);
}

void bench_emit_alone(const char *bench, const char *bcase, const char *metric, double nabla)
{
    put_head(bench, bcase, metric, nabla);
    fputs(", \"peer\": null, \"peer_value\": null, \"ratio\": null}\n", stdout);
    fflush(stdout);
}

int bench_reps(void)
{
    const char *s = getenv("BENCH_REPS");
    int n = s ? atoi(s) : 0;
    return n > 0 ? n : BENCH_DEFAULT_REPS;
}

void bench_note(const char *bench, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%s] ", bench);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void bench_die(const char *bench, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%s] error: ", bench);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void bench_run_session(void *session)
{
    if (nb_session_run(session) != NB_OK)
        bench_die("bench", "nb_session_run: %s", nb_last_error());
}
