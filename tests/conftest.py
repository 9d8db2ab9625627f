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


# The notebooks' tiny parameters: every notebook runs in seconds on the tiny synthetic set
TINY_RUN = dict(num_frames=4, size=32, epochs=2, batch_size=4, enhancer_fit_steps=5, seeds=[0, 1],
                pretrain_epochs=1, max_frames=8, betas=[0.0, 1.0, 2.0], temperatures=[4.0],
                ablation_seeds=2, n_boot=200, run_latency_repeats=1, paper_latency_repeats=0,
                save_every=1)


@pytest.fixture(scope="session")
def tiny_run(tiny_synthetic, tmp_path_factory) -> Path:
    """Every notebook executed once per session by the runner on the tiny synthetic set, with
    HTML reports: ``reports/tiny/`` (the notebooks test and the HTML-report test read it)."""
    from darknb.pipeline import run_pipeline

    reports = tmp_path_factory.mktemp("reports")
    return run_pipeline("tiny", preset=None, params=dict(TINY_RUN, data_root=str(tiny_synthetic)),
                        reports_dir=reports)
