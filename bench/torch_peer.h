/* The PyTorch peer of a benchmark: a python3 child process running one of
 * bench/torch_*.py (each built on bench/torch_peer.py), with the same thread
 * count as nabla, driven one request line at a time through pipes so that
 * the C side decides when PyTorch runs (interleaved with nabla, or in blocks).
 *
 * Protocol (requests on the peer's stdin, one reply line each on its stdout):
 *   python3 SCRIPT THREADS     the peer sets its threads, then says "ready"
 *   "case SPEC"                builds a case from SPEC (the script's own
 *                              format, e.g. "128,32,28,28,2,2,0"); reply: its
 *                              index
 *   "calibrate CASE MODE"      warm-up, then the call count per repetition so
 *                              that one lasts >= BENCH_MIN_REP_S; reply: count
 *   "rep CASE MODE"            one repetition (calibrated on first use);
 *                              reply: seconds per call
 *   "quit" (or EOF)            the peer exits
 * MODE names what to run, e.g. "fb" (forward + backward) or "fw" (forward).
 * A reply "error: ..." ends the benchmark with that message.
 *
 * Figures are medians over repetitions, as in bench/common.h; the peer's
 * repetitions are timed by the peer itself (time.perf_counter around the
 * calls), so the pipe round trip is not in them.
 */
#ifndef NB_BENCH_TORCH_PEER_H
#define NB_BENCH_TORCH_PEER_H

#include <stdio.h>
#include <sys/types.h>

#include "common.h"

typedef struct torch_peer {
    const char *bench; /* benchmark name, for notes and errors */
    pid_t pid;
    FILE *to, *from; /* the peer's stdin and stdout */
} torch_peer;

/* Thread count for nabla, OpenBLAS and PyTorch: nabla's own
 * (NABLA_NUM_THREADS or all cores), applied to OpenBLAS as well. Notes it
 * with `reps` and the load average on stderr. */
int torch_peer_threads(const char *bench, int reps);

/* Starts /usr/bin/python3 SCRIPT THREADS and waits for "ready". SCRIPT is a
 * file name in bench/ ("torch_pooling.py"), looked up from the current
 * directory (bench/run runs from the repository root), else next to this
 * source file. Dies if the peer does not start (no python3-torch?). */
void torch_peer_start(torch_peer *p, const char *bench, const char *script, int threads);

/* Builds a case on the peer from spec; returns its index for the calls below. */
int torch_peer_case(torch_peer *p, const char *spec);

/* Warms up and (re)calibrates the peer's calls per repetition of case/mode. */
void torch_peer_calibrate(torch_peer *p, int pcase, const char *mode);

/* Seconds per call of one peer repetition of case/mode. */
double torch_peer_rep(torch_peer *p, int pcase, const char *mode);

/* The peer's bench_time: calibrate, then the median over reps repetitions. */
double torch_peer_time(torch_peer *p, int pcase, const char *mode, int reps);

/* The peer's bench_time_pair: nabla's fn and the peer's case/mode, each
 * calibrated on its own, repetitions taken in turn (nabla, peer, nabla, ...);
 * medians in *sec_nabla and *sec_peer. */
void torch_peer_time_pair(torch_peer *p, bench_fn fn, void *ctx, int pcase, const char *mode,
                          int reps, double *sec_nabla, double *sec_peer);

/* Sends "quit" and waits for the peer to exit. */
void torch_peer_stop(torch_peer *p);

#endif
