"""optreg.torch.Optimizer against torch.optim: the same model, data, groups, frozen
parameters and learning-rate schedule, 100 steps each, for every optimizer torch 1.13 ships
that optreg has."""

import copy
import io
import math

import pytest

torch = pytest.importorskip("torch")
import optreg  # noqa: E402
import optreg.torch  # noqa: E402

# name: (torch class, options given to both)
CASES = {
    "sgd": (torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    "adam": (torch.optim.Adam, dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-3, amsgrad=True)),
    "adamw": (torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.05)),
    "adagrad": (torch.optim.Adagrad, dict(lr=0.05, lr_decay=1e-3, weight_decay=1e-3)),
    "rmsprop": (torch.optim.RMSprop, dict(lr=1e-3, momentum=0.9, centered=True)),
    "adadelta": (torch.optim.Adadelta, dict(lr=1.0, rho=0.95)),
    "adamax": (torch.optim.Adamax, dict(lr=1e-2)),
    "nadam": (torch.optim.NAdam, dict(lr=1e-2)),
    "radam": (torch.optim.RAdam, dict(lr=1e-2)),
    "asgd": (torch.optim.ASGD, dict(lr=1e-2, t0=10.0)),
    "rprop": (torch.optim.Rprop, dict(lr=1e-2)),
}


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.fc1 = torch.nn.Linear(4 * 6 * 6, 16)
        self.fc2 = torch.nn.Linear(16, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def make_model(seed=0):
    torch.manual_seed(seed)
    model = Net()
    model.conv.bias.requires_grad_(False)  # frozen: no gradient, never changed
    return model


def groups_of(model):
    return [
        {"params": [model.conv.weight, model.conv.bias, model.fc1.weight]},
        {"params": [model.fc1.bias, model.fc2.weight, model.fc2.bias], "lr_scale": None},
    ]


def torch_groups(model, lr):
    g = groups_of(model)
    g[1].pop("lr_scale")
    g[1]["lr"] = lr * 0.5
    return g


def batches(n, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        yield torch.randn(8, 1, 8, 8, generator=gen), torch.randint(0, 3, (8,), generator=gen)


def train(model, opt, steps=100, clip=None):
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.5)
    losses = []
    for x, y in batches(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch_optim_over_100_steps_with_groups_frozen_parameters_and_a_schedule(name):
    cls, options = CASES[name]
    ref_model, our_model = make_model(), make_model()
    lr = options["lr"]
    ref = cls(torch_groups(ref_model, lr), **options)
    ours = optreg.torch.Optimizer(torch_groups(our_model, lr), name, **options)
    frozen = our_model.conv.bias.clone()
    ref_losses = train(ref_model, ref)
    our_losses = train(our_model, ours)
    assert torch.equal(our_model.conv.bias, frozen)
    for (n, a), b in zip(ref_model.named_parameters(), our_model.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {n}: {m}")
    assert math.isclose(our_losses[-1], ref_losses[-1], rel_tol=1e-5)


def test_gradient_clipping_from_torch_applies_before_the_step():
    ref_model, our_model = make_model(), make_model()
    ref = torch.optim.Adam(ref_model.parameters(), lr=1e-2)
    ours = optreg.torch.Optimizer(our_model.parameters(), "adam", lr=1e-2)
    train(ref_model, ref, steps=20, clip=0.1)
    train(our_model, ours, steps=20, clip=0.1)
    for a, b in zip(ref_model.parameters(), our_model.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("set_to_none", [False, True])
def test_zero_grad_either_way_gives_the_same_steps(set_to_none):
    ref_model, our_model = make_model(), make_model()
    ref = torch.optim.SGD(ref_model.parameters(), lr=0.1, momentum=0.9)
    ours = optreg.torch.Optimizer(our_model.parameters(), "sgd", lr=0.1, momentum=0.9)
    for (x, y) in batches(10):
        for model, opt in ((ref_model, ref), (our_model, ours)):
            opt.zero_grad(set_to_none=set_to_none)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for a, b in zip(ref_model.parameters(), our_model.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)


def test_a_changed_lr_in_param_groups_takes_effect_at_the_next_step():
    p = torch.nn.Parameter(torch.ones(4))
    opt = optreg.torch.Optimizer([p], "sgd", lr=0.1)
    p.grad = torch.ones(4)
    opt.step()
    assert torch.allclose(p, torch.full((4,), 0.9))
    opt.param_groups[0]["lr"] = 0.5
    opt.step()
    assert torch.allclose(p, torch.full((4,), 0.4))
    assert opt.native.option("lr") == 0.5


def test_a_parameter_given_new_memory_is_stepped_there():
    p = torch.nn.Parameter(torch.ones(3))
    opt = optreg.torch.Optimizer([p], "sgd", lr=1.0)
    p.data = torch.zeros(3)
    p.grad = torch.ones(3)
    opt.step()
    assert torch.equal(p.detach(), torch.full((3,), -1.0))


def test_state_dict_survives_torch_save_and_resumes_bit_exactly(tmp_path):
    model_a = make_model()
    opt_a = optreg.torch.Optimizer(model_a.parameters(), "adam", lr=1e-2)
    data = list(batches(20))

    def run(model, opt, part):
        for x, y in part:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

    run(model_a, opt_a, data[:10])
    torch.save({"model": model_a.state_dict(), "opt": opt_a.state_dict()}, tmp_path / "ckpt.pt")
    saved = torch.load(tmp_path / "ckpt.pt")
    assert saved["opt"]["param_groups"][0]["lr"] == 1e-2
    run(model_a, opt_a, data[10:])

    model_b = make_model(seed=5)
    model_b.load_state_dict(saved["model"])
    opt_b = optreg.torch.Optimizer(model_b.parameters(), "adam", lr=0.5)
    opt_b.load_state_dict(saved["opt"])
    assert opt_b.param_groups[0]["lr"] == 1e-2  # the saved options replace the constructor's
    run(model_b, opt_b, data[10:])
    for a, b in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(a, b)


def test_a_refused_state_dict_leaves_the_optimizer_as_it_was():
    model = make_model()
    opt = optreg.torch.Optimizer(model.parameters(), "adam", lr=1e-2)
    other = optreg.torch.Optimizer(make_model().parameters(), "sgd", lr=1e-2)
    before = opt.state_dict()
    with pytest.raises(optreg.StateDictError, match="'sgd'"):
        opt.load_state_dict(other.state_dict())
    with pytest.raises(optreg.UsageError, match="no 'optreg' entry and is not a torch.optim state dict"):
        opt.load_state_dict({"step": 3})
    assert opt.state_dict()["optreg"]["optreg_state"] == before["optreg"]["optreg_state"]


def test_from_config_groups_parameters_by_name(tmp_path):
    config = tmp_path / "opt.yaml"
    config.write_text(
        "optimizer:\n  name: adamw\n  lr: 0.01\n  weight_decay: 0.1\n"
        "param_groups:\n  - params: '*.bias'\n    weight_decay: 0.0\n")
    model = make_model()
    opt = optreg.torch.from_config(str(config), model.named_parameters())
    decays = sorted(g["weight_decay"] for g in opt.param_groups)
    assert decays == [0.0, 0.1]
    biases = [g for g in opt.param_groups if g["weight_decay"] == 0.0][0]["params"]
    assert {id(p) for p in biases} == {id(model.conv.bias), id(model.fc1.bias), id(model.fc2.bias)}
    train(model, opt, steps=3)


def test_bfloat16_parameters_with_master_weights_follow_torch_on_a_float32_master():
    torch.manual_seed(0)
    master = torch.randn(64)
    p = torch.nn.Parameter(master.to(torch.bfloat16))
    ref = torch.nn.Parameter(p.detach().float())  # the master starts as the parameter, widened
    ours = optreg.torch.Optimizer([p], "adam", lr=1e-2, master_weights=True)
    theirs = torch.optim.Adam([ref], lr=1e-2)
    for _ in range(10):
        g = torch.randn(64)
        p.grad = g.to(torch.bfloat16)
        ref.grad = g.to(torch.bfloat16).float()
        ours.step()
        theirs.step()
    assert torch.equal(p.detach(), ref.detach().to(torch.bfloat16))


def test_refusals_name_the_parameter():
    with pytest.raises(optreg.UsageError, match=r"parameter 1 \('p1'\) is not contiguous"):
        optreg.torch.Optimizer([torch.ones(2), torch.ones(3, 4).t()], "sgd", lr=0.1)
    with pytest.raises(optreg.UsageError, match="sparse"):
        optreg.torch.Optimizer([torch.ones(3).to_sparse()], "sgd", lr=0.1)
    with pytest.raises(optreg.UsageError, match="torch.int64"):
        optreg.torch.Optimizer([torch.ones(3, dtype=torch.int64)], "sgd", lr=0.1)
    with pytest.raises(optreg.OptionError, match="momentum"):
        optreg.torch.Optimizer([torch.ones(3)], "sgd", lr=0.1, momentum=-1.0)
    with pytest.raises(optreg.OptionError, match="'nesterovv'"):
        optreg.torch.Optimizer([torch.ones(3)], "sgd", lr=0.1, nesterovv=True)


def test_the_model_deleted_while_the_optimizer_lives():
    model = make_model()
    opt = optreg.torch.Optimizer(model.parameters(), "adam", lr=1e-2)
    x, y = next(batches(1))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    del model
    opt.step()  # the views keep the parameters' memory alive
    del opt


def run_steps(model, opt, data):
    for x, y in data:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_run_started_with_torch_optim_continues_with_optreg_and_the_reverse(name):
    cls, options = CASES[name]
    data = list(batches(40))
    # torch for 20 steps, then torch and optreg each for 20 more from torch's state
    ref_model = make_model()
    ref = cls(ref_model.parameters(), **options)
    run_steps(ref_model, ref, data[:20])
    our_model = copy.deepcopy(ref_model)
    ours = optreg.torch.Optimizer(our_model.parameters(), name, **dict(options, lr=options["lr"] * 3))
    ours.load_state_dict(ref.state_dict())  # converted: its options replace the constructor's
    assert ours.param_groups[0]["lr"] == options["lr"]
    run_steps(ref_model, ref, data[20:])
    run_steps(our_model, ours, data[20:])
    for (n, a), b in zip(ref_model.named_parameters(), our_model.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name} from torch: {n}: {m}")
    # optreg for 20 steps, then optreg and torch each for 20 more from optreg's state
    our_model = make_model()
    ours = optreg.torch.Optimizer(our_model.parameters(), name, **options)
    run_steps(our_model, ours, data[:20])
    ref_model = copy.deepcopy(our_model)
    ref = cls(ref_model.parameters(), **options)
    ref.load_state_dict(optreg.torch.to_torch_state_dict(ours))
    run_steps(ref_model, ref, data[20:])
    run_steps(our_model, ours, data[20:])
    for (n, a), b in zip(ref_model.named_parameters(), our_model.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name} to torch: {n}: {m}")


def test_converted_state_round_trips_through_torch_format_unchanged():
    model = make_model()
    ours = optreg.torch.Optimizer(model.parameters(), "adam", lr=1e-2, amsgrad=True)
    run_steps(model, ours, list(batches(5)))
    before = optreg._optreg.decode_state(ours.state_dict()["optreg"]["optreg_state"])
    ours.load_state_dict(optreg.torch.to_torch_state_dict(ours))
    after = optreg._optreg.decode_state(ours.state_dict()["optreg"]["optreg_state"])
    assert before["param_groups"] == after["param_groups"]
    for pid, entries in before["state"].items():
        for entry, value in entries.items():
            assert (after["state"][pid][entry] == value).all() if hasattr(value, "shape") else after["state"][pid][entry] == value


def test_what_does_not_map_is_refused_naming_it():
    model = make_model()
    ours = optreg.torch.Optimizer(model.parameters(), "adam", lr=1e-2)
    sd = torch.optim.Adam(model.parameters()).state_dict()
    sd["param_groups"][0]["lookahead"] = 5
    with pytest.raises(optreg.StateDictError, match="option 'lookahead' does not map"):
        ours.load_state_dict(sd)
    ref = torch.optim.Adam(model.parameters())
    run_steps(model, ref, list(batches(1)))
    sd = ref.state_dict()
    sd["state"][2]["momentum"] = torch.zeros(3)
    with pytest.raises(optreg.StateDictError, match=r"parameter 2: state 'momentum' does not map"):
        ours.load_state_dict(sd)
    with pytest.raises(optreg.StateDictError, match="has 2 param groups, but the optimizer has 1"):
        ours.load_state_dict(torch.optim.Adam(torch_groups(model, 0.1)).state_dict())
    lion = optreg.torch.Optimizer(model.parameters(), "lion", lr=1e-4)
    with pytest.raises(optreg.StateDictError, match="'lion' has no torch.optim counterpart"):
        optreg.torch.to_torch_state_dict(lion)
    half = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    mixed = optreg.torch.Optimizer([half], "adam", master_weights=True)
    half.grad = torch.ones(4, dtype=torch.bfloat16)
    mixed.step()
    with pytest.raises(optreg.StateDictError, match="master_weights"):
        optreg.torch.to_torch_state_dict(mixed)


def test_the_optimizer_deleted_first_leaves_the_model_usable():
    model = make_model()
    opt = optreg.torch.Optimizer(model.parameters(), "adam", lr=1e-2)
    run_steps(model, opt, list(batches(2)))
    del opt
    import gc
    gc.collect()
    before = [p.detach().clone() for p in model.parameters()]
    ref = torch.optim.SGD(model.parameters(), lr=0.1)
    run_steps(model, ref, list(batches(1)))
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_a_tensor_on_another_device_is_refused_naming_the_device():
    with pytest.raises(optreg.UsageError, match=r"parameter 0 \('p0'\) is on device 'meta'"):
        optreg.torch.Optimizer([torch.ones(3, device="meta")], "sgd", lr=0.1)


def test_an_optimizer_of_the_registry_given_is_used():
    registry = optreg.Registry()
    registry.load_default()
    p = torch.nn.Parameter(torch.ones(2))
    opt = optreg.torch.Optimizer([p], "lion", registry=registry, lr=0.1)
    p.grad = torch.ones(2)
    opt.step()
    assert torch.allclose(p.detach(), torch.full((2,), 0.9))
    with pytest.raises(optreg.PluginError, match="did you mean 'lion'"):
        optreg.torch.Optimizer([p], "lionn", registry=registry)


def test_step_with_a_closure_returns_its_loss_and_steps_once():
    model = make_model()
    opt = optreg.torch.Optimizer(model.parameters(), "sgd", lr=0.1)
    ref_model = make_model()
    ref = torch.optim.SGD(ref_model.parameters(), lr=0.1)
    x, y = next(batches(1))
    calls = []

    def closure(m, o):
        def run():
            calls.append(1)
            o.zero_grad()
            loss = torch.nn.functional.cross_entropy(m(x), y)
            loss.backward()
            return loss
        return run

    loss = opt.step(closure(model, opt))
    ref_loss = ref.step(closure(ref_model, ref))
    assert loss.item() == ref_loss.item()
    assert len(calls) == 2  # one evaluation each
    for a, b in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert not opt.native.needs_closure


def test_eval_puts_the_schedule_free_average_in_place_and_train_puts_the_weights_back():
    model = make_model()
    opt = optreg.torch.Optimizer(model.parameters(), "schedulefree_adamw", lr=1e-2, betas=(0.8, 0.999))
    assert opt.native.has_eval_weights
    train(model, opt, steps=10)
    w = model.fc1.weight
    y = w.detach().clone()
    state = optreg.decode_state(opt.native.state_dict()["optreg_state"])["state"]
    z = torch.as_tensor(state[2]["z"]).reshape(w.shape)
    opt.eval()
    expected = y + (1.0 - 1.0 / 0.8) * (z - y)
    assert torch.allclose(w, expected, rtol=0, atol=1e-6)
    assert not torch.equal(w, y)
    with pytest.raises(optreg.UsageError, match="eval mode"):
        opt.step()
    opt.train()
    assert torch.equal(w, y)
    opt.train()  # a second train() changes nothing
    assert torch.equal(w, y)


def test_eval_of_an_optimizer_without_eval_weights_changes_nothing():
    model = make_model()
    opt = optreg.torch.Optimizer(model.parameters(), "adam", lr=1e-2)
    train(model, opt, steps=3)
    before = [p.detach().clone() for p in model.parameters()]
    opt.eval()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))
    opt.train()
    train(model, opt, steps=1)  # steps again after train()


def test_lbfgs_with_a_closure_follows_torch_optim_lbfgs():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(32, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(32, 1, generator=gen, dtype=torch.float64)
    results = []
    for make in (lambda p: torch.optim.LBFGS(p, lr=1, max_iter=5, history_size=4, line_search_fn="strong_wolfe"),
                 lambda p: optreg.torch.Optimizer(p, "lbfgs", lr=1, max_iter=5, history_size=4,
                                                  line_search="strong_wolfe")):
        torch.manual_seed(0)
        model = torch.nn.Linear(5, 1).double()
        opt = make(model.parameters())
        calls = []

        def closure():
            calls.append(1)
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y) + 0.1 * model.weight.pow(4).sum()
            loss.backward()
            return loss

        losses = [opt.step(closure).item() for _ in range(4)]
        results.append((losses, [p.detach().clone() for p in model.parameters()], len(calls)))
    (ref_losses, ref_params, ref_calls), (losses, params, n_calls) = results
    assert n_calls == ref_calls and n_calls > 4  # the same evaluations, several per step
    assert losses == pytest.approx(ref_losses, rel=1e-10)
    for a, b in zip(params, ref_params):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_lbfgs_step_without_a_closure_is_refused():
    model = make_model()
    opt = optreg.torch.Optimizer(model.parameters(), "lbfgs")
    with pytest.raises(optreg.UsageError, match="call step\\(closure\\)"):
        opt.step()


def test_a_config_group_of_another_optimizer_steps_as_that_optimizer_alone(tmp_path):
    # Muon for fc1.weight and fc2.weight, AdamW for the rest: each group bit for bit as its
    # optimizer alone, a torch scheduler scaling both, and a state dict that resumes.
    config = tmp_path / "opt.yaml"
    config.write_text(
        "optimizer: {name: adamw, lr: 0.01, weight_decay: 0.01}\n"
        "param_groups:\n  - params: 'fc*.weight'\n    optimizer: muon\n    lr: 0.02\n")
    model, alone = make_model(), make_model()
    opt = optreg.torch.from_config(str(config), model.named_parameters())
    assert [g["optimizer"] for g in opt.param_groups] == ["adamw", "muon"]
    assert "betas" not in opt.param_groups[1]
    matrices = [alone.fc1.weight, alone.fc2.weight]
    rest = [p for n, p in alone.named_parameters() if n not in ("fc1.weight", "fc2.weight")]
    muon = optreg.torch.Optimizer(matrices, "muon", lr=0.02)
    adamw = optreg.torch.Optimizer(rest, "adamw", lr=0.01, weight_decay=0.01)
    sched = [torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5) for o in (opt, muon, adamw)]
    for x, y in batches(5):
        for m, opts in ((model, [opt]), (alone, [muon, adamw])):
            for o in opts:
                o.zero_grad()
            torch.nn.functional.cross_entropy(m(x), y).backward()
            for o in opts:
                o.step()
        for s in sched:
            s.step()
    for a, b in zip(model.parameters(), alone.parameters()):
        assert torch.equal(a, b)
    assert opt.param_groups[1]["lr"] == muon.param_groups[0]["lr"] == 0.02 * 0.25

    saved = copy.deepcopy(opt.state_dict())
    again = optreg.torch.from_config(str(config), model.named_parameters())
    again.load_state_dict(saved)
    assert again.param_groups[1]["lr"] == 0.02 * 0.25
    assert again.param_groups[1]["optimizer"] == "muon"


def test_a_group_added_to_a_composite_names_its_optimizer_and_gets_its_defaults(tmp_path):
    config = tmp_path / "opt.yaml"
    config.write_text(
        "optimizer: {name: adamw, lr: 0.01}\n"
        "param_groups:\n  - params: 'fc1.weight'\n    optimizer: muon\n")
    model = make_model()
    named = [(n, p) for n, p in model.named_parameters() if n != "fc2.weight"]
    opt = optreg.torch.from_config(str(config), named)
    opt.add_param_group({"params": [model.fc2.weight], "optimizer": "muon", "lr": 0.03})
    assert opt.param_groups[-1]["optimizer"] == "muon"
    assert opt.param_groups[-1]["momentum"] == optreg.schema("muon")["momentum"]["default"]
    with pytest.raises(optreg.OptionError, match="names no optimizer of this composite"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2, 2))], "optimizer": "lion"})
    assert len(opt.param_groups) == 3  # the refused group is in neither side
    train(model, opt, steps=2)


def test_a_wrapper_takes_the_optimizer_it_wraps_as_inner_and_shows_both_levels_options():
    w = torch.sin(torch.arange(5, dtype=torch.float64))
    p = torch.nn.Parameter(w.clone())
    opt = optreg.torch.Optimizer([p], "lookahead", inner={"name": "sgd", "lr": 0.1}, k=2, alpha=0.5)
    group = opt.param_groups[0]
    assert group["inner"] == "sgd" and group["lr"] == 0.1 and group["k"] == 2 and group["alpha"] == 0.5
    # Lookahead's rule over plain SGD, written out: every k steps the slow weights move alpha of
    # the way to the fast ones, and the fast ones restart from them.
    fast, slow = w.clone(), w.clone()
    for t in range(1, 8):
        grad = torch.cos(torch.arange(5, dtype=torch.float64) * t)
        p.grad = grad.clone()
        opt.step()
        fast = fast - 0.1 * grad
        if t % 2 == 0:
            slow = slow + 0.5 * (fast - slow)
            fast = slow.clone()
        assert torch.allclose(p.detach(), fast, rtol=1e-15, atol=0), t
    # A scheduler drives the wrapped optimizer's lr; `inner` is fixed and not sent as an option.
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    scheduler.step()
    p.grad = torch.ones(5, dtype=torch.float64)
    opt.step()
    assert opt.native.param_groups[0]["lr"] == 0.05 and opt.native.param_groups[0]["inner"] == "sgd"
    # The state dict round-trips through torch.save, with both levels' state.
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    again = optreg.torch.Optimizer([p], "lookahead", inner="sgd")
    again.load_state_dict(torch.load(buffer))
    assert again.param_groups[0]["lr"] == 0.05 and again.param_groups[0]["k"] == 2
    with pytest.raises(optreg.UsageError, match="lookahead' is a wrapper"):
        optreg.torch.Optimizer([p], "lookahead")


def test_a_wrappers_precision_options_are_those_inner_gives():
    p = torch.nn.Parameter(torch.zeros(4))
    opt = optreg.torch.Optimizer([p], "lookahead", inner={"name": "adam", "state_dtype": "bfloat16"}, k=2)
    assert opt.param_groups[0]["state_dtype"] == "bfloat16"
    assert opt.native.param_groups[0]["state_dtype"] == "bfloat16"
    q = torch.nn.Parameter(torch.zeros(3))
    opt.add_param_group({"params": [q]})  # a later group takes the inner optimizer's too
    assert opt.native.param_groups[1]["state_dtype"] == "bfloat16"
    p.grad, q.grad = torch.ones(4), torch.ones(3)
    opt.step()
    # optreg.decode_state() refuses bfloat16 state, which numpy cannot hold: the state is bfloat16.
    with pytest.raises(optreg.UsageError, match="state 'exp_avg' of parameter id 0 is bfloat16"):
        optreg.decode_state(opt.native.state_dict()["optreg_state"])
