// wit/relay.wit (hermes:relay@0.2.0) as canonical ABI types (abi.mjs): every
// type and function the package calls, in the WIT's own order and spelling, so
// a change to the WIT shows up here as a one-line difference. The core
// signatures derived from this table are checked against the component's main
// module when it is compiled (relay.mjs), so a table that drifted from the
// component fails at load(), not with corrupted values.
import {
  bool,
  borrow,
  enumType,
  list,
  option,
  own,
  record,
  resource,
  result,
  s64,
  string,
  u16,
  u32,
  u64,
  u8,
  variant,
} from './abi.mjs';

// ---- interface types ----------------------------------------------------------------

const json = string;
const jsonBytes = list(u8);

export const errorKind = enumType([
  'malformed-json', 'not-object', 'missing-field', 'invalid-field', 'too-large', 'unknown-type',
]);
export const decodeError = record([['kind', errorKind], ['message', string]]);

const inboundFrame = record([['event', json], ['buffer-id', option(string)]]);
const outboundResultFrame = record([['request-id', string], ['result', json]]);
const interruptInboundFrame = record([['session-key', string], ['chat-id', string]]);
const passthroughFrame = record([['forward', json], ['buffer-id', option(string)]]);
export const connectorFrame = variant([
  ['descriptor', json],
  ['inbound', inboundFrame],
  ['outbound-result', outboundResultFrame],
  ['interrupt-inbound', interruptInboundFrame],
  ['going-idle-ack', null],
  ['passthrough-forward', passthroughFrame],
]);

const helloFrame = record([['platform', string], ['bot-id', string], ['command-manifest', option(json)]]);
const outboundFrame = record([
  ['request-id', string], ['action', json], ['platform', option(string)], ['bot-id', option(string)],
]);
const interruptFrame = record([['session-key', string], ['reason', option(string)]]);
export const gatewayFrame = variant([
  ['hello', helloFrame],
  ['outbound', outboundFrame],
  ['interrupt', interruptFrame],
  ['going-idle', null],
  ['inbound-ack', string],
]);

// ---- interface session --------------------------------------------------------------

const identity = record([['platform', string], ['bot-id', string], ['command-manifest', option(json)]]);
const caps = record([
  ['pending-requests', option(u32)],
  ['buffer-ids', option(u32)],
  ['prompts', option(u32)],
  ['answered-prompts', option(u32)],
  ['egress-chats', option(u32)],
  ['message-ids', option(u32)],
]);
const options = record([
  ['handshake-timeout-ms', option(u64)],
  ['outbound-timeout-ms', option(u64)],
  ['going-idle-timeout-ms', option(u64)],
  ['max-line-bytes', option(u32)],
  ['prompt-nonce', option(string)],
  ['reconnect-jitter-percent', option(u8)],
  ['backoff-base-ms', option(u64)],
  ['backoff-max-ms', option(u64)],
  ['stable-connection-ms', option(u64)],
  ['token-ttl-seconds', option(s64)],
  ['ping-interval-ms', option(u64)],
  ['pong-timeout-ms', option(u64)],
  ['dead-link-close-code', option(u16)],
  ['max-message-bytes', option(u32)],
  ['close-wait-ms', option(u64)],
  ['caps', option(caps)],
]);
export const config = record([
  ['identities', list(identity)],
  ['url', string],
  ['tenant', option(string)],
  ['seed', u64],
  ['unix-offset-ms', s64],
  ['gateway-id', option(string)],
  ['secret', option(string)],
  ['options', options],
]);
export const settings = record([
  ['dial-url', string],
  ['max-message-bytes', u32],
  ['close-wait-ms', u64],
  ['ping-interval-ms', u64],
  ['pong-timeout-ms', u64],
  ['summary', json],
]);
export const linkState = enumType([
  'connecting', 'handshaking', 'ready', 'idle', 'handshake-failed', 'backoff', 'redial',
  'revoked', 'closing', 'stopped',
]);
export const eventKind = enumType([
  'state', 'ready', 'descriptor', 'message', 'interrupt', 'outbound-result', 'prompt-stale', 'idle',
]);
export const event = record([
  ['kind', eventKind],
  ['state', option(linkState)],
  ['id', option(string)],
  ['buffer-id', option(string)],
  ['acked', option(bool)],
  ['line', jsonBytes],
]);
export const logLevel = enumType(['trace', 'debug', 'info', 'warn', 'error']);
const logRecord = record([['level', logLevel], ['message', string]]);
export const outgoing = record([['number', u64], ['line', string]]);
export const dialRequest = record([['url', string], ['authorization', option(string)]]);
export const closeRequest = record([['code', u16], ['reason', string]]);
export const effect = variant([
  ['send', outgoing],
  ['send-ping', null],
  ['emit', event],
  ['close-link', closeRequest],
  ['dial', dialRequest],
  ['log', logRecord],
]);
const owedRequest = record([['id', string], ['action', option(json)]]);
export const recovery = record([
  ['owed', list(owedRequest)],
  ['in-flight', list(string)],
  ['idle-owed', bool],
  ['dial-after-ms', u64],
  ['revoked', bool],
  ['reason', string],
]);
export const stats = record([
  ['state', linkState],
  ['connected', bool],
  ['frames-in', u64],
  ['frames-out', u64],
  ['pending-outbound', u32],
  ['consecutive-failures', u32],
]);

export const link = resource('link', { dtor: 'hermes:relay/session@0.2.0#[dtor]link' });

// ---- functions ----------------------------------------------------------------------
//
// [export name, params, result]; `effects` is list<effect> (relay.mjs lifts it
// with a specialised loader, see there).

export const effects = list(effect);

const CODEC = 'hermes:relay/codec@0.2.0#';
const SESSION = 'hermes:relay/session@0.2.0#';
const self = ['self', borrow(link)];
const now = ['now-ms', u64];

export const codecFunctions = {
  decode: [`${CODEC}decode`, [['line', list(u8)], ['max-line-bytes', u32]], result(connectorFrame, decodeError)],
  encode: [`${CODEC}encode`, [['frame', gatewayFrame]], string],
  dialUrl: [`${CODEC}dial-url`, [['base', string]], string],
  provisionUrl: [`${CODEC}provision-url`, [['base', string]], string],
  upgradeToken: [
    `${CODEC}upgrade-token`,
    [['gateway-id', string], ['secret', string], ['ttl-seconds', s64], ['now-unix-s', s64]],
    string,
  ],
  sign: [`${CODEC}sign`, [['payload', string], ['secret', string]], string],
  normalizeDescriptor: [`${CODEC}normalize-descriptor`, [['descriptor', json]], result(json, decodeError)],
  inboundEvent: [`${CODEC}inbound-event`, [['event', json]], result(json, decodeError)],
  passthroughForward: [`${CODEC}passthrough-forward`, [['forward', json]], result(json, decodeError)],
  discordEvent: [`${CODEC}discord-event`, [['forward', json]], result(option(json), decodeError)],
};

const method = (name) => `${SESSION}[method]link.${name}`;
export const linkFunctions = {
  create: [`${SESSION}[static]link.create`, [['config', config]], result(own(link), decodeError)],
  settings: [method('settings'), [self], settings],
  start: [method('start'), [self, now], effects],
  open: [method('open'), [self, now], effects],
  receiveText: [method('receive-text'), [self, now, ['text', string]], effects],
  receiveBinary: [method('receive-binary'), [self, now, ['bytes', list(u8)]], effects],
  pong: [method('pong'), [self, now], effects],
  pollTimeout: [method('poll-timeout'), [self], option(u64)],
  handleTimeout: [method('handle-timeout'), [self, now], effects],
  outbound: [
    method('outbound'),
    [self, now, ['id', string], ['action', json], ['platform', option(string)]],
    effects,
  ],
  interrupt: [method('interrupt'), [self, now, ['session-key', string], ['reason', option(string)]], effects],
  ack: [method('ack'), [self, now, ['buffer-id', string]], effects],
  nack: [method('nack'), [self, now, ['buffer-id', string]], effects],
  goingIdle: [method('going-idle'), [self, now], effects],
  holdRedial: [method('hold-redial'), [self, now], effects],
  releaseRedial: [method('release-redial'), [self, now], effects],
  command: [method('command'), [self, now, ['command', json]], result(effects, decodeError)],
  writeFailed: [method('write-failed'), [self, now, ['number', u64], ['reason', string]], effects],
  shutdown: [method('shutdown'), [self, now, ['grace-ms', u64], ['reason', option(string)]], effects],
  closed: [method('closed'), [self, now, ['code', option(u16)], ['reason', string]], effects],
  recover: [method('recover'), [self, now, ['recovery', recovery]], effects],
  stats: [method('stats'), [self], stats],
  descriptors: [method('descriptors'), [self], json],
};

// ---- imports ------------------------------------------------------------------------
//
// The component's main module imports these six functions; their WIT types
// (for the signature check; relay.mjs implements them).

const outputStream = resource('output-stream');
const ioError = resource('error');
const streamError = variant([['last-operation-failed', own(ioError)], ['closed', null]]);
export const importTypes = {
  'wasi:io/error@0.2.12\0[resource-drop]error': [[['handle', u32]], null],
  'wasi:cli/stderr@0.2.12\0get-stderr': [[], own(outputStream)],
  'wasi:io/streams@0.2.12\0[method]output-stream.blocking-write-and-flush': [
    [['self', u32], ['contents', list(u8)]],
    result(null, streamError),
  ],
  'wasi:io/streams@0.2.12\0[resource-drop]output-stream': [[['handle', u32]], null],
  '[export]hermes:relay/session@0.2.0\0[resource-new]link': [[['rep', u32]], u32],
  '[export]hermes:relay/session@0.2.0\0[resource-drop]link': [[['handle', u32]], null],
};
