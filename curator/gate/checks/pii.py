"""Personal data in a pair: e-mail addresses, phone numbers, payment cards, national ids, IP addresses.

What counts (and what is left alone on purpose, to keep false positives out):

- email: `local@domain.tld`; addresses at reserved example domains (example.com/.org/.net, *.example,
  *.test, *.invalid, localhost) and common placeholders (email.com, domain.com, sample.com,
  company.com, ...) are documentation, not people, and are ignored.
- phone: 10-15 digits written as a phone number: groups split by spaces, dots or dashes, a
  four-digit subscriber group: `+44 20 7946 0958`, `(415) 867-5309`, `604-457-4895`. A bare run of
  digits, a date, a sum or a list of years (`1997 2004 2004`: two or more 4-digit groups from
  1800-2099) is not a phone. North American numbers on the fictional 555 exchange
  (`(212) 555-0147`) are ignored.
- credit_card: 13-19 digits, ungrouped or in card groups (4-4-4-x, 4-6-5), not all one digit and not
  a list of years, that pass the Luhn check.
- national_id: US Social Security numbers written `AAA-GG-SSSS` with valid ranges (no 000/666/9xx
  area, no 00 group, no 0000 serial). Nine bare digits are too ambiguous to count.
- ip_address: IPv4 and IPv6 addresses that Python's `ipaddress` calls global: private, loopback,
  link-local, documentation and reserved ranges (192.168.x.x, 127.0.0.1, 2001:db8::) are what
  tutorials use and are ignored. A dotted quad right after "version"/"v"/"release", or followed by
  another ".digit" (1.2.3.4.5), is a version number and is ignored.

`action: reject` drops a row with personal data; `action: redact` replaces each match with a tag
(`[EMAIL]`, `[PHONE]`, `[CREDIT_CARD]`, `[NATIONAL_ID]`, `[IP_ADDRESS]`) in every message and keeps
the row under its new content id (`pair_id`); stats list every redaction with old and new ids.
"""
from __future__ import annotations

import copy
import ipaddress
import re
from collections import Counter
from dataclasses import replace
from typing import Callable, Iterator

from curator.gate.check import CheckResult, GateContext, Rejection, Row
from curator.records import pair_id
from curator.spec import PIIConfig, Spec

TAGS = {"email": "[EMAIL]", "phone": "[PHONE]", "credit_card": "[CREDIT_CARD]",
        "national_id": "[NATIONAL_ID]", "ip_address": "[IP_ADDRESS]"}

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?![\w-])")
EXAMPLE_DOMAIN = re.compile(r"@(.+\.)?(example\d*\.(com|org|net)"
                            r"|(e?mail|domain|sample|company|yourdomain|mydomain|test|acme)\.com"
                            r"|[\w-]+\.(example|test|invalid|localhost)|localhost)$",
                            re.IGNORECASE)
PHONE = re.compile(
    r"(?<![\w+.-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{2,4}[ .-]\d{4}(?:[ .-]\d{2,4})?"
    r"(?![\w.-]?\d)")
CARD = re.compile(r"(?<![\d-])(?:\d{13,19}|\d{4}(?:[ -]\d{4}){2}[ -]\d{1,7}|\d{4}[ -]\d{6}[ -]\d{4,5})(?![\d-])")
YEAR = re.compile(r"^(18|19|20)\d\d$")
SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
IPV4 = re.compile(r"(?<![\w.])(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?![\w]|\.\d)")
VERSION_BEFORE = re.compile(r"\b(version|ver\.?|release|v)\s*$", re.IGNORECASE)
IPV6 = re.compile(r"(?<![\w:])((?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{1,4})*"
                  r"|::(?:[0-9A-Fa-f]{1,4}:){1,6}[0-9A-Fa-f]{1,4})(?![\w:])")


def luhn_ok(digits: str) -> bool:
    total = 0
    for n, d in enumerate(reversed(digits)):
        v = int(d)
        if n % 2:
            v = v * 2 - 9 if v > 4 else v * 2
        total += v
    return total % 10 == 0


def _emails(text: str) -> Iterator[re.Match]:
    return (m for m in EMAIL.finditer(text) if not EXAMPLE_DOMAIN.search(m.group(0)))


def _phones(text: str) -> Iterator[re.Match]:
    for m in PHONE.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        fictional = len(digits) in (10, 11) and digits[-7:-4] == "555"  # NANP's fictional exchange
        years = sum(bool(YEAR.match(g)) for g in re.findall(r"\d+", m.group(0)))
        if 10 <= len(digits) <= 15 and not fictional and years < 2:
            yield m


def _cards(text: str) -> Iterator[re.Match]:
    for m in CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        years = sum(bool(YEAR.match(g)) for g in re.findall(r"\d+", m.group(0)))
        if 13 <= len(digits) <= 19 and len(set(digits)) > 1 and years < 2 and luhn_ok(digits):
            yield m


def _ssns(text: str) -> Iterator[re.Match]:
    return SSN.finditer(text)


def _ips(text: str) -> Iterator[re.Match]:
    for m in IPV4.finditer(text):
        if VERSION_BEFORE.search(text[max(0, m.start() - 10):m.start()]):
            continue
        try:
            if ipaddress.IPv4Address(m.group(1)).is_global:
                yield m
        except ValueError:
            continue
    for m in IPV6.finditer(text):
        try:
            if ipaddress.IPv6Address(m.group(1)).is_global:
                yield m
        except ValueError:
            continue


FINDERS: dict[str, Callable[[str], Iterator[re.Match]]] = {
    "credit_card": _cards, "national_id": _ssns, "email": _emails, "ip_address": _ips, "phone": _phones,
}


# A text none of the finders can match: no "@" (email), no run of 6 digits with single separators
# (phone, card, id), no dotted digits (IPv4), no two colons around hex digits (IPv6). Most rows are
# such texts, so one scan for this skips the five finders.
MAY_HOLD_PII = re.compile(r"@|\d(?:[ .()/-]?\d){5}|\d\.\d{1,3}\.\d{1,3}\.\d|:[0-9A-Fa-f]{0,4}:")


def find_pii(text: str, kinds: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """(kind, start, end) of every match, non-overlapping; cards and ids win over phones on overlap."""
    if not MAY_HOLD_PII.search(text):
        return []
    spans: list[tuple[str, int, int]] = []
    for kind, finder in FINDERS.items():
        if kind not in kinds:
            continue
        for m in finder(text):
            if all(m.end() <= s or m.start() >= e for _, s, e in spans):
                spans.append((kind, m.start(), m.end()))
    return sorted(spans, key=lambda s: s[1])


def redact(text: str, spans: list[tuple[str, int, int]]) -> str:
    out, last = [], 0
    for kind, start, end in spans:
        out += [text[last:start], TAGS[kind]]
        last = end
    return "".join(out) + text[last:]


class PIICheck:
    name = "pii"
    row_local = True  # a row's verdict depends on that row alone (curator.gate.stream runs it per batch)
    rewrites_records = True  # redaction: the streaming gate keeps the records as this check leaves them

    def __init__(self, config: PIIConfig):
        self.config = config

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext | None = None) -> "PIICheck":
        return cls(spec.gate.pii)

    def run(self, rows: list[Row]) -> CheckResult:
        kinds = self.config.kinds
        kept: list[Row] = []
        rejected: list[Rejection] = []
        found: Counter[str] = Counter()
        redactions: list[dict] = []
        for row in rows:
            per_message = [find_pii(m["content"], kinds) for m in row.record["messages"]]
            counts = Counter(kind for spans in per_message for kind, _, _ in spans)
            if not counts:
                kept.append(row)
                continue
            found.update(counts)
            summary = ", ".join(f"{kind} x{n}" for kind, n in sorted(counts.items()))
            roles = sorted({m["role"] for m, spans in zip(row.record["messages"], per_message) if spans})
            if self.config.action == "reject":
                rejected.append(Rejection(row, f"pii: {summary} in {'/'.join(roles)}"))
                continue
            record = copy.deepcopy(row.record)
            for message, spans in zip(record["messages"], per_message):
                message["content"] = redact(message["content"], spans)
            record["id"] = pair_id(record["messages"])
            redactions.append({"origin": row.origin, "old_id": row.id, "new_id": record["id"], "found": dict(counts)})
            kept.append(replace(row, record=record))
        stats = {
            "checked": len(rows),
            "action": self.config.action,
            "kinds": list(kinds),
            "rows_with_pii": len(rejected) + len(redactions),
            "found": {kind: found.get(kind, 0) for kind in kinds},
            "redacted": redactions,
            "removed": len(rejected),
        }
        return CheckResult(kept, rejected, stats)
