/* onnx_resnet18 / onnx_mobilenet_v2: a torchvision model exported to ONNX
 * (tests/gen_onnx_models.py, random weights from a fixed seed), 224x224,
 * run by nabla beside ONNX Runtime (CPU execution provider) and PyTorch
 * eager (bench/onnx_peer.py), all with the same thread count: 2, or
 * NABLA_NUM_THREADS when set.
 *
 * Each runtime runs in a process of its own, driven through pipes one
 * request at a time: nabla's is this program again ("--serve"), the peers
 * are python3 bench/onnx_peer.py. Figures, for batch 1 and batch 8:
 *  - latency P50 and P99 over BENCH_RUNS runs (default 100 at both batch
 *    sizes; P99 by nearest rank, so the second largest: over 50 runs it
 *    would be the largest, one unlucky run on this shared machine),
 *    each run timed on its own inside its process; the runs are taken in
 *    blocks of 5, the runtimes in turn (in an order that changes every
 *    round, so each follows each other equally often), so that a slow
 *    phase of this shared machine hits all alike, with a pause after each
 *    block for the last runtime's spinning threads to stop (PAUSE_MS); 5
 *    warm-up runs first;
 *  - peak resident memory (VmHWM) of each process after its runs: for the
 *    peers this includes the Python interpreter and the imported modules,
 *    as it does for a user of them;
 *  - load_ms (reading the model) and first_run_ms (the first run, where
 *    plans and caches are made) inside those processes;
 * and for batch 1, time to first result: the wall time of a fresh process
 * that starts, loads the model, runs it once and writes the output (.npy),
 * the median of BENCH_FIRST_REPS (default 5). nabla's is this program with
 * "--first" (what `nabla run model.onnx -i x.npy -o DIR` does); the peers'
 * are python3 processes, whose start-up and imports (numpy, onnxruntime or
 * torch + torchvision) are part of their cost, as for a user. The outputs of
 * those runs are compared (nabla against each peer, 1e-3 of the largest);
 * a mismatch stops the bench.
 *
 * BENCH_TRACE=1 writes every run's time to stderr as it comes back
 * ("trace RUNTIME: t1 t2 ... ms", one line a block, warm-up runs included,
 * in the order the blocks ran), to see where a P99 comes from: which
 * block, and which runtime ran just before it.
 *
 * ratio = nabla / peer for every figure (below 1: nabla better). Without
 * onnxruntime (pip install onnxruntime) only PyTorch is reported, and a note
 * says why. The models are generated into NABLA_BENCH_ONNX_DIR, by default
 * onnx_bench_models/ in the build directory, unless already there.
 * Built twice by bench/meson.build, with MODEL "resnet18" and "mobilenet_v2".
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "nabla.h"

#ifndef MODEL
#error "MODEL must be defined (\"resnet18\" or \"mobilenet_v2\")"
#endif
#define BENCH "onnx_" MODEL
#define PYTHON "/usr/bin/python3"
#define WARMUP_RUNS 5
/* Runs a block. This machine has slow phases of a few seconds, in which
 * every runtime runs 1.3-2x slower; with blocks of 10, a round at batch 8
 * took 3 s, and one runtime's block could fall in such a phase while the
 * others' did not, moving its P50 by 10%. Shorter blocks spread the phases
 * more evenly over the runtimes. */
#define BLOCK_RUNS 5
/* Pause after each block: a runtime's worker threads keep spinning for a
 * while after its last run (PyTorch's OpenMP threads used 110 ms of CPU in
 * the 100 ms after a block of 10 MobileNetV2 runs, ONNX Runtime's 40 ms),
 * taking a core from whichever runtime's block comes next. */
#define PAUSE_MS 250
/* The runtimes' order in round r of blocks is ORDER[r % 6]: over six rounds
 * each runtime comes right after each other one equally often (3 times).
 * A plain rotation put nabla right after PyTorch in 2 rounds of 3 and ONNX
 * Runtime in 1, so whatever a runtime leaves behind (threads still running,
 * memory being freed) fell on the next one unevenly. The rounds of
 * time_to_first_result take the same orders. */
static const int ORDER[6][3] = {{0, 1, 2}, {0, 2, 1}, {2, 1, 0}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}};
#define MAX_RUNS 10000
#define OUT_TOL 1e-3

enum { RT_NABLA, RT_ORT, RT_TORCH, N_RT };
_Static_assert(N_RT == 3, "ORDER lists the orders of 3 runtimes");
static const char *const RT_NAME[N_RT] = {"nabla", "onnxruntime", "pytorch"};
static const char *const RT_ARG[N_RT] = {NULL, "ort", "torch"};

/* ---- paths ------------------------------------------------------------------- */

static char g_self[PATH_MAX];         /* this program */
static char g_peer[PATH_MAX + 64];    /* bench/onnx_peer.py */
static char g_gen[PATH_MAX + 64];     /* tests/gen_onnx_models.py */
static char g_mdir[PATH_MAX + 64];    /* the model's directory */

/* rel from the current directory (bench/run runs from the repository root),
 * else from the source tree (this file is bench/bench_onnx.c). */
static void source_path(const char *rel, char *buf, size_t size)
{
    snprintf(buf, size, "%s", rel);
    if (access(buf, R_OK) == 0)
        return;
    const char *src = __FILE__, *slash = strrchr(src, '/');
    if (snprintf(buf, size, "%.*s../%s", slash ? (int)(slash - src + 1) : 0, src, rel) >=
        (int)size)
        bench_die(BENCH, "path too long: %s", src);
}

static void model_path(const char *file, char *buf, size_t size)
{
    if (snprintf(buf, size, "%s/%s", g_mdir, file) >= (int)size)
        bench_die(BENCH, "path too long: %s/%s", g_mdir, file);
}

/* ---- the child modes: nabla's side --------------------------------------------- */

static double peak_rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = NAN;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kb = strtod(line + 6, NULL);
    if (f)
        fclose(f);
    return kb / 1024.0;
}

/* One run of m on x; outputs released. */
static nb_status run_once(nb_onnx_model *m, const nb_tensor *x)
{
    nb_tensor out[NB_ONNX_MAX_IO] = {{0}};
    int n_out = NB_ONNX_MAX_IO;
    nb_status st = nb_onnx_run(m, 1, x, &n_out, out);
    for (int k = 0; st == NB_OK && k < n_out; k++)
        nb_tensor_release(&out[k]);
    return st;
}

/* --serve MODEL.onnx INPUT.npy THREADS: the protocol of bench/onnx_peer.py. */
static int serve_main(const char *model, const char *input, int threads)
{
    nb_set_num_threads(threads);
    nb_tensor x = {0};
    nb_onnx_model *m = NULL;
    if (nb_npy_load(input, &x) != NB_OK) {
        printf("error: nabla: %s\n", nb_last_error());
        return 1;
    }
    double t0 = bench_now();
    if (nb_onnx_load(model, &m) != NB_OK) {
        printf("error: nabla: %s\n", nb_last_error());
        nb_tensor_release(&x);
        return 1;
    }
    printf("ready %.9g\n", bench_now() - t0);
    fflush(stdout);
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        int k;
        if (sscanf(line, "run %d", &k) == 1) {
            for (int i = 0; i < k; i++) {
                double t = bench_now();
                if (run_once(m, &x) != NB_OK) {
                    printf("%serror: nabla run: %s", i ? "\n" : "", nb_last_error());
                    break;
                }
                printf("%s%.9g", i ? " " : "", bench_now() - t);
            }
            printf("\n");
        } else if (strncmp(line, "rss", 3) == 0) {
            printf("%.6g\n", peak_rss_mb());
        } else {
            break; /* quit, or anything else */
        }
        fflush(stdout);
    }
    nb_onnx_free(m);
    nb_tensor_release(&x);
    return 0;
}

/* --first MODEL.onnx INPUT.npy THREADS OUT.npy: load, run once, write the
 * first output: what `nabla run MODEL -i INPUT -o DIR` does. */
static int first_main(const char *model, const char *input, int threads, const char *out_path)
{
    nb_set_num_threads(threads);
    nb_tensor x = {0}, out[NB_ONNX_MAX_IO] = {{0}};
    nb_onnx_model *m = NULL;
    int n_out = NB_ONNX_MAX_IO;
    if (nb_npy_load(input, &x) != NB_OK || nb_onnx_load(model, &m) != NB_OK ||
        nb_onnx_run(m, 1, &x, &n_out, out) != NB_OK || nb_npy_save(out_path, &out[0]) != NB_OK) {
        fprintf(stderr, "[" BENCH "] nabla --first: %s\n", nb_last_error());
        return 1;
    }
    for (int k = 0; k < n_out; k++)
        nb_tensor_release(&out[k]);
    nb_onnx_free(m);
    nb_tensor_release(&x);
    return 0;
}

/* ---- child processes ------------------------------------------------------------ */

/* Runs argv to completion with our stdout sent to stderr; its exit status
 * (-1 if it did not exit normally), *wall_s the wall time from fork to exit. */
static int run_child(char *const argv[], double *wall_s)
{
    fflush(NULL);
    double t0 = bench_now();
    pid_t pid = fork();
    if (pid < 0)
        bench_die(BENCH, "fork failed: %s", strerror(errno));
    if (pid == 0) {
        dup2(STDERR_FILENO, STDOUT_FILENO); /* keep our stdout for the JSON lines */
        execv(argv[0], argv);
        fprintf(stderr, "[%s] cannot run %s: %s\n", BENCH, argv[0], strerror(errno));
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) < 0)
        bench_die(BENCH, "waitpid failed: %s", strerror(errno));
    if (wall_s)
        *wall_s = bench_now() - t0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A runtime serving requests (bench/onnx_peer.py's protocol). */
typedef struct server {
    int rt;
    pid_t pid;
    FILE *to, *from;
    double load_s;
} server;

static char g_reply[1 << 20];

/* Sends a request and reads its reply line into g_reply; false (with the
 * reason in g_reply) on EOF or an "error" reply. */
static bool ask(server *s, const char *req)
{
    if (fprintf(s->to, "%s\n", req) < 0 || fflush(s->to) != 0 ||
        !fgets(g_reply, sizeof g_reply, s->from)) {
        snprintf(g_reply, sizeof g_reply, "%s stopped answering", RT_NAME[s->rt]);
        return false;
    }
    g_reply[strcspn(g_reply, "\n")] = 0;
    return strstr(g_reply, "error") == NULL;
}

static void server_stop(server *s)
{
    if (!s->to)
        return;
    fprintf(s->to, "quit\n");
    fclose(s->to);
    fclose(s->from);
    int st;
    waitpid(s->pid, &st, 0);
    s->to = s->from = NULL;
}

/* Starts runtime rt on input x_npy; false (reason noted) if it does not
 * come up, which is fatal for nabla and PyTorch. */
static bool server_start(server *s, int rt, const char *x_npy, int threads)
{
    char model[PATH_MAX + 80], nthreads[16];
    model_path("model.onnx", model, sizeof model);
    snprintf(nthreads, sizeof nthreads, "%d", threads);
    int to[2], from[2];
    if (pipe(to) != 0 || pipe(from) != 0)
        bench_die(BENCH, "pipe failed: %s", strerror(errno));
    /* our ends stay out of the runtimes started later */
    fcntl(to[1], F_SETFD, FD_CLOEXEC);
    fcntl(from[0], F_SETFD, FD_CLOEXEC);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        bench_die(BENCH, "fork failed: %s", strerror(errno));
    if (pid == 0) {
        dup2(to[0], STDIN_FILENO);
        dup2(from[1], STDOUT_FILENO);
        close(to[0]), close(to[1]), close(from[0]), close(from[1]);
        if (rt == RT_NABLA)
            execl(g_self, g_self, "--serve", model, x_npy, nthreads, (char *)NULL);
        else
            execl(PYTHON, "python3", g_peer, "serve", RT_ARG[rt], g_mdir, x_npy, nthreads,
                  (char *)NULL);
        printf("error: cannot run %s: %s\n", rt == RT_NABLA ? g_self : PYTHON, strerror(errno));
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    *s = (server){.rt = rt, .pid = pid, .to = fdopen(to[1], "w"), .from = fdopen(from[0], "r")};
    if (!s->to || !s->from)
        bench_die(BENCH, "fdopen failed");
    bool ok = fgets(g_reply, sizeof g_reply, s->from) != NULL;
    g_reply[strcspn(g_reply, "\n")] = 0;
    if (ok && sscanf(g_reply, "ready %lf", &s->load_s) == 1)
        return true;
    char why[512];
    snprintf(why, sizeof why, "%.400s", ok ? g_reply : "it exited before saying ready");
    server_stop(s);
    if (rt != RT_ORT)
        bench_die(BENCH, "%s did not start: %s", RT_NAME[rt], why);
    bench_note(BENCH, "ONNX Runtime is unavailable (%s): reporting PyTorch only", why);
    return false;
}

static bool g_trace; /* BENCH_TRACE */

/* Asks for k runs; appends their times (seconds) to t[*n]. */
static void take_runs(server *s, int k, double *t, int *n)
{
    int n0 = *n;
    char req[32];
    snprintf(req, sizeof req, "run %d", k);
    if (!ask(s, req))
        bench_die(BENCH, "%s failed on \"%s\": %s", RT_NAME[s->rt], req, g_reply);
    char *p = g_reply, *end;
    for (int i = 0; i < k; i++, p = end) {
        double v = strtod(p, &end);
        if (end == p || *n >= MAX_RUNS)
            bench_die(BENCH, "%s: a malformed reply to \"%s\"", RT_NAME[s->rt], req);
        t[(*n)++] = v;
    }
    if (g_trace) {
        fprintf(stderr, "[" BENCH "] trace %s:", RT_NAME[s->rt]);
        for (int i = n0; i < *n; i++)
            fprintf(stderr, " %.2f", 1e3 * t[i]);
        fprintf(stderr, " ms\n");
    }
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile q (0..100) of n values (sorts v). */
static double percentile(double *v, int n, double q)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int rank = (int)ceil(q / 100.0 * n);
    return v[rank < 1 ? 0 : rank - 1];
}

static int env_int(const char *name, int dflt, int lo)
{
    const char *s = getenv(name);
    int v = s && *s ? atoi(s) : dflt;
    return v < lo ? lo : v;
}

/* One figure of nabla beside each available peer. */
static void emit_all(const char *bcase, const char *metric, const double *v, const bool *have)
{
    for (int rt = RT_ORT; rt < N_RT; rt++)
        if (have[rt])
            bench_emit(BENCH, bcase, metric, v[RT_NABLA], RT_NAME[rt], v[rt]);
}

/* ---- the figures ------------------------------------------------------------------ */

/* x_bN.npy in the model's directory: N images of 3x224x224, uniform in
 * [-2, 2) from a fixed xorshift sequence. */
static void write_input(int batch, char *path, size_t size)
{
    char file[32];
    snprintf(file, sizeof file, "x_b%d.npy", batch);
    model_path(file, path, size);
    nb_tensor x = {0};
    if (nb_tensor_empty(&x, NB_F32, 4, (int64_t[]){batch, 3, 224, 224}) != NB_OK)
        bench_die(BENCH, "%s", nb_last_error());
    float *p = nb_tensor_data(&x);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int64_t i = 0; i < nb_tensor_numel(&x); i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        p[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 4.0 - 2.0);
    }
    if (nb_npy_save(path, &x) != NB_OK)
        bench_die(BENCH, "%s", nb_last_error());
    nb_tensor_release(&x);
}

/* Time to first result on batch 1 (cold processes), and the outputs of
 * nabla and each peer compared. Clears have[RT_ORT] when ORT cannot run. */
static void time_to_first_result(const char *x_npy, int threads, bool *have)
{
    int reps = env_int("BENCH_FIRST_REPS", 5, 1);
    char dir[] = "/tmp/nabla-bench-onnx-XXXXXX";
    if (!mkdtemp(dir))
        bench_die(BENCH, "mkdtemp failed: %s", strerror(errno));
    char model[PATH_MAX + 80], nthreads[16], out[N_RT][64];
    model_path("model.onnx", model, sizeof model);
    snprintf(nthreads, sizeof nthreads, "%d", threads);
    double *t = calloc((size_t)(N_RT * reps), sizeof(double));
    if (!t)
        bench_die(BENCH, "out of memory");
    for (int rt = 0; rt < N_RT; rt++)
        snprintf(out[rt], sizeof out[rt], "%s/%s.npy", dir, RT_NAME[rt]);
    for (int r = 0; r < reps; r++) {
        for (int j = 0; j < N_RT; j++) {
            int rt = ORDER[r % 6][j];
            if (!have[rt])
                continue;
            int code;
            if (rt == RT_NABLA)
                code = run_child((char *[]){g_self, "--first", model, (char *)x_npy, nthreads,
                                            out[rt], NULL},
                                 &t[rt * reps + r]);
            else
                code = run_child((char *[]){PYTHON, g_peer, "first", (char *)RT_ARG[rt], g_mdir,
                                            (char *)x_npy, nthreads, out[rt], NULL},
                                 &t[rt * reps + r]);
            if (code != 0 && rt == RT_ORT && r == 0) {
                bench_note(BENCH, "ONNX Runtime failed to run (exit %d, message above): "
                                  "reporting PyTorch only", code);
                have[RT_ORT] = false;
            } else if (code != 0) {
                bench_die(BENCH, "%s's first-result process failed (exit %d)", RT_NAME[rt], code);
            }
        }
    }
    /* the answers must agree before their times mean anything */
    nb_tensor o[N_RT] = {{0}};
    for (int rt = 0; rt < N_RT; rt++)
        if (have[rt] && nb_npy_load(out[rt], &o[rt]) != NB_OK)
            bench_die(BENCH, "%s", nb_last_error());
    for (int rt = RT_ORT; rt < N_RT; rt++) {
        if (!have[rt])
            continue;
        if (!nb_shape_equal(o[0].ndim, o[0].shape, o[rt].ndim, o[rt].shape))
            bench_die(BENCH, "nabla's output and %s's differ in shape", RT_NAME[rt]);
        double scale = nb_tensor_max_abs(&o[rt]), diff = nb_tensor_max_abs_diff(&o[0], &o[rt]);
        bench_note(BENCH, "output check: max |nabla - %s| = %.3g (max |%s| = %.3g)", RT_NAME[rt],
                   diff, RT_NAME[rt], scale);
        if (!(diff <= OUT_TOL * scale))
            bench_die(BENCH, "nabla's output differs from %s's by more than %g of the largest",
                      RT_NAME[rt], OUT_TOL);
    }
    double v[N_RT];
    for (int rt = 0; rt < N_RT; rt++) {
        v[rt] = have[rt] ? 1e3 * bench_median(t + rt * reps, reps) : NAN;
        nb_tensor_release(&o[rt]);
        remove(out[rt]);
    }
    rmdir(dir);
    free(t);
    char bcase[128];
    snprintf(bcase, sizeof bcase, "batch 1, 3x224x224, %d threads, fresh process", threads);
    emit_all(bcase, "time_to_first_result_ms", v, have);
}

/* Latency, memory, load and first run at one batch size. */
static void serving_figures(int batch, const char *x_npy, int threads, int runs, bool *have)
{
    server s[N_RT] = {{0}};
    for (int rt = 0; rt < N_RT; rt++)
        if (have[rt])
            have[rt] = server_start(&s[rt], rt, x_npy, threads);
    double *t = malloc(sizeof(double) * (size_t)(N_RT * MAX_RUNS));
    double first[N_RT], load[N_RT], p50[N_RT], p99[N_RT], rss[N_RT];
    int n[N_RT] = {0};
    if (!t)
        bench_die(BENCH, "out of memory");
    for (int rt = 0; rt < N_RT; rt++) {
        if (!have[rt])
            continue;
        take_runs(&s[rt], WARMUP_RUNS, t + rt * MAX_RUNS, &n[rt]);
        first[rt] = 1e3 * t[rt * MAX_RUNS];
        load[rt] = 1e3 * s[rt].load_s;
        n[rt] = 0; /* warm-up runs are not counted */
        pause_ms(PAUSE_MS);
    }
    for (int r = 0; r * BLOCK_RUNS < runs; r++) {
        for (int j = 0; j < N_RT; j++) {
            int rt = ORDER[r % 6][j];
            if (!have[rt])
                continue;
            int k = runs - r * BLOCK_RUNS < BLOCK_RUNS ? runs - r * BLOCK_RUNS : BLOCK_RUNS;
            take_runs(&s[rt], k, t + rt * MAX_RUNS, &n[rt]);
            pause_ms(PAUSE_MS); /* let spinning worker threads settle before the next */
        }
    }
    for (int rt = 0; rt < N_RT; rt++) {
        if (!have[rt])
            continue;
        if (!ask(&s[rt], "rss"))
            bench_die(BENCH, "%s: %s", RT_NAME[rt], g_reply);
        rss[rt] = strtod(g_reply, NULL);
        server_stop(&s[rt]);
        p50[rt] = 1e3 * percentile(t + rt * MAX_RUNS, n[rt], 50);
        p99[rt] = 1e3 * percentile(t + rt * MAX_RUNS, n[rt], 99);
        bench_note(BENCH, "batch %d %-11s P50 %8.2f ms  P99 %8.2f ms  peak RSS %7.1f MB  load "
                          "%7.1f ms  first run %8.2f ms",
                   batch, RT_NAME[rt], p50[rt], p99[rt], rss[rt], load[rt], first[rt]);
    }
    free(t);
    char bcase[128];
    snprintf(bcase, sizeof bcase, "batch %d, 3x224x224, %d threads, %d runs", batch, threads, runs);
    emit_all(bcase, "latency_p50_ms", p50, have);
    emit_all(bcase, "latency_p99_ms", p99, have);
    emit_all(bcase, "peak_rss_mb", rss, have);
    emit_all(bcase, "load_ms", load, have);
    emit_all(bcase, "first_run_ms", first, have);
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--serve") == 0)
        return serve_main(argv[2], argv[3], atoi(argv[4]));
    if (argc == 6 && strcmp(argv[1], "--first") == 0)
        return first_main(argv[2], argv[3], atoi(argv[4]), argv[5]);
    if (argc != 1) {
        fprintf(stderr, "usage: %s   (run by bench/run " BENCH ")\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a dead peer is reported, not fatal by signal */

    ssize_t len = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    if (len <= 0)
        bench_die(BENCH, "cannot find this program's path");
    g_self[len] = '\0';
    source_path("bench/onnx_peer.py", g_peer, sizeof g_peer);
    source_path("tests/gen_onnx_models.py", g_gen, sizeof g_gen);
    char cache[PATH_MAX + 32];
    const char *env_dir = getenv("NABLA_BENCH_ONNX_DIR");
    if (env_dir && *env_dir)
        snprintf(cache, sizeof cache, "%s", env_dir);
    else
        snprintf(cache, sizeof cache, "%.*s/../onnx_bench_models",
                 (int)(strrchr(g_self, '/') - g_self), g_self); /* build-bench/bench/.. */
    snprintf(g_mdir, sizeof g_mdir, "%s/" MODEL, cache);

    /* the figures are for 2 threads; NABLA_NUM_THREADS chooses others */
    const char *nt = getenv("NABLA_NUM_THREADS");
    int threads = nt && *nt ? nb_get_num_threads() : 2;
    int runs1 = env_int("BENCH_RUNS", 100, 1), runs8 = env_int("BENCH_RUNS", 100, 1);
    g_trace = env_int("BENCH_TRACE", 0, 0) != 0;
    runs1 = runs1 < MAX_RUNS ? runs1 : MAX_RUNS;
    runs8 = runs8 < MAX_RUNS ? runs8 : MAX_RUNS;
    char load_avg[64] = "?";
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (!fgets(load_avg, sizeof load_avg, la))
            strcpy(load_avg, "?");
        fclose(la);
        load_avg[strcspn(load_avg, "\n")] = 0;
    }
    bench_note(BENCH, "%d threads (nabla, ONNX Runtime intra-op, PyTorch), %d / %d timed runs at "
                      "batch 1 / 8; load average before the run: %s",
               threads, runs1, runs8, load_avg);

    int code = run_child((char *[]){PYTHON, g_gen, "--torch-weights", cache, MODEL, NULL}, NULL);
    if (code == 77)
        bench_die(BENCH, "the model cannot be exported: install python3-torch and "
                         "python3-torchvision");
    if (code != 0)
        bench_die(BENCH, "%s failed (exit %d)", g_gen, code);

    char x1[PATH_MAX + 80], x8[PATH_MAX + 80];
    write_input(1, x1, sizeof x1);
    write_input(8, x8, sizeof x8);
    bool have[N_RT] = {true, true, true};
    time_to_first_result(x1, threads, have);
    serving_figures(1, x1, threads, runs1, have);
    serving_figures(8, x8, threads, runs8, have);
    return 0;
}
