// The client: one link to a connector as an async stream of APP-PROTOCOL events
// (spec/SIDECAR.md §2) plus commands (§3), the shape of the Rust in-process
// `relay_host::client::Client` and of the Python `relay_wasm.connect`:
//
//   const link = await connect(url, config);
//   for await (const event of link) { ... await link.outbound(action) ... }
//   await link.close();
//
// It is built on driver.mjs (which performs the component's effects over `ws`,
// and replaces a failed guest instance) and adds what an application would
// otherwise write itself: events parsed, a bounded buffer with backpressure,
// outbound results correlated to their call, and close(). Nothing here decides
// anything about the protocol: every event, every `state` included, and every
// answer comes from the component.
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
 *  the link ended (close(), or a guest instance failed and could not be
 *  replaced) before or while it waited; otherwise the component refused the
 *  command (`invalid_field`, `missing_field`, `unknown_type`, `malformed_json`,
 *  ...) and nothing was sent. */
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
  return stoppedError(`${err?.message ?? err}`, err);
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
  #stopped = false; // no more commands: the link has ended
  #failed = false; // it ended because a guest instance could not be replaced
  #reason = null; // why it stopped
  #closing = null; // close()'s promise
  #draining = false; // close() runs: no more backpressure
  #waiters = new Map(); // outbound id → {resolve, reject, done}
  #lastId = 0;

  constructor(internal, relay, url, config, options) {
    if (internal !== INTERNAL) throw new TypeError('a Link is made by connect()');
    const max = options.maxEvents ?? DEFAULT_MAX_EVENTS;
    if (!Number.isInteger(max) || max < 1) throw new RangeError('maxEvents must be an integer >= 1');
    for (const moved of ['maxMessageBytes', 'pingIntervalMs']) {
      if (options[moved] !== undefined) {
        throw new TypeError(`${moved} is a setting of the component now: pass it in the config (connect(url, {..., ${moved}}))`);
      }
    }
    this.#max = max;
    const onLog = options.onLog ?? (() => {});
    this.#driver = connectWith({
      relay,
      base: url,
      config,
      onEvent: (json, effect) => this.#onEvent(json, effect),
      onLog,
      onEnd: (reason, cause) => this.#finish(reason, cause),
      dialTimeoutMs: options.dialTimeoutMs,
      restartBudget: options.restartBudget,
    });
    // Events pushed during the first dial (before #driver was set) may have filled the buffer.
    if (this.#events.length >= this.#max) this.#pause();
  }

  // ---- events ------------------------------------------------------------------

  // The typed facts say what happened; the line, parsed, is what the application gets.
  #onEvent(json, { kind, id }) {
    const event = JSON.parse(json);
    if (kind === 'outbound_result' && id !== undefined) {
      const waiter = this.#waiters.get(id);
      if (waiter) {
        this.#waiters.delete(id);
        waiter.done();
        waiter.resolve(event);
        return; // answered to its call, not to the stream (as the Rust client does)
      }
    }
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
   *  `{event: 'state', state: 'stopped'}`, or when a failed guest instance
   *  could not be replaced). The Rust client's `next()`. */
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

  /** Whether the link has ended (close(), or an irreplaceable guest); see `stopReason`. */
  get stopped() {
    return this.#stopped;
  }

  /** The `reason` of the link's `state stopped` (`'shutdown'` after close()), or
   *  why a failed guest instance could not be replaced; null while it runs. */
  get stopReason() {
    return this.#reason;
  }

  // ---- commands ----------------------------------------------------------------

  // One call of the driver's typed methods (or `command` for send()): false once
  // the link has ended; a refusal by the component becomes a ClientError. A
  // TypeError (an argument of the wrong type) is thrown as it is.
  #call(fn) {
    if (this.#stopped) return false;
    try {
      fn(this.#driver);
    } catch (err) {
      if (err instanceof TypeError) throw err;
      throw clientError(err);
    }
    return true;
  }

  /**
   * Sends `action` (an object with `op`) as an `outbound` under an id of its own
   * and resolves with the `outbound_result` that answers it (never on the
   * stream). Concurrent calls each get their own. No client-side deadline: the
   * component answers every request (`outboundTimeoutMs`), a refused one too
   * (`result.success === false`, e.g. an action that is not an object).
   * Rejects with ClientError `stopped` when the link ends first; with
   * `signal.reason` on abort (the action may still happen: its result then
   * arrives on the stream).
   */
  outbound(action, { platform, signal } = {}) {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#stopped) return Promise.reject(stoppedError(this.#reason));
    if (platform != null && typeof platform !== 'string') {
      return Promise.reject(new TypeError('platform must be a string'));
    }
    const id = `${OUTBOUND_ID_PREFIX}${++this.#lastId}`;
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        if (this.#waiters.get(id) !== waiter) return;
        this.#waiters.delete(id);
        reject(signal.reason);
      };
      const waiter = { resolve, reject, done: () => signal?.removeEventListener('abort', onAbort) };
      // Registered before the call: its answer may come at once.
      this.#waiters.set(id, waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        // JSON text, so that a value that is no object stays what it is (and
        // the component answers it as such).
        this.#call((d) => d.outbound(id, JSON.stringify(action ?? null), platform ?? undefined));
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
   * `interrupt`, `ack`, `nack`, `going_idle`, `hold_redial`, `release_redial`,
   * validated by the component. Answers (an `outbound_result` with your id,
   * `idle`) arrive on the stream. Returns false, sending nothing, once the link
   * has stopped; throws ClientError when the component refuses the command.
   */
  send(command) {
    return this.#call((d) => d.command(command));
  }

  /** A buffered message was durably handed off (`inbound_ack` to the connector). */
  ack(bufferId) {
    return this.#call((d) => d.ack(bufferIdText(bufferId)));
  }

  /** A buffered message could not be taken: its next arrival is delivered again. */
  nack(bufferId) {
    return this.#call((d) => d.nack(bufferIdText(bufferId)));
  }

  /** Ask the connector to stop a turn; no answer. */
  interrupt(sessionKey, reason) {
    if (typeof sessionKey !== 'string') throw new TypeError('sessionKey must be a string');
    if (reason != null && typeof reason !== 'string') throw new TypeError('reason must be a string');
    return this.#call((d) => d.interrupt(sessionKey, reason ?? undefined));
  }

  /** A `going_idle` frame; answered by one `idle` event. */
  goingIdle() {
    return this.#call((d) => d.goingIdle());
  }

  /** Park re-dialling for at most 60 s. */
  holdRedial() {
    return this.#call((d) => d.holdRedial());
  }

  releaseRedial() {
    return this.#call((d) => d.releaseRedial());
  }

  /** The component's counters: {state, connected, frames_in, frames_out, pending_outbound, ...}. */
  stats() {
    if (this.#failed) throw stoppedError(this.#reason);
    return this.#driver.stats();
  }

  /** {platform: descriptor} of the current connection ({} without one). */
  descriptors() {
    if (this.#failed) throw stoppedError(this.#reason);
    return this.#driver.descriptors();
  }

  // ---- the end -----------------------------------------------------------------

  /**
   * Graceful stop (SIDECAR.md §5), run by the component: a ready link sends
   * `going_idle` and waits up to `graceMs` for its ack (the stream gets `idle`);
   * then outbound calls still waiting resolve with `relay send failed: relay
   * transport closed` (ambiguous), the socket closes with 1000 (bounded by the
   * component's closeWaitMs), `{event: 'state', state: 'stopped', reason:
   * 'shutdown'}` is the last event and the stream ends. Idempotent; resolves
   * when the socket is closed.
   */
  close({ graceMs = DEFAULT_CLOSE_GRACE_MS } = {}) {
    this.#closing ??= this.#close(graceMs);
    return this.#closing;
  }

  async #close(graceMs) {
    if (this.#ended) return;
    // The connector's answer must be readable: backpressure ends here.
    this.#draining = true;
    this.#resume();
    await this.#driver.shutdown(graceMs);
  }

  [Symbol.asyncDispose]() {
    return this.close();
  }

  /** The link has ended (after the component's `state stopped`, or because a
   *  failed guest instance could not be replaced): what still waits learns it. */
  #finish(reason, cause) {
    if (this.#ended) return;
    this.#stopped = true;
    this.#failed = cause !== undefined;
    this.#reason = reason;
    for (const [id, waiter] of this.#waiters) {
      this.#waiters.delete(id);
      waiter.done();
      waiter.reject(stoppedError(reason, cause));
    }
    this.#ended = true;
    for (const reader of this.#readers.splice(0)) reader(undefined);
  }
}

/** A buffer id as the component takes it (the frames carry `17` as "17"). */
function bufferIdText(bufferId) {
  if (typeof bufferId === 'number' && Number.isFinite(bufferId)) return String(bufferId);
  if (typeof bufferId !== 'string') throw new TypeError('bufferId must be a string (or a number)');
  return bufferId;
}

/**
 * Dials the connector at `url` (http(s):// or ws(s)://, the configured base) and
 * runs one Connection over `ws`. Resolves once the first dial has started
 * (`state connecting`; `ready` follows on the stream); rejects with RelayError
 * when the component refuses `config`. Each link gets an instance of its own (its own
 * memory) unless `options.relay` passes one from `await load()`.
 */
export async function connect(url, config, options = {}) {
  const relay = options.relay ?? (await load({ stderr: options.stderr }));
  return new Link(INTERNAL, relay, url, config, options);
}
