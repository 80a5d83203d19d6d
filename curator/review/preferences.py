"""Response edits as preference pairs (edited = chosen, original = rejected), in the TRL DPO rows that
`trainer eval` writes (`trainer.battery.preference`): `prompt`, `chosen`, `rejected`, plus `id`, `suite`
(`human_review`), `group` (task family) and `reason`. Instruction edits change the prompt, so they give no pair."""
from __future__ import annotations


def edit_preference_rows(per_pair: dict[str, dict[str, dict]]) -> list[dict]:
    """One DPO row per live response edit (pair id -> reviewer -> decision, as `Decisions.per_pair`)."""
    rows = []
    for pair_id in sorted(per_pair):
        for reviewer, d in sorted(per_pair[pair_id].items()):
            if d["decision"] != "edit" or d["field"] != "response":
                continue
            last = max(i for i, m in enumerate(d["messages"]) if m["role"] == "assistant")
            rows.append({
                "prompt": d["messages"][:last],
                "chosen": [{"role": "assistant", "content": d["new_text"]}],
                "rejected": [{"role": "assistant", "content": d["old_text"]}],
                "id": pair_id,
                "suite": "human_review",
                "group": (d.get("cell") or ["?"])[0],
                "reason": f"edited by {reviewer} at {d['time']}",
            })
    return rows
