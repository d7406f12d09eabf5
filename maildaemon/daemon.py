"""The daemon (`maildaemon run`): every inbox synced on a thread of its own, tasks kept
current as mail arrives, periodic jobs on a private scheduler, signals (SPEC 4, 10, 11).

Units of work are methods that do one step and return, so tests call them directly:
`sync_inbox`, `rederive_if_new`, `tick` (one guarded pass over one inbox), `apply_retention`,
`reload_config`, `recompute`. `run` only loops over them.

Threads: one per inbox, and the main thread (signals, config reloads, scheduled jobs). Each
thread has its own `Store`, since a sqlite3 connection must not cross threads; writes begin
IMMEDIATE with a 30 s busy timeout, so the threads and the CLI queue instead of failing.
Re-derivation reads every thread (new mail can link any two), so one lock serializes it.

Signal handlers only set flags; the main loop turns them into `stop` (an Event the inbox
threads wait on) or a reload. Every unit catches its own exceptions: one failing inbox or
job never stops another.

Waiting for mail (`wait_for_mail`): an IMAP inbox keeps one connection on its thread; after
a pass, where the server has IDLE, the thread IDLEs on the folder until the server
announces mail (then a pass at once), re-issuing IDLE every `IDLE_RENEW` (a pass in
between, one EXAMINE when nothing changed), looking at the stop and reload flags every
`imap.IDLE_SLICE_S`. A connection that dies while idle (BYE, a closed socket, DONE
unanswered) is dropped and the next pass connects anew, at once the first time and with
backoff when it keeps dying. Servers without IDLE, other inboxes and failing inboxes wait
`poll_interval` or their backoff; a reload (SIGHUP) cuts every wait short.
"""

from __future__ import annotations

import importlib
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import schedule

from maildaemon import ingest, ledger, outgoing
from maildaemon.config import Config, Inbox, load_config
from maildaemon.errors import MaildaemonError
from maildaemon.rows import iso
from maildaemon.store import Store

log = logging.getLogger("maildaemon.daemon")

BACKOFF_FIRST = timedelta(seconds=5)  # the first retry: this, or poll_interval if shorter
BACKOFF_CAP = timedelta(minutes=5)
RETENTION_EVERY = timedelta(days=1)
OUTGOING_EVERY = timedelta(seconds=30)  # how often digests and alerts are looked at
FIRST_PASS_WAIT = timedelta(minutes=5)  # at start, digests wait this long for fresh mail
# Re-issue IDLE this often (servers may end it at 30 min). DONE is then answered within
# IDLE_DONE_TIMEOUT, or the connection has gone silent (a dead NAT entry, a cut link: no
# FIN, no data) and is dropped and reconnected; TCP keepalive (imap.KEEPALIVE_*) finds a
# dead peer sooner where nothing between answers for it.
IDLE_RENEW = timedelta(minutes=2)
IDLE_DONE_TIMEOUT = timedelta(seconds=10)
IDLE_HEALTHY = timedelta(seconds=30)  # an IDLE that lasted this long resets the drop count
LOGOUT_TIMEOUT_S = 2.0  # how long a stopping inbox thread waits for LOGOUT's answer
WAIT_SLICE_S = 0.5  # a wait without IDLE looks at the reload flag this often
STOP_GRACE_S = 60.0  # how long `run` waits for the inbox threads to finish their unit
TICK_S = 0.2  # how often the main loop looks at the signal flags and the scheduler
IMAP_UNAVAILABLE = "IMAP sync unavailable"
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Stopping(Exception):
    """The daemon was asked to stop in the middle of a sync; the uncommitted rest of it is
    read again on the next start (progress is committed with each batch)."""


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def backoff_delay(failures: int, base: float, cap: float, rand: float) -> float:
    """Seconds to wait after ``failures`` failures in a row: doubling from ``base`` up to
    ``cap``, with equal jitter (``rand`` in [0, 1) picks a point in the upper half)."""
    full = min(cap, base * float(2 ** max(0, failures - 1)))
    return full / 2 + full / 2 * rand


def describe(exc: BaseException) -> str:
    """One line for the log and `status`. Our errors say what to fix; others get their
    type. Neither carries a secret: passwords and tokens never go into an error message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, MaildaemonError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _imap_module() -> Any | None:
    """`maildaemon.imap` (imported on first use: imapclient loads only when an inbox needs
    it), or None while that module does not exist."""
    try:
        return importlib.import_module("maildaemon.imap")
    except ModuleNotFoundError as e:
        if e.name != "maildaemon.imap":  # the module exists and a dependency of it is missing
            raise
        return None


def _source_name(inbox: Inbox) -> str:
    """The `sources` row an error is recorded under when a pass raised."""
    if inbox.path is not None:
        return str(inbox.path.resolve())
    return inbox.name


class Daemon:
    """The long-running process. ``clock`` gives "now" (the CLI's `--now` pins it)."""

    def __init__(
        self,
        config: Config,
        config_path: Path,
        db_path: Path,
        *,
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.db_path = db_path
        self.clock = clock
        self.stop = threading.Event()
        self.scheduler = schedule.Scheduler()
        self._rng = rng or random.Random()
        self._local = threading.local()
        self._derive_lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        # inbox name -> its IMAP connection (an `ImapInbox`), used by that inbox's thread only
        self._imap: dict[str, Any] = {}
        self._drops: dict[str, int] = {}  # inbox name -> connections lost while idle, in a row
        self._wakes = 0  # bumped by the main thread after a reload: waits end early
        self._pid = os.getpid()
        # Set by signal handlers only (plain assignments: a handler must take no lock).
        self._stop_signal: int | None = None
        self._reload_requested = False
        self._passed: set[str] = set()  # inboxes that finished a pass since the start
        self._caught_up = False  # outgoing mail looked at once after the first passes
        self._outgoing_ran = False  # the first look also retries failed deliveries at once
        self._started = time.monotonic()

    # -- the store of the calling thread ----------------------------------------------------

    @property
    def store(self) -> Store:
        """This thread's own connection, opened on first use."""
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = Store(self.db_path)
            self._local.store = store
        return store

    def close_store(self) -> None:
        """Close this thread's connection (a connection can only be closed by its thread)."""
        store: Store | None = getattr(self._local, "store", None)
        if store is not None:
            self._local.store = None
            store.close()

    # -- units of work ---------------------------------------------------------------------

    def sync_inbox(self, inbox: Inbox) -> ingest.SyncResult:
        """One pass over one inbox, without re-deriving. A source that fails records its
        error in the store and returns it in the result; an exception is left to `tick`."""
        try:
            return self._sync_inbox(inbox)
        finally:
            self._passed.add(inbox.name)

    def _sync_inbox(self, inbox: Inbox) -> ingest.SyncResult:
        config, now = self.config, self.clock()
        if inbox.kind == "imap":
            module = _imap_module()
            if module is None:
                self.store.record_sync(inbox.name, inbox.name, at=now, error=IMAP_UNAVAILABLE)
                return ingest.SyncResult(inbox.name, inbox.name, 0, 0, 0, IMAP_UNAVAILABLE)
            conn = self._imap.get(inbox.name)
            if conn is not None and conn.inbox != inbox:  # its settings changed (a reload)
                self.close_imap(inbox.name, LOGOUT_TIMEOUT_S)
                conn = None
            if conn is None:
                conn = module.ImapInbox(inbox)
                self._imap[inbox.name] = conn
            result = conn.sync(
                self.store,
                text_cap=config.ingest.text_cap,
                now=now,
                progress_factory=self._stop_check,
            )
            if isinstance(result, list):  # one result per folder
                return self._combine(inbox, result)
            assert isinstance(result, ingest.SyncResult)
            return result
        return ingest.sync_local(
            self.store, config, inbox, now=now, progress_factory=self._stop_check
        )

    @staticmethod
    def _combine(inbox: Inbox, results: list[ingest.SyncResult]) -> ingest.SyncResult:
        errors = [r.error for r in results if r.error]
        return ingest.SyncResult(
            inbox.name,
            ", ".join(r.source for r in results),
            sum(r.seen for r in results),
            sum(r.new for r in results),
            sum(r.quarantined for r in results),
            "; ".join(errors) or None,
            fresh=ingest.merge_fresh(results),
            located=ingest.merge_located(results),
        )

    def _stop_check(self, _total: int) -> ingest.Progress:
        """A progress callback that ends a long sync when the daemon is stopping."""

        def step(_n: int) -> None:
            if self.stop.is_set():
                raise Stopping

        return step

    def rederive_if_new(self, results: Iterable[ingest.SyncResult]) -> ledger.Plan | None:
        """Re-derive the threads that new mail touched, and those of known mail seen in
        one more inbox (None when there was neither)."""
        results = list(results)
        # A pass cut short (an error, a stop, a kill) after some batches were committed
        # leaves stored mail in no task; the next pass does not see it as new.
        if not any(r.new or r.located for r in results) and not self.store.underived_messages():
            return None
        fresh, located = ingest.merge_fresh(results), ingest.merge_located(results)
        with self._derive_lock:  # the config is read under the lock: a reload waits for it
            plan = ingest.rederive(self.store, self.config, self.clock(), fresh, located)
        writes = plan.writes
        inboxes = ", ".join(sorted({r.inbox for r in results if r.new or r.located}))
        for mid in fresh:
            log.debug("inbox %s: new message %s", inboxes, mid)
        also = f" (+{len(located)} known, now seen here too)" if located else ""
        log.info(
            "inbox %s: %d new message(s)%s; %d task(s) updated, %d new",
            inboxes,
            len(fresh),
            also,
            len(writes.changed_tasks),
            len(writes.new_tasks),
        )
        return plan

    def tick(self, inbox: Inbox) -> str | None:
        """One guarded pass over one inbox: sync, re-derive, error bookkeeping. Returns the
        error (recorded in the store, so `status` shows it), or None when the pass worked.
        Only `Stopping` escapes."""
        try:
            result = self.sync_inbox(inbox)
            self.rederive_if_new([result])
            if result.error is None:
                self.store.clear_inbox_errors(inbox.name)
            return result.error  # a failing source recorded its own error
        except Stopping:
            raise
        except Exception as e:
            error = describe(e)
            log.debug("inbox %s: traceback", inbox.name, exc_info=True)
            try:
                source = _source_name(inbox)
                self.store.record_sync(inbox.name, source, at=self.clock(), error=error)
            except Exception as e2:
                log.error("inbox %s: cannot record the error: %s", inbox.name, describe(e2))
            return error

    def apply_retention(self) -> int:
        """Drop the text of tasks closed longer than `retention.bodies_after` (SPEC 11)."""
        after = self.config.retention.bodies_after
        if after is None:
            return 0
        cutoff = self.clock() - after
        dropped = self.store.drop_closed_bodies(cutoff)
        if dropped:
            log.info(
                "retention: dropped the text of %d message(s) of tasks closed before %s",
                dropped,
                iso(cutoff),
            )
        return dropped

    def reload_config(self) -> bool:
        """SIGHUP: read the config again. A bad file is refused and the running config kept;
        a changed one replaces it and every task is re-derived. True when it changed."""
        path = self.config_path
        try:
            new = load_config(path)
        except Exception as e:  # ConfigError, or anything else: the daemon keeps going
            log.error("config reload refused, keeping the running config: %s", describe(e))
            return False
        old = self.config
        if new.fingerprint == old.fingerprint:
            log.info("config reloaded from %s: unchanged", path)
            return False
        if new.daemon.database != old.daemon.database:
            log.warning(
                "config: daemon.database changed to %s; this daemon keeps %s until restarted",
                new.daemon.database,
                self.db_path,
            )
        with self._derive_lock:
            self.config = new
        self.scheduler.clear()  # the jobs' intervals follow the config (`digest.retry`)
        self.schedule_jobs()
        added = {i.name for i in new.inboxes} - {i.name for i in old.inboxes}
        removed = {i.name for i in old.inboxes} - {i.name for i in new.inboxes}
        log.info(
            "config reloaded from %s; inboxes added: %s; removed: %s",
            path,
            ", ".join(sorted(added)) or "none",
            ", ".join(sorted(removed)) or "none",
        )
        self.recompute("config reloaded")
        return True

    def recompute(self, why: str) -> list[dict[str, Any]]:
        """Re-derive every task under the current config, write it, and log the differences
        as `maildaemon recompute` prints them (SPEC 11)."""
        store = self.store
        with self._derive_lock:
            config, now = self.config, self.clock()
            stored, rows = store.load_stored()
            current = store.task_row_values()
            plan = ledger.plan(
                stored,
                rows,
                current,
                store.task_roots(),
                store.aliases(),
                config,
                now,
                store.commands(),
                store.repairs(),
            )
            changes = ledger.recompute_changes(plan.writes, current, store.clocks_by_task())
            if plan.writes:
                store.write_derived(plan.writes)
        changed = len({c["id"] for c in changes if c["id"] is not None})
        log.info("%s: re-derived %d thread(s); %d task(s) changed", why, plan.threads, changed)
        for line in ledger.change_lines(changes):
            log.info("recompute: %s", line)
        return changes

    # -- periodic jobs ---------------------------------------------------------------------

    def add_job(self, name: str, every: timedelta, job: Callable[[], object]) -> None:
        """Run ``job`` every ``every`` on the main thread; an exception is logged, never
        raised (`schedule` would let it end the loop)."""
        self.scheduler.every(max(1, int(every.total_seconds()))).seconds.do(self.run_job, name, job)

    def run_job(self, name: str, job: Callable[[], object]) -> None:
        try:
            job()
        except Exception as e:
            log.error("job %s failed: %s", name, describe(e))
            log.debug("job %s: traceback", name, exc_info=True)

    def schedule_jobs(self) -> None:
        self.add_job("retention", RETENTION_EVERY, self.apply_retention)
        # Checked every 30 s, or as often as `digest.retry` when that is shorter.
        every = max(timedelta(seconds=1), min(OUTGOING_EVERY, self.config.digest.retry))
        self.add_job("outgoing", every, self.send_outgoing)

    def send_outgoing(self) -> None:
        """Digests whose time has come, due alerts, and deliveries to retry (SPEC 9); each
        claimed in the database first, so a restart or a second process never sends one
        twice. Right after a start it waits (up to FIRST_PASS_WAIT) until every inbox has
        finished a pass, so a digest caught up after downtime includes the night's mail."""
        waited = time.monotonic() - self._started
        if waited < FIRST_PASS_WAIT.total_seconds() and not self._all_passed():
            return
        with self._derive_lock:  # not in the middle of a reload or a re-derivation
            config = self.config
        first, self._outgoing_ran = not self._outgoing_ran, True
        now = self.clock()
        digests, alerts, sent = outgoing.tick(
            self.store, config, now, stop=self.stop.is_set, retry_now=first
        )
        if first or digests or alerts or sent:
            failed = sum(1 for s in sent if not s.ok)
            log.info(
                "outgoing%s: %d digest(s) and %d alert(s) claimed, %d sent, %d failed",
                " (first look since the start)" if first else "",
                digests,
                alerts,
                len(sent) - failed,
                failed,
            )

    def _all_passed(self) -> bool:
        return {i.name for i in self.config.inboxes} <= self._passed

    # -- the loop --------------------------------------------------------------------------

    def poll_seconds(self) -> float:
        return max(0.1, self.config.daemon.poll_interval.total_seconds())

    def retry_seconds(self, failures: int) -> float:
        base = min(self.poll_seconds(), BACKOFF_FIRST.total_seconds())
        return backoff_delay(failures, base, BACKOFF_CAP.total_seconds(), self._rng.random())

    def close_imap(self, name: str, timeout: float | None = None) -> None:
        """Log out of the inbox's IMAP connection, if it has one (its thread only)."""
        conn = self._imap.pop(name, None)
        if conn is not None:
            conn.close(timeout)

    def wake_inboxes(self) -> None:
        """End every inbox's wait (IDLE, poll or backoff) early: after a reload."""
        self._wakes += 1

    def _waking(self) -> Callable[[], bool]:
        mark = self._wakes
        return lambda: self.stop.is_set() or self._wakes != mark

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the daemon stops or reloads."""
        woken = self._waking()
        deadline = time.monotonic() + seconds
        while not woken():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.stop.wait(min(WAIT_SLICE_S, left))

    def wait_for_mail(self, inbox: Inbox, seconds: float) -> None:
        """Until the next pass over ``inbox``: where its IMAP connection is up and the
        server has IDLE, until the server announces mail or `IDLE_RENEW` is up; otherwise
        ``seconds`` (the poll interval, or a backoff). Ends early on a stop or a reload."""
        conn = self._imap.get(inbox.name)
        if conn is None or conn.client is None:
            self.sleep(seconds)
            return
        if not conn.can_idle:
            if not getattr(conn, "polling_logged", False):
                conn.polling_logged = True
                log.info(
                    "inbox %s: the server has no IDLE; polling every %.0fs", inbox.name, seconds
                )
            self.sleep(seconds)
            return
        began = time.monotonic()
        outcome, why = conn.idle(
            IDLE_RENEW.total_seconds(),
            self._waking(),
            done_timeout=IDLE_DONE_TIMEOUT.total_seconds(),
        )
        if outcome != "lost":
            self._drops[inbox.name] = 0
            log.debug("inbox %s: IDLE ended: %s", inbox.name, outcome)
            return
        drops = self._drops.get(inbox.name, 0)
        drops = 1 if time.monotonic() - began >= IDLE_HEALTHY.total_seconds() else drops + 1
        self._drops[inbox.name] = drops
        # The first loss reconnects at once (a kick, a restart); one after another back off.
        delay = self.retry_seconds(drops - 1) if drops > 1 else 0.0
        log.warning(
            "inbox %s: connection lost while waiting for mail (%s); reconnecting%s",
            inbox.name,
            why,
            f" in {delay:.1f}s" if delay else "",
        )
        self.sleep(delay)

    def inbox_loop(self, name: str) -> None:
        """An inbox's thread: a pass, then wait; after a failure, back off exponentially."""
        failures = 0
        try:
            while not self.stop.is_set():
                inbox = self.config.inbox_by_name(name)
                if inbox is None:
                    log.info("inbox %s: no longer in the config; its thread ends", name)
                    return
                try:
                    error = self.tick(inbox)
                except Stopping:
                    log.info("inbox %s: stopped mid-sync; the rest is read on the next start", name)
                    return
                except Exception as e:  # a bug outside a unit: still never end the thread
                    error = describe(e)
                if error is None:
                    if failures:
                        log.info("inbox %s: recovered after %d failed pass(es)", name, failures)
                    failures = 0
                    delay = self.poll_seconds()
                else:
                    failures += 1
                    delay = self.retry_seconds(failures)
                    log.warning(
                        "inbox %s: sync failed (%d in a row): %s; retrying in %.1fs",
                        name,
                        failures,
                        error,
                        delay,
                    )
                if error is None:
                    self.wait_for_mail(inbox, delay)
                else:  # back off, even where a connection survived the failure
                    self.sleep(delay)
        finally:
            try:
                self.close_imap(name, LOGOUT_TIMEOUT_S)
            finally:
                self.close_store()

    def start_inbox_threads(self) -> None:
        """A thread for every configured inbox that has none running."""
        for inbox in self.config.inboxes:
            running = self._threads.get(inbox.name)
            if running is not None and running.is_alive():
                continue
            thread = threading.Thread(
                target=self.inbox_loop, args=(inbox.name,), name=f"inbox-{inbox.name}", daemon=True
            )
            self._threads[inbox.name] = thread
            thread.start()

    def start(self) -> None:
        """Open the store, catch up with a config changed while stopped, start the jobs and
        the inbox threads."""
        store = self.store  # migrations run here, before any other thread opens the file
        stale = store.stale_tasks(ledger.derivation_fingerprint(self.config))
        underived = store.underived_messages()
        if stale or underived:
            self.recompute(
                f"{stale} thread(s) derived under another config or rules, "
                f"{underived} message(s) in no task (an interrupted sync)"
            )
        self.schedule_jobs()
        if self.config.digest.delivery is None:
            log.info("no [digest] delivery in the config: digests and alerts are off")
        self.run_job("retention", self.apply_retention)
        log.info(
            "started: %d inbox(es), database %s, polling every %ss",
            len(self.config.inboxes),
            self.db_path,
            f"{self.poll_seconds():g}",
        )
        self.start_inbox_threads()

    def request_stop(self) -> None:
        """Stop from another thread (tests); signals go through `_on_signal`."""
        self.stop.set()

    def run(self, *, install_signals: bool = True) -> int:
        """The daemon until SIGTERM/SIGINT (or `request_stop`); returns the exit code, 0."""
        if install_signals:
            for signum in HANDLED_SIGNALS:
                signal.signal(signum, self._on_signal)
        try:
            self.start()
            while not self.stop.is_set():
                if self._stop_signal is not None:
                    log.info(
                        "%s received: stopping after the current unit of work",
                        signal.Signals(self._stop_signal).name,
                    )
                    break
                if self._reload_requested:
                    self._reload_requested = False
                    log.info("SIGHUP received: reloading %s", self.config_path)
                    if self.reload_config():
                        self.start_inbox_threads()
                    self.wake_inboxes()  # a failing inbox retries now; IDLE sees a new config
                if not self._caught_up and self._all_passed():
                    self._caught_up = True  # digests missed while down go out now, not in 30s
                    self.run_job("outgoing", self.send_outgoing)
                self.scheduler.run_pending()
                idle = self.scheduler.idle_seconds
                time.sleep(TICK_S if idle is None else min(TICK_S, max(0.0, idle)))
        finally:
            self.stop.set()
            self._join_threads()
            self.close_store()
        log.info("stopped")
        return 0

    def _join_threads(self) -> None:
        deadline = time.monotonic() + STOP_GRACE_S
        for name, thread in self._threads.items():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("inbox %s: still busy after %.0fs; exiting anyway", name, STOP_GRACE_S)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """Only sets a flag (no lock, no logging: the main thread may hold either)."""
        if os.getpid() != self._pid:
            # A parse worker forked by ingest inherited this handler: die as by default.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if signum == signal.SIGHUP:
            self._reload_requested = True
        else:
            self._stop_signal = signum
