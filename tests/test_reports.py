"""What the HTML reports show: readable tables, the accuracy-cost figure, the claims, loss curves,
skipped videos, official vs custom lists, and the README's numbers generated from summary.json."""

from __future__ import annotations

import json
import shutil

import pandas as pd

from darknb.data.protocol import (
    OFFICIAL_LISTS,
    dataset_identity,
    official_list,
    protocol_label,
)
from darknb.engine import records
from darknb.report import figures, tables

MEASURED = [
    {"source": "measured", "dataset": "synthetic", "method": "Teacher: Zero-DCE + ViT + BERT",
     "top1": 50.0, "top5": 100.0, "top1_ci95_low": 29.166, "top1_ci95_high": 70.833,
     "top1_seed_std": 4.123, "seeds": 6, "test_videos": 24, "epochs": 100, "gflops_per_clip": 1.3412, "paper_size_gflops_per_clip": 1332.71,
     "cpu_latency_ms_per_clip": 41.26, "params_M": 0.5, "lists": "synthetic (generated lists)"},
    {"source": "measured", "dataset": "synthetic", "method": "R(2+1)D-18 + BERT (raw frames)",
     "top1": 75.0, "top5": 100.0, "top1_ci95_low": 58.33, "top1_ci95_high": 91.67,
     "seeds": 1, "test_videos": 24, "epochs": 20, "gflops_per_clip": 3.3212, "paper_size_gflops_per_clip": 324.2,
     "cpu_latency_ms_per_clip": float("nan"), "params_M": 33.4, "lists": "synthetic (generated lists)"},
]
REPORTED = {"source": "reported", "dataset": "ARID", "method": "DarkLight", "top1": 94.04,
            "top5": float("nan")}
CLAIMS = {
    "student_beats_teacher": {"measured": True, "significant_after_holm": False, "student_top1": 62.5,
                              "teacher_top1": 54.17, "mean_diff": 8.33, "ci95_low": -2.1, "ci95_high": 18.8,
                              "p_value": 0.09, "p_holm": 0.27, "n_seeds": 6, "mde_top1": 11.2},
    "student_is_cheaper": {"measured": True,
                           "teacher_over_student_gflops": {"as_run": 29.2, "paper_size": 2.405},
                           "two_stream_over_student_gflops": {"as_run": 2.0, "paper_size": None},
                           "teacher_over_student_latency": {"as_run": None, "paper_size": 6.35}},
}


def test_numbers_are_rounded_with_blanks_for_missing_values():
    assert tables.format_number(62.4999) == "62.5"
    assert tables.format_number(1332.71, 4, significant=True) == "1,333"
    assert tables.format_number(0.046123, 2, significant=True) == "0.046"
    assert tables.format_number(float("nan")) == "" and tables.format_number(None) == ""


def test_accuracy_and_cost_tables_read_without_nan_and_with_units():
    table = tables.accuracy_table(pd.DataFrame([REPORTED, *MEASURED]))
    assert {"top-1 (%)", "std over seeds (pts)", "top-1 95% CI (%)", "seeds", "test videos",
            "lists"} <= set(table.columns)
    text = table.to_string()
    assert "nan" not in text.lower()
    assert table.loc[1, "top-1 95% CI (%)"] == "29.2–70.8" and table.loc[0, "top-1 95% CI (%)"] == ""
    assert table.loc[2, "epochs"] == "20" and table.loc[1, "std over seeds (pts)"] == "4.1"
    assert table.loc[2, "std over seeds (pts)"] == ""  # one run: no spread to show
    reported = tables.accuracy_table(pd.DataFrame([REPORTED, *MEASURED]), source="reported")
    assert list(reported.columns) == ["source", "dataset", "method", "top-1 (%)"]  # nothing empty
    costs = tables.cost_table([
        {"model": "student", "setting": "as run (vit_bert_tiny, 3x8x32x32)", "params": 212_000,
         "gflops_per_clip": 0.04612, "latency_ms_per_clip": 12.34, "latency_std_ms": 0.51,
         "latency_threads": 2},
        {"model": "student", "setting": "paper size (input 3x64x112x112)", "params": 86_000_000,
         "gflops_per_clip": 554.12, "latency_ms_per_clip": float("nan")}])
    assert list(costs.columns[:5]) == ["model", "setting", "params (M)", "GFLOPs / clip",
                                       "CPU latency (ms / clip)"]
    assert costs.loc[0, "GFLOPs / clip"] == "0.0461" and costs.loc[1, "params (M)"] == "86.00"
    assert costs.loc[1, "CPU latency (ms / clip)"] == "" and "nan" not in costs.to_string().lower()


def test_the_accuracy_cost_figure_has_one_point_per_measured_method():
    import matplotlib

    matplotlib.use("Agg")
    fig = figures.plot_accuracy_vs_cost(pd.DataFrame([REPORTED, *MEASURED]))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and "GFLOPs" in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [m["method"] for m in MEASURED]
    latency = figures.plot_accuracy_vs_cost(pd.DataFrame(MEASURED), cost="cpu_latency_ms_per_clip")
    assert len(latency.axes[0].get_legend().get_texts()) == 1  # NaN latency: no point


def test_the_claims_summary_says_what_was_measured_and_how_sure():
    text = tables.claims_summary(CLAIMS)
    assert "measured **not established (higher, not significantly)**" in text
    assert "not significant at 0.05" in text and "Holm p = 0.270" in text
    below = {**CLAIMS["student_beats_teacher"], "mean_diff": -6.2, "p_holm": 0.0101}
    assert "measured **no: the student is below its teacher**" in tables.claims_summary(
        {"student_beats_teacher": below})
    assert "+8.3 points, 95% CI -2.1 to +18.8 over 6 seeds" in text and "detects 11.2 points" in text
    assert "29× as run" in text and "2.4× paper size" in text and "None" not in text


def test_loss_curves_drop_a_curve_equal_to_another():
    teacher = [{"epoch": e, "loss": 1.0 / e, "ce": 1.0 / e, "kd": 0.0, "train_top1": 10.0 * e}
               for e in range(1, 4)]
    assert list(figures.history_curves(teacher)) == ["loss (= CE)"]
    student = [{"epoch": e, "loss": 2.0 / e, "ce": 1.2 / e, "kd": 0.8 / e, "train_top1": 10.0 * e,
                "val_top1": 5.0 * e} for e in range(1, 4)]
    assert list(figures.history_curves(student)) == ["loss (total)", "CE part", "KD part"]
    import matplotlib

    matplotlib.use("Agg")
    fig = figures.plot_history(student, title="student")
    assert len(fig.axes[0].lines) == 3 and len({line.get_linestyle() for line in fig.axes[0].lines}) == 3
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == [
        "train (augmented clips)", "validation"]


def test_skipped_videos_table_merges_stages_and_the_cache(tmp_path):
    (tmp_path / "cache.json").write_text(json.dumps({"failed": {"A/a_1_1.avi": "video file is empty"}}))
    stages = {"teacher": {"skipped": [["A/a_1_1.avi", "video file is empty"],
                                      ["B/b_2_1.avi", "video B/b_2_1.avi is truncated"]]},
              "student": {"skipped": [["B/b_2_1.avi", "video B/b_2_1.avi is truncated"]]}}
    table = tables.skipped_table(stages, cache_dir=tmp_path)
    assert table.to_dict("records") == [
        {"video": "A/a_1_1.avi", "reason": "video file is empty",
         "where": "teacher, frame cache (prepare)"},
        {"video": "B/b_2_1.avi", "reason": "video B/b_2_1.avi is truncated", "where": "teacher, student"}]
    assert list(tables.skipped_table({}).columns) == ["video", "reason", "where"]


# ---------------------------------------------------------------------------- official lists

def test_the_hard_coded_checksums_are_the_reference_ones(reference_dir):
    text = (reference_dir / "arid" / "README.md").read_text()
    published = set(__import__("re").findall(r"\b[0-9a-f]{64}\b", text))
    assert set(OFFICIAL_LISTS) <= published
    assert official_list(reference_dir / "arid" / "ARID_split2_test.txt") == "ARID v1 split 2 test"


class _Lists:
    def __init__(self, path, subset):
        self.list_file, self.subset, self.classes = path, subset, ["Drink", "Jump"]


def test_official_lists_are_recognised_and_others_are_custom(reference_dir, tmp_path):
    arid = reference_dir / "arid"
    official = dataset_identity("arid", [_Lists(arid / "ARID_split1_train.txt", "train"),
                                         _Lists(arid / "ARID_split1_test.txt", "test")])
    assert protocol_label(official) == "official: ARID v1 split 1"
    subset = tmp_path / "ARID_split1_train.txt"  # the same name, one clip less
    subset.write_text("".join((arid / "ARID_split1_train.txt").read_text().splitlines(True)[1:]))
    custom = dataset_identity("arid", [_Lists(subset, "train"), _Lists(arid / "ARID_split1_test.txt", "test")])
    assert custom["lists"]["train"]["official"] is None and protocol_label(custom) == "custom list"
    shutil.copy(arid / "ARID_split1_test.txt", tmp_path / "mine.txt")
    assert protocol_label(dataset_identity("dark48", [_Lists(tmp_path / "mine.txt", "test")])).startswith(
        "official")  # the bytes decide, not the name


def test_every_stage_summary_and_comparison_row_names_its_lists(tiny_synthetic, tmp_path):
    from darknb.config import RunConfig
    from darknb.data.splits import build_datasets
    from darknb.files import RunDir, write_json
    from darknb.study.experiments import comparison_table

    cfg = RunConfig(data_root=str(tiny_synthetic), pretrained="", val_fraction=0.0)
    splits = build_datasets(cfg)
    metrics = {"top1": 50.0, "top5": 100.0, "num_videos": 2, "per_class": [], "indices": [0, 1],
               "labels": [0, 1], "pred": [0, 0]}
    summary = records.save_stage(tmp_path, "teacher", {"metrics": metrics}, cfg=cfg, datasets=splits)
    assert summary["data_protocol"] == "synthetic (generated lists)"
    assert summary["provenance"]["data_protocol"] == "synthetic (generated lists)"
    assert tables.results_table({"teacher": summary}, dataset="synthetic").lists[0] == summary["data_protocol"]
    write_json(metrics, RunDir(tmp_path).predictions("r2plus1d_bert"))  # a baseline: one run
    study = {"arms": {"teacher": {"label": "teacher", "top1": 50.0, "top5": 100.0, "top1_std": 0.0,
                                  "top1_ci95": [0.0, 100.0], "seeds": [0], "num_videos": 2,
                                  "config": summary["config"], "provenance": summary["provenance"]}}}
    table = comparison_table(tmp_path, dataset="synthetic", study=study, n_boot=50)
    measured = table[table.source == "measured"]
    assert len(measured) == 2 and (measured.lists == "synthetic (generated lists)").all()
    custom = comparison_table(tmp_path, dataset="dark48", study=study, n_boot=50, lists="custom list")
    assert (custom[custom.source == "measured"].lists == "custom list").all()


# ---------------------------------------------------------------------------- README numbers

def _summary():
    """summary.json as the pipeline writes it: the study's arms at the top level, the comparison
    notebook's JSON under "comparison", the run's bookkeeping under "run"."""
    arm = {"label": "Teacher: Zero-DCE + ViT + BERT (enhanced input)", "top1": 50.0, "top1_std": 4.1,
           "top5": 100.0, "top1_ci95": [29.2, 70.8], "num_videos": 24, "seeds": [0, 1, 2, 3, 4, 5],
           "config": {"dataset": "synthetic", "epochs": 100},
           "provenance": {"data_protocol": "synthetic (generated lists)"}}
    comparison = {"a": "student", "b": "teacher", "question": "Does the student beat its teacher?",
                  "mean_diff": 8.3, "ci95_low": -2.1, "ci95_high": 18.8, "p_value": 0.09,
                  "p_holm": 0.27, "n_seeds": 6, "mde_top1": 11.2, "sd_diff": 9.0}
    return {
        "teacher": arm, "student": {**arm, "label": "Student", "top1": 58.3},
        "seeds": [0, 1, 2, 3, 4, 5], "comparisons": [comparison], "zero_shot": None,
        "comparison": {"table": [REPORTED, *MEASURED], "claims": CLAIMS},
        "run": {"name": "demo", "preset": "demo", "seconds_per_notebook": {
            "00_explore": 12.2, "01_pretrain": 90.4, "02_teacher": 153.0, "03_student": 88.0,
            "05_comparison": 186.1},
            "provenance": {"git": {"sha": "abcdef0123456789", "dirty": False}, "device": "x86_64",
                           "torch_threads": 2}},
    }


def test_the_readme_block_is_generated_from_summary_json(tmp_path, capsys):
    run = tmp_path / "reports" / "demo"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(_summary()))
    block = tables.demo_results_markdown(_summary())
    assert "commit abcdef0" in block and "took 530 s: 00 12 s, 01 90 s" in block
    assert "24 clips (lists: synthetic (generated lists)), mean over 6 seeds" in block
    assert "| Teacher: Zero-DCE + ViT + BERT | 50.0 | 4.1 | 29.2–70.8 | 1.34 | 1,333 |" in block
    assert "| R(2+1)D-18 + BERT (raw frames) (20 epochs) | 75.0 | one run |" in block
    assert "student is 8.3 points higher than teacher" in block  # the study's findings, in words
    assert "DarkLight" not in block  # reported rows stay out of the measured table
    assert "nan" not in block.lower()

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{tables.README_BEGIN}\nold numbers\n{tables.README_END}\noutro\n")
    args = ["readme", "--reports-dir", str(tmp_path / "reports"), "--readme", str(readme)]
    assert cli_check(args) == 1  # out of date
    from darknb.cli import main

    assert main(args) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old numbers" not in text
    assert block in text
    assert cli_check(args) == 0
    readme.write_text("no markers")
    assert main(args) == 2 and "darknb:demo-results" in capsys.readouterr().err


def cli_check(args):
    from darknb.cli import main

    return main([*args, "--check"])


# ---------------------------------------------------------------------------- what a report shows

def test_show_hides_the_index_rounds_by_column_and_says_when_empty():
    frame = pd.DataFrame({"arm": ["teacher", "student"], "top-1 (%)": [35.428572, 24.0],
                          "p (Holm)": [0.000123456, 0.15234], "ratio": [1.141313, 12.5]})
    html = tables.show(frame).to_html()
    for shown in ("35.4", "0.000123", "0.152", "1.14", "12.5"):
        assert f">{shown}<" in html, shown
    assert "35.428572" not in html and "<th class=\"row_heading" not in html
    indexed = frame.set_index("arm")  # a meaningful index becomes the first column
    assert ">teacher<" in tables.show(indexed).to_html()
    empty = tables.show(pd.DataFrame(columns=["video", "reason"]), empty="No video was skipped.")
    assert empty.data == "No video was skipped."
    long = "does the student beat its teacher? " * 3
    assert long.strip() in tables.show(pd.DataFrame({"question": [long.strip()]})).to_html()


def test_parameters_table_lists_only_what_differs(tmp_path):
    from darknb.config import notebook_defaults, resolve_path

    params = dict(notebook_defaults("02_teacher"))
    assert "at its default" in tables.parameters_table(params, "02_teacher").data
    params.update(epochs=2, seeds=[0, 1], data_root=resolve_path("data/synthetic"),  # same path
                  output_dir=resolve_path("reports/tiny"), lr=0.001)
    rows = dict(tables.changed_parameters(params, "02_teacher"))
    assert rows == {"epochs": "2", "seeds": "0, 1", "output_dir": "reports/tiny"}
    html = tables.parameters_table(params, "02_teacher").to_html()
    assert "RunConfig(" not in html and ">reports/tiny<" in html


def test_prediction_report_is_a_small_table_with_its_notes():
    result = {"video": "/data/clip.mp4", "frames": 5, "seconds": 0.123, "device": "cpu",
              "protocol": {"views": "1x1", "clips": 1, "crops": 1, "num_frames": 8},
              "top": [{"class": "Wave", "probability": 0.151234}, {"class": "Run", "probability": 0.1}],
              "notes": ["the video has 5 frames, fewer than the model's 8-frame clip"]}
    html = tables.prediction_report(result, what="the student").data
    assert "<code>clip.mp4</code>" in html and ">15.1<" in html and ">Wave<" in html
    assert "Note: the video has 5 frames" in html and "0.151234" not in html
    assert "nothing to classify" in tables.prediction_report(None).data


def test_sections_without_results_say_so_in_a_sentence():
    assert "not pre-trained here" in tables.zero_shot_table(None).data
    assert "control was not run" in tables.control_table(None).data
    assert "grid was not run" in tables.ablation_table(None).data
    assert "no scene or actor" in tables.splits_summary(
        {"train": 6, "val": 3, "test": 6, "scene_disjoint": True}).data
    assert "analytic" in tables.enhancer_summary({"name": "gamma", "source": "analytic"}).data
    rows = tables.comparisons_table([{"a": "student", "b": "teacher", "question": "q?",
                                      "mean_diff": -10.56, "ci95_low": -21.2, "ci95_high": 0.1,
                                      "p_value": 0.0504321, "p_holm": 0.15123, "mde_top1": 14.24,
                                      "n_seeds": 5, "mcnemar": [{"p_value": 0.000123}]}])
    assert rows.iloc[0].to_dict() == {
        "comparison": "student − teacher", "question": "q?", "mean diff (pts)": "-10.6",
        "95% CI over seeds (pts)": "-21.2 to +0.1", "p (paired t)": "0.0504", "p (Holm)": "0.151",
        "MDE 80% (pts)": "14.2", "seeds": 5, "McNemar p per seed": "0.000123"}
