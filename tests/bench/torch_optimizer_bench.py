"""optreg.torch.Optimizer against torch.optim in the same run: elements per second of one
step, best of several, over one tensor of 1e7 elements and over 10,000 tensors of 100 elements
each allocated on its own (as a model hands them over), on 2 threads.

    PYTHONPATH=build-bench/python python3 tests/bench/torch_optimizer_bench.py [--seconds S]

`optreg` is the whole step of optreg.torch.Optimizer (handing torch's gradients and options
to optreg, then the update); `native` is the update alone (optreg.Optimizer.step() with the
gradients already handed over), so the difference is the Python-side cost per step.
"""

import argparse
import time

import torch

import optreg
import optreg.torch

CASES = [("1 x 1e7", 1, 10_000_000), ("10000 x 100", 10_000, 100)]
OPTIMIZERS = [
    ("adam", torch.optim.Adam, {"lr": 1e-3}),
    ("adamw", torch.optim.AdamW, {"lr": 1e-3}),
    ("sgd", torch.optim.SGD, {"lr": 1e-3, "momentum": 0.9}),
]


def best_time(step, seconds):
    step()  # the first step makes the state
    best, spent = float("inf"), 0.0
    while spent < seconds:
        t = time.perf_counter()
        step()
        d = time.perf_counter() - t
        best, spent = min(best, d), spent + d
    return best


def params_of(tensors, elements):
    params = [torch.nn.Parameter(torch.full((elements,), 0.5)) for _ in range(tensors)]
    for p in params:
        p.grad = torch.full((elements,), 1e-3)
    return params


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print("optreg.torch.Optimizer against torch %s (%d threads; optreg's pool: every hardware thread)"
          % (torch.__version__, torch.get_num_threads()))
    print()
    header = "%-6s %-12s %14s %14s %14s %14s %9s %9s" % (
        "optim", "case", "torch foreach", "torch single", "optreg", "native", "x foreach", "x single")
    print(header)
    print("-" * len(header))
    for name, cls, options in OPTIMIZERS:
        for label, tensors, elements in CASES:
            n = tensors * elements
            rates = []
            for make in (lambda p: cls(p, foreach=True, **options), lambda p: cls(p, foreach=False, **options),
                         lambda p: optreg.torch.Optimizer(p, name, **options)):
                params = params_of(tensors, elements)
                opt = make(params)
                rates.append(n / best_time(opt.step, args.seconds) / 1e6)
                del opt, params
            params = params_of(tensors, elements)
            native = optreg.torch.Optimizer(params, name, **options)
            native.step()  # hands the gradients over once
            rates.append(n / best_time(native.native.step, args.seconds) / 1e6)
            del native, params
            print("%-6s %-12s %14.1f %14.1f %14.1f %14.1f %8.1fx %8.1fx" % (
                name, label, rates[0], rates[1], rates[2], rates[3], rates[2] / rates[0], rates[2] / rates[1]))
    print()
    print("columns: millions of elements per second of one step (best); x: optreg against torch")


if __name__ == "__main__":
    main()
