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


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Path:
    """A tiny synthetic dark-video set shared by the training and notebook tests."""
    from darknb.data import make_synthetic_dark

    root = tmp_path_factory.mktemp("synthetic") / "synthetic"
    return Path(make_synthetic_dark(root, num_classes=3, videos_per_class=4, num_frames=12,
                                    size=(48, 36), seed=0))
