#!/usr/bin/env python3
"""PyTorch peer of bench/bench_pooling.c: max_pool2d on the CPU (NCHW, f32),
same thread count as nabla, driven line by line so that the C side can
interleave its repetitions with nabla's.

usage: torch_pooling.py THREADS
Then, on stdin, one request a line:
    time N,C,H,W,K,S,P MODE ITERS
MODE is "fb" (x.requires_grad, y = F.max_pool2d(x, K, S, P), y.backward(gy),
x.grad reset each call) or "fw" (the forward under no_grad). The answer is one
line on stdout: the seconds per call of ITERS back-to-back calls. Inputs are
made once per case (randn, seed 0). EOF ends the process."""
import sys
import time

import torch
import torch.nn.functional as F


def make_case(spec):
    n, c, h, w, k, s, p = (int(v) for v in spec.split(","))
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w, requires_grad=True)
    with torch.no_grad():
        gy = torch.randn_like(F.max_pool2d(x, k, s, p))

    def fwd_bwd():
        x.grad = None
        y = F.max_pool2d(x, k, s, p)
        y.backward(gy)

    def fwd():
        with torch.no_grad():
            F.max_pool2d(x, k, s, p)

    return {"fb": fwd_bwd, "fw": fwd}


def main():
    torch.set_num_threads(int(sys.argv[1]))
    cases = {}
    for line in sys.stdin:
        parts = line.split()
        if len(parts) != 4 or parts[0] != "time":
            print("error: bad request %r" % line.strip(), flush=True)
            continue
        spec, mode, iters = parts[1], parts[2], int(parts[3])
        if spec not in cases:
            cases[spec] = make_case(spec)
        fn = cases[spec][mode]
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        print("%.9g" % ((time.perf_counter() - t0) / iters), flush=True)


if __name__ == "__main__":
    main()
