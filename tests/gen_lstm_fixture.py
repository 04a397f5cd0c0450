#!/usr/bin/python3
"""PyTorch reference of one nn.LSTMCell step, for tests/test_gather.c.

Run from the project root:

    /usr/bin/python3 tests/gen_lstm_fixture.py

It overwrites tests/fixtures_lstm/. Everything is float32 and deterministic
(fixed seeds). Files, as .npy:
    input (3,5)  hx (3,4)  cx (3,4)
    weight_ih (16,5)  weight_hh (16,4)  bias_ih (16)  bias_hh (16)
    r1 (3,4)  r2 (3,4)               random weights of the loss
    h1 (3,4)  c1 (3,4)               the cell's outputs h', c'
    grad_NAME                         d/d NAME of sum(h' * r1 + c' * r2), for
                                      input, hx, cx and the four weights
The gates are ordered i, f, g, o along the 4*hidden rows, as PyTorch does.
"""

import os

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "fixtures_lstm")

N, IN, H = 3, 5, 4


def main():
    torch.manual_seed(1234)
    torch.set_num_threads(1)
    cell = torch.nn.LSTMCell(IN, H)  # float32, uniform(-1/sqrt(H), 1/sqrt(H))
    gen = torch.Generator().manual_seed(99)
    x = torch.randn(N, IN, generator=gen, requires_grad=True)
    hx = torch.randn(N, H, generator=gen, requires_grad=True)
    cx = torch.randn(N, H, generator=gen, requires_grad=True)
    r1 = torch.randn(N, H, generator=gen)
    r2 = torch.randn(N, H, generator=gen)

    h1, c1 = cell(x, (hx, cx))
    loss = (h1 * r1 + c1 * r2).sum()
    loss.backward()

    os.makedirs(OUT_DIR, exist_ok=True)
    for f in os.listdir(OUT_DIR):
        if f.endswith(".npy"):
            os.remove(os.path.join(OUT_DIR, f))

    def save(name, t):
        a = t.detach().numpy().astype(np.float32)
        np.save(os.path.join(OUT_DIR, name + ".npy"), a)

    leaves = {"input": x, "hx": hx, "cx": cx, "weight_ih": cell.weight_ih,
              "weight_hh": cell.weight_hh, "bias_ih": cell.bias_ih, "bias_hh": cell.bias_hh}
    for name, t in leaves.items():
        save(name, t)
        save("grad_" + name, t.grad)
    save("r1", r1)
    save("r2", r2)
    save("h1", h1)
    save("c1", c1)


if __name__ == "__main__":
    main()
