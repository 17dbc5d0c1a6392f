#!/usr/bin/env python3
"""Writes lbfgs.txt: trajectories of torch 1.13's torch.optim.LBFGS in float64 on a quadratic
and on Rosenbrock's function, which lbfgs_golden_test.cpp replays through the lbfgs plugin with
a closure that evaluates the same function.

Format (after '#' comments):

    optreg-lbfgs 1
    cases N
    case NAME
    problem quadratic DIM            f(x) = 1/2 x'Ax - b'x, then
    a v...                           A row-major (DIM x DIM), symmetric positive definite
    b v...                           b
    problem rosenbrock DIM           f(x) = sum 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2
    x0 v...                          the start
    options key=value ...            lr, max_iter, max_eval, tolerance_grad, tolerance_change,
                                     history_size, line_search
    step K LOSS FUNC_EVALS N_ITER    after step K: the loss step() returned, the state's
    x v...                           evaluation and iteration counts, and x
    end

Every float is written with '%.17g'. Run with Debian's python3 (torch 1.13):

    /usr/bin/python3 tests/golden/generate_lbfgs.py
"""

import os

import numpy as np
import torch

torch.set_default_dtype(torch.float64)


def quadratic(dim, condition, seed):
    gen = np.random.default_rng(seed)
    q, _ = np.linalg.qr(gen.standard_normal((dim, dim)))
    a = q @ np.diag(np.geomspace(1.0, condition, dim)) @ q.T
    a = (a + a.T) / 2
    return a, gen.standard_normal(dim)


CASES = [
    # name, problem, x0, options, steps
    ("quadratic_fixed_step", ("quadratic", 8, 50.0, 1), None,
     dict(lr=0.5, max_iter=6, history_size=4), 8),
    ("quadratic_strong_wolfe", ("quadratic", 8, 200.0, 2), None,
     dict(lr=1.0, max_iter=5, history_size=3, line_search="strong_wolfe"), 6),
    ("quadratic_max_eval", ("quadratic", 6, 20.0, 3), None,
     dict(lr=0.3, max_iter=20, max_eval=7, history_size=10), 5),
    ("rosenbrock_strong_wolfe", ("rosenbrock", 2), [-1.2, 1.0],
     dict(lr=1.0, max_iter=20, history_size=10, line_search="strong_wolfe"), 6),
    ("rosenbrock_5_strong_wolfe_short_history", ("rosenbrock", 5), [-1.2, 1.0, -0.5, 0.8, 1.5],
     dict(lr=1.0, max_iter=10, history_size=2, line_search="strong_wolfe"), 8),
    ("rosenbrock_fixed_step", ("rosenbrock", 4), [-1.2, 1.0, 0.5, 0.8],
     dict(lr=0.01, max_iter=10, history_size=5), 8),
    ("rosenbrock_tolerances", ("rosenbrock", 2), [-1.2, 1.0],
     dict(lr=1.0, max_iter=50, history_size=20, line_search="strong_wolfe",
          tolerance_grad=1e-3, tolerance_change=1e-6), 4),
]


def fmt(values):
    return " ".join("%.17g" % float(v) for v in np.ravel(values))


def main():
    out = ["# L-BFGS trajectories of torch.optim.LBFGS (PyTorch %s), float64; written by"
           " generate_lbfgs.py" % torch.__version__, "optreg-lbfgs 1", "cases %d" % len(CASES)]
    for name, problem, x0, options, steps in CASES:
        out.append("case " + name)
        if problem[0] == "quadratic":
            _, dim, condition, seed = problem
            a, b = quadratic(dim, condition, seed)
            out += ["problem quadratic %d" % dim, "a " + fmt(a), "b " + fmt(b)]
            ta, tb = torch.tensor(a), torch.tensor(b)
            x = torch.zeros(dim, requires_grad=True)

            def f():
                return 0.5 * x @ (ta @ x) - tb @ x
        else:
            dim = problem[1]
            out.append("problem rosenbrock %d" % dim)
            x = torch.tensor(x0, requires_grad=True)

            def f():
                return torch.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
        out.append("x0 " + fmt(x.detach().numpy()))
        out.append("options " + " ".join("%s=%s" % (k, v) for k, v in options.items()))
        torch_options = dict(options)
        if "line_search" in torch_options:
            torch_options["line_search_fn"] = torch_options.pop("line_search")
        opt = torch.optim.LBFGS([x], **torch_options)

        def closure():
            opt.zero_grad()
            loss = f()
            loss.backward()
            return loss

        for k in range(1, steps + 1):
            loss = opt.step(closure)
            state = opt.state[x]
            out.append("step %d %s %d %d" % (k, "%.17g" % float(loss), state["func_evals"], state["n_iter"]))
            out.append("x " + fmt(x.detach().numpy()))
        out.append("end")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lbfgs.txt")
    with open(path, "w") as fh:
        fh.write("\n".join(out) + "\n")
    print("wrote %s: %d cases" % (path, len(CASES)))


if __name__ == "__main__":
    main()
