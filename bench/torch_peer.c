/* The PyTorch peer of a benchmark (see torch_peer.h). */
#include "torch_peer.h"

#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nabla.h"

#define PYTHON "/usr/bin/python3" /* Debian's, where python3-torch lives */

int torch_peer_threads(const char *bench, int reps)
{
    int threads = nb_get_num_threads();
    nb_set_num_threads(threads); /* OpenBLAS gets the same count */
    bench_note(bench, "%d threads (nabla, OpenBLAS, PyTorch), %d repetitions, median", threads,
               reps);
    char load[64] = "?";
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (!fgets(load, sizeof load, la))
            strcpy(load, "?");
        fclose(la);
        load[strcspn(load, "\n")] = 0;
    }
    bench_note(bench,
               "load average before the run: %s (figures are noisy when it exceeds the cores)",
               load);
    return threads;
}

/* Sends one request line (printf-style) and reads the reply into reply
 * (newline dropped); dies on EOF or an "error" reply. */
__attribute__((format(printf, 4, 5))) static void ask(torch_peer *p, char *reply, size_t size,
                                                      const char *fmt, ...)
{
    char req[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(req, sizeof req, fmt, ap);
    va_end(ap);
    if (fprintf(p->to, "%s\n", req) < 0 || fflush(p->to) != 0 || !fgets(reply, (int)size, p->from))
        bench_die(p->bench, "the PyTorch peer stopped answering (request \"%s\")", req);
    reply[strcspn(reply, "\n")] = 0;
    if (strncmp(reply, "error", 5) == 0)
        bench_die(p->bench, "the PyTorch peer failed on \"%s\": %s", req, reply);
}

void torch_peer_start(torch_peer *p, const char *bench, const char *script, int threads)
{
    /* bench/run runs from the repository root; else next to this source */
    char path[4096];
    snprintf(path, sizeof path, "bench/%s", script);
    if (access(path, R_OK) != 0) {
        const char *src = __FILE__, *slash = strrchr(src, '/');
        snprintf(path, sizeof path, "%.*s%s", slash ? (int)(slash - src + 1) : 0, src, script);
    }
    char nthreads[16];
    snprintf(nthreads, sizeof nthreads, "%d", threads);
    bench_note(bench, "PyTorch peer: " PYTHON " %s %s", path, nthreads);

    /* down: our requests to its stdin; up: its replies from its stdout */
    int down[2], up[2];
    if (pipe(down) != 0 || pipe(up) != 0)
        bench_die(bench, "pipe failed");
    signal(SIGPIPE, SIG_IGN); /* a dead peer shows as a failed write, not a kill */
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        bench_die(bench, "fork failed");
    if (pid == 0) {
        dup2(down[0], STDIN_FILENO);
        dup2(up[1], STDOUT_FILENO);
        close(down[0]);
        close(down[1]);
        close(up[0]);
        close(up[1]);
        execl(PYTHON, "python3", path, nthreads, (char *)NULL);
        fprintf(stderr, "[%s] cannot run " PYTHON " %s\n", bench, path);
        _exit(127);
    }
    close(down[0]);
    close(up[1]);
    p->bench = bench;
    p->pid = pid;
    p->to = fdopen(down[1], "w");
    p->from = fdopen(up[0], "r");
    char line[256];
    if (!p->to || !p->from || !fgets(line, sizeof line, p->from) || strncmp(line, "ready", 5) != 0)
        bench_die(bench, "the PyTorch peer did not start (is python3-torch installed?)");
}

int torch_peer_case(torch_peer *p, const char *spec)
{
    char reply[256];
    ask(p, reply, sizeof reply, "case %s", spec);
    return atoi(reply);
}

void torch_peer_calibrate(torch_peer *p, int pcase, const char *mode)
{
    char reply[256];
    ask(p, reply, sizeof reply, "calibrate %d %s", pcase, mode);
}

double torch_peer_rep(torch_peer *p, int pcase, const char *mode)
{
    char reply[256];
    double sec;
    ask(p, reply, sizeof reply, "rep %d %s", pcase, mode);
    if (sscanf(reply, "%lf", &sec) != 1)
        bench_die(p->bench, "the PyTorch peer answered \"%s\" to rep %d %s", reply, pcase, mode);
    return sec;
}

double torch_peer_time(torch_peer *p, int pcase, const char *mode, int reps)
{
    double *t = malloc(sizeof(double) * (size_t)reps);
    if (!t)
        bench_die(p->bench, "out of memory");
    torch_peer_calibrate(p, pcase, mode);
    for (int r = 0; r < reps; r++)
        t[r] = torch_peer_rep(p, pcase, mode);
    double med = bench_median(t, reps);
    free(t);
    return med;
}

void torch_peer_time_pair(torch_peer *p, bench_fn fn, void *ctx, int pcase, const char *mode,
                          int reps, double *sec_nabla, double *sec_peer)
{
    double *a = malloc(sizeof(double) * (size_t)reps), *b = malloc(sizeof(double) * (size_t)reps);
    if (!a || !b)
        bench_die(p->bench, "out of memory");
    int64_t iters = bench_calibrate(fn, ctx, BENCH_MIN_REP_S);
    torch_peer_calibrate(p, pcase, mode);
    for (int r = 0; r < reps; r++) {
        a[r] = bench_rep(fn, ctx, iters);
        b[r] = torch_peer_rep(p, pcase, mode);
    }
    *sec_nabla = bench_median(a, reps);
    *sec_peer = bench_median(b, reps);
    free(a);
    free(b);
}

void torch_peer_stop(torch_peer *p)
{
    fprintf(p->to, "quit\n");
    fclose(p->to);
    fclose(p->from);
    int st = 0;
    if (waitpid(p->pid, &st, 0) == p->pid && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        bench_note(p->bench, "the PyTorch peer exited abnormally (status %d)", st);
}
