#!/usr/bin/env python3
"""PyTorch peer of bench/bench_normalization.c: batch_norm (training) and
layer_norm forward + backward on the CPU (f32), same thread count as nabla.

usage: torch_normalization.py THREADS REPS SPEC ...
  SPEC: bn,N,C,H,W (F.batch_norm, training, momentum 0.1, eps 1e-5, running
        statistics updated each call) or ln,R,D (F.layer_norm over D, eps 1e-5);
        weight and bias require grad, as x does.
Prints one line per case: "case <spec> <median s per fwd+bwd> <median s per fwd>".
Timing mirrors bench/common.c: warm up, calibrate calls per repetition so one
lasts >= 0.05 s, take the median over REPS repetitions."""
import sys
import time

import torch
import torch.nn.functional as F


def calibrate(fn, min_s=0.05):
    for _ in range(3):
        fn()
    iters = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_s:
            return iters
        iters = max(iters * 2, int(iters * min_s / max(dt, 1e-9)) + 1)


def median_time(fn, reps):
    iters = calibrate(fn)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        times.append((time.perf_counter() - t0) / iters)
    times.sort()
    return times[len(times) // 2]


def main():
    threads, reps = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    for spec in sys.argv[3:]:
        kind, *dims = spec.split(",")
        dims = [int(v) for v in dims]
        c = dims[1]
        x = (torch.randn(*dims) * 2 + 0.5).requires_grad_(True)
        w = torch.ones(c, requires_grad=True)
        b = torch.zeros(c, requires_grad=True)
        gy = torch.randn(*dims)
        if kind == "bn":
            rm, rv = torch.zeros(c), torch.ones(c)

            def op():
                return F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)
        elif kind == "ln":
            def op():
                return F.layer_norm(x, (c,), w, b, eps=1e-5)
        else:
            raise SystemExit("unknown case kind " + kind)

        def fwd_bwd():
            x.grad = w.grad = b.grad = None
            op().backward(gy)

        def fwd():
            with torch.no_grad():
                op()

        t = median_time(fwd_bwd, reps)
        tf = median_time(fwd, reps)
        print("case %s %.9g %.9g" % (spec, t, tf), flush=True)


if __name__ == "__main__":
    main()
