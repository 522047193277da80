// Type declarations for `relay-wasm` (hand-written; the runtime is index.mjs,
// client.mjs and relay.mjs). Event and command names and fields are those of
// spec/SIDECAR.md §2 and §3; frames and effects those of the WIT (wit/), in the
// shapes relay.mjs gives them (docs/CORE-ABI.md: how it runs relay.wasm).

// ---- configuration ----------------------------------------------------------------

/** One bot identity the gateway fronts: one `hello` per identity. */
export interface Identity {
  platform: string;
  botId: string;
  /** A command manifest sent with the hello: JSON text, or a value to stringify. */
  commandManifest?: unknown;
}

/** The component's memory caps (WIT `caps`); each at least 1, absent = the component's default. */
export interface Caps {
  /** 4096. */
  pendingRequests?: number;
  /** 4096. */
  bufferIds?: number;
  /** 1024. */
  prompts?: number;
  /** 256. */
  answeredPrompts?: number;
  /** 4096. */
  egressChats?: number;
  /** 4096. */
  messageIds?: number;
}

/**
 * The link config, camelCase: the WIT `config` with the fields of its `options`
 * record given flat. An omitted setting is passed as `none` and takes the
 * component's default (shown); nothing is defaulted on the JavaScript side but
 * the seed. Numbers may be given as `number` or `bigint`.
 */
export interface Config {
  identities: Identity[];
  /** With `secret`: every dial carries a signed upgrade token (the component mints it). */
  gatewayId?: string;
  secret?: string;
  /** Seed of the request ids and the backoff jitter (default: random bits). */
  seed?: number | bigint;
  /** Descriptor deadline after the socket opens (30000). */
  handshakeTimeoutMs?: number | bigint;
  /** Deadline of one outbound request (30000): `relay outbound timed out`. */
  outboundTimeoutMs?: number | bigint;
  /** Deadline of a `going_idle` (10000): `idle {acked: false}`. */
  goingIdleTimeoutMs?: number | bigint;
  /** Longest frame line accepted (1 MiB). */
  maxLineBytes?: number;
  /** The nonce of this gateway's prompts (""). */
  promptNonce?: string;
  /** Backoff jitter over [d·(1−p/100), d] (50). */
  reconnectJitterPercent?: number;
  /** First backoff delay (1000), doubling up to backoffMaxMs. */
  backoffBaseMs?: number | bigint;
  /** Backoff cap (30000). */
  backoffMaxMs?: number | bigint;
  /** A connection this long resets the backoff ladder (60000). */
  stableConnectionMs?: number | bigint;
  /** Lifetime of an upgrade token in seconds (300). */
  tokenTtlSeconds?: number | bigint;
  /** A WebSocket ping this often while a socket is up; 0: keepalive off (30000). */
  pingIntervalMs?: number | bigint;
  /** No pong this long after the first unanswered ping: the link is dead (60000). */
  pongTimeoutMs?: number | bigint;
  /** The close code of a dead link (1011). */
  deadLinkCloseCode?: number;
  /** Larger WebSocket messages fail the socket (4 MiB). */
  maxMessageBytes?: number;
  /** How long a close handshake may take before the socket is dropped (2000). */
  closeWaitMs?: number | bigint;
  /** Memory caps; each one left out takes the component's default. */
  caps?: Caps;
}

/** What `Connection.create` takes: the config plus what `connect()` fills in itself. */
export interface ConnectionConfig extends Config {
  /** The connector's base URL; the component derives each dial's URL (default "": nothing is dialled). */
  url?: string;
  /** Written as `"tenant"` into every event line, when set. */
  tenant?: string;
  /** Unix ms minus the monotonic `nowMs` passed (default: for `Math.floor(performance.now())`). */
  unixOffsetMs?: number | bigint;
}

// ---- events (SIDECAR.md §2) ---------------------------------------------------------

/** A link state (SIDECAR.md §2.1, WIT `link-state`). A newer component may report others. */
export type LinkState =
  | 'connecting'
  | 'handshaking'
  | 'ready'
  | 'idle'
  | 'handshake_failed'
  | 'backoff'
  | 'redial'
  | 'revoked'
  | 'closing'
  | 'stopped';

/** Fields every event may carry: a link's events have no `tenant` (the sidecar host adds it). */
interface EventBase {
  tenant?: string;
}

/** The platform descriptor (PROTOCOL.md §3.3), normalised by the component. */
export interface Descriptor {
  contract_version: number;
  platform: string;
  label: string;
  max_message_length: number;
  supports_draft_streaming: boolean;
  supports_edit: boolean;
  supports_threads: boolean;
  markdown_dialect: string;
  len_unit: string;
  emoji: string;
  platform_hint: string;
  pii_safe: boolean;
  supports_context: boolean;
  supports_inchannel_continuable: boolean;
  supports_block_formatting: boolean;
  supported_ops: string[];
  [key: string]: unknown;
}

/** Where a message came from (PROTOCOL.md §4). */
export interface MessageSource {
  platform: string;
  chat_id: string;
  chat_type: string;
  chat_name?: string | null;
  user_id?: string | null;
  user_name?: string | null;
  thread_id?: string | null;
  chat_topic?: string | null;
  user_id_alt?: string | null;
  chat_id_alt?: string | null;
  scope_id?: string | null;
  parent_chat_id?: string | null;
  message_id?: string | null;
  profile?: string | null;
  auto_thread_created?: boolean;
  auto_thread_initial_name?: string | null;
  prospective_thread_id?: string | null;
  [key: string]: unknown;
}

/** The canonical message event (PROTOCOL.md §4, §9.3). */
export interface InboundMessage {
  text: string;
  message_type: 'text' | 'location' | 'photo' | 'video' | 'audio' | 'voice' | 'document' | 'sticker' | 'command';
  message_id: string | null;
  source: MessageSource;
  reply_to_message_id?: string | null;
  reply_to_text?: string | null;
  reply_to_author_name?: string | null;
  reply_to_is_own_message?: boolean;
  media_urls: string[];
  media_types: string[];
  channel_context: string | null;
  prompt_response: Record<string, unknown> | null;
  metadata: Record<string, unknown>;
  [key: string]: unknown;
}

/** `state`: the link changed (SIDECAR.md §2.1); every one comes from the component. */
export interface StateEvent extends EventBase {
  event: 'state';
  state: LinkState;
  /** With `backoff`: milliseconds until the next dial. */
  retry_in_ms?: number;
  /** On `stopped` (`shutdown` after close()), after a replaced guest instance, and some others. */
  reason?: string;
}

/** `ready`: the first valid descriptor of a connection: the link can relay. */
export interface ReadyEvent extends EventBase {
  event: 'ready';
  descriptor: Descriptor;
}

/** `descriptor`: each later descriptor on the same connection (D15). */
export interface DescriptorEvent extends EventBase {
  event: 'descriptor';
  platform: string;
  descriptor: Descriptor;
}

/** `message`: an inbound event (or a converted Discord interaction) delivered. */
export interface MessageEvent extends EventBase {
  event: 'message';
  message: InboundMessage;
  /** Set for buffered deliveries: answer with `ack` or `nack` (SIDECAR.md §7). */
  buffer_id: string | null;
}

/** `interrupt`: the connector asks to stop a turn. */
export interface InterruptEvent extends EventBase {
  event: 'interrupt';
  session_key: string;
  chat_id: string;
}

/** The connector's result of an action (`success`, `message_id`, `error`, op-specific fields). */
export interface OutboundResultBody {
  success?: boolean;
  message_id?: string;
  /** The failure text (PROTOCOL.md §5.1 for the component's own). */
  error?: string;
  /** The action may or may not have happened (a lost connection, a timeout). */
  ambiguous?: boolean;
  [key: string]: unknown;
}

/** `outbound_result`: the one answer to an `outbound`, and what `link.outbound()` resolves with. */
export interface OutboundResult extends EventBase {
  event: 'outbound_result';
  /** The `id` of the `outbound` command this answers. */
  id: string;
  result: OutboundResultBody;
}

/** `prompt_stale`: a press on one of this gateway's prompts that is unknown or expired. */
export interface PromptStaleEvent extends EventBase {
  event: 'prompt_stale';
  chat_id: string;
  thread_id: string | null;
  prompt_id: string;
}

/** `idle`: the answer to `going_idle` (also during close(); `acked: false` from a replacement instance that owed it). */
export interface IdleEvent extends EventBase {
  event: 'idle';
  acked: boolean;
}

/** `error`: a command that could not be taken (the sidecar host's; a link throws ClientError instead). */
export interface ErrorEvent extends EventBase {
  event: 'error';
  error: { kind: string; message: string };
  id?: unknown;
}

/**
 * One event of a link, as `for await (const event of link)` yields it.
 * An event a newer component adds arrives as it was emitted (an object with
 * `event`); it is not part of this union.
 */
export type Event =
  | StateEvent
  | ReadyEvent
  | DescriptorEvent
  | MessageEvent
  | InterruptEvent
  | OutboundResult
  | PromptStaleEvent
  | IdleEvent
  | ErrorEvent;

/** An event this version does not know. */
export interface UnknownEvent extends EventBase {
  event: string;
  [key: string]: unknown;
}

// ---- commands (SIDECAR.md §3) -------------------------------------------------------

/** An outbound action: an object with `op` (PROTOCOL.md §5), passed on verbatim. */
export interface OutboundAction {
  op: 'send' | 'edit' | 'typing' | 'follow_up' | 'get_chat_info' | 'send_media' | 'prompt' | (string & {});
  chat_id?: string | number;
  content?: string;
  message_id?: string;
  reply_to?: string | null;
  metadata?: Record<string, unknown> | null;
  [key: string]: unknown;
}

export interface OutboundCommand {
  op: 'outbound';
  /** Echoed by the answer; use ids without the `relay-client-` prefix. */
  id: string;
  action: OutboundAction;
  /** The platform to act on; absent or "" = the chat's (or none). */
  platform?: string | null;
}
export interface InterruptCommand {
  op: 'interrupt';
  session_key: string;
  reason?: string | null;
}
export interface AckCommand {
  op: 'ack';
  buffer_id: string | number;
}
export interface NackCommand {
  op: 'nack';
  buffer_id: string | number;
}
export interface GoingIdleCommand {
  op: 'going_idle';
}
export interface HoldRedialCommand {
  op: 'hold_redial';
}
export interface ReleaseRedialCommand {
  op: 'release_redial';
}

/** A command for `link.send()` (`status` and `shutdown` are the sidecar host's, not a link's). */
export type Command =
  | OutboundCommand
  | InterruptCommand
  | AckCommand
  | NackCommand
  | GoingIdleCommand
  | HoldRedialCommand
  | ReleaseRedialCommand;

// ---- errors -------------------------------------------------------------------------

/** The component's decode-error kinds (WIT `error-kind`), kebab-case. */
export type RelayErrorKind = 'malformed-json' | 'not-object' | 'missing-field' | 'invalid-field' | 'too-large' | 'unknown-type';

/** A typed rejection from the component (WIT `decode-error`). Any other exception
 *  from a component call is a trap: that instance is dead. */
export class RelayError extends Error {
  constructor(error: { kind: RelayErrorKind; message: string });
  readonly name: 'RelayError';
  readonly kind: RelayErrorKind;
}

/**
 * Why a link call got no answer; `kind` is a SIDECAR.md §4 error kind:
 * `stopped` when the link ended (close(), or its guest instance failed) before
 * or while the call waited (the Rust client's `HostStopped`); otherwise the
 * component refused the command and nothing was sent (`Rejected`), with the
 * RelayError as `cause`.
 */
export class ClientError extends Error {
  readonly name: 'ClientError';
  readonly kind: 'stopped' | 'invalid_field' | 'missing_field' | 'malformed_json' | 'not_object' | 'unknown_type' | 'too_large' | (string & {});
}

// ---- the component (load) -----------------------------------------------------------

/** Which event an `emit` effect carries (the `event` of its line; WIT `event-kind`). */
export type EventKind = 'state' | 'ready' | 'descriptor' | 'message' | 'interrupt' | 'outbound_result' | 'prompt_stale' | 'idle';

/** `emit`: an event for the application, its typed facts beside the line. */
export interface EmitEffect {
  type: 'emit';
  kind: EventKind;
  /** `state`: the new state (`stopped` is the link's last event). */
  state?: LinkState;
  /** `outbound_result`: the application's id from its `outbound`. */
  id?: string;
  /** `message`: the buffer id to ack, when buffered. */
  bufferId?: string;
  /** `idle`: whether the connector acknowledged. */
  acked?: boolean;
  /** The APP-PROTOCOL line: compact JSON, no newline (`tenant` first when configured). */
  json: string;
}

/** One effect of a Connection call (WIT `effect`), for whoever drives it (driver.mjs does). */
export type Effect =
  /** Write one text message; report a failed write with `writeFailed(nowMs, number, reason)`. */
  | { type: 'send'; text: string; number: number }
  /** Send a WebSocket ping; report its pong with `pong(nowMs)`. */
  | { type: 'send-ping' }
  | EmitEffect
  /** Close the socket with this code; then `closed(nowMs, code, reason)` once it ended. */
  | { type: 'close-link'; code: number; reason: string }
  /** Open a WebSocket to `url` (with this Authorization header value); then `open` or `closed`. */
  | { type: 'dial'; url: string; authorization?: string }
  | { type: 'log'; level: 'trace' | 'debug' | 'info' | 'warn' | 'error'; message: string };

/** The component's counters (WIT `stats`) under their `status` names, and the fronted platforms. */
export interface Stats {
  state: LinkState;
  connected: boolean;
  frames_in: number;
  frames_out: number;
  pending_outbound: number;
  consecutive_failures: number;
  /** The platforms with a descriptor on the current connection. */
  platforms: string[];
}

/** The settings in force (WIT `settings`), every default applied. */
export interface Settings {
  /** The WebSocket URL the dials use. */
  dialUrl: string;
  maxMessageBytes: number;
  closeWaitMs: number;
  pingIntervalMs: number;
  pongTimeoutMs: number;
  /** The whole configuration, without secrets (for logs). */
  summary: Record<string, unknown>;
}

/** What a failed instance's host knows, for the one that replaces it (WIT `recovery`). */
export interface Recovery {
  /** Outbound requests not yet answered: the application's id and, when kept, its action. */
  owed: { id: string; action?: JsonIn }[];
  /** Buffer ids delivered and neither acked nor nacked. */
  inFlight: string[];
  /** A `going_idle` waited for its `idle`. */
  idleOwed: boolean;
  /** Dial again after this long (the host's restart delay). */
  dialAfterMs: Time;
  /** The failed instance had been told never to dial again. */
  revoked: boolean;
  /** The `reason` of the `state` event that follows. */
  reason: string;
}

type Time = number | bigint;
/** JSON text, or a value that is JSON.stringify'd. */
type JsonIn = string | object | number | boolean | null;

/**
 * The link state machine (the WIT resource `link`): feed it what happens,
 * perform its effects, and call `handleTimeout` at `pollTimeout()`.
 */
export class Connection {
  private constructor();
  /** Throws RelayError when the component refuses the config. */
  static create(config: ConnectionConfig): Connection;
  settings(): Settings;
  /** Begin: `state connecting` and the first `dial`. */
  start(nowMs: Time): Effect[];
  /** The socket of the last `dial` is up. */
  open(nowMs: Time): Effect[];
  receiveText(nowMs: Time, text: string): Effect[];
  receiveBinary(nowMs: Time, bytes: Uint8Array): Effect[];
  /** A pong arrived. */
  pong(nowMs: Time): Effect[];
  /** When to call handleTimeout next (monotonic ms); undefined: never. Ask after every call. */
  pollTimeout(): number | undefined;
  /** Everything due by `nowMs` happens, in due order. */
  handleTimeout(nowMs: Time): Effect[];
  outbound(nowMs: Time, id: string, action: JsonIn, platform?: string | null): Effect[];
  interrupt(nowMs: Time, sessionKey: string, reason?: string | null): Effect[];
  ack(nowMs: Time, bufferId: string): Effect[];
  nack(nowMs: Time, bufferId: string): Effect[];
  goingIdle(nowMs: Time): Effect[];
  holdRedial(nowMs: Time): Effect[];
  releaseRedial(nowMs: Time): Effect[];
  /** An APP-PROTOCOL command (without `tenant`); throws RelayError. */
  command(nowMs: Time, command: Command | string): Effect[];
  /** Frame `number` (of a `send` effect) and those after it were not written. */
  writeFailed(nowMs: Time, number: Time, reason: string): Effect[];
  /**
   * End the link: a ready link sends `going_idle` and waits at most `graceMs`
   * for its ack; then what waits is answered, the socket closed with 1000, and
   * `state stopped` (with `reason`, default "shutdown") is the last event.
   */
  shutdown(nowMs: Time, graceMs?: Time, reason?: string | null): Effect[];
  /** The socket ended, or a dial failed; `code` null/undefined when there was none. */
  closed(nowMs: Time, code: number | null | undefined, reason?: string): Effect[];
  /** Take over from a failed instance (once, before `start`). */
  recover(nowMs: Time, recovery: Recovery): Effect[];
  stats(): Stats;
  /** {platform: descriptor} of the current connection. */
  descriptors(): Record<string, Descriptor>;
  /** Drops the resource now instead of at garbage collection. */
  free(): void;
}

// ---- the WIT frames (hermes:relay/types@0.2.0), as decode/encode give and take them ----
// A WIT variant is `{tag, val}` with the tag in kebab-case; an option is a field that
// may be absent; `Json` is JSON text (relay.mjs, "Shapes").

export type Json = string;

export interface InboundFrame { event: Json; bufferId?: string }
export interface OutboundResultFrame { requestId: string; result: Json }
export interface InterruptInboundFrame { sessionKey: string; chatId: string }
export interface PassthroughFrame { forward: Json; bufferId?: string }

/** A connector frame (WIT `connector-frame`), from `decode`. */
export type ConnectorFrame =
  | { tag: 'descriptor'; val: Json }
  | { tag: 'inbound'; val: InboundFrame }
  | { tag: 'outbound-result'; val: OutboundResultFrame }
  | { tag: 'interrupt-inbound'; val: InterruptInboundFrame }
  | { tag: 'going-idle-ack' }
  | { tag: 'passthrough-forward'; val: PassthroughFrame };

export interface HelloFrame { platform: string; botId: string; commandManifest?: Json }
export interface OutboundFrame { requestId: string; action: Json; platform?: string; botId?: string }
export interface InterruptFrame { sessionKey: string; reason?: string }

/** A gateway frame (WIT `gateway-frame`), for `encode`. */
export type GatewayFrame =
  | { tag: 'hello'; val: HelloFrame }
  | { tag: 'outbound'; val: OutboundFrame }
  | { tag: 'interrupt'; val: InterruptFrame }
  | { tag: 'going-idle' }
  | { tag: 'inbound-ack'; val: string };

/** One instance of the component (its own memory), from `await load()`. */
export interface Relay {
  /** One line (no newline) → the frame; throws RelayError. */
  decode(line: Uint8Array | string, maxLineBytes?: number): ConnectorFrame;
  /** A frame → one JSON line without the newline. */
  encode(frame: GatewayFrame): string;
  dialUrl(base: string): string;
  provisionUrl(base: string): string;
  upgradeToken(gatewayId: string, secret: string, ttlSeconds: Time, nowUnixS: Time): string;
  sign(payload: string, secret: string): string;
  /** JSON in, canonical JSON text out; throws RelayError. */
  normalizeDescriptor(json: JsonIn): string;
  inboundEvent(json: JsonIn): string;
  passthroughForward(json: JsonIn): string;
  /** JSON text of the MessageEvent, or undefined when the forward is dropped. */
  discordEvent(json: JsonIn): string | undefined;
  Connection: typeof Connection;
  /** Another fresh, isolated instance, synchronously (a replacement after a trap). */
  instantiate(): Relay;
}

export interface LoadOptions {
  /** Receives the guest's stderr (panic messages); dropped by default. */
  stderr?: (text: string) => void;
}

/**
 * A fresh, isolated instance of the component. The first call in a process
 * imports the glue and compiles the core modules; later ones only instantiate
 * (~0.5 ms). Importing the package does none of this.
 */
export function load(options?: LoadOptions): Promise<Relay>;

// ---- the client ---------------------------------------------------------------------

/** The prefix of the ids `outbound()` generates (`relay-client-1`, ...). */
export const OUTBOUND_ID_PREFIX: 'relay-client-';
/** Events buffered before the socket stops being read: 4096. */
export const DEFAULT_MAX_EVENTS: number;
/** How long close() waits for the connector's idle ack: 5000 ms. */
export const DEFAULT_CLOSE_GRACE_MS: number;

export interface ConnectOptions {
  /**
   * Events buffered before the link stops reading its socket (default 4096).
   * Reading resumes when the buffer is down to half. Events that do not come
   * from the socket (timeouts, answers to your commands, states) are still
   * buffered while paused, so the buffer can pass this by those.
   */
  maxEvents?: number;
  /** The component's logs and the link's own (a guest failure). */
  onLog?: (level: string, message: string) => void;
  /** An instance from `await load()` (default: a fresh one for this link). */
  relay?: Relay;
  /** With a fresh instance: its stderr (see LoadOptions). */
  stderr?: (text: string) => void;
  /** TCP + TLS + upgrade deadline per dial (default 30000). */
  dialTimeoutMs?: number;
  /**
   * Guest failures survived within `windowMs`, each followed by a fresh instance
   * (default 5 within 60000, the Rust host's); one more ends the link.
   */
  restartBudget?: RestartBudget;
}

/** How many guest failures a link survives. */
export interface RestartBudget {
  maxRestarts: number;
  windowMs: number;
}

export interface OutboundOptions {
  /** The platform to act on (a multi-identity gateway); default: the chat's. */
  platform?: string;
  /**
   * Stop waiting: the call rejects with `signal.reason`. Already aborted: nothing
   * is sent. Aborted later: the action may still happen; its result then
   * arrives on the event stream.
   */
  signal?: AbortSignal;
}

export interface CloseOptions {
  /** How long to wait for the connector's `going_idle_ack` (default 5000; 0: do not go idle). */
  graceMs?: number;
}

/** One link to a connector (across its re-dials), from `connect()`. */
export class Link implements AsyncIterable<Event> {
  private constructor();
  /**
   * The next event, or `undefined` once the link has ended (after its
   * `{event: 'state', state: 'stopped'}`, or when no guest could be rebuilt).
   */
  nextEvent(): Promise<Event | undefined>;
  /** Leaving a `for await` loop early does not close the link; a later loop goes on. */
  [Symbol.asyncIterator](): AsyncIterator<Event, undefined>;
  /** Events waiting in the buffer. */
  readonly bufferedEvents: number;
  /** Whether the socket is not read because the buffer is full. */
  readonly paused: boolean;
  /** Whether the link has ended (close(), a spent restart budget, or a guest that could not be rebuilt). */
  readonly stopped: boolean;
  /** The `reason` of its `state stopped` (`'shutdown'` after close()), or why no guest could be rebuilt; null while it runs. */
  readonly stopReason: string | null;

  /**
   * Sends `action` as an `outbound` under a fresh id and resolves with the
   * `outbound_result` that answers it (it is not put on the stream). A failed
   * or refused action resolves too (`result.success === false`); rejects with
   * ClientError `stopped` or `signal.reason`.
   */
  outbound(action: OutboundAction, options?: OutboundOptions): Promise<OutboundResult>;
  /** One JSON command, validated by the component; answers arrive on the stream. false once the link has stopped; throws ClientError when refused. */
  send(command: Command): boolean;
  ack(bufferId: string | number): boolean;
  nack(bufferId: string | number): boolean;
  interrupt(sessionKey: string, reason?: string): boolean;
  goingIdle(): boolean;
  holdRedial(): boolean;
  releaseRedial(): boolean;
  stats(): Stats;
  descriptors(): Record<string, Descriptor>;
  /**
   * Graceful stop, run by the component (`shutdown`): `going_idle` (up to
   * graceMs for `idle`), then waiting outbound calls resolve with `relay send
   * failed: relay transport closed` (ambiguous), the socket closes with 1000,
   * and `{event: 'state', state: 'stopped', reason: 'shutdown'}` is the last
   * event. Idempotent; resolves once the socket is closed.
   */
  close(options?: CloseOptions): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Dials the connector at `url` (its base URL, http(s):// or ws(s)://) and runs
 * one link. Resolves once the first dial has started; `ready` follows on the
 * stream. Rejects with RelayError when the component refuses `config`.
 */
export function connect(url: string, config: Config, options?: ConnectOptions): Promise<Link>;
