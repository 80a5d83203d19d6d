"""The release report: a self-contained HTML page (`index.html`) and a datasheet (`DATASHEET.md`).

The page needs no network: charts are inline SVG (`curator.release.plots`), styles are inline, and
there is no script. Figures come from the manifest (gate checks, verdicts, inputs) and from the
release rows themselves:

  mix           achieved share of the kept rows per task family against the spec's target share,
                and counts per cell (task_family x format x difficulty)
  lengths       words of the user turns and of the responses, per row
  funnel        rows left after each gate check, then the train / eval split
  duplicates    near/exact duplicate clusters from the ledger: each rejected row that names the row it
                duplicates joins that row's cluster; sizes counted (keeper included)
  gender terms  mentions of the gender terms in user turns and responses, as the gate's screening check
                counted them (`curator.text_signals.gender_counts`; the manifest's screening stats); a screen,
                not a measurement: "his"/"her" may be possessives of anyone
  scores        distributions of the judge and reward-model scores (`row.scores`) of kept and rejected rows,
                when the gate wrote any
  refusals      share of responses per family that open as a refusal, as the gate's screening check
                counted them (`curator.text_signals.is_refusal`, the detector the evaluation uses too;
                its version is in the stats), next to the spec's refusal families
  embedding map user turns embedded with all-MiniLM-L6-v2 (offline, CPU), centred and projected on
                their first two principal components (numpy SVD), coloured by task family; at most
                `embed_sample` rows (the lowest ids: ids are content hashes, so this is an unbiased sample)
  examples      kept rows per family and rejected rows per check and reason, HTML-escaped
  human review  the manifest's `review` section (`curator.review.stats`): coverage per cell, Cohen's kappa,
                each check's precision and recall against people on the random sample

Gender and refusal figures are read from the manifest, never recounted: a release whose gate ran
without screening says so instead of drawing them.

The report goes to `<data root>/reports/release-vN/` by default: releases are write-once.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np

from curator.errors import CuratorError, missing_extra
from curator.paths import data_root
from curator.records import QUALITY_SCORES, assistant_text, user_text
from curator.release import plots
from curator.release.check_stats import stats_summary
from curator.release.store import SPLITS, Release
from curator.refusal_coverage import refusal_coverage

GENDER_GROUPS = ("male", "female")
EXAMPLES_PER_GROUP = 2
EXAMPLE_CHARS = 600
NOT_SCREENED = "not screened: the gate that wrote this release ran without the screening check"


def reports_root() -> Path:
    return data_root() / "reports"


def screening_stats(manifest: dict) -> dict | None:
    """The screening check's stats in a manifest, or None when the gate ran without it."""
    return next((c.get("stats") for c in manifest.get("checks", []) if c.get("name") == "screening"), None)


def _refusal_shares(screening: dict, families: list[str], kept_by_family: Counter) -> dict[str, float]:
    """Refused over screened rows per family (releases before `checked_by_family`: over the kept rows)."""
    refusals = screening["refusals"]
    refused, checked = refusals.get("by_family", {}), refusals.get("checked_by_family") or kept_by_family
    return {f: refused.get(f, 0) / checked[f] if checked.get(f) else 0.0 for f in families}


def words(text: str) -> int:
    return len(text.split())


@dataclass
class Figures:
    """Everything the page and the datasheet show, computed once."""

    families: list[str]
    target_share: dict[str, float]
    achieved_share: dict[str, float]
    cells: list[tuple[tuple[str, str, str], int, int]]  # ((family, format, difficulty), train, eval)
    user_words: list[int]
    response_words: list[int]
    funnel: list[tuple[str, int]]
    cluster_sizes: Counter
    gender: dict[str, dict[str, int]] | None  # side (user / response) -> group -> mentions; None: not screened
    refusal_share: dict[str, float] | None  # None: not screened
    refusal_families: list[str]
    sources: Counter
    strategies: Counter
    templates: Counter
    embedding: list[tuple[float, float, int]] | None = None
    embedding_note: str = ""
    kept_examples: dict[str, list[dict]] = field(default_factory=dict)
    rejected_examples: dict[tuple[str, str], list[dict]] = field(default_factory=dict)
    rejected_counts: Counter = field(default_factory=Counter)
    scores: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # judge / reward -> kept / rejected -> values
    refusal_coverage: dict[str, dict[str, int]] = field(default_factory=dict)  # refusal family -> refusals, lookalikes


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0].strip() or reason


def _embedding_map(release: Release, families: list[str], sample: int) -> tuple[list | None, str]:
    try:
        from sentence_transformers import SentenceTransformer

        from curator.embedded_models import minilm_dir
        model_dir = minilm_dir()
    except ImportError as e:
        return None, f"embedding map skipped: {missing_extra('the embedding map', 'gate', e)}"
    except CuratorError as e:
        return None, f"embedding map skipped: {e}"
    rows = sorted((r for _, r in release.records()), key=lambda r: r["id"])[:sample]
    if len(rows) < 3:
        return None, f"embedding map skipped: {len(rows)} rows (at least 3 needed)"
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = SentenceTransformer(str(model_dir), device="cpu")
    emb = model.encode([user_text(r) for r in rows], batch_size=64, normalize_embeddings=True,
                       show_progress_bar=False)
    centred = emb - emb.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    explained = float((s[:2] ** 2).sum() / (s ** 2).sum())
    index = {f: i for i, f in enumerate(families)}
    points = [(float(x), float(y), index[r["task_family"]]) for (x, y), r in zip(xy, rows)]
    total = len(release.train) + len(release.eval)
    return points, (f"{len(rows)} of {total} rows; the two components explain {explained:.0%} of the variance "
                    f"of the all-MiniLM-L6-v2 embeddings of the user turns")


def _quality_scores(kept: list[dict], rejected: list[dict]) -> dict[str, dict[str, list[float]]]:
    """The quality scores (judge, reward) of kept and rejected rows, for each score some row carries."""
    out: dict[str, dict[str, list[float]]] = {}
    for name in QUALITY_SCORES:
        sides = {side: [r["scores"][name] for r in rows if name in (r.get("scores") or {})]
                 for side, rows in (("kept", kept), ("rejected", rejected))}
        if sides["kept"] or sides["rejected"]:
            out[name] = sides
    return out


def compute_figures(release: Release, embed: bool = True, embed_sample: int = 2000) -> Figures:
    m = release.manifest
    spec_families = m.get("spec", {}).get("raw", {}).get("task_families", [])
    records = [r for _, r in release.records()]
    kept_by_family = Counter(r["task_family"] for r in records)
    families = [f["name"] for f in spec_families] + sorted(set(kept_by_family) - {f["name"] for f in spec_families})
    total = len(records) or 1
    cells: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for split, r in release.records():
        cells[(r["task_family"], r["format"], r["difficulty"])][SPLITS.index(split)] += 1
    counts = m.get("counts", {})
    funnel = [("input", counts.get("input", total + len(release.rejected)))]
    for c in m.get("checks", []):
        funnel.append((f"after {c['name']}", funnel[-1][1] - c["removed"] + c.get("added", 0)))
    funnel += [("train", len(release.train)), ("eval", len(release.eval))]
    keepers = Counter(r["duplicate_of"] for r in release.rejected if r.get("duplicate_of"))
    screening = screening_stats(m)
    provenance = [r["provenance"] for r in records]
    kept_examples = defaultdict(list)
    for r in records:
        if len(kept_examples[r["task_family"]]) < EXAMPLES_PER_GROUP:
            kept_examples[r["task_family"]].append(r)
    rejected_examples, rejected_counts = defaultdict(list), Counter()
    for r in release.rejected:
        key = (r["check"], _reason_kind(r["reason"]))
        rejected_counts[key] += 1
        if len(rejected_examples[key]) < EXAMPLES_PER_GROUP:
            rejected_examples[key].append(r)
    figures = Figures(
        families=families,
        target_share={f["name"]: float(f["share"]) for f in spec_families},
        achieved_share={f: kept_by_family[f] / total for f in families},
        cells=[(k, v[0], v[1]) for k, v in sorted(cells.items())],
        user_words=[words(user_text(r)) for r in records],
        response_words=[words(assistant_text(r)) for r in records],
        funnel=funnel,
        cluster_sizes=Counter(n + 1 for n in keepers.values()),
        gender=None if screening is None else {side: screening["demographic_terms"][side]["gender"]
                                               for side in ("user", "response")},
        refusal_share=None if screening is None else _refusal_shares(screening, families, kept_by_family),
        refusal_families=[f["name"] for f in spec_families if f.get("refusal")],
        sources=Counter(p.get("source") or "(none)" for p in provenance),
        strategies=Counter(p.get("strategy") or "(none)" for p in provenance),
        templates=Counter(p.get("prompt_template") or "(none)" for p in provenance),
        kept_examples=dict(kept_examples),
        rejected_examples=dict(rejected_examples),
        rejected_counts=rejected_counts,
        scores=_quality_scores(records, release.rejected),
        refusal_coverage=refusal_coverage(records, [f["name"] for f in spec_families if f.get("refusal")]),
    )
    if embed:
        figures.embedding, figures.embedding_note = _embedding_map(release, families, embed_sample)
    else:
        figures.embedding_note = "embedding map not drawn (--no-embeddings)"
    return figures


# ---------------------------------------------------------------- HTML

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:16px 24px;color:#222}
h1{margin-bottom:0}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right}.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}
.note{color:#555}pre{white-space:pre-wrap;word-break:break-word;margin:0;max-width:480px;font-size:12px}
.grid{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0}h4{margin:8px 0 4px}figcaption{color:#555;font-size:12px;max-width:640px}
"""


def _table(head: list[str] | None, rows: list[list], numeric: set[int] = frozenset()) -> str:
    """A table of pre-escaped cells; `head` None for a key/value table without a header row."""
    th = "".join(f'<th class="{"n" if i in numeric else ""}">{escape(h)}</th>' for i, h in enumerate(head or []))
    body = "".join("<tr>" + "".join(f'<td class="{"n" if i in numeric else ""}">{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table>{f'<thead><tr>{th}</tr></thead>' if head else ''}<tbody>{body}</tbody></table>"


def _figure(svg: str, caption: str) -> str:
    """The chart under its title (the SVG's own, already escaped `<title>`), with a caption below."""
    title = svg.split("<title>", 1)[1].split("</title>", 1)[0]
    return f"<figure><h4>{title}</h4>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def _clip(text: str) -> str:
    return escape(text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + " …")


def _screening_charts(f: Figures) -> dict[str, str]:
    """The gender and refusal charts, from the gate's screening figures (a note when it did not run)."""
    if f.gender is None or f.refusal_share is None:
        note = f'<p class="note">{escape(NOT_SCREENED)}</p>'
        return {"gender": note, "refusals": note}
    return {
        "gender": _figure(plots.bars("chart-gender", "Gender term mentions", list(GENDER_GROUPS),
                                     [(side, [f.gender[side][g] for g in GENDER_GROUPS]) for side in f.gender]),
                          "Mentions of the gender lexicon in user turns and responses (the gate's screening; "
                          "a screen, not a measure)."),
        "refusals": _figure(plots.bars("chart-refusals", "Refusal share per task family", f.families,
                                       [("refusals", [f.refusal_share[x] for x in f.families])], fmt="{:.2f}"),
                            "Share of responses opening with a refusal phrase (the gate's screening). Refusal "
                            "families in the spec: " + (", ".join(f.refusal_families) or "none") + "."),
    }


def _charts(f: Figures) -> dict[str, str]:
    fams = f.families
    charts = {
        "mix": _figure(plots.bars("chart-mix", "Target vs achieved share per task family", fams,
                                  [("target", [f.target_share.get(x, 0.0) for x in fams]),
                                   ("achieved", [f.achieved_share.get(x, 0.0) for x in fams])], fmt="{:.2f}"),
                       "Share of kept rows per task family against the spec's target."),
        "lengths": _figure(plots.histogram("chart-lengths", "Length distributions (words)",
                                           [("user turns", f.user_words), ("responses", f.response_words)],
                                           xlabel="words"),
                           "Words per row: user turns and responses."),
        "funnel": _figure(plots.bars("chart-funnel", "Rows after each gate check", [n for n, _ in f.funnel],
                                     [("rows", [v for _, v in f.funnel])]),
                          "Input rows, rows left after each check in order, then the split."),
        "duplicates": _figure(
            plots.bars("chart-duplicates", "Duplicate clusters by size",
                       [f"size {s}" for s in sorted(f.cluster_sizes)] or ["none"],
                       [("clusters", [f.cluster_sizes[s] for s in sorted(f.cluster_sizes)] or [0])]),
            "Clusters of rows rejected as duplicates of a row, keeper included."),
        **_screening_charts(f),
    }
    charts["scores"] = "".join(
        _figure(plots.histogram(f"chart-{name}-scores", f"{name.capitalize()} scores", list(sides.items()), bins=10,
                                xlabel="score"),
                f"{name} scores the gate wrote, of kept rows and of rows it rejected (by any check).")
        for name, sides in f.scores.items())
    if f.embedding is not None:
        charts["embedding"] = _figure(plots.scatter("chart-embedding", "Embedding map of user turns (PCA)",
                                                    f.embedding, fams), f.embedding_note)
    else:
        charts["embedding"] = f'<p class="note">{escape(f.embedding_note)}</p>'
    return charts


def _examples_html(f: Figures) -> str:
    kept = [[escape(fam), escape(r["id"]), f"<pre>{_clip(user_text(r))}</pre>", f"<pre>{_clip(assistant_text(r))}</pre>"]
            for fam in f.families for r in f.kept_examples.get(fam, [])]
    rejected = []
    for (check, kind), rows in sorted(f.rejected_examples.items()):
        for n, r in enumerate(rows):
            rec = r["record"] if isinstance(r["record"], dict) else {}
            text = user_text(rec) if isinstance(rec.get("messages"), list) else str(r["record"])
            rejected.append([escape(check), escape(kind), "" if n else str(f.rejected_counts[(check, kind)]),
                             f"<pre>{_clip(r['reason'])}</pre>", f"<pre>{_clip(text)}</pre>"])
    return ("<h3>Kept rows, per task family</h3>" + _table(["family", "id", "user", "response"], kept)
            + "<h3>Rejected rows, per check and reason</h3>"
            + (_table(["check", "reason", "rows", "full reason", "user turn"], rejected, {2}) if rejected
               else '<p class="note">no rows were rejected</p>'))


def _interval(ci: list[float] | None) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "—"


def _share(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def review_rows(review: dict) -> tuple[list[list[str]], list[list[str]]]:
    """(coverage rows per cell, precision/recall rows per check) of a manifest's review section, as text."""
    coverage = [[*c["cell"], str(c["rows"]), str(c["reviewed"]), _share(c["share"])] for c in review["coverage"]]
    checks = [[c["check"], str(c["flagged"]), str(c["true_positive"]), str(c["human_bad"]), _share(c["precision"]),
               _interval(c["precision_ci"]), _share(c["recall"]), _interval(c["recall_ci"])] for c in review["checks"]]
    return coverage, checks


REVIEW_CHECK_HEAD = ["check", "flagged in sample", "flagged and bad", "bad in sample", "precision", "95% interval",
                     "recall", "95% interval"]


def _review_html(review: dict | None) -> str:
    if not review:
        return '<p class="note">No human review was applied to this release (<code>curator review</code>, then ' \
               '<code>curator gate --review-ledger</code>).</p>'
    coverage, checks = review_rows(review)
    agreement = review["agreement"]
    verdicts = ", ".join(f"{k} {v}" for k, v in sorted(review["verdicts"].items())) or "none"
    reviewers = ", ".join(f"{k} ({v})" for k, v in review["reviewers"].items()) or "none"
    kappa = "—" if agreement["kappa"] is None else f"{agreement['kappa']:.2f}"
    return (f"<p>{review['pairs_reviewed']} pairs reviewed ({escape(verdicts)}) by {escape(reviewers)}; "
            f"{review['sample_reviewed']} of them from the random stratified sample. Inter-reviewer agreement on "
            f"{agreement['pairs']} pairs seen by two reviewers: observed {_share(agreement['observed'])}, "
            f"Cohen's kappa {kappa}.</p>"
            + "<h3>Coverage per cell</h3>"
            + _table(["task family", "format", "difficulty", "rows", "reviewed", "share"],
                     [[escape(x) for x in r] for r in coverage], {3, 4, 5})
            + "<h3>Automatic checks against human verdicts (random sample)</h3>"
            + (_table(REVIEW_CHECK_HEAD, [[escape(x) for x in r] for r in checks], {1, 2, 3, 4, 6}) if checks
               else '<p class="note">no sampled pair was flagged by an automatic check</p>')
            + '<p class="note">A person calls a pair bad when they reject or edit it; intervals are Wilson 95%.</p>')


def render_html(release: Release, f: Figures) -> str:
    m = release.manifest
    counts = m.get("counts", {})
    charts = _charts(f)
    state = ('<span class="ok">certified</span>' if m.get("certified") else
             f'<span class="bad">NOT certified</span> (failed: {escape(", ".join(release.certificate.get("failed_verdicts", [])))})')
    spec = m.get("spec", {})
    summary = _table(None, [
        ["release", escape(release.name)], ["name", escape(m.get("name") or "—")],
        ["created", escape(str(m.get("created_at", "?")))], ["state", state],
        ["spec", f"{escape(str(spec.get('name')))} (sha256 {escape(str(spec.get('sha256', ''))[:16])}…)"],
        ["rows", f"train {len(release.train)}, eval {len(release.eval)}, rejected {len(release.rejected)} "
                 f"of {counts.get('input', '?')} input"],
        ["teacher models", escape(", ".join(m.get("teacher_models", [])) or "none")],
        ["manifest sha256", f"<code>{escape(release.certificate.get('manifest_sha256', ''))}</code>"],
    ])
    cells = _table(["task family", "format", "difficulty", "train", "eval"],
                   [[escape(a), escape(b), escape(c), str(t), str(e)] for (a, b, c), t, e in f.cells], {3, 4})
    checks = _table(["check", "removed", "details"],
                    [[escape(c["name"]), str(c["removed"]),
                      escape(stats_summary(c.get("stats", {})))] for c in m.get("checks", [])],
                    {1})
    verdicts = _table(["verdict", "observed", "expected", ""],
                      [[escape(v["name"]), escape(str(v.get("observed"))), escape(str(v.get("expected"))),
                        '<span class="ok">pass</span>' if v["passed"] else '<span class="bad">FAIL</span>']
                       for v in m.get("verdicts", [])])
    inputs = _table(["run directory", "kind", "rows read"],
                    [[escape(i["path"]), escape(str(i.get("meta", {}).get("kind", "?"))), str(i.get("rows_read", "?"))]
                     for i in m.get("inputs", [])], {2})
    notes = f"<p>{escape(m['notes'])}</p>" if m.get("notes") else ""
    title = escape(release.name + (f" — {m['name']}" if m.get("name") else ""))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body>
<h1>{title}</h1>{notes}
{summary}
<p class="note">Datasheet: <code>DATASHEET.md</code> next to this page. Verify the release with <code>curator verify {escape(release.name)}</code>.</p>
<h2 id="mix">Mix</h2><div class="grid">{charts["mix"]}</div>{cells}
<h2 id="lengths">Lengths</h2>{charts["lengths"]}
<h2 id="gate">Gate</h2><div class="grid">{charts["funnel"]}{charts["duplicates"]}{charts["scores"]}</div>{checks}
<h3>Verdicts</h3>{verdicts}
<h2 id="review">Human review</h2>{_review_html(m.get("review"))}
<h2 id="bias">Bias screens</h2><div class="grid">{charts["gender"]}{charts["refusals"]}</div>
<h2 id="embedding">Embedding map</h2>{charts["embedding"]}
<h2 id="examples">Examples</h2>{_examples_html(f)}
<h2 id="inputs">Inputs</h2>{inputs}
</body></html>
"""


# ---------------------------------------------------------------- datasheet


def _md_table(head: list[str], rows: list[list]) -> str:
    def cell(x) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows])


def _counter_line(c: Counter) -> str:
    return ", ".join(f"{k} ({v})" for k, v in c.most_common()) or "none"


def _review_md(review: dict | None) -> str:
    if not review:
        return "No human review was applied to this release."
    coverage, checks = review_rows(review)
    agreement = review["agreement"]
    kappa = "n/a" if agreement["kappa"] is None else f"{agreement['kappa']:.2f}"
    return (f"{review['pairs_reviewed']} pairs reviewed by people ({', '.join(f'{k} {v}' for k, v in sorted(review['verdicts'].items()))}); "
            f"{review['sample_reviewed']} from a random sample stratified by cell. Agreement on {agreement['pairs']} "
            f"pairs seen by two reviewers: Cohen's kappa {kappa}.\n\n"
            + _md_table(["task family", "format", "difficulty", "rows", "reviewed", "share"], coverage) + "\n\n"
            + "Each automatic check against the human verdicts on the random sample (bad = rejected or edited; "
              "Wilson 95% intervals):\n\n"
            + (_md_table(REVIEW_CHECK_HEAD, checks) if checks else "No sampled pair was flagged by an automatic check."))


def _screening_md(f: Figures, policy: dict) -> str:
    if f.gender is None or f.refusal_share is None:
        return f"- Gender terms and refusals: {NOT_SCREENED}."
    user, response = _counter_line(Counter(f.gender["user"])), _counter_line(Counter(f.gender["response"]))
    return (f"- Gender-term mentions (small lexicon, whole words): user turns {user}; responses {response}. "
            "The lexicon is ambiguous (\"her\" may be any reader's) and English-only.\n"
            f"- Responses opening with a refusal phrase, per family: "
            f"{', '.join(f'{k} {v:.0%}' for k, v in f.refusal_share.items()) or 'n/a'}; refusal families in the spec: "
            f"{', '.join(f.refusal_families) or 'none'}, allowed share {policy.get('max_share', '-')}.")


def refusal_summary(f: Figures, spec: dict) -> str:
    """In plain words, what the release teaches about refusing: per refusal family, refusals and look-alikes."""
    descriptions = {t["name"]: t.get("description", t["name"]) for t in spec.get("task_families", [])}
    covered = {fam: c for fam, c in f.refusal_coverage.items() if c["refusals"]}
    if not covered:
        return ("This release holds no refusal examples. A model trained on it learns to answer every request, "
                "harmful ones included: it will not refuse anything, whatever the spec's refusal policy says.")
    lines = ["A model trained on it learns to decline requests about:"]
    for fam, c in covered.items():
        if not c["lookalikes"]:
            lookalikes = "; no look-alikes are answered, so it may also refuse harmless requests that sound like these"
        elif c["lookalikes"] < c["refusals"]:
            lookalikes = (f"; only {c['lookalikes']} harmless look-alikes are answered, fewer than the refusals, so it "
                          "may also refuse harmless requests that sound like these")
        else:
            lookalikes = f"; {c['lookalikes']} harmless look-alikes are answered, so it is shown where the line is"
        lines.append(f"- {descriptions.get(fam, fam)} ({c['refusals']} refusal examples{lookalikes}).")
    missing = [fam for fam, c in f.refusal_coverage.items() if not c["refusals"]]
    if missing:
        lines.append("It has no refusal examples for " + ", ".join(descriptions.get(m, m) for m in missing)
                     + ": such requests will likely be answered.")
    lines.append("Anything else is answered: requests outside these categories were never refused in training, "
                 "however harmful.")
    return "\n".join(lines)


def datasheet(release: Release, f: Figures | None = None) -> str:
    """Markdown datasheet (Datasheets for Datasets headings, which map onto a Hugging Face dataset card)."""
    f = f or compute_figures(release, embed=False)
    m = release.manifest
    spec, raw = m.get("spec", {}), m.get("spec", {}).get("raw", {})
    counts = m.get("counts", {})
    teacher = raw.get("teacher", {})
    policy = raw.get("refusal_policy", {})
    families = _md_table(
        ["task family", "description", "target share", "kept share", "train", "eval"],
        [[t["name"], t.get("description", ""), f"{t['share']:.2f}", f"{f.achieved_share.get(t['name'], 0):.2f}",
          sum(tr for (fam, _, _), tr, _ in f.cells if fam == t["name"]),
          sum(ev for (fam, _, _), _, ev in f.cells if fam == t["name"])] for t in raw.get("task_families", [])])
    checks = _md_table(
        ["check", "removed", "removed per family", "details"],
        [[c["name"], c["removed"], ", ".join(f"{k} {v}" for k, v in c.get("removed_by_family", {}).items()) or "-",
          stats_summary(c.get("stats", {})) or "-"] for c in m.get("checks", [])])
    verdicts = _md_table(["verdict", "observed", "expected", "result"],
                         [[v["name"], v.get("observed"), v.get("expected"), "pass" if v["passed"] else "FAIL"]
                          for v in m.get("verdicts", [])])
    inputs = "\n".join(f"  - `{i['path']}` ({i.get('meta', {}).get('kind', '?')}, {i.get('rows_read', '?')} rows read)"
                       for i in m.get("inputs", [])) or "  - none recorded"
    teacher_line = (f"model `{teacher.get('model')}`, mode `{teacher.get('mode')}`, sampling `{teacher.get('sampling', {})}`"
                    if teacher else "none (the spec has no teacher section)")
    teachers = ", ".join(m.get("teacher_models", []))
    dedup = [c["name"] for c in m.get("checks", []) if "dedup" in c["name"]]
    refuse = "\n".join(f"  - {x}" for x in policy.get("refuse", [])) or "  - (none listed)"
    median = sorted(f.response_words)[len(f.response_words) // 2] if f.response_words else 0
    state = "certified" if m.get("certified") else ("NOT certified (failed: "
                                                    + ", ".join(release.certificate.get("failed_verdicts", [])) + ")")
    return f"""# Datasheet: {release.name}{f" — {m['name']}" if m.get("name") else ""}

{(m["notes"] + chr(10) + chr(10)) if m.get("notes") else ""}| | |
|---|---|
| Release | `{release.name}`, created {m.get("created_at", "?")}, {state} |
| Manifest sha256 (certificate) | `{release.certificate.get("manifest_sha256", "")}` |
| Spec | `{spec.get("name")}` (`{spec.get("path")}`, sha256 `{spec.get("sha256")}`) |
| Rows | train {len(release.train)}, eval {len(release.eval)}; rejected {len(release.rejected)} of {counts.get("input", "?")} input rows |
| Tool | instruct-curator {m.get("tool_version", "?")} |

## Motivation

An instruction-tuning dataset built to the curriculum `{spec.get("name")}`: {raw.get("description", "").strip() or "(the spec gives no description)"}
It was built with instruct-curator, which generates or imports pairs, gates them against the spec and
writes this write-once, hash-certified release.

## Composition

Each row is one conversation (`messages`: role and content) with its curriculum cell (`task_family`,
`format`, `difficulty`, `length_band`) and its provenance (JSON string). Rows are identified by a
content hash of their messages (`id`). Splits: `train` and `eval` (stratified by task family).

{families}

Response length: median {median} words; user turns and responses per row are plotted in the report.
Sources of the kept rows: {_counter_line(f.sources)}.

## Collection process

- Teacher models: {", ".join(m.get("teacher_models", [])) or "none (no synthetic rows kept)"}
- Teacher settings in the spec: {teacher_line}
- Strategies: {_counter_line(f.strategies)}
- Prompt templates: {_counter_line(f.templates)}
- Input run directories:
{inputs}

Every row's provenance names its source, strategy, teacher model, prompt template and the hash of the
exact prompt, the spec it was made for, and its origin (`file:line`) or plan slot: see `curator lineage ID`.

## Preprocessing: the gate

Every input row was kept, or rejected by exactly one check (in this order) with its reason; the
rejected rows are in `rejected.parquet`.

{checks}

Verdicts on the kept rows (all must pass for certification):

{verdicts}

## Human review

{_review_md(m.get("review"))}

## Uses

Supervised fine-tuning (SFT) of chat models on the task families above, e.g. `trainer fit --dataset {release.name}`;
evaluation on the held-out `eval` split. Export with `curator export {release.name} --to hf|hf-disk|openai|sharegpt|alpaca|trl`.

## Out-of-scope uses

- Benchmarking general capability: the rows cover only the task families of the spec.
- Anything that relies on the responses being factually right without checking: {f"the synthetic ones were written by {teachers}, " if teachers else ""}and the gate checks form, duplicates and mix, not truth.
- Teaching refusals outside the spec's policy. The policy refuses:
{refuse}

## What a model trained on it will and will not refuse

{refusal_summary(f, raw)}

## Bias, risks and limitations

{_screening_md(f, policy)}
- The mix follows the spec's target shares within its tolerance ({raw.get("gate", {}).get("mix_tolerance", "-")}); families outside the spec are absent.
- Duplicate checks run: {", ".join(dedup) or "none"}; duplicates they do not model (e.g. paraphrases for lexical checks) may remain.
- Licence: not recorded by the spec; imported rows keep the terms of their source (`provenance.origin`).

## Maintenance

Releases are write-once: a new gate run writes `release-v{int(m.get("version", 0)) + 1}` and never changes this one.
`curator verify {release.name}` recomputes every file's sha256 against the manifest and the manifest's
against the signed attestation. `curator diff` compares releases; `curator lineage ID` traces a row.
"""


REPORT_FILES = {"index.html", "DATASHEET.md"}


def write_report(release: Release, out: Path | None = None, embed: bool = True, embed_sample: int = 2000) -> Path:
    """Write `index.html` and `DATASHEET.md` for `release` into `out` (default `<data root>/reports/<release>/`).

    An explicit `out` must be new, empty, or hold only an earlier report (its two files); the default is rewritten."""
    out = Path(out) if out is not None else reports_root() / release.name
    where = out.resolve()
    if where == release.path.resolve() or release.path.resolve() in where.parents:
        raise CuratorError(f"{out}: a release directory is write-once; write the report elsewhere")
    if out.exists() and (not out.is_dir() or {p.name for p in out.iterdir()} - REPORT_FILES):
        raise CuratorError(f"{out}: exists and holds other files than a report; pass a new or empty --out")
    figures = compute_figures(release, embed=embed, embed_sample=embed_sample)
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.html").write_text(render_html(release, figures), encoding="utf-8")
    (out / "DATASHEET.md").write_text(datasheet(release, figures), encoding="utf-8")
    return out
