"""Curriculum spec: YAML validated against the packaged JSON Schema, loaded into typed objects.

Errors name the file, the line and the path of the field (`task_families[2].share: must be > 0`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int = 0

    def as_dict(self) -> dict:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens, "seed": self.seed}


@dataclass(frozen=True)
class Teacher:
    model: str = "gemma-3-270m"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    mode: str = "completion"
    max_in_flight: int = 1
    max_attempts: int = 4
    timeout_s: float = 120.0
    requests_per_minute: float | None = None  # None: no limit of ours (the provider's 429s are still honoured)
    tokens_per_minute: float | None = None
    workers: int | str = "auto"  # processes sending requests (curator/generate/workers.py); auto: by max_in_flight
    sampling: Sampling = field(default_factory=Sampling)
    structured_output: str = "off"  # off | json_schema (OpenAI style) | json_object (llama-cpp-python style)
    batch: bool = False  # requests go through the OpenAI Batch API
    batch_poll_s: float = 30.0


@dataclass(frozen=True)
class LengthBand:
    name: str
    min_words: int
    max_words: int


@dataclass(frozen=True)
class Format:
    name: str
    kind: str
    description: str = ""
    json_schema: dict | None = None
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Seed:
    instruction: str
    output: str
    input: str = ""
    format: str | None = None
    difficulty: str | None = None
    lookalike: bool = False  # in a refusal family: a benign request that sounds risky, answered normally


@dataclass(frozen=True)
class TaskFamily:
    name: str
    share: float
    description: str
    formats: tuple[str, ...]
    difficulties: tuple[str, ...]
    length_band: str
    refusal: bool = False
    seeds: tuple[Seed, ...] = ()


@dataclass(frozen=True)
class ResponseStandards:
    tone: str = ""
    format_rules: tuple[str, ...] = ()
    system_prompt: str = ""


@dataclass(frozen=True)
class RefusalPolicy:
    refuse: tuple[str, ...] = ()
    style: str = ""
    example_refusal: str = ""
    max_share: float = 0.2
    lookalike_share: float = 0.0  # of a refusal family's slots: benign look-alikes answered normally
    min_category_share: float = 0.0  # each refusal family (a category) must hold this share of refusals
    min_lookalike_share: float = 0.0  # ... and this share of answered look-alikes


STRATEGIES = ("self_instruct", "respond", "evol", "evol:deepen", "evol:widen")


@dataclass(frozen=True)
class GenerationConfig:
    strategy: str = "self_instruct"  # one of STRATEGIES
    source_run: str | None = None  # run directory whose pairs respond / evol start from (evol: seeds when None)
    strategies: tuple[tuple[str, float], ...] = ()  # a weighted mix (strategy, share) instead of `strategy`


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
class MinHashConfig:
    enabled: bool = True
    threshold: float = 0.8
    num_perm: int = 128
    ngram: int = 5
    char_ngram: int | None = None
    char_threshold: float = 0.8
    response_threshold: float | None = 0.5
    against_releases: bool = True


@dataclass(frozen=True)
class ContentDefectsConfig:
    enabled: bool = True
    language: str | None = "en"  # expected response language; None skips the language check


@dataclass(frozen=True)
class PIIConfig:
    enabled: bool = True
    action: str = "reject"  # reject | redact
    kinds: tuple[str, ...] = ("email", "phone", "credit_card", "national_id", "ip_address")


@dataclass(frozen=True)
class DecontaminationConfig:
    enabled: bool = True
    ngram: int = 13
    eval_files: tuple[str, ...] = ()  # JSONL evaluation sets, relative to the spec's directory
    check_response: bool = True
    boilerplate_rows: int = 50  # an eval n-gram in this many rows or more is template text, ignored


@dataclass(frozen=True)
class SemanticDedupConfig:
    enabled: bool = False
    backend: str = "model2vec"  # minilm | model2vec
    threshold: float = 0.95
    verify: bool = True  # model2vec candidates re-scored by the full MiniLM before they count
    candidate_threshold: float | None = None  # model2vec cosine making a pair a candidate for verification
    boilerplate_min_rows: int = 20  # lines found in this many rows are left out of the embedded text (0: none)

    @property
    def candidate_at(self) -> float:
        """The candidate threshold; by default 0.03 under the threshold."""
        return self.candidate_threshold if self.candidate_threshold is not None else round(max(0.0, self.threshold - 0.03), 4)
    approximate_above: int = 100000  # rows past which the search uses a faiss IVF index


@dataclass(frozen=True)
class ScreeningConfig:
    enabled: bool = True
    skew_tolerance: float = 3.0  # largest allowed ratio between paired demographic term counts
    min_terms: int = 20  # fewer mentions than this in a pair of groups: no skew verdict
    reject_counterfactual_flips: bool = False
    reject_unexpected_refusals: bool = False


REVIEW_REASONS = ("wrong or unsupported answer", "does not follow the instruction", "unsafe or should be refused",
                  "format broken", "unhelpful or low quality", "other")


@dataclass(frozen=True)
class HumanReviewConfig:
    ledger: str | None = None  # review ledger (JSONL) the gate obeys, relative to the spec's directory
    protect_from: tuple[str, ...] = ()  # checks whose rejection a person's accept overrides
    reasons: tuple[str, ...] = REVIEW_REASONS  # the reject reasons a reviewer picks from (plus free text)


@dataclass(frozen=True)
class Toggle:
    enabled: bool = True


@dataclass(frozen=True)
class LabelsConfig:
    enabled: bool = True
    max_words: int = 3  # a response this short is a label answer, whatever its format


@dataclass(frozen=True)
class GroundingConfig:
    enabled: bool = True
    extract_families: tuple[str, ...] | None = None  # None: families named extract*
    summary_families: tuple[str, ...] | None = None  # None: families whose name holds "summar"
    rewrite_families: tuple[str, ...] | None = None  # None: rewrite / paraphrase / rephrase / simplify


@dataclass(frozen=True)
class RelevanceConfig:
    enabled: bool | str = "auto"  # auto: on where the gate extra (model2vec) is installed
    threshold: float = 0.85  # relative score (z) under which a response answers another question
    min_words: int = 8  # shorter responses (labels, numbers) carry too little to compare
    reference_rows: int = 512  # other rows each pair is compared with
    min_reference: int = 64  # fewer scorable rows: raw cosine against fallback_cosine instead
    fallback_cosine: float = 0.2


@dataclass(frozen=True)
class SelectionConfig:
    top_share: float | None = None  # keep this best-scored share of each curriculum cell
    top_n: int | None = None  # keep at most this many best-scored rows of each curriculum cell
    max_tokens: int | None = None  # keep the best rows up to this many tokens, shared over families by their share
    max_tokens_per_cell: int | None = None  # keep the best rows of each cell up to this many tokens


@dataclass(frozen=True)
class JudgeConfig:
    """The LLM judge (curator/gate/checks/judge.py): scores each pair 1-10 against the spec's rubric."""

    enabled: bool = False
    base_url: str | None = None  # None: the embedded llama.cpp server serving `model`
    model: str = "gemma-3-270m"
    api_key_env: str = "OPENAI_API_KEY"
    mode: str = "completion"  # completion (a GBNF grammar forces the verdict's shape) | chat
    threshold: float = 5.0  # rows scored below it are rejected
    max_tokens: int = 96
    max_in_flight: int = 1
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    families: tuple[str, ...] = ()  # task families to judge; empty: all
    cache: str | None = None  # response cache file; None: <cache dir>/teacher-responses.sqlite


@dataclass(frozen=True)
class SelfConsistencyConfig:
    """Self-consistency (curator/gate/checks/self_consistency.py): the teacher answers again `samples` times."""

    enabled: bool = False
    samples: int = 3
    families: tuple[str, ...] | None = None  # None: families with a label or json format, or named reason/classify/extract
    cache: str | None = None  # response cache file; None: <cache dir>/teacher-responses.sqlite


@dataclass(frozen=True)
class RewardModelConfig:
    """A local reward model (curator/gate/checks/reward_model.py): a Hugging Face sequence-classification directory."""

    enabled: bool = False
    path: str | None = None  # the model directory, relative to the spec's directory
    threshold: float | None = None  # rows scored below it are rejected; None: score only
    batch_size: int = 16
    max_length: int = 512


@dataclass(frozen=True)
class GateConfig:
    exact_dedup: bool = True
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    content_defects: ContentDefectsConfig = field(default_factory=ContentDefectsConfig)
    pii: PIIConfig = field(default_factory=PIIConfig)
    decontamination: DecontaminationConfig = field(default_factory=DecontaminationConfig)
    semantic_dedup: SemanticDedupConfig = field(default_factory=SemanticDedupConfig)
    screening: ScreeningConfig = field(default_factory=ScreeningConfig)
    arithmetic: Toggle = field(default_factory=Toggle)
    code_syntax: Toggle = field(default_factory=Toggle)
    refusal_policy: Toggle = field(default_factory=Toggle)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    relevance: RelevanceConfig = field(default_factory=RelevanceConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    self_consistency: SelfConsistencyConfig = field(default_factory=SelfConsistencyConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    plugins: tuple[tuple[str, dict], ...] = ()  # (entry point name, params) of plug-in checks, in order
    human_review: HumanReviewConfig = field(default_factory=HumanReviewConfig)
    eval_fraction: float = 0.1
    min_train_rows: int = 1
    max_reject_share: float = 0.9
    mix_tolerance: float = 0.15
    length_mostly: float = 1.0


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


def _relative_to(spec_path: Path, name: str | None) -> str | None:
    """A path named in the spec, resolved against the spec's directory (None stays None)."""
    return None if name is None else str((spec_path.parent / name).resolve())


def spec_from_dict(doc: dict[str, Any], path: Path) -> Spec:
    """Typed spec from an already validated document (e.g. the copy a release manifest keeps)."""
    levels = tuple(doc["difficulty_levels"])
    bands = tuple(LengthBand(**b) for b in doc["length_bands"])
    formats = tuple(
        Format(name=f["name"], kind=f["kind"], description=f.get("description", ""),
               json_schema=f.get("json_schema"), labels=tuple(f.get("labels", ())))
        for f in doc["formats"]
    )
    families = tuple(
        TaskFamily(
            name=t["name"], share=float(t["share"]), description=t["description"],
            formats=tuple(t["formats"]), difficulties=tuple(t.get("difficulties") or levels),
            length_band=t.get("length_band") or bands[0].name, refusal=bool(t.get("refusal", False)),
            seeds=tuple(Seed(**s) for s in t.get("seeds", ())),
        )
        for t in doc["task_families"]
    )
    rs = doc.get("response_standards", {})
    rp = doc.get("refusal_policy", {})
    te = dict(doc.get("teacher", {}))
    te["sampling"] = Sampling(**te.get("sampling", {}))
    ge = doc.get("generation", {})
    ga = dict(doc.get("gate", {}))
    ga["minhash"] = MinHashConfig(**ga.get("minhash", {}))
    ga["content_defects"] = ContentDefectsConfig(**ga.get("content_defects", {}))
    pii = dict(ga.get("pii", {}))
    if "kinds" in pii:
        pii["kinds"] = tuple(pii["kinds"])
    ga["pii"] = PIIConfig(**pii)
    deco = dict(ga.get("decontamination", {}))
    deco["eval_files"] = tuple(str((path.parent / f).resolve()) for f in deco.get("eval_files", ()))
    ga["decontamination"] = DecontaminationConfig(**deco)
    ga["semantic_dedup"] = SemanticDedupConfig(**ga.get("semantic_dedup", {}))
    ga["screening"] = ScreeningConfig(**ga.get("screening", {}))
    for name in ("arithmetic", "code_syntax", "refusal_policy"):
        ga[name] = Toggle(**ga.get(name, {}))
    ga["labels"] = LabelsConfig(**ga.get("labels", {}))
    ga["grounding"] = GroundingConfig(**{k: tuple(v) if isinstance(v, list) else v
                                         for k, v in ga.get("grounding", {}).items()})
    ga["relevance"] = RelevanceConfig(**ga.get("relevance", {}))
    ga["selection"] = SelectionConfig(**ga.get("selection", {}))
    judge = dict(ga.get("judge", {}))
    judge["families"] = tuple(judge.get("families", ()))
    judge["cache"] = _relative_to(path, judge.get("cache"))
    ga["judge"] = JudgeConfig(**judge)
    consistency = dict(ga.get("self_consistency", {}))
    if consistency.get("families") is not None:
        consistency["families"] = tuple(consistency["families"])
    consistency["cache"] = _relative_to(path, consistency.get("cache"))
    ga["self_consistency"] = SelfConsistencyConfig(**consistency)
    reward = dict(ga.get("reward_model", {}))
    reward["path"] = _relative_to(path, reward.get("path"))
    ga["reward_model"] = RewardModelConfig(**reward)
    ga["plugins"] = tuple((name, dict(params or {})) for name, params in ga.get("plugins", {}).items())
    review = dict(ga.get("human_review", {}))
    if review.get("ledger"):
        review["ledger"] = str((path.parent / review["ledger"]).resolve())
    ga["human_review"] = HumanReviewConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in review.items()})
    return Spec(
        name=doc["name"],
        description=doc.get("description", ""),
        target_pairs=int(doc.get("target_pairs", 60)),
        difficulty_levels=levels,
        length_bands=bands,
        formats=formats,
        task_families=families,
        response_standards=ResponseStandards(
            tone=rs.get("tone", ""), format_rules=tuple(rs.get("format_rules", ())), system_prompt=rs.get("system_prompt", "")
        ),
        refusal_policy=RefusalPolicy(
            refuse=tuple(rp.get("refuse", ())), style=rp.get("style", ""),
            example_refusal=rp.get("example_refusal", ""), max_share=float(rp.get("max_share", 0.2)),
            lookalike_share=float(rp.get("lookalike_share", 0.0)),
            min_category_share=float(rp.get("min_category_share", 0.0)),
            min_lookalike_share=float(rp.get("min_lookalike_share", 0.0)),
        ),
        teacher=Teacher(**te),
        gate=GateConfig(**ga),
        path=str(path),
        hash=sha256_json(doc),
        raw=doc,
        generation=GenerationConfig(
            strategy=ge.get("strategy", "self_instruct"),
            strategies=tuple((name, float(share)) for name, share in ge.get("strategies", {}).items()),
            source_run=str((path.parent / ge["source_run"]).resolve()) if ge.get("source_run") else None,
        ),
    )
