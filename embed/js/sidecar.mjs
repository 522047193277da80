#!/usr/bin/env node
// `node sidecar.mjs --config FILE`: one link as a stdio sidecar, the Node
// counterpart of `relay-host run` for one tenant. Commands are APP-PROTOCOL JSON
// lines on stdin, the component's events go to stdout verbatim (one per line),
// logs to stderr. The parity suite (tests/parity/run) runs the same sessions
// through this, through the Python sidecar and through `relay-host run` and
// compares the event streams.
//
// FILE is JSON: {"tenant": "default", "url": "http://127.0.0.1:PORT",
//   "identities": [{"platform", "bot_id", "command_manifest"?}],
//   "gateway_id": null|str, "secret_env": null|"VAR", "seed": int,
//   "options": {<WIT option names in snake_case>: value}, "shutdown_grace_ms": int}
// (`memory_mib` is refused: V8 gives an embedder no cap on a module's memory).
//
// Built on the package's own exports (`relay-wasm`: load, RelayError;
// `relay-wasm/driver`: connectWith). What it adds is what relay-host adds
// (crates/relay-host/src/app.rs, event.rs), with the same texts: the command
// layer (a line that is not UTF-8, not JSON, not an object, without a string
// `op`, for another tenant: an `error` event), `shutdown` and the end of stdin
// (the component's shutdown with shutdown_grace_ms; exit 0 after `state
// stopped`), and answers to commands after the link has stopped. Every other
// command goes to the component's command parser as it is (`driver.command`),
// whose typed rejections become `error` events with `tenant`.
import { readFileSync } from 'node:fs';
import process from 'node:process';

import { load, RelayError } from 'relay-wasm';
import { connectWith } from 'relay-wasm/driver';

/** relay-host's MAX_COMMAND_BYTES. */
const MAX_COMMAND_BYTES = 16 << 20;
/** D9's result for a command to a link that has stopped (relay-host's text). */
const TRANSPORT_CLOSED = 'relay transport closed';

const log = (level, message) => process.stderr.write(`${new Date().toISOString()} ${level} relay-wasm: ${message}\n`);

function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(2);
}

// ---- configuration --------------------------------------------------------------

const camel = (name) => name.replace(/_([a-z])/g, (_, c) => c.toUpperCase());

function readConfig(argv) {
  const at = argv.indexOf('--config');
  if (at < 0 || !argv[at + 1]) fail('usage: node sidecar.mjs --config FILE');
  const file = argv[at + 1];
  let config;
  try {
    config = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    fail(`${file}: ${e.message}`);
  }
  if (config.memory_mib != null) {
    fail(`${file}: memory_mib: the JS package cannot cap guest memory (V8 gives an embedder no limit on a module's memory)`);
  }
  let secret;
  if (config.secret_env) {
    secret = (process.env[config.secret_env] ?? '').trim();
    if (!secret) fail(`${file}: secret_env: environment variable ${config.secret_env} is not set or empty`);
  }
  const linkConfig = {
    identities: (config.identities ?? []).map((i) => ({
      platform: i.platform,
      botId: i.bot_id,
      commandManifest: i.command_manifest ?? undefined,
    })),
    tenant: config.tenant ?? 'default',
    seed: config.seed ?? undefined,
    gatewayId: config.gateway_id ?? undefined,
    secret,
  };
  for (const [name, value] of Object.entries(config.options ?? {})) {
    if (name === 'caps' && value) {
      linkConfig.caps = Object.fromEntries(Object.entries(value).map(([k, v]) => [camel(k), v]));
    } else {
      linkConfig[camel(name)] = value;
    }
  }
  return {
    file,
    url: config.url,
    tenant: linkConfig.tenant,
    graceMs: config.shutdown_grace_ms ?? 5000,
    linkConfig,
  };
}

// ---- relay-host's event shapes ----------------------------------------------------

const error = (kind, message) => ({ event: 'error', error: { kind, message } });

// `tenant` after `event`, the other fields in relay-host's order: its
// `event::for_tenant` removes `event` from an order-preserving serde_json Map,
// a swap-remove, so the last field takes its place.
function forTenant(tenant, event) {
  const items = Object.entries(event);
  const at = items.findIndex(([k]) => k === 'event');
  const name = items[at][1];
  const last = items.pop();
  if (at < items.length) items[at] = last;
  return { event: name, tenant, ...Object.fromEntries(items) };
}

// Rust's `str::trim`: Unicode White_Space, nothing else (not U+FEFF, not U+001C..1F).
const WHITE = new Set([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004,
  0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
]);
function rustTrim(s) {
  let a = 0;
  let b = s.length;
  while (a < b && WHITE.has(s.charCodeAt(a))) a += 1;
  while (b > a && WHITE.has(s.charCodeAt(b - 1))) b -= 1;
  return s.slice(a, b);
}

// The offset of the first byte that is not valid UTF-8 (Rust's
// `Utf8Error::valid_up_to`), or -1 when all of it is.
function invalidUtf8At(b) {
  let i = 0;
  const n = b.length;
  while (i < n) {
    const c = b[i];
    if (c < 0x80) {
      i += 1;
      continue;
    }
    let need;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c === 0xe0) lo = 0xa0;
      if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c === 0xf0) lo = 0x90;
      if (c === 0xf4) hi = 0x8f;
    } else return i;
    if (i + 1 >= n || b[i + 1] < lo || b[i + 1] > hi) return i;
    for (let k = 2; k <= need; k += 1) {
      if (i + k >= n || (b[i + k] & 0xc0) !== 0x80) return i;
    }
    i += need + 1;
  }
  return -1;
}

// ---- the sidecar ----------------------------------------------------------------------

const cfg = readConfig(process.argv.slice(2));
const out = (line) => {
  try {
    process.stdout.write(`${line}\n`); // synchronous for pipes and files on Linux
  } catch {
    // nobody reads any more; the link still ends cleanly
  }
};
const emit = (event) => out(JSON.stringify(event));

let stopped = false; // the component said `state stopped` (or the link ended)
let driver;
try {
  driver = connectWith({
    relay: await load(),
    base: cfg.url,
    config: cfg.linkConfig,
    onEvent(json, e) {
      if (e.kind === 'state' && e.state === 'stopped') stopped = true;
      out(json);
    },
    onLog: log,
    onEnd(reason, cause) {
      if (cause !== undefined && !stopped) {
        // No guest is left to say it (relay-host's `finish`).
        stopped = true;
        emit(forTenant(cfg.tenant, { event: 'state', state: 'stopped', reason: String(reason).slice(0, 300) }));
      }
      stopped = true;
    },
  });
} catch (e) {
  fail(`${cfg.file}: ${e instanceof RelayError ? `the component rejected the configuration: ${e.message}` : e.message}`);
}

function reject(kind, message, command, tenant = false) {
  const event = error(kind, message);
  if (command && Object.hasOwn(command, 'id')) event.id = command.id;
  emit(tenant ? forTenant(cfg.tenant, event) : event);
}

const kindName = (kind) => String(kind).replaceAll('-', '_');

/** relay-host's `answer_when_stopped`. */
function answerStopped(op, command) {
  let event;
  if (op === 'outbound' && typeof command.id === 'string') {
    event = { event: 'outbound_result', id: command.id, result: { success: false, error: TRANSPORT_CLOSED } };
  } else if (op === 'going_idle') {
    event = { event: 'idle', acked: false };
  } else {
    event = error('stopped', `tenant \`${cfg.tenant}\` is stopped`);
    if (Object.hasOwn(command, 'id')) event.id = command.id;
  }
  emit(forTenant(cfg.tenant, event));
}

/** One command line (a Buffer without its newline); false once the sidecar must end. */
function line(raw) {
  if (raw.length > MAX_COMMAND_BYTES) {
    reject('too_large', `command line longer than ${MAX_COMMAND_BYTES} bytes skipped`);
    return true;
  }
  const bad = invalidUtf8At(raw);
  if (bad >= 0) {
    reject('malformed_json', `command line is not UTF-8 (invalid byte at offset ${bad}); skipped`);
    return true;
  }
  const text = rustTrim(raw.toString('utf8'));
  if (!text) return true;
  let command;
  try {
    command = JSON.parse(text);
  } catch {
    notJson(text);
    return true;
  }
  if (command === null || typeof command !== 'object' || Array.isArray(command)) {
    reject('not_object', 'command is not a JSON object');
    return true;
  }
  const { op } = command;
  if (op === undefined || op === null) {
    reject('missing_field', 'missing field `op`', command);
    return true;
  }
  if (typeof op !== 'string') {
    reject('invalid_field', '`op` is not a string', command);
    return true;
  }
  if (op === 'shutdown') return false;
  const { tenant } = command;
  if (typeof tenant === 'string') {
    if (tenant !== cfg.tenant) {
      reject('unknown_tenant', `unknown tenant \`${Array.from(tenant).slice(0, 80).join('')}\``, command);
      return true;
    }
  } else if (tenant !== undefined && tenant !== null) {
    reject('invalid_field', '`tenant` is not a string', command);
    return true;
  }
  if (stopped || driver.ended) {
    answerStopped(op, command);
    return true;
  }
  try {
    driver.command(text);
  } catch (e) {
    if (!(e instanceof RelayError)) throw e;
    const kind = kindName(e.kind);
    // JSON that JS reads but the component's parser does not: relay-host
    // refuses it before any tenant.
    const notJsonToo = kind === 'malformed_json' && e.message.startsWith('command is not JSON');
    reject(kind, e.message, notJsonToo ? undefined : command, !notJsonToo);
  }
  return true;
}

/** The component's parser words it (the same JSON library as relay-host's). */
function notJson(text) {
  try {
    driver.command(text);
  } catch (e) {
    if (e instanceof RelayError) reject(kindName(e.kind), e.message);
    else reject('malformed_json', `command is not JSON (${e.message})`);
    return;
  }
  log('warn', `a line JSON.parse refused was taken by the component: ${text.slice(0, 80)}`);
}

let ending = false;
async function end() {
  if (ending) return;
  ending = true;
  process.stdin.pause();
  if (!driver.ended) await driver.shutdown(cfg.graceMs);
  process.exit(0);
}

let pending = Buffer.alloc(0);
process.stdin.on('data', (chunk) => {
  if (ending) return;
  let buf = pending.length ? Buffer.concat([pending, chunk]) : chunk;
  let nl;
  while ((nl = buf.indexOf(0x0a)) >= 0) {
    const raw = buf.subarray(0, nl);
    buf = buf.subarray(nl + 1);
    if (!line(raw)) {
      end();
      return;
    }
  }
  pending = Buffer.from(buf);
});
process.stdin.on('end', () => {
  if (!ending && pending.length && !line(pending)) {
    end();
    return;
  }
  end();
});
