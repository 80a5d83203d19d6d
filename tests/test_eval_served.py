"""`trainer eval --endpoint`: served models through the OpenAI-compatible client, against the real llama.cpp server."""
import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from curator.teacher.embedded import embedded_teacher, free_port
from tiny_model import build_tiny_model, seed_pairs, starter_spec, write_fixture_release
from trainer.battery import load_refusal_suite
from trainer.battery.judge import parse_score
from trainer.chat_template import gemma_chat_template
from trainer.cli import main
from trainer.served import render_prompt

SECRET = "sk-test-never-written-4f1c2a9e"
MODEL = "gemma-eval"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL of the embedded gemma-3-270m (base model, GGUF) server, once for the module."""
    with embedded_teacher(MODEL, tmp_path_factory.mktemp("server") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A data root holding release-v1: the starter spec's seed pairs as train and eval splits."""
    spec = starter_spec()
    root = tmp_path_factory.mktemp("served") / "data"
    write_fixture_release(root / "releases", spec, train=seed_pairs(spec), eval=seed_pairs(spec))
    return root


def _files_text(folder: Path) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in folder.iterdir())


def test_served_base_and_tuned_on_one_server_answer_identically(server, data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(data))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    out = tmp_path / "eval"
    argv = ["eval", "--endpoint", server, "--endpoint-model", MODEL, "--baseline-endpoint", server,
            "--dataset", "release-v1", "--prompt-format", "template", "--suites", "refusals",
            "--limit", "3", "--max-new-tokens", "16", "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "base → tuned" in captured.out and "refusal_correct" in captured.out
    assert str(out / "eval.json") in captured.out

    report = json.loads((out / "eval.json").read_text())
    assert report["release"] == "release-v1" and report["records"] == 3 and report["sides"] == ["base", "tuned"]
    assert report["generation"] == {
        "source": "served", "prompt_format": "template", "temperature": 0, "seed": 0,
        "tuned": {"endpoint": server, "model": MODEL}, "base": {"endpoint": server, "model": MODEL},
    }
    assert len(report["families"]) == 3 and sum(f["n"] for f in report["families"].values()) == 3
    for family, scores in report["families"].items():
        assert family in captured.out
        assert set(scores) == {"n", "base", "tuned", "difference"} and scores["base"] == scores["tuned"]
        assert all(d == {"estimate": 0.0, "low": 0.0, "high": 0.0} for d in scores["difference"].values())
    # one server on both sides, greedy: identical answers, paired prompt by prompt
    assert all(s["base"]["answer"] == s["tuned"]["answer"] for s in report["samples"])
    battery = report["battery"]
    base_items, tuned_items = battery["items"]["base"], battery["items"]["tuned"]
    assert len(base_items) == len(tuned_items) == len(load_refusal_suite()) + 3
    assert [(i["id"], i["response"]) for i in base_items] == [(i["id"], i["response"]) for i in tuned_items]
    assert any(i["response"] for i in tuned_items)  # the rendered template gets real text back
    for suite in ("refusals", "discipline"):
        for metric in battery["comparison"]["suites"][suite]["overall"].values():
            assert metric["difference"] == {"estimate": 0.0, "low": 0.0, "high": 0.0}
    assert (out / "battery.html").read_text().startswith("<!")
    assert all({"prompt", "chosen", "rejected"} <= set(json.loads(line))
               for line in (out / "preference.jsonl").read_text().splitlines())
    assert SECRET not in _files_text(out) and SECRET not in captured.out + captured.err


def test_served_single_side_chat_is_scored_without_comparison(server, data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(data))
    argv = ["eval", "--endpoint", server, "--endpoint-model", MODEL, "--dataset", "release-v1",
            "--suites", "none", "--limit", "2", "--max-new-tokens", "8"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "no base → tuned comparison" in " ".join(captured.err.split())  # rich wraps long lines
    out = Path(captured.out.strip().splitlines()[-1]).parent
    assert out.parent == data / "evals" and out.name.startswith(f"{MODEL}-")
    report = json.loads((out / "eval.json").read_text())
    assert report["sides"] == ["tuned"] and report["battery"]["comparison"] is None
    assert report["generation"]["prompt_format"] == "chat" and report["generation"]["base"] is None
    assert set(report["overall"]) == {"n", "tuned"} and report["overall"]["n"] == 2
    assert set(report["samples"][0]) >= {"tuned", "reference"} and "base" not in report["samples"][0]
    assert not (out / "battery.html").exists()


def test_unreachable_endpoint_is_a_clear_error(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(data))
    url = f"http://127.0.0.1:{free_port()}/v1"
    out = tmp_path / "eval"
    assert main(["eval", "--endpoint", url, "--endpoint-model", MODEL, "--dataset", "release-v1",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{url}: cannot reach the endpoint" in err
    assert not out.exists()


def test_served_flags_are_checked(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", str(tmp_path), "--endpoint", "http://127.0.0.1:1/v1"])
    assert exit_info.value.code == 2
    assert main(["eval", "--endpoint", "http://127.0.0.1:1/v1", "--dataset", "release-v1"]) == 2
    assert "--endpoint needs --endpoint-model" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path), "--baseline-model", "x"]) == 2
    assert "--baseline-model: only with --endpoint" in capsys.readouterr().err


def test_template_prompt_matches_training_rendering(tmp_path):
    """The prompt sent to /v1/completions is the training template's, minus the BOS the server adds."""
    tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(tmp_path / "tiny", seed_pairs(starter_spec())))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour. "}]
    trained = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    sent = render_prompt(messages, gemma_chat_template())
    assert trained == "<bos>" + sent
    assert sent == "<start_of_turn>user\nBe brief.\n\nName a colour.<end_of_turn>\n<start_of_turn>model\n"


def test_llm_judge_rates_answers_apart_from_verifiable_scores(server, data, tmp_path, monkeypatch, capsys):
    """The embedded gemma (a base model) judges here: what is checked is that every answer gets a
    verdict (a 1-10 score or counted unparseable), that both sides are judged identically when they
    answered identically, and that the judge stays out of the verifiable metrics."""
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(data))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    out = tmp_path / "judged"
    argv = ["eval", "--endpoint", server, "--endpoint-model", MODEL, "--baseline-endpoint", server,
            "--dataset", "release-v1", "--prompt-format", "template", "--suites", "none", "--limit", "3",
            "--max-new-tokens", "12", "--judge-endpoint", server, "--judge-model", MODEL,
            "--judge-prompt-format", "template", "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "LLM judge" in captured.out
    report = json.loads((out / "eval.json").read_text())
    judge = report["judge"]
    assert judge["model"] == {"endpoint": server, "model": MODEL}
    for side in ("base", "tuned"):
        r = judge["sides"][side]
        assert r["scored"] + r["unparseable"] == report["records"] == 3
        for s in report["samples"]:
            verdict = s[side]["judge"]
            assert verdict["score"] is None or 1 <= verdict["score"] <= 10
    assert [s["base"]["judge"] for s in report["samples"]] == [s["tuned"]["judge"] for s in report["samples"]]
    assert "judge" not in report["metrics"] and all("judge" not in s["tuned"]["scores"] for s in report["samples"])
    assert SECRET not in _files_text(out)


def test_judge_flags_come_in_pairs(data, monkeypatch, capsys):
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(data))
    argv = ["eval", "--endpoint", "http://127.0.0.1:9/v1", "--endpoint-model", MODEL, "--dataset", "release-v1"]
    assert main(argv + ["--judge-model", MODEL]) == 2
    assert "--judge-model needs --judge-endpoint" in capsys.readouterr().err


@pytest.mark.parametrize("reply, score", [("7", 7), ("Score: 10/10", 10), (" 3.", 3), ("ten", None), ("0", None),
                                          ("11", None), ("", None)])
def test_judge_reply_parsing(reply, score):
    assert parse_score(reply) == score
