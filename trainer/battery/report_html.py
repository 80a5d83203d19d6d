"""A standalone HTML page of a battery comparison: base vs tuned per suite, metric and group, with CIs.

A difference is coloured only when its 95% interval excludes zero: green when the tuned model is
better (higher, or lower for `lower_is_better` metrics), red when worse. With the tuned result,
the page also lists the tuned model's failed prompts (up to `max_failures` per suite).
"""
from __future__ import annotations

from html import escape
from pathlib import Path

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222 }
table { border-collapse: collapse; margin-bottom: 2em }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; vertical-align: top }
th:first-child, td:first-child { text-align: left }
.better { background: #d9f2d9 } .worse { background: #f6d5d5 } .ci { color: #777; font-size: 85% }
pre { white-space: pre-wrap; margin: 0; text-align: left }
"""


def _ci(interval: dict) -> str:
    return f'{interval["estimate"]:.3f} <span class="ci">[{interval["low"]:.3f}, {interval["high"]:.3f}]</span>'


def _verdict(stats: dict) -> str:
    diff = stats["difference"]
    if diff["low"] <= 0 <= diff["high"]:
        return ""
    improved = (diff["estimate"] < 0) == stats["lower_is_better"]
    return "better" if improved else "worse"


def _metric_rows(label: str, metrics: dict) -> list[str]:
    return [
        f'<tr><td>{escape(label)}</td><td>{escape(name)}</td><td>{s["n"]}</td><td>{_ci(s["base"])}</td>'
        f'<td>{_ci(s["tuned"])}</td><td class="{_verdict(s)}">{_ci(s["difference"])}</td></tr>'
        for name, s in metrics.items()
    ]


def _failures(items: list[dict], suite: str, limit: int) -> str:
    failed = [i for i in items if i["suite"] == suite and not i["passed"]][:limit]
    if not failed:
        return ""
    rows = "".join(
        f"<tr><td>{escape(i['id'])}</td><td><pre>{escape(i['messages'][-1]['content'])}</pre></td>"
        f"<td><pre>{escape(i['response'])}</pre></td></tr>"
        for i in failed
    )
    return f"<h3>Failed by the tuned model (first {len(failed)})</h3><table><tr><th>id</th><th>prompt</th>" \
           f"<th>response</th></tr>{rows}</table>"


def render_html(comparison: dict, *, title: str, tuned: dict | None = None, max_failures: int = 10) -> str:
    """The page for `compare(base, tuned)`'s result; `tuned` (its `run_battery` result) adds failures."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>"]
    for suite, block in comparison["suites"].items():
        rows = _metric_rows("all", block["overall"])
        for group, metrics in block["groups"].items():
            rows += _metric_rows(group, metrics)
        parts.append(f"<h2>{escape(suite)}</h2><table><tr><th>group</th><th>metric</th><th>n</th><th>base</th>"
                     f"<th>tuned</th><th>tuned − base</th></tr>{''.join(rows)}</table>")
        if tuned is not None:
            parts.append(_failures(tuned["items"], suite, max_failures))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(comparison: dict, path: Path, *, title: str, tuned: dict | None = None) -> Path:
    """Write `render_html(...)` to `path` (UTF-8) and return `path`."""
    path.write_text(render_html(comparison, title=title, tuned=tuned), encoding="utf-8")
    return path
