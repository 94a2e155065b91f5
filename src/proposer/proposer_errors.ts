// Typed errors the networked proposer hands to its application (rejected appends, waitElected).
// Match them by `code`, never by class or message; must never carry anything but plain data.

/** Stable codes; to be listed in the error catalogue (docs/ERRORS.md) next to src/errors.ts's. */
export const ProposerErrorCodes = {
  /** A higher term or the control plane took the timeline over: this proposer generation is finished. */
  STEPPED_DOWN: 'SK_PROPOSER_STEPPED_DOWN',
  /** The application closed the proposer. */
  CLOSED: 'SK_PROPOSER_CLOSED',
  /** An argument violated the API contract (a bug in the caller). */
  INVALID_ARGUMENT: 'SK_INVALID_ARGUMENT',
} as const;

export type ProposerErrorCode = (typeof ProposerErrorCodes)[keyof typeof ProposerErrorCodes];

export class ProposerError extends Error {
  readonly code: ProposerErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ProposerErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ProposerError';
    this.code = code;
    this.details = details;
  }

  toJSON(): { code: ProposerErrorCode; message: string; details: Readonly<Record<string, unknown>> } {
    return { code: this.code, message: this.message, details: this.details };
  }
}
