// Protocol-level error codes a safekeeper sends to a proposer before closing the connection
// (docs/PROTOCOL.md, "Protocol error codes"). Plain data only: must never throw or import node:*.

import type { Term } from '../storage/timeline_state.js';

export const ProtocolErrorCodes = {
  VERSION: 'SK_PROTO_VERSION',
  TIMELINE_MISMATCH: 'SK_PROTO_TIMELINE_MISMATCH',
  SYSTEM_MISMATCH: 'SK_PROTO_SYSTEM_MISMATCH',
  UNEXPECTED: 'SK_PROTO_UNEXPECTED',
  STALE_TERM: 'SK_PROTO_STALE_TERM',
  FENCED: 'SK_PROTO_FENCED',
  TERM_NOT_VOTED: 'SK_PROTO_TERM_NOT_VOTED',
  NOT_ELECTED: 'SK_PROTO_NOT_ELECTED',
  BAD_HISTORY: 'SK_PROTO_BAD_HISTORY',
  BAD_START: 'SK_PROTO_BAD_START',
  WAL_GAP: 'SK_PROTO_WAL_GAP',
  TOO_LARGE: 'SK_PROTO_TOO_LARGE',
  WAL_NOT_AVAILABLE: 'SK_PROTO_WAL_NOT_AVAILABLE',
  SUPERSEDED: 'SK_PROTO_SUPERSEDED',
  /** Raised by the transport, not the core: an undecodable frame, or a greeting for a timeline not served here. */
  MALFORMED: 'SK_PROTO_MALFORMED',
  UNKNOWN_TIMELINE: 'SK_PROTO_UNKNOWN_TIMELINE',
} as const;

export type ProtocolErrorCode = (typeof ProtocolErrorCodes)[keyof typeof ProtocolErrorCodes];

/** Codes that mean "a newer term or the control plane owns this timeline now": the proposer steps down. */
export const STEP_DOWN_CODES: ReadonlySet<ProtocolErrorCode> = new Set([
  ProtocolErrorCodes.STALE_TERM,
  ProtocolErrorCodes.FENCED,
]);
