// Peer recovery, recovering side (docs/PROTOCOL.md, "Peer recovery"; Neon's recovery.rs): a safekeeper
// that lags behind a peer pulls the missing WAL from it while no proposer streams here, acting as the
// peer's term's leader towards its own acceptor. A pure step function per timeline, next to the acceptor:
// no I/O, clock or timers (the driver passes a monotonic `now`). It must never vote, never raise a term
// beyond the donor's, and never apply a chunk served after the donor's term changed.

import type { Lsn } from '../lsn.js';
import type { Term, TermHistory } from '../storage/timeline_state.js';
import { recoveryStartPoint, type AcceptorInput, type PeerInfo, type RecoveryLocalView } from './acceptor.js';
import { MAX_APPEND_BYTES, type PeerReadReply, type PeerReadRequest } from './protocol_messages.js';
import { termHistoriesEqual } from './term_history.js';

export interface RecoveryConfig {
  /** This safekeeper's node id (its own broker info is ignored). */
  readonly nodeId: number;
  /** Bytes per peerRead (<= 128 KiB; default 128 KiB). */
  readonly maxReadBytes?: number;
  /** peerReads in flight at once (default 4). */
  readonly maxInflightReads?: number;
  /** A peerRead unanswered this long (in the driver's `now` units) ends the session. */
  readonly readTimeout: number;
  /** Peer infos older than this (in `now` units) are not used to start a session. */
  readonly peerInfoTtl: number;
}

export type RecoveryInput =
  /** A peer's broker info (the same PeerInfo the acceptor gets). */
  | { readonly kind: 'peerInfo'; readonly now: number; readonly local: RecoveryLocalView; readonly info: PeerInfo }
  /** Periodic: timeouts, and (re)starting a session. */
  | { readonly kind: 'tick'; readonly now: number; readonly local: RecoveryLocalView }
  /** The answer to the peerRead effect with this requestId (late or unknown ids are ignored). */
  | { readonly kind: 'peerReadResult'; readonly now: number; readonly local: RecoveryLocalView; readonly requestId: number; readonly reply: PeerReadReply };

export type RecoveryEffect =
  /** Send `request` to safekeeper `peerNodeId` (its acceptor input peerReadRequest); report peerReadResult. */
  | { readonly kind: 'peerRead'; readonly requestId: number; readonly peerNodeId: number; readonly request: PeerReadRequest }
  /** Feed this input to the local acceptor now, before any other input (its effects join the FIFO). */
  | { readonly kind: 'acceptorInput'; readonly input: AcceptorInput }
  /** Observability: a session started or ended. */
  | { readonly kind: 'recoveryEvent'; readonly event: 'started' | 'caughtUp' | 'aborted'; readonly donorNodeId: number; readonly term: Term; readonly detail: string };

interface KnownPeer {
  readonly info: PeerInfo;
  readonly receivedAt: number;
}

interface PendingRead {
  readonly beginLsn: Lsn;
  readonly endLsn: Lsn;
  readonly sentAt: number;
}

interface ReceivedChunk {
  readonly wal: Uint8Array;
  readonly commitLsn: Lsn;
}

export interface RecoverySession {
  readonly donorNodeId: number;
  readonly term: Term;
  readonly startedAt: number;
  /** 'handshake': waiting for the donor's status; 'streaming': recoveryStart was fed to the acceptor. */
  phase: 'handshake' | 'streaming';
  history: TermHistory | null;
  /** Highest flushLsn the donor reported: the session reads up to it. */
  donorFlushLsn: Lsn;
  donorCommitLsn: Lsn;
  nextReadLsn: Lsn;
  /** The acceptor's write position as recovery left it: the next chunk must begin here. */
  nextApplyLsn: Lsn;
  readonly reads: Map<number, PendingRead>;
  /** Arrived out of order, by beginLsn. */
  readonly received: Map<Lsn, ReceivedChunk>;
}

export interface RecoveryState {
  readonly config: RecoveryConfig;
  readonly peers: Map<number, KnownPeer>;
  session: RecoverySession | null;
  nextRequestId: number;
  /** After a session with a donor aborted: wait for a newer broker info from it before trying it again. */
  readonly abortedAt: Map<number, number>;
  sessions: number;
  chunksApplied: number;
  chunksDiscarded: number;
}

export function recoveryInit(config: RecoveryConfig): RecoveryState {
  const max = config.maxReadBytes ?? MAX_APPEND_BYTES;
  if (!(max > 0 && max <= MAX_APPEND_BYTES)) throw new RangeError(`maxReadBytes must be in 1..${MAX_APPEND_BYTES}: ${max}`);
  if (!((config.maxInflightReads ?? 4) >= 1)) throw new RangeError('maxInflightReads must be >= 1');
  return { config, peers: new Map(), session: null, nextRequestId: 1, abortedAt: new Map(), sessions: 0, chunksApplied: 0, chunksDiscarded: 0 };
}

/** Why recovery may not run at all right now, or null. */
export function recoveryBlocked(local: RecoveryLocalView): string | null {
  return local.proposerEngaged ? 'a proposer is engaged here' : null;
}

/**
 * The start rule (Neon's recovery_needed): among peers strictly ahead of us by (lastLogTerm, flushLsn),
 * only those whose term equals their lastLogTerm (that term's leader was elected and they follow it to its
 * end) and is at least our term (we can follow it without refusing anything). The most advanced wins;
 * ties go to the lowest node id. Null when nobody qualifies.
 */
export function chooseRecoveryDonor(local: RecoveryLocalView, peers: readonly PeerInfo[]): PeerInfo | null {
  let best: PeerInfo | null = null;
  for (const p of peers) {
    if (p.nodeId === local.nodeId) continue;
    const ahead = p.lastLogTerm > local.lastLogTerm || (p.lastLogTerm === local.lastLogTerm && p.flushLsn > local.flushLsn);
    if (!ahead || p.term !== p.lastLogTerm || p.term < local.term) continue;
    if (
      best === null ||
      p.lastLogTerm > best.lastLogTerm ||
      (p.lastLogTerm === best.lastLogTerm && (p.flushLsn > best.flushLsn || (p.flushLsn === best.flushLsn && p.nodeId < best.nodeId)))
    ) {
      best = p;
    }
  }
  return best;
}

/** Applies one input; returns the effects for the driver, in order. Mutates `state`. */
export function recoveryStep(state: RecoveryState, input: RecoveryInput): RecoveryEffect[] {
  const fx: RecoveryEffect[] = [];
  // The view is the acceptor as the previous steps' inputs left it: check it before acting on the input.
  // A session that ends in this step is followed by a new one only on a later input, with a fresh view.
  const idle = state.session === null;
  checkLocal(state, input.local, input.now, fx);
  switch (input.kind) {
    case 'peerInfo':
      if (input.info.nodeId !== state.config.nodeId) state.peers.set(input.info.nodeId, { info: input.info, receivedAt: input.now });
      break;
    case 'tick':
      checkTimeouts(state, input.now, fx);
      break;
    case 'peerReadResult':
      onResult(state, input.requestId, input.reply, input.now, input.local, fx);
      break;
  }
  if (idle) maybeStart(state, input.now, input.local, fx);
  return fx;
}

/** Ends the session if the local acceptor moved on without us (a proposer, a new term, a refused input). */
function checkLocal(state: RecoveryState, local: RecoveryLocalView, now: number, fx: RecoveryEffect[]): void {
  const s = state.session;
  if (s === null) return;
  const blocked = recoveryBlocked(local);
  if (blocked !== null) return abort(state, blocked, fx, now);
  if (local.term > s.term) return abort(state, `our term moved to ${local.term}`, fx, now);
  if (s.phase === 'streaming') {
    if (local.recoveryTerm !== s.term) return abort(state, 'the acceptor left recovery', fx, now);
    if (local.writeLsn !== s.nextApplyLsn) return abort(state, 'the acceptor refused a chunk', fx, now);
  }
}

function maybeStart(state: RecoveryState, now: number, local: RecoveryLocalView, fx: RecoveryEffect[]): void {
  if (recoveryBlocked(local) !== null) return;
  const fresh: PeerInfo[] = [];
  for (const [nodeId, known] of state.peers) {
    if (now - known.receivedAt > state.config.peerInfoTtl) continue;
    const aborted = state.abortedAt.get(nodeId);
    if (aborted !== undefined && known.receivedAt <= aborted) continue;
    fresh.push(known.info);
  }
  const donor = chooseRecoveryDonor(local, fresh);
  if (donor === null) return;
  state.sessions++;
  state.session = {
    donorNodeId: donor.nodeId,
    term: donor.term,
    startedAt: now,
    phase: 'handshake',
    history: null,
    donorFlushLsn: donor.flushLsn,
    donorCommitLsn: donor.commitLsn,
    nextReadLsn: local.writeLsn,
    nextApplyLsn: local.writeLsn,
    reads: new Map(),
    received: new Map(),
  };
  fx.push({ kind: 'recoveryEvent', event: 'started', donorNodeId: donor.nodeId, term: donor.term, detail: `donor at (${donor.lastLogTerm}, ${donor.flushLsn}), we at (${local.lastLogTerm}, ${local.flushLsn})` });
  // The donor's history decides where we continue: ask for the status first (an empty read).
  sendRead(state, state.session, local.flushLsn, local.flushLsn, now, fx);
}

function sendRead(state: RecoveryState, s: RecoverySession, beginLsn: Lsn, endLsn: Lsn, now: number, fx: RecoveryEffect[]): void {
  const requestId = state.nextRequestId++;
  s.reads.set(requestId, { beginLsn, endLsn, sentAt: now });
  fx.push({ kind: 'peerRead', requestId, peerNodeId: s.donorNodeId, request: { term: s.term, beginLsn, endLsn } });
}

function checkTimeouts(state: RecoveryState, now: number, fx: RecoveryEffect[]): void {
  const s = state.session;
  if (s === null) return;
  for (const r of s.reads.values()) {
    if (now - r.sentAt > state.config.readTimeout) return abort(state, 'peer read timed out', fx, now);
  }
}

function onResult(state: RecoveryState, requestId: number, reply: PeerReadReply, now: number, local: RecoveryLocalView, fx: RecoveryEffect[]): void {
  const s = state.session;
  if (s === null) return;
  const read = s.reads.get(requestId);
  if (read === undefined) return;
  s.reads.delete(requestId);
  if (reply.kind === 'PeerRefused') {
    state.chunksDiscarded++;
    return abort(state, `donor refused: ${reply.code} ${reply.message} (its term ${reply.term})`, fx, now);
  }
  // Served in another term: not the WAL of the leader we act for. Discard, and end the session.
  const last = reply.termHistory[reply.termHistory.length - 1];
  if (reply.term !== s.term || last === undefined || last.term !== s.term || (s.history !== null && !termHistoriesEqual(s.history, reply.termHistory))) {
    state.chunksDiscarded++;
    return abort(state, `donor's term changed to ${reply.term}`, fx, now);
  }
  if (reply.beginLsn !== read.beginLsn || reply.wal.length !== read.endLsn - read.beginLsn) {
    state.chunksDiscarded++;
    return abort(state, 'donor answered another range', fx, now);
  }
  if (reply.flushLsn > s.donorFlushLsn) s.donorFlushLsn = reply.flushLsn;
  if (reply.commitLsn > s.donorCommitLsn) s.donorCommitLsn = reply.commitLsn;
  if (s.phase === 'handshake') {
    const start = recoveryStartPoint(local.termHistory, local.flushLsn, local.writeLsn, reply.termHistory);
    if (!start.ok) return abort(state, `histories conflict at term ${start.term}`, fx, now);
    if (start.startLsn < local.localStartLsn) return abort(state, 'divergence below our WAL start', fx, now);
    s.history = reply.termHistory;
    s.phase = 'streaming';
    s.nextReadLsn = start.startLsn;
    s.nextApplyLsn = start.startLsn;
    fx.push({ kind: 'acceptorInput', input: { kind: 'recoveryStart', donorNodeId: s.donorNodeId, term: s.term, termHistory: reply.termHistory, donorCommitLsn: s.donorCommitLsn } });
  } else if (reply.wal.length > 0) {
    s.received.set(reply.beginLsn, { wal: reply.wal, commitLsn: reply.commitLsn });
    // Apply in order: reads may be answered out of order.
    for (let chunk = s.received.get(s.nextApplyLsn); chunk !== undefined; chunk = s.received.get(s.nextApplyLsn)) {
      s.received.delete(s.nextApplyLsn);
      fx.push({ kind: 'acceptorInput', input: { kind: 'recoveryAppend', term: s.term, beginLsn: s.nextApplyLsn, wal: chunk.wal, donorCommitLsn: chunk.commitLsn } });
      state.chunksApplied++;
      s.nextApplyLsn = (s.nextApplyLsn + chunk.wal.length) as Lsn;
    }
  }
  pumpReads(state, s, now, fx);
}

function pumpReads(state: RecoveryState, s: RecoverySession, now: number, fx: RecoveryEffect[]): void {
  const maxRead = state.config.maxReadBytes ?? MAX_APPEND_BYTES;
  const inflight = state.config.maxInflightReads ?? 4;
  while (s.reads.size < inflight && s.nextReadLsn < s.donorFlushLsn) {
    const end = Math.min(s.nextReadLsn + maxRead, s.donorFlushLsn) as Lsn;
    sendRead(state, s, s.nextReadLsn, end, now, fx);
    s.nextReadLsn = end;
  }
  if (s.reads.size === 0 && s.nextApplyLsn >= s.donorFlushLsn) {
    fx.push({ kind: 'acceptorInput', input: { kind: 'recoveryEnd', term: s.term } });
    fx.push({ kind: 'recoveryEvent', event: 'caughtUp', donorNodeId: s.donorNodeId, term: s.term, detail: `at ${s.nextApplyLsn}` });
    state.session = null;
  }
}

function abort(state: RecoveryState, reason: string, fx: RecoveryEffect[], now: number): void {
  const s = state.session;
  if (s === null) return;
  state.session = null;
  state.abortedAt.set(s.donorNodeId, now);
  if (s.phase === 'streaming') fx.push({ kind: 'acceptorInput', input: { kind: 'recoveryEnd', term: s.term } });
  fx.push({ kind: 'recoveryEvent', event: 'aborted', donorNodeId: s.donorNodeId, term: s.term, detail: reason });
}
