"""Curriculum spec: YAML validated against the packaged JSON Schema, loaded into typed objects.

Errors name the file, the line and the path of the field (`task_families[2].share: must be > 0`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import jsonschema
import yaml

from curator.errors import CuratorError
from curator.hashing import sha256_json
from curator.redact import has_credentials, redact


class SpecError(CuratorError):
    """A spec that cannot be used; the message names file, line and field path."""


MAX_SPEC_BYTES = 1 << 20  # a spec file larger than this is refused unread
MAX_NODES = 100_000  # YAML nodes after expanding aliases (a "billion laughs" document is refused)
MAX_DEPTH = 64  # nesting of mappings and sequences


def load_schema(name: str) -> dict:
    """A JSON Schema shipped in `curator/schemas/` (`spec` or `pair`)."""
    return json.loads(resources.files("curator").joinpath("schemas", f"{name}.schema.json").read_text())


SPEC_SCHEMA = load_schema("spec")


def _frozen(value: Any) -> Any:
    """A schema default as a frozen dataclass holds it: lists as tuples, mappings as tuples of pairs."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _frozen(v)) for k, v in value.items())
    return value


def schema_defaults(*where: str) -> Callable[[type], type]:
    """Class decorator, under `@dataclass`: each field takes the `default` the spec schema gives it at
    `where` (property names; "[]" steps into an array's items). The schema is the one place spec
    defaults are written: the loader, the dataclasses and editors (through the schema) read them there."""
    node = SPEC_SCHEMA
    for key in where:
        node = node["items"] if key == "[]" else node["properties"][key]

    def apply(cls: type) -> type:
        for name in cls.__annotations__:
            prop = node["properties"].get(name, {})
            if "default" in prop and name not in vars(cls):
                setattr(cls, name, _frozen(prop["default"]))
        return cls
    return apply


@dataclass(frozen=True)
@schema_defaults("teacher", "sampling")
class Sampling:
    temperature: float
    top_p: float
    max_tokens: int
    seed: int

    def as_dict(self) -> dict:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens, "seed": self.seed}


@dataclass(frozen=True)
@schema_defaults("teacher")
class Teacher:
    model: str
    base_url: str | None
    api_key_env: str
    mode: str
    max_in_flight: int
    max_attempts: int
    timeout_s: float
    requests_per_minute: float | None  # None: no limit of ours (the provider's 429s are still honoured)
    tokens_per_minute: float | None
    workers: int | str  # processes sending requests (curator/generate/workers.py); auto: by max_in_flight
    sampling: Sampling = field(default_factory=Sampling)
    structured_output: str  # off | json_schema (OpenAI style) | json_object (llama-cpp-python style)
    batch: bool  # requests go through the OpenAI Batch API
    batch_poll_s: float


@dataclass(frozen=True)
class LengthBand:
    name: str
    min_words: int
    max_words: int


@dataclass(frozen=True)
@schema_defaults("formats", "[]")
class Format:
    name: str
    kind: str
    description: str
    json_schema: dict | None
    labels: tuple[str, ...]


@dataclass(frozen=True)
@schema_defaults("task_families", "[]", "seeds", "[]")
class Seed:
    instruction: str
    output: str
    input: str
    format: str | None
    difficulty: str | None
    lookalike: bool  # in a refusal family: a benign request that sounds risky, answered normally


@dataclass(frozen=True)
@schema_defaults("task_families", "[]")
class TaskFamily:
    name: str
    share: float
    description: str
    formats: tuple[str, ...]
    difficulties: tuple[str, ...]
    length_band: str
    refusal: bool
    seeds: tuple[Seed, ...]


@dataclass(frozen=True)
@schema_defaults("response_standards")
class ResponseStandards:
    tone: str
    format_rules: tuple[str, ...]
    system_prompt: str


@dataclass(frozen=True)
@schema_defaults("refusal_policy")
class RefusalPolicy:
    refuse: tuple[str, ...]
    style: str
    example_refusal: str
    max_share: float
    lookalike_share: float  # of a refusal family's slots: benign look-alikes answered normally
    min_category_share: float  # each refusal family (a category) must hold this share of refusals
    min_lookalike_share: float  # ... and this share of answered look-alikes
    min_lookalikes_per_refusal: float  # ... and this many answered look-alikes per refusal (over-refusal guard)


STRATEGIES = ("self_instruct", "respond", "evol", "evol:deepen", "evol:widen")


@dataclass(frozen=True)
@schema_defaults("generation")
class GenerationConfig:
    strategy: str  # one of STRATEGIES
    source_run: str | None  # run directory whose pairs respond / evol start from (evol: seeds when None)
    strategies: tuple[tuple[str, float], ...]  # a weighted mix (strategy, share) instead of `strategy`


def mix_problems(mix: dict[str, float]) -> list[tuple[str | None, str]]:
    """What is wrong with a strategy mix, as (strategy or None for the whole mix, message)."""
    problems: list[tuple[str | None, str]] = []
    for name, share in mix.items():
        if name not in STRATEGIES:
            problems.append((name, f"unknown strategy; known: {', '.join(STRATEGIES)}"))
        elif not 0 < share <= 1:
            problems.append((name, "share must be > 0 and <= 1"))
    if "evol" in mix and ({"evol:deepen", "evol:widen"} & set(mix)):
        problems.append((None, "evol already holds evol:deepen and evol:widen; list either evol or those"))
    total = sum(mix.values())
    if abs(total - 1.0) > 1e-6:
        problems.append((None, f"shares must sum to 1 (they sum to {total:g})"))
    return problems


@dataclass(frozen=True)
@schema_defaults("gate", "minhash")
class MinHashConfig:
    """Near dedup (`gate.minhash`): within the gated rows and, with `against_releases`, against earlier releases."""

    enabled: bool
    threshold: float  # exact word n-gram Jaccard a pair needs
    num_perm: int
    ngram: int  # word n-grams
    char_ngram: int | None  # also compare character n-grams of this length (None: off)
    char_threshold: float  # exact character n-gram Jaccard a pair needs
    response_threshold: float | None  # template guard: Jaccard of the responses' word sets (None: off)
    against_releases: bool  # reject duplicates of rows in earlier certified releases

    def kinds(self) -> list[tuple[str, int, float]]:
        """(kind, n, threshold) for each enabled shingle kind."""
        out = [("word", self.ngram, self.threshold)]
        if self.char_ngram:
            out.append(("char", self.char_ngram, self.char_threshold))
        return out


@dataclass(frozen=True)
@schema_defaults("gate", "content_defects")
class ContentDefectsConfig:
    enabled: bool
    language: str | None  # expected response language; None skips the language check


@dataclass(frozen=True)
@schema_defaults("gate", "pii")
class PIIConfig:
    enabled: bool
    action: str  # reject | redact
    kinds: tuple[str, ...]


@dataclass(frozen=True)
@schema_defaults("gate", "decontamination")
class DecontaminationConfig:
    enabled: bool
    ngram: int
    eval_files: tuple[str, ...]  # JSONL evaluation sets, relative to the spec's directory
    shipped_suites: bool  # also the evaluation suites shipped with the project (trainer/suites)
    check_response: bool
    boilerplate_rows: int  # an eval n-gram in this many rows or more is template text, ignored


@dataclass(frozen=True)
@schema_defaults("gate", "semantic_dedup")
class SemanticDedupConfig:
    enabled: bool
    backend: str  # minilm | model2vec
    threshold: float
    verify: bool  # model2vec candidates re-scored by the full MiniLM before they count
    candidate_threshold: float | None  # model2vec cosine making a pair a candidate for verification
    boilerplate_min_rows: int  # lines found in this many rows are left out of the embedded text (0: none)
    approximate_above: int  # rows past which the search uses a faiss IVF index

    @property
    def candidate_at(self) -> float:
        """The candidate threshold; by default 0.03 under the threshold."""
        return self.candidate_threshold if self.candidate_threshold is not None else round(max(0.0, self.threshold - 0.03), 4)


@dataclass(frozen=True)
@schema_defaults("gate", "screening")
class ScreeningConfig:
    enabled: bool
    skew_tolerance: float  # largest allowed ratio between paired demographic term counts
    min_terms: int  # fewer mentions than this in a pair of groups: no skew verdict
    reject_counterfactual_flips: bool
    reject_unexpected_refusals: bool


@dataclass(frozen=True)
@schema_defaults("gate", "human_review")
class HumanReviewConfig:
    ledger: str | None  # review ledger (JSONL) the gate obeys, relative to the spec's directory
    protect_from: tuple[str, ...]  # checks whose rejection a person's accept overrides
    reasons: tuple[str, ...]  # the reject reasons a reviewer picks from (plus free text)


REVIEW_REASONS: tuple[str, ...] = HumanReviewConfig.reasons  # the schema's default


@dataclass(frozen=True)
@schema_defaults("gate", "arithmetic")  # arithmetic, code_syntax, constraints and refusal_policy: all on by default
class Toggle:
    enabled: bool


@dataclass(frozen=True)
@schema_defaults("gate", "labels")
class LabelsConfig:
    enabled: bool
    max_words: int  # a response this short is a label answer, whatever its format


@dataclass(frozen=True)
@schema_defaults("gate", "grounding")
class GroundingConfig:
    enabled: bool
    extract_families: tuple[str, ...] | None  # None: families named extract*
    summary_families: tuple[str, ...] | None  # None: families whose name holds "summar"
    rewrite_families: tuple[str, ...] | None  # None: rewrite / paraphrase / rephrase / simplify


@dataclass(frozen=True)
@schema_defaults("gate", "relevance")
class RelevanceConfig:
    enabled: bool | str  # auto: on where the gate extra (model2vec) is installed
    threshold: float  # relative score (z) under which a response answers another question
    min_words: int  # shorter responses (labels, numbers) carry too little to compare
    reference_rows: int  # other rows each pair is compared with
    min_reference: int  # fewer scorable rows: raw cosine against fallback_cosine instead
    fallback_cosine: float


@dataclass(frozen=True)
@schema_defaults("gate", "selection")
class SelectionConfig:
    top_share: float | None  # keep this best-scored share of each curriculum cell
    top_n: int | None  # keep at most this many best-scored rows of each curriculum cell
    max_tokens: int | None  # keep the best rows up to this many tokens, shared over families by their share
    max_tokens_per_cell: int | None  # keep the best rows of each cell up to this many tokens


@dataclass(frozen=True)
@schema_defaults("gate", "judge")
class JudgeConfig:
    """The LLM judge (curator/gate/checks/judge.py): scores each pair 1-10 against the spec's rubric."""

    enabled: bool
    base_url: str | None  # None: the embedded llama.cpp server serving `model`
    model: str
    api_key_env: str
    mode: str  # completion (a GBNF grammar forces the verdict's shape) | chat
    threshold: float  # rows scored below it are rejected
    max_tokens: int
    max_in_flight: int
    requests_per_minute: float | None
    tokens_per_minute: float | None
    families: tuple[str, ...]  # task families to judge; empty: all
    cache: str | None  # response cache file; None: <cache dir>/teacher-responses.sqlite


@dataclass(frozen=True)
@schema_defaults("gate", "self_consistency")
class SelfConsistencyConfig:
    """Self-consistency (curator/gate/checks/self_consistency.py): the teacher answers again `samples` times."""

    enabled: bool
    samples: int
    families: tuple[str, ...] | None  # None: families with a label or json format, or named reason/classify/extract
    cache: str | None  # response cache file; None: <cache dir>/teacher-responses.sqlite


@dataclass(frozen=True)
@schema_defaults("gate", "reward_model")
class RewardModelConfig:
    """A local reward model (curator/gate/checks/reward_model.py): a Hugging Face sequence-classification directory."""

    enabled: bool
    path: str | None  # the model directory, relative to the spec's directory
    threshold: float | None  # rows scored below it are rejected; None: score only
    batch_size: int
    max_length: int


@dataclass(frozen=True)
@schema_defaults("gate")
class GateConfig:
    exact_dedup: bool
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    content_defects: ContentDefectsConfig = field(default_factory=ContentDefectsConfig)
    pii: PIIConfig = field(default_factory=PIIConfig)
    decontamination: DecontaminationConfig = field(default_factory=DecontaminationConfig)
    semantic_dedup: SemanticDedupConfig = field(default_factory=SemanticDedupConfig)
    screening: ScreeningConfig = field(default_factory=ScreeningConfig)
    arithmetic: Toggle = field(default_factory=Toggle)
    code_syntax: Toggle = field(default_factory=Toggle)
    constraints: Toggle = field(default_factory=Toggle)
    refusal_policy: Toggle = field(default_factory=Toggle)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    relevance: RelevanceConfig = field(default_factory=RelevanceConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    self_consistency: SelfConsistencyConfig = field(default_factory=SelfConsistencyConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    plugins: tuple[tuple[str, dict], ...]  # (entry point name, params) of plug-in checks, in order
    human_review: HumanReviewConfig = field(default_factory=HumanReviewConfig)
    eval_fraction: float
    min_train_rows: int
    max_reject_share: float
    mix_tolerance: float
    length_mostly: float


@dataclass(frozen=True)
class Spec:
    name: str
    description: str
    target_pairs: int
    difficulty_levels: tuple[str, ...]
    length_bands: tuple[LengthBand, ...]
    formats: tuple[Format, ...]
    task_families: tuple[TaskFamily, ...]
    response_standards: ResponseStandards
    refusal_policy: RefusalPolicy
    teacher: Teacher
    gate: GateConfig
    path: str
    hash: str
    raw: dict = field(repr=False, compare=False)
    generation: GenerationConfig = field(default_factory=GenerationConfig)

    def format(self, name: str) -> Format:
        return next(f for f in self.formats if f.name == name)

    def family(self, name: str) -> TaskFamily:
        return next(t for t in self.task_families if t.name == name)

    def band(self, name: str) -> LengthBand:
        return next(b for b in self.length_bands if b.name == name)


def _line_index(text: str) -> dict[tuple, int]:
    """Map each YAML node's path (tuple of keys and indices) to its 1-based line."""
    lines: dict[tuple, int] = {}

    def walk(node: yaml.Node, path: tuple) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                walk(v, path + (k.value,))
                lines[path + (k.value,)] = k.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, path + (i,))

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return lines


def _bounded_shape(root: yaml.Node | None) -> str | None:
    """Why a composed YAML document is too big to expand (aliases) or too deep; None when it is fine.

    Sizes are counted once per distinct node (aliases share nodes), so a document that would expand to
    billions of nodes is measured in the time of its text."""
    if root is None:
        return None
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, children_done = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels (line {node.start_mark.line + 1})"
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        if children_done or not children:
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(node)] > MAX_NODES:
                return f"expands to more than {MAX_NODES} YAML nodes (aliases?) (line {node.start_mark.line + 1})"
            continue
        if id(node) in sizes:
            continue
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)
    return None


def _non_finite(doc: Any, path: tuple = ()) -> tuple | None:
    """The path of the first NaN or infinite number in a parsed document, or None."""
    stack = [(doc, path)]
    while stack:
        value, at = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return at
        if isinstance(value, dict):
            stack.extend((v, at + (k,)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, at + (i,)) for i, v in enumerate(value))
    return None


def _fmt_path(path: tuple | list) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _message(err: jsonschema.ValidationError) -> str:
    v = err.validator
    if v == "exclusiveMinimum":
        return f"must be > {err.validator_value}"
    if v == "minimum":
        return f"must be >= {err.validator_value}"
    if v == "maximum":
        return f"must be <= {err.validator_value}"
    if v == "exclusiveMaximum":
        return f"must be < {err.validator_value}"
    if v == "required":
        return err.message.replace("is a required property", "is required")
    if v == "additionalProperties":
        return err.message.replace("Additional properties are not allowed", "unknown field(s)")
    if v == "enum":
        return f"must be one of {err.validator_value}"
    if v == "anyOf":
        return "must be " + " or ".join(_kind(option) for option in err.validator_value)
    return err.message


def _kind(schema: dict) -> str:
    """`an integer >= 1`, `'auto'`: one alternative of an anyOf, for an error message."""
    if "const" in schema:
        return repr(schema["const"])
    kind = schema.get("type", "value")
    text = f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"
    return text + (f" >= {schema['minimum']}" if "minimum" in schema else "")


def _error(path: Path, lines: dict[tuple, int], field_path: tuple, msg: str) -> SpecError:
    line = None
    probe = tuple(field_path)
    while line is None and probe is not None:
        line = lines.get(probe)
        probe = probe[:-1] if probe else None
    where = f"{path}:{line}" if line else str(path)
    return SpecError(f"{where}: {_fmt_path(field_path)}: {msg}")


def _cross_checks(doc: dict) -> list[tuple[tuple, str]]:
    """Checks a JSON Schema cannot express: references between sections, shares summing to 1."""
    problems: list[tuple[tuple, str]] = []
    formats = {f["name"] for f in doc["formats"]}
    bands = {b["name"] for b in doc["length_bands"]}
    levels = set(doc["difficulty_levels"])
    for i, b in enumerate(doc["length_bands"]):
        if b["min_words"] > b["max_words"]:
            problems.append((("length_bands", i, "min_words"), "must be <= max_words"))
    for i, f in enumerate(doc["formats"]):
        if f["kind"] == "json" and "json_schema" not in f:
            problems.append((("formats", i), "a json format needs json_schema"))
        if f["kind"] == "label" and "labels" not in f:
            problems.append((("formats", i), "a label format needs labels"))
        if "json_schema" in f:
            try:
                jsonschema.Draft202012Validator.check_schema(f["json_schema"])
            except jsonschema.SchemaError as e:
                problems.append((("formats", i, "json_schema"), f"not a valid JSON Schema: {e.message}"))
    names = [t["name"] for t in doc["task_families"]]
    for i, t in enumerate(doc["task_families"]):
        if names.count(t["name"]) > 1:
            problems.append((("task_families", i, "name"), f"duplicate task family {t['name']!r}"))
        for j, f in enumerate(t["formats"]):
            if f not in formats:
                problems.append((("task_families", i, "formats", j), f"unknown format {f!r}; known: {sorted(formats)}"))
        for j, d in enumerate(t.get("difficulties", [])):
            if d not in levels:
                problems.append((("task_families", i, "difficulties", j), f"unknown difficulty {d!r}"))
        if t.get("length_band") is not None and t["length_band"] not in bands:
            problems.append((("task_families", i, "length_band"), f"unknown length band {t['length_band']!r}"))
        for j, s in enumerate(t.get("seeds", [])):
            if s.get("format") is not None and s["format"] not in t["formats"]:
                problems.append((("task_families", i, "seeds", j, "format"), f"format {s['format']!r} is not one of this family's formats"))
            if s.get("difficulty") is not None and s["difficulty"] not in levels:
                problems.append((("task_families", i, "seeds", j, "difficulty"), f"unknown difficulty {s['difficulty']!r}"))
    base_url = doc.get("teacher", {}).get("base_url")
    if isinstance(base_url, str) and has_credentials(base_url):
        problems.append((("teacher", "base_url"), f"{redact(base_url)} holds credentials (user:password@); put the key "
                         "in the environment variable named by teacher.api_key_env (nothing is written with it)"))
    semantic = doc.get("gate", {}).get("semantic_dedup", {})
    if semantic.get("candidate_threshold", 0) > semantic.get("threshold", 0.95):
        problems.append((("gate", "semantic_dedup", "candidate_threshold"), "must be <= threshold"))
    for check in ("judge", "self_consistency"):
        for j, name in enumerate(doc.get("gate", {}).get(check, {}).get("families") or ()):
            if name not in names:
                problems.append((("gate", check, "families", j), f"unknown task family {name!r}"))
    reward = doc.get("gate", {}).get("reward_model", {})
    if reward.get("enabled") and not reward.get("path"):
        problems.append((("gate", "reward_model"), "an enabled reward model needs path (a model directory)"))
    total = sum(t["share"] for t in doc["task_families"])
    if abs(total - 1.0) > 1e-6:
        problems.append((("task_families",), f"shares must sum to 1 (they sum to {total:g})"))
    generation = doc.get("generation", {})
    if "strategies" in generation:
        at = ("generation", "strategies")
        if "strategy" in generation:
            problems.append((at, "give either strategy or strategies, not both"))
        problems.extend((at + ((name,) if name else ()), msg) for name, msg in mix_problems(generation["strategies"]))
    return problems


def load_spec(path: str | Path) -> Spec:
    """Read, validate and type a curriculum spec; raise SpecError naming file, line and field."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        raise SpecError(f"{path}: cannot read spec: {e.strerror or e}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: larger than {MAX_SPEC_BYTES} bytes; not a curriculum spec")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise SpecError(f"{path}:{line}: not valid UTF-8 (byte {e.start})") from None
    try:
        too_big = _bounded_shape(yaml.compose(text, Loader=yaml.SafeLoader))
        if too_big:
            raise SpecError(f"{path}: {too_big}")
        doc = yaml.safe_load(text)
        lines = _line_index(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        position = getattr(e, "position", None)  # a reader error: a character YAML does not allow
        line = mark.line + 1 if mark else text.count("\n", 0, position) + 1 if position is not None else None
        where = f"{path}:{line}" if line else str(path)
        problem = " ".join(str(getattr(e, "problem", None) or getattr(e, "reason", None) or e).split())
        raise SpecError(f"{where}: not valid YAML: {problem}") from None
    except RecursionError:
        raise SpecError(f"{path}: nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(doc, dict):
        raise SpecError(f"{path}: a spec is a YAML mapping at the top level")
    if (at := _non_finite(doc)) is not None:
        raise _error(path, lines, at, "must be a finite number (not .nan or .inf)")
    validator = jsonschema.Draft202012Validator(load_schema("spec"))
    errors = sorted(validator.iter_errors(doc), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        e = errors[0]
        raise _error(path, lines, tuple(e.absolute_path), _message(e))
    problems = _cross_checks(doc)
    if problems:
        field_path, msg = problems[0]
        raise _error(path, lines, field_path, msg)
    return spec_from_dict(doc, path)


def _schema_default(name: str) -> Any:
    """The schema's default of a top-level spec field."""
    return SPEC_SCHEMA["properties"][name]["default"]


def _relative_to(spec_path: Path, name: str | None) -> str | None:
    """A path named in the spec, resolved against the spec's directory (None stays None)."""
    return None if name is None else str((spec_path.parent / name).resolve())


def _typed(cls: type, values: dict[str, Any], **computed: Any) -> Any:
    """`cls` from a spec section: lists become tuples; absent fields take the schema's default (`schema_defaults`)."""
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()} | computed)


def spec_from_dict(doc: dict[str, Any], path: Path) -> Spec:
    """Typed spec from an already validated document (e.g. the copy a release manifest keeps)."""
    levels = tuple(doc["difficulty_levels"])
    bands = tuple(LengthBand(**b) for b in doc["length_bands"])
    formats = tuple(_typed(Format, f) for f in doc["formats"])
    families = tuple(
        _typed(TaskFamily, t, share=float(t["share"]), difficulties=tuple(t.get("difficulties") or levels),
               length_band=t.get("length_band") or bands[0].name,
               seeds=tuple(_typed(Seed, s) for s in t.get("seeds") or ()))
        for t in doc["task_families"]
    )
    rp = doc.get("refusal_policy") or {}
    te = doc.get("teacher") or {}
    ge = doc.get("generation") or {}
    ga = dict(doc.get("gate") or {})
    sections = {"minhash": MinHashConfig, "content_defects": ContentDefectsConfig, "pii": PIIConfig,
                "semantic_dedup": SemanticDedupConfig, "screening": ScreeningConfig, "arithmetic": Toggle,
                "code_syntax": Toggle, "constraints": Toggle, "refusal_policy": Toggle, "labels": LabelsConfig,
                "grounding": GroundingConfig, "relevance": RelevanceConfig, "selection": SelectionConfig}
    for name, cls in sections.items():
        ga[name] = _typed(cls, ga.get(name) or {})
    deco = ga.get("decontamination") or {}
    ga["decontamination"] = _typed(DecontaminationConfig, deco, **(
        {"eval_files": tuple(str((path.parent / f).resolve()) for f in deco["eval_files"])} if "eval_files" in deco else {}))
    judge = ga.get("judge") or {}
    ga["judge"] = _typed(JudgeConfig, judge, cache=_relative_to(path, judge.get("cache")))
    consistency = ga.get("self_consistency") or {}
    ga["self_consistency"] = _typed(SelfConsistencyConfig, consistency, cache=_relative_to(path, consistency.get("cache")))
    reward = ga.get("reward_model") or {}
    ga["reward_model"] = _typed(RewardModelConfig, reward, path=_relative_to(path, reward.get("path")))
    ga["plugins"] = tuple((name, dict(params or {})) for name, params in (ga.get("plugins") or {}).items())
    review = ga.get("human_review") or {}
    ga["human_review"] = _typed(HumanReviewConfig, review, ledger=_relative_to(path, review.get("ledger") or None))
    return Spec(
        name=doc["name"],
        description=doc.get("description", _schema_default("description")),
        target_pairs=int(doc.get("target_pairs", _schema_default("target_pairs"))),
        difficulty_levels=levels,
        length_bands=bands,
        formats=formats,
        task_families=families,
        response_standards=_typed(ResponseStandards, doc.get("response_standards") or {}),
        refusal_policy=_typed(RefusalPolicy, rp, **{k: float(rp[k]) for k in
                                                    ("max_share", "lookalike_share", "min_category_share",
                                                     "min_lookalike_share", "min_lookalikes_per_refusal") if k in rp}),
        teacher=_typed(Teacher, te, sampling=_typed(Sampling, te.get("sampling") or {})),
        gate=GateConfig(**ga),
        path=str(path),
        hash=sha256_json(doc),
        raw=doc,
        generation=_typed(GenerationConfig, ge,
                          strategies=tuple((name, float(share)) for name, share in (ge.get("strategies") or {}).items()),
                          source_run=_relative_to(path, ge.get("source_run") or None)),
    )
