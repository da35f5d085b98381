#!/usr/bin/env python3
"""A chat hub written like the ASP.NET Core SignalR getting-started tutorial, on ``aiosignalr``.

Nothing here knows Hubbub: the method names are the tutorial's, so Hubbub must find them on its
own (issue 15).

    SendMessage(user, message)  ReceiveMessage(...) to every client, caller included; the
                                arguments depend on --shape:
                                  plain      (user, message)                  the tutorial
                                  timestamp  (user, message, "2026-…Z")      an extra argument
                                  object     ({"user", "message", "sentAt"}) one object
    Deliveries()                how many messages SendMessage (or Send) delivered so far
    Add(a, b)                   returns a + b
    Fail()                      always fails with a HubException ("nope: Fail always fails")
    Announce(text)              Notice(text, 1) to every client (a target no chat knows)

With ``--send-fails`` the hub also has ``Send(user, message)``, which fails with a HubException
without delivering anything: a client that tries ``Send`` first must not go on to
``SendMessage`` (only "Unknown hub method" means a method does not exist).

The hub is served at ``http://127.0.0.1:PORT/chatHub`` (the tutorial's path). Once it accepts
connections it prints one line, ``listening on http://127.0.0.1:PORT/chatHub``, then runs until
SIGTERM or SIGINT.

Usage: tutorial_hub.py --port PORT [--shape plain|timestamp|object] [--send-fails]
"""

import argparse
import asyncio
import contextlib
import datetime
import logging
import signal
import sys
from typing import Any

from aiohttp import web

from aiosignalr.errors import HubException
from aiosignalr.server import Hub, ServerOptions

from aiosignalr_hub import PatchedSignalRServer

HOST = "127.0.0.1"
PATH = "/chatHub"

SHAPE = "plain"
DELIVERIES = 0


def receive_args(user, message):
    if SHAPE == "timestamp":
        return [user, message, datetime.datetime.now(datetime.timezone.utc).isoformat()]
    if SHAPE == "object":
        return [{"user": user, "message": message, "sentAt": datetime.datetime.now(datetime.timezone.utc).isoformat()}]
    return [user, message]


class ChatHub(Hub):
    async def SendMessage(self, user, message) -> None:  # noqa: N802 (SignalR method name)
        global DELIVERIES
        DELIVERIES += 1
        await self.clients.all_.send("ReceiveMessage", *receive_args(user, message))

    async def Deliveries(self) -> Any:  # noqa: N802
        return DELIVERIES

    async def Add(self, a, b) -> Any:  # noqa: N802
        return a + b

    async def Fail(self) -> Any:  # noqa: N802
        raise HubException("nope: Fail always fails")

    async def Announce(self, text) -> None:  # noqa: N802
        await self.clients.all_.send("Notice", text, 1)


class ChatHubWithFailingSend(ChatHub):
    async def Send(self, user, message) -> None:  # noqa: N802
        raise HubException("Send is closed today")


async def run(port: int, send_fails: bool) -> int:
    hub = ChatHubWithFailingSend if send_fails else ChatHub
    server = PatchedSignalRServer(hub, options=ServerOptions())
    app = server.create_application(path=PATH)
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
    for ctx in list(server.lifetime.connections.values()):
        if ctx is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(ctx.abort(), 1.0)
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(runner.cleanup(), 5.0)
    return 0


def main() -> int:
    global SHAPE
    parser = argparse.ArgumentParser(description="an ASP.NET Core tutorial-style chat hub on aiosignalr")
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on (127.0.0.1 only)")
    parser.add_argument("--shape", choices=["plain", "timestamp", "object"], default="plain")
    parser.add_argument("--send-fails", action="store_true", help="also have a Send that always fails")
    args = parser.parse_args()
    SHAPE = args.shape
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(run(args.port, args.send_fails))


if __name__ == "__main__":
    sys.exit(main())
