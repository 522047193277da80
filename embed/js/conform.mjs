#!/usr/bin/env node
// `relay-wasm-conform FILE...` (the package's bin; `node conform.mjs FILE...` in
// the source tree): the conformance vectors through the component from
// JavaScript, with the contract of `relay-host conform` (crates/relay-host/src/conform.rs,
// whose per-file handling this mirrors step for step) and the comparison rule of
// crates/relay-testkit/src/compare.rs. One line per failing case, then `N passed, M failed`;
// exit status 1 on any failure, 2 when a file cannot be read.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

import { load, RelayError } from './relay.mjs';

// ---------------------------------------------------------------------------
// JSON that keeps every number's spelling. Node 20's JSON.parse has no access to
// the source text (that reviver `context` arrived in Node 21+), and the vectors
// hold integers beyond 2^64 and floats like 1E16 / 2.0 whose text the component
// must see unchanged. Numbers stay as their text (Num), objects are Maps in key
// order (a repeated key keeps its first place and takes the last value, as the
// Rust runner's ordered map does), and compact() writes what serde_json writes.

class Num {
  constructor(raw) {
    this.raw = raw;
  }
}

function parse(src) {
  let i = 0;
  const ws = () => {
    while (i < src.length && ' \t\n\r'.includes(src[i])) i++;
  };
  const fail = (what) => {
    throw new SyntaxError(`${what} at offset ${i}`);
  };
  const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
  function value() {
    ws();
    const c = src[i];
    if (c === '{') {
      i++;
      const map = new Map();
      ws();
      if (src[i] === '}') {
        i++;
        return map;
      }
      for (;;) {
        ws();
        if (src[i] !== '"') fail('expected a key');
        const k = string();
        ws();
        if (src[i++] !== ':') fail('expected `:`');
        map.set(k, value());
        ws();
        if (src[i] === ',') i++;
        else if (src[i] === '}') {
          i++;
          return map;
        } else fail('expected `,` or `}`');
      }
    }
    if (c === '[') {
      i++;
      const arr = [];
      ws();
      if (src[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value());
        ws();
        if (src[i] === ',') i++;
        else if (src[i] === ']') {
          i++;
          return arr;
        } else fail('expected `,` or `]`');
      }
    }
    if (c === '"') return string();
    for (const [word, v] of [['true', true], ['false', false], ['null', null]]) {
      if (src.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(src);
    if (!m) fail('unexpected character');
    i += m[0].length;
    return new Num(m[0]);
  }
  function string() {
    const start = i++;
    while (src[i] !== '"') {
      if (i >= src.length) fail('unterminated string');
      i += src[i] === '\\' ? 2 : 1;
    }
    i++;
    // The escapes are standard JSON: let JSON.parse decode this one string.
    return JSON.parse(src.slice(start, i));
  }
  const v = value();
  ws();
  if (i !== src.length) fail('trailing characters');
  return v;
}

function compact(v) {
  if (v === null) return 'null';
  if (v === true || v === false) return String(v);
  if (v instanceof Num) return v.raw;
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(compact).join(',')}]`;
  return `{${[...v].map(([k, x]) => `${JSON.stringify(k)}:${compact(x)}`).join(',')}}`;
}

const isObj = (v) => v instanceof Map;
const get = (v, k) => (isObj(v) ? v.get(k) : undefined);
const has = (v, k) => isObj(v) && v.has(k);
const str = (v) => (typeof v === 'string' ? v : undefined);
// serde_json's as_u64 / as_i64 on an arbitrary-precision number: integer text only.
const U64_MAX = (1n << 64n) - 1n;
function asU64(v) {
  if (!(v instanceof Num) || !/^\d+$/.test(v.raw)) return undefined;
  const n = BigInt(v.raw);
  return n <= U64_MAX ? n : undefined;
}
function asI64(v) {
  if (!(v instanceof Num) || !/^-?\d+$/.test(v.raw)) return undefined;
  const n = BigInt(v.raw);
  return n >= -(1n << 63n) && n < 1n << 63n ? n : undefined;
}

/** serde_json Value equality: numbers by text, objects regardless of key order. */
function equal(a, b) {
  if (a instanceof Num || b instanceof Num) return a instanceof Num && b instanceof Num && a.raw === b.raw;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => equal(x, b[i]));
  }
  if (isObj(a) || isObj(b)) {
    return isObj(a) && isObj(b) && a.size === b.size && [...a].every(([k, x]) => b.has(k) && equal(x, b.get(k)));
  }
  return a === b;
}

/** A value cut to a readable length for diffs. */
function short(v) {
  const chars = Array.from(compact(v));
  return chars.length > 160 ? `${chars.slice(0, 160).join('')}…` : chars.join('');
}
const cut = (s) => short(String(s));

// ---------------------------------------------------------------------------
// The comparison rule (crates/relay-testkit/src/compare.rs).

class Bindings {
  byName = new Map();
  /** Replaces every `$NAME` by its bound value (longest names first). */
  substitute(text) {
    const names = [...this.byName.keys()].sort((a, b) => b.length - a.length);
    let out = text;
    for (const n of names) out = out.split(`$${n}`).join(this.byName.get(n));
    return out;
  }
}

function placeholder(s) {
  return /^\$[A-Z][A-Z0-9_]*$/.test(s) ? s.slice(1) : undefined;
}

class Mismatch extends Error {}

function compare(expected, actual, b) {
  try {
    compareAt(expected, actual, b, '$');
    return null;
  } catch (e) {
    if (e instanceof Mismatch) return e.message;
    throw e;
  }
}

const looksInt = (t) => !/[.eE]/.test(t);

function compareAt(e, a, b, path) {
  const miss = (msg) => {
    throw new Mismatch(`${path}: ${msg}`);
  };
  if (typeof e === 'string' && typeof a === 'string') {
    const name = placeholder(e);
    if (name !== undefined) return bind(b, name, a, path);
    if (e !== a) miss(`expected ${JSON.stringify(e)}, got ${JSON.stringify(a)}`);
    return;
  }
  if (isObj(e) && isObj(a)) {
    for (const [k, ev] of e) {
      const sub = `${path}.${k}`;
      if (a.has(k)) compareAt(ev, a.get(k), b, sub);
      else if (ev !== null) throw new Mismatch(`${sub}: missing (expected ${short(ev)})`);
    }
    return;
  }
  if (Array.isArray(e) && Array.isArray(a)) {
    if (e.length !== a.length) miss(`expected ${e.length} elements, got ${a.length}: ${short(a)}`);
    e.forEach((ev, i) => compareAt(ev, a[i], b, `${path}[${i}]`));
    return;
  }
  if (e instanceof Num && a instanceof Num) {
    const [et, at] = [e.raw, a.raw];
    const [x, y] = [Number(et), Number(at)];
    // Equal by value, except that two integers past 2^53-ish must match exactly.
    const same = et === at || (x === y && (Math.abs(x) < 9.0e15 || !looksInt(et) || !looksInt(at)));
    if (!same) miss(`expected ${et}, got ${at}`);
    return;
  }
  if (!equal(e, a)) miss(`expected ${short(e)}, got ${short(a)}`);
}

function bind(b, name, actual, path) {
  const bound = b.byName.get(name);
  if (bound !== undefined) {
    if (bound !== actual) throw new Mismatch(`${path}: $${name} was bound to ${JSON.stringify(bound)}, got ${JSON.stringify(actual)}`);
    return;
  }
  for (const [other, v] of b.byName) {
    if (v === actual) throw new Mismatch(`${path}: $${name} would bind ${JSON.stringify(actual)}, already bound to $${other}`);
  }
  b.byName.set(name, actual);
}

// ---------------------------------------------------------------------------
// Per-file handling (crates/relay-host/src/conform.rs). A case returns null (pass) or the
// diff; an exception other than a RelayError handled here means the instance is
// unusable and is reported as a sandbox error.

/** Vectors this project deliberately disagrees with: must agree with
 *  KNOWN_DEVIATIONS in crates/relay-testkit/src/vectors.rs and docs/DEVIATIONS.md. */
const STALE_SINCE_D15 = 'stale since D15: the same two descriptors in one message give ready plus a descriptor event in multi_identity_first_descriptor_ready_later_ones_descriptor_events; this case still expects ready alone (docs/DEVIATIONS.md)';
const KNOWN_DEVIATIONS = [ // [file, case, reason]
  ['sessions.json', 'outbound_platform_tag_for_fronted_identity', STALE_SINCE_D15],
  ['sessions.json', 'multi_identity_reply_follows_inbound_platform', STALE_SINCE_D15],
];

const check = (expected, actual) => compare(expected, actual, new Bindings());

/** Runs a component call whose WIT err is a value here: [ok, value-or-message]. */
function attempt(fn) {
  try {
    return [true, fn()];
  } catch (e) {
    if (e instanceof RelayError) return [false, e];
    throw e;
  }
}

/** An expected `{"error": kind}` passes on any error; an expected value needs Ok. */
function checkResult(expected, call) {
  const wantsError = isObj(expected) && expected.size === 1 && expected.has('error');
  const [ok, v] = attempt(call);
  if (wantsError) return ok ? `expected an error, got ${cut(v)}` : null;
  if (!ok) return `unexpected error: ${v.message}`;
  let actual;
  try {
    actual = parse(v);
  } catch (e) {
    return `component returned bad JSON: ${e.message}`;
  }
  return check(expected, actual);
}

// The base64 crate's STANDARD engine: padded, canonical; anything else is an error.
function b64decode(s) {
  const bytes = Buffer.from(s, 'base64');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0 || bytes.toString('base64') !== s) {
    throw new Error(`invalid base64 ${cut(s)}`);
  }
  return new Uint8Array(bytes);
}
const b64encode = (bytes) => Buffer.from(bytes).toString('base64');

function runCase(file, c, rl) {
  const input = has(c, 'input') ? c.get('input') : null;
  const expected = has(c, 'expected') ? c.get('expected') : null;
  switch (file) {
    case 'dial_url.json':
      return check(expected, rl.dialUrl(str(input) ?? ''));
    case 'provision_url.json':
      return check(expected, rl.provisionUrl(str(input) ?? ''));
    case 'upgrade_token.json':
      return upgradeToken(rl, input, expected);
    case 'descriptor.json':
      return checkResult(expected, () => rl.normalizeDescriptor(compact(input)));
    case 'inbound_event.json':
      return checkResult(expected, () => rl.inboundEvent(compact(input)));
    case 'passthrough_forward.json':
      return checkResult(expected, () => rl.passthroughForward(compact(input)));
    case 'discord_interaction.json':
      return discord(rl, input, expected);
    case 'frames.json':
      return frames(rl, input, expected);
    case 'sessions.json':
      return session(rl, c);
    default:
      return `unknown vector file \`${file}\``;
  }
}

function upgradeToken(rl, input, expected) {
  const s = (k) => str(get(input, k)) ?? '';
  const i = (k) => asI64(get(input, k)) ?? 0n;
  if (str(get(input, 'fn')) === 'sign') {
    return check(expected, new Map([['sig_hex', rl.sign(s('payload'), s('secret'))]]));
  }
  const token = rl.upgradeToken(s('gateway_id'), s('secret'), i('ttl_seconds'), i('now_unix_s'));
  return check(expected, new Map([['token', token], ['authorization', `Bearer ${token}`]]));
}

function discord(rl, input, expected) {
  const fwd = isObj(get(input, 'forward')) ? get(input, 'forward') : new Map();
  // Build the wire `forward` the connector would send: the body as `bodyB64`.
  let body;
  if (fwd.has('interaction')) body = Buffer.from(compact(fwd.get('interaction')), 'utf8');
  else if (str(fwd.get('body_utf8')) !== undefined) body = Buffer.from(fwd.get('body_utf8'), 'utf8');
  else if (str(fwd.get('body_b64')) !== undefined) body = b64decode(fwd.get('body_b64'));
  else body = new Uint8Array();
  const wire = new Map();
  for (const [k, v] of fwd) {
    if (!['interaction', 'body_utf8', 'body_b64'].includes(k)) wire.set(k, v);
  }
  wire.set('bodyB64', b64encode(body));
  const [ok, normalised] = attempt(() => rl.passthroughForward(compact(wire)));
  if (!ok) return `forward rejected: ${normalised.message}`;
  const [ok2, event] = attempt(() => rl.discordEvent(normalised));
  if (!ok2) return `conversion error: ${event.message}`;
  const outcome =
    event === undefined
      ? new Map([['outcome', 'dropped']])
      : new Map([['outcome', 'message'], ['event', parse(event)]]);
  return check(expected, outcome);
}

function frames(rl, input, expected) {
  if (has(input, 'encode')) {
    const frame = gatewayFrame(input.get('encode'));
    if (!frame) return `cannot read encode input ${short(input.get('encode'))}`;
    const line = rl.encode(frame);
    let got;
    try {
      got = parse(line.replace(/\n$/, ''));
    } catch (e) {
      return `encoded line is not JSON (${e.message}): ${cut(line)}`;
    }
    const want = parse(str(get(expected, 'line')) ?? 'null');
    return equal(got, want) ? null : `expected line ${short(want)}, got ${short(got)}`;
  }
  let bytes;
  if (str(get(input, 'decode')) !== undefined) bytes = new TextEncoder().encode(input.get('decode'));
  else if (str(get(input, 'decode_b64')) !== undefined) bytes = b64decode(input.get('decode_b64'));
  else return 'case has neither decode nor encode';
  const max = Number(BigInt.asUintN(32, asU64(get(input, 'max_line_bytes')) ?? 1n << 20n));
  const [ok, f] = attempt(() => rl.decode(bytes, max));
  const wantsError = has(expected, 'error');
  if (!ok) return wantsError ? null : `unexpected error ${f.kind}: ${f.message}`;
  if (wantsError) return `expected an error, got ${short(frameJson(f))}`;
  return check(has(expected, 'frame') ? expected.get('frame') : null, frameJson(f));
}

/** Renders a decoded frame under its wire names (test harness only). */
function frameJson({ tag, val }) {
  const opt = (s) => (s === undefined ? null : s);
  switch (tag) {
    case 'descriptor':
      return new Map([['type', 'descriptor'], ['descriptor', parse(val)]]);
    case 'inbound':
      return new Map([['type', 'inbound'], ['event', parse(val.event)], ['bufferId', opt(val.bufferId)]]);
    case 'outbound-result':
      return new Map([['type', 'outbound_result'], ['requestId', val.requestId], ['result', parse(val.result)]]);
    case 'interrupt-inbound':
      return new Map([['type', 'interrupt_inbound'], ['session_key', val.sessionKey], ['chat_id', val.chatId]]);
    case 'going-idle-ack':
      return new Map([['type', 'going_idle_ack']]);
    case 'passthrough-forward':
      return new Map([['type', 'passthrough_forward'], ['forward', parse(val.forward)], ['bufferId', opt(val.bufferId)]]);
    default:
      throw new Error(`unknown frame variant ${tag}`);
  }
}

/** Reads a gateway frame given as JSON into the WIT variant (test harness only). */
function gatewayFrame(v) {
  const s = (k) => str(get(v, k));
  const need = (...ks) => ks.every((k) => s(k) !== undefined);
  switch (str(get(v, 'type'))) {
    case 'hello':
      if (!need('platform', 'botId')) return null;
      return {
        tag: 'hello',
        val: {
          platform: s('platform'),
          botId: s('botId'),
          commandManifest: has(v, 'command_manifest') ? compact(v.get('command_manifest')) : undefined,
        },
      };
    case 'outbound':
      if (!need('requestId') || !has(v, 'action')) return null;
      return {
        tag: 'outbound',
        val: { requestId: s('requestId'), action: compact(v.get('action')), platform: s('platform'), botId: s('botId') },
      };
    case 'interrupt':
      if (!need('session_key')) return null;
      return { tag: 'interrupt', val: { sessionKey: s('session_key'), reason: s('reason') } };
    case 'going_idle':
      return { tag: 'going-idle' };
    case 'inbound_ack':
      return need('bufferId') ? { tag: 'inbound-ack', val: s('bufferId') } : null;
    default:
      return null;
  }
}

/** The session config of a sessions.json case (vectors/README.md *config*):
 *  a setting the case gives is passed as `some`, the rest left to the
 *  component's defaults; jitter is always 0, keepalive off, nothing is dialled. */
function sessionConfig(config) {
  const u = (k) => asU64(get(config, k));
  const s = (k) => str(get(config, k));
  const ids = Array.isArray(get(config, 'identities')) ? config.get('identities') : [];
  const maxLine = u('max_line_bytes');
  return {
    identities: ids.map((id) => ({
      platform: str(get(id, 'platform')) ?? '',
      botId: str(get(id, 'bot_id')) ?? '',
      commandManifest: has(id, 'command_manifest') ? compact(id.get('command_manifest')) : undefined,
    })),
    url: '',
    seed: 0x5eedn,
    unixOffsetMs: 0n,
    gatewayId: s('gateway_id'),
    secret: s('secret'),
    handshakeTimeoutMs: u('handshake_timeout_ms'),
    outboundTimeoutMs: u('outbound_timeout_ms'),
    goingIdleTimeoutMs: u('going_idle_timeout_ms'),
    maxLineBytes: maxLine === undefined ? undefined : Number(BigInt.asUintN(32, maxLine)),
    promptNonce: s('prompt_nonce'),
    reconnectJitterPercent: Number(BigInt.asUintN(8, u('reconnect_jitter') ?? 0n)),
    backoffBaseMs: u('backoff_base_ms'),
    backoffMaxMs: u('backoff_max_ms'),
    stableConnectionMs: u('stable_connection_ms'),
    pingIntervalMs: 0n,
  };
}

// `state` values that are the host's bookkeeping in the vectors: never expected
// (vectors/README.md *events*), so not observed.
const UNOBSERVED_STATES = new Set(['connecting', 'handshaking', 'ready', 'idle', 'stopped']);

/** Folds effects into the step output; a string is a failure. */
function absorb(effects, out) {
  for (const e of effects) {
    switch (e.type) {
      case 'send':
        try {
          out.sent.push(parse(e.text.replace(/\n+$/, '')));
        } catch (err) {
          return `component wrote a non-JSON frame (${err.message}): ${cut(e.text)}`;
        }
        break;
      case 'emit':
        if (e.kind === 'state' && UNOBSERVED_STATES.has(e.state)) break;
        try {
          out.events.push(parse(e.json));
        } catch (err) {
          return `component emitted bad JSON (${err.message})`;
        }
        break;
      default: // dial (not a frame), send-ping, close-link, log: not checked here
    }
  }
  return null;
}

/** Everything due by `now` (the vectors guarantee none is due outside `advance`). */
function dueTimeouts(conn, now, out) {
  for (let rounds = 0; ; rounds++) {
    const at = conn.pollTimeout();
    if (at === undefined || BigInt(at) > now) return null;
    if (rounds >= 10000) return `poll-timeout stays due at ${at} (now ${now})`;
    const err = absorb(conn.handleTimeout(now), out);
    if (err) return err;
  }
}

function session(rl, c) {
  let conn;
  try {
    conn = rl.Connection.create(sessionConfig(get(c, 'config') ?? null));
  } catch (e) {
    if (e instanceof RelayError) return `config rejected: ${e.message}`;
    throw e;
  }
  try {
    const bindings = new Bindings();
    let last = { sent: [], events: [] };
    let lastWritten = []; // frame numbers of the latest action that wrote
    const steps = Array.isArray(get(c, 'steps')) ? c.get('steps') : [];
    for (const [i, step] of steps.entries()) {
      const fail = (msg) => `step ${i}: ${msg}`;
      if (has(step, 'expect_sent')) {
        const d = compare(step.get('expect_sent'), last.sent, bindings);
        if (d) return fail(`sent frames differ: ${d}; got ${short(last.sent)}`);
        continue;
      }
      if (has(step, 'expect_events')) {
        const d = compare(step.get('expect_events'), last.events, bindings);
        if (d) return fail(`events differ: ${d}; got ${short(last.events)}`);
        continue;
      }
      const action = str(get(step, 'do'));
      if (action === undefined) return fail('step has neither `do` nor an expectation');
      const now = asU64(get(step, 'now_ms')) ?? 0n;
      last = { sent: [], events: [] };
      // What is due fires first (for `advance`, that is the step).
      const due = dueTimeouts(conn, now, last);
      if (due) return fail(due);
      let effects;
      switch (action) {
        case 'open':
          effects = conn.open(now);
          break;
        case 'advance':
          effects = [];
          break;
        case 'receive': {
          const text = str(get(step, 'text'));
          effects =
            text !== undefined
              ? conn.receiveText(now, bindings.substitute(text))
              : conn.receiveBinary(now, b64decode(str(get(step, 'b64')) ?? ''));
          break;
        }
        case 'app': {
          const command = has(step, 'command') ? step.get('command') : null;
          const [ok, v] = attempt(() => conn.command(now, compact(command)));
          if (!ok) return fail(`command rejected: ${v.message}`);
          effects = v;
          break;
        }
        case 'close': {
          const code = asU64(get(step, 'code'));
          effects = conn.closed(
            now,
            code === undefined ? undefined : Number(BigInt.asUintN(16, code)),
            str(get(step, 'reason')) ?? '',
          );
          break;
        }
        // The project's steps beyond sessions.json, as in the Rust drivers.
        case 'write_failed': {
          let frame = asU64(get(step, 'frame'));
          if (frame === undefined) {
            if (!lastWritten.length) return fail('write_failed before anything was written');
            frame = lastWritten[0];
          }
          effects = conn.writeFailed(now, frame, str(get(step, 'reason')) ?? '');
          break;
        }
        case 'stop':
          effects = conn.shutdown(now, 0n, undefined);
          break;
        default:
          return fail(`unknown action \`${action}\``);
      }
      const written = effects.filter((e) => e.type === 'send').map((e) => e.number);
      if (written.length) lastWritten = written;
      const err = absorb(effects, last);
      if (err) return fail(err);
    }
    return null;
  } finally {
    conn.free();
  }
}

// ---------------------------------------------------------------------------

async function main(files) {
  if (!files.length) {
    console.error('usage: relay-wasm-conform FILE...  (or node conform.mjs FILE...)');
    return 2;
  }
  let passed = 0;
  let failed = 0;
  let deviations = 0;
  let stderr = '';
  const fresh = () => load({ stderr: (t) => (stderr += t) });
  for (const path of files) {
    const name = basename(path);
    let cases;
    try {
      cases = parse(readFileSync(path, 'utf8'));
      if (!Array.isArray(cases)) throw new Error('not a JSON array of cases');
    } catch (e) {
      console.error(`error: ${path}: ${e.message}`);
      return 2;
    }
    let rl = await fresh();
    for (const c of cases) {
      const caseName = str(get(c, 'name')) ?? '<unnamed>';
      let diff;
      try {
        stderr = '';
        diff = runCase(name, c, rl);
      } catch (e) {
        // The instance died (a trap) or the harness could not go on: report and
        // continue with a fresh instance, as the Rust runner does.
        const panic = stderr.trim() ? ` (guest stderr: ${cut(stderr.trim())})` : '';
        diff = `sandbox error: ${e?.message ?? e}${panic}`;
        rl = await fresh();
      }
      const deviation = KNOWN_DEVIATIONS.find(([f, n]) => f === name && n === caseName);
      if (deviation) {
        deviations++;
        console.log(`DEVIATION ${name}::${caseName}: ${deviation[2]}`);
      } else if (diff === null) {
        passed++;
      } else {
        failed++;
        console.log(`FAIL ${name}::${caseName}: ${diff}`);
      }
    }
  }
  if (deviations) console.log(`${deviations} known deviations (docs/DEVIATIONS.md), not counted as passed`);
  console.log(`${passed} passed, ${failed} failed`);
  return failed ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
