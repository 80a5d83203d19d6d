"""The streaming gate (`--engine stream`) and the Ray engine (`--engine ray`, on a local Ray with 2 CPUs) give the
release of the in-memory gate, row for row: kept rows, splits, ledger and check stats."""
from __future__ import annotations

import json
import os
import random
from dataclasses import replace
from itertools import islice
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from curator.cli import main
from curator.errors import CuratorError
from curator.gate import stream
from curator.gate.check import CheckResult, Row
from curator.gate.engines import ray_engine
from curator.gate.pipeline import run_gate
from curator.gate.stream import merge_stats
from curator.importers import import_file
from curator.records import build_messages, make_pair
from curator.review.ledger import ReviewLedger
from curator.rundir import RunDir
from curator.spec import Spec, load_spec
from test_review_gate import decision

MIX = Path(__file__).resolve().parents[2] / "shared" / "data" / "instruct_mix.jsonl"

SPEC = """
name: stream-test
description: General pairs and yes/no labels.
difficulty_levels: [easy, medium, hard]
length_bands:
  - {name: any, min_words: 1, max_words: 100000}
formats:
  - {name: free_text, kind: text}
  - {name: yes_no, kind: label, labels: ["yes", "no"]}
refusal_policy: {max_share: 0.5}
gate:
  exact_dedup: true
  minhash: {threshold: 0.8, num_perm: 128, ngram: 5}
  eval_fraction: 0.1
  min_train_rows: 5
  max_reject_share: 0.9
  relevance: {enabled: false}  # random-word pairs are off topic by design; the shared-mix test runs it
task_families:
  - {name: general, share: 0.8, description: Anything., formats: [free_text], length_band: any}
  - {name: classify, share: 0.2, description: Yes or no., formats: [yes_no], length_band: any}
"""

WORDS = ("river mountain budget school harbour engine garden market winter signal library museum kettle "
         "bridge orchard lantern copper meadow violin tunnel canvas pepper glacier").split()


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def planted_records(n: int = 400, seed: int = 7) -> list[dict]:
    """Distinct pairs with planted faults: exact duplicates (case and spacing changed), near duplicates (one
    word of the question changed), questions asked again with another answer, label conflicts, a wrong sum,
    an empty answer and an unknown family."""
    rng = random.Random(seed)
    base = [make_pair(build_messages(f"Describe {_sentence(rng, 30)}.", "", _sentence(rng, 40)),
                      task_family="general", format="free_text", difficulty="medium", source="synthetic",
                      teacher_model="gemma-3-270m")
            for _ in range(n)]
    out = list(base)
    for r in rng.sample(base, 40):  # exact duplicates after normalisation
        user, answer = r["messages"][0]["content"], r["messages"][1]["content"]
        out.append(make_pair(build_messages(user.upper() + " !", "", answer + " ."), task_family="general",
                             format="free_text", difficulty="medium", source="synthetic"))
    for r in rng.sample(base, 40):  # near duplicates: one word of the question changed
        words = r["messages"][0]["content"].split()
        words[5] = "zeppelin"
        out.append(make_pair(build_messages(" ".join(words), "", r["messages"][1]["content"]),
                             task_family="general", format="free_text", difficulty="hard", source="synthetic"))
    for r in rng.sample(base, 20):  # the same question with another answer
        out.append(make_pair(build_messages(r["messages"][0]["content"], "", _sentence(rng, 45)),
                             task_family="general", format="free_text", difficulty="medium", source="synthetic"))
    for i in range(20):  # the same question with both labels, majorities and ties
        question = f"Is the {WORDS[i]} near the {WORDS[-i - 1]}?"
        for label in ["yes"] * (1 + i % 3) + ["no"] * (1 + i % 2):
            out.append(make_pair(build_messages(question, "", label), task_family="classify",
                                 format="yes_no", difficulty="easy", source="human"))
    out.append(make_pair(build_messages("What is 2 + 2?", "", "2 + 2 = 5"), task_family="general",
                         format="free_text", difficulty="easy", source="human"))
    empty = make_pair(build_messages("Say nothing.", "", "x"), task_family="general", format="free_text",
                      difficulty="easy", source="human")
    empty["messages"][1]["content"] = ""
    out.append(empty)
    out.append(make_pair(build_messages("Write a haiku.", "", "Soft rain on the roof"), task_family="poetry",
                         format="free_text", difficulty="easy", source="human"))
    rng.shuffle(out)
    return out


def write_runs(root: Path, records: list[dict], parts: int = 2) -> list[Path]:
    paths = []
    size = -(-len(records) // parts)
    for k in range(parts):
        run = RunDir(root / f"run{k}")
        run.create({"kind": "test", "status": "complete"})
        with run.appender() as out:
            for r in records[k * size:(k + 1) * size]:
                out.add_pair(r)
        paths.append(run.path)
    return paths


@pytest.fixture()
def spec(tmp_path):
    path = tmp_path / "stream-test.yaml"
    path.write_text(SPEC)
    return load_spec(path)


def _release(path: Path) -> dict:
    manifest = json.loads((path / "manifest.json").read_text())
    checks = [{**{k: v for k, v in c.items() if k != "seconds"},  # timings, the check's and its stages'
               "stats": {k: v for k, v in c["stats"].items() if k != "seconds"}} for c in manifest["checks"]]
    return {
        "train": pl.read_parquet(path / "train.parquet").to_dicts(),
        "eval": pl.read_parquet(path / "eval.parquet").to_dicts(),
        "rejected": pl.read_parquet(path / "rejected.parquet").to_dicts(),
        "checks": checks,
        "counts": manifest["counts"],
        "verdicts": manifest["verdicts"],
        "teacher_models": manifest["teacher_models"],
    }


def assert_same_release(a: Path, b: Path) -> dict:
    left, right = _release(a), _release(b)
    for part in ("train", "eval", "rejected", "checks", "counts", "verdicts", "teacher_models"):
        assert left[part] == right[part], part
    return left


def test_streaming_gate_gives_the_in_memory_release_on_planted_rows(spec, tmp_path, monkeypatch):
    runs = write_runs(tmp_path / "runs", planted_records())
    memory = run_gate(runs, spec, root=tmp_path / "memory")
    monkeypatch.setattr(stream, "BATCH_ROWS", 37)  # many batches, cut anywhere
    monkeypatch.setattr(stream, "CHUNK_ROWS", 5)  # dedup groups checked a few at a time
    assert main(["gate", *map(str, runs), "--spec", spec.path, "--engine", "stream"]) in (0, 1)
    streamed = next((tmp_path / "data" / "releases").glob("release-v*"))
    release = assert_same_release(memory.release, streamed)
    removed = {c["name"]: c["removed"] for c in release["checks"]}
    assert removed["exact_dedup"] >= 40 and removed["near_dedup"] >= 30 and removed["labels"] >= 10
    assert removed["schema"] == 2 and removed["arithmetic"] == 1  # the empty answer and the poetry row; 2 + 2 = 5


def test_a_corrupt_line_read_by_a_worker_is_named(spec, tmp_path, monkeypatch):
    runs = write_runs(tmp_path / "runs", planted_records())
    good = RunDir(runs[0]).line_count("pairs.jsonl")
    with open(runs[0] / "pairs.jsonl", "a", encoding="utf-8") as f:
        f.write("{not json\n")
    monkeypatch.setattr(stream, "BATCH_ROWS", 50)  # many batches: the worker processes parse them
    with pytest.raises(CuratorError, match=rf"run0/pairs.jsonl:{good + 1}: not valid JSON"):
        run_gate(runs, spec, root=tmp_path / "releases", engine="stream")


def test_a_row_with_a_list_for_its_family_or_a_number_for_its_id_is_rejected_into_the_ledger(spec, tmp_path):
    """Malformed fields reach the ledger as JSON text (the ledger's columns are text) in both engines, where they
    used to stop the release from being written."""
    records = planted_records(60)
    records[0] = {**records[0], "task_family": ["general", "classify"]}
    records[1] = {**records[1], "id": 12345}
    runs = write_runs(tmp_path / "runs", records)
    memory = run_gate(runs, spec, root=tmp_path / "memory")
    release = assert_same_release(memory.release, run_gate(runs, spec, root=tmp_path / "stream",
                                                           engine="stream").release)
    schema = [(r["id"], r["task_family"]) for r in release["rejected"] if r["check"] == "schema"]
    assert (records[0]["id"], '["general", "classify"]') in schema and ("12345", records[1]["task_family"]) in schema


def test_rows_selection_leaves_out_are_not_counted_as_rejects(tmp_path):
    """Selection keeping 50 rows a cell leaves out most rows: the reject share (rejects / input) counts neither them
    nor their rows, so the release passes `max_reject_share: 0.7`, in memory and streamed."""
    path = tmp_path / "select.yaml"
    path.write_text(SPEC.replace("max_reject_share: 0.9", "max_reject_share: 0.7\n  selection: {top_n: 50}"))
    spec = load_spec(path)
    runs = write_runs(tmp_path / "runs", planted_records())
    for engine in ("memory", "stream"):
        release = _release(run_gate(runs, spec, root=tmp_path / engine, engine=engine).release)
        removed = {c["name"]: c["removed"] for c in release["checks"]}
        counts, share = release["counts"], next(v for v in release["verdicts"] if v["name"] == "max_reject_share")
        assert counts["rejected"] / counts["input"] > 0.7  # selection's choices counted as rejects would fail it
        assert share["passed"] and share["observed"] == round(
            (counts["rejected"] - removed["selection"]) / (counts["input"] - removed["selection"]), 4)


def test_merge_stats_adds_counts_and_keeps_settings():
    a = {"checked": 3, "found": {"x": 1}, "kinds": ["email"], "redacted": [{"id": 1}], "detector_version": 1,
         "language": "en"}
    b = {"checked": 4, "found": {"x": 2, "y": 1}, "kinds": ["email"], "redacted": [{"id": 2}], "detector_version": 1,
         "language": "en"}
    assert merge_stats(a, b) == {"checked": 7, "found": {"x": 3, "y": 1}, "kinds": ["email"],
                                 "redacted": [{"id": 1}, {"id": 2}], "detector_version": 1, "language": "en"}


def _mix_run(tmp_path: Path, n: int) -> Path:
    if not MIX.is_file():
        pytest.skip(f"{MIX} is not here (the shared instruct mix); the planted-rows test covers the same path")
    src = tmp_path / "mix.jsonl"
    with open(MIX, encoding="utf-8") as f:
        src.write_text("".join(islice(f, n)))
    out = tmp_path / "runs" / "mix"
    import_file(src, "alpaca", out, task_family="general", format_name="free_text", difficulty="medium")
    return out


def test_streaming_gate_keeps_the_same_rows_of_the_shared_mix(spec, tmp_path, monkeypatch):
    run = _mix_run(tmp_path, 6000)
    memory = run_gate([run], spec, root=tmp_path / "memory")
    monkeypatch.setattr(stream, "BATCH_ROWS", 1000)
    monkeypatch.setattr(stream, "CHUNK_ROWS", 500)
    streamed = run_gate([run], spec, root=tmp_path / "stream", engine="stream")
    release = assert_same_release(memory.release, streamed.release)
    assert release["counts"]["rejected"] > 100  # the slice has real duplicates and empty outputs


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs, started once for this module's Ray tests (`RAY_ADDRESS` set aside)."""
    ray = pytest.importorskip("ray", reason="the scale extra (ray[data]) is not installed")
    address = os.environ.pop("RAY_ADDRESS", None)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    if address is not None:
        os.environ["RAY_ADDRESS"] = address


def test_ray_engine_gives_the_in_memory_release(local_ray, spec, tmp_path, monkeypatch):
    runs = write_runs(tmp_path / "runs", planted_records(200, seed=3))
    memory = run_gate(runs, spec, root=tmp_path / "memory")
    monkeypatch.setattr(stream, "BATCH_ROWS", 64)
    distributed = run_gate(runs, spec, root=tmp_path / "ray", engine="ray")
    release = assert_same_release(memory.release, distributed.release)
    removed = {c["name"]: c["removed"] for c in release["checks"]}
    assert removed["exact_dedup"] and removed["near_dedup"] and removed["labels"]  # found through the Ray shuffle


def test_ray_engine_keeps_the_same_rows_of_the_shared_mix(local_ray, spec, tmp_path, monkeypatch):
    run = _mix_run(tmp_path, 3000)
    memory = run_gate([run], spec, root=tmp_path / "memory")
    monkeypatch.setattr(stream, "BATCH_ROWS", 500)
    distributed = run_gate([run], spec, root=tmp_path / "ray", engine="ray")
    release = assert_same_release(memory.release, distributed.release)
    assert {c["name"]: c["removed"] for c in release["checks"]}["near_dedup"] > 0

PARAPHRASES = [("How do I bake a chocolate cake at home?", "Mix flour, cocoa, sugar, eggs and butter; bake 35 minutes."),
               ("How can I bake a chocolate cake at home?", "Bake it."),
               ("What is the capital city of France?", "Paris."),
               ("What's the capital city of France?", "The capital of France is Paris."),
               ("Write a short poem about the ocean.", "Waves fold in light.")]


def semantic_case(tmp_path: Path, planted: int, seed: int) -> tuple[Spec, list[Path], list[dict]]:
    """A spec with semantic dedup on the real MiniLM (threshold 0.93), and runs of planted rows plus `PARAPHRASES`
    (the paraphrases too, returned)."""
    path = tmp_path / "semantic.yaml"
    path.write_text(SPEC.replace("  relevance:", "  semantic_dedup: {enabled: true, backend: minilm, threshold: 0.93}\n"
                                               "  relevance:"))
    paraphrases = [make_pair(build_messages(q, "", a), task_family="general", format="free_text", difficulty="easy",
                             source="human") for q, a in PARAPHRASES]
    return load_spec(path), write_runs(tmp_path / "runs", planted_records(planted, seed=seed) + paraphrases), paraphrases


def watched_embedders(monkeypatch, block: int) -> list[ray_engine.RayEmbed]:
    """The Ray embedders the gate makes from now on (each the real `RayEmbed`, in blocks of `block`), as made."""
    made, real = [], ray_engine.RayEmbed

    def watched(backend: str) -> ray_engine.RayEmbed:
        made.append(real(backend, block=block))
        return made[-1]

    monkeypatch.setattr(ray_engine, "RayEmbed", watched)
    return made


def test_ray_engine_embeds_on_its_workers_and_gives_the_in_memory_release(local_ray, tmp_path, monkeypatch):
    """Semantic dedup with the real MiniLM under the Ray engine: the model runs in Ray actors (not in the driver) and
    the release is the in-memory gate's, semantic duplicates included."""
    spec, runs, paraphrases = semantic_case(tmp_path, 60, seed=5)
    memory = run_gate(runs, spec, root=tmp_path / "memory")
    made = watched_embedders(monkeypatch, block=32)
    distributed = run_gate(runs, spec, root=tmp_path / "ray", engine="ray")
    release = assert_same_release(memory.release, distributed.release)
    semantic = [r for r in release["rejected"] if r["check"] == "semantic_dedup"]
    assert {r["duplicate_of"] for r in semantic} >= {paraphrases[0]["id"], paraphrases[3]["id"]}
    assert [e.backend for e in made] == ["minilm"] and made[0].workers and os.getpid() not in made[0].workers


def test_shared_keys_give_the_groups_of_all_keys():
    """What the Ray shuffle leaves (the folded keys two or more rows share) links the rows in play exactly as all the
    keys do, whichever rows are still in play."""
    rng = np.random.default_rng(0)
    n, store, tables = 3000, stream._KeyStore(), []
    digests = rng.integers(0, 2**63, size=(n, 2), dtype=np.int64).view("V16").ravel()
    bands = rng.integers(0, 2**64 - 1, size=(n, 3), dtype=np.uint64)
    for source, target in rng.integers(0, n, size=(400, 2)):  # planted shared keys, chains included
        column = rng.integers(0, 4)
        if column == 0:
            digests[target] = digests[source]
        else:
            bands[target, column - 1] = bands[source, column - 1]
    orders = np.sort(rng.choice(n + 500, size=n, replace=False))  # rows without keys (rejected earlier) between
    for part in np.array_split(np.arange(n), 4):  # batches, as the first pass adds them
        keys = stream.Keys(orders[part], [digests[part], *bands[part].T])
        store.add(keys)
        rows = [Row(record={}, input="run", line=int(o), order=int(o)) for o in range(orders[part][0], orders[part][-1] + 1)]
        tables.append(pa.table({"order": [r.order for r in rows], "keys0": ray_engine.key_lists(rows, keys)}))
    long = pa.concat_tables([ray_engine.key_rows(t, "keys0") for t in tables])
    counted = long.group_by("key").aggregate([("order", "count")])  # what the Ray groupby counts
    shared = ray_engine.among(long, counted.filter(pc.greater(counted.column("order_count"), 1)).column("key")
                              .combine_chunks())
    keyed = np.concatenate([t.column("order").to_numpy()[pc.list_value_length(t.column("keys0")).to_numpy() > 0]
                            for t in tables])
    found = stream.SharedKeys(shared.column("key").to_numpy(), shared.column("order").to_numpy(), keyed)
    assert len(shared) < len(long) / 5  # only shared keys are left
    for alive_share in (1.0, 0.7):
        alive = rng.random(n + 500) < alive_share
        expected, got = store.groups(alive), found.groups(alive)
        assert (expected >= 0).sum() > 100
        assert np.array_equal(expected, got)
        assert found.keyed.size == n and store.live(alive) == int(alive[found.keyed].sum())


@pytest.mark.parametrize("engine", ["stream", "ray"])
def test_records_a_check_rewrites_after_the_first_pass_reach_the_release(engine, spec, tmp_path, monkeypatch, request):
    """With a review ledger the gate opens with `human_review`, a whole-set check, so PII redaction runs after the
    first pass: its redacted records, not the originals, must go into the streamed release."""
    if engine == "ray":
        request.getfixturevalue("local_ray")
    records = planted_records(120)
    leaky = [i for i, r in enumerate(records) if r["task_family"] == "general"][:5]
    for i in leaky:
        r = records[i]
        records[i] = make_pair(build_messages(r["messages"][0]["content"], "",
                                              r["messages"][1]["content"] + f" Write to dana.lee{i}@gmail.com."),
                               task_family="general", format="free_text", difficulty="medium", source="synthetic")
    ledger = ReviewLedger(tmp_path / "ledger.jsonl")
    decision(ledger, "ann", records[leaky[0]]["id"], "accept", cell=["general", "free_text", "medium"])
    ledger.close()
    text = Path(spec.path).read_text().replace("  relevance:", "  pii: {action: redact}\n  relevance:")
    Path(spec.path).write_text(text)
    redacting = load_spec(spec.path)
    runs = write_runs(tmp_path / "runs", records)
    memory = run_gate(runs, redacting, root=tmp_path / "memory", review_ledger=tmp_path / "ledger.jsonl")
    monkeypatch.setattr(stream, "BATCH_ROWS", 37)
    streamed = run_gate(runs, redacting, root=tmp_path / "streamed", review_ledger=tmp_path / "ledger.jsonl",
                        engine=engine)
    release = assert_same_release(memory.release, streamed.release)
    kept = [m["content"] for part in ("train", "eval") for row in release[part] for m in row["messages"]]
    assert not any("@gmail.com" in c for c in kept)
    assert sum("[EMAIL]" in c for c in kept) >= 3  # not all five: dedup drops those that are planted duplicates


class _Uppercasing:
    """A whole-set check that rewrites every record it keeps (as no built-in whole-set check does)."""

    name = "uppercasing"

    def run(self, rows: list[Row]) -> CheckResult:
        kept = [replace(r, record={**r.record, "messages": [{**m, "content": m["content"].upper()}
                                                            for m in r.record["messages"]]}) for r in rows]
        return CheckResult(kept, [])


def test_a_whole_set_check_that_rewrites_records_is_refused_by_the_streaming_gate(spec, tmp_path):
    runs = [RunDir(p) for p in write_runs(tmp_path / "runs", planted_records(60))]
    with pytest.raises(CuratorError, match="uppercasing rewrites records of the whole set.*--engine memory"):
        stream.run_checks_streaming([_Uppercasing()], runs, "stream", tmp_path)


class _PassThrough:
    """A whole-set check that keeps every row as it is: the row checks after it run after the first pass."""

    name = "pass_through"

    def run(self, rows: list[Row]) -> CheckResult:
        return CheckResult(rows, [])


class _UppercasingRows(_Uppercasing):
    name = "uppercasing_rows"
    row_local = True


def test_a_row_check_after_the_first_pass_keeps_its_rewrites_only_when_it_declares_them(spec, tmp_path):
    runs = [RunDir(p) for p in write_runs(tmp_path / "runs", planted_records(60))]
    (tmp_path / "undeclared").mkdir()
    with pytest.raises(CuratorError, match="uppercasing_rows rewrites records without declaring `rewrites_records"):
        stream.run_checks_streaming([_PassThrough(), _UppercasingRows()], runs, "stream", tmp_path / "undeclared")
    declared = _UppercasingRows()
    declared.rewrites_records = True
    (tmp_path / "declared").mkdir()
    kept, _, _, counts = stream.run_checks_streaming([_PassThrough(), declared], runs, "stream", tmp_path / "declared")
    records = [json.loads(text) for piece in kept.pieces() for text in piece.table().column("record").to_pylist()]
    assert len(records) == counts.total
    assert all(m["content"] == m["content"].upper() for r in records for m in r["messages"])
