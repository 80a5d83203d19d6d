"""`curator report`: the HTML page and DATASHEET.md of a real gated release, rendered in headless Chromium.

The page is checked as a reader gets it: Chromium loads the file with networking off, its DOM must
hold every chart, and the console must stay silent (a control page with a deliberate error proves the
console check can fail). One screenshot is kept under `test-artifacts/` for a person to look at.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from curator.cli import main
from curator.records import assistant_text
from curator.release.report import compute_figures
from curator.release.store import open_release, verify_release
from curator.text_signals import gender_counts, is_refusal
from test_lineage_diff import POETRY, build_world

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHARTS = ("chart-mix", "chart-lengths", "chart-funnel", "chart-duplicates", "chart-gender", "chart-refusals",
          "chart-embedding")
SECTIONS = ("## Motivation", "## Composition", "## Collection process", "## Preprocessing: the gate", "## Uses",
            "## Out-of-scope uses", "## Bias, risks and limitations", "## Maintenance")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """release-v2 of the shared world and its report, written by the CLI to the default place."""
    data = tmp_path_factory.mktemp("report") / "data"
    world = build_world(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INSTRUCT_CURATOR_DATA", str(data))
        before = {p.name: p.stat().st_mtime_ns for p in world.v2.iterdir()}
        assert main(["report", "release-v2"]) == 0
        assert {p.name: p.stat().st_mtime_ns for p in world.v2.iterdir()} == before
        verify_release(world.v2)
        release = open_release(world.v2)
    out = data / "reports" / "release-v2"
    return {"world": world, "release": release, "out": out, "html": (out / "index.html").read_text()}


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _elements(html: str) -> list[tuple[str, dict]]:
    parser = _Elements()
    parser.feed(html)
    return parser.tags


def _chromium(*args: str, user_data: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={user_data}", "--enable-logging=stderr", "--v=0"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


def _console_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]


def test_page_is_self_contained_and_holds_every_chart(report):
    html, release = report["html"], report["release"]
    tags = _elements(html)
    svg_ids = [a.get("id") for t, a in tags if t == "svg"]
    assert svg_ids == list(CHARTS)
    assert not [t for t, _ in tags if t in ("script", "link", "iframe", "img")]
    assert not [a for _, a in tags for k in ("src", "href") if k in a]
    kept = len(release.train) + len(release.eval)
    embedding = html.split('id="chart-embedding"')[1].split("</svg>")[0]
    assert embedding.count("<circle") == kept == 31
    funnel = html.split('id="chart-funnel"')[1].split("</svg>")[0]
    counts = release.manifest["counts"]
    assert re.findall(r">(\d+)</text>", funnel) == [str(counts["input"]), "34", "34", "34", *["34"] * 8,
                                                          "32", "31", "31", "24", "7"]


def test_markup_in_rows_is_escaped(report):
    html = report["html"]
    assert "<script" not in html and "<b>thunder" not in html
    assert "alert(&#x27;rain&#x27;)" in html and "&lt;b&gt;thunder&lt;/b&gt;" in html and "&amp;" in html
    assert "&lt;br /&gt;" in html  # the imported movie reviews carry literal <br /> tags


def test_figures_match_the_release_rows(report):
    release = report["release"]
    figures = compute_figures(release, embed=False)
    records = [r for _, r in release.records()]
    assert figures.achieved_share["classify"] == pytest.approx(9 / 31)
    assert figures.target_share == {"qa": 0.5, "classify": 0.3, "extract": 0.1, "refuse": 0.1}
    assert figures.refusal_share == {"qa": 0.0, "classify": 0.0, "extract": 0.0, "refuse": 1.0}
    assert sum(is_refusal(assistant_text(r)) for r in records) == 3
    assert figures.cluster_sizes == {2: 3}  # the exact duplicate, the shorter answer, the near duplicate
    assert sum(t + e for _, t, e in figures.cells) == 31
    assert sorted(figures.rejected_counts.items()) == [
        (("exact_dedup", "exact_duplicate"), 2), (("near_dedup", "near_duplicate"), 1),
        (("schema", "schema"), 1), (("schema", "spec"), 1)]
    assert POETRY in [r["record"]["messages"][0]["content"] for rows in figures.rejected_examples.values() for r in rows]


def test_bias_figures_are_read_from_the_gates_screening_stats(report):
    release = report["release"]
    figures = compute_figures(release, embed=False)
    screening = next(c["stats"] for c in release.manifest["checks"] if c["name"] == "screening")
    assert figures.gender == {side: screening["demographic_terms"][side]["gender"] for side in ("user", "response")}
    assert screening["refusals"]["by_family"] == {"refuse": 3}
    assert release.manifest["text_signals"]["refusal_detector"] == screening["refusals"]["detector_version"] == 1


def test_refusal_and_gender_rules():
    assert is_refusal("I can’t help with that, but here is a safer idea.")
    assert is_refusal("I'm sorry, but I won't write that.")
    assert not is_refusal("The answer is 42. I can help with more questions.")
    assert not is_refusal("x " * 200 + "I cannot help with that.")  # only the opening counts
    assert gender_counts(["She told her brother; HE laughed.", "Shepherd hers"]) == {"male": 2, "female": 3}


def test_embedding_map_groups_rows_by_task_family(report):
    figures = compute_figures(report["release"])
    points = np.array([(x, y) for x, y, _ in figures.embedding])
    groups = np.array([g for _, _, g in figures.embedding])
    dist = np.linalg.norm(points[:, None] - points[None], axis=-1)
    same = groups[:, None] == groups[None]
    off_diagonal = ~np.eye(len(points), dtype=bool)
    assert dist[same & off_diagonal].mean() < 0.5 * dist[~same].mean()
    assert "31 of 31 rows" in figures.embedding_note


def test_datasheet_covers_every_section_and_gate_check(report):
    sheet = (report["out"] / "DATASHEET.md").read_text()
    assert [s for s in SECTIONS if s not in sheet] == []
    for check in report["release"].manifest["checks"]:
        assert f"| {check['name']} | {check['removed']} |" in sheet
    assert "Teacher models: gemma-3-270m" in sheet
    assert "Strategies: self_instruct (19), import:alpaca (9), handwritten (3)" in sheet
    assert "qa-fewshot-v1 (16)" in sheet and "extract-fewshot-v1 (3)" in sheet
    assert "instructions that help make weapons or explosives" in sheet
    assert report["release"].certificate["manifest_sha256"] in sheet


def test_report_refuses_to_write_into_the_release(report, monkeypatch, capsys):
    world = report["world"]
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(world.data))
    assert main(["report", "release-v2", "--out", str(world.v2), "--no-embeddings"]) == 2
    assert "write-once" in capsys.readouterr().err


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_page_renders_in_headless_chromium_without_console_errors(report, tmp_path):
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><html><body><script>console.error("control"); nope();</script></body></html>')
    seen = _console_lines(_chromium("--dump-dom", control.as_uri(), user_data=tmp_path / "ud0").stderr)
    assert any('"control"' in ln for ln in seen) and any("Uncaught ReferenceError" in ln for ln in seen)

    page = (report["out"] / "index.html").as_uri()
    dom = _chromium("--dump-dom", page, user_data=tmp_path / "ud1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console_lines(dom.stderr) == []
    rendered = _elements(dom.stdout)
    assert [a.get("id") for t, a in rendered if t == "svg"] == list(CHARTS)
    assert "release-v2" in dom.stdout and "certified" in dom.stdout

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "release-report.png"
    shot.unlink(missing_ok=True)
    done = _chromium(f"--screenshot={shot}", "--window-size=1280,2400", page, user_data=tmp_path / "ud2")
    assert done.returncode == 0 and _console_lines(done.stderr) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
