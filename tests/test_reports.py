"""Manager reports on the demo ledger: orphans, the responsibility map, the SLA report, and
recompute after a config change (SPEC 6.2, 6.3, 7, 8, 10)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from maildaemon.config import load_config
from maildaemon.ledger import derivation_fingerprint
from maildaemon.store import Store

DEMO_NOW = "2026-11-24T16:30:00Z"
BOB = 'name = "bob"\nemail = "bob@example.com"\nrole = "engineering"\n'


def _json(run_cli: Any, demo: Path, *args: str) -> Any:
    result = run_cli("--config", demo, "--now", DEMO_NOW, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _edit(config: Path, old: str, new: str) -> None:
    text = config.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    config.write_text(text.replace(old, new), encoding="utf-8")


def _snapshot(db: Path) -> tuple[list[Any], list[Any]]:
    with sqlite3.connect(db) as conn:
        tasks = conn.execute("SELECT * FROM tasks ORDER BY id").fetchall()
        clocks = conn.execute("SELECT * FROM clocks ORDER BY task_id, kind, started_at").fetchall()
    return tasks, clocks


def test_report_commands_have_help(run_cli):
    for args in (["orphans"], ["map"], ["sla"], ["sla", "report"], ["recompute"]):
        result = run_cli(*args, "--help")
        assert result.exit_code == 0, args
        assert "Usage:" in result.output


# -- orphans -------------------------------------------------------------------------------


def test_orphans_lists_the_unowned_demo_tasks_with_reason_and_command(demo, run_cli):
    report = _json(run_cli, demo, "orphans")
    orphaned = report["orphaned"]
    assert [t["id"] for t in orphaned] == [12, 11]  # 12 is overdue: most urgent first
    assert orphaned[0]["subject"].startswith("SSO login loop")
    assert orphaned[1]["subject"].startswith("Zugang für neuen Kollegen")
    assert {t["orphan_reason"] for t in orphaned} == {"unowned"}
    # The map's intake owner for both clients is alice.
    assert [t["command"] for t in orphaned] == [
        "maildaemon assign 12 alice",
        "maildaemon assign 11 alice",
    ]
    assert report["covered"] == []  # dave is away with a cover, but owns no open task

    text = run_cli("--config", demo, "--now", DEMO_NOW, "orphans").stdout
    assert "maildaemon assign 12 alice" in text and "SSO login loop" in text


def test_tasks_of_an_owner_away_with_cover_are_covered_not_orphaned(demo, run_cli):
    _edit(
        demo, BOB, BOB + 'away = { from = "2026-11-24", until = "2026-11-30", cover = "carol" }\n'
    )
    report = _json(run_cli, demo, "orphans")
    assert [t["id"] for t in report["orphaned"]] == [12, 11]
    covered = {t["id"]: t for t in report["covered"]}
    assert set(covered) == {1, 3, 7, 8}  # bob's open and waiting tasks
    assert {t["covered_by"] for t in covered.values()} == {"carol"}
    assert {t["away_until"] for t in covered.values()} == {"2026-11-30"}
    assert "Covered" in run_cli("--config", demo, "--now", DEMO_NOW, "orphans").stdout


def test_tasks_of_an_owner_away_without_cover_are_orphaned(demo, run_cli):
    _edit(demo, BOB, BOB + 'away = { from = "2026-11-24", until = "2026-11-30" }\n')
    report = _json(run_cli, demo, "orphans")
    by_id = {t["id"]: t for t in report["orphaned"]}
    assert set(by_id) == {1, 3, 7, 8, 11, 12}
    assert by_id[3]["orphan_reason"] == "owner bob is away with no cover"
    # Task 7 is in engineering, whose acme owner is bob himself: no one to suggest.
    assert by_id[7]["command"] == "maildaemon assign 7 PERSON"
    assert report["covered"] == []


# -- map -----------------------------------------------------------------------------------


def test_map_marks_globex_holes_and_acme_delivery_covered(demo, run_cli):
    board = _json(run_cli, demo, "map")
    assert board["stages"] == ["intake", "engineering", "qa", "delivery"]
    rows = {r["client"]: r["cells"] for r in board["clients"]}
    assert list(rows) == ["acme", "globex", "initech"]
    assert rows["globex"]["qa"]["owner"] is None
    assert rows["globex"]["qa"]["hole"] == "no owner for stage qa of globex"
    assert rows["globex"]["delivery"]["hole"] is not None
    assert {(h["client"], h["stage"]) for h in board["holes"]} == {
        ("globex", "qa"),
        ("globex", "delivery"),
    }
    acme_delivery = rows["acme"]["delivery"]
    assert acme_delivery["owner"] == "dave"
    assert acme_delivery["hole"] is None
    assert acme_delivery["covered_by"] == "bob"
    assert {"client": "acme", "stage": "delivery", "owner": "dave"}.items() <= next(
        c for c in board["covered"] if c["client"] == "acme"
    ).items()
    # Task 7 is the one open acme task in a stage: engineering, bob's cell.
    assert rows["acme"]["engineering"] == {
        "owner": "bob",
        "hole": None,
        "covered_by": None,
        "away_until": None,
        "open_tasks": 1,
    }

    text = run_cli("--config", demo, "--now", DEMO_NOW, "map").stdout
    assert "HOLE" in text and "globex / qa: no owner" in text
    assert "covered by bob" in text


def test_map_marks_an_inactive_owner_and_an_away_owner_without_cover(demo, run_cli):
    _edit(demo, 'until = "2026-12-04", cover = "bob" }', 'until = "2026-12-04" }')
    _edit(
        demo,
        'qa = "carol", delivery = "dave" }\n\n[[clients]]\nname = "globex"',
        'qa = "erin", delivery = "dave" }\n\n[[clients]]\nname = "globex"',
    )
    board = _json(run_cli, demo, "map")
    holes = {(h["client"], h["stage"]): h["reason"] for h in board["holes"]}
    assert holes[("acme", "qa")] == "owner erin is inactive"
    assert holes[("acme", "delivery")] == "owner dave is away until 2026-12-04 with no cover"
    assert board["covered"] == []


# -- sla report ----------------------------------------------------------------------------


def test_sla_report_counts_outcomes_and_medians_per_client(demo, run_cli):
    report = _json(run_cli, demo, "sla", "report")
    assert report["until"] == DEMO_NOW
    clients = {c["client"]: c for c in report["clients"]}
    assert list(clients) == ["acme", "globex", "initech"]
    acme = clients["acme"]
    assert acme["tier"] == "gold" and acme["calendar"] == "us-east-7d"
    fr = acme["clocks"]["first_response"]
    assert (fr["met"], fr["missed"]) == (4, 0)
    assert 0 < fr["median_business_hours"] < 2  # all four answered within the 2h target
    assert (acme["clocks"]["handoff_ack"]["met"], acme["clocks"]["handoff_ack"]["missed"]) == (2, 1)
    overdue = {(o["task_id"], o["kind"]) for o in acme["overdue"]}
    assert (12, "first_response") in overdue and (8, "handoff_ack") in overdue
    globex = clients["globex"]["clocks"]["first_response"]
    assert (globex["met"], globex["missed"], globex["void"]) == (1, 1, 1)
    assert globex["median_business_hours"] is not None
    initech = clients["initech"]["clocks"]["first_response"]
    assert (initech["met"], initech["missed"]) == (0, 1)
    assert initech["median_business_hours"] > 4  # missed a 4h target

    text = run_cli("--config", demo, "--now", DEMO_NOW, "sla", "report").stdout
    assert "first_response" in text and "overdue now: #12" in text


def test_sla_report_filters_by_client_and_since(demo, run_cli):
    only = _json(run_cli, demo, "sla", "report", "--client", "acme")
    assert [c["client"] for c in only["clients"]] == ["acme"]
    late = _json(run_cli, demo, "sla", "report", "--client", "acme", "--since", "2026-11-23")
    fr = late["clients"][0]["clocks"]["first_response"]
    assert (fr["met"], fr["missed"]) == (1, 0)  # only task 10's ended after Nov 23
    assert late["since"] == "2026-11-22T23:00:00Z"  # midnight in daemon.timezone


def test_sla_report_takes_clocks_as_of_now(demo, run_cli):
    result = run_cli("--config", demo, "--now", "2026-11-19T00:00:00Z", "sla", "report", "--json")
    acme = json.loads(result.stdout)["clients"][0]
    assert acme["clocks"]["first_response"]["met"] == 1  # task 3 only, answered Nov 18
    assert {o["task_id"] for o in acme["overdue"]} == set()


def test_sla_report_rejects_an_unknown_client_and_a_bad_since(demo, run_cli):
    result = run_cli("--config", demo, "sla", "report", "--client", "nope")
    assert result.exit_code == 1
    assert "unknown client 'nope'" in result.stderr
    assert run_cli("--config", demo, "sla", "report", "--since", "last week").exit_code == 1


# -- recompute -----------------------------------------------------------------------------


def test_recompute_under_the_same_config_changes_nothing(demo, run_cli):
    result = run_cli("--config", demo, "--now", DEMO_NOW, "recompute", "--dry-run", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []
    assert result.stderr.startswith("0 task(s) would change")


def test_recompute_dry_run_lists_moved_deadlines_then_recompute_writes_them(
    demo, run_cli, tmp_path
):
    """Acceptance: after a tier change, exactly the tasks whose deadlines move are listed;
    --dry-run writes nothing; recompute writes them; a second dry run lists nothing."""
    db = tmp_path / "demo.db"
    before = _snapshot(db)
    _edit(demo, 'first_response = "2h"', 'first_response = "3h"')  # gold: acme only
    with Store(db) as store:
        assert store.stale_tasks(derivation_fingerprint(load_config(demo))) == len(before[0])

    result = run_cli("--config", demo, "--now", DEMO_NOW, "recompute", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    changes = json.loads(result.stdout)
    # The acme tasks with a running first-response clock: 12 (its due time moves) and 13
    # (its clock moves; its due time is the handoff deadline, which stays).
    assert {c["id"] for c in changes} == {12, 13}
    assert {
        "id": 12,
        "field": "due_at",
        "before": "2026-11-24T16:10:27Z",
        "after": "2026-11-24T17:10:27Z",
    } in changes
    assert {
        "id": 13,
        "field": "clocks.first_response.due_at",
        "before": "2026-11-24T16:50:09Z",
        "after": "2026-11-24T17:50:09Z",
    } in changes
    assert result.stderr.splitlines()[0] == "2 task(s) would change"
    assert _snapshot(db) == before

    text = run_cli("--config", demo, "--now", DEMO_NOW, "recompute", "--dry-run").stdout
    assert "#12: due 2026-11-24T16:10:27Z -> 2026-11-24T17:10:27Z" in text

    result = run_cli("--config", demo, "--now", DEMO_NOW, "recompute")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == "2 task(s) change"
    after = _snapshot(db)
    assert after != before
    due = {row[0]: row[10] for row in after[0]}  # tasks.due_at
    assert due[12] == "2026-11-24T17:10:27Z"
    with Store(db) as store:
        assert store.stale_tasks(derivation_fingerprint(load_config(demo))) == 0

    again = run_cli("--config", demo, "--now", DEMO_NOW, "recompute", "--dry-run", "--json")
    assert json.loads(again.stdout) == []
    assert _snapshot(db) == after


def test_recompute_reports_an_outcome_that_flips(demo, run_cli):
    # Task 10's handoff was acknowledged after 1h36m: met under 2h, missed under 1h.
    _edit(demo, 'handoff_ack = "2h"', 'handoff_ack = "1h"')
    changes = _json(run_cli, demo, "recompute", "--dry-run")
    flips = [c for c in changes if c["id"] == 10 and c["field"] == "clocks.handoff_ack"]
    assert len(flips) == 1
    assert flips[0]["before"].startswith("met") and flips[0]["after"].startswith("missed")


def test_recompute_keeps_a_merge_given_on_the_command_line(demo, run_cli):
    merged = run_cli("--config", demo, "--now", DEMO_NOW, "merge", "11", "12", "--as", "carol")
    assert merged.exit_code == 0, merged.output
    assert _json(run_cli, demo, "recompute", "--dry-run") == []
