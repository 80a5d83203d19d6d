"""Consistency review in the gate: each verifier on hand-written fixtures with known answers (true and
false positives), the one refusal detector, selection by quality, plug-in checks through a real entry
point, and the pairs the quickstart used to certify."""
from __future__ import annotations

from pathlib import Path

import pytest

from curator.errors import CuratorError
from curator.gate.check import Row, keep_rank
from curator.gate.checks.arithmetic import Arithmetic, evaluate, find_errors
from curator.gate.checks.code_syntax import CodeSyntax, code_blocks, instruction_language
from curator.gate.checks.grounding import Grounding
from curator.gate.checks.label_consistency import LabelConsistency
from curator.gate.checks.refusal_policy import RefusalPolicy
from curator.gate.checks.relevance import Relevance
from curator.gate.checks.selection import Selection
from curator.gate.pipeline import run_gate
from curator.records import build_messages, make_pair
from curator.release.store import read_ledger, read_split
from curator.rundir import RunDir
from curator.spec import GroundingConfig, RelevanceConfig, SelectionConfig, load_spec
from curator.text_signals import is_refusal

REPO = Path(__file__).resolve().parents[1]


def row(instruction: str, output: str, input_text: str = "", *, family: str = "general", fmt: str = "free_text",
        order: int = 0, strategy: str | None = None) -> Row:
    extra = {"strategy": strategy} if strategy else {}
    record = make_pair(build_messages(instruction, input_text, output), task_family=family, format=fmt,
                       difficulty="easy", source="human", **extra)
    return Row(record, "runs/fixture", order + 1, order)


def rejected_reasons(check, rows: list[Row]) -> dict[int, str]:
    result = check.run(rows)
    assert len(result.kept) + len(result.rejected) == len(rows)
    assert result.stats["checked"] == len(rows) and result.stats["removed"] == len(result.rejected)
    return {r.row.order: r.reason for r in result.rejected}


# --- arithmetic ---------------------------------------------------------------------------------

@pytest.mark.parametrize("response", [
    "There are 20 + 5 = 35 books on the shelf. The answer is 35.",
    "Natalia sold 48/2 = <<48/2=25>>25 clips in May.",
    "He spent 5 * $5 on shirts = $27.",
    "20% of 50 = 15, so she saved 15 dollars.",
    "First 3 + 4 = 7.\nThen 7 * 2 = 14.\n#### 15",
    "The total is (3 + 4) * 2 = 12 apples.",
])
def test_arithmetic_catches_wrong_results(response):
    checked, errors = find_errors(response)
    assert checked >= 1 and errors, response


@pytest.mark.parametrize("response", [
    "Bruce spent 5 * $5 on shirts = $25.\nIncluding the pants, Bruce spent $25 + $26 = $51.\n"
    "Since he began with $71, he has $71 - $51 spent = $20 remaining.\n#### 20",
    "There will be 7 family units * 3 people in each family unit = 21 people.",
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.",
    "Each friend gets 10 / 3 = 3.33 cups.",
    "100 stickers / 3 friends = 33 stickers for each friend, with 1 left over.",
    "The perimeter is 2 * 225 + 2 * 125 = 450 + 250 = 700 feet.",
    "25% of 80 = 20 dollars off.",
    "Let H be the distance. 4H - 10 = 25, so 5H = 35.",  # algebra: not a computation to recheck
    "It is about 22 / 7 = approximately 3.1 in total.",  # an estimate is not checked
    "He pays $2.50 x 6 = $15 for the shirts. The answer is 15.",
    "- Emma paid 8 kg * $4/kg = $32 for the cheese.\n- In total she paid $32 + $42 = $74.",  # bullets, not minus
    "* 3 * 5 = 15\n* 15 - 8 = 7",
    "1. 3 + 4 = 7\n2. 7 * 2 = 14",
])
def test_arithmetic_keeps_right_work_and_skips_what_it_cannot_check(response):
    assert find_errors(response)[1] == [], response


def test_arithmetic_leaves_code_alone_and_evaluates_only_arithmetic():
    code = "```python\ntotal = 5 + 3 = 9\n```\nThe snippet has a typo."
    assert find_errors(code) == (0, [])
    assert evaluate("2 ** 3 + (4 - 1) / 3") == 9.0
    assert evaluate("__import__('os')") is None and evaluate("2 ** 1000") is None and evaluate("1 / 0") is None
    rows = [row("Add them.", "3 + 4 = 8", order=0), row("Add them.", "3 + 4 = 7", order=1)]
    reasons = rejected_reasons(Arithmetic(), rows)
    assert list(reasons) == [0] and reasons[0].startswith("arithmetic:wrong_result: 3.0 + 4.0 = 8 but it is 7")


# --- code ---------------------------------------------------------------------------------------

PY_OK = "def add(a, b):\n    return a + b\n\nprint(add(2, 3))"
PY_BROKEN = "def add(a, b)\n    return a + b\n\nprint(add(2, 3))"


def test_code_syntax_rejects_code_that_does_not_parse():
    rows = [
        row("Write a Python function that adds two numbers.", PY_OK, order=0),
        row("Write a Python function that adds two numbers.", PY_BROKEN, order=1),
        row("Write it in JavaScript.", "```js\nfunction f() { return 1 }\n```", order=2),
        row("Write it in JavaScript.", "```javascript\nfunction f( { return 1 }\n```", order=3),
        row("Give the config.", "```json\n{\"a\": 1,}\n```", order=4),
        row("Write a query.", "```sql\nSELECT name FROM users WHERE id = 3;\n```", order=5),
        row("Write a query.", "```sql\nSELECT name FROM WHERE;\n```", order=6),
        row("Write a function in Ruby.", "def add(a, b)\n  a + b\nend\n\nputs add(2, 3)", order=7),
        row("Convert this Python code to Ruby.", "def add(a, b)\n  a + b\nend", order=8),
        row("Show an example.", "```elixir\ndefmodule M do\nend\n```", order=9),
        row("Write a C++ program.", "#include <iostream>\nint main() { std::cout << 1; return 0; }", order=10),
        row("Write it.", "Here is how:\n\n```\nimport os\nprint(os.getcwd(\n```", order=11),
        row("Write a YAML file.", "```yaml\nkey: [1, 2\n```", order=12),
    ]
    check = CodeSyntax()
    result = check.run(rows)
    reasons = {r.row.order: r.reason for r in result.rejected}
    assert sorted(reasons) == [1, 3, 4, 6, 11, 12]
    assert reasons[1].startswith("code_syntax:python: does not parse: line 1")
    assert reasons[3].startswith("code_syntax:javascript") and reasons[6].startswith("code_syntax:sql")
    assert result.stats["skipped"] == {"ruby": 2, "elixir": 1}
    assert result.stats["parsed"]["cpp"] == 1


def test_language_named_by_the_instruction():
    assert instruction_language("Translate the following Python code to TypeScript: def f(): pass") == "typescript"
    assert instruction_language("Write a C program to add two numbers.") == "c"
    assert instruction_language("Class A is twice the size of Class C.") is None
    assert instruction_language("Compare Python and Java.") == "ambiguous"
    # a named data format gives way to the language the code evidently is
    assert code_blocks("import json\nprint(json.dumps({}))", "Write a script that prints JSON.")[0][0] == "python"
    assert code_blocks("The capital of France is Paris. It lies on the Seine.", "Where is Paris?") == []


# --- refusal policy and the one detector --------------------------------------------------------

@pytest.mark.parametrize(("text", "refused"), [
    ("I refuse to do that.", True), ("I must refuse.", True), ("I can't fulfill that request.", True),
    ("I'm sorry, but I can't help with that.", True), ("I won't be able to assist with this.", True),
    ("As an AI, I must decline.", True), ("I cannot stress enough how simple this is.", False),
    ("He said he cannot swim.", False), ("The sorry state of the roads.", False),
    ("x " * 200 + "I cannot help with that.", False),
])
def test_one_refusal_detector(text, refused):
    assert is_refusal(text) is refused


def test_refusal_policy_rejects_over_refusal_benign_refusals_and_compliance():
    spec = load_spec(REPO / "specs" / "starter.yaml")
    no = "I'm sorry, but I can't help with that."
    rows = [
        row("Rewrite the sentence more formally.", no, family="rewrite", order=0),  # over-refusal
        row("Write a list of instructions to help your neighbour.", no, family="refuse", order=1),  # benign refused
        row("Explain how to build a pipe bomb.", no, family="refuse", order=2),  # right
        row("Write malware that steals passwords.", "Sure: import os ...", family="refuse", order=3),  # complied
        row("How do I kill a Python process?", no, family="refuse", order=4, strategy="self_instruct:lookalike"),
        row("How do I kill a Python process?", "Run kill PID.", family="refuse", order=5,
            strategy="self_instruct:lookalike"),
        row("Rewrite the sentence more formally.", "Kindly send the report.", family="rewrite", order=6),
    ]
    reasons = rejected_reasons(RefusalPolicy.from_spec(spec), rows)
    assert sorted(reasons) == [0, 1, 3, 4]
    assert reasons[0].startswith("refusal_policy:over_refusal") and reasons[4].startswith("refusal_policy:over_refusal")
    assert reasons[1].startswith("refusal_policy:benign_refused") and reasons[3].startswith("refusal_policy:missing")


# --- labels -------------------------------------------------------------------------------------

def test_label_conflicts_keep_the_majority_and_reject_ties():
    q1, q2, q3 = "Is this review positive? Great phone.", "Is this review positive? Bad phone.", "Capital of Peru?"
    rows = [
        row(q1, "positive", order=0), row(q1, "Positive.", order=1), row(q1, "negative", order=2),
        row(q2, "negative", order=3), row(q2, "positive", order=4),
        row(q3, "Lima", order=5),
        row("Describe the city.", "Lima is the capital of Peru and sits on the coast.", order=6),
        row("Describe the city.", "A large city on the Pacific coast with old colonial streets.", order=7),
    ]
    reasons = rejected_reasons(LabelConsistency(frozenset({"label"}), max_words=3), rows)
    assert sorted(reasons) == [2, 3, 4]
    assert reasons[2].startswith("labels:conflict: answer 'negative', but 2 of 3 rows")
    assert reasons[3].startswith("labels:conflict_no_majority")


# --- grounding ----------------------------------------------------------------------------------

def test_grounding_of_extractions_summaries_and_rewrites():
    text = "Maria met Tom in Lisbon before they flew to Oslo for the winter conference on energy."
    rows = [
        row("Extract the names as JSON.", '{"names": ["Maria", "Tom"]}', text, family="extract", order=0),
        row("Extract the names as JSON.", '{"names": ["Maria", "Anna"]}', text, family="extract", order=1),
        row("Which city did they fly to?", "Oslo", text, family="extract", order=2),
        row("Which city did they fly to?", "Paris", text, family="extract", order=3),
        row("Summarize.", "Maria and Tom flew to Oslo.", text, family="summarize", order=4),
        row("Summarize.", text + " It was a long trip for both of them.", text, family="summarize", order=5),
        row("Rewrite formally.", "The city is beautiful.", "The city is beautiful.", family="rewrite", order=6),
        row("Rewrite formally.", "The city is truly lovely.", "The city is beautiful.", family="rewrite", order=7),
        row("Rewrite formally.", "The city is beautiful.", family="general", order=8),  # not a rewrite family
    ]
    check = Grounding(GroundingConfig(), ("extract", "summarize", "rewrite", "general"))
    reasons = rejected_reasons(check, rows)
    assert sorted(reasons) == [1, 3, 5, 6]
    assert reasons[1] == "grounding:not_in_source: 'Anna' does not occur in the input"
    assert reasons[5].startswith("grounding:not_shorter") and reasons[6].startswith("grounding:unchanged")


# --- relevance (the real model2vec model distilled from the local MiniLM) -----------------------

TOPICS = [
    ("volcano", "Magma rises through the crust and erupts from the volcano as lava, ash and gas."),
    ("photosynthesis", "Plants use sunlight, water and carbon dioxide to make glucose and release oxygen."),
    ("the stock market", "Shares of companies are bought and sold on exchanges where prices follow supply and demand."),
    ("a bicycle", "Pedals turn a chain that drives the rear wheel, and gears change how hard you pedal."),
    ("the immune system", "White blood cells and antibodies find and destroy viruses and bacteria in the body."),
    ("baking bread", "Yeast ferments the dough, the gluten stretches, and the oven sets the crust and crumb."),
    ("a refrigerator", "A compressor pumps refrigerant that absorbs heat inside the fridge and releases it outside."),
    ("tides", "The Moon's gravity pulls the oceans, raising high tides on the sides of Earth facing and opposite it."),
    ("chess openings", "Players develop knights and bishops early, control the centre and castle the king to safety."),
    ("a solar panel", "Photovoltaic cells turn sunlight into electric current that an inverter makes usable at home."),
    ("the French Revolution", "In 1789 the people of France overthrew the monarchy and declared the rights of man."),
    ("coffee brewing", "Hot water extracts oils and caffeine from ground coffee beans through a filter or press."),
    ("earthquakes", "Tectonic plates slip along faults and release energy as seismic waves that shake the ground."),
    ("a neural network", "Layers of weighted units learn from data by adjusting weights with gradient descent."),
    ("honeybees", "Worker bees collect nectar and pollen, make honey in wax combs and serve the queen of the hive."),
    ("compound interest", "Interest is earned on both the deposit and the interest already added, so savings grow faster."),
    ("the water cycle", "Water evaporates, condenses into clouds and falls as rain or snow before flowing back to the sea."),
    ("a jet engine", "The engine compresses air, burns fuel in it and blasts the hot exhaust out to push the plane forward."),
    ("vaccines", "A vaccine trains the immune system with a harmless piece of a germ so it can fight the real one later."),
    ("recycling plastic", "Plastic is sorted, washed, shredded and melted into pellets that become new products."),
]


def relevance_rows() -> list[Row]:
    rows = []
    for k, (topic, answer) in enumerate(TOPICS):
        rows.append(row(f"Explain how {topic} works in a few sentences.", answer, order=2 * k))
        rows.append(row(f"What should a beginner know about {topic}?", f"About {topic}: {answer}", order=2 * k + 1))
    return rows


def test_relevance_rejects_answers_to_other_questions():
    from curator.gate.embeddings import model2vec_embedder

    rows = relevance_rows()
    swapped = {4: 14, 10: 37, 22: 1}  # row -> row whose answer it gets (unrelated topics)
    answers = {i: rows[j].record["messages"][-1]["content"] for i, j in swapped.items()}
    for i, answer in answers.items():
        rows[i].record["messages"][-1]["content"] = answer
    config = RelevanceConfig(reference_rows=32, min_reference=16)
    check = Relevance(config, model2vec_embedder())
    result = check.run(rows)
    reasons = {r.row.order: r.reason for r in result.rejected}
    assert set(swapped) <= set(reasons), result.stats
    assert len(reasons) <= len(swapped) + 1  # at most one untouched row of 37 under the cut
    assert all(r.startswith("relevance:off_topic: relative score") for r in reasons.values())
    assert all("relevance" in r.scores for r in rows) and result.stats["scoring"] == "relative"
    short = [row("Capital of Peru?", "Lima", order=99)]
    assert check.run(short).stats["skipped_short"] == 1


# --- selection and the keep rule ----------------------------------------------------------------

def test_selection_keeps_the_best_scored_rows_per_cell_and_duplicates_keep_the_best():
    rows = [row(f"Question {i}?", f"Answer number {i}.", order=i) for i in range(6)]
    for i, score in enumerate([3, 9, 7, 5, None, 8]):
        if score is not None:
            rows[i].scores["judge"] = float(score)
    reasons = rejected_reasons(Selection(SelectionConfig(top_n=3)), rows)
    assert sorted(reasons) == [0, 3, 4]
    assert "rank 6 of 6" in reasons[4] and "unscored" in reasons[4]
    assert rejected_reasons(Selection(SelectionConfig(top_share=0.5)), rows).keys() == {0, 3, 4}
    short, long = row("Q?", "Short answer.", order=0), row("Q?", "A much longer answer than the other one.", order=1)
    assert min([short, long], key=keep_rank) is long
    short.scores["judge"] = 9.0
    long.scores["judge"] = 4.0
    assert min([short, long], key=keep_rank) is short


# --- plug-in checks through a real entry point --------------------------------------------------

PLUGIN = '''
from curator.gate.check import CheckResult, Rejection


class BannedWord:
    name = "banned_word"

    def __init__(self, word):
        self.word = word

    @classmethod
    def from_spec(cls, spec, context, params):
        return cls(params["word"])

    def run(self, rows):
        bad = [r for r in rows if self.word in r.record["messages"][-1]["content"]]
        return CheckResult([r for r in rows if r not in bad], [Rejection(r, f"banned_word: {self.word}") for r in bad],
                           {"checked": len(rows), "removed": len(bad)})
'''


def install_plugin(root: Path, monkeypatch) -> None:
    """A real distribution on sys.path: a module plus dist-info naming it in the gate's entry point group."""
    (root / "banned_word_check.py").write_text(PLUGIN)
    info = root / "banned_word_check-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: banned-word-check\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[instruct_curator.gate_checks]\nbanned_word = banned_word_check:BannedWord\n")
    monkeypatch.syspath_prepend(str(root))


def gate_spec(tmp_path: Path, gate_extra: str) -> Path:
    text = (REPO / "specs" / "starter.yaml").read_text().replace("gate:\n", "gate:\n" + gate_extra, 1)
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def write_run(path: Path, records: list[dict]) -> Path:
    run = RunDir(path)
    run.create({"kind": "test", "status": "complete"})
    for r in records:
        run.add_pair(r)
    return path


def pair(instruction: str, output: str, input_text: str = "", *, family: str, fmt: str = "free_text",
         difficulty: str = "easy", band: str = "short") -> dict:
    return make_pair(build_messages(instruction, input_text, output), task_family=family, format=fmt,
                     difficulty=difficulty, length_band=band, source="human")


def test_plugin_check_named_in_the_spec_runs_in_the_gate(tmp_path, monkeypatch):
    (tmp_path / "site").mkdir()
    install_plugin(tmp_path / "site", monkeypatch)
    spec = load_spec(gate_spec(tmp_path, "  plugins: {banned_word: {word: lorem}}\n"))
    run = write_run(tmp_path / "runs" / "a", [
        pair("Summarize the text.", "Lorem ipsum is filler; lorem text.", "Lorem ipsum dolor sit amet is filler "
             "text used by printers since the sixteenth century.", family="summarize"),
        pair("Summarize the text.", "Printers use filler text.", "Lorem ipsum dolor sit amet is filler text used by "
             "printers since the sixteenth century.", family="summarize"),
    ])
    report = run_gate([run], spec, root=tmp_path / "releases")
    names = [c["name"] for c in report.manifest["checks"]]
    assert names.index("banned_word") < names.index("screening")
    assert report.manifest["counts"]["removed"]["banned_word"] == 1
    assert [r["reason"] for r in read_ledger(report.release) if r["check"] == "banned_word"] == ["banned_word: lorem"]
    missing = load_spec(gate_spec(tmp_path, "  plugins: {no_such_check: {}}\n"))
    with pytest.raises(CuratorError, match="no installed check named no_such_check"):
        run_gate([run], missing, root=tmp_path / "releases")


# --- the pairs the quickstart certified before consistency review --------------------------------

def test_quickstart_pairs_that_were_wrong_are_rejected_with_their_reason(tmp_path):
    spec = load_spec(REPO / "specs" / "starter.yaml")
    bad = [
        pair("Solve the problem and state the answer.", "There are 20 + 5 = 35 books. The answer is 35.",
             "A store has 20 books for sale at a price of $5 each. How many are there?", family="reason",
             band="medium"),
        pair("Rewrite the sentence to sound more formal.", "The city is beautiful.", "The city is beautiful.",
             family="rewrite"),
        pair("Write a list of instructions to help your neighbour.", "I can't help with that because it could "
             "put people at risk.", family="refuse"),
    ]
    good = [
        # not the shipped suite's pen problem (rsn-01), which decontamination now rejects
        pair("Solve the problem and state the answer.", "6 pens cost 6 x 4 = 24 dollars. The answer is 24.",
             "A shop sells pens at 4 dollars each. How much do 6 pens cost?", family="reason", band="medium"),
        pair("Rewrite the sentence to sound more formal.", "Could you please send the report?",
             "Hey, send me that report.", family="rewrite"),
        pair("Explain how to make a pipe bomb.", "I can't help with that because it could put people at risk.",
             family="refuse"),
    ]
    run = write_run(tmp_path / "runs" / "q", bad + good)
    report = run_gate([run], spec, root=tmp_path / "releases")
    ledger = {r["id"]: (r["check"], r["reason"]) for r in read_ledger(report.release)}
    assert ledger[bad[0]["id"]][0] == "arithmetic"
    assert ledger[bad[1]["id"]] == ("grounding", "grounding:unchanged: the rewrite repeats its source")
    assert ledger[bad[2]["id"]][0] == "refusal_policy"
    kept = {r["id"] for part in ("train", "eval") for r in read_split(report.release, part)}
    assert kept == {g["id"] for g in good}
