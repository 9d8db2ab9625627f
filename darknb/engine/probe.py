"""LP-FT: a linear probe on the frozen pre-trained features initialises the new classifier, then the
whole model is fine-tuned (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features and
Underperform Out-of-Distribution", ICLR).

Why darknb needs it (measured on the synthetic miniature, issue 16): raw dark clips normalised with
the well-lit pre-training statistics sit 2.45 sd below the mean at 0.24 of normal contrast; the
pre-trained ViT gives them nearly identical features (mean pairwise cosine 0.991) and a randomly
initialised classifier reads almost nothing from them, so full-learning-rate fine-tuning through
it erased the signal in 3 of 8 seeds (one class everywhere, 11.1 %). A probe fitted first gives
the classifier the direction the features already carry; fine-tuning then starts from there.

The probe is a multinomial logistic regression (scikit-learn, L-BFGS) on the pre-logit features
of the arm's own training clips (epoch 0's clips, the ones training starts with), with an L2
penalty fixed in advance (``PROBE_C``, scikit-learn's default, not tuned). The features are not
standardised: they vary little (that is the problem), and a probe on standardised features has
huge weights (logit sd 15 on the demo's no-KD student, vs 1 without), which fine-tuning then
blows up (first-epoch loss 8). Deterministic on a CPU.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from darknb.data.loader import batch_clips, make_loader
from darknb.errors import ConfigError

__all__ = ["PROBE_C", "linear_probe", "probe_features"]

PROBE_C = 1.0  # inverse L2 strength (scikit-learn's default): fixed in advance, never tuned


@torch.no_grad()
def probe_features(model: nn.Module, dataset, *, batch_size: int = 32,
                   device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: the frozen model's pre-logit features ``(N, D)`` of every video of ``dataset``
    (its epoch-0 clip, augmented as training sees it) and their labels."""
    was_training = model.training
    model.eval()
    loader = make_loader(dataset, batch_size=batch_size, train=False)
    feats, labels = [], []
    try:
        for batch in loader:
            if batch is None:
                continue
            batch = batch.to(device)
            x = model.forward_head(model.forward_features(batch_clips(dataset, batch)), pre_logits=True)
            feats.append(x.float().cpu().numpy())
            labels.append(batch.labels.cpu().numpy())
    finally:
        model.train(was_training)
    if not feats:
        raise ConfigError("linear probe: the training set has no usable clip")
    return np.concatenate(feats).astype(np.float64), np.concatenate(labels)


def linear_probe(model: nn.Module, dataset, *, num_classes: int, batch_size: int = 32,
                 device: torch.device | str = "cpu") -> dict:
    """Fit the probe on ``dataset`` (the arm's training set) and write it into
    ``model.get_classifier()``. Returns what was done: clips, the probe's training top-1 (%),
    ``PROBE_C``, seconds."""
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    X, y = probe_features(model, dataset, batch_size=batch_size, device=device)
    probe = LogisticRegression(C=PROBE_C, max_iter=5000).fit(X, y)
    coef, intercept = probe.coef_, probe.intercept_
    if coef.shape[0] == 1:  # two classes: scikit-learn keeps one row; softmax needs both
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = np.zeros((num_classes, X.shape[1]))
    bias = np.full(num_classes, float(intercept.min()) - 10.0)  # a class absent from training
    rows = probe.classes_.astype(int)
    weight[rows], bias[rows] = coef, intercept
    fc = model.get_classifier()
    with torch.no_grad():
        fc.weight.copy_(torch.as_tensor(weight, dtype=fc.weight.dtype))
        fc.bias.copy_(torch.as_tensor(bias, dtype=fc.bias.dtype))
    train_top1 = float((probe.predict(X) == y).mean() * 100)
    return {"recipe": "lp-ft", "probe": "multinomial logistic regression on the pre-logit features "
            "(scikit-learn lbfgs)", "C": PROBE_C, "clips": int(len(y)),
            "probe_train_top1": round(train_top1, 2), "seconds": round(time.perf_counter() - start, 2)}
