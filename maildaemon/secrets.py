"""Secrets from the config: a password in an environment variable, or a password or token
printed by a command. They are returned to the caller and go nowhere else: never into a
log line, an error message or the database. Errors say which setting to fix.
"""

from __future__ import annotations

import os
import shlex
import subprocess

from maildaemon.errors import AuthError

COMMAND_TIMEOUT_S = 60.0


def env_secret(env: str | None, inbox: str, username: str) -> str:
    """The value of ``$env`` (``password_env``)."""
    value = os.environ.get(env, "") if env else ""
    if not value:
        raise AuthError(
            f"inbox '{inbox}': {env or 'password_env'} is not set — export the password of "
            f"{username} in it"
        )
    return value


def command_secret(command: str, key: str, inbox: str) -> str:
    """The stripped stdout of ``command`` (split into words as a shell would, never run by
    one), for the ``key`` (``password_command``, ``token_command``) of ``inbox``."""
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise AuthError(f"inbox '{inbox}': {key} cannot be split into words: {e}") from None
    if not argv:
        raise AuthError(f"inbox '{inbox}': {key} is empty")
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise AuthError(f"inbox '{inbox}': {key}: command not found: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        raise AuthError(
            f"inbox '{inbox}': {key} did not finish within {COMMAND_TIMEOUT_S:.0f} s"
        ) from None
    except OSError as e:
        raise AuthError(f"inbox '{inbox}': {key} could not run: {e.strerror or e}") from None
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        tail = f": {said[-1][:200]}" if said else ""
        raise AuthError(f"inbox '{inbox}': {key} failed (exit {done.returncode}){tail}")
    secret = done.stdout.decode("utf-8", "replace").strip()
    if not secret:
        raise AuthError(f"inbox '{inbox}': {key} printed nothing")
    return secret
