// The relay component from JavaScript: a thin wrapper over the jco glue in gen/
// (`npm run build`). Every decision stays in the component; this file converts
// types (BigInt, variants, errors) and nothing else. `connect()` (client.mjs)
// runs a Connection over a real socket (driver.mjs, with the `ws` package).
//
// Importing this module does no work: the glue is imported, the core modules
// compiled and an instance made only by `await load()` (compilation once per
// process, an instance per call).
//
// Shapes, as jco renders the WIT (see gen/interfaces/*.d.ts):
//   - `json` parameters and results are JSON *text*; a non-string argument is
//     JSON.stringify'd for convenience (pass text when number spelling matters).
//   - codec `decode` returns the WIT variant `{tag, val}` (`tag` in kebab-case,
//     options as `undefined`); `encode` takes one.
//   - a WIT `err` is thrown as RelayError {kind, message}; any other exception is a
//     trap and the instance is dead: `load()` a new one.
//   - session effects become plain objects `{type, ...}` with Number times/ids
//     (ids are counters and times are milliseconds, far below 2^53).
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

/** WIT effect variant → plain object. */
function effect({ tag, val }) {
  switch (tag) {
    case 'send': return { type: 'send', text: val.line, number: Number(val.number) };
    case 'emit': return { type: 'emit', json: utf8.decode(val) };
    case 'set-timer': return { type: 'set-timer', id: Number(val.id), atMs: Number(val.atMs) };
    case 'cancel-timer': return { type: 'cancel-timer', id: Number(val) };
    case 'close-link': return { type: 'close-link', reason: val };
    case 'reconnect': return { type: 'reconnect', delayMs: Number(val) };
    case 'redial': return { type: 'redial' };
    case 'give-up': return { type: 'give-up', reason: val };
    case 'log': return { type: 'log', level: val.level, message: val.message };
    default: return { type: tag, val };
  }
}
const effects = (list) => list.map(effect);

/**
 * A fresh, isolated instance of the component (its own memory): one per tenant,
 * or a replacement after a trap. The first call in a process also imports the
 * glue and compiles the core modules; later ones only instantiate (~0.5 ms).
 * @param {{stderr?: (text: string) => void}} [options] stderr receives the
 *   guest's panic messages (dropped by default).
 */
export async function load(options = {}) {
  const root = instantiateQuietly(await prepare(), wasiImports(options.stderr));
  const { codec, session } = root;

  /** One link to the connector across all its re-dials (WIT `connection`). */
  class Connection {
    #inner;
    constructor(inner) {
      this.#inner = inner;
    }

    /**
     * @param {object} config camelCase WIT `config`; omitted fields take the
     *   protocol defaults (timeouts 30000/30000/10000 ms, 1 MiB lines, backoff 1 s
     *   doubling to 30 s with jitter over [d/2, d] (50 %), a 60 s stable
     *   connection, token TTL 300 s, a random seed, an empty prompt nonce).
     *   identities: [{platform, botId, commandManifest?}] (manifest: JSON text or value).
     */
    static create(config) {
      const c = {
        identities: (config.identities ?? []).map((i) => ({
          platform: i.platform,
          botId: i.botId,
          commandManifest: i.commandManifest === undefined ? undefined : text(i.commandManifest),
        })),
        handshakeTimeoutMs: u64(config.handshakeTimeoutMs ?? 30000),
        outboundTimeoutMs: u64(config.outboundTimeoutMs ?? 30000),
        goingIdleTimeoutMs: u64(config.goingIdleTimeoutMs ?? 10000),
        maxLineBytes: config.maxLineBytes ?? 1 << 20,
        promptNonce: config.promptNonce ?? '',
        // Request ids derive from the seed: a random default keeps them from
        // repeating across process restarts; pass one for reproducible runs.
        seed: u64(config.seed ?? webcrypto.getRandomValues(new BigUint64Array(1))[0]),
        reconnectJitterPercent: config.reconnectJitterPercent ?? 50,
        backoffBaseMs: u64(config.backoffBaseMs ?? 1000),
        backoffMaxMs: u64(config.backoffMaxMs ?? 30000),
        stableConnectionMs: u64(config.stableConnectionMs ?? 60000),
        gatewayId: config.gatewayId ?? undefined,
        secret: config.secret ?? undefined,
        tokenTtlSeconds: u64(config.tokenTtlSeconds ?? 300),
      };
      return guarded(() => new Connection(session.Connection.create(c)))();
    }

    /** The `Authorization` header value for the next dial, or undefined. */
    authorization(nowUnixS = Math.floor(Date.now() / 1000)) {
      return this.#inner.authorization(u64(nowUnixS));
    }
    open(nowMs) {
      return effects(this.#inner.open(u64(nowMs)));
    }
    receiveText(nowMs, text) {
      return effects(this.#inner.receiveText(u64(nowMs), text));
    }
    receiveBinary(nowMs, bytes) {
      return effects(this.#inner.receiveBinary(u64(nowMs), bytes));
    }
    timerFired(nowMs, id) {
      return effects(this.#inner.timerFired(u64(nowMs), u64(id)));
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
    /** Park re-dialling for at most 60 s (a brokered suspend is in flight). */
    holdRedial(nowMs) {
      return effects(this.#inner.holdRedial(u64(nowMs)));
    }
    releaseRedial(nowMs) {
      return effects(this.#inner.releaseRedial(u64(nowMs)));
    }
    /** Frame `number` (of a `send` effect) and those after it were not written. */
    writeFailed(nowMs, number, reason) {
      return effects(this.#inner.writeFailed(u64(nowMs), u64(number), reason));
    }
    /** End the link on purpose: waiting requests get `relay send failed: relay
     *  transport closed`, later ones `relay transport closed`. */
    stop(nowMs) {
      return effects(this.#inner.stop(u64(nowMs)));
    }
    goingIdle(nowMs) {
      return effects(this.#inner.goingIdle(u64(nowMs)));
    }
    /** An APP-PROTOCOL command (JSON text or value, without `tenant`); throws RelayError. */
    command(nowMs, command) {
      try {
        return effects(this.#inner.command(u64(nowMs), text(command)));
      } catch (e) {
        return rethrow(e);
      }
    }
    /** The socket ended; `code` null/undefined when it dropped without one. */
    closed(nowMs, code, reason = '') {
      return effects(this.#inner.closed(u64(nowMs), code ?? undefined, reason));
    }
    /** {frames_in, frames_out, pending_outbound, state, connected, consecutive_failures, platforms} */
    stats() {
      return JSON.parse(this.#inner.stats());
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
  };
}
