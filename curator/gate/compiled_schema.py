"""A JSON Schema compiled to one generated Python function: a yes/no validity test about 100 times faster than
jsonschema's `Draft202012Validator`, for the keywords the pair schema uses.

It answers only "valid or not". The gate asks it first and runs jsonschema only for records it
rejects, so error messages still come from jsonschema and both always agree on validity (a test runs
both over real and broken records). A keyword this module does not implement raises
`UnsupportedSchema` at compile time rather than being ignored.

Supported: type, enum and const (string values), required, properties, additionalProperties (bool),
items (one schema), minItems, minLength, pattern (re.search, as jsonschema), format (through the
given jsonschema FormatChecker), allOf, contains; annotations ($schema, $id, title, description).

The function is generated as source text (one `if ...: return False` per keyword, nested loops for
`items`, a local per named property) and compiled with `exec`: one call a record instead of a closure
call per keyword and value. Values from the schema never enter the source: they are bound as names.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from jsonschema import FormatChecker

Test = Callable[[Any], bool]

ANNOTATIONS = {"$schema", "$id", "title", "description"}
_TYPES: dict[str, Test] = {
    "string": lambda v: isinstance(v, str),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}
_CLASSES = {"string": str, "object": dict, "array": list, "null": type(None)}  # exactly these Python types
_MISSING = object()


class UnsupportedSchema(ValueError):
    """The schema uses a keyword or value this compiler does not implement."""


def _strings(values: list, keyword: str) -> frozenset[str]:
    if not all(isinstance(v, str) for v in values):
        raise UnsupportedSchema(f"{keyword} with non-string values")
    return frozenset(values)


class _Source:
    """The generated function's lines and the values its names stand for."""

    def __init__(self, format_checker: FormatChecker | None):
        self.format_checker = format_checker
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"MISSING": _MISSING}
        self.variables = 0

    def bind(self, value: Any) -> str:
        name = f"c{len(self.names)}"
        self.names[name] = value
        return name

    def variable(self) -> str:
        self.variables += 1
        return f"v{self.variables}"

    def fail_if(self, condition: str, pad: str) -> None:
        self.lines.append(f"{pad}if {condition}: return False")

    def block(self, header: str, pad: str, body: Callable[[str], None]) -> None:
        """`header:` with the lines `body(inner pad)` emits (`pass` when none)."""
        self.lines.append(f"{pad}{header}:")
        size = len(self.lines)
        body(pad + "    ")
        if len(self.lines) == size:
            self.lines.append(f"{pad}    pass")

    def emit(self, schema: dict, v: str, pad: str) -> None:
        """Lines that return False when the value named `v` breaks `schema`."""
        for keyword, value in schema.items():
            if keyword in ANNOTATIONS:
                continue
            if keyword == "type":
                names = [value] if isinstance(value, str) else value
                if any(n not in _TYPES for n in names):
                    raise UnsupportedSchema(f"type {value!r}")
                if all(n in _CLASSES for n in names):  # one isinstance call for the common types
                    self.fail_if(f"not isinstance({v}, {self.bind(tuple(_CLASSES[n] for n in names))})", pad)
                else:
                    tests = " or ".join(f"{self.bind(_TYPES[n])}({v})" for n in names)
                    self.fail_if(f"not ({tests})", pad)
            elif keyword in ("enum", "const"):
                allowed = self.bind(_strings(value if keyword == "enum" else [value], keyword))
                self.fail_if(f"not (isinstance({v}, str) and {v} in {allowed})", pad)
            elif keyword == "required":
                self.fail_if(f"isinstance({v}, dict) and not {self.bind(frozenset(value))} <= {v}.keys()", pad)
            elif keyword == "properties":
                self.block(f"if isinstance({v}, dict)", pad, lambda inner: self._properties(value, v, inner))
            elif keyword == "additionalProperties":
                if value is not False:
                    raise UnsupportedSchema("additionalProperties other than false")
                if "patternProperties" in schema:
                    raise UnsupportedSchema("patternProperties")
                known = self.bind(frozenset(schema.get("properties", {})))
                self.fail_if(f"isinstance({v}, dict) and not {known}.issuperset({v})", pad)
            elif keyword == "items":
                item = self.variable()
                self.block(f"if isinstance({v}, list)", pad, lambda inner: self.block(
                    f"for {item} in {v}", inner, lambda body: self.emit(value, item, body)))
            elif keyword == "minItems":
                self.fail_if(f"isinstance({v}, list) and len({v}) < {int(value)}", pad)
            elif keyword == "minLength":
                self.fail_if(f"isinstance({v}, str) and len({v}) < {int(value)}", pad)
            elif keyword == "pattern":
                self.fail_if(f"isinstance({v}, str) and {self.bind(re.compile(value).search)}({v}) is None", pad)
            elif keyword == "format":
                if self.format_checker is not None:
                    self.fail_if(f"not {self.bind(self.format_checker.conforms)}({v}, {self.bind(value)})", pad)
            elif keyword == "allOf":
                for sub in value:
                    self.emit(sub, v, pad)
            elif keyword == "contains":
                sub = self.bind(compile_schema(value, self.format_checker))
                self.fail_if(f"isinstance({v}, list) and not any(map({sub}, {v}))", pad)
            else:
                raise UnsupportedSchema(f"keyword {keyword!r}")

    def _properties(self, properties: dict, v: str, pad: str) -> None:
        for name, sub in properties.items():
            value = self.variable()
            self.lines.append(f"{pad}{value} = {v}.get({self.bind(name)}, MISSING)")
            self.block(f"if {value} is not MISSING", pad, lambda inner: self.emit(sub, value, inner))


def compile_schema(schema: dict, format_checker: FormatChecker | None = None) -> Test:
    """A function telling whether an instance is valid against `schema` (see the module doc)."""
    source = _Source(format_checker)
    source.emit(schema, "v0", "    ")
    text = "\n".join(["def test(v0):", *source.lines, "    return True"])
    exec(compile(text, "<compiled schema>", "exec"), source.names)
    return source.names["test"]
