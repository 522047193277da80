// A small Node driver for one relay `Connection`: it performs the component's
// effects with the `ws` package (dial with the Authorization header, writes,
// timers, close, reconnect / redial / give-up) and feeds socket events back.
// It decides nothing: what to send, when to retry and after how long all come
// from the component. `connect()` (client.mjs, the package's main entry) builds
// its Link on this; `relay-wasm/driver` exports it for callback-style use.
import WebSocket from 'ws';

import { RelayError } from './relay.mjs';

// Monotonic milliseconds for the component's clock (never decreases).
const nowMs = () => Math.floor(performance.now());

// The link states the component reports through stats() without an event of its
// own; announced when it changes to them (as the Rust host's tenant does).
const SILENT_STATES = new Set(['handshaking', 'ready', 'idle']);

/**
 * @param {object} o
 * @param {object} o.relay      an instance from `await load()`
 * @param {string} o.base       the configured connector base URL (http(s):// or ws(s)://)
 * @param {object} o.config     Connection config (see relay.mjs)
 * @param {(json: string) => void} [o.onEvent]  APP-PROTOCOL events, as JSON text
 * @param {(state: string, reason?: string) => void} [o.onState]  the link states
 *   the component does not emit itself (SIDECAR.md §2.1): `connecting` at each
 *   dial, `handshaking` / `ready` / `idle` when the component changes to them;
 *   none once stop() was called
 * @param {(level: string, message: string) => void} [o.onLog]
 * @param {(reason: string) => void} [o.onGiveUp]  the component will never dial again
 * @param {(err: Error) => void} [o.onError]  a component call trapped (or a callback
 *   threw) inside a socket or timer event, or a call of the returned object
 *   trapped: the link is stopped for good (default: rethrow, i.e. an uncaught
 *   exception)
 * @param {number} [o.maxMessageBytes]  larger messages fail the socket (bounds memory)
 * @param {number} [o.dialTimeoutMs]    TCP + TLS + upgrade deadline
 * @param {number} [o.pingIntervalMs]   liveness ping; no pong by the next one ends the socket
 */
export function connectWith({
  relay,
  base,
  config,
  onEvent = () => {},
  onState = null,
  onLog = () => {},
  onGiveUp = () => {},
  onError = (err) => {
    throw err;
  },
  maxMessageBytes = 4 << 20,
  dialTimeoutMs = 30000,
  pingIntervalMs = 30000,
}) {
  const url = relay.dialUrl(base);
  if (!/^wss?:\/\//.test(url)) {
    throw new Error(`dial URL ${JSON.stringify(url)} is not ws:// or wss:// (set the base URL to http(s):// or ws(s)://)`);
  }
  const conn = relay.Connection.create(config);
  const timers = new Map(); // component timer id → Node timeout
  let ws = null;
  let dialTimer = null;
  let stopped = false; // no more dials (give-up or stop())
  let halted = false; // stop() or a failure: no more timers either
  let paused = false; // pause(): the socket is not read
  let stopping = false; // stop() was called (the component is still alive)
  let announced = ''; // the last state reported (onState or a component `state` event)

  // Socket and timer callbacks call into the component; a trap there must not
  // leave a half-driven link behind (the instance is dead after a trap, so it is
  // not called again: no stop(), only the Node side is torn down).
  function fail(err) {
    if (halted) return undefined; // already reported
    teardown();
    return onError(err);
  }
  const guard =
    (fn) =>
    (...args) => {
      try {
        return fn(...args);
      } catch (err) {
        return fail(err);
      }
    };

  function announce(state, reason) {
    announced = state;
    onState(state, reason);
  }

  // After each batch: the states the component reports only through stats().
  function refreshState() {
    if (!onState || halted) return;
    const { state } = conn.stats();
    if (SILENT_STATES.has(state) && state !== announced) announce(state);
  }

  function perform(effects) {
    for (const e of effects) {
      switch (e.type) {
        case 'send': {
          // The component only writes to an open link. A write that fails is
          // reported with its frame number: the requests in it (and after it)
          // are answered `relay send failed`, and the socket's close follows.
          const socket = ws;
          if (socket?.readyState !== WebSocket.OPEN) break;
          const number = e.number;
          socket.send(e.text, guard((err) => {
            if (err && ws === socket) perform(conn.writeFailed(nowMs(), number, err.message));
          }));
          break;
        }
        case 'emit':
          // The component's own `state` events (backoff, redial, ...) count as
          // announced; events are compact with `event` first.
          if (onState && e.json.startsWith('{"event":"state"')) announced = JSON.parse(e.json).state ?? announced;
          onEvent(e.json);
          break;
        case 'set-timer': {
          if (halted) break;
          clearTimeout(timers.get(e.id));
          const fire = guard(() => {
            timers.delete(e.id);
            // Node may fire a millisecond early; the component's deadline is exact.
            perform(conn.timerFired(Math.max(nowMs(), e.atMs), e.id));
          });
          timers.set(e.id, setTimeout(fire, Math.max(0, e.atMs - nowMs())));
          break;
        }
        case 'cancel-timer':
          clearTimeout(timers.get(e.id));
          timers.delete(e.id);
          break;
        case 'close-link':
          onLog('info', `closing link: ${e.reason}`);
          closeSocket();
          break;
        case 'reconnect':
          scheduleDial(e.delayMs);
          break;
        case 'redial':
          scheduleDial(0);
          break;
        case 'give-up':
          stopped = true;
          onGiveUp(e.reason);
          break;
        case 'log':
          onLog(e.level, e.message);
          break;
        default:
          onLog('warn', `unknown effect ${e.type}`);
      }
    }
    refreshState();
  }

  // A close frame, and the TCP stream dropped if the peer does not answer it
  // soon (ws alone waits 30 s); either way `close` reports `closed`.
  function closeSocket() {
    const socket = ws;
    if (!socket) return;
    socket.close(1000);
    setTimeout(() => socket.terminate(), 2000).unref();
  }

  function scheduleDial(delayMs) {
    clearTimeout(dialTimer);
    if (!stopped) dialTimer = setTimeout(guard(dial), delayMs);
  }

  function dial() {
    if (stopped) return;
    // A fresh token on every dial (the component mints it; undefined without credentials).
    const authorization = conn.authorization();
    if (onState) announce('connecting');
    const socket = new WebSocket(url, {
      headers: authorization ? { Authorization: authorization } : {},
      maxPayload: maxMessageBytes,
      handshakeTimeout: dialTimeoutMs,
      perMessageDeflate: false,
      // Happy Eyeballs (RFC 8305): the next address after 250 ms, so a
      // blackholed first one (an IPv6 route that drops SYNs) costs 250 ms, not
      // the whole timeout; the Rust host and the Python driver do the same.
      autoSelectFamily: true,
      autoSelectFamilyAttemptTimeout: 250,
    });
    ws = socket;
    let failure = '';
    let alive = true;
    let ping = null;
    socket.on('open', guard(() => {
      if (paused) socket.pause();
      ping = setInterval(() => {
        // A paused socket reads no pongs: liveness is not judged while paused.
        if (paused) {
          alive = true;
          return;
        }
        if (!alive) return socket.terminate(); // reported below as a drop without code
        alive = false;
        socket.ping();
      }, pingIntervalMs);
      perform(conn.open(nowMs()));
    }));
    socket.on('pong', () => {
      alive = true;
    });
    socket.on('message', guard((data, isBinary) => {
      perform(isBinary ? conn.receiveBinary(nowMs(), data) : conn.receiveText(nowMs(), data.toString('utf8')));
    }));
    // `error` is always followed by `close`; keep its text as the close reason.
    socket.on('error', (err) => {
      failure = err.message;
    });
    socket.on('close', guard((code, reason) => {
      clearInterval(ping);
      if (ws === socket) ws = null;
      if (halted && !stopping) return; // a failed instance is not called again
      // 1005 (no code in the close frame) and 1006 (no close frame) are "no code".
      const wire = code === 1005 || code === 1006 ? undefined : code;
      perform(conn.closed(nowMs(), wire, reason.toString('utf8') || failure));
    }));
  }

  // The Node side only: no more dials or timers, the socket closed.
  function teardown() {
    stopped = halted = true;
    clearTimeout(dialTimer);
    for (const t of timers.values()) clearTimeout(t);
    timers.clear();
    closeSocket();
  }

  /** Stops dialing and closes the socket; the component answers what still
   *  waits with `relay send failed: relay transport closed`. Resolves once the
   *  socket has closed (at most ~2 s: the close handshake, then a drop). */
  function stop() {
    const socket = ws;
    if (!halted) {
      stopping = true;
      perform(conn.stop(nowMs()));
    }
    teardown();
    if (!socket || socket.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => socket.once('close', () => resolve()));
  }

  dial();

  // A RelayError (a rejected command) leaves the link as it was; anything else
  // is a trap: the link stops as for a socket event, and the caller gets it too.
  function act(fn) {
    try {
      perform(fn(nowMs()));
    } catch (err) {
      if (!(err instanceof RelayError) && !halted) fail(err);
      throw err;
    }
  }
  return {
    /** The application's `outbound`: `id` is its own correlation id. */
    outbound: (id, action, platform) => act((t) => conn.outbound(t, id, action, platform)),
    interrupt: (sessionKey, reason) => act((t) => conn.interrupt(t, sessionKey, reason)),
    ack: (bufferId) => act((t) => conn.ack(t, bufferId)),
    nack: (bufferId) => act((t) => conn.nack(t, bufferId)),
    holdRedial: () => act((t) => conn.holdRedial(t)),
    releaseRedial: () => act((t) => conn.releaseRedial(t)),
    goingIdle: () => act((t) => conn.goingIdle(t)),
    /** An APP-PROTOCOL command (JSON text or value); throws RelayError when rejected. */
    command: (command) => act((t) => conn.command(t, command)),
    stats: () => conn.stats(),
    descriptors: () => conn.descriptors(),
    /** Stop reading the socket (backpressure); timers and writes go on. */
    pause() {
      paused = true;
      ws?.pause();
    },
    resume() {
      paused = false;
      ws?.resume();
    },
    stop,
  };
}
