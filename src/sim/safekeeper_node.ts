// The simulator's per-safekeeper driver: runs the pure acceptor core and executes its effects as one FIFO,
// one storage operation at a time, with simulated latency (persist -> write -> fsync -> reply). In FIFO mode
// it never sends a reply before the storage effects ahead of it completed; eager mode skips that on purpose.

import { describeError } from '../errors.js';
import { formatLsn as L } from '../lsn.js';
import {
  acceptorPeerInfo,
  acceptorRestore,
  acceptorStep,
  type AcceptorConfig,
  type AcceptorEffect,
  type AcceptorInput,
  type AcceptorState,
  type PeerInfo,
} from '../core/acceptor.js';
import type { AcceptorMessage, ProposerMessage } from '../core/protocol_messages.js';
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
}

export class SafekeeperNode implements SafekeeperEndpoint {
  core: AcceptorState | null = null;
  up = false;
  incarnation = 0;
  crashes = 0;
  private fifo: AcceptorEffect[] = [];
  private head = 0;
  private busy: InterruptedOperation = 'none';

  constructor(
    readonly index: number,
    readonly disk: SimDisk,
    private readonly config: AcceptorConfig,
    private readonly queue: EventQueue,
    private readonly rng: Prng,
    private readonly net: SimNetwork,
    private readonly diskParams: DiskParams,
    private readonly hooks: SafekeeperNodeHooks,
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
      if (this.hooks.eagerSends && (e.kind === 'send' || e.kind === 'closeConnection')) this.execute(e);
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
    }
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
