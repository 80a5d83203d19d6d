"""How a release manifest's per-check stats read in one line (the gate's table, the report, the datasheet)."""
from __future__ import annotations


def stats_summary(stats: dict) -> str:
    """One line for a check's stats: scalars as they are, mappings by their non-zero entries, lists by length.

    The manifest keeps the full stats; this is what tables show.
    """
    parts = []
    for k, v in stats.items():
        if k in ("checked", "removed"):
            continue
        if isinstance(v, dict):
            hits = {kk: vv for kk, vv in v.items() if vv and not isinstance(vv, (dict, list))}
            nested = sum(1 for vv in v.values() if isinstance(vv, (dict, list)))
            if hits:
                parts.append(f"{k}={hits}")
            elif nested:
                parts.append(f"{k}=(see manifest)")
        elif isinstance(v, list):
            if v:
                parts.append(f"{k}=[{len(v)}]")
        else:
            parts.append(f"{k}={v}")
    return ", ".join(parts)
