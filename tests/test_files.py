"""Atomic writes: a failed write leaves the old file, new files honour the umask, names are central."""

import os

import pytest

from darknb.errors import OutputError
from darknb.files import RunDir, atomic_path, read_json, write_json


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path):
    path = write_json({"a": 1}, tmp_path / "x.json")
    with pytest.raises(OutputError, match="x.json"):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise OSError(28, "No space left on device")
    assert read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_new_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json([], tmp_path / "y.json")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_run_dir_names(tmp_path):
    run = RunDir(tmp_path)
    assert run.checkpoint("teacher").name == "teacher.ckpt"
    assert run.predictions("student").name == "student_predictions.json"
    assert run.fitted_enhancer("zerodce++").name == "zerodcepp_fitted.pth"
    assert run.subdir("ablation").checkpoint("s").parent.name == "ablation"
