#!/usr/bin/env node
// Dials a connector on loopback through the relay component, waits for the
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
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { connect } from './relay.mjs';
import { startMiniConnector } from './mini-connector.mjs';

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
  peer = await startMiniConnector(); // sends its inbound message right after the handshake
}
console.log(`dialing ${peer.base}`);

let done = false;
const deadline = setTimeout(() => {
  console.error('no result within 20 s');
  process.exit(1);
}, 20000);

const link = connect({
  base: peer.base,
  config: { identities: [{ platform: 'discord', botId: 'app1' }], ...peer.credentials },
  onLog: (level, message) => {
    if (level === 'warn' || level === 'error') console.log(`[${level}] ${message}`);
  },
  onGiveUp: (reason) => console.log(`gave up: ${reason}`),
  onEvent: async (json) => {
    // Events are small JSON documents; JSON.parse is fine for reading them.
    const event = JSON.parse(json);
    if (done) return; // the close that stop() causes still reports; not of interest here
    switch (event.event) {
      case 'ready':
        console.log(`ready: ${event.descriptor.label} (${event.descriptor.platform})`);
        peer.afterReady?.();
        break;
      case 'message': {
        const m = event.message;
        console.log(`message from ${m.source.user_name || m.source.user_id} in ${m.source.chat_id}: ${JSON.stringify(m.text)}`);
        link.outbound('reply-1', {
          op: 'send',
          chat_id: m.source.chat_id,
          content: `echo: ${m.text}`,
          reply_to: m.message_id,
          metadata: {},
        });
        // A buffered delivery is acknowledged once the application has it.
        if (event.buffer_id) link.ack(event.buffer_id);
        break;
      }
      case 'outbound_result':
        console.log(`outbound ${event.id} result: ${JSON.stringify(event.result)}`);
        console.log(`stats: ${JSON.stringify(link.stats())}`);
        done = true;
        clearTimeout(deadline);
        link.stop();
        await peer.close?.();
        break;
      case 'state':
        console.log(`link: ${event.state}${event.retry_in_ms !== undefined ? ` (retry in ${event.retry_in_ms} ms)` : ''}`);
        break;
      default:
        console.log(`event: ${json}`);
    }
  },
});
