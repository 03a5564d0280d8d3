"""Tests for lowbit's timing helper (lowbit.Timer) with a fake clock: interleaving order, median and
spread, ratio range, batching of calls under the resolution, the warning threshold, and its use by
compare. No test here depends on real timings."""

from __future__ import annotations

import math
import warnings

import lowbit
import pytest
from lowbit import Timer, Timing, TimingWarning, format_bytes


class FakeClock:
    """Time advances only when a fake function runs: ``cost[name]`` seconds per call, or the next
    value of ``costs[name]`` (a list consumed per call). Records the call order."""

    def __init__(self, cost=None, costs=None):
        self.now, self.order = 0.0, []
        self.cost, self.costs = dict(cost or {}), {k: list(v) for k, v in (costs or {}).items()}

    def __call__(self):
        return self.now

    def fn(self, name):
        def call():
            self.order.append(name)
            self.now += self.costs[name].pop(0) if self.costs.get(name) else self.cost[name]
        return call


def test_interleaved_order_and_warmup():
    clock = FakeClock(cost={"a": 2e-3, "b": 3e-3})
    timer = Timer(repeats=4, clock=clock)
    a, b = timer.time([clock.fn("a"), clock.fn("b")])
    # warm-up a, b; one calibration call each (>= 1 ms: loops = 1); then A B A B ...
    assert clock.order == ["a", "b", "a", "b"] + ["a", "b"] * 4
    assert a.samples == pytest.approx((2e-3,) * 4) and b.samples == pytest.approx((3e-3,) * 4)
    assert a.loops == b.loops == 1 and not a.batched


def test_median_spread_and_ratio_range():
    t = Timing((1.0, 2.0, 3.0, 4.0, 100.0))
    assert t.median == 3.0 and t.quartiles == (2.0, 4.0)
    assert t.spread == pytest.approx((4.0 - 2.0) / (2 * 3.0))
    s = lowbit.Speedup(Timing((4.0, 4.0, 4.0)), Timing((1.0, 2.0, 3.0)))
    assert s.ratio == 2.0
    assert (s.low, s.high) == (pytest.approx(4.0 / 2.5), pytest.approx(4.0 / 1.5))
    assert s.low <= s.ratio <= s.high and s.noisy
    assert str(Timing((1e-3, 1e-3))) == "1 ms ±0%"
    assert math.isnan(Timing(()).median) and str(Timing(())) == "n/a"


def test_fast_calls_are_batched():
    clock = FakeClock(cost={"fast": 1e-6, "slow": 5e-3})
    a, b = Timer(repeats=3, clock=clock).time([clock.fn("fast"), clock.fn("slow")])
    assert a.loops == 1000 and a.batched  # 1, 2, 5, ..., 1000 calls: the first batch >= 1 ms
    assert a.median == pytest.approx(1e-6) and b.loops == 1
    # interleaved by samples: each fast sample is 1000 back-to-back calls, then one slow call
    timed = clock.order[-3 * 1001:]
    assert timed[:1000] == ["fast"] * 1000 and timed[1000] == "slow"


def test_budget_stops_early_but_after_three_repeats():
    clock = FakeClock(cost={"a": 0.1})
    (a,) = Timer(repeats=50, budget_s=0.05, clock=clock).time([clock.fn("a")])
    assert len(a.samples) == 3
    (a,) = Timer(repeats=5, clock=clock).time([clock.fn("a")])
    assert len(a.samples) == 5


def test_warning_threshold_and_text():
    steady = FakeClock(cost={"a": 2e-3, "b": 1e-3})
    timer = Timer(repeats=5, clock=steady)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = timer.speedup(steady.fn("a"), steady.fn("b"))
    assert s.ratio == pytest.approx(2.0) and not s.noisy and str(s) == "2.00x (2.00-2.00)"

    # warm-up, calibration, then 5 samples each: b jumps between 1 and 3 ms (a loaded machine)
    noisy = FakeClock(cost={"a": 2e-3}, costs={"b": [1e-3, 1e-3, 1e-3, 3e-3, 1e-3, 3e-3, 3e-3]})
    timer = Timer(repeats=5, clock=noisy)
    with pytest.warns(TimingWarning, match=r"noisy timings \(candidate ±\d+%.*OMP_WAIT_POLICY=PASSIVE") as rec:
        s = timer.speedup(noisy.fn("a"), noisy.fn("b"))
    assert len(rec) == 1 and "lowbit.set_num_threads" in str(rec[0].message)
    assert s.noisy and s.candidate.spread > timer.max_spread and "noisy" in str(s)
    # warn=False: the text is still returned, nothing is emitted
    quiet = Timer(repeats=5, max_spread=0.1, warn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "noisy" in quiet.check({"x": Timing((1.0, 2.0, 3.0))}, "x")
        assert quiet.check({"x": Timing((1.0, 1.0, 1.0))}) is None


def test_implausible_ratio_is_flagged():
    clock = FakeClock(cost={"float": 7e-3, "quant": 2e-5})
    with pytest.warns(TimingWarning, match=r"implausible speedups \(layer 350x.*OpenMP"):
        s = Timer(repeats=3, clock=clock).speedup(clock.fn("float"), clock.fn("quant"), "layer")
    assert s.ratio == pytest.approx(350)


def test_timer_validates():
    with pytest.raises(ValueError, match="repeats"):
        Timer(repeats=0)
    with pytest.raises(ValueError, match="min_sample_s"):
        Timer(min_sample_s=-1)


def test_one_size_unit():
    assert format_bytes(1 << 20) == "1.00 MiB"
    assert format_bytes(90_859_520) == "86.65 MiB"
    assert format_bytes(20_520) == "0.0196 MiB"


def test_compare_uses_the_timer_per_layer_and_model():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    q = lowbit.quantize_model(model, progress=False)
    ticks = iter(range(10**9))
    timer = Timer(repeats=3, min_sample_s=5e-4, clock=lambda: next(ticks) / 1024)  # each reading ~1 ms later, exact
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = lowbit.compare(model, q, torch.randn(8, 16), progress=False, timing=timer)
    assert r.timing_note is None and r.timing_float is not None
    assert all(len(layer.timing_float.samples) == 3 and layer.speedup == 1.0 for layer in r.layers)
    assert r.layers[0].speedup_range == (1.0, 1.0) and r.speedup == 1.0
    text = r.summary()
    assert "977 µs ±0% -> 977 µs ±0% (1.00x (1.00-1.00))" in text and "MiB float->quant" in text
    assert "WARNING" not in text
    row = r.layers[0].to_dict()
    assert row["latency_float_spread"] == 0.0 and row["speedup_low"] == 1.0

    jitter = iter([0.0, 1.0, 3.0] * 10**6)
    noisy = Timer(repeats=3, min_sample_s=5e-4, clock=lambda: (next(ticks) + next(jitter)) / 1024)
    with pytest.warns(TimingWarning, match="compare"):
        r = lowbit.compare(model, q, torch.randn(8, 16), progress=False, timing=noisy)
    assert "WARNING compare" in r.summary() and "OMP_WAIT_POLICY=PASSIVE" in r.timing_note
    assert "color:#b35900'>WARNING compare" in r._repr_html_()


def test_docstring_examples():
    import doctest

    import lowbit.evaluation.timing as timing

    res = doctest.testmod(timing, extraglobs={"lowbit": lowbit})
    assert res.attempted >= 3 and res.failed == 0


def test_compare_marks_implausible_layer_speedups():
    """A float layer that stalls (30 ms against 0.1 ms, as torch's OpenMP threads on a busy
    machine) is flagged in the row, the footnote and the warning, not reported as a kernel ratio."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    q = lowbit.quantize_model(model, progress=False)
    clock = FakeClock()

    def costs(seconds):
        def hook(*_):
            clock.now += seconds
        return hook

    hooks = [model[0].register_forward_hook(costs(30e-3)), q[0].register_forward_hook(costs(1e-4)),
             model[2].register_forward_hook(costs(2e-3)), q[2].register_forward_hook(costs(1e-3))]
    try:
        with pytest.warns(TimingWarning, match=r"implausible speedups \(0 300x"):
            r = lowbit.compare(model, q, torch.randn(8, 16), progress=False, timing=Timer(repeats=3, clock=clock))
    finally:
        for h in hooks:
            h.remove()
    assert [layer.timing_suspect for layer in r.layers] == [True, False]
    assert r.layers[0].speedup == pytest.approx(300) and r.layers[1].speedup == pytest.approx(2)
    assert r.layers[0].timing_float.loops == 1 and r.layers[0].timing_quant.loops == 10  # 0.1 ms calls batched
    text = r.summary()
    assert "300.00x (300.00-300.00) !" in text and "! implausible speedup" in text
