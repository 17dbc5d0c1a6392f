#!/usr/bin/python3
"""Generates tests/golden/trajectories.txt: reference trajectories of torch.optim.SGD,
torch.optim.Adam and torch.optim.AdamW (PyTorch 1.13, float32, CPU, single-tensor path via
foreach=False) that golden_test.cpp replays through the optreg `sgd`, `adam` and `adamw` plugins;
of torch.optim.Adagrad, Adadelta, RMSprop, Adamax, NAdam, RAdam, ASGD and Rprop, replayed
through the plugins of the same names in lower case (`adagrad`, ..., `rprop`); and of LAMB,
LARS, Lion, Adafactor, ADOPT and Adan, which PyTorch 1.13 does not ship, from reference
implementations below written from their papers, replayed through the plugins of the same names. The `adagrad`
cases with eps_inside_sqrt=true come from MegEngineAdagrad below, a reference of MegEngine's
form of Adagrad written with numpy float32 operations, since torch has no such option.

Run it with the system Python that has torch and numpy:

    /usr/bin/python3 tests/golden/generate.py

Each case optimizes a fixed, seeded objective of all its parameters, concatenated into one
vector x:

    L(x) = 0.5 x'Ax - b'x + 0.3 sum(log(cosh(x - c))) + 0.05 sum(sin(2x))

where A is symmetric positive definite with eigenvalues spread over [0.01, 10] (condition
number 1000), so the trajectories are curved and differ per direction. The gradient of every
step is evaluated by torch autograd at the current parameters (of -L for the `maximize` cases,
so that those still converge). Every step's gradients and every parameter's value after the
step are recorded, so a replay needs no autograd: it feeds the recorded gradients and compares
the parameters after each step.

File format (line based, tokens separated by single spaces; blank lines and lines starting
with '#' are ignored):

    optreg-golden 1                 format name and version (first line that is not a comment)
    cases N                         the number of cases that follow
    case NAME                       starts a case; NAME is [A-Za-z0-9_]+
    optimizer OPT                   the registered optimizer name (sgd, adam, adamw, adagrad,
                                    adadelta, rmsprop, adamax, nadam, radam, asgd, rprop, lamb,
                                    lars, lion, adafactor, adopt, adan,
                                    schedulefree_adamw or muon)
    steps K                         the number of steps of the case
    param I SHAPE v...              parameter I (0, 1, ... in order), SHAPE like [2,3] or []
                                    for a scalar, then its numel initial values, row-major
    group IDS key=value ...         one parameter group, in order; IDS is a comma-separated
                                    list of parameter indices; every hyperparameter of the
                                    group follows, typed: true/false, a float, or a list of
                                    floats [a,b], or a "string"
    step K                          starts step K (1, 2, ... K in order); what follows up to
                                    the next `step` or `end` belongs to it:
    set_lr G V                      before this step, set the lr of group G to V
    grad I v...                     the gradient of parameter I for this step; a parameter
                                    without a grad line has no gradient (it is frozen for
                                    this step and the optimizer skips it)
    value I v...                    the value of parameter I after this step (one line for
                                    every parameter, frozen ones included)
    state I NAME v...               optional, after the value lines: the state tensor NAME of
                                    parameter I after this step, for cases that record state
                                    which never feeds back into the parameters (ASGD's `ax`)
    end                             ends the case

Every tensor element is written with '%.9g', which reads back as the same float32; every
hyperparameter with '%.9g' too, which is checked to read back as the same double.
"""

import math
import os
import sys
import zlib

import numpy as np
import torch

FORMAT_LINE = "optreg-golden 1"
STEPS = 200
# The dtype of the parameters, the objective and the optimizers' arithmetic; generate_float64.py
# sets float64.
DTYPE = torch.float32
LR_CHANGE_STEP = 100
OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "trajectories.txt")

SGD_KEYS = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")
ADAM_KEYS = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize")
ADAGRAD_KEYS = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps", "maximize",
                "eps_inside_sqrt")
ADADELTA_KEYS = ("lr", "rho", "eps", "weight_decay", "maximize")
RMSPROP_KEYS = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize")
ADAMAX_KEYS = ("lr", "betas", "eps", "weight_decay", "maximize")
NADAM_KEYS = ("lr", "betas", "eps", "weight_decay", "momentum_decay")
RADAM_KEYS = ("lr", "betas", "eps", "weight_decay")
ASGD_KEYS = ("lr", "lambd", "alpha", "t0", "weight_decay", "maximize")
RPROP_KEYS = ("lr", "etas", "step_sizes", "maximize")

DEFAULT_SHAPES = ([2, 3], [5], [2, 2, 2])


def fmt_float(v):
    return "%.9g" % v


def fmt_hyper(v):
    s = fmt_float(v)
    if float(s) != v:
        raise ValueError("hyperparameter %r does not round-trip through %s" % (v, s))
    return s


def fmt_option(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"%s"' % v
    if isinstance(v, (tuple, list)):
        return "[" + ",".join(fmt_hyper(float(e)) for e in v) + "]"
    return fmt_hyper(float(v))


def fmt_tensor(t):
    if DTYPE == torch.float64:
        a = t.detach().cpu().numpy().astype(np.float64).ravel()
    else:
        a = t.detach().cpu().numpy().astype(np.float32).ravel()
    if not np.all(np.isfinite(a)):
        raise ValueError("non-finite value in a trajectory")
    out = []
    for v in a.tolist():
        if DTYPE == torch.float64:
            s = "%.17g" % v
            if float(s) != v:
                raise ValueError("%r does not round-trip through %s" % (v, s))
        else:
            s = fmt_float(v)
            if np.float32(float(s)) != np.float32(v):
                raise ValueError("%r does not round-trip through %s" % (v, s))
        out.append(s)
    return " ".join(out)


def fmt_shape(shape):
    return "[" + ",".join(str(d) for d in shape) + "]"


class Objective:
    """The seeded loss of one case over parameters of the given shapes."""

    def __init__(self, shapes, seed):
        g = torch.Generator().manual_seed(seed)
        n = sum(int(np.prod(s)) for s in shapes)
        q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
        eig = torch.logspace(-2, 1, n, dtype=torch.float64)
        self.a = ((q * eig) @ q.T).to(DTYPE)
        self.a = 0.5 * (self.a + self.a.T)
        self.b = torch.randn(n, generator=g).to(DTYPE)
        self.c = (0.5 * torch.randn(n, generator=g)).to(DTYPE)
        self.init = [torch.randn(s, generator=g).to(DTYPE) for s in shapes]

    def loss(self, params):
        x = torch.cat([p.reshape(-1) for p in params])
        quad = 0.5 * torch.dot(x, self.a @ x) - torch.dot(self.b, x)
        return quad + 0.3 * torch.log(torch.cosh(x - self.c)).sum() + 0.05 * torch.sin(2.0 * x).sum()


class MegEngineAdagrad:
    """Adagrad in MegEngine's form, the reference of the `adagrad` cases with
    eps_inside_sqrt=true: per element, in float32,

        g = -grad if maximize else grad;  g = g + weight_decay * p  (if weight_decay != 0)
        sum = sum + g * g
        p = p - lr_t * (g / sqrt(sum + eps)),  lr_t = lr / (1 + (t - 1) * lr_decay)

    with t the parameter's own step count, lr_t computed in double and rounded to float32, and
    sum starting at initial_accumulator_value. The group options are torch's; each numpy
    operation rounds to float32 once, as the plugin's kernel does."""

    def __init__(self, groups):
        self.param_groups = []
        self.state = {}
        for g in groups:
            self.param_groups.append(dict(g, foreach=False))
            for p in g["params"]:
                init = np.float32(g["initial_accumulator_value"])
                self.state[p] = {"step": 0, "sum": np.full(p.shape, init, dtype=np.float32)}

    def step(self):
        f32 = np.float32
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                st["step"] += 1
                x = p.detach().numpy().astype(np.float32)
                grad = p.grad.numpy().astype(np.float32)
                if g["maximize"]:
                    grad = -grad
                if g["weight_decay"] != 0:
                    grad = grad + f32(g["weight_decay"]) * x
                st["sum"] = st["sum"] + grad * grad
                clr = g["lr"] / (1 + (st["step"] - 1) * g["lr_decay"])
                x = x - f32(clr) * (grad / np.sqrt(st["sum"] + f32(g["eps"])))
                with torch.no_grad():
                    p.copy_(torch.from_numpy(x))


def make_optimizer(name, opt_name, groups, params):
    """The reference optimizer of a case over `params`, and the option keys its groups write."""
    torch_groups = [dict(opts, params=[params[i] for i in ids]) for ids, opts in groups]
    if opt_name == "sgd":
        opt = torch.optim.SGD(torch_groups, lr=groups[0][1]["lr"], foreach=False)
        keys = SGD_KEYS
    elif opt_name == "adam":
        opt = torch.optim.Adam(torch_groups, foreach=False)
        keys = ADAM_KEYS
    elif opt_name == "adamw":
        opt = torch.optim.AdamW(torch_groups, foreach=False)
        keys = ADAM_KEYS
    elif opt_name == "adagrad" and any(opts["eps_inside_sqrt"] for _, opts in groups):
        if not all(opts["eps_inside_sqrt"] for _, opts in groups):
            raise ValueError("case %s mixes the two Adagrad forms" % name)
        opt = MegEngineAdagrad(torch_groups)
        keys = ADAGRAD_KEYS
    elif opt_name in TORCH_OPTIMIZERS:
        factory, keys = TORCH_OPTIMIZERS[opt_name]
        extra = {}
        if opt_name == "adagrad":
            # torch's Adagrad fills every group's sums from the constructor's
            # initial_accumulator_value and ignores the groups' own values.
            values = set(opts["initial_accumulator_value"] for _, opts in groups)
            if len(values) != 1:
                raise ValueError("case %s: torch's Adagrad takes one initial_accumulator_value"
                                 % name)
            extra["initial_accumulator_value"] = values.pop()
        opt = factory(torch_groups, foreach=False, **extra)
    elif opt_name in PAPER_REFERENCES:
        reference, keys = PAPER_REFERENCES[opt_name]
        opt = reference(torch_groups)
    else:
        raise ValueError(opt_name)
    return opt, keys


def run_case(out, name, opt_name, groups, seed, shapes=DEFAULT_SHAPES, lr_changes=None,
             frozen=None, record_state=()):
    """Runs one case and writes it.

    groups: list of (param indices, options) in order.
    lr_changes: {step: [(group, lr), ...]} applied before that step.
    frozen: function (step, param index) -> True when the parameter gets no gradient.
    record_state: names of state tensors written after every step for every parameter that
    has them.
    """
    lr_changes = lr_changes or {}
    frozen = frozen or (lambda k, i: False)
    maximize = any(opts.get("maximize", False) for _, opts in groups)
    if maximize and not all(opts.get("maximize", False) for _, opts in groups):
        raise ValueError("case %s mixes maximize and minimize groups" % name)

    obj = Objective(shapes, seed)
    params = [t.clone().requires_grad_(True) for t in obj.init]
    opt, keys = make_optimizer(name, opt_name, groups, params)

    out.append("case %s" % name)
    out.append("optimizer %s" % opt_name)
    out.append("steps %d" % STEPS)
    for i, p in enumerate(params):
        out.append("param %d %s %s" % (i, fmt_shape(p.shape), fmt_tensor(p)))
    for (ids, _), pg in zip(groups, opt.param_groups):
        if pg.get("foreach", False):
            raise ValueError("foreach must be off")
        opts = " ".join("%s=%s" % (k, fmt_option(pg[k])) for k in keys)
        out.append("group %s %s" % (",".join(str(i) for i in ids), opts))

    for k in range(1, STEPS + 1):
        out.append("step %d" % k)
        for gi, lr in lr_changes.get(k, []):
            opt.param_groups[gi]["lr"] = lr
            out.append("set_lr %d %s" % (gi, fmt_hyper(lr)))
        loss = obj.loss(params)
        if maximize:
            loss = -loss
        grads = torch.autograd.grad(loss, params)
        for i, (p, g) in enumerate(zip(params, grads)):
            if frozen(k, i):
                p.grad = None
            else:
                p.grad = g.detach().clone()
                out.append("grad %d %s" % (i, fmt_tensor(p.grad)))
        opt.step()
        for i, p in enumerate(params):
            out.append("value %d %s" % (i, fmt_tensor(p)))
        for i, p in enumerate(params):
            for key in record_state:
                if key in opt.state[p]:
                    out.append("state %d %s %s" % (i, key, fmt_tensor(opt.state[p][key])))
    out.append("end")


def sgd(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    return dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                nesterov=nesterov, maximize=maximize)


def adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False):
    return dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                maximize=maximize)


def adamw(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False):
    return adam(lr, betas, eps, weight_decay, amsgrad, maximize)


def adagrad(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
            maximize=False, eps_inside_sqrt=False):
    return dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize,
                eps_inside_sqrt=eps_inside_sqrt)


def adadelta(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
    return dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)


def rmsprop(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
            maximize=False):
    return dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                centered=centered, maximize=maximize)


def adamax(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False):
    return dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize)


def nadam(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3):
    return dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                momentum_decay=momentum_decay)


def radam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    return dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def asgd(lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.0, maximize=False):
    return dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay,
                maximize=maximize)


def rprop(lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0), maximize=False):
    return dict(lr=lr, etas=etas, step_sizes=step_sizes, maximize=maximize)


# The torch optimizers replayed by plugins of the same name, with the keys each case writes.
TORCH_OPTIMIZERS = {
    "adagrad": (torch.optim.Adagrad, ADAGRAD_KEYS),
    "adadelta": (torch.optim.Adadelta, ADADELTA_KEYS),
    "rmsprop": (torch.optim.RMSprop, RMSPROP_KEYS),
    "adamax": (torch.optim.Adamax, ADAMAX_KEYS),
    "nadam": (torch.optim.NAdam, NADAM_KEYS),
    "radam": (torch.optim.RAdam, RADAM_KEYS),
    "asgd": (torch.optim.ASGD, ASGD_KEYS),
    "rprop": (torch.optim.Rprop, RPROP_KEYS),
}

# ---------------------------------------------------------------------------------------------
# Optimizers that PyTorch 1.13 does not ship, written from their papers as float32
# torch.optim.Optimizer subclasses. Every norm, mean and RMS over a whole tensor (or a row or
# column of it) is taken in float64 and rounded once, as the plugins take them in double, so
# that the trajectories differ from the plugins' only by the rounding of the elementwise
# float32 operations.


def _norm(t):
    """The L2 norm of a tensor, in float64, as a Python float."""
    return float(torch.linalg.vector_norm(t.double()))


def _rms(t):
    """The root mean square of a tensor, in float64, as a Python float."""
    return float(t.double().pow(2).mean().sqrt())


class Lamb(torch.optim.Optimizer):
    """LAMB: You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76
    minutes", ICLR 2020, Algorithm 2, with the scaling function phi the identity, as
    MegEngine's megengine.optimizer.LAMB: the trust ratio ||x|| / ||r + lambda x|| is applied
    only when weight_decay > 0 or always_adapt, and is 1 when either norm is 0."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 bias_correction=True, always_adapt=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      bias_correction=bias_correction, always_adapt=always_adapt))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            wd = group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                # m_t = beta1 m + (1 - beta1) g;  v_t = beta2 v + (1 - beta2) g^2
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                bc1 = 1 - beta1 ** t if group["bias_correction"] else 1.0
                bc2 = 1 - beta2 ** t if group["bias_correction"] else 1.0
                # r_t = m_hat / (sqrt(v_hat) + eps), plus lambda x
                r = (m / bc1) / ((v / bc2).sqrt() + group["eps"])
                if wd != 0:
                    r = r.add(p, alpha=wd)
                # x = x - eta ||x|| / ||r|| r
                p_norm, r_norm = _norm(p), _norm(r)
                trust = 1.0
                if (group["always_adapt"] or wd > 0) and p_norm > 0 and r_norm > 0:
                    trust = p_norm / r_norm
                p.add_(r, alpha=-(group["lr"] * trust))


class Lars(torch.optim.Optimizer):
    """LARS: You, Gitman and Ginsburg, "Large Batch Training of Convolutional Networks", 2017,
    Algorithm 1: the local learning rate eta ||w|| / (||g|| + beta ||w||) (plus eps; 1 when a
    norm is 0) scales the gradient with its weight decay, g + beta w; the momentum is PyTorch
    SGD's (lr applied outside the buffer), with an optional Nesterov step."""

    def __init__(self, params, lr=1.0, momentum=0.9, weight_decay=0.0, trust_coefficient=1e-3,
                 eps=1e-8, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coefficient=trust_coefficient, eps=eps,
                                      nesterov=nesterov))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            wd, momentum = group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                p_norm, g_norm = _norm(p), _norm(g)
                local = 1.0
                if p_norm > 0 and g_norm > 0:
                    local = group["trust_coefficient"] * p_norm / (g_norm + wd * p_norm + group["eps"])
                d = g.add(p, alpha=wd) if wd != 0 else g.clone()
                d.mul_(local)
                if momentum != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    buf = state["momentum_buffer"]
                    buf.mul_(momentum).add_(d)
                    d = d.add(buf, alpha=momentum) if group["nesterov"] else buf
                p.add_(d, alpha=-group["lr"])


class Lion(torch.optim.Optimizer):
    """Lion: Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023,
    Algorithm 2: c = beta1 m + (1 - beta1) g; x = x (1 - lr lambda) - lr sign(c);
    m = beta2 m + (1 - beta2) g."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay,
                                      maximize=maximize))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr = group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = -p.grad if group["maximize"] else p.grad
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                c = m.mul(beta1).add(g, alpha=1 - beta1)
                p.mul_(1 - lr * group["weight_decay"]).add_(c.sign(), alpha=-lr)
                m.mul_(beta2).add_(g, alpha=1 - beta2)


class Adafactor(torch.optim.Optimizer):
    """Adafactor: Shazeer and Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory
    Cost", ICML 2018, Algorithms 4 (matrices) and 5 (vectors): the factored second moment
    V = R C / (1'R) over the last two dimensions (section 3, kept here as row and column means
    rather than sums, which gives the same V), the increasing decay beta2_t = 1 - t^-c
    (section 7.2), update clipping U / max(1, RMS(U) / d) (section 6), and the relative step
    size alpha_t = max(eps2, RMS(X_{t-1})) rho_t with rho_t = min(lr, 1 / sqrt(t)) (section 8,
    where lr = 1e-2). beta1 > 0 keeps a running average of the clipped updates (section 9);
    weight decay scales the parameter by 1 - alpha_t weight_decay."""

    def __init__(self, params, lr=1e-2, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=0.8,
                 beta1=0.0, weight_decay=0.0, scale_parameter=True, relative_step=True):
        super().__init__(params, dict(lr=lr, eps=eps, clip_threshold=clip_threshold,
                                      decay_rate=decay_rate, beta1=beta1,
                                      weight_decay=weight_decay, scale_parameter=scale_parameter,
                                      relative_step=relative_step))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            eps1, eps2 = group["eps"]
            beta1 = group["beta1"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                factored = p.dim() >= 2
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    if factored:
                        state["exp_avg_sq_row"] = torch.zeros(p.shape[:-1])
                        state["exp_avg_sq_col"] = torch.zeros(p.shape[:-2] + p.shape[-1:])
                    else:
                        state["exp_avg_sq"] = torch.zeros_like(p)
                    if beta1 > 0:
                        state["exp_avg"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                rho = min(group["lr"], 1 / math.sqrt(t)) if group["relative_step"] else group["lr"]
                alpha = max(eps2, _rms(p)) * rho if group["scale_parameter"] else rho
                decay = t ** -group["decay_rate"]
                beta2 = 1 - decay
                g2 = g * g + eps1
                if factored:
                    r, c = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
                    r.mul_(beta2).add_((g2.double().sum(-1) / g.shape[-1]).float(), alpha=decay)
                    c.mul_(beta2).add_((g2.double().sum(-2) / g.shape[-2]).float(), alpha=decay)
                    r_mean = (r.double().sum(-1) / r.shape[-1]).float()
                    u = g / ((r / r_mean.unsqueeze(-1)).unsqueeze(-1) * c.unsqueeze(-2)).sqrt()
                else:
                    v = state["exp_avg_sq"]
                    v.mul_(beta2).add_(g2, alpha=decay)
                    u = g / v.sqrt()
                u = u / max(1.0, _rms(u) / group["clip_threshold"])
                if beta1 > 0:
                    u = state["exp_avg"].mul_(beta1).add_(u, alpha=1 - beta1)
                p.mul_(1 - alpha * group["weight_decay"]).add_(u, alpha=-alpha)


def stepped_params(opt, tensors):
    """(group, parameter, gradient, state) of every parameter of `opt` that has a gradient, the
    gradient negated under the group's `maximize`, its state made at its first step with zero
    tensors named `tensors` and a `step` count, which is advanced."""
    for group in opt.param_groups:
        for p in group["params"]:
            if p.grad is None:
                continue
            state = opt.state[p]
            if not state:
                state["step"] = 0
                for key in tensors:
                    state[key] = torch.zeros_like(p)
            state["step"] += 1
            yield group, p, (-p.grad if group["maximize"] else p.grad), state


class Adopt(torch.optim.Optimizer):
    """ADOPT: Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta2 with the
    Optimal Rate", NeurIPS 2024, the clipped algorithm: the first gradient g0 only sets
    v = g0^2; then at update t = 1, 2, ...: m = beta1 m + (1 - beta1) clip(g / max(sqrt(v), eps),
    t^(1/4)); x = x - lr m; v = beta2 v + (1 - beta2) g^2. Weight decay is an L2 term added to
    the gradient (also before the first step's v), or decoupled: x scaled by 1 - lr wd before
    each update. The momentum moves with torch's lerp, as the authors' code does."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.9999), eps=1e-6, weight_decay=0.0,
                 decoupled_weight_decay=False, clip=True, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay, clip=clip,
                                      maximize=maximize))

    @torch.no_grad()
    def step(self):
        for group, p, g, state in stepped_params(self, ("exp_avg", "exp_avg_sq")):
            beta1, beta2 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            if wd != 0 and not group["decoupled_weight_decay"]:
                g = g.add(p, alpha=wd)
            v = state["exp_avg_sq"]
            if state["step"] == 1:
                v.addcmul_(g, g)
                continue
            if wd != 0 and group["decoupled_weight_decay"]:
                p.mul_(1 - lr * wd)
            normed = g / torch.clamp(v.sqrt(), min=group["eps"])
            if group["clip"]:
                bound = (state["step"] - 1) ** 0.25
                normed = normed.clamp(-bound, bound)
            state["exp_avg"].lerp_(normed, 1 - beta1)
            p.add_(state["exp_avg"], alpha=-lr)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)


class ScheduleFreeAdamW(torch.optim.Optimizer):
    """Schedule-free AdamW: Defazio et al., "The Road Less Scheduled", NeurIPS 2024, in the
    authors' memory-efficient form (the parameter holds y; z is state; x is implicit): at update
    k of a parameter, lr_k = lr min(1, k / warmup_steps) sqrt(1 - beta2^k); lr_max = max(lr_max,
    lr_k); w = k^r lr_max^weight_lr_power; W += w; c = w / W; v = beta2 v + (1 - beta2) g^2;
    u = g / (sqrt(v) + eps) + wd y; y = lerp(y, z, c) + lr_k (beta1 (1 - c) - 1) u;
    z = z - lr_k u, with z = y before the first update. The counts are each parameter's own
    (the authors keep them per group)."""

    def __init__(self, params, lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 warmup_steps=0, r=0.0, weight_lr_power=2.0, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      warmup_steps=warmup_steps, r=r,
                                      weight_lr_power=weight_lr_power, maximize=maximize))

    @torch.no_grad()
    def step(self):
        for group, p, g, state in stepped_params(self, ("exp_avg_sq",)):
            beta1, beta2 = group["betas"]
            k = state["step"]
            if k == 1:
                state["z"] = p.clone()
                state["lr_max"] = 0.0
                state["weight_sum"] = 0.0
            warmup = group["warmup_steps"]
            lr = group["lr"] * (k / warmup if k < warmup else 1.0) * math.sqrt(1.0 - beta2 ** k)
            state["lr_max"] = max(lr, state["lr_max"])
            weight = float(k) ** group["r"] * state["lr_max"] ** group["weight_lr_power"]
            state["weight_sum"] += weight
            c = weight / state["weight_sum"] if state["weight_sum"] > 0.0 else 0.0
            v, z = state["exp_avg_sq"], state["z"]
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            u = g / (v.sqrt() + group["eps"])
            if group["weight_decay"] != 0:
                u.add_(p, alpha=group["weight_decay"])
            p.lerp_(z, c)
            p.add_(u, alpha=lr * (beta1 * (1 - c) - 1))
            z.sub_(u, alpha=lr)


class Muon(torch.optim.Optimizer):
    """Muon: Jordan et al. 2024, as torch.optim.Muon of PyTorch 2.9 (which 1.13 lacks), for 2-D
    parameters: buf = lerp(buf, g, 1 - momentum); u = lerp(g, buf, momentum) under nesterov, else
    buf; X = u (transposed when m > n) / max(|u|_F, eps); ns_steps times A = X X^T,
    B = b A + c A A, X = a X + B X; p = p (1 - lr wd) - lr_adj X, lr_adj = lr max(1, m/n)^0.5
    (original) or 0.2 lr sqrt(max(m, n)) (match_rms_adamw). Float32 throughout (torch 2.9 runs
    the iterations in bfloat16); the norm is taken in float64, as the plugin does."""

    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                 ns_coefficients=(3.4445, -4.775, 2.0315), eps=1e-7, ns_steps=5,
                 adjust_lr="original"):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                      nesterov=nesterov, ns_coefficients=ns_coefficients, eps=eps,
                                      ns_steps=ns_steps, adjust_lr=adjust_lr, maximize=False))

    @torch.no_grad()
    def step(self):
        for group, p, g, state in stepped_params(self, ("momentum_buffer",)):
            buf = state["momentum_buffer"]
            buf.lerp_(g, 1 - group["momentum"])
            u = g.lerp(buf, group["momentum"]) if group["nesterov"] else buf.clone()
            m, n = p.shape
            x = u.t().contiguous() if m > n else u.clone()
            norm = math.sqrt(float((x.double() ** 2).sum()))
            x.mul_(1.0 / max(norm, group["eps"]))
            a, b, c = group["ns_coefficients"]
            for _ in range(group["ns_steps"]):  # as torch 2.9's _zeropower_via_newtonschulz
                gram = x @ x.t()
                update = torch.addmm(gram, gram, gram, beta=b, alpha=c)
                x = torch.addmm(x, update, x, beta=a)
            if m > n:
                x = x.t()
            if group["adjust_lr"] == "original":
                adjusted = group["lr"] * math.sqrt(max(1.0, m / n))
            else:
                adjusted = 0.2 * group["lr"] * math.sqrt(max(m, n))
            p.mul_(1 - group["lr"] * group["weight_decay"]).add_(x, alpha=-adjusted)


class Adan(torch.optim.Optimizer):
    """Adan: Xie et al., "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep
    Models", 2022, Algorithm 1, with the decay rates (beta1, beta2, beta3) = (0.98, 0.92, 0.99)
    of the authors' code (the paper's 1 - beta): with diff = g - g_prev (zero at the first step),
    m = beta1 m + (1 - beta1) g; d = beta2 d + (1 - beta2) diff; n = beta3 n + (1 - beta3)
    (g + beta2 diff)^2; u = (m / (1 - beta1^t) + beta2 d / (1 - beta2^t)) / (sqrt(n) /
    sqrt(1 - beta3^t) + eps); x = (x - lr u) / (1 + lr wd), or with no_prox x (1 - lr wd) - lr u."""

    def __init__(self, params, lr=1e-3, betas=(0.98, 0.92, 0.99), eps=1e-8, weight_decay=0.0,
                 no_prox=False, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      no_prox=no_prox, maximize=maximize))

    @torch.no_grad()
    def step(self):
        for group, p, g, state in stepped_params(self, ("exp_avg", "exp_avg_diff", "exp_avg_sq")):
            beta1, beta2, beta3 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            t = state["step"]
            diff = torch.zeros_like(g) if t == 1 else g - state["pre_grad"]
            update = g + beta2 * diff
            m, d, n = state["exp_avg"], state["exp_avg_diff"], state["exp_avg_sq"]
            m.mul_(beta1).add_(g, alpha=1 - beta1)
            d.mul_(beta2).add_(diff, alpha=1 - beta2)
            n.mul_(beta3).addcmul_(update, update, value=1 - beta3)
            denom = (n.sqrt() / math.sqrt(1 - beta3 ** t)).add_(group["eps"])
            u = (m / (1 - beta1 ** t) + beta2 * d / (1 - beta2 ** t)) / denom
            if group["no_prox"]:
                p.mul_(1 - lr * wd).add_(u, alpha=-lr)
            else:
                p.add_(u, alpha=-lr).div_(1 + lr * wd)
            state["pre_grad"] = g.clone()


LAMB_KEYS = ("lr", "betas", "eps", "weight_decay", "bias_correction", "always_adapt")
LARS_KEYS = ("lr", "momentum", "weight_decay", "trust_coefficient", "eps", "nesterov")
LION_KEYS = ("lr", "betas", "weight_decay", "maximize")
ADOPT_KEYS = ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay", "clip", "maximize")
ADAN_KEYS = ("lr", "betas", "eps", "weight_decay", "no_prox", "maximize")
MUON_KEYS = ("lr", "weight_decay", "momentum", "nesterov", "ns_coefficients", "eps", "ns_steps",
             "adjust_lr")
SCHEDULEFREE_KEYS = ("lr", "betas", "eps", "weight_decay", "warmup_steps", "r", "weight_lr_power",
                     "maximize")
ADAFACTOR_KEYS = ("lr", "eps", "clip_threshold", "decay_rate", "beta1", "weight_decay",
                  "scale_parameter", "relative_step")

# Optimizer name -> (reference class, the hyperparameters each group line records).
PAPER_REFERENCES = {
    "lamb": (Lamb, LAMB_KEYS),
    "lars": (Lars, LARS_KEYS),
    "lion": (Lion, LION_KEYS),
    "adafactor": (Adafactor, ADAFACTOR_KEYS),
    "adopt": (Adopt, ADOPT_KEYS),
    "adan": (Adan, ADAN_KEYS),
    "schedulefree_adamw": (ScheduleFreeAdamW, SCHEDULEFREE_KEYS),
    "muon": (Muon, MUON_KEYS),
}


def lamb(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, bias_correction=True,
         always_adapt=False):
    return dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                bias_correction=bias_correction, always_adapt=always_adapt)


def lars(lr=1.0, momentum=0.9, weight_decay=0.0, trust_coefficient=1e-3, eps=1e-8, nesterov=False):
    return dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                trust_coefficient=trust_coefficient, eps=eps, nesterov=nesterov)


def lion(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False):
    return dict(lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize)


def adopt(lr=1e-3, betas=(0.9, 0.9999), eps=1e-6, weight_decay=0.0, decoupled_weight_decay=False,
          clip=True, maximize=False):
    return dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                decoupled_weight_decay=decoupled_weight_decay, clip=clip, maximize=maximize)


def adan(lr=1e-3, betas=(0.98, 0.92, 0.99), eps=1e-8, weight_decay=0.0, no_prox=False,
         maximize=False):
    return dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, no_prox=no_prox,
                maximize=maximize)


def schedulefree(lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, warmup_steps=0, r=0.0,
                 weight_lr_power=2.0, maximize=False):
    return dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, warmup_steps=warmup_steps,
                r=r, weight_lr_power=weight_lr_power, maximize=maximize)


def muon(lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
         ns_coefficients=(3.4445, -4.775, 2.0315), eps=1e-7, ns_steps=5, adjust_lr="original"):
    return dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps, adjust_lr=adjust_lr)


MATRICES = ([4, 3], [3, 5], [6, 6])


def adafactor(lr=1e-2, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=0.8, beta1=0.0,
              weight_decay=0.0, scale_parameter=True, relative_step=True):
    return dict(lr=lr, eps=eps, clip_threshold=clip_threshold, decay_rate=decay_rate,
                beta1=beta1, weight_decay=weight_decay, scale_parameter=scale_parameter,
                relative_step=relative_step)


ALL = [0, 1, 2]


def cases():
    """(name, optimizer, groups, keyword arguments of run_case) of every case."""
    return [
        ("sgd_plain", "sgd", [(ALL, sgd(0.05))], {}),
        ("sgd_momentum", "sgd", [(ALL, sgd(0.02, momentum=0.9))], {}),
        ("sgd_nesterov", "sgd", [(ALL, sgd(0.02, momentum=0.9, nesterov=True))], {}),
        ("sgd_dampening", "sgd", [(ALL, sgd(0.03, momentum=0.8, dampening=0.3))], {}),
        ("sgd_weight_decay", "sgd", [(ALL, sgd(0.05, weight_decay=0.01))], {}),
        ("sgd_momentum_weight_decay", "sgd",
         [(ALL, sgd(0.02, momentum=0.9, weight_decay=0.05, nesterov=True))], {}),
        ("sgd_maximize", "sgd", [(ALL, sgd(0.04, momentum=0.5, maximize=True))], {}),
        ("sgd_groups", "sgd",
         [([0], sgd(0.05, momentum=0.9)),
          ([2, 1], sgd(0.01, momentum=0.5, dampening=0.1, weight_decay=1e-3)),
          ([3], sgd(0.1))],
         {"shapes": DEFAULT_SHAPES + ([],)}),
        ("sgd_lr_change", "sgd",
         [([0, 1], sgd(0.05, momentum=0.9)), ([2], sgd(0.02))],
         {"lr_changes": {LR_CHANGE_STEP: [(0, 0.005), (1, 0.08)]}}),
        ("sgd_frozen", "sgd", [(ALL, sgd(0.03, momentum=0.9, weight_decay=0.01))],
         {"frozen": lambda k, i: i == 1 or (i == 2 and 50 <= k < 120)}),
        ("adam_default", "adam", [(ALL, adam())], {}),
        ("adam_weight_decay", "adam", [(ALL, adam(0.01, weight_decay=0.05))], {}),
        ("adam_amsgrad", "adam", [(ALL, adam(0.02, amsgrad=True))], {}),
        ("adam_maximize", "adam", [(ALL, adam(0.01, maximize=True))], {}),
        ("adam_betas_eps", "adam", [(ALL, adam(0.01, betas=(0.8, 0.99), eps=1e-4))], {}),
        ("adam_amsgrad_all", "adam",
         [(ALL, adam(0.005, betas=(0.5, 0.9), eps=1e-6, weight_decay=0.1, amsgrad=True,
                     maximize=True))], {}),
        ("adam_groups", "adam",
         [([1], adam(0.03)), ([0, 3], adam(0.005, betas=(0.95, 0.9995))),
          ([2], adam(0.01, amsgrad=True, weight_decay=0.01))],
         {"shapes": DEFAULT_SHAPES + ([],)}),
        ("adam_lr_change", "adam", [([0], adam(0.02)), ([1, 2], adam(0.01, amsgrad=True))],
         {"lr_changes": {LR_CHANGE_STEP: [(0, 0.002), (1, 0.03)]}}),
        ("adam_frozen", "adam", [(ALL, adam(0.01, amsgrad=True))],
         {"frozen": lambda k, i: i == 0 or (i == 2 and (k <= 30 or 90 <= k < 150))}),
        ("adamw_default", "adamw", [(ALL, adamw())], {}),
        ("adamw_weight_decay_amsgrad", "adamw", [(ALL, adamw(0.01, weight_decay=0.1, amsgrad=True))], {}),
        ("adamw_maximize", "adamw", [(ALL, adamw(0.01, betas=(0.8, 0.99), eps=1e-6, maximize=True))], {}),
        ("adamw_groups_lr_change", "adamw",
         [([0], adamw(0.02, weight_decay=0.0)), ([1, 2], adamw(0.01, weight_decay=0.05))],
         {"lr_changes": {100: [(1, 0.002)]}, "frozen": lambda k, i: i == 1 and 50 <= k < 80}),
        ("adagrad_default", "adagrad", [(ALL, adagrad())], {}),
        ("adagrad_lr_decay_weight_decay", "adagrad",
         [(ALL, adagrad(0.1, lr_decay=0.01, weight_decay=0.05))], {}),
        ("adagrad_initial_accumulator_maximize", "adagrad",
         [(ALL, adagrad(0.05, initial_accumulator_value=0.1, eps=1e-6, maximize=True))], {}),
        ("adagrad_groups_lr_change", "adagrad",
         [([1], adagrad(0.1, initial_accumulator_value=0.2)),
          ([0, 3], adagrad(0.05, lr_decay=0.02, initial_accumulator_value=0.2)),
          ([2], adagrad(0.02, weight_decay=0.01, initial_accumulator_value=0.2))],
         {"shapes": DEFAULT_SHAPES + ([],), "lr_changes": {LR_CHANGE_STEP: [(0, 0.01), (2, 0.2)]}}),
        ("adagrad_frozen", "adagrad", [(ALL, adagrad(0.1, lr_decay=0.05))],
         {"frozen": lambda k, i: i == 0 or (i == 2 and 40 <= k < 110)}),
        ("adagrad_eps_inside_sqrt", "adagrad",
         [(ALL, adagrad(0.1, lr_decay=0.01, eps=1e-2, eps_inside_sqrt=True))], {}),
        ("adagrad_eps_inside_sqrt_groups_frozen", "adagrad",
         [([0], adagrad(0.05, weight_decay=0.05, maximize=True, eps_inside_sqrt=True)),
          ([1, 2], adagrad(0.1, lr_decay=0.02, initial_accumulator_value=0.1, eps=1e-6,
                           maximize=True, eps_inside_sqrt=True))],
         {"lr_changes": {LR_CHANGE_STEP: [(1, 0.03)]},
          "frozen": lambda k, i: i == 2 and 60 <= k < 90}),
        ("adadelta_default", "adadelta", [(ALL, adadelta())], {}),
        ("adadelta_weight_decay_maximize", "adadelta",
         [(ALL, adadelta(0.5, weight_decay=0.05, maximize=True))], {}),
        ("adadelta_rho_eps", "adadelta", [(ALL, adadelta(2.0, rho=0.5, eps=1e-4))], {}),
        ("adadelta_groups_lr_change", "adadelta",
         [([0, 3], adadelta(1.0)), ([2, 1], adadelta(0.5, rho=0.95, weight_decay=0.01))],
         {"shapes": DEFAULT_SHAPES + ([],), "lr_changes": {LR_CHANGE_STEP: [(0, 3.0), (1, 0.1)]}}),
        ("adadelta_frozen", "adadelta", [(ALL, adadelta(1.0, rho=0.8))],
         {"frozen": lambda k, i: i == 1 or (i == 2 and 30 <= k < 100)}),
        ("rmsprop_default", "rmsprop", [(ALL, rmsprop())], {}),
        ("rmsprop_centered", "rmsprop", [(ALL, rmsprop(0.005, alpha=0.9, centered=True))], {}),
        ("rmsprop_momentum", "rmsprop", [(ALL, rmsprop(0.002, momentum=0.9))], {}),
        ("rmsprop_centered_momentum_weight_decay", "rmsprop",
         [(ALL, rmsprop(0.001, alpha=0.95, eps=1e-6, weight_decay=0.05, momentum=0.8,
                        centered=True))], {}),
        ("rmsprop_maximize", "rmsprop", [(ALL, rmsprop(0.005, momentum=0.5, maximize=True))], {}),
        ("rmsprop_groups_lr_change", "rmsprop",
         [([0], rmsprop(0.01)), ([1, 3], rmsprop(0.002, momentum=0.9, centered=True)),
          ([2], rmsprop(0.005, alpha=0.9, weight_decay=0.01))],
         {"shapes": DEFAULT_SHAPES + ([],), "lr_changes": {LR_CHANGE_STEP: [(0, 0.001), (1, 0.004)]}}),
        ("rmsprop_frozen", "rmsprop", [(ALL, rmsprop(0.003, momentum=0.7, centered=True))],
         {"frozen": lambda k, i: i == 0 or (i == 2 and 20 <= k < 140)}),
        ("adamax_default", "adamax", [(ALL, adamax())], {}),
        ("adamax_weight_decay", "adamax", [(ALL, adamax(0.02, weight_decay=0.05))], {}),
        ("adamax_maximize_betas_eps", "adamax",
         [(ALL, adamax(0.01, betas=(0.8, 0.99), eps=1e-4, maximize=True))], {}),
        ("adamax_groups_lr_change", "adamax",
         [([1], adamax(0.02)), ([0, 3, 2], adamax(0.005, betas=(0.5, 0.9), weight_decay=0.01))],
         {"shapes": DEFAULT_SHAPES + ([],), "lr_changes": {LR_CHANGE_STEP: [(0, 0.002), (1, 0.03)]}}),
        ("adamax_frozen", "adamax", [(ALL, adamax(0.01))],
         {"frozen": lambda k, i: i == 0 or (i == 2 and (k <= 30 or 90 <= k < 150))}),
        ("nadam_default", "nadam", [(ALL, nadam())], {}),
        ("nadam_weight_decay", "nadam", [(ALL, nadam(0.01, weight_decay=0.05))], {}),
        ("nadam_momentum_decay_betas", "nadam",
         [(ALL, nadam(0.01, betas=(0.8, 0.99), eps=1e-6, momentum_decay=0.05))], {}),
        ("nadam_groups_lr_change", "nadam",
         [([1], nadam(0.02)), ([0, 3], nadam(0.005, betas=(0.95, 0.9995))),
          ([2], nadam(0.01, weight_decay=0.01, momentum_decay=0.01))],
         {"shapes": DEFAULT_SHAPES + ([],), "lr_changes": {LR_CHANGE_STEP: [(0, 0.002), (2, 0.03)]}}),
        ("nadam_frozen", "nadam", [(ALL, nadam(0.01))],
         {"frozen": lambda k, i: i == 0 or (i == 2 and (k <= 30 or 90 <= k < 150))}),
        ("radam_default", "radam", [(ALL, radam())], {}),
        ("radam_weight_decay", "radam", [(ALL, radam(0.01, weight_decay=0.05))], {}),
        ("radam_betas_eps", "radam", [(ALL, radam(0.02, betas=(0.8, 0.9), eps=1e-4))], {}),
        ("radam_groups_lr_change", "radam",
         [([1], radam(0.02)), ([0, 3], radam(0.005, betas=(0.9, 0.99))),
          ([2], radam(0.01, weight_decay=0.01))],
         {"shapes": DEFAULT_SHAPES + ([],), "lr_changes": {LR_CHANGE_STEP: [(0, 0.002), (1, 0.03)]}}),
        ("radam_frozen", "radam", [(ALL, radam(0.01, betas=(0.9, 0.95)))],
         {"frozen": lambda k, i: i == 0 or (i == 2 and (k <= 30 or 90 <= k < 150))}),
        ("asgd_default", "asgd", [(ALL, asgd())], {"record_state": ("ax",)}),
        ("asgd_averaging", "asgd", [(ALL, asgd(0.02, lambd=1e-3, alpha=0.6, t0=50))],
         {"record_state": ("ax",)}),
        ("asgd_weight_decay_maximize", "asgd",
         [(ALL, asgd(0.01, lambd=0.01, t0=120, weight_decay=0.05, maximize=True))],
         {"record_state": ("ax",)}),
        ("asgd_groups_lr_change", "asgd",
         [([0, 3], asgd(0.02, t0=30)), ([2, 1], asgd(0.005, lambd=0.05, alpha=1.0, t0=0))],
         {"shapes": DEFAULT_SHAPES + ([],), "lr_changes": {LR_CHANGE_STEP: [(0, 0.005), (1, 0.03)]},
          "record_state": ("ax",)}),
        ("asgd_frozen", "asgd", [(ALL, asgd(0.02, lambd=1e-3, t0=40))],
         {"frozen": lambda k, i: i == 0 or (i == 2 and (k <= 30 or 90 <= k < 150)),
          "lr_changes": {20: [(0, 0.01)]}, "record_state": ("ax",)}),
        ("rprop_default", "rprop", [(ALL, rprop())], {}),
        ("rprop_maximize", "rprop", [(ALL, rprop(0.001, maximize=True))], {}),
        ("rprop_etas_step_sizes", "rprop",
         [(ALL, rprop(0.05, etas=(0.3, 1.5), step_sizes=(1e-4, 0.05)))], {}),
        ("rprop_groups", "rprop",
         [([1], rprop(0.02)), ([0, 3], rprop(0.005, etas=(0.6, 1.1))),
          ([2], rprop(0.01, step_sizes=(1e-3, 1.0), maximize=False))],
         {"shapes": DEFAULT_SHAPES + ([],)}),
        ("rprop_frozen_lr_change", "rprop", [([0, 1], rprop(0.01)), ([2], rprop(0.02))],
         {"frozen": lambda k, i: i == 1 and k < 120,
          "lr_changes": {LR_CHANGE_STEP: [(0, 0.1), (1, 0.001)]}}),
        ("lamb_default", "lamb", [(ALL, lamb())], {}),
        ("lamb_weight_decay", "lamb", [(ALL, lamb(0.02, weight_decay=0.01))], {}),
        ("lamb_always_adapt", "lamb", [(ALL, lamb(0.02, always_adapt=True))], {}),
        ("lamb_no_bias_correction", "lamb",
         [(ALL, lamb(0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05,
                     bias_correction=False))], {}),
        ("lamb_groups", "lamb",
         [([1], lamb(0.03, weight_decay=0.02)), ([0, 3], lamb(0.01, always_adapt=True)),
          ([2], lamb(0.005))],
         {"shapes": DEFAULT_SHAPES + ([],)}),
        ("lamb_lr_change", "lamb",
         [([0], lamb(0.02, weight_decay=0.01)), ([1, 2], lamb(0.01, always_adapt=True))],
         {"lr_changes": {LR_CHANGE_STEP: [(0, 0.002), (1, 0.03)]}}),
        ("lamb_frozen", "lamb", [(ALL, lamb(0.01, weight_decay=0.01))],
         {"frozen": lambda k, i: i == 0 or (i == 2 and (k <= 30 or 90 <= k < 150))}),
        ("lars_default", "lars", [(ALL, lars())], {}),
        ("lars_weight_decay", "lars", [(ALL, lars(2.0, weight_decay=0.01))], {}),
        ("lars_nesterov", "lars", [(ALL, lars(0.5, nesterov=True, trust_coefficient=0.01))], {}),
        ("lars_no_momentum", "lars", [(ALL, lars(5.0, momentum=0.0, eps=1e-4))], {}),
        ("lars_groups", "lars",
         [([0], lars(1.0)), ([2, 1], lars(2.0, momentum=0.5, weight_decay=1e-3)),
          ([3], lars(3.0, momentum=0.0))],
         {"shapes": DEFAULT_SHAPES + ([],)}),
        ("lars_lr_change", "lars", [([0, 1], lars(1.0)), ([2], lars(2.0, nesterov=True))],
         {"lr_changes": {LR_CHANGE_STEP: [(0, 0.2), (1, 4.0)]}}),
        ("lars_frozen", "lars", [(ALL, lars(1.5, weight_decay=0.01))],
         {"frozen": lambda k, i: i == 1 or (i == 2 and 50 <= k < 120)}),
        ("lion_default", "lion", [(ALL, lion())], {}),
        ("lion_weight_decay", "lion", [(ALL, lion(1e-3, weight_decay=0.1))], {}),
        ("lion_betas", "lion", [(ALL, lion(3e-3, betas=(0.95, 0.98)))], {}),
        ("lion_maximize", "lion", [(ALL, lion(2e-3, weight_decay=0.05, maximize=True))], {}),
        ("lion_groups", "lion",
         [([1], lion(1e-3)), ([0, 3], lion(2e-3, betas=(0.8, 0.9))),
          ([2], lion(5e-4, weight_decay=0.5))],
         {"shapes": DEFAULT_SHAPES + ([],)}),
        ("lion_lr_change", "lion", [([0], lion(2e-3)), ([1, 2], lion(1e-3, weight_decay=0.1))],
         {"lr_changes": {LR_CHANGE_STEP: [(0, 2e-4), (1, 4e-3)]}}),
        ("lion_frozen", "lion", [(ALL, lion(1e-3, weight_decay=0.01))],
         {"frozen": lambda k, i: i == 0 or (i == 2 and (k <= 30 or 90 <= k < 150))}),
        ("adafactor_default", "adafactor", [(ALL, adafactor())], {}),
        ("adafactor_beta1", "adafactor", [(ALL, adafactor(beta1=0.9))], {}),
        ("adafactor_absolute_step", "adafactor",
         [(ALL, adafactor(0.02, scale_parameter=False, relative_step=False))], {}),
        ("adafactor_clip_decay", "adafactor",
         [(ALL, adafactor(eps=(1e-20, 1e-2), clip_threshold=0.5, decay_rate=0.5,
                          weight_decay=0.1))], {}),
        ("adafactor_groups", "adafactor",
         [([1], adafactor(0.05, relative_step=False)), ([0, 3], adafactor(beta1=0.5)),
          ([2], adafactor(scale_parameter=False, weight_decay=0.01))],
         {"shapes": DEFAULT_SHAPES + ([],)}),
        ("adafactor_lr_change", "adafactor",
         [([0], adafactor(0.03, relative_step=False)), ([1, 2], adafactor(0.005))],
         {"lr_changes": {LR_CHANGE_STEP: [(0, 0.003), (1, 0.02)]}}),
        ("adafactor_frozen", "adafactor", [(ALL, adafactor(beta1=0.8, weight_decay=0.01))],
         {"frozen": lambda k, i: i == 1 or (i == 2 and 50 <= k < 120)}),
        ("adopt_default", "adopt", [(ALL, adopt())], {}),
        ("adopt_weight_decay", "adopt", [(ALL, adopt(3e-3, weight_decay=0.05))], {}),
        ("adopt_decoupled_betas", "adopt",
         [(ALL, adopt(5e-3, betas=(0.8, 0.99), eps=1e-4, weight_decay=0.1,
                      decoupled_weight_decay=True))], {}),
        ("adopt_no_clip_maximize", "adopt", [(ALL, adopt(2e-3, clip=False, maximize=True))], {}),
        ("adopt_groups", "adopt",
         [([1], adopt(2e-3)), ([0, 3], adopt(1e-3, betas=(0.95, 0.999))),
          ([2], adopt(5e-3, weight_decay=0.01, decoupled_weight_decay=True))],
         {"shapes": DEFAULT_SHAPES + ([],)}),
        ("adopt_lr_change", "adopt", [([0], adopt(3e-3)), ([1, 2], adopt(1e-3, weight_decay=0.01))],
         {"lr_changes": {LR_CHANGE_STEP: [(0, 3e-4), (1, 6e-3)]}}),
        ("adopt_frozen", "adopt", [(ALL, adopt(2e-3, weight_decay=0.01))],
         {"frozen": lambda k, i: i == 0 or (i == 2 and (k <= 30 or 90 <= k < 150))}),
        ("adan_default", "adan", [(ALL, adan())], {}),
        ("adan_weight_decay", "adan", [(ALL, adan(3e-3, weight_decay=0.02))], {}),
        ("adan_no_prox_betas", "adan",
         [(ALL, adan(5e-3, betas=(0.9, 0.85, 0.995), eps=1e-6, weight_decay=0.05, no_prox=True))], {}),
        ("adan_maximize", "adan", [(ALL, adan(2e-3, weight_decay=0.01, maximize=True))], {}),
        ("adan_groups", "adan",
         [([1], adan(2e-3)), ([0, 3], adan(1e-3, betas=(0.95, 0.9, 0.999))),
          ([2], adan(5e-3, weight_decay=0.02, no_prox=True))],
         {"shapes": DEFAULT_SHAPES + ([],)}),
        ("adan_lr_change", "adan", [([0], adan(3e-3)), ([1, 2], adan(1e-3, weight_decay=0.02))],
         {"lr_changes": {LR_CHANGE_STEP: [(0, 3e-4), (1, 6e-3)]}}),
        ("adan_frozen", "adan", [(ALL, adan(2e-3, weight_decay=0.01))],
         {"frozen": lambda k, i: i == 1 or (i == 2 and 50 <= k < 120)}),
        ("schedulefree_adamw_default", "schedulefree_adamw", [(ALL, schedulefree())], {}),
        ("schedulefree_adamw_warmup_weight_decay", "schedulefree_adamw",
         [(ALL, schedulefree(1e-2, weight_decay=0.02, warmup_steps=30))], {}),
        ("schedulefree_adamw_betas_r_power", "schedulefree_adamw",
         [(ALL, schedulefree(5e-3, betas=(0.7, 0.99), eps=1e-6, r=1.0, weight_lr_power=1.0,
                             warmup_steps=10))], {}),
        ("schedulefree_adamw_maximize", "schedulefree_adamw",
         [(ALL, schedulefree(3e-3, weight_decay=0.01, maximize=True))], {}),
        ("schedulefree_adamw_groups", "schedulefree_adamw",
         [([1], schedulefree(2e-3)), ([0, 3], schedulefree(4e-3, betas=(0.95, 0.999), warmup_steps=20)),
          ([2], schedulefree(1e-2, weight_decay=0.05, weight_lr_power=0.0))],
         {"shapes": DEFAULT_SHAPES + ([],)}),
        ("schedulefree_adamw_lr_change", "schedulefree_adamw",
         [([0], schedulefree(6e-3)), ([1, 2], schedulefree(2e-3, weight_decay=0.01, warmup_steps=50))],
         {"lr_changes": {LR_CHANGE_STEP: [(0, 6e-4), (1, 2e-2)]}}),
        ("schedulefree_adamw_frozen", "schedulefree_adamw", [(ALL, schedulefree(5e-3, warmup_steps=20))],
         {"frozen": lambda k, i: i == 0 or (i == 2 and (k <= 30 or 90 <= k < 150))}),
        ("muon_default", "muon", [(ALL, muon(2e-2))], {"shapes": MATRICES}),
        ("muon_no_nesterov_no_decay", "muon", [(ALL, muon(1e-2, weight_decay=0.0, nesterov=False))],
         {"shapes": MATRICES}),
        ("muon_coefficients_steps", "muon",
         [(ALL, muon(2e-2, momentum=0.9, ns_coefficients=(2.0, -1.5, 0.5), ns_steps=3, eps=1e-5))],
         {"shapes": MATRICES}),
        ("muon_match_rms_adamw", "muon", [(ALL, muon(5e-3, adjust_lr="match_rms_adamw"))],
         {"shapes": MATRICES}),
        ("muon_groups", "muon",
         [([1], muon(2e-2)), ([0, 3], muon(1e-2, momentum=0.8, ns_steps=2)), ([2], muon(3e-2, weight_decay=0.0))],
         {"shapes": MATRICES + ([2, 7],)}),
        ("muon_lr_change", "muon", [([0], muon(2e-2)), ([1, 2], muon(1e-2))],
         {"shapes": MATRICES, "lr_changes": {LR_CHANGE_STEP: [(0, 2e-3), (1, 3e-2)]}}),
        ("muon_frozen", "muon", [(ALL, muon(2e-2))],
         {"shapes": MATRICES, "frozen": lambda k, i: i == 1 or (i == 2 and 50 <= k < 120)}),
    ]


def case_seed(name):
    """The seed of a case's objective and initial values: a function of its name alone, so
    adding, removing or reordering cases leaves every other case's data unchanged."""
    return zlib.crc32(name.encode("ascii"))


# Optimizers whose cases run in float64 alone (generate_float64.py): in float32, Muon's
# Newton-Schulz products round differently in torch's and OpenBLAS's kernels, and the
# iterations carry the difference past rtol 1e-5 within 200 steps.
FLOAT64_ONLY = {"muon"}


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    all_cases = [c for c in cases() if c[1] not in FLOAT64_ONLY]
    out = [
        "# optreg golden trajectories of torch.optim.SGD, Adam, AdamW, Adagrad (and MegEngine's",
        "# form of it), Adadelta, RMSprop, Adamax, NAdam, RAdam, ASGD and Rprop (torch %s),"
        % torch.__version__,
        "# and of the LAMB, LARS, Lion, Adafactor, ADOPT, Adan and schedule-free AdamW",
        "# references in generate.py.",
        "# Generated by tests/golden/generate.py, which documents the format; do not edit.",
        "#",
        "# Header: 'optreg-golden 1', then 'cases N'. Each case: 'case NAME', 'optimizer OPT',",
        "# 'steps K', 'param I SHAPE values...' per parameter, 'group IDS key=value ...' per",
        "# group (true/false, float, [a,b] or \"string\"), then per step 'step K', optional 'set_lr G V'",
        "# (applied before the step), 'grad I values...' per parameter that has a gradient",
        "# (none: frozen this step), 'value I values...' per parameter after the step, optional",
        "# 'state I NAME values...' (a state tensor after the step); 'end'.",
        "# Floats are written with %.9g and read back exactly as float32.",
        FORMAT_LINE,
        "cases %d" % len(all_cases),
    ]
    for name, opt_name, groups, kwargs in all_cases:
        run_case(out, name, opt_name, groups, seed=case_seed(name), **kwargs)
    text = "\n".join(out) + "\n"
    with open(OUTPUT, "w") as f:
        f.write(text)
    print("wrote %s: %d cases, %d steps each, %d bytes"
          % (OUTPUT, len(all_cases), STEPS, len(text)), file=sys.stderr)


if __name__ == "__main__":
    main()
