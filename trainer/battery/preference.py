"""Battery failures as preference pairs, in TRL's conversational preference format (DPO).

One JSON object a line: `{"prompt": [messages], "chosen": [{"role": "assistant", ...}],
"rejected": [{"role": "assistant", ...}]}` plus provenance columns (`id`, `suite`, `group`,
`reason`), which TRL's DPO preprocessing drops. Pairs, from items of `run_battery` results:

- `tuned_regressed`: base passed, tuned failed: chosen = base response, rejected = tuned response;
- `tuned_fixed`: tuned passed, base failed: chosen = tuned response, rejected = base response;
- `reference_over_failure`: the response failed (both did, with a base) and the item has a reference
  answer: chosen = reference, rejected = the (tuned) response.

Items that passed on every side, or failed without a reference, give no pair.
"""
from __future__ import annotations


def _row(item: dict, chosen: str, rejected: str, reason: str) -> dict:
    return {
        "prompt": item["messages"],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "id": item["id"],
        "suite": item["suite"],
        "group": item["group"],
        "reason": reason,
    }


def preference_rows(tuned: dict, base: dict | None = None) -> list[dict]:
    """DPO rows from a `run_battery` result (`tuned`), paired with `base`'s where given."""
    base_items = {(i["suite"], i["id"]): i for i in base["items"]} if base else {}
    rows = []
    for item in tuned["items"]:
        other = base_items.get((item["suite"], item["id"]))
        if other is not None and other["passed"] != item["passed"]:
            if other["passed"]:
                rows.append(_row(item, other["response"], item["response"], "tuned_regressed"))
            else:
                rows.append(_row(item, item["response"], other["response"], "tuned_fixed"))
        elif not item["passed"] and item.get("reference") and item["reference"].strip() != item["response"].strip():
            rows.append(_row(item, item["reference"], item["response"], "reference_over_failure"))
    return rows
