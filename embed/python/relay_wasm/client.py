"""An asyncio client: one link to a connector, typed events, correlated outbound calls.

The Python counterpart of ``relay_host::client::Client`` (crates/relay-host/src/client.rs)
for one in-process link::

    async with relay_wasm.connect(url, config) as link:
        async for event in link:
            if isinstance(event, relay_wasm.MessageEvent):
                result = await link.outbound({"op": "send", "chat_id": ..., "text": "hi"})
                link.ack(event)

It is a thin layer over :class:`relay_wasm.driver.Driver`, which dials, re-dials,
keeps the one timer and writes frames as the component decides (contract 0.2:
every link state is the component's); this module adds only what an application
would otherwise write itself:

* **Typed events** (:mod:`relay_wasm.events`), from :meth:`Client.next_event` or
  ``async for``.  The iteration ends after the link has stopped and every event
  was read.
* **Correlation.** :meth:`Client.outbound` sends the component's ``outbound``
  command with an id of its own (``relay-client-<n>``) and returns the
  ``outbound_result`` that echoes it; concurrent calls each get their own.  That
  result is not also put in the event stream.  Cancelling the call (directly, or
  with ``asyncio.timeout``/``wait_for``) removes its waiter at once; the action may
  already have been written, and its result, if it comes, then arrives as an
  ordinary :class:`~relay_wasm.OutboundResult` event.  There is no deadline of the
  client's own: the component answers every request (``outbound_timeout_ms``,
  30 s by default).
* **A bounded event queue with backpressure.**  At most ``max_events`` (default
  :data:`DEFAULT_MAX_EVENTS`, 4096) events wait for the application.  When that
  many are unread, the driver stops reading the socket and waits — it never
  drops an event; websockets buffers at most its ``max_queue`` (16) more messages
  and TCP flow control then makes the connector wait.  Events raised by timers
  and by your own commands are still queued, so the queue can briefly exceed the
  mark.  Outbound results are read from that same socket: a task that awaits
  ``outbound`` while nobody reads the events can wait for the component's
  timeout, so read events in a task of their own (as with the Rust client).
* **A graceful end.**  Leaving ``async with`` (or :meth:`Client.shutdown`) calls
  the component's ``shutdown`` with ``shutdown_grace`` (5 s): a ready link sends
  ``going_idle`` and waits at most that long for the connector's ``idle``; then
  what still waits is answered ``relay send failed: relay transport closed``
  (ambiguous), the socket closes with 1000 and is never dialled again, and
  ``state stopped`` is the last event.  On an exception (or cancellation) inside
  the block the grace is 0 (no ``going_idle``).  Shutting down lifts the queue's
  bound, so the ``idle`` is read behind unread messages; every event not yet read
  stays readable after the block.

One client, one event loop, one thread: call it from the loop it runs on.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Any, AsyncIterator, Mapping, Optional, Union

from .component import Link, Relay, Stats
from .driver import Driver, QueueClosed
from .effects import Emit
from .errors import DecodeError, LinkStopped
from .events import (Command, Event, EventKind, LinkState, MessageEvent, OutboundResult,
                     ReadyEvent, parse_event)

__all__ = ["Client", "connect", "DEFAULT_MAX_EVENTS", "OUTBOUND_ID_PREFIX"]

#: Events the client holds for the application before the socket reader waits
#: (as the Rust host's event queue and the Node package's buffer).
DEFAULT_MAX_EVENTS = 4096

#: The prefix of the ids :meth:`Client.outbound` generates.  Outbound commands sent
#: with :meth:`Client.send` should use other ids, or their answers may be taken for
#: a waiting call's (as ``relay_host::client::OUTBOUND_ID_PREFIX``).
OUTBOUND_ID_PREFIX = "relay-client-"

#: Seconds :meth:`Client.shutdown` waits for the connector's ``idle`` (the Rust
#: host's ``shutdown_grace_ms``).
DEFAULT_SHUTDOWN_GRACE = 5.0


def connect(url: str, config: Mapping[str, Any], **kwargs: Any) -> "Client":
    """A :class:`Client` for the connector at ``url`` (its base URL, ``https://…``
    or ``wss://…``), to be used as ``async with connect(url, config) as link:``, or
    as ``link = await connect(url, config)`` ... ``await link.shutdown()``.

    ``config`` is the :class:`~relay_wasm.Link` config without ``url``
    (``identities``, ``gateway_id``, ``secret``, ``tenant``, options such as
    ``handshake_timeout_ms`` or ``ping_interval_ms`` — left out, the component's
    defaults apply); a config the component rejects raises
    :class:`~relay_wasm.DecodeError` here.  Keyword arguments: see
    :class:`Client`."""
    return Client(url, config, **kwargs)


class Client:
    """One link to a connector, run by a :class:`~relay_wasm.driver.Driver` (module
    doc).  Start it with ``async with`` (or :meth:`start` + :meth:`shutdown`).

    ``relay``: the :class:`~relay_wasm.Relay` instance to create the link in
    (a new one by default; after a guest failure the driver replaces it);
    ``max_events``: the event queue's mark;
    ``shutdown_grace``: seconds to wait for ``idle`` when shutting down;
    ``logger``: where the component's log records go (``relay_wasm``); other
    keyword arguments go to ``websockets.asyncio.client.connect`` (``proxy=None``,
    ``open_timeout``, ``ssl`` ...)."""

    def __init__(self, url: str, config: Mapping[str, Any], *, relay: Optional[Relay] = None,
                 max_events: int = DEFAULT_MAX_EVENTS,
                 shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE,
                 logger: Optional[logging.Logger] = None, **connect_kwargs: Any):
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self._driver = Driver(url, dict(config), relay=relay, logger=logger,
                              max_events=max_events, **connect_kwargs)
        self._driver._intercept = self._intercept
        # A revoked link never dials again: the client's iteration ends there.
        self._driver.stop_when_revoked = True
        self._events = self._driver.events
        self.shutdown_grace = shutdown_grace
        self._ids = itertools.count(1)
        self._waiters: dict[str, asyncio.Future] = {}
        self._state: Optional[Union[LinkState, str]] = None
        self._ready: Optional[ReadyEvent] = None
        self._changed = asyncio.Event()  # pulsed on every state change
        self._task: Optional[asyncio.Task] = None
        self._failure: Optional[BaseException] = None
        self._closed = False

    # -- what it is -------------------------------------------------------------------

    @property
    def relay(self) -> Relay:
        """The component instance the link runs in (a new one after a guest failure)."""
        return self._driver.relay

    @property
    def connection(self) -> Link:
        """The low-level :class:`~relay_wasm.Link` (for ``settings()``,
        ``descriptors()``); do not drive it yourself."""
        return self._driver.link

    @property
    def url(self) -> str:
        """The WebSocket URL dialled (the link's ``settings().dial_url``)."""
        return self._driver.url

    @property
    def restarts(self) -> int:
        """Guest failures recovered from (each with a fresh instance)."""
        return self._driver.restarts

    @property
    def state(self) -> Optional[Union[LinkState, str]]:
        """The state of the last ``state`` event (the component announces every
        one: ``CONNECTING`` ... ``STOPPED``); ``None`` before the first."""
        return self._state

    @property
    def descriptor(self) -> Optional[Mapping[str, Any]]:
        """The descriptor of the last ``ready`` event (``None`` before one)."""
        return self._ready.descriptor if self._ready is not None else None

    @property
    def running(self) -> bool:
        """Started and not yet stopped."""
        return self._task is not None and not self._task.done()

    @property
    def waiting(self) -> int:
        """:meth:`outbound` calls waiting for their result."""
        return len(self._waiters)

    @property
    def queued(self) -> int:
        """Events waiting to be read."""
        return self._events.qsize()

    def stats(self) -> Stats:
        """The link's counters (:class:`~relay_wasm.Stats`: ``frames_in``,
        ``pending_outbound``, ``state`` ...; ``stats["frames_in"]`` works too);
        until :meth:`shutdown` has released the link."""
        return self._driver.stats()

    # -- life -------------------------------------------------------------------------

    def start(self) -> None:
        """Starts dialling (in a task of the running loop); ``async with`` calls it."""
        if self._closed:
            raise LinkStopped("this client has been shut down; make a new one")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._driver.run(), name=f"relay_wasm link {self._driver.url}")
            self._task.add_done_callback(self._ended)

    async def shutdown(self, grace: Optional[float] = None) -> None:
        """Stops the link gracefully (module doc) and returns once it has ended.
        ``grace``: seconds to wait for ``idle`` (``shutdown_grace`` by default; 0
        skips ``going_idle``).  Events not yet read stay readable.  Re-raises a
        failure of the driver as :class:`~relay_wasm.LinkStopped`.  Idempotent."""
        if self._task is None:
            self._closed = True
            self._events.close()
            return
        grace = self.shutdown_grace if grace is None else grace
        # Nobody may read while the link ends: the bound is lifted, so the
        # connector's `idle` can be read behind unread messages (kept, not lost).
        self._events.unbound()
        if not self._closed:
            try:
                # The component sequences it: going_idle (when ready) within the
                # grace, then the close with 1000, then `state stopped`.
                self._driver.shutdown(grace)
            except Exception as e:  # the driver failed (and run() says so)
                self._driver.log.warning("shutting the link down failed: %r", e)
            # asyncio.wait never cancels what it waits for: a cancelled
            # shutdown still lets the link close cleanly in its task.
            await asyncio.wait([self._task])
            self._closed = True
            try:
                self._driver.link.drop()  # release the component's resource
            except Exception:
                pass
        if self._failure is not None:
            raise LinkStopped(f"the link failed: {self._failure!r}") from self._failure

    async def __aenter__(self) -> "Client":
        self.start()
        return self

    def __await__(self):
        """``link = await connect(...)``: started; end it with :meth:`shutdown`."""
        async def started() -> "Client":
            self.start()
            return self
        return started().__await__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            await self.shutdown()
            return
        try:
            await self.shutdown(grace=0)
        except LinkStopped:
            pass  # the block's own exception says more

    def _ended(self, task: asyncio.Task) -> None:
        """The driver's run() returned (or failed): no answer will come any more."""
        if not task.cancelled() and task.exception() is not None:
            self._failure = task.exception()
            self._driver.log.error("relay_wasm link failed: %r", self._failure)
        for waiter in self._waiters.values():
            if not waiter.done():
                err = LinkStopped("the link stopped before the answer came")
                err.__cause__ = self._failure
                waiter.set_exception(err)
        self._events.close()
        self._pulse()

    # -- commands ---------------------------------------------------------------------

    async def outbound(self, action: Union[Mapping[str, Any], str], *,
                       platform: Optional[str] = None) -> OutboundResult:
        """Sends ``action`` (an object with ``op``: ``send``, ``edit``, ``typing``,
        ...; a dict, or its JSON text) and returns its ``outbound_result``.

        ``platform`` picks one identity of a multi-identity link (``None``: the
        chat's or the default one).  Check ``result.success`` / ``.error`` /
        ``.ambiguous``: a failed action is a result, not an exception.  Raises
        :class:`~relay_wasm.DecodeError` when the component rejects the command (an
        action that is not an object, ...) and :class:`~relay_wasm.LinkStopped`
        when the link has ended.  Cancel-safe (module doc)."""
        self._check_running()
        text = self._action_text(action)
        rid = f"{OUTBOUND_ID_PREFIX}{next(self._ids)}"
        waiter = asyncio.get_running_loop().create_future()
        # Registered before the command goes out: the answer may come at once.
        self._waiters[rid] = waiter
        try:
            self._driver.outbound(rid, text, platform)
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Answered just as the caller gave up: the answer goes to the stream.
                self._events.put_nowait(dict(waiter.result().raw))
            raise
        finally:
            self._waiters.pop(rid, None)

    def send(self, command: Union[Command, Mapping[str, Any], str]) -> None:
        """Any APP-PROTOCOL command (a :class:`~relay_wasm.events.Command`, a dict or
        JSON text, without ``tenant``); what answers it arrives as events.  A
        ``Command`` goes out through its typed call; a dict or text through the
        component's command parser, which raises :class:`~relay_wasm.DecodeError`
        for one it does not take (the link is unchanged then)."""
        self._check_running()
        self._driver.command(command)

    def ack(self, delivery: Union[MessageEvent, str]) -> None:
        """A buffered message was handed off durably (its event, or its ``buffer_id``)."""
        self._check_running()
        self._driver.ack(self._buffer_id(delivery))

    def nack(self, delivery: Union[MessageEvent, str]) -> None:
        """A buffered message could not be taken: its next arrival is delivered again."""
        self._check_running()
        self._driver.nack(self._buffer_id(delivery))

    def interrupt(self, session_key: str, reason: Optional[str] = None) -> None:
        """Asks the connector to stop a turn (no answer)."""
        self._check_running()
        self._driver.interrupt(session_key, reason)

    def going_idle(self) -> None:
        """Sends ``going_idle``; the answer is an :class:`~relay_wasm.IdleEvent`."""
        self._check_running()
        self._driver.going_idle()

    def hold_redial(self) -> None:
        """Parks re-dialling for at most 60 s (a brokered suspend)."""
        self._check_running()
        self._driver.hold_redial()

    def release_redial(self) -> None:
        """Ends :meth:`hold_redial`."""
        self._check_running()
        self._driver.release_redial()

    def _action_text(self, action: Union[Mapping[str, Any], str]) -> str:
        """The action as JSON text (text is passed verbatim); not an object:
        :class:`~relay_wasm.DecodeError`, as the component's command parser says."""
        if isinstance(action, str):
            try:
                value = json.loads(action)
            except ValueError as e:
                raise DecodeError("malformed_json", f"field `action`: {e}") from None
            if not isinstance(value, dict):
                raise DecodeError("invalid_field", "field `action`: not an object")
            return action
        if not isinstance(action, Mapping):
            raise DecodeError("invalid_field", "field `action`: not an object")
        return self.relay.dumps(dict(action))

    @staticmethod
    def _buffer_id(delivery: Union[MessageEvent, str]) -> str:
        if isinstance(delivery, MessageEvent):
            if delivery.buffer_id is None:
                raise ValueError("this message was not buffered: nothing to ack")
            return delivery.buffer_id
        return delivery

    def _check_running(self) -> None:
        if self._task is None:
            raise RuntimeError("the client is not started: use `async with connect(...)`")
        if self._task.done() or self._closed:
            raise LinkStopped("the link has stopped") from self._failure

    # -- events -----------------------------------------------------------------------

    async def next_event(self) -> Optional[Event]:
        """The next event not taken by an :meth:`outbound` call; ``None`` once the
        link has stopped and every event was read (raises
        :class:`~relay_wasm.LinkStopped` instead when the driver failed).
        Cancel-safe."""
        if self._task is None:
            raise RuntimeError("the client is not started: use `async with connect(...)`")
        try:
            raw = await self._events.get()
        except QueueClosed:
            if self._failure is not None:
                raise LinkStopped(f"the link failed: {self._failure!r}") from self._failure
            return None
        return parse_event(raw)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        event = await self.next_event()
        if event is None:
            raise StopAsyncIteration
        return event

    async def wait_ready(self) -> ReadyEvent:
        """Returns the ``ready`` event once the link is ready (at once if it is);
        raises :class:`~relay_wasm.LinkStopped` if it stops first.  Events are not
        taken from the stream, so it needs room there: the ``state`` events around
        ``ready`` (``connecting``, ``handshaking`` before it, ``ready`` after it)
        count against ``max_events``."""
        if self._task is None:
            raise RuntimeError("the client is not started: use `async with connect(...)`")
        while True:
            if self._state == LinkState.READY and self._ready is not None:
                return self._ready
            if self._task is not None and self._task.done():
                raise LinkStopped("the link stopped before it was ready") from self._failure
            await self._changed.wait()

    # -- the driver's side --------------------------------------------------------------

    def _intercept(self, e: Emit) -> bool:
        """Sees every event the moment it is emitted (by its typed facts); True
        takes it."""
        kind = e.event_kind
        if kind == EventKind.OUTBOUND_RESULT:
            waiter = self._waiters.get(e.id) if e.id is not None else None
            if waiter is not None and not waiter.done():
                event = parse_event(e.event)
                if isinstance(event, OutboundResult):
                    del self._waiters[event.id]
                    waiter.set_result(event)
                    return True
        elif kind == EventKind.STATE and e.state is not None:
            self._set_state(e.state)
        elif kind == EventKind.READY:
            event = parse_event(e.event)
            if isinstance(event, ReadyEvent):
                self._ready = event
            self._pulse()
        return False

    def _set_state(self, state: Union[LinkState, str]) -> None:
        self._state = state
        self._pulse()

    def _pulse(self) -> None:
        self._changed.set()  # wakes every current waiter ...
        self._changed.clear()  # ... and re-arms for the next change

    def __repr__(self) -> str:
        return f"<relay_wasm.Client {self._driver.url} state={self._state}>"
