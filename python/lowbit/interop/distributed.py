"""lowbit on ``torch.distributed``: calibration, GPTQ statistics and sensitivity sweeps spread
over the ranks of a process group (gloo on CPU, launched by ``torchrun``). Torch layer, used by
:func:`lowbit.quantize_model`, :func:`lowbit.sensitivity` and :func:`lowbit.auto_mixed_precision`
through their ``process_group=`` argument.

Opt-in, never automatic: ``process_group=None`` (the default) is a single-process run even when
``torch.distributed`` is initialized (a script where only rank 0 quantizes keeps working), and
``process_group="world"`` (the default group) or a ``ProcessGroup`` makes the call a collective:
every rank of the group must make it, with the same model and config.

- ``quantize_model(..., calib_data=<this rank's shard>, process_group=...)``: each rank observes
  its shard, then the observers' states are exchanged (JSON) and merged in rank order on every
  rank; GPTQ's ``sum x x^T`` (float64) and row counts (int64) are summed with ``all_reduce``.
  Every rank ends with the same model. Min/max and histogram observers equal a single-process
  pass over all the shards exactly (their merge is exact); Hessian sums up to float64 rounding
  of the order of additions (exact when the products are, e.g. dyadic test data).
- ``sensitivity`` / ``auto_mixed_precision``: the per-(layer, format) evaluations of the sweep
  go round-robin to the ranks (every rank holds the whole model and the same data) and are
  gathered in order: one report, the single-process one. ``auto_mixed_precision``'s greedy
  upgrades (one evaluation each) then run on every rank alike.
- Before any of this the ranks compare fingerprints (config, layer names, weight shapes and
  dtypes, a few weight values; for sweeps the float model's reference outputs):
  :class:`RankMismatchError` on every rank when they differ.
- Failure: every lowbit collective waits at most ``LOWBIT_DIST_TIMEOUT`` seconds (environment,
  default 600: it must cover the slowest rank's shard; the group's own ``init_process_group``
  timeout also applies, whichever is shorter) and a rank that died or never arrives
  gives :class:`DistributedError` on the others (a dead peer is seen at once, a missing one at
  the timeout), never a hang. A rank whose own step raises (a bad batch) re-raises its error and
  tells the others, which raise :class:`DistributedError` naming that rank and error.

The group must run CPU collectives (gloo; with NCCL training, ``torch.distributed.new_group(
backend="gloo")``). Exchanged payloads are JSON, never pickle.

Example (``torchrun --nproc_per_node 2 script.py``)::

    torch.distributed.init_process_group("gloo")
    shard = batches[torch.distributed.get_rank()::torch.distributed.get_world_size()]
    q = lowbit.quantize_model(model, {"activation": "static"}, calib_data=shard, process_group="world")
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import torch

__all__ = ["DistributedError", "RankMismatchError", "resolve_group", "timeout_s"]

_DEFAULT_TIMEOUT_S = 600.0


class DistributedError(RuntimeError):
    """A rank of the process group failed, died or did not reach a lowbit step in time."""


class RankMismatchError(ValueError):
    """The ranks of a process group called lowbit with different models, configs or data."""


def timeout_s() -> float:
    """Seconds a lowbit collective waits for the other ranks: ``LOWBIT_DIST_TIMEOUT`` or 600."""
    raw = os.environ.get("LOWBIT_DIST_TIMEOUT")
    if raw is None:
        return _DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"LOWBIT_DIST_TIMEOUT: expected a positive number of seconds, got {raw!r}")
    return value


def resolve_group(process_group: Any, arg: str = "process_group") -> Any:
    """``None`` -> None (one process); ``"world"`` -> the default group; a ProcessGroup as is.

    Raises:
        TypeError: anything else.
        ValueError: ``torch.distributed`` is not initialized, or the group has no CPU backend.
    """
    if process_group is None:
        return None
    import torch.distributed as dist

    if isinstance(process_group, str):
        if process_group != "world":
            raise ValueError(f"{arg}: expected None, 'world' or a torch.distributed ProcessGroup, got {process_group!r}")
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(f"{arg}='world': torch.distributed is not initialized "
                             "(call torch.distributed.init_process_group('gloo') first, e.g. under torchrun)")
        group = dist.group.WORLD
    elif isinstance(process_group, dist.ProcessGroup):
        group = process_group
    else:
        raise TypeError(f"{arg}: expected None, 'world' or a torch.distributed ProcessGroup, "
                        f"got {type(process_group).__name__}")
    backend = str(dist.get_backend(group)).lower()
    if "gloo" not in backend and "cpu" not in backend:
        raise ValueError(f"{arg}: backend {backend!r} cannot run CPU collectives; use a gloo group "
                         "(torch.distributed.new_group(backend='gloo'))")
    return group


def _rank_world(group: Any) -> tuple[int, int]:
    import torch.distributed as dist

    return dist.get_rank(group), dist.get_world_size(group)


def _wait(work: Any, group: Any, what: str, started: float) -> None:
    """Waits for one asynchronous collective, turning a dead or missing peer into DistributedError."""
    limit = timeout_s()
    try:
        work.wait(timeout=datetime.timedelta(seconds=limit))
    except Exception as e:  # gloo raises RuntimeError / DistBackendError for dead peers and timeouts
        rank, world = _rank_world(group)
        raise DistributedError(
            f"lowbit {what}: rank {rank} of {world} waited {time.monotonic() - started:.1f} s "
            f"(timeout {limit:g} s, LOWBIT_DIST_TIMEOUT) and the exchange failed: another rank died, raised "
            f"outside lowbit, or never made this call (every rank must make the same lowbit calls): {e}") from e


def _exchange(group: Any, payload: Any, what: str) -> list[Any]:
    """All-gathers one JSON-able value per rank (in rank order), with the lowbit timeout."""
    import torch.distributed as dist

    started = time.monotonic()
    _, world = _rank_world(group)
    data = json.dumps(payload, allow_nan=True).encode()
    size = torch.tensor([len(data)], dtype=torch.int64)
    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
    _wait(dist.all_gather(sizes, size, group=group, async_op=True), group, what, started)
    longest = max(int(s) for s in sizes)
    buf = torch.zeros(longest, dtype=torch.uint8)
    buf[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    bufs = [torch.zeros(longest, dtype=torch.uint8) for _ in range(world)]
    _wait(dist.all_gather(bufs, buf, group=group, async_op=True), group, what, started)
    return [json.loads(bytes(b[: int(s)].numpy())) for b, s in zip(bufs, sizes)]


def _gather_ok(group: Any, payload: Any, what: str) -> list[Any]:
    """Exchanges this rank's successful result; raises DistributedError if another rank failed."""
    got = _exchange(group, {"ok": payload}, what)
    failed = [(r, p["error"]) for r, p in enumerate(got) if "error" in p]
    if failed:
        r, err = failed[0]
        raise DistributedError(f"lowbit {what}: rank {r} failed: {err}")
    return [p["ok"] for p in got]


def run(group: Any, what: str, fn: Callable[[], Any]) -> Any:
    """``fn()``; with a group, a local exception is first sent to the other ranks (whose next
    exchange raises DistributedError naming this rank), then re-raised here."""
    if group is None:
        return fn()
    try:
        return fn()
    except Exception as e:
        try:
            _exchange(group, {"error": f"{type(e).__name__}: {e}"}, what)
        except DistributedError:
            pass  # the others are gone too: this rank's own error is the one to report
        raise


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_same(group: Any, what: str, parts: Mapping[str, Any]) -> None:
    """Raises RankMismatchError on every rank unless all ranks have the same ``parts`` (JSON-able;
    compared by digest, each part on its own so the message says which differs)."""
    if group is None:
        return
    mine = {k: _digest(v) for k, v in parts.items()}
    everyone = _gather_ok(group, mine, what)
    for key in mine:
        values = [d.get(key) for d in everyone]
        if len(set(values)) > 1:
            ranks = {}
            for r, v in enumerate(values):
                ranks.setdefault(v, []).append(r)
            split = "; ".join(f"ranks {rs}" for rs in ranks.values())
            raise RankMismatchError(
                f"lowbit {what}: the ranks disagree on the {key} ({split} differ): every rank must call it "
                "with the same model and config (only calibration data may differ per rank)")


def model_parts(config: Any, layers: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """Fingerprint parts of a quantize_model call: the config, the candidate layers (names, types,
    weight shapes and dtypes) and a few weight values of each (catches unseeded initializations)."""
    shapes, values = [], []
    for name, m in layers:
        w = m.weight
        shapes.append([name, type(m).__name__, list(w.shape), str(w.dtype)])
        flat = w.detach().reshape(-1)
        if flat.numel() and flat.device.type != "meta":
            # integer spacing: a float32 linspace rounds numel - 1 up past the end for tensors over 2**24
            k = min(16, flat.numel())
            picks = torch.arange(k, dtype=torch.int64) * (flat.numel() - 1) // max(k - 1, 1)
            values.append([float(v) for v in flat[picks].to("cpu", torch.float64)])
    cfg = config.to_dict() if hasattr(config, "to_dict") else repr(config)
    return {"config": cfg, "layers": shapes, "weights": values}


def merge_observers(group: Any, what: str, observers: dict[str, Any], seen: dict[str, int]) -> dict[str, int]:
    """Merges each layer's observer over the ranks (in rank order, ranks that saw the layer);
    returns the summed call counts. Every rank ends with the same observer states."""
    if group is None:
        return seen
    from ..core.observers import Observer

    mine = {n: [int(seen[n]), observers[n].state_dict() if seen[n] else None] for n in observers}
    everyone = _gather_ok(group, mine, what)
    if any(set(d) != set(mine) for d in everyone):
        raise RankMismatchError(f"lowbit {what}: the ranks calibrate different layers")
    total = {}
    for n in observers:
        parts = [d[n][1] for d in everyone if d[n][0]]
        total[n] = sum(d[n][0] for d in everyone)
        if parts:
            merged = Observer.from_state_dict(parts[0])
            for p in parts[1:]:
                merged.merge(Observer.from_state_dict(p))
            observers[n] = merged
    return total


def merge_hessians(group: Any, what: str, hessians: dict[str, Any], seen: dict[str, int]) -> dict[str, int]:
    """Sums each layer's HessianObserver over the ranks (``sum`` in float64 and ``count`` in
    int64 by all_reduce, so every rank holds the same sums); returns the summed call counts."""
    if group is None:
        return seen
    import torch.distributed as dist

    mine = {n: [int(seen[n]), int(hessians[n].count), hessians[n].k] for n in hessians}
    everyone = _gather_ok(group, mine, what)
    if any(set(d) != set(mine) or any(d[n][2] != mine[n][2] for n in mine) for d in everyone):
        raise RankMismatchError(f"lowbit {what}: the ranks collect statistics of different layers")
    total = {}
    for n, h in hessians.items():
        total[n] = sum(d[n][0] for d in everyone)
        h.count = sum(d[n][1] for d in everyone)
        if not total[n]:
            continue
        t = torch.from_numpy(h.sum)  # shares memory: the sum lands in the observer
        started = time.monotonic()
        _wait(dist.all_reduce(t, group=group, async_op=True), group, what, started)
    return total


def spread(group: Any, what: str, jobs: Sequence[Any], fn: Callable[[Any], Any]) -> list[Any]:
    """``[fn(j) for j in jobs]`` with job ``i`` run on rank ``i % world`` and the JSON-able results
    gathered on every rank, in job order."""
    if group is None:
        return [fn(j) for j in jobs]
    rank, world = _rank_world(group)
    mine = run(group, what, lambda: [fn(j) for j in jobs[rank::world]])
    everyone = _gather_ok(group, mine, what)
    out: list[Any] = [None] * len(jobs)
    for r, results in enumerate(everyone):
        out[r::world] = results
    return out


def tensor_digest(tensors: Sequence[torch.Tensor]) -> str:
    """SHA-256 prefix of tensors' bytes (shapes and dtypes included)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def gather_objects_for_tests(group: Any, payload: Any) -> list[Any]:
    """All-gathers a JSON-able value (tests and benchmarks compare ranks with it)."""
    return _gather_ok(group, payload, "gather")

