#!/usr/bin/env python3
"""PyTorch peer of bench/bench_conv2d.c: conv2d forward + backward (input,
weight and bias gradients) and forward alone, on the CPU, with the thread
count nabla uses.

usage: torch_conv2d.py THREADS, then the requests of bench/torch_peer.h.
Case spec: N,C,H,W,CO,K,PAD (stride 1). Modes: "fb" = fwd+bwd, "fw" = fwd."""
import torch
import torch.nn.functional as F

import torch_peer


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

    return {"fb": fwd_bwd, "fw": fwd}


if __name__ == "__main__":
    torch_peer.serve(make_case)
