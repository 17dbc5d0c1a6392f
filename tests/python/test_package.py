"""The optreg Python package over numpy arrays: the registry, optimizers, state dicts,
checkpoints, schedulers, configs, refusals and lifetimes."""

import gc
import pickle
import threading

import numpy as np
import pytest

import optreg


def test_the_registry_lists_every_in_tree_optimizer_with_typed_schemas():
    names = optreg.names()
    for name in ("sgd", "adam", "adamw", "lamb", "lars", "lion", "adafactor"):
        assert name in names
    lr = optreg.schema("adam")["lr"]
    assert lr["type"] == "float" and lr["default"] == 1e-3 and lr["range"][0] == 0.0
    assert optreg.schema("adam")["betas"]["length"] == 2
    assert "rounding" in optreg.schema("sgd") and optreg.schema("sgd")["rounding"]["choices"] == ["nearest", "stochastic"]
    described = optreg.default_registry().describe("adam")
    assert described["param_dtypes"] == ["float32", "float64", "bfloat16", "float16"]
    assert described["state_dtypes"] == ["float32", "bfloat16", "int8"]
    assert ("exp_avg", "tensor") in described["state"]


def test_a_missing_plugin_file_is_a_plugin_error_naming_it(tmp_path):
    registry = optreg.Registry()
    with pytest.raises(optreg.PluginError, match="no-such-plugin.so") as e:
        registry.load_file(str(tmp_path / "no-such-plugin.so"))
    assert isinstance(e.value, RuntimeError) and isinstance(e.value, optreg.Error)
    bad = tmp_path / "broken.so"
    bad.write_bytes(b"not an ELF file")
    refused = registry.load_directory(str(tmp_path))
    assert len(refused) == 1 and refused[0][0].endswith("broken.so")
    assert registry.refusals()[-1] == refused[0]


def test_sgd_steps_the_callers_arrays_in_place_bit_for_bit():
    w = np.linspace(-1, 1, 7, dtype=np.float32)
    g = np.full(7, 0.25, dtype=np.float32)
    expected = w - np.float32(0.1) * g
    opt = optreg.create("sgd", [w], lr=0.1)
    opt.set_grads([g])
    assert opt.step() is opt
    np.testing.assert_array_equal(w, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_every_numpy_dtype_is_stepped_in_its_own_precision(dtype):
    w = np.ones((2, 3), dtype=dtype)
    opt = optreg.create("sgd", [("weight", w)], lr=0.5)
    opt.set_grad(0, np.ones((2, 3), dtype=dtype))
    opt.step()
    np.testing.assert_array_equal(w, np.full((2, 3), 0.5, dtype=dtype))
    assert opt.param_names == ["weight"]


def test_groups_take_their_own_options_and_set_option_changes_one_group():
    a, b = np.ones(2, np.float32), np.ones(2, np.float32)
    opt = optreg.create("sgd", [{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 1.0]
    assert [g["params"] for g in opt.param_groups] == [[0], [1]]
    opt.set_grads([np.ones(2, np.float32)] * 2)
    opt.set_option("lr", 0.0, group=0)
    opt.step()
    np.testing.assert_array_equal(a, np.ones(2, np.float32))
    np.testing.assert_array_equal(b, np.zeros(2, np.float32))


def test_a_group_that_names_another_optimizer_makes_a_composite():
    bias, weight = np.ones(3, np.float32), np.eye(3, dtype=np.float32)
    opt = optreg.create("sgd", [{"params": [("b", bias)]},
                                {"params": [("w", weight)], "optimizer": "muon", "lr": 0.02}], lr=0.5)
    assert opt.name == "composite"
    assert [g["optimizer"] for g in opt.param_groups] == ["sgd", "muon"]
    assert "momentum" in opt.param_groups[1] and opt.param_groups[1]["lr"] == 0.02
    opt.set_grads([np.ones(3, np.float32), np.ones((3, 3), np.float32)])
    opt.step()
    np.testing.assert_array_equal(bias, np.full(3, 0.5, np.float32))
    assert not np.array_equal(weight, np.eye(3, dtype=np.float32))
    with pytest.raises(optreg.OptionError, match="fixed when the group is added"):
        opt.set_option("optimizer", "sgd", group=1)
    with pytest.raises(optreg.UsageError, match="steps matrices"):
        optreg.create("sgd", [{"params": [("b", bias)], "optimizer": "muon"}])


def test_hooks_run_in_order_and_a_throwing_pre_step_hook_leaves_the_arrays_unchanged():
    w = np.ones(3, np.float32)
    opt = optreg.create("sgd", [("w", w)], lr=0.5)
    log = []
    first = opt.add_hook("pre_step", lambda o: log.append(("pre", o.name)))
    opt.add_hook("post_step", lambda o: log.append("post"))
    opt.add_hook("pre_state_dict", lambda o: log.append("save"))
    opt.add_hook("post_load", lambda o: log.append("load"))
    opt.set_grads([np.ones(3, np.float32)])
    opt.step()
    opt.load_state_dict(opt.state_dict())
    assert log == [("pre", "sgd"), "post", "save", "load"]
    first.remove()
    assert not first.active

    def refuse(o):
        raise KeyError("not now")

    opt.add_hook("pre_step", refuse)
    with pytest.raises(KeyError, match="not now"):
        opt.step()
    np.testing.assert_array_equal(w, np.full(3, 0.5, np.float32))
    with pytest.raises(optreg.UsageError, match="unknown hook point 'pre'"):
        opt.add_hook("pre", refuse)


def test_load_by_name_matches_renamed_and_reordered_parameters(tmp_path):
    w, b = np.full((2, 2), 3.0, np.float32), np.full(2, 4.0, np.float32)
    opt = optreg.create("adam", [("enc.w", w), ("enc.b", b)], lr=0.1)
    opt.set_grads([np.ones((2, 2), np.float32), np.ones(2, np.float32)])
    opt.step()
    opt.save(str(tmp_path / "run.ckpt"))
    w2, new = np.zeros((2, 2), np.float32), np.zeros(5, np.float32)
    other = optreg.create("adam", [("extra", new), ("backbone.w", w2)], lr=0.1)
    with pytest.raises(optreg.CheckpointError, match="'extra' .id 0. has no state in it"):
        other.load_by_name(str(tmp_path / "run.ckpt"), renames={"enc.*": "backbone.*"})
    report = other.load_by_name(str(tmp_path / "run.ckpt"), renames={"enc.*": "backbone.*"},
                                fresh_for_missing=True, drop_unexpected=True)
    assert report == {"matched": [("backbone.w", "enc.w")], "created": ["extra"], "dropped": ["enc.b"]}
    np.testing.assert_array_equal(w2, w)
    assert other.state(1)["step"] == 1


def test_parameters_without_a_gradient_are_skipped():
    a, b = np.ones(2, np.float32), np.ones(2, np.float32)
    opt = optreg.create("adam", [a, b], lr=0.1)
    opt.set_grad(1, np.ones(2, np.float32))
    opt.step()
    np.testing.assert_array_equal(a, np.ones(2, np.float32))
    assert opt.state(0)["step"] == 0 and opt.state(1)["step"] == 1
    opt.clear_grad()
    assert not opt.has_grad(1)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.ones(6, np.float32)[::2], "not C-contiguous"),
        (np.ones(3, np.int32), "buffer format 'i'"),
        ([1.0, 2.0], "is a list, not an array"),
    ],
)
def test_an_unusable_array_is_refused_naming_the_parameter(array, message):
    with pytest.raises(optreg.UsageError, match=r"parameter 1 \('p1'\)") as e:
        optreg.create("sgd", [np.ones(2, np.float32), array], lr=0.1)
    assert message in str(e.value)
    assert isinstance(e.value, ValueError)


def test_a_read_only_array_is_refused():
    w = np.ones(3, np.float32)
    w.setflags(write=False)
    with pytest.raises(optreg.UsageError, match="read-only"):
        optreg.create("sgd", [w], lr=0.1)


def test_a_gradient_of_another_dtype_or_shape_is_refused_naming_both():
    opt = optreg.create("sgd", [("w", np.ones(4, np.float32))], lr=0.1)
    with pytest.raises(optreg.UsageError, match="float64.*'w'.*float32"):
        opt.set_grad(0, np.ones(4, np.float64))
    with pytest.raises(optreg.UsageError, match=r"\[3\].*'w'.*\[4\]"):
        opt.set_grad(0, np.ones(3, np.float32))
    with pytest.raises(IndexError, match="index 5"):
        opt.set_grad(5, np.ones(4, np.float32))


def test_bad_options_are_option_errors_that_are_value_errors():
    with pytest.raises(optreg.OptionError, match="'lr'.*out of range") as e:
        optreg.create("sgd", [np.ones(2, np.float32)], lr=-1.0)
    assert isinstance(e.value, ValueError)
    with pytest.raises(optreg.OptionError, match="did you mean"):
        optreg.create("adam", [np.ones(2, np.float32)], betaz=(0.9, 0.99))
    with pytest.raises(optreg.UsageError, match="'lr'.*dict"):
        optreg.create("adam", [np.ones(2, np.float32)], lr={})
    with pytest.raises(optreg.UsageError, match="'betas'.*list holds numbers only, not str"):
        optreg.create("adam", [np.ones(2, np.float32)], betas=(0.9, "x"))
    with pytest.raises(optreg.UsageError, match="'lr'.*too large"):
        optreg.create("adam", [np.ones(2, np.float32)], lr=10 ** 400)
    with pytest.raises(optreg.OptionError, match="'rounding_seed'"):
        optreg.create("adam", [np.ones(2, np.float32)], rounding_seed=2 ** 70)
    opt = optreg.create("adam", [np.ones(2, np.float32)], lr=np.float32(0.5), betas=(np.float64(0.8), 0.99))
    assert opt.option("lr") == float(np.float32(0.5)) and opt.option("betas") == [0.8, 0.99]


def adam_run(steps, w, opt=None, seed=0):
    rng = np.random.default_rng(seed)
    opt = opt or optreg.create("adam", [w], lr=0.01)
    for _ in range(steps):
        opt.set_grads([rng.standard_normal(w.shape).astype(np.float32)])
        opt.step()
    return opt


def test_a_pickled_state_dict_resumes_bit_exactly():
    w1 = np.ones(16, np.float32)
    opt1 = adam_run(5, w1)
    saved = pickle.dumps(opt1.state_dict())
    w2 = w1.copy()
    adam_run(5, w1, opt1, seed=1)
    opt2 = optreg.create("adam", [w2], lr=0.5)
    opt2.load_state_dict(pickle.loads(saved))
    assert opt2.option("lr") == 0.01
    adam_run(5, w2, opt2, seed=1)
    np.testing.assert_array_equal(w1, w2)


def test_a_refused_state_dict_changes_nothing():
    w = np.ones(4, np.float32)
    opt = adam_run(3, w)
    before = opt.state_dict()["optreg_state"]
    other = adam_run(1, np.ones(5, np.float32))
    with pytest.raises(optreg.StateDictError, match="shape"):
        opt.load_state_dict(other.state_dict())
    damaged = dict(opt.state_dict())
    corrupt = bytearray(damaged["optreg_state"])
    corrupt[-3] ^= 0xFF
    damaged["optreg_state"] = bytes(corrupt)
    with pytest.raises(optreg.CheckpointError, match="the state dict"):
        opt.load_state_dict(damaged)
    with pytest.raises(optreg.UsageError, match="optreg_state"):
        opt.load_state_dict({"state": {}, "param_groups": []})
    assert opt.state_dict()["optreg_state"] == before


def test_checkpoint_files_hold_values_and_state(tmp_path):
    w = np.ones(8, np.float32)
    opt = adam_run(3, w)
    path = str(tmp_path / "run.optreg")
    opt.save(path)
    saved = w.copy()
    adam_run(2, w, opt)
    opt.load(path)
    np.testing.assert_array_equal(w, saved)
    assert opt.state(0)["step"] == 3
    with pytest.raises(optreg.CheckpointError, match="missing.optreg"):
        opt.load(str(tmp_path / "missing.optreg"))


def test_schedulers_drive_the_optimizer_they_were_made_for():
    registry = optreg.default_registry()
    opt = optreg.create("sgd", [np.ones(2, np.float32)], lr=1.0)
    sched = registry.create_scheduler("step", opt, step_size=2, gamma=0.5)
    for _ in range(4):
        sched.step()
    assert opt.option("lr") == 0.25 and sched.last_lr() == [0.25]
    assert "step" in registry.scheduler_names() and "cosine" in registry.scheduler_names()


def test_configs_build_groups_by_name_and_report_errors_with_line_and_column(tmp_path):
    config = tmp_path / "opt.yaml"
    config.write_text("optimizer:\n  name: adam\n  lr: 0.01\nparam_groups:\n  - params: '*.bias'\n    lr: 0.1\n")
    named = [("fc.weight", np.ones(4, np.float32)), ("fc.bias", np.ones(2, np.float32))]
    opt = optreg.build(str(config), named)
    lrs = {opt.param_names[i]: g["lr"] for g in opt.param_groups for i in g["params"]}
    assert lrs == {"fc.weight": 0.01, "fc.bias": 0.1}
    bad = tmp_path / "bad.yaml"
    bad.write_text("optimizer:\n  name: adam\n  lrr: 0.01\n")
    with pytest.raises(optreg.ConfigError, match=r"bad.yaml:3:3.*lrr"):
        optreg.build(str(bad), named)


def test_the_arrays_may_go_before_the_optimizer_and_the_registry_before_both():
    registry = optreg.Registry()
    registry.load_default()
    w = np.ones(1000, np.float32)
    opt = registry.create("adam", [w], lr=0.1)
    view = w[:3]
    del w
    gc.collect()
    opt.set_grads([np.ones(1000, np.float32)])
    del registry
    gc.collect()
    opt.step()  # the optimizer keeps the array's memory and the plugin alive
    np.testing.assert_array_less(view, np.ones(3, np.float32))
    del opt
    gc.collect()


def test_steps_on_threads_run_at_once_and_give_the_same_bits():
    arrays = [np.ones(200_000, np.float32) for _ in range(4)]
    opts = [optreg.create("adam", [a], lr=0.01) for a in arrays]
    for o in opts:
        o.set_grads([np.full(200_000, 0.5, np.float32)])

    def run(o):
        for _ in range(20):
            o.step()

    threads = [threading.Thread(target=run, args=(o,)) for o in opts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a in arrays[1:]:
        np.testing.assert_array_equal(a, arrays[0])


def test_two_parameters_sharing_memory_are_refused_naming_both():
    buffer = np.ones(10, np.float32)
    with pytest.raises(optreg.UsageError, match=r"parameters 0 \('a'\) and 2 \('c'\) share memory"):
        optreg.create("sgd", [("a", buffer[:6]), ("b", np.ones(2, np.float32)), ("c", buffer[4:])], lr=0.1)
    opt = optreg.create("sgd", [("a", buffer[:5]), ("b", buffer[5:])], lr=0.1)  # adjacent parts are fine
    with pytest.raises(optreg.UsageError, match="share memory"):
        opt.add_param_group([("c", buffer[2:3])])
    assert opt.num_params == 2


def test_step_with_a_closure_propagates_its_python_exception_unchanged():
    w = np.array([1.0, 2.0], dtype=np.float32)
    opt = optreg.create("sgd", [w], lr=0.5)

    def closure():
        opt.set_grads([2 * w])
        return float((w * w).sum())

    assert opt.step(closure) == 5.0
    np.testing.assert_array_equal(w, [0.0, 0.0])

    class Stop(Exception):
        pass

    def failing():
        raise Stop("no batch")

    with pytest.raises(Stop, match="no batch"):
        opt.step(failing)


def test_eval_weights_is_a_context_manager_that_restores_the_training_weights():
    w = np.array([[0.5, -1.0], [2.0, 3.0]], dtype=np.float32)
    opt = optreg.create("schedulefree_adamw", [w], lr=0.1, betas=[0.5, 0.999])
    for k in range(3):
        opt.set_grads([np.sin(w + k).astype(np.float32)])
        opt.step()
    y = w.copy()
    z = optreg.decode_state(opt.state_dict()["optreg_state"])["state"][0]["z"]
    with opt.eval_weights() as scope:
        assert scope.active
        z = np.asarray(z, dtype=np.float32).reshape(2, 2)
        # lerp(y, z, 1 - 1/beta1) with weight -1, taken from the far end as torch's lerp does
        np.testing.assert_array_equal(w, z - (z - y) * np.float32(2.0))
    np.testing.assert_array_equal(w, y)
    assert optreg.default_registry().describe("schedulefree_adamw")["flags"] == ["eval_weights"]


def test_a_wrapper_steps_with_the_optimizer_inner_names_by_keyword_or_config(tmp_path):
    w = np.array([1.0, -2.0, 3.0], dtype=np.float32)
    opt = optreg.create("lookahead", [("w", w)], inner={"name": "sgd", "lr": 0.5}, k=2, alpha=0.5)
    assert opt.name == "lookahead"
    assert opt.param_groups[0]["inner"] == "sgd" and opt.param_groups[0]["k"] == 2
    g = np.ones(3, dtype=np.float32)
    opt.set_grads([g])
    opt.step()
    np.testing.assert_array_equal(w, np.array([0.5, -2.5, 2.5], dtype=np.float32))
    opt.set_grads([g])
    opt.step()  # the sync: the slow weights go halfway to the fast ones, which restart there
    np.testing.assert_array_equal(w, np.array([0.5, -2.5, 2.5], dtype=np.float32))
    assert "slow_weights" in opt.state(0)
    with pytest.raises(optreg.UsageError, match="lookahead' is a wrapper"):
        optreg.create("lookahead", [w])
    with pytest.raises(optreg.UsageError, match="inner= names the optimizer"):
        optreg.create("lookahead", [w], inner=3)
    config = tmp_path / "opt.yaml"
    config.write_text("optimizer: {name: lookahead, k: 3, inner: {name: adam, lr: 0.01}}\n")
    built = optreg.build(str(config), [("w", np.zeros(3, dtype=np.float32))])
    assert built.name == "lookahead" and built.param_groups[0]["k"] == 3 and built.param_groups[0]["lr"] == 0.01
