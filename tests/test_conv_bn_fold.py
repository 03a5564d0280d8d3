"""Conv-BatchNorm folding in quantize_model (every mode) and prepare_qat (frozen statistics)."""

from __future__ import annotations

import lowbit
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn


class Block(nn.Module):
    """Not a Sequential: folding finds the pairs through torch.fx."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.bn2 = nn.BatchNorm2d(8)
        self.conv3 = nn.Conv2d(8, 4, 1)
        self.bn_shared = nn.BatchNorm2d(4)  # its conv output is also read elsewhere: not folded
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.nn.functional.relu6(self.bn2(self.conv2(x)))
        y = self.conv3(x)
        x = self.bn_shared(y) + y
        return self.fc(x.mean((2, 3)))


def _randomize_bn(model):
    g = torch.Generator().manual_seed(5)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model.eval()


def test_fold_keeps_the_float_model_and_is_reported():
    from lowbit.interop.convert import _fold_batchnorms

    torch.manual_seed(0)
    m = _randomize_bn(Block())
    x = torch.randn(4, 3, 8, 8)
    import copy

    work = copy.deepcopy(m)
    folded = _fold_batchnorms(work, lowbit.QuantConfig())
    assert folded == {"conv1": "bn1", "conv2": "bn2"}
    assert type(work.bn1) is nn.Identity and isinstance(work.bn_shared, nn.BatchNorm2d)
    with torch.no_grad():
        torch.testing.assert_close(work(x), m(x), rtol=1e-5, atol=1e-5)
    q = lowbit.quantize_model(m, lowbit.QuantConfig(activation="static", on_unsupported="float"), calib_data=[x],
                              progress=False)
    rows = {r["layer"]: r for r in lowbit.summary(q).rows}
    assert rows["conv1"]["action"].endswith("folded BatchNorm 'bn1'")
    assert rows["conv2"]["action"].endswith("folded BatchNorm 'bn2'")
    assert "bn1" not in rows and rows["bn_shared"]["action"].startswith("float")


def test_fold_in_sequential_without_fx_and_conv1d():
    class Untraceable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv1d(4, 6, 3, padding=1), nn.BatchNorm1d(6), nn.ReLU())

        def forward(self, x):
            if x.sum() > 1e9:  # data-dependent: torch.fx cannot trace this
                return x
            return self.body(x)

    m = _randomize_bn(Untraceable())
    x = torch.randn(2, 4, 10)
    for act in ("dynamic", "static", None):
        q = lowbit.quantize_model(m, lowbit.QuantConfig(activation=act), calib_data=[x], progress=False)
        assert type(q.body[1]) is nn.Identity and type(q.body[0]).__name__ == "QuantConv1d"
        with torch.no_grad():
            assert float((q(x) - m(x)).abs().max()) < 0.1


def test_qat_freezes_batchnorm_and_convert_agrees_within_one_step():
    torch.manual_seed(1)
    m = _randomize_bn(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                    nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU(),
                                    nn.Flatten(), nn.Linear(8 * 36, 5)))
    qat = lowbit.prepare_qat(m, lowbit.QuantConfig(activation="static"))
    assert type(qat[1]) is nn.Identity and type(qat[4]) is nn.Identity
    opt = torch.optim.SGD(qat.parameters(), lr=0.01)
    qat.train()
    for _ in range(3):
        x = torch.randn(8, 3, 6, 6)
        loss = qat(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    qat.eval()
    q = lowbit.convert(qat)
    x = torch.randn(8, 3, 6, 6)
    with torch.no_grad():
        yq, yf = q(x), qat(x)
    step = float(yf.max() - yf.min()) / 255  # one quantization step of the output
    assert float((yq - yf).abs().max()) <= step
    rows = {r["layer"]: r for r in lowbit.summary(q).rows}
    assert rows["0"]["action"].endswith("folded BatchNorm '1'")
