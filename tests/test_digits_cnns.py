"""The MobileNetV2-style and ResNet-style digits CNNs (depthwise convolutions, BatchNorm, ReLU6,
residuals) quantize whole: static int8 leaves no convolution or Linear float and keeps accuracy."""

from __future__ import annotations

import lowbit
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
from lowbit.demo import models as M  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return M.load_digits_data()


def _train(model, data):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small layers: one thread trains fastest on a shared machine
    try:
        return M.train_digits_model(model, data, epochs=5)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("make", [lambda: M.DigitsMobileNet(width=8, expand=3), lambda: M.DigitsResNet(width=8)],
                         ids=["mobilenet", "resnet"])
def test_static_int8_quantizes_every_layer_and_keeps_accuracy(make, data):
    torch.manual_seed(0)
    model = _train(make(), data)
    acc_f = M.accuracy(model, data.x_test, data.y_test)
    assert acc_f > 80
    calib = [data.x_train[i : i + 256] for i in range(0, 1024, 256)]
    q = lowbit.quantize_model(model, lowbit.QuantConfig(activation="static"), calib_data=calib, progress=False)
    acc_q = M.accuracy(q, data.x_test, data.y_test)
    assert acc_q >= acc_f - 1.0, (acc_f, acc_q)
    rows = lowbit.summary(q).rows
    assert not [r for r in rows if r["action"].startswith("float")]  # 0 float compute layers
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.Conv2d, torch.nn.Linear)) for m in q.modules())
    folded = [r for r in rows if "folded BatchNorm" in r["action"]]
    bns = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert len(folded) == bns
    if isinstance(model, M.DigitsMobileNet):
        dw = [m for m in q.modules() if isinstance(m, lowbit.nn.QuantConv2d) and m.depthwise]
        assert len(dw) == 4 and all(m._direct_depthwise() for m in dw)
    assert lowbit.metrics.model_nbytes(q) < lowbit.metrics.model_nbytes(model)
