// The networked proposer (walproposer): drives the pure proposer core (src/core/proposer.ts) over one
// WebSocket per safekeeper and turns its effects into promises and events for the application.
// I/O only: it must never make a consensus decision itself, nor resolve an append the core has not committed.

import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import { describeError, invariant } from '../errors.js';
import { formatLsn, type Lsn } from '../lsn.js';
import { proposerInit, proposerStep, type ProposerEffect, type ProposerInput, type ProposerState } from '../core/proposer.js';
import type { AcceptorMessage, ProposerMessage } from '../core/protocol_messages.js';
import { decodeAcceptorMessage, encodeProposerMessage, MAX_FRAME_BYTES } from '../protocol/wire_codec.js';
import type { Term, TermHistory } from '../storage/timeline_state.js';
import { ProposerError, ProposerErrorCodes } from './proposer_errors.js';
import { reconnectDelayMs } from './reconnect_backoff.js';

/** The subset of pino's Logger the proposer uses; a pino logger can be passed as is. */
export interface ProposerLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface ProposerOptions {
  /** WebSocket URLs of the timeline's safekeepers, e.g. ws://127.0.0.1:7701/v1/wal. Index = core acceptor id. */
  readonly safekeepers: readonly string[];
  readonly tenantId: string;
  readonly timelineId: string;
  readonly systemId: bigint;
  /** PG_VERSION_NUM, e.g. 150004. */
  readonly pgVersion: number;
  readonly segmentSizeBytes: number;
  /** Unique per proposer generation; a random 53-bit integer by default. */
  readonly proposerId?: number;
  /** Unacknowledged data appends per safekeeper (the core's default is 4). */
  readonly maxInflightAppends?: number;
  /** Largest AppendRequest, at most 128 KiB (the default). */
  readonly maxAppendBytes?: number;
  /** First reconnect delay; doubles per failed attempt up to reconnectMaxMs (50 ms and 2 s by default). */
  readonly reconnectMinMs?: number;
  readonly reconnectMaxMs?: number;
  /** A connection that has not answered a ping within this interval is dropped (10 s by default; 0 = off). */
  readonly keepaliveIntervalMs?: number;
  /** How long a commitLsn/truncateLsn-only heartbeat waits for an append to carry it instead (5 ms). */
  readonly heartbeatHoldMs?: number;
  readonly logger?: ProposerLogger;
}

export type ProposerStateName = 'campaigning' | 'leader' | 'stopped';

export interface ElectedInfo {
  readonly term: Term;
  readonly termStartLsn: Lsn;
  readonly termHistory: TermHistory;
}

export interface ProposerEvents {
  elected: [info: ElectedInfo];
  committed: [commitLsn: Lsn];
  quorumLost: [];
  quorumRegained: [];
  steppedDown: [reason: string];
  /** A broken invariant in the core: the proposer stopped (unhandled, it crashes the process). */
  error: [err: Error];
}

interface PendingAppend {
  /** Set when the core reports where the bytes went (walAppended). */
  endLsn: Lsn;
  readonly resolve: (commitLsn: Lsn) => void;
  readonly reject: (err: Error) => void;
}

interface Link {
  readonly index: number;
  readonly url: string;
  socket: WebSocket | null;
  /** The core was told `connected` for the current socket (and not yet `disconnected`). */
  open: boolean;
  /** Failed attempts since the last connection that delivered a useful message. */
  attempt: number;
  reconnectTimer: NodeJS.Timeout | null;
  /** A ping was sent and no pong has come back yet. */
  awaitingPong: boolean;
}

/** How long a position-only heartbeat may wait for an append to carry its positions instead. */
const HEARTBEAT_HOLD_MS = 5;

const NOOP_LOGGER: ProposerLogger = { debug() {}, info() {}, warn() {}, error() {} };

/** A random proposer id: a non-zero 53-bit integer (a safe integer, encoded as u64 on the wire). */
export function randomProposerId(): number {
  const id = Number(randomBytes(8).readBigUInt64LE() & ((1n << 53n) - 1n));
  return id === 0 ? 1 : id;
}

export class Proposer extends EventEmitter<ProposerEvents> {
  readonly proposerId: number;
  private readonly core: ProposerState;
  private readonly links: Link[];
  private readonly log: ProposerLogger;
  private readonly reconnectMinMs: number;
  private readonly reconnectMaxMs: number;
  private readonly keepaliveIntervalMs: number;
  private keepaliveTimer: NodeJS.Timeout | null = null;
  private started = false;
  private closed = false;
  /** Why this proposer stopped: every later call rejects with it. */
  private stopError: Error | null = null;
  private electedInfo: ElectedInfo | null = null;
  private reportedCommitLsn = 0 as Lsn;
  /** Appends handed to the core, in order; the first `placedCount` have an endLsn. */
  private readonly appends: PendingAppend[] = [];
  private appendsHead = 0;
  private placedCount = 0;
  private readonly electedWaiters: { resolve: (info: ElectedInfo) => void; reject: (err: Error) => void }[] = [];
  /** Effects not yet executed: nested steps (from event listeners) queue behind the current ones. */
  private readonly effects: ProposerEffect[] = [];
  private draining = false;
  /** Held commitLsn-only heartbeats per safekeeper (see execute). */
  private readonly heartbeats = new Map<number, { socket: WebSocket; message: ProposerMessage }>();
  private heartbeatFlush: NodeJS.Timeout | null = null;
  private readonly heartbeatHoldMs: number;
  private lastAppendFrame: { term: number; beginLsn: number; endLsn: number; commitLsn: number; truncateLsn: number; frame: Buffer } | null = null;

  constructor(opts: ProposerOptions) {
    super();
    const n = opts.safekeepers.length;
    // An even count adds a node without adding tolerance (4 nodes tolerate 1 failure, like 3).
    if (n < 1 || n > 7 || n % 2 === 0) {
      throw new ProposerError(ProposerErrorCodes.INVALID_ARGUMENT, `the number of safekeepers must be odd, 1 to 7: got ${n}`);
    }
    this.proposerId = opts.proposerId ?? randomProposerId();
    if (!Number.isSafeInteger(this.proposerId) || this.proposerId <= 0) {
      throw new ProposerError(ProposerErrorCodes.INVALID_ARGUMENT, `proposerId must be a positive safe integer: ${this.proposerId}`);
    }
    this.log = opts.logger ?? NOOP_LOGGER;
    this.reconnectMinMs = opts.reconnectMinMs ?? 50;
    this.reconnectMaxMs = opts.reconnectMaxMs ?? 2000;
    this.keepaliveIntervalMs = opts.keepaliveIntervalMs ?? 10_000;
    this.heartbeatHoldMs = opts.heartbeatHoldMs ?? HEARTBEAT_HOLD_MS;
    this.core = proposerInit({
      proposerId: this.proposerId,
      tenantId: opts.tenantId,
      timelineId: opts.timelineId,
      systemId: opts.systemId,
      pgVersion: opts.pgVersion,
      segmentSizeBytes: opts.segmentSizeBytes,
      acceptorCount: opts.safekeepers.length,
      ...(opts.maxInflightAppends !== undefined ? { maxInflightAppends: opts.maxInflightAppends } : {}),
      ...(opts.maxAppendBytes !== undefined ? { maxAppendBytes: opts.maxAppendBytes } : {}),
    });
    this.links = opts.safekeepers.map((url, index) => ({
      index,
      url,
      socket: null,
      open: false,
      attempt: 0,
      reconnectTimer: null,
      awaitingPong: false,
    }));
  }

  /** The latest commitLsn reported by the core (0 until this term commits something). */
  get commitLsn(): Lsn {
    return this.reportedCommitLsn;
  }

  /** 0 until a quorum greeted us and the term was chosen. */
  get term(): Term {
    return this.core.term;
  }

  get state(): ProposerStateName {
    return this.closed || this.stopError ? 'stopped' : this.core.phase;
  }

  /** Where this term's WAL starts, once elected. */
  get termStartLsn(): Lsn | null {
    return this.electedInfo?.termStartLsn ?? null;
  }

  /** Safekeepers with an open connection (as reported to the core). */
  get connectedCount(): number {
    return this.links.filter((l) => l.open).length;
  }

  /**
   * Encodes a message, reusing the frame of the previous identical AppendRequest: safekeepers in step get
   * the same (term, range) and within one term the WAL of a range never changes, so one encoding (one
   * copy of the WAL) serves them all.
   */
  private encode(m: ProposerMessage): Buffer {
    if (m.kind !== 'AppendRequest' || m.wal.length === 0) return encodeProposerMessage(m);
    const c = this.lastAppendFrame;
    if (c && c.term === m.term && c.beginLsn === m.beginLsn && c.endLsn === m.endLsn && c.commitLsn === m.commitLsn && c.truncateLsn === m.truncateLsn) {
      return c.frame;
    }
    const frame = encodeProposerMessage(m);
    this.lastAppendFrame = { term: m.term, beginLsn: m.beginLsn, endLsn: m.endLsn, commitLsn: m.commitLsn, truncateLsn: m.truncateLsn, frame };
    return frame;
  }

  /** Connects to every safekeeper; the core campaigns as soon as a quorum greets. */
  start(): void {
    if (this.started) return;
    this.started = true;
    if (this.closed) return;
    for (const link of this.links) this.connect(link);
    if (this.keepaliveIntervalMs > 0) {
      this.keepaliveTimer = setInterval(() => this.keepalive(), this.keepaliveIntervalMs);
    }
  }

  /** Resolves once elected (at once while leader); rejects once this proposer stopped. */
  waitElected(): Promise<ElectedInfo> {
    if (this.stopError) return Promise.reject(this.stopError);
    if (this.electedInfo) return Promise.resolve(this.electedInfo);
    return new Promise((resolve, reject) => this.electedWaiters.push({ resolve, reject }));
  }

  /**
   * Replicates `wal` (one or more complete records continuing the stream exactly) and resolves with the
   * commitLsn that covers its end, once a quorum has it flushed. Appends made before the election are
   * placed at termStartLsn, in call order. The bytes are kept by reference: do not modify them afterwards.
   */
  append(wal: Uint8Array): Promise<Lsn> {
    if (this.stopError) return Promise.reject(this.stopError);
    if (wal.length === 0) {
      return Promise.reject(new ProposerError(ProposerErrorCodes.INVALID_ARGUMENT, 'append of zero bytes'));
    }
    let pending: PendingAppend | null = null;
    const promise = new Promise<Lsn>((resolve, reject) => {
      pending = { endLsn: 0 as Lsn, resolve, reject };
    });
    this.appends.push(pending!);
    // Outside the executor: a broken invariant must propagate, not become this promise's rejection.
    this.step({ kind: 'appendRequested', wal });
    return promise;
  }

  /** Stops: rejects pending appends with SK_PROPOSER_CLOSED and closes every connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stop(new ProposerError(ProposerErrorCodes.CLOSED, 'proposer closed'));
    if (this.heartbeatFlush) clearTimeout(this.heartbeatFlush);
    this.heartbeatFlush = null;
    this.heartbeats.clear();
    await this.closeSockets();
  }

  // ---- core -----------------------------------------------------------------------------------------

  private step(input: ProposerInput): void {
    if (this.stopError) return;
    let fx: ProposerEffect[];
    try {
      fx = proposerStep(this.core, input);
    } catch (err) {
      // A broken invariant of the core: stop everything, and let the application (or the process) crash.
      const error = err instanceof Error ? err : new Error(String(err));
      this.log.error({ err: describeError(error) }, 'proposer core invariant violated');
      this.stop(error);
      void this.closeSockets();
      this.emit('error', error);
      return;
    }
    this.effects.push(...fx);
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.effects.length > 0) {
        if (this.stopError) {
          this.effects.length = 0;
          break;
        }
        this.execute(this.effects.shift()!);
      }
    } finally {
      this.draining = false;
    }
  }

  private flushHeartbeats(): void {
    this.heartbeatFlush = null;
    for (const [k, hb] of this.heartbeats) {
      // Only on the connection it was meant for: a new connection starts over with a greeting.
      if (hb.socket === this.links[k]!.socket && hb.socket.readyState === WebSocket.OPEN) hb.socket.send(this.encode(hb.message), { binary: true });
    }
    this.heartbeats.clear();
  }

  private execute(e: ProposerEffect): void {
    switch (e.kind) {
      case 'send': {
        const socket = this.links[e.acceptor]!.socket;
        // Not open (any more): the core learns of the break from `disconnected` and restarts that
        // safekeeper with a new greeting on the next connection, so nothing sent here is needed later.
        if (!socket || socket.readyState !== WebSocket.OPEN || !this.links[e.acceptor]!.open) return;
        const m = e.message;
        const pending = this.heartbeats.get(e.acceptor);
        if (m.kind === 'AppendRequest' && m.wal.length === 0) {
          // A heartbeat carrying only commitLsn/truncateLsn: hold it briefly. An append the application
          // makes meanwhile (typically right after its commit resolved) carries the same positions, and
          // the heartbeat, with the acknowledgement it would cost, is dropped. Safekeepers learn
          // positions at most HEARTBEAT_HOLD_MS late.
          this.heartbeats.set(e.acceptor, { socket, message: m });
          if (!this.heartbeatFlush) this.heartbeatFlush = setTimeout(() => this.flushHeartbeats(), this.heartbeatHoldMs);
          return;
        }
        if (pending) {
          this.heartbeats.delete(e.acceptor);
          // A later append supersedes it; anything else must not overtake it on the connection.
          if (m.kind !== 'AppendRequest' && pending.socket === socket) socket.send(this.encode(pending.message), { binary: true });
        }
        socket.send(this.encode(m), { binary: true });
        return;
      }
      case 'elected': {
        const info: ElectedInfo = { term: e.term, termStartLsn: e.termStartLsn, termHistory: e.termHistory };
        this.electedInfo = info;
        this.log.info({ term: e.term, termStartLsn: formatLsn(e.termStartLsn), donor: this.core.donor }, 'elected');
        for (const w of this.electedWaiters.splice(0)) w.resolve(info);
        this.emit('elected', info);
        return;
      }
      case 'walAppended': {
        // The core places appends in the order they were requested (FIFO), so the next unplaced one is ours.
        const i = this.appendsHead + this.placedCount;
        const a = this.appends[i];
        invariant(a !== undefined, `walAppended ${formatLsn(e.beginLsn)}..${formatLsn(e.endLsn)} without a pending append`);
        a.endLsn = e.endLsn;
        this.placedCount++;
        return;
      }
      case 'committed': {
        this.reportedCommitLsn = e.commitLsn;
        while (this.placedCount > 0) {
          const a = this.appends[this.appendsHead]!;
          if (a.endLsn > e.commitLsn) break;
          this.appendsHead++;
          this.placedCount--;
          a.resolve(e.commitLsn);
        }
        this.compactAppends();
        this.emit('committed', e.commitLsn);
        return;
      }
      case 'steppedDown': {
        this.log.warn({ term: this.core.term, reason: e.reason }, 'stepped down');
        this.stop(new ProposerError(ProposerErrorCodes.STEPPED_DOWN, `proposer stepped down: ${e.reason}`, { reason: e.reason, term: this.core.term }));
        void this.closeSockets();
        this.emit('steppedDown', e.reason);
        return;
      }
      case 'quorumLost':
        this.log.warn({ term: this.core.term }, 'lost the connections to a quorum of safekeepers');
        this.emit('quorumLost');
        return;
      case 'quorumRegained':
        this.log.info({ term: this.core.term }, 'quorum of safekeepers connected again');
        this.emit('quorumRegained');
        return;
    }
  }

  /** Terminal: every pending promise rejects with `err`; no more steps, no reconnects. */
  private stop(err: Error): void {
    if (this.stopError) return;
    this.stopError = err;
    const pending = this.appends.splice(this.appendsHead);
    this.appends.length = 0;
    this.appendsHead = 0;
    this.placedCount = 0;
    for (const a of pending) a.reject(this.stopError);
    for (const w of this.electedWaiters.splice(0)) w.reject(this.stopError);
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = null;
    for (const link of this.links) {
      if (link.reconnectTimer) clearTimeout(link.reconnectTimer);
      link.reconnectTimer = null;
    }
  }

  private compactAppends(): void {
    if (this.appendsHead > 1024 && this.appendsHead * 2 > this.appends.length) {
      this.appends.splice(0, this.appendsHead);
      this.appendsHead = 0;
    }
  }

  // ---- transport ------------------------------------------------------------------------------------

  private connect(link: Link): void {
    link.reconnectTimer = null;
    if (this.stopError) return;
    const socket = new WebSocket(link.url, { perMessageDeflate: false, maxPayload: MAX_FRAME_BYTES });
    socket.binaryType = 'nodebuffer';
    link.socket = socket;
    link.awaitingPong = false;
    socket.on('open', () => {
      if (link.socket !== socket || this.stopError) return;
      link.open = true;
      this.log.debug({ safekeeper: link.index, url: link.url }, 'connected');
      this.step({ kind: 'connected', acceptor: link.index });
    });
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      if (link.socket !== socket || !link.open) return;
      if (!isBinary) {
        this.dropConnection(link, 'text frame on the binary WAL protocol');
        return;
      }
      let message: AcceptorMessage;
      try {
        message = decodeAcceptorMessage(data);
      } catch (err) {
        this.dropConnection(link, `undecodable frame: ${describeError(err)}`);
        return;
      }
      if (message.kind === 'Error') {
        this.log.warn({ safekeeper: link.index, code: message.code, term: message.term, got: message.got, expected: message.expected }, `safekeeper refused: ${message.message}`);
      } else {
        link.attempt = 0; // a safekeeper that talks to us is worth retrying quickly after the next break
      }
      this.step({ kind: 'message', acceptor: link.index, message });
    });
    socket.on('pong', () => {
      link.awaitingPong = false;
    });
    socket.on('error', (err: Error) => {
      // 'close' always follows; reconnecting is handled there.
      if (link.socket === socket) this.log.debug({ safekeeper: link.index, url: link.url, err: describeError(err) }, 'connection error');
    });
    socket.on('close', (code: number, reason: Buffer) => {
      if (link.socket !== socket) return;
      this.log.debug({ safekeeper: link.index, code, reason: reason.toString() }, 'connection closed');
      this.detach(link);
      this.scheduleReconnect(link);
    });
  }

  /** Forgets the link's socket and tells the core (when it knew the connection). */
  private detach(link: Link): void {
    const wasOpen = link.open;
    link.socket = null;
    link.open = false;
    link.awaitingPong = false;
    if (wasOpen) this.step({ kind: 'disconnected', acceptor: link.index });
  }

  /** A connection we no longer trust (bad frame, no pong): cut it now, reconnect later. */
  private dropConnection(link: Link, why: string): void {
    const socket = link.socket;
    this.log.warn({ safekeeper: link.index, url: link.url }, `dropping connection: ${why}`);
    this.detach(link);
    socket?.terminate();
    this.scheduleReconnect(link);
  }

  private scheduleReconnect(link: Link): void {
    if (this.stopError || link.reconnectTimer) return;
    const delayMs = reconnectDelayMs(link.attempt, { minMs: this.reconnectMinMs, maxMs: this.reconnectMaxMs }, Math.random());
    link.attempt++;
    link.reconnectTimer = setTimeout(() => this.connect(link), delayMs);
  }

  private keepalive(): void {
    for (const link of this.links) {
      const socket = link.socket;
      if (!socket || !link.open) continue;
      if (link.awaitingPong) {
        this.dropConnection(link, `no pong within ${this.keepaliveIntervalMs} ms`);
        continue;
      }
      link.awaitingPong = true;
      socket.ping();
    }
  }

  private async closeSockets(): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const link of this.links) {
      const socket = link.socket;
      link.socket = null;
      link.open = false;
      if (!socket || socket.readyState === WebSocket.CLOSED) continue;
      waits.push(
        new Promise<void>((resolve) => {
          socket.once('close', () => resolve());
          // A connection still being established cannot do a close handshake.
          if (socket.readyState === WebSocket.CONNECTING) socket.terminate();
          else socket.close(1000, 'proposer stopped');
          // Do not wait for a peer that never answers the close handshake.
          setTimeout(() => socket.terminate(), 1000).unref();
        }),
      );
    }
    await Promise.all(waits);
  }
}
