// The simulated network: TCP-like connections between proposers and safekeepers (in order, or broken),
// late delivery from half-open connections, partitions, and datagram-style broker messages between
// safekeepers. Must never reorder messages within one live connection or deliver to a restarted node.

import type { AcceptorMessage, ErrorMessage, ProposerMessage } from '../core/protocol_messages.js';
import type { EventQueue } from './event_queue.js';
import type { Prng } from './prng.js';
import type { NetworkParams } from './sim_params.js';

/** One direction of a connection: a FIFO whose items are delivered at non-decreasing times. */
export class Lane<T> {
  private items: { at: number; item: T }[] = [];
  private head = 0;
  private token = 0;
  private armedAt = -1;
  private lastAt = 0;

  constructor(
    private readonly queue: EventQueue,
    private readonly deliver: (item: T) => void,
  ) {}

  get pending(): number {
    return this.items.length - this.head;
  }

  push(item: T, delayUs: number): void {
    const at = Math.max(this.lastAt, this.queue.now + Math.round(delayUs));
    this.lastAt = at;
    this.items.push({ at, item });
    this.arm();
  }

  /** Keeps only the first `keep` undelivered items, delayed by `shiftUs` (order preserved). */
  cut(keep: number, shiftUs: number): void {
    const kept = this.items.slice(this.head, this.head + keep).map((e) => ({ at: e.at + shiftUs, item: e.item }));
    this.items = kept;
    this.head = 0;
    this.lastAt = kept.length > 0 ? kept[kept.length - 1]!.at : this.queue.now;
    this.token++;
    this.armedAt = -1;
    this.arm();
  }

  private arm(): void {
    if (this.head >= this.items.length) return;
    const at = this.items[this.head]!.at;
    if (this.armedAt >= 0 && this.armedAt <= at) return;
    this.armedAt = at;
    const token = ++this.token;
    this.queue.at(at, () => this.fire(token));
  }

  private fire(token: number): void {
    if (token !== this.token) return;
    this.armedAt = -1;
    while (this.head < this.items.length && this.items[this.head]!.at <= this.queue.now) {
      const { item } = this.items[this.head++]!;
      this.deliver(item);
      // Delivery may cut or re-arm this lane (a proposer stepping down closes its connections).
      if (token !== this.token) return;
    }
    if (this.head > 32 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    this.arm();
  }
}

export interface SafekeeperEndpoint {
  readonly index: number;
  readonly up: boolean;
  readonly incarnation: number;
  connectionOpened(connId: number): void;
  message(connId: number, msg: ProposerMessage): void;
  connectionClosed(connId: number): void;
}

/** One proposer generation: a restarted proposer is a new endpoint, so old connections stay dead. */
export interface ProposerEndpoint {
  readonly slot: number;
  readonly alive: boolean;
  opened(conn: SimConnection): void;
  message(conn: SimConnection, msg: AcceptorMessage): void;
  closed(conn: SimConnection): void;
}

type ToSafekeeper = { readonly kind: 'msg'; readonly msg: ProposerMessage } | { readonly kind: 'close' };
type ToProposer = { readonly kind: 'open' } | { readonly kind: 'msg'; readonly msg: AcceptorMessage } | { readonly kind: 'close' };

export class SimConnection {
  /** Either side gave up: nothing new is sent. */
  broken = false;
  /** The safekeeper side still knows the connection. */
  skOpen = true;
  /** The proposer saw it open (and not yet closed). */
  proposerOpen = false;
  proposerClosed = false;
  readonly toSafekeeper: Lane<ToSafekeeper>;
  readonly toProposer: Lane<ToProposer>;

  constructor(
    readonly id: number,
    readonly proposer: ProposerEndpoint,
    readonly sk: SafekeeperEndpoint,
    readonly skIncarnation: number,
    queue: EventQueue,
    private readonly onDone: (conn: SimConnection) => void,
  ) {
    this.toSafekeeper = new Lane(queue, (item) => this.deliverToSafekeeper(item));
    this.toProposer = new Lane(queue, (item) => this.deliverToProposer(item));
  }

  get skIndex(): number {
    return this.sk.index;
  }

  private deliverToSafekeeper(item: ToSafekeeper): void {
    if (!this.skOpen || !this.sk.up || this.sk.incarnation !== this.skIncarnation) return;
    if (item.kind === 'msg') {
      this.sk.message(this.id, item.msg);
    } else {
      this.skOpen = false;
      this.sk.connectionClosed(this.id);
      if (this.proposerClosed) this.onDone(this);
    }
  }

  private deliverToProposer(item: ToProposer): void {
    if (this.proposerClosed || !this.proposer.alive) return;
    if (item.kind === 'open') {
      this.proposerOpen = true;
      this.proposer.opened(this);
    } else if (item.kind === 'msg') {
      if (this.proposerOpen) this.proposer.message(this, item.msg);
    } else {
      this.proposerClosed = true;
      this.proposer.closed(this);
      if (!this.skOpen) this.onDone(this);
    }
  }
}

export class SimNetwork {
  private nextConnId = 1;
  readonly connections = new Map<number, SimConnection>();
  /** Blocked node pairs, as "a|b" with a < b; nodes are "p<slot>" and "s<index>". */
  private blocked = new Set<string>();
  messagesSent = 0;
  breaks = 0;
  /** Set when the run settles: no more random connection breaks. */
  calm = false;

  constructor(
    private readonly queue: EventQueue,
    private readonly rng: Prng,
    private readonly params: NetworkParams,
  ) {}

  latency(): number {
    return this.rng.range(this.params.latencyMinUs, this.params.latencyMaxUs);
  }

  isBlocked(a: string, b: string): boolean {
    if (this.blocked.size === 0) return false;
    return this.blocked.has(a < b ? `${a}|${b}` : `${b}|${a}`);
  }

  /** Splits the nodes into two sides; every connection across breaks. */
  partition(sideA: readonly string[], sideB: readonly string[]): void {
    this.blocked.clear();
    for (const a of sideA) for (const b of sideB) this.blocked.add(a < b ? `${a}|${b}` : `${b}|${a}`);
    for (const conn of [...this.connections.values()]) {
      if (this.isBlocked(`p${conn.proposer.slot}`, `s${conn.skIndex}`)) this.breakConnection(conn);
    }
  }

  heal(): void {
    this.blocked.clear();
  }

  get partitioned(): boolean {
    return this.blocked.size > 0;
  }

  /** Opens a connection, or returns null when the safekeeper is down or unreachable (retry later). */
  connect(proposer: ProposerEndpoint, sk: SafekeeperEndpoint): SimConnection | null {
    if (!sk.up || this.isBlocked(`p${proposer.slot}`, `s${sk.index}`)) return null;
    const conn = new SimConnection(this.nextConnId++, proposer, sk, sk.incarnation, this.queue, (c) => this.connections.delete(c.id));
    this.connections.set(conn.id, conn);
    sk.connectionOpened(conn.id);
    conn.toProposer.push({ kind: 'open' }, this.latency());
    return conn;
  }

  sendToSafekeeper(conn: SimConnection, msg: ProposerMessage): void {
    if (conn.broken) return;
    this.messagesSent++;
    conn.toSafekeeper.push({ kind: 'msg', msg }, this.latency());
    if (!this.calm && this.params.breakPerMessage > 0 && this.rng.chance(this.params.breakPerMessage)) {
      this.queue.schedule(this.rng.int(this.params.latencyMaxUs), () => this.breakConnection(conn));
    }
  }

  sendToProposer(conn: SimConnection, msg: AcceptorMessage): void {
    if (conn.broken || !conn.skOpen) return;
    this.messagesSent++;
    conn.toProposer.push({ kind: 'msg', msg }, this.latency());
    if (!this.calm && this.params.breakPerMessage > 0 && this.rng.chance(this.params.breakPerMessage)) {
      this.queue.schedule(this.rng.int(this.params.latencyMaxUs), () => this.breakConnection(conn));
    }
  }

  /** The safekeeper closes after sending `error` (if any); the proposer reads it, then sees the close. */
  closeFromSafekeeper(conn: SimConnection, error: ErrorMessage | null): void {
    if (!conn.skOpen) return;
    conn.skOpen = false;
    conn.toSafekeeper.cut(0, 0);
    if (!conn.broken) {
      conn.broken = true;
      if (error) conn.toProposer.push({ kind: 'msg', msg: error }, this.latency());
      conn.toProposer.push({ kind: 'close' }, this.latency());
    }
    if (conn.proposerClosed) this.connections.delete(conn.id);
  }

  /**
   * The connection dies in the network. Messages already in flight towards the safekeeper may still arrive
   * late (a half-open connection), possibly after a newer connection's; the proposer notices after a delay.
   */
  breakConnection(conn: SimConnection): void {
    if (conn.broken) return;
    conn.broken = true;
    this.breaks++;
    if (conn.skOpen) {
      const pending = conn.toSafekeeper.pending;
      const keep = this.rng.chance(this.params.staleDelivery) ? this.rng.int(pending + 1) : 0;
      conn.toSafekeeper.cut(keep, this.rng.int(this.params.staleExtraDelayMaxUs + 1));
      conn.toSafekeeper.push({ kind: 'close' }, this.latency());
    }
    if (!conn.proposerClosed) {
      conn.toProposer.cut(this.rng.int(conn.toProposer.pending + 1), 0);
      conn.toProposer.push({ kind: 'close' }, this.rng.int(this.params.detectDelayMaxUs + 1));
    }
  }

  /** A safekeeper lost power: its side vanishes; proposers notice after a delay. */
  safekeeperCrashed(index: number): void {
    for (const conn of [...this.connections.values()]) {
      if (conn.skIndex !== index) continue;
      conn.skOpen = false;
      conn.toSafekeeper.cut(0, 0);
      if (!conn.broken) {
        conn.broken = true;
        conn.toProposer.cut(this.rng.int(conn.toProposer.pending + 1), 0);
        conn.toProposer.push({ kind: 'close' }, this.rng.int(this.params.detectDelayMaxUs + 1));
      }
      if (conn.proposerClosed) this.connections.delete(conn.id);
    }
  }

  /** A proposer generation ended (crash or step-down): all its connections break. */
  proposerGone(proposer: ProposerEndpoint): void {
    for (const conn of [...this.connections.values()]) {
      if (conn.proposer !== proposer) continue;
      this.breakConnection(conn);
      conn.proposerClosed = true;
      if (!conn.skOpen) this.connections.delete(conn.id);
    }
  }

  /** Broker traffic between safekeepers: one datagram, dropped across a partition. */
  sendBetweenSafekeepers(from: number, to: number, deliver: () => void): void {
    if (this.isBlocked(`s${from}`, `s${to}`)) return;
    this.queue.schedule(this.latency(), deliver);
  }
}
