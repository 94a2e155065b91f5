// Knobs of one simulated run, and how a seed picks them: cluster size, latencies, fault rates, workload.
// Everything a run does is derived from these and the seed; must never read the host environment.

import { lsn, type Lsn } from '../lsn.js';
import type { AcceptorTestingFaults } from '../core/acceptor.js';
import type { ProposerTestingFaults } from '../core/proposer.js';
import { Prng } from './prng.js';

export interface NetworkParams {
  readonly latencyMinUs: number;
  readonly latencyMaxUs: number;
  /** Chance that sending a message breaks its connection (TCP reset, lost segment + timeout). */
  readonly breakPerMessage: number;
  /** On a break, chance that the messages already in flight to the safekeeper still arrive (late). */
  readonly staleDelivery: number;
  /** Extra delay of such late messages, so they can land after a newer connection's messages. */
  readonly staleExtraDelayMaxUs: number;
  /** How long a proposer takes to notice a dead connection. */
  readonly detectDelayMaxUs: number;
  readonly reconnectDelayMaxUs: number;
}

export interface DiskParams {
  readonly fsyncMinUs: number;
  readonly fsyncMaxUs: number;
  readonly controlPersistMinUs: number;
  readonly controlPersistMaxUs: number;
  readonly readUs: number;
  /** On a crash, chance that the first lost write is torn instead of cleanly absent. */
  readonly tearProbability: number;
}

export interface ChaosParams {
  /** Mean time between fault injections (0 disables chaos). */
  readonly meanIntervalUs: number;
  readonly safekeeperCrashWeight: number;
  readonly proposerCrashWeight: number;
  readonly partitionWeight: number;
  readonly connectionBreakWeight: number;
  readonly fenceWeight: number;
  readonly safekeeperDownMaxUs: number;
  readonly proposerDownMaxUs: number;
  readonly partitionMaxUs: number;
}

export interface WorkloadParams {
  readonly appendIntervalMinUs: number;
  readonly appendIntervalMaxUs: number;
  readonly recordMaxBytes: number;
  /** Backpressure: the application pauses while this much WAL is not yet committed. */
  readonly maxUncommittedBytes: number;
}

export interface RecoveryParams {
  /** Safekeepers run peer recovery (core/peer_recovery.ts) from broker infos. */
  readonly enabled: boolean;
  /** Recovery tick period: timeouts and session starts. */
  readonly tickUs: number;
  readonly readBytes: number;
  readonly inflightReads: number;
  readonly readTimeoutUs: number;
  /** Broker infos older than this are not used to pick a donor. */
  readonly peerInfoTtlUs: number;
}

export interface SimParams {
  readonly seed: number;
  readonly safekeepers: number;
  readonly proposers: number;
  /** Faults run for this long, then everything heals and the cluster settles. */
  readonly durationUs: number;
  readonly settleUs: number;
  /** Hard bound on events per run (a run that hits it stops early; not a violation). */
  readonly maxEvents: number;
  readonly timelineStartLsn: Lsn;
  readonly segmentSizeBytes: number;
  readonly maxAppendBytes: number;
  readonly maxReadBytes: number;
  readonly maxInflightAppends: number;
  readonly peerInfoIntervalUs: number;
  readonly net: NetworkParams;
  readonly disk: DiskParams;
  readonly chaos: ChaosParams;
  readonly workload: WorkloadParams;
  /** Check every vote/append response against the simulated disk's durable state as it is sent. */
  readonly audit: boolean;
  /**
   * The safekeeper driver sends replies the moment the core emits them instead of queueing them behind
   * earlier storage effects: then only the core's own holding of replies keeps acknowledgements honest.
   */
  readonly eagerSends: boolean;
  /** After settling, the surviving proposer must have committed something. */
  readonly checkLiveness: boolean;
  readonly recovery: RecoveryParams;
  /**
   * After settling, the proposer stops and the run goes on this long with no proposer at all: every live
   * safekeeper must then catch up (flushLsn >= the highest commitLsn) by peer recovery alone. 0: no tail.
   */
  readonly noProposerTailUs: number;
  /**
   * Safekeepers crashed during settling (once the leader is stable and they are in its term) and kept down
   * until the tail starts, missing everything committed meanwhile (and losing their unflushed tail).
   */
  readonly longDowntimeVictims: number;
  readonly acceptorFaults?: AcceptorTestingFaults;
  readonly proposerFaults?: ProposerTestingFaults;
}

export type SimOverrides = Partial<Omit<SimParams, 'net' | 'disk' | 'chaos' | 'workload' | 'recovery'>> & {
  readonly recovery?: Partial<RecoveryParams>;
  readonly net?: Partial<NetworkParams>;
  readonly disk?: Partial<DiskParams>;
  readonly chaos?: Partial<ChaosParams>;
  readonly workload?: Partial<WorkloadParams>;
};

/**
 * The parameters of `seed`: each seed draws its own cluster size and fault intensities, so a batch of
 * seeds covers calm runs, stormy runs and everything between.
 */
export function paramsForSeed(seed: number, overrides: SimOverrides = {}): SimParams {
  const rng = new Prng(seed ^ 0x5eed);
  const stormy = rng.float();
  let base: SimParams = {
    seed,
    safekeepers: rng.chance(0.3) ? 5 : 3,
    proposers: rng.chance(0.5) ? 2 : 1,
    durationUs: 300_000,
    settleUs: 200_000,
    maxEvents: 200_000,
    timelineStartLsn: lsn(0x0100_0028),
    segmentSizeBytes: 16 << 20,
    maxAppendBytes: rng.pick([256, 4096, 128 * 1024]),
    maxReadBytes: rng.pick([1024, 128 * 1024]),
    maxInflightAppends: rng.range(2, 8),
    peerInfoIntervalUs: 20_000,
    net: {
      latencyMinUs: 50,
      latencyMaxUs: rng.pick([300, 1000, 3000]),
      breakPerMessage: rng.pick([0, 0.001, 0.005, 0.02]) * stormy,
      staleDelivery: rng.pick([0.3, 0.8]),
      staleExtraDelayMaxUs: rng.pick([0, 2000, 20_000]),
      detectDelayMaxUs: rng.pick([500, 5000]),
      reconnectDelayMaxUs: rng.pick([1000, 10_000]),
    },
    disk: {
      fsyncMinUs: 100,
      fsyncMaxUs: rng.pick([500, 2000, 8000]),
      controlPersistMinUs: 200,
      controlPersistMaxUs: rng.pick([1000, 5000]),
      readUs: 50,
      tearProbability: 0.5,
    },
    chaos: {
      meanIntervalUs: stormy < 0.1 ? 0 : Math.round(60_000 / (0.2 + stormy)),
      safekeeperCrashWeight: 4,
      proposerCrashWeight: 2,
      partitionWeight: 2,
      connectionBreakWeight: 2,
      fenceWeight: rng.pick([0, 0.5]),
      safekeeperDownMaxUs: rng.pick([5_000, 40_000]),
      proposerDownMaxUs: 20_000,
      partitionMaxUs: rng.pick([10_000, 60_000]),
    },
    workload: {
      appendIntervalMinUs: 200,
      appendIntervalMaxUs: rng.pick([1000, 4000]),
      recordMaxBytes: rng.pick([16, 200, 1000]),
      maxUncommittedBytes: 16 * 1024,
    },
    audit: true,
    eagerSends: rng.chance(0.5),
    checkLiveness: true,
    recovery: { enabled: true, tickUs: 5000, readBytes: 128 * 1024, inflightReads: 4, readTimeoutUs: 50_000, peerInfoTtlUs: 60_000 },
    noProposerTailUs: 0,
    longDowntimeVictims: 0,
  };
  // One run in five ships WAL in tiny pieces, one append in flight, under frequent faults: many more
  // elections land while safekeepers are half recovered (the Raft "figure 8" situations).
  if (rng.chance(0.2)) {
    base = {
      ...base,
      maxAppendBytes: 16,
      maxReadBytes: 16,
      maxInflightAppends: 1,
      settleUs: 300_000,
      chaos: { ...base.chaos, meanIntervalUs: 6000, safekeeperDownMaxUs: 20_000 },
      workload: { ...base.workload, recordMaxBytes: 40, maxUncommittedBytes: 2048 },
    };
  }
  // Drawn last, so the draws above (and what each seed meant before peer recovery) stay the same. One
  // seed in four runs without peer recovery (it is optional, as in Neon): recovery evens out the logs
  // between elections and makes some proposer bugs much rarer (Raft figure 8: ~30x), so both are covered.
  base = {
    ...base,
    recovery: { ...base.recovery, enabled: rng.chance(0.75), readBytes: rng.pick([4096, 32 * 1024, 128 * 1024]), inflightReads: rng.pick([2, 8]) },
  };
  // Half the seeds with recovery end with a safekeeper down for long and no proposer: it must catch up.
  if (rng.chance(0.5) && base.recovery.enabled) {
    base = { ...base, noProposerTailUs: 200_000, longDowntimeVictims: base.safekeepers === 5 ? rng.range(1, 2) : 1 };
  }
  const recovery = { ...base.recovery, ...overrides.recovery };
  // Turning recovery off turns off the seed's no-proposer tail too, unless the overrides ask for one.
  if (!recovery.enabled && overrides.noProposerTailUs === undefined) base = { ...base, noProposerTailUs: 0, longDowntimeVictims: 0 };
  return {
    ...base,
    ...overrides,
    recovery,
    net: { ...base.net, ...overrides.net },
    disk: { ...base.disk, ...overrides.disk },
    chaos: { ...base.chaos, ...overrides.chaos },
    workload: { ...base.workload, ...overrides.workload },
  };
}
