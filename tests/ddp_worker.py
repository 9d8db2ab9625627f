"""Run by tests/test_ddp.py under ``torchrun --nproc_per_node 2`` (CPU, gloo): every process trains,
resumes and runs the CLI, and records what it did in ``<out>/rank<r>.json`` for the test to check.

    python -m torch.distributed.run --nproc_per_node 2 tests/ddp_worker.py OUT DATA_ROOT
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path

import torch

import darknb.files as files
from darknb.config import RunConfig
from darknb.data.splits import Splits, build_datasets
from darknb.engine.build import build_classifier
from darknb.engine.checkpoint import load_checkpoint
from darknb.engine.loop import fit

out, data_root = Path(sys.argv[1]), sys.argv[2]
rank = int(os.environ["RANK"])
torch.set_num_threads(1)

# Record every file this process writes: all writers go through darknb.files.atomic_path.
writes: list[str] = []
_atomic_path = files.atomic_path


@contextlib.contextmanager
def _recording(path, **kw):
    writes.append(str(path))
    with _atomic_path(path, **kw) as tmp:
        yield tmp


files.atomic_path = _recording


def checksum(model) -> float:
    return float(sum(p.detach().double().sum() for p in model.parameters()))


cfg = RunConfig(data_root=data_root, num_frames=4, size=32, sampling="uniform", batch_size=2,
                epochs=2, save_every=1, seed=0, pretrained="", output_dir=str(out / "full"))
train, val, test = build_datasets(cfg)
record: dict = {"rank": rank, "train": len(train), "val": len(val), "test": len(test)}

# 1. two epochs with validation selection
model = build_classifier(cfg, 3)
full = fit(model, Splits(train, val, test), cfg, name="m", progress=False)
record.update(steps=full["steps"], processes=full["processes"], checksum=checksum(model),
              test_indices=full["metrics"]["indices"], history=full["history"],
              selection=full["selection"], top1=full["metrics"]["top1"])

# 2. the same run interrupted after epoch 1 and resumed by two processes
part = cfg.replace(output_dir=str(out / "part"))
fit(build_classifier(cfg, 3), Splits(train, val, test), part.replace(epochs=1), name="m", progress=False)
resumed = fit(build_classifier(cfg, 3), Splits(train, val, test), part, name="m", progress=False)
record.update(resumed_steps=resumed["steps"], resumed_history=resumed["history"],
              resumed_selection=resumed["selection"], resumed_top1=resumed["metrics"]["top1"])
if rank == 0:
    a, b = (load_checkpoint(Path(d) / "m.ckpt")["model"] for d in (cfg.output_dir, part.output_dir))
    record["resumed_weights_equal"] = all(torch.equal(a[k], b[k]) for k in a)

# 3. the CLI: one process writes and prints
from darknb.cli import main  # noqa: E402

stdout = io.StringIO()
before = len(writes)
with contextlib.redirect_stdout(stdout):
    code = main(["train", "teacher", "--preset", "none", "--set", f"data_root={data_root}",
                 "--set", "num_frames=4", "--set", "size=32", "--set", "sampling=uniform",
                 "--set", "batch_size=2", "--set", "epochs=1", "--set", "enhancer=gamma",
                 "--set", "pretrained=", "--set", f"output_dir={out / 'cli'}"])
record.update(cli_code=code, cli_stdout=stdout.getvalue(), cli_writes=writes[before:],
              writes=writes)
(out / f"rank{rank}.json").write_text(json.dumps(record))
