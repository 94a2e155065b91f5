// The durable state of one timeline: what the control file holds. Plain data shared by the consensus
// core (which decides it), the driver (which persists it before replying) and the control file codec.
// Must never hold anything that cannot be rebuilt from the control file alone.

import type { Lsn } from '../lsn.js';

/** A writer generation. Branded safe integer; 0 is the initial term, never granted to a proposer. */
export type Term = number & { readonly __brand: 'Term' };

export function term(value: number): Term {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`term out of range: ${value}`);
  return value as Term;
}

/** The term switched to `term` at `lsn`: WAL from `lsn` on (until the next switch) was written in `term`. */
export interface TermSwitch {
  readonly term: Term;
  readonly lsn: Lsn;
}

/** Ordered by term and by lsn, both non-decreasing (terms strictly increasing). */
export type TermHistory = readonly TermSwitch[];

export interface TimelinePersistentState {
  readonly tenantId: string;
  readonly timelineId: string;
  /** Highest term this safekeeper has voted for or accepted. A vote for term T is this value becoming T. */
  readonly term: Term;
  /** The proposer that received the vote for `term` (0 when unknown or none). */
  readonly votedFor: number;
  /** Terms below this are refused (fencing by the control plane). */
  readonly minTerm: Term;
  /** The history of the WAL this safekeeper holds, possibly ahead of flushLsn (adopted before recovery). */
  readonly termHistory: TermHistory;
  /** A record boundary at or below the durable end of WAL; recovery scans forward from here. */
  readonly flushLsn: Lsn;
  /** Quorum-acknowledged position, never above flushLsn as persisted. */
  readonly commitLsn: Lsn;
  /** End of the contiguous run of segments uploaded to remote storage. */
  readonly backupLsn: Lsn;
  /** Lowest flushLsn across all peers (capped by commitLsn): WAL below it is needed by no peer. */
  readonly peerHorizonLsn: Lsn;
  /** Where the timeline's WAL begins (globally). */
  readonly timelineStartLsn: Lsn;
  /** Where the WAL held on this safekeeper begins. */
  readonly localStartLsn: Lsn;
  /** PG_VERSION_NUM of the compute, e.g. 150020. */
  readonly pgVersion: number;
  /** PostgreSQL's database system identifier (u64). */
  readonly systemId: bigint;
  readonly segmentSizeBytes: number;
}
