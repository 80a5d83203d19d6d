"""Release storage: write-once `release-vN` directories, their verification, and reading splits back.

Layout of `<data root>/releases/release-vN/`:
  train.parquet, eval.parquet   pair records (provenance, scores and constraints as JSON string columns)
  rejected.parquet              the ledger: every input row that did not make it, with check and reason
  manifest.json                 counts, per-file sha256, bytes and rows, spec, gate config and verdicts,
                                inputs, and an optional human name and notes
  certificate.json              the gate verdict, and a signed attestation (DSSE envelope, Ed25519) of an
                                in-toto statement naming every file above with its sha256 and the release's
                                name, version, spec, checks, verdicts and inputs (`attestation`)

A release is built in a hidden sibling directory and renamed into place under a lock, so two
builds never take the same version, an existing release is never overwritten, and a failed build
leaves nothing behind.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, Protocol

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curator import __version__
from curator.durable import fsync_dir
from curator.errors import NO_SPACE_ERRNOS, CuratorError, DiskFullError
from curator.hashing import sha256_file
from curator.paths import releases_root
from curator.records import now_iso
from curator.signing import open_envelope, sign, signing_key, trusted_keys

SPLITS = ("train", "eval")
_VERSION = re.compile(r"^release-v(\d+)$")
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://instruct-curator.dev/attestations/gate/v1"


class ReleaseError(CuratorError):
    """A release that is missing, altered, or not certified."""


def release_versions(root: Path) -> list[int]:
    if not root.exists():
        return []
    return sorted(int(m.group(1)) for p in root.iterdir() if (m := _VERSION.match(p.name)) and p.is_dir())


def resolve_release(name: str | Path, root: Path | None = None) -> Path:
    """`release-v3`, `v3`, `3`, `latest` or a path to a release directory."""
    root = releases_root() if root is None else Path(root)
    text = str(name)
    if Path(text).is_dir() and (Path(text) / "manifest.json").exists():
        return Path(text)
    if text == "latest":
        versions = release_versions(root)
        if not versions:
            raise ReleaseError(f"no releases under {root}")
        return root / f"release-v{versions[-1]}"
    m = re.fullmatch(r"(?:release-)?v?(\d+)", text)
    if not m or not (root / f"release-v{m.group(1)}").is_dir():
        known = ", ".join(f"release-v{v}" for v in release_versions(root)) or "none"
        raise ReleaseError(f"no release {text!r} under {root} (known: {known})")
    return root / f"release-v{m.group(1)}"


PAIR_COLUMNS = {
    "id": pl.String,
    "messages": pl.List(pl.Struct({"role": pl.String, "content": pl.String})),
    "task_family": pl.String,
    "format": pl.String,
    "difficulty": pl.String,
    "length_band": pl.String,
    "provenance": pl.String,
    "scores": pl.String,
    "constraints": pl.String,  # the verifiable instructions a pair records (curator constrain), JSON; null if none
}
_AS_JSON = ("provenance", "scores", "constraints")  # columns written as JSON text, not decoded by polars
_DECODED = pl.Struct({name: dtype for name, dtype in PAIR_COLUMNS.items() if name not in _AS_JSON})
_SORTED_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode  # as json.dumps(sort_keys=True, ...)
# a number after `:`, `,` or `[` with a fraction or exponent: polars' JSON reader may not give it back digit for
# digit (nor an integer past 64 bits, which it turns into a float); such provenance is parsed from the record
_INEXACT_NUMBER = r"[:,\[]-?[0-9]+[.eE]"


def _frame(records: Iterable[dict]) -> pl.DataFrame:
    rows = [
        {
            "id": r["id"],
            "messages": [{"role": m["role"], "content": m["content"]} for m in r["messages"]],
            "task_family": r["task_family"],
            "format": r["format"],
            "difficulty": r["difficulty"],
            "length_band": r.get("length_band"),
            "provenance": _SORTED_JSON(r["provenance"]),
            "scores": scores_json(r.get("scores")),
            "constraints": _SORTED_JSON(r["constraints"]) if r.get("constraints") is not None else None,
        }
        for r in records
    ]
    return pl.DataFrame(rows, schema=PAIR_COLUMNS)


JSON_PAIRS = pa.schema([("record", pa.string()), ("scores", pa.string())])


class JsonPiece(Protocol):
    """Some pair records in order, as rows of `JSON_PAIRS` (`record`, one record's JSON; `scores`, its check scores
    as `scores_json` writes them, or null): `rows` of them, which `table` reads in whichever process is given the
    piece (it pickles small: a piece on disk says where its rows are)."""

    rows: int

    def table(self) -> pa.Table: ...


@dataclass(frozen=True)
class JsonBatch:
    """A `JsonPiece` in memory."""

    batch: pa.RecordBatch

    @property
    def rows(self) -> int:
        return self.batch.num_rows

    def table(self) -> pa.Table:
        return pa.Table.from_batches([self.batch])


def release_columns(batch: pa.Table) -> pl.DataFrame:
    """The release columns (`PAIR_COLUMNS`) of `JSON_PAIRS` rows: the fields decoded by polars, the provenance
    re-written with sorted keys (parsed from polars' match where its numbers are exact, else from the record by
    `json`)."""
    records = pl.Series(batch.column("record"))
    scores = pl.Series(batch.column("scores"), dtype=pl.String)
    try:
        decoded = records.str.json_decode(_DECODED).struct.unnest()
    except pl.exceptions.ComputeError:  # what polars' reader refuses (NaN, Infinity) the standard library reads
        return _frame({**json.loads(r), "scores": json.loads(s) if s else None} for r, s in zip(records, scores))
    matched = records.str.json_path_match("$.provenance")
    values = [orjson.loads(m) for m in matched.fill_null("null").to_list()]  # integers of 64 bits at most: exact
    for i in (matched.is_null() | matched.str.contains(_INEXACT_NUMBER)).arg_true().to_list():
        values[i] = json.loads(records[i])["provenance"]
    provenance = pl.Series([_SORTED_JSON(v) for v in values], dtype=pl.String)
    constraints = pl.repeat(None, len(records), dtype=pl.String, eager=True)  # null for nearly every row
    found = records.str.contains('"constraints":', literal=True).arg_true()  # the key: in text the quotes are escaped
    if len(found):
        values = [json.loads(records[i]).get("constraints") for i in found.to_list()]
        constraints = constraints.scatter(found, [None if v is None else _SORTED_JSON(v) for v in values])
    return decoded.with_columns(provenance=provenance, scores=scores,
                                constraints=constraints).select(list(PAIR_COLUMNS))


def scores_json(scores: dict | None) -> str | None:
    """Per-row check scores (judge, relevance, ...) as a JSON column; null when the gate scored nothing."""
    return json.dumps(scores, sort_keys=True) if scores else None


LEDGER_COLUMNS = {
    "id": pl.String, "check": pl.String, "reason": pl.String, "duplicate_of": pl.String,
    "kept_as": pl.String, "task_family": pl.String, "input": pl.String, "record": pl.String,
    "scores": pl.String,
}


def _ledger_frame(rejected: Iterable[dict]) -> pl.DataFrame:
    rows = [
        {
            "id": r.get("id"), "check": r["check"], "reason": r["reason"], "duplicate_of": r.get("duplicate_of"),
            "kept_as": r.get("kept_as"), "task_family": r.get("task_family"), "input": r.get("input"),
            "record": _SORTED_JSON(r.get("record")),
            "scores": scores_json(r.get("scores")),
        }
        for r in rejected
    ]
    return pl.DataFrame(rows, schema=LEDGER_COLUMNS)


@contextmanager
def releases_lock(root: Path) -> Iterator[None]:
    """Hold the releases lock of `root` (one writer at a time; re-entrant within a process).

    The gate holds it from reading earlier releases until its own release is renamed into place; taking it
    also removes staging directories whose builder process is gone (a build killed with -9)."""
    key = (os.path.abspath(root), threading.get_ident())
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        _held[key] = 1
        try:
            _remove_stale_staging(root)
            yield
        finally:
            _held.pop(key, None)
            fcntl.flock(fh, fcntl.LOCK_UN)


_held: dict[tuple[str, int], int] = {}
_STAGING = re.compile(r"^\.release-v\d+\.building-(\d+)$")


def _remove_stale_staging(root: Path) -> None:
    for p in root.iterdir():
        m = _STAGING.match(p.name)
        if m and not _alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a leftover of this process is never in use: builds happen one at a time under the lock
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def attestation(release: str, version: int, manifest: dict[str, Any], digests: dict[str, str],
                certified: bool, failed_verdicts: list[str], issued_at: str) -> dict:
    """The in-toto statement a release's certificate signs: every file with its digest (the subject), and what
    the gate did (the predicate: release name and version, spec, gate version, checks, verdicts, inputs, counts)."""
    spec = manifest.get("spec") or {}
    counts = manifest.get("counts") or {}
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}} for name, digest in sorted(digests.items())],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "release": release,
            "version": version,
            "verdict": "certified" if certified else "not_certified",
            "failed_verdicts": failed_verdicts,
            "spec": {"name": spec.get("name"), "sha256": spec.get("sha256")},
            "gate_version": __version__,
            "checks": [{"name": c.get("name"), "removed": c.get("removed")} for c in manifest.get("checks", [])],
            "verdicts": [{"name": v.get("name"), "passed": v.get("passed")} for v in manifest.get("verdicts", [])],
            "inputs": [{"path": i.get("path"), "sha256": i.get("sha256"), "complete": i.get("complete", True)}
                       for i in manifest.get("inputs", [])],
            "allow_partial": bool(manifest.get("allow_partial", False)),
            "counts": {k: counts.get(k) for k in ("input", "rejected", "kept", "train", "eval")},
            "issued_at": issued_at,
        },
    }


WRITE_BATCH = 8192  # records converted and written at a time (a Parquet row group each)
FEW_VALUES = frozenset({"task_family", "format", "difficulty", "length_band", "check", "input"})  # release columns


def _batches_of(records: Iterable[dict], size: int) -> Iterator[list[dict]]:
    it = iter(records)
    while batch := list(islice(it, size)):
        yield batch


class _Rebatcher:
    """Frames in, frames of `size` rows out (the last of them, from `rest`, fewer)."""

    def __init__(self, size: int):
        self.size = size
        self.pending: list[pl.DataFrame] = []
        self.rows = 0

    def add(self, frame: pl.DataFrame) -> Iterator[pl.DataFrame]:
        """The frames of `size` rows that `frame` completes."""
        self.pending.append(frame)
        self.rows += frame.height
        if self.rows >= self.size:
            whole_frame = pl.concat(self.pending, rechunk=False)
            whole = self.rows - self.rows % self.size
            yield from (whole_frame.slice(start, self.size) for start in range(0, whole, self.size))
            self.pending, self.rows = [whole_frame.slice(whole)], self.rows - whole

    def rest(self) -> Iterator[pl.DataFrame]:
        if self.rows:
            yield pl.concat(self.pending, rechunk=False)


def _rebatched(pairs: Iterable[tuple[str, pl.DataFrame]]) -> Iterator[tuple[str, pl.DataFrame]]:
    """(split, `WRITE_BATCH` rows of its columns), train and eval as their rows come."""
    out = {"train": _Rebatcher(WRITE_BATCH), "eval": _Rebatcher(WRITE_BATCH)}
    for split, frame in pairs:
        yield from ((split, part) for part in out[split].add(frame))
    for split, rebatcher in out.items():
        yield from ((split, part) for part in rebatcher.rest())


def _write_parquets(staging: Path, frames: Iterable[tuple[str, pl.DataFrame]],
                    schemas: dict[str, dict[str, pl.DataType]]) -> dict[str, int]:
    """Write each (name, frame) of `frames` as a row group of `<name>.parquet` (zstd, as polars writes; dictionary
    encoding for the `FEW_VALUES` columns only: tried on text, it is wasted time), one file for each name in
    `schemas` (with its columns); return the rows per name."""
    rows = dict.fromkeys(schemas, 0)
    with ExitStack() as stack:
        writers = {}
        for name, schema in schemas.items():
            writers[name] = stack.enter_context(pq.ParquetWriter(
                staging / f"{name}.parquet", pl.DataFrame(schema=schema).to_arrow().schema, compression="zstd",
                use_dictionary=[column for column in schema if column in FEW_VALUES]))
        for name, frame in frames:
            writers[name].write_table(frame.rechunk().to_arrow())
            rows[name] += frame.height
    return rows


@dataclass(frozen=True)
class Conclusion:
    """The gate's word on a release: the manifest as the caller knows it (spec, gate config, checks, verdicts,
    counts, inputs) and the verdicts that failed; certified when none did."""

    manifest: dict[str, Any]
    failed_verdicts: list[str]

    @property
    def certified(self) -> bool:
        return not self.failed_verdicts


def write_release(
    *,
    train: Iterable[dict] = (),
    eval: Iterable[dict] = (),
    pairs: Iterable[tuple[str, pl.DataFrame]] | None = None,
    rejected: Iterable[dict],
    conclusion: Conclusion | Callable[[], Conclusion],
    root: Path | None = None,
    name: str | None = None,
    notes: str | None = None,
) -> Path:
    """Write the next release-vN atomically, signed with the local key, and return its path.

    The pair records, `train` and `eval` (or both as `pairs`: (split, frame of its `release_columns`) as they come,
    frames of any size), and the `rejected` ledger entries may come from generators: they are read once and written
    in batches, never held whole.

    `conclusion` carries what the caller knows (its manifest: spec, gate config, verdicts, inputs; and the verdicts
    that failed), or is a function giving it, called once the data files are written (the gate's verdicts are
    reached meanwhile, in another process, while the ledger is written); this function adds to the manifest the version, the files with sha256,
    size and row counts, the tool version, and the optional human `name` and `notes`; the certificate is a signed
    attestation over every file.
    DiskFullError when the disk fills up (nothing is left behind).
    """
    root = releases_root() if root is None else Path(root)
    key = signing_key()
    with releases_lock(root):
        version = (release_versions(root) or [0])[-1] + 1
        release = f"release-v{version}"
        final = root / release
        staging = root / f".{release}.building-{os.getpid()}"
        if staging.exists():
            shutil.rmtree(staging)
        try:
            staging.mkdir()
            if pairs is None:
                pairs = ((split, _frame(part)) for split, records in (("train", train), ("eval", eval))
                         for part in _batches_of(records, WRITE_BATCH))
            rows = _write_parquets(staging, _rebatched(pairs), {"train": PAIR_COLUMNS, "eval": PAIR_COLUMNS})
            ledger = (("rejected", _ledger_frame(part)) for part in _batches_of(rejected, WRITE_BATCH))
            rows |= _write_parquets(staging, ledger, {"rejected": LEDGER_COLUMNS})
            concluded = conclusion() if callable(conclusion) else conclusion
            manifest, failed_verdicts, certified = concluded.manifest, concluded.failed_verdicts, concluded.certified
            files = {}
            for part, count in rows.items():
                path = staging / f"{part}.parquet"
                files[path.name] = {"sha256": sha256_file(path), "rows": count, "bytes": path.stat().st_size}
            full = {
                **manifest,
                "release": release,
                "name": name,
                "notes": notes,
                "version": version,
                "created_at": now_iso(),
                "tool_version": __version__,
                "files": files,
                "certified": certified,
            }
            (staging / "manifest.json").write_text(json.dumps(full, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
            digests = {n: meta["sha256"] for n, meta in files.items()} | {"manifest.json": sha256_file(staging / "manifest.json")}
            statement = attestation(release, version, full, digests, certified, failed_verdicts, full["created_at"])
            certificate = {
                "release": release,
                "manifest_sha256": digests["manifest.json"],
                "verdict": statement["predicate"]["verdict"],
                "failed_verdicts": failed_verdicts,
                "issued_at": full["created_at"],
                "tool_version": __version__,
                "attestation": sign(statement, key),
            }
            (staging / "certificate.json").write_text(json.dumps(certificate, indent=2, sort_keys=True) + "\n")
            for p in staging.iterdir():
                with open(p, "rb") as fh:
                    os.fsync(fh.fileno())
                p.chmod(0o444)
            fsync_dir(staging)
            os.rename(staging, final)  # fails rather than overwrite; atomic on one filesystem
            fsync_dir(root)
        except BaseException as e:
            shutil.rmtree(staging, ignore_errors=True)
            if _no_space(e):
                raise DiskFullError(f"{root}: no space left while writing {release} ({e}); nothing was written") from None
            raise
    return final


def _no_space(error: BaseException) -> bool:
    """An OSError for a full disk or quota, or polars' report of one (it wraps the OS error in its own text)."""
    if isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS:
        return True
    return isinstance(error, pl.exceptions.PolarsError) and any(
        os.strerror(code) in str(error) for code in NO_SPACE_ERRNOS)


@dataclass(frozen=True)
class Verified:
    """A release that passed verification: its manifest, the signed statement, and who signed it."""

    manifest: dict
    statement: dict
    signer: str | None  # the trusted key id; None when accepted unsigned (--allow-unsigned)


def verify_release(path: str | Path, require_certified: bool = True, allow_unsigned: bool = False) -> dict:
    """The release's manifest once `verify_attested` accepts it."""
    return verify_attested(path, require_certified, allow_unsigned).manifest


def verify_attested(path: str | Path, require_certified: bool = True, allow_unsigned: bool = False) -> Verified:
    """Check a release: its certificate's signature by a trusted key (unless `allow_unsigned`), its name and
    version against the signed statement, and its files: exactly the signed ones, each with its digest.
    ReleaseError names every problem found."""
    path = Path(path)
    refused = f"release {path} refused"
    cert_path, man_path = path / "certificate.json", path / "manifest.json"
    problems = [f"{p}: missing" for p in (man_path, cert_path) if not p.exists()]
    problems += [f"{p}: not a regular file" for p in (man_path, cert_path) if p.exists() and not p.is_file()]
    if problems:
        raise ReleaseError(f"release {path} failed verification: " + "; ".join(problems))
    certificate = _read_json(cert_path)
    try:
        opened = open_envelope(certificate.get("attestation"), trusted_keys(), allow_unsigned)
    except CuratorError as e:
        raise ReleaseError(f"{refused}: {cert_path}: {e}") from None
    statement = opened.statement
    subject, predicate = _subject(statement), statement.get("predicate")
    if subject is None or not isinstance(predicate, dict):
        raise ReleaseError(f"{refused}: {cert_path}: the signed statement has no subject list or predicate")
    signed_name = predicate.get("release")
    if signed_name != path.name:
        raise ReleaseError(f"{refused}: the directory is named {path.name} but its signed statement is for "
                           f"{signed_name} (renamed or copied to another version)")
    for field, signed in (("release", signed_name), ("verdict", predicate.get("verdict")),
                          ("failed_verdicts", predicate.get("failed_verdicts")),
                          ("manifest_sha256", subject.get("manifest.json"))):
        if certificate.get(field) != signed:
            problems.append(f"{cert_path}: {field} {certificate.get(field)!r} differs from the signed {signed!r}")
    present = {p.name for p in path.iterdir()} - {"certificate.json"}
    for extra in sorted(present - set(subject)):
        problems.append(f"{path / extra}: not in the signed manifest (extra file)")
    for name, digest in sorted(subject.items()):
        p = path / name
        if not p.exists():
            problems.append(f"{p}: missing")
        elif not p.is_file():
            problems.append(f"{p}: not a regular file")
        elif sha256_file(p) != digest:
            if name == "manifest.json":
                problems.append(f"{p}: changed since the certificate was issued (sha256 mismatch)")
                continue
            problems.append(f"{p}: changed since release (sha256 mismatch{_truncated(p, man_path, name)})")
    if problems:
        raise ReleaseError(f"release {path} failed verification: " + "; ".join(problems))
    manifest = _read_json(man_path)
    files = manifest.get("files")
    if not isinstance(files, dict) or {n: m.get("sha256") if isinstance(m, dict) else None for n, m in files.items()} != {
            n: d for n, d in subject.items() if n != "manifest.json"}:
        raise ReleaseError(f"{refused}: {man_path}: its files do not match the signed statement")
    if require_certified and predicate.get("verdict") != "certified":
        failed = ", ".join(map(str, predicate.get("failed_verdicts") or [])) or "unknown"
        raise ReleaseError(f"release {path} is not certified (failed: {failed})")
    return Verified(manifest, statement, opened.signer)


def _subject(statement: dict) -> dict[str, str] | None:
    """Name -> sha256 of the statement's subject; None when it is malformed."""
    subject = statement.get("subject")
    if not isinstance(subject, list):
        return None
    out = {}
    for entry in subject:
        digest = entry.get("digest") if isinstance(entry, dict) else None
        name, sha = entry.get("name") if isinstance(entry, dict) else None, digest.get("sha256") if isinstance(digest, dict) else None
        if not isinstance(name, str) or not isinstance(sha, str) or "/" in name or name in ("", ".", ".."):
            return None
        out[name] = sha
    return out


def _truncated(p: Path, man_path: Path, name: str) -> str:
    """'; truncated: N of M bytes' when the file is shorter than the manifest recorded."""
    try:
        recorded = json.loads(man_path.read_text())["files"][name].get("bytes")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ""
    size = p.stat().st_size
    return f"; truncated: {size} of {recorded} bytes" if isinstance(recorded, int) and size < recorded else ""


def _read_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ReleaseError(f"release {path.parent} failed verification: {path}: unreadable JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ReleaseError(f"release {path.parent} failed verification: {path}: expected a JSON object, got {type(doc).__name__}")
    return doc


def read_split(path: str | Path, split: str) -> list[dict]:
    """Pair records of one split (`train` or `eval`), provenance parsed back into a dict."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    df = pl.read_parquet(Path(path) / f"{split}.parquet")
    out = df.to_dicts()
    for r in out:
        r["provenance"] = json.loads(r["provenance"])
        r["scores"] = json.loads(r["scores"]) if r.get("scores") else {}
        if r.get("constraints") is None:  # a record without constraints reads back without the field
            r.pop("constraints", None)
        else:
            r["constraints"] = json.loads(r["constraints"])
    return out


def read_ledger(path: str | Path) -> list[dict]:
    """The release's rejected rows (`id`, `check`, `reason`, `duplicate_of`, `kept_as`, `task_family`, `input`),
    each with the rejected `record` parsed back (None where the input line held no JSON object)."""
    out = pl.read_parquet(Path(path) / "rejected.parquet").to_dicts()
    for r in out:
        r["record"] = json.loads(r["record"]) if r["record"] is not None else None
        r["scores"] = json.loads(r["scores"]) if r.get("scores") else {}
    return out


@dataclass(frozen=True)
class Release:
    """A verified release read into memory: its manifest, certificate, splits and ledger."""

    path: Path
    manifest: dict
    certificate: dict
    train: list[dict]
    eval: list[dict]
    rejected: list[dict]

    @property
    def name(self) -> str:
        return self.manifest.get("release", self.path.name)

    def records(self) -> list[tuple[str, dict]]:
        """(split, record) for every kept row, train first."""
        return [("train", r) for r in self.train] + [("eval", r) for r in self.eval]


def open_release(name: str | Path, root: Path | None = None, require_certified: bool = False) -> Release:
    """Resolve, verify and read a release (uncertified ones too, unless `require_certified`)."""
    path = resolve_release(name, root)
    manifest = verify_release(path, require_certified=require_certified)
    return Release(
        path=path,
        manifest=manifest,
        certificate=json.loads((path / "certificate.json").read_text()),
        train=read_split(path, "train"),
        eval=read_split(path, "eval"),
        rejected=read_ledger(path),
    )
