// The relay component from JavaScript, on Node's own WebAssembly API: the
// package ships relay.wasm (the component Rust and Python run, byte for byte),
// and this file runs its main core module directly, speaking the standard
// canonical ABI of wit/relay.wit (abi.mjs, the types in wit.mjs; the contract a
// host follows is docs/CORE-ABI.md). Every decision stays in the component; this
// file converts types (BigInt, variants, errors) and nothing else. `connect()`
// (client.mjs) runs a Connection over a real socket (driver.mjs, with `ws`).
//
// Importing this module does no work: relay.wasm is read, its main module found
// and compiled only by the first `await load()` (once per process), and each
// load() makes a fresh instance (its own memory).
//
// Shapes (as the jco-generated glue this replaced gave them, so no caller changed):
//   - `json` parameters are JSON *text*; a non-string argument is
//     JSON.stringify'd for convenience (pass text when number spelling matters).
//   - codec `decode` returns the WIT variant `{tag, val}` (`tag` in kebab-case,
//     options as `undefined`); `encode` takes one.
//   - a WIT `err` is thrown as RelayError {kind, message}; a WebAssembly.RuntimeError
//     is a trap and the instance is dead (every later call throws one too):
//     `load()` (or `instantiate()`) a new one.
//   - session effects become plain objects `{type, ...}` with Number times/ids
//     (ids are counters and times are milliseconds, far below 2^53); event kinds
//     and link states are spelled as in the APP-PROTOCOL lines (`outbound_result`,
//     `handshake_failed`).
import { Buffer, isUtf8 } from 'node:buffer';
import { webcrypto } from 'node:crypto';
import { readFile } from 'node:fs/promises';

import { Context, flattenExport, flattenImport, lift, trap, u64 as u64Type } from './abi.mjs';
import { coreSignatures, mainCoreModule } from './component.mjs';
import * as wit from './wit.mjs';

/** A typed rejection from the component (WIT `decode-error`). */
export class RelayError extends Error {
  constructor({ kind, message }) {
    super(message);
    this.name = 'RelayError';
    /** 'malformed-json' | 'not-object' | 'missing-field' | 'invalid-field' | 'too-large' | 'unknown-type' */
    this.kind = kind;
  }
}

const COMPONENT = new URL('./relay.wasm', import.meta.url);

// Every export this file calls, and every import it provides, with the core
// signature the canonical ABI gives its WIT type.
function expectedSignatures() {
  const exports = new Map();
  for (const [name, params, results] of [...Object.values(wit.codecFunctions), ...Object.values(wit.linkFunctions)]) {
    exports.set(name, flattenExport(params, results));
  }
  exports.set(wit.link.dtor, { params: ['i32'], results: [] });
  exports.set('cabi_realloc', { params: ['i32', 'i32', 'i32', 'i32'], results: ['i32'] });
  const imports = new Map();
  for (const [key, [params, results]] of Object.entries(wit.importTypes)) imports.set(key, flattenImport(params, results));
  return { exports, imports };
}

const same = (a, b) => a.params.join() === b.params.join() && a.results.join() === b.results.join();
const spell = (s) => `(${s.params.join(', ')}) -> (${s.results.join(', ')})`;

/** The main module's signatures against the WIT table; an Error naming the first difference. */
function checkSignatures(moduleBytes) {
  const actual = coreSignatures(moduleBytes);
  const want = expectedSignatures();
  for (const [name, sig] of want.exports) {
    const got = actual.exports.get(name);
    if (!got) throw new Error(`relay-wasm: relay.wasm does not export ${name} (a component built from another WIT?)`);
    if (!same(got, sig)) throw new Error(`relay-wasm: ${name} has the core type ${spell(got)}, wit.mjs gives ${spell(sig)}`);
  }
  for (const [key, got] of actual.imports) {
    const sig = want.imports.get(key);
    const name = key.replace('\0', ' ');
    if (!sig) throw new Error(`relay-wasm: relay.wasm imports ${name}, which this package does not provide`);
    if (!same(got, sig)) throw new Error(`relay-wasm: the import ${name} has the core type ${spell(got)}, expected ${spell(sig)}`);
  }
  // cabi_post_* take the export's one core result; optional per export.
  const posts = new Set();
  for (const [name, sig] of actual.exports) {
    if (!name.startsWith('cabi_post_')) continue;
    const of = actual.exports.get(name.slice('cabi_post_'.length));
    if (of && sig.params.join() === of.results.join() && sig.results.length === 0) posts.add(name);
  }
  return posts;
}

// The compiled main module, once per process (on the first load()).
let prepared = null;
function prepare() {
  prepared ??= (async () => {
    let bytes;
    try {
      bytes = new Uint8Array(await readFile(COMPONENT));
    } catch (e) {
      if (e?.code !== 'ENOENT') throw e;
      throw new Error('relay-wasm: relay.wasm is missing: run `npm run build` in embed/js (it copies the component)', { cause: e });
    }
    const moduleBytes = mainCoreModule(bytes, 'relay-wasm: relay.wasm');
    const posts = checkSignatures(moduleBytes);
    return { module: await WebAssembly.compile(moduleBytes), posts };
  })();
  // A failed preparation (no relay.wasm yet) is tried again by the next load().
  prepared.catch(() => {
    prepared = null;
  });
  return prepared;
}

const text = (v) => (typeof v === 'string' ? v : JSON.stringify(v));
const u64 = (v) => BigInt(v);
const encoder = new TextEncoder();

// WIT enum (kebab-case) → the APP-PROTOCOL spelling the event lines use.
const snake = (v) => (v === undefined ? undefined : v.replaceAll('-', '_'));

/** How much of the guest's stderr a trap's error carries (the guest writes at most 2 KiB per panic). */
const STDERR_KEEP = 8192;

// ---- effects: the hot path ---------------------------------------------------------
//
// list<effect> is lifted by hand (every session call returns one, and a frame's
// cost is mostly here): the same memory layout as abi.mjs computes for the WIT
// type (the offsets are taken from it), straight into the objects the package
// hands out, without the intermediate {tag, val} values. test/abi.test.mjs
// checks it against the generic lifter.

const EFFECT_SIZE = wit.effect.size;
const EFFECT_PAYLOAD = wit.effect.payload;
const [SEND, SEND_PING, EMIT, CLOSE_LINK, DIAL, LOG] = wit.effect.cases.map((_, i) => i);
const OUT = wit.outgoing.offsets;
const EV = wit.event.offsets;
const OPT_U8 = wit.event.fields.find((f) => f.key === 'state').type.payload; // option<enum>: value offset
const OPT_STR = wit.event.fields.find((f) => f.key === 'id').type.payload; // option<string>: value offset
const OPT_BOOL = wit.event.fields.find((f) => f.key === 'acked').type.payload;
const CLOSE = wit.closeRequest.offsets;
const DIALR = wit.dialRequest.offsets;
const EVENT_KINDS = wit.eventKind.cases.map(([n]) => snake(n));
const LINK_STATES = wit.linkState.cases.map(([n]) => snake(n));
const LOG_LEVELS = wit.logLevel.cases.map(([n]) => n);

/**
 * `emit`: an event for the application. `line` is the APP-PROTOCOL line's
 * UTF-8 bytes (validated), `json` the same line as a string, decoded on first
 * use (a sidecar that writes the bytes never pays for the decoding).
 */
class Emit {
  #json;
  constructor(kind, state, id, bufferId, acked, line) {
    this.type = 'emit';
    this.kind = kind;
    this.state = state;
    this.id = id;
    this.bufferId = bufferId;
    this.acked = acked;
    this.line = line;
    this.#json = undefined;
  }

  get json() {
    // Validated as UTF-8 when lifted; a Buffer's own decoder is the fastest here.
    if (this.#json === undefined) this.#json = this.line.utf8Slice(0, this.line.length);
    return this.#json;
  }

  toJSON() {
    const { type, kind, state, id, bufferId, acked } = this;
    return { type, kind, state, id, bufferId, acked, json: this.json };
  }
}

function optString(cx, dv, p) {
  return dv.getUint8(p) === 0 ? undefined : cx.readString(dv.getUint32(p + OPT_STR, true), dv.getUint32(p + OPT_STR + 4, true));
}

function enumAt(dv, p, names) {
  const i = dv.getUint8(p);
  if (i >= names.length) throw trap(`invalid discriminant ${i} (${names.length} cases)`);
  return names[i];
}

/** list<effect> at `ret` (the export's result pointer) → the package's effect objects. */
function liftEffects(cx, ret) {
  let dv = cx.dv;
  cx.bounds(ret, 8);
  const base = dv.getUint32(ret, true);
  const n = dv.getUint32(ret + 4, true);
  cx.bounds(base, n * EFFECT_SIZE);
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    const at = base + i * EFFECT_SIZE;
    const p = at + EFFECT_PAYLOAD;
    dv = cx.dv;
    switch (dv.getUint8(at)) {
      case SEND:
        out[i] = {
          type: 'send',
          text: cx.readString(dv.getUint32(p + OUT.line, true), dv.getUint32(p + OUT.line + 4, true)),
          number: Number(dv.getBigUint64(p + OUT.number, true)),
        };
        break;
      case SEND_PING:
        out[i] = { type: 'send-ping' };
        break;
      case EMIT: {
        const linePtr = dv.getUint32(p + EV.line, true);
        const lineLen = dv.getUint32(p + EV.line + 4, true);
        const line = cx.readBytes(linePtr, lineLen);
        if (!isUtf8(line)) throw trap(`the guest emitted an event line that is not UTF-8 (${lineLen} bytes)`);
        const s = p + EV.state;
        const a = p + EV.acked;
        out[i] = new Emit(
          enumAt(dv, p + EV.kind, EVENT_KINDS),
          dv.getUint8(s) === 0 ? undefined : enumAt(dv, s + OPT_U8, LINK_STATES),
          optString(cx, dv, p + EV.id),
          optString(cx, dv, p + EV.bufferId),
          dv.getUint8(a) === 0 ? undefined : dv.getUint8(a + OPT_BOOL) !== 0,
          line,
        );
        break;
      }
      case CLOSE_LINK:
        out[i] = {
          type: 'close-link',
          code: dv.getUint16(p + CLOSE.code, true),
          reason: cx.readString(dv.getUint32(p + CLOSE.reason, true), dv.getUint32(p + CLOSE.reason + 4, true)),
        };
        break;
      case DIAL:
        out[i] = {
          type: 'dial',
          url: cx.readString(dv.getUint32(p + DIALR.url, true), dv.getUint32(p + DIALR.url + 4, true)),
          authorization: optString(cx, dv, p + DIALR.authorization),
        };
        break;
      case LOG: {
        const rec = wit.effect.cases[LOG][1].offsets;
        out[i] = {
          type: 'log',
          level: enumAt(dv, p + rec.level, LOG_LEVELS),
          message: cx.readString(dv.getUint32(p + rec.message, true), dv.getUint32(p + rec.message + 4, true)),
        };
        break;
      }
      default:
        throw trap(`invalid effect discriminant ${dv.getUint8(at)}`);
    }
  }
  return out;
}

/** The generic engine's `{tag, val}` effect → the package's object (what liftEffects builds directly). */
export function effectObject({ tag, val }) {
  switch (tag) {
    case 'send': return { type: 'send', text: val.line, number: Number(val.number) };
    case 'send-ping': return { type: 'send-ping' };
    case 'emit': return new Emit(snake(val.kind), snake(val.state), val.id, val.bufferId, val.acked, Buffer.from(val.line));
    case 'close-link': return { type: 'close-link', code: val.code, reason: val.reason };
    case 'dial': return { type: 'dial', url: val.url, authorization: val.authorization };
    case 'log': return { type: 'log', level: val.level, message: val.message };
    default: return { type: tag, val };
  }
}

// list<effect> with the hand-written loader, for every session function.
const effectsType = { ...wit.effects, load: liftEffects };
const withEffects = (t) => (t === wit.effects ? effectsType : t);
const commandResult = { ...wit.linkFunctions.command[2] };
commandResult.load = (cx, p) => {
  const disc = cx.dv.getUint8(p);
  if (disc === 0) return { tag: 'ok', val: liftEffects(cx, p + commandResult.payload) };
  if (disc === 1) return { tag: 'err', val: wit.decodeError.load(cx, p + commandResult.payload) };
  throw trap(`invalid result discriminant ${disc}`);
};

// ---- configuration ------------------------------------------------------------------

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

// ---- an instance --------------------------------------------------------------------

const OUTPUT_STREAM = { name: 'output-stream' };
const IO_ERROR = { name: 'error' };

/** A WIT `result` from the guest: the `ok` value, or the `err` thrown as RelayError. */
function ok(r) {
  if (r.tag === 'ok') return r.val;
  throw new RelayError(r.val);
}

/** One instance of the compiled module: synchronous. */
function instance(ready, options) {
  const { module, posts } = ready;
  const onStderr = options.stderr;

  // The guest's stderr (its panic messages): the last STDERR_KEEP bytes are kept
  // for the error of a trap, and each write also goes to options.stderr.
  let stderrTail = Buffer.alloc(0);
  const stderrDecoder = new TextDecoder();
  const stderrText = () => stderrTail.toString('utf8').replace(/^\uFFFD+/, '').trim();

  // Set once, by the first trap: every later call throws a dead-instance error.
  let dead = null;
  let cx = null;
  let exports = null;

  function enter() {
    if (dead) {
      const err = new WebAssembly.RuntimeError(`wasm trap: cannot enter component instance (it trapped: ${dead.message.split('\n')[0]})`);
      err.stderr = dead.stderr;
      throw err;
    }
  }

  /** The instance trapped (or its result broke the ABI): it is dead; the error to throw. */
  function failed(e) {
    if (dead) return e;
    const said = stderrText();
    const first = String(e?.message ?? e).split('\n')[0];
    const err = new WebAssembly.RuntimeError(said ? `${first} (guest stderr: ${said.replace(/\s*\n\s*/g, ' | ')})` : first, { cause: e });
    err.stderr = said;
    dead = err;
    return err;
  }

  const imports = {
    'wasi:io/error@0.2.12': {
      '[resource-drop]error': (h) => {
        cx.handles.take(h >>> 0, IO_ERROR);
      },
    },
    'wasi:cli/stderr@0.2.12': {
      'get-stderr': () => cx.handles.insert(OUTPUT_STREAM, 0),
    },
    'wasi:io/streams@0.2.12': {
      // result<_, stream-error> at `ret`: always ok (0), the bytes kept.
      '[method]output-stream.blocking-write-and-flush': (h, ptr, len, ret) => {
        cx.fresh();
        cx.handles.get(h >>> 0, OUTPUT_STREAM);
        const bytes = cx.readBytes(ptr >>> 0, len >>> 0);
        const all = Buffer.concat([stderrTail, bytes]);
        stderrTail = all.length > STDERR_KEEP ? all.subarray(all.length - STDERR_KEEP) : all;
        if (onStderr) {
          const chunk = stderrDecoder.decode(bytes, { stream: true });
          // The application's callback must not unwind the guest's stack.
          try {
            onStderr(chunk);
          } catch (err) {
            queueMicrotask(() => {
              throw err;
            });
          }
        }
        cx.bounds(ret >>> 0, 1);
        cx.dv.setUint8(ret >>> 0, 0);
      },
      '[resource-drop]output-stream': (h) => {
        cx.handles.take(h >>> 0, OUTPUT_STREAM);
      },
    },
    '[export]hermes:relay/session@0.2.0': {
      '[resource-new]link': (rep) => cx.handles.insert(wit.link, rep >>> 0),
      // The guest dropping an own<link> it holds: the resource ends (its dtor).
      '[resource-drop]link': (h) => {
        exports[wit.link.dtor](cx.handles.take(h >>> 0, wit.link));
      },
    },
  };
  const inst = new WebAssembly.Instance(module, imports);
  exports = inst.exports;
  cx = new Context(exports.memory, exports.cabi_realloc);

  const fn = ([name, params, results]) =>
    lift(cx, {
      params,
      results: withEffects(results),
      core: exports[name],
      post: posts.has(`cabi_post_${name}`) ? exports[`cabi_post_${name}`] : null,
      enter,
      failed,
    });
  const codec = Object.fromEntries(Object.entries(wit.codecFunctions).map(([k, f]) => [k, fn(f)]));
  const linkFns = Object.fromEntries(
    Object.entries(wit.linkFunctions).map(([k, f]) => [k, k === 'command' ? fn([f[0], f[1], commandResult]) : fn(f)]),
  );

  // The hot path, by hand: receive-text(self, now-ms, text) -> list<effect>.
  const rtName = wit.linkFunctions.receiveText[0];
  const rtCore = exports[rtName];
  const rtPost = posts.has(`cabi_post_${rtName}`) ? exports[`cabi_post_${rtName}`] : null;
  function receiveText(rep, nowMs, message) {
    enter();
    const now = u64Type.check(typeof nowMs === 'bigint' ? nowMs : BigInt(nowMs));
    let ptr;
    let len;
    try {
      if (typeof message === 'string') {
        [ptr, len] = cx.writeString(message);
      } else if (message instanceof Uint8Array) {
        // Never hand the guest a `string` that is not UTF-8.
        if (!isUtf8(message)) {
          const err = new TypeError('receiveText: the message is not valid UTF-8');
          err.code = 'ERR_ENCODING_INVALID_ENCODED_DATA';
          throw err;
        }
        [ptr, len] = cx.writeBytes(message);
      } else {
        throw new TypeError(`receiveText: expected a string or a Uint8Array of UTF-8, got ${message === null ? 'null' : typeof message}`);
      }
    } catch (e) {
      if (e instanceof TypeError) throw e;
      throw failed(e);
    }
    try {
      const r = rtCore(rep, now, ptr, len);
      cx.fresh();
      const effects = liftEffects(cx, r >>> 0);
      if (rtPost) rtPost(r);
      return effects;
    } catch (e) {
      throw failed(e);
    }
  }

  const dtor = exports[wit.link.dtor];
  function drop(rep) {
    enter();
    try {
      dtor(rep);
    } catch (e) {
      throw failed(e);
    }
  }
  // A Connection collected without free(): its link is destroyed then (not
  // when the instance is dead: nothing runs in it any more).
  const registry = new FinalizationRegistry((rep) => {
    if (!dead) {
      try {
        drop(rep);
      } catch {
        // the instance is dead now; nothing else to free
      }
    }
  });

  let repOf; // Connection → its rep, for the test hook below only
  /** One link to the connector across all its re-dials (the WIT resource `link`). */
  class Connection {
    #rep;
    static {
      repOf = (c) => c.#rep;
    }
    constructor(rep) {
      this.#rep = rep;
      registry.register(this, rep, this);
    }

    #self() {
      if (this.#rep === -1) throw new TypeError('this Connection was freed');
      return this.#rep;
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
      return new Connection(ok(linkFns.create(witConfig(config))));
    }

    /** The settings in force: {dialUrl, maxMessageBytes, closeWaitMs,
     *  pingIntervalMs, pongTimeoutMs, summary (an object, no secrets)}. */
    settings() {
      const s = linkFns.settings(this.#self());
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
      return linkFns.start(this.#self(), u64(nowMs));
    }
    /** The socket of the last `dial` is up. */
    open(nowMs) {
      return linkFns.open(this.#self(), u64(nowMs));
    }
    /** One text message: a string, or its UTF-8 bytes (a Uint8Array/Buffer, validated). */
    receiveText(nowMs, message) {
      return receiveText(this.#self(), nowMs, message);
    }
    receiveBinary(nowMs, bytes) {
      return linkFns.receiveBinary(this.#self(), u64(nowMs), bytes);
    }
    /** A pong arrived (for a `send-ping`). */
    pong(nowMs) {
      return linkFns.pong(this.#self(), u64(nowMs));
    }
    /** When to call handleTimeout next (monotonic ms), or undefined: never. Ask after every call. */
    pollTimeout() {
      const at = linkFns.pollTimeout(this.#self());
      return at === undefined ? undefined : Number(at);
    }
    /** Time passed: everything due by `nowMs` happens, in due order. */
    handleTimeout(nowMs) {
      return linkFns.handleTimeout(this.#self(), u64(nowMs));
    }
    outbound(nowMs, id, action, platform) {
      return linkFns.outbound(this.#self(), u64(nowMs), id, text(action), platform ?? undefined);
    }
    interrupt(nowMs, sessionKey, reason) {
      return linkFns.interrupt(this.#self(), u64(nowMs), sessionKey, reason ?? undefined);
    }
    ack(nowMs, bufferId) {
      return linkFns.ack(this.#self(), u64(nowMs), bufferId);
    }
    /** The application could not take a delivery: its next arrival is delivered again. */
    nack(nowMs, bufferId) {
      return linkFns.nack(this.#self(), u64(nowMs), bufferId);
    }
    goingIdle(nowMs) {
      return linkFns.goingIdle(this.#self(), u64(nowMs));
    }
    /** Park re-dialling for at most 60 s (a brokered suspend is in flight). */
    holdRedial(nowMs) {
      return linkFns.holdRedial(this.#self(), u64(nowMs));
    }
    releaseRedial(nowMs) {
      return linkFns.releaseRedial(this.#self(), u64(nowMs));
    }
    /** An APP-PROTOCOL command (JSON text or value, without `tenant`); throws RelayError. */
    command(nowMs, command) {
      return ok(linkFns.command(this.#self(), u64(nowMs), text(command)));
    }
    /** Frame `number` (of a `send` effect) and those after it were not written. */
    writeFailed(nowMs, number, reason) {
      return linkFns.writeFailed(this.#self(), u64(nowMs), u64(number), reason);
    }
    /** End the link: going_idle (a ready link, at most `graceMs` for its ack), what
     *  waits answered, close 1000, then `state stopped` (reason default "shutdown"). */
    shutdown(nowMs, graceMs = 0, reason) {
      return linkFns.shutdown(this.#self(), u64(nowMs), u64(graceMs), reason ?? undefined);
    }
    /** The socket ended, or a dial failed; `code` null/undefined when there was none. */
    closed(nowMs, code, reason = '') {
      return linkFns.closed(this.#self(), u64(nowMs), code ?? undefined, reason);
    }
    /**
     * Take over from a failed instance (once, before `start`): {owed: [{id,
     * action?}], inFlight: [bufferId], idleOwed, dialAfterMs, revoked, reason}.
     */
    recover(nowMs, recovery) {
      return linkFns.recover(this.#self(), u64(nowMs), {
        owed: (recovery.owed ?? []).map((o) => ({
          id: o.id,
          action: o.action === undefined || o.action === null ? undefined : text(o.action),
        })),
        inFlight: [...(recovery.inFlight ?? [])],
        idleOwed: Boolean(recovery.idleOwed),
        dialAfterMs: u64(recovery.dialAfterMs ?? 0),
        revoked: Boolean(recovery.revoked),
        reason: recovery.reason ?? '',
      });
    }
    /** {state, connected, frames_in, frames_out, pending_outbound, consecutive_failures, platforms} */
    stats() {
      return stats(linkFns.stats(this.#self()), this.descriptors());
    }
    /** {platform: descriptor} of the current connection ({} without one). */
    descriptors() {
      return JSON.parse(linkFns.descriptors(this.#self()));
    }
    /** Destroys the link now instead of at garbage collection; later calls throw a TypeError. */
    free() {
      if (this.#rep === -1) return;
      const rep = this.#rep;
      this.#rep = -1;
      registry.unregister(this);
      if (!dead) drop(rep);
    }
  }

  const relay = {
    /** One line (Uint8Array or string, without its newline) → `{tag, val}` frame. */
    decode: (line, maxLineBytes = 1 << 20) =>
      ok(codec.decode(typeof line === 'string' ? encoder.encode(line) : line, maxLineBytes)),
    /** A `{tag, val}` gateway frame → one line of JSON without the newline. */
    encode: (frame) => codec.encode(frame),
    dialUrl: (base) => codec.dialUrl(base),
    provisionUrl: (base) => codec.provisionUrl(base),
    upgradeToken: (gatewayId, secret, ttlSeconds, nowUnixS) =>
      codec.upgradeToken(gatewayId, secret, u64(ttlSeconds), u64(nowUnixS)),
    sign: (payload, secret) => codec.sign(payload, secret),
    normalizeDescriptor: (json) => ok(codec.normalizeDescriptor(text(json))),
    inboundEvent: (json) => ok(codec.inboundEvent(text(json))),
    passthroughForward: (json) => ok(codec.passthroughForward(text(json))),
    /** JSON text of the MessageEvent, or undefined when the forward is dropped. */
    discordEvent: (json) => ok(codec.discordEvent(text(json))),
    Connection,
    /** Another fresh, isolated instance, synchronously (the replacement after a
     *  trap; same options). */
    instantiate: () => instance(ready, options),
  };
  // For the package's own tests (test/abi.test.mjs): the raw core exports behind
  // the same trap handling, and the context. Not enumerable, not part of the API.
  Object.defineProperty(relay, INTERNAL, {
    value: {
      cx,
      exports,
      /** Calls a core export with flat values, as a lifted call would (a trap poisons). */
      callCore(name, ...flat) {
        enter();
        try {
          const r = exports[name](...flat);
          cx.fresh();
          return r;
        } catch (e) {
          throw failed(e);
        }
      },
      get dead() {
        return dead;
      },
      /** A link method (`wit.linkFunctions` key) through the generic engine alone
       *  (abi.mjs's lift and list<effect> loader, then effectObject), to check the
       *  hand-written effect lifter against. Arguments as the WIT types take them. */
      generic(key, conn, ...args) {
        const [name, params, results] = wit.linkFunctions[key];
        const call = lift(cx, {
          params,
          results,
          core: exports[name],
          post: posts.has(`cabi_post_${name}`) ? exports[`cabi_post_${name}`] : null,
          enter,
          failed,
        });
        const out = call(repOf(conn), ...args);
        return results === wit.effects ? out.map(effectObject) : out;
      },
    },
  });
  return relay;
}

/** The key of an instance's test hook (test/abi.test.mjs). */
export const INTERNAL = Symbol.for('relay-wasm.internal');

/**
 * A fresh, isolated instance of the component (its own memory): one per tenant,
 * or a replacement after a trap. The first call in a process also reads
 * relay.wasm and compiles its main module; later ones only instantiate.
 * @param {{stderr?: (text: string) => void}} [options] stderr receives the
 *   guest's panic messages (also kept, and put in the error of a trap).
 */
export async function load(options = {}) {
  return instance(await prepare(), options);
}
