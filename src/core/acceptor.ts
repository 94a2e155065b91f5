// The safekeeper side of the consensus protocol for one timeline, as a pure step function
// (docs/PROTOCOL.md section 3 and "Driver contract"). No I/O, clock, timers, randomness or promises:
// it must never emit a reply that claims durability the driver has not reported back.

import { invariant } from '../errors.js';
import { formatLsn, type Lsn } from '../lsn.js';
import type { Term, TermHistory, TimelinePersistentState } from '../storage/timeline_state.js';
import { ProtocolErrorCodes, type ProtocolErrorCode } from './protocol_errors.js';
import {
  MAX_APPEND_BYTES,
  PROTOCOL_VERSION,
  protocolError,
  type AcceptorMessage,
  type AppendRequest,
  type ErrorMessage,
  type PeerReadReply,
  type PeerReadRequest,
  type ProposerElected,
  type ProposerGreeting,
  type ProposerMessage,
  type ReadRequest,
  type VoteRequest,
} from './protocol_messages.js';
import { clipTermHistory, findDivergencePoint, lastLogTerm, termHistoriesEqual, termHistoryProblem, type DivergenceResult } from './term_history.js';

/** Chosen by the driver, unique per connection for the life of the process. */
export type ConnectionId = number;

/**
 * Deliberately broken behaviours, only for proving that the simulator's checkers catch real bugs.
 * Never set outside tests.
 */
export interface AcceptorTestingFaults {
  /** Acknowledge appends (with flushLsn = writeLsn) before the WAL is flushed. */
  readonly ackBeforeFlush?: boolean;
  /** Send a granted vote before the control file holding it is persisted. */
  readonly voteBeforePersist?: boolean;
  /** Adopt a peer's commitLsn without checking that our last log terms are equal. */
  readonly peerCommitIgnoringTerm?: boolean;
  /** Let peer recovery run (and go on) while a proposer voted or is elected here. */
  readonly recoveryIgnoringProposer?: boolean;
}

export interface AcceptorConfig {
  readonly nodeId: number;
  /** Re-persist the control file when commitLsn moved this many bytes since it was last persisted. */
  readonly commitPersistIntervalBytes?: number;
  readonly unsafeTestingFaults?: AcceptorTestingFaults;
}

export type AcceptorInput =
  | { readonly kind: 'connectionOpened'; readonly connId: ConnectionId }
  | { readonly kind: 'connectionClosed'; readonly connId: ConnectionId }
  | { readonly kind: 'message'; readonly connId: ConnectionId; readonly message: ProposerMessage }
  /** The persistControl effect with this seq (and every earlier one) is durable. */
  | { readonly kind: 'controlPersisted'; readonly seq: number }
  /** The flushWal effect of `epoch` completed; `flushLsn` is the store's durable end at that moment. */
  | {
      readonly kind: 'walFlushed';
      readonly epoch: number;
      /** End of the last complete record that is durable (what is reported and committed). */
      readonly flushLsn: Lsn;
      /**
       * End of the durable bytes, possibly inside a record (defaults to flushLsn). Held replies wait for
       * this, not for flushLsn: a proposer's append may end mid-record, and its bytes are durable once
       * flushed even though no complete record ends there yet.
       */
      readonly durableLsn?: Lsn;
    }
  /** The readWal effect for this connection completed. */
  | { readonly kind: 'walRead'; readonly connId: ConnectionId; readonly term: Term; readonly beginLsn: Lsn; readonly wal: Uint8Array }
  /** The control plane raises minTerm (fencing). */
  | { readonly kind: 'fence'; readonly minTerm: Term }
  /** Another safekeeper's published position (through the broker). */
  | { readonly kind: 'peerInfo'; readonly info: PeerInfo }
  // Peer recovery, serving side: another safekeeper (`requester`, its node id) reads our durable WAL.
  | { readonly kind: 'peerReadRequest'; readonly requester: number; readonly requestId: number; readonly request: PeerReadRequest }
  /** The readWalForPeer effect with this (requester, requestId) completed. */
  | {
      readonly kind: 'peerWalRead';
      readonly requester: number;
      readonly requestId: number;
      readonly term: Term;
      readonly beginLsn: Lsn;
      readonly wal: Uint8Array;
    }
  // Peer recovery, recovering side: emitted by recoveryStep (peer_recovery.ts), never by a network peer.
  /**
   * Act as `term`'s leader towards ourselves: raise our term to `term` if lower (no vote), cut WAL at the
   * divergence point with `termHistory` (the donor's, ending with `term`) and adopt that history.
   */
  | {
      readonly kind: 'recoveryStart';
      readonly donorNodeId: number;
      readonly term: Term;
      readonly termHistory: TermHistory;
      readonly donorCommitLsn: Lsn;
    }
  /** WAL of the recovery's term read from the donor; must continue exactly at the write position. */
  | { readonly kind: 'recoveryAppend'; readonly term: Term; readonly beginLsn: Lsn; readonly wal: Uint8Array; readonly donorCommitLsn: Lsn }
  | { readonly kind: 'recoveryEnd'; readonly term: Term };

export type AcceptorEffect =
  /** Durably replace the control file; report completion with controlPersisted(seq). */
  | { readonly kind: 'persistControl'; readonly seq: number; readonly state: TimelinePersistentState }
  /** Hand WAL to the store; it continues exactly at the store's write position. */
  | { readonly kind: 'writeWal'; readonly lsn: Lsn; readonly wal: Uint8Array }
  /** Durably cut WAL at `lsn` (never below commitLsn) before the next effect runs. */
  | { readonly kind: 'truncateWal'; readonly lsn: Lsn; readonly commitLsn: Lsn }
  /** Make everything written so far durable; report walFlushed(epoch, flushLsn). */
  | { readonly kind: 'flushWal'; readonly epoch: number }
  /** Read durable WAL [beginLsn, endLsn) and report walRead. */
  | { readonly kind: 'readWal'; readonly connId: ConnectionId; readonly term: Term; readonly beginLsn: Lsn; readonly endLsn: Lsn }
  | { readonly kind: 'send'; readonly connId: ConnectionId; readonly message: AcceptorMessage }
  /** Send `error` (if any) as the last message, then close the connection. */
  | { readonly kind: 'closeConnection'; readonly connId: ConnectionId; readonly error: ErrorMessage | null }
  /** Read durable WAL [beginLsn, endLsn) for a peer, in FIFO order; report peerWalRead. */
  | {
      readonly kind: 'readWalForPeer';
      readonly requester: number;
      readonly requestId: number;
      readonly term: Term;
      readonly beginLsn: Lsn;
      readonly endLsn: Lsn;
    }
  /** Send the reply of a peerReadRequest back to the requesting safekeeper. */
  | { readonly kind: 'peerReadReply'; readonly requester: number; readonly requestId: number; readonly reply: PeerReadReply };

export interface PeerInfo {
  readonly nodeId: number;
  readonly term: Term;
  readonly lastLogTerm: Term;
  readonly flushLsn: Lsn;
  readonly commitLsn: Lsn;
}

// Invariant messages are built only when the check fails (`if (bad) invariant(false, ...)`): these
// checks sit on the per-message path.

/** A reply held until the durability it reports is real. Built when released, from the state then. */
interface HeldReply {
  readonly build: 'greeting' | 'vote' | 'appendAck' | 'fixed';
  readonly granted: boolean;
  /** For votes: our term right after deciding (a later, still unpersisted vote must not leak into it). */
  readonly term: Term;
  readonly message: AcceptorMessage | null;
  readonly needPersistSeq: number;
  needDurableLsn: Lsn;
}

interface ConnectionState {
  proposerId: number | null;
  electedTerm: Term | null;
  /** Term of the last VoteRequest answered here: its response promised our WAL would not change. */
  voteTerm: Term | null;
  readonly held: HeldReply[];
}

export interface AcceptorState {
  readonly config: AcceptorConfig;
  /** The decided control state; durable once persistSeqDone reaches persistSeqIssued. */
  persistent: TimelinePersistentState;
  persistSeqIssued: number;
  persistSeqDone: number;
  /** End of WAL handed to the store. */
  writeLsn: Lsn;
  /** Durable end of WAL as reported by the driver (after truncations: capped to the cut). */
  flushLsn: Lsn;
  /** End of the durable bytes (>= flushLsn; may be inside a record). */
  durableLsn: Lsn;
  /** Bumped by every truncation; a flush report from an older epoch is capped by `flushCap`. */
  walEpoch: number;
  flushInFlight: boolean;
  /** Lowest truncation point issued while the current flush was in flight. */
  flushCap: Lsn | null;
  /** Current commit point known here (persisted lazily). */
  commitLsn: Lsn;
  peerHorizonLsn: Lsn;
  /** Highest commitLsn the leader of the current term told us (may be above our flushLsn). */
  proposerCommitLsn: Lsn;
  /** The proposer whose ProposerElected we accepted in persistent.term, if any. */
  electedProposerId: number | null;
  /** Peer recovery in progress (acting as `term`'s leader towards ourselves), or null. */
  recovery: RecoveryMode | null;
  readonly connections: Map<ConnectionId, ConnectionState>;
}

export interface RecoveryMode {
  readonly term: Term;
  readonly donorNodeId: number;
  /** The donor's commitLsn: valid on our WAL up to flushLsn, which is the term's leader's WAL. */
  donorCommitLsn: Lsn;
}

/** What the peer recovery step function needs to know about the local acceptor (acceptorRecoveryView). */
export interface RecoveryLocalView {
  readonly nodeId: number;
  readonly term: Term;
  readonly lastLogTerm: Term;
  readonly flushLsn: Lsn;
  readonly writeLsn: Lsn;
  readonly commitLsn: Lsn;
  readonly localStartLsn: Lsn;
  /** Full (unclipped) history. */
  readonly termHistory: TermHistory;
  /** A live connection voted or was elected in our current term: a proposer owns our WAL. */
  readonly proposerEngaged: boolean;
  /** The term of the recovery the acceptor accepted (recoveryStart), or null. */
  readonly recoveryTerm: Term | null;
}

export interface NewTimelineOptions {
  readonly tenantId: string;
  readonly timelineId: string;
  readonly timelineStartLsn: Lsn;
  readonly segmentSizeBytes: number;
  /** 0 and 0n mean "adopt from the first greeting". */
  readonly pgVersion?: number;
  readonly systemId?: bigint;
}

/** The control state of a freshly created, empty timeline (Neon's timeline create). */
export function newTimelineState(opts: NewTimelineOptions): TimelinePersistentState {
  return {
    tenantId: opts.tenantId,
    timelineId: opts.timelineId,
    term: 0 as Term,
    votedFor: 0,
    minTerm: 0 as Term,
    termHistory: [],
    flushLsn: opts.timelineStartLsn,
    commitLsn: opts.timelineStartLsn,
    backupLsn: opts.timelineStartLsn,
    peerHorizonLsn: opts.timelineStartLsn,
    timelineStartLsn: opts.timelineStartLsn,
    localStartLsn: opts.timelineStartLsn,
    pgVersion: opts.pgVersion ?? 0,
    systemId: opts.systemId ?? 0n,
    segmentSizeBytes: opts.segmentSizeBytes,
  };
}

/**
 * The core after a (re)start: the control file as loaded and the durable end of WAL the store recovered.
 * The store must never have recovered less than the persisted commitLsn.
 */
export function acceptorRestore(config: AcceptorConfig, persistent: TimelinePersistentState, walFlushLsn: Lsn): AcceptorState {
  invariant(
    walFlushLsn >= persistent.commitLsn,
    `recovered WAL ends at ${formatLsn(walFlushLsn)}, below the persisted commitLsn ${formatLsn(persistent.commitLsn)}`,
  );
  return {
    config,
    persistent,
    persistSeqIssued: 0,
    persistSeqDone: 0,
    writeLsn: walFlushLsn,
    flushLsn: walFlushLsn,
    durableLsn: walFlushLsn,
    walEpoch: 0,
    flushInFlight: false,
    flushCap: null,
    commitLsn: persistent.commitLsn,
    peerHorizonLsn: persistent.peerHorizonLsn,
    proposerCommitLsn: persistent.commitLsn,
    electedProposerId: null,
    recovery: null,
    connections: new Map(),
  };
}

/** What this safekeeper publishes to its peers. */
export function acceptorPeerInfo(state: AcceptorState): PeerInfo {
  return {
    nodeId: state.config.nodeId,
    term: state.persistent.term,
    lastLogTerm: lastLogTerm(state.persistent.termHistory, state.flushLsn),
    flushLsn: state.flushLsn,
    commitLsn: state.commitLsn,
  };
}

/** The local state peer recovery decides on (docs/PROTOCOL.md, "Peer recovery"). */
export function acceptorRecoveryView(state: AcceptorState): RecoveryLocalView {
  const p = state.persistent;
  return {
    nodeId: state.config.nodeId,
    term: p.term,
    lastLogTerm: lastLogTerm(p.termHistory, state.flushLsn),
    flushLsn: state.flushLsn,
    writeLsn: state.writeLsn,
    commitLsn: state.commitLsn,
    localStartLsn: p.localStartLsn,
    termHistory: p.termHistory,
    proposerEngaged: proposerEngaged(state),
    recoveryTerm: state.recovery?.term ?? null,
  };
}

/**
 * Where recovery from a donor with history `donorHistory` (ending with the recovery's term) continues our
 * WAL. Our own history already equal to the donor's: everything we wrote is that term's leader's WAL, go
 * on from the write position. Otherwise the divergence point (we keep only WAL common with the donor).
 * Shared by the acceptor (which cuts there) and the recovery step (which reads from there).
 */
export function recoveryStartPoint(localHistory: TermHistory, flushLsn: Lsn, writeLsn: Lsn, donorHistory: TermHistory): DivergenceResult {
  if (termHistoriesEqual(localHistory, donorHistory)) return { ok: true, startLsn: writeLsn };
  return findDivergencePoint(donorHistory, localHistory, flushLsn);
}

/**
 * Applies one input. Mutates `state` in place and returns the effects, which the driver appends to the
 * timeline's FIFO (see the driver contract in docs/PROTOCOL.md). Throws only on a broken invariant of this
 * safekeeper (the driver must then crash the node).
 */
export function acceptorStep(state: AcceptorState, input: AcceptorInput): AcceptorEffect[] {
  const fx: AcceptorEffect[] = [];
  switch (input.kind) {
    case 'connectionOpened':
      if (state.connections.has(input.connId)) invariant(false, `connection ${input.connId} opened twice`);
      state.connections.set(input.connId, { proposerId: null, electedTerm: null, voteTerm: null, held: [] });
      break;
    case 'connectionClosed':
      state.connections.delete(input.connId);
      break;
    case 'message': {
      const conn = state.connections.get(input.connId);
      // A message on a connection we closed (superseded, errored) is a late delivery: ignore it.
      if (!conn) break;
      onMessage(state, input.connId, conn, input.message, fx);
      break;
    }
    case 'controlPersisted':
      if (input.seq > state.persistSeqIssued) invariant(false, `persist ${input.seq} reported but only ${state.persistSeqIssued} issued`);
      if (input.seq > state.persistSeqDone) state.persistSeqDone = input.seq;
      break;
    case 'walFlushed':
      onWalFlushed(state, input.epoch, input.flushLsn, input.durableLsn ?? input.flushLsn, fx);
      break;
    case 'walRead': {
      const conn = state.connections.get(input.connId);
      if (!conn) break;
      if (input.term !== state.persistent.term) {
        closeWith(state, input.connId, ProtocolErrorCodes.STALE_TERM, 'term changed while reading WAL', input.term, state.persistent.term, fx);
        break;
      }
      const message: AcceptorMessage = { kind: 'ReadResponse', term: input.term, beginLsn: input.beginLsn, wal: input.wal };
      conn.held.push({ build: 'fixed', granted: false, term: input.term, message, needPersistSeq: 0, needDurableLsn: 0 as Lsn });
      break;
    }
    case 'fence':
      onFence(state, input.minTerm, fx);
      break;
    case 'peerInfo':
      onPeerInfo(state, input.info, fx);
      break;
    case 'peerReadRequest':
      onPeerReadRequest(state, input.requester, input.requestId, input.request, fx);
      break;
    case 'peerWalRead':
      onPeerWalRead(state, input.requester, input.requestId, input.term, input.beginLsn, input.wal, fx);
      break;
    case 'recoveryStart':
      onRecoveryStart(state, input.donorNodeId, input.term, input.termHistory, input.donorCommitLsn, fx);
      break;
    case 'recoveryAppend':
      onRecoveryAppend(state, input.term, input.beginLsn, input.wal, input.donorCommitLsn, fx);
      break;
    case 'recoveryEnd':
      if (state.recovery !== null && state.recovery.term === input.term) state.recovery = null;
      break;
  }
  releaseHeldReplies(state, fx);
  return fx;
}

function onMessage(state: AcceptorState, connId: ConnectionId, conn: ConnectionState, msg: ProposerMessage, fx: AcceptorEffect[]): void {
  if (msg.kind === 'ProposerGreeting') {
    onGreeting(state, connId, conn, msg, fx);
    return;
  }
  if (conn.proposerId === null) {
    closeWith(state, connId, ProtocolErrorCodes.UNEXPECTED, 'first message must be a greeting', msg.kind, 'ProposerGreeting', fx);
    return;
  }
  switch (msg.kind) {
    case 'VoteRequest':
      onVoteRequest(state, conn, msg, fx);
      return;
    case 'ProposerElected':
      onElected(state, connId, conn, msg, fx);
      return;
    case 'AppendRequest':
      onAppend(state, connId, conn, msg, fx);
      return;
    case 'ReadRequest':
      onRead(state, connId, msg, fx);
      return;
  }
}

function onGreeting(state: AcceptorState, connId: ConnectionId, conn: ConnectionState, msg: ProposerGreeting, fx: AcceptorEffect[]): void {
  const p = state.persistent;
  if (conn.proposerId !== null) {
    closeWith(state, connId, ProtocolErrorCodes.UNEXPECTED, 'second greeting on one connection', msg.kind, 'VoteRequest', fx);
    return;
  }
  if (msg.protocolVersion !== PROTOCOL_VERSION) {
    closeWith(state, connId, ProtocolErrorCodes.VERSION, 'unsupported protocol version', msg.protocolVersion, PROTOCOL_VERSION, fx);
    return;
  }
  if (msg.tenantId !== p.tenantId || msg.timelineId !== p.timelineId) {
    closeWith(state, connId, ProtocolErrorCodes.TIMELINE_MISMATCH, 'wrong timeline', `${msg.tenantId}/${msg.timelineId}`, `${p.tenantId}/${p.timelineId}`, fx);
    return;
  }
  if (msg.segmentSizeBytes !== p.segmentSizeBytes) {
    closeWith(state, connId, ProtocolErrorCodes.SYSTEM_MISMATCH, 'segment size differs', msg.segmentSizeBytes, p.segmentSizeBytes, fx);
    return;
  }
  if (p.pgVersion !== 0 && Math.floor(msg.pgVersion / 10000) !== Math.floor(p.pgVersion / 10000)) {
    closeWith(state, connId, ProtocolErrorCodes.SYSTEM_MISMATCH, 'PostgreSQL major version differs', msg.pgVersion, p.pgVersion, fx);
    return;
  }
  if (p.systemId !== 0n && msg.systemId !== 0n && msg.systemId !== p.systemId) {
    closeWith(state, connId, ProtocolErrorCodes.SYSTEM_MISMATCH, 'system id differs', msg.systemId, p.systemId, fx);
    return;
  }
  // A newer connection from the same proposer means the older ones are dead on its side; their late
  // messages (an old ProposerElected in particular) must not act any more.
  for (const [otherId, other] of state.connections) {
    if (otherId !== connId && other.proposerId === msg.proposerId) {
      closeWith(state, otherId, ProtocolErrorCodes.SUPERSEDED, 'superseded by a newer connection', otherId, connId, fx);
    }
  }
  conn.proposerId = msg.proposerId;
  const adoptSystemId = p.systemId === 0n && msg.systemId !== 0n;
  const adoptPgVersion = p.pgVersion === 0;
  if (adoptSystemId || adoptPgVersion) {
    state.persistent = {
      ...p,
      systemId: adoptSystemId ? msg.systemId : p.systemId,
      pgVersion: adoptPgVersion ? msg.pgVersion : p.pgVersion,
    };
    persist(state, fx);
  }
  conn.held.push({ build: 'greeting', granted: false, term: state.persistent.term, message: null, needPersistSeq: state.persistSeqIssued, needDurableLsn: 0 as Lsn });
}

function onVoteRequest(state: AcceptorState, conn: ConnectionState, msg: VoteRequest, fx: AcceptorEffect[]): void {
  const p = state.persistent;
  const aboveMin = msg.term >= p.minTerm;
  const fresh = msg.term > p.term && aboveMin;
  // votedFor 0 is "no vote" (a term raised by peer recovery): it never matches a proposer.
  const revote = msg.term === p.term && p.votedFor !== 0 && p.votedFor === conn.proposerId && aboveMin;
  if (msg.term >= p.term && !state.config.unsafeTestingFaults?.recoveryIgnoringProposer) {
    // Our answer reports flushLsn and history, and the proposer computes our start from it: peer
    // recovery must not change our WAL from now on (it may not start while this connection lives).
    state.recovery = null;
    conn.voteTerm = msg.term;
  }
  if (fresh) {
    state.persistent = { ...p, term: msg.term, votedFor: conn.proposerId! };
    // A new term has no leader yet; what the previous leader told us about commit stays in commitLsn.
    state.electedProposerId = null;
    state.proposerCommitLsn = state.commitLsn;
    persist(state, fx);
  }
  const granted = fresh || revote;
  // The response reports flushLsn: flush everything written first, so that position is durable and
  // cannot move before ProposerElected (lower-term appends are refused from now on).
  requestFlush(state, fx);
  const faults = state.config.unsafeTestingFaults;
  conn.held.push({
    build: 'vote',
    granted,
    term: state.persistent.term,
    message: null,
    needPersistSeq: granted && faults?.voteBeforePersist ? 0 : state.persistSeqIssued,
    needDurableLsn: state.writeLsn,
  });
}

function onElected(state: AcceptorState, connId: ConnectionId, conn: ConnectionState, msg: ProposerElected, fx: AcceptorEffect[]): void {
  const p = state.persistent;
  if (!checkTerm(state, connId, msg.term, fx)) return;
  if (msg.term > p.term) {
    closeWith(state, connId, ProtocolErrorCodes.TERM_NOT_VOTED, 'elected in a term this safekeeper is not in', msg.term, p.term, fx);
    return;
  }
  if (state.electedProposerId !== null && state.electedProposerId !== conn.proposerId) {
    closeWith(state, connId, ProtocolErrorCodes.TERM_NOT_VOTED, 'another proposer is already elected in this term', conn.proposerId ?? 0, state.electedProposerId, fx);
    return;
  }
  const history = msg.termHistory;
  const problem = termHistoryProblem(history);
  const last = history[history.length - 1];
  if (problem !== null || last === undefined || last.term !== msg.term) {
    closeWith(state, connId, ProtocolErrorCodes.BAD_HISTORY, problem ?? 'history must end with the elected term', last?.term ?? 'empty', msg.term, fx);
    return;
  }
  const divergence = findDivergencePoint(history, p.termHistory, state.flushLsn);
  if (!divergence.ok) {
    closeWith(state, connId, ProtocolErrorCodes.BAD_HISTORY, `term ${divergence.term} starts at different LSNs`, formatLsn(divergence.leaderLsn), formatLsn(divergence.acceptorLsn), fx);
    return;
  }
  if (msg.startLsn > divergence.startLsn || msg.startLsn < p.localStartLsn) {
    closeWith(state, connId, ProtocolErrorCodes.BAD_START, 'start LSN outside [localStartLsn, divergence point]', formatLsn(msg.startLsn), `${formatLsn(p.localStartLsn)}..${formatLsn(divergence.startLsn)}`, fx);
    return;
  }
  // Committed WAL is on a quorum and in every later leader's log, so its divergence point can never be
  // below our commitLsn. If it is, this safekeeper (or the protocol) is broken: crash.
  if (msg.startLsn < state.commitLsn) invariant(false, `ProposerElected would cut WAL at ${formatLsn(msg.startLsn)}, below commitLsn ${formatLsn(state.commitLsn)}`);
  adoptLeaderLog(state, msg.startLsn, history, false, fx);
  if (!state.config.unsafeTestingFaults?.recoveryIgnoringProposer) state.recovery = null;
  conn.electedTerm = msg.term;
  if (state.electedProposerId === null) state.proposerCommitLsn = state.commitLsn;
  state.electedProposerId = conn.proposerId;
}

/**
 * Cuts WAL at `startLsn` and adopts the leader's history (raising the term first when `raiseTerm`).
 * Order matters (docs/PROTOCOL.md rule 3): cut, then persist term and history, then accept WAL.
 */
function adoptLeaderLog(state: AcceptorState, startLsn: Lsn, history: TermHistory, raiseTerm: boolean, fx: AcceptorEffect[]): void {
  if (startLsn < state.writeLsn) {
    fx.push({ kind: 'truncateWal', lsn: startLsn, commitLsn: state.commitLsn });
    state.walEpoch++;
    if (state.flushInFlight) state.flushCap = state.flushCap === null || startLsn < state.flushCap ? startLsn : state.flushCap;
    state.writeLsn = startLsn;
    if (state.flushLsn > startLsn) state.flushLsn = startLsn;
    if (state.durableLsn > startLsn) state.durableLsn = startLsn;
    // A reply held for bytes we just cut (an older term's append ack, a refused vote) would wait forever
    // and stall its connection: it waits for the cut instead, and reports the state after it.
    for (const conn of state.connections.values()) {
      for (const held of conn.held) if (held.needDurableLsn > startLsn) held.needDurableLsn = startLsn;
    }
  }
  const p = state.persistent;
  const last = history[history.length - 1]!;
  if (raiseTerm || !termHistoriesEqual(p.termHistory, history)) {
    state.persistent = raiseTerm ? { ...p, term: last.term, votedFor: 0, termHistory: history } : { ...p, termHistory: history };
    persist(state, fx);
  }
}

/** True when a live connection voted or was elected in our current term (see acceptorRecoveryView). */
function proposerEngaged(state: AcceptorState): boolean {
  if (state.config.unsafeTestingFaults?.recoveryIgnoringProposer) return false;
  const t = state.persistent.term;
  for (const conn of state.connections.values()) {
    if (conn.voteTerm === t || conn.electedTerm === t) return true;
  }
  return false;
}

function onPeerReadRequest(state: AcceptorState, requester: number, requestId: number, req: PeerReadRequest, fx: AcceptorEffect[]): void {
  const p = state.persistent;
  const refuse = (code: ProtocolErrorCode, message: string): void => {
    fx.push({ kind: 'peerReadReply', requester, requestId, reply: { kind: 'PeerRefused', code, term: p.term, message } });
  };
  // Only the WAL of a term we follow to its end is that term's leader's WAL up to flushLsn.
  if (req.term !== p.term) return refuse(ProtocolErrorCodes.STALE_TERM, `term is ${p.term}, not ${req.term}`);
  if (lastLogTerm(p.termHistory, state.flushLsn) !== req.term) return refuse(ProtocolErrorCodes.WAL_NOT_AVAILABLE, `lastLogTerm is not ${req.term}`);
  if (req.beginLsn === req.endLsn) {
    fx.push({ kind: 'peerReadReply', requester, requestId, reply: peerWalReply(state, req.beginLsn, EMPTY_WAL) });
    return;
  }
  if (req.endLsn - req.beginLsn > MAX_APPEND_BYTES) return refuse(ProtocolErrorCodes.TOO_LARGE, 'read larger than 128 KiB');
  if (req.beginLsn < p.localStartLsn || req.endLsn > state.flushLsn || req.beginLsn > req.endLsn) {
    return refuse(ProtocolErrorCodes.WAL_NOT_AVAILABLE, `${formatLsn(req.beginLsn)}..${formatLsn(req.endLsn)} outside ${formatLsn(p.localStartLsn)}..${formatLsn(state.flushLsn)}`);
  }
  // In the FIFO: the read sees exactly the WAL durable now (cuts decided later run after it).
  fx.push({ kind: 'readWalForPeer', requester, requestId, term: req.term, beginLsn: req.beginLsn, endLsn: req.endLsn });
}

function onPeerWalRead(state: AcceptorState, requester: number, requestId: number, term: Term, beginLsn: Lsn, wal: Uint8Array, fx: AcceptorEffect[]): void {
  const p = state.persistent;
  if (term !== p.term) {
    fx.push({ kind: 'peerReadReply', requester, requestId, reply: { kind: 'PeerRefused', code: ProtocolErrorCodes.STALE_TERM, term: p.term, message: 'term changed while reading WAL' } });
    return;
  }
  fx.push({ kind: 'peerReadReply', requester, requestId, reply: peerWalReply(state, beginLsn, wal) });
}

const EMPTY_WAL = new Uint8Array(0);

function peerWalReply(state: AcceptorState, beginLsn: Lsn, wal: Uint8Array): PeerReadReply {
  const p = state.persistent;
  return {
    kind: 'PeerWal',
    term: p.term,
    termHistory: clipTermHistory(p.termHistory, state.flushLsn),
    flushLsn: state.flushLsn,
    commitLsn: state.commitLsn,
    beginLsn,
    wal,
  };
}

/**
 * Peer recovery: act as `term`'s leader towards ourselves (Neon recovery.rs), through the same cut and
 * history adoption as ProposerElected. Refused (silently: the recovery step sees it in the local view)
 * when our term is above `term` or a proposer is engaged here. Never votes: a raised term has votedFor 0.
 */
function onRecoveryStart(state: AcceptorState, donorNodeId: number, term: Term, history: TermHistory, donorCommitLsn: Lsn, fx: AcceptorEffect[]): void {
  const p = state.persistent;
  if (term < p.term || proposerEngaged(state)) return;
  const last = history[history.length - 1];
  if (termHistoryProblem(history) !== null || last === undefined || last.term !== term) return;
  const start = recoveryStartPoint(p.termHistory, state.flushLsn, state.writeLsn, history);
  if (!start.ok || start.startLsn < p.localStartLsn) return;
  // As for ProposerElected: `term`'s leader holds everything committed, so its divergence point with our
  // WAL is never below our commitLsn.
  if (start.startLsn < state.commitLsn) invariant(false, `peer recovery would cut WAL at ${formatLsn(start.startLsn)}, below commitLsn ${formatLsn(state.commitLsn)}`);
  const raise = term > p.term;
  if (raise) {
    state.electedProposerId = null;
    state.proposerCommitLsn = state.commitLsn;
  }
  adoptLeaderLog(state, start.startLsn, history, raise, fx);
  state.recovery = { term, donorNodeId, donorCommitLsn };
  advanceCommit(state, fx);
}

function onRecoveryAppend(state: AcceptorState, term: Term, beginLsn: Lsn, wal: Uint8Array, donorCommitLsn: Lsn, fx: AcceptorEffect[]): void {
  const r = state.recovery;
  if (r === null || r.term !== term || term !== state.persistent.term) return;
  if (wal.length > MAX_APPEND_BYTES || beginLsn !== state.writeLsn) return;
  if (wal.length > 0) {
    fx.push({ kind: 'writeWal', lsn: beginLsn, wal });
    state.writeLsn = (beginLsn + wal.length) as Lsn;
    requestFlush(state, fx);
  }
  if (donorCommitLsn > r.donorCommitLsn) r.donorCommitLsn = donorCommitLsn;
  advanceCommit(state, fx);
}

function onAppend(state: AcceptorState, connId: ConnectionId, conn: ConnectionState, msg: AppendRequest, fx: AcceptorEffect[]): void {
  if (!checkTerm(state, connId, msg.term, fx)) return;
  if (msg.term !== state.persistent.term || conn.electedTerm !== msg.term) {
    closeWith(state, connId, ProtocolErrorCodes.NOT_ELECTED, 'AppendRequest before ProposerElected', msg.term, conn.electedTerm ?? 'none', fx);
    return;
  }
  const length = msg.wal.length;
  if (length > MAX_APPEND_BYTES || msg.endLsn - msg.beginLsn !== length) {
    closeWith(state, connId, ProtocolErrorCodes.TOO_LARGE, 'WAL size does not match or exceeds 128 KiB', length, `${msg.endLsn - msg.beginLsn} <= ${MAX_APPEND_BYTES}`, fx);
    return;
  }
  if (msg.beginLsn !== state.writeLsn) {
    closeWith(state, connId, ProtocolErrorCodes.WAL_GAP, 'append must start at the write position', formatLsn(msg.beginLsn), formatLsn(state.writeLsn), fx);
    return;
  }
  if (length > 0) {
    fx.push({ kind: 'writeWal', lsn: msg.beginLsn, wal: msg.wal });
    state.writeLsn = msg.endLsn;
    requestFlush(state, fx);
  }
  if (msg.commitLsn > state.proposerCommitLsn) state.proposerCommitLsn = msg.commitLsn;
  advanceCommit(state, fx);
  const horizon = msg.truncateLsn < state.commitLsn ? msg.truncateLsn : state.commitLsn;
  if (horizon > state.peerHorizonLsn) state.peerHorizonLsn = horizon;
  const tail = conn.held[conn.held.length - 1];
  const needDurableLsn = state.config.unsafeTestingFaults?.ackBeforeFlush ? (0 as Lsn) : state.writeLsn;
  if (tail && tail.build === 'appendAck') {
    tail.needDurableLsn = needDurableLsn; // one response per flush covers all appends before it
  } else {
    conn.held.push({ build: 'appendAck', granted: false, term: state.persistent.term, message: null, needPersistSeq: state.persistSeqIssued, needDurableLsn });
  }
}

function onRead(state: AcceptorState, connId: ConnectionId, msg: ReadRequest, fx: AcceptorEffect[]): void {
  const p = state.persistent;
  if (!checkTerm(state, connId, msg.term, fx)) return;
  if (msg.term !== p.term) {
    closeWith(state, connId, ProtocolErrorCodes.TERM_NOT_VOTED, 'ReadRequest for a term this safekeeper is not in', msg.term, p.term, fx);
    return;
  }
  if (msg.endLsn - msg.beginLsn > MAX_APPEND_BYTES) {
    closeWith(state, connId, ProtocolErrorCodes.TOO_LARGE, 'read larger than 128 KiB', msg.endLsn - msg.beginLsn, MAX_APPEND_BYTES, fx);
    return;
  }
  if (msg.beginLsn < p.localStartLsn || msg.endLsn > state.flushLsn || msg.beginLsn > msg.endLsn) {
    closeWith(state, connId, ProtocolErrorCodes.WAL_NOT_AVAILABLE, 'WAL not held here', `${formatLsn(msg.beginLsn)}..${formatLsn(msg.endLsn)}`, `${formatLsn(p.localStartLsn)}..${formatLsn(state.flushLsn)}`, fx);
    return;
  }
  fx.push({ kind: 'readWal', connId, term: msg.term, beginLsn: msg.beginLsn, endLsn: msg.endLsn });
}

function onWalFlushed(state: AcceptorState, epoch: number, reported: Lsn, reportedDurable: Lsn, fx: AcceptorEffect[]): void {
  if (epoch > state.walEpoch) invariant(false, `flush of epoch ${epoch} reported, current epoch ${state.walEpoch}`);
  let flushed = reported;
  let durable = reportedDurable;
  if (flushed > durable) invariant(false, `flushLsn ${formatLsn(flushed)} beyond the durable bytes ${formatLsn(durable)}`);
  // The flush ran before a truncation the core already decided: only its part below the cut counts.
  if (state.flushCap !== null && flushed > state.flushCap) flushed = state.flushCap;
  if (state.flushCap !== null && durable > state.flushCap) durable = state.flushCap;
  if (durable > state.writeLsn) invariant(false, `flushed ${formatLsn(durable)} beyond written ${formatLsn(state.writeLsn)}`);
  if (flushed > state.flushLsn) state.flushLsn = flushed;
  if (durable > state.durableLsn) state.durableLsn = durable;
  state.flushInFlight = false;
  state.flushCap = null;
  advanceCommit(state, fx);
  requestFlush(state, fx);
}

function onFence(state: AcceptorState, minTerm: Term, fx: AcceptorEffect[]): void {
  if (minTerm <= state.persistent.minTerm) return;
  state.persistent = { ...state.persistent, minTerm };
  persist(state, fx);
  for (const [connId, conn] of state.connections) {
    if (conn.electedTerm !== null && conn.electedTerm < minTerm) {
      closeWith(state, connId, ProtocolErrorCodes.FENCED, 'fenced by the control plane', conn.electedTerm, minTerm, fx);
    }
  }
}

function onPeerInfo(state: AcceptorState, info: PeerInfo, fx: AcceptorEffect[]): void {
  if (info.nodeId === state.config.nodeId) return;
  const mine = lastLogTerm(state.persistent.termHistory, state.flushLsn);
  // Equal last terms: both WALs are prefixes of that term's leader's WAL, so the peer's commit point is
  // valid on ours up to our flushLsn.
  const ignoreTerm = state.config.unsafeTestingFaults?.peerCommitIgnoringTerm === true;
  if (!ignoreTerm && (mine === 0 || info.lastLogTerm !== mine)) return;
  const candidate = info.commitLsn < state.flushLsn ? info.commitLsn : state.flushLsn;
  if (candidate > state.commitLsn) {
    state.commitLsn = candidate;
    maybePersistCommit(state, fx);
  }
}

/** Refuses terms below ours or below minTerm; true when the message may proceed. */
function checkTerm(state: AcceptorState, connId: ConnectionId, msgTerm: Term, fx: AcceptorEffect[]): boolean {
  const p = state.persistent;
  if (msgTerm < p.term) {
    closeWith(state, connId, ProtocolErrorCodes.STALE_TERM, 'term is stale', msgTerm, p.term, fx);
    return false;
  }
  if (msgTerm < p.minTerm) {
    closeWith(state, connId, ProtocolErrorCodes.FENCED, 'term is below minTerm', msgTerm, p.minTerm, fx);
    return false;
  }
  return true;
}

function advanceCommit(state: AcceptorState, fx: AcceptorEffect[]): void {
  // Our WAL up to flushLsn is the leader's (or, in recovery, the recovery term's leader's): its commit
  // point holds on it up to there.
  let known = state.electedProposerId !== null ? state.proposerCommitLsn : (0 as Lsn);
  if (state.recovery !== null && state.recovery.donorCommitLsn > known) known = state.recovery.donorCommitLsn;
  const candidate = known < state.flushLsn ? known : state.flushLsn;
  if (candidate > state.commitLsn) {
    state.commitLsn = candidate;
    maybePersistCommit(state, fx);
  }
}

/** commitLsn bounds the recovery scan and the truncation floor after a restart: keep it roughly current. */
function maybePersistCommit(state: AcceptorState, fx: AcceptorEffect[]): void {
  const p = state.persistent;
  const interval = state.config.commitPersistIntervalBytes ?? p.segmentSizeBytes;
  const history = p.termHistory;
  const termStart = history.length > 0 ? history[history.length - 1]!.lsn : p.timelineStartLsn;
  const crossedTermStart = p.commitLsn < termStart && state.commitLsn >= termStart;
  if (state.commitLsn - p.commitLsn >= interval || crossedTermStart) persist(state, fx);
}

function requestFlush(state: AcceptorState, fx: AcceptorEffect[]): void {
  if (state.flushInFlight || state.writeLsn <= state.durableLsn) return;
  state.flushInFlight = true;
  fx.push({ kind: 'flushWal', epoch: state.walEpoch });
}

function persist(state: AcceptorState, fx: AcceptorEffect[]): void {
  state.persistSeqIssued++;
  // Persist the in-memory positions too; flushLsn here is durable (a hint where recovery starts).
  state.persistent = {
    ...state.persistent,
    flushLsn: state.flushLsn,
    commitLsn: state.commitLsn,
    peerHorizonLsn: state.peerHorizonLsn,
  };
  fx.push({ kind: 'persistControl', seq: state.persistSeqIssued, state: state.persistent });
}

function closeWith(
  state: AcceptorState,
  connId: ConnectionId,
  code: ProtocolErrorCode,
  message: string,
  got: string | number | bigint,
  expected: string | number | bigint,
  fx: AcceptorEffect[],
): void {
  if (!state.connections.has(connId)) return;
  state.connections.delete(connId);
  fx.push({ kind: 'closeConnection', connId, error: protocolError(code, state.persistent.term, message, got, expected) });
}

/** Sends every held reply whose durability is now real, in order per connection. */
function releaseHeldReplies(state: AcceptorState, fx: AcceptorEffect[]): void {
  for (const [connId, conn] of state.connections) {
    while (conn.held.length > 0) {
      const head = conn.held[0]!;
      if (head.needPersistSeq > state.persistSeqDone || head.needDurableLsn > state.durableLsn) break;
      conn.held.shift();
      fx.push({ kind: 'send', connId, message: buildReply(state, head) });
    }
  }
}

function buildReply(state: AcceptorState, held: HeldReply): AcceptorMessage {
  const p = state.persistent;
  switch (held.build) {
    case 'greeting':
      return { kind: 'AcceptorGreeting', nodeId: state.config.nodeId, term: p.term, minTerm: p.minTerm };
    case 'vote':
      return {
        kind: 'VoteResponse',
        term: held.term,
        granted: held.granted,
        flushLsn: state.flushLsn,
        truncateLsn: state.peerHorizonLsn,
        lastLogTerm: lastLogTerm(p.termHistory, state.flushLsn),
        termHistory: clipTermHistory(p.termHistory, state.flushLsn),
      };
    case 'appendAck':
      return {
        kind: 'AppendResponse',
        term: p.term,
        flushLsn: state.config.unsafeTestingFaults?.ackBeforeFlush ? state.writeLsn : state.flushLsn,
        durableLsn: state.config.unsafeTestingFaults?.ackBeforeFlush ? state.writeLsn : state.durableLsn,
        commitLsn: state.commitLsn,
      };
    case 'fixed':
      return held.message!;
  }
}
