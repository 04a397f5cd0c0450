#!/usr/bin/env python3
"""PyTorch peer of bench/bench_pooling.c: max_pool2d on the CPU (NCHW, f32),
same thread count as nabla.

usage: torch_pooling.py THREADS, then the requests of bench/torch_peer.h.
Case spec: N,C,H,W,K,S,P. Modes: "fb" (x.requires_grad, y = F.max_pool2d(x,
K, S, P), y.backward(gy), x.grad reset each call) and "fw" (the forward under
no_grad). Inputs are made once per case (randn, seed 0)."""
import torch
import torch.nn.functional as F

import torch_peer


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


if __name__ == "__main__":
    torch_peer.serve(make_case)
