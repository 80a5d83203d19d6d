"""Release commands: `verify`, `releases`, `show`, `lineage`, `diff`, `export`, `report`."""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from curator.paths import releases_root
from curator.release.diff import diff_releases
from curator.release.export import FORMATS, export_release
from curator.release.lineage import PROVENANCE_FIELDS, Appearance, lineage
from curator.release.report import write_report
from curator.release.store import SPLITS, open_release, release_versions, resolve_release, verify_attested

RELEASE_HELP = "release-vN, vN, N, latest, or a release directory"


def _console() -> Console:
    console = Console()
    if not console.is_terminal:
        console.width = 240  # piped or captured: one line per row
    return console


def _table(title: str, *columns: str, right: tuple[str, ...] = ()) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for col in columns:
        table.add_column(col, justify="right" if col in right else "left", overflow="fold")
    return table


def _verify(args: argparse.Namespace) -> int:
    """Exit 0 when the signature is by a trusted key (unless --allow-unsigned), the files are exactly the signed ones
    with their sha256, and the release is certified (unless --allow-uncertified)."""
    path = resolve_release(args.release)
    verified = verify_attested(path, require_certified=not args.allow_uncertified, allow_unsigned=args.allow_unsigned)
    manifest = verified.manifest
    counts = manifest.get("counts", {})
    state = "certified" if verified.statement["predicate"].get("verdict") == "certified" else "not certified"
    signer = f"signed by trusted key {verified.signer}" if verified.signer else "UNSIGNED or untrusted signer, accepted by --allow-unsigned"
    print(f"{path}: ok ({len(manifest['files'])} files match their sha256; {signer}; {state}; "
          f"train {counts.get('train', '?')}, eval {counts.get('eval', '?')})")
    return 0


def _releases(args: argparse.Namespace) -> int:
    root = releases_root()
    table = Table(title=f"releases under {root} (times in UTC)", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("version", "name", "created", "train", "eval", "certified", "spec", "inputs"):
        table.add_column(col, justify="right" if col in ("train", "eval") else "left",
                         no_wrap=col not in ("inputs", "name"), overflow="fold", min_width=len(col))
    for version in release_versions(root):
        path = root / f"release-v{version}"
        try:
            m = json.loads((path / "manifest.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            table.add_row(path.name, "", "?", "?", "?", f"[red]unreadable manifest: {escape(str(e))}[/red]", "?", "?")
            continue
        counts = m.get("counts", {})
        inputs = ", ".join(Path(i["path"]).name for i in m.get("inputs", []))
        created = m.get("created_at", "?").replace("T", " ")[:16]
        table.add_row(path.name, escape(m.get("name") or ""), created, str(counts.get("train", "?")),
                      str(counts.get("eval", "?")), "yes" if m.get("certified") else "no",
                      escape(m.get("spec", {}).get("name", "?")), escape(inputs))
    _console().print(table)
    return 0


def _show(args: argparse.Namespace) -> int:
    """Summary of one release, read after verifying its hashes."""
    release = open_release(args.release)
    m, console = release.manifest, _console()
    spec = m.get("spec", {})
    state = ("[green]certified[/green]" if m.get("certified") else
             f"[red]NOT certified[/red] (failed: {escape(', '.join(release.certificate.get('failed_verdicts', [])))})")
    head = _table(f"{release.name}: {release.path}", "field", "value")
    for field, value in (
        ("version", str(m.get("version", "?"))), ("name", escape(m.get("name") or "-")),
        ("notes", escape(m.get("notes") or "-")), ("created", escape(str(m.get("created_at", "?")))),
        ("state", state), ("spec", escape(f"{spec.get('name')} ({spec.get('path')}, sha256 {spec.get('sha256')})")),
        ("manifest sha256", release.certificate.get("manifest_sha256", "?")),
        ("rows", f"train {len(release.train)}, eval {len(release.eval)}, rejected {len(release.rejected)}"),
        ("teacher models", escape(", ".join(m.get("teacher_models", [])) or "none")),
    ):
        head.add_row(field, value)
    console.print(head)
    per_family = Counter((r["task_family"], split) for split, r in release.records())
    families = _table("rows per task family", "task family", *SPLITS, right=SPLITS)
    for fam in sorted({f for f, _ in per_family}):
        families.add_row(escape(fam), *(str(per_family[(fam, s)]) for s in SPLITS))
    console.print(families)
    if m.get("checks"):
        checks = _table("gate checks", "check", "removed", right=("removed",))
        for c in m["checks"]:
            checks.add_row(escape(c["name"]), str(c["removed"]))
        console.print(checks)
    if m.get("verdicts"):
        verdicts = _table("verdicts", "verdict", "observed", "expected", "result")
        for v in m["verdicts"]:
            verdicts.add_row(escape(v["name"]), escape(str(v.get("observed"))), escape(str(v.get("expected"))),
                             "[green]pass[/green]" if v["passed"] else "[red]FAIL[/red]")
        console.print(verdicts)
    if m.get("inputs"):
        inputs = _table("inputs", "run directory", "kind", "rows read", right=("rows read",))
        for i in m["inputs"]:
            inputs.add_row(escape(i["path"]), escape(str(i.get("meta", {}).get("kind", "?"))), str(i.get("rows_read", "?")))
        console.print(inputs)
    return 0


def _with_keeper(a: Appearance) -> str:
    """The rejection reason, plus the row that now carries a duplicate's content when that is not its direct keeper."""
    if a.kept_as and a.kept_as != a.duplicate_of:
        return f"{a.reason or ''} (its keeper was removed later; kept as {a.kept_as})"
    return a.reason or ""


def _lineage(args: argparse.Namespace) -> int:
    result = lineage(args.pair_id, models=args.model)
    console = _console()
    history = _table(f"pair {args.pair_id}", "release", "certified", "where", "check", "reason", "input (file:line)",
                     "gated with spec")
    for a in result.appearances:
        source = (a.input_line or a.input_path or "?") + (" [yellow](changed since gating)[/yellow]" if a.input_changed else "")
        history.add_row(a.release, "yes" if a.certified else "no", a.split, escape(a.check or ""),
                        escape(_with_keeper(a)), source, escape(a.spec))
    console.print(history)
    prov = result.provenance
    provenance = _table("provenance", "field", "value")
    for key in PROVENANCE_FIELDS:
        provenance.add_row(key, escape(str(prov.get(key)) if prov.get(key) is not None else "-"))
    console.print(provenance)
    if result.models:
        models = _table("trained models that used a release holding it", "run directory", "release", "split", "base model")
        for u in result.models:
            models.add_row(escape(str(u.run_dir)), u.release, u.split, escape(str(u.base_model)))
        console.print(models)
    else:
        console.print("trained models: none found (looked in <data root>/training/ and --model)")
    for problem in result.problems:
        console.print(f"[red]not searched:[/red] {escape(problem)}", soft_wrap=True)
    return 0


def _diff(args: argparse.Namespace) -> int:
    d = diff_releases(open_release(args.before), open_release(args.after))
    console = _console()
    console.print(f"{d.before} → {d.after}: {len(d.added)} rows added, {len(d.removed)} removed, "
                  f"{len(d.moved)} moved between splits, {d.unchanged} unchanged")
    for label, ids in (("added", d.added), ("removed", d.removed)):
        if ids:
            shown = ids if args.all else ids[:args.limit]
            more = "" if len(shown) == len(ids) else f" … and {len(ids) - len(shown)} more (--all)"
            console.print(f"{label}: {' '.join(shown)}{more}", soft_wrap=True)
    for title, rows, key_cols in (("mix per task family", d.families, ("task family",)),
                                  ("mix per cell", d.cells, ("task family", "format", "difficulty"))):
        table = _table(title, *key_cols, d.before, d.after, "share before", "share after", "Δ share",
                       right=(d.before, d.after, "share before", "share after", "Δ share"))
        for r in rows:
            table.add_row(*map(escape, r.key), str(r.before), str(r.after), f"{r.share_before:.3f}",
                          f"{r.share_after:.3f}", f"{r.share_delta:+.3f}")
        console.print(table)
    quality = _table("quality: rows per gate stage", "", d.before, d.after, right=(d.before, d.after))
    for name, a, b in [*d.totals, *((f"removed by {c}", a, b) for c, a, b in d.checks)]:
        quality.add_row(escape(name), "-" if a is None else str(a), "-" if b is None else str(b))
    console.print(quality)
    verdicts = _table("verdicts", "verdict", d.before, d.after)
    word = {True: "[green]pass[/green]", False: "[red]FAIL[/red]", None: "-"}
    for name, a, b in d.verdicts:
        verdicts.add_row(escape(name), word[a], word[b])
    console.print(verdicts)
    return 0


def _export(args: argparse.Namespace) -> int:
    release = open_release(args.release, require_certified=not args.allow_uncertified)
    result = export_release(release, args.to, Path(args.out))
    written = ", ".join(f"{name} {n}" for name, n in result.written.items())
    skipped = "; ".join(f"{n} {reason}" for reason, n in result.skipped.items())
    print(f"{release.name} → {result.out} ({args.to}): {written}" + (f"; skipped: {skipped}" if skipped else ""))
    return 0


def _report(args: argparse.Namespace) -> int:
    release = open_release(args.release)
    with Console(stderr=True).status(f"computing figures for {release.name}"):
        out = write_report(release, Path(args.out) if args.out else None, embed=not args.no_embeddings,
                           embed_sample=args.embed_sample)
    print(out / "index.html")
    print(out / "DATASHEET.md")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="recompute a release's hashes and check its certificate")
    p.add_argument("release", help=RELEASE_HELP)
    p.add_argument("--allow-uncertified", action="store_true",
                   help="accept a release whose hashes match but whose gate verdict failed")
    p.add_argument("--allow-unsigned", action="store_true",
                   help="accept a release that is unsigned or signed by a key not trusted here (files are still checked)")
    p.set_defaults(func=_verify)
    p = sub.add_parser("releases", help="list releases: version, name, created, rows, certified, spec, inputs")
    p.set_defaults(func=_releases)
    p = sub.add_parser("show", help="summary of a release: name, notes, spec, rows per split and family, gate, inputs")
    p.add_argument("release", help=RELEASE_HELP)
    p.set_defaults(func=_show)
    p = sub.add_parser("lineage", help="where a pair came from, which releases hold or rejected it, which models used it")
    p.add_argument("pair_id", help="the pair's id (16 hex digits)")
    p.add_argument("--model", action="append", type=Path, default=[], metavar="RUN_DIR",
                   help="a `trainer fit` run directory to check too (besides <data root>/training/*); repeatable")
    p.set_defaults(func=_lineage)
    p = sub.add_parser("diff", help="rows added and removed, mix shift and quality figures between two releases")
    p.add_argument("before", help=RELEASE_HELP)
    p.add_argument("after", help=RELEASE_HELP)
    p.add_argument("--limit", type=int, default=20, help="ids to list per side (default 20)")
    p.add_argument("--all", action="store_true", help="list every added and removed id")
    p.set_defaults(func=_diff)
    p = sub.add_parser("export", help="write a release for Hugging Face datasets, OpenAI, ShareGPT, Alpaca or TRL")
    p.add_argument("release", help=RELEASE_HELP)
    p.add_argument("--to", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="a new or empty directory")
    p.add_argument("--allow-uncertified", action="store_true", help="export a release whose gate verdict failed")
    p.set_defaults(func=_export)
    p = sub.add_parser("report", help="self-contained HTML report and DATASHEET.md for a release")
    p.add_argument("release", help=RELEASE_HELP)
    p.add_argument("--out", help="output directory (default: <data root>/reports/release-vN/)")
    p.add_argument("--no-embeddings", action="store_true", help="skip the MiniLM embedding map")
    p.add_argument("--embed-sample", type=int, default=2000, help="rows embedded for the map (default 2000)")
    p.set_defaults(func=_report)
