"""An asyncio host for one :class:`~relay_wasm.Connection`, over ``websockets``.

Why it is this thin: the component is sans-IO and owns every decision (what to
write, when a deadline passes, whether to back off, re-dial at once or give up).
The driver only performs effects: it dials with the ``Authorization`` header the
component mints, writes ``send`` lines in order, arms ``set_timer`` with the event
loop's monotonic clock, closes on ``close_link``, and after each socket ends reports
``closed`` and follows the one link decision (``reconnect``/``redial``/``give_up``;
a later ``reconnect`` replaces one not acted on yet, as a redial hold does).  A
write that fails is reported with ``write_failed``.

All component calls happen on the event-loop thread, one at a time, so the single
wasmtime store is never shared between threads.

Events go to :attr:`Driver.events`, an :class:`EventQueue`.  Bounded
(``max_events``), it applies backpressure: while that many events wait unread, the
driver stops reading the socket (websockets then buffers at most its ``max_queue``
messages, and TCP makes the connector wait).  Nothing is ever dropped: events
raised by timers and by the application's own commands are still queued.
:class:`relay_wasm.Client` is built on this driver.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any, Callable, Optional

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .component import Connection, Relay
from .effects import CancelTimer, CloseLink, Emit, GiveUp, Log, Reconnect, Redial, Send, SetTimer

__all__ = ["Driver", "EventQueue", "QueueClosed"]

_LEVELS = {"trace": 5, "debug": logging.DEBUG, "info": logging.INFO,
           "warn": logging.WARNING, "error": logging.ERROR}


class QueueClosed(Exception):
    """:meth:`EventQueue.get` on a closed queue with nothing left in it."""


class EventQueue:
    """The driver's event queue: ``asyncio.Queue``'s ``get``/``get_nowait``/``qsize``/
    ``empty``/``full``, but :meth:`put_nowait` never fails and never drops.

    ``maxsize`` (0: unbounded) does not refuse items; it is the mark at which the
    driver's socket reader waits (:meth:`wait_for_room`) until the consumer has
    taken some.  :meth:`close` ends it: ``get`` then raises :class:`QueueClosed`
    once the items left are taken.  Single event loop, not thread-safe."""

    def __init__(self, maxsize: int = 0):
        self.maxsize = maxsize
        self._items: collections.deque = collections.deque()
        self._getters: collections.deque = collections.deque()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        if self.full():
            self._room.clear()
        self._wake_getter()

    def get_nowait(self) -> Any:
        if not self._items:
            if self._closed:
                raise QueueClosed
            raise asyncio.QueueEmpty
        item = self._items.popleft()
        if not self.full():
            self._room.set()
        return item

    async def get(self) -> Any:
        """The next item; waits for one.  Cancel-safe: an item is taken only when
        this returns it."""
        while not self._items:
            if self._closed:
                raise QueueClosed
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._getters:
                    self._getters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake_getter()  # woken just as it gave up: pass it on
                raise
        return self.get_nowait()

    async def wait_for_room(self) -> None:
        """Returns once fewer than ``maxsize`` items wait (at once when unbounded)."""
        while self.full():
            await self._room.wait()

    def unbound(self) -> None:
        """Lifts the bound for good: a stopping driver drains its socket."""
        self.maxsize = 0
        self._room.set()

    def close(self) -> None:
        """No more items will come: waiting and later ``get`` calls raise
        :class:`QueueClosed` once the queue is empty."""
        self._closed = True
        self.unbound()
        while self._getters:
            self._wake_getter()

    def _wake_getter(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class Driver:
    """Keeps one link to the connector at ``base_url`` until the component gives up
    or :meth:`stop` is called.

    Application events (APP-PROTOCOL dicts, without ``tenant``) arrive on
    :attr:`events` (an :class:`EventQueue`, with ``await events.get()`` as on an
    ``asyncio.Queue``) and, if given, through ``on_event``.  ``max_events`` bounds
    the queue with backpressure (module doc); ``None``, the default, leaves it
    unbounded, as before.  The driver adds the host's own bookkeeping states:
    ``connecting``, ``handshaking`` and ``stopped``.  Extra keyword arguments go to
    ``websockets.asyncio.client.connect``.
    """

    def __init__(self, base_url: str, config: dict, *, relay: Optional[Relay] = None,
                 on_event: Optional[Callable[[Any], None]] = None,
                 logger: Optional[logging.Logger] = None, max_events: Optional[int] = None,
                 **connect_kwargs: Any):
        self.relay = relay if relay is not None else Relay()
        self.conn = Connection(config, relay=self.relay)
        self.url = self.relay.dial_url(base_url)
        self.events = EventQueue(max_events or 0)
        self.on_event = on_event
        # Sees every event first; returning True takes it (the Client's outbound
        # correlation), so it is neither queued nor given to on_event.
        self._intercept: Optional[Callable[[Any], bool]] = None
        self.log = logger or logging.getLogger("relay_wasm")
        # Happy Eyeballs (RFC 8305): a blackholed first address (say, an IPv6
        # route that drops SYNs) costs 250 ms, not the whole connect timeout;
        # the Rust host and the Node driver use the same stagger.
        self.connect_kwargs = {"max_size": 4 << 20, "happy_eyeballs_delay": 0.25,
                               **connect_kwargs}
        self._timers: dict = {}
        self._outbox: Optional[asyncio.Queue] = None
        # When to dial next (event-loop time, seconds), or None for never.
        self._decision: Optional[float] = None
        self._redecided = asyncio.Event()
        self._stop = asyncio.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    # -- the application's side ----------------------------------------------------

    def command(self, command: Any) -> None:
        """An APP-PROTOCOL command (``outbound``, ``interrupt``, ``ack``, ``nack``,
        ``going_idle``, ``hold_redial``, ``release_redial``); its answer comes
        later as events.  Raises DecodeError."""
        self._perform(self.conn.command(self._now_ms(), command))

    def stop(self) -> None:
        """Ends the link on purpose: the component answers what still waits with
        ``relay send failed: relay transport closed``; the socket closes and
        :meth:`run` returns."""
        if not self._stop.is_set() and self._loop is not None:
            self._perform(self.conn.stop(self._now_ms()))
        self._stop.set()
        self._redecided.set()
        self.events.unbound()  # the reader must drain the socket to close it cleanly
        if self._outbox is not None:
            self._outbox.put_nowait(("close", "stopped", None))

    # -- the loop -------------------------------------------------------------------

    async def run(self) -> None:
        """Dials and re-dials as the component decides; returns when it gives up
        or after :meth:`stop`."""
        self._loop = asyncio.get_running_loop()
        try:
            self._decision = self._loop.time()
            while await self._wait_for_dial():
                await self._link_once()
        finally:
            for handle in self._timers.values():
                handle.cancel()
            self._timers.clear()
            self._emit({"event": "state", "state": "stopped"})

    async def _wait_for_dial(self) -> bool:
        """Sleeps until the decided dial time, following re-announcements; False
        when the component gave up or :meth:`stop` was called."""
        loop = self._loop or asyncio.get_running_loop()
        while not self._stop.is_set():
            if self._decision is None:
                return False
            delay = self._decision - loop.time()
            if delay <= 0:
                return True
            self._redecided.clear()
            try:
                await asyncio.wait_for(self._redecided.wait(), delay)
            except asyncio.TimeoutError:
                pass
        return False

    async def _link_once(self) -> None:
        """One dial and, if it succeeds, one socket's life; the component's link
        decision (when to dial next) arrives through the effects."""
        self._decision = None
        headers = {}
        auth = self.conn.authorization(int(time.time()))
        if auth is not None:
            headers["Authorization"] = auth
        self._emit({"event": "state", "state": "connecting"})
        try:
            ws = await connect(self.url, additional_headers=headers, **self.connect_kwargs)
        except Exception as e:  # a failed dial (refused, HTTP error, timeout)
            self.log.info("dial %s failed: %s", self.url, e)
            self._perform(self.conn.closed(self._now_ms(), None, str(e)[:200]))
            return
        self._outbox = asyncio.Queue()
        writer = asyncio.create_task(self._write(ws, self._outbox))
        self._emit({"event": "state", "state": "handshaking"})
        self._perform(self.conn.open(self._now_ms()))
        if self._stop.is_set():
            self._outbox.put_nowait(("close", "stopped", None))
        try:
            while True:
                if self.events.full():  # backpressure: the application reads first
                    await self.events.wait_for_room()
                msg = await ws.recv()
                if isinstance(msg, str):
                    self._perform(self.conn.receive_text(self._now_ms(), msg))
                else:
                    self._perform(self.conn.receive_binary(self._now_ms(), msg))
        except ConnectionClosed:
            pass
        finally:
            self._outbox = None
            writer.cancel()
        rcvd = ws.protocol.close_rcvd  # None: it dropped without a close frame
        code, reason = (rcvd.code, rcvd.reason) if rcvd is not None else (None, "")
        self._perform(self.conn.closed(self._now_ms(), code, reason))

    async def _write(self, ws: Any, outbox: asyncio.Queue) -> None:
        """Writes in effect order; a ``close_link`` after sends waits for them.  A
        failed write is reported with its frame number (D9 ``relay send failed``)."""
        while True:
            kind, payload, number = await outbox.get()
            try:
                if kind == "send":
                    await ws.send(payload)
                else:
                    await ws.close(1000, payload.encode()[:123].decode(errors="ignore"))
                    return
            except ConnectionClosed as e:
                if kind == "send" and outbox is self._outbox:
                    self._perform(self.conn.write_failed(self._now_ms(), number, str(e)[:200]))
                return

    # -- effects ----------------------------------------------------------------------

    def _now_ms(self) -> int:
        loop = self._loop or asyncio.get_running_loop()
        return int(loop.time() * 1000)

    def _emit(self, event: Any) -> None:
        if self._intercept is not None and self._intercept(event):
            return
        self.events.put_nowait(event)
        if self.on_event is not None:
            self.on_event(event)

    def _perform(self, effects: list) -> None:
        for e in effects:
            if isinstance(e, Send):
                if self._outbox is not None:
                    self._outbox.put_nowait(("send", e.line, e.number))
                else:
                    self.log.warning("component wrote with no socket open; dropped")
            elif isinstance(e, Emit):
                self._emit(e.event)
            elif isinstance(e, SetTimer):
                self._set_timer(e.id, e.at_ms)
            elif isinstance(e, CancelTimer):
                handle = self._timers.pop(e.id, None)
                if handle is not None:
                    handle.cancel()
            elif isinstance(e, CloseLink):
                if self._outbox is not None:
                    self._outbox.put_nowait(("close", e.reason, None))
            elif isinstance(e, Reconnect):
                self._decide(e.delay_ms / 1000)
            elif isinstance(e, Redial):
                self._decide(0.0)
            elif isinstance(e, GiveUp):
                self.log.warning("giving up: %s", e.reason)
                self._decision = None
                self._redecided.set()
            elif isinstance(e, Log):
                self.log.log(_LEVELS.get(e.level, logging.INFO), "%s", e.message)

    def _decide(self, delay_s: float) -> None:
        """The component says when to dial next; a later word replaces an earlier."""
        loop = self._loop or asyncio.get_running_loop()
        self._decision = loop.time() + delay_s
        self._redecided.set()

    def _set_timer(self, timer_id: int, at_ms: int) -> None:
        old = self._timers.pop(timer_id, None)
        if old is not None:
            old.cancel()
        loop = self._loop or asyncio.get_running_loop()

        def fire() -> None:
            self._timers.pop(timer_id, None)
            # asyncio may run a callback a hair early: never report a time before due.
            self._perform(self.conn.timer_fired(max(self._now_ms(), at_ms), timer_id))

        self._timers[timer_id] = loop.call_at(at_ms / 1000, fire)
