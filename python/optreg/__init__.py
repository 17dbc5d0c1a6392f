"""optreg: deep-learning parameter optimizers loaded as plugins by name.

    import optreg
    opt = optreg.create("adam", [w, b], lr=1e-3)   # numpy arrays or torch tensors, viewed in place
    opt.set_grads([gw, gb])
    opt.step().clear_grad()

optreg.torch.Optimizer is a torch.optim.Optimizer backed by any optreg optimizer.
"""

import threading

from ._optreg import (  # noqa: F401  (the public names)
    CheckpointError,
    Config,
    ConfigError,
    Error,
    FileError,
    NonFiniteError,
    Optimizer,
    OptionError,
    PluginError,
    Registry,
    Scheduler,
    StateDictError,
    UsageError,
    abi_version,
    decode_state,
    encode_state,
    load_config,
    parse_config,
)

__all__ = [
    "CheckpointError", "Config", "ConfigError", "Error", "FileError", "NonFiniteError", "Optimizer",
    "OptionError", "PluginError", "Registry", "Scheduler", "StateDictError", "UsageError",
    "abi_version", "build", "create", "decode_state", "default_registry", "encode_state", "load_config", "load_default", "load_file",
    "names", "parse_config", "schema",
]

_default = None
_lock = threading.Lock()


def default_registry():
    """The registry that the module-level functions use: the in-tree plugins and those on
    OPTREG_PLUGIN_PATH, loaded at the first call."""
    global _default
    with _lock:
        if _default is None:
            registry = Registry()
            registry.load_default()
            _default = registry
        return _default


def load_default():
    """Loads the default plugins into the default registry; returns the refused files as
    (path, reason) pairs."""
    return default_registry().refusals()


def load_file(path):
    """Loads one more plugin library into the default registry; returns the names it added."""
    return default_registry().load_file(path)


def names():
    """The names of the optimizers in the default registry."""
    return default_registry().names()


def schema(name):
    """The hyperparameters of optimizer or scheduler `name`, as dicts."""
    return default_registry().schema(name)


def create(name, params, **defaults):
    """Makes optimizer `name` of the default registry over `params`: a list of arrays (numpy
    arrays or torch tensors), of (name, array) pairs, or of group dicts as in torch.optim
    ({"params": [...], "lr": 0.1}). Keyword arguments are the defaults of every group."""
    return default_registry().create(name, params, **defaults)


def build(config, named_params, registry=None):
    """Makes the optimizer a config (optreg.load_config(path), or a path) describes over
    (name, array) pairs, such as a torch module's named_parameters(); the config's
    param_groups select parameters by name."""
    if isinstance(config, str):
        config = load_config(config)
    registry = registry or default_registry()
    registry.load_config_plugins(config)
    return registry.build(config, list(named_params))
