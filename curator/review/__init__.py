"""Human review: `curator review` serves a queue of pairs to people, whose decisions go to an append-only
ledger that `curator gate` obeys (`curator.gate.checks.human_review`)."""
