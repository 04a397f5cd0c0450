#!/usr/bin/python3
"""Forward and backward parity fixtures for nabla, computed with PyTorch.

Run from the project root:

    /usr/bin/python3 tests/gen_fixtures.py

It OVERWRITES everything in tests/fixtures/ (stale fixtures of cases that no
longer exist are removed too). The output is deterministic: every case draws
its inputs from its own numpy generator seeded by (SEED, crc32(case name)), so
adding or removing a case does not change the others.

For each case NAME it writes, as .npy files:
    NAME.x0.npy, NAME.x1.npy, ...   the inputs (float32; int64 labels; bool masks)
    NAME.y.npy                      the output of the op
    NAME.gy.npy                     a random cotangent of y's shape
    NAME.gxK.npy                    d/d xK of (y * gy).sum(), for each float input xK
Gradients are written only for cases with a float output; K is the index of
the input, so `where(mask, a, b)` has gx1 and gx2 but no gx0.

tests/fixtures/MANIFEST.txt lists one case a line:
    NAME  n_inputs  grad|nograd  x0:dtype(shape) ... -> y:dtype(shape)
tests/test_parity.c rebuilds every case with nabla's graph builder and nb_vjp
and compares with these files.
"""

import os
import zlib

import numpy as np
import torch
import torch.nn.functional as F

SEED = 20240611
HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "fixtures")

torch.manual_seed(SEED)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

# Every case appended here as (name, inputs, fn, grad); generated at the end.
CASES = []


def case(name, inputs, fn, grad=True):
    """Register a case: inputs is a list of numpy arrays, fn maps torch tensors
    to one torch tensor, grad says whether to write gradients."""
    CASES.append((name, inputs, fn, grad))


def rng_for(name):
    """A numpy generator of its own for each case."""
    return np.random.default_rng([SEED, zlib.crc32(name.encode())])


# ---- input makers -----------------------------------------------------------

def f32(a):
    # np.array rather than np.ascontiguousarray, which turns 0-d into 1-d
    return np.array(a, dtype=np.float32, order="C")


def randn(rng, *shape):
    return f32(rng.standard_normal(shape))


def uniform(rng, lo, hi, *shape):
    return f32(rng.uniform(lo, hi, shape))


def away(x, points, eps):
    """Move values lying within eps of any of `points` (kinks, thresholds) out
    to distance eps, so that a derivative is never taken right at a kink."""
    x = np.array(x, dtype=np.float64)
    for p in points:
        d = x - p
        near = np.abs(d) < eps
        x[near] = p + np.where(d[near] >= 0, eps, -eps)
    return f32(x)


def distinct(rng, *shape):
    """Values with no ties (max/min/argmax gradients are then unique): a
    shuffled ramp with small jitter, well separated."""
    n = int(np.prod(shape))
    ramp = (rng.permutation(n) - n / 2.0) * 0.25
    return f32((ramp + rng.uniform(0.0, 0.1, n)).reshape(shape))


def signed(rng, lo, hi, *shape):
    """Magnitudes in [lo, hi] with random signs (denominators, reciprocals)."""
    mag = rng.uniform(lo, hi, shape)
    sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    return f32(mag * sign)


def labels(rng, n, classes):
    return rng.integers(0, classes, size=(n,)).astype(np.int64)


# ---- cases ----------------------------------------------------------------

def binary_cases():
    """Binary elementwise ops on two broadcast patterns each."""
    ops = {
        "add": torch.add,
        "sub": torch.sub,
        "mul": torch.mul,
        "div": torch.div,
        "pow": torch.pow,
        "maximum": torch.maximum,
        "minimum": torch.minimum,
    }
    shapes = {"b2": ((3, 1), (1, 4)), "b3": ((2, 3, 4), (4,))}
    for op, fn in ops.items():
        for tag, (sa, sb) in shapes.items():
            name = "%s_%s" % (op, tag)
            rng = rng_for(name)
            if op == "pow":
                # positive base so that d/db a^b = a^b log a is defined
                a = uniform(rng, 0.5, 2.0, *sa)
                b = uniform(rng, -2.0, 2.0, *sb)
            elif op == "div":
                a = randn(rng, *sa)
                b = signed(rng, 0.5, 2.0, *sb)
            else:
                a = randn(rng, *sa)
                b = randn(rng, *sb)
            case(name, [a, b], fn)


def scalar_cases():
    """x op scalar (nb_add_scalar, nb_mul_scalar, nb_pow_scalar)."""
    rng = rng_for("add_scalar")
    case("add_scalar", [randn(rng, 3, 4)], lambda x: x + 1.5)
    rng = rng_for("mul_scalar")
    case("mul_scalar", [randn(rng, 3, 4)], lambda x: x * -0.75)
    rng = rng_for("pow_scalar")
    case("pow_scalar", [uniform(rng, 0.3, 2.0, 3, 4)], lambda x: x ** 2.5)


def unary_cases():
    """Unary elementwise ops and activations on a (4, 5) input each; the input
    ranges keep away from kinks and outside each function's domain edges."""
    shape = (4, 5)

    def add(name, make, fn):
        case(name, [make(rng_for(name))], fn)

    add("neg", lambda r: randn(r, *shape), torch.neg)
    add("abs", lambda r: away(randn(r, *shape), [0.0], 0.05), torch.abs)
    add("exp", lambda r: uniform(r, -2, 2, *shape), torch.exp)
    add("log", lambda r: uniform(r, 0.2, 3, *shape), torch.log)
    add("sqrt", lambda r: uniform(r, 0.2, 3, *shape), torch.sqrt)
    add("rsqrt", lambda r: uniform(r, 0.2, 3, *shape), torch.rsqrt)
    add("square", lambda r: randn(r, *shape), torch.square)
    add("reciprocal", lambda r: signed(r, 0.3, 2, *shape), torch.reciprocal)
    add("erf", lambda r: uniform(r, -2, 2, *shape), torch.erf)
    add("relu", lambda r: away(randn(r, *shape), [0.0], 0.05), torch.relu)
    add("leaky_relu", lambda r: away(randn(r, *shape), [0.0], 0.05),
        lambda x: F.leaky_relu(x, 0.1))
    add("elu", lambda r: away(randn(r, *shape), [0.0], 0.05),
        lambda x: F.elu(x, 1.0))
    add("sigmoid", lambda r: uniform(r, -4, 4, *shape), torch.sigmoid)
    add("tanh", lambda r: uniform(r, -3, 3, *shape), torch.tanh)
    add("gelu", lambda r: uniform(r, -3, 3, *shape), F.gelu)
    add("gelu_tanh", lambda r: uniform(r, -3, 3, *shape),
        lambda x: F.gelu(x, approximate="tanh"))
    add("silu", lambda r: uniform(r, -4, 4, *shape), F.silu)

    # softplus: some inputs past the threshold (where it returns x itself),
    # none right at it (the derivative jumps there).
    def softplus_b1(r):
        x = uniform(r, -4, 4, 20)
        x[[3, 9, 14, 17]] = [21.5, 24.0, -22.0, 30.0]
        return f32(x.reshape(shape))

    def softplus_b2(r):
        x = away(uniform(r, -4, 4, 20), [2.5], 0.1)
        x[[2, 11]] = [3.1, 3.9]
        return f32(x.reshape(shape))

    add("softplus", softplus_b1, lambda x: F.softplus(x, beta=1, threshold=20))
    add("softplus_b2_t5", softplus_b2,
        lambda x: F.softplus(x, beta=2, threshold=5))
    add("clamp", lambda r: away(uniform(r, -1.5, 1.5, *shape), [-0.5, 0.7], 0.05),
        lambda x: torch.clamp(x, -0.5, 0.7))


def compare_where_cases():
    """Comparisons (forward only, bool outputs) and where with a bool mask."""
    # small integer values so that equal pairs occur
    rng = rng_for("eq")
    case("eq", [f32(rng.integers(-2, 3, (3, 4))), f32(rng.integers(-2, 3, (3, 4)))],
         torch.eq, grad=False)
    rng = rng_for("lt")
    case("lt", [f32(rng.integers(-2, 3, (3, 1))), f32(rng.integers(-2, 3, (1, 4)))],
         torch.lt, grad=False)
    rng = rng_for("gt")
    case("gt", [f32(rng.integers(-2, 3, (2, 3, 4))), f32(rng.integers(-2, 3, (4,)))],
         torch.gt, grad=False)

    rng = rng_for("where")
    mask = rng.random((3, 4)) < 0.5
    case("where", [mask, randn(rng, 3, 4), randn(rng, 1, 4)], torch.where)


def matmul_cases():
    rng = rng_for("matmul_2d")
    case("matmul_2d", [randn(rng, 4, 5), randn(rng, 5, 3)], torch.matmul)
    rng = rng_for("matmul_batched")
    case("matmul_batched", [randn(rng, 2, 3, 4), randn(rng, 2, 4, 5)], torch.matmul)
    rng = rng_for("matmul_bcast")
    case("matmul_bcast", [randn(rng, 2, 1, 3, 4), randn(rng, 3, 4, 2)], torch.matmul)
    rng = rng_for("matmul_1d_2d")
    case("matmul_1d_2d", [randn(rng, 5), randn(rng, 5, 3)], torch.matmul)
    rng = rng_for("matmul_2d_1d")
    case("matmul_2d_1d", [randn(rng, 3, 5), randn(rng, 5)], torch.matmul)
    # nb_matmul_t(a, b, trans_a=1, trans_b=1): a^T @ b^T
    rng = rng_for("matmul_tt")
    case("matmul_tt", [randn(rng, 5, 4), randn(rng, 3, 5)],
         lambda a, b: a.t() @ b.t())


def reduce_cases():
    """Reductions of a (2, 3, 4) input; tie-free values for max/min/argmax."""
    def add(name, fn, grad=True, tie_free=False):
        rng = rng_for(name)
        x = distinct(rng, 2, 3, 4) if tie_free else randn(rng, 2, 3, 4)
        case(name, [x], fn, grad)

    add("sum_all", lambda x: x.sum())
    add("sum_1", lambda x: x.sum(dim=1))
    add("sum_02_keep", lambda x: x.sum(dim=(0, 2), keepdim=True))
    add("mean_all", lambda x: x.mean())
    add("mean_02", lambda x: x.mean(dim=(0, 2)))
    add("mean_neg1_keep", lambda x: x.mean(dim=-1, keepdim=True))
    add("amax_all", lambda x: x.amax(dim=(0, 1, 2)), tie_free=True)
    add("amax_1", lambda x: x.amax(dim=1), tie_free=True)
    add("amax_02_keep", lambda x: x.amax(dim=(0, 2), keepdim=True), tie_free=True)
    add("amin_0", lambda x: x.amin(dim=0), tie_free=True)
    add("amin_12_keep", lambda x: x.amin(dim=(1, 2), keepdim=True), tie_free=True)
    add("argmax_1", lambda x: x.argmax(dim=1), grad=False, tie_free=True)
    add("argmax_neg1_keep", lambda x: x.argmax(dim=-1, keepdim=True),
        grad=False, tie_free=True)


def shape_cases():
    rng = rng_for("reshape")
    case("reshape", [randn(rng, 2, 3, 4)], lambda x: x.reshape(4, -1))
    rng = rng_for("permute")
    case("permute", [randn(rng, 2, 3, 4)], lambda x: x.permute(2, 0, 1))
    # reshape of a permuted (non-contiguous) value
    rng = rng_for("permute_reshape")
    case("permute_reshape", [randn(rng, 2, 3, 4)],
         lambda x: x.permute(1, 0, 2).reshape(3, 8))
    rng = rng_for("slice_step")
    case("slice_step", [randn(rng, 3, 6)], lambda x: x[:, 1:5:2])
    # negative start/stop and a step, one axis after the other
    rng = rng_for("slice_neg_2axes")
    case("slice_neg_2axes", [randn(rng, 4, 7)], lambda x: x[-3:, ::3])
    rng = rng_for("concat3")
    case("concat3", [randn(rng, 2, 3), randn(rng, 2, 1), randn(rng, 2, 4)],
         lambda a, b, c: torch.cat([a, b, c], dim=1))
    # F.pad orders pads from the last dim: (last before, last after, prev ...)
    rng = rng_for("pad")
    case("pad", [randn(rng, 2, 3, 4)], lambda x: F.pad(x, (1, 2, 0, 1), value=0.5))


def softmax_loss_cases():
    rng = rng_for("softmax_last")
    case("softmax_last", [randn(rng, 3, 5)], lambda x: torch.softmax(x, dim=-1))
    rng = rng_for("softmax_0")
    case("softmax_0", [randn(rng, 3, 5)], lambda x: torch.softmax(x, dim=0))
    rng = rng_for("log_softmax_last")
    case("log_softmax_last", [randn(rng, 3, 5)], lambda x: torch.log_softmax(x, dim=-1))
    rng = rng_for("log_softmax_0")
    case("log_softmax_0", [randn(rng, 3, 5)], lambda x: torch.log_softmax(x, dim=0))

    rng = rng_for("cross_entropy")
    case("cross_entropy", [randn(rng, 6, 5), labels(rng, 6, 5)],
         lambda x, t: F.cross_entropy(x, t))
    rng = rng_for("cross_entropy_ls")
    case("cross_entropy_ls", [randn(rng, 6, 5), labels(rng, 6, 5)],
         lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1))
    # nll_loss takes log-probabilities: the input is itself a log_softmax output
    rng = rng_for("nll_loss")
    logp = torch.log_softmax(torch.from_numpy(randn(rng, 6, 5)), dim=-1).numpy()
    case("nll_loss", [f32(logp), labels(rng, 6, 5)], lambda x, t: F.nll_loss(x, t))
    rng = rng_for("mse_loss")
    case("mse_loss", [randn(rng, 3, 4), randn(rng, 3, 4)], F.mse_loss)
    rng = rng_for("bce_logits")
    case("bce_logits", [f32(2.0 * rng.standard_normal((3, 4))), uniform(rng, 0, 1, 3, 4)],
         F.binary_cross_entropy_with_logits)


def mlp_case():
    """x(8,5) -> x @ W1 + b1 -> tanh -> @ W2 + b2 -> cross_entropy.
    The weights are stored (in, out) so that nabla computes x @ W directly."""
    rng = rng_for("mlp")
    x = randn(rng, 8, 5)
    w1 = f32(rng.standard_normal((5, 7)) * 0.5)
    b1 = f32(rng.standard_normal(7) * 0.1)
    w2 = f32(rng.standard_normal((7, 3)) * 0.5)
    b2 = f32(rng.standard_normal(3) * 0.1)
    t = labels(rng, 8, 3)

    def mlp(x, w1, b1, w2, b2, t):
        h = torch.tanh(x @ w1 + b1)
        return F.cross_entropy(h @ w2 + b2, t)

    case("mlp", [x, w1, b1, w2, b2, t], mlp)


# ---- writing ----------------------------------------------------------------

def describe(tag, a):
    kind = {np.float32: "f32", np.int64: "i64", np.bool_: "bool"}[a.dtype.type]
    return "%s:%s(%s)" % (tag, kind, ",".join(str(d) for d in a.shape))


def save(name, suffix, array):
    # order="C" keeps 0-d arrays 0-d (np.ascontiguousarray would not)
    np.save(os.path.join(OUT_DIR, "%s.%s.npy" % (name, suffix)),
            np.array(array, order="C"))


def generate(name, inputs, fn, grad):
    tensors = []
    for a in inputs:
        t = torch.from_numpy(a.copy())
        if grad and t.is_floating_point():
            t.requires_grad_(True)
        tensors.append(t)

    y = fn(*tensors)
    for i, a in enumerate(inputs):
        save(name, "x%d" % i, a)
    save(name, "y", y.detach().numpy())

    if grad:
        rng = rng_for(name + ".gy")
        gy = randn(rng, *y.shape)
        wrt = [i for i, t in enumerate(tensors) if t.is_floating_point()]
        loss = (y * torch.from_numpy(gy)).sum()
        grads = torch.autograd.grad(loss, [tensors[i] for i in wrt])
        save(name, "gy", gy)
        for i, g in zip(wrt, grads):
            assert g.dtype == torch.float32 and g.shape == tensors[i].shape
            save(name, "gx%d" % i, g.numpy())

    line = "%-20s %d %-6s %s -> %s" % (
        name, len(inputs), "grad" if grad else "nograd",
        " ".join(describe("x%d" % i, a) for i, a in enumerate(inputs)),
        describe("y", y.detach().numpy()))
    return line


def main():
    binary_cases()
    scalar_cases()
    unary_cases()
    compare_where_cases()
    matmul_cases()
    reduce_cases()
    shape_cases()
    softmax_loss_cases()
    mlp_case()

    names = [c[0] for c in CASES]
    assert len(names) == len(set(names)), "duplicate case names"

    # start from an empty directory so that no stale fixture survives
    os.makedirs(OUT_DIR, exist_ok=True)
    for f in os.listdir(OUT_DIR):
        if f.endswith(".npy") or f == "MANIFEST.txt":
            os.remove(os.path.join(OUT_DIR, f))

    lines = [generate(*c) for c in CASES]
    with open(os.path.join(OUT_DIR, "MANIFEST.txt"), "w") as f:
        f.write("# Generated by tests/gen_fixtures.py (torch %s); do not edit.\n"
                % torch.__version__)
        f.write("# name n_inputs grad|nograd inputs -> output\n")
        for line in lines:
            f.write(line + "\n")

    total = sum(os.path.getsize(os.path.join(OUT_DIR, f)) for f in os.listdir(OUT_DIR))
    print("wrote %d cases, %d files, %d bytes to %s"
          % (len(CASES), len(os.listdir(OUT_DIR)), total, OUT_DIR))


if __name__ == "__main__":
    main()
