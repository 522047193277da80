// A small Node driver for one relay `Connection` (the WIT resource `link`): it
// does the I/O and nothing else. It dials when a `dial` effect says so (that URL,
// that Authorization), reports `open` / `closed`, writes frames, sends a ping on
// `send-ping` and reports its pong, closes the socket on `close-link`, keeps ONE
// timer at the component's `pollTimeout()`, and hands the emitted events on.
// Every state, deadline, retry and keepalive decision is the component's.
// After a guest trap it rebuilds a fresh instance and hands it what the failed
// one owed (`recover`), as the Rust host does.
//
// `connect()` (client.mjs, the package's main entry) builds its Link on this;
// `relay-wasm/driver` exports it for callback-style use.
import WebSocket from 'ws';

import { RelayError } from './relay.mjs';

// Monotonic milliseconds for the component's clock (never decreases).
const nowMs = () => Math.floor(performance.now());

// Node's timers take at most 2^31-1 ms; a later deadline is re-asked on waking.
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Guest failures survived within `windowMs` (the Rust host's default budget). */
export const DEFAULT_RESTART_BUDGET = Object.freeze({ maxRestarts: 5, windowMs: 60000 });

/** The Rust host's restart delay: 500 ms doubling per recent failure, at most 10 s. */
const restartDelayMs = (recent) => Math.min(500 * 2 ** Math.min(recent - 1, 5), 10000);

// A WebSocket close reason is at most 123 bytes (RFC 6455 §5.5).
function closeReason(reason) {
  let r = String(reason ?? '');
  while (Buffer.byteLength(r) > 123) r = Array.from(r).slice(0, -1).join('');
  return r;
}

// The first line of a trap's message (wasm traps carry a long stack).
const summary = (err) => String(err?.message ?? err).split('\n')[0].slice(0, 200);

/**
 * @param {object} o
 * @param {object} o.relay      an instance from `await load()`
 * @param {string} o.base       the configured connector base URL (http(s):// or ws(s)://)
 * @param {object} o.config     Connection config (see relay.mjs); `url` is `base`
 * @param {(json: string, event: object) => void} [o.onEvent]  every APP-PROTOCOL
 *   event the component emits, as JSON text, and the emit effect (typed facts:
 *   kind, state, id, bufferId, acked)
 * @param {(level: string, message: string) => void} [o.onLog]
 * @param {(reason: string, cause?: unknown) => void} [o.onEnd]  once, when the
 *   link has ended: after the component's `state stopped` (its reason), or when
 *   a guest instance failed and no replacement could be built (with the error)
 * @param {(err: unknown) => void} [o.onError]  a callback above threw (default:
 *   rethrown from a microtask, i.e. an uncaught exception)
 * @param {number} [o.dialTimeoutMs]  TCP + TLS + upgrade deadline of one dial
 * @param {{maxRestarts: number, windowMs: number}} [o.restartBudget]  guest
 *   failures survived within windowMs; one more ends the link
 */
export function connectWith({
  relay,
  base,
  config,
  onEvent = () => {},
  onLog = () => {},
  onEnd = () => {},
  onError = (err) => {
    throw err;
  },
  dialTimeoutMs = 30000,
  restartBudget = DEFAULT_RESTART_BUDGET,
}) {
  const linkConfig = { ...config, url: base };
  let conn = relay.Connection.create(linkConfig);
  // Rebuilt instances so far: each varies a configured seed, as the Rust host
  // does, so a replacement never reuses its predecessor's request ids.
  let generation = 0;
  let settings = conn.settings();
  if (!/^wss?:\/\//.test(settings.dialUrl)) {
    conn.free();
    throw new Error(
      `dial URL ${JSON.stringify(settings.dialUrl)} is not ws:// or wss:// (set the base URL to http(s):// or ws(s)://)`,
    );
  }

  let ws = null; // the socket of the last dial (connecting, open or closing)
  const sentCodes = new WeakMap(); // socket → the code of our close-link
  let timer = null; // the one timer, at conn.pollTimeout()
  let paused = false; // pause(): the socket is not read
  let ended = false; // onEnd was called: nothing more happens
  let shuttingDown = null; // {graceMs, reason} once shutdown() was called
  const stopWaiters = []; // shutdown() promises

  // What a replacement instance is owed (recover): kept from the calls the
  // application made and the typed facts of the events, never from the lines.
  const owed = []; // [{id, action}] outbound calls not yet answered, in order
  const inFlight = new Set(); // buffer ids delivered, neither acked nor nacked
  let idleOwed = false; // a going_idle waits for its idle
  let revoked = false; // the component said `state revoked`
  const failures = []; // times of recent guest failures

  // ---- calling the component -------------------------------------------------

  // The application's callbacks: an exception there is the application's and
  // must not be taken for a guest failure.
  function callback(fn, ...args) {
    try {
      fn(...args);
    } catch (err) {
      queueMicrotask(() => onError(err));
    }
  }

  // Socket and timer events call into the component; an exception there is a
  // trap: the instance is dead and is replaced.
  const guard =
    (fn) =>
    (...args) => {
      if (ended) return;
      try {
        fn(...args);
      } catch (err) {
        recover(err);
      }
    };

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
          const owner = conn;
          socket.send(e.text, guard((err) => {
            if (err && ws === socket && conn === owner) perform(conn.writeFailed(nowMs(), number, err.message));
          }));
          break;
        }
        case 'send-ping':
          if (ws?.readyState === WebSocket.OPEN) ws.ping();
          break;
        case 'emit':
          emitted(e);
          break;
        case 'close-link':
          callback(onLog, 'info', `closing the socket (${e.code}): ${e.reason}`);
          closeSocket(e.code, e.reason);
          break;
        case 'dial':
          dial(e.url, e.authorization);
          break;
        case 'log':
          callback(onLog, e.level, e.message);
          break;
        default:
          callback(onLog, 'warn', `unknown effect ${e.type}`);
      }
    }
    arm();
  }

  function emitted(e) {
    switch (e.kind) {
      case 'outbound_result': {
        const i = owed.findIndex((o) => o.id === e.id);
        if (i >= 0) owed.splice(i, 1);
        break;
      }
      case 'message':
        if (e.bufferId !== undefined) inFlight.add(e.bufferId);
        break;
      case 'idle':
        idleOwed = false;
        break;
      case 'state':
        if (e.state === 'revoked') revoked = true;
        break;
      default:
    }
    callback(onEvent, e.json, e);
    if (e.kind === 'state' && e.state === 'stopped') finish(JSON.parse(e.json).reason ?? 'shutdown');
  }

  // The one timer: at the component's next deadline, if it has one.
  function arm() {
    clearTimeout(timer);
    timer = null;
    if (ended) return;
    const at = conn.pollTimeout();
    if (at === undefined) return;
    const owner = conn;
    timer = setTimeout(guard(() => {
      timer = null;
      if (conn !== owner) return;
      // Node may fire a millisecond early; the component's deadline is exact.
      const now = Math.max(nowMs(), at);
      if (now - nowMs() > 1) return arm(); // a deadline past MAX_TIMER_MS: not yet
      perform(conn.handleTimeout(now));
    }), Math.min(MAX_TIMER_MS, Math.max(0, at - nowMs())));
  }

  // ---- the socket --------------------------------------------------------------

  function dial(url, authorization) {
    if (ended) return;
    abandon(ws);
    const owner = conn;
    let socket;
    try {
      socket = new WebSocket(url, {
        headers: authorization ? { Authorization: authorization } : {},
        maxPayload: settings.maxMessageBytes,
        handshakeTimeout: dialTimeoutMs,
        perMessageDeflate: false,
        // Happy Eyeballs (RFC 8305): the next address after 250 ms, so a
        // blackholed first one (an IPv6 route that drops SYNs) costs 250 ms, not
        // the whole timeout; the Rust host and the Python driver do the same.
        autoSelectFamily: true,
        autoSelectFamilyAttemptTimeout: 250,
      });
    } catch (err) {
      // Not dialable (a bad URL): the dial failed; reported after this batch.
      setImmediate(guard(() => {
        if (conn === owner) perform(conn.closed(nowMs(), undefined, err.message));
      }));
      return;
    }
    ws = socket;
    const mine = () => ws === socket && conn === owner && !ended;
    let failure = '';
    socket.on('open', guard(() => {
      if (!mine()) return;
      if (paused) socket.pause();
      perform(conn.open(nowMs()));
    }));
    socket.on('pong', guard(() => {
      if (mine()) perform(conn.pong(nowMs()));
    }));
    socket.on('message', guard((data, isBinary) => {
      if (!mine()) return;
      // A text message is handed over as the bytes ws received (ws has checked
      // they are UTF-8; receiveText checks again): decoding them into a JS string
      // only for receiveText to encode it back cost ~8 µs a 2 KB non-ASCII frame.
      perform(isBinary ? conn.receiveBinary(nowMs(), data) : conn.receiveText(nowMs(), data));
    }));
    // `error` is always followed by `close`; keep its text as the close reason.
    socket.on('error', (err) => {
      failure = err.message;
    });
    socket.on('close', guard((code, reason) => {
      if (!mine()) return;
      ws = null;
      // 1005 (no code in the close frame) and 1006 (no close frame): the peer
      // sent none; then it is the code we sent, if we closed.
      const wire = code === 1005 || code === 1006 ? sentCodes.get(socket) : code;
      perform(conn.closed(nowMs(), wire, reason.toString('utf8') || failure));
    }));
  }

  // A close frame, and the TCP stream dropped if the peer does not answer it
  // within the component's close-wait-ms (ws alone waits 30 s); either way
  // `close` reports `closed`.
  function closeSocket(code, reason) {
    const socket = ws;
    if (!socket) return;
    sentCodes.set(socket, code);
    if (socket.readyState === WebSocket.CONNECTING) {
      socket.terminate();
      return;
    }
    if (socket.readyState !== WebSocket.OPEN) return; // closing already
    socket.close(code, closeReason(reason));
    const drop = setTimeout(() => socket.terminate(), settings.closeWaitMs);
    socket.once('close', () => clearTimeout(drop));
  }

  // A socket nobody reports on any more (a dial abandoned, a failed instance's).
  function abandon(socket, code = 1000, reason = '') {
    if (!socket) return;
    if (ws === socket) ws = null;
    if (socket.readyState === WebSocket.CONNECTING || socket.readyState === WebSocket.CLOSING) {
      socket.terminate();
    } else if (socket.readyState === WebSocket.OPEN) {
      socket.close(code, closeReason(reason));
      const drop = setTimeout(() => socket.terminate(), settings.closeWaitMs);
      socket.once('close', () => clearTimeout(drop));
    }
  }

  // ---- the end -------------------------------------------------------------------

  function finish(reason, cause) {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    timer = null;
    // `stopped` with a dial in progress: that dial is abandoned.
    abandon(ws);
    callback(onEnd, reason, cause);
    for (const wake of stopWaiters.splice(0)) wake();
  }

  /** The guest trapped: a fresh instance takes over what the dead one owed. */
  function recover(err) {
    for (;;) {
      const what = summary(err);
      callback(onLog, 'error', `guest instance failed: ${what}`);
      // The dead instance is not called again; its socket and timer go.
      clearTimeout(timer);
      timer = null;
      abandon(ws, 1011, 'gateway restarting');
      const now = nowMs();
      failures.push(now);
      while (failures.length && now - failures[0] > restartBudget.windowMs) failures.shift();
      const recent = failures.length;
      const exhausted = recent > restartBudget.maxRestarts;
      const delay = restartDelayMs(recent);
      let reason;
      if (exhausted) {
        reason = `guest instance failed ${recent} times within ${Math.round(restartBudget.windowMs / 1000)} s (last: ${what}); restart budget exhausted`;
      } else if (revoked) {
        reason = `guest instance failed (${what}); rebuilt it; credentials stay revoked`;
      } else {
        reason = `guest instance failed (${what}); rebuilt it, dialing again`;
      }
      try {
        relay = relay.instantiate();
        generation += 1;
        conn = relay.Connection.create(rebuiltConfig(linkConfig, generation));
        settings = conn.settings();
      } catch (buildErr) {
        const why = `guest instance failed (${what}); cannot rebuild it: ${summary(buildErr)}`;
        callback(onLog, 'error', why);
        return finish(why, buildErr);
      }
      try {
        perform(conn.recover(now, {
          owed: owed.slice(),
          inFlight: [...inFlight],
          idleOwed,
          dialAfterMs: delay,
          revoked,
          reason,
        }));
        // The owed answers were given: nothing is owed to the new instance's
        // application any more but what it is asked from now on.
        owed.length = 0;
        idleOwed = false;
        // A link that was ending, or is out of restarts, ends now (the component
        // answers what still waits and says `stopped`).
        if (exhausted) perform(conn.shutdown(now, 0, reason));
        else if (shuttingDown) perform(conn.shutdown(now, 0, shuttingDown.reason));
        return undefined;
      } catch (again) {
        if (exhausted) {
          callback(onLog, 'error', `${reason}; the replacement failed too: ${summary(again)}`);
          return finish(reason, again);
        }
        err = again; // the replacement failed too: within the budget, once more
      }
    }
  }

  // ---- the application's calls ---------------------------------------------------

  // A RelayError (a refused command) leaves the link as it was and is thrown,
  // and so is a TypeError (an argument the glue refused before the guest ran);
  // a trap replaces the instance, and what the call was owed is answered by it.
  function act(fn) {
    if (ended) return undefined;
    try {
      return fn(nowMs());
    } catch (err) {
      if (err instanceof RelayError || err instanceof TypeError) throw err;
      recover(err);
      return undefined;
    }
  }
  const run = (fn) => act((t) => perform(fn(t)));

  // The bookkeeping of a command given as JSON, as the component will read it
  // (undone when the component refuses the command).
  function noteCommand(command) {
    let c = command;
    if (typeof c === 'string') {
      try {
        c = JSON.parse(c);
      } catch {
        return () => {};
      }
    }
    if (!c || typeof c !== 'object') return () => {};
    switch (c.op) {
      case 'outbound': {
        if (typeof c.id !== 'string') return () => {};
        const entry = { id: c.id, action: c.action };
        owed.push(entry);
        return () => {
          const i = owed.indexOf(entry);
          if (i >= 0) owed.splice(i, 1);
        };
      }
      case 'ack':
      case 'nack': {
        const id = c.buffer_id == null ? '' : String(c.buffer_id);
        const had = inFlight.delete(id);
        return () => had && inFlight.add(id);
      }
      case 'going_idle': {
        const was = idleOwed;
        idleOwed = true;
        return () => {
          idleOwed = was;
        };
      }
      default:
        return () => {};
    }
  }

  function shutdown(graceMs = 0, reason) {
    if (ended) return Promise.resolve();
    const done = new Promise((resolve) => stopWaiters.push(resolve));
    if (!shuttingDown) {
      shuttingDown = { graceMs, reason };
      run((t) => conn.shutdown(t, graceMs, reason));
    }
    return done;
  }

  // Begin: `state connecting` and the first dial.
  run((t) => conn.start(t));

  return {
    /** The application's `outbound`: `id` is its own correlation id. */
    outbound(id, action, platform) {
      const entry = { id, action };
      owed.push(entry);
      try {
        run((t) => conn.outbound(t, id, action, platform));
      } catch (err) {
        // Refused before the guest ran (a TypeError): nothing is owed.
        const i = owed.indexOf(entry);
        if (i >= 0) owed.splice(i, 1);
        throw err;
      }
    },
    interrupt: (sessionKey, reason) => run((t) => conn.interrupt(t, sessionKey, reason)),
    ack(bufferId) {
      inFlight.delete(bufferId);
      run((t) => conn.ack(t, bufferId));
    },
    nack(bufferId) {
      inFlight.delete(bufferId);
      run((t) => conn.nack(t, bufferId));
    },
    holdRedial: () => run((t) => conn.holdRedial(t)),
    releaseRedial: () => run((t) => conn.releaseRedial(t)),
    goingIdle() {
      idleOwed = true;
      run((t) => conn.goingIdle(t));
    },
    /** An APP-PROTOCOL command (JSON text or value); throws RelayError when rejected. */
    command(command) {
      const undo = noteCommand(command);
      try {
        run((t) => conn.command(t, command));
      } catch (err) {
        undo();
        throw err;
      }
    },
    stats: () => act(() => conn.stats()) ?? conn.stats(),
    descriptors: () => act(() => conn.descriptors()) ?? conn.descriptors(),
    /** The settings in force (what the socket is configured with). */
    settings: () => settings,
    /** Stop reading the socket (backpressure); timers and writes go on. */
    pause() {
      paused = true;
      ws?.pause();
    },
    resume() {
      paused = false;
      ws?.resume();
    },
    /** Whether the link has ended (after `state stopped`). */
    get ended() {
      return ended;
    },
    shutdown,
    /** shutdown(0): no going_idle. */
    stop: () => shutdown(0),
  };
}

/** The config of the `generation`-th rebuilt instance: a configured seed plus
 * generation × 0x9E3779B97F4A7C15 (mod 2^64), as relay-host's instance.rs; an
 * unset seed stays unset (random per instance). */
function rebuiltConfig(config, generation) {
  if (config.seed === undefined || config.seed === null) return config;
  const seed = BigInt.asUintN(64, BigInt(config.seed) + BigInt(generation) * 0x9E3779B97F4A7C15n);
  return { ...config, seed };
}
