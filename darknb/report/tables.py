"""Readable tables and text for the reports: rounded numbers with units, intervals, the study's
comparisons and findings in words, the paper's claims as measured, skipped videos, and the
README's generated demo block.

What a report notebook shows goes through :func:`show` (a table: no index column, every number
rounded to its precision, text wrapped; or one sentence when there is nothing to show) or one of
the small builders on top of it (:func:`parameters_table`, :func:`enhancer_summary`,
:func:`brightness_table`, :func:`zero_shot_table`, :func:`control_table`, :func:`ablation_table`, :func:`arms_table`,
:func:`prediction_report`, :func:`splits_summary`): a report reads like a paper's results
section, never like a Python repr.

Reads dicts and JSON (what the stages and ``summary.json`` hold); never trains anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from darknb.config import PATH_FIELDS, notebook_defaults, project_root, resolve_path
from darknb.data.framecache import CACHE_MANIFEST
from darknb.data.protocol import protocol_label
from darknb.errors import ConfigError
from darknb.files import read_json, write_text

__all__ = ["README_BEGIN", "README_END", "ablation_table", "accuracy_table", "arms_table",
           "ablation_findings", "backbone_variation_sentence", "brightness_table",
           "changed_parameters", "claims_summary", "comparison_sentence", "comparisons_table",
           "control_table", "cost_table", "demo_results_markdown", "enhancer_summary",
           "format_number", "format_p", "parameters_table", "prediction_report", "results_table",
           "show", "skipped_table", "splits_summary", "study_findings", "update_readme",
           "zero_shot_table"]


def results_table(stages: dict, *, dataset: str):
    """One row per measured stage: top-1/top-5, test-set size and its lists (official, or
    "custom list"), labelled ``measured``."""
    rows = [{"source": "measured", "dataset": dataset, "model": name,
             "top1": s["top1"] if "top1" in s else s["metrics"]["top1"],
             "top5": s["top5"] if "top5" in s else s["metrics"]["top5"],
             "test_videos": s.get("num_videos") or s.get("metrics", {}).get("num_videos"),
             "lists": s.get("data_protocol") or (protocol_label(s["dataset"])
                                                 if isinstance(s.get("dataset"), dict) else None)}
            for name, s in stages.items()]
    return pd.DataFrame(rows)


BLANK = ""


def format_number(value, digits: int = 1, *, significant: bool = False) -> str:
    """``value`` rounded for a report: ``digits`` decimals (or significant digits), "" for a
    missing value (None, NaN), thousands separated."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return BLANK
    try:
        if pd.isna(value):
            return BLANK
    except (TypeError, ValueError):
        pass
    if isinstance(value, str):
        return value
    value = float(value)
    if significant:
        if value == 0:
            return "0"
        decimals = max(0, digits - 1 - int(np.floor(np.log10(abs(value)))))
        return f"{value:,.{decimals}f}"
    return f"{value:,.{digits}f}"


def format_p(p) -> str:
    """A p-value to 3 significant digits ("0.152", "0.000123"); "" when missing."""
    return format_number(p, 3, significant=True)


# ---------------------------------------------------------------------------------------------
# Showing a table in a report
# ---------------------------------------------------------------------------------------------

def _markdown(text: str):
    from IPython.display import Markdown  # lazy: only report notebooks display

    return Markdown(text)


def _precision(column: str) -> Callable[[Any], str]:
    """How a float column is rounded, from its name: p-values to 3 significant digits; accuracies,
    percentages and points to one decimal; anything else to 3 significant digits."""
    name = str(column).lower()
    if name in ("p", "p_value", "p_holm") or name.startswith(("p ", "p(", "p-", "mcnemar")):
        return format_p
    if any(key in name for key in ("top-1", "top1", "top-5", "top5", "%", "pts", "accuracy")):
        return lambda v: format_number(v, 1)
    return lambda v: format_number(v, 3, significant=True)


def show(table, *, digits: int | None = None, formats: Mapping[str, Any] | None = None,
         caption: str | None = None, empty: str = "Nothing to show.", index: str | None = None):
    """``table`` (a DataFrame, or rows) as a report shows it: a pandas ``Styler`` without the
    0..N index column (a meaningful index becomes the first column, named ``index`` or after
    itself), floats rounded to their precision (``formats`` per column: decimals, or a function;
    else ``digits`` decimals for every float; else by column name, :func:`_precision`), text
    wrapped, never cut. An empty table is the sentence ``empty`` instead (Markdown)."""
    frame = pd.DataFrame(table)
    if frame.empty:
        return _markdown(empty)
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.name is not None:
        frame = frame.reset_index(names=index or frame.index.name or "")
    frame.columns = [str(c) for c in frame.columns]
    formatters = {}
    for column in frame.columns:
        rule = (formats or {}).get(column)
        if rule is None and not pd.api.types.is_float_dtype(frame[column]):
            if frame[column].dtype == object:  # mixed columns: round the floats among strings
                rule = (lambda v, f=_precision(column): f(v) if isinstance(v, float) else
                        ("" if v is None else str(v)))
            else:
                continue
        if rule is None:
            rule = digits if digits is not None else _precision(column)
        if isinstance(rule, int):
            rule = (lambda v, d=rule: format_number(v, d))
        formatters[column] = rule
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    styler = (frame.style.hide(axis="index").format(formatters, na_rep=BLANK)
              .set_table_styles([{"selector": "th", "props": "text-align: left; white-space: normal;"},
                                 {"selector": "td", "props": "text-align: left; white-space: normal; "
                                                             "overflow-wrap: anywhere; max-width: 40em;"}]))
    if numeric:
        styler = styler.set_properties(subset=numeric, **{"text-align": "right"})
    if caption:
        styler = styler.set_caption(caption)
    return styler


def _display_value(key: str, value) -> str:
    """A parameter's value as a reader wants it: paths under the project relative to it, lists
    comma-separated, floats short, empty strings named."""
    if isinstance(value, str) and key in PATH_FIELDS and value not in PATH_FIELDS[key]:
        path = Path(value)
        try:
            return path.resolve().relative_to(project_root().resolve()).as_posix()
        except ValueError:
            return str(path)
    if isinstance(value, str):
        return value if value else "(empty)"
    if isinstance(value, (list, tuple)):
        return ", ".join(_display_value(key, v) for v in value) if value else "(none)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def changed_parameters(params: Mapping[str, Any], notebook: str | os.PathLike) -> list[tuple[str, str]]:
    """``(name, value as shown)`` of every parameter in ``params`` whose value differs from
    ``notebook``'s default (its parameters cell, = :mod:`darknb.config`'s); paths are compared
    resolved, so a default written relative equals its absolute form."""
    defaults = notebook_defaults(notebook)
    rows = []
    for key, value in params.items():
        if key not in defaults:
            continue
        default = defaults[key]
        if key in PATH_FIELDS and isinstance(value, str) and isinstance(default, str):
            same = resolve_path(value, PATH_FIELDS[key]) == resolve_path(default, PATH_FIELDS[key])
        else:
            same = value == default and type(value) is type(default) or (
                isinstance(value, float) and isinstance(default, (int, float)) and value == default)
        if not same:
            rows.append((key, _display_value(key, value)))
    return rows


def parameters_table(params: Mapping[str, Any], notebook: str | os.PathLike):
    """The parameters of this run that differ from the defaults, as a short two-column table
    (the full set stays in the executed ``.ipynb``'s parameters cell and in the stage JSON); one
    sentence when every parameter is at its default."""
    rows = changed_parameters(params, notebook)
    if not rows:
        return _markdown("Every parameter is at its default (the demo's settings); the full set is "
                         "in this notebook's parameters cell and in the run's JSON files.")
    return show(pd.DataFrame(rows, columns=["parameter", "value"]),
                caption="Parameters that differ from the defaults (the full set: the executed "
                        "notebook's parameters cell and the run's JSON files)")


def splits_summary(sizes: Mapping[str, Any]):
    """One sentence for :func:`darknb.data.splits.split_sizes`: clips per split, and whether the
    splits share a group (scene / actor)."""
    val = (f"{sizes['val']:,} validation" if sizes.get("val")
           else "no validation clips (the last epoch is the final model)")
    disjoint = ("no scene or actor is in two splits" if sizes.get("scene_disjoint")
                else "**some scene or actor is in two splits**: the test is not group-disjoint")
    return _markdown(f"{sizes['train']:,} training, {val} and {sizes['test']:,} test clips; "
                     f"{disjoint}.")


def enhancer_summary(info: Mapping[str, Any]):
    """The teacher's enhancer in one or two sentences (what :func:`darknb.engine.teacher.
    build_teacher_enhancer` returned): which one, where its weights come from, what the fit did."""
    name, source = info.get("name", "?"), info.get("source", "")
    if info.get("fitted") and info.get("reused"):
        text = (f"The teacher's enhancer: **{name}**, fitted zero-reference earlier in this run "
                f"(`{Path(source).name}` in the run folder), reused.")
    elif info.get("fitted"):
        text = (f"The teacher's enhancer: **{name}**, fitted zero-reference here on "
                f"{info.get('frames', '?')} unlabelled training frames ({info.get('steps', '?')} "
                f"steps, `{info.get('fit_protocol', 'short')}` protocol, "
                f"{format_number(info.get('seconds'), 1)} s); saved as `{Path(source).name}` in "
                f"the run folder.")
        if info.get("mean_before") is not None and info.get("mean_after") is not None:
            text += (f" Mean brightness of those frames: {format_number(info['mean_before'], 3)} "
                     f"before, {format_number(info['mean_after'], 3)} after.")
    elif source and source != "analytic":
        text = f"The teacher's enhancer: **{name}**, weights loaded from `{source}`."
    else:
        text = f"The teacher's enhancer: **{name}** (analytic: no weights to fit)."
    return _markdown(text)


def brightness_table(brightness: pd.DataFrame):
    """:func:`darknb.report.widgets.brightness_summary` for reading: per variant the mean
    brightness and its frame-to-frame spread (3 decimals, values in [0, 1]) and the share of
    pixels clipped to white or at black (%, 2 decimals)."""
    labels = {"mean_brightness": "mean brightness", "frame_std": "frame-to-frame std",
              "clipped_white_pct": "clipped to white (%)", "black_pct": "at black (%)"}
    return show(brightness.rename(columns=labels),
                formats={"mean brightness": 3, "frame-to-frame std": 3, "clipped to white (%)": 2,
                         "at black (%)": 2},
                caption="Per variant: mean brightness (0 black, 1 white), its spread over frames, "
                        "and the pixels an enhancer pushed to white (their differences are gone) "
                        "or left at black")


def zero_shot_table(gap: Mapping[str, Any] | None):
    """01's zero-shot check (:func:`darknb.engine.pretrain.zero_shot`) as a table, or why there is
    none."""
    if not gap:
        return _markdown("No zero-shot check: this run's backbone was not pre-trained here "
                         "(`pretrained` is not `pretrain`).")
    rows = [("well-lit clips", gap.get("lit")), ("dark clips, raw", gap.get("raw")),
            ("dark clips, enhanced by the teacher's enhancer", gap.get("enhanced")),
            ("chance", gap.get("chance"))]
    return show(pd.DataFrame(rows, columns=["input", "top-1 (%)"]),
                caption=f"The pre-trained model before any dark fine-tuning, on the "
                        f"{gap.get('clips', '?')} validation clips of its "
                        f"{len(gap.get('classes') or []) or '?'} pre-training classes")


def control_table(control: Mapping[str, Any] | None):
    """04's per-clip-standardisation control next to the same seed's main runs, or why there is
    none."""
    if not control:
        return _markdown("The per-clip standardisation control was not run "
                         "(`run_clip_norm_control=False`).")
    main = control.get("main_runs_input_norm_backbone") or {}
    rows = [("teacher (enhanced input)", control.get("teacher_top1"), main.get("teacher")),
            ("student without KD (raw input)", control.get("student_no_kd_top1"),
             main.get("student_no_kd")),
            ("teacher - student without KD (pts)", control.get("teacher_minus_no_kd"),
             main["teacher"] - main["student_no_kd"] if {"teacher", "student_no_kd"} <= set(main)
             else None)]
    return show(pd.DataFrame(rows, columns=["model", "per-clip standardisation: top-1 (%)",
                                            "pre-training statistics (main run): top-1 (%)"]),
                caption=f"Seed {control.get('seed')}: the same runs with input_norm=clip")


def prediction_report(result: Mapping[str, Any] | None, *, what: str = "the model"):
    """One :func:`darknb.engine.inference.predict` result as a reader wants it: a sentence naming
    the video and the views, a small table (rank, class, probability %), and its notes."""
    from IPython.display import HTML  # lazy: only report notebooks display

    if not result:
        return _markdown("No test video of this run exists as a file, so there is nothing to "
                         "classify here.")
    p = result["protocol"]
    views = "one centre clip" if p["clips"] * p["crops"] == 1 else \
        f"{p['clips'] * p['crops']} views ({p['clips']} clips x {p['crops']} crops), softmax averaged"
    head = (f"<p>{what.capitalize()} on <code>{Path(result['video']).name}</code> "
            f"({result['frames']} frames; {views}; {format_number(result['seconds'], 2)} s on "
            f"{result['device']}):</p>")
    rows = pd.DataFrame([{"rank": k, "class": r["class"], "probability (%)": 100 * r["probability"]}
                         for k, r in enumerate(result["top"], start=1)])
    notes = "".join(f"<li>Note: {note}.</li>" for note in result.get("notes", []))
    return HTML(head + show(rows).to_html() + (f"<ul>{notes}</ul>" if notes else ""))


def _interval(low, high, digits: int = 1) -> str:
    a, b = format_number(low, digits), format_number(high, digits)
    return f"{a}–{b}" if a and b else BLANK


def accuracy_table(table, *, source: str | None = None) -> pd.DataFrame:
    """The accuracy half of a comparison table (``experiments.comparison_table``), for reading:
    one row per method, top-1 / top-5 in % with one decimal (the mean over seeds where a method
    ran for several, with their standard deviation), the 95% interval as "low–high", the test set
    size, epochs and seeds, and the lists the run used; blanks where a value is missing (reported
    rows have no interval), and columns empty for every row left out. ``source`` ("measured" or
    "reported") keeps those rows only: two narrow tables instead of one wide one."""
    table = pd.DataFrame(table)
    if source is not None:
        table = table[table["source"] == source]
    rows = []
    for r in table.to_dict("records"):
        seeds = r.get("seeds")
        several = seeds is not None and pd.notna(seeds) and seeds > 1
        rows.append({
            "source": r.get("source", BLANK), "dataset": r.get("dataset", BLANK),
            "method": r.get("method", BLANK),
            "top-1 (%)": format_number(r.get("top1")),
            "std over seeds (pts)": format_number(r.get("top1_seed_std")) if several else BLANK,
            "top-1 95% CI (%)": _interval(r.get("top1_ci95_low"), r.get("top1_ci95_high")),
            "top-5 (%)": format_number(r.get("top5")),
            "seeds": format_number(seeds, 0),
            "test videos": format_number(r.get("test_videos"), 0),
            "epochs": format_number(r.get("epochs"), 0),
            "lists": r.get("lists") if isinstance(r.get("lists"), str) else BLANK,
        })
    out = pd.DataFrame(rows)
    return out.loc[:, [c for c in out.columns if (out[c] != BLANK).any()]]  # drop empty columns


def cost_table(costs) -> pd.DataFrame:
    """Inference cost per clip (``experiments.cost_of_models`` rows), for reading: parameters in
    millions, GFLOPs (FLOPs = 2 x MACs) to 3 significant digits, CPU latency in ms with its
    spread and thread count; blanks where not measured (e.g. paper-size latency skipped)."""
    rows = []
    for r in pd.DataFrame(costs).to_dict("records"):
        params, latency = r.get("params"), r.get("latency_ms_per_clip")
        rows.append({
            "model": r.get("model"), "setting": r.get("setting"),
            "params (M)": format_number(params / 1e6 if params is not None and pd.notna(params)
                                        else None, 2),
            "GFLOPs / clip": format_number(r.get("gflops_per_clip"), 3, significant=True),
            "CPU latency (ms / clip)": format_number(
                latency, 0 if latency is not None and pd.notna(latency) and latency >= 100 else 1),
            "latency std (ms)": format_number(r.get("latency_std_ms"), 1),
            "threads": format_number(r.get("latency_threads"), 0)})
    out = pd.DataFrame(rows)
    return out.loc[:, [c for c in out.columns if (out[c].fillna(BLANK) != BLANK).any()]]


def claims_summary(claims: dict) -> str:
    """The closing summary of ``experiments.paper_claims`` as Markdown bullet points (show it with
    ``IPython.display.Markdown``): each claim of the paper, what was measured, and how sure."""
    lines = []
    beats = claims.get("student_beats_teacher") or {}
    if beats:
        diff, p_holm = beats.get("mean_diff"), beats.get("p_holm")
        significant = p_holm is not None and p_holm < 0.05
        if diff is None:
            verdict = "yes" if beats.get("measured") else "no"
        elif significant:
            verdict = "yes" if diff > 0 else "no: the student is below its teacher"
        else:
            verdict = f"not established ({'higher' if diff > 0 else 'lower'}, not significantly)"
        detail = (f"student {format_number(beats.get('student_top1'))} % vs teacher "
                  f"{format_number(beats.get('teacher_top1'))} % top-1")
        if diff is not None:
            detail += (f", difference {diff:+.1f} points, 95% CI "
                       f"{beats['ci95_low']:+.1f} to {beats['ci95_high']:+.1f} over "
                       f"{beats.get('n_seeds')} seeds; Holm p = {format_p(p_holm)}, "
                       f"{'significant' if significant else 'not significant'} at 0.05")
            mde = beats.get("mde_top1")
            if mde is not None and abs(beats["mean_diff"]) < mde:
                detail += f"; this design detects {mde:.1f} points with 80% power"
        lines.append(f"- **The student beats the teacher** (paper: yes): measured **{verdict}** "
                     f"({detail}).")
    cheaper = claims.get("student_is_cheaper") or {}
    if cheaper:
        verdict = "yes" if cheaper.get("measured") else "no"
        parts = []
        for key, label in (("teacher_over_student_gflops", "teacher / student GFLOPs"),
                           ("two_stream_over_student_gflops", "two-stream / student GFLOPs"),
                           ("teacher_over_student_latency", "teacher / student CPU latency")):
            ratios = cheaper.get(key) or {}
            shown = [f"{format_number(v, 2, significant=True)}× {where.replace('_', ' ')}"
                     for where, v in ratios.items() if v]
            if shown:
                parts.append(f"{label}: {', '.join(shown)}")
        lines.append(f"- **The student costs less at inference** (paper: yes, no figures given): "
                     f"measured **{verdict}**" + (f" ({'; '.join(parts)})." if parts else "."))
    return "\n".join(lines)



def comparisons_table(rows: list[dict]) -> pd.DataFrame:
    """Stated comparisons for a report: one row each, in top-1 points, rounded (differences to 0.1,
    p-values to 3 significant digits; strings, ready to read: :func:`show` it), the minimum
    detectable effect beside every difference."""
    return pd.DataFrame([{
        "comparison": f"{r['a']} − {r['b']}", "question": r["question"],
        "mean diff (pts)": f"{r['mean_diff']:+.1f}",
        "95% CI over seeds (pts)": f"{r['ci95_low']:+.1f} to {r['ci95_high']:+.1f}",
        "p (paired t)": format_p(r["p_value"]), "p (Holm)": format_p(r.get("p_holm")),
        "MDE 80% (pts)": format_number(r.get("mde", r.get("mde_top1"))),
        "seeds": r["n_seeds"],
        "McNemar p per seed": ", ".join(format_p(m["p_value"]) for m in r["mcnemar"]),
    } for r in rows])


def arms_table(arms: Mapping[str, Mapping[str, Any]]):
    """The study's arms for a report: test top-1 mean over seeds, sd, the Student-t interval over
    seeds, the bootstrap over test clips (test-set sampling only), validation top-1, seeds."""
    return show(pd.DataFrame([{
        "arm": name, "model": a.get("label", name),
        "test top-1 (%)": format_number(a["top1"]),
        "sd over seeds (pts)": format_number(a.get("top1_std")),
        "95% CI over seeds (%)": _interval(*(a.get("top1_ci95") or (None, None))),
        "95% CI, test-set sampling only (%)": _interval(*(a.get("top1_ci95_test_sampling") or (None, None))),
        "validation top-1 (%)": format_number(a.get("val_top1")),
        "seeds": len(a.get("seeds") or []), "test clips": a.get("num_videos"),
    } for name, a in arms.items()]), empty="No arm has finished yet.")


def ablation_table(points: list[dict] | None):
    """The ablation's grid points: alpha, beta, T, validation and test top-1 (mean ± sd over
    seeds), the seeds, and which study arm a point reuses; a sentence when it was not run."""
    if not points:
        return _markdown("The ablation grid was not run (`betas=[]` and `temperatures=[]`).")
    return show(pd.DataFrame([{
        "point": p["point"], "alpha": f"{p['alpha']:g}", "beta": f"{p['beta']:g}",
        "T": f"{p['temperature']:g}" if p["beta"] > 0 else "(no KD)",
        "validation top-1 (%)": f"{format_number(p.get('val_top1'))} ± {format_number(p.get('val_top1_std'))}",
        "test top-1 (%)": f"{format_number(p['top1'])} ± {format_number(p.get('top1_std'))}",
        "seeds": ", ".join(str(s) for s in p["seeds"]),
        "runs": f"study arm {p['study_arm']}" if p.get("study_arm") else "ablation/",
    } for p in points]), empty="The ablation grid has no finished point.",
        caption="beta swept at the study's T, T at beta = 1; mean ± sd over the ablation's seeds")


MDE_GOAL = 5.0  # top-1 points: every stated comparison should see an effect this large (issue 16)


def comparison_sentence(c: dict, *, alpha: float = 0.05, variation: dict | None = None) -> str:
    """One stated comparison in words, the same words whatever the outcome: the difference, its
    interval over seeds, the Holm-corrected p, and whether the design could have seen an effect
    of that size (its MDE, and by how much it misses the 5-point goal). ``variation``: the same
    comparison measured with another pre-trained backbone (``backbone_variation``'s row): the
    sentence says whether its sign and verdict held."""
    verdict = "significant" if c["p_holm"] < alpha else "not significant"
    if c["mean_diff"] == 0:
        difference = f"{c['a']} and {c['b']} have the same mean top-1"
    else:
        direction = "higher" if c["mean_diff"] > 0 else "lower"
        difference = f"{c['a']} is {abs(c['mean_diff']):.1f} points {direction} than {c['b']}"
    mde = c.get("mde", c.get("mde_top1"))
    if mde is None:
        power = "; no spread across seeds, so the design's power cannot be estimated."
    elif abs(c["mean_diff"]) < mde:
        power = (f"; the design detects {mde:.1f} points with 80 % power, so an effect this small "
                 "could exist unseen.")
    else:
        power = f"; the design detects {mde:.1f} points with 80 % power."
    if mde is not None and mde > MDE_GOAL:
        power += f" Its MDE misses the {MDE_GOAL:g}-point goal by {mde - MDE_GOAL:.1f} points."
    if variation is not None:
        other_sig = variation["significant"][1]
        other = (f"{variation['mean_diff'][1]:+.1f} points, Holm p "
                 f"{format_number(variation['p_holm'][1], 3, significant=True)}")
        if variation.get("same_verdict"):
            power += f" With another pre-trained backbone: {other}, the same sign and verdict."
        elif variation.get("same_sign"):
            power += (f" With another pre-trained backbone: {other}, "
                      f"{'significant' if other_sig else 'not significant'}: the sign holds, the "
                      "verdict does not, so read it as uncertain.")
        else:
            power += (f" With another pre-trained backbone: {other}: the sign changes, so this "
                      "difference is not established.")
    return (f"{c['question']} {difference} (95 % CI {c['ci95_low']:+.1f} to {c['ci95_high']:+.1f} "
            f"over {c['n_seeds']} seeds; Holm p = {format_number(c['p_holm'], 3, significant=True)}, "
            f"{verdict}){power}")


def ablation_findings(ablation: dict, *, alpha: float = 0.05) -> list[str]:
    """The ablation in words: top-1 at every grid point (mean ± sd over its seeds), then each
    stated question (:func:`comparison_sentence`, Holm within the ablation)."""
    points = ablation.get("points") or []
    if not points:
        return []
    shown = "; ".join(f"beta {p['beta']:g}" + (f", T {p['temperature']:g}" if p["beta"] > 0 else "")
                      + f": {format_number(p['top1'])} ± {format_number(p.get('top1_std'))}"
                      for p in points)
    seeds = ", ".join(str(s) for s in ablation.get("seeds", []))
    lines = [f"Ablation (alpha = {ablation.get('alpha', 1):g}, seeds {seeds}), test top-1 %: {shown}."]
    return lines + [comparison_sentence(c, alpha=alpha) for c in ablation.get("comparisons", [])]


def study_findings(study: dict, *, alpha: float = 0.05) -> list[str]:
    """What the numbers say, one sentence per comparison (and the zero-shot check), in the same
    words whatever the outcome: the difference, its interval, the Holm-corrected p, and whether
    the design could have seen an effect of that size."""
    lines = []
    zero = study.get("zero_shot")
    if zero:
        gap = zero["enhanced"] - zero["raw"]
        lines.append(f"Zero-shot, pre-trained model on dark clips of its own classes: raw "
                     f"{zero['raw']:.1f} %, enhanced {zero['enhanced']:.1f} %, well-lit "
                     f"{zero['lit']:.1f} % (chance {zero['chance']:.1f} %): enhancement "
                     f"{'closes part of' if gap > 0 else 'does not close'} the domain gap "
                     f"({gap:+.1f} points).")
    variation = {(r["a"], r["b"]): r for r in (study.get("backbone_variation") or {}).get("comparisons", [])}
    lines += [comparison_sentence(c, alpha=alpha, variation=variation.get((c["a"], c["b"])))
              for c in study["comparisons"]]
    return lines



def skipped_table(stages: dict | None = None, *, cache_dir=None) -> pd.DataFrame:
    """Every video a run skipped or failed to prepare, for the HTML reports: one row per video
    (columns ``video``, ``reason``, ``where``). ``stages`` maps a name to a training result or a
    stage summary (their ``skipped`` lists); ``cache_dir`` adds the frame cache's failures
    (``cache.json``'s ``failed``). Empty (with those columns) when nothing was skipped."""

    where: dict[str, list[str]] = {}
    reason: dict[str, str] = {}
    for name, stage in (stages or {}).items():
        for rel, why in (stage or {}).get("skipped", []) or []:
            where.setdefault(rel, []).append(name)
            reason.setdefault(rel, why)
    if cache_dir:
        manifest = Path(cache_dir) / CACHE_MANIFEST
        if manifest.is_file():
            for rel, why in read_json(manifest).get("failed", {}).items():
                where.setdefault(rel, []).append("frame cache (prepare)")
                reason.setdefault(rel, why)
    rows = [{"video": rel, "reason": reason[rel], "where": ", ".join(dict.fromkeys(where[rel]))}
            for rel in sorted(where)]
    return pd.DataFrame(rows, columns=["video", "reason", "where"])


README_BEGIN = ("<!-- darknb:demo-results begin: generated from reports/<run>/summary.json by "
                "`python -m darknb readme`; edits inside are overwritten -->")


README_END = "<!-- darknb:demo-results end -->"


def demo_results_markdown(summary: dict) -> str:
    """The README block of a finished run (``summary.json``): where and how long it ran, one row
    per measured model of the comparison table (top-1, mean over seeds where there were several,
    its spread and 95% interval, GFLOPs per clip as run and at paper size), then the paper's
    claims (:func:`claims_summary`) and the study's stated comparisons in words."""
    run = summary.get("run", {})
    prov = run.get("provenance", {}) or {}
    git = prov.get("git", {}) or {}
    teacher = summary.get("teacher", {})
    cfg = teacher.get("config") or {}
    lines = []
    where = f"{prov.get('device') or 'unknown device'}, {prov.get('torch_threads', '?')} torch threads"
    sha = (git.get("sha") or "unknown")[:7] + (", uncommitted changes" if git.get("dirty") else "")
    lines.append(f"**Measured on {where}** (commit {sha}, run `{run.get('name', '?')}`, "
                 f"preset `{run.get('preset')}`).")
    seconds = run.get("seconds_per_notebook") or {}
    if seconds:
        parts = ", ".join(f"{nb.split('_')[0]} {format_number(s, 0)} s" for nb, s in seconds.items())
        lines.append(f"The notebooks took {format_number(sum(seconds.values()), 0)} s: {parts}.")
    lines.append("")
    dataset = cfg.get("dataset", "?")
    protocol = ((teacher.get("provenance") or {}).get("data_protocol")
                or teacher.get("data_protocol") or "unknown")
    seeds = summary.get("seeds") or teacher.get("seeds")
    about = (f"Top-1 on the {dataset} test split of {teacher.get('num_videos', '?')} clips "
             f"(lists: {protocol})")
    if seeds:
        about += f", mean over {len(seeds)} seeds ({', '.join(str(s) for s in seeds)})"
    lines.append(f"{about}; {cfg.get('epochs', '?')} epochs unless a row says otherwise.")
    lines.append("")
    lines.append(f"| model (measured, {dataset}) | top-1 % | sd over seeds | 95% CI over seeds | "
                 "GFLOPs per clip (as run) | GFLOPs per clip (paper size) |")
    lines.append("|---|---|---|---|---|---|")
    table = [r for r in (summary.get("comparison", {}) or {}).get("table", [])
             if r.get("source") == "measured"]
    if not table:  # the comparison did not run: the study's arms alone
        for name in ("teacher", "student_no_kd", "student", "student_selfkd"):
            arm = summary.get(name)
            if isinstance(arm, dict) and "top1" in arm:
                low, high = arm.get("top1_ci95") or (None, None)
                table.append({"method": arm.get("label", name), "top1": arm["top1"],
                              "seeds": len(arm.get("seeds") or []), "top1_seed_std": arm.get("top1_std"),
                              "top1_ci95_low": low, "top1_ci95_high": high})
    for r in table:
        method = r.get("method", "?")
        epochs = r.get("epochs")
        if epochs is not None and pd.notna(epochs) and cfg.get("epochs") not in (None, epochs):
            method += f" ({format_number(epochs, 0)} epochs)"
        several = r.get("seeds") is not None and pd.notna(r.get("seeds")) and r["seeds"] > 1
        spread = format_number(r.get("top1_seed_std")) if several else "one run"
        lines.append(f"| {method} | {format_number(r.get('top1'))} | {spread} | "
                     f"{_interval(r.get('top1_ci95_low'), r.get('top1_ci95_high'))} | "
                     f"{format_number(r.get('gflops_per_clip'), 3, significant=True)} | "
                     f"{format_number(r.get('paper_size_gflops_per_clip'), 4, significant=True)} |")
    claims = (summary.get("comparison", {}) or {}).get("claims")
    if claims:
        lines += ["", claims_summary(claims)]
    if summary.get("comparisons"):

        lines += [""] + [f"- {line}" for line in study_findings(summary)]
    ablation = summary.get("ablation") or {}
    if ablation.get("points"):
        lines += [""] + [f"- {line}" for line in ablation_findings(ablation)]
    variation = summary.get("backbone_variation")
    if variation:
        lines += ["", f"- {backbone_variation_sentence(variation)}"]
    control = ablation.get("clip_norm_control")
    if control:
        main = control.get("main_runs_input_norm_backbone") or {}
        lines.append(f"- Control, per-clip standardisation instead of the pre-training statistics "
                     f"(seed {control['seed']}): teacher {format_number(control['teacher_top1'])} %, "
                     f"no-KD student {format_number(control['student_no_kd_top1'])} % (teacher - "
                     f"no-KD {control['teacher_minus_no_kd']:+.1f} points); the main runs of that "
                     f"seed: teacher {format_number(main.get('teacher'))} %, no-KD student "
                     f"{format_number(main.get('student_no_kd'))} %.")
    return "\n".join(lines)


def backbone_variation_sentence(variation: dict) -> str:
    """How far each stated comparison moved between two pre-trained backbones (the study's seeds
    vary fine-tuning only, so backbone-to-backbone variation is in no interval)."""
    rows = variation.get("comparisons") or []
    moved = ", ".join(f"{r['a']} − {r['b']} {r['delta']:+.1f}" for r in rows)
    kept = sum(bool(r.get("same_verdict")) for r in rows)
    return (f"Backbone variation (measured once, {variation.get('what', 'two pre-training seeds')}): "
            f"the stated differences moved by {moved} points; {kept} of {len(rows)} kept their sign "
            "and significance verdict.")


def update_readme(summary_path, readme_path) -> tuple[str, bool]:
    """Replace the README's block between :data:`README_BEGIN` and :data:`README_END` with
    :func:`demo_results_markdown` of ``summary_path``; returns (the block, whether the README
    changed). Raises :class:`ConfigError` when the markers are missing."""

    readme_path = Path(readme_path)
    text = readme_path.read_text(encoding="utf-8")
    if text.count(README_BEGIN) != 1 or text.count(README_END) != 1:
        raise ConfigError(f"{readme_path}: needs exactly one {README_BEGIN!r} and one "
                          f"{README_END!r} line around the demo numbers")
    block = demo_results_markdown(read_json(summary_path))
    head, rest = text.split(README_BEGIN)
    _, tail = rest.split(README_END)
    new = f"{head}{README_BEGIN}\n{block}\n{README_END}{tail}"
    if new != text:
        write_text(new, readme_path)
    return block, new != text

