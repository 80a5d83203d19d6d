"""Rows of an import file, read so that no single bad row can stop an import.

A JSONL file is read as bytes, one line at a time, and each line is decoded on its own; a JSON array file is
walked element by element, so a broken element is named and the others are kept. Every row comes out as a
`RawRow` with either a parsed value or the reason it cannot be used (invalid UTF-8, invalid JSON, nested too
deeply, a lone surrogate or NUL in a string, an over-long line). A UTF-8 byte order mark is skipped.
"""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Iterable, Iterator, NamedTuple

import orjson

from curator.errors import CuratorError

if TYPE_CHECKING:  # pyarrow is imported only to read Parquet and datasets inputs
    import pyarrow as pa

BOM = b"\xef\xbb\xbf"
MAX_DEPTH = 64  # containers inside containers; deeper rows are quarantined
MAX_LINE_BYTES = 16 << 20  # a longer JSONL line is quarantined without being held in memory
_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")
_TOKEN = re.compile(r'["\[\]{},]')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_SPACE = re.compile(r"\s*")


class RawRow(NamedTuple):
    """One input row: where it is (`line`, and `element` in an array file), the parsed value or None, the reason
    it cannot be used or None, and its text as read where that is needed (for the quarantine of a row that did not
    parse; an array element's always)."""

    line: int
    element: int | None
    value: Any
    error: str | None
    raw: str


RawLine = tuple[int, bytes]  # a JSONL line not yet parsed: its number and bytes (a plain tuple pickles fast)


def parse_line(line: int, data: bytes) -> RawRow:
    """The row a JSONL line (its bytes, newline included) holds. orjson parses (and checks the UTF-8); what it
    refuses goes to `json`, so results and errors are the standard library's."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            text = data.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            return RawRow(line, None, None, f"invalid UTF-8 at byte {e.start}",
                          data.rstrip(b"\r\n").decode("utf-8", "backslashreplace"))
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            return RawRow(line, None, None, f"invalid JSON at column {e.colno}: {e.msg}", text)
        except RecursionError:
            return RawRow(line, None, None, f"nested deeper than {MAX_DEPTH} levels", text)
    reason = None if _plainly_fine(data) else inspect(value)
    if reason is not None and reason.startswith("nested deeper"):  # quarantined as text: too deep to write as JSON
        return RawRow(line, None, None, reason, data.rstrip(b"\r\n").decode("utf-8", "backslashreplace"))
    return RawRow(line, None, value, reason, "")


def read_rows(path: Path) -> Iterator[RawRow | RawLine]:
    """Every row of an import input (see the module doc), in order, blank lines skipped; a JSONL file's lines
    come unparsed, as `RawLine`s (for `parse_line`), so that worker processes can parse them."""
    if path.is_dir():
        return _table_rows(_dataset_batches(path))
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        return _table_rows(pq.ParquetFile(path).iter_batches())
    return _json_rows(path)


def input_files(path: Path) -> list[Path]:
    """The files an import input consists of (a `datasets` directory: its state and Arrow files), in order."""
    if not path.is_dir():
        return [path]
    state = path / "state.json"
    if not state.is_file():
        hint = " (a DatasetDict: name one split's directory)" if (path / "dataset_dict.json").is_file() else ""
        raise CuratorError(f"{path}: not a datasets directory saved with save_to_disk (no state.json){hint}")
    try:
        names = [entry["filename"] for entry in json.loads(state.read_text(encoding="utf-8"))["_data_files"]]
    except (ValueError, KeyError, TypeError) as e:
        raise CuratorError(f"{state}: _data_files: not a datasets state file ({e})") from None
    return [state, *(path / name for name in names)]


def _dataset_batches(path: Path) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa
    for arrow_file in input_files(path)[1:]:
        with pa.memory_map(str(arrow_file)) as source:
            yield from pa.ipc.open_stream(source)


def _json_native(kind: pa.DataType) -> bool:
    import pyarrow as pa
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _json_native(kind.value_type)
    if pa.types.is_struct(kind):
        return all(_json_native(f.type) for f in kind)
    return any(test(kind) for test in (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer,
                                       pa.types.is_floating, pa.types.is_boolean, pa.types.is_null))


def _table_rows(batches: Iterable[pa.RecordBatch]) -> Iterator[RawRow]:
    n = 0
    for batch in batches:
        foreign = [f.name for f in batch.schema if not _json_native(f.type)]
        for value in batch.to_pylist():
            n += 1
            for name in foreign:
                if value[name] is not None:
                    value[name] = str(value[name])
            yield RawRow(n, None, value, inspect(value), "")


def _json_rows(path: Path) -> Iterator[RawRow | RawLine]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        head = f.read(4096)
        start = head[len(BOM):] if head.startswith(BOM) else head
        is_array = start.lstrip()[:1] == b"["
        f.seek(0)
        if is_array:
            yield from _array_rows(f.read())
        else:
            yield from _jsonl_rows(f)


def _jsonl_rows(f: BinaryIO) -> Iterator[RawRow | RawLine]:
    n = 0
    while True:
        data = f.readline(MAX_LINE_BYTES + 1)
        if not data:
            return
        n += 1
        if n == 1 and data.startswith(BOM):
            data = data[len(BOM):]
        if len(data) > MAX_LINE_BYTES and not data.endswith(b"\n"):
            while (more := f.readline(MAX_LINE_BYTES + 1)) and not more.endswith(b"\n"):
                pass
            yield RawRow(n, None, None, f"line longer than {MAX_LINE_BYTES} bytes", data[:200].decode("utf-8", "backslashreplace"))
        elif data.strip():
            yield n, data


def _plainly_fine(data: bytes) -> bool:
    """True when the JSON text cannot hold what `inspect` looks for: a NUL or lone surrogate needs a \\u escape
    (valid UTF-8 holds neither, and a raw NUL is invalid JSON), and 64 levels need 64 brackets."""
    return b"\\u" not in data and data.count(b"{") + data.count(b"[") < MAX_DEPTH


def inspect(value: Any) -> str | None:
    """Why a parsed value cannot become a pair (too deep; a lone surrogate or NUL in a key or string, naming the
    field), or None."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels at {where or 'the top'}"
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                if isinstance(key, str) and (bad := _BAD_CHAR.search(key)):
                    return f"field {where + '.' + repr(key) if where else repr(key)}: {_what(bad.group())} in a key"
                step = f"[{key}]" if isinstance(item, list) else (f".{key}" if where else str(key))
                stack.append((child, where + step, depth + 1))
        elif isinstance(item, str) and (bad := _BAD_CHAR.search(item)):
            return f"field {where or '(the row)'}: {_what(bad.group())}"
    return None


def _what(char: str) -> str:
    return "NUL character" if char == "\x00" else f"lone surrogate U+{ord(char):04X} (an invalid UTF-8 byte or escape)"


def _array_rows(data: bytes) -> Iterator[RawRow]:
    """Elements of a JSON array, each parsed on its own; invalid bytes become lone surrogates, so the element
    holding them is quarantined and the others are kept."""
    if data.startswith(BOM):
        data = data[len(BOM):]
    text = data.decode("utf-8", "surrogateescape")
    decoder = json.JSONDecoder()
    pos = _SPACE.match(text, 0).end() + 1  # past "["
    line, counted = 1, 0
    element = 0
    while True:
        pos = _SPACE.match(text, pos).end()
        if pos >= len(text):
            line += text.count("\n", counted, pos)
            yield RawRow(line, element, None, "the array ends before its closing ]", "")
            return
        if text[pos] == "]":
            return
        start = pos
        try:
            value, end = decoder.raw_decode(text, pos)
            error = inspect(value)
            if error is not None and error.startswith("nested deeper"):
                value = None  # quarantined as its text: too deep to write back as JSON
        except json.JSONDecodeError as e:
            value, end, error = None, max(_value_end(text, pos), pos + 1), f"invalid JSON: {e.msg}"
        except RecursionError:
            value, end, error = None, max(_value_end(text, pos), pos + 1), f"nested deeper than {MAX_DEPTH} levels"
        line += text.count("\n", counted, start)
        counted = start
        yield RawRow(line, element, value, error and f"element {element}: {error}", text[start:end])
        element += 1
        pos = _SPACE.match(text, end).end()
        if text[pos:pos + 1] == ",":
            pos += 1
        elif text[pos:pos + 1] == "]":
            return


def _value_end(text: str, start: int) -> int:
    """Where the JSON value starting at `start` ends, by brackets and strings alone (for a value that does not
    parse): at the comma or closing bracket after it, or the end of the text."""
    depth, pos = 0, start
    while m := _TOKEN.search(text, pos):
        char = m.group()
        if char == '"':
            string = _STRING.match(text, m.start())
            if string is None:
                return len(text)
            pos = string.end()
            continue
        if char in "[{":
            depth += 1
        elif char in "]}":
            if depth == 0:
                return m.start()
            depth -= 1
            if depth == 0:
                return m.end()
        elif depth == 0:
            return m.start()
        pos = m.end()
    return len(text)
