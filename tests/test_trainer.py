"""`trainer fit` and `trainer backends`: real releases on disk, a real tiny Gemma 3, real LoRA steps.

One slow test converts the real gemma-3-270m GGUF (once; the cache lives outside the repo) and
trains it for one step.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_model import MULTI_TURN, build_tiny_model, write_fixture_release
from trainer.chat_template import IGNORE_INDEX, generation_prompt_ids, tokenize_conversation
from trainer.cli import main
from trainer.models import load_tokenizer


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, pairs) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", pairs)


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "data"
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(root))
    return root


@pytest.fixture
def release(data_root, spec, pairs) -> Path:
    return write_fixture_release(data_root / "releases", spec, train=pairs, eval=pairs[:6])


def _labelled_spans(input_ids: list[int], labels: list[int]) -> list[list[int]]:
    """Maximal runs of tokens whose label is not -100 (each must equal its input token)."""
    spans, current = [], []
    for tok, lab in zip(input_ids, labels):
        if lab == IGNORE_INDEX:
            if current:
                spans.append(current)
            current = []
        else:
            assert lab == tok
            current.append(lab)
    return spans + ([current] if current else [])


def _assert_assistant_only(tokenizer, messages):
    tokenized = tokenize_conversation(tokenizer, messages)
    spans = [tokenizer.decode(s) for s in _labelled_spans(tokenized.input_ids, tokenized.labels)]
    answers = [m["content"] + "<end_of_turn>" for m in messages if m["role"] == "assistant"]
    assert spans == answers
    rendered = tokenizer.decode(tokenized.input_ids)
    assert rendered.startswith("<bos><start_of_turn>user\n")
    return tokenized


def test_loss_only_on_assistant_turns(tiny_model, pairs):
    tokenizer = load_tokenizer(tiny_model)
    tokenized = _assert_assistant_only(tokenizer, MULTI_TURN)
    rendered = tokenizer.decode(tokenized.input_ids)
    # The system message is folded into the first user turn, as Gemma does.
    assert rendered.startswith(f"<bos><start_of_turn>user\n{MULTI_TURN[0]['content']}\n\n{MULTI_TURN[1]['content']}<end_of_turn>")
    assert "system" not in rendered
    for pair in pairs:
        _assert_assistant_only(tokenizer, pair["messages"])


def test_generation_prompt_is_the_training_prefix(tiny_model):
    """Eval renders the prompt with the same template: its ids are a prefix of the training ids."""
    tokenizer = load_tokenizer(tiny_model)
    prompt = generation_prompt_ids(tokenizer, MULTI_TURN[:4])
    full = tokenize_conversation(tokenizer, MULTI_TURN)
    assert full.input_ids[: len(prompt)] == prompt
    assert tokenizer.decode(prompt).endswith("<start_of_turn>model\n")
    assert tokenizer.decode(full.input_ids[len(prompt):]).startswith(MULTI_TURN[4]["content"])


def test_fit_trains_and_writes_the_run(tiny_model, release, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("steps: 3\nlr: 0.001\nbatch_size: 16\nlora_r: 4\nwarmup_steps: 0\nlora_dropout: 0.0\n")
    out = tmp_path / "run"
    argv = ["fit", "--dataset", "latest", "--model", str(tiny_model), "--recipe", str(recipe),
            "--steps", "8", "--lr", "1e-2", "--out", str(out)]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip().endswith(str(out))

    config = json.loads((out / "config.json").read_text())
    assert config["steps"] == 8 and config["lr"] == 0.01  # flags beat the recipe
    assert config["lora_r"] == 4 and config["batch_size"] == 16  # the recipe beats the defaults
    assert config["dataset"] == "release-v1"  # `latest` pinned to the release used

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))
    losses = [r["loss"] for r in rows]
    assert all(math.isfinite(x) for x in losses)
    # batch 16 > 11 train pairs: every step sees the same batch, so the loss must go down.
    assert losses[-1] < losses[0] - 0.1
    assert all(r["trained_tokens"] > 0 and r["tokens"] > r["trained_tokens"] for r in rows)

    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["peft_type"] == "LORA"
    assert (out / "adapter" / "adapter_model.safetensors").stat().st_size > 0
    assert "<start_of_turn>" in (out / "tokenizer" / "chat_template.jinja").read_text()

    certificate = json.loads((release / "certificate.json").read_text())
    manifest = json.loads((release / "manifest.json").read_text())
    card = (out / "README.md").read_text()
    for fact in ("release-v1", certificate["manifest_sha256"], manifest["spec"]["name"],
                 manifest["spec"]["sha256"], str(tiny_model), f"final {losses[-1]:.4f}"):
        assert fact in card
    run = json.loads((out / "run.json").read_text())
    assert run["fit"]["data_stats"]["used"] == 11 and run["fit"]["steps"] == 8


def test_default_run_dir_is_under_the_data_root(tiny_model, release, data_root):
    assert main(["fit", "--dataset", "release-v1", "--model", str(tiny_model), "--steps", "1", "--batch-size", "2"]) == 0
    (run_dir,) = (data_root / "training").iterdir()
    assert run_dir.name.startswith("release-v1-") and run_dir.name.endswith("Z")
    assert (run_dir / "adapter" / "adapter_config.json").is_file()


def test_truncation_is_counted_and_nothing_is_lost_silently(tiny_model, release, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", "--dataset", "release-v1", "--model", str(tiny_model), "--steps", "1",
                 "--max-seq-len", "60", "--out", str(out)]) == 0
    stats = json.loads((out / "run.json").read_text())["fit"]["data_stats"]
    assert stats["records"] == 11 and stats["used"] + stats["dropped_no_answer_tokens"] == 11
    assert 0 < stats["dropped_no_answer_tokens"] < stats["truncated"]
    assert len(stats["dropped_ids"]) == stats["dropped_no_answer_tokens"]
    assert f"dropped because truncation left no answer tokens {stats['dropped_no_answer_tokens']}" in (
        out / "README.md").read_text()

    assert main(["fit", "--dataset", "release-v1", "--model", str(tiny_model), "--max-seq-len", "8"]) == 2
    assert "no train record has answer tokens within max_seq_len=8 (11 records)" in capsys.readouterr().err


def test_unrenderable_record_is_named(tiny_model, data_root, spec, pairs, capsys):
    bad = dict(pairs[0], id="bad-turns", messages=[{"role": "user", "content": "a"}, *pairs[0]["messages"]])
    write_fixture_release(data_root / "releases", spec, train=[bad, *pairs[1:]], eval=pairs)
    assert main(["fit", "--dataset", "release-v1", "--model", str(tiny_model), "--steps", "1"]) == 2
    assert "train record bad-turns: cannot render with the chat template: Conversation roles must alternate" in (
        capsys.readouterr().err)


def test_tampered_release_is_refused(tiny_model, release, data_root, capsys):
    train = release / "train.parquet"
    train.chmod(0o644)
    with open(train, "ab") as fh:
        fh.write(b"tampered")
    assert main(["fit", "--dataset", "release-v1", "--model", str(tiny_model), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("trainer: error:") and len(err.splitlines()) == 1
    assert f"{train}: " in err and " since release" in err
    assert not (data_root / "training").exists()


def test_uncertified_release_is_refused(tiny_model, data_root, spec, pairs, capsys):
    write_fixture_release(data_root / "releases", spec, train=pairs, eval=pairs, certified=False)
    assert main(["fit", "--dataset", "release-v1", "--model", str(tiny_model), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "is not certified (failed: min_train_rows)" in err
    assert not (data_root / "training").exists()


def test_non_finite_loss_stops_the_run(tiny_model, release, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["fit", "--dataset", "release-v1", "--model", str(tiny_model), "--steps", "5", "--lr", "1e30",
            "--warmup-steps", "0", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "loss is nan at step" in err and "try a lower --lr" in err
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert 1 <= len(rows) < 5
    assert not (out / "adapter").exists()


@pytest.mark.parametrize(
    ("recipe", "message"),
    [("lora_rank: 8\n", "unknown setting(s) ['lora_rank']"), ("steps: many\n", "steps: expected int, got 'many'")],
)
def test_bad_recipe_names_file_and_setting(tiny_model, release, tmp_path, capsys, recipe, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe)
    assert main(["fit", "--dataset", "release-v1", "--model", str(tiny_model), "--recipe", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err


def test_unknown_model_is_refused(release, tmp_path, capsys):
    assert main(["fit", "--dataset", "release-v1", "--model", str(tmp_path / "nowhere"), "--steps", "1"]) == 2
    assert "not a Hugging Face model directory" in capsys.readouterr().err


def test_backends_lists_sft_and_export():
    """Through the installed console script: entry points come from the package metadata."""
    script = Path(sys.executable).parent / "trainer"
    out = subprocess.run([str(script), "backends"], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.splitlines() == ["export\ttrainer.backends.export:ExportBackend", "sft\ttrainer.backends.sft:SFTBackend"]


@pytest.mark.slow
def test_real_gemma_one_step(release, tmp_path):
    """Convert the embedded GGUF once (cached outside the repo), check its template, train one step, save."""
    from trainer.models import resolve_model

    model_dir = resolve_model("gemma-3-270m")
    assert (model_dir / "model.safetensors").is_file()
    assert not list(model_dir.parent.glob(".gemma-3-270m.building-*"))
    tokenizer = load_tokenizer(model_dir)
    assert tokenizer.convert_tokens_to_ids(["<start_of_turn>", "<end_of_turn>"]) == [105, 106]
    _assert_assistant_only(tokenizer, MULTI_TURN)

    out = tmp_path / "run"
    argv = ["fit", "--dataset", "release-v1", "--steps", "1", "--batch-size", "1", "--max-seq-len", "64",
            "--lora-r", "4", "--out", str(out)]
    assert main(argv) == 0
    (row,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert math.isfinite(row["loss"]) and 0 < row["loss"] < 20
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(model_dir)
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= set(adapter["target_modules"])
    assert "gemma-3-270m" in (out / "README.md").read_text()
    assert os.path.getsize(out / "adapter" / "adapter_model.safetensors") > 0
