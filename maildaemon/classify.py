"""Classification (SPEC 6): is a message from the team, a client, or a machine?

Pure. Auto messages (auto-replies, bounces, bulk mail that did not come through a list)
and ignored senders are stored but never start a task, change an owner, count as a reply
or stop a clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from maildaemon.config import Config
from maildaemon.model import Message

Kind = Literal["team", "client", "auto"]

# Out-of-office and auto-reply subjects in the common languages (case-insensitive prefix
# or phrase). Kept short and specific: a client's subject merely containing "absence"
# must not be silenced.
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:"
    r"out of (?:the )?office|automatic reply|auto(?:matic)?[- ]?reply|autoreply|"
    r"auto-response|away from (?:the )?office|on vacation|"
    r"abwesenheitsnotiz|automatische antwort|abwesend|"
    r"réponse automatique|reponse automatique|absent\(e\)? du bureau|absence du bureau|"
    r"respuesta automática|respuesta automatica|fuera de la oficina|"
    r"risposta automatica|fuori sede|fuori ufficio|"
    r"afwezig|automatisch antwoord|niet aanwezig|"
    r"frånvaro|autosvar|automatisk svar|fraværende|"
    r"resposta automática|ausente|"
    r"odpowiedź automatyczna|automatická odpověď|"
    r"自动回复|自動回覆|不在|自動応答|자동 회신"
    r")",
    re.IGNORECASE,
)
_MACHINE_LOCALPARTS = frozenset({"mailer-daemon", "postmaster"})


@dataclass(frozen=True, slots=True)
class Classification:
    kind: Kind
    client: str | None
    ignored: bool
    reason: str


def auto_reason(m: Message) -> str | None:
    """Why a message is machine mail, or None for a human one."""
    if m.auto_submitted and m.auto_submitted.split(";")[0].strip() != "no":
        return f"Auto-Submitted: {m.auto_submitted}"
    if m.x_autoreply:
        return "X-Autoreply"
    if m.precedence == "auto_reply":
        return "Precedence: auto_reply"
    if m.precedence in ("bulk", "junk") and not m.list_id:
        return f"Precedence: {m.precedence} without List-Id"
    if m.from_ is not None and m.from_.email.split("@", 1)[0] in _MACHINE_LOCALPARTS:
        return "sent by a mail system"
    if _AUTO_SUBJECT.match(m.base_subject):
        return "out-of-office subject"
    return None


def classify(m: Message, config: Config) -> Classification:
    """Team, client or auto, with the client the sender belongs to."""
    sender = m.from_.email if m.from_ is not None else None
    if config.is_ignored(sender, m.list_id):
        return Classification("auto", None, True, "ignored by [classification] ignore")
    reason = auto_reason(m)
    if reason is not None:
        return Classification("auto", None, False, reason)
    if sender is not None and config.is_team_address(sender):
        return Classification("team", None, False, "team sender")
    client = config.client_for_address(sender) if sender else None
    return Classification("client", client.name if client else None, False, "outside sender")


def recipients_client(m: Message, config: Config) -> str | None:
    """The client of the first recipient (To, then Cc) that belongs to one."""
    for a in (*m.to, *m.cc):
        client = config.client_for_address(a.email)
        if client is not None:
            return client.name
    return None


def writes_to_client(m: Message, config: Config) -> bool:
    """A team message that has someone outside the team in To or Cc."""
    return any(not config.is_team_address(a.email) for a in (*m.to, *m.cc))
