"""The runner: execute the report notebooks with papermill into ``reports/<run>/``.

``python -m darknb run`` (what ``make demo`` calls) runs 00 → 04, exports each executed notebook to
HTML beside it, and gathers the stages' JSON into ``reports/<run>/summary.json``. Each notebook only
receives the parameters its own ``parameters`` cell declares; a parameter no notebook declares is an
error (papermill alone would just log it).
"""

from __future__ import annotations

import time
from pathlib import Path

import papermill as pm
from nbconvert import HTMLExporter

from darknb.config import NOTEBOOK_DIR, PRESETS, REPO_ROOT, notebook_defaults
from darknb.errors import ConfigError
from darknb.files import RunDir, read_json, write_json
from darknb.reports import provenance

NOTEBOOKS = ("00_explore", "01_pretrain", "02_teacher", "03_student", "04_ablation", "05_comparison")
REPORTS = ("explore", "pretrain", "ablation", "comparison")  # each notebook's own JSON


def available_notebooks() -> list[str]:
    return [nb for nb in NOTEBOOKS if (NOTEBOOK_DIR / f"{nb}.ipynb").is_file()]


def notebook_parameters(notebooks, params: dict) -> dict[str, dict]:
    """Split ``params`` between notebooks by what each declares; reject keys no notebook of the
    suite declares (a subset run may carry parameters meant for the others)."""
    declared = {nb: notebook_defaults(nb) for nb in available_notebooks()}
    known = set().union(*(d.keys() for d in declared.values())) if declared else set()
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown}: no notebook declares them; "
                          f"known: {sorted(known)}")
    return {nb: {k: v for k, v in params.items() if k in declared[nb]} for nb in notebooks}


def export_html(notebook_path: Path) -> Path:
    body, _ = HTMLExporter().from_filename(str(notebook_path))
    html = notebook_path.with_suffix(".html")
    html.write_text(body, encoding="utf-8")
    return html


def run_pipeline(run: str = "demo", *, preset: str | None = "demo", params: dict | None = None,
                 notebooks=None, reports_dir: str | Path = "reports", html: bool = True,
                 kernel_name: str = "python3", log_output: bool = False) -> Path:
    """Execute the notebooks into ``reports_dir/run`` and write ``summary.json``; returns that dir."""
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; presets: {sorted(PRESETS)}")
    notebooks = list(notebooks or available_notebooks())
    missing = [nb for nb in notebooks if not (NOTEBOOK_DIR / f"{nb}.ipynb").is_file()]
    if missing:
        raise ConfigError(f"notebook(s) {missing} not found in {NOTEBOOK_DIR}")
    out_dir = Path(reports_dir) / run
    if not out_dir.is_absolute():
        out_dir = REPO_ROOT / out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    merged = {**(PRESETS[preset] if preset else {}), **(params or {}), "output_dir": str(out_dir)}
    per_notebook = notebook_parameters(notebooks, merged)

    timings = {}
    for nb in notebooks:
        start = time.perf_counter()
        target = out_dir / f"{nb}.ipynb"
        print(f"[darknb] running {nb} -> {target}", flush=True)
        pm.execute_notebook(str(NOTEBOOK_DIR / f"{nb}.ipynb"), str(target),
                            parameters=per_notebook[nb], cwd=str(REPO_ROOT),
                            kernel_name=kernel_name, progress_bar=False, log_output=log_output)
        if html:
            export_html(target)
        timings[nb] = round(time.perf_counter() - start, 1)
        print(f"[darknb] {nb} done in {timings[nb]} s", flush=True)

    summary = collect_summary(out_dir)
    summary["run"] = {"name": run, "preset": preset, "params": merged, "notebooks": notebooks,
                      "seconds_per_notebook": timings, "provenance": provenance(params=merged)}
    write_json(summary, RunDir(out_dir).summary)
    return out_dir


def collect_summary(out_dir: Path) -> dict:
    """``summary.json``: each notebook's JSON, and the study's results at the top level (the
    contract reports rely on): per arm (``teacher``, ``student``, ``student_no_kd``,
    ``student_selfkd``) ``top1`` (mean over seeds), ``top1_std``, ``per_seed``; and ``splits``,
    ``seeds``, ``selected_on``, ``pretrained``, ``comparisons``, ``mde_top1``, ``zero_shot``."""
    run = RunDir(out_dir)
    summary = {name: read_json(run.stage(name)) for name in REPORTS if run.stage(name).is_file()}
    if run.stage("study").is_file():
        study = read_json(run.stage("study"))
        summary.update(study.pop("arms"))
        summary.update(study)
    return summary
