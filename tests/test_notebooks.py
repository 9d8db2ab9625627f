"""Every notebook, executed by papermill through the runner with tiny parameters."""

import json

import pytest

from darknb.errors import ConfigError
from darknb.pipeline import NOTEBOOKS, run_pipeline

TINY = dict(num_frames=4, size=32, epochs=1, batch_size=4, enhancer_fit_steps=5, val_fraction=0.0,
            max_frames=8, alphas=[1.0], betas=[0.0, 1.0], temperatures=[1.0, 2.0],
            r2plus1d_epochs=1, n_boot=200, run_latency_repeats=1, paper_latency_repeats=0)


@pytest.mark.slow
def test_pipeline_runs_every_notebook_and_writes_the_reports(tiny_synthetic, tmp_path):
    params = dict(TINY, data_root=str(tiny_synthetic), cache_dir=str(tmp_path / "cache"))
    out = run_pipeline("tiny", preset=None, params=params, reports_dir=tmp_path / "reports")
    for nb in NOTEBOOKS:
        executed = json.loads((out / f"{nb}.ipynb").read_text())
        errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, (nb, errors)
        assert (out / f"{nb}.html").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    for stage in ("teacher", "student", "student_no_kd"):
        assert 0 <= summary[stage]["top1"] <= 100 and 0 <= summary[stage]["top5"] <= 100
        assert summary[stage]["provenance"]["seed"] == 0
        assert summary[stage]["provenance"]["packages"]["torch"]
        assert summary[stage]["config"]["epochs"] == 1
    assert summary["student_no_kd"]["config"]["beta"] == 0.0
    import pandas as pd

    ablation = pd.read_csv(out / "ablation.csv")
    assert list(ablation.columns[:6]) == ["alpha", "beta", "temperature", "seed", "top1", "top5"]
    assert len(ablation) == 3  # beta 0 once, beta 1 at T = 1 and 2
    assert (ablation[ablation.beta > 0].teacher_s == 0).sum() >= 1  # later KD runs used the cache
    table = pd.read_csv(out / "comparison.csv")
    assert {"reported", "measured"} == set(table.source)
    measured = table[table.source == "measured"]
    assert len(measured) == 5 and measured.top1_ci95_low.le(measured.top1).all()
    assert measured.paper_size_gflops_per_clip.notna().all()
    assert (out / "explore_comparison.png").stat().st_size > 1000
    # a second run resumes: every checkpoint is complete, nothing is retrained
    before = {p.name: p.stat().st_mtime for p in out.glob("*.ckpt")}
    run_pipeline("tiny", preset=None, params=params, reports_dir=tmp_path / "reports",
                 notebooks=["01_teacher"], html=False)
    assert {p.name: p.stat().st_mtime for p in out.glob("*.ckpt")}["teacher.ckpt"] == before["teacher.ckpt"]


def test_unknown_or_mistyped_parameters_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="unknown parameter.*'epoch'"):
        run_pipeline("x", preset=None, params={"epoch": 1}, reports_dir=tmp_path)


def test_a_notebook_rejects_a_mistyped_injected_parameter(tiny_synthetic, tmp_path):
    import papermill as pm

    from darknb.config import NOTEBOOK_DIR

    with pytest.raises(pm.PapermillExecutionError, match="'epochs' must be int"):
        pm.execute_notebook(str(NOTEBOOK_DIR / "01_teacher.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters={"epochs": "three", "data_root": str(tiny_synthetic)},
                            progress_bar=False)
    with pytest.raises(pm.PapermillExecutionError, match="unknown parameter.*'lrate'"):
        pm.execute_notebook(str(NOTEBOOK_DIR / "02_student.ipynb"), str(tmp_path / "out2.ipynb"),
                            parameters={"lrate": 0.1}, progress_bar=False)
