"""Signing keys and signed attestations (Ed25519 through `cryptography`, DSSE envelopes around in-toto statements).

Keys live outside the data root, in `INSTRUCT_CURATOR_KEYS` (default `~/.config/instruct-curator/keys`):
  signing.key          this machine's private key (32 raw bytes as hex, mode 0600); made by `curator keys init`,
                       or at the first gate when there is none, and trusted here automatically
  trusted/<keyid>.pub  public keys of other signers (`curator keys trust ed25519:<hex>`)

A public key is written `ed25519:<64 hex digits>`; its key id is the first 16 hex digits of sha256 of the raw key.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from curator.errors import CuratorError
from curator.hashing import canonical_json
from curator.paths import data_root

PAYLOAD_TYPE = "application/vnd.in-toto+json"
KEY_FILE = "signing.key"
PREFIX = "ed25519:"


class KeyFileError(CuratorError):
    """A key that is missing, malformed, or stored where it must not be."""


class SignatureError(CuratorError):
    """An envelope that is not signed, signed by an untrusted key, or whose signature does not verify."""


def keys_dir() -> Path:
    """`INSTRUCT_CURATOR_KEYS`, or `~/.config/instruct-curator/keys`."""
    configured = os.environ.get("INSTRUCT_CURATOR_KEYS")
    return Path(configured) if configured else Path.home() / ".config" / "instruct-curator" / "keys"


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(_raw(public)).hexdigest()[:16]


def public_text(public: Ed25519PublicKey) -> str:
    """`ed25519:<hex>`: what `curator keys trust` takes."""
    return PREFIX + _raw(public).hex()


def parse_public(text: str) -> Ed25519PublicKey:
    """A public key from `ed25519:<64 hex digits>`; KeyFileError naming what is wrong otherwise."""
    body = text.strip().removeprefix(PREFIX)
    try:
        raw = bytes.fromhex(body)
        if len(raw) != 32:
            raise ValueError
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise KeyFileError(f"not a public key: expected {PREFIX}<64 hex digits>, got {text[:80]!r}") from None


def _check_outside_data_root(directory: Path) -> None:
    data = data_root().resolve()
    where = directory.resolve()
    if where == data or data in where.parents:
        raise KeyFileError(f"key directory {directory} is inside the data root {data}; set INSTRUCT_CURATOR_KEYS elsewhere")


def init_key(directory: Path | None = None) -> Ed25519PrivateKey:
    """Create this machine's signing key; KeyFileError when one exists already."""
    directory = keys_dir() if directory is None else directory
    _check_outside_data_root(directory)
    path = directory / KEY_FILE
    if path.exists():
        raise KeyFileError(f"{path}: a signing key exists already (public key {public_text(load_key(directory).public_key())})")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    tmp = directory / f".{KEY_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(raw.hex() + "\n")
    try:
        os.link(tmp, path)  # appears complete or not at all; FileExistsError when another process won
    finally:
        os.unlink(tmp)
    return key


def load_key(directory: Path | None = None) -> Ed25519PrivateKey:
    """This machine's signing key; KeyFileError when it is missing or malformed."""
    path = (keys_dir() if directory is None else directory) / KEY_FILE
    try:
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(path.read_text().strip()))
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no signing key (run `curator keys init`)") from None
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise KeyFileError(f"{path}: unreadable signing key ({type(e).__name__})") from None


def signing_key() -> Ed25519PrivateKey:
    """The local key, created on first use (outside the data root)."""
    directory = keys_dir()
    if not (directory / KEY_FILE).exists():
        try:
            return init_key(directory)
        except FileExistsError:  # another gate made it meanwhile
            pass
    return load_key(directory)


def trust(text: str) -> str:
    """Add a signer's public key to the trusted keys; return its key id."""
    public = parse_public(text)
    directory = keys_dir() / "trusted"
    _check_outside_data_root(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    (directory / f"{key_id(public)}.pub").write_text(public_text(public) + "\n")
    return key_id(public)


def trusted_keys() -> dict[str, Ed25519PublicKey]:
    """Key id -> public key: the local key (when there is one) and every trusted/*.pub."""
    directory = keys_dir()
    out: dict[str, Ed25519PublicKey] = {}
    if (directory / KEY_FILE).exists():
        local = load_key(directory).public_key()
        out[key_id(local)] = local
    for path in sorted((directory / "trusted").glob("*.pub")):
        public = parse_public(path.read_text())
        out[key_id(public)] = public
    return out


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: what is signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def sign(statement: dict, key: Ed25519PrivateKey) -> dict:
    """A DSSE envelope carrying `statement` (canonical JSON) with one Ed25519 signature."""
    payload = canonical_json(statement).encode()
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key_id(key.public_key()), "sig": base64.b64encode(key.sign(pae(PAYLOAD_TYPE, payload))).decode()}],
    }


@dataclass(frozen=True)
class Opened:
    """An envelope's statement, and the trusted key id that signed it (None when accepted unsigned)."""

    statement: dict
    signer: str | None


def open_envelope(envelope: object, trusted: dict[str, Ed25519PublicKey], allow_unsigned: bool = False) -> Opened:
    """The statement inside `envelope`, after checking a signature by a trusted key.

    Refused (SignatureError): not an envelope; no signature; only untrusted signers (unless `allow_unsigned`);
    a signature by a trusted key that does not verify (always: that is tampering, not a missing signer).
    """
    if not isinstance(envelope, dict) or envelope.get("payloadType") != PAYLOAD_TYPE or not isinstance(envelope.get("payload"), str):
        raise SignatureError("not a signed attestation (no DSSE envelope with an in-toto payload; written by an older version?)")
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        statement = json.loads(payload)
    except (binascii.Error, ValueError):
        raise SignatureError("the attestation's payload is not base64 JSON") from None
    if not isinstance(statement, dict):
        raise SignatureError("the attestation's payload is not a JSON object")
    signatures = envelope.get("signatures")
    signatures = [s for s in signatures if isinstance(s, dict)] if isinstance(signatures, list) else []
    unknown = []
    for entry in signatures:
        keyid, sig = entry.get("keyid"), entry.get("sig")
        if keyid not in trusted:
            unknown.append(str(keyid))
            continue
        try:
            trusted[keyid].verify(base64.b64decode(str(sig), validate=True), pae(PAYLOAD_TYPE, payload))
        except (InvalidSignature, binascii.Error, ValueError):
            raise SignatureError(f"the signature by trusted key {keyid} does not verify (forged or altered)") from None
        return Opened(statement, keyid)
    if allow_unsigned:
        return Opened(statement, None)
    if unknown:
        raise SignatureError(f"signed by untrusted key {', '.join(unknown)} (trust it with `curator keys trust ed25519:...`, "
                             "or pass --allow-unsigned)")
    raise SignatureError("unsigned (no signature; pass --allow-unsigned to accept it)")
