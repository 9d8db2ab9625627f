"""How much the study's conclusions move with the pre-trained backbone (issue 16, item 5).

The study's seeds vary fine-tuning only: every seed starts from the same pre-trained backbone, so
backbone-to-backbone variation is in no interval. This script compares two finished runs that
differ only in ``pretrain_seed`` (01_pretrain) and writes what moved into
``darknb/study/backbone_variation.json``, which every later ``summary.json`` of the demo quotes
as ``backbone_variation``:

    python -m darknb run --run demo                                   # pretrain_seed=0
    python -m darknb run --run demo_pretrain1 --set pretrain_seed=1
    python benchmarks/backbone_variation.py reports/demo reports/demo_pretrain1

Per arm: test top-1 (mean over seeds) under each backbone; per stated comparison: the mean
difference, its Holm p and verdict under each, the change, and whether sign and verdict held.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from darknb.files import read_json, write_json  # noqa: E402

OUT = ROOT / "darknb" / "study" / "backbone_variation.json"
# the settings it applies to: a run with others does not quote it
SETTINGS = ("dataset", "model", "num_frames", "size", "sampling", "epochs", "batch_size", "lr",
            "lr_schedule", "warmup_epochs", "recipe", "alpha", "beta", "temperature", "enhancer",
            "teacher_input")


def compare(a: dict, b: dict, *, alpha: float = 0.05) -> dict:
    """``a`` and ``b``: two summary.json (pretrain seeds 0 and 1)."""
    seed_a = a["run"]["params"].get("pretrain_seed", 0)
    seed_b = b["run"]["params"].get("pretrain_seed", 0)
    by = {(c["a"], c["b"]): c for c in b["comparisons"]}
    rows = []
    for c in a["comparisons"]:
        d = by.get((c["a"], c["b"]))
        if d is None:
            continue
        sig_a, sig_b = c["p_holm"] < alpha, d["p_holm"] < alpha
        rows.append({"a": c["a"], "b": c["b"], "mean_diff": [c["mean_diff"], d["mean_diff"]],
                     "p_holm": [c["p_holm"], d["p_holm"]], "significant": [sig_a, sig_b],
                     "delta": d["mean_diff"] - c["mean_diff"],
                     "same_sign": (c["mean_diff"] > 0) == (d["mean_diff"] > 0),
                     "same_verdict": (c["mean_diff"] > 0) == (d["mean_diff"] > 0) and sig_a == sig_b})
    arms = {name: {"top1": [a[name]["top1"], b[name]["top1"]], "delta": b[name]["top1"] - a[name]["top1"]}
            for name in a.get("input_norms") and [k for k in a if isinstance(a.get(k), dict) and "top1" in a[k]
                                                    and k in b] or []}
    cfg = a["teacher"]["config"]
    settings = {k: cfg[k] for k in SETTINGS}
    return {"what": f"pre-training seeds {seed_a} and {seed_b}, everything else as run",
            "settings": settings,
            "applies_to": "the demo's synthetic miniature at its default settings",
            "pretrain_seeds": [seed_a, seed_b], "seeds": a.get("seeds"),
            "commit": (a["run"]["provenance"].get("git") or {}).get("sha"),
            "device": a["run"]["provenance"].get("device"),
            "torch_threads": a["run"]["provenance"].get("torch_threads"),
            "date": datetime.date.today().isoformat(),
            "zero_shot": [a.get("zero_shot"), b.get("zero_shot")],
            "arms": arms, "comparisons": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a", help="run folder with pretrain_seed 0 (its summary.json)")
    parser.add_argument("run_b", help="run folder with another pretrain_seed")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    result = compare(read_json(Path(args.run_a) / "summary.json"), read_json(Path(args.run_b) / "summary.json"))
    write_json(result, args.out)
    for r in result["comparisons"]:
        print(f"{r['a']:>24} - {r['b']:<24} {r['mean_diff'][0]:+6.1f} -> {r['mean_diff'][1]:+6.1f} "
              f"(delta {r['delta']:+.1f}); Holm p {r['p_holm'][0]:.3g} -> {r['p_holm'][1]:.3g}; "
              f"same verdict: {r['same_verdict']}")
    print(json.dumps(result["arms"], indent=1))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
