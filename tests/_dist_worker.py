"""One rank of the torch.distributed tests (tests/test_distributed.py): launched by torchrun or by
the test's own launcher (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the environment).

    python tests/_dist_worker.py SCENARIO

Prints ``PASS <check>`` for each check that holds and exits 0; any failed check raises (exit 1).
Scenarios: "main" (calibration, GPTQ, sensitivity, auto_mixed_precision, mismatched configs, a
failing rank), "die" (rank 1 dies; rank 0 must get DistributedError), "hang" (rank 1 never makes
the call; rank 0 must get DistributedError at LOWBIT_DIST_TIMEOUT).
"""

from __future__ import annotations

import datetime
import os
import sys
import time

import lowbit
import torch
import torch.distributed as dist
from lowbit.interop import distributed as ld
from lowbit.interop.convert import _collect_hessians


def dyadic_model() -> torch.nn.Module:
    """A small MLP with dyadic weights (k/16): its activations on dyadic inputs are exact in
    float32, so Hessian sums are exact in float64 whatever the order of additions."""
    g = torch.Generator().manual_seed(7)
    m = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randint(-8, 9, p.shape, generator=g).float() / 16)
    return m.eval()


def dataset(n: int = 6) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    return [torch.randint(-24, 25, (8, 16), generator=g).float() / 8 * (1 + i) / 4 for i in range(n)]


def expect_raise(kind: type, fn, must_contain: str) -> str:
    try:
        fn()
    except kind as e:
        assert must_contain in str(e), f"{kind.__name__} without {must_contain!r}: {e}"
        return str(e)
    raise AssertionError(f"expected {kind.__name__}")


def equal_states(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def main_scenario(rank: int, world: int) -> None:
    model, data = dyadic_model(), dataset()
    shard = data[rank::world]
    for observer in ("minmax", "histogram"):
        cfg = lowbit.QuantConfig(activation=lowbit.StaticActivations(observer=observer))
        dist_q = lowbit.quantize_model(model, cfg, calib_data=shard, progress=False, process_group="world")
        single = lowbit.quantize_model(model, cfg, calib_data=data, progress=False)
        alone = lowbit.quantize_model(model, cfg, calib_data=shard, progress=False)
        assert equal_states(dist_q, single), f"{observer}: merged calibration differs from one process"
        if rank == 0:  # the largest batch is on rank 1: a shard alone gives other parameters
            assert not equal_states(alone, single), f"{observer}: the shards are not informative"
        print(f"PASS calibration {observer}", flush=True)

    # GPTQ statistics: summed over ranks, equal to one pass (exact here), identical on every rank
    targets = {"0": model[0], "2": model[2]}
    h_dist = _collect_hessians(model, targets, shard, False, group=dist.group.WORLD)
    h_one = _collect_hessians(model, targets, data, False)
    for n in targets:
        assert h_dist[n].count == h_one[n].count, (n, h_dist[n].count, h_one[n].count)
        assert (h_dist[n].sum == h_one[n].sum).all(), f"Hessian sum of {n} differs"
    everyone = ld.gather_objects_for_tests(dist.group.WORLD, h_dist["2"].sum.tolist())
    assert all(e == everyone[0] for e in everyone)
    print("PASS gptq hessian", flush=True)
    cfg = lowbit.QuantConfig(weight="int4", group_size=32, algorithm="gptq")
    g_dist = lowbit.quantize_model(model, cfg, calib_data=shard, progress=False, process_group="world")
    g_one = lowbit.quantize_model(model, cfg, calib_data=data, progress=False)
    assert equal_states(g_dist, g_one), "GPTQ model differs from one process"
    print("PASS gptq model", flush=True)

    # sensitivity and auto_mixed_precision: one report, the single-process one
    s_dist = lowbit.sensitivity(model, data, {"weight": "int4"}, progress=False, process_group="world")
    s_one = lowbit.sensitivity(model, data, {"weight": "int4"}, progress=False)
    assert s_dist.rows == s_one.rows and s_dist.base == s_one.base and len(s_one.rows) == 2, (s_dist, s_one)
    print("PASS sensitivity", flush=True)
    kw = dict(candidates=("int4", "int8", None), max_drop=0.05, progress=False, timing=False)
    a_dist = lowbit.auto_mixed_precision(model, data, process_group="world", **kw)
    a_one = lowbit.auto_mixed_precision(model, data, **kw)
    assert a_dist.choice == a_one.choice and a_dist.config == a_one.config
    assert a_dist.sensitivity.rows == a_one.sensitivity.rows
    assert equal_states(a_dist.model, a_one.model)
    print("PASS auto_mixed_precision", flush=True)

    # mismatched configs: every rank raises, naming what differs
    cfg = {"weight": "int8" if rank == 0 else "int4"}
    expect_raise(ld.RankMismatchError, lambda: lowbit.quantize_model(
        model, cfg, progress=False, process_group="world"), "config")
    other = dyadic_model() if rank == 0 else torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(),
                                                                  torch.nn.Linear(32, 8))
    expect_raise(ld.RankMismatchError, lambda: lowbit.quantize_model(
        other, {}, progress=False, process_group="world"), "weights")
    sdata = data if rank == 0 else dataset(5)
    expect_raise(ld.RankMismatchError, lambda: lowbit.sensitivity(
        model, sdata, progress=False, process_group="world"), "reference outputs")
    print("PASS mismatch", flush=True)

    # a rank whose own calibration fails: it raises its error, the others name it
    bad = shard if rank == 0 else [torch.ones(2, 5)]
    call = lambda: lowbit.quantize_model(model, {"activation": "static"}, calib_data=bad, progress=False,  # noqa: E731
                                         process_group="world")
    if rank == 1:
        expect_raise(ValueError, call, "does not fit the model")
    else:
        expect_raise(ld.DistributedError, call, "rank 1 failed: ValueError: calib_data: batch 0")
    # the group is still usable afterwards
    lowbit.quantize_model(model, {"activation": "static"}, calib_data=shard, progress=False, process_group="world")
    def metric(m: torch.nn.Module) -> float:
        if rank == 1:
            raise RuntimeError("evaluation data missing on this rank")
        return 1.0

    call = lambda: lowbit.sensitivity(model, data, metric=metric, progress=False, process_group="world")  # noqa: E731
    if rank == 1:
        expect_raise(RuntimeError, call, "evaluation data missing")
    else:
        expect_raise(ld.DistributedError, call, "rank 1 failed: RuntimeError: evaluation data missing")
    print("PASS failing rank", flush=True)


def failure_scenario(rank: int, scenario: str) -> None:
    model, data = dyadic_model(), dataset()
    if rank == 1:
        if scenario == "die":
            os._exit(7)  # no cleanup, like a killed process
        time.sleep(60)  # "hang": alive but never makes the call (the test kills it)
        os._exit(0)
    t0 = time.monotonic()
    msg = expect_raise(ld.DistributedError, lambda: lowbit.quantize_model(
        model, {"activation": "static"}, calib_data=data, progress=False, process_group="world"), "rank 0 of 2")
    print(f"PASS {scenario} after {time.monotonic() - t0:.1f} s: {msg[:200]}", flush=True)


def main() -> None:
    scenario = sys.argv[1]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    if scenario == "main":
        main_scenario(rank, world)
        dist.barrier()
    else:
        failure_scenario(rank, scenario)
    sys.stdout.flush()
    os._exit(0)  # skip process-group teardown (a dead peer can stall it)


if __name__ == "__main__":
    main()
