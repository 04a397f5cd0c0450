#!/usr/bin/env python3
"""PyTorch peer of bench/bench_normalization.c: batch_norm (training) and
layer_norm forward + backward on the CPU (f32), same thread count as nabla.

usage: torch_normalization.py THREADS, then the requests of bench/torch_peer.h.
Case spec: bn,N,C,H,W (F.batch_norm, training, momentum 0.1, eps 1e-5,
running statistics updated each call) or ln,R,D (F.layer_norm over D, eps
1e-5); weight and bias require grad, as x does. Modes: "fb" = fwd+bwd
(gradients reset each call), "fw" = the forward under no_grad."""
import torch
import torch.nn.functional as F

import torch_peer


def make_case(spec):
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
        raise ValueError("unknown case kind " + kind)

    def fwd_bwd():
        x.grad = w.grad = b.grad = None
        op().backward(gy)

    def fwd():
        with torch.no_grad():
            op()

    return {"fb": fwd_bwd, "fw": fwd}


if __name__ == "__main__":
    torch.manual_seed(0)  # once: the cases draw their inputs in turn, as before
    torch_peer.serve(make_case)
