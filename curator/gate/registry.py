"""Which checks the gate runs, in what order: one registry for built-in checks and plug-ins.

Each built-in check is one `CheckEntry`: whether the spec switches it on, and where its class is (`module:Class`
under `curator.gate.checks`, imported only when the spec enables it: a gate without teacher checks never loads
their client library, openai), which every check builds the same way,
`from_spec(spec, context)` (None: nothing to check against, e.g. no earlier release); one check per file under
`curator/gate/checks/`. Order matters: each check sees only what earlier checks kept. Consistency checks
(verifiers, self-consistency, judge) run before deduplication, so the keeper of a duplicate cluster is a row that
passed them and carries their scores.

Plug-ins: a package declares an entry point in the group `instruct_curator.gate_checks` whose object
has `from_spec(spec, context, params) -> Check`; the spec names it with its parameters under
`gate.plugins` (`{my_check: {param: value}}`), and it runs after the built-in row checks, before
screening. A plug-in named in the spec but not installed is an error naming the group.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Callable, Protocol

from curator.errors import CuratorError
from curator.gate.check import Check, GateContext
from curator.spec import Spec

PLUGIN_GROUP = "instruct_curator.gate_checks"


class BuildableCheck(Protocol):
    name: str

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext) -> Check | None: ...


@dataclass(frozen=True)
class CheckEntry:
    enabled: Callable[[Spec], bool]
    check: str  # `module:Class`, the module under `curator.gate.checks`

    def load(self) -> type[BuildableCheck]:
        module, name = self.check.split(":")
        return getattr(import_module(f"curator.gate.checks.{module}"), name)


def shipped_suites() -> tuple[Path, ...]:
    """The evaluation suites shipped with the project (`trainer/suites/*.jsonl`), found as package data
    without importing the trainer (or torch); () where the trainer package is not installed."""
    found = find_spec("trainer")
    locations = found.submodule_search_locations if found is not None else None
    return tuple(sorted(p for loc in locations or () for p in Path(loc, "suites").glob("*.jsonl")))


def plugin_checks(spec: Spec, context: GateContext) -> list[Check]:
    """The plug-in checks the spec names, built with their parameters, in the spec's order."""
    wanted: dict[str, dict[str, Any]] = dict(spec.gate.plugins)
    if not wanted:
        return []
    found = {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise CuratorError(f"gate.plugins: no installed check named {', '.join(missing)} "
                           f"(entry point group {PLUGIN_GROUP}; installed: {', '.join(sorted(found)) or 'none'})")
    return [found[name].load().from_spec(spec, context, params) for name, params in wanted.items()]


def build_from(entries: list[CheckEntry], spec: Spec, context: GateContext) -> list[Check]:
    """Build the entries the spec enables, in order, dropping those with nothing to check against."""
    return [check for entry in entries
            if entry.enabled(spec) and (check := entry.load().from_spec(spec, context)) is not None]
