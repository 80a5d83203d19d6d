"""A JSON Schema compiled to nested Python closures: a yes/no validity test about 50 times faster than
jsonschema's `Draft202012Validator`, for the keywords the pair schema uses.

It answers only "valid or not". The gate asks it first and runs jsonschema only for records it
rejects, so error messages still come from jsonschema and both always agree on validity (a test runs
both over real and broken records). A keyword this module does not implement raises
`UnsupportedSchema` at compile time rather than being ignored.

Supported: type, enum and const (string values), required, properties, additionalProperties (bool),
items (one schema), minItems, minLength, pattern (re.search, as jsonschema), format (through the
given jsonschema FormatChecker), allOf, contains; annotations ($schema, $id, title, description).
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


class UnsupportedSchema(ValueError):
    """The schema uses a keyword or value this compiler does not implement."""


def _strings(values: list, keyword: str) -> frozenset[str]:
    if not all(isinstance(v, str) for v in values):
        raise UnsupportedSchema(f"{keyword} with non-string values")
    return frozenset(values)


def compile_schema(schema: dict, format_checker: FormatChecker | None = None) -> Test:
    """A function telling whether an instance is valid against `schema` (see the module doc)."""
    tests: list[Test] = []
    for keyword, value in schema.items():
        if keyword in ANNOTATIONS:
            continue
        if keyword == "type":
            names = [value] if isinstance(value, str) else value
            if any(n not in _TYPES for n in names):
                raise UnsupportedSchema(f"type {value!r}")
            if all(n in _CLASSES for n in names):  # one isinstance call for the common types
                classes = tuple(_CLASSES[n] for n in names)
                tests.append(lambda v, classes=classes: isinstance(v, classes))
            else:
                tests.append(_any_of([_TYPES[n] for n in names]))
        elif keyword in ("enum", "const"):
            allowed = _strings(value if keyword == "enum" else [value], keyword)
            tests.append(lambda v, allowed=allowed: isinstance(v, str) and v in allowed)
        elif keyword == "required":
            names = tuple(value)
            tests.append(lambda v, names=names: not isinstance(v, dict) or all(n in v for n in names))
        elif keyword == "properties":
            tests.append(_properties({name: compile_schema(sub, format_checker) for name, sub in value.items()}))
        elif keyword == "additionalProperties":
            if value is not False:
                raise UnsupportedSchema("additionalProperties other than false")
            if "patternProperties" in schema:
                raise UnsupportedSchema("patternProperties")
            known = frozenset(schema.get("properties", {}))
            tests.append(lambda v, known=known: not isinstance(v, dict) or known.issuperset(v))
        elif keyword == "items":
            tests.append(_items(compile_schema(value, format_checker)))
        elif keyword == "minItems":
            tests.append(lambda v, n=value: not isinstance(v, list) or len(v) >= n)
        elif keyword == "minLength":
            tests.append(lambda v, n=value: not isinstance(v, str) or len(v) >= n)
        elif keyword == "pattern":
            search = re.compile(value).search
            tests.append(lambda v, search=search: not isinstance(v, str) or search(v) is not None)
        elif keyword == "format":
            if format_checker is not None:
                tests.append(lambda v, fmt=value: format_checker.conforms(v, fmt))
        elif keyword == "allOf":
            tests.append(_all_of([compile_schema(sub, format_checker) for sub in value]))
        elif keyword == "contains":
            sub = compile_schema(value, format_checker)
            tests.append(lambda v, sub=sub: not isinstance(v, list) or any(sub(x) for x in v))
        else:
            raise UnsupportedSchema(f"keyword {keyword!r}")
    return _all_of(tests)


def _all_of(tests: list[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]

    def test(v: Any) -> bool:
        for t in tests:
            if not t(v):
                return False
        return True
    return test


def _any_of(tests: list[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]

    def test(v: Any) -> bool:
        for t in tests:
            if t(v):
                return True
        return False
    return test


def _properties(props: dict[str, Test]) -> Test:
    def test(v: Any) -> bool:
        if isinstance(v, dict):
            for name, value in v.items():  # records name fewer fields than the schema knows
                sub = props.get(name)
                if sub is not None and not sub(value):
                    return False
        return True
    return test


def _items(item: Test) -> Test:
    def test(v: Any) -> bool:
        if isinstance(v, list):
            for x in v:
                if not item(x):
                    return False
        return True
    return test
