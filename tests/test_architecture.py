"""The rules docs/architecture.md states, checked on the code as it is: which room imports which.

Every module of the project's rooms is parsed (not imported) and its imports,
``TYPE_CHECKING`` ones included, are held against the table below, which is the
table of docs/architecture.md. A failing test names the module and the import.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOMS = ("core", "text", "ingest", "retrieval", "llm", "app", "team", "evaluation", "client", "cli", "server", "ui")
STAGES = {"core", "text", "ingest", "retrieval", "llm"}
ALLOWED = {
    "core": set(),
    "text": {"core"},
    "ingest": {"core", "text"},
    "retrieval": {"core", "text"},
    "llm": {"core", "text"},
    "app": STAGES,
    "team": STAGES | {"app"},
    "evaluation": STAGES | {"app"},
    "client": {"core"},
    "cli": STAGES | {"app", "team", "evaluation", "client"},
    "server": STAGES | {"app", "team"},
    "ui": {"core", "client", "app", "team"},
}
# The UI is a client of the service: of the rooms that load models and indexes it may read the settings and
# the front key's file, nothing else (test_the_ui_loads_no_model checks what that imports).
UI_MAY_IMPORT = ("core", "client", "ui", "app.settings", "team.front_key")
# A library imported only where it is wrapped (rule 6): module prefix -> the files that may import it.
WRAPPED = {
    "jieba": ("text/keywords.py",),
    "llama_cpp": ("llm/",),
    "faiss": ("retrieval/vector_index.py",),
    "pymilvus": ("retrieval/milvus_client.py",),
    "milvus_lite": ("retrieval/milvus_client.py",),
    "ray": ("app/distributed.py",),
    "fastapi": ("server/",),
    "uvicorn": ("server/",),
    "streamlit": ("ui/",),
}
MAX_LINES = 450


def _modules() -> list[Path]:
    return sorted(path for room in ROOMS for path in (REPO / room).rglob("*.py"))


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level name) of every absolute import of the module, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def test_each_room_imports_only_the_rooms_below_it():
    broken = []
    for path in _modules():
        room = path.relative_to(REPO).parts[0]
        for line, name in _imports(path):
            if name in ROOMS and name != room and name not in ALLOWED[room]:
                broken.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not broken, "imports against docs/architecture.md:\n" + "\n".join(broken)


def _modules_imported(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_the_ui_imports_only_the_client_the_settings_and_the_front_key():
    broken = []
    for path in sorted((REPO / "ui").rglob("*.py")):
        for line, module in _modules_imported(path):
            if module.split(".")[0] in ROOMS and not module.startswith(UI_MAY_IMPORT):
                broken.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert not broken, "the UI is a client of the service:\n" + "\n".join(broken)


def test_the_ui_loads_no_model():
    """What the UI's modules import, imported in a fresh interpreter: no torch, llama.cpp, FAISS or Milvus."""
    import subprocess

    modules = sorted({module for path in (REPO / "ui").rglob("*.py") for _, module in _modules_imported(path)
                      if module.split(".")[0] in ROOMS and not module.startswith("ui")})
    probe = ("import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
             + "print(sorted(m for m in ('torch', 'llama_cpp', 'faiss', 'pymilvus', 'sentence_transformers', "
               "'onnxruntime', 'ray') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]", loaded.stdout


def test_the_stages_are_siblings_and_the_edges_never_import_each_other():
    for stage in ("ingest", "retrieval", "llm"):
        assert not ALLOWED[stage] & {"ingest", "retrieval", "llm"}
    for edge in ("cli", "server", "ui"):
        assert not ALLOWED[edge] & {"cli", "server", "ui"}


def test_every_library_the_code_imports_is_declared():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {re.split(r"[\s<>=!~\[;]", spec, maxsplit=1)[0].lower().replace("_", "-")
                for spec in project["dependencies"]}
    distributions = importlib.metadata.packages_distributions()
    missing = set()
    for path in _modules():
        for _, name in _imports(path):
            if name in ROOMS or name in sys.stdlib_module_names or name == "__future__":
                continue
            owners = {d.lower().replace("_", "-") for d in distributions.get(name, [name])}
            if not owners & declared:
                missing.add(f"{name} (from {path.relative_to(REPO)}; distribution {', '.join(sorted(owners))})")
    assert not missing, "imported but not declared in pyproject.toml:\n" + "\n".join(sorted(missing))


def test_libraries_are_imported_only_in_the_modules_that_wrap_them():
    broken = []
    for path in _modules():
        relative = path.relative_to(REPO).as_posix()
        for line, name in _imports(path):
            places = WRAPPED.get(name)
            if places and not relative.startswith(places):
                broken.append(f"{relative}:{line} imports {name} (only {', '.join(places)} may)")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_module_opens_with_a_docstring_and_stays_short(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), "every module says what it does and what it leaves out"
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{lines} lines: a module past ~400 lines is two modules"


def test_the_architecture_page_names_every_room():
    page = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for room in ROOMS:
        assert f"`{room}/`" in page, room
        assert f"`{room}/`" in readme, f"README's table of where the code lives lacks {room}/"
    assert "`benchmarks/`" in readme


def test_the_table_of_todays_figures_is_the_rendering_of_figures_json():
    """docs/benchmarks.md opens with today's figures; they come from docs/figures.json, and a default changed
    since a figure was measured marks it stale (benchmarks/today_table.py)."""
    from benchmarks.today_table import check

    assert check() == []


def test_every_room_is_installed():
    """A room missing from pyproject's packages works in the repository (the current folder is on the path) and
    breaks `kb` installed from a fresh clone: it happened to `client/`."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = set(project["tool"]["setuptools"]["packages"])
    assert set(ROOMS) <= packages, sorted(set(ROOMS) - packages)
