import math

import pytest
import torch
import torch.nn.functional as F

from darknb.engine.distill import TeacherCache, kd_loss
from darknb.errors import CheckpointError, ConfigError


def _manual_kl(s, t, T):
    p_t = F.softmax(t / T, dim=1)
    p_s = F.softmax(s / T, dim=1)
    return (p_t * (p_t.log() - p_s.log())).sum(1).mean()


@pytest.mark.parametrize("alpha, beta, T", [(1.0, 1.0, 1.0), (0.5, 2.0, 4.0), (1.0, 0.0, 2.0)])
def test_kd_loss_matches_the_formula(alpha, beta, T):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    y = torch.randint(0, 5, (6,), generator=g)
    out = kd_loss(s, t, y, alpha=alpha, beta=beta, temperature=T)
    ce = F.cross_entropy(s, y)
    kd = _manual_kl(s, t, T) * T * T
    assert torch.allclose(out["ce"], ce)
    assert torch.allclose(out["kd"], kd, atol=1e-6)
    assert torch.allclose(out["loss"], alpha * ce + beta * kd, atol=1e-6)


def test_kd_is_zero_when_student_equals_teacher_and_positive_otherwise():
    s = torch.randn(4, 3)
    y = torch.zeros(4, dtype=torch.long)
    assert kd_loss(s, s.clone(), y)["kd"].abs() < 1e-6
    assert kd_loss(s, -s, y)["kd"] > 0.1


def test_teacher_receives_no_gradient():
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    kd_loss(s, t, torch.zeros(4, dtype=torch.long))["loss"].backward()
    assert s.grad is not None and t.grad is None


def test_bad_arguments():
    s = torch.randn(2, 3)
    y = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ConfigError, match="temperature"):
        kd_loss(s, s, y, temperature=0)
    with pytest.raises(ConfigError, match="beta"):
        kd_loss(s, None, y, beta=1.0)
    with pytest.raises(ConfigError, match="shape"):
        kd_loss(s, torch.randn(2, 4), y)
    assert kd_loss(s, None, y, beta=0.0)["kd"] == 0


def test_teacher_cache_round_trip(tmp_path):
    cache = TeacherCache(tmp_path / "cache.pt")
    logits = torch.randn(3, 4)
    assert cache.lookup(0, 0, [1, 2, 3]) is None
    cache.add(0, 0, [1, 2, 3], logits)
    assert torch.equal(cache.lookup(0, 0, [3, 1]), logits[[2, 0]])
    assert cache.lookup(0, 1, [1]) is None  # another epoch is another clip
    cache.save()
    again = TeacherCache(tmp_path / "cache.pt")
    assert len(again) == 3 and torch.equal(again.lookup(0, 0, [2]), logits[[1]])
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="bad.pt"):
        TeacherCache(tmp_path / "bad.pt")
    assert math.isfinite(float(logits.sum()))
