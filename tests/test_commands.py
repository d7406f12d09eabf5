"""Commands on tasks (SPEC 6.2, 10): each changes the task as the SPEC says, records its
actor, refuses unknown tasks and people with exit 1, and shows up in `show`."""

from __future__ import annotations

import json

import pytest

NOW = "2026-11-24T16:30:00Z"
LATER = "2026-11-24T16:45:00Z"
SSO = "12"  # "SSO login loop after password reset": unowned acme task (see the demo README)
INVOICE = "3"  # "Invoice export fails": bob's


@pytest.fixture
def md(demo, run_cli):
    def run(*args: str, now: str = NOW):
        return run_cli("--config", demo, "--now", now, *args)

    return run


def task(md, task_id: str, now: str = NOW) -> dict:
    result = md("show", task_id, "--json", now=now)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def last_event(md, task_id: str, now: str = NOW) -> dict:
    return [e for e in task(md, task_id, now)["events"] if e["kind"] != "note"][-1]


def test_demo_ids_are_what_these_tests_expect(md):
    assert task(md, SSO)["subject"] == "SSO login loop after password reset"
    assert task(md, INVOICE)["owner"] == "bob"


def test_assign_to_someone_else_is_a_handoff_pending_acknowledgement(md):
    result = md("assign", SSO, "alice", "--as", "carol", "--note", "Alice knows SSO", "--json")
    assert result.exit_code == 0, result.output
    t = json.loads(result.stdout)
    assert t["owner"] == "alice"
    assert t["pending_handoff"]["from"] is None and t["pending_handoff"]["to"] == "alice"
    assert t["pending_handoff"]["due_at"] is not None
    ev = last_event(md, SSO)
    assert (ev["kind"], ev["rule"], ev["actor"], ev["owner_to"]) == (
        "handoff",
        "command assign",
        "carol",
        "alice",
    )
    notes = [e for e in task(md, SSO)["events"] if e["kind"] == "note"]
    assert notes and notes[-1]["detail"] == "Alice knows SSO"


def test_assign_to_yourself_is_a_claim_and_the_targets_own_assign_acknowledges(md):
    md("assign", SSO, "alice", "--as", "carol")
    result = md("assign", SSO, "alice", "--as", "alice", "--json", now=LATER)
    t = json.loads(result.stdout)
    assert t["owner"] == "alice" and t["pending_handoff"] is None
    assert last_event(md, SSO, LATER)["kind"] == "ack"
    claim = json.loads(md("assign", SSO, "carol", "--as", "carol", "--json", now=LATER).stdout)
    assert claim["owner"] == "carol" and claim["pending_handoff"] is None


def test_unassign_orphans_the_task(md):
    t = json.loads(md("unassign", INVOICE, "--as", "carol", "--json").stdout)
    assert t["owner"] is None and t["orphaned"] is True
    assert last_event(md, INVOICE)["actor"] == "carol"


def test_close_stops_the_clocks_and_reopen_opens(md):
    t = json.loads(md("close", INVOICE, "--as", "bob", "--json").stdout)
    assert t["status"] == "closed" and t["due_at"] is None and t["overdue"] is False
    listed = json.loads(md("tasks", "--json").stdout)
    assert INVOICE not in {str(x["id"]) for x in listed}
    t = json.loads(md("reopen", INVOICE, "--as", "bob", "--json", now=LATER).stdout)
    assert t["status"] == "open"
    assert last_event(md, INVOICE, LATER)["kind"] == "reopen"


def test_stage_moves_to_the_map_owner(md):
    t = json.loads(md("stage", SSO, "qa", "--as", "carol", "--json").stdout)
    assert t["stage"] == "qa" and t["owner"] == "carol"  # acme's map: qa = carol


def test_client_changes_the_sla(md):
    before = task(md, SSO)
    t = json.loads(md("client", SSO, "globex", "--as", "carol", "--json").stdout)
    assert t["client"] == "globex"
    assert t["due_at"] != before["due_at"]  # globex is standard tier in the office calendar


def test_due_sets_an_explicit_deadline(md):
    t = json.loads(md("due", SSO, "2026-12-01", "--as", "carol", "--json").stdout)
    clocks = task(md, SSO)["clocks"]
    assert any(c["kind"] == "due" and c["outcome"] == "running" for c in clocks)
    assert t["due_at"] is not None


def test_non_managers_may_act_only_on_their_own_tasks(md):
    refused = md("close", SSO, "--as", "alice")
    assert refused.exit_code == 1
    assert "may act only on tasks they own" in refused.stderr
    assert md("close", INVOICE, "--as", "bob").exit_code == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (("assign", "9999", "alice", "--as", "carol"), "unknown task"),
        (("assign", SSO, "zed", "--as", "carol"), "unknown person"),
        (("assign", SSO, "alice", "--as", "zed"), "unknown person"),
        (("stage", SSO, "nowhere", "--as", "carol"), "unknown stage"),
        (("client", SSO, "nobody", "--as", "carol"), "unknown client"),
        (("due", SSO, "someday", "--as", "carol"), "not a deadline"),
        (("close", "<no-such@id>", "--as", "carol"), "unknown task"),
    ],
)
def test_unknown_things_exit_1_with_a_clear_message(md, args, message):
    result = md(*args)
    assert result.exit_code == 1
    assert message in result.stderr


def test_without_as_the_os_user_must_be_on_the_roster(md):
    result = md("close", SSO)
    assert result.exit_code == 1
    assert "--as" in result.stderr


def test_reassign_hands_every_open_task_over_and_dry_run_changes_nothing(md):
    bobs = {t["id"] for t in json.loads(md("tasks", "--json", "--owner", "bob").stdout)}
    assert bobs
    dry = json.loads(
        md(
            "reassign", "--from", "bob", "--to", "alice", "--as", "carol", "--dry-run", "--json"
        ).stdout
    )
    assert {t["id"] for t in dry} == bobs
    assert {t["id"] for t in json.loads(md("tasks", "--json", "--owner", "bob").stdout)} == bobs
    moved = json.loads(
        md("reassign", "--from", "bob", "--to", "alice", "--as", "carol", "--json").stdout
    )
    assert {t["id"] for t in moved} == bobs
    assert all(t["owner"] == "alice" and t["pending_handoff"]["to"] == "alice" for t in moved)
    assert json.loads(md("tasks", "--json", "--owner", "bob").stdout) == []


def test_a_command_is_on_the_timeline_at_its_moment(md):
    md("assign", SSO, "alice", "--as", "carol", now=LATER)
    before = task(md, SSO)  # as of NOW, before the command was given
    assert before["owner"] is None
    after = json.loads(md("show", SSO, "--json", now=LATER).stdout)
    assert after["owner"] == "alice"


SUBJECT_JOINED = "<20261123134503.acme-invoice-6@mail.acme.com>"  # joined task 3 by subject


def test_split_moves_a_message_and_its_replies_out_and_merge_joins_them_back(md):
    before = task(md, INVOICE)
    result = md("split", SUBJECT_JOINED, "--as", "carol", "--json")
    assert result.exit_code == 0, result.output
    split_off = json.loads(result.stdout)
    assert split_off["id"] != before["id"]
    assert split_off["root_message_id"] == SUBJECT_JOINED
    assert split_off["messages"] == 2  # the message and the team's reply to it
    assert task(md, INVOICE)["messages"] == before["messages"] - 2
    first = task(md, str(split_off["id"]))["timeline"][0]
    assert first["joined_by"] == "split"
    merged = json.loads(
        md("merge", INVOICE, str(split_off["id"]), "--as", "carol", "--json").stdout
    )
    assert merged["id"] == before["id"] and merged["messages"] == before["messages"]
    # the merged-away id still finds the task
    assert task(md, str(split_off["id"]))["id"] == before["id"]


def test_split_of_a_first_message_or_unknown_message_is_refused(md):
    root = task(md, INVOICE)["root_message_id"]
    assert md("split", root, "--as", "carol").exit_code == 1
    assert md("split", "<nope@nowhere>", "--as", "carol").exit_code == 1
    assert md("merge", INVOICE, INVOICE, "--as", "carol").exit_code == 1
