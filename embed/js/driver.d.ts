// Type declarations for `relay-wasm/driver`: the callback-style driver the
// client (`connect()`) is built on. It performs one Connection's effects over
// `ws` and decides nothing.
import type { Config, Descriptor, LinkState, Relay, Stats } from './index.js';

export interface DriverOptions {
  /** An instance from `await load()`. */
  relay: Relay;
  /** The connector base URL (http(s):// or ws(s)://). */
  base: string;
  config: Config;
  /** Each APP-PROTOCOL event the component emits, as JSON text. */
  onEvent?: (json: string) => void;
  /**
   * The states the component does not emit itself (SIDECAR.md §2.1):
   * `connecting` at each dial, `handshaking` / `ready` / `idle` when the
   * component changes to them; none after stop(). Unset: not tracked.
   */
  onState?: ((state: LinkState, reason?: string) => void) | null;
  onLog?: (level: string, message: string) => void;
  /** The component will never dial again (credentials revoked). */
  onGiveUp?: (reason: string) => void;
  /**
   * A component call trapped (or a callback threw) in a socket or timer event,
   * or a call of the returned object trapped: the link is torn down for good
   * and the instance is not called again. Default: rethrow.
   */
  onError?: (err: unknown) => void;
  /** Larger WebSocket messages fail the socket (default 4 MiB). */
  maxMessageBytes?: number;
  /** TCP + TLS + upgrade deadline (default 30000). */
  dialTimeoutMs?: number;
  /** Liveness ping interval (default 30000); not judged while paused. */
  pingIntervalMs?: number;
}

export interface Driver {
  /** The application's `outbound`: `id` is its own correlation id. */
  outbound(id: string, action: object | string, platform?: string): void;
  interrupt(sessionKey: string, reason?: string): void;
  ack(bufferId: string): void;
  nack(bufferId: string): void;
  holdRedial(): void;
  releaseRedial(): void;
  goingIdle(): void;
  /** An APP-PROTOCOL command (JSON text or value); throws RelayError when rejected. */
  command(command: object | string): void;
  stats(): Stats;
  descriptors(): Record<string, Descriptor>;
  /** Stop reading the socket (backpressure); timers and writes go on. */
  pause(): void;
  resume(): void;
  /**
   * Stops dialing and closes the socket (1000); the component answers what
   * still waits with `relay send failed: relay transport closed`. Resolves once
   * the socket has closed (at most ~2 s).
   */
  stop(): Promise<void>;
}

/** Dials at once and runs the link until stop(); throws RelayError for a refused config. */
export function connectWith(options: DriverOptions): Driver;
