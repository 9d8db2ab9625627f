"""Inference cost: parameters, FLOPs per clip and CPU latency, for the paper's cost claim.

DL-KDD claims the student "needs no enhancement module and no second stream, so it costs less than
the teacher and than two-stream methods" but gives no figures (PAPER.md, "Claims to test"). This
file measures them.

Units, stated once and carried in every result:
- FLOPs follow ``torch.utils.flop_counter.FlopCounterMode``: a multiply-add is **2 FLOPs**
  (FLOPs = 2 x MACs). Many papers quote "GFLOPs" that are really GMACs; halve ours to compare.
- Only matrix products, convolutions and attention are counted (what FlopCounterMode has formulas
  for); element-wise work (normalisation, GELU, softmax, Zero-DCE's curve iterations) is not. For a
  ViT that is < 1 % of the total; for Zero-DCE the curve steps are a visible share, so its count is a
  lower bound.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections import defaultdict
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.utils import flop_counter as _fc
from torch.utils._python_dispatch import TorchDispatchMode

from darknb.errors import ConfigError

FLOP_UNIT = "FLOPs"
FLOP_CONVENTION = ("FLOPs = 2 x MACs (torch.utils.flop_counter); matmul, conv and attention only, "
                   "element-wise ops not counted")

# ----------------------------------------------------------------------------------------------
# Formulas FlopCounterMode lacks
# ----------------------------------------------------------------------------------------------
# timm's ViT calls F.scaled_dot_product_attention; on CPU that dispatches to
# aten._scaled_dot_product_flash_attention_for_cpu, which torch's flop registry does not know, so a
# fused-attention ViT would silently lose its attention FLOPs. Its arithmetic is the same as the
# other SDPA kernels (QK^T and AV), so torch's own sdpa counts apply. Passed as ``custom_mapping``
# rather than registered globally, so importing darknb changes nothing for other code.


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return _fc.sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args,
                            out_shape=None, **kwargs) -> int:
    return _fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def extra_flop_formulas() -> dict:
    """Formulas added to FlopCounterMode's registry (only for ops this torch build has)."""
    wanted = {
        "_scaled_dot_product_flash_attention_for_cpu": _sdpa_cpu_flop,
        "_scaled_dot_product_flash_attention_for_cpu_backward": _sdpa_cpu_backward_flop,
    }
    out = {}
    for name, formula in wanted.items():
        packet = getattr(torch.ops.aten, name, None)
        if packet is not None and packet not in _fc.flop_registry:
            out[packet] = formula
    return out


# Ops that do heavy arithmetic; if one runs without a formula the total would be silently low.
_HEAVY_OP_WORDS = {"attention", "mm", "bmm", "addmm", "baddbmm", "matmul", "einsum", "linear"}


def _is_heavy(op) -> bool:
    words = str(op).split(".")[-1].strip("_").split("_")
    return any(w in _HEAVY_OP_WORDS or w.startswith("conv") for w in words)


class _OpRecorder(TorchDispatchMode):
    """Records the aten ops that actually execute.

    Entered *before* FlopCounterMode, so it sits below it on the mode stack: it sees each op after
    the counter has decomposed what it could, i.e. exactly the ops that ran.
    """

    def __init__(self):
        super().__init__()
        self.seen: set = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.add(func._overloadpacket)
        return func(*args, **(kwargs or {}))


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (shared parameters counted once)."""
    params = {id(p): p for p in model.parameters() if p.requires_grad or not trainable_only}
    return int(sum(p.numel() for p in params.values()))


def _module_device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def count_flops(model: nn.Module, *inputs: torch.Tensor, input_shape: Sequence[int] | None = None,
                device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
                train: bool = False) -> dict[str, Any]:
    """FLOPs of one forward pass, counted with ``FlopCounterMode`` (+ the CPU flash-attention formula).

    Give either ``inputs`` (tensors, run as ``model(*inputs)``) or ``input_shape`` (a zero tensor of
    that shape is made on ``device``). ``device="meta"`` counts without computing anything: the model
    is copied to the meta device (build it inside ``with torch.device("meta"):`` to skip even the
    allocation), so paper-size models — ViT-B/16 on 64 x 112 x 112 clips — cost no time.
    ``train=False`` counts in eval mode (inference cost); the model's mode is restored afterwards.

    Returns ``flops`` (int, whole batch), ``gflops`` (float), ``unit`` / ``convention`` (see the module
    docstring), ``by_op`` {aten op: FLOPs}, ``by_module`` {top-level child: FLOPs}, ``batch_size``
    (first input's dim 0), ``input_shapes``, ``device`` and ``uncounted_ops`` (heavy-looking ops that
    ran without a formula; a non-empty list also warns, because the total is then too low).
    """
    if bool(inputs) == (input_shape is not None):
        raise ConfigError("count_flops: give either input tensors or input_shape=..., not both/neither")
    if input_shape is not None:
        dev = torch.device(device) if device is not None else _module_device(model)
        inputs = (torch.zeros(tuple(input_shape), device=dev, dtype=dtype),)
    elif device is not None:
        dev = torch.device(device)
        inputs = tuple(x.to(dev) if isinstance(x, torch.Tensor) else x for x in inputs)
    else:
        dev = inputs[0].device if isinstance(inputs[0], torch.Tensor) else _module_device(model)
    if _module_device(model) != dev:
        if _module_device(model).type == "meta":
            raise ConfigError(f"count_flops: the model is on the meta device (no weights), inputs on "
                              f"{dev}; pass device='meta' (or meta inputs)")
        # Copy rather than move: counting must not change the caller's model.
        model = copy.deepcopy(model).to(dev)

    counter = _fc.FlopCounterMode(display=False, depth=None, custom_mapping=extra_flop_formulas())
    recorder = _OpRecorder()
    was_training = model.training
    model.train(train)
    try:
        with torch.no_grad(), recorder, counter:
            model(*inputs)
    finally:
        model.train(was_training)

    counts = counter.get_flop_counts()
    by_op = {str(op): int(v) for op, v in counts.get("Global", {}).items()}
    by_module = _top_level_modules(counts, model)
    uncounted = sorted(str(op) for op in recorder.seen
                       if op not in counter.flop_registry
                       and _is_heavy(op))
    if uncounted:
        warnings.warn(f"count_flops: ops ran without a FLOP formula, total is too low: {uncounted}",
                      RuntimeWarning, stacklevel=2)
    total = int(counter.get_total_flops())
    first = inputs[0]
    return {
        "flops": total,
        "gflops": total / 1e9,
        "unit": FLOP_UNIT,
        "convention": FLOP_CONVENTION,
        "by_op": by_op,
        "by_module": by_module,
        "batch_size": int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() else 1,
        "input_shapes": [tuple(x.shape) for x in inputs if isinstance(x, torch.Tensor)],
        "device": str(dev),
        "uncounted_ops": uncounted,
    }


def _top_level_modules(counts: Mapping[str, Mapping], model: nn.Module) -> dict[str, int]:
    """FLOPs per direct child of the model (FlopCounterMode names modules ``Root.child...``)."""
    children = {name for name, _ in model.named_children()}
    out: dict[str, int] = defaultdict(int)
    for key, ops in counts.items():
        parts = key.split(".")
        if len(parts) == 2 and parts[1] in children:
            out[parts[1]] += int(sum(ops.values()))
    return dict(out)


def _torch_benchmark():
    """``torch.utils.benchmark``, imported quietly: it imports ``torch.utils.cpp_extension``, which
    logs "No CUDA runtime is found" on a machine with a CUDA toolkit but no GPU (a report would
    show that line)."""
    import logging

    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        from torch.utils import benchmark
    finally:
        log.setLevel(level)
    return benchmark


def measure_latency(model: nn.Module, *inputs: torch.Tensor, warmup: int = 1,
                    repeats: int = 3) -> dict[str, Any]:
    """Wall-clock time of ``model(*inputs)`` under ``torch.inference_mode()`` in eval mode,
    measured with ``torch.utils.benchmark.Timer`` (each timed call after its own warm-up).

    Returns ``mean_ms`` / ``std_ms`` (sample std over ``repeats`` timed calls; 0 for one call) for the
    whole batch, plus ``min_ms``, ``repeats``, ``threads`` (``torch.get_num_threads()``: CPU latency
    depends on it, so it is recorded with the number) and ``device``.
    """
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"measure_latency: need repeats >= 1 and warmup >= 0, got "
                          f"repeats={repeats}, warmup={warmup}")
    if not inputs:
        raise ConfigError("measure_latency: give at least one input tensor")
    device = inputs[0].device
    if device.type == "meta" or _module_device(model).type == "meta":
        raise ConfigError("measure_latency: the model or inputs are on the meta device, which "
                          "computes nothing; time on a real device")

    # torch.utils.benchmark's Timer: the thread count is fixed and recorded, CUDA is synchronised
    # before the clock stops, and each timed call follows its own warm-up calls
    benchmark = _torch_benchmark()

    timer = benchmark.Timer(stmt="model(*inputs)", globals={"model": model, "inputs": inputs},
                            num_threads=torch.get_num_threads())
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(*inputs)
            times = [timer.timeit(number=1).mean * 1e3 for _ in range(repeats)]
    finally:
        model.train(was_training)
    mean = sum(times) / len(times)
    std = math.sqrt(sum((t - mean) ** 2 for t in times) / (len(times) - 1)) if len(times) > 1 else 0.0
    return {"mean_ms": mean, "std_ms": std, "min_ms": min(times), "repeats": repeats,
            "threads": torch.get_num_threads(), "device": str(device),
            "batch_size": int(inputs[0].shape[0]) if inputs[0].dim() else 1}
