"""The runner: execute the report notebooks with papermill into ``reports/<run>/``.

``python -m darknb run`` (what ``make demo`` calls) runs 00 → 04, exports each executed notebook to
HTML beside it, and gathers the stages' JSON into ``reports/<run>/summary.json``. Each notebook only
receives the parameters its own ``parameters`` cell declares; a parameter no notebook declares is an
error (papermill alone would just log it). Every parameter of every notebook is checked (name, type,
range, the files it names) before the first notebook runs, and the run folder is created only then.
``output_dir`` is the run folder itself (``reports_dir/run``): it cannot be set as a parameter.

The HTML copies are reports (:func:`export_html`): code inputs hidden, outputs and markdown kept;
the executed ``.ipynb`` beside them keeps everything.
"""

from __future__ import annotations

import time
from pathlib import Path

import papermill as pm
from nbconvert import HTMLExporter

from darknb.config import (
    NOTEBOOK_DIR,
    PATH_FIELDS,
    REPO_ROOT,
    RunConfig,
    notebook_defaults,
    preset_params,
    resolve_path,
    validate_params,
)
from darknb.errors import ConfigError
from darknb.files import RunDir, read_json, write_json, write_text
from darknb.provenance import provenance

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


def check_run_inputs(cfg: RunConfig) -> None:
    """What a run reads must exist before it starts: a registered dataset, model and enhancer;
    a real dataset's ``data_root`` (the synthetic set is generated when missing); the
    ``enhancer_checkpoint`` and ``pretrained`` files when given. Raises :class:`ConfigError`."""
    from darknb.data.datasets import list_datasets  # lazy: the registries import torch and timm
    from darknb.models.classifiers import list_models
    from darknb.models.enhancers import list_enhancers

    for key, names in (("dataset", list_datasets()), ("model", list_models()),
                       ("enhancer", list_enhancers())):
        if getattr(cfg, key) not in names:
            raise ConfigError(f"parameter {key!r}: unknown {key} {getattr(cfg, key)!r}; known: {names}")
    if cfg.dataset != "synthetic" and not Path(cfg.data_root).is_dir():
        raise ConfigError(f"data_root {cfg.data_root!r} for dataset {cfg.dataset!r} does not exist; "
                          "see the README section 'Datasets and layouts'")
    for key in ("enhancer_checkpoint", "pretrained", "baseline_pretrained"):
        value = getattr(cfg, key)
        if value not in PATH_FIELDS[key] and not Path(value).is_file():
            raise ConfigError(f"parameter {key!r}: file {value!r} does not exist")



def check_parameters(notebooks, params: dict) -> dict[str, dict]:
    """Every notebook's parameters, checked before any notebook runs: names (no notebook declares
    it), types (each notebook's ``parameters`` cell), ranges (:class:`RunConfig`) and the inputs
    they name (:func:`check_run_inputs`). Returns :func:`notebook_parameters`."""
    per_notebook = notebook_parameters(notebooks, params)
    checked: list[RunConfig] = []
    for nb, given in per_notebook.items():
        values = validate_params(given, notebook_defaults(nb))
        cfg = RunConfig.from_params(values)
        if cfg not in checked:  # notebooks share most fields: check each distinct config once
            check_run_inputs(cfg)
            checked.append(cfg)
    return per_notebook


# Cells tagged so in a notebook shape its HTML report (the .ipynb keeps them whole).
HIDE_INPUT_TAG = "hide-input"    # code hidden, output shown (what every code cell gets by default)
REMOVE_CELL_TAG = "remove-cell"  # the whole cell left out of the report
HIDE_OUTPUT_TAG = "hide-output"  # code (if shown) kept, output left out


def export_html(notebook_path: Path, *, hide_code: bool = True) -> Path:
    """Write the HTML report of an executed notebook beside it (``.html``) and return its path.

    The report shows markdown and outputs: with ``hide_code`` (the default) no code input at all,
    else only the inputs of cells tagged ``hide-input``. Cells tagged ``remove-cell`` are left
    out, outputs of cells tagged ``hide-output`` too (nbconvert's ``TagRemovePreprocessor``). The
    executed notebook itself is not changed."""
    from nbconvert.preprocessors import TagRemovePreprocessor

    exporter = HTMLExporter(exclude_input=hide_code, exclude_input_prompt=hide_code,
                            exclude_output_prompt=hide_code)
    exporter.register_preprocessor(TagRemovePreprocessor(
        remove_cell_tags={REMOVE_CELL_TAG}, remove_input_tags={HIDE_INPUT_TAG},
        remove_all_outputs_tags={HIDE_OUTPUT_TAG}), enabled=True)
    body, _ = exporter.from_filename(str(notebook_path))
    return write_text(body, Path(notebook_path).with_suffix(".html"))


def run_pipeline(run: str = "demo", *, preset: str | None = "demo", params: dict | None = None,
                 notebooks=None, reports_dir: str | Path = "reports", html: bool = True,
                 kernel_name: str = "python3", log_output: bool = False) -> Path:
    """Execute the notebooks into ``reports_dir/run`` and write ``summary.json``; returns that dir.

    A relative ``reports_dir`` is relative to the project folder (:func:`darknb.config.resolve_path`).
    Nothing is written unless every parameter of every notebook checks out (:func:`check_parameters`)."""
    base = preset_params(preset)
    if "output_dir" in (params or {}):
        raise ConfigError("output_dir is the run folder <reports_dir>/<run>: choose it with "
                          "`--run NAME` (and `--reports-dir DIR`), not `--set output_dir=...`")
    notebooks = list(notebooks or available_notebooks())
    missing = [nb for nb in notebooks if not (NOTEBOOK_DIR / f"{nb}.ipynb").is_file()]
    if missing:
        raise ConfigError(f"notebook(s) {missing} not found in {NOTEBOOK_DIR}")
    out_dir = Path(resolve_path(Path(reports_dir) / run))
    merged = {**base, **(params or {}), "output_dir": str(out_dir)}
    per_notebook = check_parameters(notebooks, merged)
    out_dir.mkdir(parents=True, exist_ok=True)  # only now: a run that cannot start leaves nothing

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
