"""Digests and alerts delivered for real (SPEC 9): `digest --send` and `maildaemon run`
against an aiosmtpd server on 127.0.0.1, the demo mail, and the once-only claims in SQLite
across restarts, kills and an SMTP server that is down."""

from __future__ import annotations

import json
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from test_daemon import DEMO_NOW, until

from maildaemon import claims, outgoing
from maildaemon.config import load_config
from maildaemon.store import Store

FRANK = """
[[people]]
name = "frank"
email = "frank@example.com"
role = "support"
"""


def smtp_config(config: Path, server: Any, **digest: str) -> Path:
    """The demo config delivering to ``server``, with frank (who owns nothing) on the
    roster and the given [digest] keys replaced (TOML values as text)."""
    text = config.read_text(encoding="utf-8")
    text = text.replace(
        'delivery = { outbox = "../demo/outbox" }',
        f'delivery = {{ smtp = {{ host = "127.0.0.1", port = {server.port}, '
        f'security = "plain", from = "maildaemon@example.com" }} }}',
    )
    for key, value in digest.items():
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        if not n:
            text = text.replace("[digest]\n", f"[digest]\n{key} = {value}\n")
    text = text.replace("[[clients]]", FRANK + "\n[[clients]]", 1)
    config.write_text(text, encoding="utf-8")
    return config


def delivered(server: Any) -> Counter[tuple[str, str]]:
    """(recipient, kind) of every received digest, kind from the subject."""
    out: Counter[tuple[str, str]] = Counter()
    for m in server.messages:
        kind = "team" if m.message["Subject"].startswith("Team:") else "personal"
        if "alert" in m.message["Message-ID"]:
            kind = "alert"
        out[(m.recipients[0].partition("@")[0], kind)] += 1
    return out


def settle(server: Any, n: int, quiet: float = 1.0) -> None:
    """Wait for ``n`` messages, then make sure no more arrive for ``quiet`` seconds."""
    server.wait_for(n, timeout=15)
    time.sleep(quiet)
    assert len(server.messages) == n, "\n".join(
        f"{m.recipients} {m.message['Subject']}" for m in server.messages
    )


DIGESTS = {("alice", "personal"), ("bob", "personal"), ("carol", "personal"), ("carol", "team")}


# -- digest --send ----------------------------------------------------------------------------


def test_each_person_with_something_gets_one_digest_and_managers_the_team_one(
    demo, smtp_server, run_cli
):
    config = smtp_config(demo, smtp_server)
    result = run_cli("--config", config, "--now", DEMO_NOW, "digest", "--send")
    assert result.exit_code == 0, result.output
    settle(smtp_server, 4, quiet=0.2)
    # frank owns nothing: no digest; dave is away, erin inactive: none either.
    assert delivered(smtp_server) == Counter(dict.fromkeys(DIGESTS, 1))
    again = run_cli("--config", config, "--now", DEMO_NOW, "digest", "--send")
    assert again.exit_code == 0 and "nothing to send" in again.stderr
    assert len(smtp_server.messages) == 4
    team = next(m for m in smtp_server.messages if m.message["Subject"].startswith("Team:"))
    msg = team.message
    assert msg["To"] == "carol <carol@example.com>"
    assert msg["Auto-Submitted"] == "auto-generated" and msg["Precedence"] == "bulk"
    assert msg["Subject"] == (
        "Team: 2 unowned, 4 overdue, 1 stuck handoff, 3 at risk, 2 map holes — Tue 24 Nov"
    )
    text = msg.get_body(("plain",)).get_content()
    assert "maildaemon assign 12 alice" in text and "SSO login loop" in text
    html = msg.get_body(("html",)).get_content()
    assert "Responsibility map" in html and "<table" in html
    # The claims: one row per digest, sent, with the Message-ID the server got.
    status = json.loads(run_cli("--config", config, "status", "--json").stdout)
    sent = {(d["recipient"], d["kind"]): d for d in status["deliveries"]}
    assert sent[("carol", "team")]["state"] == "sent"
    assert sent[("carol", "team")]["message_id"] == msg["Message-ID"]
    assert sent[("frank", "personal")]["state"] == "empty"


def test_send_empty_sends_to_everyone_available_and_force_sends_again(demo, smtp_server, run_cli):
    config = smtp_config(demo, smtp_server, send_empty="true")
    assert run_cli("--config", config, "--now", DEMO_NOW, "digest", "--send").exit_code == 0
    settle(smtp_server, 5, quiet=0.2)
    assert delivered(smtp_server)[("frank", "personal")] == 1
    forced = run_cli(
        "--config", config, "--now", DEMO_NOW, "digest", "--send", "--force", "--to", "bob"
    )
    assert forced.exit_code == 0, forced.output
    settle(smtp_server, 6, quiet=0.2)
    bobs = [m.message["Message-ID"] for m in smtp_server.messages if "bob@" in m.recipients[0]]
    assert len(bobs) == 2 and bobs[0] != bobs[1]  # sent again: a new message


def test_preview_html_json_and_to(demo, run_cli, tmp_path):
    base = ("--config", demo, "--now", DEMO_NOW, "digest")
    preview = run_cli(*base, "--to", "carol")
    assert preview.exit_code == 0
    assert preview.stdout.count("To: carol <carol@example.com>") == 2  # personal and team
    assert "HANDOFFS NOT PICKED UP (1)" in preview.stdout
    page = tmp_path / "team.html"
    wrote = run_cli(*base, "--to", "carol", "--html", page)
    assert wrote.exit_code == 0
    assert (tmp_path / "team-carol-team.html").read_text().startswith("<!DOCTYPE html>")
    assert (tmp_path / "team-carol-personal.html").exists()
    data = json.loads(run_cli(*base, "--json").stdout)
    assert {(d["to"], d["kind"]) for d in data} == DIGESTS
    team = next(d for d in data if d["kind"] == "team")
    assert [i["id"] for i in team["sections"]["unowned"]["items"]] == [11, 12]
    away = run_cli(*base, "--to", "dave")
    assert away.exit_code == 0 and "dave gets no digest today (away)" in away.stderr
    assert run_cli(*base, "--to", "nobody").exit_code == 1
    assert run_cli(*base, "--force").exit_code == 1  # --force goes with --send
    assert not (demo.parent.parent / "outbox").exists()  # a preview sends nothing


def test_an_outbox_digest_never_starts_a_task_even_in_its_own_inbox(demo, run_cli, tmp_path):
    base = ("--config", demo, "--now", DEMO_NOW)
    before = json.loads(run_cli(*base, "tasks", "--json", "--status", "all").stdout)
    result = run_cli(*base, "digest", "--send")
    assert result.exit_code == 0
    outbox = Path(load_config(demo).digest.delivery.outbox)  # type: ignore[union-attr]
    files = sorted((outbox / "new").iterdir())
    assert len(files) == 4 and not list((outbox / "tmp").iterdir())
    imported = run_cli(*base, "import", outbox / "new", "--inbox", "support")
    assert imported.exit_code == 0, imported.output
    after = json.loads(run_cli(*base, "tasks", "--json", "--status", "all").stdout)
    assert len(after) == len(before)


# -- delivery failures, store level -----------------------------------------------------------


def test_a_cut_off_transaction_is_resent_with_the_same_message_id(demo, smtp_server, run_cli):
    config = load_config(smtp_config(demo, smtp_server))
    now = datetime.fromisoformat(DEMO_NOW.replace("Z", "+00:00"))
    smtp_server.cut_off_after_data = True
    with Store(config.daemon.database) as store:
        bob = config.person_by_name("bob")
        assert bob is not None
        outgoing.send_digests(store, config, now, wanted=[(bob, "personal", now.date())])
        (failed,) = outgoing.flush(store, config, now)
        assert not failed.ok and "connection lost" in failed.detail
        smtp_server.cut_off_after_data = False
        assert outgoing.flush(store, config, now) == []  # the retry is not due yet
        (ok,) = outgoing.flush(store, config, now, retry_now=True)
        assert ok.ok
        (row,) = claims.recent(store)
        assert (row["state"], row["attempts"]) == ("sent", 2)
    first, second = smtp_server.wait_for(2)
    assert first.message["Message-ID"] == second.message["Message-ID"] == row["message_id"]
    assert first.raw == second.raw


def test_retries_back_off_and_give_up_after_a_day(demo, smtp_server, run_cli):
    config = load_config(smtp_config(demo, smtp_server))
    t0 = datetime(2026, 11, 24, 16, 30, tzinfo=UTC)
    smtp_server.stop()
    with Store(config.daemon.database) as store:
        bob = config.person_by_name("bob")
        assert bob is not None
        outgoing.send_digests(store, config, t0, wanted=[(bob, "personal", t0.date())])
        attempts, now = 0, t0
        gaps = []
        while True:
            sent = outgoing.flush(store, config, now)
            if sent:
                attempts += 1
                assert not sent[0].ok and "connect failed" in sent[0].detail
            (row,) = claims.recent(store)
            if row["state"] == "expired":
                break
            nxt = datetime.fromisoformat(
                store.query("SELECT next_attempt_at FROM deliveries")[0][0].replace("Z", "+00:00")
            )
            gaps.append((nxt - now).total_seconds())
            now = nxt
        assert 10 < attempts < 40
        assert gaps[0] < 80 and max(gaps) <= 3600 * 1.25  # 1m doubling, capped at 1h
        assert (now - t0).total_seconds() > 23 * 3600
        failures = claims.failures(store, now)
        assert failures and failures[0]["state"] == "expired"


# -- the daemon -------------------------------------------------------------------------------


def run_daemon_once(start_daemon: Callable[..., Any], config: Path, now: str) -> str:
    """`maildaemon --now NOW run` until its first look at outgoing mail is done; its log."""
    d = start_daemon(config, "--now", now)
    d.wait_log("outgoing (first look since the start)", timeout=20)
    time.sleep(0.3)
    assert d.stop() == 0
    return d.log()


def test_daemon_restarts_across_the_digest_minute_and_follows_each_zone(
    demo, smtp_server, start_daemon
):
    """bob and carol live in Amsterdam, alice in New York; digest.time 08:00, send_empty so
    every available person gets exactly one a day."""
    config = smtp_config(demo, smtp_server, send_empty="true")
    config.write_text(config.read_text().replace("enabled = true", "enabled = false"))
    runs = [
        ("2026-11-24T06:59:00Z", set()),  # 07:59 in Amsterdam, 01:59 in New York
        ("2026-11-24T07:00:30Z", {"bob", "carol", "frank"}),  # 08:00:30 in Amsterdam
        ("2026-11-24T07:05:00Z", set()),  # restarted: nothing twice
        ("2026-11-24T13:00:30Z", {"alice"}),  # 08:00:30 in New York
        # Down all of Wednesday: on Thursday before 08:00 nothing is caught up from Wednesday.
        ("2026-11-26T06:00:00Z", set()),
        ("2026-11-26T07:30:00Z", {"bob", "carol", "frank"}),  # Thursday's, late: caught up
    ]
    expected = 0
    for now, who in runs:
        run_daemon_once(start_daemon, config, now)
        expected += len(who) + (1 if "carol" in who else 0)  # carol: personal and team
        settle(smtp_server, expected, quiet=0.3)
    days = Counter(
        (m.recipients[0].partition("@")[0], m.message["Subject"].rsplit("— ", 1)[1])
        for m in smtp_server.messages
    )
    assert days == Counter(
        {
            ("bob", "Tue 24 Nov"): 1,
            ("carol", "Tue 24 Nov"): 2,
            ("frank", "Tue 24 Nov"): 1,
            ("alice", "Tue 24 Nov"): 1,
            ("bob", "Thu 26 Nov"): 1,
            ("carol", "Thu 26 Nov"): 2,
            ("frank", "Thu 26 Nov"): 1,
        }
    )


def test_a_daemon_killed_mid_delivery_delivers_exactly_one_copy(demo, smtp_server, start_daemon):
    config = smtp_config(demo, smtp_server)
    smtp_server.hold = True  # the first RCPT TO gets no answer: the daemon is mid-transaction
    d = start_daemon(config, "--now", DEMO_NOW)
    assert smtp_server.holding.wait(20)
    d.proc.send_signal(signal.SIGKILL)
    assert d.proc.wait(10) == -signal.SIGKILL
    smtp_server.hold = False
    assert smtp_server.messages == []
    with Store(load_config(config).daemon.database) as store:
        states = Counter(r["state"] for r in claims.recent(store))
    assert states["sending"] == 1 and states["claimed"] >= 1  # claimed, never confirmed
    run_daemon_once(start_daemon, config, DEMO_NOW)
    settle(smtp_server, 7, quiet=0.5)  # 4 digests + 3 alerts (see the alerts test)
    kinds = delivered(smtp_server)
    assert all(kinds[k] == 1 for k in DIGESTS)
    ids = [m.message["Message-ID"] for m in smtp_server.messages]
    assert len(set(ids)) == len(ids) == 7


def test_smtp_down_at_digest_time_is_reported_and_delivered_once_when_back(
    demo, smtp_server, start_daemon, run_cli
):
    # The real clock: digests are due at any time of any day, retried every second or so.
    config = smtp_config(
        demo, smtp_server, time='"00:00"', days='"Mon-Sun"', retry='"1s"', send_empty="true"
    )
    text = config.read_text().replace("enabled = true", "enabled = false")  # digests only
    config.write_text(text)
    smtp_server.stop()
    d = start_daemon(config)
    d.wait_log("failed, attempt 1", timeout=20)
    status = run_cli("--config", config, "status", "--json")
    failing = json.loads(status.stdout)["failed_deliveries"]
    assert failing and "connect failed" in failing[0]["last_error"]
    assert run_cli("--config", config, "status", "--check").exit_code == 3
    assert "delivery failed:" in run_cli("--config", config, "status").stdout
    smtp_server.start()
    settle(smtp_server, 5, quiet=2.0)  # alice, bob, carol x2, frank: once each
    assert len({m.message["Message-ID"] for m in smtp_server.messages}) == 5
    until(lambda: run_cli("--config", config, "status", "--check").exit_code == 0, 10)
    assert d.stop() == 0


def test_alerts_go_once_per_clock_across_restarts(demo, smtp_server, start_daemon):
    """At the demo's moment: #13's handoff acknowledgement (owner carol) is due in 20
    minutes, #12's first response and #7's resolution were breached within the hour;
    #8 and #3 were breached days ago (a backfill alerts nobody)."""
    config = smtp_config(demo, smtp_server)
    text = config.read_text().replace('days = "Mon-Fri"', 'days = "Sat"')  # alerts only
    config.write_text(text)
    run_daemon_once(start_daemon, config, DEMO_NOW)
    settle(smtp_server, 3, quiet=0.3)
    subjects = sorted(m.message["Subject"] for m in smtp_server.messages)
    assert [s.split(":")[0] for s in subjects] == [
        "1 business hour left",
        "SLA breached",
        "SLA breached",
    ]
    assert "#13 first response" in subjects[0]
    near = next(m for m in smtp_server.messages if "#13" in m.message["Subject"])
    assert "Also its handoff acknowledgement: due" in near.message.get_content()
    assert {re.search(r"#\d+", s).group() for s in subjects[1:]} == {"#12", "#7"}  # type: ignore[union-attr]
    assert all(m.recipients == ("carol@example.com",) for m in smtp_server.messages)
    run_daemon_once(start_daemon, config, "2026-11-24T16:40:00Z")  # later, restarted
    settle(smtp_server, 3, quiet=0.3)


def test_hostile_subjects_arrive_escaped_and_break_no_header(demo, smtp_server, run_cli, tmp_path):
    """Real client mail whose subjects carry markup and an encoded CR/LF, imported, then
    the team digest (both are unowned) sent to a real SMTP server."""
    hostile = tmp_path / "hostile"
    for sub in ("tmp", "new", "cur"):
        (hostile / sub).mkdir(parents=True)
    subjects = [
        "<script>alert('pwned')</script> invoice",
        "=?utf-8?q?Refund=0D=0ABcc=3A_victim=40example=2Eorg=0D=0A=0D=0A<b>x</b>?=",
    ]
    for n, subject in enumerate(subjects):
        (hostile / "new" / f"177000000{n}.hostile{n}.test").write_bytes(
            (
                f"From: Mallory <mallory@acme.com>\r\nTo: support@example.com\r\n"
                f"Subject: {subject}\r\nDate: Tue, 24 Nov 2026 15:0{n}:00 +0000\r\n"
                f"Message-ID: <hostile-{n}@acme.com>\r\n\r\nHello.\r\n"
            ).encode()
        )
    config = smtp_config(demo, smtp_server)
    imported = run_cli("--config", config, "--now", DEMO_NOW, "import", hostile)
    assert imported.exit_code == 0, imported.output
    sent = run_cli("--config", config, "--now", DEMO_NOW, "digest", "--send", "--to", "carol")
    assert sent.exit_code == 0, sent.output
    team = next(m for m in smtp_server.wait_for(2) if m.message["Subject"].startswith("Team:"))
    msg = team.message
    assert msg["Bcc"] is None and msg["To"] == "carol <carol@example.com>"
    headers = team.raw.split(b"\r\n\r\n", 1)[0].decode()
    assert "victim" not in headers and "<script>" not in headers
    html = msg.get_body(("html",)).get_content()
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt; invoice" in html
    assert "<script" not in html and "<b>x</b>" not in html
    assert "Refund Bcc: victim@example.org &lt;b&gt;x&lt;/b&gt;" in html  # one line, as text
    text = msg.get_body(("plain",)).get_content()
    assert "<script>alert('pwned')</script> invoice" in text  # plain text shows it as is
    assert not any(line.lstrip().startswith("Bcc:") for line in text.splitlines())


def test_a_failed_delivery_is_in_the_next_team_digest(demo, smtp_server, run_cli):
    config = load_config(smtp_config(demo, smtp_server))
    now = datetime.fromisoformat(DEMO_NOW.replace("Z", "+00:00"))
    smtp_server.stop()
    with Store(config.daemon.database) as store:
        bob = config.person_by_name("bob")
        assert bob is not None
        outgoing.send_digests(store, config, now, wanted=[(bob, "personal", now.date())])
        (failed,) = outgoing.flush(store, config, now)
        assert not failed.ok
    preview = run_cli("--config", config.source, "--now", DEMO_NOW, "digest", "--to", "carol")
    assert "FAILED DIGEST AND ALERT DELIVERIES (1)" in preview.stdout
    assert "personal to bob (2026-11-24)" in preview.stdout
    assert "connect failed" in preview.stdout


def test_without_a_delivery_digests_preview_but_are_never_claimed(demo, run_cli):
    text = demo.read_text().replace('delivery = { outbox = "../demo/outbox" }\n', "")
    demo.write_text(text)
    base = ("--config", demo, "--now", DEMO_NOW)
    assert run_cli(*base, "digest").exit_code == 0  # a preview needs no delivery
    sent = run_cli(*base, "digest", "--send")
    assert sent.exit_code == 2 and "[digest] has no delivery" in sent.stderr
    config = load_config(demo)
    now = datetime.fromisoformat(DEMO_NOW.replace("Z", "+00:00"))
    with Store(config.daemon.database) as store:
        assert outgoing.tick(store, config, now, stop=lambda: False) == (0, 0, [])
        assert claims.recent(store) == []
