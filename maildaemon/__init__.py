"""maildaemon: shared inboxes in, a ledger of owned tasks out."""

__version__ = "0.1.0"
