"""Domain records shared by the pure core: frozen values, aware UTC times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: display name and lower-cased addr-spec."""

    name: str
    email: str


@dataclass(frozen=True, slots=True)
class Attachment:
    """An attachment we did not download: its name, type and size in bytes."""

    filename: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class Message:
    """One parsed email, as every source (IMAP, Maildir, mbox, .eml) yields it.

    Ids carry their angle brackets (``<abc@host>``). ``date`` is aware UTC and never
    None: a missing or absurd Date falls back to the delivery time and
    ``date_is_fallback`` is set (and a defect recorded).
    """

    message_id: str
    synthetic_id: bool
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    from_: Address | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    date: datetime
    date_is_fallback: bool
    subject: str
    base_subject: str
    normalized_subject: str
    is_forward: bool
    thread_index: str | None
    auto_submitted: str | None
    precedence: str | None
    x_autoreply: bool
    list_id: str | None
    text: str
    reply_text: str
    attachments: tuple[Attachment, ...]
    defects: tuple[str, ...]
    size: int

    @property
    def links(self) -> tuple[str, ...]:
        """Every id this message points at: In-Reply-To first, then References."""
        return self.in_reply_to + tuple(r for r in self.references if r not in self.in_reply_to)

    @property
    def parent_id(self) -> str | None:
        """The message replied to: In-Reply-To, else the last References id (SPEC 6.1)."""
        if self.in_reply_to:
            return self.in_reply_to[0]
        if self.references:
            return self.references[-1]
        return None


@dataclass(frozen=True, slots=True)
class Stored:
    """A message as the store knows it: the parsed record plus where and when it was seen.

    ``shared`` is true when the message reached a shared inbox (any inbox that is not a
    person's ``role = "sent"`` folder). The text fields of ``message`` may be empty when
    the store loads only what the rules read.
    """

    message: Message
    seen_at: datetime
    inboxes: tuple[str, ...]
    shared: bool
    prior_task: int | None = None
