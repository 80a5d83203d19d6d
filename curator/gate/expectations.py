"""Dataset-level expectations: verdicts on the release as a whole, derived from the spec, run by great-expectations.

The kept rows' text-free columns (`curator.gate.kept_columns`) become one pandas frame (one row per pair: id,
family, format, difficulty, split, text lengths, response word count per length band, 0/1 indicator columns)
and one expectation suite runs on it in an ephemeral GX context (nothing written to disk, progress bars and
analytics off). Each verdict is `{"name", "passed", "observed", "expected", "expectation"}` plus `"examples"`
(up to 10 offending values) for a failed per-row expectation; a release is certified iff all verdicts pass.

  min_train_rows          sum(is_train) >= gate.min_train_rows          ExpectColumnSumToBeBetween
  mix:<family>            mean(family == f) within target ± mix_tolerance ExpectColumnMeanToBeBetween
  refusal_family_share    mean(in_refusal_family) <= refusal_policy.max_share  ExpectColumnMeanToBeBetween
                          (the share of rows in families the spec marks `refusal`, not of refusals: those
                          are the screening check's figures; releases before this name call it `refusal_share`)
  refusal_coverage:<f>    where the policy lists what to refuse, each refusal family f holds refusals
                          (`curator.refusal_coverage`): at least one, and a share >= min_category_share
                                                                        ExpectColumnSum/MeanToBeBetween
  lookalike_coverage:<f>  answered benign look-alikes of f: share >= min_lookalike_share (when set)
  lookalike_balance:<f>   answered look-alikes of f per refusal of f >= min_lookalikes_per_refusal (when set):
                          the look-alike share of f's refusals and look-alikes >= r / (1 + r)
  refusal_coverage        (gate counts) fails when the policy lists what to refuse and no family is a refusal family
  unique_ids              id unique                                     ExpectColumnValuesToBeUnique
  not_null:<column>       id, task_family, format, difficulty, user, response  ExpectColumnValuesToNotBeNull
  known:<column>          task_family / format / difficulty in the spec's vocabulary  ExpectColumnValuesToBeInSet
  no_empty_messages       shortest stripped message >= 1 character      ExpectColumnValuesToBeBetween
  length:<band>           response words of the band's families within [min, max] for at least
                          `length_mostly` of them                       ExpectColumnValuesToBeBetween
  max_reject_share        rejected / input rows <= gate.max_reject_share (from the gate's counts, not GX:
                          rejected rows are not in the frame; rows selection left out count as neither)

great_expectations is imported only here and only when a gate runs (the import takes about 2 s of CPU): by the
in-memory gate in a thread started before the checks, so that it overlaps them (`import_in_background`); by the
streaming gate after its first pass, which keeps every CPU busy, in a process of its own that then runs the suite
(`start_suite_process`, `evaluating`) while the gate writes the ledger. A process there, not a thread: a thread
importing holds this process's GIL, and the streaming gate's main process, cutting the spill into dedup buckets
meanwhile, took 1.4 s instead of 0.4 for it (500k rows).
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.util import Finalize
from typing import Any, Callable, Iterable

import numpy as np
import polars as pl
import pyarrow as pa

from curator.errors import CuratorError
from curator.gate.kept_columns import kept_columns
from curator.ordered_workers import cpu_count, worker_pool
from curator.spec import Spec

EPS = 1e-9  # shares are compared with this slack, so a share exactly on the tolerance passes
MAX_EXAMPLES = 10


@dataclass(frozen=True)
class ExpectationsConfig:
    """The share of a band's responses that must lie in it (`gate.length_mostly`)."""

    length_mostly: float = 1.0

    @classmethod
    def from_spec(cls, spec: Spec) -> ExpectationsConfig:
        return cls(length_mostly=spec.gate.length_mostly)


@dataclass(frozen=True)
class _Planned:
    name: str
    expected: str
    expectation: Any  # a great_expectations Expectation


def _import_gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    try:
        import great_expectations as gx
        import great_expectations.expectations as gxe
    except ImportError as e:  # the gate extra is not installed
        raise CuratorError(f"the gate needs great-expectations (pip install 'instruct-curator[gate]'): {e}") from None
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    return gx, gxe


def import_in_background() -> None:
    """Start importing great-expectations in a thread, to overlap the checks; `run_suite` waits for it."""
    threading.Thread(target=_import_quietly, name="import great-expectations", daemon=True).start()


_SUITE_PROCESS: ProcessPoolExecutor | None = None  # kept for every later gate of this process: one import


def start_suite_process() -> None:
    """Start importing great-expectations in a process of its own (see the module doc), which `evaluate` and
    `evaluate_columns` then run the suite in; a thread (`import_in_background`) where there is one CPU or no forking
    (not Linux). The process is kept for the later gates of this process (a test session's). It forks from the
    forkserver, as the streaming gate's workers do: a script that runs the gate guards its main code with `if
    __name__ == "__main__"`, which the default in-memory engine, importing in a thread, does not ask."""
    global _SUITE_PROCESS
    if _SUITE_PROCESS is not None:
        return
    if cpu_count() < 2 or not sys.platform.startswith("linux"):
        import_in_background()
        return
    _SUITE_PROCESS = worker_pool(1, "forkserver", preload=(__name__,))
    _SUITE_PROCESS.submit(_import_quietly)
    # ended before a process made by multiprocessing joins its children on exit (it would wait for it forever)
    Finalize(None, _SUITE_PROCESS.shutdown, kwargs={"cancel_futures": True}, exitpriority=10)


def _import_quietly() -> None:
    try:
        _import_gx()
    except CuratorError:  # not installed: `run_suite` says so when it imports
        pass


def frame(spec: Spec, kept: pl.DataFrame, is_train: np.ndarray):
    """The pandas frame the suite runs on: one row per kept pair, from its `kept_columns` (`kept`) and whether it
    went to the train split (`is_train`).

    It holds no texts: `user` and `response` are the texts' lengths in characters, the response's word count
    goes to its band's column, so the frame stays small for millions of rows.
    """
    import pandas as pd

    refusal = refusal_families(spec)
    band_of = {t.name: t.length_band for t in spec.task_families}
    ids = kept["id"].to_arrow().cast(pa.large_string())  # Arrow-backed: no string object per row
    df = pd.DataFrame({"id": pd.Series(pd.arrays.ArrowExtensionArray(ids))})
    for name in ("task_family", "format", "difficulty"):  # one string object per value, not per row
        values = kept[name].cast(pl.Categorical).to_pandas().astype(object)
        df[name] = values.where(values.notna(), None)
    for name in ("user", "response", "shortest_message"):
        df[name] = kept[name].to_numpy()
    df["is_train"] = np.asarray(is_train, dtype=int)
    df["in_refusal_family"] = df["task_family"].isin(refusal).astype(float)
    kinds = pd.Series(kept["coverage"].to_numpy(), index=df.index, dtype=object)
    for family in sorted(refusal):
        in_family = df["task_family"] == family
        df[f"refuses={family}"] = (in_family & (kinds == "refusal")).astype(float)
        df[f"lookalike={family}"] = (in_family & (kinds == "lookalike")).astype(float)
        if spec.refusal_policy.min_lookalikes_per_refusal > 0:  # only `lookalike_balance` reads it
            boundary = (in_family & kinds.isin(["refusal", "lookalike"])).to_numpy()
            df[f"boundary={family}"] = df[f"lookalike={family}"].where(boundary)  # NaN off the boundary: not counted
    for family in spec.task_families:
        df[f"family={family.name}"] = (df["task_family"] == family.name).astype(float)
    word_series = pd.Series(kept["response_words"].to_numpy(), index=df.index, dtype=float)
    bands = df["task_family"].map(band_of)
    for band in spec.length_bands:
        df[f"words:{band.name}"] = word_series.where(bands == band.name)  # NaN elsewhere: not checked
    return df


def _plan(spec: Spec, gxe, config: ExpectationsConfig) -> list[_Planned]:
    gate = spec.gate
    plan = [_Planned("min_train_rows", f">= {gate.min_train_rows}",
                     gxe.ExpectColumnSumToBeBetween(column="is_train", min_value=gate.min_train_rows))]
    for family in spec.task_families:
        plan.append(_Planned(
            f"mix:{family.name}", f"{family.share} ± {gate.mix_tolerance}",
            gxe.ExpectColumnMeanToBeBetween(column=f"family={family.name}",
                                            min_value=family.share - gate.mix_tolerance - EPS,
                                            max_value=family.share + gate.mix_tolerance + EPS)))
    max_share = spec.refusal_policy.max_share
    plan.append(_Planned("refusal_family_share", f"<= {max_share}",
                         gxe.ExpectColumnMeanToBeBetween(column="in_refusal_family", max_value=max_share + EPS)))
    plan += _coverage_plan(spec, gxe)
    plan.append(_Planned("unique_ids", "no repeated id", gxe.ExpectColumnValuesToBeUnique(column="id")))
    for column in ("id", "task_family", "format", "difficulty", "user", "response"):
        plan.append(_Planned(f"not_null:{column}", "no null", gxe.ExpectColumnValuesToNotBeNull(column=column)))
    vocabularies = {
        "task_family": [t.name for t in spec.task_families],
        "format": [f.name for f in spec.formats],
        "difficulty": list(spec.difficulty_levels),
    }
    for column, values in vocabularies.items():
        plan.append(_Planned(f"known:{column}", f"in {values}",
                             gxe.ExpectColumnValuesToBeInSet(column=column, value_set=values)))
    plan.append(_Planned("no_empty_messages", "no blank message content",
                         gxe.ExpectColumnValuesToBeBetween(column="shortest_message", min_value=1)))
    used = {t.length_band for t in spec.task_families}
    for band in spec.length_bands:
        if band.name in used:
            share = "" if config.length_mostly >= 1 else f" for >= {config.length_mostly:.0%}"
            plan.append(_Planned(
                f"length:{band.name}", f"{band.min_words}-{band.max_words} words{share}",
                gxe.ExpectColumnValuesToBeBetween(column=f"words:{band.name}", min_value=band.min_words,
                                                  max_value=band.max_words, mostly=config.length_mostly)))
    return plan


def _coverage_plan(spec: Spec, gxe) -> list[_Planned]:
    """Refusal coverage per refusal family, where the policy lists what to refuse."""
    policy = spec.refusal_policy
    if not policy.refuse:
        return []
    plan = []
    for family in sorted(t.name for t in spec.task_families if t.refusal):
        if policy.min_category_share > 0:
            plan.append(_Planned(f"refusal_coverage:{family}", f"refusals >= {policy.min_category_share} of rows",
                                 gxe.ExpectColumnMeanToBeBetween(column=f"refuses={family}",
                                                                 min_value=policy.min_category_share - EPS)))
        else:
            plan.append(_Planned(f"refusal_coverage:{family}", ">= 1 refusal",
                                 gxe.ExpectColumnSumToBeBetween(column=f"refuses={family}", min_value=1)))
        if policy.min_lookalike_share > 0:
            plan.append(_Planned(f"lookalike_coverage:{family}", f"answered look-alikes >= {policy.min_lookalike_share} of rows",
                                 gxe.ExpectColumnMeanToBeBetween(column=f"lookalike={family}",
                                                                 min_value=policy.min_lookalike_share - EPS)))
        ratio = policy.min_lookalikes_per_refusal
        if ratio > 0:
            plan.append(_Planned(f"lookalike_balance:{family}",
                                 f"look-alikes >= {ratio:g} per refusal: share >= {ratio / (1 + ratio):.3f}",
                                 gxe.ExpectColumnMeanToBeBetween(column=f"boundary={family}",
                                                                 min_value=ratio / (1 + ratio) - EPS)))
    return plan


def _observed(result: dict) -> Any:
    if "observed_value" in result:
        value = result["observed_value"]
        value = value.item() if hasattr(value, "item") else value  # numpy scalar to plain Python
        return round(value, 4) if isinstance(value, float) else value
    return {"unexpected": int(result.get("unexpected_count", 0)), "of": int(result.get("element_count", 0))}


def run_suite(spec: Spec, df, config: ExpectationsConfig) -> list[dict]:
    """Run the spec's expectation suite on `df` (see `frame`) in an ephemeral GX context."""
    gx, gxe = _import_gx()
    import pandas as pd
    from great_expectations.data_context.types.base import (DataContextConfig, InMemoryStoreBackendDefaults,
                                                            ProgressBarsConfig)

    context_config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                                       progress_bars=ProgressBarsConfig(globally=False), analytics_enabled=False)
    context = gx.get_context(mode="ephemeral", project_config=context_config)
    batch = (context.data_sources.add_pandas("gate").add_dataframe_asset("kept")
             .add_batch_definition_whole_dataframe("all kept rows"))
    plan = _plan(spec, gxe, config)
    for i, p in enumerate(plan):
        p.expectation.meta = {"verdict": i}
    # built whole: adding expectations one by one re-saves (deep-copies) the suite each time
    suite = context.suites.add(gx.ExpectationSuite(name=f"gate:{spec.name}",
                                                   expectations=[p.expectation for p in plan]))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="gate", data=batch, suite=suite))
    results = definition.run(batch_parameters={"dataframe": df}, result_format="SUMMARY")
    verdicts: list[dict | None] = [None] * len(plan)
    for r in results.results:
        i = r.expectation_config.meta["verdict"]
        if r.exception_info.get("raised_exception"):
            raise CuratorError(f"expectation {plan[i].name} could not run: {r.exception_info.get('exception_message')}")
        v = {"name": plan[i].name, "passed": bool(r.success), "observed": _observed(r.result),
             "expected": plan[i].expected, "expectation": r.expectation_config.type}
        if not r.success and r.result.get("partial_unexpected_list"):
            v["examples"] = [None if x is pd.NA else x for x in r.result["partial_unexpected_list"][:MAX_EXAMPLES]]
        verdicts[i] = v
    if missing := [plan[i].name for i, v in enumerate(verdicts) if v is None]:
        raise CuratorError(f"great-expectations returned no result for {', '.join(missing)}")
    return verdicts


def evaluate(spec: Spec, *, kept: Iterable[dict], train: Iterable[dict], n_input: int, n_rejected: int,
             config: ExpectationsConfig | None = None) -> list[dict]:
    """All verdicts for a release of `kept` rows (`train` is its train split, only ids read) from `n_input`
    input rows; `kept` is read once (it may be a generator)."""
    records = pl.Series([json.dumps(r, ensure_ascii=False) for r in kept], dtype=pl.String)
    columns = kept_columns(records, refusal_families(spec))
    train_ids = pl.Series([r["id"] for r in train], dtype=pl.String)
    is_train = columns["id"].is_in(train_ids.implode()).fill_null(False).to_numpy()
    return evaluate_columns(spec, columns, is_train, n_input, n_rejected, config)


def refusal_families(spec: Spec) -> frozenset[str]:
    return frozenset(t.name for t in spec.task_families if t.refusal)


def evaluate_columns(spec: Spec, kept: pl.DataFrame, is_train: np.ndarray, n_input: int, n_rejected: int,
                     config: ExpectationsConfig | None = None) -> list[dict]:
    """`evaluate` on the `kept_columns` of the kept rows and whether each went to the train split."""
    return evaluating(spec, kept, is_train, n_input, n_rejected, config)()


def evaluating(spec: Spec, kept: pl.DataFrame, is_train: np.ndarray, n_input: int, n_rejected: int,
               config: ExpectationsConfig | None = None) -> Callable[[], list[dict]]:
    """`evaluate_columns` begun in the process `start_suite_process` started, while the caller goes on (the gate
    writes the ledger meanwhile); the function returned waits for the verdicts. Without that process (or where it
    died), the verdicts are reached here, when asked for."""
    job = (spec, kept, is_train, n_input, n_rejected, config)
    try:
        future = _SUITE_PROCESS.submit(_evaluate_columns, *job) if _SUITE_PROCESS is not None else None
    except BrokenProcessPool:  # the process died (killed)
        _forget_process()
        future = None

    def verdicts() -> list[dict]:
        if future is not None:
            try:
                return future.result()
            except BrokenProcessPool:
                _forget_process()
        return _evaluate_columns(*job)
    return verdicts


def _forget_process() -> None:
    global _SUITE_PROCESS
    _SUITE_PROCESS = None


def _evaluate_columns(spec: Spec, kept: pl.DataFrame, is_train: np.ndarray, n_input: int, n_rejected: int,
                      config: ExpectationsConfig | None) -> list[dict]:
    config = ExpectationsConfig.from_spec(spec) if config is None else config
    verdicts = run_suite(spec, frame(spec, kept, is_train), config)
    reject_share = n_rejected / n_input if n_input else 0.0
    max_share = spec.gate.max_reject_share
    verdicts.insert(1, {"name": "max_reject_share", "passed": reject_share <= max_share + EPS,
                        "observed": round(reject_share, 4), "expected": f"<= {max_share}",
                        "expectation": "gate counts"})
    if spec.refusal_policy.refuse and not any(t.refusal for t in spec.task_families):
        verdicts.append({"name": "refusal_coverage", "passed": False, "observed": "no refusal family",
                         "expected": "a refusal family for the policy's categories", "expectation": "gate counts"})
    return verdicts
