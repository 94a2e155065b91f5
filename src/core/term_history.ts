// Term history helpers: clipping to flushLsn, lastLogTerm, and the divergence point between a leader's
// history and a safekeeper's (docs/PROTOCOL.md, "Divergence point"). Pure functions over plain data;
// must never mutate their arguments or import node:*.

import type { Lsn } from '../lsn.js';
import type { Term, TermHistory, TermSwitch } from '../storage/timeline_state.js';

const INITIAL_TERM = 0 as Term;

/** Null when well formed: terms strictly increasing, LSNs non-decreasing. Otherwise why not. */
export function termHistoryProblem(history: TermHistory): string | null {
  for (let i = 1; i < history.length; i++) {
    const prev = history[i - 1]!;
    const cur = history[i]!;
    if (cur.term <= prev.term) return `terms not increasing at index ${i} (${prev.term} then ${cur.term})`;
    if (cur.lsn < prev.lsn) return `LSNs decreasing at index ${i} (${prev.lsn} then ${cur.lsn})`;
  }
  return null;
}

/**
 * The switches that describe WAL up to `flushLsn`. A switch exactly at flushLsn is kept: the safekeeper has
 * accepted that term's leader and its WAL up to flushLsn is that leader's (Neon's `up_to`).
 */
export function clipTermHistory(history: TermHistory, flushLsn: Lsn): TermHistory {
  let n = history.length;
  while (n > 0 && history[n - 1]!.lsn > flushLsn) n--;
  return n === history.length ? history : history.slice(0, n);
}

/** Term of the last switch at or below flushLsn; 0 (the initial term) for an empty log. */
export function lastLogTerm(history: TermHistory, flushLsn: Lsn): Term {
  for (let i = history.length - 1; i >= 0; i--) {
    if (history[i]!.lsn <= flushLsn) return history[i]!.term;
  }
  return INITIAL_TERM;
}

export function termHistoriesEqual(a: TermHistory, b: TermHistory): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i]!.term !== b[i]!.term || a[i]!.lsn !== b[i]!.lsn) return false;
  }
  return true;
}

export function withTermSwitch(history: TermHistory, term: Term, lsn: Lsn): TermHistory {
  const entry: TermSwitch = { term, lsn };
  return [...history, entry];
}

export type DivergenceResult =
  | { readonly ok: true; readonly startLsn: Lsn }
  /** Both histories contain `term` but start it at different LSNs: impossible unless someone is broken. */
  | { readonly ok: false; readonly term: Term; readonly leaderLsn: Lsn; readonly acceptorLsn: Lsn };

/**
 * Where the safekeeper's WAL stops being the leader's: the leader cuts it there and streams from there.
 * `leader` is the leader's full history, ending with its own term; the safekeeper's history is clipped to
 * `acceptorFlushLsn` here, so callers may pass it unclipped.
 */
export function findDivergencePoint(leader: TermHistory, acceptorHistory: TermHistory, acceptorFlushLsn: Lsn): DivergenceResult {
  if (leader.length === 0) throw new RangeError('leader term history is empty');
  const acceptor = clipTermHistory(acceptorHistory, acceptorFlushLsn);
  let common = -1;
  const n = Math.min(leader.length, acceptor.length);
  for (let i = 0; i < n; i++) {
    const l = leader[i]!;
    const a = acceptor[i]!;
    if (l.term !== a.term) break;
    // A term starts at one LSN everywhere: its leader wrote that switch once and everyone copied it.
    if (l.lsn !== a.lsn) return { ok: false, term: l.term, leaderLsn: l.lsn, acceptorLsn: a.lsn };
    common = i;
  }
  if (common < 0) return { ok: true, startLsn: leader[0]!.lsn };
  if (common === leader.length - 1) {
    // The safekeeper already follows this leader: everything it holds is the leader's.
    return { ok: true, startLsn: acceptorFlushLsn };
  }
  const leaderEnd = leader[common + 1]!.lsn;
  const acceptorEnd = common + 1 < acceptor.length ? acceptor[common + 1]!.lsn : acceptorFlushLsn;
  return { ok: true, startLsn: (leaderEnd < acceptorEnd ? leaderEnd : acceptorEnd) as Lsn };
}
