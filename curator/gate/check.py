"""The gate's contract: a check takes the rows still in play and splits them into kept and rejected.

Checks run in order and each sees only what earlier checks kept, so every input row ends in exactly
one place: the release, or the ledger with the check's name and reason (and, for duplicates, the
id of the row that was kept instead).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol, TypeVar

from rich.console import Console
from rich.progress import track

from curator.gate.embeddings import LoadEmbedder, load_embedder
from curator.records import QUALITY_SCORES, assistant_text
from curator.text_signals import normalize

T = TypeVar("T")


@dataclass(frozen=True)
class Row:
    """One input record and where it came from."""

    record: Any
    input: str  # the run directory it was read from
    line: int  # 1-based line in that run's pairs.jsonl
    order: int  # position among all gate inputs: ties go to the earliest
    scores: dict[str, float] = field(default_factory=dict, compare=False)  # per-row findings of checks (judge, relevance, ...)

    @property
    def id(self) -> str | None:
        return self.record.get("id") if isinstance(self.record, dict) else None

    @property
    def origin(self) -> str:
        return f"{self.input}/pairs.jsonl:{self.line}"


@dataclass(frozen=True)
class Rejection:
    row: Row
    reason: str
    duplicate_of: str | None = None


@dataclass
class CheckResult:
    kept: list[Row]
    rejected: list[Rejection]
    stats: dict[str, Any] = field(default_factory=dict)
    added: list[Row] = field(default_factory=list)  # new rows a check brings in, in `kept` too (a human edit)


@dataclass(frozen=True)
class GateContext:
    """What a check may need beyond the spec: where earlier releases live, the evaluation suites shipped
    with the project (`curator.gate.registry.shipped_suites`), and where embedding models run (`load_embedder`:
    in this process; on Ray workers with `--engine ray`)."""

    releases: Path
    shipped_suites: tuple[Path, ...] = ()
    load_embedder: LoadEmbedder = load_embedder


class Check(Protocol):
    """A gate check; built by `from_spec(spec, context)` (see `curator.gate.registry`)."""

    name: str

    def run(self, rows: list[Row]) -> CheckResult:
        """Split `rows` into kept and rejected; every row lands in exactly one of the two (`added` rows in kept)."""
        ...


def quality(row: Row) -> float | None:
    """The row's quality score: its judge score, else its reward score, else None (not scored)."""
    return next((row.scores[k] for k in QUALITY_SCORES if k in row.scores), None)


def mark_verified(row: Row) -> None:
    """Count one more verifier that checked the row and found it right (`scores["verified"]`, ranks selection)."""
    row.scores["verified"] = row.scores.get("verified", 0) + 1


def keep_rank(row: Row) -> tuple[float, int, int]:
    """The keep rule for duplicates: the best quality score wins (unscored rows after scored ones);
    then the longest response; on a tie, the earliest input row.

    Length is counted on the normalised response, so variants that differ only in case, spacing or
    punctuation tie. The row with the smallest rank in a group of duplicates is kept.
    """
    score = quality(row)
    return (float("inf") if score is None else -score, -len(normalize(assistant_text(row.record))), row.order)


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterable[T]:
    """Iterate with a transient rich progress bar on stderr (silent when stderr is not a terminal)."""
    console = Console(stderr=True)
    return track(items, description=description, total=total, transient=True, console=console,
                 disable=not console.is_terminal)
