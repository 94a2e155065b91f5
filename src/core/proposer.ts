// The proposer (walproposer) side of the consensus protocol for one timeline, as a pure step function
// (docs/PROTOCOL.md section 4): greeting, election, donor recovery, streaming, quorum commit.
// No I/O, clock, timers, randomness or promises; it must never report a commit a quorum has not flushed.

import { invariant } from '../errors.js';
import { formatLsn, type Lsn } from '../lsn.js';
import type { Term, TermHistory } from '../storage/timeline_state.js';
import { quorumCommitLsn, quorumSize } from './commit_lsn.js';
import { chooseDonor } from './donor_choice.js';
import { STEP_DOWN_CODES } from './protocol_errors.js';
import {
  MAX_APPEND_BYTES,
  PROTOCOL_VERSION,
  type AcceptorGreeting,
  type AcceptorMessage,
  type AppendResponse,
  type ProposerMessage,
  type ReadResponse,
  type VoteResponse,
} from './protocol_messages.js';
import { findDivergencePoint, withTermSwitch } from './term_history.js';
import {
  walBufferAppend,
  walBufferCreate,
  walBufferPrepend,
  walBufferRead,
  walBufferTrim,
  type WalBuffer,
} from './proposer_wal_buffer.js';

/** Deliberately broken behaviours, only for proving that the simulator's checkers catch real bugs. */
export interface ProposerTestingFaults {
  /** Count acknowledgements below the term start LSN towards commit (Raft's figure-8 bug). */
  readonly commitWithoutTermStart?: boolean;
  /** Choose the donor by flushLsn alone, ignoring lastLogTerm. */
  readonly donorByFlushLsnOnly?: boolean;
}

export interface ProposerConfig {
  /** Unique per proposer generation. */
  readonly proposerId: number;
  readonly tenantId: string;
  readonly timelineId: string;
  readonly systemId: bigint;
  readonly pgVersion: number;
  readonly segmentSizeBytes: number;
  /** Safekeepers are addressed by index 0..acceptorCount-1. */
  readonly acceptorCount: number;
  /** Largest AppendRequest/ReadRequest; at most MAX_APPEND_BYTES (128 KiB). */
  readonly maxAppendBytes?: number;
  /** Unacknowledged data appends allowed per safekeeper. */
  readonly maxInflightAppends?: number;
  /** Recovery reads in flight from the source. */
  readonly maxInflightReads?: number;
  /** Largest ReadRequest; at most MAX_APPEND_BYTES (128 KiB). */
  readonly maxReadBytes?: number;
  readonly unsafeTestingFaults?: ProposerTestingFaults;
}

export type ProposerInput =
  /** A new connection to safekeeper `acceptor` is established (after any earlier one broke). */
  | { readonly kind: 'connected'; readonly acceptor: number }
  | { readonly kind: 'disconnected'; readonly acceptor: number }
  | { readonly kind: 'message'; readonly acceptor: number; readonly message: AcceptorMessage }
  /** The application hands WAL to be replicated (one or more complete records); the array is kept, not copied. */
  | { readonly kind: 'appendRequested'; readonly wal: Uint8Array };

export type ProposerEffect =
  | { readonly kind: 'send'; readonly acceptor: number; readonly message: ProposerMessage }
  | { readonly kind: 'elected'; readonly term: Term; readonly termStartLsn: Lsn; readonly termHistory: TermHistory }
  /** Where appended WAL went (emitted at election for WAL appended while campaigning). */
  | { readonly kind: 'walAppended'; readonly beginLsn: Lsn; readonly endLsn: Lsn }
  /** Everything below commitLsn is durable on a quorum. Strictly increasing. */
  | { readonly kind: 'committed'; readonly commitLsn: Lsn }
  /** Terminal: the driver closes every connection and the application restarts a new generation. */
  | { readonly kind: 'steppedDown'; readonly reason: string }
  | { readonly kind: 'quorumLost' }
  | { readonly kind: 'quorumRegained' };

interface Vote {
  readonly granted: boolean;
  readonly flushLsn: Lsn;
  readonly truncateLsn: Lsn;
  readonly lastLogTerm: Term;
  readonly termHistory: TermHistory;
}

/** What the proposer knows about one safekeeper. Per-connection fields are reset on (dis)connect. */
export interface AcceptorLink {
  connected: boolean;
  greeting: AcceptorGreeting | null;
  voteRequested: boolean;
  /** The vote response on the current connection. */
  vote: Vote | null;
  /** A grant in this term was ever received (votes are durable, so it counts after a disconnect). */
  votedForUs: boolean;
  /** The last vote response received in this term (any connection): donor candidate data. */
  lastVote: Vote | null;
  electedSent: boolean;
  /** Divergence point sent in ProposerElected on the current connection. */
  startLsn: Lsn;
  nextLsn: Lsn;
  /** End LSNs of data appends sent and not yet covered by an acknowledged flushLsn. */
  inflightEnds: Lsn[];
  sentCommitLsn: Lsn;
  sentTruncateLsn: Lsn;
  /** Highest flushLsn acknowledged in this term (durable there, never cut by us). */
  ackFlushLsn: Lsn | null;
}

interface RecoveryFetch {
  readonly beginLsn: Lsn;
  readonly endLsn: Lsn;
  /** What was read so far, [beginLsn, staged.endLsn); safekeepers below our buffer stream from it. */
  staged: WalBuffer;
  nextRequestLsn: Lsn;
  source: number | null;
  readsInFlight: number;
}

export interface ProposerState {
  readonly config: ProposerConfig;
  readonly quorum: number;
  phase: 'campaigning' | 'leader' | 'stopped';
  /** 0 until chosen from a quorum of greetings. */
  term: Term;
  votes: number;
  donor: number;
  termStartLsn: Lsn;
  termHistory: TermHistory;
  commitLsn: Lsn;
  truncateLsn: Lsn;
  wal: WalBuffer;
  /** WAL the application handed over before the election: placed at termStartLsn once elected. */
  pendingAppends: Uint8Array[];
  readonly links: AcceptorLink[];
  fetch: RecoveryFetch | null;
  quorumLost: boolean;
  stopReason: string | null;
}

export function proposerInit(config: ProposerConfig): ProposerState {
  invariant(config.acceptorCount >= 1, 'need at least one safekeeper');
  invariant((config.maxAppendBytes ?? MAX_APPEND_BYTES) <= MAX_APPEND_BYTES, 'maxAppendBytes above 128 KiB');
  invariant((config.maxReadBytes ?? MAX_APPEND_BYTES) <= MAX_APPEND_BYTES, 'maxReadBytes above 128 KiB');
  const links: AcceptorLink[] = [];
  for (let i = 0; i < config.acceptorCount; i++) {
    links.push({
      connected: false,
      greeting: null,
      voteRequested: false,
      vote: null,
      votedForUs: false,
      lastVote: null,
      electedSent: false,
      startLsn: 0 as Lsn,
      nextLsn: 0 as Lsn,
      inflightEnds: [],
      sentCommitLsn: 0 as Lsn,
      sentTruncateLsn: 0 as Lsn,
      ackFlushLsn: null,
    });
  }
  return {
    config,
    quorum: quorumSize(config.acceptorCount),
    phase: 'campaigning',
    term: 0 as Term,
    votes: 0,
    donor: -1,
    termStartLsn: 0 as Lsn,
    termHistory: [],
    commitLsn: 0 as Lsn,
    truncateLsn: 0 as Lsn,
    wal: walBufferCreate(0 as Lsn),
    pendingAppends: [],
    links,
    fetch: null,
    quorumLost: false,
    stopReason: null,
  };
}

/** WAL of this proposer's log in [from, to), or null when it no longer (or not yet) holds it. */
export function proposerReadWal(state: ProposerState, from: Lsn, to: Lsn): Uint8Array | null {
  if (from < state.wal.startLsn || to > state.wal.endLsn || from > to) return null;
  return walBufferRead(state.wal, from, to);
}

/** Applies one input, mutating `state`; returns the effects for the driver to execute in order. */
export function proposerStep(state: ProposerState, input: ProposerInput): ProposerEffect[] {
  const fx: ProposerEffect[] = [];
  if (state.phase === 'stopped') return fx;
  const n = state.config.acceptorCount;
  if (input.kind !== 'appendRequested' && (input.acceptor < 0 || input.acceptor >= n)) invariant(false, `no safekeeper ${input.acceptor}`);
  switch (input.kind) {
    case 'connected': {
      const link = state.links[input.acceptor]!;
      dropConnection(state, input.acceptor);
      link.connected = true;
      const c = state.config;
      send(fx, input.acceptor, {
        kind: 'ProposerGreeting',
        protocolVersion: PROTOCOL_VERSION,
        proposerId: c.proposerId,
        tenantId: c.tenantId,
        timelineId: c.timelineId,
        systemId: c.systemId,
        pgVersion: c.pgVersion,
        segmentSizeBytes: c.segmentSizeBytes,
      });
      break;
    }
    case 'disconnected':
      dropConnection(state, input.acceptor);
      planFetch(state, fx);
      break;
    case 'message':
      onMessage(state, input.acceptor, input.message, fx);
      break;
    case 'appendRequested':
      if (input.wal.length === 0) break;
      if (state.phase === 'leader') {
        const placed = walBufferAppend(state.wal, input.wal);
        fx.push({ kind: 'walAppended', beginLsn: placed.beginLsn, endLsn: placed.endLsn });
        pumpAll(state, fx);
      } else {
        state.pendingAppends.push(input.wal);
      }
      break;
  }
  if (state.phase === 'leader') trackQuorum(state, fx);
  return fx;
}

function onMessage(state: ProposerState, k: number, msg: AcceptorMessage, fx: ProposerEffect[]): void {
  const link = state.links[k]!;
  if (!link.connected) return;
  switch (msg.kind) {
    case 'AcceptorGreeting':
      onGreeting(state, k, msg, fx);
      return;
    case 'VoteResponse':
      onVoteResponse(state, k, msg, fx);
      return;
    case 'AppendResponse':
      onAppendResponse(state, k, msg, fx);
      return;
    case 'ReadResponse':
      onReadResponse(state, k, msg, fx);
      return;
    case 'Error':
      if (STEP_DOWN_CODES.has(msg.code) || msg.term > state.term) {
        stepDown(state, `safekeeper ${k}: ${msg.code} (${msg.message}; got ${msg.got}, expected ${msg.expected})`, fx);
      }
      // Other errors: the safekeeper closes the connection and the driver reports the disconnect.
      return;
  }
}

function onGreeting(state: ProposerState, k: number, msg: AcceptorGreeting, fx: ProposerEffect[]): void {
  const link = state.links[k]!;
  link.greeting = msg;
  if (state.term === 0) {
    const greeted = state.links.filter((l) => l.connected && l.greeting !== null);
    if (greeted.length < state.quorum) return;
    let maxTerm = 0;
    let maxMinTerm = 0;
    for (const l of greeted) {
      if (l.greeting!.term > maxTerm) maxTerm = l.greeting!.term;
      if (l.greeting!.minTerm > maxMinTerm) maxMinTerm = l.greeting!.minTerm;
    }
    state.term = Math.max(maxTerm + 1, maxMinTerm) as Term;
    for (let i = 0; i < state.links.length; i++) {
      const l = state.links[i]!;
      if (l.connected && l.greeting !== null) requestVote(state, i, fx);
    }
    return;
  }
  requestVote(state, k, fx);
}

function requestVote(state: ProposerState, k: number, fx: ProposerEffect[]): void {
  const link = state.links[k]!;
  if (link.voteRequested) return;
  link.voteRequested = true;
  send(fx, k, { kind: 'VoteRequest', term: state.term });
}

function onVoteResponse(state: ProposerState, k: number, msg: VoteResponse, fx: ProposerEffect[]): void {
  const link = state.links[k]!;
  if (!link.voteRequested || link.vote !== null) return;
  if (msg.term > state.term) {
    stepDown(state, `safekeeper ${k} is in term ${msg.term}, above ours (${state.term})`, fx);
    return;
  }
  const vote: Vote = {
    granted: msg.granted,
    flushLsn: msg.flushLsn,
    truncateLsn: msg.truncateLsn,
    lastLogTerm: msg.lastLogTerm,
    termHistory: msg.termHistory,
  };
  if (!msg.granted) {
    // Refused in our own term after we won it: the safekeeper voted for a losing proposer of the same
    // term. Our history is the only valid one for this term, so it can still follow us.
    if (state.phase === 'leader' && msg.term === state.term) {
      link.vote = vote;
      sendElected(state, k, fx);
      pumpAll(state, fx);
      return;
    }
    stepDown(state, `safekeeper ${k} refused the vote for term ${state.term}`, fx);
    return;
  }
  link.vote = vote;
  link.lastVote = vote;
  if (!link.votedForUs) {
    link.votedForUs = true;
    state.votes++;
  }
  if (state.phase === 'leader') {
    sendElected(state, k, fx);
    pumpAll(state, fx);
    return;
  }
  if (state.votes >= state.quorum) becomeLeader(state, fx);
}

function becomeLeader(state: ProposerState, fx: ProposerEffect[]): void {
  const candidates = state.links.map((l) => (l.votedForUs ? l.lastVote : null));
  const faults = state.config.unsafeTestingFaults;
  const donor = faults?.donorByFlushLsnOnly
    ? chooseDonor(candidates.map((c) => (c ? { lastLogTerm: 0 as Term, flushLsn: c.flushLsn } : null)))
    : chooseDonor(candidates);
  invariant(donor >= 0, 'elected without voters');
  const d = candidates[donor]!;
  state.phase = 'leader';
  state.donor = donor;
  state.termStartLsn = d.flushLsn;
  state.termHistory = withTermSwitch(d.termHistory, state.term, d.flushLsn);
  let truncateLsn = 0 as Lsn;
  for (const c of candidates) if (c && c.truncateLsn > truncateLsn) truncateLsn = c.truncateLsn;
  state.truncateLsn = truncateLsn;
  // Known committed by an earlier leader; reported to the application only once our own term commits.
  state.commitLsn = truncateLsn;
  state.wal = walBufferCreate(state.termStartLsn);
  fx.push({ kind: 'elected', term: state.term, termStartLsn: state.termStartLsn, termHistory: state.termHistory });
  for (const bytes of state.pendingAppends) {
    const placed = walBufferAppend(state.wal, bytes);
    fx.push({ kind: 'walAppended', beginLsn: placed.beginLsn, endLsn: placed.endLsn });
  }
  state.pendingAppends = [];
  for (let i = 0; i < state.links.length; i++) {
    const l = state.links[i]!;
    if (l.connected && l.vote !== null) sendElected(state, i, fx);
  }
  pumpAll(state, fx);
}

function sendElected(state: ProposerState, k: number, fx: ProposerEffect[]): void {
  const link = state.links[k]!;
  const vote = link.vote!;
  const divergence = findDivergencePoint(state.termHistory, vote.termHistory, vote.flushLsn);
  // Both histories descend from the same leaders; a term starting at two LSNs means someone is broken.
  if (!divergence.ok) invariant(false, `safekeeper ${k}'s term history conflicts with ours`);
  link.electedSent = true;
  link.startLsn = divergence.startLsn;
  link.nextLsn = divergence.startLsn;
  link.inflightEnds = [];
  send(fx, k, { kind: 'ProposerElected', term: state.term, startLsn: divergence.startLsn, termHistory: state.termHistory });
  planFetch(state, fx);
}

function onAppendResponse(state: ProposerState, k: number, msg: AppendResponse, fx: ProposerEffect[]): void {
  const link = state.links[k]!;
  if (msg.term > state.term) {
    stepDown(state, `safekeeper ${k} moved to term ${msg.term}`, fx);
    return;
  }
  if (state.phase !== 'leader' || msg.term !== state.term || !link.electedSent) return;
  if (msg.flushLsn > link.nextLsn) invariant(false, `safekeeper ${k} acknowledged ${formatLsn(msg.flushLsn)}, beyond what was sent (${formatLsn(link.nextLsn)})`);
  // Trim with the values from before this acknowledgement, so the WAL a `committed` effect of this step
  // reports is still readable by the caller (the simulator's checker reads it). Not while a recovery read
  // is filling the front of the buffer.
  if (state.fetch === null) walBufferTrim(state.wal, state.truncateLsn);
  if (link.ackFlushLsn === null || msg.flushLsn > link.ackFlushLsn) link.ackFlushLsn = msg.flushLsn;
  // Appends may end inside a record: the window is freed by durable bytes, commit counts only flushLsn.
  while (link.inflightEnds.length > 0 && link.inflightEnds[0]! <= msg.durableLsn) link.inflightEnds.shift();
  advanceCommit(state, fx);
  planFetch(state, fx);
  pumpAll(state, fx);
}

function advanceCommit(state: ProposerState, fx: ProposerEffect[]): void {
  const flushes = state.links.map((l) => l.ackFlushLsn ?? (0 as Lsn));
  const floor = state.config.unsafeTestingFaults?.commitWithoutTermStart ? (0 as Lsn) : state.termStartLsn;
  const candidate = quorumCommitLsn(flushes, state.quorum, floor);
  if (candidate !== null && candidate > state.commitLsn) {
    if (candidate > state.wal.endLsn) invariant(false, `commit ${formatLsn(candidate)} beyond our WAL end ${formatLsn(state.wal.endLsn)}`);
    state.commitLsn = candidate;
    fx.push({ kind: 'committed', commitLsn: candidate });
  }
  let lowest = state.commitLsn;
  for (const f of flushes) if (f < lowest) lowest = f;
  if (lowest > state.truncateLsn) state.truncateLsn = lowest;
}

function onReadResponse(state: ProposerState, k: number, msg: ReadResponse, fx: ProposerEffect[]): void {
  const f = state.fetch;
  if (!f || f.source !== k || msg.term !== state.term || msg.beginLsn !== f.staged.endLsn || msg.wal.length === 0) return;
  walBufferAppend(f.staged, msg.wal);
  f.readsInFlight--;
  invariant(f.staged.endLsn <= f.endLsn, 'recovery read past the requested range');
  if (f.staged.endLsn === f.endLsn) {
    walBufferPrepend(state.wal, f.staged.chunks.slice(f.staged.head));
    state.fetch = null;
    planFetch(state, fx);
  } else {
    issueReads(state, fx);
  }
  pumpAll(state, fx);
}

/** Starts (or resumes) reading WAL below our buffer that some safekeeper needs. */
function planFetch(state: ProposerState, fx: ProposerEffect[]): void {
  if (state.phase !== 'leader') return;
  if (state.fetch === null) {
    let need: Lsn | null = null;
    for (const l of state.links) {
      if (l.connected && l.electedSent && l.nextLsn < state.wal.startLsn && (need === null || l.nextLsn < need)) need = l.nextLsn;
    }
    if (need === null) return;
    state.fetch = { beginLsn: need, endLsn: state.wal.startLsn, staged: walBufferCreate(need), nextRequestLsn: need, source: null, readsInFlight: 0 };
  }
  const f = state.fetch;
  if (f.source === null) {
    // A source holds our WAL up to the end of the range: its divergence point or acknowledged flush.
    let source = -1;
    for (let i = 0; i < state.links.length; i++) {
      const l = state.links[i]!;
      if (!l.connected || !l.electedSent) continue;
      const matched = Math.max(l.startLsn, l.ackFlushLsn ?? 0);
      if (matched < f.endLsn) continue;
      if (source < 0 || i === state.donor) source = i;
    }
    if (source < 0) return;
    f.source = source;
  }
  issueReads(state, fx);
}

function issueReads(state: ProposerState, fx: ProposerEffect[]): void {
  const f = state.fetch!;
  const maxReads = state.config.maxInflightReads ?? 4;
  const maxBytes = state.config.maxReadBytes ?? MAX_APPEND_BYTES;
  while (f.source !== null && f.readsInFlight < maxReads && f.nextRequestLsn < f.endLsn) {
    const end = Math.min(f.endLsn, f.nextRequestLsn + maxBytes) as Lsn;
    send(fx, f.source, { kind: 'ReadRequest', term: state.term, beginLsn: f.nextRequestLsn, endLsn: end });
    f.readsInFlight++;
    f.nextRequestLsn = end;
  }
}

function pumpAll(state: ProposerState, fx: ProposerEffect[]): void {
  for (let i = 0; i < state.links.length; i++) pump(state, i, fx);
}

/** Streams WAL to one safekeeper within its window; a heartbeat carries commit/truncate when idle. */
function pump(state: ProposerState, k: number, fx: ProposerEffect[]): void {
  if (state.phase !== 'leader') return;
  const link = state.links[k]!;
  if (!link.connected || !link.electedSent) return;
  const maxInflight = state.config.maxInflightAppends ?? 4;
  const maxBytes = state.config.maxAppendBytes ?? MAX_APPEND_BYTES;
  let sent = false;
  while (link.inflightEnds.length < maxInflight) {
    const source = bufferHolding(state, link.nextLsn);
    if (source === null) break;
    const end = Math.min(source.endLsn, link.nextLsn + maxBytes) as Lsn;
    appendTo(state, k, link.nextLsn, end, walBufferRead(source, link.nextLsn, end), fx);
    link.inflightEnds.push(end);
    link.nextLsn = end;
    sent = true;
  }
  const caughtUp = link.nextLsn === state.wal.endLsn;
  if (!sent && caughtUp && (link.sentCommitLsn < state.commitLsn || link.sentTruncateLsn < state.truncateLsn)) {
    appendTo(state, k, link.nextLsn, link.nextLsn, new Uint8Array(0), fx);
  }
}

/** Our WAL at `lsn` (the buffer, or the part of a recovery read that has arrived), or null. */
function bufferHolding(state: ProposerState, lsn: Lsn): WalBuffer | null {
  const wal = state.wal;
  if (lsn >= wal.startLsn && lsn < wal.endLsn) return wal;
  const staged = state.fetch?.staged;
  if (staged && lsn >= staged.startLsn && lsn < staged.endLsn) return staged;
  return null;
}

function appendTo(state: ProposerState, k: number, beginLsn: Lsn, endLsn: Lsn, wal: Uint8Array, fx: ProposerEffect[]): void {
  const link = state.links[k]!;
  link.sentCommitLsn = state.commitLsn;
  link.sentTruncateLsn = state.truncateLsn;
  send(fx, k, { kind: 'AppendRequest', term: state.term, beginLsn, endLsn, commitLsn: state.commitLsn, truncateLsn: state.truncateLsn, wal });
}

function trackQuorum(state: ProposerState, fx: ProposerEffect[]): void {
  let live = 0;
  for (const l of state.links) if (l.connected && l.electedSent) live++;
  if (live < state.quorum && !state.quorumLost) {
    state.quorumLost = true;
    fx.push({ kind: 'quorumLost' });
  } else if (live >= state.quorum && state.quorumLost) {
    state.quorumLost = false;
    fx.push({ kind: 'quorumRegained' });
  }
}

/** Forgets everything tied to the connection to safekeeper k (a new one starts from a greeting). */
function dropConnection(state: ProposerState, k: number): void {
  resetConnection(state.links[k]!);
  if (state.fetch && state.fetch.source === k) {
    // Keep what was staged; continue from there with another source.
    state.fetch.source = null;
    state.fetch.readsInFlight = 0;
    state.fetch.nextRequestLsn = state.fetch.staged.endLsn;
  }
}

function resetConnection(link: AcceptorLink): void {
  link.connected = false;
  link.greeting = null;
  link.voteRequested = false;
  link.vote = null;
  link.electedSent = false;
  link.inflightEnds = [];
  link.sentCommitLsn = 0 as Lsn;
  link.sentTruncateLsn = 0 as Lsn;
}

function stepDown(state: ProposerState, reason: string, fx: ProposerEffect[]): void {
  state.phase = 'stopped';
  state.stopReason = reason;
  fx.push({ kind: 'steppedDown', reason });
}

function send(fx: ProposerEffect[], acceptor: number, message: ProposerMessage): void {
  fx.push({ kind: 'send', acceptor, message });
}
