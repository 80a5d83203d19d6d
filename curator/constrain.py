"""`curator constrain RUN... --spec SPEC --out DIR`: a copy of the runs in which a share of pairs carry a verifiable
format instruction that their response follows (as Tulu 3's and AutoIF's instruction-following data do).

A tuned model learns the formats its data asks for; a pool that never says "in all capital letters" or "end
with a P.S." teaches none of them. Each chosen pair gets one or two constraints, written into its instruction
(after the instruction's first paragraph, before any input text) and recorded in its `constraints` field
(`[{"id", "kwargs"}]`, the checker ids of `curator.instructions`), so the gate's `constraints` check verifies
them. Two kinds:

- a transformation that keeps the meaning and makes the constraint true: all capitals or all lowercase,
  wrapped in double quotes, a P.S. line, a closing phrase, the lines or sentences as bullets or a numbered
  list, or in sections ("SECTION 1"), the last three only where the response is not a list already; never
  for code, markup or links, nor in the spec's refusal families;
- a constraint the response already follows: a word or sentence limit at or beyond its length, keywords it
  uses, words it avoids, no commas where it has none; for any pair outside the refusal families.

A derived pair gets a new id and keeps the original's provenance plus `derived_from` (the original's id);
every other pair is copied as it is. Every derived response is checked with the checkers before it is
written; where one fails (a response without letters cannot be in capitals), the pair is copied as it is.
The choice is seeded per pair, so a rerun, or a resumed run, writes the same pairs.
"""
from __future__ import annotations

import argparse
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.progress import track

from curator.errors import CuratorError
from curator.instructions import build_instruction, sentence_count, word_count
from curator.records import now_iso, pair_id
from curator.rundir import RunDir, refuse_release_dir, resolve_run_dir
from curator.spec import load_spec

CODE_LIKE = re.compile(r"```|https?://|www\.|[{}<>|\\]|;\s*$|^\s{2,}\S|==|=>|\b(def|return|import|function|print)\b",
                       re.MULTILINE)  # code, markup or links: never reformatted
LISTED = re.compile(r"^\s*([-*•]|\d+[.)])\s|^\s*#", re.MULTILINE)  # already a list or headed: not restructured
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“])")
WORD = re.compile(r"[A-Za-z]{5,}")
STOPWORDS = frozenset("about above after again against because before being below between could doing during "
                      "their there these those through under until where which while would should other "
                      "every might never often still whose within without yours".split())
FILLERS = ("very", "really", "basically", "actually", "simply", "obviously", "literally", "definitely")
POSTSCRIPTS = ("I hope this helps.", "Feel free to ask if anything is unclear.", "Let me know if you need more detail.",
               "Thanks for the question.", "Happy to help further.")
CLOSINGS = ("Is there anything else I can help with?", "Hope this helps!", "That is all.", "Let me know if you have "
            "any other questions.", "Thank you for asking.")
MARKERS = ("SECTION", "Section", "PART", "Part")


@dataclass(frozen=True)
class Constraint:
    """One verifiable instruction for one pair: the checker id, its arguments and how the instruction says it."""

    id: str
    kwargs: dict
    text: str


def _pick(rng: random.Random, *phrasings: str) -> str:
    return rng.choice(phrasings)


# --- transformations: (response, rng) -> (new response, constraint) or None when they do not apply -------------

def _uppercase(response: str, rng: random.Random) -> tuple[str, Constraint]:
    return response.upper(), Constraint("case:uppercase", {}, _pick(
        rng, "Write your entire answer in capital letters.", "Use only uppercase letters in your reply.",
        "Respond in all caps.", "Your whole response must be in English capital letters."))


def _lowercase(response: str, rng: random.Random) -> tuple[str, Constraint]:
    return response.lower(), Constraint("case:lowercase", {}, _pick(
        rng, "Write your entire answer in lowercase letters, with no capitals.", "Use only lowercase letters.",
        "Respond in all lowercase.", "Do not use any capital letters in your reply."))


def _quotation(response: str, rng: random.Random) -> tuple[str, Constraint] | None:
    if '"' in response:
        return None
    return f'"{response}"', Constraint("startend:quotation", {}, _pick(
        rng, "Put your whole reply inside double quotes.", "Enclose the entire response in double quotation marks.",
        'Wrap the answer in " marks from start to end.'))


def _postscript(response: str, rng: random.Random) -> tuple[str, Constraint]:
    marker = rng.choice(("P.S.", "P.P.S"))
    return f"{response}\n\n{marker} {rng.choice(POSTSCRIPTS)}", Constraint("format:postscript", {"marker": marker}, _pick(
        rng, f'End with a postscript that starts with "{marker}".', f'Add a note at the end beginning with "{marker}".',
        f'Finish with a line starting "{marker}".'))


def _closing(response: str, rng: random.Random) -> tuple[str, Constraint]:
    phrase = rng.choice(CLOSINGS)
    gap = " " if response.rstrip()[-1:] in ".!?" else "\n\n"
    return f"{response}{gap}{phrase}", Constraint("startend:ends_with", {"phrase": phrase}, _pick(
        rng, f'Your reply must end with the exact words "{phrase}".', f'Close your answer with "{phrase}" and add '
        "nothing after it.", f'The last words of your response should be "{phrase}".'))


def _parts(response: str) -> list[str]:
    """The response's lines when it has several, else its sentences."""
    lines = [line.strip() for line in response.split("\n") if line.strip()]
    return lines if len(lines) > 1 else [s.strip() for s in SENTENCE.split(response.strip()) if s.strip()]


def _bullets(response: str, rng: random.Random) -> tuple[str, Constraint] | None:
    parts = _parts(response)
    if LISTED.search(response) or not 2 <= len(parts) <= 7:
        return None
    mark = rng.choice("*-")
    n = len(parts)
    return "\n".join(f"{mark} {p}" for p in parts), Constraint("format:bullet_list", {"n": n}, _pick(
        rng, f"Answer as a list of exactly {n} bullet points.", f"Use exactly {n} bullet points, each starting with "
        f"{mark}.", f"Format the reply as {n} bullets."))


def _numbered(response: str, rng: random.Random) -> tuple[str, Constraint] | None:
    parts = _parts(response)
    if LISTED.search(response) or not 2 <= len(parts) <= 7:
        return None
    n = len(parts)
    return "\n".join(f"{k}. {p}" for k, p in enumerate(parts, 1)), Constraint("format:numbered_list", {"n": n}, _pick(
        rng, f"Give the answer as a numbered list of {n} items.", f"Number your points: exactly {n} of them.",
        f"Reply with exactly {n} numbered items (1., 2., ...)."))


def _sections(response: str, rng: random.Random) -> tuple[str, Constraint] | None:
    parts = _parts(response)
    if LISTED.search(response) or len(parts) < 2:
        return None
    n = min(len(parts), rng.choice((2, 2, 3)))
    size = -(-len(parts) // n)
    groups = [parts[i:i + size] for i in range(0, len(parts), size)]
    n, marker = len(groups), rng.choice(MARKERS)
    joiner = "\n" if "\n" in response else " "
    body = "\n\n".join(f"{marker} {k}\n{joiner.join(g)}" for k, g in enumerate(groups, 1))
    return body, Constraint("format:sections", {"n": n, "marker": marker}, _pick(
        rng, f"Split your answer into {n} sections, each headed {marker} 1, {marker} 2 and so on.",
        f"Organise the reply in {n} parts labelled {marker} X.", f"Use {n} sections, marking each with {marker} "
        "and its number."))


STRUCTURE = {"format:bullet_list": 3, "format:numbered_list": 3, "format:sections": 3}  # the rarer shapes, favoured
TRANSFORMS: tuple[Callable[[str, random.Random], tuple[str, Constraint] | None], ...] = (
    _uppercase, _lowercase, _quotation, _postscript, _closing, _bullets, _numbered, _sections)


# --- constraints the response already follows -----------------------------------------------------------------

def _word_limit(response: str, instruction: str, rng: random.Random) -> Constraint | None:
    words = word_count(response)
    if rng.random() < 0.6 or words < 20:
        n = (words // 10 + 1 + rng.choice((0, 0, 1, 2))) * 10
        return Constraint("length:words", {"relation": "at_most", "n": n}, _pick(
            rng, f"Use no more than {n} words.", f"Keep it to {n} words or fewer.", f"Answer in at most {n} words."))
    n = (words // 10 - rng.choice((0, 1))) * 10
    return Constraint("length:words", {"relation": "at_least", "n": n}, _pick(
        rng, f"Write at least {n} words.", f"Your answer should be {n} words or longer.",
        f"Use a minimum of {n} words.")) if n >= 10 else None


def _sentence_limit(response: str, instruction: str, rng: random.Random) -> Constraint | None:
    if CODE_LIKE.search(response) or "\n" in response.strip() or response.rstrip()[-1:] not in ".!?":
        return None
    n = sentence_count(response) + rng.choice((0, 1))
    if not 1 <= n <= 8:
        return None
    count = "one sentence" if n == 1 else f"{n} sentences"
    return Constraint("length:sentences", {"relation": "at_most", "n": n}, _pick(
        rng, f"Answer in {count} or fewer.", f"Use at most {count}."))


def _include(response: str, instruction: str, rng: random.Random) -> Constraint | None:
    words = sorted({w.lower() for w in WORD.findall(response)} - STOPWORDS)
    if not words:
        return None
    chosen = rng.sample(words, min(len(words), rng.choice((1, 2))))
    listed = " and ".join(f'"{w}"' for w in chosen)
    return Constraint("keywords:include", {"keywords": chosen}, _pick(
        rng, f"Mention {listed} in your answer.", f"Your reply must contain the word{'s' * (len(chosen) > 1)} {listed}."))


def _forbidden(response: str, instruction: str, rng: random.Random) -> Constraint | None:
    used = {w.lower() for w in re.findall(r"[A-Za-z]+", response)}
    candidates = sorted(({w.lower() for w in WORD.findall(instruction)} - STOPWORDS - used)) or \
        [w for w in FILLERS if w not in used]
    if not candidates:
        return None
    chosen = rng.sample(candidates, min(len(candidates), rng.choice((1, 2))))
    listed = " or ".join(f'"{w}"' for w in chosen)
    return Constraint("keywords:forbidden", {"keywords": chosen}, _pick(
        rng, f"Do not use the word{'s' * (len(chosen) > 1)} {listed}.", f"Avoid {listed} in your reply."))


def _no_comma(response: str, instruction: str, rng: random.Random) -> Constraint | None:
    if "," in response:
        return None
    return Constraint("punctuation:no_comma", {}, _pick(rng, "Do not use any commas.", "Write it without commas."))


FOLLOWED = (_word_limit, _sentence_limit, _include, _forbidden, _no_comma)


def _insert(user: str, texts: list[str]) -> str:
    """The user turn with the constraint sentences at the end of its first paragraph (before any input text):
    on a line of their own when that paragraph has several lines or ends with a colon."""
    head, sep, rest = user.partition("\n\n")
    head = head.rstrip()
    joined = " ".join(texts)
    if "\n" in head or head.endswith(":"):
        return f"{head}\n{joined}{sep}{rest}"
    return f"{head} {joined}{sep}{rest}" if head[-1:] in ".?!" else f"{head}. {joined}{sep}{rest}"


def constrained(record: dict, rng: random.Random) -> dict | None:
    """A derived pair: `record` with one or two constraints its (possibly transformed) response follows; None when
    the pair is not a single exchange or no constraint fits."""
    messages = record.get("messages") or []
    if [m["role"] for m in messages if m["role"] != "system"] != ["user", "assistant"]:
        return None
    user, response = messages[-2]["content"], messages[-1]["content"]
    constraints: list[Constraint] = []
    if not CODE_LIKE.search(response) and rng.random() < 0.75:
        done = [d for d in (t(response, rng) for t in TRANSFORMS) if d]
        response, constraint = rng.choices(done, weights=[STRUCTURE.get(c.id, 1) for _, c in done])[0]
        constraints.append(constraint)
    if not constraints or rng.random() < 0.4:
        for follow in rng.sample(FOLLOWED, len(FOLLOWED)):
            constraint = follow(response, user, rng)
            if constraint:
                constraints.append(constraint)
                break
    if not constraints or not all(build_instruction(c.id, c.kwargs).check(response) for c in constraints):
        return None
    new = [*messages[:-2], {"role": "user", "content": _insert(user, [c.text for c in constraints])},
           {"role": "assistant", "content": response}]
    return {**record, "id": pair_id(new), "messages": new,
            "constraints": [{"id": c.id, "kwargs": c.kwargs} for c in constraints],
            "provenance": {**record["provenance"], "derived_from": record["id"], "created_at": now_iso(),
                           "strategy": f"{record['provenance'].get('strategy') or record['provenance']['source']}"
                                       "+constraints"}}


def write_constrained(runs: list[RunDir], out: Path, *, share: float, seed: int,
                      skip_families: frozenset[str]) -> dict[str, int]:
    """Copy every pair of `runs` into run directory `out`, a `share` of those outside `skip_families` with
    constraints; return the counts (per constraint id too). A rerun resumes where the last one stopped."""
    if not 0 <= share <= 1:
        raise CuratorError(f"--share must be between 0 and 1, got {share}")
    refuse_release_dir(out)
    run = RunDir(out)
    meta = {"kind": "constrained", "inputs": [str(r.path) for r in runs], "share": share, "seed": seed}
    if run.exists():
        old = run.read_meta()
        if any(old.get(k) != v for k, v in meta.items()):
            raise CuratorError(f"{out}: a run of something else is already there; pass another --out")
        if old.get("status") == "complete":
            return old["counts"]
    run.create({**meta, "created_at": now_iso(), "status": "running"})  # cuts a torn last line left by a crash
    done = {p["provenance"].get("derived_from") or p["id"] for p in run.pairs()}
    with run.appender() as writer:
        console = Console(stderr=True)
        for source in runs:
            for record in track(source.pairs(), f"constraining {source.path.name}", console=console, transient=True,
                                disable=not console.is_terminal):
                if record["id"] in done:
                    continue
                rng = random.Random(f"{seed}:{record['id']}")
                derived = None
                if record["task_family"] not in skip_families and rng.random() < share:
                    derived = constrained(record, rng)
                writer.add_pair(derived or record)
                done.add(record["id"])
    accepted, constrained_pairs, kinds = 0, 0, Counter()
    for pair in run.pairs():  # counted as read back: a resumed run's earlier pairs too, none held in memory
        accepted += 1
        constrained_pairs += bool(pair.get("constraints"))
        kinds.update(c["id"] for c in pair.get("constraints") or ())
    counts = {"accepted": accepted, "constrained": constrained_pairs, **kinds}
    run.write_meta({**run.read_meta(), "status": "complete", "counts": counts, "finished_at": now_iso()})
    return counts


def _run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    refusals = frozenset(t.name for t in spec.task_families if t.refusal)
    counts = write_constrained([resolve_run_dir(r) for r in args.runs], Path(args.out), share=args.share,
                               seed=args.seed, skip_families=refusals)
    print(f"{args.out}: {counts['accepted']} pairs, {counts['constrained']} with constraints")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("constrain", help="copy runs, adding verifiable format instructions to a share of pairs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories (paths or names under data/runs)")
    p.add_argument("--spec", required=True, help="the curriculum: its refusal families get no constraints")
    p.add_argument("--out", required=True, help="the new run directory")
    p.add_argument("--share", type=float, default=0.25, help="share of eligible pairs that get constraints")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run)
