"""numpy float64 references of LAMB, LARS, Lion, Adafactor, ADOPT and Adan, for the float64 golden
cases that generate_float64.py writes. PyTorch 1.13 ships none of the six; generate.py's
references of them are float32 torch optimizers, and these are a second, separate reference in float64,
written from the papers' algorithms with the options docs/optimizers.md documents.

Every step is numpy float64 arithmetic: the parameters, the gradients and the state are float64
arrays, the hyperparameters Python floats (doubles). The gradients themselves come from the
objective (generate.Objective), evaluated by torch autograd in float64 by generate.run_case,
which drives these classes through the small part of torch.optim.Optimizer's interface it uses:
`param_groups` (a list of dicts holding `params` and the hyperparameters, whose `lr` the case
may change between steps), `state` and `step()`. A parameter whose `.grad` is None is frozen for
the step: it keeps its value and its state, and its step count does not advance.

Each per-tensor L2 norm is the square root of math.fsum over the squared elements, that is, the
sum of the squares rounded once; the plugins sum the squares in double in order, which differs
from it by a few ulps of the sum at most.
"""

import math

import numpy as np
import torch


def l2_norm(a):
    """||a||_2 of a float64 array: sqrt of the correctly rounded sum of its squared elements."""
    squares = np.square(a, dtype=np.float64).ravel()
    return math.sqrt(math.fsum(squares.tolist()))


class NumpyOptimizer:
    """The optimizer interface generate.run_case drives, over torch parameters stepped in numpy.

    Subclasses implement update(group, state, x, g, shape) -> new x, with x and g flat float64
    arrays (a scalar parameter is an array of one element) of a parameter shaped `shape`; state
    is the parameter's own dict."""

    def __init__(self, groups, defaults):
        self.param_groups = []
        self.state = {}
        for g in groups:
            unknown = set(g) - set(defaults) - {"params"}
            if unknown:
                raise ValueError("unknown options %s" % sorted(unknown))
            group = dict(defaults)
            group.update(g)
            self.param_groups.append(group)
            for p in group["params"]:
                if p.dtype != torch.float64:
                    raise ValueError("the numpy references step float64 parameters only")
                self.state[p] = {}

    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                x = p.detach().numpy().astype(np.float64).reshape(-1).copy()
                g = p.grad.detach().numpy().astype(np.float64).reshape(-1).copy()
                x = self.update(group, self.state[p], x, g, tuple(p.shape))
                with torch.no_grad():
                    p.copy_(torch.from_numpy(np.asarray(x, dtype=np.float64).reshape(tuple(p.shape))))

    def update(self, group, state, x, g, shape):
        raise NotImplementedError


class NumpyLamb(NumpyOptimizer):
    """LAMB, You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76
    minutes" (ICLR 2020), Algorithm 2, for one parameter tensor x with gradient g at its step t:

        m_t = beta1 m_{t-1} + (1 - beta1) g
        v_t = beta2 v_{t-1} + (1 - beta2) g^2
        m_hat = m_t / (1 - beta1^t),  v_hat = v_t / (1 - beta2^t)   (m_t, v_t without bias_correction)
        r_t = m_hat / (sqrt(v_hat) + eps)
        x_{t+1} = x_t - eta phi(||x_t||) / ||r_t + lambda x_t|| (r_t + lambda x_t)

    with phi the identity. As docs/optimizers.md documents for the `lamb` plugin, the ratio
    ||x|| / ||r + lambda x|| is taken only when lambda (weight_decay) > 0 or always_adapt is
    set, and is 1 otherwise and whenever either norm is 0. m and v start at zero."""

    DEFAULTS = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                    bias_correction=True, always_adapt=False)

    def __init__(self, groups):
        super().__init__(groups, self.DEFAULTS)

    def update(self, group, state, x, g, shape):
        beta1, beta2 = (float(b) for b in group["betas"])
        lam = float(group["weight_decay"])
        if not state:
            state["t"] = 0
            state["m"] = np.zeros_like(x)
            state["v"] = np.zeros_like(x)
        state["t"] += 1
        t = state["t"]
        m = beta1 * state["m"] + (1.0 - beta1) * g
        v = beta2 * state["v"] + (1.0 - beta2) * (g * g)
        state["m"], state["v"] = m, v
        if group["bias_correction"]:
            m_hat = m / (1.0 - beta1 ** t)
            v_hat = v / (1.0 - beta2 ** t)
        else:
            m_hat, v_hat = m, v
        direction = m_hat / (np.sqrt(v_hat) + float(group["eps"]))
        if lam != 0.0:
            direction = direction + lam * x
        ratio = 1.0
        if group["always_adapt"] or lam > 0.0:
            x_norm, d_norm = l2_norm(x), l2_norm(direction)
            if x_norm > 0.0 and d_norm > 0.0:
                ratio = x_norm / d_norm
        return x - (float(group["lr"]) * ratio) * direction


class NumpyLars(NumpyOptimizer):
    """LARS, You, Gitman and Ginsburg, "Large Batch Training of Convolutional Networks" (2017),
    Algorithm 1, for one parameter tensor w with gradient g:

        local = eta ||w|| / (||g|| + beta ||w|| + eps)       (1 when ||w|| or ||g|| is 0)
        d = local (g + beta w)

    with eta the trust coefficient and beta the weight decay. The momentum follows
    docs/optimizers.md's `lars` (PyTorch SGD's form, the global rate applied after the buffer,
    which starts at zero):

        buf = mu buf + d;  step = d + mu buf if nesterov else buf   (step = d when mu = 0)
        w = w - lr step"""

    DEFAULTS = dict(lr=1.0, momentum=0.9, weight_decay=0.0, trust_coefficient=1e-3, eps=1e-8,
                    nesterov=False)

    def __init__(self, groups):
        super().__init__(groups, self.DEFAULTS)

    def update(self, group, state, x, g, shape):
        beta = float(group["weight_decay"])
        mu = float(group["momentum"])
        w_norm, g_norm = l2_norm(x), l2_norm(g)
        local = 1.0
        if w_norm > 0.0 and g_norm > 0.0:
            local = float(group["trust_coefficient"]) * w_norm / (
                g_norm + beta * w_norm + float(group["eps"]))
        d = g + beta * x if beta != 0.0 else g
        d = d * local
        if mu != 0.0:
            buf = mu * state["buf"] + d if "buf" in state else d.copy()
            state["buf"] = buf
            d = d + mu * buf if group["nesterov"] else buf
        return x - float(group["lr"]) * d


class NumpyLion(NumpyOptimizer):
    """Lion, Chen et al., "Symbolic Discovery of Optimization Algorithms" (NeurIPS 2023),
    Algorithm 2 (Lion with decoupled weight decay lambda), for a parameter x with gradient g:

        c = beta1 m + (1 - beta1) g
        x = x - lr (sign(c) + lambda x)          written x (1 - lr lambda) - lr sign(c)
        m = beta2 m + (1 - beta2) g

    with sign(0) = 0, m starting at zero, and g negated first under `maximize`."""

    DEFAULTS = dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False)

    def __init__(self, groups):
        super().__init__(groups, self.DEFAULTS)

    def update(self, group, state, x, g, shape):
        beta1, beta2 = (float(b) for b in group["betas"])
        lr = float(group["lr"])
        if group["maximize"]:
            g = -g
        m = state.get("m")
        if m is None:
            m = np.zeros_like(x)
        c = beta1 * m + (1.0 - beta1) * g
        x = x * (1.0 - lr * float(group["weight_decay"])) - lr * np.sign(c)
        state["m"] = beta2 * m + (1.0 - beta2) * g
        return x


def rms(a):
    """The root mean square of a float64 array, its sum of squares rounded once."""
    return math.sqrt(math.fsum(np.square(a).ravel().tolist()) / a.size)


def mean_over(a, axis):
    """Means along one axis of a float64 array, each sum rounded once."""
    moved = np.moveaxis(a, axis, -1)
    sums = np.array([math.fsum(row.tolist()) for row in moved.reshape(-1, moved.shape[-1])])
    return (sums / moved.shape[-1]).reshape(moved.shape[:-1])


class NumpyAdafactor(NumpyOptimizer):
    """Adafactor, Shazeer and Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory
    Cost" (ICML 2018), Algorithms 4 and 5 with the relative step size (section 8), update
    clipping (section 6) and the increasing decay (section 7.2), for a parameter X of step t:

        rho = min(lr, 1 / sqrt(t)) with relative_step, else lr
        alpha = max(eps2, RMS(X)) rho with scale_parameter, else rho
        beta2 = 1 - t^-decay_rate;  G2 = G^2 + eps1
        2 or more dimensions, per matrix over the last two (rows i, columns j):
            R = beta2 R + (1 - beta2) mean_j G2;  C = beta2 C + (1 - beta2) mean_i G2
            U = G / sqrt((R / mean(R)) C)
        fewer:  V = beta2 V + (1 - beta2) G2;  U = G / sqrt(V)
        U = U / max(1, RMS(U) / clip_threshold)
        beta1 > 0:  M = beta1 M + (1 - beta1) U;  U = M
        X = X (1 - alpha weight_decay) - alpha U

    as docs/optimizers.md documents for the `adafactor` plugin; R, C, V and M start at zero."""

    DEFAULTS = dict(lr=1e-2, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=0.8, beta1=0.0,
                    weight_decay=0.0, scale_parameter=True, relative_step=True)

    def __init__(self, groups):
        super().__init__(groups, self.DEFAULTS)

    def update(self, group, state, x, g, shape):
        eps1, eps2 = (float(e) for e in group["eps"])
        beta1 = float(group["beta1"])
        lr = float(group["lr"])
        factored = len(shape) >= 2
        x = x.reshape(shape)
        g = g.reshape(shape)
        if not state:
            state["t"] = 0
            if factored:
                state["row"] = np.zeros(shape[:-1])
                state["col"] = np.zeros(shape[:-2] + shape[-1:])
            else:
                state["v"] = np.zeros(shape)
            if beta1 > 0.0:
                state["m"] = np.zeros(shape)
        state["t"] += 1
        t = state["t"]
        rho = min(lr, 1.0 / math.sqrt(t)) if group["relative_step"] else lr
        alpha = max(eps2, rms(x)) * rho if group["scale_parameter"] else rho
        decay = t ** -float(group["decay_rate"])
        beta2 = 1.0 - decay
        g2 = g * g + eps1
        if factored:
            state["row"] = beta2 * state["row"] + decay * mean_over(g2, -1)
            state["col"] = beta2 * state["col"] + decay * mean_over(g2, -2)
            row_factor = state["row"] / mean_over(state["row"], -1)[..., None]
            u = g / np.sqrt(row_factor[..., None] * state["col"][..., None, :])
        else:
            state["v"] = beta2 * state["v"] + decay * g2
            u = g / np.sqrt(state["v"])
        u = u / max(1.0, rms(u) / float(group["clip_threshold"]))
        if beta1 > 0.0:
            state["m"] = beta1 * state["m"] + (1.0 - beta1) * u
            u = state["m"]
        return (x * (1.0 - alpha * float(group["weight_decay"])) - alpha * u).reshape(-1)


# Optimizer name -> numpy reference class.
class NumpyAdopt(NumpyOptimizer):
    """ADOPT, Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta2 with the
    Optimal Rate" (NeurIPS 2024), the clipped algorithm. The first gradient g0 of a parameter
    only sets v = g0^2; then, at update t = 1, 2, ...:

        m = beta1 m + (1 - beta1) clip(g / max(sqrt(v), eps), -t^(1/4), t^(1/4))
        x = x - lr m
        v = beta2 v + (1 - beta2) g^2

    with g negated first under `maximize`; weight decay either added to the gradient as
    wd x (also before the first step's v) or, decoupled, x scaled by 1 - lr wd before each
    update; `clip` false leaves the normalized gradient unclipped."""

    DEFAULTS = dict(lr=1e-3, betas=(0.9, 0.9999), eps=1e-6, weight_decay=0.0,
                    decoupled_weight_decay=False, clip=True, maximize=False)

    def __init__(self, groups):
        super().__init__(groups, self.DEFAULTS)

    def update(self, group, state, x, g, shape):
        beta1, beta2 = (float(b) for b in group["betas"])
        lr, wd = float(group["lr"]), float(group["weight_decay"])
        decoupled = bool(group["decoupled_weight_decay"])
        if group["maximize"]:
            g = -g
        if wd != 0.0 and not decoupled:
            g = g + wd * x
        t = state.get("t", 0)
        state["t"] = t + 1
        if t == 0:
            state["m"] = np.zeros_like(x)
            state["v"] = g * g
            return x
        if wd != 0.0 and decoupled:
            x = x * (1.0 - lr * wd)
        normed = g / np.maximum(np.sqrt(state["v"]), float(group["eps"]))
        if group["clip"]:
            bound = float(t) ** 0.25
            normed = np.clip(normed, -bound, bound)
        state["m"] = beta1 * state["m"] + (1.0 - beta1) * normed
        x = x - lr * state["m"]
        state["v"] = beta2 * state["v"] + (1.0 - beta2) * g * g
        return x


class NumpyAdan(NumpyOptimizer):
    """Adan, Xie et al., "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep
    Models" (2022), Algorithm 1, with the decay rates of the authors' code (beta_i here is
    1 - beta_i of the paper). At step t of a parameter, with d_g = g - g_prev (zero at t = 1):

        m = beta1 m + (1 - beta1) g
        d = beta2 d + (1 - beta2) d_g
        n = beta3 n + (1 - beta3) (g + beta2 d_g)^2
        u = (m / (1 - beta1^t) + beta2 d / (1 - beta2^t)) / (sqrt(n / (1 - beta3^t)) + eps)
        x = (x - lr u) / (1 + lr wd)                 no_prox: x (1 - lr wd) - lr u

    with g negated first under `maximize`."""

    DEFAULTS = dict(lr=1e-3, betas=(0.98, 0.92, 0.99), eps=1e-8, weight_decay=0.0, no_prox=False,
                    maximize=False)

    def __init__(self, groups):
        super().__init__(groups, self.DEFAULTS)

    def update(self, group, state, x, g, shape):
        beta1, beta2, beta3 = (float(b) for b in group["betas"])
        lr, wd = float(group["lr"]), float(group["weight_decay"])
        if group["maximize"]:
            g = -g
        t = state.get("t", 0) + 1
        state["t"] = t
        if t == 1:
            for key in ("m", "d", "n"):
                state[key] = np.zeros_like(x)
            dg = np.zeros_like(x)
        else:
            dg = g - state["g_prev"]
        state["m"] = beta1 * state["m"] + (1.0 - beta1) * g
        state["d"] = beta2 * state["d"] + (1.0 - beta2) * dg
        state["n"] = beta3 * state["n"] + (1.0 - beta3) * np.square(g + beta2 * dg)
        denom = np.sqrt(state["n"] / (1.0 - beta3 ** t)) + float(group["eps"])
        u = (state["m"] / (1.0 - beta1 ** t) + beta2 * state["d"] / (1.0 - beta2 ** t)) / denom
        if group["no_prox"]:
            x = x * (1.0 - lr * wd) - lr * u
        else:
            x = (x - lr * u) / (1.0 + lr * wd)
        state["g_prev"] = g.copy()
        return x


class NumpyScheduleFreeAdamW(NumpyOptimizer):
    """Schedule-free AdamW, Defazio et al., "The Road Less Scheduled" (NeurIPS 2024), in the
    paper's three sequences (not the plugin's form, which keeps y and z alone). At update k of a
    parameter (k = 1, 2, ...), with x = z = y = the parameter's value before its first update:

        lr_k = lr min(1, k / warmup_steps) sqrt(1 - beta2^k),  lr_max = max(lr_max, lr_k)
        w_k = k^r lr_max^weight_lr_power,  W = W + w_k,  c = w_k / W  (0 when W = 0)
        v = beta2 v + (1 - beta2) g^2
        z = z - lr_k (g / (sqrt(v) + eps) + wd y)
        x = (1 - c) x + c z
        y = beta1 x + (1 - beta1) z           (the new parameter value)

    with g negated first under `maximize`; the counts are the parameter's own."""

    DEFAULTS = dict(lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, warmup_steps=0,
                    r=0.0, weight_lr_power=2.0, maximize=False)

    def __init__(self, groups):
        super().__init__(groups, self.DEFAULTS)

    def update(self, group, state, x, g, shape):
        beta1, beta2 = (float(b) for b in group["betas"])
        lr, wd, eps = float(group["lr"]), float(group["weight_decay"]), float(group["eps"])
        warmup = int(group["warmup_steps"])
        if group["maximize"]:
            g = -g
        k = state.get("k", 0) + 1
        state["k"] = k
        if k == 1:
            state.update(x=x.copy(), z=x.copy(), v=np.zeros_like(x), lr_max=0.0, weight_sum=0.0)
        y = x
        lr_k = lr * (k / warmup if k < warmup else 1.0) * math.sqrt(1.0 - beta2 ** k)
        state["lr_max"] = max(state["lr_max"], lr_k)
        weight = float(k) ** float(group["r"]) * state["lr_max"] ** float(group["weight_lr_power"])
        state["weight_sum"] += weight
        c = weight / state["weight_sum"] if state["weight_sum"] > 0.0 else 0.0
        state["v"] = beta2 * state["v"] + (1.0 - beta2) * g * g
        state["z"] = state["z"] - lr_k * (g / (np.sqrt(state["v"]) + eps) + wd * y)
        state["x"] = (1.0 - c) * state["x"] + c * state["z"]
        return beta1 * state["x"] + (1.0 - beta1) * state["z"]


class NumpyMuon(NumpyOptimizer):
    """Muon, Jordan et al. 2024 (the algorithm of the authors' reference and of torch.optim.Muon
    in PyTorch 2.9), for a matrix parameter x of shape (m, n) with gradient g:

        buf = buf + (1 - momentum) (g - buf);  u = g + momentum (buf - g) (nesterov) or buf
        X = u^T if m > n else u;  X = X / max(|X|_F, eps)
        ns_steps times, with (a, b, c) = ns_coefficients:  A = X X^T;  X = a X + (b A + c A^2) X
        x = x (1 - lr wd) - lr' X (transposed back),  lr' = lr sqrt(max(1, m / n)) (original)
                                                          or 0.2 lr sqrt(max(m, n)) (match_rms_adamw)"""

    DEFAULTS = dict(lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                    ns_coefficients=(3.4445, -4.775, 2.0315), eps=1e-7, ns_steps=5,
                    adjust_lr="original")

    def __init__(self, groups):
        super().__init__(groups, self.DEFAULTS)

    def update(self, group, state, x, g, shape):
        m, n = shape
        beta = float(group["momentum"])
        lr, wd = float(group["lr"]), float(group["weight_decay"])
        g = g.reshape(m, n)
        buf = state.get("buf", np.zeros((m, n)))
        buf = buf + (1.0 - beta) * (g - buf)
        state["buf"] = buf
        u = g + beta * (buf - g) if group["nesterov"] else buf
        big = u.T if m > n else u
        big = big / max(math.sqrt(math.fsum((big * big).ravel())), float(group["eps"]))
        a, b, c = (float(v) for v in group["ns_coefficients"])
        for _ in range(int(group["ns_steps"])):
            gram = big @ big.T
            big = a * big + (b * gram + c * (gram @ gram)) @ big
        if m > n:
            big = big.T
        if group["adjust_lr"] == "original":
            adjusted = lr * math.sqrt(max(1.0, m / n))
        else:
            adjusted = 0.2 * lr * math.sqrt(max(m, n))
        return x * (1.0 - lr * wd) - adjusted * big.ravel()


REFERENCES = {
    "lamb": NumpyLamb,
    "lars": NumpyLars,
    "lion": NumpyLion,
    "adafactor": NumpyAdafactor,
    "adopt": NumpyAdopt,
    "adan": NumpyAdan,
    "schedulefree_adamw": NumpyScheduleFreeAdamW,
    "muon": NumpyMuon,
}
