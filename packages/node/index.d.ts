// Types for the verilimit test helpers (index.js).

export declare const DEV_ACCOUNT_SID: string;
export declare const DEV_AUTH_TOKEN: string;
export declare const DEFAULT_IMAGE: string;

export declare class VerilimitError extends Error {}
export declare class ControlPlaneError extends VerilimitError {
  method: string;
  path: string;
  status: number;
  body: string;
}

export interface VerilimitOptions {
  /** Use the verilimit server already running there (never stopped by the helper). */
  url?: string;
  /** The binary to start (default: $VERILIMIT_BIN, else `verilimit` on PATH). */
  bin?: string;
  /** `docker run --rm` the image instead of starting the binary. */
  docker?: boolean;
  /** The image for `docker` (default 'verilimit:local'). */
  image?: string;
  /** A docker-compatible command (default $VERILIMIT_DOCKER or 'docker'). */
  dockerCommand?: string;
  /** The account the helpers and the client use (default: the development account). */
  accountSid?: string;
  authToken?: string;
  /** Extra server arguments, e.g. ['--code-ttl', '300']. */
  args?: string[];
  /** Extra server environment. */
  env?: Record<string, string>;
  /** Default 30 000 (120 000 with docker). */
  startupTimeoutMs?: number;
  /** The twilio module to build `client` with (default: require('twilio')). */
  twilio?: (accountSid: string, authToken: string, opts?: object) => any;
}

export interface OutboxMessage {
  sid: string;
  to: string;
  channel: string;
  code: string;
  verification_sid: string;
  service_sid: string;
  account_sid: string;
  date_created: string;
}

export interface Clock {
  now: string;
  now_ms: number;
  offset_ms: number;
}

export interface UsageRow {
  rate_limit_sid: string;
  unique_name: string;
  bucket_sid: string;
  max: number;
  interval: number;
  value: string;
  count: number;
  remaining: number;
  next_slot_at: string | null;
  retry_after: number;
}

export declare class Verilimit {
  constructor(opts?: VerilimitOptions);
  static start(opts?: VerilimitOptions): Promise<Verilimit>;
  readonly url: string;
  readonly mode: 'binary' | 'docker' | 'url';
  readonly accountSid: string;
  readonly authToken: string;
  /** An official twilio client whose Verify domain points at this server. */
  readonly client: import('twilio').Twilio;
  start(): Promise<this>;
  stop(): Promise<void>;
  logs(): string;
  reset(scope?: 'all' | 'counters'): Promise<void>;
  outbox(filter?: string | { to?: string; serviceSid?: string; verificationSid?: string }): Promise<OutboxMessage[]>;
  latestCode(to: string): Promise<string>;
  clock(): Promise<Clock>;
  advanceClock(seconds: number): Promise<Clock>;
  usage(serviceSid: string, filter?: { rateLimit?: string; value?: string }): Promise<UsageRow[]>;
}

export declare function start(opts?: VerilimitOptions): Promise<Verilimit>;
export declare function findBinary(bin?: string): string;
