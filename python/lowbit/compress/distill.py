"""Knowledge distillation: a loss (KL with temperature on logits, MSE / cosine on outputs, MSE on
named intermediate features) and a helper for a plain PyTorch training loop. Torch layer; the
student is a float, pruned or QAT (lowbit.prepare_qat) model, the teacher the float model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..nn._common import main_output
from .pruning import reapply_masks

__all__ = ["DistillationLoss", "Distiller", "distill"]

_KINDS = ("kl", "mse", "cosine")


class DistillationLoss(nn.Module):
    """Loss between the student's and the teacher's outputs, plus the task loss when labels come.

    ``kind="kl"`` (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network"):
    ``T² · KL(softmax(t / T) ‖ softmax(s / T))`` averaged over the batch (rows = all dims but the
    last), weighted ``alpha``, plus ``(1 - alpha) · cross_entropy(s, labels)`` when labels are given
    (without labels: the distillation term alone, unweighted). ``kind="mse"``: mean squared error;
    ``kind="cosine"``: mean of ``1 - cos`` over rows (embeddings).

    Args:
        temperature: T > 0 (KL only).
        alpha: weight of the distillation term in [0, 1] when labels are given.
        kind: "kl", "mse" or "cosine".

    Example:
        >>> import torch
        >>> loss = lowbit.DistillationLoss(temperature=2.0)
        >>> float(loss(torch.zeros(2, 3), torch.zeros(2, 3)))
        0.0
    """

    def __init__(self, temperature: float = 2.0, alpha: float = 0.5, kind: str = "kl") -> None:
        super().__init__()
        if kind not in _KINDS:
            raise ValueError(f"kind: expected one of {', '.join(_KINDS)}, got {kind!r}")
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
            raise ValueError(f"temperature: expected a number > 0, got {temperature!r}")
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha: expected a number in [0, 1], got {alpha!r}")
        self.temperature, self.alpha, self.kind = float(temperature), float(alpha), kind

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        if not isinstance(student, torch.Tensor) or not isinstance(teacher, torch.Tensor):
            raise TypeError("student, teacher: expected tensors")
        if student.shape != teacher.shape:
            raise ValueError(f"teacher: its output {tuple(teacher.shape)} does not match the student's "
                             f"{tuple(student.shape)}")
        teacher = teacher.detach()
        if self.kind == "kl":
            t = self.temperature
            s = F.log_softmax(student.reshape(-1, student.shape[-1]) / t, dim=-1)
            p = F.log_softmax(teacher.reshape(-1, teacher.shape[-1]) / t, dim=-1)
            soft = F.kl_div(s, p, reduction="batchmean", log_target=True) * t * t
        elif self.kind == "mse":
            soft = F.mse_loss(student, teacher)
        else:
            soft = (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()
        if labels is None:
            return soft
        return self.alpha * soft + (1.0 - self.alpha) * F.cross_entropy(student, labels)


def _first_tensor(x: Any) -> torch.Tensor:
    """A module's output as one tensor (see :func:`lowbit.nn._common.main_output`)."""
    return main_output(x, "distill (pass output_fn to choose the tensor)")


def _split(batch: Any) -> tuple[Any, Optional[torch.Tensor]]:
    """(inputs, labels or None) of a batch: a tensor, a dict (model(**batch)) or (inputs, labels)."""
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError("data: empty batch")
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


def _call(model: nn.Module, inputs: Any) -> Any:
    return model(**inputs) if isinstance(inputs, Mapping) else model(inputs)


class Distiller:
    """Runs teacher (no grad, eval mode) and student on a batch and returns the distillation loss,
    for a plain PyTorch loop::

        with lowbit.Distiller(teacher, student, features={"conv2": "conv2"}) as d:
            for x, y in batches:
                opt.zero_grad(); d.loss(x, y).backward(); opt.step()

    Args:
        teacher: the float model (never trained; its ``requires_grad`` flags are left as they are).
        student: the model being trained (float, pruned, or :func:`lowbit.prepare_qat` output).
        loss: a :class:`DistillationLoss` on the outputs (default KL, T = 2, alpha 0.5).
        features: intermediate outputs matched by MSE: a dict student layer name -> teacher layer
            name, or a list of names present in both. Shapes must agree (pruned channels do not).
        feature_weight: weight of the summed feature MSE terms.
        output_fn: maps a model output to the tensor compared (default: the tensor, the first of a
            tuple, or ``logits`` / ``last_hidden_state``); e.g. mean-pooled sentence embeddings.

    Raises:
        ValueError: a feature name that is not a layer of its model; on the first batch, teacher and
            student outputs or features whose shapes differ (before any gradient is taken).
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, *, loss: Optional[DistillationLoss] = None,
                 features: Union[Mapping[str, str], Sequence[str], None] = None, feature_weight: float = 1.0,
                 output_fn: Optional[Callable[[Any, Any], torch.Tensor]] = None) -> None:
        for m, what in ((teacher, "teacher"), (student, "student")):
            if not isinstance(m, nn.Module):
                raise TypeError(f"{what}: expected a torch.nn.Module, got {type(m).__name__}")
        if loss is not None and not isinstance(loss, DistillationLoss):
            raise TypeError(f"loss: expected a lowbit.DistillationLoss, got {type(loss).__name__}")
        self.teacher, self.student = teacher, student
        self.criterion = loss or DistillationLoss()
        self.feature_weight = float(feature_weight)
        self.output_fn = output_fn
        if features is None:
            pairs: dict[str, str] = {}
        elif isinstance(features, Mapping):
            pairs = dict(features)
        elif isinstance(features, str):
            raise TypeError("features: expected a list of layer names or a dict, got a string")
        else:
            pairs = {n: n for n in features}
        smods, tmods = dict(student.named_modules()), dict(teacher.named_modules())
        for s, t in pairs.items():
            if s not in smods:
                raise ValueError(f"features: the student has no layer {s!r}")
            if t not in tmods:
                raise ValueError(f"features: the teacher has no layer {t!r}")
        self.features = pairs
        self._acts: dict[tuple[str, str], torch.Tensor] = {}
        self._handles = []
        for s, t in pairs.items():
            self._handles.append(smods[s].register_forward_hook(self._hook(("s", s))))
            self._handles.append(tmods[t].register_forward_hook(self._hook(("t", t))))
        self._checked = False

    def _hook(self, key: tuple[str, str]) -> Callable:
        def fn(mod: nn.Module, args: tuple, out: Any) -> None:
            self._acts[key] = _first_tensor(out)

        return fn

    def _output(self, out: Any, inputs: Any) -> torch.Tensor:
        return self.output_fn(out, inputs) if self.output_fn is not None else _first_tensor(out)

    def loss(self, inputs: Any, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The distillation loss of one batch (``inputs`` a tensor or a dict of model kwargs)."""
        self._acts.clear()
        was = self.teacher.training
        self.teacher.eval()
        try:
            with torch.no_grad():
                t_out = self._output(_call(self.teacher, inputs), inputs)
        finally:
            self.teacher.train(was)
        s_out = self._output(_call(self.student, inputs), inputs)
        if not self._checked:
            if s_out.shape != t_out.shape:
                raise ValueError(f"teacher: its output {tuple(t_out.shape)} does not match the student's "
                                 f"{tuple(s_out.shape)}")
            for s, t in self.features.items():
                a, b = self._acts.get(("s", s)), self._acts.get(("t", t))
                if a is None or b is None:
                    raise ValueError(f"features: layer {s if a is None else t!r} did not run in forward")
                if a.shape != b.shape:
                    raise ValueError(f"features: student '{s}' gives {tuple(a.shape)}, teacher '{t}' gives "
                                     f"{tuple(b.shape)}")
            self._checked = True
        total = self.criterion(s_out, t_out, labels)
        for s, t in self.features.items():
            total = total + self.feature_weight * F.mse_loss(self._acts[("s", s)], self._acts[("t", t)].detach())
        self._acts.clear()
        return total

    __call__ = loss

    def close(self) -> None:
        """Removes the feature hooks."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> Distiller:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def distill(
    teacher: nn.Module,
    student: nn.Module,
    data: Iterable,
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    loss: Optional[DistillationLoss] = None,
    features: Union[Mapping[str, str], Sequence[str], None] = None,
    feature_weight: float = 1.0,
    output_fn: Optional[Callable[[Any, Any], torch.Tensor]] = None,
    optimizer: Optional[torch.optim.Optimizer] = None,
    max_steps: Optional[int] = None,
) -> nn.Module:
    """Trains ``student`` **in place** to match ``teacher`` over ``data`` (Adam at ``lr`` unless an
    ``optimizer`` is given), re-applying pruning masks (:func:`lowbit.reapply_masks`) after every
    step so sparse students stay sparse; returns the student in eval mode.

    ``data`` is re-iterated ``epochs`` times: batches are tensors, dicts of model kwargs, or
    ``(inputs, labels)`` tuples (labels add the task loss, see :class:`DistillationLoss`). A
    ``prepare_qat`` student trains its fake-quantized weights; convert it afterwards.

    Raises:
        ValueError: teacher and student outputs (or features) of different shapes, found on the
            first batch before any update (the student is then unchanged); empty data.

    Example:
        >>> import torch
        >>> torch.manual_seed(0) and None
        >>> t = torch.nn.Linear(4, 3); s = torch.nn.Linear(4, 3)
        >>> x = torch.randn(64, 4)
        >>> before = float(lowbit.Distiller(t, s)(x).detach())
        >>> _ = lowbit.distill(t, s, [x], epochs=50, lr=1e-2)
        >>> float(lowbit.Distiller(t, s)(x).detach()) < before
        True
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected an int >= 1, got {epochs!r}")
    d = Distiller(teacher, student, loss=loss, features=features, feature_weight=feature_weight, output_fn=output_fn)
    opt = optimizer or torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=lr)
    student.train()
    steps = 0
    try:
        for _ in range(epochs):
            for batch in data:
                inputs, labels = _split(batch)
                opt.zero_grad()
                d.loss(inputs, labels).backward()
                opt.step()
                reapply_masks(student)
                steps += 1
                if max_steps is not None and steps >= max_steps:
                    break
            if max_steps is not None and steps >= max_steps:
                break
    finally:
        d.close()
        student.eval()
    if steps == 0:
        raise ValueError("data: no batches (the iterable is empty)")
    return student
