// Type declarations for `relay-wasm/driver`: the callback-style driver the
// client (`connect()`) is built on. It performs one Connection's effects over
// `ws` (dial, write, ping, close, one timer at pollTimeout()) and decides
// nothing; after a guest trap it hands a fresh instance what the failed one owed.
import type { Config, Descriptor, EmitEffect, Relay, RestartBudget, Settings, Stats } from './index.js';

/** The Rust host's restart budget: 5 guest failures within 60 s. */
export const DEFAULT_RESTART_BUDGET: Readonly<RestartBudget>;

export interface DriverOptions {
  /** An instance from `await load()`; replacements come from its `instantiate()`. */
  relay: Relay;
  /** The connector base URL (http(s):// or ws(s)://); the component derives the dial URL. */
  base: string;
  config: Config;
  /**
   * Each APP-PROTOCOL event the component emits, as JSON text, with the emit
   * effect (its typed `kind`, `state`, `id`, `bufferId`, `acked`). Every `state`
   * event comes from the component; the driver adds none.
   */
  onEvent?: (json: string, event: EmitEffect) => void;
  onLog?: (level: string, message: string) => void;
  /**
   * Once, when the link has ended: after the component's `state stopped` (with
   * its reason), or when a guest instance failed and no replacement could be
   * built (`cause` is the error; no `stopped` event then).
   */
  onEnd?: (reason: string, cause?: unknown) => void;
  /** A callback above threw. Default: rethrown from a microtask (an uncaught exception). */
  onError?: (err: unknown) => void;
  /** TCP + TLS + upgrade deadline of one dial (default 30000). */
  dialTimeoutMs?: number;
  /** Guest failures survived within windowMs (default DEFAULT_RESTART_BUDGET); one more ends the link. */
  restartBudget?: RestartBudget;
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
  /** The settings in force (the socket's message limit and close wait come from here). */
  settings(): Settings;
  /** Stop reading the socket (backpressure); timers and writes go on. */
  pause(): void;
  resume(): void;
  /** Whether the link has ended. */
  readonly ended: boolean;
  /**
   * The component's shutdown: a ready link goes idle (at most `graceMs` for the
   * ack), what waits is answered (`relay send failed: relay transport closed`),
   * the socket closes with 1000, and `state stopped` (with `reason`, default
   * "shutdown") is the last event. Resolves then.
   */
  shutdown(graceMs?: number, reason?: string): Promise<void>;
  /** shutdown(0): no going_idle. */
  stop(): Promise<void>;
}

/** Starts the link (its first dial) and runs it until it has stopped; throws RelayError for a refused config. */
export function connectWith(options: DriverOptions): Driver;
