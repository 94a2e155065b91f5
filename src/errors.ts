// The one catalogue of typed errors. Every error that crosses a module, process or network boundary
// carries a stable `code` from this list (documented in docs/ERRORS.md); match on `code`, never on
// `instanceof` or message text, because errors also arrive from workers and the native addon.

export const ErrorCodes = {
  /** WAL bytes failed validation (page header, record header, CRC, prev link). */
  WAL_INVALID: 'SK_WAL_INVALID',
  /** A write did not start where the store's WAL ends (gap or overlap). */
  WAL_GAP: 'SK_WAL_GAP',
  /** A read asked for WAL the store does not hold. */
  WAL_NOT_AVAILABLE: 'SK_WAL_NOT_AVAILABLE',
  /** Truncation was requested below the commit LSN: committed WAL is never removed. */
  TRUNCATE_BELOW_COMMIT: 'SK_TRUNCATE_BELOW_COMMIT',
  /** The control file failed its magic, version, length or CRC check. */
  CONTROL_FILE_CORRUPT: 'SK_CONTROL_FILE_CORRUPT',
  /** The control file was written by a newer format version than this build understands. */
  CONTROL_FILE_VERSION: 'SK_CONTROL_FILE_VERSION',
  /** A timeline directory or its files are not in a state this build can open. */
  TIMELINE_BROKEN: 'SK_TIMELINE_BROKEN',
  /** The store was closed, or stopped after a fatal I/O error. */
  STORE_CLOSED: 'SK_STORE_CLOSED',
  /** The disk is full (ENOSPC) or a configured disk limit is reached; writes resume when space returns. */
  DISK_FULL: 'SK_DISK_FULL',
  /** A configuration value is invalid. */
  CONFIG_INVALID: 'SK_CONFIG_INVALID',
  /** An argument violated the API contract (a bug in the caller). */
  INVALID_ARGUMENT: 'SK_INVALID_ARGUMENT',
  /** fdatasync/fsync failed. Fatal: the process exits and recovery re-validates; never retried. */
  FSYNC_FAILED: 'SK_FSYNC_FAILED',
  /** An I/O error other than the above. */
  IO: 'SK_IO',
  /** Proposer library: a higher term or the control plane took the timeline over; this generation is finished. */
  PROPOSER_STEPPED_DOWN: 'SK_PROPOSER_STEPPED_DOWN',
  /** Proposer library: the application closed the proposer. */
  PROPOSER_CLOSED: 'SK_PROPOSER_CLOSED',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class SafekeeperError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SafekeeperError';
    this.code = code;
    this.details = details;
  }

  toJSON(): { code: ErrorCode; message: string; details: Readonly<Record<string, unknown>> } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

/** True when `err` carries the given code, whatever its class (worker, native addon or local). */
export function hasCode(err: unknown, code: ErrorCode): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

/** Narrows an unknown thrown value to something with a message, for logs. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return `${(err as { code?: string }).code ?? err.name}: ${err.message}`;
  return String(err);
}

/** Asserts an invariant. A broken invariant is a bug: crash, and let recovery re-validate on restart. */
export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`invariant violated: ${message}`);
}
