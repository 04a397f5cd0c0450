/* Timing and reporting helpers shared by the benchmarks.
 *
 * Measurement: a function under test is first warmed up, then calibrated to a
 * number of calls `iters` such that one repetition (iters back-to-back calls)
 * takes at least BENCH_MIN_REP_S. Each repetition gives a time per call; the
 * figure reported is the MEDIAN over the repetitions (robust against the odd
 * slow repetition on a shared machine, unlike the mean, and less optimistic
 * than the best).
 *
 * When nabla and a peer are compared, their repetitions are interleaved
 * (nabla, peer, nabla, peer, ...) so that a slow phase of the machine hits
 * both sides alike.
 *
 * Output: one JSON line per figure on stdout, in the form DESIGN.md shows:
 *   {"bench": "matmul", "case": "1024x1024x1024", "metric": "time_ms",
 *    "nabla": 11.2, "peer": "cblas_sgemm", "peer_value": 11.0, "ratio": 1.02}
 * with ratio = nabla / peer. Progress and notes go to stderr.
 */
#ifndef NB_BENCH_COMMON_H
#define NB_BENCH_COMMON_H

#include <stdint.h>

#define BENCH_MIN_REP_S 0.05 /* one repetition lasts at least this long */
#define BENCH_DEFAULT_REPS 11

/* The code under test: one call = one unit of work (a run, a GEMM, ...). */
typedef void (*bench_fn)(void *ctx);

/* Seconds on CLOCK_MONOTONIC. */
double bench_now(void);

/* Calls per repetition so that one repetition takes >= min_s (at least 1).
 * Also serves as warm-up: fn runs several times before the count is fixed. */
int64_t bench_calibrate(bench_fn fn, void *ctx, double min_s);

/* Seconds per call of one repetition of `iters` calls. */
double bench_rep(bench_fn fn, void *ctx, int64_t iters);

/* Median over `reps` repetitions of the seconds per call of fn. */
double bench_time(bench_fn fn, void *ctx, int reps);

/* Interleaved comparison of n functions: sec[i] = median seconds per call of
 * fns[i], each calibrated on its own, repetitions taken in turn
 * (0, 1, ..., n-1, 0, 1, ...). */
void bench_time_multi(int n, const bench_fn *fns, void *const *ctxs, int reps, double *sec);

/* bench_time_multi for two: a (nabla) and b (its peer). */
void bench_time_pair(bench_fn a, void *ctx_a, bench_fn b, void *ctx_b, int reps,
                     double *sec_a, double *sec_b);

/* Median of n values (sorts v in place). */
double bench_median(double *v, int n);

/* One figure with a peer: prints the JSON line, ratio = nabla / peer_value. */
void bench_emit(const char *bench, const char *bcase, const char *metric, double nabla,
                const char *peer, double peer_value);

/* One figure without a peer: "peer", "peer_value" and "ratio" are null. */
void bench_emit_alone(const char *bench, const char *bcase, const char *metric, double nabla);

/* Repetitions to take: BENCH_REPS from the environment, else BENCH_DEFAULT_REPS. */
int bench_reps(void);

/* A progress note on stderr, prefixed with the bench name. */
void bench_note(const char *bench, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A bench_fn that runs one nabla session (ctx is the nb_session *) and
 * exits naming the failure if the run fails. */
void bench_run_session(void *session);

/* Exit with a message on stderr (for setup failures of the bench itself). */
void bench_die(const char *bench, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

#endif
