// The core-ABI runner itself (relay.mjs, abi.mjs, component.mjs; docs/CORE-ABI.md):
// the hand-written hot path agrees with the generic canonical-ABI engine, a bad
// binary is refused with a reason, a host value that does not fit its WIT type is
// refused before the guest runs (and leaves the instance usable), and a trap
// poisons the instance. Imports the package by name (the source tree here, the
// installed copy next to a tarball); the internal modules by file, beside it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { load, RelayError } from 'relay-wasm';

const packageRoot = new URL('.', import.meta.resolve('relay-wasm'));
const { coreSignatures, mainCoreModule } = await import(new URL('component.mjs', packageRoot));
const { flattenExport } = await import(new URL('abi.mjs', packageRoot));
const wit = await import(new URL('wit.mjs', packageRoot));
const INTERNAL = Symbol.for('relay-wasm.internal');

const DESCRIPTOR_LINE =
  '{"type":"descriptor","descriptor":{"contract_version":1,"platform":"discord","label":"Discord",' +
  '"max_message_length":2000,"supports_draft_streaming":false,"supports_edit":true,' +
  '"supports_threads":true,"markdown_dialect":"discord","len_unit":"chars"}}\n';

// One of every kind of traffic the hot path lifts: events with and without
// buffer ids, an interrupt, an unknown request's result, bad lines (logs and
// error events), several frames in one message, non-ASCII text.
const MESSAGES = [
  DESCRIPTOR_LINE,
  '{"type":"inbound","event":{"text":"héllo ✓","message_id":"m1","source":{"platform":"discord","chat_id":"c1","chat_type":"dm","user_id":"u1"}}}\n',
  '{"type":"inbound","buffer_id":"b7","event":{"text":"buffered","message_id":"m2","source":{"platform":"discord","chat_id":"c1","chat_type":"group","user_id":"u2"}}}\n',
  '{"type":"interrupt_inbound","session_key":"s1","chat_id":"c1"}\n',
  '{"type":"outbound_result","request_id":"nobody","result":{"success":true}}\n',
  'not json at all\n',
  '{"type":"no_such_type"}\n{"type":"inbound","event":{"text":"two","message_id":"m3","source":{"platform":"discord","chat_id":"c2","chat_type":"dm","user_id":"u3"}}}\n',
];

const CONFIG = { identities: [{ platform: 'discord', botId: 'app' }], seed: 7, reconnectJitterPercent: 0 };
const plain = (effects) => JSON.parse(JSON.stringify(effects));

test('the hand-written effect lifter returns what the generic canonical-ABI engine lifts', async () => {
  // Two instances given the same calls: one through the package (its hand-written
  // list<effect> lifter), one through abi.mjs's generic lift of the same export.
  const hand = await load();
  const generic = await load();
  const a = hand.Connection.create({ ...CONFIG, url: 'https://connector.example', gatewayId: 'gw', secret: 's3cret' });
  const b = generic.Connection.create({ ...CONFIG, url: 'https://connector.example', gatewayId: 'gw', secret: 's3cret' });
  const kinds = new Set();
  const same = (label, viaHand, viaGeneric) => {
    assert.deepEqual(plain(viaHand), plain(viaGeneric), label);
    for (const e of viaHand) {
      if (e.type === 'emit') assert.deepEqual([...e.line], [...Buffer.from(e.json)], 'the line and its text agree');
      kinds.add(e.type === 'emit' ? `emit:${e.kind}` : e.type);
    }
  };
  const dial = a.start(0);
  same('start', dial, generic[INTERNAL].generic('start', b, 0n));
  assert.match(dial.find((e) => e.type === 'dial')?.authorization ?? '', /^Bearer /, 'a dial with a minted token');
  same('open', a.open(1), generic[INTERNAL].generic('open', b, 1n));
  MESSAGES.forEach((message, i) => {
    const now = 2 + i;
    same(`message ${i}: ${message.slice(0, 40)}`, a.receiveText(now, message), generic[INTERNAL].generic('receiveText', b, BigInt(now), message));
  });
  same('outbound', a.outbound(20, 'r1', '{"op":"send"}'), generic[INTERNAL].generic('outbound', b, 20n, 'r1', '{"op":"send"}', undefined));
  same('shutdown', a.shutdown(30, 0, 'bye'), generic[INTERNAL].generic('shutdown', b, 30n, 0n, 'bye'));
  // The calls reach every effect the lifter has (else this test proves less than it says).
  for (const k of ['dial', 'send', 'emit:state', 'emit:message', 'emit:interrupt', 'log', 'close-link']) {
    assert.ok(kinds.has(k), `saw ${k}: ${[...kinds]}`);
  }
});

test('the main core module is found, and its signatures are the canonical ABI of wit.mjs', () => {
  const wasm = readFileSync(new URL('relay.wasm', packageRoot));
  const module = mainCoreModule(new Uint8Array(wasm));
  const { exports } = coreSignatures(module);
  const [name, params, results] = wit.linkFunctions.receiveText;
  // borrow<link>, u64, string → a pointer to the list<effect>.
  assert.deepEqual(flattenExport(params, results), { params: ['i32', 'i64', 'i32', 'i32'], results: ['i32'] });
  assert.deepEqual(exports.get(name), flattenExport(params, results));
  assert.ok(exports.has('cabi_realloc'));
});

test('a binary that is not a component is refused, saying why', () => {
  assert.throws(() => mainCoreModule(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), /not a WebAssembly binary/);
  assert.throws(() => mainCoreModule(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0])), /a core module, not a component/);
  // A bare component preamble: no core module in it.
  assert.throws(() => mainCoreModule(new Uint8Array([0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0])), /expected one core module/);
});

test('a value that does not fit its WIT type is refused before the guest runs; the instance lives on', async () => {
  const rl = await load();
  const conn = rl.Connection.create(CONFIG);
  conn.open(0);
  assert.throws(() => conn.receiveText(-1, DESCRIPTOR_LINE), RangeError);
  assert.throws(() => conn.receiveText(1, 42), TypeError);
  assert.throws(() => conn.receiveText(1, new Uint8Array([0xff, 0xfe])), { code: 'ERR_ENCODING_INVALID_ENCODED_DATA' });
  assert.throws(() => rl.decode('{}', 2 ** 32), RangeError);
  // A WIT err is a RelayError with its kind, not a trap.
  assert.throws(() => rl.decode('{"type":"outbound_result"}'), (e) => e instanceof RelayError && e.kind === 'missing-field');
  assert.equal(rl[INTERNAL].dead, null);
  assert.ok(conn.receiveText(2, DESCRIPTOR_LINE).some((e) => e.type === 'emit' && e.kind === 'state'));
});

test('a trap kills the instance: every later call says so; a new load() is independent', async () => {
  const rl = await load();
  const [decode] = wit.codecFunctions.decode;
  // A line pointer far outside the guest's memory: the guest's read traps.
  assert.throws(() => rl[INTERNAL].callCore(decode, 0x7fff0000, 64, 1024), WebAssembly.RuntimeError);
  assert.ok(rl[INTERNAL].dead instanceof WebAssembly.RuntimeError);
  assert.throws(() => rl.dialUrl('https://x.example'), /cannot enter component instance/);
  const fresh = await load();
  assert.equal(fresh.dialUrl('https://x.example'), 'wss://x.example/relay');
});
