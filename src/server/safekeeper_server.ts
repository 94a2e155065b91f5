// One safekeeper process: loads its timelines, serves proposers over WebSocket and the management API over
// HTTP on one uWS port, and shuts down gracefully (stop accepting, let queued flushes finish, close).

import { pino, type Logger } from 'pino';
import { uWS, type TemplatedApp, type us_listen_socket } from './uws.js';
import { attachHttpApi } from './http_api.js';
import { ProposerSockets } from './proposer_socket.js';
import { TimelineRegistry } from './timeline_registry.js';
import type { DirectIoMode } from '../storage/wal_store.js';

export interface SafekeeperConfig {
  nodeId: number;
  host: string;
  /** 0 picks an ephemeral port (see `port` after start). */
  port: number;
  dataDir: string;
  implicitTimelineCreation: boolean;
  directIo: DirectIoMode;
  logger?: Logger;
}

export class SafekeeperServer {
  readonly log: Logger;
  readonly registry: TimelineRegistry;
  private readonly sockets: ProposerSockets;
  private readonly app: TemplatedApp;
  private listenSocket: us_listen_socket | null = null;
  private boundPort = 0;
  private readonly startedAt = new Date();

  constructor(readonly config: SafekeeperConfig) {
    this.log = config.logger ?? pino({ name: `sk${config.nodeId}` });
    this.sockets = new ProposerSockets(this.log, config.implicitTimelineCreation);
    this.registry = new TimelineRegistry({
      nodeId: config.nodeId,
      dataDir: config.dataDir,
      sink: this.sockets,
      direct: config.directIo,
      onFatal: (err) => this.fatal(err),
    });
    this.sockets.registry = this.registry;
    this.app = uWS.App();
    this.sockets.attach(this.app);
    attachHttpApi(this.app, this.registry, {
      nodeId: config.nodeId,
      startedAt: this.startedAt,
      connectionCount: () => this.sockets.connectionCount,
    });
  }

  get port(): number {
    return this.boundPort;
  }

  get url(): string {
    return `http://${this.config.host}:${this.boundPort}`;
  }

  async start(): Promise<void> {
    await this.registry.loadAll();
    for (const [key, why] of this.registry.broken) this.log.error({ timeline: key }, `timeline not served: ${why}`);
    await new Promise<void>((resolve, reject) => {
      this.app.listen(this.config.host, this.config.port, (socket) => {
        if (!socket) {
          reject(new Error(`cannot listen on ${this.config.host}:${this.config.port}`));
          return;
        }
        this.listenSocket = socket;
        this.boundPort = uWS.us_socket_local_port(socket as unknown as Parameters<typeof uWS.us_socket_local_port>[0]);
        resolve();
      });
    });
    this.log.info({ url: this.url, dataDir: this.config.dataDir, timelines: this.registry.list().length }, 'safekeeper listening');
  }

  async stop(): Promise<void> {
    if (this.listenSocket) {
      uWS.us_listen_socket_close(this.listenSocket);
      this.listenSocket = null;
    }
    this.sockets.closeAll();
    await this.registry.closeAll();
    this.log.info('safekeeper stopped');
  }

  /** A failed fsync or broken invariant: exit at once; recovery re-validates from disk on restart. */
  private fatal(err: Error): void {
    this.log.fatal({ err }, 'fatal error, exiting');
    process.exit(70);
  }
}
