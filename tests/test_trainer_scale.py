"""The SFT backend's speed and scale features on a real tiny Gemma 3: the labelled-only chunked loss,
packing, checkpoints and exact resume after kill -9, eval loss, gradient accumulation, full
fine-tuning and merged export, DDP under torchrun (gloo, 2 processes), and the export backend.
"""
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from tiny_model import build_tiny_model, write_fixture_release
from trainer.causal_lm import LabelledLoss, final_hidden_states
from trainer.chat_template import IGNORE_INDEX
from trainer.cli import main
from trainer.data import BatchPlan, build_examples, collate, pack_rows
from trainer.loss import labelled_cross_entropy
from trainer.models import load_tokenizer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, pairs) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", pairs)


@pytest.fixture(scope="module")
def examples(tiny_model, pairs):
    return build_examples(pairs, load_tokenizer(tiny_model), 256)[0]


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "data"
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(root))
    return root


@pytest.fixture
def release(data_root, spec, pairs) -> Path:
    return write_fixture_release(data_root / "releases", spec, train=pairs, eval=pairs[:6])


def _lora_model(model_dir: Path, dropout: float = 0.0):
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear"))
    # LoRA's B starts at zero; give it weights so every adapter gradient is non-trivial.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    return model


def _grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return out


# -- 1a: cross-entropy only at labelled positions, in chunks --------------------------------------------

@pytest.mark.parametrize("softcap", [None, 5.0])
@pytest.mark.parametrize("full_finetune", [False, True])
def test_chunked_labelled_loss_matches_full_logits(tiny_model, examples, softcap, full_finetune):
    """Loss and every trainable gradient equal those of transformers' own full-logits loss."""
    if full_finetune:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    else:
        model = _lora_model(tiny_model)
    model.config.final_logit_softcapping = softcap
    rows = [[e] for e in examples[:5]]
    batch = collate(rows, pad_token_id=0)
    # transformers' reference: full logits, padding masked, labels shifted inside the loss.
    width = batch.input_ids.shape[1]
    labels = torch.full_like(batch.input_ids, IGNORE_INDEX)
    mask = torch.zeros_like(batch.input_ids)
    for r, (e,) in enumerate(rows):
        labels[r, 1 : len(e)] = torch.tensor(e.targets[:-1])
        mask[r, : len(e)] = 1
    assert labels.shape[1] == width
    reference = model(input_ids=batch.input_ids, attention_mask=mask, labels=labels).loss
    reference.backward()
    expected = _grads(model)

    n = batch.trained_tokens
    ours = LabelledLoss(model, chunk_tokens=7)(batch.input_ids, batch.position_ids, batch.targets, 1.0 / n)
    ours.backward()
    got = _grads(model)

    assert torch.allclose(ours, reference, rtol=1e-5, atol=1e-6)
    assert set(got) == set(expected) and len(got) > 4
    if full_finetune:
        assert "model.embed_tokens.weight" in got  # tied LM head: the chunked loss's weight gradient flows in
    for name in expected:
        assert torch.allclose(got[name], expected[name], rtol=1e-4, atol=1e-6), name


def test_chunked_loss_is_chunk_size_independent_and_ignores_unlabelled_positions():
    torch.manual_seed(0)
    hidden, weight = torch.randn(3, 10, 16), torch.randn(50, 16)
    targets = torch.randint(0, 50, (3, 10))
    targets[:, :4] = IGNORE_INDEX
    naive = torch.nn.functional.cross_entropy((hidden @ weight.T).reshape(-1, 50), targets.reshape(-1), reduction="sum")
    for chunk in (1, 5, 1000):
        got = labelled_cross_entropy(hidden, weight, targets, chunk_tokens=chunk)
        assert torch.allclose(got, naive, rtol=1e-5)
    with torch.no_grad():  # the eval path: no gradient work, same value
        assert torch.allclose(labelled_cross_entropy(hidden, weight, targets, chunk_tokens=4), naive, rtol=1e-5)


# -- 1b: packing --------------------------------------------------------------------------------------

def test_pack_rows_fits_every_example_once_within_capacity():
    lengths = [30, 200, 90, 60, 120, 10, 250, 70, 40, 5]
    rows = pack_rows(lengths, 256)
    flat = sorted(i for row in rows for i in row)
    assert flat == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 256 for row in rows)
    assert len(rows) == math.ceil(sum(lengths) / 256)  # best-fit decreasing finds the optimum here


def _per_sequence_losses(model, batch, rows) -> list[torch.Tensor]:
    """Each example's mean CE, read from one forward pass over a (packed) batch."""
    hidden = final_hidden_states(model, batch.input_ids, batch.position_ids)
    losses = []
    for r, row in enumerate(rows):
        at = 0
        for e in row:
            logits = model.get_output_embeddings()(hidden[r, at : at + len(e)])
            losses.append(torch.nn.functional.cross_entropy(logits, torch.tensor(e.targets), ignore_index=IGNORE_INDEX))
            at += len(e)
    return losses


@torch.no_grad()
def test_packed_rows_give_each_conversation_its_own_loss(tiny_model, examples):
    """Packed (and padding-free) rows give the loss each conversation has alone; without restarting positions they don't."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    alone = []
    for e in examples:
        labels = torch.tensor([[IGNORE_INDEX] + e.targets[:-1]])
        alone.append(model(input_ids=torch.tensor([e.input_ids]), labels=labels).loss)
    packed = [[examples[i] for i in row] for row in pack_rows([len(e) for e in examples], 256)]
    assert any(len(row) > 2 for row in packed)
    batch = collate(packed, pad_token_id=0)
    assert batch.tokens == sum(len(e) for e in examples) < batch.slots

    by_id = {e.record_id: i for i, e in enumerate(examples)}
    order = [by_id[e.record_id] for row in packed for e in row]
    got = _per_sequence_losses(model, batch, packed)
    for k, loss in zip(order, got):
        assert torch.allclose(loss, alone[k], rtol=1e-4, atol=1e-5)

    single = collate(packed, pad_token_id=0, padding_free=True)  # the layout flash-attention varlen gets on CUDA
    assert single.input_ids.shape == (1, batch.tokens)
    got = _per_sequence_losses(model, single, [[e for row in packed for e in row]])
    for k, loss in zip(order, got):
        assert torch.allclose(loss, alone[k], rtol=1e-4, atol=1e-5)

    leaky = collate(packed, pad_token_id=0)
    leaky.position_ids.copy_(torch.arange(leaky.position_ids.shape[1]).expand_as(leaky.position_ids))
    got = _per_sequence_losses(model, leaky, packed)
    assert not all(torch.allclose(loss, alone[k], rtol=1e-4, atol=1e-5) for k, loss in zip(order, got))


def test_batch_plan_resumes_at_its_position_and_shards_disjointly(examples):
    def plan(**kw):
        return BatchPlan(examples, batch_size=2, max_seq_len=128, packing=True, pad_token_id=0, seed=3, **kw)

    reference = plan()
    seen = [reference.next().record_ids for _ in range(9)]  # several epochs
    resumed = plan()
    for _ in range(4):
        resumed.next()
    fresh = plan()
    fresh.load_state_dict(resumed.state_dict())
    assert [fresh.next().record_ids for _ in range(5)] == seen[4:]

    ranks = [plan(rank=r, world_size=2) for r in range(2)]
    for _ in range(3):
        a, b = (p.next().record_ids for p in ranks)
        assert a and b and not set(a) & set(b)
    assert 0.5 < reference.packing_efficiency() <= 1.0


# -- 3: checkpoints and exact resume after kill -9 -------------------------------------------------------

def _fit_args(model: Path, out: Path, *extra: str) -> list[str]:
    return ["fit", "--dataset", "release-v1", "--model", str(model), "--batch-size", "1", "--max-seq-len", "128",
            "--lr", "5e-3", "--warmup-steps", "0", "--out", str(out), *extra]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_killed_run_resumes_exactly(tiny_model, release, tmp_path):
    """kill -9 after a checkpoint, `fit --resume`: the same loss curve, batches and final weights as an unbroken run."""
    extra = ["--steps", "40", "--save-every", "5", "--lora-dropout", "0.1"]  # dropout: the RNG state must resume too
    unbroken = tmp_path / "unbroken"
    assert main(_fit_args(tiny_model, unbroken, *extra)) == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "trainer.cli", *_fit_args(tiny_model, killed, *extra)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((killed / "checkpoints").glob("step-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (killed / "run.json").exists()
    stopped_at = len(_rows(killed / "metrics.jsonl"))
    assert 5 <= stopped_at < 40

    assert main(["fit", "--resume", str(killed)]) == 0
    a, b = _rows(unbroken / "metrics.jsonl"), _rows(killed / "metrics.jsonl")
    assert [r["step"] for r in b] == list(range(1, 41))
    for x, y in zip(a, b):
        assert math.isclose(x["loss"], y["loss"], rel_tol=1e-5), (x, y)
    assert _rows(unbroken / "batches.jsonl") == _rows(killed / "batches.jsonl")
    run_a, run_b = (json.loads((d / "run.json").read_text())["fit"] for d in (unbroken, killed))
    assert run_b["resumed_from_step"] >= 5 and run_a["resumed_from_step"] is None
    assert run_a["weights_sha256_by_rank"] == run_b["weights_sha256_by_rank"]
    assert run_a["tokens"] == run_b["tokens"] and run_a["trained_tokens"] == run_b["trained_tokens"]
    assert len(list((killed / "checkpoints").glob("step-*"))) == 2  # the newest two are kept


def test_resume_refuses_a_finished_run_and_new_settings(tiny_model, release, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_fit_args(tiny_model, out, "--steps", "2")) == 0
    assert main(["fit", "--resume", str(out)]) == 2
    assert "the run finished already" in capsys.readouterr().err
    (out / "run.json").unlink()
    assert main(["fit", "--resume", str(out), "--lr", "1"]) == 2
    assert "drop ['lr']" in capsys.readouterr().err
    assert main(["fit", "--resume", str(out)]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err


# -- 4: eval loss, TensorBoard, gradient accumulation, checkpointing, full fine-tuning, merge ------------

def test_grad_accumulation_and_checkpointing_match_one_big_batch(tiny_model, release, tmp_path):
    """2 micro-batches of 1 row (with gradient checkpointing) take the same steps as 1 batch of 2 rows."""
    common = ["--steps", "4", "--lora-dropout", "0", "--eval-every", "2"]
    big, accumulated = tmp_path / "big", tmp_path / "accumulated"
    assert main(_fit_args(tiny_model, big, *common, "--batch-size", "2")) == 0
    assert main(_fit_args(tiny_model, accumulated, *common, "--grad-accum", "2", "--gradient-checkpointing")) == 0
    a, b = _rows(big / "metrics.jsonl"), _rows(accumulated / "metrics.jsonl")
    assert [r["trained_tokens"] for r in a] == [r["trained_tokens"] for r in b]
    for x, y in zip(a, b):
        assert math.isclose(x["loss"], y["loss"], rel_tol=1e-4)
    assert a[-1]["loss"] != a[0]["loss"]

    evals = _rows(accumulated / "eval_loss.jsonl")
    assert [r["step"] for r in evals] == [2, 4] and all(math.isfinite(r["eval_loss"]) for r in evals)
    assert evals == _rows(big / "eval_loss.jsonl") or all(
        math.isclose(x["eval_loss"], y["eval_loss"], rel_tol=1e-4) for x, y in zip(evals, _rows(big / "eval_loss.jsonl")))
    assert list((accumulated / "tensorboard").glob("events.out.tfevents.*"))
    run = json.loads((accumulated / "run.json").read_text())
    assert run["fit"]["final_eval_loss"] == evals[-1]["eval_loss"]
    assert 0 < run["fit"]["packing_efficiency"] <= 1


def test_merged_export_equals_base_plus_adapter(tiny_model, release, tmp_path):
    from peft import PeftModel

    out = tmp_path / "run"
    assert main(_fit_args(tiny_model, out, "--steps", "3", "--merge")) == 0
    ids = torch.tensor([list(range(5, 40))])
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    adapted = PeftModel.from_pretrained(base, out / "adapter").eval()
    with torch.no_grad(), adapted.disable_adapter():
        untouched = adapted(input_ids=ids).logits
    with torch.no_grad():
        expected = adapted(input_ids=ids).logits
    assert not torch.allclose(untouched, expected, atol=1e-4)
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-4)
    assert "merged into the base weights" in (out / "README.md").read_text()


def test_full_fine_tuning_trains_every_weight_and_evaluates(tiny_model, release, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_fit_args(tiny_model, out, "--steps", "3", "--no-lora")) == 0
    run = json.loads((out / "run.json").read_text())
    n_params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_model).parameters())
    assert run["fit"]["trainable_params"] == n_params and run["artefacts"]["model"] == "model"
    assert not (out / "adapter").exists() and (out / "model" / "config.json").is_file()
    assert main(["eval", "--model", str(out), "--limit", "2", "--max-new-tokens", "4"]) == 0
    assert json.loads((out / "eval.json").read_text())["records"] == 2
    assert main(_fit_args(tiny_model, tmp_path / "bad", "--no-lora", "--merge")) == 2
    assert "--merge needs a LoRA run" in capsys.readouterr().err


# -- 5: DDP under torchrun, 2 processes, gloo ------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_ranks_train_disjoint_shards_to_identical_weights(tiny_model, release, tmp_path):
    """Each rank trains its own rows; gradients are averaged, so both end equal and match one process with both rows."""
    common = ["--steps", "3", "--lora-dropout", "0"]
    ddp = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "trainer.cli", *_fit_args(tiny_model, ddp, *common)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    fit = json.loads((ddp / "run.json").read_text())["fit"]
    assert fit["world_size"] == 2
    first, second = fit["weights_sha256_by_rank"]
    assert first == second
    for step in _rows(ddp / "batches.jsonl"):
        rank0, rank1 = step["ids_by_rank"]
        assert rank0 and rank1 and not set(rank0) & set(rank1)

    single = tmp_path / "single"
    assert main(_fit_args(tiny_model, single, *common, "--batch-size", "2")) == 0
    a, b = _rows(single / "metrics.jsonl"), _rows(ddp / "metrics.jsonl")
    assert [r["trained_tokens"] for r in a] == [r["trained_tokens"] for r in b]
    for x, y in zip(a, b):
        assert math.isclose(x["loss"], y["loss"], rel_tol=1e-4), (x, y)
    assert [sorted(s["ids_by_rank"][0]) for s in _rows(single / "batches.jsonl")] == [
        sorted(s["ids_by_rank"][0] + s["ids_by_rank"][1]) for s in _rows(ddp / "batches.jsonl")]


# -- 6: the export backend -------------------------------------------------------------------------------

def test_export_backend_writes_what_trl_trains_on(tiny_model, release, tmp_path):
    """The export holds the release as TRL conversational JSONL and the settings; TRL trains on it as is."""
    from trainer.external_trl import main as external_trl

    out = tmp_path / "export"
    assert main(_fit_args(tiny_model, out, "--backend", "export", "--steps", "2", "--packing")) == 0
    train = _rows(out / "dataset" / "train.jsonl")
    assert len(train) == 11 and all(set(r) == {"messages"} for r in train)
    assert train[0]["messages"][-1]["role"] == "assistant"
    assert len(_rows(out / "dataset" / "eval.jsonl")) == 6
    settings = json.loads((out / "trl_config.json").read_text())
    assert settings["sft_config"]["max_steps"] == 2 and settings["sft_config"]["assistant_only_loss"] is True
    assert settings["lora_config"]["r"] == 16 and settings["model"] == str(tiny_model)
    assert "{% generation %}" in (out / "chat_template.jinja").read_text().replace("{%- generation -%}", "{% generation %}")
    run = json.loads((out / "run.json").read_text())
    assert run["fit"]["steps"] == 0 and run["artefacts"]["dataset"] == "dataset"
    assert "An export for an external trainer" in (out / "README.md").read_text()

    assert external_trl([str(out)]) == 0
    assert (out / "trl" / "final" / "adapter_config.json").is_file()


def test_bundled_recipes_are_valid_settings():
    from trainer.cli import build_parser
    from trainer.config import config_from_args

    recipes = sorted((REPO / "trainer" / "recipes").glob("*.yaml"))
    assert recipes
    for recipe in recipes:
        config = config_from_args(build_parser().parse_args(["fit", "--recipe", str(recipe)]))
        assert config.model == "gemma-3-270m" and config.save_every and config.packing
