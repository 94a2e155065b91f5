// The per-timeline serial driver: feeds inputs to the pure acceptor core and executes its effects as one
// FIFO, one storage effect at a time (persist -> write -> fdatasync -> reply; docs/PROTOCOL.md, "Driver
// contract"). It never sends a reply ahead of a storage effect queued before it.

import { describeError, ErrorCodes, SafekeeperError } from '../errors.js';
import { lsn, type Lsn } from '../lsn.js';
import {
  acceptorPeerInfo,
  acceptorRecoveryView,
  acceptorRestore,
  acceptorStep,
  type AcceptorConfig,
  type AcceptorEffect,
  type AcceptorInput,
  type AcceptorState,
  type ConnectionId,
  type PeerInfo,
} from '../core/acceptor.js';
import type { AcceptorMessage, ErrorMessage, PeerReadReply, PeerReadRequest } from '../core/protocol_messages.js';
import { recoveryInit, recoveryStep, type RecoveryEffect, type RecoveryState } from '../core/peer_recovery.js';
import type { Term, TimelinePersistentState } from '../storage/timeline_state.js';
import type { ControlStore, WalStorage } from '../storage/wal_storage.js';

/** How the driver reaches connections; implemented by the network layer, which never touches storage. */
export interface ConnectionSink {
  send(connId: ConnectionId, message: AcceptorMessage): void;
  /** Sends `error` (if any) as the last frame and closes. */
  close(connId: ConnectionId, error: ErrorMessage | null): void;
}

/** How the driver reaches other safekeepers for peer recovery (implemented by the server's peer client). */
export interface PeerLink {
  /** Our peer-recovery read against safekeeper `peerNodeId`; resolves with its reply. */
  read(peerNodeId: number, requestId: number, request: PeerReadRequest): Promise<PeerReadReply>;
  /** Delivers our answer to a read another safekeeper made of us. */
  reply(requester: number, requestId: number, reply: PeerReadReply): void;
  /** Session start/end, for logs and metrics. */
  event(event: string, detail: Record<string, unknown>): void;
}

export interface TimelineDriverOptions {
  config: AcceptorConfig;
  control: ControlStore & { readonly state: TimelinePersistentState | null };
  store: WalStorage;
  sink: ConnectionSink;
  /** A broken invariant or a failed fsync: the timeline must stop (the process crashes by default). */
  onFatal: (err: Error) => void;
  /** Peer recovery; without it this timeline neither recovers from peers nor serves them. */
  peers?: PeerLink;
}

/** Milliseconds, from the driver's monotonic clock: the only time the pure recovery step sees. */
const now = (): number => performance.now();

function isPeerCausedStorageError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === ErrorCodes.WAL_INVALID || code === ErrorCodes.DISK_FULL;
}

export class TimelineDriver {
  core: AcceptorState;
  private readonly fifo: AcceptorEffect[] = [];
  private head = 0;
  private busy = false;
  private stopped: Error | null = null;
  private readonly opts: TimelineDriverOptions;
  private readonly recovery: RecoveryState;

  private constructor(opts: TimelineDriverOptions, core: AcceptorState) {
    this.opts = opts;
    this.core = core;
    // A donor read unanswered for 30 s ends the session (Neon's no-data timeout); peer infos older than 5 s
    // (five missed broker polls) no longer start one.
    this.recovery = recoveryInit({ nodeId: opts.config.nodeId, readTimeout: 30_000, peerInfoTtl: 5000 });
  }

  /** A peer's broker info: to the acceptor (commit learning) and to peer recovery (catching up). */
  peerInfo(info: PeerInfo): void {
    if (this.stopped) return;
    this.input({ kind: 'peerInfo', info });
    this.runRecovery(recoveryStep(this.recovery, { kind: 'peerInfo', now: now(), local: acceptorRecoveryView(this.core), info }));
  }

  /** Periodic: peer-recovery timeouts and session (re)starts. */
  tick(): void {
    if (this.stopped) return;
    this.runRecovery(recoveryStep(this.recovery, { kind: 'tick', now: now(), local: acceptorRecoveryView(this.core) }));
  }

  private runRecovery(effects: RecoveryEffect[]): void {
    const peers = this.opts.peers;
    for (const e of effects) {
      switch (e.kind) {
        case 'acceptorInput':
          this.input(e.input);
          break;
        case 'peerRead':
          if (!peers) break;
          peers.read(e.peerNodeId, e.requestId, e.request).then(
            (reply) => {
              if (this.stopped) return;
              this.runRecovery(recoveryStep(this.recovery, { kind: 'peerReadResult', now: now(), local: acceptorRecoveryView(this.core), requestId: e.requestId, reply }));
            },
            // An unreachable peer: the session's read timeout ends it and a later tick picks a donor again.
            (err: Error) => peers.event('peerReadFailed', { peer: e.peerNodeId, error: err.message }),
          );
          break;
        case 'recoveryEvent':
          peers?.event(e.event, { donor: e.donorNodeId, term: e.term, detail: e.detail });
          break;
      }
    }
  }

  /**
   * Builds the core from the control file and the store's recovered WAL. A recovered tail past the last
   * complete record (bytes of a record whose end was never written) is cut first, so the core and the
   * store agree on where WAL continues.
   */
  static async open(opts: TimelineDriverOptions): Promise<TimelineDriver> {
    const persistent = opts.control.state;
    if (!persistent) throw new SafekeeperError(ErrorCodes.TIMELINE_BROKEN, 'timeline has no control file');
    if (opts.store.writeLsn > opts.store.flushLsn) await opts.store.truncate(opts.store.flushLsn, persistent.commitLsn);
    const core = acceptorRestore(opts.config, persistent, opts.store.flushLsn);
    return new TimelineDriver(opts, core);
  }

  get state(): TimelinePersistentState {
    return this.core.persistent;
  }

  get ownPeerInfo(): PeerInfo {
    return acceptorPeerInfo(this.core);
  }

  get flushLsn(): Lsn {
    return this.core.flushLsn;
  }

  get commitLsn(): Lsn {
    return this.core.commitLsn;
  }

  get term(): Term {
    return this.core.persistent.term;
  }

  get isStopped(): boolean {
    return this.stopped !== null;
  }

  /** Stops processing (timeline deleted or server shutting down); queued effects are dropped. */
  shutdown(): void {
    this.stopped ??= new SafekeeperError(ErrorCodes.STORE_CLOSED, 'timeline shut down');
  }

  /** Resolves once every effect queued so far has been executed (e.g. a fence is durable). */
  async whenIdle(): Promise<void> {
    while ((this.busy || this.head < this.fifo.length) && !this.stopped) {
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  input(input: AcceptorInput): void {
    if (this.stopped) return;
    let effects: AcceptorEffect[];
    try {
      effects = acceptorStep(this.core, input);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    for (const e of effects) this.fifo.push(e);
    this.pump();
  }

  /** Runs queued effects in order; a storage effect holds everything behind it until it completes. */
  private pump(): void {
    while (!this.busy && !this.stopped && this.head < this.fifo.length) {
      const e = this.fifo[this.head++]!;
      switch (e.kind) {
        case 'send':
          this.opts.sink.send(e.connId, e.message);
          break;
        case 'closeConnection':
          this.opts.sink.close(e.connId, e.error);
          break;
        case 'peerReadReply':
          this.opts.peers?.reply(e.requester, e.requestId, e.reply);
          break;
        case 'writeWal':
          try {
            this.opts.store.write(e.lsn, e.wal);
          } catch (err) {
            this.fail(err as Error);
            return;
          }
          break;
        default:
          this.busy = true;
          this.runStorage(e).then(
            (next) => {
              this.busy = false;
              if (next) this.input(next);
              this.pump();
            },
            (err: Error) => {
              this.busy = false;
              if (isPeerCausedStorageError(err)) void this.resetAfter(err);
              else this.fail(err);
            },
          );
          return;
      }
    }
    if (this.head === this.fifo.length) {
      this.fifo.length = 0;
      this.head = 0;
    }
  }

  private async runStorage(e: AcceptorEffect): Promise<AcceptorInput | null> {
    const { store, control } = this.opts;
    switch (e.kind) {
      case 'persistControl':
        await control.persist(e.state);
        return { kind: 'controlPersisted', seq: e.seq };
      case 'flushWal': {
        const flushLsn = await store.flush();
        return { kind: 'walFlushed', epoch: e.epoch, flushLsn, durableLsn: store.durableLsn };
      }
      case 'truncateWal': {
        // Recovery scans from the persisted flushLsn: lower it before cutting below it, or a crash right
        // after the cut would leave recovery starting inside the zeroed tail.
        const persisted = control.state;
        if (persisted && persisted.flushLsn > e.lsn) {
          await control.persist({ ...persisted, flushLsn: lsn(Math.max(e.lsn, persisted.commitLsn)) });
        }
        await store.truncate(e.lsn, e.commitLsn);
        return null;
      }
      case 'readWal': {
        const wal = await store.read(e.beginLsn, e.endLsn);
        return { kind: 'walRead', connId: e.connId, term: e.term, beginLsn: e.beginLsn, wal };
      }
      case 'readWalForPeer': {
        const wal = await store.read(e.beginLsn, e.endLsn);
        return { kind: 'peerWalRead', requester: e.requester, requestId: e.requestId, term: e.term, beginLsn: e.beginLsn, wal };
      }
      default:
        return null;
    }
  }

  /**
   * The store refused WAL a proposer sent (invalid records) or the disk is full. Nothing acknowledged is
   * affected: every connection of this timeline gets the typed error and is closed, the unflushed tail is
   * dropped, and the core restarts from what is durable. The proposer reconnects and resends.
   */
  private async resetAfter(err: Error): Promise<void> {
    this.stopped = err;
    const code = (err as { code?: string }).code ?? ErrorCodes.IO;
    for (const connId of this.core.connections.keys()) {
      this.opts.sink.close(connId, {
        kind: 'Error',
        code: code as ErrorMessage['code'],
        term: this.core.persistent.term,
        got: '',
        expected: '',
        message: err.message,
      });
    }
    this.fifo.length = 0;
    this.head = 0;
    try {
      const { store, control } = this.opts;
      const persisted = control.state ?? this.core.persistent;
      if (store.writeLsn > store.flushLsn) await store.truncate(store.flushLsn, persisted.commitLsn);
      this.core = acceptorRestore(this.opts.config, persisted, store.flushLsn);
      this.stopped = null;
    } catch (resetErr) {
      this.stopped = null;
      this.fail(resetErr as Error);
    }
  }

  /**
   * Storage refused an effect or an invariant broke. Invalid WAL from a peer and a full disk are not this
   * node's fault: the timeline stops serving until restarted with what is durable. Anything else is fatal.
   */
  private fail(err: Error): void {
    if (this.stopped) return;
    this.stopped = err;
    for (const connId of this.core.connections.keys()) {
      this.opts.sink.close(connId, null);
    }
    this.opts.onFatal(new Error(`timeline ${this.core.persistent.tenantId}/${this.core.persistent.timelineId} stopped: ${describeError(err)}`, { cause: err }));
  }
}
