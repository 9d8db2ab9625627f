"""Command line: ``python -m darknb {run,synth,prepare,train,predict,readme,models}`` (also
installed as ``darknb``).

Each command imports what it needs when it runs, so ``darknb --help`` answers without loading torch.
Relative paths (``--root``, ``--cache-dir``, ``--set data_root=...``) are relative to the project
folder (the darknb checkout), whatever the current folder: see :mod:`darknb.config`.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import sys

from darknb.errors import DarknbError


# What `darknb --help` says (plain text: the module docstring above is for the API docs)
DESCRIPTION = """\
darknb: action recognition in dark videos with knowledge distillation (DL-KDD).

Relative paths (--root, --cache-dir, --set data_root=...) are relative to the project folder
(the darknb checkout), whatever the current folder.

examples:
  darknb run                                    the demo: notebooks 00-05 into reports/demo/
  darknb run --run mine --set dataset=folder --set data_root=data/myclips
  darknb predict clip.mp4 --checkpoint reports/demo/student_s0.ckpt
"""


def _parse_value(text: str):
    """``--set lr=1e-3`` → 0.001; strings that are not Python literals stay strings."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _parse_sets(pairs) -> dict:
    params = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DarknbError(f"--set expects key=value, got {pair!r}")
        params[key.strip()] = _parse_value(value.strip())
    return params


def _print_prepared(what: str, report: dict) -> None:
    """``prepare``'s closing count: written / reused / re-decoded (why) / failed, then each
    re-decoded and failed video with its reason."""
    redecoded = report.get("redecoded", {})
    why = [reason.split(":", 1)[0] for reason in redecoded.values()]
    kinds = ", ".join(f"{why.count(k)} {k}" for k in ("damaged", "source changed", "unverifiable"))
    print(f"[darknb] {what}: {report['written']} written, {report['reused']} reused, "
          f"{len(redecoded)} re-decoded ({kinds}), {len(report['failed'])} failed "
          f"({report['seconds']:.1f} s)")
    for rel, reason in redecoded.items():
        print(f"  re-decoded: {rel}: {reason}")
    for rel, reason in report["failed"].items():
        print(f"  failed: {rel}: {reason}")


def main(argv=None) -> int:
    from darknb.config import CACHE_FORMATS  # no torch: --help stays quick

    parser = argparse.ArgumentParser(prog="darknb", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute the report notebooks into reports/<run>/")
    run.add_argument("--run", default="demo", help="run name (folder under reports/)")
    run.add_argument("--preset", default="demo", help="parameter preset: demo | paper | none")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a parameter")
    run.add_argument("--notebooks", default=None, help="comma-separated, e.g. 01_teacher,02_student")
    run.add_argument("--no-html", action="store_true", help="skip the HTML export")
    run.add_argument("--reports-dir", default="reports", help="where run folders go (default reports/)")
    run.add_argument("--rerun", action="store_true",
                     help="train every stage of these notebooks again (resume=False) instead of "
                          "reusing finished ones; the dataset and its frame cache are kept")

    synth = sub.add_parser("synth", help="render the synthetic set (well-lit pre-training + dark "
                                         "target) and its frame cache")
    synth.add_argument("--root", default="data/synthetic")
    synth.add_argument("--cache-dir", default=None, help="default: <root's parent>/cache/<root's name>")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--format", default="npy", choices=CACHE_FORMATS,
                       help="frame cache format (cache_format): see `prepare --help`")

    prep = sub.add_parser("prepare", help="decode a dataset's train+test videos once into a frame cache")
    prep.add_argument("--dataset", default="arid", help="arid | arid1.5 | arid1.1 | dark48 | folder")
    prep.add_argument("--root", required=True, help="dataset root (videos + list_cvt/; folder: "
                                                    "<root>/<Class>/<video>)")
    for subset in ("train", "test", "val"):
        prep.add_argument(f"--{subset}-list", default="",
                          help=f"the {subset} list file instead of the dataset's own")
    prep.add_argument("--cache-dir", default="auto", help="default auto: <root's parent>/cache/<root's name>")
    prep.add_argument("--split", type=int, default=1)
    prep.add_argument("--short-side", type=int, default=None, help="default 128 (DarkLight's 170x128)")
    prep.add_argument("--format", default="npy", choices=CACHE_FORMATS,
                      help="frame cache format (cache_format; cache_dir=auto gives each its own): "
                           "npy raw | zstd lossless, 2.5x smaller, the choice for ARID-size data | "
                           "png lossless, slower | jpeg LOSSY q95, 16x smaller (README, 'Cache')")
    prep.add_argument("--on-error", default="raise", choices=["raise", "skip"],
                      help="a missing, empty, corrupt or truncated video: stop (raise) or list it "
                           "and go on (skip; pass on_error=skip to training too)")
    prep.add_argument("--enhanced-cache-dir", default=None,
                      help="also write an ENHANCED cache here: --enhancer on native-resolution frames, "
                           "then the same resize (teacher_input=enhanced_cache, enhanced_cache_dir=...)")
    prep.add_argument("--enhancer", default="zerodce", help="zerodce | zerodce++ | gamma | none")
    prep.add_argument("--enhancer-checkpoint", default="",
                      help="Zero-DCE(++) weights: the original Epoch99.pth or a run's zerodce_fitted.pth")
    prep.add_argument("--enhancer-scale-factor", type=int, default=12, help="Zero-DCE++ only")

    train = sub.add_parser("train", help="train one stage outside the notebooks (several processes: "
                                         "`torchrun --nproc_per_node N -m darknb train ...`)")
    train.add_argument("stage", choices=["pretrain", "teacher", "student", "student_no_kd",
                                         "student_selfkd", "teacher_datanorm",
                                         "student_no_kd_datanorm", "student_datanorm"],
                       help="pretrain: the backbone on the well-lit set; the others: one arm of the "
                            "study for --set seed=N (stage <arm>_s<N>)")
    train.add_argument("--preset", default="demo", help="demo | paper | none")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a RunConfig field")

    pred = sub.add_parser("predict", help="classify videos with a trained checkpoint (top-5 classes)")
    pred.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (MP4, AVI, ...)")
    pred.add_argument("--checkpoint", required=True,
                      help="a run's final checkpoint: reports/<run>/student_s<N>.ckpt (raw input) "
                           "or reports/<run>/teacher_s<N>.ckpt (enhancer + classifier)")
    pred.add_argument("--protocol", default="1x1", help="views, clips x crops: 1x1 (centre) | 10x3 ...")
    pred.add_argument("--top-k", type=int, default=5)
    pred.add_argument("--device", default=None, help="cpu | cuda | cuda:1 (default: GPU if any)")
    pred.add_argument("--json", action="store_true", help="print the results as JSON")
    readme = sub.add_parser("readme", help="write a run's measured numbers into README.md "
                                           "(between its darknb:demo-results markers)")
    readme.add_argument("--run", default="demo", help="run name (folder under reports/)")
    readme.add_argument("--reports-dir", default="reports")
    readme.add_argument("--readme", default="README.md")
    readme.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when the README is out of date")

    sub.add_parser("models", help="list the registered models (name and what it is)")

    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            from darknb.pipeline import run_pipeline

            notebooks = args.notebooks.split(",") if args.notebooks else None
            preset = None if args.preset == "none" else args.preset
            out = run_pipeline(args.run, preset=preset, params=_parse_sets(args.set),
                               notebooks=notebooks, html=not args.no_html,
                               reports_dir=args.reports_dir, rerun=args.rerun)
            print(f"[darknb] reports written to {out}")
        elif args.command == "synth":
            from darknb.config import resolve_path
            from darknb.data.synthetic import make_synthetic_dark

            print(make_synthetic_dark(resolve_path(args.root), seed=args.seed, cache_format=args.format,
                                      cache_dir=resolve_path(args.cache_dir) if args.cache_dir else None))
        elif args.command == "prepare":
            from darknb.config import RunConfig
            from darknb.data.splits import prepare_cache

            cfg = RunConfig(dataset=args.dataset, data_root=args.root, cache_dir=args.cache_dir,
                            split=args.split, on_error=args.on_error, train_list=args.train_list,
                            test_list=args.test_list, val_list=args.val_list,
                            cache_format=args.format)
            report = prepare_cache(cfg, short_side=args.short_side, progress=True)
            _print_prepared(f"cache ({report['format']}{'' if report['lossless'] else ', LOSSY'}) in "
                            f"{cfg.frame_cache}", report)
            if args.enhanced_cache_dir:
                from darknb.engine.build import enhancer_kwargs
                from darknb.engine.teacher import ensure_enhanced_cache
                from darknb.models.enhancers import build_enhancer

                if args.enhancer in ("zerodce", "zerodce++") and not args.enhancer_checkpoint:
                    raise DarknbError(f"--enhancer {args.enhancer} needs --enhancer-checkpoint (or "
                                      "let `train teacher` fit it and write the enhanced cache)")
                cfg = cfg.replace(enhancer=args.enhancer, enhancer_scale_factor=args.enhancer_scale_factor,
                                  enhanced_cache_dir=args.enhanced_cache_dir)
                enhancer = build_enhancer(args.enhancer, checkpoint=args.enhancer_checkpoint or None,
                                          **enhancer_kwargs(cfg))
                report = ensure_enhanced_cache(cfg, enhancer)
                print(f"[darknb] enhanced cache ({args.enhancer}, before resizing) in "
                      f"{cfg.enhanced_cache_dir}: {report['written']} written, {report['reused']} "
                      f"reused ({report['seconds']:.1f} s)")
        elif args.command == "train":
            from darknb.config import NOTEBOOK_ONLY, RunConfig, defaults, preset_params
            from darknb.pipeline import check_run_inputs

            base = preset_params(args.preset)  # a bad preset or parameter fails before torch loads
            overrides = _parse_sets(args.set)
            unknown = set(overrides) - set(defaults())
            if unknown:
                raise DarknbError(f"unknown parameter(s) {sorted(unknown)}")
            params = {**NOTEBOOK_ONLY, **base, **overrides}
            cfg = RunConfig.from_params(params)
            check_run_inputs(cfg)
            with contextlib.ExitStack() as stack:
                # one writer per run folder: under torchrun only the first process takes the lock
                # (the others write nothing but wait for it); a refusal stops the whole group
                if os.environ.get("RANK", "0") == "0":
                    from darknb.files import RunLock

                    lock = stack.enter_context(RunLock(cfg.output_dir))
                    if lock.note:
                        print(f"[darknb] {lock.note}")
                _train(args.stage, cfg, params)
        elif args.command == "predict":
            import json

            from darknb.engine.inference import format_prediction, load_classifier, predict

            classifier = load_classifier(args.checkpoint, device=args.device)
            results = predict(args.videos, classifier, protocol=args.protocol, top_k=args.top_k)
            if args.json:
                print(json.dumps(results, indent=1))
            else:
                print(f"[darknb] {classifier}")
                print("\n".join(format_prediction(r) for r in results))
        elif args.command == "readme":
            import shutil
            import tempfile
            from pathlib import Path

            from darknb.config import resolve_path
            from darknb.files import RunDir
            from darknb.report.tables import update_readme

            summary = RunDir(resolve_path(Path(args.reports_dir) / args.run)).summary
            if not summary.is_file():
                raise DarknbError(f"{summary} not found: run `python -m darknb run --run {args.run}` first")
            readme_path = Path(resolve_path(args.readme))
            if args.check:
                with tempfile.TemporaryDirectory() as tmp:
                    copy = Path(tmp) / readme_path.name
                    shutil.copy(readme_path, copy)
                    _, changed = update_readme(summary, copy)
                print(f"[darknb] {readme_path} is {'out of date' if changed else 'up to date'} "
                      f"with {summary}")
                return 1 if changed else 0
            block, changed = update_readme(summary, readme_path)
            print(block)
            print(f"[darknb] {readme_path} {'updated' if changed else 'already up to date'} from {summary}")
        elif args.command == "models":
            from darknb.models.names import MODEL_NAMES  # a static list: no torch to list names

            width = max(map(len, MODEL_NAMES))
            print("\n".join(f"{name:<{width}}  {what}" for name, what in MODEL_NAMES.items()))
    except DarknbError as err:
        print(f"darknb: error: {err}", file=sys.stderr)
        return 2
    return 0


def _train(stage: str, cfg, params: dict) -> None:
    """``python -m darknb train STAGE``: one stage, on this process and its torchrun peers."""
    from darknb.data.splits import ensure_dataset  # torch loads once the inputs are checked
    from darknb.engine.build import process_state

    state = process_state()  # one of several processes under torchrun / accelerate launch
    with state.main_process_first():  # the main process makes the data, the others reuse it
        ensure_dataset(cfg)
    main = state.is_main_process  # every process holds the same result; one prints
    if stage == "pretrain":
        from darknb.engine.pretrain import pretrain_backbone

        result = pretrain_backbone(cfg, epochs=params["pretrain_epochs"], lr=params["pretrain_lr"],
                                   progress=main)
        if main:
            print(f"[darknb] pretrain: validation top-1 {result['metrics']['top1']:.2f} % on "
                  f"the well-lit set; backbone {result['backbone']}")
    else:
        from darknb.study.arms import arm_name, train_arm

        result = train_arm(cfg, stage, progress=main)
        if main:
            print(f"[darknb] {arm_name(stage, cfg.seed)}: top-1 "
                  f"{result['metrics']['top1']:.2f} %, top-5 {result['metrics']['top5']:.2f} % "
                  f"(measured, {cfg.dataset}, epoch {result['selection']['epoch']} chosen on "
                  f"{result['selection']['selected_on']}, {result['processes']} process(es), "
                  f"test views {result['metrics']['protocol']['views']})")
