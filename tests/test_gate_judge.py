"""The `judge` gate check against the real llama.cpp server on loopback (gemma-3-270m as the judge: the
mechanics, not the quality of its verdicts), with a proxy that garbles verdicts for the one fault a real
server with a grammar cannot produce, and a gate run that carries the scores into the release."""
from __future__ import annotations

import dataclasses
import http.client
import json
import re
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import yaml

from curator.errors import CuratorError
from curator.gate.check import Row
from curator.gate.checks.judge import Judge, judge_request, parse_verdict, rubric
from curator.gate.pipeline import run_gate
from curator.records import build_messages, make_pair
from curator.release.report import compute_figures, render_html
from curator.release.store import open_release, read_split
from curator.rundir import RunDir
from curator.spec import Spec, SpecError, load_spec
from curator.teacher.embedded import embedded_teacher, free_port
from generate_helpers import STARTER
from loopback_proxy import LoopbackProxy

MODEL = "gemma-3-270m"
FAMILIES = ("classify", "summarize", "reason", "refuse")  # one seed of each: four judge calls per run


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with embedded_teacher(MODEL, tmp_path_factory.mktemp("server") / "server.log") as url:
        yield url


def write_judge_spec(directory: Path, **judge) -> Spec:
    doc = yaml.safe_load(STARTER.read_text())
    doc["gate"]["judge"] = {"enabled": True, "threshold": 1, "cache": "judge-cache.sqlite", **judge}
    # the starter seeds judged here are also prompts of the shipped eval suites, which decontamination rejects
    doc["gate"]["decontamination"] = {"shipped_suites": False}
    path = directory / "spec.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_spec(path)


def seed_records(spec) -> list[dict]:
    """The first seed pair of each of FAMILIES, as pair records."""
    out = []
    for name in FAMILIES:
        family = spec.family(name)
        seed = family.seeds[0]
        out.append(make_pair(build_messages(seed.instruction, seed.input, seed.output), task_family=name,
                             format=seed.format or family.formats[0], difficulty=seed.difficulty or family.difficulties[0],
                             length_band=family.length_band, source="human"))
    return out


def rows_of(records: list[dict]) -> list[Row]:
    return [Row(r, "runs/fixture", i + 1, i) for i, r in enumerate(records)]


class GarblingProxy(LoopbackProxy):
    """Relays to the real server and replaces the text of the first len(texts) completions with `texts`
    (usage and everything else as the server sent it)."""

    def __init__(self, upstream: str, texts: list[str]):
        self.texts = list(texts)
        super().__init__(upstream)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                proxy.relay(self, b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=300)
                upstream.request("POST", self.path, body=body, headers={"Content-Type": "application/json"})
                reply = json.loads(upstream.getresponse().read())
                upstream.close()
                with proxy._lock:
                    if proxy.texts:
                        reply["choices"][0]["text"] = proxy.texts.pop(0)
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def test_parse_verdict_takes_only_the_strict_shapes():
    v = parse_verdict('{"score": 7, "reason": "Correct  label,\\n terse."}')
    assert (v.score, v.reason) == (7, "Correct label, terse.")
    v = parse_verdict('```json\n{"score": 10, "reason": "ok"}\n```')
    assert (v.score, v.reason) == (10, "ok")
    v = parse_verdict('{"reason": "Right label.", "score": 9}')
    assert (v.score, v.reason) == (9, "Right label.")
    v = parse_verdict("Score: 3/10\nReason: the label is wrong")
    assert (v.score, v.reason) == (3, "the label is wrong")
    v = parse_verdict("  score: 1\n\nreason: empty answer  ")
    assert (v.score, v.reason) == (1, "empty answer")
    for reply in ('{"score": 11, "reason": "x"}', '{"score": 0, "reason": "x"}', '{"score": 7.5, "reason": "x"}',
                  '{"score": "7", "reason": "x"}', '{"score": true, "reason": "x"}', '{"score": 7}',
                  '{"score": 7, "reason": ""}', '{"score": 7, "reason": "..."}', "Score: 7\nReason: ...", '{"score": 7, "reason": "x", "extra": 1}', '{"score": 7, "reason": "x"',
                  "Score: 7", "7", "I would rate this 8 out of 10.", "Score: seven\nReason: fine",
                  "Score: 7\nReason: fine\nScore: 2\nReason: no", "", '[{"score": 7, "reason": "x"}]'):
        assert parse_verdict(reply) is None, reply


def test_rubric_holds_the_response_standards_family_format_and_policy(tmp_path):
    spec = write_judge_spec(tmp_path)
    by_family = {r["task_family"]: r for r in seed_records(spec)}
    text = rubric(spec, by_family["classify"])
    assert spec.response_standards.tone in text
    assert all(rule in text for rule in spec.response_standards.format_rules)
    assert spec.family("classify").description in text
    assert "allowed labels: positive, negative, neutral" in text
    assert spec.refusal_policy.style not in text
    refusal = rubric(spec, by_family["refuse"])
    assert spec.refusal_policy.style in refusal and all(item in refusal for item in spec.refusal_policy.refuse)
    assert "a good response is the refusal" in refusal and "does not refuse" not in refusal
    lookalike = make_pair(build_messages("How do I kill a stuck Python process?", "", "Run `kill <pid>`."),
                          task_family="refuse", format="free_text", difficulty="easy", source="synthetic",
                          strategy="self_instruct:lookalike")
    answered = rubric(spec, lookalike)
    assert "does not refuse" in answered and "a good response is the refusal" not in answered
    assert spec.refusal_policy.style in answered


def test_long_pairs_are_cut_for_the_judge_and_say_so(tmp_path):
    spec = write_judge_spec(tmp_path)
    record = make_pair(build_messages("Summarize the text in one sentence.", "word " * 3000, "short " * 2000),
                       task_family="summarize", format="free_text", difficulty="easy", source="human")
    prompt = judge_request(spec, spec.gate.judge, record).prompt
    assert len(re.findall(r"\[\.\.\. \d+ more characters not shown\]", prompt)) == 2  # the user turn and the response
    assert "short " * 416 + "shor\n[... 9499 more characters not shown]" in prompt  # the response: 11,999 chars stripped
    assert len(prompt) < 2 * 2500 + 2000
    short = judge_request(spec, spec.gate.judge, seed_records(spec)[0]).prompt
    assert "not shown" not in short and seed_records(spec)[0]["messages"][-1]["content"] in short


def test_judge_scores_every_row_counts_its_cost_and_a_rerun_is_free(server, tmp_path):
    spec = write_judge_spec(tmp_path, base_url=server)
    rows = rows_of(seed_records(spec))
    result = Judge.from_spec(spec).run(rows)
    stats = result.stats
    assert (len(result.kept), stats["removed"], stats["unparseable"]) == (4, 0, 0)  # the grammar forces the shape
    assert stats["calls"] == 4 and stats["cached"] == 0
    assert stats["prompt_tokens"] > 4 * 100 and stats["completion_tokens"] > 4 * 5 and stats["seconds"] > 0
    scores = [r.scores["judge"] for r in rows]
    assert all(s in range(1, 11) for s in scores)
    assert sum(stats["histogram"].values()) == 4 and stats["mean"] == pytest.approx(sum(scores) / 4, abs=1e-3)
    print(f"judge: {stats['seconds'] / 4:.2f} s a row, {stats['completion_tokens'] / 4:.0f} completion tokens a row")

    # a rerun with a stricter threshold: every verdict from the cache, rows below it rejected with their reason
    threshold = max(scores)
    strict = Judge(spec, dataclasses.replace(spec.gate.judge, threshold=threshold))
    again = strict.run(rows_of(seed_records(spec)))
    assert again.stats["calls"] == 0 and again.stats["cached"] == 4 and again.stats["completion_tokens"] == 0
    low = {r.id for r, s in zip(rows, scores) if s < threshold}
    assert {x.row.id for x in again.rejected} == low
    for x in again.rejected:
        assert x.reason.startswith(f"judge:low_score: {x.row.scores['judge']:.0f}/10 < {threshold:g}: ")
        assert len(x.reason) > len(f"judge:low_score: 1/10 < {threshold:g}: ")  # the judge's reason follows

    only = Judge(spec, dataclasses.replace(spec.gate.judge, families=("classify",))).run(rows_of(seed_records(spec)))
    assert (only.stats["judged"], only.stats["skipped"], only.stats["calls"], only.stats["cached"]) == (1, 3, 0, 1)
    assert [set(r.scores) for r in only.kept] == [{"judge"}, set(), set(), set()]


def test_chat_mode_sends_the_rubric_as_messages_and_accounts_for_every_reply(server, tmp_path):
    spec = write_judge_spec(tmp_path, base_url=server, mode="chat", max_tokens=32)
    records = seed_records(spec)[:2]
    request = judge_request(spec, spec.gate.judge, records[0])
    assert request.grammar is None and spec.response_standards.tone in request.messages[0]["content"]
    result = Judge.from_spec(spec).run(rows_of(records))
    stats = result.stats
    assert stats["calls"] == 2 and stats["completion_tokens"] > 0
    assert stats["unparseable"] + sum(stats["histogram"].values()) == 2 == len(result.kept) + len(result.rejected)
    assert all(x.reason.startswith(("judge:unparseable: ", "judge:low_score: ")) for x in result.rejected)
    print("chat-mode verdicts of the base model:", [x.reason[:60] for x in result.rejected])


def test_malformed_verdicts_are_quarantined_and_counted(server, tmp_path):
    garbage = ["Score: seven", '{"score": 12, "reason": "too high"}']
    spec = write_judge_spec(tmp_path)
    with GarblingProxy(server, garbage) as proxy:
        config = dataclasses.replace(spec.gate.judge, base_url=proxy.base_url)
        records = seed_records(spec)
        result = Judge(spec, config).run(rows_of(records))
    stats = result.stats
    assert stats["unparseable"] == 2 and stats["calls"] == 4
    assert len(result.kept) + len(result.rejected) == 4 and sum(stats["histogram"].values()) == 2
    reasons = sorted(x.reason for x in result.rejected if x.reason.startswith("judge:unparseable: "))
    assert reasons == sorted(f"judge:unparseable: {g}" for g in garbage)
    assert all("judge" not in x.row.scores for x in result.rejected if "unparseable" in x.reason)
    assert all("judge" in r.scores for r in result.kept)
    assert stats["prompt_tokens"] > 0  # the garbled replies still cost what the server counted


def test_an_unreachable_judge_stops_the_gate_with_one_line(tmp_path):
    spec = write_judge_spec(tmp_path, base_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(CuratorError, match=r"^judge: teacher at http://127\.0\.0\.1:\d+/v1 not reachable: ") as error:
        Judge.from_spec(spec).run(rows_of(seed_records(spec)))
    assert "\n" not in str(error.value)


def test_gate_run_writes_judge_scores_into_the_release_and_the_manifest(server, tmp_path):
    spec = write_judge_spec(tmp_path, base_url=server)
    run = RunDir(tmp_path / "run")
    run.create({"kind": "test", "status": "complete"})
    for record in seed_records(spec):
        run.add_pair(record)
    report = run_gate([run.path], spec, root=tmp_path / "releases")
    judge = next(c for c in report.manifest["checks"] if c["name"] == "judge")
    assert judge["stats"]["judged"] == 4 and judge["stats"]["calls"] == 4 and judge["removed"] == 0
    names = [c["name"] for c in report.manifest["checks"]]
    assert names.index("pii") < names.index("judge") < names.index("exact_dedup")
    train = read_split(report.release, "train")
    assert train and all(r["scores"]["judge"] in range(1, 11) for r in train)

    release = open_release(report.release)
    figures = compute_figures(release, embed=False)
    assert sorted(figures.scores["judge"]["kept"]) == sorted(r["scores"]["judge"] for _, r in release.records())
    assert "reward" not in figures.scores and 'id="chart-judge-scores"' in render_html(release, figures)


def test_spec_sections_of_the_model_checks(tmp_path):
    spec = write_judge_spec(tmp_path, families=["classify"])
    assert spec.gate.judge.families == ("classify",) and spec.gate.judge.cache == str(tmp_path / "judge-cache.sqlite")
    assert not spec.gate.self_consistency.enabled and not spec.gate.reward_model.enabled
    doc = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    for gate, message in (({"judge": {"families": ["poetry"]}}, "gate.judge.families[0]: unknown task family 'poetry'"),
                          ({"self_consistency": {"samples": 0}}, "gate.self_consistency.samples: must be >= 1"),
                          ({"reward_model": {"enabled": True}}, "gate.reward_model: an enabled reward model needs path"),
                          ({"judge": {"mode": "batch"}}, "gate.judge.mode: must be one of")):
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**doc, "gate": {**doc["gate"], **gate}}, sort_keys=False))
        with pytest.raises(SpecError, match=re.escape(message)):
            load_spec(tmp_path / "bad.yaml")
    (tmp_path / "rm.yaml").write_text(yaml.safe_dump(
        {**doc, "gate": {"reward_model": {"enabled": True, "path": "models/rm", "threshold": 0.5}}}, sort_keys=False))
    reward = load_spec(tmp_path / "rm.yaml").gate.reward_model
    assert (reward.path, reward.threshold) == (str(tmp_path / "models" / "rm"), 0.5)
