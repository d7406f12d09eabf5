"""IMAP sync against a real Dovecot on loopback (tests/imap_server.py): read-only passes,
the same ledger as a Maildir import, incremental passes, UIDVALIDITY changes, failures
that stay with their inbox, TLS, and secrets that never leak."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from imap_server import Dovecot, User

from maildaemon import imap_pass, ingest
from maildaemon.config import parse_config
from maildaemon.imap import ImapInbox, sync_inbox
from maildaemon.parsers.bodystructure import internaldate
from maildaemon.store import Store

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "examples" / "demo.toml"
DEMO_SUPPORT = ROOT / "examples" / "demo-maildir" / "support"
PARSING = Path(__file__).parent / "data" / "parsing"
DEMO_NOW = "2026-11-24T16:30:00Z"
NOW = datetime(2026, 11, 24, 16, 30, tzinfo=UTC)
MAILDIR_FLAGS = {"S": "\\Seen", "R": "\\Answered", "F": "\\Flagged", "D": "\\Draft"}
# A mix of flags for the read-only test: unseen, seen, flagged, answered, a keyword, draft.
FLAG_MIX = [(), ("\\Seen",), ("\\Seen", "\\Flagged"), ("\\Answered",), ("$Label1",), ("\\Draft",)]

Cli = Callable[..., Result]


def demo_messages(flag_mix: bool = False) -> list[tuple[bytes, tuple[str, ...], datetime]]:
    """The demo support Maildir as (bytes, flags, delivery time) in Maildir order."""
    out = []
    for i, path in enumerate(sorted((DEMO_SUPPORT / "cur").iterdir())):
        stamp, _, info = path.name.partition(":2,")
        flags = tuple(MAILDIR_FLAGS[c] for c in info if c in MAILDIR_FLAGS)
        when = datetime.fromtimestamp(int(stamp.split(".")[0]), UTC)
        out.append((path.read_bytes(), FLAG_MIX[i % len(FLAG_MIX)] if flag_mix else flags, when))
    return out


def imap_inbox(dovecot: Dovecot, name: str, user: User, **extra: str) -> str:
    """An [[inboxes]] table for ``user`` on the test server (plain text on loopback, the
    password in $<NAME>_IMAP_PASSWORD unless ``extra`` says otherwise)."""
    fields = {
        "host": '"127.0.0.1"',
        "port": str(dovecot.port),
        "security": '"plain"',
        "username": f'"{user.name}"',
        "password_env": f'"{name.upper()}_IMAP_PASSWORD"',
    }
    fields.update(extra)
    if "password_command" in extra or "token_command" in extra:
        del fields["password_env"]
    body = ", ".join(f"{k} = {v}" for k, v in fields.items())
    return f'[[inboxes]]\nname = "{name}"\nimap = {{ {body} }}\n\n'


def demo_config(tmp_path: Path, inboxes: str, db: str = "md.db") -> Path:
    """The demo config with other inboxes and its own database."""
    text = DEMO_CONFIG.read_text(encoding="utf-8")
    head, rest = text.split("[[inboxes]]", 1)
    rest = rest[rest.index("[team]") :]
    text = head + inboxes + rest
    text = text.replace('database = "../demo/demo.db"', f'database = "{tmp_path / db}"')
    text = text.replace('{ outbox = "../demo/outbox" }', f'{{ outbox = "{tmp_path / "outbox"}" }}')
    path = tmp_path / f"{db}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def tasks(run_cli: Cli, config: Path) -> list[dict[str, Any]]:
    result = run_cli("--config", config, "--now", DEMO_NOW, "tasks", "--json", "--status", "all")
    assert result.exit_code == 0, result.output
    return sorted(
        ({k: v for k, v in t.items() if k != "id"} for t in json.loads(result.stdout)),
        key=lambda t: t["root_message_id"],
    )


MESSAGE_COLUMNS = (
    "subject", "from", "to", "cc", "date", "in_reply_to", "refs", "attachments", "text",
    "reply_text", "threaded",
)  # fmt: skip


def ledger_messages(db: Path) -> dict[str, tuple[Any, ...]]:
    """What the store keeps of every message, by Message-ID (row ids and sizes aside)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT m.message_id, m.subject, m.from_addr, m.to_addrs, m.cc_addrs, m.date, "
            "m.in_reply_to, m.refs, m.attachments, b.text, b.reply_text, m.task_id IS NOT NULL "
            "FROM messages m LEFT JOIN bodies b ON b.message = m.id"
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def same_messages(got: dict[str, tuple[Any, ...]], want: dict[str, tuple[Any, ...]]) -> None:
    """Equal ledgers, or the first difference by Message-ID and column. Attachment sizes
    over IMAP are estimated from BODYSTRUCTURE (base64 padding and the line ends of 7-bit
    parts are unknown): within a few bytes."""
    assert sorted(got) == sorted(want)
    for mid, record in want.items():
        for column, a, b in zip(MESSAGE_COLUMNS, got[mid], record, strict=True):
            if column == "attachments":
                a, b = json.loads(a), json.loads(b)
                assert [x[:2] for x in a] == [x[:2] for x in b], f"{mid}: attachments differ"
                for (name, _, size), (_, _, exact) in zip(a, b, strict=True):
                    assert abs(size - exact) <= 3 + exact // 100, f"{mid}: size of {name!r}"
            else:
                assert a == b, f"{mid}: {column} differs"


def count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


@pytest.fixture
def support(dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> User:
    """A fresh mailbox holding the demo support mail, its password in the environment."""
    user = dovecot.add_user("support")
    dovecot.append(user, demo_messages())
    monkeypatch.setenv("SUPPORT_IMAP_PASSWORD", user.password)
    return user


def test_sync_leaves_every_flag_and_message_as_it_was(dovecot, tmp_path, run_cli, monkeypatch):
    user = dovecot.add_user("support")
    dovecot.append(user, demo_messages(flag_mix=True))
    dovecot.deliver(user, (PARSING / "multipart_pdf_and_inline_image.eml").read_bytes())
    monkeypatch.setenv("SUPPORT_IMAP_PASSWORD", user.password)
    before = dovecot.messages(user)
    assert len(before) == 38 and len(set(before.values())) == len(FLAG_MIX)
    config = demo_config(tmp_path, imap_inbox(dovecot, "support", user))

    result = run_cli("--config", config, "--now", DEMO_NOW, "sync")

    assert result.exit_code == 0, result.output
    assert "support: 38 read, 38 new" in result.output
    after = dovecot.messages(user)
    for uid, flags in before.items():  # per message, so a failure names the one changed
        assert after.get(uid) == flags, f"uid {uid}: flags {flags} became {after.get(uid)}"
    assert after.keys() == before.keys()  # nothing expunged, nothing moved in
    assert dovecot.status(user)["messages"] == 38


def test_imap_and_maildir_give_the_same_tasks_and_messages(dovecot, support, tmp_path, run_cli):
    over_imap = demo_config(tmp_path, imap_inbox(dovecot, "support", support), db="imap.db")
    maildir = f'[[inboxes]]\nname = "support"\nmaildir = "{DEMO_SUPPORT}"\n\n'
    from_disk = demo_config(tmp_path, maildir, db="maildir.db")
    for config in (over_imap, from_disk):
        result = run_cli("--config", config, "--now", DEMO_NOW, "sync")
        assert result.exit_code == 0, result.output
        assert "support: 37 read, 37 new, 0 quarantined" in result.output

    imap_tasks = tasks(run_cli, over_imap)
    assert len(imap_tasks) >= 10
    assert imap_tasks == tasks(run_cli, from_disk)
    same_messages(ledger_messages(tmp_path / "imap.db"), ledger_messages(tmp_path / "maildir.db"))


def test_hard_mime_reads_the_same_over_imap_as_from_files(dovecot, tmp_path):
    """Attachments, alternatives, base64, quoted-printable, HTML only, odd charsets:
    the text and attachments fetched part by part match a parse of the whole file."""
    user = dovecot.add_user("mime")
    files = sorted(PARSING.glob("*.eml"))
    dovecot.append(  # delivered when the files were written: the same fallback dates
        user, [(p.read_bytes(), (), datetime.fromtimestamp(p.stat().st_mtime, UTC)) for p in files]
    )
    config = parse_config(
        imap_inbox(dovecot, "mime", user, password_command=f'"printf %s {user.password}"')
        + '[[inboxes]]\nname = "files"\nmaildir = "unused"\n',
        base_dir=tmp_path,
    )
    with Store(tmp_path / "imap.db") as store:
        result = sync_inbox(store, config, config.inboxes[0], now=NOW)
        assert result.error is None and result.seen == len(files)
        ingest.rederive(store, config, NOW, fresh=result.fresh)
    with Store(tmp_path / "files.db") as store:
        ingest.import_paths(store, config, files, inbox="files", now=NOW, workers=1)
    over_imap = ledger_messages(tmp_path / "imap.db")
    from_files = ledger_messages(tmp_path / "files.db")
    same_messages(over_imap, from_files)
    assert defects(tmp_path / "imap.db") == defects(tmp_path / "files.db")


# What only a parse of the whole multipart sees (IMAP assembles the text parts alone).
WHOLE_STRUCTURE = re.compile(r"CloseBoundaryNotFound|MultipartInvariantViolation")


def defects(db: Path) -> dict[str, list[str]]:
    """Each message's defects, but those of a broken multipart structure."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT message_id, defects FROM messages").fetchall()
    return {
        mid: [d for d in json.loads(found) if not WHOLE_STRUCTURE.search(d)] for mid, found in rows
    }


def test_a_second_pass_fetches_nothing_and_adds_nothing(dovecot, support, tmp_path):
    config = parse_config(imap_inbox(dovecot, "support", support), base_dir=tmp_path)
    inbox = config.inboxes[0]
    with Store(tmp_path / "md.db") as store:
        first = sync_inbox(store, config, inbox, now=NOW)
        assert (first.seen, first.new, first.error) == (37, 37, None)
        rows = count(store.path, "SELECT COUNT(*) FROM locations")

        with ImapInbox(inbox) as imap:
            second = imap.sync(store, text_cap=config.ingest.text_cap, now=NOW)
            assert (second.seen, second.new, second.error) == (0, 0, None)
            assert imap.fetch_commands == 0  # EXAMINE said nothing changed

            dovecot.deliver(support, (PARSING / "encoded_words.eml").read_bytes())
            third = imap.sync(store, text_cap=config.ingest.text_cap, now=NOW)
            assert (third.seen, third.new, third.error) == (1, 1, None)
        assert count(store.path, "SELECT COUNT(*) FROM locations") == rows + 1
        state = store.source_state("support", "INBOX")
        assert state is not None and state["last_uid"] == 38


def test_a_uidvalidity_change_duplicates_nothing(dovecot, support, tmp_path, run_cli):
    config = demo_config(tmp_path, imap_inbox(dovecot, "support", support))
    db = tmp_path / "md.db"
    assert run_cli("--config", config, "--now", DEMO_NOW, "sync").exit_code == 0
    before = tasks(run_cli, config)
    old = dovecot.status(support)["uidvalidity"]
    dovecot.set_uidvalidity(support, old + 1000)
    dovecot.deliver(support, (PARSING / "encoded_words.eml").read_bytes())

    result = run_cli("--config", config, "--now", DEMO_NOW, "sync")

    assert result.exit_code == 0, result.output
    assert "support: 38 read, 1 new" in result.output
    assert count(db, "SELECT COUNT(*) FROM messages") == 38
    assert count(db, "SELECT COUNT(*) FROM locations") == 38  # moved, not added
    assert count(db, f"SELECT COUNT(*) FROM locations WHERE uidvalidity = {old + 1000}") == 38
    after = [t for t in tasks(run_cli, config) if t["root_message_id"] != "<ew-1@example.de>"]
    assert after == before
    status = json.loads(run_cli("--config", config, "status", "--json").stdout)
    assert status["inboxes"][0]["messages"] == 38 and not status["inboxes"][0]["failing"]


def test_a_refused_login_fails_only_its_own_inbox(dovecot, support, tmp_path, run_cli, monkeypatch):
    partners = dovecot.add_user("partners")
    dovecot.deliver(partners, (PARSING / "encoded_words.eml").read_bytes())
    monkeypatch.setenv("PARTNERS_IMAP_PASSWORD", "not-the-password")
    inboxes = imap_inbox(dovecot, "partners", partners) + imap_inbox(dovecot, "support", support)
    config = demo_config(tmp_path, inboxes)

    result = run_cli("--config", config, "--now", DEMO_NOW, "sync")

    assert result.exit_code == 3
    assert "support: 37 read, 37 new" in result.output
    refused = f"inbox 'partners': login refused by 127.0.0.1:{dovecot.port}"
    assert refused in result.output and "check PARTNERS_IMAP_PASSWORD" in result.output
    status = run_cli("--config", config, "status", "--json")
    by_name = {i["inbox"]: i for i in json.loads(status.stdout)["inboxes"]}
    assert by_name["partners"]["failing"] and refused in by_name["partners"]["last_error"]
    assert not by_name["support"]["failing"] and by_name["support"]["messages"] == 37
    assert run_cli("--config", config, "status", "--check").exit_code == 3

    monkeypatch.setenv("PARTNERS_IMAP_PASSWORD", partners.password)  # fixed: it recovers
    assert run_cli("--config", config, "--now", DEMO_NOW, "sync").exit_code == 0
    assert run_cli("--config", config, "status", "--check").exit_code == 0


def test_a_self_signed_certificate_is_refused_unless_its_ca_is_configured(
    dovecot, support, tmp_path
):
    def sync(host: str, **tls: str) -> str | None:
        settings = {"port": str(dovecot.tls_port), "security": '"tls"', **tls}
        text = imap_inbox(dovecot, "support", support, host=f'"{host}"', **settings)
        config = parse_config(text, base_dir=tmp_path)
        with Store(tmp_path / "md.db") as store:
            return sync_inbox(store, config, config.inboxes[0], now=NOW).error

    error = sync("127.0.0.1")
    assert error is not None
    assert "inbox 'support': certificate of 127.0.0.1 not trusted (self-signed" in error
    assert error.endswith("— set ca_file or verify = false")
    assert sync("localhost", ca_file=f'"{dovecot.ca_file}"') is None
    assert sync("127.0.0.1", verify="false") is None
    # STARTTLS on the plain port, verified the same way
    starttls = {"port": str(dovecot.port), "security": '"starttls"'}
    assert "not trusted" in (sync("127.0.0.1", **starttls) or "")
    assert sync("127.0.0.1", ca_file=f'"{dovecot.ca_file}"', **starttls) is None
    with sqlite3.connect(tmp_path / "md.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 37


def test_passwords_and_tokens_never_reach_output_logs_or_the_database(
    dovecot, tmp_path, run_cli, caplog
):
    user = dovecot.add_user("support", password="Pw-9f8e7d6c5b4a")
    dovecot.append(user, demo_messages()[:5])
    secret_file = tmp_path / "imap-password"
    secret_file.write_text(user.password + "\n", encoding="utf-8")
    token_file = tmp_path / "token"
    token_file.write_text("ya29.TOKEN-1a2b3c4d\n", encoding="utf-8")
    inboxes = imap_inbox(dovecot, "support", user, password_command=f'"cat {secret_file}"')
    inboxes += imap_inbox(
        dovecot, "oauth", user, auth='"xoauth2"', token_command=f'"cat {token_file}"'
    )
    config = demo_config(tmp_path, inboxes)
    caplog.set_level(logging.DEBUG)

    result = run_cli("--config", config, "--now", DEMO_NOW, "-vv", "sync")
    status = run_cli("--config", config, "status", "--json")
    check = run_cli("--config", config, "config", "check")

    assert result.exit_code == 3  # the token is refused: this Dovecot has no XOAUTH2
    assert "support: 5 read, 5 new" in result.output
    assert "inbox 'oauth': login refused" in result.output
    assert "check token_command" in result.output
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("md.db*"))
    for secret in (user.password, "ya29.TOKEN-1a2b3c4d"):
        for text in (result.output, status.output, check.output, caplog.text):
            assert secret not in text
        assert secret.encode() not in stored
    assert re.search(r"LOGIN|AUTHENTICATE", caplog.text)  # the exchange was logged, redacted


def test_a_missing_password_or_a_failing_command_names_what_to_fix(dovecot, tmp_path, monkeypatch):
    user = dovecot.add_user("support")
    monkeypatch.delenv("SUPPORT_IMAP_PASSWORD", raising=False)
    inboxes = imap_inbox(dovecot, "support", user)
    inboxes += imap_inbox(dovecot, "other", user, password_command='"false"')
    config = parse_config(inboxes, base_dir=tmp_path)
    with Store(tmp_path / "md.db") as store:
        missing = sync_inbox(store, config, config.inboxes[0], now=NOW).error
        failing = sync_inbox(store, config, config.inboxes[1], now=NOW).error
    assert missing == (
        "inbox 'support': SUPPORT_IMAP_PASSWORD is not set — export the password of "
        f"{user.name} in it"
    )
    assert failing == "inbox 'other': password_command failed (exit 1)"


def test_the_fetch_reader_reads_what_imapclient_reads(dovecot, tmp_path):
    """The FETCH answers read off the socket (``ImapInbox.fetch``) are what imapclient's
    own parser makes of them, on hard MIME: literals inside BODYSTRUCTURE, quoted strings
    with escapes, 8-bit header fields, NIL, nested multiparts."""
    user = dovecot.add_user("mime")
    files = sorted(PARSING.glob("*.eml"))
    dovecot.append(user, [(p.read_bytes(), ("\\Flagged",), None) for p in files])
    dovecot.append(user, demo_messages()[:5])
    config = parse_config(
        imap_inbox(dovecot, "mime", user, password_command=f'"printf %s {user.password}"'),
        base_dir=tmp_path,
    )
    items = [
        imap_pass.HEADERS_ITEM, imap_pass.RARE_ITEM, "BODY", "BODYSTRUCTURE", "FLAGS",
        "RFC822.SIZE", "INTERNALDATE", "BODY.PEEK[1]<0.300>", "BODY.PEEK[1.MIME]",
    ]  # fmt: skip
    with ImapInbox(config.inboxes[0]) as imap:
        client = imap.connect()
        client.select_folder("INBOX", readonly=True)
        uids = client.search(["ALL"])
        assert len(uids) == len(files) + 5
        ours = imap.fetch(uids, items)
        theirs = client.fetch(uids, items)
    assert sorted(ours) == sorted(uids)
    for uid in uids:
        want = {k: v for k, v in theirs[uid].items() if k != b"SEQ"}
        got = dict(ours[uid])
        assert got.pop(b"UID") == uid
        assert internaldate(got.pop(b"INTERNALDATE")) == want.pop(b"INTERNALDATE"), uid
        assert plain(got) == plain(want), uid


def plain(value: Any) -> Any:
    """imapclient's BodyData and tuples as plain tuples, for comparing."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return tuple(plain(v) for v in value)
    return value


def test_a_pass_in_many_small_chunks_stores_what_one_chunk_does(
    dovecot, support, tmp_path, monkeypatch
):
    """Chunks pipelined on the connection (the next FETCH in flight while this one is
    parsed, answers told apart by UID) and parsed in the worker pool give the same ledger
    as one chunk parsed in-process."""
    config = parse_config(imap_inbox(dovecot, "support", support), base_dir=tmp_path)
    with Store(tmp_path / "one.db") as store:
        assert sync_inbox(store, config, config.inboxes[0], now=NOW).seen == 37
    monkeypatch.setattr(imap_pass, "CHUNK", 4)
    monkeypatch.setattr(ingest, "POOL_THRESHOLD", 10)
    monkeypatch.setattr(imap_pass, "POOL_THRESHOLD", 10)
    with Store(tmp_path / "many.db") as store, ImapInbox(config.inboxes[0]) as imap:
        result = imap.sync(store, text_cap=config.ingest.text_cap, now=NOW)
        assert (result.seen, result.error) == (37, None)
        assert imap.fetch_commands >= 10  # one FETCH or more per chunk of 4
    same_messages(ledger_messages(tmp_path / "many.db"), ledger_messages(tmp_path / "one.db"))
    with sqlite3.connect(tmp_path / "many.db") as conn:
        defects = dict(conn.execute("SELECT message_id, defects FROM messages"))
    with sqlite3.connect(tmp_path / "one.db") as conn:
        assert dict(conn.execute("SELECT message_id, defects FROM messages")) == defects
