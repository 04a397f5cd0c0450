#!/usr/bin/env python3
"""PyTorch peer of bench/bench_conv2d.c: conv2d forward + backward (input,
weight and bias gradients) and forward alone, on the CPU, with the thread
count nabla uses.

usage: torch_conv2d.py THREADS N,C,H,W,CO,K,PAD ...

Then it serves timing requests on stdin, one per line, so that the C bench
can interleave its repetitions with PyTorch's (the machines are shared and
noisy; interleaving makes a slow phase hit both sides alike):
    "rep CASE MODE"   (MODE fb = fwd+bwd, f = fwd) -> one repetition: prints
                      the seconds per call, the call count calibrated on first
                      use so that a repetition lasts >= 0.05 s (as bench/common.c)
    "quit"
It prints "ready" once the cases are set up."""
import sys
import time

import torch
import torch.nn.functional as F

MIN_REP_S = 0.05


def make_case(spec):
    n, c, h, w, co, k, pad = (int(v) for v in spec.split(","))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=gen).requires_grad_(True)
    wt = (torch.randn(co, c, k, k, generator=gen) * 0.2).requires_grad_(True)
    b = torch.randn(co, generator=gen).requires_grad_(True)
    with torch.no_grad():
        gy = torch.randn(F.conv2d(x, wt, b, padding=pad).shape, generator=gen)

    def fwd_bwd():
        x.grad = wt.grad = b.grad = None
        y = F.conv2d(x, wt, b, padding=pad)
        y.backward(gy)

    def fwd():
        with torch.no_grad():
            F.conv2d(x, wt, b, padding=pad)

    return {"fb": fwd_bwd, "f": fwd}


def calibrate(fn):
    for _ in range(3):
        fn()
    iters = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        dt = time.perf_counter() - t0
        if dt >= MIN_REP_S:
            return iters
        iters = max(iters * 2, int(iters * MIN_REP_S / max(dt, 1e-9)) + 1)


def main():
    threads = int(sys.argv[1])
    torch.set_num_threads(threads)
    cases = [make_case(spec) for spec in sys.argv[2:]]
    iters = {}
    print("ready", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == "quit":
            break
        i, mode = int(parts[1]), parts[2]
        fn = cases[i][mode]
        if (i, mode) not in iters:
            iters[(i, mode)] = calibrate(fn)
        n = iters[(i, mode)]
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        print("%.9g" % ((time.perf_counter() - t0) / n), flush=True)


if __name__ == "__main__":
    main()
