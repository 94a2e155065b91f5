// The simulator's per-safekeeper driver: runs the pure acceptor core and executes its effects as one FIFO,
// one storage operation at a time, with simulated latency (persist -> write -> fsync -> reply). In FIFO mode
// it never sends a reply before the storage effects ahead of it completed; eager mode skips that on purpose.
// It also runs peer recovery (core/peer_recovery.ts) next to the acceptor: broker infos and ticks go in,
// peer reads travel as datagrams between safekeepers, recovered WAL enters through the acceptor's inputs.

import { describeError } from '../errors.js';
import { formatLsn as L } from '../lsn.js';
import {
  acceptorPeerInfo,
  acceptorRecoveryView,
  acceptorRestore,
  acceptorStep,
  type AcceptorConfig,
  type AcceptorEffect,
  type AcceptorInput,
  type AcceptorState,
  type PeerInfo,
} from '../core/acceptor.js';
import { recoveryInit, recoveryStep, type RecoveryConfig, type RecoveryInput, type RecoveryState } from '../core/peer_recovery.js';
import type { AcceptorMessage, PeerReadReply, PeerReadRequest, ProposerMessage } from '../core/protocol_messages.js';
import type { EventQueue } from './event_queue.js';
import type { Prng } from './prng.js';
import type { InterruptedOperation, SimDisk } from './sim_disk.js';
import type { SafekeeperEndpoint, SimNetwork } from './sim_network.js';
import type { DiskParams } from './sim_params.js';

export interface SafekeeperNodeHooks {
  violation(kind: string, detail: string): void;
  /** Coverage counters: how often interesting situations happened. */
  count(what: string): void;
  trace(line: string): void;
  readonly verbose: boolean;
  readonly audit: boolean;
  /** Execute sends and closes as soon as they are emitted (see SimParams.eagerSends). */
  readonly eagerSends: boolean;
  /** The safekeeper with this node id (peer reads are addressed by node id). */
  peer(nodeId: number): SafekeeperNode | undefined;
}

export class SafekeeperNode implements SafekeeperEndpoint {
  core: AcceptorState | null = null;
  up = false;
  incarnation = 0;
  crashes = 0;
  private fifo: AcceptorEffect[] = [];
  private head = 0;
  private busy: InterruptedOperation = 'none';
  /** Peer recovery's state: in memory only, rebuilt at every start like the acceptor core. */
  recovery: RecoveryState | null = null;
  /** Peer reads sent and not answered, by a wire id unique over restarts -> the recovery's requestId. */
  private peerReads = new Map<number, number>();
  private nextWireId = 1;

  constructor(
    readonly index: number,
    readonly disk: SimDisk,
    private readonly config: AcceptorConfig,
    private readonly queue: EventQueue,
    private readonly rng: Prng,
    private readonly net: SimNetwork,
    private readonly diskParams: DiskParams,
    private readonly hooks: SafekeeperNodeHooks,
    /** Null: this node never runs peer recovery (it still serves peer reads). */
    private readonly recoveryConfig: RecoveryConfig | null = null,
  ) {}

  get name(): string {
    return `sk${this.index}`;
  }

  /** Boots from what the disk holds (first start and every restart). */
  start(): void {
    const { control, flushLsn } = this.disk.recover();
    this.incarnation++;
    this.up = true;
    this.fifo = [];
    this.head = 0;
    this.busy = 'none';
    this.peerReads = new Map();
    this.recovery = this.recoveryConfig ? recoveryInit(this.recoveryConfig) : null;
    try {
      this.core = acceptorRestore(this.config, control, flushLsn);
    } catch (err) {
      this.hooks.violation('safekeeper restore', `${this.name}: ${describeError(err)}`);
      this.up = false;
      return;
    }
    if (this.hooks.verbose) this.hooks.trace(`${this.name} start: term ${control.term}, flushLsn ${L(flushLsn)}, commitLsn ${L(control.commitLsn)}`);
  }

  /** Power loss: the core and the effect queue vanish, the disk keeps only what it must. */
  crash(): void {
    if (!this.up) return;
    const report = this.disk.crash(this.rng, this.busy, this.diskParams.tearProbability);
    if (report.survivedUnflushedBytes > 0) this.hooks.count('crash kept unflushed WAL');
    if (report.lostBytes > 0) this.hooks.count('crash lost unflushed WAL');
    if (report.tornWrite) this.hooks.count('crash tore a write');
    if (this.busy !== 'none') this.hooks.count(`crash during ${this.busy}`);
    this.up = false;
    this.core = null;
    this.recovery = null;
    this.peerReads = new Map();
    this.fifo = [];
    this.head = 0;
    this.busy = 'none';
    this.crashes++;
    this.net.safekeeperCrashed(this.index);
    if (this.hooks.verbose) {
      this.hooks.trace(
        `${this.name} CRASH: lost ${report.lostBytes} unflushed bytes, ${report.survivedUnflushedBytes} survived, torn=${report.tornWrite}, interrupted op applied=${report.interruptedApplied}`,
      );
    }
  }

  connectionOpened(connId: number): void {
    this.input({ kind: 'connectionOpened', connId });
  }

  message(connId: number, msg: ProposerMessage): void {
    if (this.core && !this.core.connections.has(connId)) this.hooks.count('late message on a closed connection');
    if (this.hooks.verbose) this.hooks.trace(`${this.name} <- c${connId} ${describeProposerMessage(msg)}`);
    this.input({ kind: 'message', connId, message: msg });
  }

  connectionClosed(connId: number): void {
    this.input({ kind: 'connectionClosed', connId });
  }

  peerInfo(): PeerInfo | null {
    return this.core ? acceptorPeerInfo(this.core) : null;
  }

  /** A broker datagram from a peer: for the acceptor (commit adoption) and for peer recovery. */
  peerInfoReceived(info: PeerInfo): void {
    this.input({ kind: 'peerInfo', info });
    if (this.core) this.recoveryInput({ kind: 'peerInfo', now: this.queue.now, local: acceptorRecoveryView(this.core), info });
  }

  recoveryTick(): void {
    if (this.core) this.recoveryInput({ kind: 'tick', now: this.queue.now, local: acceptorRecoveryView(this.core) });
  }

  /** Serving side: a peer asks for our WAL (the reply travels back as a datagram). */
  peerReadRequest(requester: number, wireId: number, request: PeerReadRequest): void {
    this.input({ kind: 'peerReadRequest', requester, requestId: wireId, request });
  }

  /** Recovering side: a donor answered; replies to a previous incarnation's reads are dropped. */
  peerReadReply(wireId: number, reply: PeerReadReply): void {
    const requestId = this.peerReads.get(wireId);
    if (requestId === undefined || !this.core) return;
    this.peerReads.delete(wireId);
    this.recoveryInput({ kind: 'peerReadResult', now: this.queue.now, local: acceptorRecoveryView(this.core), requestId, reply });
  }

  private recoveryInput(input: RecoveryInput): void {
    if (!this.up || !this.recovery) return;
    const effects = recoveryStep(this.recovery, input);
    for (const e of effects) {
      if (!this.up) return;
      switch (e.kind) {
        case 'acceptorInput':
          this.input(e.input);
          break;
        case 'peerRead': {
          const donor = this.hooks.peer(e.peerNodeId);
          if (!donor) break;
          const wireId = this.nextWireId++;
          this.peerReads.set(wireId, e.requestId);
          if (this.hooks.verbose) this.hooks.trace(`${this.name} -> ${donor.name} peerRead#${wireId}(term ${e.request.term}, ${L(e.request.beginLsn)}..${L(e.request.endLsn)})`);
          this.net.sendBetweenSafekeepers(this.index, donor.index, () => donor.peerReadRequest(this.config.nodeId, wireId, e.request));
          break;
        }
        case 'recoveryEvent':
          this.hooks.count(`recovery ${e.event}${e.event === 'aborted' ? `: ${e.detail.replace(/ \(its term.*$/, '').replace(/[0-9]+(\/[0-9A-F]+)?/g, 'N')}` : ''}`);
          if (this.hooks.verbose) this.hooks.trace(`${this.name} RECOVERY ${e.event} (donor node ${e.donorNodeId}, term ${e.term}): ${e.detail}`);
          break;
      }
    }
  }

  input(input: AcceptorInput): void {
    if (!this.up || !this.core) return;
    let effects: AcceptorEffect[];
    try {
      effects = acceptorStep(this.core, input);
    } catch (err) {
      // A broken invariant crashes the node, like the real process; the checker records it.
      this.hooks.violation('safekeeper invariant', `${this.name}: ${describeError(err)}`);
      this.crash();
      return;
    }
    for (const e of effects) {
      if (this.hooks.eagerSends && (e.kind === 'send' || e.kind === 'closeConnection' || e.kind === 'peerReadReply')) this.execute(e);
      else this.fifo.push(e);
    }
    this.pump();
  }

  /** Executes the FIFO in order; a storage effect blocks everything behind it until it completes. */
  private pump(): void {
    while (this.busy === 'none' && this.head < this.fifo.length && this.up) {
      const e = this.fifo[this.head++]!;
      try {
        this.execute(e);
      } catch (err) {
        // The store refused an effect (a gap, a cut below commit): the core asked for something wrong.
        this.hooks.violation('storage refused effect', `${this.name} ${e.kind}: ${describeError(err)}`);
        this.crash();
        return;
      }
    }
    if (this.head === this.fifo.length) {
      this.fifo.length = 0;
      this.head = 0;
    }
  }

  private execute(e: AcceptorEffect): void {
    const incarnation = this.incarnation;
    const later = (delayUs: number, fn: () => void): void => {
      this.queue.schedule(delayUs, () => {
        if (this.incarnation !== incarnation || !this.up) return;
        try {
          fn();
        } catch (err) {
          this.hooks.violation('storage refused effect', `${this.name} ${e.kind}: ${describeError(err)}`);
          this.crash();
        }
      });
    };
    switch (e.kind) {
      case 'send': {
        const conn = this.net.connections.get(e.connId);
        if (this.hooks.audit) this.audit(e.message, conn?.proposer.slot);
        if (this.hooks.verbose) this.hooks.trace(`${this.name} -> c${e.connId} ${describeAcceptorMessage(e.message)}`);
        if (conn) this.net.sendToProposer(conn, e.message);
        return;
      }
      case 'closeConnection': {
        this.hooks.count(e.error ? `close ${e.error.code}` : 'close');
        if (this.hooks.verbose) this.hooks.trace(`${this.name} close c${e.connId}: ${e.error ? `${e.error.code} ${e.error.message} (got ${e.error.got}, expected ${e.error.expected})` : ''}`);
        const conn = this.net.connections.get(e.connId);
        if (conn) this.net.closeFromSafekeeper(conn, e.error);
        return;
      }
      case 'writeWal':
        this.disk.write(e.lsn, e.wal);
        return;
      case 'persistControl':
        this.busy = 'persistControl';
        this.disk.beginPersistControl(e.state);
        later(this.rng.range(this.diskParams.controlPersistMinUs, this.diskParams.controlPersistMaxUs), () => {
          this.disk.persistControl(e.state);
          this.busy = 'none';
          this.input({ kind: 'controlPersisted', seq: e.seq });
          this.pump();
        });
        return;
      case 'truncateWal':
        this.busy = 'truncateWal';
        this.disk.beginTruncate(e.lsn, e.commitLsn);
        this.hooks.count(e.lsn < this.disk.durableEnd ? 'truncate durable WAL' : 'truncate unflushed WAL');
        if (this.hooks.verbose) this.hooks.trace(`${this.name} truncate WAL at ${L(e.lsn)} (commitLsn ${L(e.commitLsn)})`);
        later(this.rng.range(this.diskParams.fsyncMinUs, this.diskParams.fsyncMaxUs), () => {
          this.disk.truncate(e.lsn, e.commitLsn);
          this.busy = 'none';
          this.pump();
        });
        return;
      case 'flushWal':
        this.busy = 'flushWal';
        later(this.rng.range(this.diskParams.fsyncMinUs, this.diskParams.fsyncMaxUs), () => {
          const flushLsn = this.disk.flush();
          this.busy = 'none';
          this.input({ kind: 'walFlushed', epoch: e.epoch, flushLsn });
          this.pump();
        });
        return;
      case 'readWal':
        this.busy = 'readWal';
        later(this.diskParams.readUs, () => {
          const wal = this.disk.read(e.beginLsn, e.endLsn);
          this.busy = 'none';
          this.input({ kind: 'walRead', connId: e.connId, term: e.term, beginLsn: e.beginLsn, wal });
          this.pump();
        });
        return;
      case 'readWalForPeer':
        this.busy = 'readWal';
        later(this.diskParams.readUs, () => {
          // Served WAL must be durable here when it is read (FIFO order: no cut decided after the request
          // runs before this read).
          if (this.hooks.audit && e.endLsn > this.disk.durableEnd) this.hooks.violation('durability audit', `${this.name} reads ${L(e.beginLsn)}..${L(e.endLsn)} for a peer, durable end ${L(this.disk.durableEnd)}`);
          const wal = this.disk.read(e.beginLsn, e.endLsn);
          this.busy = 'none';
          this.input({ kind: 'peerWalRead', requester: e.requester, requestId: e.requestId, term: e.term, beginLsn: e.beginLsn, wal });
          this.pump();
        });
        return;
      case 'peerReadReply': {
        const requester = this.hooks.peer(e.requester);
        if (this.hooks.audit && e.reply.kind === 'PeerWal') this.auditPeerReply(e.reply);
        if (this.hooks.verbose) {
          const r = e.reply;
          this.hooks.trace(`${this.name} -> ${requester?.name ?? '?'} peerReply#${e.requestId} ${r.kind === 'PeerWal' ? `(term ${r.term}, ${L(r.beginLsn)}+${r.wal.length}, flush ${L(r.flushLsn)}, commit ${L(r.commitLsn)})` : `refused ${r.code}: ${r.message}`}`);
        }
        if (requester) this.net.sendBetweenSafekeepers(this.index, requester.index, () => requester.peerReadReply(e.requestId, e.reply));
        return;
      }
    }
  }

  /** A peer is never told a flushLsn that is not durable here. */
  private auditPeerReply(reply: Extract<PeerReadReply, { kind: 'PeerWal' }>): void {
    if (reply.flushLsn > this.disk.durableEnd) this.hooks.violation('durability audit', `${this.name} told a peer flushLsn ${L(reply.flushLsn)}, durable end ${L(this.disk.durableEnd)}`);
  }

  /** The driver contract, checked at the wire: nothing acknowledged is less durable than it claims. */
  private audit(msg: AcceptorMessage, proposerSlot: number | undefined): void {
    const durableEnd = this.disk.durableEnd;
    const control = this.disk.durableControl;
    const where = `${this.name} -> p${proposerSlot ?? '?'}`;
    if (msg.kind === 'VoteResponse') {
      if (msg.flushLsn > durableEnd) this.hooks.violation('durability audit', `${where} VoteResponse flushLsn ${L(msg.flushLsn)} > durable WAL end ${L(durableEnd)}`);
      if (msg.granted && control.term < msg.term) {
        this.hooks.violation('durability audit', `${where} granted vote for term ${msg.term}, durable control file has term ${control.term}`);
      }
    } else if (msg.kind === 'AppendResponse') {
      if (msg.flushLsn > durableEnd) this.hooks.violation('durability audit', `${where} AppendResponse flushLsn ${L(msg.flushLsn)} > durable WAL end ${L(durableEnd)}`);
      if (msg.durableLsn > durableEnd) this.hooks.violation('durability audit', `${where} AppendResponse durableLsn ${L(msg.durableLsn)} > durable WAL end ${L(durableEnd)}`);
    }
  }
}

export function describeProposerMessage(m: ProposerMessage): string {
  switch (m.kind) {
    case 'ProposerGreeting':
      return `Greeting(proposer ${m.proposerId})`;
    case 'VoteRequest':
      return `VoteRequest(term ${m.term})`;
    case 'ProposerElected':
      return `Elected(term ${m.term}, start ${L(m.startLsn)}, history ${historyText(m.termHistory)})`;
    case 'AppendRequest':
      return `Append(term ${m.term}, ${L(m.beginLsn)}..${L(m.endLsn)}, commit ${L(m.commitLsn)}, truncate ${L(m.truncateLsn)})`;
    case 'ReadRequest':
      return `Read(term ${m.term}, ${L(m.beginLsn)}..${L(m.endLsn)})`;
  }
}

export function describeAcceptorMessage(m: AcceptorMessage): string {
  switch (m.kind) {
    case 'AcceptorGreeting':
      return `Greeting(node ${m.nodeId}, term ${m.term}, minTerm ${m.minTerm})`;
    case 'VoteResponse':
      return `Vote(term ${m.term}, granted ${m.granted}, flush ${L(m.flushLsn)}, lastLogTerm ${m.lastLogTerm}, history ${historyText(m.termHistory)})`;
    case 'AppendResponse':
      return `AppendResponse(term ${m.term}, flush ${L(m.flushLsn)}, commit ${L(m.commitLsn)})`;
    case 'ReadResponse':
      return `ReadResponse(term ${m.term}, ${L(m.beginLsn)}+${m.wal.length})`;
    case 'Error':
      return `Error(${m.code}, term ${m.term}, got ${m.got}, expected ${m.expected}: ${m.message})`;
  }
}

function historyText(h: readonly { term: number; lsn: number }[]): string {
  return `[${h.map((e) => `${e.term}@${L(e.lsn)}`).join(' ')}]`;
}
