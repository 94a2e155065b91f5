// Term history helpers: every case of the divergence point (Neon's find_highest_common_point), clipping,
// lastLogTerm and well-formedness, as tables.
import t from 'tap';
import { lsn } from '../src/lsn.js';
import { term, type TermHistory } from '../src/storage/timeline_state.js';
import { Prng } from '../src/sim/prng.js';
import {
  clipTermHistory,
  findDivergencePoint,
  lastLogTerm,
  termHistoriesEqual,
  termHistoryProblem,
} from '../src/core/term_history.js';

/** [[term, lsn], ...] -> TermHistory */
function h(...entries: [number, number][]): TermHistory {
  return entries.map(([tm, l]) => ({ term: term(tm), lsn: lsn(l) }));
}

t.test('divergence point: every case', async (t) => {
  const cases: { name: string; leader: TermHistory; acceptor: TermHistory; flush: number; start: number | 'conflict' }[] = [
    { name: 'empty acceptor: start where the leader history starts', leader: h([1, 100], [3, 500]), acceptor: [], flush: 100, start: 100 },
    { name: 'no common first term: everything the acceptor has is foreign', leader: h([2, 100], [4, 300]), acceptor: h([1, 100]), flush: 250, start: 100 },
    { name: 'acceptor already follows this leader: its flushLsn', leader: h([1, 100], [3, 500]), acceptor: h([1, 100], [3, 500]), flush: 640, start: 640 },
    { name: 'acceptor follows this leader with no WAL of its term yet', leader: h([1, 100], [3, 500]), acceptor: h([1, 100], [3, 500]), flush: 500, start: 500 },
    { name: 'leader switched first: leader next switch', leader: h([1, 100], [2, 300], [5, 700]), acceptor: h([1, 100], [3, 400]), flush: 900, start: 300 },
    { name: 'acceptor switched first: acceptor next switch', leader: h([1, 100], [2, 400], [5, 700]), acceptor: h([1, 100], [3, 350]), flush: 900, start: 350 },
    { name: 'acceptor ends in the common term below the leader switch: its flushLsn', leader: h([1, 100], [4, 600]), acceptor: h([1, 100]), flush: 450, start: 450 },
    { name: 'acceptor ends in the common term beyond the leader switch: leader switch', leader: h([1, 100], [4, 600]), acceptor: h([1, 100]), flush: 800, start: 600 },
    { name: 'donor: same history, flush at the new term start', leader: h([1, 100], [2, 300], [6, 900]), acceptor: h([1, 100], [2, 300]), flush: 900, start: 900 },
    { name: 'acceptor history beyond flushLsn is ignored (clipped)', leader: h([1, 100], [2, 300], [6, 900]), acceptor: h([1, 100], [5, 400]), flush: 380, start: 300 },
    { name: 'clipped entry beyond flush would have been common: still clipped', leader: h([1, 100], [2, 300], [6, 900]), acceptor: h([1, 100], [2, 300]), flush: 250, start: 250 },
    { name: 'switch exactly at flushLsn is kept', leader: h([1, 100], [2, 300], [6, 900]), acceptor: h([1, 100], [2, 300]), flush: 300, start: 300 },
    { name: 'several common terms, divergence deep in the history', leader: h([1, 0], [2, 10], [3, 20], [7, 70]), acceptor: h([1, 0], [2, 10], [3, 20], [4, 40]), flush: 90, start: 40 },
    { name: 'common term, both switch at the same LSN to different terms', leader: h([1, 0], [3, 50], [7, 70]), acceptor: h([1, 0], [2, 50]), flush: 60, start: 50 },
    { name: 'conflict: a common term starting at different LSNs', leader: h([1, 100], [3, 500]), acceptor: h([1, 120]), flush: 300, start: 'conflict' },
    { name: 'conflict deeper in the history', leader: h([1, 0], [2, 10], [5, 90]), acceptor: h([1, 0], [2, 11]), flush: 30, start: 'conflict' },
  ];
  for (const c of cases) {
    const result = findDivergencePoint(c.leader, c.acceptor, lsn(c.flush));
    if (c.start === 'conflict') t.equal(result.ok, false, c.name);
    else t.same(result, { ok: true, startLsn: c.start }, c.name);
  }
  t.throws(() => findDivergencePoint([], h([1, 0]), lsn(5)), RangeError, 'an empty leader history is a caller bug');
});

/** Term that wrote position p according to a history (the last switch at or below p); -1 before it. */
function labelAt(history: TermHistory, p: number): number {
  let label = -1;
  for (const e of history) if (e.lsn <= p) label = e.term;
  return label;
}

function randomHistory(rng: Prng, maxTerm: number): TermHistory {
  const out: [number, number][] = [];
  let tm = rng.range(1, 2);
  let at = 0;
  while (tm < maxTerm) {
    out.push([tm, at]);
    tm += rng.range(1, 3);
    at += rng.pick([0, 10, 20]);
  }
  return h(...out);
}

t.test('divergence point: both logs are labelled with the same terms below it (property)', async (t) => {
  const rng = new Prng(7);
  let checked = 0;
  for (let i = 0; i < 20_000; i++) {
    const own = 10;
    const donor = randomHistory(rng, own);
    const termStart = rng.range(donor[donor.length - 1]!.lsn, donor[donor.length - 1]!.lsn + 30);
    const leader = [...donor, { term: term(own), lsn: lsn(termStart) }];
    // Acceptors: the leader's own history (already following), the donor's, or an unrelated one.
    const roll = rng.int(3);
    const acceptor = roll === 0 ? leader : roll === 1 ? donor : randomHistory(rng, own);
    const flush = rng.range(0, 120);
    const r = findDivergencePoint(leader, acceptor, lsn(flush));
    if (!r.ok) continue;
    checked++;
    const clipped = clipTermHistory(acceptor, lsn(flush));
    const followsLeader = clipped.some((e) => e.term === own);
    if (clipped.length > 0 && r.startLsn > flush && !followsLeader) {
      t.fail(`start ${r.startLsn} beyond the acceptor's flushLsn ${flush}`);
      return;
    }
    for (let p = 0; p < Math.min(r.startLsn, flush); p++) {
      const a = labelAt(clipped, p);
      const l = labelAt(leader, p);
      if (a !== l) {
        t.fail(`acceptor ${JSON.stringify(acceptor)} flush ${flush}, leader ${JSON.stringify(leader)}: start ${r.startLsn} but position ${p} is term ${a} vs ${l}`);
        return;
      }
    }
  }
  t.ok(checked > 5000, `checked ${checked} pairs`);
});

t.test('clipTermHistory and lastLogTerm', async (t) => {
  const history = h([1, 100], [2, 300], [5, 300], [7, 900]);
  const cases: [number, number, number][] = [
    // flushLsn, entries kept, lastLogTerm
    [50, 0, 0],
    [100, 1, 1],
    [299, 1, 1],
    [300, 3, 5],
    [899, 3, 5],
    [900, 4, 7],
    [5000, 4, 7],
  ];
  for (const [flush, kept, last] of cases) {
    t.equal(clipTermHistory(history, lsn(flush)).length, kept, `clip at ${flush} keeps ${kept}`);
    t.equal(lastLogTerm(history, lsn(flush)), last, `lastLogTerm at ${flush} is ${last}`);
  }
  t.equal(clipTermHistory(history, lsn(5000)), history, 'nothing to clip returns the same array');
  t.equal(lastLogTerm([], lsn(10)), 0, 'empty history: initial term');
});

t.test('termHistoryProblem and termHistoriesEqual', async (t) => {
  t.equal(termHistoryProblem([]), null);
  t.equal(termHistoryProblem(h([1, 0], [2, 0], [3, 10])), null, 'equal LSNs allowed');
  t.match(termHistoryProblem(h([1, 0], [1, 10])), /terms not increasing/);
  t.match(termHistoryProblem(h([2, 0], [1, 10])), /terms not increasing/);
  t.match(termHistoryProblem(h([1, 10], [2, 5])), /LSNs decreasing/);
  t.ok(termHistoriesEqual(h([1, 0], [2, 5]), h([1, 0], [2, 5])));
  t.notOk(termHistoriesEqual(h([1, 0], [2, 5]), h([1, 0], [2, 6])));
  t.notOk(termHistoriesEqual(h([1, 0]), h([1, 0], [2, 6])));
});

