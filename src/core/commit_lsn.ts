// Quorum arithmetic: quorum size and the commit LSN from per-safekeeper flush acknowledgements
// (docs/PROTOCOL.md, proposer rule 6). Pure; must never mutate its inputs or import node:*.

import type { Lsn } from '../lsn.js';

/** A majority of `members`. */
export function quorumSize(members: number): number {
  if (!Number.isInteger(members) || members < 1) throw new RangeError(`members must be >= 1: ${members}`);
  return Math.floor(members / 2) + 1;
}

/**
 * The highest LSN durable on at least `quorum` safekeepers, counting only acknowledgements at or above
 * `termStartLsn` (a leader commits earlier terms' WAL only by committing its own). `flushLsns` holds one
 * entry per member; members without an acknowledgement in this term are absent or 0. Returns null when
 * nothing of this term is quorum-durable yet.
 */
export function quorumCommitLsn(flushLsns: readonly Lsn[], quorum: number, termStartLsn: Lsn): Lsn | null {
  if (quorum < 1) throw new RangeError(`quorum must be >= 1: ${quorum}`);
  if (flushLsns.length < quorum) return null;
  const sorted = flushLsns.filter((f) => f >= termStartLsn).sort((a, b) => b - a);
  const candidate = sorted[quorum - 1];
  return candidate === undefined ? null : candidate;
}
