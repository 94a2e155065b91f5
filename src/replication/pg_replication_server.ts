// Replication out over the PostgreSQL protocol: a node:net port where stock PostgreSQL clients
// (pg_receivewal, psql replication=true, a hot standby's walreceiver) stream a timeline's committed WAL.
// Only WAL up to the timeline's commitLsn (and never past what is durable here) is served. See
// docs/REPLICATION.md for the options, commands and errors.

import { createServer, type Server, type Socket } from 'node:net';
import { randomInt } from 'node:crypto';
import type { Logger } from 'pino';
import { hasCode, ErrorCodes } from '../errors.js';
import { lsn, parseLsn, segmentFileName, segmentNoOf, segmentStart, type Lsn } from '../lsn.js';
import type { Timeline, TimelineRegistry } from '../server/timeline_registry.js';
import {
  CANCEL_REQUEST_CODE,
  FrameError,
  FrameReader,
  GSSENC_REQUEST_CODE,
  PROTOCOL_3_0,
  PgError,
  SSL_REQUEST_CODE,
  authenticationOk,
  backendKeyData,
  commandComplete,
  copyBothResponse,
  copyDone,
  emptyQueryResponse,
  errorResponse,
  formatPgLsn,
  negotiateProtocolVersion,
  parameterStatus,
  parseStandbyMessage,
  parseStartupParams,
  pgNow,
  primaryKeepalive,
  readyForQuery,
  resultSet,
  xlogDataHeader,
  type FrontendFrame,
  type HotStandbyFeedback,
  type PgErrorFields,
  type StandbyStatusUpdate,
} from './pg_wire.js';

export const DEFAULT_PG_TENANT = 'demo';
export const DEFAULT_PG_TIMELINE = 'main';
/** The PostgreSQL timeline id served: safekeeper timelines have no PostgreSQL timeline switches. */
export const PG_TIMELINE_ID = 1;
/** XLogData payloads are at most this long (Neon's MAX_SEND_SIZE). */
export const MAX_SEND_BYTES = 128 * 1024;
const XLOG_BLCKSZ = 8192;

export interface PgReplicationOptions {
  registry: TimelineRegistry;
  log: Logger;
  /** Keepalive when nothing was sent for this long (PostgreSQL's walsender: wal_sender_timeout / 2 at most). */
  keepaliveIntervalMs?: number;
  /** Close a streaming client not heard from for this long (wal_sender_timeout); 0 disables. */
  senderTimeoutMs?: number;
  /** How often an idle stream looks for a new commitLsn. */
  pollIntervalMs?: number;
}

/** What a streaming client last reported (standby status update and hot-standby feedback). */
export interface ReplicationFeedback {
  writeLsn: Lsn;
  flushLsn: Lsn;
  applyLsn: Lsn;
  xmin: number | null;
  updatedAt: number;
}

export class PgReplicationServer {
  private server: Server | null = null;
  readonly connections = new Set<PgReplicationConnection>();
  readonly keepaliveIntervalMs: number;
  readonly senderTimeoutMs: number;
  readonly pollIntervalMs: number;

  constructor(readonly opts: PgReplicationOptions) {
    this.keepaliveIntervalMs = opts.keepaliveIntervalMs ?? 1000;
    this.senderTimeoutMs = opts.senderTimeoutMs ?? 60_000;
    this.pollIntervalMs = opts.pollIntervalMs ?? 2;
  }

  get address(): { host: string; port: number } | null {
    const a = this.server?.address();
    return a && typeof a === 'object' ? { host: a.address, port: a.port } : null;
  }

  async listen(host: string, port: number): Promise<void> {
    const server = createServer({ noDelay: true }, (socket) => {
      const conn = new PgReplicationConnection(this, socket);
      this.connections.add(conn);
      socket.once('close', () => this.connections.delete(conn));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.opts.log.error({ err }, 'pg replication listener error'));
    this.server = server;
    this.opts.log.info({ address: this.address }, 'pg replication listening');
  }

  /** Stops listening and ends every connection with PostgreSQL's shutdown FATAL (57P01). */
  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const c of this.connections) {
      c.terminate({ severity: 'FATAL', code: '57P01', message: 'terminating connection due to administrator command' });
    }
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }
}

type ConnState = 'startup' | 'command' | 'streaming' | 'closed';

interface StreamState {
  timeline: Timeline;
  /** Next LSN to send. */
  pos: Lsn;
  stop: boolean;
  done: Promise<void>;
  wake: (() => void) | null;
  lastSentAt: number;
  lastHeardAt: number;
  replyRequestedAt: number;
  copyDoneSent: boolean;
}

export class PgReplicationConnection {
  private state: ConnState = 'startup';
  private readonly reader = new FrameReader();
  private readonly frames: FrontendFrame[] = [];
  private pumping = false;
  private replication = false;
  private tenantId = DEFAULT_PG_TENANT;
  private timelineId = DEFAULT_PG_TIMELINE;
  private stream: StreamState | null = null;
  private readonly log: Logger;
  applicationName = '';
  feedback: ReplicationFeedback | null = null;

  constructor(private readonly server: PgReplicationServer, private readonly socket: Socket) {
    this.log = server.opts.log.child({ pgClient: `${socket.remoteAddress}:${socket.remotePort}` });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.log.debug({ err }, 'pg client socket error'));
    socket.on('close', () => this.closed());
  }

  /** Sends a FATAL (or ERROR) and closes. */
  terminate(e: PgErrorFields): void {
    if (this.state === 'closed') return;
    this.socket.end(errorResponse(e));
    this.closed();
  }

  private closed(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (this.stream) {
      this.stream.stop = true;
      this.stream.wake?.();
    }
    this.frames.length = 0;
    if (!this.socket.destroyed) {
      // end() above flushes the error first; a socket left open by a peer that never reads is destroyed.
      setTimeout(() => this.socket.destroy(), 1000).unref();
    }
  }

  private write(b: Buffer): boolean {
    if (this.state === 'closed' || this.socket.destroyed) return true;
    return this.socket.write(b);
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    try {
      this.frames.push(...this.reader.push(chunk));
    } catch (err) {
      this.protocolViolation((err as Error).message);
      return;
    }
    void this.pump();
  }

  private protocolViolation(text: string): void {
    this.log.warn({ reason: text }, 'pg protocol violation');
    this.terminate({ severity: 'FATAL', code: '08P01', message: text });
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.frames.length > 0 && this.state !== 'closed') {
        const f = this.frames.shift()!;
        try {
          await this.dispatch(f);
        } catch (err) {
          if (err instanceof FrameError) {
            this.protocolViolation(err.message);
          } else {
            this.log.error({ err }, 'pg replication connection failed');
            this.terminate({ severity: 'FATAL', code: 'XX000', message: `internal error: ${(err as Error).message}` });
          }
        }
        // Startup packets flip the framing: re-read what was buffered behind them.
        if (f.type === null && (this.state as ConnState) !== 'closed') this.frames.push(...this.reader.drain());
      }
    } finally {
      this.pumping = false;
    }
  }

  private async dispatch(f: FrontendFrame): Promise<void> {
    if (f.type === null) return this.startup(f.body);
    if (this.state === 'streaming') return this.copyMessage(f);
    switch (f.type) {
      case 'Q':
        return this.query(f.body);
      case 'X':
        this.socket.end();
        this.closed();
        return;
      case 'S': // Sync outside the extended protocol: nothing to do but be ready.
        this.write(readyForQuery());
        return;
      case 'P':
      case 'B':
      case 'E':
      case 'D':
      case 'F':
        this.terminate({ severity: 'FATAL', code: '08P01', message: 'extended query protocol not supported in a replication connection' });
        return;
      default:
        throw new FrameError(`invalid frontend message type ${f.type.charCodeAt(0)}`);
    }
  }

  // ---- startup --------------------------------------------------------------------------------------

  private async startup(body: Buffer): Promise<void> {
    if (body.length < 4) throw new FrameError('invalid length of startup packet');
    const code = body.readInt32BE(0);
    if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
      // No TLS or GSS encryption here: the client goes on in plain text (or gives up if it requires them).
      this.write(Buffer.from('N', 'latin1'));
      return;
    }
    if (code === CANCEL_REQUEST_CODE) {
      this.socket.end();
      this.closed();
      return;
    }
    const major = code >>> 16;
    const minor = code & 0xffff;
    if (major !== 3) {
      this.terminate({ severity: 'FATAL', code: '0A000', message: `unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.0` });
      return;
    }
    const params = parseStartupParams(body);
    this.reader.startupDone = true;
    const unrecognized = [...params.keys()].filter((k) => k.startsWith('_pq_.'));
    if (minor > 0 || unrecognized.length > 0) this.write(negotiateProtocolVersion(0, unrecognized));

    const replication = (params.get('replication') ?? 'false').toLowerCase();
    if (replication === 'database') {
      this.terminate({ severity: 'FATAL', code: '0A000', message: 'logical replication is not supported by the safekeeper: connect with replication=true' });
      return;
    }
    if (!['true', 'on', 'yes', '1', 'false', 'off', 'no', '0'].includes(replication)) {
      this.terminate({ severity: 'FATAL', code: '22023', message: `invalid value for parameter "replication": "${params.get('replication')}"` });
      return;
    }
    this.replication = ['true', 'on', 'yes', '1'].includes(replication);
    this.applicationName = params.get('application_name') ?? '';
    try {
      this.selectTimeline(params);
    } catch (err) {
      if (err instanceof PgError) return this.terminate(err.fields);
      throw err;
    }
    const tl = this.server.opts.registry.get(this.tenantId, this.timelineId);
    if (!tl) {
      this.terminate({
        severity: 'FATAL',
        code: '3D000',
        message: `timeline ${this.tenantId}/${this.timelineId} does not exist on this safekeeper`,
        hint: "Choose one with options='-c tenant_id=T -c timeline_id=TL'.",
      });
      return;
    }
    const pgVersion = tl.driver.state.pgVersion || 150000;
    this.write(
      Buffer.concat([
        authenticationOk(),
        parameterStatus('server_version', `${Math.floor(pgVersion / 10000)}.${pgVersion % 10000}`),
        parameterStatus('server_encoding', 'UTF8'),
        parameterStatus('client_encoding', 'UTF8'),
        parameterStatus('DateStyle', 'ISO, MDY'),
        parameterStatus('integer_datetimes', 'on'),
        parameterStatus('standard_conforming_strings', 'on'),
        parameterStatus('TimeZone', 'UTC'),
        parameterStatus('application_name', this.applicationName),
        backendKeyData(process.pid, randomInt(0x7fffffff)),
        readyForQuery(),
      ]),
    );
    this.state = 'command';
    this.log.debug({ tenantId: this.tenantId, timelineId: this.timelineId, replication: this.replication, app: this.applicationName }, 'pg client connected');
  }

  /**
   * The timeline comes from `options` (`-c tenant_id=T -c timeline_id=TL`, as Neon's computes pass it;
   * `--tenant_id=T` works too) or from dbname `T/TL`; the default is demo/main.
   */
  private selectTimeline(params: Map<string, string>): void {
    const dbname = params.get('database') ?? '';
    const slash = /^([^/]+)\/([^/]+)$/.exec(dbname);
    if (slash) {
      this.tenantId = slash[1]!;
      this.timelineId = slash[2]!;
    }
    const options = params.get('options') ?? '';
    for (const token of options.split(/\s+/).filter(Boolean)) {
      const m = /^(?:--)?([A-Za-z_]+)=(.*)$/.exec(token);
      if (!m) continue;
      const name = m[1]!.toLowerCase();
      if (name === 'tenant_id' || name === 'tenantid') this.tenantId = m[2]!;
      else if (name === 'timeline_id' || name === 'timelineid') this.timelineId = m[2]!;
    }
    for (const [kind, id] of [['tenant_id', this.tenantId], ['timeline_id', this.timelineId]] as const) {
      if (!/^[0-9A-Za-z_-]{1,64}$/.test(id)) {
        throw new PgError({ severity: 'FATAL', code: '22023', message: `invalid ${kind} ${JSON.stringify(id)}: 1-64 characters of [0-9A-Za-z_-]` });
      }
    }
  }

  private timeline(): Timeline {
    const tl = this.server.opts.registry.get(this.tenantId, this.timelineId);
    if (!tl || tl.driver.isStopped) {
      throw new PgError({ severity: 'ERROR', code: '3D000', message: `timeline ${this.tenantId}/${this.timelineId} does not exist on this safekeeper` });
    }
    return tl;
  }

  // ---- simple queries -------------------------------------------------------------------------------

  private async query(body: Buffer): Promise<void> {
    const end = body.indexOf(0);
    const text = body.toString('utf8', 0, end < 0 ? body.length : end).trim().replace(/;\s*$/, '').trim();
    try {
      if (text === '') {
        this.write(Buffer.concat([emptyQueryResponse(), readyForQuery()]));
        return;
      }
      const started = await this.command(text);
      if (!started) this.write(readyForQuery());
    } catch (err) {
      if (!(err instanceof PgError)) throw err;
      if (err.fields.severity === 'FATAL') {
        this.terminate(err.fields);
        return;
      }
      this.write(Buffer.concat([errorResponse(err.fields), readyForQuery()]));
    }
  }

  /** Runs one command; true when it started streaming (ReadyForQuery comes when the stream ends). */
  private async command(text: string): Promise<boolean> {
    const word = /^[A-Za-z_]+/.exec(text)?.[0].toUpperCase() ?? '';
    if (word === 'SHOW') {
      const m = /^SHOW\s+"?([A-Za-z_][A-Za-z0-9_.]*)"?$/i.exec(text);
      if (!m) throw syntaxError(text);
      const name = m[1]!.toLowerCase();
      this.write(resultSet([{ name, type: 'text' }], [[this.show(name)]], 'SHOW'));
      return false;
    }
    const known = ['IDENTIFY_SYSTEM', 'TIMELINE_HISTORY', 'START_REPLICATION', 'READ_REPLICATION_SLOT', 'CREATE_REPLICATION_SLOT', 'DROP_REPLICATION_SLOT', 'BASE_BACKUP'];
    if (!known.includes(word)) {
      throw new PgError({
        severity: 'ERROR',
        code: '0A000',
        message: this.replication ? 'cannot execute SQL commands in WAL sender for physical replication' : 'this port serves only replication connections and SHOW',
      });
    }
    if (!this.replication) {
      throw new PgError({ severity: 'ERROR', code: '0A000', message: `${word} needs a replication connection: connect with replication=true` });
    }
    switch (word) {
      case 'IDENTIFY_SYSTEM': {
        if (!/^IDENTIFY_SYSTEM$/i.test(text)) throw syntaxError(text);
        const tl = this.timeline();
        const row = [tl.driver.state.systemId.toString(), String(PG_TIMELINE_ID), formatPgLsn(servedEnd(tl)), null];
        this.write(resultSet([
          { name: 'systemid', type: 'text' }, { name: 'timeline', type: 'int4' }, { name: 'xlogpos', type: 'text' }, { name: 'dbname', type: 'text' },
        ], [row], 'IDENTIFY_SYSTEM'));
        return false;
      }
      case 'TIMELINE_HISTORY': {
        const m = /^TIMELINE_HISTORY\s+(\d+)$/i.exec(text);
        if (!m) throw syntaxError(text);
        // Timeline 1 has no history file, and PostgreSQL answers exactly this (clients never ask for it).
        const tli = Number(m[1]);
        throw new PgError({ severity: 'ERROR', code: '58P01', message: `could not open file "pg_wal/${tli.toString(16).toUpperCase().padStart(8, '0')}.history": No such file or directory` });
      }
      case 'READ_REPLICATION_SLOT': {
        const m = /^READ_REPLICATION_SLOT\s+("?)([A-Za-z0-9_]{1,63})\1$/i.exec(text);
        if (!m) throw syntaxError(text);
        const tl = this.timeline();
        // Slots are virtual: every name is a physical slot that holds all the WAL this safekeeper has.
        this.write(resultSet([
          { name: 'slot_type', type: 'text' }, { name: 'restart_lsn', type: 'text' }, { name: 'restart_tli', type: 'int8' },
        ], [['physical', formatPgLsn(oldestServable(tl)), String(PG_TIMELINE_ID)]], 'READ_REPLICATION_SLOT'));
        return false;
      }
      case 'CREATE_REPLICATION_SLOT': {
        const m = /^CREATE_REPLICATION_SLOT\s+("?)([A-Za-z0-9_]{1,63})\1(?:\s+TEMPORARY)?\s+(PHYSICAL|LOGICAL)\b(.*)$/i.exec(text);
        if (!m) throw syntaxError(text);
        if (m[3]!.toUpperCase() === 'LOGICAL') throw logicalNotSupported();
        const tl = this.timeline();
        const reserve = /RESERVE_WAL/i.test(m[4]!);
        this.write(resultSet([
          { name: 'slot_name', type: 'text' }, { name: 'consistent_point', type: 'text' }, { name: 'snapshot_name', type: 'text' }, { name: 'output_plugin', type: 'text' },
        ], [[m[2]!, reserve ? formatPgLsn(oldestServable(tl)) : null, null, null]], 'CREATE_REPLICATION_SLOT'));
        return false;
      }
      case 'DROP_REPLICATION_SLOT':
        if (!/^DROP_REPLICATION_SLOT\s+("?)[A-Za-z0-9_]{1,63}\1(\s+WAIT)?$/i.test(text)) throw syntaxError(text);
        this.write(commandComplete('DROP_REPLICATION_SLOT'));
        return false;
      case 'BASE_BACKUP':
        throw new PgError({ severity: 'ERROR', code: '0A000', message: 'BASE_BACKUP is not supported by the safekeeper: it holds WAL, not data files' });
      default:
        return this.startReplication(text);
    }
  }

  private show(name: string): string {
    const tl = this.timeline();
    const st = tl.driver.state;
    switch (name) {
      case 'wal_segment_size':
        return formatSize(st.segmentSizeBytes);
      case 'wal_block_size':
        return String(XLOG_BLCKSZ);
      case 'server_version': {
        const v = st.pgVersion || 150000;
        return `${Math.floor(v / 10000)}.${v % 10000}`;
      }
      case 'server_version_num':
        return String(st.pgVersion || 150000);
      case 'data_directory_mode':
        return '0700';
      case 'integer_datetimes':
        return 'on';
      case 'tenant_id':
        return this.tenantId;
      case 'timeline_id':
        return this.timelineId;
      default:
        throw new PgError({ severity: 'ERROR', code: '42704', message: `unrecognized configuration parameter "${name}"` });
    }
  }

  // ---- streaming ------------------------------------------------------------------------------------

  private startReplication(text: string): boolean {
    if (/^START_REPLICATION\s+SLOT\s+\S+\s+LOGICAL\b/i.test(text)) throw logicalNotSupported();
    const m = /^START_REPLICATION(?:\s+SLOT\s+("?)[A-Za-z0-9_]{1,63}\1)?(?:\s+PHYSICAL)?\s+([0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8})(?:\s+TIMELINE\s+(\d+))?$/i.exec(text);
    if (!m) throw syntaxError(text);
    const tl = this.timeline();
    const start = parseLsn(m[2]!);
    if (m[3] !== undefined && Number(m[3]) !== PG_TIMELINE_ID) {
      throw new PgError({ severity: 'ERROR', code: '22023', message: `requested timeline ${Number(m[3])} is not in this server's history` });
    }
    const end = servedEnd(tl);
    if (start > end) {
      throw new PgError({
        severity: 'ERROR',
        code: 'XX000',
        message: `requested starting point ${formatPgLsn(start)} is ahead of the WAL flush position of this server ${formatPgLsn(end)}`,
      });
    }
    if (start < oldestServable(tl)) throw segmentRemoved(start, tl.driver.state.segmentSizeBytes);

    const now = Date.now();
    const stream: StreamState = {
      timeline: tl, pos: start, stop: false, done: Promise.resolve(), wake: null,
      lastSentAt: now, lastHeardAt: now, replyRequestedAt: 0, copyDoneSent: false,
    };
    this.stream = stream;
    this.state = 'streaming';
    this.write(copyBothResponse());
    this.log.info({ start: formatPgLsn(start), app: this.applicationName }, 'pg replication started');
    stream.done = this.sendLoop(stream).catch((err: unknown) => {
      const fields = err instanceof PgError ? err.fields : { severity: 'ERROR' as const, code: 'XX000', message: (err as Error).message };
      this.log.warn({ err: fields.message }, 'pg replication stream failed');
      // A walsender exits on any error while streaming.
      this.terminate(fields);
    });
    return true;
  }

  private async sendLoop(s: StreamState): Promise<void> {
    const srv = this.server;
    while (!s.stop && this.state === 'streaming') {
      if (s.timeline.driver.isStopped) {
        throw new PgError({ severity: 'FATAL', code: '57P01', message: `timeline ${this.tenantId}/${this.timelineId} was shut down or deleted` });
      }
      const end = servedEnd(s.timeline);
      if (s.pos < end) {
        let chunkEnd = Math.min(end, s.pos + MAX_SEND_BYTES);
        // Not sending up to the end: stop at a page boundary, as a walsender does.
        if (chunkEnd < end && chunkEnd % XLOG_BLCKSZ !== 0 && chunkEnd - (chunkEnd % XLOG_BLCKSZ) > s.pos) chunkEnd -= chunkEnd % XLOG_BLCKSZ;
        const data = await readServable(s.timeline, s.pos, lsn(chunkEnd));
        if (s.stop || this.state !== 'streaming') return;
        this.socket.cork();
        this.write(xlogDataHeader(s.pos, end, pgNow(), data.length));
        const flushed = this.write(data);
        this.socket.uncork();
        s.pos = lsn(chunkEnd);
        s.lastSentAt = Date.now();
        if (!flushed) await this.drained(s);
        continue;
      }
      const now = Date.now();
      if (srv.senderTimeoutMs > 0 && now - s.lastHeardAt > srv.senderTimeoutMs) {
        throw new PgError({ severity: 'FATAL', code: '08006', message: 'terminating walsender process due to replication timeout' });
      }
      const wantReply = srv.senderTimeoutMs > 0 && now - s.lastHeardAt > srv.senderTimeoutMs / 2 && s.replyRequestedAt <= s.lastHeardAt;
      if (now - s.lastSentAt >= srv.keepaliveIntervalMs || wantReply) {
        this.write(primaryKeepalive(end, pgNow(), wantReply));
        s.lastSentAt = now;
        if (wantReply) s.replyRequestedAt = now;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          s.wake = null;
          resolve();
        }, srv.pollIntervalMs);
        s.wake = () => {
          clearTimeout(timer);
          s.wake = null;
          resolve();
        };
      });
    }
  }

  private drained(s: StreamState): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        s.wake = null;
        resolve();
      };
      s.wake = done;
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** A frontend message while in CopyBoth mode. */
  private async copyMessage(f: FrontendFrame): Promise<void> {
    const s = this.stream!;
    switch (f.type) {
      case 'd': {
        s.lastHeardAt = Date.now();
        const msg = parseStandbyMessage(f.body);
        this.recordFeedback(msg);
        if (msg.kind === 'status' && msg.replyRequested) {
          this.write(primaryKeepalive(servedEnd(s.timeline), pgNow(), false));
          s.lastSentAt = Date.now();
        }
        return;
      }
      case 'c': {
        // The client ends streaming: stop sending, answer CopyDone, complete the command.
        s.stop = true;
        s.wake?.();
        await s.done;
        if (this.state === 'closed') return;
        this.stream = null;
        this.state = 'command';
        this.write(Buffer.concat([copyDone(), commandComplete('START_REPLICATION'), readyForQuery()]));
        this.log.info({ sentUpTo: formatPgLsn(s.pos) }, 'pg replication ended by the client');
        return;
      }
      case 'X':
        this.socket.end();
        this.closed();
        return;
      case 'f':
        this.terminate({ severity: 'ERROR', code: '57014', message: 'COPY from stdin failed: client sent CopyFail' });
        return;
      default:
        throw new FrameError(`unexpected message type "${f.type}" during COPY`);
    }
  }

  private recordFeedback(msg: StandbyStatusUpdate | HotStandbyFeedback): void {
    const prev = this.feedback ?? { writeLsn: 0 as Lsn, flushLsn: 0 as Lsn, applyLsn: 0 as Lsn, xmin: null, updatedAt: 0 };
    if (msg.kind === 'status') {
      const safe = (n: number) => (Number.isSafeInteger(n) ? lsn(n) : prev.flushLsn);
      this.feedback = { ...prev, writeLsn: safe(msg.writeLsn), flushLsn: safe(msg.flushLsn), applyLsn: safe(msg.applyLsn), updatedAt: Date.now() };
    } else {
      this.feedback = { ...prev, xmin: msg.xmin === 0 ? null : msg.xmin, updatedAt: Date.now() };
    }
  }
}

/** The end of what may be streamed: committed and durable here. */
export function servedEnd(tl: Timeline): Lsn {
  return lsn(Math.min(tl.driver.commitLsn, tl.store.flushLsn));
}

/**
 * The oldest LSN that can be streamed. A timeline starting inside a segment is served from that segment's
 * start, the bytes before the timeline start as zeros (as Neon does), because clients always start
 * streaming at a segment boundary.
 */
export function oldestServable(tl: Timeline): Lsn {
  const local = tl.store.localStartLsn;
  const start = tl.driver.state.timelineStartLsn;
  const seg = tl.driver.state.segmentSizeBytes;
  return local <= start ? segmentStart(segmentNoOf(start, seg), seg) : local;
}

async function readServable(tl: Timeline, from: Lsn, to: Lsn): Promise<Buffer> {
  const local = tl.store.localStartLsn;
  if (from < local) {
    const zeros = Math.min(to, local) - from;
    if (from < oldestServable(tl)) throw segmentRemoved(from, tl.driver.state.segmentSizeBytes);
    if (to <= local) return Buffer.alloc(zeros);
    return Buffer.concat([Buffer.alloc(zeros), await readServable(tl, local, to)]);
  }
  for (let attempt = 0; ; attempt++) {
    try {
      return await tl.store.read(from, to);
    } catch (err) {
      // A segment renamed from .partial to complete between the two opens of a read: read again.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && attempt < 3) continue;
      if (hasCode(err, ErrorCodes.WAL_NOT_AVAILABLE) && from < tl.store.localStartLsn) throw segmentRemoved(from, tl.driver.state.segmentSizeBytes);
      throw err;
    }
  }
}

function segmentRemoved(at: Lsn, segmentSizeBytes: number): PgError {
  const name = segmentFileName(segmentNoOf(at, segmentSizeBytes), segmentSizeBytes, PG_TIMELINE_ID);
  return new PgError({ severity: 'ERROR', code: '58P01', message: `requested WAL segment ${name} has already been removed` });
}

function syntaxError(text: string): PgError {
  return new PgError({ severity: 'ERROR', code: '42601', message: `syntax error in replication command: ${text.slice(0, 200)}` });
}

function logicalNotSupported(): PgError {
  return new PgError({ severity: 'ERROR', code: '0A000', message: 'logical replication is not supported by the safekeeper' });
}

/** wal_segment_size as SHOW prints it (pg_receivewal parses "16MB" / "1GB"). */
function formatSize(bytes: number): string {
  if (bytes % (1 << 30) === 0) return `${bytes / (1 << 30)}GB`;
  return `${bytes / (1 << 20)}MB`;
}
