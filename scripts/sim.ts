// Command line for the deterministic simulator: run many seeds and summarise, or replay one seed with a
// full event trace. Exits non-zero on any violation and prints how to replay it; never hides a failure.

import { Command, InvalidArgumentError } from 'commander';
import type { SimOverrides } from '../src/sim/sim_params.js';
import { runSeed, type SimResult } from '../src/sim/simulation.js';

/** Deliberately broken cores, to see the checkers catch them (never a production setting). */
const FAULTS: Record<string, SimOverrides> = {
  'ack-before-flush': { acceptorFaults: { ackBeforeFlush: true } },
  'vote-before-persist': { acceptorFaults: { voteBeforePersist: true } },
  'peer-commit-ignoring-term': { acceptorFaults: { peerCommitIgnoringTerm: true } },
  'recovery-ignoring-proposer': { acceptorFaults: { recoveryIgnoringProposer: true } },
  'commit-without-term-start': { proposerFaults: { commitWithoutTermStart: true } },
  'donor-by-flush-lsn': { proposerFaults: { donorByFlushLsnOnly: true } },
};

function integer(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
}

function describe(result: SimResult): string {
  const p = result.params;
  const s = result.stats;
  return (
    `seed ${result.seed}: ${p.safekeepers} safekeepers, ${p.proposers} proposer slot(s); ` +
    `${s.events} events, ${(s.simTimeUs / 1000).toFixed(0)} ms simulated, ${s.elections} elections, ${s.commits} commits ` +
    `(${s.committedBytes} bytes), ${s.safekeeperCrashes} safekeeper crashes, ${s.proposerGenerations} proposer generations, ` +
    `${s.partitions} partitions, ${s.connectionBreaks} connection breaks, ${s.fences} fences${s.truncated ? ' (hit maxEvents)' : ''}` +
    (p.noProposerTailUs > 0 ? `; no-proposer tail: ${s.recoveryCatchUpUs >= 0 ? `all caught up after ${(s.recoveryCatchUpUs / 1000).toFixed(0)} ms` : 'not caught up'}` : '')
  );
}

const program = new Command()
  .name('sim')
  .description('Seeded deterministic simulation of safekeepers and proposers with safety checkers')
  .option('--seeds <n>', 'number of seeds to run', integer)
  .option('--seed-start <s>', 'first seed of the batch', integer, 1)
  .option('--seed <s>', 'replay one seed with a verbose event trace', integer)
  .option('--max-trace-lines <n>', 'stop printing the trace after this many lines (replay)', integer, 200_000)
  .option('--fault <name>', `run a deliberately broken core: ${Object.keys(FAULTS).join(', ')}`)
  .option('--coverage', 'print how often interesting situations happened across the batch')
  .option('--no-audit', 'do not check replies against the simulated disk when sent (end-to-end checkers only)')
  .parse();

const opts = program.opts<{ seeds?: number; seedStart: number; seed?: number; maxTraceLines: number; fault?: string; audit: boolean; coverage?: boolean }>();
if (opts.fault !== undefined && !(opts.fault in FAULTS)) program.error(`unknown fault ${opts.fault}; known: ${Object.keys(FAULTS).join(', ')}`);
const overrides: SimOverrides = { ...(opts.fault ? FAULTS[opts.fault] : {}), audit: opts.audit };
const replayFlags = `${opts.fault ? ` --fault ${opts.fault}` : ''}${opts.audit ? '' : ' --no-audit'}`;

if (opts.seed !== undefined) {
  let lines = 0;
  const result = runSeed(opts.seed, overrides, {
    trace: (line) => {
      if (lines++ < opts.maxTraceLines) process.stdout.write(`${line}\n`);
    },
  });
  console.log('');
  console.log(describe(result));
  for (const v of result.violations) console.log(`VIOLATION at ${(v.timeUs / 1000).toFixed(3)} ms: ${v.kind}: ${v.detail}`);
  process.exitCode = result.violations.length > 0 ? 1 : 0;
} else {
  const count = opts.seeds ?? 100;
  const start = opts.seedStart;
  const began = performance.now();
  let failed = 0;
  let events = 0;
  let commits = 0;
  let elections = 0;
  let crashes = 0;
  const counters: Record<string, number> = {};
  const every = Math.max(100, Math.floor(count / 20));
  for (let i = 0; i < count; i++) {
    const seed = start + i;
    const result = runSeed(seed, overrides);
    events += result.stats.events;
    commits += result.stats.commits;
    elections += result.stats.elections;
    crashes += result.stats.safekeeperCrashes;
    for (const [k, v] of Object.entries(result.stats.counters)) counters[k] = (counters[k] ?? 0) + v;
    if (result.violations.length > 0) {
      failed++;
      const v = result.violations[0]!;
      console.log(`FAIL ${describe(result)}`);
      console.log(`  ${v.kind} at ${(v.timeUs / 1000).toFixed(3)} ms: ${v.detail}`);
      console.log(`  replay: npm run sim -- --seed ${seed}${replayFlags}`);
    }
    if ((i + 1) % every === 0) {
      const secs = (performance.now() - began) / 1000;
      console.log(`.. ${i + 1}/${count} seeds, ${failed} failed, ${((i + 1) / secs).toFixed(1)} seeds/s`);
    }
  }
  const secs = (performance.now() - began) / 1000;
  console.log(
    `${count} seeds from ${start}: ${failed} with violations; ${events} events, ${elections} elections, ${commits} commits, ` +
      `${crashes} safekeeper crashes; ${secs.toFixed(1)} s (${(count / secs).toFixed(1)} seeds/s, ${Math.round(events / secs)} events/s)`,
  );
  if (opts.coverage) {
    for (const k of Object.keys(counters).sort()) console.log(`  ${String(counters[k]).padStart(9)}  ${k}`);
  }
  process.exitCode = failed > 0 ? 1 : 0;
}
