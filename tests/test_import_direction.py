"""Dependencies run one way (docs/architecture.md, "Package map"): parsed from the source with `ast`.

- `curator.text_signals` imports no other module of the project: every stage may use it.
- `curator.release` never imports `curator.gate` (the gate writes releases; releases know nothing of checks).
- the trainer never imports `curator.gate` (it reads releases, records and text signals through curator's API).
- curator never imports the trainer.
- stages never import the command layer (`cli`, `cli_support`, `*.command`, `keys_command`).
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMAND_LAYER = ("curator.cli", "curator.cli_support", "curator.keys_command", "trainer.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module (and `module.name`) `path` imports, at any depth of the file (the project imports absolutely)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}:{node.lineno}: relative import (this test reads absolute ones)"
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for top in ("curator", "trainer") for p in sorted((REPO / top).rglob("*.py"))}


def offenders(source: str, target: str) -> list[str]:
    """`module imports name` for each module under `source` importing something under `target`."""
    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")
    return sorted(f"{module} imports {name}" for module, names in graph().items() if under(module, source)
                  for name in names if under(name, target))


def is_command_layer(module: str) -> bool:
    return module in COMMAND_LAYER or module.endswith(".command")


def test_the_import_parser_sees_imports_at_any_depth():
    assert {"curator.release.store", "curator.release.store.verify_release", "polars"} <= \
        imports(REPO / "curator" / "gate" / "checks" / "release_dedup.py")
    assert "curator.gate.check.Row" in imports(REPO / "curator" / "gate" / "checks" / "screening.py")
    assert "uvicorn" in imports(REPO / "curator" / "review" / "command.py")  # imported inside a function


def test_text_signals_import_nothing_of_the_project():
    assert not [n for n in imports(REPO / "curator" / "text_signals.py") if n.split(".")[0] in ("curator", "trainer")]


def test_release_does_not_import_gate():
    assert offenders("curator.release", "curator.gate") == []


def test_trainer_does_not_import_gate_internals():
    assert offenders("trainer", "curator.gate") == []


def test_curator_does_not_import_the_trainer():
    assert offenders("curator", "trainer") == []


def test_stages_do_not_import_the_command_layer():
    found = sorted(f"{module} imports {name}" for module, names in graph().items() if not is_command_layer(module)
                   for name in names if any(name == c or name.startswith(c + ".") for c in COMMAND_LAYER)
                   or (name.endswith(".command") and name.split(".")[0] in ("curator", "trainer")))
    assert found == []
