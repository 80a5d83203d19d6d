"""Shared by the generator tests: the starter spec trimmed for a 2-core teacher, and plan slots on disk."""
from __future__ import annotations

from pathlib import Path

import yaml

from curator.rundir import RunDir

STARTER = Path(__file__).resolve().parents[1] / "specs" / "starter.yaml"


def write_spec(directory: Path, max_tokens: int = 96, families: dict[str, float] | None = None,
               lookalike_share: float | None = None, generation: dict | None = None, **teacher) -> Path:
    """The starter spec with short replies and any teacher overrides, optionally cut down to
    `families` (name -> share), with a share of refusal look-alikes and a `generation` section."""
    doc = yaml.safe_load(STARTER.read_text())
    doc["teacher"]["sampling"]["max_tokens"] = max_tokens
    doc["teacher"].update(teacher)
    if families:
        doc["task_families"] = [{**t, "share": families[t["name"]]} for t in doc["task_families"] if t["name"] in families]
    if lookalike_share is not None:
        doc["refusal_policy"]["lookalike_share"] = lookalike_share
    if generation is not None:
        doc["generation"] = generation
    path = directory / "spec.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def slots_on_disk(run: RunDir) -> list[str]:
    """Plan slots of every accepted and quarantined row of a run."""
    return [p["provenance"]["plan_slot"] for p in run.pairs()] + [q["plan_slot"] for q in run.quarantined()]
