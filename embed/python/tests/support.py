"""Shared by the tests: where things are, and the connector emulator as a child.

The tests exercise the *installed* ``relay_wasm``: run them from outside the
source tree, e.g. ``cd /tmp && VENV/bin/python -m unittest discover -s
REPO/embed/python/tests``.  ``test_package`` fails when ``relay_wasm`` was
imported from ``embed/python`` (set ``RELAY_WASM_TESTS_FROM_SOURCE=1`` to allow it).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Callable, Optional

TESTS = Path(__file__).resolve().parent
SOURCE = TESTS.parent            # embed/python
REPO = TESTS.parents[2]          # the repository (the tests are not installed)
VECTORS = REPO / "spec" / "vectors"

#: A Slack link the unit tests drive by hand: its config, and the descriptor (and
#: its line) that handshakes it.
CONFIG = {"identities": [{"platform": "slack", "bot_id": "B1"}], "seed": 1,
          "reconnect_jitter_percent": 0}
DESCRIPTOR = {"contract_version": 1, "platform": "slack", "label": "Slack",
              "max_message_length": 40000, "supports_draft_streaming": False,
              "supports_edit": True, "supports_threads": True, "markdown_dialect": "mrkdwn",
              "len_unit": "chars"}
DESCRIPTOR_LINE = json.dumps({"type": "descriptor", "descriptor": DESCRIPTOR}) + "\n"


def connector_binary() -> Path:
    """``$RELAY_CONNECTOR``, else the release build of the repository."""
    env = os.environ.get("RELAY_CONNECTOR")
    path = Path(env) if env else REPO / "target" / "release" / "relay-connector"
    if not path.is_file():
        raise FileNotFoundError(
            f"connector emulator not found at {path}: build it with "
            "`cargo build --release -p relay-connector` or set $RELAY_CONNECTOR")
    return path


class Emulator:
    """``relay-connector`` as a child process: NDJSON commands on its stdin, its
    reports (one JSON object per line) collected from stdout."""

    SECRET_ENV = "RELAY_TEST_CONNECTOR_SECRET"

    def __init__(self, secret: str):
        self.secret = secret
        self.reports: list = []
        self._changed = asyncio.Event()
        self.proc: Optional[asyncio.subprocess.Process] = None

    async def start(self) -> str:
        """Starts it on a free loopback port; returns the base URL to dial."""
        env = {**os.environ, self.SECRET_ENV: self.secret, "RUST_LOG": "warn"}
        self.proc = await asyncio.create_subprocess_exec(
            str(connector_binary()), "--listen", "127.0.0.1:0", "--secret-env", self.SECRET_ENV,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, env=env)
        first = json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 10))
        self._reader = asyncio.create_task(self._read())
        return "ws://" + first["listening"]

    async def _read(self) -> None:
        async for line in self.proc.stdout:
            try:
                self.reports.append(json.loads(line))
            except ValueError:
                continue
            self._changed.set()
            self._changed.clear()

    def command(self, cmd: dict) -> None:
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())

    def count(self, pred: Callable[[dict], bool]) -> int:
        return sum(1 for r in self.reports if pred(r))

    async def wait_for(self, pred: Callable[[dict], bool], n: int = 1, timeout: float = 5.0) -> list:
        """Waits until ``n`` reports match; returns the matching reports."""
        async with asyncio.timeout(timeout):
            while True:
                found = [r for r in self.reports if pred(r)]
                if len(found) >= n:
                    return found
                await self._changed.wait()

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            self.command({"cmd": "shutdown"})
            self.proc.stdin.close()
            await asyncio.wait_for(self.proc.wait(), 5)
        except (asyncio.TimeoutError, ConnectionError, BrokenPipeError):
            self.proc.kill()
            await self.proc.wait()
        await self._reader
