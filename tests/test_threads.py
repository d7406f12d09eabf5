"""Threading (SPEC 5): fixture folders in, threads and the rule behind each placement out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maildaemon.config import parse_config
from maildaemon.ingest import import_paths
from maildaemon.model import Stored
from maildaemon.parsers import parse_message
from maildaemon.store import Store
from maildaemon.threads import Rules, thread_messages

FIXTURES = Path(__file__).parent / "data" / "threading"
SEEN = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CONFIG = parse_config(
    """
[team]
domains = ["example.com"]
shared_addresses = ["support@example.com"]
[[people]]
name = "alice"
email = "alice@example.com"
[[people]]
name = "carol"
email = "carol@example.com"
manager = true
[[clients]]
name = "acme"
domains = ["acme.com"]
[[clients]]
name = "globex"
domains = ["globex.de"]
"""
)


def load(scenario: str) -> dict[str, Stored]:
    """Each fixture file of a scenario, parsed, by its file stem ("01", "02", ...)."""
    out = {}
    for path in sorted((FIXTURES / scenario).glob("*.eml")):
        m = parse_message(path.read_bytes(), received_at=SEEN)
        out[path.stem] = Stored(m, SEEN, ("support",), True)
    return out


def rules(subject_fallback: bool = True) -> Rules:
    return Rules(
        subject_fallback=subject_fallback,
        is_team=CONFIG.is_team_address,
        is_shared=CONFIG.is_shared_address,
    )


def groups(
    scenario: str, subject_fallback: bool = True
) -> tuple[set[frozenset[str]], dict[str, str]]:
    """The threads as sets of file stems, and the rule that placed each file."""
    files = load(scenario)
    stem = {s.message.message_id: name for name, s in files.items()}
    threads = thread_messages(files.values(), rules(subject_fallback))
    placed = {}
    found = set()
    for t in threads:
        found.add(frozenset(stem[i] for i in t.message_ids))
        for mid, why in zip(t.message_ids, t.joined_by, strict=True):
            placed[stem[mid]] = why
    return found, placed


def test_reply_chain_is_one_thread_linked_by_in_reply_to():
    found, placed = groups("chain")
    assert found == {frozenset({"01", "02", "03", "04"})}
    assert placed == {"01": "root", "02": "in-reply-to", "03": "in-reply-to", "04": "in-reply-to"}


def test_lenient_ids_link_without_brackets_commas_folding_and_encoded_words():
    found, placed = groups("lenient-ids", subject_fallback=False)
    assert found == {frozenset({"01", "02", "03", "04", "05"})}
    assert placed["02"] == "in-reply-to"
    assert placed["03"] == "references"
    assert placed["04"] == "references"
    assert placed["05"] == "in-reply-to"


def test_messages_sharing_an_unseen_parent_are_one_thread():
    found, placed = groups("unseen-parent")
    assert found == {frozenset({"01", "02"})}
    assert placed == {"01": "root", "02": "unseen-parent"}


def test_a_late_reply_linking_two_roots_joins_them():
    found, _ = groups("late-merge")
    assert found == {frozenset({"01", "02", "03"})}


def test_subject_fallback_joins_a_participant_within_30_days():
    found, placed = groups("subject-participant")
    assert found == {frozenset({"01", "02", "03"})}
    assert placed["03"] == "subject"


def test_subject_fallback_off_keeps_headerless_reply_apart():
    found, _ = groups("subject-participant", subject_fallback=False)
    assert found == {frozenset({"01", "02"}), frozenset({"03"})}


@pytest.mark.parametrize("scenario", ["subject-stranger", "subject-window", "subject-generic"])
def test_subject_alone_never_joins_a_stranger_an_old_thread_or_a_generic_subject(scenario):
    found, placed = groups(scenario)
    assert found == {frozenset({"01", "02"}), frozenset({"03"})}
    assert placed["03"] == "root"


def test_team_forward_joins_a_thread_that_reached_a_shared_inbox():
    found, placed = groups("forward-team")
    assert found == {frozenset({"01", "02"})}
    assert placed["02"] == "forward"


def test_outlook_thread_index_joins_the_conversation_and_nothing_else():
    found, placed = groups("thread-index")
    assert found == {frozenset({"01", "02"}), frozenset({"03"})}
    assert placed["02"] == "thread-index"


def test_references_loop_terminates_in_one_thread():
    found, _ = groups("references-loop")
    assert found == {frozenset({"01", "02", "03"})}


def test_header_links_win_over_subject_placement():
    found, placed = groups("header-beats-subject")
    assert found == {frozenset({"01"}), frozenset({"02", "03", "04"})}
    assert placed["04"] == "root"


# -- through the store: task ids, merges, moves ---------------------------------------------


def _import(store: Store, *paths: Path, now: datetime = SEEN) -> None:
    import_paths(store, CONFIG, list(paths), inbox="import", now=now, workers=1)


def _task_of(store: Store, path: Path) -> int:
    mid = parse_message(path.read_bytes(), received_at=SEEN).message_id
    task = store.resolve_task(mid)
    assert task is not None
    return task


def test_late_merge_keeps_the_older_task_id_and_the_old_id_still_finds_it(tmp_path):
    d = FIXTURES / "late-merge"
    with Store(tmp_path / "t.db") as store:
        _import(store, d / "01.eml")
        _import(store, d / "02.eml")
        first, second = _task_of(store, d / "01.eml"), _task_of(store, d / "02.eml")
        assert first != second
        _import(store, d / "03.eml")
        assert {_task_of(store, d / f"0{i}.eml") for i in (1, 2, 3)} == {first}
        assert store.resolve_task(str(second)) == first
        kinds = [e["kind"] for e in store.events_for(first)]
        assert "merged" in kinds


def test_task_reference_joins_the_named_task(tmp_path):
    d = FIXTURES / "task-ref"
    with Store(tmp_path / "t.db") as store:
        _import(store, d / "01.eml")
        assert _task_of(store, d / "01.eml") == 1
        _import(store, d / "02.eml", now=SEEN + timedelta(minutes=5))
        assert _task_of(store, d / "02.eml") == 1
        row = store.query("SELECT joined_by FROM messages WHERE joined_by = 'task-ref'")
        assert len(row) == 1


def test_a_task_reference_never_names_a_task_created_in_the_same_batch(tmp_path):
    d = FIXTURES / "task-ref"
    with Store(tmp_path / "t.db") as store:
        _import(store, d)  # both at once: task 1 did not exist when 02 arrived
        assert _task_of(store, d / "01.eml") != _task_of(store, d / "02.eml")


def test_a_message_placed_by_subject_moves_when_headers_place_it_elsewhere(tmp_path):
    d = FIXTURES / "header-beats-subject"
    with Store(tmp_path / "t.db") as store:
        _import(store, d / "01.eml")
        _import(store, d / "02.eml")
        a = _task_of(store, d / "01.eml")
        assert _task_of(store, d / "02.eml") == a
        _import(store, d / "03.eml")
        _import(store, d / "04.eml")
        c = _task_of(store, d / "04.eml")
        assert c != a
        assert _task_of(store, d / "02.eml") == c
        assert _task_of(store, d / "03.eml") == c
        assert any(e["kind"] == "moved" for e in store.events_for(c))


def test_duplicate_message_id_is_stored_once(tmp_path):
    with Store(tmp_path / "t.db") as store:
        _import(store, FIXTURES / "duplicate-id")
        assert store.query("SELECT COUNT(*) AS n FROM messages")[0]["n"] == 1
        assert store.query("SELECT COUNT(*) AS n FROM locations")[0]["n"] == 2


def test_import_is_idempotent(tmp_path):
    with Store(tmp_path / "t.db") as store:
        _import(store, FIXTURES)
        before = store.query("SELECT message_id, task_id, joined_by FROM messages ORDER BY 1")
        _import(store, FIXTURES)
        after = store.query("SELECT message_id, task_id, joined_by FROM messages ORDER BY 1")
        assert [tuple(r) for r in before] == [tuple(r) for r in after]


def test_a_resent_copy_with_other_threading_headers_replaces_the_stored_one(tmp_path):
    """An author re-sends a mail (same Message-ID) without In-Reply-To to start afresh."""
    d = FIXTURES / "chain"
    first = (d / "02.eml").read_bytes()
    message_id = parse_message(first, received_at=SEEN).message_id
    head, body = first.split(b"\n\n", 1)
    detached = b"\n".join(
        line
        for line in head.split(b"\n")
        if not line.lower().startswith((b"in-reply-to:", b"references:", b" ", b"\t"))
        or line.lower().startswith(b"subject:")
    )
    resent = tmp_path / "resent.eml"
    resent.write_bytes(detached + b"\n\n" + body)
    with Store(tmp_path / "t.db") as store:
        _import(store, d / "01.eml", d / "02.eml")
        assert _task_of(store, d / "01.eml") == store.resolve_task(message_id)
        _import(store, resent)
        assert store.query("SELECT COUNT(*) AS n FROM messages")[0]["n"] == 2
        assert _task_of(store, d / "01.eml") != store.resolve_task(message_id)


def test_new_mail_re_derives_only_the_threads_it_touched(tmp_path):
    from maildaemon import ingest, sources

    chain = FIXTURES / "chain"
    with Store(tmp_path / "t.db") as store:
        everything_but_last = [p for p in sorted(FIXTURES.rglob("*.eml")) if p != chain / "04.eml"]
        _import(store, *everything_but_last)
        task = _task_of(store, chain / "01.eml")
        source, todo = ingest.pending_items(store, "import", chain / "04.eml")
        result = ingest.ingest_items(
            store, todo, inbox="import", source=source, shared=True, text_cap=16384, now=SEEN
        )
        plan = ingest.rederive(store, CONFIG, SEEN, fresh=result.fresh)
        assert set(plan.writes.derived) == {task}
        assert (
            plan.tasks == store.query("SELECT COUNT(*) AS n FROM tasks WHERE is_task = 1")[0]["n"]
        )
        assert sources.kind_of(chain / "04.eml") == "eml"
