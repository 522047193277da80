// relay-wasm: the relay component (relay.wasm, run on Node's own WebAssembly by
// relay.mjs) for Node. Importing this module does no work; `connect()` and `load()` instantiate
// the component when called.
//
//   import { connect } from 'relay-wasm';
//   const link = await connect('https://connector.example', { identities: [{ platform: 'discord', botId: 'app1' }] });
//   for await (const event of link) { ... }
//
// Types: index.d.ts. The callback-style driver: `relay-wasm/driver`.
export { connect, Link, ClientError, OUTBOUND_ID_PREFIX, DEFAULT_MAX_EVENTS, DEFAULT_CLOSE_GRACE_MS } from './client.mjs';
export { load, RelayError } from './relay.mjs';
