// Quorum arithmetic and donor choice: tables, and a property test of the commit LSN against a naive twin.
import t from 'tap';
import { lsn, type Lsn } from '../src/lsn.js';
import { term, type Term } from '../src/storage/timeline_state.js';
import { quorumCommitLsn, quorumSize } from '../src/core/commit_lsn.js';
import { chooseDonor } from '../src/core/donor_choice.js';
import { Prng } from '../src/sim/prng.js';

t.test('quorumSize', async (t) => {
  const table: [number, number][] = [[1, 1], [2, 2], [3, 2], [4, 3], [5, 3], [6, 4], [7, 4]];
  for (const [n, q] of table) t.equal(quorumSize(n), q, `${n} members -> quorum ${q}`);
  t.throws(() => quorumSize(0), RangeError);
});

t.test('quorumCommitLsn table', async (t) => {
  const L = (...xs: number[]): Lsn[] => xs.map((x) => lsn(x));
  const cases: { flushes: Lsn[]; quorum: number; termStart: number; want: number | null; name: string }[] = [
    { name: 'majority at 200', flushes: L(100, 200, 300), quorum: 2, termStart: 0, want: 200 },
    { name: 'all equal', flushes: L(50, 50, 50), quorum: 2, termStart: 0, want: 50 },
    { name: 'acks below the term start do not count', flushes: L(100, 200, 300), quorum: 2, termStart: 250, want: null },
    { name: 'term start itself counts', flushes: L(250, 250, 10), quorum: 2, termStart: 250, want: 250 },
    { name: 'one ack above start, one below', flushes: L(260, 240, 0), quorum: 2, termStart: 250, want: null },
    { name: 'five members, quorum three', flushes: L(10, 50, 40, 30, 20), quorum: 3, termStart: 0, want: 30 },
    { name: 'not enough members', flushes: L(10), quorum: 2, termStart: 0, want: null },
  ];
  for (const c of cases) t.equal(quorumCommitLsn(c.flushes, c.quorum, lsn(c.termStart)), c.want, c.name);
});

/** The naive twin: the largest LSN L >= termStart such that at least `quorum` members flushed L. */
function naiveCommit(flushes: readonly number[], quorum: number, termStart: number): number | null {
  let best: number | null = null;
  for (const candidate of flushes) {
    if (candidate < termStart) continue;
    const holders = flushes.filter((f) => f >= candidate).length;
    if (holders >= quorum && (best === null || candidate > best)) best = candidate;
  }
  return best;
}

t.test('quorumCommitLsn agrees with the naive twin (property, 20,000 random cases)', async (t) => {
  const rng = new Prng(42);
  let mismatches = 0;
  for (let i = 0; i < 20_000; i++) {
    const n = rng.range(1, 7);
    const quorum = rng.chance(0.8) ? quorumSize(n) : rng.range(1, n);
    const spread = rng.pick([3, 10, 1000]);
    const flushes = Array.from({ length: n }, () => lsn(rng.int(spread)));
    const termStart = rng.int(spread);
    const got = quorumCommitLsn(flushes, quorum, lsn(termStart));
    const want = naiveCommit(flushes, quorum, termStart);
    if (got !== want) {
      mismatches++;
      if (mismatches < 5) t.fail(`flushes ${flushes} quorum ${quorum} start ${termStart}: got ${got}, want ${want}`);
    }
  }
  t.equal(mismatches, 0);
  t.same([...[lsn(3), lsn(1), lsn(2)]], [3, 1, 2], 'input is not reordered');
});

t.test('quorumCommitLsn does not mutate its input', async (t) => {
  const flushes = [lsn(3), lsn(1), lsn(2)];
  quorumCommitLsn(flushes, 2, lsn(0));
  t.same(flushes, [3, 1, 2]);
});

t.test('chooseDonor: highest (lastLogTerm, flushLsn), first wins ties, gaps skipped', async (t) => {
  const c = (tm: number, f: number): { lastLogTerm: Term; flushLsn: Lsn } => ({ lastLogTerm: term(tm), flushLsn: lsn(f) });
  const cases: { name: string; candidates: ({ lastLogTerm: Term; flushLsn: Lsn } | null)[]; want: number }[] = [
    { name: 'empty', candidates: [], want: -1 },
    { name: 'only gaps', candidates: [null, null], want: -1 },
    { name: 'higher term beats longer log', candidates: [c(1, 900), c(2, 100)], want: 1 },
    { name: 'same term: longer log', candidates: [c(2, 100), c(2, 300), c(1, 999)], want: 1 },
    { name: 'tie: first', candidates: [c(2, 300), c(2, 300)], want: 0 },
    { name: 'skips absent voters', candidates: [null, c(1, 5), null, c(1, 6)], want: 3 },
    { name: 'empty logs', candidates: [c(0, 40), c(0, 40)], want: 0 },
  ];
  for (const x of cases) t.equal(chooseDonor(x.candidates), x.want, x.name);
});
