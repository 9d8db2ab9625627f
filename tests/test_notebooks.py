"""Every notebook, executed by papermill through the runner with tiny parameters."""

import json

import pytest

from darknb.errors import ConfigError
from darknb.pipeline import NOTEBOOKS, run_pipeline

try:
    from conftest import TINY_RUN as TINY
except ImportError:  # tests/ imported as a package
    from tests.conftest import TINY_RUN as TINY


@pytest.mark.slow
def test_pipeline_runs_every_notebook_and_writes_the_reports(tiny_synthetic, tiny_run):
    params = dict(TINY, data_root=str(tiny_synthetic))
    out = tiny_run
    for nb in NOTEBOOKS:
        executed = json.loads((out / f"{nb}.ipynb").read_text())
        errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, (nb, errors)
        assert (out / f"{nb}.html").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    # the contract: per arm mean over seeds, spread and per-seed rows; the design at top level
    arms = ("teacher", "student", "student_no_kd", "student_selfkd", "teacher_datanorm",
            "student_no_kd_datanorm", "student_datanorm")
    for arm in arms:
        assert 0 <= summary[arm]["top1"] <= 100 and summary[arm]["top1_std"] >= 0
        assert [row["seed"] for row in summary[arm]["per_seed"]] == [0, 1]
        assert summary[arm]["selected_on"] == "val"
    assert summary["seeds"] == [0, 1] and summary["selected_on"] == "val"
    assert summary["splits"] == {"train": 6, "val": 3, "test": 6, "scene_disjoint": True}
    assert "well-lit" in summary["pretrained"]
    assert {"raw", "enhanced"} <= set(summary["zero_shot"])
    pairs = [(c["a"], c["b"]) for c in summary["comparisons"]]
    assert pairs == [("teacher", "student_no_kd"), ("student", "student_no_kd"),
                     ("student", "teacher"), ("student", "student_selfkd"),
                     ("teacher_datanorm", "student_no_kd_datanorm"),
                     ("student_datanorm", "student_no_kd_datanorm"),
                     ("student_no_kd_datanorm", "student_no_kd")]
    for c in summary["comparisons"]:
        assert c["ci95_low"] <= c["mean_diff"] <= c["ci95_high"] and 0 <= c["p_value"] <= c["p_holm"] <= 1
        assert c["mde"] is None or c["mde"] > 0
    assert summary["recipe"] == "lp-ft" and summary["input_norms"] == ["backbone", "dataset"]
    assert summary["teacher"]["init"]["recipe"] == "lp-ft" and summary["teacher"]["init"]["clips"] == 6
    assert summary["teacher_datanorm"]["init"]["input_statistics"]["input"] == "enhanced"
    assert summary["student_no_kd_datanorm"]["init"]["input_statistics"]["input"] == "raw"
    assert "Student-t interval" in summary["teacher"]["top1_ci95_method"]
    assert summary["mde_top1"] is None or summary["mde_top1"] > 0  # None: no spread across seeds
    assert summary["student_no_kd"]["config"]["beta"] == 0.0
    assert summary["teacher"]["provenance"]["packages"]["torch"]
    ablation = summary["ablation"]
    points = {p["point"]: p for p in ablation["points"]}
    assert set(points) == {"a1_b0_T4", "a1_b1_T4", "a1_b2_T4"} and ablation["seeds"] == [0, 1]
    assert points["a1_b0_T4"]["study_arm"] == "student_no_kd" and points["a1_b1_T4"]["study_arm"] == "student"
    assert points["a1_b2_T4"]["study_arm"] is None and points["a1_b2_T4"]["seeds"] == [0, 1]
    assert all({"val_top1", "top1", "top1_std", "seeds"} <= set(p) for p in points.values())
    assert [c["question"].split("?")[0] for c in ablation["comparisons"]] == ["Is top-1 monotone in beta"] * 2
    assert all({"p_value", "p_holm", "mde"} <= set(c) for c in ablation["comparisons"])
    assert ablation["clip_norm_control"] is None  # opt-in now
    import pandas as pd

    table = pd.read_csv(out / "comparison.csv")
    assert {"reported", "measured"} == set(table.source)
    measured = table[table.source == "measured"]
    assert len(measured) == 7 and measured.top1_ci95_low.le(measured.top1).all()
    assert measured.paper_size_gflops_per_clip.notna().all()
    assert (out / "explore_comparison.png").stat().st_size > 1000
    assert (out / "pretrained_backbone.pth").is_file() and (out / "pretrained_backbone.json").is_file()
    # a second run resumes: every checkpoint is complete, nothing is retrained
    before = {p.name: p.stat().st_mtime for p in out.glob("*.ckpt")}
    run_pipeline("tiny", preset=None, params=params, reports_dir=out.parent,
                 notebooks=["02_teacher"], html=False)
    assert {p.name: p.stat().st_mtime for p in out.glob("*.ckpt")}["teacher_s0.ckpt"] == before["teacher_s0.ckpt"]


def test_unknown_or_mistyped_parameters_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="unknown parameter.*'epoch'"):
        run_pipeline("x", preset=None, params={"epoch": 1}, reports_dir=tmp_path)


def test_a_notebook_rejects_a_mistyped_injected_parameter(tiny_synthetic, tmp_path):
    import papermill as pm

    from darknb.config import NOTEBOOK_DIR

    with pytest.raises(pm.PapermillExecutionError, match="'epochs' must be int"):
        pm.execute_notebook(str(NOTEBOOK_DIR / "02_teacher.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters={"epochs": "three", "data_root": str(tiny_synthetic)},
                            progress_bar=False)
    with pytest.raises(pm.PapermillExecutionError, match="unknown parameter.*'lrate'"):
        pm.execute_notebook(str(NOTEBOOK_DIR / "03_student.ipynb"), str(tmp_path / "out2.ipynb"),
                            parameters={"lrate": 0.1}, progress_bar=False)


@pytest.mark.slow
def test_your_own_videos_in_three_commands(tmp_path, capsys):
    """README "Your own videos": a folder of clips, one folder per class -> prepare -> run (every
    notebook, a split made once in the run folder) -> predict a clip with the run's student."""
    import numpy as np

    from darknb.cli import main
    from darknb.data.video import write_video

    clips = tmp_path / "myclips"
    rng = np.random.default_rng(0)
    for y, name in enumerate(("Jump", "Push", "Wave")):
        for group in range(4):
            for k in range(2):
                frames = (rng.random((10, 36, 48, 3)) * 30).astype(np.uint8)
                for t in range(10):  # a dim square moving right, at a height of its class
                    frames[t, 4 + 8 * y:12 + 8 * y, 2 * t + k:2 * t + k + 8] += 90
                write_video(clips / name / f"actor{group}_{k}.mp4", frames)
    assert main(["prepare", "--dataset", "folder", "--root", str(clips)]) == 0
    sets = dict(TINY, dataset="folder", data_root=str(clips), pretrained="",
                run_clip_norm_control=False, betas=[])
    args = ["run", "--run", "myclips", "--reports-dir", str(tmp_path / "reports"), "--preset", "none"]
    for key, value in sets.items():
        args += ["--set", f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}"]
    assert main(args) == 0
    out = tmp_path / "reports" / "myclips"
    assert sorted(p.name for p in (out / "lists").iterdir()) == ["classes.txt", "folder_test.txt",
                                                                 "folder_train.txt"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"]["test"] == 6 and summary["splits"]["scene_disjoint"]
    assert all((out / f"{nb}.html").is_file() for nb in NOTEBOOKS)
    capsys.readouterr()
    assert main(["predict", str(clips / "Wave" / "actor0_0.mp4"),
                 "--checkpoint", str(out / "student_s0.ckpt")]) == 0
    printed = capsys.readouterr().out
    assert {"Jump", "Push", "Wave"} <= set(printed.split())
