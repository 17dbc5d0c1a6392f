#!/usr/bin/python3
"""Generates tests/golden/schedules.txt: reference learning-rate schedules of PyTorch 1.13's
torch.optim.lr_scheduler (StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR, LinearLR,
OneCycleLR, ReduceLROnPlateau, SequentialLR, ChainedScheduler, CosineAnnealingWarmRestarts,
PolynomialLR, ConstantLR, CyclicLR, and LambdaLR with the factor of optreg's `piecewise`) that
schedule_golden_test.cpp replays through the optreg schedulers plugin and the core's
sequential and chained schedulers, built from the same config.

Run it with the system Python that has torch:

    /usr/bin/python3 tests/golden/generate_schedules.py

Each case makes an optimizer (SGD with momentum, or Adam) over one small parameter per group,
with each group's own lr, attaches the scheduler and records every group's lr (and, for
schedulers that cycle it, its momentum: SGD's `momentum`, Adam's `betas[0]`) right after the
scheduler is made (step 0) and after each of its steps. The optimizer itself never steps:
a schedule does not depend on the parameters. OneCycleLR cases stop at step total_steps - 1,
the last step of the cycle: PyTorch also computes a step total_steps by extrapolating the last
phase (a negative lr with linear annealing), where optreg holds the cycle's final values.

File format (line based, tokens separated by single spaces; blank lines and lines starting
with '#' are ignored):

    optreg-schedules 1              format name and version (first line that is not a comment)
    cases N                         the number of cases that follow
    case NAME                       starts a case; NAME is [A-Za-z0-9_]+
    optimizer OPT                   sgd (momentum 0.9) or adam
    groups LR...                    the lr of each param group, in order
    scheduler YAML                  the rest of the line: the config's `scheduler:` section as
                                    a YAML flow map
    steps K                         the number of scheduler steps
    metrics M...                    (metric-driven schedulers) the metric given to step K, in order
    lr K V...                       every group's lr after step K (0: after setup)
    momentum K V...                 every group's momentum after step K (only when it cycles)
    end                             ends the case

Every number is written with '%.17g', so it reads back as the same double.
"""

import math
import os
import warnings

import torch
from torch.optim import lr_scheduler as sched

FORMAT_LINE = "optreg-schedules 1"
OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schedules.txt")


def num(x):
    return "%.17g" % x


def make_optimizer(kind, lrs):
    groups = [{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lrs[0], momentum=0.9)
    return torch.optim.Adam(groups, lr=lrs[0])


def momentum_of(opt, kind):
    return [g["momentum"] if kind == "sgd" else g["betas"][0] for g in opt.param_groups]


# name, optimizer, lrs, YAML of the scheduler section, factory(opt), steps, metrics, record momentum
def cases():
    out = []

    def add(name, kind, lrs, yaml, factory, steps, metrics=None, momentum=False):
        out.append((name, kind, lrs, yaml, factory, steps, metrics, momentum))

    add("step_two_groups", "sgd", [0.1, 0.01], "{name: step, step_size: 3, gamma: 0.5}",
        lambda o: sched.StepLR(o, step_size=3, gamma=0.5), 20)
    add("step_every_step", "adam", [0.003], "{name: step, step_size: 1, gamma: 0.9}",
        lambda o: sched.StepLR(o, step_size=1, gamma=0.9), 15)
    add("multistep_repeated_milestone", "sgd", [0.1, 0.02], "{name: multistep, milestones: [2, 5, 5, 9], gamma: 0.3}",
        lambda o: sched.MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.3), 14)
    add("multistep_unsorted", "adam", [0.001], "{name: multistep, milestones: [7, 3], gamma: 0.1}",
        lambda o: sched.MultiStepLR(o, milestones=[7, 3], gamma=0.1), 10)
    add("exponential_two_groups", "sgd", [0.1, 0.05], "{name: exponential, gamma: 0.95}",
        lambda o: sched.ExponentialLR(o, gamma=0.95), 40)
    add("exponential_growth", "adam", [0.0001], "{name: exponential, gamma: 1.05}",
        lambda o: sched.ExponentialLR(o, gamma=1.05), 25)
    add("cosine_several_periods", "sgd", [0.1, 0.01], "{name: cosine, T_max: 10, eta_min: 0.001}",
        lambda o: sched.CosineAnnealingLR(o, T_max=10, eta_min=0.001), 45)
    add("cosine_to_zero", "adam", [0.002], "{name: cosine, T_max: 7}",
        lambda o: sched.CosineAnnealingLR(o, T_max=7), 30)
    add("linear_warmup", "sgd", [0.1, 0.3], "{name: linear, start_factor: 0.1, total_iters: 10}",
        lambda o: sched.LinearLR(o, start_factor=0.1, total_iters=10), 15)
    add("linear_decay", "adam", [0.01], "{name: linear, start_factor: 0.5, end_factor: 0.2, total_iters: 4}",
        lambda o: sched.LinearLR(o, start_factor=0.5, end_factor=0.2, total_iters=4), 8)
    add("linear_defaults", "sgd", [0.1], "{name: linear}", lambda o: sched.LinearLR(o), 8)
    add("onecycle_sgd_momentum", "sgd", [0.01, 0.02], "{name: onecycle, max_lr: 0.5, total_steps: 20}",
        lambda o: sched.OneCycleLR(o, max_lr=0.5, total_steps=20), 19, momentum=True)
    add("onecycle_adam_betas_linear_three_phase", "adam", [0.001],
        "{name: onecycle, max_lr: 0.01, total_steps: 30, anneal_strategy: linear, three_phase: true, pct_start: 0.25}",
        lambda o: sched.OneCycleLR(o, max_lr=0.01, total_steps=30, anneal_strategy="linear", three_phase=True,
                                   pct_start=0.25), 29, momentum=True)
    add("onecycle_without_momentum", "sgd", [0.1],
        "{name: onecycle, max_lr: 1.0, total_steps: 12, cycle_momentum: false, div_factor: 10, final_div_factor: 100}",
        lambda o: sched.OneCycleLR(o, max_lr=1.0, total_steps=12, cycle_momentum=False, div_factor=10,
                                   final_div_factor=100), 11, momentum=True)
    falling = [1.0, 0.9, 0.8, 0.8, 0.8, 0.8, 0.79995, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.5, 0.5, 0.5, 0.5, 0.5,
               0.5]
    add("plateau_min_rel", "sgd", [0.1, 0.01], "{name: plateau, patience: 2}",
        lambda o: sched.ReduceLROnPlateau(o, patience=2), len(falling), metrics=falling)
    rising = [0.1, 0.2, 0.2, 0.25, 0.25, 0.25, 0.25, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    add("plateau_max_abs_cooldown_min_lr", "adam", [0.01],
        "{name: plateau, mode: max, threshold_mode: abs, threshold: 0.01, patience: 1, cooldown: 2, factor: 0.5, "
        "min_lr: 0.002}",
        lambda o: sched.ReduceLROnPlateau(o, mode="max", threshold_mode="abs", threshold=0.01, patience=1, cooldown=2,
                                          factor=0.5, min_lr=0.002), len(rising), metrics=rising)

    def warmup_cosine(o):
        a = sched.LinearLR(o, start_factor=0.1, total_iters=5)
        b = sched.CosineAnnealingLR(o, T_max=15, eta_min=0.0001)
        return sched.SequentialLR(o, [a, b], milestones=[5])

    add("sequential_warmup_cosine", "sgd", [0.1, 0.02],
        "{name: sequential, schedulers: [{name: linear, start_factor: 0.1, total_iters: 5}, "
        "{name: cosine, T_max: 15, eta_min: 0.0001}], milestones: [5]}", warmup_cosine, 30)

    def three_stages(o):
        a = sched.ExponentialLR(o, gamma=0.8)
        b = sched.StepLR(o, step_size=2, gamma=0.5)
        c = sched.MultiStepLR(o, milestones=[1, 3], gamma=0.1)
        return sched.SequentialLR(o, [a, b, c], milestones=[3, 8])

    add("sequential_three_stages", "adam", [0.01],
        "{name: sequential, schedulers: [{name: exponential, gamma: 0.8}, {name: step, step_size: 2, gamma: 0.5}, "
        "{name: multistep, milestones: [1, 3], gamma: 0.1}], milestones: [3, 8]}", three_stages, 14)

    add("warm_restarts_fixed_period", "sgd", [0.1, 0.01], "{name: warm_restarts, T_0: 5, eta_min: 0.001}",
        lambda o: sched.CosineAnnealingWarmRestarts(o, T_0=5, eta_min=0.001), 23)
    add("warm_restarts_growing_periods", "adam", [0.003], "{name: warm_restarts, T_0: 3, T_mult: 2}",
        lambda o: sched.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2), 50)
    add("polynomial_quadratic", "sgd", [0.1, 0.05], "{name: polynomial, total_iters: 8, power: 2.0}",
        lambda o: sched.PolynomialLR(o, total_iters=8, power=2.0), 12)
    add("polynomial_defaults", "adam", [0.01], "{name: polynomial}", lambda o: sched.PolynomialLR(o), 8)
    add("constant_warmup", "sgd", [0.1, 0.3], "{name: constant, factor: 0.25, total_iters: 4}",
        lambda o: sched.ConstantLR(o, factor=0.25, total_iters=4), 9)
    add("constant_defaults", "adam", [0.002], "{name: constant}", lambda o: sched.ConstantLR(o), 8)
    add("cyclic_triangular_momentum", "sgd", [0.5, 0.5], "{name: cyclic, base_lr: 0.01, max_lr: 0.1, step_size_up: 4}",
        lambda o: sched.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=4), 20, momentum=True)
    add("cyclic_triangular2_uneven", "sgd", [0.5],
        "{name: cyclic, base_lr: 0.001, max_lr: 0.01, step_size_up: 3, step_size_down: 5, mode: triangular2}",
        lambda o: sched.CyclicLR(o, base_lr=0.001, max_lr=0.01, step_size_up=3, step_size_down=5, mode="triangular2"),
        30, momentum=True)
    add("cyclic_exp_range_without_momentum", "sgd", [0.5],
        "{name: cyclic, base_lr: 0.002, max_lr: 0.02, step_size_up: 5, mode: exp_range, gamma: 0.97, "
        "cycle_momentum: false}",
        lambda o: sched.CyclicLR(o, base_lr=0.002, max_lr=0.02, step_size_up=5, mode="exp_range", gamma=0.97,
                                 cycle_momentum=False), 25, momentum=True)

    def piecewise(steps, factors, cosine):
        def f(t):
            if t <= steps[0]:
                return factors[0]
            if t >= steps[-1]:
                return factors[-1]
            k = max(i for i in range(len(steps)) if steps[i] <= t)
            pct = (t - steps[k]) / (steps[k + 1] - steps[k])
            if cosine:
                return factors[k + 1] + (factors[k] - factors[k + 1]) * (1 + math.cos(math.pi * pct)) / 2
            return factors[k] + (factors[k + 1] - factors[k]) * pct
        return f

    add("piecewise_linear_warmup_then_decay", "sgd", [0.1, 0.02],
        "{name: piecewise, steps: [0, 5, 20, 30], factors: [0.0, 1.0, 0.1, 0.01]}",
        lambda o: sched.LambdaLR(o, piecewise([0, 5, 20, 30], [0.0, 1.0, 0.1, 0.01], False)), 35)
    add("piecewise_cosine_starting_late", "adam", [0.001],
        "{name: piecewise, steps: [3, 13], factors: [1.0, 0.05], interpolation: cosine}",
        lambda o: sched.LambdaLR(o, piecewise([3, 13], [1.0, 0.05], True)), 16)

    def warmup_restarts(o):
        a = sched.ConstantLR(o, factor=0.5, total_iters=3)
        b = sched.CosineAnnealingWarmRestarts(o, T_0=4, T_mult=2)
        return sched.SequentialLR(o, [a, b], milestones=[3])

    add("sequential_constant_then_warm_restarts", "sgd", [0.1],
        "{name: sequential, schedulers: [{name: constant, factor: 0.5, total_iters: 3}, "
        "{name: warm_restarts, T_0: 4, T_mult: 2}], milestones: [3]}", warmup_restarts, 20)

    def warmup_times_step(o):
        a = sched.LinearLR(o, start_factor=0.1, total_iters=5)
        b = sched.StepLR(o, step_size=3, gamma=0.5)
        return sched.ChainedScheduler([a, b])

    add("chained_warmup_times_step", "sgd", [0.1, 0.02],
        "{name: chained, schedulers: [{name: linear, start_factor: 0.1, total_iters: 5}, "
        "{name: step, step_size: 3, gamma: 0.5}]}", warmup_times_step, 15)

    def constant_times_exponential_times_cosine(o):
        a = sched.ConstantLR(o, factor=0.5, total_iters=4)
        b = sched.ExponentialLR(o, gamma=0.9)
        c = sched.CosineAnnealingLR(o, T_max=8, eta_min=0.0)
        return sched.ChainedScheduler([a, b, c])

    add("chained_three", "adam", [0.003],
        "{name: chained, schedulers: [{name: constant, factor: 0.5, total_iters: 4}, {name: exponential, gamma: 0.9}, "
        "{name: cosine, T_max: 8}]}", constant_times_exponential_times_cosine, 12)
    return out


def main():
    warnings.simplefilter("ignore")  # the schedulers warn that the optimizer never stepped
    all_cases = cases()
    lines = ["# Generated by tests/golden/generate_schedules.py from torch " + torch.__version__ + "; do not edit.",
             FORMAT_LINE, "cases %d" % len(all_cases)]
    for name, kind, lrs, yaml, factory, steps, metrics, momentum in all_cases:
        opt = make_optimizer(kind, lrs)
        s = factory(opt)
        lines += ["case " + name, "optimizer " + kind, "groups " + " ".join(num(x) for x in lrs),
                  "scheduler " + yaml, "steps %d" % steps]
        if metrics is not None:
            lines.append("metrics " + " ".join(num(m) for m in metrics))

        def record(k):
            lines.append("lr %d " % k + " ".join(num(g["lr"]) for g in opt.param_groups))
            if momentum:
                lines.append("momentum %d " % k + " ".join(num(m) for m in momentum_of(opt, kind)))

        record(0)
        for k in range(1, steps + 1):
            if metrics is not None:
                s.step(metrics[k - 1])
            else:
                s.step()
            record(k)
        lines.append("end")
    with open(OUTPUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %d cases to %s" % (len(all_cases), OUTPUT))


if __name__ == "__main__":
    main()
