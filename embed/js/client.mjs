// The client: one link to a connector as an async stream of APP-PROTOCOL events
// (spec/SIDECAR.md §2) plus commands (§3), the shape of the Rust in-process
// `relay_host::client::Client` and of the Python `relay_wasm.connect`:
//
//   const link = await connect(url, config);
//   for await (const event of link) { ... await link.outbound(action) ... }
//   await link.close();
//
// It is built on driver.mjs (which performs the component's effects over `ws`)
// and adds what an application would otherwise write itself: events parsed, a
// bounded buffer with backpressure, outbound results correlated to their call,
// the host's `state` announcements and a graceful close. Nothing here decides
// anything about the protocol: every answer still comes from the component.
import { connectWith } from './driver.mjs';
import { load, RelayError } from './relay.mjs';

/** The prefix of the ids `outbound()` generates; `send()` outbound commands
 *  should use other ids, or their results may be taken for a waiting call's. */
export const OUTBOUND_ID_PREFIX = 'relay-client-';
/** Events buffered before the socket stops being read (the Rust host's default). */
export const DEFAULT_MAX_EVENTS = 4096;
/** How long close() waits for the connector's `going_idle_ack`. */
export const DEFAULT_CLOSE_GRACE_MS = 5000;

/** Why a call got no answer: `kind` is a SIDECAR.md §4 error kind. `stopped`:
 *  the link ended (close(), or the guest instance failed) before or while it
 *  waited; otherwise the component refused the command (`invalid_field`,
 *  `missing_field`, `unknown_type`, `malformed_json`, ...) and nothing was sent. */
export class ClientError extends Error {
  constructor(kind, message, options) {
    super(message, options);
    this.name = 'ClientError';
    this.kind = kind;
  }
}

const stoppedError = (why, cause) =>
  new ClientError('stopped', `the link is stopped${why ? ` (${why})` : ''}`, cause ? { cause } : undefined);

/** A component rejection → ClientError with the sidecar's kind spelling. */
function clientError(err) {
  if (err instanceof ClientError) return err;
  if (err instanceof RelayError) return new ClientError(err.kind.replaceAll('-', '_'), err.message, { cause: err });
  return stoppedError(`guest instance failed: ${err?.message ?? err}`, err);
}

const INTERNAL = Symbol('relay-wasm.internal'); // Link's constructor is reached through connect() only

/** One link to a connector (across its re-dials); made by `connect()`. */
export class Link {
  #driver = null;
  #events = []; // buffered, oldest first
  #readers = []; // nextEvent() calls waiting for one
  #max;
  #paused = false;
  #ended = false; // the stream has ended (after `state: stopped`)
  #stopped = false; // no more commands: close() reached stop(), or a failure
  #reason = null; // why it stopped
  #closing = null; // close()'s promise
  #draining = false; // close() runs: no more backpressure
  #waiters = new Map(); // outbound id → {resolve, reject, done}
  #idle = []; // close() waiting for `idle`
  #lastId = 0;

  constructor(internal, relay, url, config, options) {
    if (internal !== INTERNAL) throw new TypeError('a Link is made by connect()');
    const max = options.maxEvents ?? DEFAULT_MAX_EVENTS;
    if (!Number.isInteger(max) || max < 1) throw new RangeError('maxEvents must be an integer >= 1');
    this.#max = max;
    const onLog = options.onLog ?? (() => {});
    this.#driver = connectWith({
      relay,
      base: url,
      config,
      onEvent: (json) => this.#onEvent(json),
      onState: (state) => this.#push({ event: 'state', state }),
      onLog,
      onError: (err) => {
        onLog('error', `relay-wasm: the guest instance failed, the link is stopped: ${err?.message ?? err}`);
        this.#finish(`guest instance failed: ${err?.message ?? err}`, err);
      },
      maxMessageBytes: options.maxMessageBytes,
      dialTimeoutMs: options.dialTimeoutMs,
      pingIntervalMs: options.pingIntervalMs,
    });
    // Events pushed during the first dial (before #driver was set) may have filled the buffer.
    if (this.#events.length >= this.#max) this.#pause();
  }

  // ---- events ------------------------------------------------------------------

  #onEvent(json) {
    const event = JSON.parse(json);
    const kind = event?.event;
    if ((kind === 'outbound_result' || kind === 'error') && typeof event.id === 'string') {
      const waiter = this.#waiters.get(event.id);
      if (waiter) {
        this.#waiters.delete(event.id);
        waiter.done();
        if (kind === 'outbound_result') waiter.resolve(event);
        else waiter.reject(new ClientError(event.error?.kind ?? 'unknown', event.error?.message ?? 'rejected'));
        return; // answered to its call, not to the stream (as the Rust client does)
      }
    }
    if (kind === 'idle') for (const wake of this.#idle.splice(0)) wake();
    this.#push(event);
  }

  #push(event) {
    if (this.#ended) return;
    const reader = this.#readers.shift();
    if (reader) return reader(event);
    this.#events.push(event);
    if (this.#events.length >= this.#max && !this.#draining) this.#pause();
  }

  #pause() {
    if (this.#paused || !this.#driver || this.#stopped) return;
    this.#paused = true;
    this.#driver.pause();
  }

  #resume() {
    if (!this.#paused) return;
    this.#paused = false;
    if (!this.#stopped) this.#driver.resume();
  }

  /** The next event, or `undefined` once the link has ended (after its
   *  `{event: 'state', state: 'stopped'}`). The Rust client's `next()`. */
  nextEvent() {
    if (this.#events.length) {
      const event = this.#events.shift();
      if (this.#paused && this.#events.length <= this.#max >> 1) this.#resume();
      return Promise.resolve(event);
    }
    if (this.#ended) return Promise.resolve(undefined);
    return new Promise((resolve) => this.#readers.push(resolve));
  }

  /** `for await (const event of link)`; leaving the loop early (break, return,
   *  throw) does not close the link: a later loop goes on where this one stopped. */
  [Symbol.asyncIterator]() {
    const iterator = {
      next: async () => {
        const value = await this.nextEvent();
        return value === undefined ? { done: true, value: undefined } : { done: false, value };
      },
      return: async () => ({ done: true, value: undefined }),
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  /** Events waiting in the buffer. */
  get bufferedEvents() {
    return this.#events.length;
  }

  /** Whether the socket is not being read because the buffer is full. */
  get paused() {
    return this.#paused;
  }

  /** Whether the link has stopped (close() or a failure); see `stopReason`. */
  get stopped() {
    return this.#stopped;
  }

  /** `'shutdown'` after close(), else why the link stopped; null while it runs. */
  get stopReason() {
    return this.#reason;
  }

  // ---- commands ----------------------------------------------------------------

  #command(command) {
    if (this.#stopped) return false;
    try {
      this.#driver.command(command);
    } catch (err) {
      throw clientError(err);
    }
    return true;
  }

  /**
   * Sends `action` (an object with `op`) as an `outbound` under an id of its own
   * and resolves with the `outbound_result` that answers it (never on the
   * stream). Concurrent calls each get their own. No client-side deadline: the
   * component answers every request (`outboundTimeoutMs`).
   * Rejects with ClientError: the component's kind when it refused the command,
   * `stopped` when the link stops first; with `signal.reason` on abort (the
   * action may still happen: its result then arrives on the stream).
   */
  outbound(action, { platform, signal } = {}) {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#stopped) return Promise.reject(stoppedError(this.#reason));
    const id = `${OUTBOUND_ID_PREFIX}${++this.#lastId}`;
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        if (this.#waiters.get(id) !== waiter) return;
        this.#waiters.delete(id);
        reject(signal.reason);
      };
      const waiter = { resolve, reject, done: () => signal?.removeEventListener('abort', onAbort) };
      // Registered before the command is sent: its answer may come at once.
      this.#waiters.set(id, waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
      const command = { op: 'outbound', id, action };
      if (platform != null) command.platform = platform;
      try {
        this.#command(command);
      } catch (err) {
        if (this.#waiters.get(id) === waiter) {
          this.#waiters.delete(id);
          waiter.done();
          reject(err);
        }
      }
    });
  }

  /**
   * One APP-PROTOCOL command (SIDECAR.md §3, without `tenant`): `outbound`,
   * `interrupt`, `ack`, `nack`, `going_idle`, `hold_redial`, `release_redial`.
   * Answers (an `outbound_result` with your id, `idle`) arrive on the stream.
   * Returns false, sending nothing, once the link has stopped; throws
   * ClientError when the component refuses the command.
   */
  send(command) {
    return this.#command(command);
  }

  /** A buffered message was durably handed off (`inbound_ack` to the connector). */
  ack(bufferId) {
    return this.#command({ op: 'ack', buffer_id: bufferId });
  }

  /** A buffered message could not be taken: its next arrival is delivered again. */
  nack(bufferId) {
    return this.#command({ op: 'nack', buffer_id: bufferId });
  }

  /** Ask the connector to stop a turn; no answer. */
  interrupt(sessionKey, reason) {
    return this.#command(reason == null ? { op: 'interrupt', session_key: sessionKey } : { op: 'interrupt', session_key: sessionKey, reason });
  }

  /** A `going_idle` frame; answered by one `idle` event. */
  goingIdle() {
    return this.#command({ op: 'going_idle' });
  }

  /** Park re-dialling for at most 60 s. */
  holdRedial() {
    return this.#command({ op: 'hold_redial' });
  }

  releaseRedial() {
    return this.#command({ op: 'release_redial' });
  }

  /** The component's counters: {frames_in, frames_out, pending_outbound, state, connected, ...}. */
  stats() {
    if (this.#stopped && this.#reason !== 'shutdown') throw stoppedError(this.#reason);
    return this.#driver.stats();
  }

  /** {platform: descriptor} of the current connection ({} without one). */
  descriptors() {
    if (this.#stopped && this.#reason !== 'shutdown') throw stoppedError(this.#reason);
    return this.#driver.descriptors();
  }

  // ---- the end -----------------------------------------------------------------

  /**
   * Graceful stop (SIDECAR.md §5): with an open socket, `going_idle` and up to
   * `graceMs` for its `idle` (which the stream gets); then the component stops
   * the link (waiting outbound calls resolve with `relay send failed: relay
   * transport closed`, ambiguous), the socket closes with 1000 (at most ~2 s),
   * `{event: 'state', state: 'stopped', reason: 'shutdown'}` is the last event
   * and the stream ends. Idempotent; resolves when the socket is closed.
   */
  close({ graceMs = DEFAULT_CLOSE_GRACE_MS } = {}) {
    this.#closing ??= this.#close(graceMs);
    return this.#closing;
  }

  async #close(graceMs) {
    if (this.#stopped) return;
    // The connector's answer must be readable: backpressure ends here.
    this.#draining = true;
    this.#resume();
    try {
      if (graceMs > 0 && this.#driver.stats().connected) {
        let timer;
        const idle = new Promise((wake) => this.#idle.push(wake));
        this.#driver.goingIdle();
        await Promise.race([idle, new Promise((wake) => (timer = setTimeout(wake, graceMs)))]);
        clearTimeout(timer);
      }
    } catch (err) {
      // A trap: the driver has already reported it (the link is finished).
      this.#finish(`guest instance failed: ${err?.message ?? err}`, err);
    }
    if (this.#stopped) return; // failed meanwhile
    this.#stopped = true;
    this.#reason = 'shutdown';
    try {
      await this.#driver.stop();
    } catch (err) {
      this.#finish(`guest instance failed: ${err?.message ?? err}`, err);
      return;
    }
    this.#finish('shutdown');
  }

  [Symbol.asyncDispose]() {
    return this.close();
  }

  /** Ends the link: what still waits learns it, `state stopped` is the last event. */
  #finish(reason, cause) {
    if (this.#ended) return;
    this.#stopped = true;
    this.#reason = reason;
    for (const [id, waiter] of this.#waiters) {
      this.#waiters.delete(id);
      waiter.done();
      waiter.reject(stoppedError(reason, cause));
    }
    for (const wake of this.#idle.splice(0)) wake();
    this.#push({ event: 'state', state: 'stopped', reason });
    this.#ended = true;
    for (const reader of this.#readers.splice(0)) reader(undefined);
  }
}

/**
 * Dials the connector at `url` (http(s):// or ws(s)://, the configured base) and
 * runs one Connection over `ws`. Resolves once the first dial has started (the
 * `ready` event follows on the stream); rejects with RelayError when the
 * component refuses `config`. Each link gets an instance of its own (its own
 * memory) unless `options.relay` passes one from `await load()`.
 */
export async function connect(url, config, options = {}) {
  const relay = options.relay ?? (await load({ stderr: options.stderr }));
  return new Link(INTERNAL, relay, url, config, options);
}
