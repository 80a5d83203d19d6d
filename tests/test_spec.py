"""The curriculum spec: the shipped specs load; bad specs are refused naming file, line and field."""
from pathlib import Path

import pytest
import yaml

from curator.cli import main
from curator.spec import SpecError, load_schema, load_spec

ROOT = Path(__file__).resolve().parents[1]
STARTER = ROOT / "specs" / "starter.yaml"


def _write_variant(tmp_path: Path, mutate) -> Path:
    doc = yaml.safe_load(STARTER.read_text())
    mutate(doc)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_starter_spec_loads_into_typed_objects():
    spec = load_spec(STARTER)
    names = [t.name for t in spec.task_families]
    assert {"summarize", "classify", "extract", "rewrite", "reason", "refuse"} <= set(names)
    assert abs(sum(t.share for t in spec.task_families) - 1) < 1e-9
    assert spec.family("refuse").refusal and spec.refusal_policy.refuse
    assert spec.format("json_entities").json_schema["required"] == ["names"]
    assert spec.family("classify").length_band == "short"
    assert spec.teacher.base_url is None and spec.teacher.mode == "completion"
    assert len(spec.hash) == 64


def test_spec_hash_follows_content(tmp_path):
    same = _write_variant(tmp_path, lambda d: None)
    assert load_spec(same).hash == load_spec(STARTER).hash
    changed = _write_variant(tmp_path, lambda d: d.__setitem__("target_pairs", 99))
    assert load_spec(changed).hash != load_spec(STARTER).hash


def test_zero_share_names_file_line_and_field(tmp_path):
    path = _write_variant(tmp_path, lambda d: d["task_families"][2].__setitem__("share", 0))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:")
    assert "task_families[2].share: must be > 0" in msg
    line = int(msg.split(":")[1])
    assert "share" in path.read_text().splitlines()[line - 1]


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["task_families"][0]["formats"].append("haiku"), "task_families[0].formats[2]: unknown format 'haiku'"),
        (lambda d: d["task_families"][1].__setitem__("share", 0.5), "task_families: shares must sum to 1"),
        (lambda d: d["teacher"].__setitem__("mode", "telepathy"), "teacher.mode: must be one of"),
        (lambda d: d.__setitem__("colour", "blue"), "(top level): unknown field(s)"),
        (lambda d: d["length_bands"][0].__setitem__("min_words", 500), "length_bands[0].min_words: must be <= max_words"),
        (lambda d: d["formats"][3].__setitem__("json_schema", {"type": "nonsense"}), "formats[3].json_schema: not a valid JSON Schema"),
        (lambda d: d["teacher"].__setitem__("requests_per_minute", 0), "teacher.requests_per_minute: must be > 0"),
        (lambda d: d["teacher"].__setitem__("workers", "many"), "teacher.workers: must be an integer >= 1 or 'auto'"),
    ],
)
def test_bad_specs_are_refused_with_the_field_path(tmp_path, mutate, expected):
    with pytest.raises(SpecError, match=None) as err:
        load_spec(_write_variant(tmp_path, mutate))
    assert expected in str(err.value)


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\ntask_families: [\n  - {name: a\n")
    with pytest.raises(SpecError, match=rf"{broken}:\d+: not valid YAML"):
        load_spec(broken)


def test_cli_prints_one_line_not_a_traceback(tmp_path, capsys):
    path = _write_variant(tmp_path, lambda d: d["task_families"][2].__setitem__("share", -1))
    assert main(["generate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "task_families[2].share: must be > 0" in err
    assert "Traceback" not in err


def test_schemas_are_draft_2020_12():
    import jsonschema

    for name in ("spec", "pair"):
        schema = load_schema(name)
        assert schema["$schema"].endswith("2020-12/schema")
        jsonschema.Draft202012Validator.check_schema(schema)
