"""Threading (SPEC 5): messages -> threads, each placement with the rule that made it.

Pure: a list of stored messages in, a list of threads out. Header links form connected
components over Message-ID, In-Reply-To and References, through ids not (yet) seen, as
notmuch does. A component whose first message has no usable link may then join an earlier
thread by a fallback, in this order: the Outlook Thread-Index conversation, a ``[#ID]`` task
reference, the same normalized subject. Fallbacks move whole components, so they never split
what header links joined; because the whole placement is recomputed from the messages, a
message placed by a fallback moves by itself when a later header link places it elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

from maildaemon.model import Stored
from maildaemon.parsers.subject import is_generic_subject, task_refs

SUBJECT_WINDOW = timedelta(days=30)

# Why a message is in its thread (the `joined_by` of `show`).
ROOT = "root"
IN_REPLY_TO = "in-reply-to"
REFERENCES = "references"
UNSEEN_PARENT = "unseen-parent"
REFERENCED_BY = "referenced-by"
THREAD_INDEX = "thread-index"
TASK_REF = "task-ref"
SUBJECT = "subject"
FORWARD = "forward"
MERGED = "merged"  # a manager's `merge`
SPLIT = "split"  # a manager's `split`: this message and its replies, out on their own


@dataclass(frozen=True, slots=True)
class Thread:
    """One conversation: its messages in date order and why each one is here."""

    message_ids: tuple[str, ...]
    joined_by: tuple[str, ...]

    @property
    def root(self) -> str:
        return self.message_ids[0]


@dataclass(frozen=True, slots=True)
class Rules:
    """What threading needs to know from the config."""

    subject_fallback: bool
    is_team: Callable[[str], bool]
    is_shared: Callable[[str], bool]
    resolve_task: Callable[[int], int | None] = lambda n: n
    # Repairs by managers: (a message of one task, a message of another) joined by `merge`;
    # messages split out by `split` with the replies below them.
    merges: tuple[tuple[str, str], ...] = ()
    splits: frozenset[str] = frozenset()


def apply_splits(messages: Iterable[Stored], splits: frozenset[str]) -> list[Stored]:
    """Cut each split message, with the replies below it, from the messages above it."""
    messages = list(messages)
    if not splits:
        return messages
    children: dict[str, list[str]] = {}
    for s in messages:
        for link in s.message.links:
            children.setdefault(link, []).append(s.message.message_id)
    below: set[str] = set()
    for top in splits:
        todo, group = [top], {top}
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in group and child not in splits:
                    group.add(child)
                    todo.append(child)
        below |= group
    out = []
    for s in messages:
        m = s.message
        if m.message_id in below:
            inside = below if m.message_id not in splits else set()

            def keep(ids: tuple[str, ...], inside: set[str] = inside) -> tuple[str, ...]:
                return tuple(i for i in ids if i in inside)

            m = replace(m, in_reply_to=keep(m.in_reply_to), references=keep(m.references))
            s = replace(s, message=m)
        out.append(s)
    return out


class _UnionFind:
    __slots__ = ("parent",)

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        parent = self.parent
        root = parent.setdefault(x, x)
        while root != parent[root]:
            root = parent[root]
        while x != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def _order_key(s: Stored) -> tuple[object, ...]:
    return (s.message.date, s.seen_at, s.message.message_id)


class _Building:
    """A thread under construction: its components, activity and participants."""

    __slots__ = ("members", "prior_tasks", "rules_by_id", "shared")

    def __init__(self) -> None:
        self.members: list[Stored] = []
        self.rules_by_id: dict[str, str] = {}
        self.prior_tasks: set[int] = set()
        self.shared = False

    def add(self, component: Sequence[Stored], rules: dict[str, str]) -> None:
        self.members.extend(component)
        self.rules_by_id.update(rules)
        for s in component:
            if s.prior_task is not None:
                self.prior_tasks.add(s.prior_task)
            self.shared = self.shared or s.shared

    def active_in(self, first: Stored) -> bool:
        """Has a message in the 30 days before (and up to) ``first``'s Date."""
        start = first.message.date - SUBJECT_WINDOW
        return any(start <= s.message.date <= first.message.date for s in self.members)

    def had_subject(self, first: Stored) -> bool:
        """Carried ``first``'s normalized subject before ``first``'s Date."""
        subject, date = first.message.normalized_subject, first.message.date
        return any(
            s.message.normalized_subject == subject and s.message.date <= date for s in self.members
        )

    def last_active_before(self, first: Stored) -> tuple[object, ...]:
        return max(
            (_order_key(s) for s in self.members if s.message.date <= first.message.date),
            default=(first.message.date - SUBJECT_WINDOW,),
        )

    def participants(self, rules: Rules, before: Stored) -> set[str]:
        people: set[str] = set()
        for s in self.members:
            if s.message.date > before.message.date:
                continue
            m = s.message
            addrs = [a.email for a in (*m.to, *m.cc)]
            if m.from_ is not None:
                addrs.append(m.from_.email)
            people.update(a for a in addrs if not rules.is_shared(a))
        return people


def _component_rules(component: Sequence[Stored]) -> dict[str, str]:
    """The header rule that placed each message of a component (its first is the root)."""
    present = {s.message.message_id for s in component}
    referenced: set[str] = set()
    for s in component:
        referenced.update(s.message.links)
    rules: dict[str, str] = {}
    for i, s in enumerate(component):
        m = s.message
        if i == 0:
            rules[m.message_id] = ROOT
        elif m.in_reply_to and m.in_reply_to[0] in present:
            rules[m.message_id] = IN_REPLY_TO
        elif any(r in present for r in m.references):
            rules[m.message_id] = REFERENCES
        elif m.links:
            rules[m.message_id] = UNSEEN_PARENT
        else:
            rules[m.message_id] = REFERENCED_BY
    return rules


def header_components(
    messages: Iterable[Stored], merges: Sequence[tuple[str, str]] = ()
) -> list[list[Stored]]:
    """Connected components over Message-ID / In-Reply-To / References, each in date order."""
    uf = _UnionFind()
    by_id: dict[str, Stored] = {}
    for s in messages:
        mid = s.message.message_id
        by_id.setdefault(mid, s)
        uf.find(mid)
        for link in s.message.links:
            uf.union(mid, link)
    for a, b in merges:
        uf.union(a, b)
    groups: dict[str, list[Stored]] = {}
    for mid, s in by_id.items():
        groups.setdefault(uf.find(mid), []).append(s)
    components = [sorted(g, key=_order_key) for g in groups.values()]
    components.sort(key=lambda c: _order_key(c[0]))
    return components


def thread_messages(messages: Iterable[Stored], rules: Rules) -> list[Thread]:
    """Place every message in a thread; threads come out in order of their first message."""
    building: list[_Building] = []
    by_conversation: dict[str, _Building] = {}
    by_subject: dict[str, list[_Building]] = {}
    by_task: dict[int, _Building] = {}

    merged = {b for _, b in rules.merges} | {a for a, _ in rules.merges}
    for component in header_components(apply_splits(messages, rules.splits), rules.merges):
        first = component[0]
        rules_here = _component_rules(component)
        for s in component[1:]:
            if s.message.message_id in merged and rules_here[s.message.message_id] in (
                ROOT,
                REFERENCED_BY,
            ):
                rules_here[s.message.message_id] = MERGED
        if first.message.message_id in rules.splits:
            rules_here[first.message.message_id] = SPLIT
        target: _Building | None = None
        if not first.message.links and first.message.message_id not in rules.splits:
            target, how = _fallback(first, rules, by_conversation, by_subject, by_task)
            if target is not None:
                rules_here[first.message.message_id] = how
        if target is None:
            target = _Building()
            building.append(target)
        target.add(component, rules_here)
        for s in component:
            m = s.message
            if m.thread_index:
                by_conversation.setdefault(m.thread_index, target)
            if m.normalized_subject:
                bucket = by_subject.setdefault(m.normalized_subject, [])
                if target not in bucket:
                    bucket.append(target)
            if s.prior_task is not None:
                by_task.setdefault(s.prior_task, target)

    threads = []
    for b in building:
        ordered = sorted(b.members, key=_order_key)
        ids = tuple(s.message.message_id for s in ordered)
        threads.append(Thread(ids, tuple(b.rules_by_id[i] for i in ids)))
    return threads


def _fallback(
    first: Stored,
    rules: Rules,
    by_conversation: dict[str, _Building],
    by_subject: dict[str, list[_Building]],
    by_task: dict[int, _Building],
) -> tuple[_Building | None, str]:
    m = first.message
    sender = m.from_.email if m.from_ is not None else None
    if m.thread_index and m.thread_index in by_conversation:
        return by_conversation[m.thread_index], THREAD_INDEX
    for ref in task_refs(m.subject):
        task = rules.resolve_task(ref)
        target = by_task.get(task) if task is not None else None
        if target is None or sender is None:
            continue
        # The task must have existed when this mail arrived: a reference to an id that was
        # handed out later (in the same batch, say) names some other task by accident.
        if not any(s.seen_at < first.seen_at for s in target.members):
            continue
        if rules.is_team(sender) or sender in target.participants(rules, first):
            return target, TASK_REF
    if not rules.subject_fallback or sender is None:
        return None, ""
    subject = m.normalized_subject
    if not subject or is_generic_subject(subject):
        return None, ""
    candidates = [
        b for b in by_subject.get(subject, ()) if b.had_subject(first) and b.active_in(first)
    ]
    if not candidates:
        return None, ""
    candidates.sort(key=lambda b: b.last_active_before(first), reverse=True)
    for b in candidates:
        if sender in b.participants(rules, first):
            return b, SUBJECT
    if m.is_forward and rules.is_team(sender):
        for b in candidates:
            if b.shared:
                return b, FORWARD
    return None, ""
