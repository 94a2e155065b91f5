// Peer recovery in the simulator: after a safekeeper was down for long (losing its unflushed tail) and every
// proposer stopped, every live safekeeper catches up to the highest commitLsn by peer recovery alone, within
// the tail; without peer recovery the catch-up checker fires (it is not vacuous).
import t from 'tap';
import type { SimOverrides } from '../src/sim/sim_params.js';
import { runSeed } from '../src/sim/simulation.js';

const TAIL_US = 200_000;

t.test('long downtime, then no proposer: every live safekeeper catches up by peer recovery', async (t) => {
  const overrides: SimOverrides = { recovery: { enabled: true }, noProposerTailUs: TAIL_US, longDowntimeVictims: 2 };
  const failures: string[] = [];
  const catchUps: number[] = [];
  let victims = 0;
  for (let seed = 1; seed <= 150; seed++) {
    const r = runSeed(seed, overrides);
    if (r.violations.length > 0) failures.push(`seed ${seed}: ${r.violations[0]!.kind}: ${r.violations[0]!.detail}`);
    if (r.stats.recoveryCatchUpUs >= 0) catchUps.push(r.stats.recoveryCatchUpUs);
    victims += r.stats.counters['long downtime victim'] ?? 0;
  }
  t.same(failures, [], 'no violations');
  t.ok(victims >= 150, `victims were down for long (${victims})`);
  t.ok(catchUps.length >= 140, `caught up in ${catchUps.length} of 150 runs`);
  catchUps.sort((a, b) => a - b);
  t.ok(catchUps[catchUps.length - 1]! < TAIL_US, `slowest catch-up ${catchUps[catchUps.length - 1]}us, median ${catchUps[catchUps.length >> 1]}us`);
});

t.test('small recovery reads, one in flight at a time: still within the tail', async (t) => {
  const overrides: SimOverrides = { recovery: { enabled: true, readBytes: 4096, inflightReads: 1 }, noProposerTailUs: TAIL_US, longDowntimeVictims: 1 };
  const failures: string[] = [];
  for (let seed = 1000; seed < 1060; seed++) {
    const r = runSeed(seed, overrides);
    if (r.violations.length > 0) failures.push(`seed ${seed}: ${r.violations[0]!.kind}: ${r.violations[0]!.detail}`);
  }
  t.same(failures, [], 'no violations');
});

t.test('without peer recovery the catch-up checker fires', async (t) => {
  const overrides: SimOverrides = { recovery: { enabled: false }, noProposerTailUs: TAIL_US, longDowntimeVictims: 1 };
  let caught: { seed: number; kinds: string[] } | null = null;
  for (let seed = 1; seed <= 20 && !caught; seed++) {
    const r = runSeed(seed, overrides);
    if (r.violations.length > 0) caught = { seed, kinds: r.violations.map((v) => v.kind) };
  }
  t.ok(caught, `caught at seed ${caught?.seed}`);
  t.same(caught?.kinds, ['no catch-up without a proposer']);
});
