// The simulator's checkers bite: deliberately broken cores are caught within a bounded number of seeds,
// by the end-to-end checkers alone (audit off) and by the durability audit at the wire.
import t from 'tap';
import type { SimOverrides } from '../src/sim/sim_params.js';
import { runSeed } from '../src/sim/simulation.js';

/** The first violation kinds found in seeds 1..maxSeeds (stops at the first failing seed). */
function firstCaught(overrides: SimOverrides, maxSeeds: number): { seed: number; kinds: string[] } | null {
  for (let seed = 1; seed <= maxSeeds; seed++) {
    const r = runSeed(seed, overrides);
    if (r.violations.length > 0) return { seed, kinds: r.violations.map((v) => v.kind) };
  }
  return null;
}

t.test('acknowledging before fsync loses acknowledged WAL (end-to-end checker, no audit)', async (t) => {
  const caught = firstCaught({ acceptorFaults: { ackBeforeFlush: true }, audit: false }, 50);
  t.ok(caught, 'caught');
  t.match(caught?.kinds, ['acknowledged WAL lost']);
});

t.test('acknowledging before fsync is caught at the wire by the durability audit', async (t) => {
  const caught = firstCaught({ acceptorFaults: { ackBeforeFlush: true } }, 20);
  t.match(caught?.kinds, ['durability audit']);
});

t.test('granting a vote before it is persisted is caught by the durability audit', async (t) => {
  // Only visible when the driver sends eagerly; the FIFO driver alone would hide it.
  const caught = firstCaught({ acceptorFaults: { voteBeforePersist: true }, eagerSends: true }, 20);
  t.match(caught?.kinds, ['durability audit']);
});

t.test('choosing the donor by flushLsn alone (ignoring lastLogTerm) loses or contradicts committed WAL', async (t) => {
  const caught = firstCaught({ proposerFaults: { donorByFlushLsnOnly: true } }, 400);
  t.ok(caught, `caught at seed ${caught?.seed}`);
  t.ok(
    caught?.kinds.some((k) => ['leader misses committed WAL', 'acknowledged WAL lost', 'safekeeper invariant', 'commit contradicts an earlier commit'].includes(k)),
    `caught as ${caught?.kinds.join(', ')}`,
  );
});

t.test('adopting a peer commitLsn across different last terms makes a replica disagree on committed WAL', async (t) => {
  const caught = firstCaught({ acceptorFaults: { peerCommitIgnoringTerm: true } }, 200);
  t.match(caught?.kinds, ['replica disagrees on committed WAL']);
});

t.test('peer recovery that goes on while a proposer voted or is elected here breaks the vote promise', async (t) => {
  // The vote response reported our WAL; the leader cuts us where that WAL diverged, now below what
  // recovery brought in (and committed): the safekeeper's commit assertion or the proposer's fires.
  const caught = firstCaught({ acceptorFaults: { recoveryIgnoringProposer: true } }, 50);
  t.ok(caught, `caught at seed ${caught?.seed}`);
  t.ok(caught?.kinds.some((k) => ['safekeeper invariant', 'proposer invariant', 'acknowledged WAL lost', 'replica disagrees on committed WAL'].includes(k)), `caught as ${caught?.kinds.join(', ')}`);
});

t.test('committing by counting acknowledgements below the term start (Raft figure 8) loses committed WAL', async (t) => {
  // Tiny appends, one in flight, frequent faults: elections land while safekeepers are half recovered.
  const figure8: SimOverrides = {
    proposerFaults: { commitWithoutTermStart: true },
    maxAppendBytes: 16,
    maxReadBytes: 16,
    maxInflightAppends: 1,
    workload: { recordMaxBytes: 40 },
    chaos: { meanIntervalUs: 6000, safekeeperDownMaxUs: 20_000 },
    durationUs: 600_000,
    settleUs: 100_000,
    checkLiveness: false,
    // Peer recovery evens out the logs between elections: figure-8 situations get ~30x rarer with it.
    recovery: { enabled: false },
  };
  const caught = firstCaught(figure8, 300);
  t.ok(caught, `caught at seed ${caught?.seed}`);
  t.ok(
    caught?.kinds.some((k) => ['leader misses committed WAL', 'acknowledged WAL lost', 'safekeeper invariant', 'commit contradicts an earlier commit'].includes(k)),
    `caught as ${caught?.kinds.join(', ')}`,
  );
});
