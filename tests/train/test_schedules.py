"""Learning-rate schedules: values at chosen epochs, a hand-traced plateau run, the warm-up ramp,
state round trips mid-run, and the command-line forms and their errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cnnlang.train.schedules import Constant, Cosine, MultiStep, Plateau, Step, Warmup, parse_schedule


def lrs(schedule, epochs):
    return [schedule.lr(e) for e in epochs]


def test_constant():
    assert lrs(Constant(0.1), [0, 3.7, 100]) == [0.1, 0.1, 0.1]


def test_step_changes_at_whole_multiples():
    schedule = Step(1.0, step_size=30, gamma=0.1)
    assert lrs(schedule, [0, 29.99, 30, 59.5, 60, 95]) == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.001], rel=1e-15)


def test_multistep_counts_milestones_passed():
    schedule = MultiStep(0.4, [2, 5], gamma=0.5)
    assert lrs(schedule, [0, 1.9, 2, 4.99, 5, 50]) == pytest.approx([0.4, 0.4, 0.2, 0.2, 0.1, 0.1], rel=1e-15)


def test_cosine_is_smooth_and_ends_at_min():
    schedule = Cosine(1.0, total_epochs=10, min_lr=0.1)
    assert schedule.lr(0) == 1.0
    assert schedule.lr(5) == pytest.approx(0.55, rel=1e-15)               # half-way: the mean
    assert schedule.lr(2.5) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2, rel=1e-15)
    assert schedule.lr(10) == pytest.approx(0.1, rel=1e-15)
    assert schedule.lr(12) == pytest.approx(0.1, rel=1e-15)
    values = lrs(schedule, np.linspace(0, 10, 101))
    assert all(a > b for a, b in zip(values, values[1:]))                  # falls every step


def test_plateau_hand_traced():
    # threshold 0.1 (relative): a metric must beat best * 0.9; patience 2, cooldown 1, factor 0.5
    schedule = Plateau(1.0, factor=0.5, patience=2, threshold=0.1, cooldown=1)
    metrics = [10, 9.5, 9.2, 9.1, 9.05, 9.0, 8.0, 8.0, 8.0, 8.0]
    # e0 best 10 | e1..e2 bad 1, 2 | e3 bad 3 > 2: halve, cooldown 1 | e4 cooldown swallows it |
    # e5 9.0 is not < 9.0: bad 1 | e6 best 8 | e7..e8 bad 1, 2 | e9 bad 3: halve again
    expected = [1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25]
    seen = []
    for epoch, metric in enumerate(metrics):
        schedule.observe(metric, epoch)
        seen.append(schedule.lr(epoch + 1.5))
    assert seen == expected


def test_plateau_max_mode_and_floor():
    schedule = Plateau(1.0, factor=0.1, patience=0, mode="max", min_lr=0.05)
    for epoch, accuracy in enumerate([0.5, 0.6, 0.6, 0.6]):
        schedule.observe(accuracy, epoch)
    # e1 improves; e2 and e3 do not, each reducing (patience 0): 0.1, then max(0.01, 0.05)
    assert schedule.lr(4) == 0.05


def test_plateau_agrees_with_torch():
    torch = pytest.importorskip("torch", reason="torch is only installed on development machines")
    rng = np.random.default_rng(0)
    metrics = np.cumsum(rng.normal(-0.02, 0.1, 60)) + 5
    mine = Plateau(0.1, factor=0.3, patience=3, threshold=1e-2, cooldown=2, min_lr=1e-3)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.3, patience=3, threshold=1e-2,
                                                        cooldown=2, min_lr=1e-3)
    for epoch, metric in enumerate(metrics):
        mine.observe(metric, epoch)
        theirs.step(metric)
        assert mine.lr(epoch + 1) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-15), epoch


def test_warmup_ramps_linearly_per_step_then_hands_over():
    schedule = Warmup(Cosine(1.0, total_epochs=10), warmup_epochs=2, start_factor=0.1)
    assert schedule.lr(0) == pytest.approx(0.1, rel=1e-15)
    # half-way through warm-up: factor 0.55 of the cosine's value there
    assert schedule.lr(1) == pytest.approx(0.55 * (1 + math.cos(math.pi / 10)) / 2, rel=1e-15)
    assert schedule.lr(2) == Cosine(1.0, 10).lr(2)
    assert schedule.lr(7) == Cosine(1.0, 10).lr(7)
    ramp = lrs(Warmup(Constant(1.0), 1.0, 0.0), [0, 0.25, 0.5, 1.0])
    assert ramp == pytest.approx([0.0, 0.25, 0.5, 1.0], rel=1e-15)


def test_warmup_passes_observations_to_the_inner_schedule():
    schedule = Warmup(Plateau(1.0, patience=0, factor=0.5), warmup_epochs=1)
    schedule.observe(1.0, 0)
    schedule.observe(2.0, 1)
    assert schedule.lr(3) == 0.5


def test_state_round_trip_mid_run_through_json():
    original = Warmup(Plateau(0.1, factor=0.5, patience=1, cooldown=2), warmup_epochs=1)
    for epoch, metric in enumerate([3.0, 3.0, 3.0, 2.0]):
        original.observe(metric, epoch)
    restored = parse_schedule("plateau", 99.0, 1, warmup=5)  # deliberately different config
    restored.load_state(json.loads(json.dumps(original.state())))
    assert restored.state() == original.state()
    for epoch, metric in enumerate([2.0, 2.0, 2.0, 2.0, 2.0], start=4):
        original.observe(metric, epoch)
        restored.observe(metric, epoch)
        assert restored.lr(epoch + 1) == original.lr(epoch + 1)
    assert original.lr(9) < 0.05  # the run did reduce, so the comparison meant something


@pytest.mark.parametrize("schedule, fresh", [
    (Constant(0.1), Constant(5.0)),
    (Step(0.1, 3), Step(5.0, 1)),
    (MultiStep(0.1, [2, 4]), MultiStep(5.0, [1])),
    (Cosine(0.1, 9, 1e-4), Cosine(5.0, 1)),
])
def test_stateless_schedules_round_trip(schedule, fresh):
    fresh.load_state(json.loads(json.dumps(schedule.state())))
    assert lrs(fresh, [0, 2.5, 4, 8]) == lrs(schedule, [0, 2.5, 4, 8])


def test_load_state_rejects_another_kind():
    with pytest.raises(ValueError, match="for 'cosine', but this schedule is 'step'"):
        Step(0.1, 3).load_state(Cosine(0.1, 9).state())
    with pytest.raises(ValueError, match="lacks gamma"):
        Step(0.1, 3).load_state({"kind": "step", "base_lr": 0.1, "step_size": 3})


@pytest.mark.parametrize("text, expected", [
    ("constant", [0.2, 0.2, 0.2]),
    ("step:4", [0.2, 0.02, 0.002]),
    ("step:4:0.5", [0.2, 0.1, 0.05]),
    ("multistep:3,8", [0.2, 0.02, 0.002]),
    ("multistep:3,8:0.5", [0.2, 0.1, 0.05]),
    ("cosine", [0.2, 0.1, 0.0]),
    ("cosine:0.02", [0.2, 0.11, 0.02]),
])
def test_parse_schedule_forms(text, expected):
    schedule = parse_schedule(text, base_lr=0.2, epochs=10)
    assert lrs(schedule, [0, 5, 10]) == pytest.approx(expected, rel=1e-14, abs=1e-17)


def test_parse_plateau_and_warmup():
    plateau = parse_schedule("plateau:5:0.3", 0.1, 10)
    assert (plateau.kind, plateau.patience, plateau.factor) == ("plateau", 5, 0.3)
    assert parse_schedule("plateau", 0.1, 10).patience == 10
    warm = parse_schedule("step:4", 0.2, 10, warmup=2)
    assert warm.kind == "warmup" and warm.lr(1) == pytest.approx(0.2 * 0.55, rel=1e-15)
    assert "warm-up over 2 epochs" in warm.describe() and "every 4 epochs" in warm.describe()


@pytest.mark.parametrize("text, reason", [
    ("linear", "unknown kind 'linear'"),
    ("step", "wrong number of ':' fields for step"),
    ("step:ten", "step size 'ten' is not a number"),
    ("step:0", "step size must be > 0"),
    ("multistep:30,20", "strictly increasing"),
    ("cosine:1:2", "wrong number"),
    ("plateau:2.5", "whole number"),
    ("plateau:3:1.5", r"factor must be in \(0, 1\)"),
])
def test_parse_errors_show_the_accepted_forms(text, reason):
    with pytest.raises(ValueError, match=reason) as error:
        parse_schedule(text, 0.1, 10)
    assert "the forms are: constant, step:SIZE[:GAMMA], multistep:" in str(error.value)
    assert "\n" not in str(error.value)


def test_descriptions_count_epochs_in_the_right_number():
    assert parse_schedule("cosine", 0.1, 1).describe().endswith("over 1 epoch")
    assert parse_schedule("cosine", 0.1, 12).describe().endswith("over 12 epochs")
    assert "every 1 epoch" in parse_schedule("step:1:0.5", 0.1, 4).describe()
