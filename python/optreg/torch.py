"""optreg optimizers as torch.optim optimizers.

    opt = optreg.torch.Optimizer(model.parameters(), "adam", lr=1e-3)
    opt = optreg.torch.from_config("opt.yaml", model.named_parameters())

The optimizer steps the parameters' own memory (CPU, contiguous; float32, float64, bfloat16 or
float16). Each step() hands optreg the gradients torch computed and the options of
`param_groups` (so torch.optim.lr_scheduler and hand-made changes take effect at the next
step); parameters whose gradient is None are skipped, as torch.optim does.
"""

import torch as _torch

from . import _optreg, default_registry, load_config

__all__ = ["Optimizer", "from_config", "from_torch_state_dict", "to_torch_state_dict"]

# The torch.optim classes whose state dicts convert, by optreg name.
TORCH_CLASSES = {
    "sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "adagrad": "Adagrad", "rmsprop": "RMSprop",
    "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "NAdam", "radam": "RAdam", "asgd": "ASGD",
    "rprop": "Rprop",
}
# Keys of torch.optim param groups that choose an implementation, not the arithmetic (and the
# schedulers' bookkeeping): ignored when converting from torch.
_TORCH_ONLY_KEYS = {"foreach", "capturable", "differentiable", "fused", "initial_lr"}
# optreg's precision options: torch.optim has none; at their defaults they are left out.
_PRECISION_DEFAULTS = {"master_weights": False, "rounding": "nearest", "rounding_seed": 0, "state_dtype": "float32"}
# torch.optim keeps these state scalars as 0-dimensional float32 tensors (the others' step is an int).
_TENSOR_SCALARS = {"step", "mu_product", "eta", "mu"}
_INT_STEP = {"rmsprop", "adadelta", "rprop"}


def _group_options(group):
    return {k: v for k, v in group.items() if k != "params"}


def _option_keys(native_group):
    """The options of a native param group that a torch param group may change: all but a
    composite's `optimizer` and a wrapper's `inner`, which are fixed."""
    return frozenset(k for k in native_group if k not in ("params", "optimizer", "inner"))


class Optimizer(_torch.optim.Optimizer):
    """A torch.optim.Optimizer backed by the optreg optimizer `name`.

    `params` and `defaults` are those of torch.optim (an iterable of tensors or of group dicts);
    `defaults` are checked against the optimizer's schema (optreg.schema(name)), and every option
    it does not name takes the schema's default. A wrapper (lookahead) takes the optimizer it
    wraps as `inner`, a name or a dict of its name and options, as optreg.create() does:
    `Optimizer(model.parameters(), "lookahead", inner={"name": "adam", "lr": 1e-3}, k=5)`; its
    param groups then show both optimizers' options. `registry` is an optreg.Registry (the
    default one when None).
    """

    def __init__(self, params, name, registry=None, **defaults):
        self._native = None
        self._eval_scope = None
        self._registry = registry or default_registry()
        inner = defaults.pop("inner", None)
        self._schema = self._registry.schema(name)  # PluginError for an unknown name
        full = {k: v["default"] for k, v in self._schema.items()}
        if inner is not None:
            # A wrapped optimizer's precision options are the inner one's (its defaults, then
            # what `inner` gives): the wrapper's schema defaults must not override them.
            full = {k: v for k, v in full.items() if k not in _PRECISION_DEFAULTS}
        full.update(defaults)
        super().__init__(params, full)
        groups = []
        for i, group in enumerate(self.param_groups):
            first = sum(len(g["params"]) for g in self.param_groups[:i])
            params = [("p%d" % (first + j), p) for j, p in enumerate(group["params"])]
            groups.append(dict(_group_options(group), params=params))
        if inner is None:
            native = self._registry.create(name, groups)
        else:
            native = self._registry.create(name, groups, inner=inner)
        # The options the native groups have that these lack (a wrapped optimizer's), so that
        # schedulers and hand-made changes find them as in any torch.optim optimizer.
        for group, native_group in zip(self.param_groups, native.param_groups):
            for key, value in native_group.items():
                if key != "params":
                    group.setdefault(key, tuple(value) if isinstance(value, list) else value)
        self._adopt(native)

    def _adopt(self, native):
        self._native = native
        self._params = [p for g in self.param_groups for p in g["params"]]
        self._grads = [None] * len(self._params)
        self._ptrs = [p.data_ptr() for p in self._params]
        # The options each group has: a composite's groups have their own optimizer's.
        self._keys = [_option_keys(g) for g in native.param_groups]
        self._synced = [self._options_of(g, i) for i, g in enumerate(self.param_groups)]

    def _options_of(self, group, i):
        return {k: v for k, v in group.items() if k in self._keys[i]}

    # -- torch.optim.Optimizer

    @property
    def native(self):
        """The optreg.Optimizer behind this one."""
        return self._native

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        if self._native is None:  # during __init__: the native optimizer is made afterwards
            return
        group = self.param_groups[-1]
        first = len(self._params)
        named = [("p%d" % (first + j), p) for j, p in enumerate(group["params"])]
        try:
            self._native.add_param_group(named, **_group_options(group))
        except BaseException:
            self.param_groups.pop()  # refused: both sides stay as they were
            raise
        self._params.extend(group["params"])
        self._grads.extend([None] * len(group["params"]))
        self._ptrs.extend(p.data_ptr() for p in group["params"])
        self._keys.append(_option_keys(self._native.param_groups[-1]))
        for key, value in self._native.param_groups[-1].items():  # a composite's part's defaults
            if key != "params":
                group.setdefault(key, value)
        self._synced.append(self._options_of(group, len(self.param_groups) - 1))

    def _sync(self):
        native = self._native
        for i, group in enumerate(self.param_groups):
            synced = self._synced[i]
            for key in self._keys[i]:
                value = group.get(key)
                if key in group and value != synced.get(key):
                    native.set_option(key, value, i)
                    synced[key] = value
        for j, p in enumerate(self._params):
            ptr = p.data_ptr()
            if ptr != self._ptrs[j]:  # `p.data = ...` gave the parameter other memory
                native.set_value(j, p)
                self._ptrs[j] = ptr
            g = p.grad
            if g is not self._grads[j]:
                native.set_grad(j, g)
                self._grads[j] = g

    @_torch.no_grad()
    def step(self, closure=None):
        """One update; with `closure` (which zeroes the gradients, computes the loss, calls
        backward() and returns the loss), the loss of its first evaluation. An optimizer that
        needs a closure (lbfgs) calls it as often as its algorithm does."""
        if self._eval_scope is not None:
            raise _optreg.UsageError("step() while the optimizer is in eval mode: call train() first")
        if closure is None:
            self._sync()
            self._native.step()
            return None
        if not self._native.needs_closure:
            with _torch.enable_grad():
                loss = closure()
            self._sync()
            self._native.step()
            return loss
        first = []

        def evaluate():
            with _torch.enable_grad():
                loss = closure()
            self._sync()  # backward() may have made new gradient tensors
            if not first:
                first.append(loss)
            return float(loss)

        self._sync()
        self._native.step(evaluate)
        return first[0]

    def eval(self):
        """Puts the evaluation weights in the parameters (schedulefree_adamw's average x) until
        train(); nothing for an optimizer without them. step() is refused meanwhile."""
        if self._eval_scope is None:
            self._sync()
            scope = self._native.eval_weights()
            scope.__enter__()
            self._eval_scope = scope
        return self

    def train(self):
        """Puts the training weights back, bit for bit, after eval()."""
        if self._eval_scope is not None:
            scope, self._eval_scope = self._eval_scope, None
            scope.__exit__(None, None, None)
        return self

    def zero_grad(self, set_to_none=False):
        super().zero_grad(set_to_none=set_to_none)
        if set_to_none:  # optreg skips these parameters until they have gradients again
            for j in range(len(self._params)):
                if self._grads[j] is not None:
                    self._native.set_grad(j, None)
                    self._grads[j] = None

    def state_dict(self):
        """The optimizer's state: `param_groups` as torch.optim shows them (options and
        parameter indices) and the whole optreg state under "optreg" (picklable, so torch.save
        keeps it)."""
        self._sync()
        native = self._native.state_dict()
        groups = []
        for group, saved in zip(self.param_groups, native["param_groups"]):
            groups.append(dict(_group_options(group), params=list(saved["params"])))
        return {"state": {}, "param_groups": groups, "optreg": native}

    def load_state_dict(self, state_dict):
        """Restores a state_dict() of an optimizer of the same name over the same parameters,
        or a torch.optim state dict of the matching class (converted by from_torch_state_dict()),
        all or nothing; the options it holds replace those of `param_groups`."""
        if "optreg" not in state_dict:
            if "state" not in state_dict or "param_groups" not in state_dict:
                raise _optreg.UsageError(
                    "the state dict has no 'optreg' entry and is not a torch.optim state dict "
                    "(which has 'state' and 'param_groups')")
            state_dict = from_torch_state_dict(state_dict, self)
        self._native.load_state_dict(state_dict["optreg"])
        for i, (group, saved) in enumerate(zip(self.param_groups, self._native.param_groups)):
            for key in self._keys[i]:
                if key in saved:
                    value = saved[key]
                    if isinstance(group.get(key), tuple):
                        value = tuple(value)
                    group[key] = value
            self._synced[i] = self._options_of(group, i)


def from_config(config, named_parameters, registry=None):
    """The optimizer that a YAML config (a path or optreg.load_config()) describes, over a
    module's named_parameters(); the config's param_groups select parameters by glob."""
    if isinstance(config, str):
        config = load_config(config)
    registry = registry or default_registry()
    registry.load_config_plugins(config)
    named = list(named_parameters)
    by_name = dict(named)
    native = registry.build(config, named)
    names = native.param_names
    groups = []
    for g in native.param_groups:
        options = {k: v for k, v in g.items() if k != "params"}
        groups.append(dict(options, params=[by_name[names[i]] for i in g["params"]]))
    opt = Optimizer.__new__(Optimizer)
    opt._native = None
    opt._eval_scope = None
    opt._registry = registry
    # A composite (a param group with an optimizer of its own) has no one schema: a group added
    # later names its optimizer and gets that optimizer's defaults.
    defaults = {} if native.name == "composite" else {k: v["default"] for k, v in registry.schema(native.name).items()}
    if native.param_groups and "inner" in native.param_groups[0]:  # a wrapper: precision is the inner one's
        defaults = {k: v for k, v in defaults.items() if k not in _PRECISION_DEFAULTS}
    _torch.optim.Optimizer.__init__(opt, groups, defaults)
    opt._adopt(native)
    return opt


def _native_of(optimizer):
    return optimizer.native if isinstance(optimizer, Optimizer) else optimizer


def _refuse(message):
    raise _optreg.StateDictError("torch.optim state dict: " + message)


def from_torch_state_dict(state_dict, optimizer):
    """Converts a state dict of torch.optim's class for `optimizer` (an optreg.torch.Optimizer
    or an optreg.Optimizer: SGD, Adam, AdamW, Adagrad, RMSprop, Adadelta, Adamax, NAdam, RAdam,
    ASGD or Rprop) over the same parameters into an optreg state dict that its
    load_state_dict() takes. Every option and state entry must map: a key optreg's optimizer
    does not have is refused with a StateDictError naming it and the parameter. Parameters
    without torch state keep the state they have in `optimizer`."""
    native = _native_of(optimizer)
    name = native.name
    if name not in TORCH_CLASSES:
        _refuse("optreg's '%s' has no torch.optim counterpart; convertible: %s" % (name, ", ".join(sorted(TORCH_CLASSES))))
    current = _optreg.decode_state(native.state_dict()["optreg_state"])
    groups = state_dict["param_groups"]
    if len(groups) != len(current["param_groups"]):
        _refuse("it has %d param groups, but the optimizer has %d" % (len(groups), len(current["param_groups"])))
    for g, (theirs, ours) in enumerate(zip(groups, current["param_groups"])):
        if len(theirs["params"]) != len(ours["params"]):
            _refuse("param group %d has %d parameters, but the optimizer's has %d"
                    % (g, len(theirs["params"]), len(ours["params"])))
        for key, value in theirs.items():
            if key == "params" or key in _TORCH_ONLY_KEYS:
                continue
            if key not in ours:
                _refuse("param group %d: option '%s' does not map to an option of optreg's '%s'" % (g, key, name))
            if isinstance(value, tuple):
                value = list(value)
            if isinstance(value, _torch.Tensor):
                value = value.item()
            if isinstance(ours[key], float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            ours[key] = value
    # torch numbers its parameters in the order of its groups, as optreg does.
    ids = [i for g in groups for i in g["params"]]
    our_ids = [i for g in current["param_groups"] for i in g["params"]]
    declared = {entry for entry, _ in _optreg_state_entries(name)}
    for key, entries in state_dict["state"].items():
        if key not in ids:
            _refuse("it has state for parameter %r, which no param group holds" % (key,))
        pid = our_ids[ids.index(key)]
        ours = current["state"][pid]
        for entry, value in entries.items():
            where = "parameter %d: state '%s'" % (pid, entry)
            if entry not in declared:
                _refuse("%s does not map to a state entry of optreg's '%s'" % (where, name))
            if value is None:
                ours.pop(entry, None)
                continue
            if isinstance(value, _torch.Tensor) and value.dim() == 0 and entry in _TENSOR_SCALARS:
                value = value.item()
            if entry == "step":
                if float(value) != int(value):
                    _refuse("%s is %r, not a whole number" % (where, value))
                value = int(value)
            elif isinstance(value, _torch.Tensor):
                if value.dtype not in (_torch.float32, _torch.float64, _torch.float16):
                    _refuse("%s is %s; only float32, float64 and float16 tensors convert" % (where, value.dtype))
                if value.layout != _torch.strided:
                    _refuse("%s is a sparse tensor" % where)
                value = value.detach().cpu().contiguous().numpy()
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                value = float(value)
            else:
                _refuse("%s is a %s" % (where, type(value).__name__))
            ours[entry] = value
        if name == "sgd" and "momentum_buffer" in entries and entries["momentum_buffer"] is not None:
            ours["momentum_updates"] = max(1, int(ours.get("momentum_updates", 0)))
    native_dict = {"optimizer": name, "param_groups": current["param_groups"],
                   "optreg_state": _optreg.encode_state(current)}
    return {"state": {}, "param_groups": state_dict["param_groups"], "optreg": native_dict}


def _optreg_state_entries(name):
    return _optreg_registry().describe(name)["state"]


def _optreg_registry():
    return default_registry()


def to_torch_state_dict(optimizer):
    """The state dict that torch.optim's class for `optimizer` (an optreg.torch.Optimizer or an
    optreg.Optimizer) would have after the same steps, for its load_state_dict(). What torch.optim
    cannot hold is refused with a StateDictError naming it: master weights, stochastic
    rounding's count, state kept in bfloat16 or int8."""
    native = _native_of(optimizer)
    name = native.name
    if name not in TORCH_CLASSES:
        _refuse("optreg's '%s' has no torch.optim counterpart; convertible: %s" % (name, ", ".join(sorted(TORCH_CLASSES))))
    ours = _optreg.decode_state(native.state_dict()["optreg_state"])
    groups = []
    for g, group in enumerate(ours["param_groups"]):
        out = {}
        for key, value in group.items():
            if key in _PRECISION_DEFAULTS:
                if value != _PRECISION_DEFAULTS[key]:
                    _refuse("param group %d: option '%s' = %r does not map: torch.optim has no such option" % (g, key, value))
                continue
            out[key] = tuple(value) if isinstance(value, list) else value
        out["params"] = list(group["params"])
        groups.append(out)
    state = {}
    for pid, entries in ours["state"].items():
        out = {}
        for entry, value in entries.items():
            where = "parameter %d: state '%s'" % (pid, entry)
            if entry in ("master_weight", "rounding_step"):
                _refuse("%s does not map: torch.optim keeps no master weights and rounds to nearest" % where)
            if entry == "momentum_updates":
                continue
            if entry == "step" and name in _INT_STEP:
                out[entry] = int(value)
            elif entry in _TENSOR_SCALARS:
                out[entry] = _torch.tensor(float(value), dtype=_torch.float32)
            else:
                out[entry] = _torch.from_numpy(value)
        if name == "sgd":
            # optreg keeps a zero buffer until its first use; torch has none until then.
            if entries.get("momentum_updates", 0) == 0:
                out.pop("momentum_buffer", None)
        if out:
            state[pid] = out
    return {"state": state, "param_groups": groups}
