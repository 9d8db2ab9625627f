import json

import pytest

from darknb.config import (
    PRESETS,
    RunConfig,
    notebook_defaults,
    validate_notebook_params,
    validate_params,
)
from darknb.errors import ConfigError


def test_defaults_are_tiny_and_paper_preset_matches_paper():
    cfg = RunConfig()
    assert cfg.model == "vit_bert_tiny" and cfg.num_frames <= 16 and cfg.size <= 64
    paper = RunConfig.from_params(PRESETS["paper"])
    assert (paper.model, paper.num_frames, paper.size, paper.batch_size, paper.lr, paper.sampling) == (
        "vit_bert", 64, 112, 2, 1e-4, "consecutive")
    assert paper.alpha == paper.beta == 1.0


@pytest.mark.parametrize("field, value", [("lr", -1.0), ("num_frames", 0), ("sampling", "random"),
                                          ("temperature", 0.0), ("on_error", "ignore")])
def test_bad_values_are_rejected_naming_the_parameter(field, value):
    with pytest.raises(ConfigError, match=field):
        RunConfig(**{field: value})


def test_validate_params_rejects_unknown_and_mistyped():
    defaults = {"lr": 0.1, "epochs": 2, "name": "x", "flag": True}
    assert validate_params({"lr": 1}, defaults)["lr"] == 1.0  # int accepted for a float
    with pytest.raises(ConfigError, match="unknown parameter.*'lrr'"):
        validate_params({"lrr": 0.1}, defaults)
    with pytest.raises(ConfigError, match="'epochs' must be int"):
        validate_params({"epochs": "2"}, defaults)
    with pytest.raises(ConfigError, match="'epochs' must be int"):
        validate_params({"epochs": True}, defaults)  # a bool is not an int


def _notebook(tmp_path, source):
    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": source,
                     "outputs": [], "execution_count": None}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    return path


def test_validate_notebook_params_uses_the_parameters_cell(tmp_path):
    path = _notebook(tmp_path, 'lr = 0.001\nepochs = 3\nname = "a"  # comment\n')
    assert notebook_defaults(path) == {"lr": 0.001, "epochs": 3, "name": "a"}
    ns = {"lr": 0.01, "epochs": 3, "name": "b", "In": [], "Out": {}, "_i1": "", "Path": object}
    assert validate_notebook_params(ns, path)["lr"] == 0.01
    with pytest.raises(ConfigError, match="unknown parameter.*'typo'"):
        validate_notebook_params({**ns, "typo": 1}, path)
    with pytest.raises(ConfigError, match="'lr' must be float"):
        validate_notebook_params({**ns, "lr": "fast"}, path)


def test_every_notebook_has_one_parameters_cell_of_literals():
    from darknb.pipeline import available_notebooks

    names = available_notebooks()
    assert names == ["00_explore", "01_pretrain", "02_teacher", "03_student", "04_ablation", "05_comparison"]
    for name in names:
        assert notebook_defaults(name)  # parses, literals only


def test_run_config_from_params_ignores_notebook_only_keys_but_checks_types():
    cfg = RunConfig.from_params({"lr": 0.5, "video_index": 3})
    assert cfg.lr == 0.5
    with pytest.raises(ConfigError, match="'epochs'"):
        RunConfig.from_params({"epochs": 1.5})


def test_every_parameters_cell_agrees_with_the_config_defaults():
    """A default is written once (RunConfig / NOTEBOOK_ONLY); a notebook's parameters cell must
    repeat it exactly: same name, same type, same value."""
    from darknb.config import NOTEBOOK_ONLY, defaults
    from darknb.pipeline import available_notebooks

    expected = defaults()
    for name in available_notebooks():
        for key, value in notebook_defaults(name).items():
            assert key in expected, f"{name}: parameter {key!r} has no default in darknb.config"
            assert type(value) is type(expected[key]), (name, key, value, expected[key])
            assert value == expected[key], f"{name}: {key} = {value!r}, darknb.config says {expected[key]!r}"
    declared = set().union(*(notebook_defaults(n) for n in available_notebooks()))
    assert set(NOTEBOOK_ONLY) <= declared, "a notebook-only knob that no notebook declares"


def test_the_demo_preset_is_the_defaults():
    assert PRESETS["demo"] == {}
    assert RunConfig.from_params(PRESETS["demo"]) == RunConfig()


def test_registries_list_what_they_build():
    from darknb.data.datasets import list_datasets
    from darknb.models.classifiers import list_models
    from darknb.models.enhancers import list_enhancers

    assert {"synthetic", "synthetic_lit", "arid", "arid1.5", "arid1.1", "dark48", "folder"} == set(list_datasets())
    assert {"zerodce", "zerodce++", "gamma", "none"} == set(list_enhancers())
    assert {"vit_bert", "vit_bert_tiny"} <= set(list_models())


def test_every_preset_parameter_is_declared_by_a_notebook():
    """`run --preset paper` used to be refused before any notebook ran: the preset set `tracker`,
    which no notebook declared."""
    from darknb.config import PRESETS
    from darknb.pipeline import notebook_parameters

    for name, params in PRESETS.items():
        per_notebook = notebook_parameters(["02_teacher"], params)  # raises on an undeclared key
        assert per_notebook["02_teacher"].get("tracker", "") == params.get("tracker", ""), name
