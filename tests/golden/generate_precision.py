#!/usr/bin/python3
"""Generates tests/golden/precision.txt: reference results for optreg's element-type
conversions and 8-bit quantization (<optreg/dtype.hpp>, <optreg/quantize.hpp>) that
precision_golden_test.cpp replays bit for bit.

    /usr/bin/python3 tests/golden/generate_precision.py

The references:
- rounding to nearest: PyTorch 1.13's own conversions, tensor.to(torch.bfloat16) and
  tensor.to(torch.float16) (round to nearest, ties to even);
- stochastic rounding, rounding_bits and blockwise quantization: numpy written from the rules
  in docs/precision.md (floats as exact rationals, not as bit tricks).

File format (line based, tokens separated by single spaces; '#' lines are comments; every
number in hexadecimal is a bit pattern):

    optreg-precision 1
    bf16 X H            float bits X rounds to bfloat16 bits H
    f16 X H             float bits X rounds to float16 bits H
    srbf16 X R H        float bits X with 16 random bits R rounds stochastically to bfloat16 H
    srf16 X R H         the same to float16
    bits S T P E B      rounding_bits(S, T, P, E) is B (all decimal but B)
    block MAP X...      a block of float bits, quantized with the signed (1), unsigned (0) or
                        squared (2: the unsigned map's values squared, quint8's) map
    codes A C...        its absmax bits A and codes C (decimal)
"""

import os
from fractions import Fraction

import numpy as np
import torch

OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "precision.txt")
M64 = (1 << 64) - 1


def floats(rng):
    """Finite floats of every magnitude and sign, the ties of both 16-bit types, and edges."""
    out = [0.0, -0.0, 1.0, -1.0, 65504.0, 65519.99, 65520.0, 65536.0, 6.1035156e-05, 5.9604645e-08,
           2.9802322e-08, 1e-30, -1e-30, 3.0e38, -3.4e38, 1.401298e-45]
    bits = rng.integers(0, 1 << 32, size=3000, dtype=np.uint64).astype(np.uint32)
    out += [float(b) for b in bits.view(np.float32) if np.isfinite(b)]
    # ties: bfloat16 (low 16 bits 0x8000) and float16 normals (low 13 bits 0x1000)
    for b in bits[:500]:
        out.append(float(np.uint32((int(b) & 0xFFFF0000) | 0x8000).view(np.float32)))
    small = rng.uniform(-70000, 70000, size=500).astype(np.float32)
    for f in small:
        b = int(np.float32(f).view(np.uint32))
        out.append(float(np.uint32((b & 0xFFFFE000) | 0x1000).view(np.float32)))
        out.append(float(f))
    return [f for f in out if np.isfinite(np.float32(f))]


def fbits(f):
    return int(np.float32(f).view(np.uint32))


def neighbours16(x, kind):
    """The 16-bit magnitudes lo <= |x| < hi of `kind` as exact Fractions, with lo's bits."""
    a = abs(Fraction(float(np.float32(x))))
    dtype = torch.bfloat16 if kind == "bf16" else torch.float16
    # every finite non-negative value of the type, from its bit patterns
    table = torch.arange(0, 0x7F80 if kind == "bf16" else 0x7C00, dtype=torch.int32).to(torch.int16)
    values = table.view(dtype).to(torch.float64).numpy()
    i = int(np.searchsorted(values, float(a), side="right")) - 1
    lo = Fraction(float(values[i]))
    if i + 1 < len(values):
        hi = Fraction(float(values[i + 1]))
    else:  # past the largest finite value: the next power of two stands for infinity
        hi = Fraction(2) ** (128 if kind == "bf16" else 16)
    return a, lo, hi, i


def stochastic(x, r, kind):
    a, lo, hi, i = neighbours16(x, kind)
    part = (a - lo) / (hi - lo)
    up = r < int(part * 65536)  # floor
    mag = i + (1 if up else 0)
    sign = 0x8000 if np.signbit(np.float32(x)) else 0
    return sign | mag


def mix(z):
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def rounding_bits(seed, step, param, element):
    return mix(mix(mix(mix(seed) ^ step) ^ param) ^ element)


def dynamic_map(signed, squared=False):
    v = []
    for k in range(7):
        count = 2 ** k if signed else 2 ** (k + 1)
        for j in range(count):
            lo = 0.1 + 0.9 * j / count
            hi = 0.1 + 0.9 * (j + 1) / count
            v.append(10.0 ** (k - 6) * (lo + hi) / 2)
            if signed:
                v.append(-10.0 ** (k - 6) * (lo + hi) / 2)
    v += [0.0, 1.0]
    v = np.array(sorted(v), dtype=np.float64)
    if squared:
        v = v * v  # squared in double, rounded once to float like the others
    return v.astype(np.float32)


def quantize(x, kind):
    m = dynamic_map(kind == 1, kind == 2)
    absmax = np.float32(np.max(np.abs(x)))
    codes = []
    for xi in x:
        q = np.float32(xi) / absmax  # a float32 division
        # the nearest map value, the lower index on a tie; distances as float32 differences
        dist = [abs(np.float32(mv) - q) for mv in m]
        best = 0
        for c in range(1, 256):
            if dist[c] < dist[best]:
                best = c
        codes.append(best)
    return absmax, codes


def main():
    rng = np.random.default_rng(20261202)
    xs = floats(rng)
    lines = ["optreg-precision 1", "# generated by generate_precision.py; do not edit"]
    t = torch.tensor(np.array(xs, dtype=np.float32))
    bf = t.to(torch.bfloat16).view(torch.int16).numpy().astype(np.uint16)
    hf = t.to(torch.float16).view(torch.int16).numpy().astype(np.uint16)
    for x, b, h in zip(xs, bf, hf):
        lines.append("bf16 %08x %04x" % (fbits(x), int(b)))
        lines.append("f16 %08x %04x" % (fbits(x), int(h)))
    for x in xs[:400]:
        for r in (0, 1, 0x7FFF, 0x8000, 0xFFFF, int(rng.integers(0, 65536))):
            lines.append("srbf16 %08x %04x %04x" % (fbits(x), r, stochastic(x, r, "bf16")))
            if abs(x) < 65536:
                lines.append("srf16 %08x %04x %04x" % (fbits(x), r, stochastic(x, r, "f16")))
    for seed, step, param, element in [(0, 0, 0, 0), (1, 2, 3, 4), (20261202, 1000, 7, 123456789), (M64, M64, M64, M64)]:
        lines.append("bits %d %d %d %d %016x" % (seed, step, param, element, rounding_bits(seed, step, param, element)))
    for signed in (1, 0):
        for scale in (1e-8, 1e-3, 1.0, 1e4):
            x = rng.standard_normal(512).astype(np.float32) * np.float32(scale)
            if not signed:
                x = np.abs(x)
            absmax, codes = quantize(x, signed)
            lines.append("block %d %s" % (signed, " ".join("%08x" % int(v) for v in x.view(np.uint32))))
            lines.append("codes %08x %s" % (int(np.float32(absmax).view(np.uint32)), " ".join(str(c) for c in codes)))
    # The squared map (quint8, second moments): squared gradients, and values spread over the
    # 14 decades it spans.
    for scale in (1e-4, 1.0):
        g = rng.standard_normal(512).astype(np.float32) * np.float32(scale)
        spread = (np.float32(10.0) ** rng.uniform(-15.0, 0.0, 512).astype(np.float32)) * np.float32(scale)
        for x in (g * g, spread.astype(np.float32)):
            absmax, codes = quantize(x, 2)
            lines.append("block 2 %s" % " ".join("%08x" % int(v) for v in x.view(np.uint32)))
            lines.append("codes %08x %s" % (int(np.float32(absmax).view(np.uint32)), " ".join(str(c) for c in codes)))
    with open(OUTPUT, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
