"""The runner: execute the report notebooks with papermill into ``reports/<run>/``.

``python -m darknb run`` (what ``make demo`` calls) runs 00 → 04, exports each executed notebook to
HTML beside it, and gathers the stages' JSON into ``reports/<run>/summary.json``. Each notebook only
receives the parameters its own ``parameters`` cell declares; a parameter no notebook declares is an
error (papermill alone would just log it). Every parameter of every notebook is checked (name, type,
range, the files it names) before the first notebook runs, and the run folder is created only then.
``output_dir`` is the run folder itself (``reports_dir/run``): it cannot be set as a parameter.

The HTML copies are reports (:func:`export_html`): code inputs hidden, outputs and markdown kept;
the executed ``.ipynb`` beside them keeps everything.

What a run guarantees (README, "What a run guarantees"):
- one writer per run folder: the runner holds its lock (:class:`darknb.files.RunLock`) while it
  runs; a second run into the folder is refused at once, naming the holder;
- atomic reports: a notebook executes into a hidden temporary file; only when it succeeded are it
  and its HTML moved into place. A failed (or interrupted) one is kept as ``NN_name.failed.ipynb``
  with its full traceback in ``NN_name.log``, and the last good ``NN_name.ipynb`` / ``.html`` stay;
  the terminal gets darknb's one-line message and those two paths (:class:`NotebookError`);
- every run has an id (``$DARKNB_RUN_ID`` for its kernels and their processes): stages and reports
  record it, and ``summary.json`` names the run of every notebook's output it was built from;
- ``rerun=True`` (``--rerun``) runs every notebook with ``resume=False``: their stages are
  trained again instead of reused.
"""

from __future__ import annotations

import logging
import os
import re
import time
import traceback
from pathlib import Path

import papermill as pm
from nbconvert import HTMLExporter

from darknb.config import (
    NOTEBOOK_DIR,
    PATH_FIELDS,
    REPO_ROOT,
    RunConfig,
    check_notebook_knobs,
    notebook_defaults,
    preset_params,
    resolve_path,
    validate_params,
)
from darknb.errors import ConfigError, NotebookError
from darknb.files import RunDir, RunLock, read_json, require_writable, write_json, write_text
from darknb.provenance import RUN_ID_ENV, new_run_id, provenance

NOTEBOOKS = ("00_explore", "01_pretrain", "02_teacher", "03_student", "04_ablation", "05_comparison")
REPORTS = ("explore", "pretrain", "ablation", "comparison")  # each notebook's own JSON
# the JSON files each notebook writes (stages: per seed), whose run ids summary.json names
NOTEBOOK_OUTPUTS = {"00_explore": ("explore",), "01_pretrain": ("pretrain",),
                    "02_teacher": ("teacher_s{seed}",),
                    "03_student": ("student_no_kd_s{seed}", "student_s{seed}", "student_selfkd_s{seed}"),
                    "04_ablation": ("ablation",), "05_comparison": ("comparison",)}


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
    for key in ("train_list", "test_list", "val_list"):
        value = getattr(cfg, key)
        if value and not Path(value).is_file():
            raise ConfigError(f"parameter {key!r}: list file {value!r} does not exist")
    for key in ("enhancer_checkpoint", "pretrained", "baseline_pretrained"):
        value = getattr(cfg, key)
        if value not in PATH_FIELDS[key] and not Path(value).is_file():
            raise ConfigError(f"parameter {key!r}: file {value!r} does not exist")
    from darknb.data.framecache import CACHE_MANIFEST
    from darknb.engine.build import check_patch_size

    check_patch_size(cfg.model, cfg.size)
    if cfg.frame_cache is not None and not (cfg.frame_cache / CACHE_MANIFEST).is_file():
        require_writable(cfg.frame_cache, "cache_dir", "the frame cache is written there ('auto': "
                         "beside data_root); set cache_dir to a writable folder (`--set cache_dir=DIR`)")
    if cfg.enhanced_cache_dir and not (cfg.enhanced_frame_cache / CACHE_MANIFEST).is_file():
        require_writable(cfg.enhanced_frame_cache, "enhanced_cache_dir",
                         "the teacher's enhanced frames are written there; set enhanced_cache_dir to "
                         "a writable folder, or to '' (the run folder)")


def check_parameters(notebooks, params: dict) -> dict[str, dict]:
    """Every notebook's parameters, checked before any notebook runs: names (no notebook declares
    it), types (each notebook's ``parameters`` cell), ranges (:class:`RunConfig`,
    :func:`darknb.config.check_notebook_knobs`), the inputs they name (:func:`check_run_inputs`),
    and what each notebook reads from the run folder that no earlier notebook of this run makes
    (:func:`darknb.study.arms.require_inputs`). Returns :func:`notebook_parameters`."""
    from darknb.study.arms import require_inputs

    per_notebook = notebook_parameters(notebooks, params)
    checked: list[RunConfig] = []
    for k, (nb, given) in enumerate(per_notebook.items()):
        values = validate_params(given, notebook_defaults(nb))
        check_notebook_knobs(values)
        cfg = RunConfig.from_params(values)
        if cfg not in checked:  # notebooks share most fields: check each distinct config once
            check_run_inputs(cfg)
            checked.append(cfg)
        seeds = values.get("seeds", [values.get("seed", 0)])
        if nb == "05_comparison" and len(seeds) < 2:
            others = ",".join(n for n in notebooks if n != nb) or "00_explore"
            raise ConfigError(f"parameter 'seeds' is {list(seeds)}: 05_comparison's comparisons are "
                              "paired over seeds and need at least 2; give 2 or more, or leave it "
                              f"out (`--notebooks {others}`)")
        if nb == "04_ablation":  # the ablation runs on its first seeds
            seeds = seeds[:values.get("ablation_seeds", len(seeds))]
        require_inputs(nb, cfg, seeds, betas=values.get("betas", ()),
                       input_norms=values.get("input_norms", ("backbone",)),
                       made_before=list(per_notebook)[:k])
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


# Kernels talk to the runner over local IPC sockets, not TCP: nothing to encrypt (ipykernel warns
# about unencrypted TCP), and no port is opened.
KERNEL_CONFIG = {"KernelManager": {"transport": "ipc"}}


def _kernel_config():
    from traitlets.config import Config  # jupyter's configuration type (papermill depends on it)

    return Config(KERNEL_CONFIG)


class _KnownParameters(logging.Filter):
    """Papermill warns "Passed unknown parameter" by its own parse of a parameters cell; darknb
    passes each notebook only what it declares (and refuses anything else before running), so
    the warning would only ever be false."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Passed unknown parameter")


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _one_line(ename: str, evalue: str) -> str:
    """darknb's own message as it is (its errors name what is wrong); others with their type."""
    text = " ".join(str(evalue).split())
    darknb = ename.endswith("Error") and ename in _DARKNB_ERRORS
    return text if darknb and text else f"{ename}: {text}"


_DARKNB_ERRORS = {"DarknbError", "ConfigError", "VideoReadError", "DatasetError", "CheckpointError",
                  "TrainingError", "OutputError", "RunLockedError", "NotebookError"}


def run_notebook(nb: str, out_dir: Path, parameters: dict, *, html: bool = True,
                 kernel_name: str = "python3", log_output: bool = False) -> Path:
    """Execute notebook ``nb`` into ``out_dir`` atomically: into a hidden temporary notebook, moved
    (with its HTML report) to ``NN_name.ipynb`` / ``.html`` only when every cell succeeded. A
    failure keeps the executed notebook as ``NN_name.failed.ipynb`` and the full traceback in
    ``NN_name.log``, leaves the last good report in place and raises :class:`NotebookError` with
    darknb's one-line message and both paths. Returns the executed notebook's path."""
    run = RunDir(out_dir)
    target, failed, log = run.notebook(nb), run.failed_notebook(nb), run.log(nb)
    running = out_dir / f".{nb}.{os.getpid()}.running.ipynb"
    papermill_log = logging.getLogger("papermill")
    known = _KnownParameters()
    papermill_log.addFilter(known)
    try:
        pm.execute_notebook(str(NOTEBOOK_DIR / f"{nb}.ipynb"), str(running), parameters=parameters,
                            cwd=str(REPO_ROOT), kernel_name=kernel_name, progress_bar=False,
                            log_output=log_output, config=_kernel_config())
        if html:
            report = export_html(running)
            os.replace(report, target.with_suffix(".html"))
        os.replace(running, target)
    except BaseException as err:
        kept = running.is_file()
        if kept:
            os.replace(running, failed)
        if isinstance(err, pm.PapermillExecutionError):
            message = _one_line(err.ename, err.evalue)
            detail = (f"{nb} failed in cell [{err.exec_count}] (index {err.cell_index}):\n\n"
                      f"{err.source}\n\n" + _ANSI.sub("", "\n".join(err.traceback)))
        elif isinstance(err, Exception):
            message = _one_line(type(err).__name__, str(err))
            detail = f"{nb} failed outside its cells:\n\n" + "".join(traceback.format_exception(err))
        else:  # KeyboardInterrupt, SystemExit: stop, the partial notebook kept aside
            raise
        write_text(detail + "\n", log)
        raise NotebookError(f"{nb} failed: {message}\n  notebook: "
                            f"{failed if kept else '(none written)'}\n  log: {log}") from None
    finally:
        papermill_log.removeFilter(known)
        running.with_suffix(".html").unlink(missing_ok=True)
    failed.unlink(missing_ok=True)  # this notebook's last failure is outdated now
    log.unlink(missing_ok=True)
    return target


def run_pipeline(run: str = "demo", *, preset: str | None = "demo", params: dict | None = None,
                 notebooks=None, reports_dir: str | Path = "reports", html: bool = True,
                 kernel_name: str = "python3", log_output: bool = False,
                 rerun: bool = False) -> Path:
    """Execute the notebooks into ``reports_dir/run`` and write ``summary.json``; returns that dir.

    A relative ``reports_dir`` is relative to the project folder (:func:`darknb.config.resolve_path`).
    Nothing is written unless every parameter of every notebook checks out (:func:`check_parameters`)
    and the run folder can be written. The run holds the folder's lock (a second run into it is
    refused), gets a run id, and writes each notebook atomically (:func:`run_notebook`); one line
    per notebook with its time. ``rerun``: every notebook with ``resume=False`` (its stages are
    trained again)."""
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
    if rerun:
        merged["resume"] = False
    per_notebook = check_parameters(notebooks, merged)
    require_writable(out_dir, "--reports-dir and --run (the run folder)",
                     "choose a writable folder with `--reports-dir DIR`")
    out_dir.mkdir(parents=True, exist_ok=True)  # only now: a run that cannot start leaves nothing

    with RunLock(out_dir) as lock:
        if lock.note:
            print(f"[darknb] {lock.note}", flush=True)
        run_id = new_run_id()
        saved_id = os.environ.get(RUN_ID_ENV)
        os.environ[RUN_ID_ENV] = run_id  # the kernels, and the processes they start, inherit it
        try:
            timings = {}
            for nb in notebooks:
                start = time.perf_counter()
                print(f"[darknb] {nb} ...", end="", flush=True)
                try:
                    run_notebook(nb, out_dir, per_notebook[nb], html=html, kernel_name=kernel_name,
                                 log_output=log_output)
                except BaseException:
                    print(f" failed after {time.perf_counter() - start:.1f} s", flush=True)
                    raise
                timings[nb] = round(time.perf_counter() - start, 1)
                print(f" {timings[nb]:.1f} s", flush=True)

            previous = read_json(RunDir(out_dir).summary) if RunDir(out_dir).summary.is_file() else {}
            # a notebook not run in this call keeps the time of the run that ran it (05 alone
            # again, say): the summary times the whole run, each notebook once
            kept = {nb: t for nb, t in ((previous.get("run") or {}).get("seconds_per_notebook") or {}).items()
                    if nb not in timings and nb in NOTEBOOKS}
            timings = {nb: {**kept, **timings}[nb] for nb in NOTEBOOKS if nb in {**kept, **timings}}
            summary = collect_summary(out_dir)
            summary["run"] = {"name": run, "id": run_id, "preset": preset, "params": merged,
                              "notebooks": notebooks, "seconds_per_notebook": timings,
                              "seconds_kept_from_earlier_runs": sorted(kept),
                              "built_from": notebook_runs(out_dir, merged.get("seeds", [])),
                              "provenance": provenance(params=merged)}
            write_json(summary, RunDir(out_dir).summary)
        finally:
            if saved_id is None:
                os.environ.pop(RUN_ID_ENV, None)
            else:
                os.environ[RUN_ID_ENV] = saved_id
    return out_dir


def notebook_runs(out_dir: Path, seeds) -> dict[str, list[str]]:
    """For each notebook whose outputs are in ``out_dir``: the ids of the runs that wrote them
    (more than one when a later run reused an earlier run's output or ran only some notebooks)."""
    run = RunDir(out_dir)
    found = {}
    for nb, names in NOTEBOOK_OUTPUTS.items():
        ids = set()
        for pattern in names:
            for seed in (seeds if "{seed}" in pattern else [None]):
                path = run.stage(pattern.format(seed=seed))
                if path.is_file():
                    data = read_json(path)
                    ids.add(data.get("run_id") or (data.get("provenance") or {}).get("run_id")
                            or "unknown (written before run ids)")
        if ids:
            found[nb] = sorted(ids)
    return found


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
