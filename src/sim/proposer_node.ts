// The simulator's proposer: one slot that runs successive proposer generations (a compute restarting),
// each driving the pure proposer core over simulated connections, plus the application workload.
// A generation that stepped down or crashed must never act again; its successor gets a new proposer id.

import { describeError } from '../errors.js';
import type { AcceptorMessage } from '../core/protocol_messages.js';
import { proposerInit, proposerStep, type ProposerConfig, type ProposerInput, type ProposerState } from '../core/proposer.js';
import { formatLsn as L, type Lsn } from '../lsn.js';
import type { Term } from '../storage/timeline_state.js';
import type { EventQueue } from './event_queue.js';
import { Prng } from './prng.js';
import { describeAcceptorMessage, describeProposerMessage, type SafekeeperNode } from './safekeeper_node.js';
import type { ProposerEndpoint, SimConnection, SimNetwork } from './sim_network.js';
import type { SimParams } from './sim_params.js';

export interface ProposerHooks {
  violation(kind: string, detail: string): void;
  count(what: string): void;
  trace(line: string): void;
  readonly verbose: boolean;
  nextProposerId(): number;
  elected(gen: ProposerGeneration, term: Term, termStartLsn: Lsn): void;
  committed(gen: ProposerGeneration, commitLsn: Lsn): void;
}

export const SIM_TENANT_ID = '3aa8fcc61f6d357410b7de754b1d9001';
export const SIM_TIMELINE_ID = 'de200bd42b49cc1814412c7e592dd6e9';
export const SIM_SYSTEM_ID = 7_312_001_234_567_890_123n;
export const SIM_PG_VERSION = 160_004;

/** One proposer generation: the endpoint of its connections. */
export class ProposerGeneration implements ProposerEndpoint {
  alive = true;
  readonly core: ProposerState;
  readonly links: (SimConnection | null)[];
  readonly rng: Prng;

  constructor(
    readonly slot: number,
    readonly proposerId: number,
    config: ProposerConfig,
    private readonly owner: ProposerNode,
  ) {
    this.core = proposerInit(config);
    this.links = new Array<SimConnection | null>(config.acceptorCount).fill(null);
    this.rng = new Prng(proposerId * 0x9e37 + slot);
  }

  get name(): string {
    return `p${this.slot}/${this.proposerId}`;
  }

  opened(conn: SimConnection): void {
    if (this.links[conn.skIndex] !== conn) return;
    this.step({ kind: 'connected', acceptor: conn.skIndex });
  }

  message(conn: SimConnection, msg: AcceptorMessage): void {
    if (this.links[conn.skIndex] !== conn) return;
    if (this.owner.verbose) this.owner.trace(`${this.name} <- sk${conn.skIndex} ${describeAcceptorMessage(msg)}`);
    this.step({ kind: 'message', acceptor: conn.skIndex, message: msg });
  }

  closed(conn: SimConnection): void {
    const k = conn.skIndex;
    if (this.links[k] !== conn) return;
    this.links[k] = null;
    if (conn.proposerOpen) {
      if (this.owner.verbose) this.owner.trace(`${this.name} lost connection to sk${k}`);
      this.step({ kind: 'disconnected', acceptor: k });
    }
    this.owner.scheduleConnect(this, k);
  }

  step(input: ProposerInput): void {
    if (!this.alive) return;
    let effects;
    try {
      effects = proposerStep(this.core, input);
    } catch (err) {
      this.owner.hooks.violation('proposer invariant', `${this.name}: ${describeError(err)}`);
      this.owner.crash();
      return;
    }
    for (const e of effects) {
      if (!this.alive) return;
      switch (e.kind) {
        case 'send': {
          const conn = this.links[e.acceptor];
          if (this.owner.verbose) this.owner.trace(`${this.name} -> sk${e.acceptor} ${describeProposerMessage(e.message)}`);
          if (conn) this.owner.net.sendToSafekeeper(conn, e.message);
          break;
        }
        case 'elected':
          this.owner.hooks.count('elected');
          if (this.owner.verbose) this.owner.trace(`${this.name} ELECTED term ${e.term}, termStartLsn ${L(e.termStartLsn)}, donor sk${this.core.donor}`);
          this.owner.hooks.elected(this, e.term, e.termStartLsn);
          break;
        case 'walAppended':
          break;
        case 'committed':
          if (this.owner.verbose) this.owner.trace(`${this.name} committed ${L(e.commitLsn)}`);
          this.owner.hooks.committed(this, e.commitLsn);
          break;
        case 'steppedDown':
          this.owner.hooks.count(`step down: ${e.reason.replace(/[0-9]+/g, 'N')}`);
          if (this.owner.verbose) this.owner.trace(`${this.name} STEPPED DOWN: ${e.reason}`);
          this.owner.stepDowns++;
          this.owner.end(this);
          return;
        case 'quorumLost':
        case 'quorumRegained':
          if (this.owner.verbose) this.owner.trace(`${this.name} ${e.kind}`);
          break;
      }
    }
  }
}

/** A proposer slot: at most one live generation at a time, restarted after crashes and step-downs. */
export class ProposerNode {
  gen: ProposerGeneration | null = null;
  generations = 0;
  stepDowns = 0;
  /** False once the simulation retires this slot (settle phase keeps one proposer). */
  enabled = true;
  private restartPending = false;
  private readonly rng: Prng;

  constructor(
    readonly slot: number,
    private readonly params: SimParams,
    private readonly queue: EventQueue,
    readonly net: SimNetwork,
    private readonly safekeepers: readonly SafekeeperNode[],
    readonly hooks: ProposerHooks,
    rng: Prng,
  ) {
    this.rng = rng;
  }

  get verbose(): boolean {
    return this.hooks.verbose;
  }

  trace(line: string): void {
    this.hooks.trace(line);
  }

  /** Starts a new generation with a fresh proposer id, and the application's workload timer. */
  start(): void {
    if (!this.enabled || this.gen) return;
    const p = this.params;
    const proposerId = this.hooks.nextProposerId();
    const config: ProposerConfig = {
      proposerId,
      tenantId: SIM_TENANT_ID,
      timelineId: SIM_TIMELINE_ID,
      systemId: SIM_SYSTEM_ID,
      pgVersion: SIM_PG_VERSION,
      segmentSizeBytes: p.segmentSizeBytes,
      acceptorCount: p.safekeepers,
      maxAppendBytes: p.maxAppendBytes,
      maxReadBytes: p.maxReadBytes,
      maxInflightAppends: p.maxInflightAppends,
      ...(p.proposerFaults ? { unsafeTestingFaults: p.proposerFaults } : {}),
    };
    const gen = new ProposerGeneration(this.slot, proposerId, config, this);
    this.gen = gen;
    this.generations++;
    if (this.verbose) this.trace(`${gen.name} START`);
    for (let k = 0; k < p.safekeepers; k++) this.connect(gen, k);
    this.scheduleWorkload(gen);
  }

  /** The compute dies: its connections break (late messages may still reach safekeepers). */
  crash(): void {
    const gen = this.gen;
    if (!gen) return;
    if (this.verbose) this.trace(`${gen.name} CRASH`);
    this.end(gen);
  }

  /** Ends a generation and schedules the next one. */
  end(gen: ProposerGeneration): void {
    if (!gen.alive) return;
    gen.alive = false;
    this.net.proposerGone(gen);
    if (this.gen === gen) this.gen = null;
    this.scheduleRestart();
  }

  retire(): void {
    this.enabled = false;
    this.crash();
  }

  scheduleRestart(): void {
    if (this.restartPending || !this.enabled) return;
    this.restartPending = true;
    this.queue.schedule(this.rng.range(500, this.params.chaos.proposerDownMaxUs), () => {
      this.restartPending = false;
      this.start();
    });
  }

  scheduleConnect(gen: ProposerGeneration, k: number): void {
    this.queue.schedule(this.rng.range(100, this.params.net.reconnectDelayMaxUs), () => this.connect(gen, k));
  }

  private connect(gen: ProposerGeneration, k: number): void {
    if (!gen.alive || gen.links[k]) return;
    const conn = this.net.connect(gen, this.safekeepers[k]!);
    if (conn) gen.links[k] = conn;
    else this.scheduleConnect(gen, k);
  }

  private scheduleWorkload(gen: ProposerGeneration): void {
    const w = this.params.workload;
    this.queue.schedule(this.rng.range(w.appendIntervalMinUs, w.appendIntervalMaxUs), () => {
      if (!gen.alive) return;
      const core = gen.core;
      const backlog = core.phase === 'leader' ? core.wal.endLsn - core.commitLsn : core.pendingAppends.length * w.recordMaxBytes;
      if (backlog < w.maxUncommittedBytes) {
        gen.step({ kind: 'appendRequested', wal: gen.rng.bytes(gen.rng.range(1, w.recordMaxBytes)) });
      }
      this.scheduleWorkload(gen);
    });
  }
}
