"""lowbit.quantize_checkpoint (issue 17): sharded safetensors in, a lowbit file out, one layer at a
time; equal to quantize_model + save; loads into a meta skeleton; bounded peak memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

import lowbit  # noqa: E402


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc1 = torch.nn.Linear(8 * 4 * 4, 64)
        self.ln = torch.nn.LayerNorm(64)
        self.fc2 = torch.nn.Linear(64, 64, bias=False)
        self.head = torch.nn.Linear(64, 10)
        self.register_buffer("offset", torch.arange(10, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).flatten(1)
        h = self.ln(self.fc1(h))
        return self.head(torch.relu(self.fc2(h))) + self.offset


def _write_shards(state: dict, folder: Path, n: int) -> None:
    """A transformers-style sharded checkpoint: n files and model.safetensors.index.json."""
    keys = list(state)
    weight_map = {}
    for i in range(n):
        name = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        part = {k: state[k].contiguous() for k in keys[i::n]}
        safetensors_torch.save_file(part, str(folder / name))
        weight_map.update({k: name for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def _meta_net() -> Net:
    with torch.device("meta"):
        return Net()


@pytest.mark.parametrize("config", [
    lowbit.QuantConfig(weight="int4", group_size=32, exclude=["head"], per_layer={"fc2": {"weight": "int8"}}),
    lowbit.QuantConfig(weight="nf4", activation=None, algorithm="mse"),
], ids=["int4-mixed", "nf4-mse"])
def test_equals_quantize_model_and_loads_into_a_meta_skeleton(tmp_path, config):
    torch.manual_seed(0)
    net = Net().eval()
    _write_shards(net.state_dict(), tmp_path, 3)
    dst = tmp_path / "q.lowbit"
    meta = lowbit.quantize_checkpoint(tmp_path, dst, config, model=_meta_net())
    assert set(meta["layers"]) <= {"conv", "fc1", "fc2", "head"} and "fc1" in meta["layers"]

    from_file = lowbit.load(dst, _meta_net())
    in_memory = lowbit.quantize_model(net, config, progress=False)
    a, b = from_file.state_dict(), in_memory.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert not a[k].is_meta, k
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert [type(m).__name__ for m in from_file.modules()] == [type(m).__name__ for m in in_memory.modules()]
    x = torch.randn(5, 3, 4, 4)
    assert torch.equal(from_file(x), in_memory(x))
    # the same file as lowbit.save of the in-memory model, as far as load can tell
    saved = tmp_path / "saved.lowbit"
    lowbit.save(in_memory, saved)
    again = lowbit.load(saved, Net())
    assert lowbit.summary(again).rows == lowbit.summary(from_file).rows


def test_refuses_what_needs_data_or_spans_layers(tmp_path):
    torch.manual_seed(0)
    net = Net()
    safetensors_torch.save_file(net.state_dict(), str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="static activations"):
        lowbit.quantize_checkpoint(tmp_path, tmp_path / "q", {"activation": "static"}, model=_meta_net())
    with pytest.raises(ValueError, match="GPTQ"):
        lowbit.quantize_checkpoint(tmp_path, tmp_path / "q", {"weight": "int4", "algorithm": "gptq"},
                                   model=_meta_net())
    with pytest.raises(ValueError, match="rotation"):
        lowbit.quantize_checkpoint(tmp_path, tmp_path / "q", {"rotation": "hadamard"}, model=_meta_net())
    with pytest.raises(TypeError, match="model"):
        lowbit.quantize_checkpoint(tmp_path, tmp_path / "q", model="Net")
    tied = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    tied[1].weight = tied[0].weight
    with pytest.raises(ValueError, match="share weights"):
        lowbit.quantize_checkpoint(tmp_path, tmp_path / "q", model=tied)
    other = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="missing tensors"):
        lowbit.quantize_checkpoint(tmp_path, tmp_path / "q", model=other)
    with pytest.raises(FileNotFoundError, match="src"):
        lowbit.quantize_checkpoint(tmp_path / "nothing", tmp_path / "q", model=_meta_net())
    assert not (tmp_path / "q").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".lowbit-")]  # no temporary file left


_MEASURE = textwrap.dedent("""
    import json, sys
    import torch, lowbit
    src, dst, n, k = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with torch.device("meta"):
        skeleton = torch.nn.Sequential(*[torch.nn.Linear(k, k, bias=False) for _ in range(n)])
    import lowbit.interop.checkpoint, lowbit.interop.serialization  # imports before the baseline
    def peak():  # this process's resident high-water mark (ru_maxrss would include the parent's, kept across exec)
        with open("/proc/self/status") as f:
            return next(int(x.split()[1]) * 1024 for x in f if x.startswith("VmHWM:"))
    before = peak()
    lowbit.quantize_checkpoint(src, dst, {"weight": "int4", "group_size": 64}, model=skeleton)
    quantized = peak()
    model = lowbit.load(dst, skeleton)
    y = model(torch.ones(1, k))
    print(json.dumps({"before": before, "quantize": quantized, "load": peak(), "finite": bool(torch.isfinite(y).all())}))
""")


def test_peak_memory_is_bounded_by_the_largest_tensor(tmp_path):
    """A 256 MiB checkpoint (16 float32 tensors of 16 MiB in 2 shards) is quantized (int4) with at
    most 160 MiB more peak resident memory than the process had before the call (10x the largest
    tensor; measured here: about 100 MiB, also at 512 MiB), and the model loads into a meta skeleton
    with at most 3x the file (36 MiB) + 100 MiB more."""
    n, k = 16, 2048
    g = torch.Generator().manual_seed(0)
    for s in range(2):  # one shard in memory at a time
        part = {f"{i}.weight": torch.randn(k, k, generator=g) / 45 for i in range(s * 8, s * 8 + 8)}
        safetensors_torch.save_file(part, str(tmp_path / f"model-{s}.safetensors"))
        del part
    dst = tmp_path / "q.lowbit"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(Path(lowbit.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")) if p))
    r = subprocess.run([sys.executable, "-c", _MEASURE, str(tmp_path), str(dst), str(n), str(k)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    mib = 1 << 20
    assert got["finite"]
    assert got["quantize"] - got["before"] < 160 * mib, {k: v / mib for k, v in got.items() if k != "finite"}
    assert got["load"] - got["before"] < 3 * os.path.getsize(dst) + 100 * mib, got
