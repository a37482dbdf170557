"""cnnlang/compare/timing.py: how many calls a median is taken over."""

from __future__ import annotations

import time

from cnnlang.compare.timing import median_seconds


def counting_call(sleep_s: float = 0.0):
    calls = []

    def call():
        calls.append(None)
        time.sleep(sleep_s)

    return call, calls


def test_repeat_calls_after_the_warmup_when_no_floor_is_set():
    call, calls = counting_call()
    median_seconds(call, repeat=3, warmup=2)
    assert len(calls) == 5


def test_short_calls_are_repeated_until_the_timed_ones_add_up_to_the_floor():
    call, calls = counting_call(0.002)
    seconds = median_seconds(call, repeat=3, warmup=1, at_least_s=0.05)
    assert len(calls) - 1 > 3  # three calls of 2-3 ms fall short of 50 ms
    assert 0.002 <= seconds < 0.05


def test_a_call_longer_than_the_floor_runs_repeat_times():
    call, calls = counting_call(0.03)
    median_seconds(call, repeat=2, at_least_s=0.01)
    assert len(calls) == 2


def test_alternating_calls_take_turns_and_each_gets_its_own_median():
    from cnnlang.compare.timing import alternating_medians

    order = []

    def sleeper(name, seconds):
        def call():
            order.append(name)
            time.sleep(seconds)

        return call

    medians = alternating_medians([sleeper("slow", 0.004), sleeper("fast", 0.001)], repeat=4)
    assert order == ["slow", "fast", "fast", "slow", "slow", "fast", "fast", "slow"]
    assert 0.004 <= medians[0] and 0.001 <= medians[1] < medians[0]
