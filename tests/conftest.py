import os
from pathlib import Path

import pytest
import torch

REFERENCE = Path(os.environ.get("DARKNB_REFERENCE",
                                Path(__file__).resolve().parents[2] / "shared" / "reference"))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference data folder {REFERENCE} is absent")
    return REFERENCE


TINY_SPEC = dict(num_classes=3, train_scenes=2, val_scenes=1, test_scenes=2, pretrain_scenes=2,
                 pretrain_val_scenes=1, num_frames=8, size=36, video_every=1, seed=0)


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Path:
    """A tiny synthetic set shared by the training and notebook tests: 3 dark classes x (2 train,
    1 val, 2 test) scenes, every clip also a real video file; its cache in ``../cache/synthetic``
    (what ``cache_dir="auto"`` finds)."""
    from darknb.data.synthetic import make_synthetic_dark

    root = tmp_path_factory.mktemp("data") / "synthetic"
    return Path(make_synthetic_dark(root, **TINY_SPEC))
