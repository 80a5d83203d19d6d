"""`curator verify RELEASE` and `curator releases`: check a release's hashes, list the releases."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from curator.paths import releases_root
from curator.release.store import release_versions, resolve_release, verify_release


def _verify(args: argparse.Namespace) -> int:
    """Exit 0 when every hash matches (and the release is certified, unless --allow-uncertified)."""
    path = resolve_release(args.release)
    manifest = verify_release(path, require_certified=not args.allow_uncertified)
    counts = manifest.get("counts", {})
    state = "certified" if manifest.get("certified") else "not certified"
    print(f"{path}: ok ({len(manifest['files'])} files match their sha256; {state}; "
          f"train {counts.get('train', '?')}, eval {counts.get('eval', '?')})")
    return 0


def _releases(args: argparse.Namespace) -> int:
    root = releases_root()
    table = Table(title=f"releases under {root} (times in UTC)", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("version", "created", "train", "eval", "certified", "spec", "inputs"):
        table.add_column(col, justify="right" if col in ("train", "eval") else "left",
                         no_wrap=col != "inputs", overflow="fold", min_width=len(col))
    for version in release_versions(root):
        path = root / f"release-v{version}"
        try:
            m = json.loads((path / "manifest.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            table.add_row(path.name, "?", "?", "?", f"[red]unreadable manifest: {e}[/red]", "?", "?")
            continue
        counts = m.get("counts", {})
        inputs = ", ".join(Path(i["path"]).name for i in m.get("inputs", []))
        created = m.get("created_at", "?").replace("T", " ")[:16]
        table.add_row(path.name, created, str(counts.get("train", "?")), str(counts.get("eval", "?")),
                      "yes" if m.get("certified") else "no", m.get("spec", {}).get("name", "?"), inputs)
    console = Console()
    if not console.is_terminal:
        console.width = 240  # piped or captured: one line per release
    console.print(table)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="recompute a release's hashes and check its certificate")
    p.add_argument("release", help="release-vN, vN, N, latest, or a release directory")
    p.add_argument("--allow-uncertified", action="store_true",
                   help="accept a release whose hashes match but whose gate verdict failed")
    p.set_defaults(func=_verify)
    p = sub.add_parser("releases", help="list releases: version, created, rows, certified, spec, inputs")
    p.set_defaults(func=_releases)
