// `safekeeper start`: runs one node until SIGINT/SIGTERM, then shuts down gracefully.

import { pino } from 'pino';
import { ErrorCodes, SafekeeperError } from '../errors.js';
import { SafekeeperServer } from '../server/safekeeper_server.js';
import type { DirectIoMode } from '../storage/wal_store.js';

export interface StartOptions {
  id: number;
  listen: { host: string; port: number };
  dataDir: string;
  implicitTimelineCreation?: boolean;
  directIo: string;
  peers?: Map<number, string>;
  /** --pg-listen: PostgreSQL replication port (off when absent). */
  pgListen?: { host: string; port: number };
}

export async function runStart(opts: StartOptions): Promise<void> {
  if (!['auto', 'on', 'off'].includes(opts.directIo)) {
    throw new SafekeeperError(ErrorCodes.CONFIG_INVALID, `--direct-io must be auto, on or off, not ${JSON.stringify(opts.directIo)}`);
  }
  const logger = pino({ name: `sk${opts.id}`, level: process.env.SK_LOG_LEVEL ?? 'info' });
  const server = new SafekeeperServer({
    nodeId: opts.id,
    host: opts.listen.host,
    port: opts.listen.port,
    dataDir: opts.dataDir,
    implicitTimelineCreation: opts.implicitTimelineCreation ?? false,
    directIo: opts.directIo as DirectIoMode,
    logger,
    ...(opts.peers ? { peers: opts.peers } : {}),
    ...(opts.pgListen ? { pgListen: opts.pgListen } : {}), // pg replication port
  });
  await server.start();
  // A line for supervisors and tests to wait on.
  const pg = server.pgAddress; // pg replication port: ` pg=HOST:PORT` on the READY line when on
  process.stdout.write(`READY ${server.url}${pg ? ` pg=${pg.host}:${pg.port}` : ''}\n`);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    server.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  // For supervisors that cannot guarantee to signal us (test runners killed on a timeout): when the
  // parent holding our stdin goes away, shut down instead of lingering as an orphan.
  if (process.env.SK_EXIT_WITH_PARENT === '1') {
    process.stdin.on('end', stop);
    process.stdin.on('close', stop);
    process.stdin.resume();
  }
}
