#!/usr/bin/python3
"""Generates tests/golden/state_dtypes.txt and stochastic_rounding.txt.

state_dtypes.txt: Adam and SGD with momentum on float32 parameters
with their state kept in bfloat16 or blockwise int8 (the `state_dtype` option), computed by
numpy references that emulate the storage, written from docs/precision.md:

- every step reads the state as stored (a bfloat16 value widened; an int8 code as its map
  value times its block's absmax), runs the optimizer's update in float32, operation by
  operation in the plugins' order, and stores the new state again: rounded to nearest
  bfloat16, or each block of 512 quantized with its absmax (the signed map for first moments,
  the squared map for second moments; generate_precision.py's quantize());
- the gradients are the objective's, in float32, at the reference's parameters (torch's
  autograd, as generate.py computes them), and the file records them.

stochastic_rounding.txt: SGD and Adam on bfloat16 parameters without master weights, each
step's float32 result rounded stochastically into the parameter with the 16 random bits
rounding_bits(rounding_seed, step, parameter id, element) >> 48 (generate_precision.py's
stochastic() and rounding_bits()); the gradients are the objective's at the parameters, rounded
to bfloat16.

golden_test.cpp replays the cases through the plugins bit for bit: the references round every
float32 operation as the plugins do. The file has generate.py's format; a group's state_dtype
is written as state_dtype="int8".

    /usr/bin/python3 tests/golden/generate_state.py
"""

import math
import os
import sys

import numpy as np
import torch

import generate
from generate_precision import dynamic_map, quantize, rounding_bits, stochastic

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "state_dtypes.txt")
OUTPUT_SR = os.path.join(HERE, "stochastic_rounding.txt")
STEPS = 50
f32 = np.float32


def bf16(x):
    """float32 values rounded to nearest bfloat16 (ties to even), as float32."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32)


def stored(x, state_dtype, second_moment):
    """x as the state stores it: as it is (float32), rounded to bfloat16, or quantized per block
    of 512."""
    if state_dtype == "float32":
        return x
    if state_dtype == "bfloat16":
        return bf16(x)
    kind = 2 if second_moment else 1
    m = dynamic_map(kind == 1, kind == 2)
    out = np.empty_like(x)
    for b in range(0, x.size, 512):
        block = x[b:b + 512]
        absmax = f32(np.max(np.abs(block)))
        if absmax == 0:
            out[b:b + 512] = f32(0)
            continue
        _, codes = quantize(block, kind)
        out[b:b + 512] = np.array([f32(m[c]) * absmax for c in codes], dtype=np.float32)
    return out


class AdamRef:
    """The adam plugin's step (L2 weight decay) over float32 numpy arrays."""

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, n, lr, betas, eps, weight_decay):
        self.lr, self.betas, self.eps, self.wd = lr, betas, eps, weight_decay
        self.m = [np.zeros(k, np.float32) for k in n]
        self.v = [np.zeros(k, np.float32) for k in n]
        self.t = 0

    def step(self, xs, gs, state_dtype):
        self.t += 1
        b1, b2 = self.betas
        f0 = f32(-(self.lr / (1.0 - math.pow(b1, self.t))))
        f1 = f32(math.sqrt(1.0 - math.pow(b2, self.t)))
        for i, (x, g) in enumerate(zip(xs, gs)):
            grad = g
            if self.wd != 0.0:
                grad = grad + f32(self.wd) * x
            m = self.m[i] * f32(b1) + f32(1.0 - b1) * grad
            v = self.v[i] * f32(b2) + f32(1.0 - b2) * grad * grad
            denom = np.sqrt(v) / f1 + f32(self.eps)
            xs[i] = x + f0 * m / denom
            self.m[i] = stored(m, state_dtype, False)
            self.v[i] = stored(v, state_dtype, True)

    def state(self, i):
        return {"exp_avg": self.m[i], "exp_avg_sq": self.v[i]}


class SgdRef:
    """The sgd plugin's step, with momentum (no dampening) or without, over float32 numpy arrays."""

    state_names = ("momentum_buffer",)

    def __init__(self, n, lr, momentum):
        self.lr, self.momentum = lr, momentum
        self.buf = [None for _ in n]

    def step(self, xs, gs, state_dtype):
        for i, (x, g) in enumerate(zip(xs, gs)):
            if self.momentum == 0.0:  # no buffer
                xs[i] = x + f32(-self.lr) * g
                continue
            b = g if self.buf[i] is None else self.buf[i] * f32(self.momentum) + f32(1.0) * g
            self.buf[i] = stored(b, state_dtype, False)
            xs[i] = x + f32(-self.lr) * b

    def state(self, i):
        return {} if self.buf[i] is None else {"momentum_buffer": self.buf[i]}


def bf16_stochastic(x, seed, step, param):
    """float32 values rounded stochastically to bfloat16 with the bits of (seed, step, param, i)."""
    out = np.empty_like(x)
    for i, v in enumerate(x):
        r = rounding_bits(seed, step, param, i) >> 48
        bits = stochastic(v, r, "bf16")
        out[i] = np.array([bits << 16], dtype=np.uint32).view(np.float32)[0]
    return out


def run(out, name, opt_name, state_dtype, options, seed, rounding_seed=None):
    """One case; with `rounding_seed` the parameters are bfloat16, rounded stochastically."""
    shapes = generate.DEFAULT_SHAPES
    obj = generate.Objective(shapes, seed)
    xs = [t.numpy().astype(np.float32).ravel().copy() for t in obj.init]
    if rounding_seed is not None:
        xs = [bf16(x) for x in xs]
    sizes = [x.size for x in xs]
    if opt_name == "adam":
        ref = AdamRef(sizes, options["lr"], options["betas"], options["eps"], options["weight_decay"])
        keys = ("lr", "betas", "eps", "weight_decay")
    else:
        ref = SgdRef(sizes, options["lr"], options["momentum"])
        keys = ("lr", "momentum")
    out.append("case %s" % name)
    out.append("optimizer %s" % opt_name)
    out.append("steps %d" % STEPS)
    for i, (s, x) in enumerate(zip(shapes, xs)):
        out.append("param %d %s %s" % (i, generate.fmt_shape(s), generate.fmt_tensor(torch.from_numpy(x))))
    opts = " ".join("%s=%s" % (k, generate.fmt_option(options[k])) for k in keys)
    if rounding_seed is not None:
        opts += " rounding=\"stochastic\" rounding_seed=%d" % rounding_seed
    out.append("group %s %s state_dtype=\"%s\"" % (",".join(str(i) for i in range(len(shapes))), opts,
                                                  state_dtype))
    for k in range(1, STEPS + 1):
        out.append("step %d" % k)
        params = [torch.from_numpy(x.reshape(s)).clone().requires_grad_(True) for x, s in zip(xs, shapes)]
        grads = torch.autograd.grad(obj.loss(params), params)
        gs = [g.detach().numpy().astype(np.float32).ravel() for g in grads]
        if rounding_seed is not None:
            gs = [bf16(g) for g in gs]  # a bfloat16 parameter's gradient is bfloat16
        for i, g in enumerate(gs):
            out.append("grad %d %s" % (i, generate.fmt_tensor(torch.from_numpy(g))))
        ref.step(xs, gs, state_dtype)
        if rounding_seed is not None:
            xs = [bf16_stochastic(x, rounding_seed, k, i) for i, x in enumerate(xs)]
        for i, x in enumerate(xs):
            out.append("value %d %s" % (i, generate.fmt_tensor(torch.from_numpy(x))))
        for i in range(len(xs)):
            for key, value in ref.state(i).items():
                out.append("state %d %s %s" % (i, key, generate.fmt_tensor(torch.from_numpy(value))))
    out.append("end")


def cases():
    adam = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    adam_wd = dict(adam, lr=3e-2, weight_decay=0.05)
    sgd = dict(lr=0.02, momentum=0.9)
    return [
        ("adam_bfloat16_state", "adam", "bfloat16", adam),
        ("adam_int8_state", "adam", "int8", adam),
        ("adam_int8_state_weight_decay", "adam", "int8", adam_wd),
        ("sgd_momentum_bfloat16_state", "sgd", "bfloat16", sgd),
        ("sgd_momentum_int8_state", "sgd", "int8", sgd),
    ]


def stochastic_cases():
    return [
        ("sgd_bfloat16_stochastic", "sgd", "float32", dict(lr=0.01, momentum=0.0), 5),
        ("sgd_momentum_bfloat16_stochastic", "sgd", "float32", dict(lr=0.01, momentum=0.9), 6),
        ("adam_bfloat16_stochastic", "adam", "float32",
         dict(lr=3e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0), 7),
        ("adam_bfloat16_stochastic_bfloat16_state", "adam", "bfloat16",
         dict(lr=3e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0), 8),
    ]


def write_stochastic():
    all_cases = stochastic_cases()
    out = [
        "# optreg golden trajectories of bfloat16 parameters rounded stochastically, from numpy",
        "# references. Generated by tests/golden/generate_state.py; the format is generate.py's,",
        "# with a 'dtype bfloat16' line. Do not edit.",
        generate.FORMAT_LINE,
        "cases %d" % len(all_cases),
        "dtype bfloat16",
    ]
    for name, opt_name, state_dtype, options, rounding_seed in all_cases:
        run(out, name, opt_name, state_dtype, options, generate.case_seed(name), rounding_seed)
    text = "\n".join(out) + "\n"
    with open(OUTPUT_SR, "w") as f:
        f.write(text)
    print("wrote %s: %d cases, %d steps each, %d bytes" % (OUTPUT_SR, len(all_cases), STEPS, len(text)),
          file=sys.stderr)


def main():
    torch.use_deterministic_algorithms(True)
    write_stochastic()
    all_cases = cases()
    out = [
        "# optreg golden trajectories with the optimizer state in bfloat16 and int8, from numpy",
        "# references that emulate the storage. Generated by tests/golden/generate_state.py; the",
        "# format is generate.py's. Do not edit.",
        generate.FORMAT_LINE,
        "cases %d" % len(all_cases),
    ]
    for name, opt_name, state_dtype, options in all_cases:
        run(out, name, opt_name, state_dtype, options, generate.case_seed(name))
    text = "\n".join(out) + "\n"
    with open(OUTPUT, "w") as f:
        f.write(text)
    print("wrote %s: %d cases, %d steps each, %d bytes" % (OUTPUT, len(all_cases), STEPS, len(text)),
          file=sys.stderr)


if __name__ == "__main__":
    main()
