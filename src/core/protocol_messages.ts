// The messages between a proposer and a safekeeper (docs/PROTOCOL.md section 2), as plain data.
// No encoding lives here (the wire codec is specified with the transport); must never import node:*.

import type { Lsn } from '../lsn.js';
import type { Term, TermHistory } from '../storage/timeline_state.js';
import type { ProtocolErrorCode } from './protocol_errors.js';

/** Version byte of every frame; a greeting with another version is refused. */
export const PROTOCOL_VERSION = 1;

/** Neon's MAX_SEND_SIZE = XLOG_BLCKSZ * 16: the most WAL one AppendRequest or ReadResponse carries. */
export const MAX_APPEND_BYTES = 128 * 1024;

export interface ProposerGreeting {
  readonly kind: 'ProposerGreeting';
  readonly protocolVersion: number;
  /** Unique per proposer generation (a restarted compute is a new proposer). */
  readonly proposerId: number;
  readonly tenantId: string;
  readonly timelineId: string;
  readonly systemId: bigint;
  /** PG_VERSION_NUM, e.g. 160004. */
  readonly pgVersion: number;
  readonly segmentSizeBytes: number;
}

export interface AcceptorGreeting {
  readonly kind: 'AcceptorGreeting';
  readonly nodeId: number;
  readonly term: Term;
  readonly minTerm: Term;
}

export interface VoteRequest {
  readonly kind: 'VoteRequest';
  readonly term: Term;
}

export interface VoteResponse {
  readonly kind: 'VoteResponse';
  /** The safekeeper's term after handling the request (== request term when granted). */
  readonly term: Term;
  readonly granted: boolean;
  /** Durable end of WAL; cannot move until the next ProposerElected. */
  readonly flushLsn: Lsn;
  readonly truncateLsn: Lsn;
  readonly lastLogTerm: Term;
  /** Clipped to flushLsn. */
  readonly termHistory: TermHistory;
}

export interface ProposerElected {
  readonly kind: 'ProposerElected';
  readonly term: Term;
  /** Where this safekeeper's WAL is cut and streaming starts (its divergence point). */
  readonly startLsn: Lsn;
  /** The leader's complete history, ending with (term, termStartLsn). */
  readonly termHistory: TermHistory;
}

export interface AppendRequest {
  readonly kind: 'AppendRequest';
  readonly term: Term;
  readonly beginLsn: Lsn;
  readonly endLsn: Lsn;
  readonly commitLsn: Lsn;
  readonly truncateLsn: Lsn;
  /** endLsn - beginLsn bytes; empty for a heartbeat. */
  readonly wal: Uint8Array;
}

export interface AppendResponse {
  readonly kind: 'AppendResponse';
  readonly term: Term;
  /** End of the last complete durable record: what counts towards commit. */
  readonly flushLsn: Lsn;
  /** End of the durable bytes (>= flushLsn, may be inside a record): what frees the proposer's in-flight window. */
  readonly durableLsn: Lsn;
  readonly commitLsn: Lsn;
}

export interface ReadRequest {
  readonly kind: 'ReadRequest';
  readonly term: Term;
  readonly beginLsn: Lsn;
  readonly endLsn: Lsn;
}

export interface ReadResponse {
  readonly kind: 'ReadResponse';
  readonly term: Term;
  readonly beginLsn: Lsn;
  readonly wal: Uint8Array;
}

export interface ErrorMessage {
  readonly kind: 'Error';
  readonly code: ProtocolErrorCode;
  /** The safekeeper's current term, so a deposed proposer learns it. */
  readonly term: Term;
  readonly got: string;
  readonly expected: string;
  readonly message: string;
}

export type ProposerMessage = ProposerGreeting | VoteRequest | ProposerElected | AppendRequest | ReadRequest;
export type AcceptorMessage = AcceptorGreeting | VoteResponse | AppendResponse | ReadResponse | ErrorMessage;

/**
 * Peer recovery (docs/PROTOCOL.md, "Peer recovery"): one safekeeper asks another for its durable WAL
 * [beginLsn, endLsn) of term `term`. Served only while the peer's term and lastLogTerm both equal `term`,
 * and never past its flushLsn. An empty range (beginLsn == endLsn) asks for the status alone.
 */
export interface PeerReadRequest {
  readonly term: Term;
  readonly beginLsn: Lsn;
  readonly endLsn: Lsn;
}

export type PeerReadReply =
  | {
      readonly kind: 'PeerWal';
      /** The serving peer's term, == the request's term. */
      readonly term: Term;
      /** The peer's history clipped to its flushLsn (it ends with `term`). */
      readonly termHistory: TermHistory;
      readonly flushLsn: Lsn;
      readonly commitLsn: Lsn;
      readonly beginLsn: Lsn;
      /** endLsn - beginLsn durable bytes (empty for a status request). */
      readonly wal: Uint8Array;
    }
  | {
      readonly kind: 'PeerRefused';
      readonly code: ProtocolErrorCode;
      /** The serving peer's current term. */
      readonly term: Term;
      readonly message: string;
    };

/** Builds the Error message a safekeeper sends before closing a connection. */
export function protocolError(
  code: ProtocolErrorCode,
  term: Term,
  message: string,
  got: string | number | bigint = '',
  expected: string | number | bigint = '',
): ErrorMessage {
  return { kind: 'Error', code, term, got: String(got), expected: String(expected), message };
}
