// `safekeeper demo-writer`: a stand-in compute that streams generated (valid) PostgreSQL WAL to the
// safekeepers through the proposer and prints the commit LSN as it moves. For demos and smoke tests.

import { formatLsn, lsn, parseLsn, type Lsn } from '../lsn.js';
import { Proposer } from '../proposer/proposer_client.js';
import { WalGenerator } from '../wal/wal_generator.js';

export interface DemoWriterOptions {
  safekeepers: string[];
  tenant: string;
  timeline: string;
  appendBytes: number;
  seconds: number;
  inflight: number;
}

const SEGMENT_SIZE = 16 * 1024 * 1024;
const DEMO_SYSTEM_ID = 7310000000000000001n;

export async function runDemoWriter(opts: DemoWriterOptions): Promise<void> {
  const proposer = new Proposer({
    safekeepers: opts.safekeepers,
    tenantId: opts.tenant,
    timelineId: opts.timeline,
    systemId: DEMO_SYSTEM_ID,
    pgVersion: 150020,
    segmentSizeBytes: SEGMENT_SIZE,
  });
  proposer.on('quorumLost', () => process.stdout.write('quorum lost: commits wait for a majority of safekeepers\n'));
  proposer.on('quorumRegained', () => process.stdout.write('quorum regained\n'));
  proposer.start();
  const elected = await proposer.waitElected();
  process.stdout.write(`elected: term ${elected.term}, writing from ${formatLsn(elected.termStartLsn)}\n`);
  // A restarted demo continues the WAL where the safekeepers' history ends: its first record must link
  // back (xl_prev) to the last record there, which a safekeeper at that flushLsn reports.
  const prevLsn = await lastRecordAt(opts, elected.termStartLsn);
  const gen = new WalGenerator({ startLsn: elected.termStartLsn, segmentSizeBytes: SEGMENT_SIZE, systemId: DEMO_SYSTEM_ID, prevLsn });
  const until = Date.now() + opts.seconds * 1000;
  let committed = elected.termStartLsn as Lsn;
  let bytes = 0;
  let lastPrint = Date.now();
  const inflight = new Set<Promise<void>>();
  while (Date.now() < until) {
    while (inflight.size < opts.inflight) {
      const chunk = gen.chunk(opts.appendBytes);
      bytes += chunk.length;
      const p: Promise<void> = proposer.append(chunk).then((c) => {
        if (c > committed) committed = c;
        inflight.delete(p);
      });
      inflight.add(p);
    }
    await Promise.race(inflight);
    if (Date.now() - lastPrint >= 1000) {
      lastPrint = Date.now();
      process.stdout.write(`commitLsn ${formatLsn(committed)}  (${(bytes / 1e6).toFixed(1)} MB written)\n`);
    }
  }
  await Promise.all(inflight);
  process.stdout.write(`done: commitLsn ${formatLsn(committed)}, ${(bytes / 1e6).toFixed(1)} MB committed on a majority\n`);
  await proposer.close();
}

async function lastRecordAt(opts: DemoWriterOptions, at: Lsn): Promise<Lsn> {
  for (const ws of opts.safekeepers) {
    const http = ws.replace(/^ws/, 'http').replace(/\/v1\/wal$/, '');
    try {
      const res = await fetch(`${http}/v1/tenant/${opts.tenant}/timeline/${opts.timeline}`);
      if (!res.ok) continue;
      const s = (await res.json()) as { flushLsn: string; lastRecordLsn: string | null };
      if (s.flushLsn === formatLsn(at) && s.lastRecordLsn) return parseLsn(s.lastRecordLsn);
    } catch {
      // That safekeeper is down: ask the next one.
    }
  }
  return lsn(0);
}
