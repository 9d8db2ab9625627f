"""The runner and the newcomer's path: every parameter checked before any notebook runs, the run
folder, one rule for relative paths, HTML reports without code, the README's pointers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from darknb.cli import main as cli_main
from darknb.config import REPO_ROOT, RunConfig, resolve_path
from darknb.errors import ConfigError
from darknb.pipeline import export_html, run_pipeline


@pytest.mark.parametrize("params, message", [
    ({"epochs": "two"}, r"'epochs' must be int"),              # declared by 01..04, not by 00
    ({"n_boot": "many"}, r"'n_boot' must be int"),             # declared by 04 only
    ({"lr": -1.0}, r"invalid value -1.0 for parameter 'lr'"),  # a range, not a type
    ({"dataset": "arid", "data_root": "/nonexistent/ARID"}, r"data_root .*/nonexistent/ARID"),
    ({"model": "vit_huge"}, r"unknown model 'vit_huge'"),
    ({"output_dir": "elsewhere"}, r"--run NAME"),
])
def test_a_run_that_cannot_start_fails_before_any_notebook_and_leaves_nothing(tmp_path, params,
                                                                              message):
    """`run --set epochs=two` ran notebook 00 and then failed inside 01 with a papermill traceback,
    leaving a partial report folder; `--set output_dir=...` was silently ignored."""
    with pytest.raises(ConfigError, match=message):
        run_pipeline("never", preset=None, params=params, reports_dir=tmp_path / "reports")
    assert not (tmp_path / "reports").exists()


def test_the_cli_names_a_bad_preset_or_parameter(tmp_path, capsys):
    assert cli_main(["run", "--preset", "demoo", "--reports-dir", str(tmp_path)]) == 2
    assert "unknown preset 'demoo'" in capsys.readouterr().err
    assert cli_main(["run", "--set", "epochs=two", "--reports-dir", str(tmp_path)]) == 2
    assert "'epochs' must be int" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_relative_paths_resolve_against_the_project_folder_from_anywhere(tmp_path, monkeypatch):
    """`run` resolved against the repository, `train`/`prepare` and a notebook opened in JupyterLab
    (cwd notebooks/) against the current folder. Now: the project folder, everywhere."""
    for cwd in (tmp_path, REPO_ROOT / "notebooks"):
        monkeypatch.chdir(cwd)
        cfg = RunConfig.from_params({"data_root": "data/synthetic", "output_dir": "reports/demo"})
        assert cfg.data_root == str(REPO_ROOT / "data" / "synthetic")
        assert cfg.output_dir == str(REPO_ROOT / "reports" / "demo")
        assert RunConfig(cache_dir="", pretrained="hub").cache_dir == ""
        assert RunConfig(pretrained="hub").pretrained == "hub"
        assert resolve_path(tmp_path / "x") == str(tmp_path / "x")  # absolute: as given


def test_a_checkpoint_saved_with_relative_paths_still_resumes():
    from darknb.engine.loop import _check_resumable

    cfg = RunConfig()
    legacy = {**cfg.to_dict(), "data_root": "data/synthetic", "cache_dir": "data/cache/synthetic"}
    _check_resumable({"config": legacy}, cfg, Path("x.ckpt"))  # no error
    with pytest.raises(Exception, match="data_root"):
        _check_resumable({"config": {**legacy, "data_root": "data/other"}}, cfg, Path("x.ckpt"))


def _notebook(tmp_path) -> Path:
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    nb = new_notebook(cells=[
        new_markdown_cell("# The report title"),
        new_code_cell("secret_code_one = 1", outputs=[new_output("stream", text="visible output one")]),
        new_code_cell("secret_code_two = 2", metadata={"tags": ["hide-input"]},
                      outputs=[new_output("stream", text="visible output two")]),
        new_code_cell("secret_code_three = 3", metadata={"tags": ["remove-cell"]},
                      outputs=[new_output("stream", text="removed output three")]),
    ])
    path = tmp_path / "report.ipynb"
    nbformat.write(nb, path)
    return path


def test_html_reports_hide_code_and_the_notebook_keeps_it(tmp_path):
    path = _notebook(tmp_path)
    before = path.read_text()
    html = export_html(path).read_text()
    assert "The report title" in html and "visible output one" in html and "visible output two" in html
    assert "secret_code" not in html and "removed output three" not in html
    assert path.read_text() == before  # the executed notebook keeps its code
    shown = export_html(path, hide_code=False).read_text()
    assert "secret_code_one" in shown and "secret_code_two" not in shown
    assert "secret_code_three" not in shown


def test_every_readme_section_an_error_points_to_exists():
    readme = (REPO_ROOT / "README.md").read_text()
    headings = {m.group(1).strip() for m in re.finditer(r"^#+\s+(.*)$", readme, re.M)}
    pointers = set()
    for path in (REPO_ROOT / "darknb").glob("*.py"):
        pointers |= set(re.findall(r"README section '([^']+)'", path.read_text()))
    assert pointers, "no README pointer found (the test would prove nothing)"
    assert pointers <= headings, pointers - headings


def test_the_readme_explains_the_notebooks_and_the_reports():
    readme = (REPO_ROOT / "README.md").read_text()
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "make lab" in readme and re.search(r"^lab:", makefile, re.M)
    assert "reports/demo/" in readme and ".html" in readme
    assert "relative to the project folder" in readme
