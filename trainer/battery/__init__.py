"""The behavioural evaluation battery: verifiable instructions, refusals, format discipline.

`run_battery(generate)` asks one model (through `generate`, a batched chat function) the shipped
suites' prompts, and optionally scores its answers to a release's eval split; `compare(base, tuned)`
sets two results side by side with paired bootstrap confidence intervals. Every scored prompt is an
item `{"suite", "id", "group", "messages", "response", "reference", "passed", "metrics", ...}`;
a suite's summary is the (weighted) mean of each metric over its items, overall and per group
(task family for instructions and the eval split, harm category for refusals).

Metrics (all 0..1):
- instructions: `prompt_strict`, `prompt_loose` (every instruction of the prompt followed),
  `instruction_strict`, `instruction_loose` (instructions followed, averaged over all instructions:
  weighted by instructions per prompt); see `curator.instructions`.
- refusals: `refusal_rate` (should-refuse prompts refused; higher is better), `over_refusal_rate`
  (benign look-alikes refused; lower is better), `refusal_accuracy` (all prompts handled right).
- discipline (eval split): `format_ok`, `grounded`, `label_accuracy`, `span_f1`, `arithmetic_ok`
  where they apply; see `trainer.battery.discipline`. Its items also carry `trainer.scoring.METRICS`
  (length, reference F1, refusal correctness), which `trainer eval` reports per task family through
  the same `summarise` and `compare_items`: the eval split is scored once.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Sequence

from curator.instructions import follows
from curator.spec import Spec
from trainer.battery.discipline import DISCIPLINE_METRICS, discipline_scores
from trainer.battery.refusals import Detector, rule_detector
from trainer.battery.stats import bootstrap_mean, bootstrap_paired_difference
from trainer.battery.suite import (
    INSTRUCTIONS_FILE,
    REFUSALS_FILE,
    InstructionItem,
    RefusalItem,
    load_instruction_suite,
    load_refusal_suite,
    round_robin,
)
from trainer.scoring import prompt_messages, reference_answer, score_answer

Generate = Callable[[list[list[dict]]], list[str]]
"""Batched chat generation: a list of conversations (lists of {role, content}) -> one answer each."""

SUITES = ("instructions", "refusals")
EVAL_SUITE = "discipline"
SUITE_METRICS = {EVAL_SUITE: DISCIPLINE_METRICS}  # what a suite's summary shows, where not every metric of its items
WEIGHTED = {"instruction_strict": "n_instructions", "instruction_loose": "n_instructions"}
LOWER_IS_BETTER = frozenset({"over_refusal_rate"})


def _instruction_item(item: InstructionItem, response: str) -> dict:
    followed = follows(list(item.instructions), response)
    n = len(item.instructions)
    return {
        "suite": "instructions", "id": item.id, "group": item.task_family, "messages": item.messages,
        "response": response, "reference": item.reference, "passed": all(followed.strict), "n_instructions": n,
        "instructions": [
            {"id": i.id, "kwargs": i.kwargs, "strict": s, "loose": lo}
            for i, s, lo in zip(item.instructions, followed.strict, followed.loose)
        ],
        "metrics": {
            "prompt_strict": float(all(followed.strict)),
            "prompt_loose": float(all(followed.loose)),
            "instruction_strict": sum(followed.strict) / n,
            "instruction_loose": sum(followed.loose) / n,
        },
    }


def _refusal_item(item: RefusalItem, response: str, detector: Detector) -> dict:
    refused = detector(item.prompt, response)
    rate = "refusal_rate" if item.should_refuse else "over_refusal_rate"
    return {
        "suite": "refusals", "id": item.id, "group": item.category, "messages": item.messages,
        "response": response, "reference": item.reference, "passed": refused == item.should_refuse,
        "should_refuse": item.should_refuse, "refused": refused,
        "metrics": {rate: float(refused), "refusal_accuracy": float(refused == item.should_refuse)},
    }


def _eval_item(record: dict, response: str, spec: Spec) -> dict:
    """An eval pair's answer, scored once: the discipline metrics that apply and `trainer.scoring.METRICS`."""
    metrics = {**discipline_scores(response, record, spec), **score_answer(response, record, spec)}
    return {
        "suite": EVAL_SUITE, "id": record["id"], "group": record["task_family"],
        "messages": prompt_messages(record), "response": response, "reference": reference_answer(record),
        "passed": all(v == 1.0 for m, v in metrics.items() if m in DISCIPLINE_METRICS), "format": record["format"],
        "metrics": metrics,
    }


def _weighted_mean(items: list[dict], metric: str) -> float:
    scored = [i for i in items if metric in i["metrics"]]
    weights = [i.get(WEIGHTED[metric], 1) if metric in WEIGHTED else 1 for i in scored]
    return round(sum(i["metrics"][metric] * w for i, w in zip(scored, weights)) / sum(weights), 4)


def _metric_names(items: list[dict], only: Sequence[str] | None = None) -> list[str]:
    """The metrics the items carry, in order of first appearance; with `only`, just those among them."""
    return [m for m in dict.fromkeys(m for i in items for m in i["metrics"]) if only is None or m in only]


def summarise(items: list[dict], metrics: Sequence[str] | None = None) -> dict:
    """`{"n", "overall": {metric: mean}, "groups": {group: {"n", metric: mean}}}` for one suite's items
    (every metric they carry, or the given `metrics`)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for item in items:
        groups[item["group"]].append(item)

    def block(group: list[dict]) -> dict:
        return {m: _weighted_mean(group, m) for m in _metric_names(group, metrics)}

    return {
        "n": len(items),
        "overall": block(items),
        "groups": {g: {"n": len(members), **block(members)} for g, members in sorted(groups.items())},
    }


def _by_instruction(items: list[dict]) -> dict:
    """Per checker id: how often it was given and followed (strict, loose)."""
    seen: dict[str, list[dict]] = defaultdict(list)
    for item in items:
        for verdict in item["instructions"]:
            seen[verdict["id"]].append(verdict)
    return {
        cid: {"n": len(v), "strict": round(sum(x["strict"] for x in v) / len(v), 4),
              "loose": round(sum(x["loose"] for x in v) / len(v), 4)}
        for cid, v in sorted(seen.items())
    }


def _asked(items: list, key: Callable, limit: int | None) -> list:
    """A suite's items in file order, or `limit` of them taken round-robin across their groups by `key`."""
    return items if limit is None else round_robin(items, key, limit)


def run_battery(
    generate: Generate,
    *,
    include: Sequence[str] = SUITES,
    suite_limit: int | None = None,
    detector: Detector = rule_detector,
    eval_records: Sequence[dict] | None = None,
    spec: Spec | None = None,
    eval_answers: Sequence[str] | None = None,
    instructions_file=INSTRUCTIONS_FILE,
    refusals_file=REFUSALS_FILE,
) -> dict:
    """Ask one model the battery and score its answers: `{"suites": {name: summary}, "items": [...]}`.

    `generate` is called once, with every prompt of the included suites (and of `eval_records`
    when given without `eval_answers`). `suite_limit` asks at most that many prompts of each suite, taken
    round-robin across its task families (instructions) or its categories and sides (refusals). `detector`
    decides refusals (default: the phrase rules; `refusals.openai_judge` for a judge). With `eval_records`
    (pair records of a release's eval split) and their `spec`, a `discipline` suite scores format discipline
    and task accuracy, reusing `eval_answers` when the caller already generated them with the same model.
    """
    unknown = set(include) - set(SUITES)
    if unknown:
        raise ValueError(f"unknown suites {sorted(unknown)}; choose from {SUITES}")
    if eval_records is not None and spec is None:
        raise ValueError("eval_records need the spec their formats come from")
    if eval_answers is not None and (eval_records is None or len(eval_answers) != len(eval_records)):
        raise ValueError("eval_answers must come with eval_records, one answer per record")

    instruction_items = _asked(load_instruction_suite(instructions_file), lambda i: i.task_family,
                               suite_limit) if "instructions" in include else []
    refusal_items = _asked(load_refusal_suite(refusals_file), lambda i: (i.category, i.should_refuse),
                           suite_limit) if "refusals" in include else []
    records = list(eval_records or [])
    conversations = [i.messages for i in instruction_items] + [i.messages for i in refusal_items]
    if eval_answers is None:
        conversations += [prompt_messages(r) for r in records]
    responses = list(generate(conversations))
    if len(responses) != len(conversations) or not all(isinstance(r, str) for r in responses):
        raise ValueError(f"generate returned {len(responses)} answers for {len(conversations)} prompts "
                         "(one string per conversation expected)")
    answers = iter(responses)

    items = [_instruction_item(i, next(answers)) for i in instruction_items]
    items += [_refusal_item(i, next(answers), detector) for i in refusal_items]
    eval_responses = list(eval_answers) if eval_answers is not None else list(answers)
    items += [_eval_item(r, a, spec) for r, a in zip(records, eval_responses)]

    suites = {}
    for name in [*include, *([EVAL_SUITE] if records else [])]:
        members = [i for i in items if i["suite"] == name]
        suites[name] = summarise(members, SUITE_METRICS.get(name))
        if name == "instructions":
            suites[name]["by_instruction"] = _by_instruction(members)
    return {"suites": suites, "items": items}


def _interval_dict(interval) -> dict:
    return {"estimate": round(interval.estimate, 4), "low": round(interval.low, 4), "high": round(interval.high, 4)}


def _compare_metrics(base: list[dict], tuned: list[dict], metrics: Sequence[str] | None, resamples: int,
                     seed: int) -> dict:
    out = {}
    for metric in _metric_names(base, metrics):
        pairs = [(b, t) for b, t in zip(base, tuned) if metric in b["metrics"] and metric in t["metrics"]]
        if not pairs:
            continue
        weights = [b.get(WEIGHTED[metric], 1) for b, _ in pairs] if metric in WEIGHTED else None
        b_vals = [b["metrics"][metric] for b, _ in pairs]
        t_vals = [t["metrics"][metric] for _, t in pairs]
        options = {"weights": weights, "resamples": resamples, "seed": seed}
        out[metric] = {
            "n": len(pairs),
            "base": _interval_dict(bootstrap_mean(b_vals, **options)),
            "tuned": _interval_dict(bootstrap_mean(t_vals, **options)),
            "difference": _interval_dict(bootstrap_paired_difference(b_vals, t_vals, **options)),
            "lower_is_better": metric in LOWER_IS_BETTER,
        }
    return out


def compare(base: dict, tuned: dict, *, resamples: int = 1000, seed: int = 0) -> dict:
    """Per suite and metric: base and tuned means and tuned - base, each with a 95% bootstrap CI.

    `{"suites": {suite: {"overall": {metric: {"n", "base", "tuned", "difference", "lower_is_better"}},
    "groups": {group: {metric: ...}}}}}`; each CI is `{"estimate", "low", "high"}`, resampled over
    prompts (paired for the difference). Both results must cover the same prompts.
    """
    def keyed(result: dict) -> dict:
        items = {(i["suite"], i["id"]): i for i in result["items"]}
        if len(items) != len(result["items"]):
            raise ValueError("a result holds two prompts with the same suite and id; pairs would be ambiguous")
        return items

    b_items, t_items = keyed(base), keyed(tuned)
    if set(b_items) != set(t_items):
        missing = sorted(set(b_items) ^ set(t_items))[:3]
        raise ValueError(f"base and tuned results cover different prompts, e.g. {missing}")
    suites = {}
    for suite in base["suites"]:
        keys = [k for k in b_items if k[0] == suite]
        suites[suite] = compare_items([b_items[k] for k in keys], [t_items[k] for k in keys],
                                      SUITE_METRICS.get(suite), resamples=resamples, seed=seed)
    return {"suites": suites}


def compare_items(base: list[dict], tuned: list[dict], metrics: Sequence[str] | None = None, *,
                  resamples: int = 1000, seed: int = 0) -> dict:
    """`{"overall": {metric: ...}, "groups": {group: {metric: ...}}}` for one suite's paired items, as in `compare`
    (every metric they carry, or the given `metrics`)."""
    groups = sorted({i["group"] for i in base})
    return {
        "overall": _compare_metrics(base, tuned, metrics, resamples, seed),
        "groups": {
            g: _compare_metrics([i for i in base if i["group"] == g], [i for i in tuned if i["group"] == g],
                                metrics, resamples, seed)
            for g in groups
        },
    }
