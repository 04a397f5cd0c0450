"""Shared side of the PyTorch peers of the C benchmarks (bench/torch_*.py):
sets the thread count, serves the timing requests of bench/torch_peer.c on
stdin, one reply line each on stdout (the protocol is in bench/torch_peer.h).

A peer script defines make_case(spec) -> {mode: fn}, fn being one call of the
code under test (e.g. "fb": forward + backward, "fw": forward), and runs
serve(make_case). Run as a script, python puts the script's directory
(bench/) first on sys.path, so `import torch_peer` finds this file.

Timing mirrors bench/common.c: warm up, calibrate the calls per repetition
so that one repetition lasts >= MIN_REP_S, report seconds per call."""
import sys
import time

import torch

MIN_REP_S = 0.05  # as BENCH_MIN_REP_S in bench/common.h


def calibrate(fn):
    """Calls per repetition so that one lasts >= MIN_REP_S, after 3 warm-up calls."""
    for _ in range(3):
        fn()
    iters = 1
    while True:
        dt = repetition(fn, iters) * iters
        if dt >= MIN_REP_S:
            return iters
        iters = max(iters * 2, int(iters * MIN_REP_S / max(dt, 1e-9)) + 1)


def repetition(fn, iters):
    """Seconds per call of iters back-to-back calls of fn."""
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) / iters


def answer(make_case, cases, iters, parts):
    """The reply to one request (split into words); raises on a bad one.
    cases: the cases built so far; iters: calls per repetition by (case, mode)."""
    kind = parts[0]
    if kind == "case":
        cases.append(make_case(parts[1]))
        return str(len(cases) - 1)
    if kind not in ("calibrate", "rep"):
        raise ValueError("unknown request")
    i, mode = int(parts[1]), parts[2]
    fn = cases[i][mode]
    if kind == "calibrate" or (i, mode) not in iters:
        iters[(i, mode)] = calibrate(fn)
    if kind == "calibrate":
        return str(iters[(i, mode)])
    return "%.9g" % repetition(fn, iters[(i, mode)])


def serve(make_case):
    """Main loop of a peer: usage SCRIPT THREADS, then requests on stdin until
    "quit" or EOF. A failed request answers "error: ..." and the loop goes on
    (the C side stops on it)."""
    torch.set_num_threads(int(sys.argv[1]))
    cases, iters = [], {}
    print("ready", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == "quit":
            break
        try:
            reply = answer(make_case, cases, iters, parts)
        except Exception as e:  # report any failure to the C side
            reply = "error: %s: %r" % (line.strip(), e)
        print(reply, flush=True)
