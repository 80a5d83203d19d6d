"""The gate's checks, in the order they run: schema, exact duplicates, near duplicates."""
from __future__ import annotations

from curator.gate.check import Check
from curator.gate.checks.exact_dedup import ExactDedup
from curator.gate.checks.near_dedup import NearDedup
from curator.gate.checks.schema import SchemaCheck
from curator.spec import Spec


def checks_for(spec: Spec) -> list[Check]:
    """The checks the spec's gate section switches on, in order."""
    checks: list[Check] = [SchemaCheck(spec)]
    if spec.gate.exact_dedup:
        checks.append(ExactDedup())
    if spec.gate.minhash.enabled:
        mh = spec.gate.minhash
        checks.append(NearDedup(threshold=mh.threshold, num_perm=mh.num_perm, ngram=mh.ngram))
    return checks
