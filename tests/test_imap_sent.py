"""A person's Sent folder as an inbox (`role = "sent"`, SPEC 3, 4 and 6) over IMAP, against
the real Dovecot (tests/imap_server.py): a reply that alice sent from her own mailbox,
copying no shared address, reaches the task of the client mail it answers, and alice owns
the task as its first responder."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from imap_server import Dovecot, User
from test_imap import demo_config, imap_inbox

NOW = "2026-11-24T16:30:00Z"
CLIENT_ID = "<sent-test-question@acme.com>"
REPLY_ID = "<sent-test-reply@example.com>"
LATER_ID = "<sent-test-later@example.com>"

Cli = Callable[..., Result]


def client_question(shared: str) -> bytes:
    return (
        "From: Jane Client <jane@acme.com>\r\n"
        f"To: {shared}\r\n"
        "Subject: Invoice totals are wrong in the March export\r\n"
        f"Message-ID: {CLIENT_ID}\r\n"
        "Date: Mon, 23 Nov 2026 14:00:00 +0000\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "The totals of the March export do not add up. Can you look?\r\n"
    ).encode()


def alice_reply() -> bytes:
    """Alice answers from her own mailbox: To the client alone, no shared address."""
    return (
        "From: Alice Smith <alice@example.com>\r\n"
        "To: Jane Client <jane@acme.com>\r\n"
        "Subject: Re: Invoice totals are wrong in the March export\r\n"
        f"Message-ID: {REPLY_ID}\r\n"
        f"In-Reply-To: {CLIENT_ID}\r\n"
        f"References: {CLIENT_ID}\r\n"
        "Date: Mon, 23 Nov 2026 15:10:00 +0000\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Hi Jane, I am on it; the rounding of the VAT lines is off.\r\n"
        "\r\n"
        "> The totals of the March export do not add up.\r\n"
    ).encode()


def unrelated_sent_mail() -> bytes:
    """Something else alice sent (to a colleague): no client, no thread of the team."""
    return (
        "From: Alice Smith <alice@example.com>\r\n"
        "To: Bob <bob@example.com>\r\n"
        "Subject: Lunch on Thursday?\r\n"
        f"Message-ID: {LATER_ID}\r\n"
        "Date: Mon, 23 Nov 2026 16:00:00 +0000\r\n"
        "\r\n"
        "Shall we?\r\n"
    ).encode()


@pytest.fixture
def mailboxes(dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> tuple[User, User]:
    """A shared support mailbox with the client's question, and alice's own mailbox whose
    Sent folder holds her reply (which is nowhere else)."""
    support = dovecot.add_user("support")
    alice = dovecot.add_user("alice")
    dovecot.deliver(support, client_question(support.name))
    dovecot.doveadm("mailbox", "create", "-u", alice.name, "Sent")
    dovecot.deliver(alice, alice_reply(), folder="Sent")
    dovecot.deliver(alice, unrelated_sent_mail(), folder="Sent")
    monkeypatch.setenv("SUPPORT_IMAP_PASSWORD", support.password)
    monkeypatch.setenv("ALICE_IMAP_PASSWORD", alice.password)
    return support, alice


def sent_config(tmp_path: Path, dovecot: Dovecot, support: User, alice: User) -> Path:
    inboxes = imap_inbox(dovecot, "support", support)
    sent = imap_inbox(
        dovecot, "alice-sent", alice, folder='"Sent"', password_env='"ALICE_IMAP_PASSWORD"'
    )
    inboxes += sent.replace("\n\n", '\nrole = "sent"\n\n', 1)
    return demo_config(tmp_path, inboxes)


def tasks(run_cli: Cli, config: Path) -> list[dict[str, Any]]:
    result = run_cli(
        "--config", config, "--now", NOW, "tasks", "--json", "--messages", "--status", "all"
    )
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout))


def test_a_reply_only_in_alices_sent_folder_joins_the_clients_task_and_alice_owns_it(
    dovecot, mailboxes, tmp_path, run_cli
):
    support, alice = mailboxes
    config = sent_config(tmp_path, dovecot, support, alice)
    before = dovecot.messages(alice, "Sent")

    synced = run_cli("--config", config, "--now", NOW, "sync")
    assert synced.exit_code == 0, synced.output
    assert "alice-sent: 2 read, 2 new" in synced.output

    (task,) = tasks(run_cli, config)  # alice's lunch mail to bob is no task
    assert sorted(task["message_ids"]) == sorted([CLIENT_ID, REPLY_ID])
    assert task["root_message_id"] == CLIENT_ID
    assert task["client"] == "acme"
    assert task["owner"] == "alice"
    assert task["status"] == "waiting"  # the team answered: the client's move
    assert sorted(task["inboxes"]) == ["alice-sent", "support"]  # where its mail was seen

    shown = run_cli("--config", config, "--now", NOW, "show", str(task["id"]), "--json")
    assert shown.exit_code == 0, shown.output
    detail = json.loads(shown.stdout)
    (taken,) = [e for e in detail["events"] if e["owner_to"] == "alice"]
    assert taken["message_id"] == REPLY_ID
    assert "first responder" in taken["rule"]

    # the Sent folder is read, not changed; the reply is stored once, as alice's
    assert dovecot.messages(alice, "Sent") == before
    with sqlite3.connect(tmp_path / "md.db") as conn:
        rows = conn.execute(
            "SELECT shared, from_addr FROM messages WHERE message_id = ?", (REPLY_ID,)
        ).fetchall()
    assert len(rows) == 1
    assert rows[0][0] == 0 and "alice@example.com" in rows[0][1]

    again = run_cli("--config", config, "--now", NOW, "sync")  # nothing new, nothing doubled
    assert again.exit_code == 0, again.output
    (same,) = tasks(run_cli, config)
    assert sorted(same["message_ids"]) == sorted([CLIENT_ID, REPLY_ID])
    assert same["owner"] == "alice"
