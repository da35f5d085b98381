#!/usr/bin/env python3
"""A SignalR test server built on the PyPI package ``aiosignalr`` (0.1.1).

It mirrors the parts of Hubbub's own chat hub (``crates/hub/src/chat.rs``) that the
interop client tests exercise, so the same test can run against both servers:

    Send(name, message)     broadcastMessage(name, message) to every client, caller included
    Echo(value)             returns value unchanged
    Counter(count, delayMs) streams 0..count-1, sleeping delayMs between items
    AskCaller(question)     invokes ask(question) on the caller (a client result), returns its answer

The hub is served at ``http://127.0.0.1:PORT/chathub`` with every transport aiosignalr
offers (WebSockets, Server-Sent Events, Long Polling) and both of its hub protocols
(``json`` and ``messagepack``). Once it accepts connections it prints exactly one line,
``listening on http://127.0.0.1:PORT/chathub``, to stdout, then runs until SIGTERM or
SIGINT and exits 0.

Usage: aiosignalr_hub.py --port PORT [--stateful-reconnect]

Notes on aiosignalr's hub API that this file depends on:
- every public method of the Hub subclass is invocable; names match case-insensitively;
- a method only sends a result in its Completion if it has a return annotation other
  than ``None`` (so ``Echo``/``AskCaller`` are annotated ``-> Any``, ``Send`` ``-> None``;
  for the same reason this file must not use ``from __future__ import annotations``);
- an ``async def`` generator is a server-to-client stream.

One aiosignalr bug is patched here (see ``PatchedSignalRServer``): unpatched, a
long-polling connection with no traffic for 15 s is closed although the client keeps
polling.
"""

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from aiohttp import web

from aiosignalr.server import Hub, ServerOptions, SignalRServer

HOST = "127.0.0.1"
PATH = "/chathub"

# Grace period after a long poll ends within which the client must send its next poll.
LONG_POLL_GRACE_SECONDS = 15.0


class PatchedSignalRServer(SignalRServer):
    """SignalRServer with one bug fix for Long Polling.

    aiosignalr 0.1.1 (``SignalRServer._lp_idle_watch``) tears a long-polling connection
    down once no new poll has *started* for ``long_polling_timeout`` (15 s), the same
    length as the poll itself. So a poll that is held for its full 15 s because nothing
    was sent ends the connection at the moment it is answered, and the client's
    immediate next poll (or POST) gets 404. Here the idle limit is the poll timeout plus
    a grace period, so only a client that stops polling is dropped. Nothing else differs.
    """

    async def _lp_idle_watch(self, record, ctx):
        try:
            await asyncio.wait_for(
                ctx.wait_closed(), timeout=self.options.long_polling_timeout + LONG_POLL_GRACE_SECONDS
            )
        except TimeoutError:
            await self._teardown(ctx)
        except asyncio.CancelledError:
            pass


class ChatHub(Hub):
    """The subset of Hubbub's chat hub used by the interop tests."""

    async def Send(self, name, message) -> None:  # noqa: N802 (SignalR method name)
        await self.clients.all_.send("broadcastMessage", name, message)

    async def Echo(self, value) -> Any:  # noqa: N802
        return value

    async def Counter(self, count, delayMs):  # noqa: N802, N803
        count = int(count)
        delay = max(0.0, float(delayMs) / 1000.0)
        for i in range(count):
            if i > 0 and delay > 0:
                await asyncio.sleep(delay)
            yield i

    async def AskCaller(self, question) -> Any:  # noqa: N802
        return await self.clients.caller.invoke("ask", question)


async def run(port: int, stateful_reconnect: bool) -> int:
    options = ServerOptions(allow_stateful_reconnects=stateful_reconnect)
    server = PatchedSignalRServer(ChatHub, options=options)
    app = server.create_application(path=PATH)
    # A short shutdown timeout: open WebSocket/SSE/long-poll requests must not hold up exit.
    runner = web.AppRunner(app, shutdown_timeout=2.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port)
    await site.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    print(f"listening on http://{HOST}:{port}{PATH}", flush=True)
    await stop.wait()

    # Close every live SignalR connection first so their handlers return promptly.
    for ctx in list(server.lifetime.connections.values()):
        if ctx is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(ctx.abort(), 1.0)
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(runner.cleanup(), 5.0)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="aiosignalr chat hub for Hubbub interop tests")
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on (127.0.0.1 only)")
    parser.add_argument(
        "--stateful-reconnect",
        action="store_true",
        help="allow clients to negotiate stateful reconnect (off by default, as in ASP.NET Core)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(run(args.port, args.stateful_reconnect))


if __name__ == "__main__":
    sys.exit(main())
