#!/usr/bin/env node
// Dials a connector on loopback through the relay component (the package's
// client: `connect()`, `for await`, `outbound()`, `close()`), waits for the
// handshake, answers the first inbound message with an outbound `send` and
// prints the result.
//
//   node example.mjs --emulator [CONNECTOR]  spawns the connector emulator, the
//                                            `relay-connector` binary (default
//                                            ../../target/release/relay-connector),
//                                            with upgrade authentication, and scripts
//                                            one inbound message on its stdin
//   node example.mjs URL                     dials a running connector (something
//                                            else must send the inbound message);
//                                            RELAY_GATEWAY_ID / RELAY_SECRET set credentials
//   node example.mjs                         uses mini-connector.mjs (no Rust build needed)
//
// It imports the package by name: in embed/js that is this folder (a package
// may import itself), copied next to an installed `relay-wasm` it is that one.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { connect } from 'relay-wasm';

/** `relay-connector` on a free loopback port, scripted through its stdin. */
async function startEmulator(bin) {
  const secret = randomBytes(16).toString('hex');
  const child = spawn(bin, ['--listen', '127.0.0.1:0', '--secret-env', 'EXAMPLE_SECRET'], {
    env: { ...process.env, EXAMPLE_SECRET: secret, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  // Its first stdout line is {"listening": "<addr>"}; later lines are observations.
  const addr = await new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`connector exited (${code})`)));
    lines.once('line', (line) => resolve(JSON.parse(line).listening));
  });
  lines.on('line', (line) => console.log(`  connector: ${line}`));
  const script = (cmd) => child.stdin.write(`${JSON.stringify(cmd)}\n`);
  return {
    base: `http://${addr}`,
    credentials: { gatewayId: 'js-example', secret },
    afterReady: () =>
      script({
        cmd: 'inbound',
        buffered: true,
        event: {
          text: 'hello from the emulator',
          message_id: 'm1',
          source: { platform: 'discord', chat_id: 'c1', chat_type: 'dm', user_id: 'u1', user_name: 'amy' },
        },
      }),
    close() {
      script({ cmd: 'shutdown' });
      return new Promise((done) => child.once('exit', done));
    },
  };
}

const args = process.argv.slice(2);
let peer;
if (args[0] === '--emulator') {
  peer = await startEmulator(args[1] ?? fileURLToPath(new URL('../../target/release/relay-connector', import.meta.url)));
} else if (args[0]) {
  const env = process.env;
  peer = { base: args[0], credentials: { gatewayId: env.RELAY_GATEWAY_ID, secret: env.RELAY_SECRET } };
} else {
  const { startMiniConnector } = await import('./mini-connector.mjs');
  peer = await startMiniConnector(); // sends its inbound message right after the handshake
}
console.log(`dialing ${peer.base}`);

const deadline = setTimeout(() => {
  console.error('no result within 20 s');
  process.exit(1);
}, 20000);

const link = await connect(
  peer.base,
  { identities: [{ platform: 'discord', botId: 'app1' }], ...peer.credentials },
  {
    onLog: (level, message) => {
      if (level === 'warn' || level === 'error') console.log(`[${level}] ${message}`);
    },
  },
);

for await (const event of link) {
  switch (event.event) {
    case 'ready':
      console.log(`ready: ${event.descriptor.label} (${event.descriptor.platform})`);
      peer.afterReady?.();
      break;
    case 'message': {
      const m = event.message;
      console.log(`message from ${m.source.user_name || m.source.user_id} in ${m.source.chat_id}: ${JSON.stringify(m.text)}`);
      // Resolves with the outbound_result that answers this call (its id is the client's).
      const answer = await link.outbound({
        op: 'send',
        chat_id: m.source.chat_id,
        content: `echo: ${m.text}`,
        reply_to: m.message_id,
        metadata: {},
      });
      console.log(`outbound ${answer.id} result: ${JSON.stringify(answer.result)}`);
      // A buffered delivery is acknowledged once the application has it.
      if (event.buffer_id) link.ack(event.buffer_id);
      console.log(`stats: ${JSON.stringify(link.stats())}`);
      clearTimeout(deadline);
      await link.close(); // going_idle, then the socket closes; the loop ends after `stopped`
      break;
    }
    case 'state':
      console.log(`link: ${event.state}${event.retry_in_ms !== undefined ? ` (retry in ${event.retry_in_ms} ms)` : ''}${event.reason ? ` (${event.reason})` : ''}`);
      break;
    default:
      console.log(`event: ${JSON.stringify(event)}`);
  }
}
await peer.close?.();
