"""What a sync does with each diffed row, per sync type and mode: the action tables.

A join row of the diff has an *op* (added, changed, removed, maybe: a maybe-held row in the
model, same: unchanged, sent again only by ``--full-resync``). Per (type, mode), each op maps to
rows of (action, kind, ack): what the writer does, what the plan counts, and how an accepted
row enters the snapshot (insert / replace / delete).
"""

from __future__ import annotations

# (type, mode) -> {op: [(action, kind, ack), ...]}; ops missing from the map are not sent.
_ACTIONS: dict[tuple[str, str], dict[str, list[tuple[str, str, str]]]] = {
    ("records", "upsert"): {"added": [("upsert", "added", "insert")], "changed": [("upsert", "changed", "replace")]},
    ("records", "update"): {"added": [("update", "added", "insert")], "changed": [("update", "changed", "replace")]},
    ("records", "insert"): {"added": [("insert", "added", "insert")]},
    ("records", "mirror"): {
        "added": [("upsert", "added", "insert")],
        "changed": [("upsert", "changed", "replace")],
        "removed": [("remove", "removed", "delete")],
    },
    ("audience", "add"): {"added": [("join", "added", "insert")], "changed": [("join", "added", "replace")]},
    ("audience", "remove"): {"added": [("leave", "removed", "insert")], "changed": [("leave", "removed", "replace")]},
    # An identity change of a member is a leave of the old identity and a join of the new one.
    ("audience", "mirror"): {
        "added": [("join", "added", "insert")],
        "changed": [("leave", "removed", "delete"), ("join", "added", "insert")],
        "removed": [("leave", "removed", "delete")],
    },
    ("events", "insert"): {"added": [("track", "added", "insert")]},
}
# With --full-resync, rows whose hash did not change are sent again as:
_RESEND: dict[tuple[str, str], tuple[str, str, str]] = {
    ("records", "upsert"): ("upsert", "changed", "replace"),
    ("records", "update"): ("update", "changed", "replace"),
    ("records", "insert"): ("insert", "changed", "replace"),
    ("records", "mirror"): ("upsert", "changed", "replace"),
    ("audience", "add"): ("join", "added", "replace"),
    ("audience", "remove"): ("leave", "removed", "replace"),
    ("audience", "mirror"): ("join", "added", "replace"),
    ("events", "insert"): ("track", "added", "replace"),
}
# Send order by ack: removals first, so each kind of acknowledgement is one run of seqs.
_ORDER = {"delete": 0, "replace": 1, "insert": 2}


def outcomes_of(sync_type: str, mode: str, full_resync: bool) -> list[tuple[str, str, str, str]]:
    """(op, action, kind, ack) rows of the mode's action table; a maybe-held row is sent as an
    added one would be, and replaces its placeholder."""
    actions = _ACTIONS[(sync_type, mode)]
    out = [(op, *o) for op, items in actions.items() for o in items]
    out += [("maybe", action, kind, "replace") for action, kind, _ in actions.get("added", [])]
    if full_resync:
        out.append(("same", *_RESEND[(sync_type, mode)]))
    return out


def action_rows(sync_type: str, mode: str, full_resync: bool) -> list[tuple[str, str, str, str, int, bool]]:
    """(op, action, kind, ack, send order, use_old) rows of the constant table a delta joins.

    A removal, and the leave half of a changed audience member, speak for the old identity:
    they are sent with the snapshot's identifier values (``use_old``).
    """
    return [
        (op, action, kind, ack, _ORDER[ack], op == "removed" or (op == "changed" and ack == "delete"))
        for op, action, kind, ack in outcomes_of(sync_type, mode, full_resync)
    ]


def holds_rows(sync_type: str, mode: str) -> bool:
    """Whether rows are held before sending: only modes that send removals need to know which
    rows the destination may hold."""
    return "removed" in _ACTIONS[(sync_type, mode)]


__all__ = ["action_rows", "holds_rows", "outcomes_of"]
