"""The chat template a model trains and generates with: its own, marked for assistant-only loss.

`training_chat_template` picks it once, from the base model's tokenizer: the model's own template
when it already marks assistant answers with `{% generation %}` blocks; else TRL's training variant
of it (the same text with the markers added, for the families TRL ships: Qwen, Llama 3, Phi-3,
Gemma, ...); Gemma's turn format (`trainer/templates/gemma.jinja`) only for a Gemma model whose
tokenizer has no template (the embedded gemma-3-270m GGUF). Any other model without a usable
template is a clear error. Training renders a conversation with it and learns only the marked
tokens; evaluation renders the prompt with the same template, opens the model's turn, and stops
at the template's end-of-turn token.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from curator.errors import CuratorError

IGNORE_INDEX = -100
END_OF_TURN = "<end_of_turn>"  # Gemma's
REQUIRED_SPECIAL_TOKENS = ("<bos>", "<eos>", "<pad>", "<start_of_turn>", END_OF_TURN)
GEMMA_MODEL_TYPES = ("gemma", "gemma2", "gemma3", "gemma3_text")
_GENERATION_MARKER = re.compile(r"\{%-?\s*generation\s*-?%\}")
_PROBE = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]


def gemma_chat_template() -> str:
    """Gemma's turn format with generation markers, shipped with the trainer."""
    return (Path(__file__).parent / "templates" / "gemma.jinja").read_text(encoding="utf-8")


def install_chat_template(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Set Gemma's template on a Gemma `tokenizer` (in place) and return it."""
    tokenizer.chat_template = gemma_chat_template()
    return tokenizer


@dataclass(frozen=True)
class ChatTemplate:
    text: str
    origin: str  # "model" (its own), "trl:<family>" (TRL's training variant of its own) or "gemma" (ours)
    end_of_turn: str  # the token that closes an assistant answer, trained and stopped at

    def describe(self) -> dict:
        """What a run records about its template (`run.json`, the model card)."""
        return {"origin": self.origin, "end_of_turn": self.end_of_turn}


def _own_template(tokenizer: PreTrainedTokenizerBase) -> str | None:
    template = tokenizer.chat_template
    return template.get("default") if isinstance(template, dict) else template


def _model_type(model_dir: Path) -> str:
    config = model_dir / "config.json"
    return json.loads(config.read_text(encoding="utf-8")).get("model_type", "") if config.is_file() else ""


def _trl_training_variant(tokenizer: PreTrainedTokenizerBase, model_dir: Path) -> tuple[str, str]:
    """(TRL's training variant of the tokenizer's template, the family TRL names it by)."""
    try:
        from trl import chat_template_utils as trl_templates
    except ImportError:
        raise CuratorError(
            f"{model_dir}: its chat template has no {{% generation %}} markers; install the `trl` extra "
            "(pip install 'instruct-curator[trl]') to use TRL's marked variant, or add the markers yourself"
        ) from None
    try:
        text = trl_templates.get_training_chat_template(tokenizer) or _own_template(tokenizer)
    except ValueError:
        raise CuratorError(
            f"{model_dir}: its chat template has no {{% generation %}} markers and TRL has no training variant "
            "of it; wrap each assistant answer and its end-of-turn token in {% generation %}...{% endgeneration %}"
        ) from None
    family = next((name.removesuffix("_training_chat_template") for name, value in vars(trl_templates).items()
                   if name.endswith("_training_chat_template") and value == text), "unnamed")
    return text, f"trl:{family}"


def training_chat_template(tokenizer: PreTrainedTokenizerBase, model_dir: Path) -> ChatTemplate:
    """The template to train `model_dir` with (see the module docstring); `tokenizer` is the model's own."""
    own = _own_template(tokenizer)
    if own and _GENERATION_MARKER.search(own):
        text, origin = own, "gemma" if own == gemma_chat_template() else "model"
    elif own:
        text, origin = _trl_training_variant(tokenizer, model_dir)
    elif _model_type(model_dir) in GEMMA_MODEL_TYPES:
        text, origin = gemma_chat_template(), "gemma"
    else:
        raise CuratorError(
            f"{model_dir}: the tokenizer has no chat template and the model is not a Gemma "
            f"(model_type {_model_type(model_dir) or 'unknown'!r}); add the template it was trained with "
            "(chat_template.jinja beside tokenizer_config.json)"
        )
    return ChatTemplate(text, origin, _end_of_turn(tokenizer, text, str(model_dir)))


def _end_of_turn(tokenizer: PreTrainedTokenizerBase, template: str, where: str) -> str:
    """The last token the template marks in an assistant answer that is followed by a user turn."""
    encoded = tokenizer.apply_chat_template(_PROBE, chat_template=template, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
    marked = [t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"]) if m]
    closing = next((t for t in reversed(marked) if tokenizer.decode([t]).strip()), None)
    if closing is None or closing not in tokenizer.get_added_vocab().values():
        raise CuratorError(f"{where}: the chat template's {{% generation %}} blocks do not end an answer with "
                           "a special end-of-turn token; the model would never learn to stop")
    return tokenizer.convert_ids_to_tokens(closing)


@dataclass(frozen=True)
class TokenizedConversation:
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def _chat_messages(messages: list[dict]) -> list[dict]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _unmark_layout(tokenizer: PreTrainedTokenizerBase, input_ids: list[int], mask: list[int]) -> list[int]:
    """`mask` without the whitespace-only tokens at either edge of each marked span: the template's layout,
    which the generation prompt supplies before an answer and generation never reaches after its end of turn."""
    mask = list(mask)

    def blank(i: int) -> bool:
        return not tokenizer.decode([input_ids[i]]).strip()

    start = 0
    while start < len(mask):
        if not mask[start]:
            start += 1
            continue
        end = start
        while end < len(mask) and mask[end]:
            end += 1
        first, last = start, end - 1
        while first <= last and blank(first):
            mask[first], first = 0, first + 1
        while last >= first and blank(last):
            mask[last], last = 0, last - 1
        start = end
    return mask


def tokenize_conversation(tokenizer: PreTrainedTokenizerBase, messages: list[dict]) -> TokenizedConversation:
    """Render `messages` with the tokenizer's chat template; labels are -100 except on assistant answers.

    The template's `{% generation %}` blocks mark each assistant answer and its closing end-of-turn
    token, so multi-turn conversations train on every assistant turn.
    """
    encoded = tokenizer.apply_chat_template(
        _chat_messages(messages),
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    input_ids = list(encoded["input_ids"])
    mask = _unmark_layout(tokenizer, input_ids, encoded["assistant_masks"])
    labels = [tok if m else IGNORE_INDEX for tok, m in zip(input_ids, mask)]
    return TokenizedConversation(input_ids=input_ids, labels=labels)


def generation_prompt_ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict]) -> list[int]:
    """Token ids of a conversation up to its last user turn, with the model's turn opened."""
    return list(
        tokenizer.apply_chat_template(
            _chat_messages(messages), tokenize=True, add_generation_prompt=True, return_dict=True
        )["input_ids"]
    )


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Generation stops at the template's end-of-turn token or at the tokenizer's eos."""
    end_of_turn = _end_of_turn(tokenizer, _own_template(tokenizer) or "", tokenizer.name_or_path)
    ids = {tokenizer.convert_tokens_to_ids(end_of_turn)}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)
