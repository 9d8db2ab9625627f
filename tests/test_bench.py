"""benchmarks/bench_train.py --smoke runs (seconds on a CPU) and reports every section."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"


def test_bench_train_smoke(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_train", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    bench.main(["--smoke", "--json", str(out)])
    report = json.loads(out.read_text())
    printed = capsys.readouterr().out
    for title in ("peak (matmul)", "model only", "loader", "end to end", "inference", "ratios"):
        assert f"== {title}" in printed
    assert report["peak"]["tflops"] > 0 and report["gflops_forward_per_clip"] > 0
    assert all(r["clips_per_s"] > 0 and 0 < r["mfu"] for r in report["model_only"])
    assert {r["path"].split(":")[0] for r in report["loader"]} >= {"old", "new"}
    assert report["end_to_end"][0]["clips_per_s"] > 0
    assert {"student vit_bert_tiny", "Zero-DCE alone, fp32"} <= {r["model"] for r in report["inference"]}
    assert [r["ratio"].split(",")[0] for r in report["ratios"]][:2] == [
        "end-to-end / model-only", "loader new / old"]
