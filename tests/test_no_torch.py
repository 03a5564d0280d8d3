"""Without torch: the NumPy API works, the torch API says how to install it, the demo says what it skipped."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Run before anything imports lowbit: `import torch` (and safetensors' torch half) then fails as if
# torch were not installed.
HIDE_TORCH = "import sys\nsys.modules['torch'] = None\n"


def _run(code: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HIDE_TORCH + textwrap.dedent(code), *args], capture_output=True,
                          text=True, cwd=cwd)


def test_torch_api_raises_an_import_error_with_the_install_command():
    res = _run("""
        import numpy as np, lowbit
        assert lowbit.quantize(np.float32([0.5]), 0.25).int_repr().tolist() == [2]   # NumPy API works
        names = ["quantize_model", "prepare_qat", "convert", "summary", "save", "load", "compare", "QuantReport",
                 "sensitivity", "auto_mixed_precision", "nn", "models"]
        for name in names:
            try:
                getattr(lowbit, name)
            except ImportError as e:
                assert "pip install 'lowbit[torch]'" in str(e), (name, str(e))
                assert f"lowbit.{name} needs PyTorch" in str(e), str(e)
            else:
                raise AssertionError(f"lowbit.{name} did not raise")
        try:
            from lowbit import quantize_model  # noqa: F401
        except ImportError as e:
            assert "lowbit[torch]" in str(e)
        else:
            raise AssertionError("from lowbit import quantize_model did not raise")
        print("ok")
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_unknown_attribute_is_still_an_attribute_error():
    res = _run("""
        import lowbit
        try:
            lowbit.no_such_name
        except AttributeError:
            print("ok")
    """)
    assert res.stdout.strip() == "ok", res.stderr


def test_demo_says_what_it_skipped_and_claims_no_files(tmp_path):
    pytest.importorskip("safetensors")
    out = tmp_path / "out"
    res = _run("""
        import sys
        from lowbit.__main__ import main
        sys.exit(main(["demo", "--sections", "weights,cnn,minilm", "--out", sys.argv[1], "--no-progress"]))
    """, str(out))
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert "int8 per-channel" in text and "lowbit quantize" in text  # the NumPy section ran
    assert "torch is not installed: no torch.quantize_per_tensor timing" in text
    assert text.count("skipped: torch is not installed (pip install 'lowbit[torch]')") == 2, text
    assert "skipped sections: cnn (torch is not installed" in text and "minilm (torch" in text, text
    assert "wrote no files" in text, text
    assert "plots and tables in" not in text
    assert not out.exists() or not any(out.iterdir())
