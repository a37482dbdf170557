"""Optimisers against hand-computed steps (the expected numbers written out by the formulas),
in-place updates, weight decay selection, state round trips, and PyTorch when it is installed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnlang.train.optim import SGD, Adam, AdamW, make_optimizer

GRADS = [0.5, -0.2, 0.3]  # the gradient of the single weight at steps 1, 2, 3


def run(optimizer_class, steps=GRADS, p0=1.0, **options) -> list[float]:
    """The weight after each step of a one-element parameter, and a bias that sees the same gradients."""
    params = {"w": np.array([p0]), "b": np.array([p0])}
    grads = {"w": np.zeros(1), "b": np.zeros(1)}
    optimizer = optimizer_class(params, grads, ["w", "b"], **options)
    seen = []
    for g in steps:
        grads["w"][0] = grads["b"][0] = g
        optimizer.step()
        seen.append((params["w"][0], params["b"][0]))
    return seen


def test_plain_sgd():
    # p -= lr * g: 1 - 0.05 = 0.95, + 0.02 = 0.97, - 0.03 = 0.94
    weights = [w for w, _ in run(SGD, lr=0.1)]
    assert weights == pytest.approx([0.95, 0.97, 0.94], rel=1e-15)


def test_sgd_momentum_and_weight_decay_by_hand():
    # d = g + 0.01 p; buf = 0.9 buf + d (buf = d at first); p -= 0.1 buf
    # 1: d = 0.51,        buf = 0.51,                          p = 1 - 0.051         = 0.949
    # 2: d = -0.19051,    buf = 0.459 - 0.19051 = 0.26849,     p = 0.949 - 0.026849  = 0.922151
    # 3: d = 0.30922151,  buf = 0.241641 + 0.30922151,         p = 0.922151 - 0.055086251
    weights = [w for w, _ in run(SGD, lr=0.1, momentum=0.9, weight_decay=0.01)]
    assert weights == pytest.approx([0.949, 0.922151, 0.867064749], rel=1e-14)


def test_sgd_nesterov_by_hand():
    # as above, but p -= 0.1 (d + 0.9 buf)
    # 1: 0.51 + 0.459 = 0.969                                        p = 0.9031
    # 2: d = -0.190969, buf = 0.268031, step -0.190969 + 0.2412279   p = 0.89807411
    # 3: d = 0.3089807411, buf = 0.5502086411, step 0.80416851809    p = 0.817657258191
    weights = [w for w, _ in run(SGD, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)]
    assert weights == pytest.approx([0.9031, 0.89807411, 0.817657258191], rel=1e-14)


def test_no_decay_parameters_are_updated_without_weight_decay():
    decayed = run(SGD, lr=0.1, momentum=0.9, weight_decay=0.01, no_decay={"b"})
    plain = run(SGD, lr=0.1, momentum=0.9)
    assert [b for _, b in decayed] == [w for w, _ in plain]
    assert [w for w, _ in decayed] == pytest.approx([0.949, 0.922151, 0.867064749], rel=1e-14)


def adam_by_hand(grads, lr, beta1, beta2, eps, wd=0.0, decoupled=False, p=1.0) -> list[float]:
    """torch's Adam/AdamW formulas, one scalar at a time."""
    m = v = 0.0
    out = []
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p *= 1 - lr * wd
        else:
            g = g + wd * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        step_size = lr / (1 - beta1 ** t)
        denom = math.sqrt(v) / math.sqrt(1 - beta2 ** t) + eps
        p -= step_size * m / denom
        out.append(p)
    return out


def test_adam_first_step_is_bias_corrected_to_lr_times_sign():
    # m = 0.05, v = 0.00025; corrected: m/(1-0.9) = 0.5, v/(1-0.999) = 0.25, so the step is
    # lr * 0.5 / (0.5 + eps), about lr (the raw moments would give lr * 0.05 / sqrt(0.00025) = 3.16 lr).
    (w, _), = run(Adam, steps=[0.5], lr=0.1, eps=1e-8)
    assert w == pytest.approx(1 - 0.1 * 0.5 / (0.5 + 1e-8), rel=1e-15)
    assert w == pytest.approx(0.9, rel=1e-7)


def test_adam_three_steps_with_l2():
    weights = [w for w, _ in run(Adam, lr=0.1, betas=(0.9, 0.99), eps=1e-3, weight_decay=0.1)]
    assert weights == pytest.approx(adam_by_hand(GRADS, 0.1, 0.9, 0.99, 1e-3, wd=0.1), rel=1e-14)


def test_adamw_three_steps_decoupled():
    weights = [w for w, _ in run(AdamW, lr=0.1, betas=(0.9, 0.99), eps=1e-3, weight_decay=0.1)]
    assert weights == pytest.approx(adam_by_hand(GRADS, 0.1, 0.9, 0.99, 1e-3, wd=0.1, decoupled=True), rel=1e-14)


def test_adamw_differs_from_adam_with_l2():
    # One step, g = 0.5, p = 1, wd = 0.1, lr = 0.1, eps ~ 0: Adam normalises g + wd p = 0.6 away,
    # giving 1 - 0.1 = 0.9; AdamW shrinks p to 0.99 first, giving 0.89.
    (adam, _), = run(Adam, steps=[0.5], lr=0.1, eps=1e-12, weight_decay=0.1)
    (adamw, _), = run(AdamW, steps=[0.5], lr=0.1, eps=1e-12, weight_decay=0.1)
    assert adam == pytest.approx(0.9, rel=1e-10)
    assert adamw == pytest.approx(0.89, rel=1e-10)


def test_updates_in_place_only_the_named_parameters():
    params = {"w": np.ones((2, 3), dtype=np.float32), "frozen": np.ones(2, dtype=np.float32)}
    grads = {"w": np.full((2, 3), 0.5, dtype=np.float32), "frozen": np.ones(2, dtype=np.float32)}
    w, view = params["w"], params["w"][1]
    optimizer = Adam(params, grads, ["w"], lr=0.1)
    optimizer.step()
    assert params["w"] is w and w.dtype == np.float32
    np.testing.assert_allclose(view, 0.9, rtol=1e-6)
    np.testing.assert_array_equal(params["frozen"], [1.0, 1.0])
    np.testing.assert_array_equal(grads["w"], 0.5)  # gradients are read, never written
    assert all(a.dtype == np.float32 for a in optimizer.state_arrays().values())


def test_lr_is_settable_between_steps():
    params, grads = {"w": np.array([1.0])}, {"w": np.array([1.0])}
    optimizer = SGD(params, grads, ["w"], lr=0.1)
    optimizer.step()
    optimizer.lr = 0.01
    optimizer.step()
    assert params["w"][0] == pytest.approx(1 - 0.1 - 0.01, rel=1e-15)


@pytest.mark.parametrize("kind, options", [
    ("sgd", dict(momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("adam", dict(momentum=0.0, nesterov=False, weight_decay=1e-2)),
    ("adamw", dict(momentum=0.0, nesterov=False, weight_decay=1e-2)),
])
def test_state_round_trip_gives_the_identical_next_step(kind, options):
    rng = np.random.default_rng(0)
    shapes = {"conv.weight": (2, 3, 3, 3), "conv.bias": (2,)}
    params = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
    grads = {name: np.zeros(shape) for name, shape in shapes.items()}
    first = make_optimizer(kind, params, grads, list(shapes), lr=0.05, no_decay={"conv.bias"}, **options)
    for _ in range(2):
        for g in grads.values():
            g[...] = rng.standard_normal(g.shape)
        first.step()
    arrays, scalars = first.state_arrays(), first.state_scalars()

    copies = {name: p.copy() for name, p in params.items()}
    second = make_optimizer(kind, copies, grads, list(shapes), lr=1.0, no_decay={"conv.bias"}, **options)
    second.load_state(arrays, scalars)
    for g in grads.values():
        g[...] = rng.standard_normal(g.shape)
    first.step()
    second.step()
    for name in shapes:
        np.testing.assert_array_equal(copies[name], params[name])
    assert second.state_scalars() == first.state_scalars()


def test_state_names_slots_by_parameter():
    params, grads = {"fc.weight": np.zeros(2)}, {"fc.weight": np.zeros(2)}
    assert set(Adam(params, grads, ["fc.weight"]).state_arrays()) == {"exp_avg/fc.weight", "exp_avg_sq/fc.weight"}
    assert set(SGD(params, grads, ["fc.weight"], lr=1, momentum=0.9).state_arrays()) == {"momentum/fc.weight"}
    assert SGD(params, grads, ["fc.weight"], lr=1).state_arrays() == {}


@pytest.mark.parametrize("arrays, scalars, message", [
    ({}, {"kind": "sgd", "steps": 1, "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0},
     "missing slot momentum/w"),
    ({"momentum/w": np.zeros(3)}, {"kind": "sgd", "steps": 1, "lr": 0.1, "momentum": 0.9, "nesterov": False,
                                   "weight_decay": 0.0}, r"momentum/w has shape \(3,\), expected \(2,\)"),
    ({"momentum/w": np.zeros(2), "momentum/x": np.zeros(2)},
     {"kind": "sgd", "steps": 1, "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0},
     "unexpected slot momentum/x"),
    ({"momentum/w": np.zeros(2)}, {"kind": "adam"}, "for 'adam'"),
    ({"momentum/w": np.zeros(2)}, {"kind": "sgd", "lr": 0.1}, "lacks steps"),
])
def test_load_state_rejects_what_does_not_fit(arrays, scalars, message):
    optimizer = SGD({"w": np.zeros(2)}, {"w": np.zeros(2)}, ["w"], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=message):
        optimizer.load_state(arrays, scalars)


def test_make_optimizer_defaults_and_errors():
    params, grads = {"w": np.zeros(2)}, {"w": np.zeros(2)}
    common = dict(lr=0.1, momentum=0.9, nesterov=False, no_decay=())
    assert make_optimizer("adamw", params, grads, ["w"], weight_decay=None, **common).weight_decay == 0.01
    assert make_optimizer("adam", params, grads, ["w"], weight_decay=None, **common).weight_decay == 0.0
    sgd = make_optimizer("sgd", params, grads, ["w"], weight_decay=None, **common)
    assert (sgd.kind, sgd.momentum, sgd.weight_decay) == ("sgd", 0.9, 0.0)
    with pytest.raises(ValueError, match="unknown optimiser 'rmsprop'; the optimisers are: sgd, adam, adamw"):
        make_optimizer("rmsprop", params, grads, ["w"], weight_decay=0.0, **common)
    with pytest.raises(ValueError, match="Nesterov momentum applies to sgd only"):
        make_optimizer("adam", params, grads, ["w"], weight_decay=0.0, **{**common, "nesterov": True})


@pytest.mark.parametrize("build, message", [
    (lambda: SGD({"w": np.zeros(2)}, {}, ["w"], lr=0.1), "no gradient for parameter 'w'"),
    (lambda: SGD({}, {}, ["w"], lr=0.1), "no parameter named 'w'"),
    (lambda: SGD({"w": np.zeros(2)}, {"w": np.zeros(3)}, ["w"], lr=0.1), "shape"),
    (lambda: SGD({"w": np.zeros(2)}, {"w": np.zeros(2)}, ["w", "w"], lr=0.1), "given twice: w"),
    (lambda: SGD({"w": np.zeros(2)}, {"w": np.zeros(2)}, ["w"], lr=0.1, nesterov=True), "needs momentum"),
    (lambda: SGD({"w": np.zeros(2)}, {"w": np.zeros(2)}, ["w"], lr=-1.0), "lr must be >= 0"),
    (lambda: Adam({"w": np.zeros(2)}, {"w": np.zeros(2)}, ["w"], betas=(0.9, 1.0)), "betas"),
    (lambda: SGD({"w": np.zeros(2, int)}, {"w": np.zeros(2, int)}, ["w"], lr=0.1), "floating-point"),
])
def test_bad_construction_is_rejected(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("kind, options", [
    ("sgd", dict(momentum=0.9, nesterov=False)),
    ("sgd", dict(momentum=0.9, nesterov=True)),
    ("adam", dict(momentum=0.0, nesterov=False)),
    ("adamw", dict(momentum=0.0, nesterov=False)),
])
def test_five_steps_agree_with_torch(kind, options):
    torch = pytest.importorskip("torch", reason="torch is only installed on development machines")
    rng = np.random.default_rng(1)
    shapes = {"conv.weight": (3, 2, 3, 3), "conv.bias": (3,), "bn.weight": (3,)}
    params = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
    grads = {name: np.zeros(shape) for name, shape in shapes.items()}
    mine = make_optimizer(kind, params, grads, list(shapes), lr=0.03, weight_decay=0.05,
                          no_decay={"conv.bias", "bn.weight"}, **options)
    tensors = {name: torch.tensor(p.copy(), requires_grad=True) for name, p in params.items()}
    groups = [{"params": [tensors["conv.weight"]]},
              {"params": [tensors["conv.bias"], tensors["bn.weight"]], "weight_decay": 0.0}]
    theirs = {"sgd": lambda: torch.optim.SGD(groups, lr=0.03, weight_decay=0.05, **options),
              "adam": lambda: torch.optim.Adam(groups, lr=0.03, weight_decay=0.05),
              "adamw": lambda: torch.optim.AdamW(groups, lr=0.03, weight_decay=0.05)}[kind]()
    for _ in range(5):
        for name, g in grads.items():
            g[...] = rng.standard_normal(g.shape)
            tensors[name].grad = torch.tensor(g.copy())
        mine.step()
        theirs.step()
    for name in shapes:
        np.testing.assert_allclose(params[name], tensors[name].detach().numpy(), rtol=1e-13, atol=1e-15)
