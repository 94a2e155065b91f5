#!/usr/bin/env node
// The `safekeeper` command line. Parses arguments and hands off to the command modules; holds no logic
// of its own beyond printing and exit codes.

import { Command, InvalidArgumentError } from 'commander';
import { formatReportLine, verifyWal } from '../tools/verify_wal.js';

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

program.parseAsync(process.argv).catch((err: unknown) => {
  const e = err as { code?: string; message?: string };
  process.stderr.write(`safekeeper: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}\n`);
  process.exitCode = 2;
});
