"""`maildaemon status` (SPEC 10): per inbox the last sync, messages and errors; quarantined
mail; the database size; the newest digests and alerts and any failed delivery. `--check`
exits 3 while anything is failing, for monitoring."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import click

from maildaemon import claims, views
from maildaemon.cli import App, cli, emit_json, json_option, pass_app


@cli.command()
@click.option(
    "--check",
    is_flag=True,
    help="Exit 3 when an inbox or a digest delivery is failing (for monitoring).",
)
@json_option
@pass_app
def status(app: App, check: bool, as_json: bool) -> None:
    """Per inbox: last sync, messages, errors; quarantined mail; database size; the
    newest digests and alerts and any failed delivery."""
    report = app.store.status_report()
    sources = report.pop("sources")
    per_inbox = report.pop("messages_per_inbox")
    by_inbox = {i.name: i for i in app.config.inboxes}
    inboxes = []
    for name in sorted({*by_inbox, *(s["inbox"] for s in sources)}):
        rows = [s for s in sources if s["inbox"] == name]
        errors = [s for s in rows if s["last_error"]]
        inboxes.append(
            {
                "inbox": name,
                "configured": name in by_inbox,
                "kind": by_inbox[name].kind if name in by_inbox else "import",
                "messages": per_inbox.get(name, 0),
                "last_sync_at": max((s["last_sync_at"] or "" for s in rows), default="") or None,
                "last_error": errors[-1]["last_error"] if errors else None,
                "last_error_at": errors[-1]["last_error_at"] if errors else None,
                "failing": bool(errors),
            }
        )
    report["inboxes"] = inboxes
    report["deliveries"] = claims.recent(app.store)
    failing_mail = claims.failures(app.store, app.now - timedelta(days=1))
    report["failed_deliveries"] = failing_mail
    quarantined = report["quarantine"]
    if as_json:
        emit_json(report)
    else:
        click.echo(f"database {report['database']} ({report['database_bytes'] / 1e6:.1f} MB)")
        click.echo(
            f"{report['messages']} messages ({report['messages_with_defects']} with defects), "
            f"{report['threads']} threads, {report['tasks']} tasks, "
            f"{report['quarantined']} quarantined"
        )
        click.echo("")
        click.echo(
            views.table(
                [
                    (
                        i["inbox"],
                        i["kind"],
                        str(i["messages"]),
                        i["last_sync_at"] or "never",
                        (f"{i['last_error_at']}: {i['last_error']}" if i["failing"] else "ok"),
                    )
                    for i in inboxes
                ],
                ("INBOX", "KIND", "MESSAGES", "LAST SYNC", "STATE"),
            )
        )
        if quarantined:
            click.echo("")
            click.echo("Quarantined (newest first):")
            for q in quarantined[:20]:
                click.echo(f"  {q['inbox']} {q['source']} {q['key']}: {q['reason']}")
        _echo_deliveries(report["deliveries"], failing_mail)
    if check and (
        any(i["failing"] for i in inboxes)
        or any(f["state"] in ("failed", "expired") for f in failing_mail)
    ):
        sys.exit(3)


def _echo_deliveries(recent: list[dict[str, Any]], failing: list[dict[str, Any]]) -> None:
    """The newest digests and alerts, and failed deliveries, for `status`."""
    click.echo("")
    if not recent:
        click.echo("Digests and alerts: none claimed yet")
        return
    click.echo("Digests and alerts (newest first):")
    rows = [
        (
            d["kind"],
            d["recipient"],
            d["key"],
            d["state"] + (f" ({d['attempts']} attempts)" if d["attempts"] > 1 else ""),
            d["sent_at"] or d["claimed_at"],
        )
        for d in recent[:10]
    ]
    heads = ("KIND", "TO", "FOR", "STATE", "AT")
    click.echo("\n".join("  " + line for line in views.table(rows, heads).splitlines()))
    for f in failing:
        click.echo(
            f"  delivery {f['state']}: {f['kind']} to {f['recipient']} ({f['key']}), "
            f"{f['attempts']} attempt(s), last {f['last_error_at']}: {f['last_error']}"
        )
