"""Numbered SQL migrations, applied in order by maildaemon.store."""
