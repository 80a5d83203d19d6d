"""Teacher replies through the OpenAI Batch API (`curator generate --batch`, or the spec's `teacher.batch`).

The requests of the pending slots whose replies are not cached go into a Batch input file
(`batch-<n>-input.jsonl` in the run directory; `custom_id` is the request key, the body the request's payload),
which is uploaded (purpose `batch`) and submitted; the batch is polled with a progress display until it ends,
its output and error files are saved next to it (`batch-<n>-output.jsonl`, `batch-<n>-errors.jsonl`), and
every reply goes into the response cache under its request key. The normal runner pass then finds each reply in
the cache, so parsing, quarantine, accounting and provenance are those of the live path. A slot the batch did not
answer (a line of the error file, or no line at all) ends as `failed` with the batch's reason and is never sent
live; a rerun retries it in a new batch.

Resume: `batch.json` in the run directory lists every batch of the run and how far it got (`new`: input file
written, `uploaded` with the file id, `submitted` with the batch id, `collected`), rewritten after each step.
A rerun after a crash or Ctrl-C polls the open batch instead of paying for it again; one created just before a
crash, before its id was written, is found again by its input file id.
"""
from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
from openai.types import Batch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from curator.errors import CuratorError
from curator.generate.plan import Slot
from curator.generate.requests import build_request
from curator.records import now_iso
from curator.redact import redact
from curator.rundir import RunDir
from curator.spec import Spec
from curator.teacher.client import ResponseCache, TeacherError, TeacherReply, TeacherRequest, reply_from_body

LEDGER = "batch.json"
ENDPOINTS = {"completion": "/v1/completions", "chat": "/v1/chat/completions"}
TERMINAL = {"completed", "failed", "expired", "cancelled"}
FIND_WINDOW = 100  # most recent batches searched for one created just before a crash


@dataclass
class BatchSession:
    """What this invocation's batches did: usage in the live path's terms, and one summary per batch collected."""

    usage: Counter[str] = field(default_factory=Counter)  # requests, failures, prompt_tokens, completion_tokens
    batches: list[dict[str, Any]] = field(default_factory=list)


class Ledger:
    """`batch.json`: the run's batches, oldest first, rewritten atomically after every step."""

    def __init__(self, run_dir: RunDir):
        self.path = run_dir.path / LEDGER
        self.batches: list[dict[str, Any]] = json.loads(self.path.read_text())["batches"] if self.path.exists() else []

    def open_batch(self) -> dict[str, Any] | None:
        """The batch a rerun must finish before submitting another: the last one not yet collected."""
        return next((b for b in reversed(self.batches) if b["state"] != "collected"), None)

    def save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"batches": self.batches}, indent=2) + "\n")
        os.replace(tmp, self.path)


def batch_line(request: TeacherRequest) -> dict[str, Any]:
    """One line of a Batch input file: the request as the live path would send it."""
    if request.grammar is not None:
        raise CuratorError(
            "the Batch API takes only OpenAI parameters, and completion mode with teacher.structured_output sends a "
            "GBNF grammar; use chat mode, set structured_output: off, or run without --batch"
        )
    return {"custom_id": request.key, "method": "POST", "url": ENDPOINTS[request.mode], "body": request.payload()}


def line_error(line: dict[str, Any]) -> str:
    """Why a line of a batch's output or error file holds no reply."""
    if error := line.get("error"):
        return f"{error.get('code') or 'error'}: {error.get('message') or ''}".strip()
    response = line.get("response") or {}
    message = ((response.get("body") or {}).get("error") or {}).get("message") or ""
    return f"HTTP {response.get('status_code')}: {message[:200]}".strip()


def line_reply(line: dict[str, Any], mode: str) -> TeacherReply:
    """The reply in a line of a batch's output or error file, read as the live path reads one; TeacherError with
    the reason when it holds none."""
    response = line.get("response") or {}
    if line.get("error") or response.get("status_code") != 200:
        raise TeacherError(line_error(line))
    return reply_from_body(response.get("body") or {}, mode)


def api_error(base_url: str, step: str, error: openai.APIError, api_key: str | None = None) -> CuratorError:
    """A Batch API call that failed, as one line (the key scrubbed); a 404 means the endpoint has no Batch API."""
    if isinstance(error, openai.NotFoundError):
        return CuratorError(
            f"the teacher at {base_url} has no Batch API ({step} answered HTTP 404); "
            "run without --batch (and teacher.batch: false)"
        )
    status = f"HTTP {error.status_code}: " if isinstance(error, openai.APIStatusError) else ""
    return CuratorError(f"Batch API at {base_url}: {step} failed: {status}{redact(str(error.message), api_key)[:200]}")


class Batcher:
    """Submits, polls and collects the run's batches against one endpoint, filling the response cache."""

    def __init__(self, api: openai.AsyncOpenAI, base_url: str, cache: ResponseCache, run_dir: RunDir,
                 mode: str, poll_s: float, console: Console):
        self.api, self.base_url, self.cache, self.run_dir = api, base_url, cache, run_dir
        self.mode, self.poll_s, self.console = mode, poll_s, console
        self.ledger = Ledger(run_dir)
        self.session = BatchSession()

    async def call(self, step: str, coro: Any) -> Any:
        try:
            return await coro
        except openai.APIError as e:
            raise api_error(self.base_url, step, e, self.api.api_key) from None

    async def fetch(self, requests: dict[str, TeacherRequest]) -> dict[str, str]:
        """Replies for `requests` (key -> request) into the cache: the open batch first (resume), then one new
        batch for what is still missing. Returns the keys the batches left without a reply, with the reason."""
        failed: dict[str, str] = {}
        if (entry := self.ledger.open_batch()) is not None:
            failed.update(await self.finish(entry))
        needed = [r for key, r in requests.items() if key not in failed and self.cache.get(key) is None]
        if needed:
            failed.update(await self.finish(self.write_input(needed)))
        return failed

    def write_input(self, requests: list[TeacherRequest]) -> dict[str, Any]:
        """Write the next batch's input file and record it in the ledger (state `new`)."""
        lines = [batch_line(r) for r in requests]
        n = len(self.ledger.batches) + 1
        name = f"batch-{n}-input.jsonl"
        (self.run_dir.path / name).write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
        entry = {"n": n, "state": "new", "input_file": name, "requests": len(lines), "endpoint": ENDPOINTS[self.mode],
                 "base_url": self.base_url, "created_at": now_iso()}
        self.ledger.batches.append(entry)
        self.ledger.save()
        return entry

    async def finish(self, entry: dict[str, Any]) -> dict[str, str]:
        """Take a ledger entry from wherever it stopped to `collected`; the keys it left without a reply."""
        if entry["base_url"] != self.base_url:
            raise CuratorError(
                f"{self.ledger.path}: batch {entry.get('id') or entry['n']} went to {entry['base_url']}, not "
                f"{self.base_url}; rerun with --base-url {entry['base_url']} to collect it"
            )
        created = None
        if entry["state"] == "new":
            path = self.run_dir.path / entry["input_file"]
            uploaded = await self.call("POST /files", self.api.files.create(file=(path.name, path.read_bytes()), purpose="batch"))
            entry.update(state="uploaded", input_file_id=uploaded.id)
            self.ledger.save()
        elif entry["state"] == "uploaded":  # stopped after the upload: the batch may have been created already
            created = await self.created_before(entry["input_file_id"])
        if entry["state"] == "uploaded":
            created = created or await self.call("POST /batches", self.api.batches.create(
                input_file_id=entry["input_file_id"], endpoint=entry["endpoint"], completion_window="24h",
                metadata={"curator_run": self.run_dir.path.name[:512]},
            ))
            entry.update(state="submitted", id=created.id)
            self.ledger.save()
        batch = await self.poll(entry["id"])
        failed = await self.collect(entry, batch)
        entry.update(state="collected", status=batch.status, answered=entry["requests"] - len(failed), failed=len(failed),
                     collected_at=now_iso())
        self.ledger.save()
        self.session.batches.append({k: entry.get(k) for k in ("id", "status", "requests", "answered", "failed")})
        return failed

    async def created_before(self, input_file_id: str) -> Batch | None:
        """A batch already created from this input file (by a run that crashed before it recorded the id)."""
        page = await self.call("GET /batches", self.api.batches.list(limit=FIND_WINDOW))
        return next((b for b in page.data if b.input_file_id == input_file_id), None)

    async def poll(self, batch_id: str) -> Batch:
        """Retrieve the batch every `poll_s` seconds, with a progress bar, until it ends."""
        columns = (TextColumn("batch {task.fields[status]}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=self.console) as progress:
            task = progress.add_task("batch", total=None, status=batch_id)
            while True:
                batch = await self.call(f"GET /batches/{batch_id}", self.api.batches.retrieve(batch_id))
                counts = batch.request_counts
                if counts is not None:
                    progress.update(task, total=counts.total or None, completed=counts.completed + counts.failed)
                progress.update(task, status=f"{batch_id} {batch.status}")
                if batch.status in TERMINAL:
                    return batch
                await asyncio.sleep(self.poll_s)

    async def download(self, file_id: str | None, path: Path) -> list[dict[str, Any]]:
        """Lines of a batch's output or error file, also saved at `path` (none when the batch has no such file)."""
        if not file_id:
            return []
        content = await self.call(f"GET /files/{file_id}/content", self.api.files.content(file_id))
        path.write_bytes(content.content)
        return [json.loads(line) for line in content.text.splitlines() if line.strip()]

    async def collect(self, entry: dict[str, Any], batch: Batch) -> dict[str, str]:
        """Cache every reply of an ended batch; the keys of its input without one, with the reason."""
        stem = self.run_dir.path / f"batch-{entry['n']}"
        lines = (await self.download(batch.output_file_id, stem.with_name(stem.name + "-output.jsonl"))
                 + await self.download(batch.error_file_id, stem.with_name(stem.name + "-errors.jsonl")))
        with open(self.run_dir.path / entry["input_file"], encoding="utf-8") as f:
            keys = [json.loads(line)["custom_id"] for line in f if line.strip()]
        failed: dict[str, str] = {}
        for line in lines:
            key = line.get("custom_id")
            self.session.usage["requests"] += 1
            try:
                reply = line_reply(line, self.mode)
            except TeacherError as e:
                failed[key] = f"batch {batch.id}: {e}"
                continue
            self.cache.put(key, reply)
            self.session.usage["prompt_tokens"] += reply.prompt_tokens
            self.session.usage["completion_tokens"] += reply.completion_tokens
        why = "; ".join(e.message or e.code or "" for e in (batch.errors.data or [])) if batch.errors else ""
        for key in keys:
            if key not in failed and self.cache.get(key) is None:
                failed[key] = f"batch {batch.id} ended {batch.status} without a reply for this request" + (f": {why}" if why else "")
        self.session.usage["failures"] += len(failed)
        return failed


async def prefetch(spec: Spec, pending: list[Slot], batcher: Batcher, run_dir: RunDir, outcomes: Counter[str]) -> list[Slot]:
    """Fetch the replies of the `pending` slots' requests by batch, and record each slot the batches could not
    answer as failed with their reason (counted in `outcomes`). Returns the slots whose replies are now cached,
    for the runner pass."""
    requests = [(slot, build_request(spec, slot)[0]) for slot in pending]
    failed = await batcher.fetch({request.key: request for _, request in requests})
    answered = []
    for slot, request in requests:
        if batcher.cache.get(request.key) is not None:
            answered.append(slot)
            continue
        run_dir.add_failed(slot.id, redact(failed.get(request.key, f"no reply from the run's batches (see {LEDGER})"),
                                           batcher.api.api_key))
        outcomes["failed"] += 1
    return answered
