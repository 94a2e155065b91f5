#!/usr/bin/env node
// The `safekeeper` command line. Parses arguments and hands off to the command modules; holds no logic
// of its own beyond printing and exit codes.

import { Command, InvalidArgumentError } from 'commander';
import { formatReportLine, verifyWal } from '../tools/verify_wal.js';
import { runCluster } from './cluster_command.js';
import { runDemoWriter } from './demo_writer_command.js';
import { runStatus } from './status_command.js';
import { runStart, type StartOptions } from './start_command.js';

const program = new Command();
program.name('safekeeper').description('Durable, quorum-replicated WAL service for PostgreSQL').showHelpAfterError();

function parseSegmentSize(value: string): number {
  const mib = Number(value);
  if (!Number.isInteger(mib) || mib < 1 || mib > 1024 || (mib & (mib - 1)) !== 0) {
    throw new InvalidArgumentError('segment size is a power of two number of MiB, 1 to 1024');
  }
  return mib * 1024 * 1024;
}

program
  .command('verify-wal')
  .description('validate WAL segment files (plain or .gz) or directories of them; exit 1 on any damage')
  .argument('<paths...>', 'segment files or directories')
  .option('--json', 'print one JSON document instead of a table')
  .option('--segment-size <MiB>', 'segment size when it cannot be read from the files', parseSegmentSize)
  .action(async (paths: string[], opts: { json?: boolean; segmentSize?: number }) => {
    const reports = await verifyWal(paths, opts.segmentSize);
    const failed = reports.some((r) => r.status === 'error');
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ ok: !failed, segments: reports }, null, 2)}\n`);
    } else {
      for (const r of reports) process.stdout.write(`${formatReportLine(r)}\n`);
      process.stdout.write(failed ? 'verify-wal: DAMAGED\n' : `verify-wal: ${reports.length} segment(s) ok\n`);
    }
    process.exitCode = failed ? 1 : 0;
  });

function parseNodeId(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('node id is a positive integer');
  return n;
}

function parsePeers(value: string): Map<number, string> {
  const peers = new Map<number, string>();
  for (const item of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\d+)=(https?:\/\/[^\s,]+)$/.exec(item);
    if (!m) throw new InvalidArgumentError(`peer ${JSON.stringify(item)} is not ID=http://HOST:PORT`);
    peers.set(Number(m[1]), m[2]!.replace(/\/$/, ''));
  }
  return peers;
}

function parseListen(value: string): { host: string; port: number } {
  const m = /^(.*):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new InvalidArgumentError('listen address is HOST:PORT (port 0 picks a free one)');
  return { host: m[1] || '127.0.0.1', port };
}

program
  .command('start')
  .description('run one safekeeper node')
  .requiredOption('--id <n>', 'node id (unique in the cluster)', parseNodeId)
  .option('--listen <host:port>', 'WebSocket + HTTP listen address', parseListen, { host: '127.0.0.1', port: 7676 })
  .option('--data-dir <dir>', 'data directory', './data/sk')
  .option('--implicit-timeline-creation', 'create a timeline on the first greeting instead of requiring the API')
  .option('--direct-io <mode>', 'O_DIRECT for segment writes: auto, on or off', 'auto')
  .option('--peers <list>', 'other safekeepers for peer recovery: ID=URL,... (e.g. 2=http://10.0.0.2:7676)', parsePeers)
  .option('--pg-listen <host:port>', 'PostgreSQL replication protocol port (docs/REPLICATION.md); off when not given', parseListen)
  .action(async (opts: StartOptions) => {
    await runStart(opts);
  });

program
  .command('cluster')
  .description('run a local 3-safekeeper cluster on loopback (what `npm start` runs)')
  .option('--data-dir <dir>', 'parent data directory', './data')
  .option('--base-port <port>', 'first port; nodes use base, base+1, base+2', (v) => Number(v), 7701)
  .option('--nodes <n>', 'number of safekeepers (odd, 1 to 7)', (v) => Number(v), 3)
  .action(async (opts: { dataDir: string; basePort: number; nodes: number }) => {
    await runCluster(opts);
  });

program
  .command('demo-writer')
  .description('stream generated PostgreSQL WAL through a proposer to the safekeepers and print commitLsn')
  .option('--safekeepers <urls>', 'comma-separated ws:// URLs', 'ws://127.0.0.1:7701/v1/wal,ws://127.0.0.1:7702/v1/wal,ws://127.0.0.1:7703/v1/wal')
  .option('--tenant <id>', 'tenant id', 'demo')
  .option('--timeline <id>', 'timeline id', 'main')
  .option('--append-bytes <n>', 'WAL bytes per append', (v) => Number(v), 8192)
  .option('--inflight <n>', 'appends in flight', (v) => Number(v), 4)
  .option('--seconds <n>', 'how long to write', (v) => Number(v), 10)
  .action(async (opts: { safekeepers: string; tenant: string; timeline: string; appendBytes: number; inflight: number; seconds: number }) => {
    await runDemoWriter({ ...opts, safekeepers: opts.safekeepers.split(',').map((s) => s.trim()).filter(Boolean) });
  });

program
  .command('status')
  .description('print the timelines of a running safekeeper and their LSNs')
  .option('--url <url>', 'safekeeper HTTP URL', 'http://127.0.0.1:7701')
  .option('--json', 'print the raw status JSON')
  .action(async (opts: { url: string; json?: boolean }) => {
    await runStatus(opts);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  const e = err as { code?: string; message?: string };
  process.stderr.write(`safekeeper: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}\n`);
  process.exitCode = 2;
});
