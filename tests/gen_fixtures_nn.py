#!/usr/bin/python3
"""Forward and backward parity fixtures for nabla's neural-network ops
(issue 3: convolution, pooling, normalisation, embedding/gather, attention),
computed with PyTorch.

Run from the project root:

    /usr/bin/python3 tests/gen_fixtures_nn.py

It OVERWRITES everything in tests/fixtures_nn/ (stale fixtures of cases that
no longer exist are removed too). The output is deterministic: every case
draws its inputs from its own numpy generator seeded by (SEED, crc32(case
name)), so adding or removing a case does not change the others.

The format is that of tests/gen_fixtures.py. For each case NAME:
    NAME.x0.npy, NAME.x1.npy, ...   the inputs (float32; int64 indices and
                                    labels; bool masks)
    NAME.y.npy                      the output of the op
    NAME.gy.npy                     a random cotangent of y's shape
    NAME.gxK.npy                    d/d xK of (y * gy).sum(), for each float
                                    input xK that is not a state
    NAME.sK.npy                     for each STATE input xK (batch_norm's
                                    running statistics): its value after the
                                    op ran (PyTorch updates it in place)

tests/fixtures_nn/MANIFEST.txt lists one case a line:
    NAME  n_inputs  grad|nograd  state_mask  x0:dtype(shape) ... -> y:dtype(shape)
where bit K of state_mask (hex) marks input K as a state.
tests/test_parity_nn.c rebuilds every case with nabla's builders (graph/nn.h)
and nb_vjp and compares with these files.

Dropout is NOT here: its mask comes from nabla's own Philox stream and cannot
match torch's RNG; tests/test_gather.c checks it (statistics, repeatability,
the backward meeting the same mask).
"""

import math
import os
import zlib

import numpy as np
import torch
import torch.nn.functional as F

SEED = 20261124
HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "fixtures_nn")

torch.manual_seed(SEED)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

# Every case appended here as (name, inputs, fn, grad, state_mask).
CASES = []


def case(name, inputs, fn, grad=True, states=()):
    """Register a case: inputs is a list of numpy arrays, fn maps torch tensors
    to one torch tensor, grad says whether to write gradients; states lists
    the indices of inputs that fn updates in place (written back as sK)."""
    mask = 0
    for k in states:
        mask |= 1 << k
    CASES.append((name, inputs, fn, grad, mask))


def rng_for(name):
    """A numpy generator of its own for each case."""
    return np.random.default_rng([SEED, zlib.crc32(name.encode())])


# ---- input makers -----------------------------------------------------------

def f32(a):
    return np.array(a, dtype=np.float32, order="C")


def randn(rng, *shape, scale=1.0):
    return f32(rng.standard_normal(shape) * scale)


def uniform(rng, lo, hi, *shape):
    return f32(rng.uniform(lo, hi, shape))


def distinct(rng, *shape):
    """Values with no ties (max-pool gradients are then unique): a shuffled
    ramp with small jitter, well separated."""
    n = int(np.prod(shape))
    ramp = (rng.permutation(n) - n / 2.0) * 0.25
    return f32((ramp + rng.uniform(0.0, 0.1, n)).reshape(shape))


def indices(rng, hi, *shape):
    return rng.integers(0, hi, size=shape).astype(np.int64)


# ---- convolution --------------------------------------------------------------

def conv_cases():
    # (name, x shape, w shape, bias?, torch kwargs, F.pad before or None)
    specs = [
        ("conv2d_s2", (2, 3, 7, 7), (4, 3, 3, 3), True, dict(stride=2), None),
        ("conv2d_p1", (2, 3, 5, 6), (4, 3, 3, 3), True, dict(padding=1), None),
        # F.pad order: (left, right, top, bottom); nabla's {t, b, l, r} = {1, 0, 2, 1}
        ("conv2d_asym_pad", (2, 3, 5, 5), (4, 3, 3, 3), True, dict(), (2, 1, 1, 0)),
        ("conv2d_dil2", (2, 3, 7, 7), (4, 3, 3, 3), True, dict(dilation=2, padding=1), None),
        ("conv2d_g2", (2, 4, 6, 6), (6, 2, 3, 3), True, dict(groups=2, padding=1), None),
        ("conv2d_depthwise", (2, 3, 6, 6), (3, 1, 3, 3), True,
         dict(groups=3, padding=1), None),
        # depthwise with channel multiplier 2
        ("conv2d_depthwise_m2", (2, 3, 5, 5), (6, 1, 3, 3), False,
         dict(groups=3, stride=2, padding=1), None),
        ("conv2d_nobias", (2, 3, 6, 5), (5, 3, 3, 3), False, dict(padding=1), None),
        ("conv2d_1x1", (2, 3, 4, 5), (5, 3, 1, 1), True, dict(), None),
        # rectangular kernel, per-axis stride and padding
        ("conv2d_rect", (1, 2, 6, 7), (3, 2, 2, 3), True,
         dict(stride=(1, 2), padding=(1, 0)), None),
        # 1x1 image, batch 1, padding 1: only the kernel centre touches data
        ("conv2d_1x1_image", (1, 3, 1, 1), (2, 3, 3, 3), True, dict(padding=1), None),
        # everything at once: per-axis stride and dilation, asymmetric padding
        # (F.pad: left 1, right 0, top 0, bottom 2), groups 2, rectangular kernel
        ("conv2d_combo", (2, 4, 7, 6), (6, 2, 3, 2), True,
         dict(stride=(2, 1), dilation=(2, 1), groups=2), (1, 0, 0, 2)),
        # channel counts off any SIMD width, big enough for several tiles/threads
        ("conv2d_wide", (2, 9, 10, 10), (17, 9, 3, 3), True, dict(padding=1), None),
    ]
    for name, xs, ws, has_bias, kw, pad in specs:
        rng = rng_for(name)
        inputs = [randn(rng, *xs), randn(rng, *ws, scale=0.5)]
        if has_bias:
            inputs.append(randn(rng, ws[0], scale=0.1))

        def fn(x, w, b=None, kw=kw, pad=pad):
            if pad is not None:
                x = F.pad(x, pad)
            return F.conv2d(x, w, b, **kw)

        case(name, inputs, fn)

    rng = rng_for("conv1d_s2_p1")
    case("conv1d_s2_p1", [randn(rng, 2, 3, 10), randn(rng, 4, 3, 3, scale=0.5),
                          randn(rng, 4, scale=0.1)],
         lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1))
    rng = rng_for("conv1d_dil2_g2")
    case("conv1d_dil2_g2", [randn(rng, 2, 4, 9), randn(rng, 6, 2, 3, scale=0.5)],
         lambda x, w: F.conv1d(x, w, None, dilation=2, groups=2, padding=2))
    # nabla's conv1d padding {left, right} = {2, 0}: causal convolution
    rng = rng_for("conv1d_asym_pad")
    case("conv1d_asym_pad", [randn(rng, 2, 3, 8), randn(rng, 2, 3, 3, scale=0.5),
                             randn(rng, 2, scale=0.1)],
         lambda x, w, b: F.conv1d(F.pad(x, (2, 0)), w, b))

    # conv_transpose2d: w is (C_in, C_out / groups, kh, kw)
    rng = rng_for("conv_transpose2d_s2")
    case("conv_transpose2d_s2", [randn(rng, 2, 4, 4, 4), randn(rng, 4, 3, 3, 3, scale=0.5),
                                 randn(rng, 6, scale=0.1)],
         lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1,
                                            groups=2))
    rng = rng_for("conv_transpose2d_plain")
    case("conv_transpose2d_plain", [randn(rng, 2, 3, 4, 5), randn(rng, 3, 2, 3, 3, scale=0.5)],
         lambda x, w: F.conv_transpose2d(x, w, None))
    rng = rng_for("conv_transpose2d_dil2")
    case("conv_transpose2d_dil2", [randn(rng, 1, 2, 3, 3), randn(rng, 2, 3, 3, 3, scale=0.5)],
         lambda x, w: F.conv_transpose2d(x, w, None, stride=2, padding=1, output_padding=1,
                                         dilation=2))
    rng = rng_for("conv_transpose2d_s2_k2")
    case("conv_transpose2d_s2_k2", [randn(rng, 1, 3, 3, 3), randn(rng, 3, 4, 2, 2, scale=0.5),
                                    randn(rng, 4, scale=0.1)],
         lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2))


# ---- pooling ------------------------------------------------------------------

def pool_cases():
    rng = rng_for("max_pool2d_k2")
    case("max_pool2d_k2", [distinct(rng, 2, 3, 6, 6)], lambda x: F.max_pool2d(x, 2))
    rng = rng_for("max_pool2d_k3s2p1")
    case("max_pool2d_k3s2p1", [distinct(rng, 2, 3, 7, 7)],
         lambda x: F.max_pool2d(x, 3, stride=2, padding=1))
    rng = rng_for("max_pool2d_ceil")
    case("max_pool2d_ceil", [distinct(rng, 2, 2, 7, 7)],
         lambda x: F.max_pool2d(x, 2, stride=2, ceil_mode=True))
    rng = rng_for("max_pool2d_k3s2p1_ceil")
    case("max_pool2d_k3s2p1_ceil", [distinct(rng, 1, 2, 6, 6)],
         lambda x: F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True))

    rng = rng_for("max_pool2d_rect")
    case("max_pool2d_rect", [distinct(rng, 1, 2, 5, 6)],
         lambda x: F.max_pool2d(x, (2, 3), stride=(1, 2), padding=(1, 1)))

    rng = rng_for("avg_pool2d_k2")
    case("avg_pool2d_k2", [randn(rng, 2, 3, 6, 6)], lambda x: F.avg_pool2d(x, 2))
    rng = rng_for("avg_pool2d_pad_incl")
    case("avg_pool2d_pad_incl", [randn(rng, 2, 3, 7, 7)],
         lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=True))
    rng = rng_for("avg_pool2d_pad_excl")
    case("avg_pool2d_pad_excl", [randn(rng, 2, 3, 7, 7)],
         lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False))
    rng = rng_for("avg_pool2d_ceil")
    case("avg_pool2d_ceil", [randn(rng, 2, 2, 7, 7)],
         lambda x: F.avg_pool2d(x, 2, stride=2, ceil_mode=True))
    # ceil_mode with padding: the last window runs past the padded input, and
    # PyTorch's divisor (count_include_pad) stops at the padded edge
    rng = rng_for("avg_pool2d_ceil_pad_incl")
    case("avg_pool2d_ceil_pad_incl", [randn(rng, 1, 2, 6, 6)],
         lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True,
                                count_include_pad=True))
    rng = rng_for("avg_pool2d_ceil_pad_excl")
    case("avg_pool2d_ceil_pad_excl", [randn(rng, 1, 2, 6, 6)],
         lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True,
                                count_include_pad=False))

    rng = rng_for("avg_pool2d_rect_ceil_excl")
    case("avg_pool2d_rect_ceil_excl", [randn(rng, 1, 2, 6, 5)],
         lambda x: F.avg_pool2d(x, (3, 2), stride=2, padding=1, ceil_mode=True,
                                count_include_pad=False))

    rng = rng_for("adaptive_avg_pool2d_1x1")
    case("adaptive_avg_pool2d_1x1", [randn(rng, 2, 3, 5, 4)],
         lambda x: F.adaptive_avg_pool2d(x, 1))
    rng = rng_for("global_avg_pool2d")
    case("global_avg_pool2d", [randn(rng, 2, 5, 3, 4)],
         lambda x: x.mean(dim=(2, 3), keepdim=True))
    rng = rng_for("upsample_nearest_x2")
    case("upsample_nearest_x2", [randn(rng, 2, 3, 3, 4)],
         lambda x: F.interpolate(x, scale_factor=2, mode="nearest"))
    rng = rng_for("upsample_nearest_2x3")
    case("upsample_nearest_2x3", [randn(rng, 1, 2, 3, 2)],
         lambda x: F.interpolate(x, scale_factor=(2, 3), mode="nearest"))


# ---- normalisation ------------------------------------------------------------

EPS = 1e-5
MOMENTUM = 0.1


def norm_cases():
    # batch_norm: inputs x, gamma, beta, running_mean, running_var (the last
    # two are states, updated in place when training)
    def bn(name, xshape, affine, training):
        rng = rng_for(name)
        c = xshape[1]
        x = randn(rng, *xshape, scale=1.5) + 0.5
        rm = randn(rng, c, scale=0.3)
        rv = uniform(rng, 0.5, 2.0, c)
        if affine:
            gamma = uniform(rng, 0.5, 1.5, c)
            beta = randn(rng, c, scale=0.2)
            inputs = [f32(x), gamma, beta, rm, rv]
            states = (3, 4)

            def fn(x, g, b, m, v):
                return F.batch_norm(x, m, v, g, b, training=training, momentum=MOMENTUM,
                                    eps=EPS)
        else:
            inputs = [f32(x), rm, rv]
            states = (1, 2)

            def fn(x, m, v):
                return F.batch_norm(x, m, v, None, None, training=training, momentum=MOMENTUM,
                                    eps=EPS)
        case(name, inputs, fn, states=states)

    bn("batch_norm_train", (4, 3, 3, 3), True, True)
    bn("batch_norm_train_noaffine", (3, 2, 2, 3), False, True)
    bn("batch_norm_train_2d", (6, 5), True, True)
    bn("batch_norm_eval", (4, 3, 3, 3), True, False)

    def ln(name, xshape, naxes, affine):
        rng = rng_for(name)
        nshape = xshape[len(xshape) - naxes:]
        x = randn(rng, *xshape, scale=2.0)
        if affine:
            inputs = [x, uniform(rng, 0.5, 1.5, *nshape), randn(rng, *nshape, scale=0.2)]
            fn = lambda x, g, b: F.layer_norm(x, nshape, g, b, eps=EPS)
        else:
            inputs = [x]
            fn = lambda x: F.layer_norm(x, nshape, None, None, eps=EPS)
        case(name, inputs, fn)

    ln("layer_norm_1", (2, 3, 6), 1, True)
    ln("layer_norm_1_noaffine", (2, 3, 6), 1, False)
    ln("layer_norm_2", (2, 3, 4, 5), 2, True)
    ln("layer_norm_2_noaffine", (2, 3, 4, 5), 2, False)

    rng = rng_for("group_norm_g2")
    case("group_norm_g2", [randn(rng, 2, 4, 3, 3, scale=1.5), uniform(rng, 0.5, 1.5, 4),
                           randn(rng, 4, scale=0.2)],
         lambda x, g, b: F.group_norm(x, 2, g, b, eps=EPS))
    rng = rng_for("group_norm_g2_noaffine")
    case("group_norm_g2_noaffine", [randn(rng, 2, 6, 2, 3, scale=1.5)],
         lambda x: F.group_norm(x, 2, None, None, eps=EPS))

    # rms_norm (not in torch 1.13): x / sqrt(mean(x^2 over the last dims) + eps) * gamma
    def rms(x, naxes, gamma):
        dims = tuple(range(x.dim() - naxes, x.dim()))
        y = x * torch.rsqrt(x.pow(2).mean(dim=dims, keepdim=True) + EPS)
        return y if gamma is None else y * gamma

    rng = rng_for("rms_norm_1")
    case("rms_norm_1", [randn(rng, 2, 3, 6), uniform(rng, 0.5, 1.5, 6)],
         lambda x, g: rms(x, 1, g))
    rng = rng_for("rms_norm_2_noaffine")
    case("rms_norm_2_noaffine", [randn(rng, 2, 3, 4)], lambda x: rms(x, 2, None))


# ---- embedding and gather -----------------------------------------------------

def gather_cases():
    rng = rng_for("embedding")
    idx = np.array([[1, 4, 1, 6, 0], [4, 4, 2, 1, 3]], dtype=np.int64)  # repeats
    case("embedding", [randn(rng, 7, 4), idx], lambda w, i: F.embedding(i, w))
    rng = rng_for("index_select_1")
    case("index_select_1", [randn(rng, 3, 5, 2), np.array([4, 0, 4, 2, 4], dtype=np.int64)],
         lambda x, i: torch.index_select(x, 1, i))
    rng = rng_for("gather_1")
    idx = np.array([[3, 0, 3], [1, 3, 4]], dtype=np.int64)
    # NumPy take along axis 1: x.shape[:1] + idx.shape + x.shape[2:]
    case("gather_1", [randn(rng, 3, 5, 2), idx], lambda x, i: x[:, i])
    rng = rng_for("gather_0")
    case("gather_0", [randn(rng, 4, 3), np.array([2, 2, 0, 3, 2], dtype=np.int64)],
         lambda x, i: x[i])


# ---- attention ----------------------------------------------------------------

def attention(q, k, v, mask=None, causal=False):
    """softmax(q k^T / sqrt(d) + mask) v, written out (torch 1.13 has no
    F.scaled_dot_product_attention). A bool mask keeps True; causal masks
    key j > query i (top-left aligned)."""
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        if mask.dtype == torch.bool:
            s = s.masked_fill(~mask, float("-inf"))
        else:
            s = s + mask
    if causal:
        lq, lk = s.shape[-2], s.shape[-1]
        s = s.masked_fill(torch.ones(lq, lk, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def attention_cases():
    rng = rng_for("sdpa")
    case("sdpa", [randn(rng, 2, 4, 8), randn(rng, 2, 5, 8), randn(rng, 2, 5, 6)],
         lambda q, k, v: attention(q, k, v))
    rng = rng_for("sdpa_causal")
    case("sdpa_causal", [randn(rng, 2, 2, 5, 4), randn(rng, 2, 2, 5, 4), randn(rng, 2, 2, 5, 3)],
         lambda q, k, v: attention(q, k, v, causal=True))
    rng = rng_for("sdpa_causal_rect")
    case("sdpa_causal_rect", [randn(rng, 2, 3, 4), randn(rng, 2, 5, 4), randn(rng, 2, 5, 4)],
         lambda q, k, v: attention(q, k, v, causal=True))
    rng = rng_for("sdpa_bool_mask")
    keep = rng.random((4, 5)) < 0.6
    keep[:, 0] = True  # every query keeps at least one key
    case("sdpa_bool_mask", [randn(rng, 2, 2, 4, 8), randn(rng, 2, 2, 5, 8),
                            randn(rng, 2, 2, 5, 6), keep],
         lambda q, k, v, m: attention(q, k, v, mask=m))
    # additive float mask broadcast over heads: its gradient sums over them
    rng = rng_for("sdpa_float_mask")
    case("sdpa_float_mask", [randn(rng, 2, 2, 4, 8), randn(rng, 2, 2, 5, 8),
                             randn(rng, 2, 2, 5, 6), randn(rng, 2, 1, 4, 5)],
         lambda q, k, v, m: attention(q, k, v, mask=m))


# ---- small networks -------------------------------------------------------------

def cnn_case():
    """x(4,1,8,8) -> conv 3x3 (1->4) + bias -> relu -> max_pool 2 -> flatten
    -> @ W (36, 3) + b -> cross_entropy(labels). W is stored (in, out)."""
    rng = rng_for("cnn")
    x = randn(rng, 4, 1, 8, 8)
    wc = randn(rng, 4, 1, 3, 3, scale=0.5)
    bc = randn(rng, 4, scale=0.1)
    w = randn(rng, 36, 3, scale=0.3)
    b = randn(rng, 3, scale=0.1)
    t = indices(rng, 3, 4)

    def cnn(x, wc, bc, w, b, t):
        h = F.max_pool2d(torch.relu(F.conv2d(x, wc, bc)), 2)
        return F.cross_entropy(h.flatten(1) @ w + b, t)

    case("cnn", [x, wc, bc, w, b, t], cnn)


def lstm_cell_case():
    """torch's nn.LSTMCell (gates i, f, g, o); y = concat(h', c') on dim 1."""
    rng = rng_for("lstm_cell")
    n, d_in, d_h = 3, 4, 5
    inputs = [randn(rng, n, d_in), randn(rng, n, d_h), randn(rng, n, d_h),
              randn(rng, 4 * d_h, d_in, scale=0.4), randn(rng, 4 * d_h, d_h, scale=0.4),
              randn(rng, 4 * d_h, scale=0.1), randn(rng, 4 * d_h, scale=0.1)]

    def fn(x, h, c, w_ih, w_hh, b_ih, b_hh):
        # what nn.LSTMCell.forward calls, with our tensors as its weights
        h2, c2 = torch._VF.lstm_cell(x, (h, c), w_ih, w_hh, b_ih, b_hh)
        return torch.cat([h2, c2], dim=1)

    # the module itself, loaded with the same weights, gives the same forward
    cell = torch.nn.LSTMCell(d_in, d_h)
    with torch.no_grad():
        for p, a in zip([cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh],
                        inputs[3:]):
            p.copy_(torch.from_numpy(a))
        t = [torch.from_numpy(a) for a in inputs]
        h_ref, c_ref = cell(t[0], (t[1], t[2]))
        assert torch.equal(fn(*t), torch.cat([h_ref, c_ref], dim=1))

    case("lstm_cell", inputs, fn)


# ---- writing ----------------------------------------------------------------

def describe(tag, a):
    kind = {np.float32: "f32", np.int64: "i64", np.bool_: "bool"}[a.dtype.type]
    return "%s:%s(%s)" % (tag, kind, ",".join(str(d) for d in a.shape))


def save(name, suffix, array):
    np.save(os.path.join(OUT_DIR, "%s.%s.npy" % (name, suffix)), np.array(array, order="C"))


def generate(name, inputs, fn, grad, state_mask):
    tensors = []
    for k, a in enumerate(inputs):
        t = torch.from_numpy(a.copy())
        if grad and t.is_floating_point() and not (state_mask >> k) & 1:
            t.requires_grad_(True)
        tensors.append(t)

    y = fn(*tensors)
    assert y.dtype == torch.float32
    for k, a in enumerate(inputs):
        save(name, "x%d" % k, a)
    save(name, "y", y.detach().numpy())
    for k, t in enumerate(tensors):
        if (state_mask >> k) & 1:
            save(name, "s%d" % k, t.detach().numpy())

    if grad:
        rng = rng_for(name + ".gy")
        gy = randn(rng, *y.shape)
        wrt = [k for k, t in enumerate(tensors) if t.requires_grad]
        loss = (y * torch.from_numpy(gy)).sum()
        grads = torch.autograd.grad(loss, [tensors[k] for k in wrt])
        save(name, "gy", gy)
        for k, g in zip(wrt, grads):
            assert g.dtype == torch.float32 and g.shape == tensors[k].shape
            save(name, "gx%d" % k, g.numpy())

    return "%-26s %d %-6s 0x%02x %s -> %s" % (
        name, len(inputs), "grad" if grad else "nograd", state_mask,
        " ".join(describe("x%d" % k, a) for k, a in enumerate(inputs)),
        describe("y", y.detach().numpy()))


def main():
    conv_cases()
    pool_cases()
    norm_cases()
    gather_cases()
    attention_cases()
    cnn_case()
    lstm_cell_case()

    names = [c[0] for c in CASES]
    assert len(names) == len(set(names)), "duplicate case names"

    os.makedirs(OUT_DIR, exist_ok=True)
    for f in os.listdir(OUT_DIR):
        if f.endswith(".npy") or f == "MANIFEST.txt":
            os.remove(os.path.join(OUT_DIR, f))

    lines = [generate(*c) for c in CASES]
    with open(os.path.join(OUT_DIR, "MANIFEST.txt"), "w") as f:
        f.write("# Generated by tests/gen_fixtures_nn.py (torch %s); do not edit.\n"
                % torch.__version__)
        f.write("# name n_inputs grad|nograd state_mask inputs -> output\n")
        f.write("# dropout: not here (nabla's Philox mask cannot match torch's RNG); "
                "tests/test_gather.c checks it\n")
        for line in lines:
            f.write(line + "\n")

    total = sum(os.path.getsize(os.path.join(OUT_DIR, f)) for f in os.listdir(OUT_DIR))
    print("wrote %d cases, %d files, %d bytes to %s"
          % (len(CASES), len(os.listdir(OUT_DIR)), total, OUT_DIR))


if __name__ == "__main__":
    main()
