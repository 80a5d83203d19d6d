"""Small inline SVG charts for the release report: no plotting library, no scripts, no network.

Every chart is one `<svg id=... role="img">` element with a `<title>`; every text it draws is
HTML-escaped. Colours come from one fixed palette, so a task family keeps its colour across charts.
"""
from __future__ import annotations

import math
from html import escape
from typing import Sequence

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac")
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _svg(chart_id: str, title: str, width: int, height: int, body: list[str]) -> str:
    return (f'<svg id="{escape(chart_id)}" role="img" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" {FONT}><title>{escape(title)}</title>'
            + "".join(body) + "</svg>")


def _legend(names: Sequence[str], colours: Sequence[str], x: float, y: float) -> list[str]:
    out = []
    for i, (name, fill) in enumerate(zip(names, colours)):
        out.append(f'<rect x="{x}" y="{y + i * 16}" width="10" height="10" fill="{fill}"/>'
                   f'<text x="{x + 14}" y="{y + i * 16 + 9}">{escape(name)}</text>')
    return out


def bars(chart_id: str, title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]],
         fmt: str = "{:.0f}", width: int = 640) -> str:
    """Horizontal grouped bars: one group per label, one bar per series (name, values)."""
    label_w, row_h, bar_h = 150, 8 + 14 * len(series), 12
    legend_h = 16 * len(series) + 4 if len(series) > 1 else 0
    height = legend_h + row_h * len(labels) + 10
    top = max((v for _, values in series for v in values), default=0) or 1
    plot_w = width - label_w - 60
    body = _legend([n for n, _ in series], [colour(i) for i in range(len(series))], label_w, 2) if legend_h else []
    for r, label in enumerate(labels):
        y0 = legend_h + r * row_h
        body.append(f'<text x="{label_w - 6}" y="{y0 + row_h / 2 + 4}" text-anchor="end">{escape(label)}</text>')
        for s, (_, values) in enumerate(series):
            v = values[r]
            y = y0 + 4 + s * 14
            w = max(v / top * plot_w, 0.5 if v else 0)
            body.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour(s)}"/>'
                        f'<text x="{label_w + w + 4:.1f}" y="{y + 10}">{escape(fmt.format(v))}</text>')
    return _svg(chart_id, title, width, height, body)


def histogram(chart_id: str, title: str, series: Sequence[tuple[str, Sequence[float]]], bins: int = 20,
              xlabel: str = "", width: int = 640, height: int = 220) -> str:
    """Overlaid histograms over a shared linear range, one translucent colour per series."""
    values = [v for _, vs in series for v in vs]
    if not values:
        return _svg(chart_id, title, width, 40, ['<text x="10" y="24">no data</text>'])
    lo, hi = min(values), max(values)
    step = (hi - lo) / bins or 1
    counts = [[0] * bins for _ in series]
    for s, (_, vs) in enumerate(series):
        for v in vs:
            counts[s][min(int((v - lo) / step), bins - 1)] += 1
    top = max(max(c) for c in counts) or 1
    left, bottom, right = 40, height - 34, width - 10
    plot_w, plot_h = right - left, bottom - 20
    bw = plot_w / bins
    body = [f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#555"/>',
            f'<text x="{left - 4}" y="{bottom - plot_h + 4}" text-anchor="end">{top}</text>',
            f'<text x="{left - 4}" y="{bottom}" text-anchor="end">0</text>']
    for s, c in enumerate(counts):
        for b, n in enumerate(c):
            if n:
                h = n / top * plot_h
                body.append(f'<rect x="{left + b * bw:.1f}" y="{bottom - h:.1f}" width="{bw - 1:.1f}" '
                            f'height="{h:.1f}" fill="{colour(s)}" fill-opacity="0.6"><title>{n}</title></rect>')
    for b in range(0, bins + 1, max(bins // 5, 1)):
        body.append(f'<text x="{left + b * bw:.1f}" y="{bottom + 14}" text-anchor="middle">'
                    f'{lo + b * step:.0f}</text>')
    body.append(f'<text x="{left + plot_w / 2}" y="{height - 4}" text-anchor="middle">{escape(xlabel)}</text>')
    body += _legend([n for n, _ in series], [colour(i) for i in range(len(series))], right - 150, 4)
    return _svg(chart_id, title, width, height, body)


def scatter(chart_id: str, title: str, points: Sequence[tuple[float, float, int]], groups: Sequence[str],
            width: int = 640, height: int = 420) -> str:
    """Points (x, y, group index), one colour per group, axes scaled to the data."""
    if not points:
        return _svg(chart_id, title, width, 40, ['<text x="10" y="24">no data</text>'])
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx, sy = (x1 - x0) or 1, (y1 - y0) or 1
    plot_w, plot_h, pad = width - 170, height - 20, 10
    body = [f'<rect x="{pad}" y="{pad}" width="{plot_w}" height="{plot_h - pad}" fill="none" stroke="#ccc"/>']
    for x, y, g in points:
        cx = pad + 6 + (x - x0) / sx * (plot_w - 12)
        cy = plot_h - 6 - (y - y0) / sy * (plot_h - pad - 12)
        if math.isfinite(cx) and math.isfinite(cy):
            body.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{colour(g)}" fill-opacity="0.75"/>')
    body += _legend(groups, [colour(i) for i in range(len(groups))], plot_w + 24, pad + 4)
    return _svg(chart_id, title, width, height, body)
