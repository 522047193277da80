"""An asyncio host for one :class:`~relay_wasm.Link`, over ``websockets``.

Why it is this thin: the component is sans-IO and owns every decision of the link
(contract 0.2) — when to dial and with which ``Authorization``, every link state,
keepalive, every deadline, shutdown.  The driver does I/O only:

* ``Dial(url, authorization)``: open a WebSocket to that URL with that header
  (websockets' own keepalive off, ``max_size`` from ``Link.settings()``), then call
  ``open`` — or ``closed(None, why)`` if the dial failed;
* ``Send``: write the frame, in effect order (a write that fails is reported with
  ``write_failed``); ``SendPing``: a WebSocket ping, and ``pong`` when it is
  answered; ``CloseLink(code, reason)``: close with that code (bounded by
  ``close_wait_ms``); every socket's end is reported with ``closed`` (the peer's
  close code, else the one sent);
* ONE timer: after every call ``poll_timeout()``, and ``handle_timeout`` when due;
* ``Emit``: events go to the application; the driver adds none of its own.  Its
  ``run`` returns after the component's ``state stopped`` (after
  :meth:`Driver.shutdown`, or after ``revoked`` when ``stop_when_revoked`` is set:
  the driver then shuts the link down, since nothing will ever dial again).

After a guest trap the driver does what the Rust host does: it closes the socket
(1011), builds a fresh instance (:meth:`Relay.fresh`, the seed varied per
generation) and hands it a :class:`~relay_wasm.Recovery` — the outbound ids it
still owed (with their actions), the buffer ids delivered but neither acked nor
nacked, whether an ``idle`` was owed, a restart delay (0.5 s doubling, at most
10 s) — within a restart budget (more than 5 failures in 60 s stop it).  When the
rebuild is impossible (or the budget is spent) :meth:`Driver.run` raises.

All component calls happen on the event-loop thread, one at a time, so the
instance's store is never shared between threads.

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
import json
import logging
import secrets
from typing import Any, Callable, Mapping, NamedTuple, Optional, Union

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .component import Link, OwedRequest, Recovery, Relay, Trap, monotonic_ms, unix_offset_ms
from .effects import CloseLink, Dial, Emit, Log, Send, SendPing
from .errors import DecodeError
from .events import (Ack, Command, EventKind, GoingIdle, HoldRedial, Interrupt, LinkState, Nack,
                     Outbound, ReleaseRedial)

__all__ = ["Driver", "EventQueue", "QueueClosed", "RestartBudget", "GUEST_FAILURES"]

_LEVELS = {"trace": 5, "debug": logging.DEBUG, "info": logging.INFO,
           "warn": logging.WARNING, "error": logging.ERROR}

#: What a trapped guest call raises (also an instance that does not instantiate
#: within its limits): the native module's ``Trap``.
GUEST_FAILURES = (Trap,)

#: Varies the seed per rebuilt instance, as the Rust host (``Instance::build``).
_SEED_STEP = 0x9E37_79B9_7F4A_7C15
#: The close code and reason of a socket whose instance failed (the Rust host's).
_RESTART_CLOSE = (1011, "gateway restarting")
#: How long that close may take.
_RESTART_CLOSE_WAIT_S = 0.5
#: Buffer ids remembered as in flight (the component's default ``caps.buffer_ids``).
_IN_FLIGHT_CAP = 4096


class RestartBudget(NamedTuple):
    """How many guest failures a driver survives: more than ``max_restarts`` within
    ``window_s`` seconds ends it (the Rust host's ``RestartBudget`` default)."""

    max_restarts: int = 5
    window_s: float = 60.0


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


class _Socket:
    """One WebSocket and the tasks that serve it."""

    __slots__ = ("ws", "outbox", "reader", "writer", "pongs")

    def __init__(self, ws: Any):
        self.ws = ws
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.reader: Optional[asyncio.Task] = None
        self.writer: Optional[asyncio.Task] = None
        self.pongs: set = set()

    def cancel(self) -> None:
        for task in (self.reader, self.writer, *self.pongs):
            if task is not None and task is not asyncio.current_task():
                task.cancel()


def trap_summary(err: BaseException) -> str:
    """One line for a guest failure: the ``wasm trap: ...`` cause when there is one."""
    text = str(err)
    causes = [line.strip() for line in text.splitlines() if "wasm trap:" in line]
    if causes:
        summary = causes[-1][causes[-1].index("wasm trap:") + len("wasm trap:"):].strip()
    else:
        summary = text.splitlines()[0] if text else type(err).__name__
    return summary[:200]


def _close_code(ws: Any) -> tuple:
    """The peer's close code and reason if one came, else the ones sent; ``None``
    when the socket dropped without either."""
    protocol = ws.protocol
    for frame in (protocol.close_rcvd, protocol.close_sent):
        if frame is not None:
            return frame.code, frame.reason
    return None, ""


def _clip_reason(reason: str) -> str:
    """A close reason fits in 123 bytes of UTF-8."""
    return reason.encode("utf-8")[:123].decode("utf-8", errors="ignore")


class Driver:
    """Keeps one link to the connector at ``base_url`` until the component says
    ``state stopped`` (after :meth:`shutdown`, or after the credentials were
    revoked when :attr:`stop_when_revoked` is set).

    ``config`` is the :class:`~relay_wasm.Link` config without ``url`` (the driver
    sets it to ``base_url``; ``seed`` and ``unix_offset_ms`` default to random bits
    and the event loop's clock).  Application events (APP-PROTOCOL dicts) arrive on
    :attr:`events` (an :class:`EventQueue`, with ``await events.get()`` as on an
    ``asyncio.Queue``) and, if given, through ``on_event``; every one of them,
    ``state`` events included, is the component's.  ``max_events`` bounds the
    queue with backpressure (module doc); ``None``, the default, leaves it
    unbounded.  ``restart_budget``: see :class:`RestartBudget`.  Extra keyword
    arguments go to ``websockets.asyncio.client.connect``, except what the link's
    settings decide (``max_size``, ``ping_interval`` — always ``None`` — and
    ``close_timeout``).
    """

    def __init__(self, base_url: str, config: Mapping[str, Any], *, relay: Optional[Relay] = None,
                 on_event: Optional[Callable[[Any], None]] = None,
                 logger: Optional[logging.Logger] = None, max_events: Optional[int] = None,
                 restart_budget: RestartBudget = RestartBudget(), **connect_kwargs: Any):
        self.relay = relay if relay is not None else Relay()
        cfg = dict(config)
        cfg["url"] = base_url
        if cfg.get("unix_offset_ms") is None:
            cfg["unix_offset_ms"] = unix_offset_ms()  # now_ms is monotonic_ms()
        if cfg.get("seed") is None:
            cfg["seed"] = secrets.randbits(64)  # kept: rebuilt instances vary it
        self._config = cfg
        self.link = Link(cfg, relay=self.relay)
        #: The link's settings (every default applied).
        self.settings = self.link.settings()
        self.events = EventQueue(max_events or 0)
        self.on_event = on_event
        # Sees every Emit first; returning True takes it (the Client's outbound
        # correlation), so it is neither queued nor given to on_event.
        self._intercept: Optional[Callable[[Emit], bool]] = None
        self.log = logger or logging.getLogger("relay_wasm")
        # Happy Eyeballs (RFC 8305): a blackholed first address (say, an IPv6
        # route that drops SYNs) costs 250 ms, not the whole connect timeout;
        # the Rust host and the Node driver use the same stagger.
        self.connect_kwargs = {"happy_eyeballs_delay": 0.25, **connect_kwargs}
        self.restart_budget = restart_budget
        #: Instances built so far after the first (each after a guest failure).
        self.restarts = 0
        self._failures: collections.deque = collections.deque()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._sock: Optional[_Socket] = None
        self._dial: Optional[asyncio.Task] = None
        self._tasks: set = set()
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_at: Optional[int] = None
        self._last_now = 0
        self._stopped = asyncio.Event()
        self._finished = False
        self._failure: Optional[BaseException] = None
        self._shutting_down = False
        self._shutdown_reason: Optional[str] = None
        # What a replacement instance must be told (Recovery).
        self._owed: dict = {}            # application id -> [action text, ...]
        self._in_flight: dict = {}       # buffer id -> None, in delivery order
        self._idle_owed = False
        self._revoked = False
        #: End the link by itself after ``state revoked`` (nothing will ever dial
        #: again). Off by default, as in relay-host and the Node driver, where a
        #: revoked link waits for ``shutdown`` (the parity suite compares them);
        #: the asyncio :class:`~relay_wasm.Client` turns it on so its iteration ends.
        self.stop_when_revoked = False

    # -- what it is -------------------------------------------------------------------

    @property
    def conn(self) -> Link:
        """The current :class:`~relay_wasm.Link` (its old name; a new one after a
        guest failure)."""
        return self.link

    @property
    def url(self) -> str:
        """The WebSocket URL the component dials (``settings().dial_url``)."""
        return self.settings.dial_url

    @property
    def finished(self) -> bool:
        """``state stopped`` was emitted (or the driver failed)."""
        return self._finished

    def stats(self) -> Any:
        """The link's counters (:class:`~relay_wasm.Stats`)."""
        return self._query("stats")

    def descriptors(self) -> Any:
        """Each fronted platform's descriptor on this connection (D15)."""
        return self._query("descriptors")

    # -- the application's side ----------------------------------------------------

    def outbound(self, id: str, action: Any, platform: Optional[str] = None) -> None:
        """The application's ``outbound`` (``action``: a dict or JSON text); its one
        ``outbound_result`` with ``id`` comes later as an event."""
        text = action if isinstance(action, str) else self.relay.dumps(action)
        self._owe(id, text)
        self._call("outbound", id, text, platform)

    def interrupt(self, session_key: str, reason: Optional[str] = None) -> None:
        """The application's ``interrupt`` (no answer)."""
        self._call("interrupt", session_key, reason)

    def ack(self, buffer_id: str) -> None:
        """A buffered delivery was taken durably."""
        self._in_flight.pop(buffer_id, None)
        self._call("ack", buffer_id)

    def nack(self, buffer_id: str) -> None:
        """A buffered delivery could not be taken: its next arrival is delivered again."""
        self._in_flight.pop(buffer_id, None)
        self._call("nack", buffer_id)

    def going_idle(self) -> None:
        """The application's ``going_idle``; answered by one ``idle`` event."""
        self._idle_owed = True
        self._call("going_idle")

    def hold_redial(self) -> None:
        """Park re-dialling for at most 60 s (a brokered suspend)."""
        self._call("hold_redial")

    def release_redial(self) -> None:
        """End :meth:`hold_redial`."""
        self._call("release_redial")

    def command(self, command: Union[Command, Mapping[str, Any], str]) -> None:
        """An APP-PROTOCOL command.  A :class:`~relay_wasm.events.Command` is sent
        with its typed method; a dict or JSON text goes to the component's command
        parser, which raises :class:`~relay_wasm.DecodeError` for one it does not
        take (the link is unchanged then).  Answers come later as events."""
        if isinstance(command, Command):
            return self._typed(command)
        text = command if isinstance(command, str) else self.relay.dumps(command)
        try:
            value = json.loads(text) if isinstance(command, str) else command
        except ValueError:
            value = None
        parsed: Mapping[str, Any] = value if isinstance(value, Mapping) else {}
        op = parsed.get("op")
        owed: Optional[str] = None
        idle: Optional[bool] = None
        if op == "outbound" and isinstance(parsed.get("id"), str) and "action" in parsed:
            action = parsed["action"]
            owed = parsed["id"]
            self._owe(owed, action if isinstance(action, str) else self.relay.dumps(action))
        elif op == "going_idle":
            idle, self._idle_owed = self._idle_owed, True
        try:
            self._call("command", text)
        except DecodeError:
            if owed is not None:
                self._answered(owed, last=True)
            if idle is not None:
                self._idle_owed = idle
            raise
        if op in ("ack", "nack") and isinstance(parsed.get("buffer_id"), str):
            self._in_flight.pop(parsed["buffer_id"], None)

    def _typed(self, c: Command) -> None:
        if isinstance(c, Outbound):
            self.outbound(c.id, c.action, c.platform)
        elif isinstance(c, Interrupt):
            self.interrupt(c.session_key, c.reason)
        elif isinstance(c, Ack):
            self.ack(c.buffer_id)
        elif isinstance(c, Nack):
            self.nack(c.buffer_id)
        elif isinstance(c, GoingIdle):
            self.going_idle()
        elif isinstance(c, HoldRedial):
            self.hold_redial()
        elif isinstance(c, ReleaseRedial):
            self.release_redial()
        else:
            self.command(c.to_dict())

    def shutdown(self, grace: float = 0.0, reason: Optional[str] = None) -> None:
        """Ends the link (``Link.shutdown``): a ready link goes idle and waits at
        most ``grace`` seconds for the connector's ack; then what still waits is
        answered ``relay send failed: relay transport closed``, the socket closes
        with 1000, and after ``state stopped`` :meth:`run` returns.  The event
        queue's bound is lifted (the reader must drain the socket to close it
        cleanly).  A second call does nothing."""
        if self._finished or self._shutting_down:
            return
        self._shutting_down = True
        self._shutdown_reason = reason
        self.events.unbound()
        self._call("shutdown", max(0, int(grace * 1000)), reason)

    def stop(self) -> None:
        """``shutdown(0)``: stop at once, without going idle."""
        self.shutdown(0.0)

    # -- the loop -------------------------------------------------------------------

    async def run(self) -> None:
        """Starts the link and performs its effects until ``state stopped``; raises
        when the driver failed (a guest failure it could not recover from, or an
        exception in an ``on_event`` callback)."""
        self._loop = asyncio.get_running_loop()
        try:
            if not self._finished:
                self._call("start")
            await self._stopped.wait()
            if self._failure is not None:
                raise self._failure
        finally:
            await self._cleanup()

    async def _cleanup(self) -> None:
        self._cancel_timer()
        if self._dial is not None:
            self._dial.cancel()
            self._dial = None
        sock, self._sock = self._sock, None
        if sock is not None:  # run() ended (failed, cancelled) with a socket up
            sock.cancel()
            try:
                await asyncio.wait_for(sock.ws.close(1001, "gateway stopping"),
                                       self.settings.close_wait_ms / 1000)
            except BaseException:  # noqa: BLE001 - best effort, even when cancelled
                pass
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()

    # -- calls into the component -----------------------------------------------------

    def _now_ms(self, at: Optional[int] = None) -> int:
        """The monotonic clock in ms, never decreasing and never before ``at``
        (asyncio may run a timer callback a hair early)."""
        now = max(monotonic_ms(), self._last_now, at or 0)
        self._last_now = now
        return now

    def _call(self, name: str, *args: Any, at: Optional[int] = None) -> None:
        """One call into the link, its effects performed, the timer re-armed.  A
        guest failure is recovered from (or raised when it cannot be)."""
        now = self._now_ms(at)
        try:
            effects = getattr(self.link, name)(now, *args)
        except GUEST_FAILURES as e:
            self._recover(e)
            return
        self._perform(effects)
        self._after()

    def _query(self, name: str) -> Any:
        try:
            return getattr(self.link, name)()
        except GUEST_FAILURES as e:
            self._recover(e)
            return getattr(self.link, name)()

    def _after(self) -> None:
        if (self._revoked and self.stop_when_revoked and not self._shutting_down
                and not self._finished):
            # Nothing will ever dial again: end the link (its `stopped` ends run()).
            self._shutting_down = True
            self._shutdown_reason = "credentials revoked"
            self._call("shutdown", 0, self._shutdown_reason)
            return
        self._rearm()

    def _rearm(self) -> None:
        """The one timer: at ``poll_timeout()``."""
        if self._loop is None or self._finished:
            self._cancel_timer()
            return
        try:
            at = self.link.poll_timeout()
        except GUEST_FAILURES as e:
            self._recover(e)
            return
        if at == self._timer_at and self._timer is not None:
            return
        self._cancel_timer()
        if at is None:
            return
        self._timer_at = at
        self._timer = self._loop.call_later(max(0, at - self._now_ms()) / 1000, self._fire)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None

    def _fire(self) -> None:
        at, self._timer, self._timer_at = self._timer_at, None, None
        try:
            self._call("handle_timeout", at=at)
        except Exception as e:  # noqa: BLE001 - a callback has nobody to raise to
            self._fail(e)

    # -- effects ----------------------------------------------------------------------

    def _perform(self, effects: list) -> None:
        for e in effects:
            if isinstance(e, Send):
                if self._sock is not None:
                    self._sock.outbox.put_nowait(("send", e.line, e.number))
                else:
                    self.log.warning("component wrote with no socket open; dropped")
            elif isinstance(e, Emit):
                self._emit(e)
            elif isinstance(e, SendPing):
                if self._sock is not None:
                    self._sock.outbox.put_nowait(("ping",))
            elif isinstance(e, CloseLink):
                if self._sock is not None:
                    self._sock.outbox.put_nowait(("close", e.code, e.reason))
            elif isinstance(e, Dial):
                self._start_dial(e.url, e.authorization)
            elif isinstance(e, Log):
                self.log.log(_LEVELS.get(e.level, logging.INFO), "%s", e.message)

    def _emit(self, e: Emit) -> None:
        kind, stopped = e.event_kind, False
        if kind == EventKind.OUTBOUND_RESULT and e.id is not None:
            self._answered(e.id)
        elif kind == EventKind.MESSAGE and e.buffer_id is not None:
            self._in_flight[e.buffer_id] = None
            while len(self._in_flight) > _IN_FLIGHT_CAP:
                del self._in_flight[next(iter(self._in_flight))]
        elif kind == EventKind.IDLE:
            self._idle_owed = False
        elif kind == EventKind.STATE:
            if e.state == LinkState.REVOKED:
                self._revoked = True
            elif e.state == LinkState.STOPPED:
                stopped = True
        if self._intercept is None or not self._intercept(e):
            self.events.put_nowait(e.event)
            if self.on_event is not None:
                self.on_event(e.event)
        if stopped:
            self._finish()

    def _owe(self, id: str, action_text: str) -> None:
        self._owed.setdefault(id, []).append(action_text)

    def _answered(self, id: str, last: bool = False) -> None:
        actions = self._owed.get(id)
        if actions:
            actions.pop(-1 if last else 0)
            if not actions:
                del self._owed[id]

    def _finish(self) -> None:
        """``state stopped``: the link's last event.  A dial in progress is abandoned."""
        self._finished = True
        self._cancel_timer()
        if self._dial is not None:
            self._dial.cancel()
            self._dial = None
        self._stopped.set()

    def _fail(self, err: BaseException) -> None:
        if self._failure is None:
            self._failure = err
        self._finished = True
        self._cancel_timer()
        self._stopped.set()

    def _spawn(self, coro: Any) -> asyncio.Task:
        """A task whose unexpected exception fails the driver."""
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled():
                err = t.exception()
                if err is not None:
                    self._fail(err)

        task.add_done_callback(done)
        return task

    # -- the socket -------------------------------------------------------------------

    def _start_dial(self, url: str, authorization: Optional[str]) -> None:
        if self._dial is not None:
            self._dial.cancel()  # the component asks for one dial at a time
        self._dial = self._spawn(self._dial_once(url, authorization))

    async def _dial_once(self, url: str, authorization: Optional[str]) -> None:
        me = asyncio.current_task()
        kwargs = dict(self.connect_kwargs)
        headers = dict(kwargs.pop("additional_headers", None) or {})
        if authorization is not None:
            headers["Authorization"] = authorization
        kwargs.update(max_size=self.settings.max_message_bytes, ping_interval=None,
                      close_timeout=self.settings.close_wait_ms / 1000)
        try:
            ws = await connect(url, additional_headers=headers, **kwargs)
        except Exception as e:  # a failed dial (refused, HTTP error, timeout, bad URL)
            if self._dial is me:
                self._dial = None
                self.log.info("dial %s failed: %s", url, e)
                self._call("closed", None, str(e)[:200] or type(e).__name__)
            return
        if self._dial is not me or self._finished:  # abandoned meanwhile
            await ws.close(1000, "gateway stopping")
            return
        self._dial = None
        sock = _Socket(ws)
        self._sock = sock
        sock.writer = self._spawn(self._write(sock))
        self._call("open")
        if self._sock is sock:
            sock.reader = self._spawn(self._read(sock))

    async def _read(self, sock: _Socket) -> None:
        ws = sock.ws
        try:
            while True:
                if self.events.full():  # backpressure: the application reads first
                    await self._room_or_closed(ws)
                msg = await ws.recv()
                if sock is not self._sock:
                    return
                if isinstance(msg, str):
                    self._call("receive_text", msg)
                else:
                    self._call("receive_binary", msg)
                if sock is not self._sock:
                    return
        except ConnectionClosed:
            pass
        if sock is not self._sock:
            return
        self._sock = None
        sock.cancel()
        code, reason = _close_code(ws)
        self._call("closed", code, reason)

    async def _room_or_closed(self, ws: Any) -> None:
        """Waits for room in the queue, or for the socket to end (a closed socket
        is drained whatever the queue holds)."""
        room = asyncio.ensure_future(self.events.wait_for_room())
        closed = asyncio.ensure_future(ws.wait_closed())
        try:
            await asyncio.wait({room, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            room.cancel()
            closed.cancel()

    async def _write(self, sock: _Socket) -> None:
        """Writes in effect order; a close after sends waits for them.  A failed
        write is reported with its frame number (D9 ``relay send failed``)."""
        ws = sock.ws
        while True:
            item = await sock.outbox.get()
            kind = item[0]
            try:
                if kind == "send":
                    await ws.send(item[1])
                elif kind == "ping":
                    waiter = await ws.ping()
                    task = self._spawn(self._await_pong(sock, waiter))
                    sock.pongs.add(task)
                    task.add_done_callback(sock.pongs.discard)
                else:
                    code, reason = item[1], _clip_reason(item[2])
                    try:
                        await ws.close(code, reason)
                    except ConnectionClosed:
                        raise
                    except Exception as e:  # a code websockets will not send
                        self.log.warning("close with code %s failed (%s); closing with 1000", code, e)
                        await ws.close(1000, reason)
                    return
            except ConnectionClosed as e:
                if kind == "send" and sock is self._sock:
                    self._call("write_failed", item[2], str(e)[:200])
                return

    async def _await_pong(self, sock: _Socket, waiter: Any) -> None:
        try:
            await waiter
        except ConnectionClosed:
            return
        if sock is self._sock:
            self._call("pong")

    # -- after a guest failure ----------------------------------------------------------

    def _recover(self, err: BaseException) -> None:
        """The guest failed: close its socket, build a fresh instance and hand it
        what the failed one owed (the Rust host's rule).  Raises (and fails the
        driver) when no instance can be built or the restart budget is spent."""
        while True:
            what = trap_summary(err)
            self.log.error("guest instance failed: %s", what)
            self.log.debug("guest failure in full: %s", err)
            self._drop_io()
            now = self._now_ms()
            self._failures.append(now)
            window_ms = self.restart_budget.window_s * 1000
            while self._failures and now - self._failures[0] > window_ms:
                self._failures.popleft()
            recent = len(self._failures)
            if recent > self.restart_budget.max_restarts:
                exc = RuntimeError(
                    f"guest instance failed {recent} times within "
                    f"{self.restart_budget.window_s:g} s (last: {what}); restart budget exhausted")
                exc.__cause__ = err
                self._fail(exc)
                raise exc
            delay_ms = min(500 << min(recent - 1, 5), 10_000)
            self.restarts += 1
            try:
                relay = self.relay.fresh()
                seed = (self._config["seed"] + self.restarts * _SEED_STEP) % (1 << 64)
                link = Link({**self._config, "seed": seed}, relay=relay)
            except GUEST_FAILURES as e:  # the new instance failed too: counts as one more
                err = e
                continue
            except Exception as e:
                exc = RuntimeError(f"cannot rebuild the guest instance: {e}")
                exc.__cause__ = e
                self._fail(exc)
                raise exc
            self.relay, self.link = relay, link
            owed = [OwedRequest(rid, a) for rid, actions in self._owed.items() for a in actions]
            if self._revoked:
                reason = f"guest instance failed ({what}); rebuilt it; credentials stay revoked"
            else:
                reason = f"guest instance failed ({what}); rebuilt it, dialing again"
            recovery = Recovery(owed=owed, in_flight=list(self._in_flight),
                                idle_owed=self._idle_owed, dial_after_ms=delay_ms,
                                revoked=self._revoked, reason=reason)
            try:
                effects = link.recover(self._now_ms(), recovery)
            except GUEST_FAILURES as e:  # still owed: the next instance is told
                err = e
                continue
            break
        # Its answers (outbound_result, idle) settle the bookkeeping as they are emitted.
        self._perform(effects)
        if self._shutting_down and not self._finished:
            # It failed while ending: the new instance ends at once.
            self._call("shutdown", 0, self._shutdown_reason)
            return
        self._after()

    def _drop_io(self) -> None:
        """The failed instance's socket (closed with 1011), dial and timer."""
        self._cancel_timer()
        if self._dial is not None:
            self._dial.cancel()
            self._dial = None
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.cancel()
            if self._loop is not None:
                async def close(ws: Any = sock.ws) -> None:
                    try:
                        await asyncio.wait_for(ws.close(*_RESTART_CLOSE), _RESTART_CLOSE_WAIT_S)
                    except Exception:  # noqa: BLE001 - best effort
                        pass
                task = self._loop.create_task(close())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
