"""Evaluation-set contamination: word n-gram overlap between each row and known evaluation items.

Text on both sides is normalised (`curator.text_signals.normalize`: NFKC, casefold, punctuation to
spaces) and split into words; every run of `ngram` words (13 by default, as in the GPT-3
contamination study) of an evaluation item goes into an index (`curator.text_signals.EvalIndex`). A
row is rejected when any n-gram of its user text (and of its response, with `check_response`) is in
the index; the reason names the first item hit. Evaluation items shorter than `ngram` words cannot
share an n-gram with anything; they match only a row whose normalised user text is exactly theirs.

Boilerplate: an evaluation n-gram found in `boilerplate_rows` or more rows (50 by default) is
template text shared by a whole family of prompts (a tool description, "the following are multiple
choice questions about"), not a leak of one item, and is ignored; stats count the ones ignored.

Evaluation items come from JSONL files named in the spec (`gate.decontamination.eval_files`), from
the evaluation suites shipped with the project (`trainer/suites/*.jsonl`, found as package data by
the gate, `GateContext.shipped_suites`; on unless `shipped_suites: false`), and from texts passed in
by the caller. The stats name every file used (`eval_files`, `shipped_suites`). In a file, each line is an object
with `prompt`, or `instruction` (+ `input`), or `messages` (user turns), and optionally `output`,
`response`, `answer` or `completion` (assistant turns of `messages` count as the answer); the answer
is indexed apart from the prompt (a leaked answer is a leak).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable

from curator.errors import CuratorError
from curator.jsonl import object_lines
from curator.gate.check import CheckResult, GateContext, Rejection, Row
from curator.records import assistant_text, user_text
from curator.spec import DecontaminationConfig, Spec
from curator.text_signals import EvalIndex

PROMPT_FIELDS = ("prompt", "instruction", "input")
ANSWER_FIELDS = ("output", "response", "answer", "completion")


def eval_texts_from_file(path: str | Path) -> list[tuple[str, str]]:
    """(`file:line`, text) for the prompt and, apart, the answer of every item of a JSONL evaluation
    file; bad lines raise CuratorError."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise CuratorError(f"{path}: cannot read evaluation set: {e.strerror or e}") from None
    items = []
    for n, obj in object_lines(path, lines, "an evaluation item"):
        parts = [obj[f] for f in PROMPT_FIELDS if isinstance(obj.get(f), str) and obj[f].strip()]
        messages = [m for m in obj.get("messages") or () if isinstance(m, dict) and isinstance(m.get("content"), str)]
        parts += [m["content"] for m in messages if m.get("role") != "assistant"]
        if not parts:
            raise CuratorError(f"{path}:{n}: no prompt, instruction, input or messages field")
        where = f"{path.name}:{n}"
        items.append((where, "\n".join(parts)))
        answers = [obj[f] for f in ANSWER_FIELDS if isinstance(obj.get(f), str) and obj[f].strip()]
        answers += [m["content"] for m in messages if m.get("role") == "assistant"]
        if answers:
            items.append((where, "\n".join(answers)))
    return items


class Decontaminate:
    name = "decontamination"

    def __init__(self, config: DecontaminationConfig, eval_texts: Iterable[tuple[str, str]] = (),
                 suites: tuple[Path, ...] = ()):
        """`eval_texts`: extra (label, text) items, e.g. ("suite/reason.jsonl:3", prompt); `suites`: shipped
        evaluation suites, read like `config.eval_files`."""
        self.config = config
        self.suites = suites
        items = [item for path in (*config.eval_files, *suites) for item in eval_texts_from_file(path)]
        items += list(eval_texts)
        self.index = EvalIndex(items, config.ngram)

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext | None = None) -> "Decontaminate":
        """The spec's eval files, and the shipped suites of `context` unless the spec turns them off."""
        config = spec.gate.decontamination
        return cls(config, suites=context.shipped_suites if context and config.shipped_suites else ())

    def run(self, rows: list[Row]) -> CheckResult:
        n = self.config.ngram
        found: list[list[tuple[str, str]]] = []
        rows_with: Counter[str] = Counter()
        for row in rows:
            hits = [("user text", g) for g in self.index.hits(user_text(row.record), whole=True)]
            if self.config.check_response:
                hits += [("response", g) for g in self.index.hits(assistant_text(row.record))]
            found.append(hits)
            rows_with.update({g for _, g in hits})
        boilerplate = {g for g, c in rows_with.items() if c >= self.config.boilerplate_rows}
        kept: list[Row] = []
        rejected: list[Rejection] = []
        by_source: Counter[str] = Counter()
        for row, hits in zip(rows, found):
            real = [(side, g) for side, g in hits if g not in boilerplate]
            if not real:
                kept.append(row)
                continue
            side, gram = real[0]
            where = self.index.item(gram)
            by_source[where.rsplit(":", 1)[0]] += 1
            rejected.append(Rejection(row, f"decontamination: {n}-gram overlap with {where} ({side}: \"{gram}\")"))
        stats = {
            "checked": len(rows),
            "ngram": n,
            "eval_items": self.index.items,
            "eval_ngrams": len(self.index.grams),
            "eval_files": list(self.config.eval_files),
            "shipped_suites": [str(p) for p in self.suites],
            "boilerplate_ngrams_ignored": len(boilerplate),
            "hits_by_source": dict(by_source),
            "removed": len(rejected),
        }
        return CheckResult(kept, rejected, stats)
