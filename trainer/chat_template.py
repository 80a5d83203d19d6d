"""Gemma's chat turn format, used for training and for generation alike.

One Jinja template (`trainer/templates/gemma.jinja`) is set on the tokenizer. Training renders a
conversation with it and learns only the assistant tokens; evaluation renders the prompt with the
same template and appends the generation prompt (`<start_of_turn>model\\n`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
END_OF_TURN = "<end_of_turn>"
REQUIRED_SPECIAL_TOKENS = ("<bos>", "<eos>", "<pad>", "<start_of_turn>", END_OF_TURN)


def gemma_chat_template() -> str:
    """The Jinja chat template shipped with the trainer."""
    return (Path(__file__).parent / "templates" / "gemma.jinja").read_text(encoding="utf-8")


def install_chat_template(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Set the Gemma template on `tokenizer` (in place) and return it."""
    tokenizer.chat_template = gemma_chat_template()
    return tokenizer


@dataclass(frozen=True)
class TokenizedConversation:
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def _chat_messages(messages: list[dict]) -> list[dict]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def tokenize_conversation(tokenizer: PreTrainedTokenizerBase, messages: list[dict]) -> TokenizedConversation:
    """Render `messages` with the tokenizer's chat template; labels are -100 except on assistant answers.

    The template's `{% generation %}` blocks mark each assistant answer and its closing
    `<end_of_turn>`, so multi-turn conversations train on every assistant turn.
    """
    encoded = tokenizer.apply_chat_template(
        _chat_messages(messages),
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    input_ids = list(encoded["input_ids"])
    mask = list(encoded["assistant_masks"])
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
    """Generation stops at `<end_of_turn>` (the end of an assistant turn) or at `<eos>`."""
    ids = {tokenizer.convert_tokens_to_ids(END_OF_TURN)}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    ids.discard(tokenizer.unk_token_id)
    return sorted(i for i in ids if i is not None)
