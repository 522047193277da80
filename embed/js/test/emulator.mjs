// Test helper (not a test file): the connector emulator, the `relay-connector`
// binary (docs/CONNECTOR.md), on a free loopback port with upgrade
// authentication, scripted through its stdin, its reports kept and awaitable.
//
// The binary: $RELAY_CONNECTOR, else target/release/relay-connector of the
// repository this file is in (embed/js/test/ → ../../../target).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The emulator binary, or null when there is none (and none was asked for). */
export function connectorBinary() {
  if (process.env.RELAY_CONNECTOR) {
    if (!existsSync(process.env.RELAY_CONNECTOR)) {
      throw new Error(`RELAY_CONNECTOR=${process.env.RELAY_CONNECTOR} does not exist`);
    }
    return process.env.RELAY_CONNECTOR;
  }
  const local = fileURLToPath(new URL('../../../target/release/relay-connector', import.meta.url));
  return existsSync(local) ? local : null;
}

export async function startEmulator(bin = connectorBinary()) {
  const secret = randomBytes(16).toString('hex');
  const child = spawn(bin, ['--listen', '127.0.0.1:0', '--secret-env', 'RELAY_TEST_SECRET'], {
    env: { ...process.env, RELAY_TEST_SECRET: secret, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  const seen = []; // every report after `listening`
  const waiters = new Set();
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const addr = await new Promise((resolve, reject) => {
    child.once('error', reject);
    exited.then((code) => reject(new Error(`relay-connector exited (${code})`)));
    lines.once('line', (line) => resolve(JSON.parse(line).listening));
  });
  lines.on('line', (line) => {
    const report = JSON.parse(line);
    seen.push(report);
    for (const w of waiters) {
      if (w.pred(report)) {
        waiters.delete(w);
        w.resolve(report);
      }
    }
  });
  return {
    base: `http://${addr}`,
    credentials: { gatewayId: 'js-test', secret },
    seen,
    /** One NDJSON command (docs/CONNECTOR.md "Commands"). */
    script: (cmd) => child.stdin.write(`${JSON.stringify(cmd)}\n`),
    /** The first report (past or future) matching `pred`. */
    waitFor(pred, timeoutMs = 5000) {
      const past = seen.find(pred);
      if (past) return Promise.resolve(past);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve };
        waiters.add(w);
        setTimeout(() => {
          if (waiters.delete(w)) reject(new Error(`no matching connector report within ${timeoutMs} ms; saw ${JSON.stringify(seen)}`));
        }, timeoutMs).unref();
      });
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.stdin.end(JSON.stringify({ cmd: 'shutdown' }) + '\n');
      await exited;
    },
  };
}
