// `npm run bench:quorum`: three real safekeeper processes on loopback and the networked Proposer.
//  1. commit latency of 8 KiB appends, 1 in flight (p50/p99/p99.9) and the appends/s that gives; floor: the
//     disk's own 8 KiB pwrite+fdatasync (O_DIRECT, zero-filled file) latency, same percentile, same run.
//  2. throughput with 16 appends of 8 KiB in flight (MB/s of WAL committed), floor: the disk's sequential
//     O_DIRECT bandwidth in 128 KiB writes (the largest AppendRequest, i.e. the largest write a safekeeper
//     is handed) divided by 3, since the three safekeepers share the one disk; plus p50/p99 commit latency
//     at 16 in flight beside the same 8 KiB write+fdatasync floor as 1.
//  3. proposer start() -> elected over 100 elections, each against a divergent, uncommitted 1 MiB tail on
//     safekeeper 1 (written by a "rogue" proposer that won a term on all three but streamed only to sk1),
//     which the new leader must truncate (sk1 voted late) or recover from sk1 as donor (sk1 voted early).
//     Floor: 3 sequential loopback round trips (WebSocket upgrade, greeting, vote; waitElected resolves on
//     the vote quorum, ProposerElected is not awaited), each priced at a greeting round trip measured on
//     the same cluster in the same run (same percentile). A lower bound: the TCP handshake before the
//     upgrade and the vote's durable control-file write are not in it (the latter is printed to stderr).
//     Also start() -> first 8 KiB commit of the new term, floor 4 round trips + one 8 KiB
//     write+fdatasync (it excludes the 1 MiB recovery transfer and the ProposerElected persist).
// Figures go to stdout as JSON lines (bench_output.ts); progress, per-process CPU use and anything the
// safekeepers or proposers logged at warn or above go to stderr.
// Data lives under $SK_BENCH_DIR (default: the OS temp dir) and is removed at the end, as are the child
// processes, however the run ends (SIGINT/SIGTERM, an error, or the watchdog). Knobs for quick runs:
// SK_BENCH_QUORUM_{WARMUP,OPS,LAT_MAX_MS,TPUT_WARMUP_MS,TPUT_MS,ELECTIONS,WATCHDOG_MS}.

import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as hdr from 'hdr-histogram-js';
import { formatLsn, parseLsn, type Lsn } from '../src/lsn.js';
import { measureSequentialWriteFloor, measureWriteSyncFloor, writeFileDurable } from '../src/native.js';
import { Proposer, type ProposerLogger } from '../src/proposer/proposer_client.js';
import { WalGenerator, type WalPosition } from '../src/wal/wal_generator.js';
import { emit, progress } from './bench_output.js';
import { startBenchCluster, type BenchSafekeeper } from './quorum_cluster.js';
import { greetingRoundTripUs, writeDivergentTail, type TimelineIdentity } from './quorum_wire.js';

const BENCH = 'quorum';
const SEGMENT = 16 * 1024 * 1024;
const ID: TimelineIdentity = {
  tenantId: 'benchtenant',
  timelineId: 'benchtimeline',
  systemId: 7310000000000000042n,
  pgVersion: 150004,
  segmentSizeBytes: SEGMENT,
};
/** An XLOG_NOOP record with this much data is 8168 bytes; with the page header it crosses, 8 KiB of WAL. */
const APPEND_PAYLOAD = 8192 - 24 - 5 - 24;
const TAIL_BYTES = 1024 * 1024;

const benchRoot = process.env.SK_BENCH_DIR ?? tmpdir();
const env = (name: string, dflt: number) => (process.env[name] !== undefined ? Number(process.env[name]) : dflt);
const LAT_WARMUP = env('SK_BENCH_QUORUM_WARMUP', 500);
const LAT_OPS = env('SK_BENCH_QUORUM_OPS', 8000);
/** The 1-in-flight phase stops early (with fewer samples) if it runs longer than this. */
const LAT_MAX_MS = env('SK_BENCH_QUORUM_LAT_MAX_MS', 45_000);
const TPUT_WARMUP_MS = env('SK_BENCH_QUORUM_TPUT_WARMUP_MS', 1500);
const TPUT_MS = env('SK_BENCH_QUORUM_TPUT_MS', 8000);
const INFLIGHT = 16;
const ELECTION_WARMUP = 5;
const ELECTIONS = env('SK_BENCH_QUORUM_ELECTIONS', 100);
const RTT_SAMPLES = 300;
/** The whole run is abandoned (children killed, data removed) after this long. */
const WATCHDOG_MS = env('SK_BENCH_QUORUM_WATCHDOG_MS', 300_000);

function histogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 });
}

const usSince = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1000;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Warnings and errors the proposers log: evidence when something misbehaves. */
const proposerLog: string[] = [];
const logger: ProposerLogger = {
  debug() {},
  info() {},
  warn(obj, msg) {
    proposerLog.push(`warn ${msg ?? ''} ${JSON.stringify(obj)}`);
  },
  error(obj, msg) {
    proposerLog.push(`error ${msg ?? ''} ${JSON.stringify(obj)}`);
  },
};

let nodes: BenchSafekeeper[] = [];
const proposers = new Set<Proposer>();

function newProposer(): Proposer {
  const p = new Proposer({
    safekeepers: nodes.map((n) => n.wsUrl),
    ...ID,
    reconnectMinMs: 20,
    reconnectMaxMs: 200,
    logger,
  });
  p.on('error', (err) => proposerLog.push(`proposer error event: ${err.message}`));
  proposers.add(p);
  return p;
}

async function closeProposer(p: Proposer): Promise<void> {
  proposers.delete(p);
  await withTimeout(p.close(), 5000, 'proposer close').catch((err: Error) => progress(`warning: ${err.message}`));
}

async function flushLsns(): Promise<Lsn[]> {
  return Promise.all(
    nodes.map(async (n) => {
      const r = await n.api('GET', `/v1/tenant/${ID.tenantId}/timeline/${ID.timelineId}`);
      if (r.status !== 200) throw new Error(`sk${n.id} timeline status ${r.status}: ${JSON.stringify(r.body)}`);
      return parseLsn(String(r.body.flushLsn));
    }),
  );
}

/**
 * Waits until every safekeeper's flushLsn is exactly `at` (so every round starts from the same state).
 * One may be above it for a while: a late voter still holding the divergent tail until its ProposerElected.
 */
async function waitAllFlushed(at: Lsn, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const f = await flushLsns();
    if (f.every((x) => x === at)) return;
    if (Date.now() > deadline) throw new Error(`safekeepers did not all reach ${formatLsn(at)} within ${timeoutMs} ms: ${f.map(formatLsn).join(', ')}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

function generator(from: WalPosition, seed: number): WalGenerator {
  return WalGenerator.resume({ ...from, segmentSizeBytes: SEGMENT, systemId: ID.systemId, seed });
}

/** CPU time (ms) used so far by each safekeeper process and by this process (proposer + bench). */
function cpuMs(): number[] {
  const ticksMs = 10; // USER_HZ is 100 on Linux
  const out: number[] = [];
  for (const n of nodes) {
    try {
      const stat = readFileSync(`/proc/${n.proc?.pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.push(Number(f[11]) * ticksMs, Number(f[12]) * ticksMs); // utime, stime (fields 14 and 15)
    } catch {
      out.push(NaN, NaN);
    }
  }
  const self = process.cpuUsage();
  out.push(self.user / 1000, self.system / 1000);
  return out;
}

function cpuReport(label: string, before: number[], wallMs: number, ops: number): void {
  const used = cpuMs().map((v, i) => v - before[i]!);
  const names = [...nodes.map((n) => `sk${n.id}`), 'bench+proposer'];
  const parts = names.map((name, i) => `${name} ${((used[2 * i]! + used[2 * i + 1]!) / 1000).toFixed(2)} s (sys ${(used[2 * i + 1]! / 1000).toFixed(2)})`);
  progress(
    `  CPU during ${label} (${(wallMs / 1000).toFixed(1)} s wall; the machine has ${availableParallelism()} CPUs): ${parts.join(', ')}; ` +
      `${((used.reduce((a, b) => a + b, 0) * 1000) / ops).toFixed(0)} us CPU per append over all four processes`,
  );
}

// ---- floors ---------------------------------------------------------------------------------------------

async function syncFloor(root: string, ops: number): Promise<hdr.Histogram> {
  const warm = 16;
  const samples = await measureWriteSyncFloor(join(root, 'floor-sync'), 8192, ops + warm, true);
  const h = histogram();
  for (let i = warm; i < samples.length; i++) h.recordValue(Math.max(1, samples[i]! / 1000));
  return h;
}

// ---- 1 and 2: commit latency and throughput ---------------------------------------------------------

async function latencyOneInFlight(p: Proposer, gen: WalGenerator): Promise<{ h: hdr.Histogram; perSecond: number }> {
  for (let i = 0; i < LAT_WARMUP; i++) await withTimeout(p.append(gen.next(APPEND_PAYLOAD)), 10_000, 'warm-up append');
  const h = histogram();
  const start = process.hrtime.bigint();
  let n = 0;
  for (; n < LAT_OPS; n++) {
    const wal = gen.next(APPEND_PAYLOAD);
    const t0 = process.hrtime.bigint();
    await withTimeout(p.append(wal), 10_000, 'append (1 in flight)');
    h.recordValue(Math.max(1, usSince(t0)));
    if (usSince(start) > LAT_MAX_MS * 1000) {
      progress(`  time budget of ${LAT_MAX_MS} ms reached after ${n + 1} appends`);
      n++;
      break;
    }
  }
  const seconds = usSince(start) / 1e6;
  return { h, perSecond: n / seconds };
}

/** Pre-generated appends per pipelined phase (256 MiB of 8 KiB appends). */
const PIPELINE_POOL_APPENDS = 32_768;
/** Generated, in stream order, and not yet appended. */
const pregenerated: Buffer[] = [];

/** Keeps `inflight` appends outstanding for `ms`; latency of each (recorded when `record`) and committed bytes. */
async function pipelined(p: Proposer, gen: WalGenerator, inflight: number, ms: number, record: boolean): Promise<{ h: hdr.Histogram; bytes: number; seconds: number }> {
  const h = histogram();
  let bytes = 0;
  let outstanding = 0;
  let stopIssuing = false;
  // The WAL is generated before the clock starts: producing it is the compute's work, and on two shared
  // cores it would otherwise be measured as the safekeepers' cost.
  // Appends generated but not sent by an earlier phase are sent first: the stream must stay contiguous.
  const pool = pregenerated;
  while (pool.length < PIPELINE_POOL_APPENDS) pool.push(gen.next(APPEND_PAYLOAD));
  const start = process.hrtime.bigint();
  let lastCommit = start;
  await new Promise<void>((resolve, reject) => {
    const stopTimer = setTimeout(() => {
      stopIssuing = true;
    }, ms);
    const watchdog = setTimeout(() => reject(new Error(`pipelined appends stalled (${outstanding} outstanding)`)), ms + 30_000);
    const issue = () => {
      const wal = pool.length > 0 ? pool.shift()! : gen.next(APPEND_PAYLOAD);
      const t0 = process.hrtime.bigint();
      outstanding++;
      p.append(wal).then(
        () => {
          const now = process.hrtime.bigint();
          if (record) h.recordValue(Math.max(1, Number(now - t0) / 1000));
          bytes += wal.length;
          lastCommit = now;
          outstanding--;
          if (!stopIssuing) issue();
          else if (outstanding === 0) {
            clearTimeout(stopTimer);
            clearTimeout(watchdog);
            resolve();
          }
        },
        (err: Error) => {
          clearTimeout(stopTimer);
          clearTimeout(watchdog);
          reject(err);
        },
      );
    };
    for (let i = 0; i < inflight; i++) issue();
  });
  return { h, bytes, seconds: Number(lastCommit - start) / 1e9 };
}

// ---- 3: elections against a divergent tail ------------------------------------------------------------

interface ElectionRound {
  electedUs: number;
  firstCommitUs: number;
  recovered: boolean;
}

async function electionRound(base: WalPosition, seed: number): Promise<{ round: ElectionRound; next: WalPosition }> {
  const urls = nodes.map((n) => n.wsUrl);
  let tailEnd: WalPosition | null = null;
  const rogue = await writeDivergentTail(urls, ID, 0, (termStartLsn) => {
    if (termStartLsn !== base.lsn) throw new Error(`rogue term starts at ${formatLsn(termStartLsn)}, expected ${formatLsn(base.lsn)}`);
    const g = generator(base, seed);
    const wal = g.chunk(TAIL_BYTES, { maxPayloadBytes: 8192 });
    tailEnd = g.position;
    return wal;
  });
  const tail = tailEnd as WalPosition | null;
  if (!tail || rogue.endLsn !== tail.lsn) throw new Error(`rogue tail ends at ${formatLsn(rogue.endLsn)}, generated up to ${tail ? formatLsn(tail.lsn) : '?'}`);
  const f = await flushLsns();
  if (f[0] !== tail.lsn || f[1] !== base.lsn || f[2] !== base.lsn) {
    throw new Error(`divergent tail not in place: flushLsn ${f.map(formatLsn).join(', ')}, expected ${formatLsn(tail.lsn)}, ${formatLsn(base.lsn)} x2`);
  }

  const q = newProposer();
  try {
    const t0 = process.hrtime.bigint();
    q.start();
    const e = await withTimeout(q.waitElected(), 10_000, 'election');
    const electedUs = usSince(t0);
    if (e.term <= rogue.term) throw new Error(`new term ${e.term} not above the rogue's ${rogue.term}`);
    let from: WalPosition;
    if (e.termStartLsn === base.lsn) from = base;
    else if (e.termStartLsn === tail.lsn) from = tail;
    else throw new Error(`term starts at ${formatLsn(e.termStartLsn)}: neither the truncation point ${formatLsn(base.lsn)} nor the tail end ${formatLsn(tail.lsn)}`);
    const g = generator(from, seed + 1);
    const wal = g.next(APPEND_PAYLOAD);
    const commit = await withTimeout(q.append(wal), 10_000, 'first append of the new term');
    const firstCommitUs = usSince(t0);
    if (commit < g.lsn) throw new Error(`append resolved with commitLsn ${formatLsn(commit)} below its end ${formatLsn(g.lsn)}`);
    // Every safekeeper (the truncated or the recovered ones too) ends exactly at the new term's WAL.
    await waitAllFlushed(g.lsn);
    return { round: { electedUs, firstCommitUs, recovered: from === tail }, next: g.position };
  } finally {
    await closeProposer(q);
  }
}

// ---- main ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const root = await mkdtemp(join(benchRoot, 'sk-bench-quorum-'));
  process.on('exit', () => {
    // Children are SIGKILLed by quorum_cluster's exit hook; whatever is left of the data goes too.
    for (const n of nodes) n.proc?.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      progress(`${sig}: stopping`);
      process.exit(130);
    });
  }
  setTimeout(() => {
    progress(`watchdog: not finished after ${WATCHDOG_MS} ms, giving up`);
    process.exit(2);
  }, WATCHDOG_MS).unref();

  progress(`data under ${root}`);
  progress('floor: 8 KiB pwrite+fdatasync, O_DIRECT');
  const sync = await syncFloor(root, 5000);
  const syncMeanUs = sync.mean;
  progress(`  p50 ${sync.getValueAtPercentile(50)} us, p99 ${sync.getValueAtPercentile(99)} us, p99.9 ${sync.getValueAtPercentile(99.9)} us`);
  progress('floor: sequential O_DIRECT writes, 128 KiB chunks, 256 MiB');
  const seqBytesPerSec = await measureSequentialWriteFloor(join(root, 'floor-seq'), 256 * 1024 * 1024, 128 * 1024, true);
  progress(`  ${(seqBytesPerSec / 1e6).toFixed(0)} MB/s (floor for three safekeepers: ${(seqBytesPerSec / 3e6).toFixed(0)} MB/s)`);

  progress('starting three safekeepers');
  nodes = await startBenchCluster(root, 3);
  for (const n of nodes) {
    const r = await n.api('POST', `/v1/tenant/${ID.tenantId}/timeline/${ID.timelineId}`, {});
    if (r.status !== 201) throw new Error(`sk${n.id} timeline create: ${r.status} ${JSON.stringify(r.body)}`);
  }

  const p0 = newProposer();
  p0.start();
  const e0 = await withTimeout(p0.waitElected(), 15_000, 'first election');
  progress(`elected term ${e0.term} at ${formatLsn(e0.termStartLsn)}`);
  const gen = new WalGenerator({ startLsn: e0.termStartLsn, segmentSizeBytes: SEGMENT, systemId: ID.systemId, seed: 1 });

  progress(`1 in flight: ${LAT_WARMUP} warm-up + ${LAT_OPS} appends of ~8 KiB (one XLOG_NOOP record each)`);
  let cpu0 = cpuMs();
  let wall0 = Date.now();
  const one = await latencyOneInFlight(p0, gen);
  cpuReport('1 in flight', cpu0, Date.now() - wall0, LAT_WARMUP + one.h.totalCount);
  for (const [pct, name] of [[50, 'p50'], [99, 'p99'], [99.9, 'p99.9']] as const) {
    emit(BENCH, `commit_8k_1inflight_${name}`, one.h.getValueAtPercentile(pct), 'us', sync.getValueAtPercentile(pct));
  }
  // Floor: back-to-back 8 KiB write+fdatasync on the same disk (1e6 / mean latency).
  emit(BENCH, 'commit_8k_1inflight_rate', one.perSecond, 'appends/s', 1e6 / syncMeanUs);

  progress(`${INFLIGHT} in flight: ${TPUT_WARMUP_MS} ms warm-up, ${TPUT_MS} ms measured`);
  await pipelined(p0, gen, INFLIGHT, TPUT_WARMUP_MS, false);
  cpu0 = cpuMs();
  wall0 = Date.now();
  const many = await pipelined(p0, gen, INFLIGHT, TPUT_MS, true);
  cpuReport(`${INFLIGHT} in flight`, cpu0, Date.now() - wall0, many.h.totalCount);
  emit(BENCH, `commit_8k_${INFLIGHT}inflight_throughput`, many.bytes / many.seconds / 1e6, 'MB/s', seqBytesPerSec / 3 / 1e6);
  for (const [pct, name] of [[50, 'p50'], [99, 'p99']] as const) {
    emit(BENCH, `commit_8k_${INFLIGHT}inflight_${name}`, many.h.getValueAtPercentile(pct), 'us', sync.getValueAtPercentile(pct));
  }
  progress(`  ${many.h.totalCount} appends, ${(many.bytes / 1e6).toFixed(0)} MB in ${many.seconds.toFixed(2)} s`);

  let pos = gen.position;
  await waitAllFlushed(pos.lsn);
  await closeProposer(p0);

  progress(`greeting round trip to sk1: ${RTT_SAMPLES} samples`);
  const rtt = histogram();
  for (let i = 0; i < RTT_SAMPLES + 20; i++) {
    const us = await greetingRoundTripUs(nodes[0]!.wsUrl, ID);
    if (i >= 20) rtt.recordValue(Math.max(1, us));
  }
  progress(`  p50 ${rtt.getValueAtPercentile(50)} us, p99 ${rtt.getValueAtPercentile(99)} us`);

  // Not a floor (it is the product's own durable-replace routine), but what every vote and every
  // ProposerElected with a new history waits for: printed so the election figures can be read.
  const ctl = histogram();
  for (let i = 0; i < 120; i++) {
    const t0 = process.hrtime.bigint();
    await writeFileDurable(join(root, 'control-probe'), Buffer.alloc(512, i));
    if (i >= 20) ctl.recordValue(Math.max(1, usSince(t0)));
  }
  progress(`control-file style durable replace (write tmp, fsync, rename, fsync dir): p50 ${ctl.getValueAtPercentile(50)} us, p99 ${ctl.getValueAtPercentile(99)} us`);

  progress(`elections: ${ELECTION_WARMUP} warm-up + ${ELECTIONS}, each against a ${TAIL_BYTES >> 20} MiB divergent tail on sk1`);
  const elected = histogram();
  const firstCommit = histogram();
  let recovered = 0;
  const electStart = Date.now();
  for (let i = 0; i < ELECTION_WARMUP + ELECTIONS; i++) {
    const { round, next } = await electionRound(pos, 1000 + 2 * i);
    pos = next;
    if (i < ELECTION_WARMUP) continue;
    elected.recordValue(Math.max(1, round.electedUs));
    firstCommit.recordValue(Math.max(1, round.firstCommitUs));
    if (round.recovered) recovered++;
    const done = i + 1 - ELECTION_WARMUP;
    if (done % 25 === 0) progress(`  round ${done}: elected p50 ${(elected.getValueAtPercentile(50) / 1000).toFixed(2)} ms`);
  }
  progress(`  ${ELECTIONS} rounds in ${((Date.now() - electStart) / 1000).toFixed(1)} s: sk1's tail recovered (sk1 was donor) ${recovered}x, truncated ${ELECTIONS - recovered}x`);
  for (const [pct, name] of [[50, 'p50'], [99, 'p99']] as const) {
    emit(BENCH, `election_${name}`, elected.getValueAtPercentile(pct) / 1000, 'ms', (3 * rtt.getValueAtPercentile(pct)) / 1000);
  }
  for (const [pct, name] of [[50, 'p50'], [99, 'p99']] as const) {
    emit(BENCH, `election_to_first_commit_${name}`, firstCommit.getValueAtPercentile(pct) / 1000, 'ms', (4 * rtt.getValueAtPercentile(pct) + sync.getValueAtPercentile(pct)) / 1000);
  }
  const p99ms = elected.getValueAtPercentile(99) / 1000;
  progress(`election p99 ${p99ms.toFixed(2)} ms: ${p99ms < 10 ? 'meets' : 'MISSES'} the 10 ms target (max ${(elected.maxValue / 1000).toFixed(2)} ms)`);

  progress('stopping');
  await Promise.all(nodes.map((n) => n.stop()));
  report();
  await rm(root, { recursive: true, force: true });
}

/** Anything unexpected the product said or did, on stderr. */
function report(): void {
  for (const n of nodes) {
    for (const x of n.unexpectedExits) progress(`UNEXPECTED: ${x}`);
    const lines = n.stderr.split('\n').filter((l) => l.trim() !== '');
    if (lines.length > 0) {
      progress(`sk${n.id} logged ${lines.length} line(s) at warn or above; last ones:`);
      for (const l of lines.slice(-5)) progress(`  ${l.slice(0, 400)}`);
    }
  }
  if (proposerLog.length > 0) {
    progress(`proposers logged ${proposerLog.length} warning(s)/error(s); first ones:`);
    for (const l of proposerLog.slice(0, 5)) progress(`  ${l.slice(0, 400)}`);
  }
}

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    report();
    for (const p of proposers) await p.close().catch(() => undefined);
    await Promise.all(nodes.map((n) => n.stop(1000).catch(() => undefined)));
    process.exit(1);
  },
);
