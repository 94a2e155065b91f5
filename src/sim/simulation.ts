// One seeded simulation run: builds the cluster (safekeepers, proposer slots, network, disks), injects
// faults for a while, heals everything, lets it settle, optionally stops every proposer and lets peer
// recovery catch up a long-down safekeeper, and returns the checkers' verdict. Deterministic: the same
// parameters give the same run; it must never consult anything outside its seed.

import { acceptorPeerInfo, newTimelineState } from '../core/acceptor.js';
import { quorumSize } from '../core/commit_lsn.js';
import { formatLsn as L, type Lsn } from '../lsn.js';
import { term } from '../storage/timeline_state.js';
import { Checker, type Violation } from './checkers.js';
import { EventQueue } from './event_queue.js';
import { Prng } from './prng.js';
import { ProposerNode, SIM_TENANT_ID, SIM_TIMELINE_ID, type ProposerGeneration } from './proposer_node.js';
import { SafekeeperNode } from './safekeeper_node.js';
import { SimDisk } from './sim_disk.js';
import { SimNetwork } from './sim_network.js';
import { paramsForSeed, type SimOverrides, type SimParams } from './sim_params.js';

export type { Violation } from './checkers.js';

export interface SimStats {
  readonly events: number;
  readonly simTimeUs: number;
  readonly elections: number;
  readonly commits: number;
  readonly staleCommitReports: number;
  readonly committedBytes: number;
  readonly safekeeperCrashes: number;
  readonly proposerGenerations: number;
  readonly stepDowns: number;
  readonly messages: number;
  readonly connectionBreaks: number;
  readonly fsyncs: number;
  readonly partitions: number;
  readonly fences: number;
  /** The run hit maxEvents before its end time. */
  readonly truncated: boolean;
  /** No-proposer tail: how long after it began every live safekeeper had caught up (-1: no tail / never). */
  readonly recoveryCatchUpUs: number;
  /** How often interesting situations happened (coverage). */
  readonly counters: Readonly<Record<string, number>>;
}

export interface SimResult {
  readonly seed: number;
  readonly params: SimParams;
  readonly violations: readonly Violation[];
  readonly stats: SimStats;
}

export interface RunOptions {
  /** Receives a line per event of interest (slower; for replaying one seed). */
  readonly trace?: (line: string) => void;
  /** Keep running after the first violation (default: stop there). */
  readonly continueAfterViolation?: boolean;
}

export function runSeed(seed: number, overrides: SimOverrides = {}, options: RunOptions = {}): SimResult {
  return runSimulation(paramsForSeed(seed, overrides), options);
}

export function runSimulation(params: SimParams, options: RunOptions = {}): SimResult {
  const queue = new EventQueue();
  const master = new Prng(params.seed);
  const chaosRng = master.fork(1);
  const net = new SimNetwork(queue, master.fork(2), params.net);
  const traceSink = options.trace;
  const verbose = traceSink !== undefined;
  const trace = (line: string): void => {
    if (traceSink) traceSink(`${(queue.now / 1000).toFixed(3).padStart(9)}ms ${line}`);
  };
  const quorum = quorumSize(params.safekeepers);
  const counters: Record<string, number> = {};
  const count = (what: string): void => {
    counters[what] = (counters[what] ?? 0) + 1;
  };
  const safekeepers: SafekeeperNode[] = [];
  // The checker is created after the nodes it reads, but nodes report violations through it.
  let checker: Checker | null = null;
  const violation = (kind: string, detail: string): void => {
    checker!.violation(kind, detail);
    if (verbose) trace(`VIOLATION ${kind}: ${detail}`);
  };

  for (let i = 0; i < params.safekeepers; i++) {
    const initial = newTimelineState({
      tenantId: SIM_TENANT_ID,
      timelineId: SIM_TIMELINE_ID,
      timelineStartLsn: params.timelineStartLsn,
      segmentSizeBytes: params.segmentSizeBytes,
    });
    const disk = new SimDisk(params.timelineStartLsn, initial);
    const node = new SafekeeperNode(
      i,
      disk,
      { nodeId: i + 1, ...(params.acceptorFaults ? { unsafeTestingFaults: params.acceptorFaults } : {}) },
      queue,
      master.fork(100 + i),
      net,
      params.disk,
      { violation, count, trace, verbose, audit: params.audit, eagerSends: params.eagerSends, peer: (nodeId) => safekeepers[nodeId - 1] },
      params.recovery.enabled
        ? {
            nodeId: i + 1,
            maxReadBytes: params.recovery.readBytes,
            maxInflightReads: params.recovery.inflightReads,
            readTimeout: params.recovery.readTimeoutUs,
            peerInfoTtl: params.recovery.peerInfoTtlUs,
          }
        : null,
    );
    safekeepers.push(node);
  }
  checker = new Checker(params.timelineStartLsn, safekeepers, quorum, () => queue.now);
  const check = checker;

  let nextProposerId = 1;
  /** Generations that committed in their own term (a quorum holds their term start). */
  const committers = new WeakSet<ProposerGeneration>();
  const proposers: ProposerNode[] = [];
  for (let slot = 0; slot < params.proposers; slot++) {
    proposers.push(
      new ProposerNode(
        slot,
        params,
        queue,
        net,
        safekeepers,
        {
          violation,
          count,
          trace,
          verbose,
          nextProposerId: () => nextProposerId++,
          elected: (gen: ProposerGeneration, term, termStartLsn) => check.onElected(gen, term, termStartLsn),
          committed: (gen: ProposerGeneration, commitLsn: Lsn) => {
            committers.add(gen);
            check.onCommitted(gen, commitLsn);
          },
        },
        master.fork(200 + slot),
      ),
    );
  }

  for (const sk of safekeepers) sk.start();
  proposers[0]!.start();
  for (const p of proposers.slice(1)) queue.schedule(chaosRng.range(0, 5000), () => p.start());

  // Broker: every safekeeper publishes its position to the others now and then.
  for (const sk of safekeepers) {
    const publish = (): void => {
      const info = sk.peerInfo();
      if (info) {
        for (const other of safekeepers) {
          if (other !== sk) net.sendBetweenSafekeepers(sk.index, other.index, () => other.peerInfoReceived(info));
        }
      }
      queue.schedule(params.peerInfoIntervalUs, publish);
    };
    queue.schedule(chaosRng.range(0, params.peerInfoIntervalUs), publish);
    if (params.recovery.enabled) {
      const tick = (): void => {
        sk.recoveryTick();
        queue.schedule(params.recovery.tickUs, tick);
      };
      queue.schedule(chaosRng.range(0, params.recovery.tickUs), tick);
    }
  }

  // Faults.
  let chaosOn = params.chaos.meanIntervalUs > 0;
  let partitions = 0;
  let fences = 0;
  let partitionToken = 0;
  const restartSafekeeper = (sk: SafekeeperNode): void => {
    if (!sk.up) sk.start();
  };
  const chaosStep = (): void => {
    if (!chaosOn) return;
    const c = params.chaos;
    const weights = [c.safekeeperCrashWeight, c.proposerCrashWeight, c.partitionWeight, c.connectionBreakWeight, c.fenceWeight];
    const total = weights.reduce((a, b) => a + b, 0);
    let r = chaosRng.float() * total;
    let action = 0;
    while (action < weights.length - 1 && r >= weights[action]!) r -= weights[action++]!;
    switch (action) {
      case 0: {
        const up = safekeepers.filter((s) => s.up);
        if (up.length === 0) break;
        const sk = chaosRng.pick(up);
        sk.crash();
        queue.schedule(chaosRng.range(1000, c.safekeeperDownMaxUs), () => restartSafekeeper(sk));
        break;
      }
      case 1: {
        const live = proposers.filter((p) => p.gen !== null);
        if (live.length > 0) chaosRng.pick(live).crash();
        break;
      }
      case 2: {
        const nodes = [...proposers.map((p) => `p${p.slot}`), ...safekeepers.map((s) => `s${s.index}`)];
        const a: string[] = [];
        const b: string[] = [];
        for (const n of nodes) (chaosRng.chance(0.5) ? a : b).push(n);
        if (a.length === 0 || b.length === 0) break;
        partitions++;
        if (verbose) trace(`PARTITION [${a.join(' ')}] | [${b.join(' ')}]`);
        net.partition(a, b);
        const token = ++partitionToken;
        queue.schedule(chaosRng.range(1000, c.partitionMaxUs), () => {
          if (token !== partitionToken) return;
          if (verbose) trace('HEAL');
          net.heal();
        });
        break;
      }
      case 3: {
        const live = [...net.connections.values()].filter((x) => !x.broken);
        if (live.length > 0) {
          const conn = chaosRng.pick(live);
          if (verbose) trace(`BREAK c${conn.id} (p${conn.proposer.slot} - sk${conn.skIndex})`);
          net.breakConnection(conn);
        }
        break;
      }
      case 4: {
        let maxTerm = 0;
        for (const s of safekeepers) {
          maxTerm = Math.max(maxTerm, s.disk.durableControl.term, s.core?.persistent.term ?? 0);
        }
        fences++;
        if (verbose) trace(`FENCE minTerm ${maxTerm + 1}`);
        for (const s of safekeepers) {
          if (s.up && chaosRng.chance(0.8)) s.input({ kind: 'fence', minTerm: term(maxTerm + 1) });
        }
        break;
      }
    }
    queue.schedule(chaosRng.range(0, 2 * params.chaos.meanIntervalUs), chaosStep);
  };
  if (chaosOn) queue.schedule(chaosRng.range(0, 2 * params.chaos.meanIntervalUs), chaosStep);

  // Settle: heal everything, keep one proposer, and require progress (liveness) by the end.
  let commitsAtSettle = 0;
  queue.at(params.durationUs, () => {
    chaosOn = false;
    net.heal();
    net.calm = true;
    partitionToken++;
    if (verbose) trace('SETTLE: faults stop, partitions heal, crashed safekeepers restart');
    for (const sk of safekeepers) if (!sk.up) sk.start();
    for (const p of proposers.slice(1)) p.retire();
    proposers[0]!.start();
    commitsAtSettle = check.commits;
    if (tailOn) queue.schedule(chaosRng.range(0, params.settleUs / 4), chooseVictims);
  });

  // Long downtime: once the settled leader is stable and has committed in its term, crash some safekeepers
  // in its term and keep them down until the no-proposer tail. Never more than a quorum can spare: the
  // survivors still include one that holds the leader's term start, so the leader keeps committing.
  const tailOn = params.noProposerTailUs > 0;
  const victims: SafekeeperNode[] = [];
  /** The settled leader's term once it committed in it (so a quorum follows it to its end), else null. */
  const leaderTerm = (): number | null => {
    const gen = proposers[0]!.gen;
    return gen && gen.core.phase === 'leader' && committers.has(gen) ? gen.core.term : null;
  };
  const chooseVictims = (): void => {
    const t = leaderTerm();
    if (queue.now >= params.durationUs + params.settleUs) return;
    const inTerm = safekeepers.filter((s) => s.up && s.core !== null && s.disk.durableControl.term === t);
    if (t === null || inTerm.length < params.safekeepers) {
      queue.schedule(2000, chooseVictims);
      return;
    }
    const n = Math.min(params.longDowntimeVictims, params.safekeepers - quorum);
    for (let k = 0; k < n; k++) {
      const candidates = safekeepers.filter((s) => s.up);
      const sk = chaosRng.pick(candidates);
      if (verbose) trace(`LONG DOWNTIME ${sk.name} (leader term ${t})`);
      sk.crash();
      victims.push(sk);
      count('long downtime victim');
    }
  };
  // The tail: wait until the leader is stable (committed in its term, nobody in a term above it), then
  // stop every proposer and restart the victims. With no proposer, every live safekeeper must catch up
  // within the tail. (From a less settled cluster it cannot always: see docs/PROTOCOL.md, peer recovery.)
  let endUs = params.durationUs + params.settleUs;
  let tailStartUs = -1;
  let caughtUpUs = -1;
  const tailDeadline = endUs + 100_000;
  const startTail = (): void => {
    const t = leaderTerm();
    const stable = t !== null && safekeepers.every((s) => !s.up || (s.core !== null && s.core.persistent.term <= t));
    if (!stable && queue.now < tailDeadline) {
      endUs = queue.now + 2000 + params.noProposerTailUs;
      queue.schedule(2000, startTail);
      return;
    }
    if (!stable) count('tail: no stable leader');
    tailStartUs = queue.now;
    endUs = queue.now + params.noProposerTailUs;
    if (verbose) trace(`NO-PROPOSER TAIL: proposers stop, ${victims.map((v) => v.name).join(' ') || 'nobody'} restart`);
    for (const p of proposers) p.retire();
    for (const sk of victims) if (!sk.up) sk.start();
    const watch = (): void => {
      if (caughtUpUs < 0 && caughtUp() === null) caughtUpUs = queue.now - tailStartUs;
      if (caughtUpUs < 0) queue.schedule(1000, watch);
    };
    queue.schedule(1000, watch);
  };
  /** Null when every live safekeeper's flushLsn reached the highest commitLsn; else who lags. */
  const caughtUp = (): string | null => {
    let maxCommit = 0;
    for (const s of safekeepers) if (s.core && s.core.commitLsn > maxCommit) maxCommit = s.core.commitLsn;
    const behind = safekeepers.filter((s) => s.core !== null && s.core.flushLsn < maxCommit);
    if (behind.length === 0) return null;
    return `highest commitLsn ${L(maxCommit as Lsn)}; ${behind.map((s) => `${s.name} (term ${s.core!.persistent.term}, lastLogTerm ${acceptorPeerInfo(s.core!).lastLogTerm}, flushLsn ${L(s.core!.flushLsn)})`).join(', ')}; peers ${safekeepers.map((s) => (s.core ? `${s.name}: term ${s.core.persistent.term} lastLogTerm ${acceptorPeerInfo(s.core).lastLogTerm} flush ${L(s.core.flushLsn)}` : `${s.name}: down`)).join(', ')}`;
  };
  if (tailOn) queue.at(endUs, startTail);

  let events = 0;
  let truncated = false;
  while (queue.runNext()) {
    events++;
    check.afterEvent();
    if (check.violations.length > 0 && !options.continueAfterViolation) break;
    if (queue.now >= endUs && (!tailOn || tailStartUs >= 0)) break;
    if (events >= params.maxEvents) {
      truncated = true;
      break;
    }
  }
  if (params.checkLiveness && !truncated && check.violations.length === 0 && check.commits === commitsAtSettle) {
    const p0 = proposers[0]!;
    check.violation('no progress after settling', `proposer slot 0 (${p0.gen ? `generation ${p0.gen.proposerId}, phase ${p0.gen.core.phase}, term ${p0.gen.core.term}` : 'no live generation'}) committed nothing in ${params.settleUs}us of calm`);
  }
  if (tailOn && !truncated && check.violations.length === 0 && tailStartUs >= 0) {
    const lag = caughtUp();
    if (lag !== null) check.violation('no catch-up without a proposer', `${params.noProposerTailUs}us after every proposer stopped: ${lag}`);
  }

  return {
    seed: params.seed,
    params,
    violations: check.violations,
    stats: {
      events,
      simTimeUs: queue.now,
      elections: check.elections,
      commits: check.commits,
      staleCommitReports: check.staleCommitReports,
      committedBytes: check.commitLsn - params.timelineStartLsn,
      safekeeperCrashes: safekeepers.reduce((a, s) => a + s.crashes, 0),
      proposerGenerations: proposers.reduce((a, p) => a + p.generations, 0),
      stepDowns: proposers.reduce((a, p) => a + p.stepDowns, 0),
      messages: net.messagesSent,
      connectionBreaks: net.breaks,
      fsyncs: safekeepers.reduce((a, s) => a + s.disk.fsyncCount, 0),
      partitions,
      fences,
      truncated,
      recoveryCatchUpUs: caughtUpUs,
      counters,
    },
  };
}
