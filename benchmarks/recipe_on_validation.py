"""Compare fine-tuning recipes on the VALIDATION split (how the demo's LP-FT was chosen).

Trains study arms for several seeds from an existing run's pre-trained backbone (and fitted
enhancer), each recipe in a scratch folder of its own, and prints validation (and, for the
record, test) top-1, mean ± sd over seeds. Choose on validation; test is never looked at for the
choice.

    python -m darknb run --notebooks 00_explore,01_pretrain          # reports/demo: backbone, enhancer
    python benchmarks/recipe_on_validation.py --run reports/demo --arms student_no_kd,teacher \\
        --seeds 0,1,2,3,4,5 --recipes ft,lp-ft
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from darknb.config import RunConfig  # noqa: E402
from darknb.engine.jobs import Task, run_tasks  # noqa: E402
from darknb.study.arms import prepare_teachers, train_arm  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="reports/demo", help="a run folder with pretrained_backbone.pth")
    parser.add_argument("--arms", default="student_no_kd,teacher")
    parser.add_argument("--seeds", default="0,1,2,3,4,5")
    parser.add_argument("--recipes", default="ft,lp-ft")
    parser.add_argument("--jobs", type=int, default=0)
    args = parser.parse_args(argv)
    run, seeds, arms = Path(args.run), [int(s) for s in args.seeds.split(",")], args.arms.split(",")
    for recipe in args.recipes.split(","):
        with tempfile.TemporaryDirectory(prefix=f"recipe-{recipe}-") as tmp:
            for name in ("pretrained_backbone.pth", "pretrained_backbone.json", "zerodce_fitted.pth",
                         "zerodce_fitted.json"):
                if (run / name).is_file():
                    shutil.copy(run / name, Path(tmp) / name)
            cfg = RunConfig(output_dir=tmp, recipe=recipe)
            if any(a.startswith("teacher") for a in arms):
                prepare_teachers(cfg)
            start = time.perf_counter()
            done = run_tasks([Task((a, s), train_arm, (cfg.replace(seed=s), a)) for a in arms
                              for s in seeds], jobs=args.jobs)
            print(f"recipe {recipe} ({time.perf_counter() - start:.0f} s)")
            for arm in arms:
                val = [done[(arm, s)]["selection"]["val_top1"] for s in seeds]
                test = [done[(arm, s)]["metrics"]["top1"] for s in seeds]
                print(f"  {arm:24s} validation {np.mean(val):5.1f} ± {np.std(val, ddof=1):4.1f} "
                      f"(min {min(val):.1f})   test {np.mean(test):5.1f} ± {np.std(test, ddof=1):4.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
