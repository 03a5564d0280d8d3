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
    assert (tmp_path / "digits_cnn_report.png").stat().st_size > 1000
    assert (tmp_path / "digits_cnn_report.csv").read_text().startswith("name,")
