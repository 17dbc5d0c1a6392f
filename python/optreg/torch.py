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

__all__ = ["Optimizer", "from_config"]


def _group_options(group):
    return {k: v for k, v in group.items() if k != "params"}


class Optimizer(_torch.optim.Optimizer):
    """A torch.optim.Optimizer backed by the optreg optimizer `name`.

    `params` and `defaults` are those of torch.optim (an iterable of tensors or of group dicts);
    `defaults` are checked against the optimizer's schema (optreg.schema(name)), and every option
    it does not name takes the schema's default. `registry` is an optreg.Registry (the default
    one when None).
    """

    def __init__(self, params, name, registry=None, **defaults):
        self._native = None
        self._registry = registry or default_registry()
        self._schema = self._registry.schema(name)  # OptionError for an unknown name
        full = {k: v["default"] for k, v in self._schema.items()}
        full.update(defaults)
        super().__init__(params, full)
        groups = []
        for i, group in enumerate(self.param_groups):
            first = sum(len(g["params"]) for g in self.param_groups[:i])
            params = [("p%d" % (first + j), p) for j, p in enumerate(group["params"])]
            groups.append(dict(_group_options(group), params=params))
        self._adopt(self._registry.create(name, groups))

    def _adopt(self, native):
        self._native = native
        self._params = [p for g in self.param_groups for p in g["params"]]
        self._grads = [None] * len(self._params)
        self._ptrs = [p.data_ptr() for p in self._params]
        self._synced = [self._options_of(g) for g in self.param_groups]

    def _options_of(self, group):
        return {k: v for k, v in group.items() if k in self._schema}

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
        self._native.add_param_group(named, **_group_options(group))
        self._params.extend(group["params"])
        self._grads.extend([None] * len(group["params"]))
        self._ptrs.extend(p.data_ptr() for p in group["params"])
        self._synced.append(self._options_of(group))

    def _sync(self):
        native = self._native
        for i, group in enumerate(self.param_groups):
            synced = self._synced[i]
            for key in self._schema:
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
        loss = None
        if closure is not None:
            with _torch.enable_grad():
                loss = closure()
        self._sync()
        self._native.step()
        return loss

    def zero_grad(self, set_to_none=False):
        super().zero_grad(set_to_none=set_to_none)
        if set_to_none:  # let go of the old gradients at once
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
        all or nothing; the options it holds replace those of `param_groups`."""
        if "optreg" not in state_dict:
            raise _optreg.UsageError(
                "the state dict has no 'optreg' entry: it was not made by optreg.torch.Optimizer.state_dict()")
        self._native.load_state_dict(state_dict["optreg"])
        for i, (group, saved) in enumerate(zip(self.param_groups, self._native.param_groups)):
            for key in self._schema:
                if key in saved:
                    value = saved[key]
                    if isinstance(group.get(key), tuple):
                        value = tuple(value)
                    group[key] = value
            self._synced[i] = self._options_of(group)


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
    opt._registry = registry
    opt._schema = registry.schema(native.name)
    _torch.optim.Optimizer.__init__(opt, groups, {k: v["default"] for k, v in opt._schema.items()})
    opt._adopt(native)
    return opt
