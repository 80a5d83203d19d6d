"""Chat templates per model: a tiny Qwen2 (Qwen 2.5's own template, no generation markers) through
`trainer fit`, `trainer eval` and the TRL export; Gemma's template only for Gemma."""
import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from tiny_model import MULTI_TURN, QWEN_SYSTEM, build_tiny_qwen2, write_fixture_release
from trainer.chat_template import IGNORE_INDEX, generation_prompt_ids, stop_token_ids, tokenize_conversation
from trainer.cli import main
from trainer.models import load_tokenizer, load_training_tokenizer

QWEN_TURN = "<|im_start|>"
QWEN_END = "<|im_end|>"


@pytest.fixture(scope="module")
def qwen(tmp_path_factory, pairs) -> Path:
    return build_tiny_qwen2(tmp_path_factory.mktemp("qwen") / "model", pairs)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, spec, pairs, qwen) -> tuple[Path, Path]:
    """(data root, run dir): the tiny Qwen2 fitted on all seed pairs, which are also the eval split."""
    root = tmp_path_factory.mktemp("qwen-run")
    data = root / "data"
    write_fixture_release(data / "releases", spec, train=pairs, eval=pairs)
    run_dir = root / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INSTRUCT_CURATOR_DATA", str(data))
        argv = ["fit", "--dataset", "release-v1", "--model", str(qwen), "--steps", "60", "--batch-size", "16",
                "--lr", "1e-2", "--warmup-steps", "0", "--lora-dropout", "0", "--out", str(run_dir)]
        assert main(argv) == 0
    return data, run_dir


def _labelled_text(tokenizer, input_ids: list[int], labels: list[int]) -> list[str]:
    spans, current = [], []
    for tok, lab in [*zip(input_ids, labels), (None, IGNORE_INDEX)]:
        if lab != IGNORE_INDEX:
            current.append(lab)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    return spans


def test_the_models_own_template_is_marked_and_its_turns_are_learnt(qwen, pairs):
    tokenizer, template = load_training_tokenizer(qwen)
    assert template.origin == "trl:qwen2_5" and template.end_of_turn == QWEN_END
    tokenized = tokenize_conversation(tokenizer, MULTI_TURN)
    rendered = tokenizer.decode(tokenized.input_ids)
    assert rendered.startswith(f"{QWEN_TURN}system\n{MULTI_TURN[0]['content']}{QWEN_END}\n{QWEN_TURN}user\n")
    assert "<start_of_turn>" not in rendered and "<end_of_turn>" not in rendered
    answers = [m["content"] + QWEN_END for m in MULTI_TURN if m["role"] == "assistant"]
    assert _labelled_text(tokenizer, tokenized.input_ids, tokenized.labels) == answers
    for pair in pairs:  # no system message: Qwen's template adds its default one
        tokenized = tokenize_conversation(tokenizer, pair["messages"])
        assert tokenizer.decode(tokenized.input_ids).startswith(f"{QWEN_TURN}system\n{QWEN_SYSTEM}{QWEN_END}")
        assert _labelled_text(tokenizer, tokenized.input_ids, tokenized.labels) == [
            pair["messages"][-1]["content"] + QWEN_END]

    prompt = generation_prompt_ids(tokenizer, MULTI_TURN[:4])
    assert tokenize_conversation(tokenizer, MULTI_TURN).input_ids[: len(prompt)] == prompt
    assert tokenizer.decode(prompt).endswith(f"{QWEN_TURN}assistant\n")
    assert stop_token_ids(tokenizer) == sorted(tokenizer.convert_tokens_to_ids([QWEN_END, "<|endoftext|>"]))


def test_fit_records_the_template_and_generation_stops_at_its_end_of_turn(fitted, qwen, pairs):
    _, run_dir = fitted
    run = json.loads((run_dir / "run.json").read_text())
    assert run["fit"]["chat_template"] == {"origin": "trl:qwen2_5", "end_of_turn": QWEN_END}
    assert "TRL's training variant (`qwen2_5`)" in (run_dir / "README.md").read_text()
    saved = (run_dir / run["artefacts"]["tokenizer"] / "chat_template.jinja").read_text()
    assert "generation" in saved and QWEN_TURN in saved and "<start_of_turn>" not in saved

    tokenizer = load_tokenizer(run_dir / run["artefacts"]["tokenizer"])
    base = AutoModelForCausalLM.from_pretrained(qwen)
    model = PeftModel.from_pretrained(base, run_dir / run["artefacts"]["adapter"]).eval()
    end = tokenizer.convert_tokens_to_ids(QWEN_END)
    stopped = 0
    for pair in pairs:
        prompt = torch.tensor([generation_prompt_ids(tokenizer, pair["messages"][:-1])])
        with torch.no_grad():
            out = model.generate(prompt, max_new_tokens=96, do_sample=False, eos_token_id=stop_token_ids(tokenizer),
                                 pad_token_id=tokenizer.pad_token_id)[0, prompt.shape[1]:].tolist()
        stopped += out[-1] == end and end not in out[:-1]
    # Trained on exactly these pairs, the adapter ends (nearly) every answer with Qwen's end of turn.
    assert stopped >= len(pairs) - 2


def test_eval_generates_with_the_runs_template(fitted, monkeypatch):
    data, run_dir = fitted
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(data))
    assert main(["eval", "--model", str(run_dir), "--limit", "6", "--max-new-tokens", "48", "--suites", "none"]) == 0
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["records"] == 6 and report["sides"] == ["base", "tuned"]
    assert report["overall"]["tuned"]["reference_f1"] > report["overall"]["base"]["reference_f1"] + 0.1
    assert not any(QWEN_TURN in s["tuned"]["answer"] or "<start_of_turn>" in s["tuned"]["answer"]
                   for s in report["samples"])


def test_export_carries_the_same_template_and_trl_trains_its_end_of_turn(qwen, spec, pairs, tmp_path, monkeypatch,
                                                                          capsys):
    from trl.chat_template_utils import is_chat_template_stop_token_trained

    data = tmp_path / "data"
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(data))
    write_fixture_release(data / "releases", spec, train=pairs, eval=pairs[:3])
    out = tmp_path / "export"
    assert main(["fit", "--dataset", "release-v1", "--model", str(qwen), "--backend", "export", "--out", str(out)]) == 0
    exported = (out / "chat_template.jinja").read_text()
    tokenizer, template = load_training_tokenizer(qwen)
    assert exported == template.text == tokenizer.chat_template
    assert json.loads((out / "run.json").read_text())["fit"]["chat_template"]["end_of_turn"] == QWEN_END
    assert is_chat_template_stop_token_trained(tokenizer, chat_template=exported)

    # evaluation goes by what the backend reported it saved: an export holds no weights
    assert main(["eval", "--model", str(out)]) == 2
    assert "its backend saved no weights to evaluate (chat_template, dataset, trl_config)" in capsys.readouterr().err
    (out / "run.json").unlink()
    assert main(["eval", "--model", str(out)]) == 2
    assert "the run has not finished (no run.json)" in capsys.readouterr().err


def test_a_model_without_a_template_is_gemma_only(pairs, tmp_path, capsys, spec, monkeypatch):
    bare = build_tiny_qwen2(tmp_path / "bare", pairs, chat_template=False)
    data = tmp_path / "data"
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(data))
    write_fixture_release(data / "releases", spec, train=pairs, eval=pairs[:3])
    assert main(["fit", "--dataset", "release-v1", "--model", str(bare), "--steps", "1", "--out",
                 str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "has no chat template and the model is not a Gemma (model_type 'qwen2')" in " ".join(err.split())
