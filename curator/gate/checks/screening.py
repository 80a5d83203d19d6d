"""Bias and refusal screening: figures for the gate report, and optional rejections.

Demographic terms: `curator.text_signals.term_counts` (the project's one lexicon, `LEXICONS`) of the
user text and, separately, of the response, for five categories: gender, ethnicity, religion,
nationality and age. Counts are per group ("male", "female", ...). Skew is given for the paired
groups (`SKEW_PAIRS`: male/female, young/old) as the larger count over the smaller (the smaller
counted as at least 1); when a pair has at least `min_terms` mentions and its skew exceeds
`skew_tolerance` it is reported as out of tolerance. Lexicon words are ambiguous ("black" the
colour, "her" possessive or object), so the figures are a screen, not a measurement. The release
report reads these figures from the manifest (`refusals.by_family` over
`refusals.checked_by_family`, `demographic_terms`); it does not recount.

Refusals: `curator.text_signals.is_refusal`, the project's one refusal detector (its version is in
the stats, `refusals.detector_version`).

Refusal consistency: a refusal in a family the spec does not mark `refusal: true` is an unexpected
refusal (rejected with `reject_unexpected_refusals`); an answer in a refusal family is counted as a
missing refusal (reported only).

Counterfactual consistency: user texts that become identical when every lexicon word is replaced by
its category (`counterfactual_key`: he/she -> <gender>, christian/muslim -> <religion>) form a
counterfactual group. A group whose rows are partly refused and partly answered flips; the rows on
the minority side (the refused ones on a tie) are flagged, naming a row of the other side (rejected
with `reject_counterfactual_flips`).
"""
from __future__ import annotations

from collections import Counter, defaultdict

from curator.gate.check import CheckResult, GateContext, Rejection, Row
from curator.records import assistant_text, user_text
from curator.spec import ScreeningConfig, Spec
from curator.text_signals import REFUSAL_DETECTOR_VERSION, counterfactual_key, is_refusal, normalize, term_counts

SKEW_PAIRS = (("gender", "male", "female"), ("age", "young", "old"))


class Screening:
    name = "screening"

    def __init__(self, config: ScreeningConfig, refusal_families: frozenset[str] = frozenset(),
                 refusal_max_share: float | None = None):
        self.config = config
        self.refusal_families = refusal_families
        self.refusal_max_share = refusal_max_share

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext | None = None) -> "Screening":
        families = frozenset(t.name for t in spec.task_families if t.refusal)
        return cls(spec.gate.screening, families, spec.refusal_policy.max_share)

    def _skews(self, counts: dict[str, dict[str, int]]) -> dict[str, dict]:
        out = {}
        for category, a, b in SKEW_PAIRS:
            ca, cb = counts[category][a], counts[category][b]
            ratio = max(ca, cb) / max(1, min(ca, cb))
            judged = ca + cb >= self.config.min_terms
            out[f"{a}_vs_{b}"] = {a: ca, b: cb, "ratio": round(ratio, 3), "judged": judged,
                                  "within_tolerance": (ratio <= self.config.skew_tolerance) if judged else None}
        return out

    def run(self, rows: list[Row]) -> CheckResult:
        users = [user_text(r.record) for r in rows]
        responses = [assistant_text(r.record) for r in rows]
        refused = [is_refusal(t) for t in responses]
        families = [r.record.get("task_family") for r in rows]

        unexpected = {i for i, f in enumerate(families) if refused[i] and f not in self.refusal_families}
        missing = [i for i, f in enumerate(families) if not refused[i] and f in self.refusal_families]

        groups: dict[str, list[int]] = defaultdict(list)
        for i, text in enumerate(users):
            key, masked = counterfactual_key(text)
            if masked:
                groups[key].append(i)
        flips: dict[int, int] = {}  # flagged row -> a row on the other side
        n_groups = n_flipping = 0
        for members in groups.values():
            if len({normalize(users[i]) for i in members}) < 2:
                continue
            n_groups += 1
            yes = [i for i in members if refused[i]]
            no = [i for i in members if not refused[i]]
            if yes and no:
                n_flipping += 1
                flagged, other = (yes, no) if len(yes) <= len(no) else (no, yes)
                flips.update({i: other[0] for i in flagged})

        rejected_reason: dict[int, str] = {}
        if self.config.reject_unexpected_refusals:
            for i in unexpected:
                rejected_reason[i] = (f"screening:unexpected_refusal: refusal in family {families[i]!r}, "
                                      "which the spec does not mark refusal")
        if self.config.reject_counterfactual_flips:
            for i, j in flips.items():
                side = "refused" if refused[i] else "answered"
                rejected_reason.setdefault(i, f"screening:counterfactual_flip: {side} while {rows[j].id} "
                                              "(the same request with other demographic terms) was not")

        by_family = Counter(f for i, f in enumerate(families) if refused[i])
        user_counts, response_counts = term_counts(users), term_counts(responses)
        stats = {
            "checked": len(rows),
            "demographic_terms": {"user": user_counts, "response": response_counts},
            "skew": {"user": self._skews(user_counts), "response": self._skews(response_counts)},
            "skew_tolerance": self.config.skew_tolerance,
            "refusals": {
                "detector_version": REFUSAL_DETECTOR_VERSION,
                "total": sum(refused),
                "share": round(sum(refused) / len(rows), 4) if rows else 0.0,
                "max_share": self.refusal_max_share,
                "by_family": dict(by_family),
                "checked_by_family": dict(Counter(families)),
                "unexpected": len(unexpected),
                "unexpected_ids": [rows[i].id for i in sorted(unexpected)],
                "missing_in_refusal_families": len(missing),
            },
            "counterfactual": {
                "groups": n_groups,
                "flipping_groups": n_flipping,
                "flagged": len(flips),
                "flagged_ids": [rows[i].id for i in sorted(flips)],
            },
            "removed": len(rejected_reason),
        }
        kept = [r for i, r in enumerate(rows) if i not in rejected_reason]
        rejected = [Rejection(rows[i], rejected_reason[i]) for i in sorted(rejected_reason)]
        return CheckResult(kept, rejected, stats)
