#!/usr/bin/env node
// `node bench.mjs [--quick] [--corpus FILE [--seconds S]] [--json OUT]`: the cost
// of one call into the component from Node, through relay.mjs (relay.wasm's main
// core module on Node's WebAssembly), in µs per call (median of several rounds;
// round 0 only warms the JIT up).
//
// The single-frame line is the one embed/python/bench.py uses (same bytes), so
// the two embeddings can be compared. `--corpus FILE` also measures the
// in-process pipeline over an NDJSON corpus (`relay-bench --dump-corpus FILE`)
// exactly as `python -m relay_wasm.bench --corpus` does: a handshaken Connection
// (Discord, bot `app`) gets every line as one message (receiveText, newline
// appended; as the Buffer ws delivers, which driver.mjs passes on, where Python's
// websockets delivers a str), each emitted event JSON.parse'd; one warm-up round, then rounds for
// `--seconds` (default 5). Two floors from the same run follow it: the guest
// alone (events left as bytes) and the events alone (their UTF-8 decoded and
// JSON.parse'd, no guest). `--json OUT` writes `js_component_fps`,
// `js_guest_only_fps`, `js_event_objects_floor_fps`, `js_utf8_decode_floor_fps`
// (and the call costs). `--python-ref SCRIPT` then runs the pure-Python reference
// (../shared/bench/py_reference.py) on the same corpus with `python3`, in the same
// run, and adds `py_ref_fps`, `py_json_floor_fps` and each figure's ratio to it
// (`null` with a note when it cannot run).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

import { load } from './relay.mjs';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const option = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : null);
const corpusPath = option('--corpus');
const jsonPath = option('--json');
const pythonRef = option('--python-ref');
const seconds = Number(option('--seconds') ?? 5);
const report = { node: process.version, machine: process.arch, js_call_us: {} };
const ROUNDS = quick ? 5 : 11;
const PER_ROUND = quick ? 2000 : 20000;

const rl = await load();

// Python's json.dumps spelling (", " and ": "), byte for byte as bench.py sends it.
const LINE =
  '{"type": "inbound", "event": {"text": "hello there, this is a typical short chat message", ' +
  '"message_id": "1700000000.000100", "source": {"platform": "slack", "chat_id": "C0123456", ' +
  '"chat_type": "channel", "user_id": "U0ABCDEF", "user_name": "ada", "thread_id": "1700000000.000001"}}}';
const DESCRIPTOR = {
  contract_version: 1, platform: 'slack', label: 'Slack', max_message_length: 40000,
  supports_draft_streaming: false, supports_edit: true, supports_threads: true,
  markdown_dialect: 'mrkdwn', len_unit: 'chars',
};

function measure(name, fn, perRound = PER_ROUND) {
  const samples = [];
  for (let r = 0; r <= ROUNDS; r++) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < perRound; i++) fn(i);
    const us = Number(process.hrtime.bigint() - t) / 1000 / perRound;
    if (r > 0) samples.push(us);
  }
  samples.sort((a, b) => a - b);
  const med = samples[samples.length >> 1];
  console.log(`${name.padEnd(46)} ${med.toFixed(2).padStart(7)} µs/call  (min ${samples[0].toFixed(2)})`);
  report.js_call_us[name] = med;
  return med;
}

/** A connection past its handshake, ready for inbound frames. */
function readyConnection() {
  const conn = rl.Connection.create({ identities: [{ platform: 'slack', botId: 'B1' }], seed: 1, reconnectJitterPercent: 0 });
  conn.open(0);
  const ready = conn.receiveText(1, `${JSON.stringify({ type: 'descriptor', descriptor: DESCRIPTOR })}\n`);
  if (!ready.some((e) => e.type === 'emit' && JSON.parse(e.json).event === 'ready')) throw new Error('no ready');
  return conn;
}

const bytes = new TextEncoder().encode(LINE);
console.log(`node ${process.version}; line ${bytes.length} bytes; ${ROUNDS} rounds × ${PER_ROUND} calls, median`);
{
  // load() is async: awaited one by one (the modules are compiled by now).
  const samples = [];
  for (let r = 0; r <= ROUNDS; r++) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < 50; i++) await load();
    if (r > 0) samples.push(Number(process.hrtime.bigint() - t) / 1000 / 50);
  }
  samples.sort((a, b) => a - b);
  const med = samples[samples.length >> 1];
  console.log(`${'load() (a new instance, module compiled)'.padEnd(46)} ${med.toFixed(2).padStart(7)} µs/call  (min ${samples[0].toFixed(2)})`);
}
measure('dialUrl (near-empty call)', () => rl.dialUrl('https://x.example'));
const decode = measure('codec.decode (one inbound line, Uint8Array)', () => rl.decode(bytes));
measure('codec.decode (same line as a string)', () => rl.decode(LINE));
measure('codec.encode (outbound frame)', () =>
  rl.encode({ tag: 'outbound', val: { requestId: 'r1', action: '{"op":"send","chat_id":"C0123456","content":"hi"}', platform: 'slack' } }),
);
const conn = readyConnection();
let now = 1;
// A repeated message is not delivered again (D16): cycle through more distinct
// ones (same length) than the component remembers, so every call delivers.
const pool = Array.from(
  { length: 16384 },
  (_, i) => `${LINE.replace('1700000000.000100', `1700000000.${String(i).padStart(6, '0')}`)}\n`,
);
let next = 0;
const text = () => pool[(next = (next + 1) % pool.length)];
const receive = measure('Connection.receiveText (one inbound frame)', () => {
  const effects = conn.receiveText(++now, text());
  if (effects.length !== 1 || effects[0].type !== 'emit') throw new Error(`unexpected ${JSON.stringify(effects)}`);
});
measure('  + JSON.parse of the emitted event', () => JSON.parse(conn.receiveText(++now, text())[0].json));
measure('JSON.parse of the line alone (reference)', () => JSON.parse(LINE));
console.log(`summary: decode ${decode.toFixed(1)} µs/call, receive-text ${receive.toFixed(1)} µs per inbound frame`);

if (corpusPath) {
  const lines = readFileSync(corpusPath, 'utf8').split('\n').filter((l) => l.length);
  const encoded = lines.map((l) => new TextEncoder().encode(l));
  const total = encoded.reduce((n, b) => n + b.length, 0);
  console.log(`corpus ${corpusPath}: ${lines.length} lines, ${(total / 1e6).toFixed(1)} MB`);
  const pass = (name, fn) => {
    const t = process.hrtime.bigint();
    let errors = 0;
    for (let i = 0; i < lines.length; i++) errors += fn(i) ? 0 : 1;
    const s = Number(process.hrtime.bigint() - t) / 1e9;
    console.log(`${name.padEnd(46)} ${((s * 1e6) / lines.length).toFixed(1).padStart(7)} µs/line  ${(total / 1e6 / s).toFixed(1)} MB/s  (${errors} rejected)`);
  };
  const tryDecode = (i) => {
    try {
      rl.decode(encoded[i]);
      return true;
    } catch {
      return false;
    }
  };
  pass('corpus decode (warm-up pass)', tryDecode);
  pass('corpus decode', tryDecode);
  // The pipeline python -m relay_wasm.bench --corpus measures, on the same terms.
  const c = rl.Connection.create({ identities: [{ platform: 'discord', botId: 'app' }], seed: 7, reconnectJitterPercent: 50 });
  c.open(0);
  const descriptor = '{"type": "descriptor", "descriptor": {"contract_version": 1, "platform": "discord", ' +
    '"label": "Discord", "max_message_length": 2000, "supports_draft_streaming": false, ' +
    '"supports_edit": true, "supports_threads": true, "markdown_dialect": "discord", "len_unit": "chars"}}\n';
  if (!c.receiveText(0, descriptor).some((e) => e.type === 'emit' && JSON.parse(e.json).event === 'ready')) {
    throw new Error('no ready after the descriptor');
  }
  if (lines.length <= 4096) {
    console.error(`note: the corpus has ${lines.length} lines; every round after the first meets messages ` +
      'the component already delivered (D16 de-duplicates up to 4096), so it times the duplicate path');
  }
  // As ws hands a text message to the driver (driver.mjs passes it on): a Buffer.
  const messages = lines.map((l) => Buffer.from(`${l}\n`));
  let t = 1;
  // The event lines of the first pass (the warm-up), copied out for the events-alone floor.
  const firstLines = [];
  // `decode` false: the emitted events stay bytes (`line`), for the guest-only figure.
  const round = (decode = true) => {
    let emitted = 0;
    const record = t === 1;
    for (const m of messages) {
      for (const e of c.receiveText(t, m)) {
        if (e.type !== 'emit') continue;
        if (record) firstLines.push(Buffer.from(e.line));
        emitted += (decode ? JSON.parse(e.json) : e.line.length) ? 1 : 0;
      }
    }
    t += 1;
    return emitted;
  };
  // Runs `fn` (one pass over the corpus) for about `seconds`, after one warm-up pass
  // that also sizes the run; frames/s over the corpus's lines.
  const framesPerSecond = (name, fn) => {
    let start = process.hrtime.bigint();
    const first = fn();
    const warmS = Number(process.hrtime.bigint() - start) / 1e9;
    const rounds = Math.max(1, Math.min(10000, Math.round(seconds / Math.max(warmS, 1e-9))));
    start = process.hrtime.bigint();
    for (let r = 0; r < rounds; r++) fn();
    const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
    const fps = (messages.length * rounds) / elapsed;
    console.log(`${name}: ${Math.round(fps).toLocaleString('en')} frames/s ` +
      `(${rounds} rounds in ${elapsed.toFixed(1)} s; ${first} events in the first)`);
    return { fps, rounds, elapsed };
  };
  const pipeline = framesPerSecond('in-process pipeline, one frame per message', round);
  // Two floors from the same run, to say where a frame's time goes:
  // - the guest alone: the same calls, the events left as the bytes lifted from
  //   linear memory (what a sidecar writing them out would pay);
  // - the events alone: no component at all, only turning one pass's emitted
  //   event lines (the warm-up pass's) into JS objects, as the pipeline does
  //   (UTF-8 → string, then JSON.parse). No JavaScript binding of any guest can
  //   hand the application these objects faster than this.
  const guest = framesPerSecond('  the guest alone (events not decoded)', () => round(false));
  const events = framesPerSecond('  the events alone (decode + JSON.parse, no guest)', () => {
    let n = 0;
    for (const l of firstLines) n += JSON.parse(l.utf8Slice(0, l.length)) ? 1 : 0;
    return n;
  });
  const decoded = framesPerSecond('    of which UTF-8 → string alone', () => {
    let n = 0;
    for (const l of firstLines) n += l.utf8Slice(0, l.length).length > 0 ? 1 : 0;
    return n;
  });
  Object.assign(report, {
    js_component_fps: pipeline.fps,
    js_guest_only_fps: guest.fps,
    js_event_objects_floor_fps: events.fps,
    js_utf8_decode_floor_fps: decoded.fps,
    corpus: { source: corpusPath, frames: lines.length, bytes: total + lines.length },
    rounds: pipeline.rounds,
    seconds: pipeline.elapsed,
  });
}

/** The reference's own figures on `corpus` (its last stdout line), or a note. */
function pythonReference(script, corpus) {
  if (!existsSync(script)) return { note: `${script} not found` };
  const done = spawnSync('python3', [script, corpus, '--runs', '3'], { encoding: 'utf8' });
  if (done.error) return { note: `python3 could not be started: ${done.error.message}` };
  if (done.status !== 0) return { note: `the reference failed (exit ${done.status}): ${done.stderr.trim().split('\n').pop()}` };
  try {
    const figures = JSON.parse(done.stdout.trim().split('\n').pop());
    if (!(figures.py_ref_fps > 0)) throw new Error('no positive py_ref_fps');
    return { py_ref_fps: figures.py_ref_fps, py_json_floor_fps: figures.py_json_floor_fps };
  } catch (e) {
    return { note: `unreadable reference output (${e.message})` };
  }
}

if (corpusPath && pythonRef) {
  const ref = pythonReference(pythonRef, corpusPath);
  if (ref.note) {
    console.error(`note: --python-ref skipped: ${ref.note}`);
    Object.assign(report, { py_ref_fps: null, py_json_floor_fps: null, js_vs_ref: null });
  } else {
    const ratios = Object.fromEntries(
      ['js_component_fps', 'js_guest_only_fps', 'js_event_objects_floor_fps', 'js_utf8_decode_floor_fps']
        .map((k) => [k, report[k] / ref.py_ref_fps]),
    );
    Object.assign(report, ref, { js_vs_ref: ratios });
    console.log(`pure-Python reference, same corpus, this run: ${Math.round(ref.py_ref_fps).toLocaleString('en')} frames/s; ` +
      `× it: pipeline ${ratios.js_component_fps.toFixed(2)}, guest alone ${ratios.js_guest_only_fps.toFixed(2)}, ` +
      `events alone ${ratios.js_event_objects_floor_fps.toFixed(2)}, UTF-8 decode alone ${ratios.js_utf8_decode_floor_fps.toFixed(2)}`);
  }
}

if (jsonPath) writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
