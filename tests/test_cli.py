"""End-to-end CLI: exit codes, help texts, the JSON contract of SPEC 10, --now, status."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from maildaemon.cli import cli, command_names

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "examples" / "demo.toml"
DEMO_NOW = "2026-11-24T16:30:00Z"
THREADING = Path(__file__).parent / "data" / "threading"

TASK_FIELDS = {
    "id": int,
    "subject": str,
    "root_message_id": str,
    "client": (str, type(None)),
    "owner": (str, type(None)),
    "status": str,
    "stage": (str, type(None)),
    "opened_at": str,
    "last_activity_at": str,
    "due_at": (str, type(None)),
    "overdue": bool,
    "orphaned": bool,
    "pending_handoff": (dict, type(None)),
    "messages": int,
    "inboxes": list,
}


def test_every_command_has_help_text(run_cli):
    names = command_names()
    assert {"init", "config check", "import", "sync", "tasks", "show", "status"} <= set(names)
    for name in names:
        cmd = cli
        for part in name.split():
            cmd = cmd.commands[part]  # type: ignore[attr-defined]
        assert (cmd.help or "").strip(), f"{name} has no help text"
        result = run_cli(*name.split(), "--help")
        assert result.exit_code == 0
        assert "Usage:" in result.output


def test_usage_errors_exit_1_not_2(run_cli, write_config):
    cfg = write_config()
    assert run_cli("--config", cfg, "tasks", "--no-such-flag").exit_code == 1
    assert run_cli("--config", cfg, "tasks", "--status", "bogus").exit_code == 1
    assert run_cli("--config", cfg, "no-such-command").exit_code == 1
    assert run_cli("--now", "yesterday", "tasks").exit_code == 1


def test_config_errors_exit_2_naming_the_key(run_cli, write_config):
    cfg = write_config('[daemon]\npoll_interval = "5x"\n')
    result = run_cli("--config", cfg, "config", "check")
    assert result.exit_code == 2
    assert "poll_interval" in result.stderr and "5x" in result.stderr


def test_missing_config_exits_2_and_says_run_init(run_cli, tmp_path):
    result = run_cli("--config", tmp_path / "nope.toml", "tasks")
    assert result.exit_code == 2
    assert "init" in result.stderr


def test_init_writes_a_config_that_checks(run_cli, tmp_path):
    cfg = tmp_path / "new.toml"
    assert run_cli("--config", cfg, "init").exit_code == 0
    assert cfg.exists()
    assert run_cli("--config", cfg, "init").exit_code == 1  # never overwrites silently
    result = run_cli("--config", cfg, "config", "check")
    assert result.exit_code == 0, result.output


def test_config_check_redacts_secrets(run_cli, write_config):
    cfg = write_config(
        '[[inboxes]]\nname = "support"\n'
        'imap = { host = "imap.example.com", port = 993, security = "tls", '
        'username = "support@example.com", password_command = "pass show s3cr3t-entry" }\n'
    )
    result = run_cli("--config", cfg, "config", "check")
    assert result.exit_code == 0, result.output
    assert "s3cr3t-entry" not in result.output


def test_unknown_task_exits_1(demo, run_cli):
    result = run_cli("--config", demo, "show", "99999")
    assert result.exit_code == 1
    assert "unknown task" in result.stderr


def test_unknown_filter_values_exit_1(demo, run_cli):
    assert run_cli("--config", demo, "tasks", "--owner", "zed").exit_code == 1
    assert run_cli("--config", demo, "tasks", "--client", "nobody").exit_code == 1
    assert run_cli("--config", demo, "tasks", "--stage", "nowhere").exit_code == 1
    assert run_cli("--config", demo, "sync", "--inbox", "nope").exit_code == 1


def test_tasks_json_has_every_field_with_its_type(demo, run_cli):
    result = run_cli("--config", demo, "--now", DEMO_NOW, "tasks", "--json", "--status", "all")
    assert result.exit_code == 0, result.output
    tasks = json.loads(result.stdout)
    assert len(tasks) >= 8
    for t in tasks:
        for field, typ in TASK_FIELDS.items():
            assert isinstance(t[field], typ), (field, t[field])
        assert t["root_message_id"].startswith("<") and t["root_message_id"].endswith(">")
        assert t["opened_at"].endswith("Z") and t["last_activity_at"].endswith("Z")
        assert t["status"] in ("open", "waiting", "closed")
        assert "message_ids" not in t


def test_tasks_json_messages_lists_every_message_id(demo, run_cli):
    tasks = json.loads(
        run_cli("--config", demo, "--now", DEMO_NOW, "tasks", "--json", "--messages").stdout
    )
    for t in tasks:
        assert len(t["message_ids"]) == t["messages"]
        assert t["root_message_id"] == t["message_ids"][0]


def test_show_json_has_timeline_and_events_and_finds_by_message_id(demo, run_cli):
    tasks = json.loads(run_cli("--config", demo, "--now", DEMO_NOW, "tasks", "--json").stdout)
    biggest = max(tasks, key=lambda t: t["messages"])
    by_id = json.loads(
        run_cli("--config", demo, "--now", DEMO_NOW, "show", str(biggest["id"]), "--json").stdout
    )
    by_mid = json.loads(
        run_cli(
            "--config", demo, "--now", DEMO_NOW, "show", biggest["root_message_id"], "--json"
        ).stdout
    )
    assert by_id == by_mid
    for field in TASK_FIELDS:
        assert field in by_id
    assert len(by_id["timeline"]) == biggest["messages"]
    for entry in by_id["timeline"]:
        assert set(entry) >= {"message_id", "from", "date", "kind", "subject", "joined_by"}
        assert entry["kind"] in ("team", "client", "auto")
    assert by_id["timeline"][0]["joined_by"] == "root"
    assert isinstance(by_id["events"], list)


def test_now_leaves_out_later_mail(demo, run_cli):
    later = json.loads(
        run_cli("--config", demo, "--now", DEMO_NOW, "tasks", "--json", "--status", "all").stdout
    )
    earlier = json.loads(
        run_cli(
            "--config", demo, "--now", "2026-11-19T00:00:00Z", "tasks", "--json", "--status", "all"
        ).stdout
    )
    assert 0 < len(earlier) < len(later)
    cutoff = "2026-11-19T00:00:00Z"
    for t in earlier:
        assert t["opened_at"] <= cutoff and t["last_activity_at"] <= cutoff
    before_everything = json.loads(
        run_cli("--config", demo, "--now", "2026-01-01T00:00:00Z", "tasks", "--json").stdout
    )
    assert before_everything == []


def test_status_counts_messages_and_inboxes(demo, run_cli):
    report = json.loads(run_cli("--config", demo, "status", "--json").stdout)
    assert report["messages"] >= 35
    assert {i["inbox"] for i in report["inboxes"]} == {"support", "partners"}
    assert all(not i["failing"] for i in report["inboxes"])
    assert run_cli("--config", demo, "status", "--check").exit_code == 0


def test_status_check_exits_3_when_an_inbox_fails(run_cli, write_config, tmp_path):
    cfg = write_config(f'[[inboxes]]\nname = "gone"\nmaildir = "{tmp_path / "missing"}"\n')
    assert run_cli("--config", cfg, "sync").exit_code == 3
    result = run_cli("--config", cfg, "status", "--json", "--check")
    assert result.exit_code == 3
    report = json.loads(result.stdout)
    assert report["inboxes"][0]["failing"] is True


def test_import_twice_adds_nothing(run_cli, write_config):
    cfg = write_config('[team]\ndomains = ["example.com"]\n')
    first = run_cli("--config", cfg, "import", THREADING)
    assert first.exit_code == 0, first.output
    assert " 0 new" not in first.stderr
    second = run_cli("--config", cfg, "import", THREADING)
    assert "0 read, 0 new" in second.stderr


def test_import_into_unknown_inbox_exits_1(run_cli, write_config):
    cfg = write_config()
    result = run_cli("--config", cfg, "import", THREADING, "--inbox", "nope")
    assert result.exit_code == 1
    assert "unknown inbox" in result.stderr


def _mbox_entry(n: int) -> bytes:
    return (
        f"From client{n}@acme.com Mon Nov 23 10:0{n}:00 2026\n"
        f"From: Client {n} <client{n}@acme.com>\n"
        "To: support@example.com\n"
        f"Subject: Order {n} is late\n"
        f"Message-ID: <order-{n}@acme.com>\n"
        f"Date: Mon, 23 Nov 2026 10:0{n}:00 +0000\n"
        "\n"
        f"Where is order {n}?\n"
        "\n"
    ).encode()


def test_sync_reads_an_mbox_inbox_incrementally(run_cli, write_config, tmp_path):
    mbox = tmp_path / "support.mbox"
    mbox.write_bytes(_mbox_entry(1) + _mbox_entry(2))
    cfg = write_config(f'[[inboxes]]\nname = "support"\nmbox = "{mbox}"\n')
    first = run_cli("--config", cfg, "sync")
    assert first.exit_code == 0, first.output
    assert "2 read, 2 new" in first.stderr
    with mbox.open("ab") as f:
        f.write(_mbox_entry(3))
    second = run_cli("--config", cfg, "sync")
    assert "1 read, 1 new" in second.stderr
    tasks = json.loads(run_cli("--config", cfg, "tasks", "--json").stdout)
    assert sorted(t["subject"] for t in tasks) == [f"Order {n} is late" for n in (1, 2, 3)]


def test_unparseable_mail_is_quarantined_and_shown_in_status(run_cli, write_config, tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "empty.eml").write_bytes(b"")
    shutil.copy(THREADING / "chain" / "01.eml", folder / "good.eml")
    cfg = write_config()
    result = run_cli("--config", cfg, "import", folder)
    assert result.exit_code == 0, result.output  # quarantined mail is not a failure
    assert "1 quarantined" in result.stderr
    report = json.loads(run_cli("--config", cfg, "status", "--json").stdout)
    assert report["quarantined"] == 1 and report["messages"] == 1
    assert report["quarantine"][0]["key"].startswith("sha1:")
    assert report["quarantine"][0]["reason"]
    text = run_cli("--config", cfg, "status").stdout
    assert "Quarantined" in text
