// The deterministic simulator over 2,000 seeds: no checker may fire on the real cores (including the
// no-proposer catch-up checker of peer recovery). Also checks that a seed replays identically (the property
// that makes a printed seed useful).
import t from 'tap';
import { runSeed, type SimResult } from '../src/sim/simulation.js';

const SEEDS = 2000;
const BATCHES = 4;

function summary(r: SimResult): string {
  const v = r.violations[0]!;
  return `seed ${r.seed}: ${v.kind} at ${(v.timeUs / 1000).toFixed(3)} ms: ${v.detail} (replay: npm run sim -- --seed ${r.seed})`;
}

for (let b = 0; b < BATCHES; b++) {
  const from = 1 + (b * SEEDS) / BATCHES;
  const to = from + SEEDS / BATCHES - 1;
  t.test(`seeds ${from}..${to}: no violations`, async (t) => {
    const failures: string[] = [];
    let commits = 0;
    let elections = 0;
    let tails = 0;
    let caughtUp = 0;
    for (let seed = from; seed <= to; seed++) {
      const r = runSeed(seed);
      commits += r.stats.commits;
      elections += r.stats.elections;
      if (r.params.noProposerTailUs > 0) tails++;
      if (r.stats.recoveryCatchUpUs >= 0) caughtUp++;
      if (r.violations.length > 0) failures.push(summary(r));
    }
    t.same(failures, [], 'no seed violates safety or liveness');
    t.ok(commits > (to - from) * 10, `the workload made progress (${commits} commits, ${elections} elections)`);
    t.ok(tails > (to - from) / 5 && caughtUp === tails, `${tails} runs ended with a long-down safekeeper and no proposer; all caught up by peer recovery`);
  });
}

t.test('a seed replays identically', async (t) => {
  for (const seed of [3, 77, 1234]) {
    const a = runSeed(seed);
    const b = runSeed(seed);
    t.same(b.stats, a.stats, `seed ${seed}: same run`);
  }
  t.not(runSeed(3).stats.events, runSeed(4).stats.events, 'different seeds, different runs');
});
