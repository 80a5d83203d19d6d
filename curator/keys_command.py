"""`curator keys init | trust PUBKEY | show`: the signing key and the trusted signers (outside the data root)."""
from __future__ import annotations

import argparse

from curator.signing import init_key, key_id, keys_dir, public_text, signing_key, trust, trusted_keys


def _init(args: argparse.Namespace) -> int:
    key = init_key()
    print(f"{keys_dir()}: new signing key {key_id(key.public_key())}; others trust it with:")
    print(f"curator keys trust {public_text(key.public_key())}")
    return 0


def _trust(args: argparse.Namespace) -> int:
    print(f"{keys_dir() / 'trusted'}: trusting key {trust(args.pubkey)}")
    return 0


def _show(args: argparse.Namespace) -> int:
    local = key_id(signing_key().public_key())
    print(f"key directory: {keys_dir()}")
    for kid, public in trusted_keys().items():
        print(f"{kid}  {public_text(public)}{'  (this machine: signs releases)' if kid == local else ''}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="the key that signs releases, and the signers `verify` trusts",
                       description=__doc__ + " The directory is INSTRUCT_CURATOR_KEYS (default "
                       "~/.config/instruct-curator/keys); the gate creates a key there on first use.")
    keys = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    keys.add_parser("init", help="create this machine's signing key").set_defaults(func=_init)
    t = keys.add_parser("trust", help="trust another signer's public key (ed25519:<hex>, as `keys init` prints)")
    t.add_argument("pubkey")
    t.set_defaults(func=_trust)
    keys.add_parser("show", help="list the trusted keys (making the local key when there is none)").set_defaults(func=_show)
