"""Shared fixtures: the corpus (unpacked once per session), configs, a CLI runner."""

from __future__ import annotations

import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from imap_server import dovecot  # noqa: F401  (the session's private Dovecot fixture)
from smtp_server import (  # noqa: F401  (aiosmtpd on loopback: plain, STARTTLS, TLS, AUTH)
    smtp_certificate,
    smtp_server,
    smtp_server_factory,
)
from test_daemon import start_daemon  # noqa: F401  (`maildaemon run` as a subprocess)

from maildaemon.cli import cli

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
CORPUS = HERE.parents[1] / "shared" / "corpus"
ROOT = HERE.parent
DEMO_NOW = "2026-11-24T16:30:00Z"


def corpus_tarball(name: str) -> Path:
    """A corpus tarball; skips (loudly) where ../shared/corpus is absent, fails under CI."""
    path = CORPUS / name
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"corpus {path} is missing under CI=true")
        pytest.skip(f"corpus not available: {path} (a user's checkout has no ../shared)")
    return path


@pytest.fixture(scope="session")
def unpacked_corpus(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Unpack a corpus tarball once per session; returns the folder it made."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            tarball = corpus_tarball(name)
            into = tmp_path_factory.mktemp(name.split(".")[0])
            with tarfile.open(tarball) as tar:
                tar.extractall(into, filter="data")
            cache[name] = into
        return cache[name]

    return get


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a config file (database in tmp_path unless the text sets one)."""

    def write(text: str = "") -> Path:
        path = tmp_path / "maildaemon.toml"
        db = f'database = "{tmp_path / "md.db"}"\n'
        if "[daemon]" in text:
            text = text.replace("[daemon]\n", "[daemon]\n" + db, 1)
        else:
            text = "[daemon]\n" + db + text
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """Invoke the CLI in-process; returns click's Result (exit code, stdout, stderr)."""
    runner = CliRunner()

    def run(*args: str | Path) -> Result:
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return run


@pytest.fixture
def demo(tmp_path: Path, run_cli: Callable[..., Result]) -> Path:
    """The demo config and Maildir, copied so the database lands in tmp_path."""
    examples = tmp_path / "examples"
    shutil.copytree(ROOT / "examples", examples, ignore=shutil.ignore_patterns("*.db*"))
    config = examples / "demo.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("../demo/demo.db", str(tmp_path / "demo.db")), encoding="utf-8")
    result = run_cli("--config", config, "--now", DEMO_NOW, "sync")
    assert result.exit_code == 0, result.output
    return config
