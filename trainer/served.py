"""Answers from a served model through any OpenAI-compatible endpoint (llama.cpp, vLLM, TGI, OpenAI).

Greedy (temperature 0) and seeded, `max_in_flight` requests at a time. Two prompt formats:

- `chat`: the conversation goes to `/v1/chat/completions` and the server applies its own chat template;
- `template`: for a base model served without a chat template, the prompt is rendered here with the
  trainer's Gemma template (`trainer/templates/gemma.jinja`, exactly as in training, generation prompt
  opened) and sent to `/v1/completions` with stop `<end_of_turn>`. The template's `bos_token` is
  rendered empty: the server adds BOS itself when it tokenizes a text prompt (llama.cpp and vLLM do),
  so the model sees one BOS, as in training.

The API key is read from an environment variable (a placeholder when unset, for local servers) and is
never logged or written.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import openai
from rich.progress import Progress
from transformers.utils.chat_template_utils import render_jinja_template

from curator.errors import CuratorError
from trainer.chat_template import END_OF_TURN, gemma_chat_template

if TYPE_CHECKING:
    from trainer.evaluate import AnswerFn, Sides

PROMPT_FORMATS = ("chat", "template")
KEY_PLACEHOLDER = "not-needed"


@dataclass(frozen=True)
class Endpoint:
    """A served model: the endpoint's base URL (ending in `/v1`) and the model name it serves."""

    base_url: str
    model: str

    def describe(self) -> dict:
        return {"endpoint": self.base_url, "model": self.model}


def render_prompt(messages: list[dict], template: str) -> str:
    """`messages` rendered with `template` (BOS left to the server), the model's turn opened."""
    chat = [{"role": m["role"], "content": m["content"]} for m in messages]
    rendered, _ = render_jinja_template(
        [chat], chat_template=template, add_generation_prompt=True, bos_token="", eos_token=""
    )
    return rendered[0]


class ServedModel:
    """Batched greedy generation against one endpoint; call `answer(conversations, progress, label)`."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        prompt_format: str,
        max_new_tokens: int,
        seed: int,
        max_in_flight: int = 4,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 300.0,
    ) -> None:
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, not {prompt_format!r}")
        self.endpoint = endpoint
        self.prompt_format = prompt_format
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.max_in_flight = max_in_flight
        self._template = gemma_chat_template() if prompt_format == "template" else None
        self._client = openai.OpenAI(
            base_url=endpoint.base_url, api_key=os.environ.get(api_key_env) or KEY_PLACEHOLDER, timeout=timeout_s
        )

    def check_reachable(self) -> None:
        """Raise CuratorError when nothing answers at the endpoint (an HTTP error status still counts as reachable)."""
        try:
            self._client.with_options(max_retries=0, timeout=10.0).models.list()
        except openai.APIConnectionError as e:
            raise CuratorError(f"{self.endpoint.base_url}: cannot reach the endpoint ({e})") from None
        except openai.APIStatusError:
            pass

    def _one(self, messages: list[dict]) -> str:
        options = {"model": self.endpoint.model, "temperature": 0, "seed": self.seed, "max_tokens": self.max_new_tokens}
        try:
            if self._template is None:
                reply = self._client.chat.completions.create(messages=messages, **options)
                return (reply.choices[0].message.content or "").strip()
            prompt = render_prompt(messages, self._template)
            reply = self._client.completions.create(prompt=prompt, stop=[END_OF_TURN], **options)
            return reply.choices[0].text.strip()
        except openai.APIConnectionError as e:
            raise CuratorError(f"{self.endpoint.base_url}: cannot reach the endpoint ({e})") from None
        except openai.APIStatusError as e:
            raise CuratorError(f"{self.endpoint.base_url}: model {self.endpoint.model!r} answered "
                               f"HTTP {e.status_code}: {e.message}") from None

    def answer(self, conversations: list[list[dict]], progress: Progress, label: str) -> list[str]:
        """One greedy answer per conversation, in order."""
        task = progress.add_task(label, total=len(conversations))
        answers: list[str | None] = [None] * len(conversations)
        with ThreadPoolExecutor(self.max_in_flight) as pool:
            futures = {pool.submit(self._one, c): i for i, c in enumerate(conversations)}
            try:
                for future in as_completed(futures):
                    answers[futures[future]] = future.result()
                    progress.advance(task)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        return answers  # type: ignore[return-value]


def served_sides(tuned: ServedModel, base: ServedModel | None = None) -> Sides:
    """`trainer.evaluate.Sides` over served models: `base` (when given), then `tuned`."""

    def sides(progress: Progress) -> Iterator[tuple[str, AnswerFn]]:
        for name, model in (("base", base), ("tuned", tuned)):
            if model is not None:
                yield name, lambda conversations, label, model=model: model.answer(conversations, progress, label)

    return sides
