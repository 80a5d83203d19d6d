"""Which checks the gate runs, in what order: one registry for built-in checks and plug-ins.

Each built-in check is one `CheckEntry`: its name, whether the spec switches it on, and how to build
it from the spec and the gate's context. Order matters: each check sees only what earlier checks
kept. Consistency checks (verifiers, self-consistency, judge) run before deduplication, so the
keeper of a duplicate cluster is a row that passed them and carries their scores.

Plug-ins: a package declares an entry point in the group `instruct_curator.gate_checks` whose object
has `from_spec(spec, context, params) -> Check`; the spec names it with its parameters under
`gate.plugins` (`{my_check: {param: value}}`), and it runs after the built-in row checks, before
screening. A plug-in named in the spec but not installed is an error naming the group.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

from curator.errors import CuratorError
from curator.gate.check import Check
from curator.spec import Spec

PLUGIN_GROUP = "instruct_curator.gate_checks"


@dataclass(frozen=True)
class GateContext:
    """What a check may need beyond the spec: where earlier releases live."""

    releases: Path


@dataclass(frozen=True)
class CheckEntry:
    name: str
    enabled: Callable[[Spec], bool]
    build: Callable[[Spec, GateContext], Check | None]  # None: nothing to check against (e.g. no earlier release)


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
    return [check for entry in entries if entry.enabled(spec) and (check := entry.build(spec, context)) is not None]
