"""delivery.py against a real aiosmtpd server on loopback, and the outbox Maildir."""

from __future__ import annotations

import os
import shlex
import threading
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from smtp_server import PASSWORD, USERNAME, SmtpServer

from maildaemon.config import Delivery
from maildaemon.delivery import DeliveryError, deliver
from maildaemon.errors import OperationError

SENDER = "maildaemon@example.com"
TO = ["alice@example.com"]
NAME = "digest-personal-alice-2026-11-24-3f9a"

Factory = Callable[..., SmtpServer]


def message(
    subject: str = "3 overdue for you", body: str = "Good morning.\n", **headers: str
) -> bytes:
    m = EmailMessage(policy=SMTP)
    m["From"] = SENDER
    m["To"] = ", ".join(TO)
    m["Subject"] = subject
    m["Message-ID"] = "<digest-personal-alice-2026-11-24@maildaemon.example.com>"
    for key, value in headers.items():
        m[key.replace("_", "-")] = value
    m.set_content(body)
    return m.as_bytes()


# -- SMTP ------------------------------------------------------------------------------------


def test_plain_smtp_delivers_the_message_unchanged(smtp_server: SmtpServer) -> None:
    raw = message()
    where = deliver(smtp_server.delivery(), raw, SENDER, TO, NAME)
    assert where == f"smtp 127.0.0.1:{smtp_server.port}"
    (got,) = smtp_server.wait_for(1)
    assert got.envelope_from == SENDER
    assert got.recipients == tuple(TO)
    assert got.raw == raw
    assert got.message["Message-ID"] == "<digest-personal-alice-2026-11-24@maildaemon.example.com>"
    assert not got.encrypted and got.login is None


def test_lf_line_ends_go_out_as_crlf_and_dot_lines_survive(smtp_server: SmtpServer) -> None:
    raw = message(body="first\n.\n.hidden dot line\nlast\n")
    lf = raw.replace(b"\r\n", b"\n")
    deliver(smtp_server.delivery(), lf, SENDER, TO, NAME)
    (got,) = smtp_server.wait_for(1)
    assert got.raw == raw
    assert got.message.get_content() == "first\n.\n.hidden dot line\nlast\n"


def test_eight_bit_utf8_body_arrives_intact(smtp_server: SmtpServer) -> None:
    m = EmailMessage(policy=SMTP)
    m["From"], m["To"], m["Subject"] = SENDER, TO[0], "Umlaute"
    m.set_content("Lieferscheine für Bremen: Größe ändern\n", cte="8bit")
    raw = m.as_bytes()
    assert not raw.isascii()
    deliver(smtp_server.delivery(), raw, SENDER, TO, NAME)
    (got,) = smtp_server.wait_for(1)
    assert got.raw == raw
    assert got.message.get_content() == "Lieferscheine für Bremen: Größe ändern\n"


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_with_ca_file_is_encrypted(smtp_server_factory: Factory, security: str) -> None:
    server = smtp_server_factory(security=security)
    assert server.ca_file is not None
    deliver(server.delivery(), message(), SENDER, TO, NAME)
    (got,) = server.wait_for(1)
    assert got.encrypted
    assert got.message["Subject"] == "3 overdue for you"


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_self_signed_certificate_is_refused_by_default(
    smtp_server_factory: Factory, security: str
) -> None:
    server = smtp_server_factory(security=security)
    with pytest.raises(DeliveryError) as e:
        deliver(server.delivery(ca_file=None), message(), SENDER, TO, NAME)
    reason = str(e.value)
    assert reason.startswith(f"smtp 127.0.0.1:{server.port}: certificate verify failed (")
    assert "self-signed" in reason or "self signed" in reason
    assert reason.endswith("set ca_file or verify = false")
    assert "\n" not in reason
    assert server.messages == []


def test_verify_false_accepts_a_self_signed_certificate(smtp_server_factory: Factory) -> None:
    server = smtp_server_factory(security="tls")
    deliver(server.delivery(ca_file=None, verify=False), message(), SENDER, TO, NAME)
    assert server.wait_for(1)[0].encrypted


def test_starttls_never_falls_back_to_plain_text(smtp_server: SmtpServer) -> None:
    with pytest.raises(DeliveryError, match="does not offer STARTTLS"):
        deliver(smtp_server.delivery(security="starttls"), message(), SENDER, TO, NAME)
    assert smtp_server.messages == []


def test_ca_file_that_cannot_be_read_is_a_delivery_error(
    smtp_server_factory: Factory, tmp_path: Path
) -> None:
    server = smtp_server_factory(security="tls")
    missing = tmp_path / "nope.pem"
    with pytest.raises(DeliveryError, match=f"ca_file {missing} unreadable"):
        deliver(server.delivery(ca_file=missing), message(), SENDER, TO, NAME)


@pytest.mark.parametrize("security", ["plain", "starttls"])
def test_login_with_password_from_the_environment(
    smtp_server_factory: Factory, monkeypatch: pytest.MonkeyPatch, security: str
) -> None:
    server = smtp_server_factory(security=security, auth=True)
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    delivery = server.delivery(username=USERNAME, password_env="SMTP_PASSWORD")
    deliver(delivery, message(), SENDER, TO, NAME)
    (got,) = server.wait_for(1)
    assert got.login == USERNAME
    assert server.logins == [USERNAME]


def test_login_with_password_from_a_command(smtp_server_factory: Factory) -> None:
    server = smtp_server_factory(auth=True)
    command = f"echo {shlex.quote(PASSWORD)}"
    deliver(
        server.delivery(username=USERNAME, password_command=command), message(), SENDER, TO, NAME
    )
    assert server.wait_for(1)[0].login == USERNAME


def test_refused_login_names_the_server_and_the_setting_never_the_password(
    smtp_server_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_server_factory(auth=True)
    monkeypatch.setenv("SMTP_PASSWORD", "wrong-pw-123")
    delivery = server.delivery(username=USERNAME, password_env="SMTP_PASSWORD")
    with pytest.raises(DeliveryError) as e:
        deliver(delivery, message(), SENDER, TO, NAME)
    reason = str(e.value)
    assert reason.startswith(f"smtp 127.0.0.1:{server.port}: login refused for {USERNAME} (535")
    assert reason.endswith("check SMTP_PASSWORD")
    assert "wrong-pw-123" not in reason
    assert server.messages == [] and server.logins == []


def test_missing_password_fails_before_the_network(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMTP_PASSWORD", raising=False)
    smtp_server.stop()  # it is never asked: the error is about the setting, not the server
    delivery = smtp_server.delivery(username=USERNAME, password_env="SMTP_PASSWORD")
    with pytest.raises(DeliveryError) as e:
        deliver(delivery, message(), SENDER, TO, NAME)
    assert str(e.value) == (
        f"smtp 127.0.0.1:{smtp_server.port}: SMTP_PASSWORD is not set — export the password "
        f"of {USERNAME} in it"
    )
    assert isinstance(e.value, OperationError)


def test_server_down_names_host_and_port_and_works_again_when_back(
    smtp_server: SmtpServer,
) -> None:
    smtp_server.stop()
    with pytest.raises(DeliveryError) as e:
        deliver(smtp_server.delivery(), message(), SENDER, TO, NAME)
    assert str(e.value) == f"smtp 127.0.0.1:{smtp_server.port}: connect failed: Connection refused"
    smtp_server.start()
    deliver(smtp_server.delivery(), message(), SENDER, TO, NAME)
    assert len(smtp_server.wait_for(1)) == 1


def test_cut_off_transaction_is_an_error_though_the_server_got_the_message(
    smtp_server: SmtpServer,
) -> None:
    smtp_server.cut_off_after_data = True
    raw = message()
    with pytest.raises(DeliveryError, match="connection lost during the transaction") as e:
        deliver(smtp_server.delivery(), raw, SENDER, TO, NAME)
    assert str(e.value).startswith(f"smtp 127.0.0.1:{smtp_server.port}: ")
    assert [m.raw for m in smtp_server.messages] == [raw]
    # The caller's retry: the same message again, which the server now confirms.
    smtp_server.cut_off_after_data = False
    deliver(smtp_server.delivery(), raw, SENDER, TO, NAME)
    first, second = smtp_server.wait_for(2)
    assert first.message["Message-ID"] == second.message["Message-ID"]


def test_cut_off_transaction_over_tls_is_an_error(smtp_server_factory: Factory) -> None:
    server = smtp_server_factory(security="starttls")
    server.cut_off_after_data = True
    with pytest.raises(DeliveryError, match=f"127.0.0.1:{server.port}: connection lost"):
        deliver(server.delivery(), message(), SENDER, TO, NAME)
    assert len(server.messages) == 1


def test_every_recipient_refused_is_an_error_naming_them(smtp_server: SmtpServer) -> None:
    smtp_server.refuse_recipients = {"alice@example.com", "bob@example.com"}
    with pytest.raises(DeliveryError) as e:
        deliver(
            smtp_server.delivery(),
            message(),
            SENDER,
            ["alice@example.com", "bob@example.com"],
            NAME,
        )
    reason = str(e.value)
    assert reason.startswith(f"smtp 127.0.0.1:{smtp_server.port}: every recipient refused: ")
    assert "alice@example.com (550 " in reason and "bob@example.com (550 " in reason
    assert smtp_server.messages == []


def test_some_recipients_refused_delivers_to_the_others(
    smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    smtp_server.refuse_recipients = {"bob@example.com"}
    where = deliver(
        smtp_server.delivery(), message(), SENDER, ["alice@example.com", "bob@example.com"], NAME
    )
    assert where == f"smtp 127.0.0.1:{smtp_server.port} (refused: bob@example.com)"
    assert smtp_server.wait_for(1)[0].recipients == ("alice@example.com",)
    assert "some recipients refused: bob@example.com (550" in caplog.text


# -- outbox ----------------------------------------------------------------------------------


def outbox(root: Path) -> Delivery:
    return Delivery("outbox", outbox=root)


def files(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_outbox_makes_the_maildir_and_renames_a_complete_file_into_new(tmp_path: Path) -> None:
    root = tmp_path / "state" / "outbox"
    raw = message()
    where = deliver(outbox(root), raw, SENDER, TO, NAME)
    assert where == str(root / "new" / f"{NAME}.eml")
    assert Path(where).read_bytes() == raw
    assert files(root) == ["cur", "new", "tmp"]
    assert files(root / "tmp") == []
    assert files(root / "new") == [f"{NAME}.eml"]


def test_outbox_retry_with_the_same_name_writes_no_second_copy(tmp_path: Path) -> None:
    first = deliver(outbox(tmp_path), message(), SENDER, TO, NAME)
    again = deliver(outbox(tmp_path), message(subject="changed"), SENDER, TO, NAME)
    assert again == first
    assert files(tmp_path / "new") == [f"{NAME}.eml"]
    assert b"3 overdue for you" in Path(first).read_bytes()


def test_outbox_retry_after_a_mail_client_moved_it_to_cur(tmp_path: Path) -> None:
    first = Path(deliver(outbox(tmp_path), message(), SENDER, TO, NAME))
    read = tmp_path / "cur" / f"{NAME}.eml:2,S"
    first.rename(read)
    again = deliver(outbox(tmp_path), message(), SENDER, TO, NAME)
    assert again == str(read)
    assert files(tmp_path / "new") == []
    assert files(tmp_path / "cur") == [f"{NAME}.eml:2,S"]


def test_outbox_different_names_are_different_files(tmp_path: Path) -> None:
    deliver(outbox(tmp_path), message(), SENDER, TO, NAME)
    deliver(outbox(tmp_path), message(), SENDER, TO, "digest-team-carol-2026-11-24-77aa")
    assert files(tmp_path / "new") == [
        f"{NAME}.eml",
        "digest-team-carol-2026-11-24-77aa.eml",
    ]


def test_outbox_replaces_a_partial_file_left_in_tmp_by_a_crash(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / f"{NAME}.eml").write_bytes(b"From: half a mess")
    raw = message()
    where = deliver(outbox(tmp_path), raw, SENDER, TO, NAME)
    assert Path(where).read_bytes() == raw
    assert files(tmp_path / "tmp") == []


def test_outbox_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    raws = {f"digest-{i:02d}": message(body="x" * 200_000 + f"{i}\n") for i in range(25)}
    sizes = {f"{name}.eml": len(raw) for name, raw in raws.items()}
    seen: dict[str, set[int]] = {}
    done = threading.Event()

    def watch() -> None:
        new = tmp_path / "new"
        while not done.is_set():
            for entry in os.listdir(new) if new.exists() else []:
                seen.setdefault(entry, set()).add(len((new / entry).read_bytes()))

    reader = threading.Thread(target=watch)
    reader.start()
    try:
        for name, raw in raws.items():
            deliver(outbox(tmp_path), raw, SENDER, TO, name)
    finally:
        done.set()
        reader.join()
    assert seen, "the reader saw nothing"
    assert {entry: sizes[entry] for entry in seen} == {e: max(s) for e, s in seen.items()}
    assert all(len(s) == 1 for s in seen.values()), seen
    assert files(tmp_path / "tmp") == []


def test_outbox_that_cannot_be_written_is_a_delivery_error(tmp_path: Path) -> None:
    blocked = tmp_path / "outbox"
    blocked.write_text("a file where the outbox should be")
    with pytest.raises(DeliveryError) as e:
        deliver(outbox(blocked), message(), SENDER, TO, NAME)
    assert str(e.value).startswith(f"outbox {blocked}: cannot write: ")
    assert blocked.read_text() == "a file where the outbox should be"


def test_outbox_with_a_file_in_place_of_new_is_a_delivery_error(tmp_path: Path) -> None:
    (tmp_path / "new").write_text("not a folder")
    with pytest.raises(DeliveryError, match=f"outbox {tmp_path}: cannot write: File exists"):
        deliver(outbox(tmp_path), message(), SENDER, TO, NAME)


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "x:2,S", "sp ace"])
def test_outbox_refuses_a_name_that_is_not_filesystem_safe(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="not a safe outbox file name"):
        deliver(outbox(tmp_path), message(), SENDER, TO, name)
    assert not (tmp_path / "new").exists()
