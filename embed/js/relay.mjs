// The relay component from JavaScript: a thin wrapper over the jco glue in gen/
// (`npm run build`). Every decision stays in the component; this file converts
// types (BigInt, variants, errors) and nothing else. `connect()` (client.mjs)
// runs a Connection over a real socket (driver.mjs, with the `ws` package).
//
// Importing this module does no work: the glue is imported, the core modules
// compiled and an instance made only by `await load()` (compilation once per
// process, an instance per call).
//
// Shapes, as jco renders the WIT (contract hermes:relay@0.2.0, see
// gen/interfaces/*.d.ts):
//   - `json` parameters are JSON *text*; a non-string argument is
//     JSON.stringify'd for convenience (pass text when number spelling matters).
//   - codec `decode` returns the WIT variant `{tag, val}` (`tag` in kebab-case,
//     options as `undefined`); `encode` takes one.
//   - a WIT `err` is thrown as RelayError {kind, message}; any other exception is a
//     trap and the instance is dead: `load()` (or `instantiate()`) a new one.
//   - session effects become plain objects `{type, ...}` with Number times/ids
//     (ids are counters and times are milliseconds, far below 2^53); event kinds
//     and link states are spelled as in the APP-PROTOCOL lines (`outbound_result`,
//     `handshake_failed`).
import { readdir, readFile } from 'node:fs/promises';
import { webcrypto } from 'node:crypto';

/** A typed rejection from the component (WIT `decode-error`). */
export class RelayError extends Error {
  constructor({ kind, message }) {
    super(message);
    this.name = 'RelayError';
    /** 'malformed-json' | 'not-object' | 'missing-field' | 'invalid-field' | 'too-large' | 'unknown-type' */
    this.kind = kind;
  }
}

// The glue and its core modules, once per process (on the first load()): the
// modules are compiled asynchronously, each load() instantiates them anew.
let prepared = null;
function prepare() {
  prepared ??= (async () => {
    let instantiate;
    try {
      ({ instantiate } = await import('./gen/relay.js'));
    } catch (e) {
      if (e?.code !== 'ERR_MODULE_NOT_FOUND') throw e;
      throw new Error('relay-wasm: gen/ is missing: run `npm run build` in embed/js (it transpiles the component)', { cause: e });
    }
    const dir = new URL('./gen/', import.meta.url);
    const names = (await readdir(dir)).filter((n) => n.endsWith('.wasm'));
    const modules = new Map(
      await Promise.all(names.map(async (n) => [n, await WebAssembly.compile(await readFile(new URL(n, dir)))])),
    );
    const coreModule = (name) => {
      const m = modules.get(name);
      if (!m) throw new Error(`relay-wasm: the glue asked for gen/${name}, which is not there`);
      return m;
    };
    return { instantiate, coreModule };
  })();
  // A failed preparation (no gen/ yet) is tried again by the next load().
  prepared.catch(() => {
    prepared = null;
  });
  return prepared;
}

// The glue probes `WebAssembly.promising` (JSPI, absent from Node 20) nine times per
// instantiation and catches the TypeError; V8 renders each "is not a function"
// message by re-parsing the 8,000-line function around the call, which made one
// instantiation cost ~20 ms instead of ~0.5 ms. The probed values serve async
// exports only, which this world has none of, so an identity stand-in is installed
// for the duration of the (synchronous) instantiation and removed right after:
// no other code can observe it.
function instantiateQuietly({ instantiate, coreModule }, imports) {
  const saved = Object.getOwnPropertyDescriptor(WebAssembly, 'promising');
  if (typeof saved?.value === 'function') return instantiate(coreModule, imports);
  WebAssembly.promising = (fn) => fn;
  try {
    return instantiate(coreModule, imports);
  } finally {
    if (saved) Object.defineProperty(WebAssembly, 'promising', saved);
    else delete WebAssembly.promising;
  }
}

// The guest's WASI imports. Rust std links cli/io/clocks/random even though the
// relay uses none of them, so every import is present but inert: no environment,
// empty stdin, stdout dropped, stderr (panic messages) to an optional callback, no
// clock (a sleep would return at once), no terminal. The one real input is the
// insecure seed of std's HashMap keys, random so crafted ids cannot collide.
// (The preview2-shim defaults would hand the guest the process's env and stdio.)
function wasiImports(onStderr) {
  class Pollable {
    ready() { return true; }
    block() {}
  }
  class IoError {
    toDebugString() { return 'io error'; }
  }
  class InputStream {}
  class OutputStream {
    constructor(sink) { this.sink = sink; }
    checkWrite() { return 65536n; }
    write(bytes) { this.sink?.(bytes); }
    blockingWriteAndFlush(bytes) { this.sink?.(bytes); }
    flush() {}
    blockingFlush() {}
    subscribe() { return new Pollable(); }
  }
  class TerminalInput {}
  class TerminalOutput {}
  const decoder = new TextDecoder();
  const stdout = new OutputStream(null);
  const stderr = new OutputStream(onStderr ? (b) => onStderr(decoder.decode(b, { stream: true })) : null);
  const stdin = new InputStream();
  const seed = webcrypto.getRandomValues(new BigUint64Array(2));
  const ifaces = {
    'wasi:cli/environment': { getEnvironment: () => [], getArguments: () => [], initialCwd: () => undefined },
    'wasi:cli/exit': {
      exit(status) {
        throw new Error(`guest called exit (${status.tag})`);
      },
    },
    'wasi:cli/stdin': { getStdin: () => stdin },
    'wasi:cli/stdout': { getStdout: () => stdout },
    'wasi:cli/stderr': { getStderr: () => stderr },
    'wasi:cli/terminal-input': { TerminalInput },
    'wasi:cli/terminal-output': { TerminalOutput },
    'wasi:cli/terminal-stdin': { getTerminalStdin: () => undefined },
    'wasi:cli/terminal-stdout': { getTerminalStdout: () => undefined },
    'wasi:cli/terminal-stderr': { getTerminalStderr: () => undefined },
    'wasi:clocks/monotonic-clock': {
      now: () => 0n,
      resolution: () => 1n,
      subscribeDuration: () => new Pollable(),
      subscribeInstant: () => new Pollable(),
    },
    'wasi:io/error': { Error: IoError },
    'wasi:io/poll': { Pollable, poll: (list) => Uint32Array.from(list.keys()) },
    'wasi:io/streams': { InputStream, OutputStream },
    'wasi:random/insecure-seed': { insecureSeed: () => [seed[0], seed[1]] },
  };
  // The glue looks imports up without the @version suffix (its .d.ts lists them
  // with it); both spellings point to the same object.
  const imports = {};
  for (const [name, iface] of Object.entries(ifaces)) {
    imports[name] = iface;
    imports[`${name}@0.2.9`] = iface;
  }
  return imports;
}

const text = (v) => (typeof v === 'string' ? v : JSON.stringify(v));
const u64 = (v) => BigInt(v);
const encoder = new TextEncoder();

// ComponentError (not exported by the glue) carries the WIT err as `payload`.
function rethrow(e) {
  if (e && Object.hasOwn(e, 'payload') && e.payload && typeof e.payload.kind === 'string') {
    throw new RelayError(e.payload);
  }
  throw e;
}
function guarded(fn) {
  return (...args) => {
    try {
      return fn(...args);
    } catch (e) {
      return rethrow(e);
    }
  };
}

// Emitted events cross as UTF-8 bytes (`json-bytes` in the WIT); `fatal` makes
// this the one validation an untrusted component's output gets.
const utf8 = new TextDecoder('utf-8', { fatal: true });

// WIT enum (kebab-case) → the APP-PROTOCOL spelling the event lines use.
const snake = (v) => (v === undefined ? undefined : v.replaceAll('-', '_'));

/** WIT effect variant → plain object. */
function effect({ tag, val }) {
  switch (tag) {
    case 'send': return { type: 'send', text: val.line, number: Number(val.number) };
    case 'send-ping': return { type: 'send-ping' };
    case 'emit': return {
      type: 'emit',
      kind: snake(val.kind),
      state: snake(val.state),
      id: val.id,
      bufferId: val.bufferId,
      acked: val.acked,
      json: utf8.decode(val.line),
    };
    case 'close-link': return { type: 'close-link', code: val.code, reason: val.reason };
    case 'dial': return { type: 'dial', url: val.url, authorization: val.authorization };
    case 'log': return { type: 'log', level: val.level, message: val.message };
    default: return { type: tag, val };
  }
}
const effects = (list) => list.map(effect);

// The `options` record of the WIT config: every field optional, `undefined`
// (WIT `none`) taking the component's default. [name, conversion]
const u32 = (v) => Number(v);
const OPTIONS = [
  ['handshakeTimeoutMs', u64],
  ['outboundTimeoutMs', u64],
  ['goingIdleTimeoutMs', u64],
  ['maxLineBytes', u32],
  ['promptNonce', String],
  ['reconnectJitterPercent', u32],
  ['backoffBaseMs', u64],
  ['backoffMaxMs', u64],
  ['stableConnectionMs', u64],
  ['tokenTtlSeconds', u64],
  ['pingIntervalMs', u64],
  ['pongTimeoutMs', u64],
  ['deadLinkCloseCode', u32],
  ['maxMessageBytes', u32],
  ['closeWaitMs', u64],
  ['caps', (c) => {
    const cap = (v) => (v === undefined || v === null ? undefined : u32(v));
    return {
      pendingRequests: cap(c.pendingRequests),
      bufferIds: cap(c.bufferIds),
      prompts: cap(c.prompts),
      answeredPrompts: cap(c.answeredPrompts),
      egressChats: cap(c.egressChats),
      messageIds: cap(c.messageIds),
    };
  }],
];

/** camelCase config (see index.d.ts `Config`) → the WIT `config` record. */
function witConfig(config) {
  const options = {};
  for (const [name, convert] of OPTIONS) {
    const v = config[name];
    options[name] = v === undefined || v === null ? undefined : convert(v);
  }
  return {
    identities: (config.identities ?? []).map((i) => ({
      platform: i.platform,
      botId: i.botId,
      commandManifest: i.commandManifest === undefined || i.commandManifest === null ? undefined : text(i.commandManifest),
    })),
    url: config.url ?? '',
    tenant: config.tenant ?? undefined,
    // Request ids and backoff jitter derive from the seed, and the component has
    // no randomness: random bits keep ids from repeating across process
    // restarts; pass one for reproducible runs.
    seed: u64(config.seed ?? webcrypto.getRandomValues(new BigUint64Array(1))[0]),
    // Upgrade tokens expire in wall time; the component is given monotonic
    // times, so it is told the difference (for the clock driver.mjs passes:
    // whole milliseconds of performance.now()).
    unixOffsetMs: u64(config.unixOffsetMs ?? Date.now() - Math.floor(performance.now())),
    gatewayId: config.gatewayId ?? undefined,
    secret: config.secret ?? undefined,
    options,
  };
}

/** WIT `stats` → the counters under their `status` names. */
function stats(s, descriptors) {
  return {
    state: snake(s.state),
    connected: s.connected,
    frames_in: Number(s.framesIn),
    frames_out: Number(s.framesOut),
    pending_outbound: s.pendingOutbound,
    consecutive_failures: s.consecutiveFailures,
    platforms: Object.keys(descriptors),
  };
}

/** One instance from the prepared glue: synchronous (the modules are compiled). */
function instance(ready, options) {
  const root = instantiateQuietly(ready, wasiImports(options.stderr));
  const { codec, session } = root;

  /** One link to the connector across all its re-dials (the WIT resource `link`). */
  class Connection {
    #inner;
    constructor(inner) {
      this.#inner = inner;
    }

    /**
     * @param {object} config camelCase WIT `config`, its `options` fields given
     *   flat: identities [{platform, botId, commandManifest?}] (manifest: JSON
     *   text or value), url (the connector base URL, '' when nothing is dialled),
     *   tenant, seed (default: random), unixOffsetMs (default: for
     *   performance.now()), gatewayId, secret, and each optional setting
     *   (handshakeTimeoutMs, ..., caps); an omitted setting takes the
     *   component's default. Throws RelayError when the component refuses it.
     */
    static create(config) {
      const c = witConfig(config);
      return guarded(() => new Connection(session.Link.create(c)))();
    }

    /** The settings in force: {dialUrl, maxMessageBytes, closeWaitMs,
     *  pingIntervalMs, pongTimeoutMs, summary (an object, no secrets)}. */
    settings() {
      const s = this.#inner.settings();
      return {
        dialUrl: s.dialUrl,
        maxMessageBytes: s.maxMessageBytes,
        closeWaitMs: Number(s.closeWaitMs),
        pingIntervalMs: Number(s.pingIntervalMs),
        pongTimeoutMs: Number(s.pongTimeoutMs),
        summary: JSON.parse(s.summary),
      };
    }
    /** Begin: `state connecting` and the first `dial`. */
    start(nowMs) {
      return effects(this.#inner.start(u64(nowMs)));
    }
    /** The socket of the last `dial` is up. */
    open(nowMs) {
      return effects(this.#inner.open(u64(nowMs)));
    }
    receiveText(nowMs, text) {
      return effects(this.#inner.receiveText(u64(nowMs), text));
    }
    receiveBinary(nowMs, bytes) {
      return effects(this.#inner.receiveBinary(u64(nowMs), bytes));
    }
    /** A pong arrived (for a `send-ping`). */
    pong(nowMs) {
      return effects(this.#inner.pong(u64(nowMs)));
    }
    /** When to call handleTimeout next (monotonic ms), or undefined: never. Ask after every call. */
    pollTimeout() {
      const at = this.#inner.pollTimeout();
      return at === undefined ? undefined : Number(at);
    }
    /** Time passed: everything due by `nowMs` happens, in due order. */
    handleTimeout(nowMs) {
      return effects(this.#inner.handleTimeout(u64(nowMs)));
    }
    outbound(nowMs, id, action, platform) {
      return effects(this.#inner.outbound(u64(nowMs), id, text(action), platform ?? undefined));
    }
    interrupt(nowMs, sessionKey, reason) {
      return effects(this.#inner.interrupt(u64(nowMs), sessionKey, reason ?? undefined));
    }
    ack(nowMs, bufferId) {
      return effects(this.#inner.ack(u64(nowMs), bufferId));
    }
    /** The application could not take a delivery: its next arrival is delivered again. */
    nack(nowMs, bufferId) {
      return effects(this.#inner.nack(u64(nowMs), bufferId));
    }
    goingIdle(nowMs) {
      return effects(this.#inner.goingIdle(u64(nowMs)));
    }
    /** Park re-dialling for at most 60 s (a brokered suspend is in flight). */
    holdRedial(nowMs) {
      return effects(this.#inner.holdRedial(u64(nowMs)));
    }
    releaseRedial(nowMs) {
      return effects(this.#inner.releaseRedial(u64(nowMs)));
    }
    /** An APP-PROTOCOL command (JSON text or value, without `tenant`); throws RelayError. */
    command(nowMs, command) {
      try {
        return effects(this.#inner.command(u64(nowMs), text(command)));
      } catch (e) {
        return rethrow(e);
      }
    }
    /** Frame `number` (of a `send` effect) and those after it were not written. */
    writeFailed(nowMs, number, reason) {
      return effects(this.#inner.writeFailed(u64(nowMs), u64(number), reason));
    }
    /** End the link: going_idle (a ready link, at most `graceMs` for its ack), what
     *  waits answered, close 1000, then `state stopped` (reason default "shutdown"). */
    shutdown(nowMs, graceMs = 0, reason) {
      return effects(this.#inner.shutdown(u64(nowMs), u64(graceMs), reason ?? undefined));
    }
    /** The socket ended, or a dial failed; `code` null/undefined when there was none. */
    closed(nowMs, code, reason = '') {
      return effects(this.#inner.closed(u64(nowMs), code ?? undefined, reason));
    }
    /**
     * Take over from a failed instance (once, before `start`): {owed: [{id,
     * action?}], inFlight: [bufferId], idleOwed, dialAfterMs, revoked, reason}.
     */
    recover(nowMs, recovery) {
      return effects(this.#inner.recover(u64(nowMs), {
        owed: (recovery.owed ?? []).map((o) => ({
          id: o.id,
          action: o.action === undefined || o.action === null ? undefined : text(o.action),
        })),
        inFlight: [...(recovery.inFlight ?? [])],
        idleOwed: Boolean(recovery.idleOwed),
        dialAfterMs: u64(recovery.dialAfterMs ?? 0),
        revoked: Boolean(recovery.revoked),
        reason: recovery.reason ?? '',
      }));
    }
    /** {state, connected, frames_in, frames_out, pending_outbound, consecutive_failures, platforms} */
    stats() {
      return stats(this.#inner.stats(), this.descriptors());
    }
    /** {platform: descriptor} of the current connection ({} without one). */
    descriptors() {
      return JSON.parse(this.#inner.descriptors());
    }
    /** Drops the resource now instead of at garbage collection. */
    free() {
      this.#inner[Symbol.dispose ?? Symbol.for('dispose')]?.();
    }
  }

  return {
    /** One line (Uint8Array or string, without its newline) → `{tag, val}` frame. */
    decode: guarded((line, maxLineBytes = 1 << 20) =>
      codec.decode(typeof line === 'string' ? encoder.encode(line) : line, maxLineBytes),
    ),
    /** A `{tag, val}` gateway frame → one line of JSON without the newline. */
    encode: (frame) => codec.encode(frame),
    dialUrl: (base) => codec.dialUrl(base),
    provisionUrl: (base) => codec.provisionUrl(base),
    upgradeToken: (gatewayId, secret, ttlSeconds, nowUnixS) =>
      codec.upgradeToken(gatewayId, secret, u64(ttlSeconds), u64(nowUnixS)),
    sign: (payload, secret) => codec.sign(payload, secret),
    normalizeDescriptor: guarded((json) => codec.normalizeDescriptor(text(json))),
    inboundEvent: guarded((json) => codec.inboundEvent(text(json))),
    passthroughForward: guarded((json) => codec.passthroughForward(text(json))),
    /** JSON text of the MessageEvent, or undefined when the forward is dropped. */
    discordEvent: guarded((json) => codec.discordEvent(text(json))),
    Connection,
    /** Another fresh, isolated instance, synchronously (the replacement after a
     *  trap; same options). */
    instantiate: () => instance(ready, options),
  };
}

/**
 * A fresh, isolated instance of the component (its own memory): one per tenant,
 * or a replacement after a trap. The first call in a process also imports the
 * glue and compiles the core modules; later ones only instantiate (~0.5 ms).
 * @param {{stderr?: (text: string) => void}} [options] stderr receives the
 *   guest's panic messages (dropped by default).
 */
export async function load(options = {}) {
  return instance(await prepare(), options);
}
