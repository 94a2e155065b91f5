// Donor choice at election: the voter whose WAL is the most advanced by (lastLogTerm, flushLsn)
// (docs/PROTOCOL.md, proposer rule 3). Pure; must never depend on anything but its argument.

import type { Lsn } from '../lsn.js';
import type { Term } from '../storage/timeline_state.js';

export interface DonorCandidate {
  readonly lastLogTerm: Term;
  readonly flushLsn: Lsn;
}

/**
 * Index of the candidate with the lexicographically highest (lastLogTerm, flushLsn); the first one wins
 * ties (any of them would be safe: equal last terms with equal flushLsn mean identical WAL). -1 if empty.
 */
export function chooseDonor(candidates: readonly (DonorCandidate | null | undefined)[]): number {
  let best = -1;
  for (let i = 0; i < candidates.length; i++) {
    const c = candidates[i];
    if (!c) continue;
    const b = best >= 0 ? candidates[best]! : null;
    if (!b || c.lastLogTerm > b.lastLogTerm || (c.lastLogTerm === b.lastLogTerm && c.flushLsn > b.flushLsn)) best = i;
  }
  return best;
}
