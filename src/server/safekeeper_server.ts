// One safekeeper process: loads its timelines, serves proposers over WebSocket and the management API over
// HTTP on one uWS port, and shuts down gracefully (stop accepting, let queued flushes finish, close).

import { createServer } from 'node:net';
import { pino, type Logger } from 'pino';
import { uWS, type TemplatedApp, type us_listen_socket } from './uws.js';
import { attachHttpApi } from './http_api.js';
import { ProposerSockets } from './proposer_socket.js';
import { TimelineRegistry } from './timeline_registry.js';
import { PeerBroker } from './peer_broker.js';
import type { DirectIoMode } from '../storage/wal_store.js';
import { PgReplicationServer } from '../replication/pg_replication_server.js'; // pg replication port

export interface SafekeeperConfig {
  nodeId: number;
  host: string;
  /** 0 picks an ephemeral port (see `port` after start). */
  port: number;
  dataDir: string;
  implicitTimelineCreation: boolean;
  directIo: DirectIoMode;
  /** Other safekeepers of the cluster: node id -> HTTP base URL (static peers; for peer recovery). */
  peers?: ReadonlyMap<number, string>;
  logger?: Logger;
  /** PostgreSQL replication protocol port (docs/REPLICATION.md); off when absent. Port 0 picks one. */
  pgListen?: { host: string; port: number };
}

export class SafekeeperServer {
  readonly log: Logger;
  readonly registry: TimelineRegistry;
  private readonly sockets: ProposerSockets;
  private readonly broker: PeerBroker;
  private readonly app: TemplatedApp;
  private listenSocket: us_listen_socket | null = null;
  private boundPort = 0;
  private readonly startedAt = new Date();
  /** The PostgreSQL replication port, when configured (see `pgAddress`). */
  pgReplication: PgReplicationServer | null = null;

  constructor(readonly config: SafekeeperConfig) {
    this.log = config.logger ?? pino({ name: `sk${config.nodeId}` });
    this.sockets = new ProposerSockets(this.log, config.implicitTimelineCreation);
    const peers = new Map([...(config.peers ?? new Map<number, string>())].filter(([id]) => id !== config.nodeId));
    this.broker = new PeerBroker(config.nodeId, peers, this.log);
    this.registry = new TimelineRegistry({
      nodeId: config.nodeId,
      dataDir: config.dataDir,
      sink: this.sockets,
      direct: config.directIo,
      onFatal: (err) => this.fatal(err),
      ...(peers.size > 0 ? { peerLink: (t: string, l: string) => this.broker.link(t, l) } : {}),
    });
    this.sockets.registry = this.registry;
    this.broker.registry = this.registry;
    this.app = uWS.App();
    this.sockets.attach(this.app);
    attachHttpApi(this.app, this.registry, {
      nodeId: config.nodeId,
      startedAt: this.startedAt,
      connectionCount: () => this.sockets.connectionCount,
    }, this.broker);
  }

  get port(): number {
    return this.boundPort;
  }

  /** Where the PostgreSQL replication port listens (null when off). */
  get pgAddress(): { host: string; port: number } | null {
    return this.pgReplication?.address ?? null;
  }

  get url(): string {
    return `http://${this.config.host}:${this.boundPort}`;
  }

  async start(): Promise<void> {
    await this.registry.loadAll();
    for (const [key, why] of this.registry.broken) this.log.error({ timeline: key }, `timeline not served: ${why}`);
    // uSockets sets SO_REUSEADDR only when given a concrete port: with port 0 the connections it accepts
    // would leave TIME_WAIT entries that block a restart on that port for a minute. So an ephemeral
    // port is picked here first. EXCLUSIVE_PORT: no second process may share the port (SO_REUSEPORT).
    const port = this.config.port === 0 ? await pickFreePort(this.config.host) : this.config.port;
    const listen = this.app.listen as unknown as (host: string, port: number, options: number, cb: (s: us_listen_socket | false) => void) => void;
    for (let attempt = 0; ; attempt++) {
      const socket = await new Promise<us_listen_socket | false>((resolve) => {
        listen.call(this.app, this.config.host, port, LIBUS_LISTEN_EXCLUSIVE_PORT, (s) => resolve(s));
      });
      if (socket) {
        this.listenSocket = socket;
        this.boundPort = uWS.us_socket_local_port(socket as unknown as Parameters<typeof uWS.us_socket_local_port>[0]);
        break;
      }
      if (attempt >= 20) throw new Error(`cannot listen on ${this.config.host}:${port} (in use?)`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // --- pg replication port (src/replication) ---
    if (this.config.pgListen) {
      this.pgReplication = new PgReplicationServer({ registry: this.registry, log: this.log });
      await this.pgReplication.listen(this.config.pgListen.host, this.config.pgListen.port);
    }
    // --- end pg replication port ---
    this.broker.start();
    this.log.info({ url: this.url, dataDir: this.config.dataDir, timelines: this.registry.list().length, peers: [...this.broker.peers.keys()] }, 'safekeeper listening');
  }

  async stop(): Promise<void> {
    this.broker.stop();
    if (this.listenSocket) {
      uWS.us_listen_socket_close(this.listenSocket);
      this.listenSocket = null;
    }
    this.sockets.closeAll();
    await this.pgReplication?.close(); // pg replication port
    await this.registry.closeAll();
    this.log.info('safekeeper stopped');
  }

  /** A failed fsync or broken invariant: exit at once; recovery re-validates from disk on restart. */
  private fatal(err: Error): void {
    this.log.fatal({ err }, 'fatal error, exiting');
    process.exit(70);
  }
}

/** uSockets' listen option: refuse to share the port with another process. */
const LIBUS_LISTEN_EXCLUSIVE_PORT = 1;

function pickFreePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}
