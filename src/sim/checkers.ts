// The simulator's safety checkers, run after every event: acknowledged WAL is never lost, replicas agree
// on committed WAL, commits never go backwards or contradict, one leader per term. They read simulator
// state only; they must never change it.

import { proposerReadWal } from '../core/proposer.js';
import { formatLsn as L, type Lsn } from '../lsn.js';
import type { Term } from '../storage/timeline_state.js';
import type { ProposerGeneration } from './proposer_node.js';
import type { SafekeeperNode } from './safekeeper_node.js';

export interface Violation {
  readonly timeUs: number;
  readonly kind: string;
  readonly detail: string;
}

export class Checker {
  readonly violations: Violation[] = [];
  /** The committed WAL as reported to applications: [baseLsn, committedEnd). Only ever extended. */
  private committed: Uint8Array = new Uint8Array(4096);
  private committedEnd: Lsn;
  /** Per safekeeper: its durable WAL equals the committed WAL on [baseLsn, matchEnd). */
  private readonly matchEnd: Lsn[];
  /** What afterEvent() last looked at, per safekeeper (disk version, in-memory commitLsn) and globally. */
  private readonly seenVersion: number[];
  private readonly seenCoreCommit: number[];
  private seenCommittedEnd = -1;
  private readonly electedBy = new Map<Term, number>();
  private readonly committedBy = new Map<Term, number>();
  private readonly lastCommitOf = new Map<number, Lsn>();
  private readonly termStart = new Map<Term, Lsn>();
  private readonly maxCommitOfTerm = new Map<Term, Lsn>();
  commits = 0;
  elections = 0;
  /** Commit reports below the global commit point (a deposed proposer catching up late): legal. */
  staleCommitReports = 0;

  constructor(
    private readonly baseLsn: Lsn,
    private readonly safekeepers: readonly SafekeeperNode[],
    private readonly quorum: number,
    private readonly now: () => number,
  ) {
    this.committedEnd = baseLsn;
    this.matchEnd = safekeepers.map(() => baseLsn);
    this.seenVersion = safekeepers.map(() => -1);
    this.seenCoreCommit = safekeepers.map(() => -2);
  }

  get commitLsn(): Lsn {
    return this.committedEnd;
  }

  violation(kind: string, detail: string): void {
    this.violations.push({ timeUs: this.now(), kind, detail });
  }

  /**
   * (d) At most one proposer is elected in a term; and leader completeness: a leader's term starts at or
   * above every commit any earlier term reports (before or after this election: reports can be late).
   */
  onElected(gen: ProposerGeneration, term: Term, termStartLsn: Lsn): void {
    this.elections++;
    this.termStart.set(term, termStartLsn);
    // The new leader's WAL below its term start is its donor's: it must hold what is committed so far.
    // (The checker's cache is refreshed without consuming the global "seen" marker.)
    const saved = this.seenCommittedEnd;
    this.seenCommittedEnd = -1;
    const donorMatch = this.refresh(gen.core.donor);
    this.seenCommittedEnd = saved;
    const mustHold = Math.min(this.committedEnd, termStartLsn);
    if (donorMatch < mustHold) {
      this.violation('leader misses committed WAL', `term ${term} (proposer ${gen.proposerId}) took sk${gen.core.donor}'s WAL as its log, which matches the committed WAL only up to ${L(donorMatch)}, below ${L(mustHold)}`);
    }
    for (const [t, c] of this.maxCommitOfTerm) {
      if (t < term && c > termStartLsn) {
        this.violation('leader misses committed WAL', `term ${term} (proposer ${gen.proposerId}) starts at ${L(termStartLsn)}, below ${L(c)} committed in term ${t}`);
      }
    }
    const other = this.electedBy.get(term);
    if (other !== undefined && other !== gen.proposerId) {
      this.violation('two leaders in one term', `term ${term}: proposer ${other} and proposer ${gen.proposerId} were both elected`);
    }
    this.electedBy.set(term, gen.proposerId);
  }

  /** (c), (d) and the extension of the committed WAL, at the moment a proposer reports a commit. */
  onCommitted(gen: ProposerGeneration, commitLsn: Lsn): void {
    this.commits++;
    const term = gen.core.term;
    const pid = gen.proposerId;
    const committer = this.committedBy.get(term);
    if (committer !== undefined && committer !== pid) {
      this.violation('two committers in one term', `term ${term}: proposers ${committer} and ${pid} both committed`);
    }
    this.committedBy.set(term, pid);
    if ((this.maxCommitOfTerm.get(term) ?? 0) < commitLsn) this.maxCommitOfTerm.set(term, commitLsn);
    for (const [t, start] of this.termStart) {
      if (t > term && start < commitLsn) {
        this.violation('leader misses committed WAL', `term ${term} (proposer ${pid}) committed ${L(commitLsn)}, above the start ${L(start)} of the later term ${t}`);
      }
    }
    const previous = this.lastCommitOf.get(pid);
    if (previous !== undefined && commitLsn <= previous) {
      this.violation('commit went backwards', `proposer ${pid} reported ${L(commitLsn)} after ${L(previous as Lsn)}`);
    }
    this.lastCommitOf.set(pid, commitLsn);
    // Compare what this proposer says is committed with what was already reported committed.
    const wal = gen.core.wal;
    const from = Math.max(previous ?? wal.startLsn, wal.startLsn, this.baseLsn) as Lsn;
    const overlapEnd = Math.min(commitLsn, this.committedEnd) as Lsn;
    if (from < overlapEnd) {
      const mine = proposerReadWal(gen.core, from, overlapEnd);
      if (mine === null) {
        this.violation('checker cannot read', `proposer ${pid} no longer holds ${L(from)}..${L(overlapEnd)}`);
      } else {
        for (let i = 0; i < mine.length; i++) {
          if (mine[i] !== this.committed[from - this.baseLsn + i]) {
            this.violation('commit contradicts an earlier commit', `proposer ${pid} (term ${term}) reports ${L(commitLsn)} committed but its WAL differs at ${L(from + i)} from WAL committed earlier`);
            break;
          }
        }
      }
    }
    if (commitLsn < this.committedEnd) this.staleCommitReports++;
    if (commitLsn > this.committedEnd) {
      // WAL of earlier terms between the old commit point and our term start was never in this proposer's
      // memory unless some safekeeper needed it: it is the donor's WAL (ours by definition of the donor).
      let added: Uint8Array | null;
      if (this.committedEnd < wal.startLsn) {
        const donor = this.safekeepers[gen.core.donor];
        const headEnd = Math.min(commitLsn, wal.startLsn) as Lsn;
        const head = donor && donor.disk.durableEnd >= headEnd ? donor.disk.view(this.committedEnd, headEnd) : null;
        const tail = commitLsn > wal.startLsn ? proposerReadWal(gen.core, wal.startLsn, commitLsn) : new Uint8Array(0);
        added = head && tail ? concat(head, tail) : null;
      } else {
        added = proposerReadWal(gen.core, this.committedEnd, commitLsn);
      }
      if (added === null) {
        this.violation('checker cannot read', `proposer ${pid} does not hold ${L(this.committedEnd)}..${L(commitLsn)} it just committed`);
        return;
      }
      this.ensureCapacity(commitLsn - this.baseLsn);
      this.committed.set(added, this.committedEnd - this.baseLsn);
      this.committedEnd = commitLsn;
    }
  }

  /** (a) and (b), after every event. Incremental: only newly durable or changed bytes are compared. */
  afterEvent(): void {
    let holders = 0;
    for (let i = 0; i < this.safekeepers.length; i++) {
      if (this.refresh(i) >= this.committedEnd) holders++;
    }
    this.seenCommittedEnd = this.committedEnd;
    // (a) Every acknowledged byte is durable, identical, on a majority.
    if (holders < this.quorum) {
      const where = this.safekeepers.map((sk, i) => `${sk.name}: matches to ${L(this.matchEnd[i]!)}, durable end ${L(sk.disk.durableEnd)}`).join('; ');
      this.violation('acknowledged WAL lost', `committed end ${L(this.committedEnd)} is held by ${holders} safekeepers, quorum ${this.quorum} (${where})`);
    }
  }

  /** Brings matchEnd[i] up to date (incrementally), runs check (b) on safekeeper i, returns matchEnd[i]. */
  private refresh(i: number): Lsn {
    const committedEnd = this.committedEnd;
    const sk = this.safekeepers[i]!;
    const disk = sk.disk;
    const coreCommit = sk.core ? sk.core.commitLsn : -1;
    // Most events change nothing a checker looks at; skip those safekeepers.
    if (disk.version === this.seenVersion[i] && coreCommit === this.seenCoreCommit[i] && committedEnd === this.seenCommittedEnd) {
      return this.matchEnd[i]!;
    }
    this.seenVersion[i] = disk.version;
    this.seenCoreCommit[i] = coreCommit;
    const changed = disk.takeChangedFrom();
    let m = this.matchEnd[i]!;
    if (changed !== null && changed < m) m = changed;
    const limit = Math.min(disk.durableEnd, committedEnd);
    const committed = this.committed;
    const base = this.baseLsn;
    if (m < limit) m = (m + matchingPrefix(disk.view(m, limit as Lsn), committed.subarray(m - base, limit - base))) as Lsn;
    this.matchEnd[i] = m;
    // (b) What a safekeeper believes committed (in memory and in its control file) is the committed WAL.
    const persisted = disk.durableControl.commitLsn;
    if (persisted > m) {
      this.violation('replica disagrees on committed WAL', `${sk.name} control file commitLsn ${L(persisted)}, but its durable WAL matches the committed WAL only up to ${L(m)} (committed end ${L(committedEnd)})`);
    }
    if (sk.core && sk.core.commitLsn > m) {
      this.violation('replica disagrees on committed WAL', `${sk.name} commitLsn ${L(sk.core.commitLsn)}, but its durable WAL matches the committed WAL only up to ${L(m)} (committed end ${L(committedEnd)})`);
    }
    return m;
  }

  private ensureCapacity(bytes: number): void {
    if (bytes <= this.committed.length) return;
    let size = this.committed.length;
    while (size < bytes) size *= 2;
    const bigger = new Uint8Array(size);
    bigger.set(this.committed.subarray(0, this.committedEnd - this.baseLsn));
    this.committed = bigger;
  }
}

/** Length of the common prefix of two equally long arrays (a native compare first: usually all match). */
function matchingPrefix(a: Uint8Array, b: Uint8Array): number {
  if (a.length >= 64 && Buffer.compare(a, b) === 0) return a.length;
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return i;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
