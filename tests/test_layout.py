"""The package's folders are its architecture: imports go one way (lower folders never import higher
ones) and no module imports itself back through others, lazy imports included.

    top level   config errors files registry provenance paper   import no subpackage
    data/       imports the top level (and data/)
    models/     imports the top level (and models/); never data/
    engine/     imports data/, models/
    study/      may import the engine; never report/
    report/     reads dicts and JSON: data/ and models/ to show frames, never the engine or study
    pipeline cli __init__ __main__                              may import anything
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "darknb"

BASE = {"config", "errors", "files", "registry", "provenance", "paper"}
TOP = {"pipeline", "cli", "__init__", "__main__"}
ALLOWED = {  # layer -> the layers it may import
    "base": {"base"},
    "data": {"base", "data"},
    "models": {"base", "models"},
    "engine": {"base", "data", "models", "engine"},
    "study": {"base", "data", "models", "engine", "study"},
    "report": {"base", "data", "models", "report"},
    "top": {"base", "data", "models", "engine", "study", "report", "top"},
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 2:
        parts = parts[:-1]
    return ".".join(parts)


def layer(module: str) -> str:
    parts = module.split(".")[1:]  # drop "darknb"
    if not parts or parts[0] in TOP:
        return "top"
    if parts[0] in BASE:
        return "base"
    return parts[0]


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the darknb modules it imports (top-level and lazy imports alike)."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # "from darknb.data import video" imports the module darknb.data.video
                names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                         else node.module for a in node.names]
            else:
                continue
            targets |= {n for n in names if n == "darknb" or n.startswith("darknb.")}
        # importing darknb.x.y runs darknb/x/__init__ first: a package is not an import target
        graph[name] = {t for t in targets if t in modules and t != name and
                       not (modules[t].name == "__init__.py")}
    return graph


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} ({layer(a)}) imports {b} ({layer(b)})" for a, targets in graph.items()
                  for b in targets if layer(b) not in ALLOWED[layer(a)])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_imports_go_one_way_and_never_in_a_circle():
    graph = import_graph()
    assert len(graph) > 30 and "darknb.engine.loop" in graph
    assert layer_violations(graph) == []
    assert cycles(graph) == []


@pytest.mark.parametrize("module, line, expected", [
    ("data/lists.py", "from darknb.engine.loop import fit", "darknb.data.lists (data) imports darknb.engine.loop (engine)"),
    ("models/classifiers.py", "from darknb.data.video import probe", "darknb.models.classifiers (models) imports darknb.data.video (data)"),
    ("config.py", "    from darknb.data.datasets import list_datasets  # lazy", "darknb.config (base) imports darknb.data.datasets (data)"),
    ("study/arms.py", "from darknb.report.tables import study_findings", "darknb.study.arms (study) imports darknb.report.tables (report)"),
    ("report/tables.py", "from darknb.study import arms", "darknb.report.tables (report) imports darknb.study.arms (study)"),
])
def test_the_check_fails_on_a_planted_upward_import(tmp_path, module, line, expected):
    copy = tmp_path / "darknb"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    text = target.read_text()
    if line.startswith("    "):  # a lazy import inside a function
        text += f"\n\ndef _planted():\n{line}\n"
    else:
        text = text.replace("from __future__ import annotations\n",
                            f"from __future__ import annotations\n\n{line}\n", 1)
    target.write_text(text)
    assert expected in layer_violations(import_graph(copy))


def test_the_check_fails_on_a_planted_cycle(tmp_path):
    copy = tmp_path / "darknb"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    # data.lists <- data.framecache already; plant lists -> framecache
    target = copy / "data" / "lists.py"
    target.write_text(target.read_text() + "\n\ndef _planted():\n    from darknb.data.framecache import cache_file\n")
    assert ["darknb.data.framecache", "darknb.data.lists"] in cycles(import_graph(copy))


def test_the_facade_names_every_public_entry_point():
    """What the README's library block shows is importable from darknb itself, lazily."""
    import subprocess
    import sys

    names = ["predict", "create_model", "list_models", "build_enhancer", "ZeroDCE", "ZeroDCEPP",
             "kd_loss", "make_synthetic_dark", "VideoListDataset", "build_datasets", "count_flops",
             "frame_comparison", "train_teacher", "train_student", "evaluate"]
    light = subprocess.run([sys.executable, "-c", "import sys, darknb; print('torch' in sys.modules)"],
                           capture_output=True, text=True, check=True)
    assert light.stdout.strip() == "False"  # import darknb stays light
    import darknb

    for name in names:
        assert callable(getattr(darknb, name)), name
    readme = (PACKAGE.parent / "README.md").read_text()
    block = readme.split("## The library", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    exec(compile(block.split("darknb.predict(")[0], "README library block", "exec"), {})
