"""Signed releases: the tamper matrix that `curator verify` and `trainer fit` must refuse, each naming what is wrong.

Two real releases are gated once (release-v1 certified, release-v2 not); each case copies them into its own
data root, alters them the way an attacker or an accident would, and runs both command lines on the result.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from curator.cli import main as curator
from curator.hashing import canonical_json, sha256_file
from curator.rundir import RunDir
from curator.signing import PAYLOAD_TYPE, key_id, pae, public_text
from test_release import SPEC, gsm8k_pairs


@pytest.fixture(scope="module")
def gated(tmp_path_factory) -> Path:
    """A data root with release-v1 (certified) and release-v2 (not certified), signed by the key in <root>/../keys."""
    base = tmp_path_factory.mktemp("gated")
    spec = base / "spec.yaml"
    spec.write_text(SPEC)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INSTRUCT_CURATOR_DATA", str(base / "data"))
        mp.setenv("INSTRUCT_CURATOR_KEYS", str(base / "keys"))
        for name, pairs in (("big", gsm8k_pairs(12)), ("small", gsm8k_pairs(2, skip=12))):
            run = RunDir(base / "data" / "runs" / name)
            run.create({"kind": "test", "status": "complete"})
            for p in pairs:
                run.add_pair(p)
        assert curator(["gate", "big", "--spec", str(spec)]) == 0
        assert curator(["gate", "small", "--spec", str(spec)]) == 1
    return base


@pytest.fixture
def world(gated, tmp_path, monkeypatch) -> Path:
    """A private copy of the gated releases (writable), trusting the key that signed them; returns the releases dir."""
    shutil.copytree(gated / "data", tmp_path / "data")
    shutil.copytree(gated / "keys", tmp_path / "keys")
    for p in (tmp_path / "data" / "releases").rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("INSTRUCT_CURATOR_KEYS", str(tmp_path / "keys"))
    return tmp_path / "data" / "releases"


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _save(path: Path, doc: object) -> None:
    path.write_text(json.dumps(doc, indent=2))


def _envelope(release: Path) -> dict:
    return _load(release / "certificate.json")["attestation"]


def _statement(release: Path) -> dict:
    return json.loads(base64.b64decode(_envelope(release)["payload"]))


def _resign(release: Path, statement: dict, key: Ed25519PrivateKey, keyid: str | None = None) -> None:
    """Replace the certificate's attestation by `statement` signed with `key` (claiming `keyid` when given)."""
    cert = _load(release / "certificate.json")
    payload = canonical_json(statement).encode()
    cert["attestation"] = {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(), "signatures": [
        {"keyid": keyid or key_id(key.public_key()), "sig": base64.b64encode(key.sign(pae(PAYLOAD_TYPE, payload))).decode()}]}
    _save(release / "certificate.json", cert)


def forged_verdict(root: Path) -> str:
    cert = _load(root / "release-v2" / "certificate.json")
    cert.update(verdict="certified", failed_verdicts=[])
    _save(root / "release-v2" / "certificate.json", cert)
    return "release-v2"


def rehashed_parquet(root: Path) -> str:
    rel = root / "release-v1"
    with open(rel / "train.parquet", "ab") as f:
        f.write(b"\0")
    manifest = _load(rel / "manifest.json")
    manifest["files"]["train.parquet"]["sha256"] = sha256_file(rel / "train.parquet")
    _save(rel / "manifest.json", manifest)
    cert = _load(rel / "certificate.json")
    cert["manifest_sha256"] = sha256_file(rel / "manifest.json")
    _save(rel / "certificate.json", cert)
    return "release-v1"


def dropped_file(root: Path) -> str:
    rel = root / "release-v1"
    manifest = _load(rel / "manifest.json")
    del manifest["files"]["eval.parquet"]
    _save(rel / "manifest.json", manifest)
    os.remove(rel / "eval.parquet")
    cert = _load(rel / "certificate.json")
    cert["manifest_sha256"] = sha256_file(rel / "manifest.json")
    _save(rel / "certificate.json", cert)
    return "release-v1"


def extra_file(root: Path) -> str:
    shutil.copyfile(root / "release-v1" / "train.parquet", root / "release-v1" / "more.parquet")
    return "release-v1"


def renamed(root: Path) -> str:
    os.rename(root / "release-v1", root / "release-v3")
    return "release-v3"


def copied(root: Path) -> str:
    shutil.copytree(root / "release-v1", root / "release-v7")
    return "release-v7"


def forged_signature(root: Path) -> str:
    rel = root / "release-v2"
    statement = _statement(rel)
    statement["predicate"].update(verdict="certified", failed_verdicts=[])
    cert = _load(rel / "certificate.json")
    cert["attestation"]["payload"] = base64.b64encode(canonical_json(statement).encode()).decode()
    cert.update(verdict="certified", failed_verdicts=[])
    _save(rel / "certificate.json", cert)
    return "release-v2"


def attacker_claims_trusted_keyid(root: Path) -> str:
    rel = root / "release-v2"
    statement = _statement(rel)
    statement["predicate"].update(verdict="certified", failed_verdicts=[])
    _resign(rel, statement, Ed25519PrivateKey.generate(), keyid=_envelope(rel)["signatures"][0]["keyid"])
    cert = _load(rel / "certificate.json")
    cert.update(verdict="certified", failed_verdicts=[])
    _save(rel / "certificate.json", cert)
    return "release-v2"


def untrusted_key(root: Path) -> str:
    rel = root / "release-v1"
    _resign(rel, _statement(rel), Ed25519PrivateKey.generate())
    return "release-v1"


def unsigned(root: Path) -> str:
    cert = _load(root / "release-v1" / "certificate.json")
    cert["attestation"]["signatures"] = []
    _save(root / "release-v1" / "certificate.json", cert)
    return "release-v1"


def legacy_certificate(root: Path) -> str:
    cert = _load(root / "release-v1" / "certificate.json")
    del cert["attestation"]
    _save(root / "release-v1" / "certificate.json", cert)
    return "release-v1"


def certificate_not_an_object(root: Path) -> str:
    _save(root / "release-v1" / "certificate.json", [])
    return "release-v1"


def manifest_files_as_list(root: Path) -> str:
    manifest = _load(root / "release-v1" / "manifest.json")
    manifest["files"] = list(manifest["files"])
    _save(root / "release-v1" / "manifest.json", manifest)
    return "release-v1"


def manifest_not_an_object(root: Path) -> str:
    _save(root / "release-v1" / "manifest.json", [])
    return "release-v1"


def directory_for_parquet(root: Path) -> str:
    os.remove(root / "release-v1" / "train.parquet")
    (root / "release-v1" / "train.parquet").mkdir()
    return "release-v1"


CASES: list[tuple[Callable[[Path], str], str]] = [
    (forged_verdict, "certificate.json: verdict 'certified' differs from the signed 'not_certified'"),
    (rehashed_parquet, "train.parquet: changed since release (sha256 mismatch)"),
    (dropped_file, "eval.parquet: missing"),
    (extra_file, "more.parquet: not in the signed manifest (extra file)"),
    (renamed, "named release-v3 but its signed statement is for release-v1"),
    (copied, "named release-v7 but its signed statement is for release-v1"),
    (forged_signature, "does not verify (forged or altered)"),
    (attacker_claims_trusted_keyid, "does not verify (forged or altered)"),
    (untrusted_key, "signed by untrusted key"),
    (unsigned, "unsigned (no signature; pass --allow-unsigned"),
    (legacy_certificate, "not a signed attestation"),
    (certificate_not_an_object, "certificate.json: expected a JSON object, got list"),
    (manifest_files_as_list, "manifest.json: changed since the certificate was issued"),
    (manifest_not_an_object, "manifest.json: changed since the certificate was issued"),
    (directory_for_parquet, "train.parquet: not a regular file"),
]


@pytest.mark.parametrize("tamper, expected", CASES, ids=[c[0].__name__ for c in CASES])
def test_verify_and_fit_refuse_and_name_what_is_wrong(world, tamper, expected, tmp_path, capsys):
    from trainer.cli import main as trainer

    name = tamper(world)
    capsys.readouterr()
    assert curator(["verify", name]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert trainer(["fit", "--dataset", name, "--model", str(tmp_path / "never-loaded"), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


def test_untouched_releases_verify_with_their_signer(world, capsys):
    capsys.readouterr()
    assert curator(["verify", "release-v1"]) == 0
    out = capsys.readouterr().out
    assert "signed by trusted key" in out and "; certified;" in out
    assert curator(["verify", "release-v2"]) == 2
    assert "is not certified (failed: min_train_rows)" in capsys.readouterr().err
    assert curator(["verify", "release-v2", "--allow-uncertified"]) == 0


def test_allow_unsigned_accepts_an_untrusted_signer_but_still_checks_files(world, capsys):
    untrusted_key(world)
    capsys.readouterr()
    assert curator(["verify", "release-v1", "--allow-unsigned"]) == 0
    assert "UNSIGNED or untrusted signer, accepted by --allow-unsigned" in capsys.readouterr().out
    extra_file(world)
    assert curator(["verify", "release-v1", "--allow-unsigned"]) == 2
    assert "more.parquet: not in the signed manifest" in capsys.readouterr().err
    # a forged signature by a trusted key is tampering, not a missing signer: refused even with --allow-unsigned
    forged_signature(world)
    assert curator(["verify", "release-v2", "--allow-unsigned", "--allow-uncertified"]) == 2
    assert "does not verify" in capsys.readouterr().err


def test_trusting_the_signer_makes_its_release_verify(world, tmp_path, monkeypatch, capsys):
    signer = Ed25519PrivateKey.generate()
    _resign(world / "release-v1", _statement(world / "release-v1"), signer)
    assert curator(["verify", "release-v1"]) == 2
    capsys.readouterr()
    assert curator(["keys", "trust", public_text(signer.public_key())]) == 0
    assert key_id(signer.public_key()) in capsys.readouterr().out
    assert curator(["verify", "release-v1"]) == 0
    assert curator(["keys", "trust", "ed25519:abcd"]) == 2
    assert "not a public key" in capsys.readouterr().err


def test_keys_init_refuses_a_key_dir_inside_the_data_root_and_a_second_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INSTRUCT_CURATOR_KEYS", str(tmp_path / "data" / "keys"))
    assert curator(["keys", "init"]) == 2
    assert "inside the data root" in capsys.readouterr().err
    monkeypatch.setenv("INSTRUCT_CURATOR_KEYS", str(tmp_path / "keys"))
    assert curator(["keys", "init"]) == 0
    out = capsys.readouterr().out
    assert "curator keys trust ed25519:" in out
    assert oct((tmp_path / "keys" / "signing.key").stat().st_mode & 0o777) == "0o600"
    assert curator(["keys", "init"]) == 2
    assert "a signing key exists already" in capsys.readouterr().err


def test_fit_accepts_an_untrusted_signer_only_with_allow_unsigned_and_the_card_says_so(tmp_path, monkeypatch, capsys):
    from tiny_model import build_tiny_model, seed_pairs, starter_spec, write_fixture_release
    from trainer.cli import main as trainer

    spec = starter_spec()
    pairs = seed_pairs(spec)
    model = build_tiny_model(tmp_path / "model", pairs)
    monkeypatch.setenv("INSTRUCT_CURATOR_KEYS", str(tmp_path / "their-keys"))
    write_fixture_release(tmp_path / "data" / "releases", spec, train=pairs, eval=pairs[:6])
    monkeypatch.setenv("INSTRUCT_CURATOR_KEYS", str(tmp_path / "our-keys"))  # their signer is not trusted here
    capsys.readouterr()
    assert trainer(["fit", "--dataset", "release-v1", "--model", str(model), "--steps", "1"]) == 2
    assert "signed by untrusted key" in capsys.readouterr().err
    out = tmp_path / "run"
    assert trainer(["fit", "--dataset", "release-v1", "--model", str(model), "--steps", "1", "--allow-unsigned",
                    "--out", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["signature"] == {"signer": None, "allow_unsigned": True}
    card = (out / "README.md").read_text()
    assert "| Signature | **NOT verified**: unsigned or untrusted signer, accepted with `--allow-unsigned` |" in card
