#!/usr/bin/env python3
"""Connect to a connector, handshake, receive one message, answer it, print the result.

    python3 example.py                 # starts `relay-connector` on loopback
    python3 example.py --builtin       # a tiny websockets connector instead
    python3 example.py --url ws://127.0.0.1:PORT --gateway-id gw --secret s
                                       # an emulator you run (inject the message yourself)

By default the connector emulator of this repository (``target/release/relay-connector``,
or ``--connector PATH``) runs as a child process with upgrade authentication on;
once the gateway is ready the example injects one buffered ``inbound`` through the
emulator's NDJSON stdin, answers it with ``await link.outbound(...)`` (the
``relay_wasm.connect`` client), acks the delivery, prints the send's result and
leaves the ``async with`` (going idle, then a clean close).

Run as ``python3 -P example.py`` to use the installed ``relay_wasm`` package (``-P``
keeps this directory, which holds the source copy, off ``sys.path``); without an
installed package the copy beside this file is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
try:
    import relay_wasm
except ImportError:  # a checkout, nothing installed
    sys.path.insert(0, str(HERE))
    import relay_wasm
from relay_wasm import MessageEvent, ReadyEvent, Relay  # noqa: E402

PLATFORM, BOT = "telegram", "bot-1"
INBOUND = {"text": "hello relay", "message_id": "m1",
           "source": {"platform": PLATFORM, "chat_id": "chat-42", "chat_type": "dm",
                      "user_id": "u7", "user_name": "ada"}}
DESCRIPTOR = {"contract_version": 1, "platform": PLATFORM, "label": "Telegram",
              "max_message_length": 4096, "supports_draft_streaming": False,
              "supports_edit": True, "supports_threads": True, "markdown_dialect": "markdown_v2",
              "len_unit": "chars", "supported_ops": ["send", "edit", "typing"]}


class Emulator:
    """``relay-connector`` as a child: NDJSON commands in, observations out."""

    async def start(self, binary: str, secret: str) -> str:
        env = {**os.environ, "RELAY_EXAMPLE_SECRET": secret}
        self.proc = await asyncio.create_subprocess_exec(
            binary, "--listen", "127.0.0.1:0", "--secret-env", "RELAY_EXAMPLE_SECRET",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env)
        first = json.loads(await self.proc.stdout.readline())
        self.reader = asyncio.create_task(self._observe())
        return "ws://" + first["listening"]

    async def _observe(self) -> None:
        async for line in self.proc.stdout:
            print("  connector:", line.decode().rstrip()[:160])

    def command(self, cmd: dict) -> None:
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())

    async def stop(self) -> None:
        self.command({"cmd": "shutdown"})
        self.proc.stdin.close()
        await self.proc.wait()
        await self.reader


async def builtin_connector(expect_auth: str):
    """A stand-in connector on an ephemeral loopback port; returns (server, url)."""
    from websockets.asyncio.server import serve

    async def handler(ws):
        if ws.request.headers.get("Authorization") != expect_auth:
            await ws.close(4401, "unauthorized")
            return
        async for message in ws:
            for line in message.splitlines():
                frame = json.loads(line)
                if frame["type"] == "hello":
                    await ws.send(json.dumps({"type": "descriptor", "descriptor": DESCRIPTOR}) + "\n")
                    await ws.send(json.dumps({"type": "inbound", "event": INBOUND, "bufferId": 1}) + "\n")
                elif frame["type"] == "going_idle":
                    await ws.send(json.dumps({"type": "going_idle_ack"}) + "\n")
                elif frame["type"] == "outbound":
                    result = {"success": True, "message_id": "sent-1"}
                    await ws.send(json.dumps({"type": "outbound_result",
                                              "requestId": frame["requestId"], "result": result}) + "\n")

    server = await serve(handler, "127.0.0.1", 0)
    return server, f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def main(args: argparse.Namespace) -> int:
    relay = Relay(args.wasm)
    print(f"relay_wasm {relay_wasm.__version__} from {Path(relay_wasm.__file__).parent}; "
          f"component {relay.path}")
    server = emulator = None
    url = args.url
    if url is None and args.builtin:
        token = relay.upgrade_token(args.gateway_id, args.secret, 300, int(time.time()))
        server, url = await builtin_connector("Bearer " + token)
    elif url is None:
        emulator = Emulator()
        url = await emulator.start(args.connector, args.secret)
    print("dialing", relay.dial_url(url))
    config = {"identities": [{"platform": PLATFORM, "bot_id": BOT}],
              "gateway_id": args.gateway_id, "secret": args.secret}
    code = 1
    try:
        async with asyncio.timeout(args.timeout):
            async with relay_wasm.connect(url, config, relay=relay, proxy=None) as link:
                async for event in link:
                    print(f"event {event.name}:", json.dumps(dict(event.raw))[:150])
                    if isinstance(event, ReadyEvent) and emulator is not None:
                        emulator.command({"cmd": "inbound", "event": INBOUND, "buffered": True})
                    elif isinstance(event, MessageEvent):
                        result = await link.outbound({
                            "op": "send", "chat_id": event.source["chat_id"],
                            "text": f"you said: {event.text}"})
                        if event.buffer_id is not None:
                            link.ack(event)
                        print("result:", json.dumps(result.result))
                        code = 0 if result.success else 1
                        break
            # Leaving `async with`: going_idle, the connector's idle, a clean close.
            print("link:", link.state)
    except TimeoutError:
        print("timed out", file=sys.stderr)
        code = 1
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()
        if emulator is not None:
            await emulator.stop()
    return code


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="an already running connector (no message is injected)")
    p.add_argument("--builtin", action="store_true", help="use a tiny websockets connector")
    p.add_argument("--connector", default=str(HERE.parents[1] / "target/release/relay-connector"),
                   help="relay-connector binary, the emulator (default: the release build)")
    p.add_argument("--gateway-id", default="gw-example")
    p.add_argument("--secret", default="example-secret")
    p.add_argument("--wasm", help="component path (default: $RELAY_WASM, the package's relay.wasm, "
                   "or in a checkout the release build)")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.WARNING)
    # websockets at DEBUG prints request headers, the bearer token included.
    logging.getLogger("websockets").setLevel(logging.INFO if a.verbose else logging.WARNING)
    sys.exit(asyncio.run(main(a)))
