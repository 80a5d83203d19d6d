"""`curator.jsonl.loads`: orjson's speed with the standard library's results."""
import json

import pytest

from curator.jsonl import loads

CASES = ['{"n": 123456789012345678901234567890}', '{"n": -98765432109876543210}', '{"n": 9223372036854775807}',
         '{"n": 18446744073709551616}', '{"x": 1.5, "s": "caf\u00e9", "l": [1, 2, null]}', '{"n": NaN}',
         r'{"s": "\ud800"}', "[1, 2]", '{"a": [1, {"b": [123456789012345678901234]}]}', "[-9223372036854775809]",
         "[1e300, 2.5e19, 100000.0]", "12345678901234567890123"]


@pytest.mark.parametrize("text", CASES)
def test_loads_reads_what_json_reads(text):
    expected = json.loads(text)
    for given in (text, text.encode()):
        got = loads(given)
        assert repr(got) == repr(expected)  # repr: NaN, and int vs float, compare exactly


def test_loads_raises_what_json_raises():
    with pytest.raises(json.JSONDecodeError):
        loads('{"a": ')
