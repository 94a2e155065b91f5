// Peer recovery in the pure core: the start rule (when to recover, from whom), the donor's serving rule,
// the term-change discard, the acceptor's recovery inputs (cut, history adoption, no vote, stopping for a
// proposer) and an end-to-end catch-up between two cores wired by a synchronous in-memory driver.
import t from 'tap';
import { lsn } from '../src/lsn.js';
import { term, type TermHistory, type TimelinePersistentState } from '../src/storage/timeline_state.js';
import {
  acceptorPeerInfo,
  acceptorRecoveryView,
  acceptorRestore,
  acceptorStep,
  newTimelineState,
  recoveryStartPoint,
  type AcceptorEffect,
  type AcceptorInput,
  type AcceptorState,
  type PeerInfo,
  type RecoveryLocalView,
} from '../src/core/acceptor.js';
import {
  chooseRecoveryDonor,
  recoveryBlocked,
  recoveryInit,
  recoveryStep,
  type RecoveryEffect,
  type RecoveryInput,
  type RecoveryState,
} from '../src/core/peer_recovery.js';
import { PROTOCOL_VERSION, type PeerReadReply, type ProposerMessage } from '../src/core/protocol_messages.js';
import { ProtocolErrorCodes } from '../src/core/protocol_errors.js';

const TENANT = 'aa'.repeat(16);
const TIMELINE = 'bb'.repeat(16);
const START = 1000;

function h(...entries: [number, number][]): TermHistory {
  return entries.map(([tm, l]) => ({ term: term(tm), lsn: lsn(l) }));
}

function view(v: Partial<RecoveryLocalView> = {}): RecoveryLocalView {
  return {
    nodeId: 1,
    term: term(3),
    lastLogTerm: term(3),
    flushLsn: lsn(2000),
    writeLsn: lsn(2000),
    commitLsn: lsn(START),
    localStartLsn: lsn(START),
    termHistory: h([1, START], [3, 1500]),
    proposerEngaged: false,
    recoveryTerm: null,
    ...v,
  };
}

function peer(nodeId: number, tm: number, llt: number, flush: number, commit = START): PeerInfo {
  return { nodeId, term: term(tm), lastLogTerm: term(llt), flushLsn: lsn(flush), commitLsn: lsn(commit) };
}

t.test('start rule: when to recover and from whom (we are node 1 at term 3, lastLogTerm 3, flushLsn 2000)', async (t) => {
  const rows: { name: string; local?: Partial<RecoveryLocalView>; peers: PeerInfo[]; donor: number | null }[] = [
    { name: 'a peer further in our last term, following it', peers: [peer(2, 3, 3, 2500)], donor: 2 },
    { name: 'a peer in a later term (lower flushLsn): lastLogTerm first', peers: [peer(2, 4, 4, 1800)], donor: 2 },
    { name: 'nobody ahead', peers: [peer(2, 3, 3, 2000), peer(3, 3, 3, 1900)], donor: null },
    { name: 'ahead by flushLsn but in an older last term', peers: [peer(2, 3, 2, 9000)], donor: null },
    { name: 'peer voted in a newer term it has no WAL of (term != lastLogTerm)', peers: [peer(2, 5, 3, 2500)], donor: null },
    { name: 'peer follows its term but our term is higher', local: { term: term(4) }, peers: [peer(2, 3, 3, 2500)], donor: null },
    { name: 'peer term equal to ours after our vote, its WAL ahead', local: { term: term(4) }, peers: [peer(2, 4, 4, 1600)], donor: 2 },
    { name: 'our own info is ignored', peers: [peer(1, 3, 3, 9000)], donor: null },
    { name: 'most advanced eligible wins', peers: [peer(2, 3, 3, 2500), peer(3, 4, 4, 1700), peer(4, 3, 3, 2600)], donor: 3 },
    { name: 'an ineligible leader is skipped for the next eligible', peers: [peer(2, 5, 4, 3000), peer(3, 3, 3, 2200)], donor: 3 },
    { name: 'ties go to the lowest node id', peers: [peer(4, 3, 3, 2500), peer(2, 3, 3, 2500), peer(3, 3, 3, 2500)], donor: 2 },
    { name: 'an empty safekeeper (term 0) recovers from anyone following its term', local: { term: term(0), lastLogTerm: term(0), flushLsn: lsn(START), termHistory: [] }, peers: [peer(2, 3, 3, 2500)], donor: 2 },
  ];
  for (const row of rows) {
    const chosen = chooseRecoveryDonor(view(row.local), row.peers);
    t.equal(chosen?.nodeId ?? null, row.donor, row.name);
  }
  t.equal(recoveryBlocked(view()), null, 'not blocked without a proposer');
  t.match(recoveryBlocked(view({ proposerEngaged: true })), /proposer/, 'blocked while a proposer is engaged');
});

t.test('start point: continue at the write position on the same history, else cut at the divergence point', async (t) => {
  const rows: { name: string; local: TermHistory; flush: number; write: number; donor: TermHistory; start: number | 'conflict' }[] = [
    { name: 'same history: everything written is the leader\'s', local: h([1, START], [3, 1500]), flush: 1800, write: 1900, donor: h([1, START], [3, 1500]), start: 1900 },
    { name: 'older last term: keep the common part of term 1', local: h([1, START]), flush: 1800, write: 1800, donor: h([1, START], [3, 1500]), start: 1500 },
    { name: 'older last term ending before the switch', local: h([1, START]), flush: 1200, write: 1300, donor: h([1, START], [3, 1500]), start: 1200 },
    { name: 'a losing term 2 tail is cut where term 3 begins', local: h([1, START], [2, 1400]), flush: 2500, write: 2500, donor: h([1, START], [3, 1500]), start: 1400 },
    { name: 'empty safekeeper', local: [], flush: START, write: START, donor: h([1, START], [3, 1500]), start: START },
    { name: 'a term starting at two LSNs is a conflict', local: h([1, START], [3, 1600]), flush: 2000, write: 2000, donor: h([1, START], [3, 1500], [4, 1700]), start: 'conflict' },
  ];
  for (const row of rows) {
    const r = recoveryStartPoint(row.local, lsn(row.flush), lsn(row.write), row.donor);
    t.equal(r.ok ? r.startLsn : 'conflict', row.start, row.name);
  }
});

// ---- Two cores wired by a synchronous driver ----

function acceptor(nodeId: number, overrides: Partial<TimelinePersistentState>, walFlushLsn: number): AcceptorState {
  const base = newTimelineState({ tenantId: TENANT, timelineId: TIMELINE, timelineStartLsn: lsn(START), segmentSizeBytes: 16 << 20, pgVersion: 160004, systemId: 42n });
  return acceptorRestore({ nodeId }, { ...base, ...overrides }, lsn(walFlushLsn));
}

/** WAL byte at `at` as written in term `tm` (different terms, different bytes). */
function byteOf(tm: number, at: number): number {
  return (tm * 31 + at) & 0xff;
}

/** A recovery input without the fields the node fills in. */
type Bare<T> = T extends unknown ? Omit<T, 'now' | 'local'> : never;

class Node {
  readonly wal = new Map<number, number>();
  readonly effects: AcceptorEffect[] = [];
  readonly recoveryEffects: RecoveryEffect[] = [];
  readonly recovery: RecoveryState;
  /** Replies to deliver to this node's recovery (the test decides when). */
  readonly inbox: { requestId: number; reply: PeerReadReply }[] = [];
  /** Peer read requests this node's recovery sent, not yet delivered to the donor. */
  readonly outbox: Extract<RecoveryEffect, { kind: 'peerRead' }>[] = [];
  now = 0;

  constructor(
    readonly core: AcceptorState,
    walTerms: [number, number, number][], // [term, from, to)
  ) {
    for (const [tm, from, to] of walTerms) for (let at = from; at < to; at++) this.wal.set(at, byteOf(tm, at));
    this.recovery = recoveryInit({ nodeId: core.config.nodeId, maxReadBytes: 300, maxInflightReads: 3, readTimeout: 100, peerInfoTtl: 1000 });
  }

  get id(): number {
    return this.core.config.nodeId;
  }

  /** Steps the acceptor and executes its storage effects at once, as a correct FIFO driver would. */
  input(input: AcceptorInput, replies?: Map<number, Node>): void {
    const pending = [...acceptorStep(this.core, input)];
    while (pending.length > 0) {
      const e = pending.shift()!;
      this.effects.push(e);
      switch (e.kind) {
        case 'persistControl':
          pending.push(...acceptorStep(this.core, { kind: 'controlPersisted', seq: e.seq }));
          break;
        case 'writeWal':
          e.wal.forEach((b, i) => this.wal.set(e.lsn + i, b));
          break;
        case 'flushWal':
          pending.push(...acceptorStep(this.core, { kind: 'walFlushed', epoch: e.epoch, flushLsn: this.core.writeLsn }));
          break;
        case 'truncateWal':
          for (const at of [...this.wal.keys()]) if (at >= e.lsn) this.wal.delete(at);
          break;
        case 'readWalForPeer':
          pending.push(...acceptorStep(this.core, { kind: 'peerWalRead', requester: e.requester, requestId: e.requestId, term: e.term, beginLsn: e.beginLsn, wal: this.bytes(e.beginLsn, e.endLsn) }));
          break;
        case 'peerReadReply':
          replies?.get(e.requester)?.inbox.push({ requestId: e.requestId, reply: e.reply });
          break;
        default:
          break;
      }
    }
  }

  rec(input: Bare<RecoveryInput>): RecoveryEffect[] {
    const fx = recoveryStep(this.recovery, { ...input, now: this.now, local: acceptorRecoveryView(this.core) } as RecoveryInput);
    this.recoveryEffects.push(...fx);
    for (const e of fx) {
      if (e.kind === 'acceptorInput') this.input(e.input);
      if (e.kind === 'peerRead') this.outbox.push(e);
    }
    return fx;
  }

  bytes(from: number, to: number): Uint8Array {
    const out = new Uint8Array(to - from);
    for (let at = from; at < to; at++) out[at - from] = this.wal.get(at)!;
    return out;
  }
}

/** Delivers every request to the donor and every reply back (optionally reordering or rewriting replies). */
function exchange(req: Node, donor: Node, opts: { reverse?: boolean; rewrite?: (r: PeerReadReply) => PeerReadReply } = {}): void {
  const nodes = new Map([[req.id, req], [donor.id, donor]]);
  for (let round = 0; round < 1000 && (req.outbox.length > 0 || req.inbox.length > 0); round++) {
    for (const r of req.outbox.splice(0)) donor.input({ kind: 'peerReadRequest', requester: req.id, requestId: r.requestId, request: r.request }, nodes);
    const replies = req.inbox.splice(0);
    if (opts.reverse) replies.reverse();
    for (const { requestId, reply } of replies) req.rec({ kind: 'peerReadResult', requestId, reply: opts.rewrite ? opts.rewrite(reply) : reply });
  }
}

/** Donor node 2: term 3 following term 3 to flushLsn 3000, commitLsn 2600. */
function donorNode(): Node {
  const hist = h([1, START], [3, 1500]);
  return new Node(acceptor(2, { term: term(3), votedFor: 9, termHistory: hist, commitLsn: lsn(2600) }, 3000), [[1, START, 1500], [3, 1500, 3000]]);
}

t.test('a lagging safekeeper catches up from the most advanced peer, with no proposer and without voting', async (t) => {
  const donor = donorNode();
  // Node 1: term 2 (voted for proposer 5), WAL of term 1 to 1400 then a losing term-2 tail to 2200.
  const lag = new Node(acceptor(1, { term: term(2), votedFor: 5, termHistory: h([1, START], [2, 1400]), commitLsn: lsn(1200) }, 2200), [[1, START, 1400], [2, 1400, 2200]]);
  lag.rec({ kind: 'peerInfo', info: acceptorPeerInfo(donor.core) });
  t.equal(lag.recovery.session?.donorNodeId, 2, 'session with node 2');
  t.same(lag.outbox.map((r) => r.request.endLsn - r.request.beginLsn), [0], 'a status read first');
  exchange(lag, donor);
  const order = lag.effects.filter((e) => ['truncateWal', 'persistControl', 'writeWal'].includes(e.kind)).map((e) => e.kind);
  t.same(order.slice(0, 3), ['truncateWal', 'persistControl', 'writeWal'], 'cut, then term and history durable, then WAL');
  const cut = lag.effects.find((e) => e.kind === 'truncateWal');
  t.equal(cut?.kind === 'truncateWal' ? cut.lsn : null, 1400, 'the losing term-2 tail is cut where it diverges');
  t.equal(lag.core.flushLsn, 3000, 'caught up to the donor flushLsn');
  t.same(lag.bytes(START, 3000), donor.bytes(START, 3000), 'byte-identical WAL');
  t.same(lag.core.persistent.termHistory, donor.core.persistent.termHistory, 'adopted the donor history');
  t.equal(lag.core.persistent.term, 3, 'term raised to the donor term, not beyond');
  t.equal(lag.core.persistent.votedFor, 0, 'no vote recorded');
  t.equal(lag.core.commitLsn, 2600, 'the donor commitLsn holds on our WAL');
  t.equal(lag.core.recovery, null, 'the acceptor left recovery mode');
  t.equal(lag.recovery.session, null, 'session over');
  t.same(lag.recoveryEffects.filter((e) => e.kind === 'recoveryEvent').map((e) => e.kind === 'recoveryEvent' && e.event), ['started', 'caughtUp']);
  t.notOk(lag.effects.some((e) => e.kind === 'send'), 'nothing sent to any proposer');
});

t.test('replies arriving out of order are applied in LSN order', async (t) => {
  const donor = donorNode();
  const lag = new Node(acceptor(1, { term: term(3), termHistory: h([1, START], [3, 1500]) }, 1600), [[1, START, 1500], [3, 1500, 1600]]);
  lag.rec({ kind: 'peerInfo', info: acceptorPeerInfo(donor.core) });
  exchange(lag, donor, { reverse: true });
  t.equal(lag.core.flushLsn, 3000);
  t.same(lag.bytes(START, 3000), donor.bytes(START, 3000));
  t.notOk(lag.effects.some((e) => e.kind === 'truncateWal'), 'same history: nothing cut');
  t.notOk(lag.effects.some((e) => e.kind === 'persistControl' && e.state.term !== 3), 'term unchanged');
});

t.test('term-change discard: a chunk the donor served in another term (or refused) is never applied', async (t) => {
  const rows: { name: string; rewrite: (r: PeerReadReply) => PeerReadReply }[] = [
    { name: 'donor term moved on', rewrite: (r) => (r.kind === 'PeerWal' && r.wal.length > 0 ? { ...r, term: term(4) } : r) },
    { name: 'donor history ends in another term', rewrite: (r) => (r.kind === 'PeerWal' && r.wal.length > 0 ? { ...r, termHistory: h([1, START], [3, 1500], [4, 2000]) } : r) },
    { name: 'donor history changed under the same term', rewrite: (r) => (r.kind === 'PeerWal' && r.wal.length > 0 ? { ...r, termHistory: h([1, START], [3, 1400]) } : r) },
    { name: 'donor refused (term changed while reading)', rewrite: (r) => (r.kind === 'PeerWal' && r.wal.length > 0 ? { kind: 'PeerRefused', code: ProtocolErrorCodes.STALE_TERM, term: term(4), message: 'term changed while reading WAL' } : r) },
    { name: 'donor answered another range', rewrite: (r) => (r.kind === 'PeerWal' && r.wal.length > 0 ? { ...r, beginLsn: lsn(r.beginLsn + 1) } : r) },
  ];
  for (const row of rows) {
    const donor = donorNode();
    const lag = new Node(acceptor(1, { term: term(3), termHistory: h([1, START], [3, 1500]) }, 1600), [[1, START, 1500], [3, 1500, 1600]]);
    lag.rec({ kind: 'peerInfo', info: acceptorPeerInfo(donor.core) });
    exchange(lag, donor, { rewrite: row.rewrite });
    t.notOk(lag.recoveryEffects.some((e) => e.kind === 'acceptorInput' && e.input.kind === 'recoveryAppend'), `${row.name}: nothing applied`);
    t.equal(lag.core.writeLsn, 1600, `${row.name}: WAL unchanged`);
    t.equal(lag.recovery.chunksDiscarded, 1, `${row.name}: one chunk discarded, the session ended`);
    t.equal(lag.recovery.session, null, `${row.name}: no session`);
    t.equal(lag.core.recovery, null, `${row.name}: acceptor left recovery`);
    // The same (stale) broker info does not restart it; a newer one does.
    lag.now = 10;
    lag.rec({ kind: 'tick' });
    t.equal(lag.recovery.session, null, `${row.name}: not retried on the stale info`);
    lag.rec({ kind: 'peerInfo', info: acceptorPeerInfo(donor.core) });
    t.ok(lag.recovery.session, `${row.name}: retried after a newer info`);
  }
});

t.test('the donor serves only its term, only while it follows it to its end, never past flushLsn', async (t) => {
  const read = (d: Node, tm: number, begin: number, end: number, between?: (d: Node) => void): PeerReadReply | string => {
    const fx = acceptorStep(d.core, { kind: 'peerReadRequest', requester: 1, requestId: 7, request: { term: term(tm), beginLsn: lsn(begin), endLsn: lsn(end) } });
    const reply = fx.find((e) => e.kind === 'peerReadReply');
    if (reply?.kind === 'peerReadReply') return reply.reply;
    const r = fx.find((e) => e.kind === 'readWalForPeer');
    if (r?.kind !== 'readWalForPeer') return 'nothing';
    between?.(d);
    const done = acceptorStep(d.core, { kind: 'peerWalRead', requester: 1, requestId: 7, term: r.term, beginLsn: r.beginLsn, wal: d.bytes(r.beginLsn, r.endLsn) });
    const out = done.find((e) => e.kind === 'peerReadReply');
    return out?.kind === 'peerReadReply' ? out.reply : 'nothing';
  };
  const code = (r: PeerReadReply | string): string => (typeof r === 'string' ? r : r.kind === 'PeerRefused' ? r.code : `wal ${r.wal.length}`);
  t.equal(code(read(donorNode(), 3, 2000, 2300)), 'wal 300', 'its term, within flushLsn');
  t.equal(code(read(donorNode(), 3, 2900, 3000)), 'wal 100', 'up to flushLsn exactly');
  t.equal(code(read(donorNode(), 3, 2900, 3001)), ProtocolErrorCodes.WAL_NOT_AVAILABLE, 'past flushLsn');
  t.equal(code(read(donorNode(), 2, 2000, 2300)), ProtocolErrorCodes.STALE_TERM, 'an older term');
  t.equal(code(read(donorNode(), 4, 2000, 2300)), ProtocolErrorCodes.STALE_TERM, 'a newer term');
  t.equal(code(read(donorNode(), 3, 500, 600)), ProtocolErrorCodes.WAL_NOT_AVAILABLE, 'below the local start');
  t.equal(code(read(donorNode(), 3, 1000, 1000 + 128 * 1024 + 1)), ProtocolErrorCodes.TOO_LARGE, 'more than 128 KiB');
  const status = read(donorNode(), 3, 9999, 9999);
  t.match(status, { kind: 'PeerWal', term: 3, flushLsn: 3000, commitLsn: 2600, termHistory: h([1, START], [3, 1500]) }, 'an empty read is a status');
  // Term 3 in the control file, but its WAL stops before term 3 began: not term 3's WAL to its end.
  const behind = new Node(acceptor(2, { term: term(3), termHistory: h([1, START], [3, 1500]) }, 1400), [[1, START, 1400]]);
  t.equal(code(read(behind, 3, START, 1200)), ProtocolErrorCodes.WAL_NOT_AVAILABLE, 'term != lastLogTerm');
  // The term changes while the read is under way: the chunk is refused, not sent.
  const moved = read(donorNode(), 3, 2000, 2300, (d) => {
    acceptorStep(d.core, { kind: 'connectionOpened', connId: 1 });
    acceptorStep(d.core, { kind: 'message', connId: 1, message: greeting(8) });
    acceptorStep(d.core, { kind: 'message', connId: 1, message: { kind: 'VoteRequest', term: term(4) } });
  });
  t.match(moved, { kind: 'PeerRefused', code: ProtocolErrorCodes.STALE_TERM, term: 4 }, 'term changed while reading');
});

function greeting(proposerId: number): ProposerMessage {
  return { kind: 'ProposerGreeting', protocolVersion: PROTOCOL_VERSION, proposerId, tenantId: TENANT, timelineId: TIMELINE, systemId: 42n, pgVersion: 160004, segmentSizeBytes: 16 << 20 };
}

t.test('acceptor recovery inputs: refused unless the term is ours or later and no proposer is engaged', async (t) => {
  const donorHist = h([1, START], [3, 1500]);
  const start = (s: AcceptorState, tm: number, hist: TermHistory): AcceptorEffect[] =>
    acceptorStep(s, { kind: 'recoveryStart', donorNodeId: 2, term: term(tm), termHistory: hist, donorCommitLsn: lsn(START) });
  const fresh = (overrides: Partial<TimelinePersistentState> = {}): AcceptorState => acceptor(1, { term: term(2), votedFor: 5, termHistory: h([1, START]), ...overrides }, 1400);

  let s = fresh({ term: term(4) });
  t.same(start(s, 3, donorHist), [], 'our term is above the donor term: refused');
  t.equal(s.recovery, null);

  s = fresh();
  t.same(start(s, 3, h([1, START], [2, 1500])), [], 'a history that does not end in the term: refused');
  t.equal(s.recovery, null);

  s = fresh();
  acceptorStep(s, { kind: 'connectionOpened', connId: 1 });
  acceptorStep(s, { kind: 'message', connId: 1, message: greeting(5) });
  acceptorStep(s, { kind: 'message', connId: 1, message: { kind: 'VoteRequest', term: term(2) } });
  t.equal(acceptorRecoveryView(s).proposerEngaged, true, 'a live connection asked for our vote in our term');
  t.same(start(s, 3, donorHist), [], 'refused while the vote response promises our WAL stays put');
  acceptorStep(s, { kind: 'connectionClosed', connId: 1 });
  t.equal(acceptorRecoveryView(s).proposerEngaged, false, 'the connection is gone');
  t.ok(start(s, 3, donorHist).length > 0, 'accepted once it is gone');
  t.equal(s.recovery?.term, 3);

  // A proposer that asks for a vote in the meantime ends recovery: later chunks are refused.
  acceptorStep(s, { kind: 'connectionOpened', connId: 2 });
  acceptorStep(s, { kind: 'message', connId: 2, message: greeting(6) });
  acceptorStep(s, { kind: 'message', connId: 2, message: { kind: 'VoteRequest', term: term(3) } });
  t.equal(s.recovery, null, 'a VoteRequest in our term ends recovery');
  const before = s.writeLsn;
  t.same(acceptorStep(s, { kind: 'recoveryAppend', term: term(3), beginLsn: before, wal: new Uint8Array(10), donorCommitLsn: lsn(START) }), [], 'a late chunk is refused');
  t.equal(s.writeLsn, before);

  // Never a vote: the term raised by recovery has votedFor 0, which no proposer matches.
  const n = new Node(fresh(), []);
  n.input({ kind: 'recoveryStart', donorNodeId: 2, term: term(3), termHistory: donorHist, donorCommitLsn: lsn(START) });
  t.equal(n.core.persistent.votedFor, 0);
  n.input({ kind: 'connectionOpened', connId: 3 });
  n.input({ kind: 'message', connId: 3, message: greeting(0) });
  n.input({ kind: 'message', connId: 3, message: { kind: 'VoteRequest', term: term(3) } });
  const votes = n.effects.flatMap((e) => (e.kind === 'send' && e.message.kind === 'VoteResponse' ? [e.message] : []));
  t.match(votes, [{ kind: 'VoteResponse', granted: false, term: 3 }], 'proposer id 0 gets no re-vote');

  // A ProposerElected of the term ends recovery too.
  s = fresh();
  start(s, 3, donorHist);
  acceptorStep(s, { kind: 'connectionOpened', connId: 4 });
  acceptorStep(s, { kind: 'message', connId: 4, message: greeting(9) });
  acceptorStep(s, { kind: 'message', connId: 4, message: { kind: 'ProposerElected', term: term(3), startLsn: lsn(1400), termHistory: donorHist } });
  t.equal(s.recovery, null, 'the real leader took over');
  t.same(acceptorStep(s, { kind: 'recoveryAppend', term: term(3), beginLsn: s.writeLsn, wal: new Uint8Array(10), donorCommitLsn: lsn(START) }), [], 'recovery chunks refused');

  // Chunks must continue the WAL exactly.
  s = fresh({ term: term(3), termHistory: donorHist });
  start(s, 3, donorHist);
  t.same(acceptorStep(s, { kind: 'recoveryAppend', term: term(3), beginLsn: lsn(1401), wal: new Uint8Array(10), donorCommitLsn: lsn(START) }), [], 'a gap is refused');
  t.same(acceptorStep(s, { kind: 'recoveryAppend', term: term(2), beginLsn: lsn(1400), wal: new Uint8Array(10), donorCommitLsn: lsn(START) }), [], 'another term is refused');
  t.ok(acceptorStep(s, { kind: 'recoveryAppend', term: term(3), beginLsn: lsn(1400), wal: new Uint8Array(10), donorCommitLsn: lsn(START) }).some((e) => e.kind === 'writeWal'), 'the next chunk is written');
  acceptorStep(s, { kind: 'recoveryEnd', term: term(3) });
  t.equal(s.recovery, null, 'recoveryEnd leaves recovery');
});

t.test('recovery never cuts committed WAL: a divergence below commitLsn crashes the safekeeper', async (t) => {
  // Our commitLsn 1800 is in term 2's WAL; a donor history without term 2 would cut at 1400. Impossible
  // in a correct cluster (term 3's leader holds everything committed), so it is an invariant.
  const s = acceptor(1, { term: term(2), votedFor: 5, termHistory: h([1, START], [2, 1400]), commitLsn: lsn(1800) }, 2200);
  t.throws(() => acceptorStep(s, { kind: 'recoveryStart', donorNodeId: 2, term: term(3), termHistory: h([1, START], [3, 1500]), donorCommitLsn: lsn(START) }), /below commitLsn/);
});

t.test('the session stops when a proposer engages, our term moves on, or a read times out', async (t) => {
  const setup = (): { donor: Node; lag: Node } => {
    const donor = donorNode();
    const lag = new Node(acceptor(1, { term: term(3), termHistory: h([1, START], [3, 1500]) }, 1600), [[1, START, 1500], [3, 1500, 1600]]);
    lag.rec({ kind: 'peerInfo', info: acceptorPeerInfo(donor.core) });
    // Deliver the status and the first replies, keep the rest in flight.
    for (const r of lag.outbox.splice(0)) donor.input({ kind: 'peerReadRequest', requester: 1, requestId: r.requestId, request: r.request }, new Map([[1, lag]]));
    for (const { requestId, reply } of lag.inbox.splice(0)) lag.rec({ kind: 'peerReadResult', requestId, reply });
    return { donor, lag };
  };
  let { lag } = setup();
  t.equal(lag.recovery.session?.phase, 'streaming', 'streaming');
  lag.input({ kind: 'connectionOpened', connId: 1 });
  lag.input({ kind: 'message', connId: 1, message: greeting(4) });
  lag.input({ kind: 'message', connId: 1, message: { kind: 'VoteRequest', term: term(3) } });
  lag.rec({ kind: 'tick' });
  t.equal(lag.recovery.session, null, 'a proposer asked for our vote: session over');
  t.match(lag.recoveryEffects.at(-1), { kind: 'recoveryEvent', event: 'aborted', detail: /proposer/ });

  ({ lag } = setup());
  lag.input({ kind: 'connectionOpened', connId: 1 });
  lag.input({ kind: 'message', connId: 1, message: greeting(4) });
  lag.input({ kind: 'message', connId: 1, message: { kind: 'VoteRequest', term: term(5) } });
  lag.input({ kind: 'connectionClosed', connId: 1 });
  lag.rec({ kind: 'tick' });
  t.match(lag.recoveryEffects.at(-1), { kind: 'recoveryEvent', event: 'aborted', detail: /term moved/ }, 'our term moved past the donor');

  ({ lag } = setup());
  lag.now = 101;
  lag.rec({ kind: 'tick' });
  t.match(lag.recoveryEffects.at(-2), { kind: 'acceptorInput', input: { kind: 'recoveryEnd' } });
  t.match(lag.recoveryEffects.at(-1), { kind: 'recoveryEvent', event: 'aborted', detail: /timed out/ }, 'an unanswered read ends the session');
});

t.test('broker infos older than the TTL start nothing', async (t) => {
  for (const [tickAt, starts] of [[999, true], [1001, false]] as const) {
    const donor = donorNode();
    const lag = new Node(acceptor(1, { term: term(3), termHistory: h([1, START], [3, 1500]) }, 1600), [[1, START, 1500], [3, 1500, 1600]]);
    const local = acceptorRecoveryView(lag.core);
    recoveryStep(lag.recovery, { kind: 'peerInfo', now: 0, local: { ...local, proposerEngaged: true }, info: acceptorPeerInfo(donor.core) });
    t.equal(lag.recovery.session, null, 'blocked when received');
    recoveryStep(lag.recovery, { kind: 'tick', now: tickAt, local });
    t.equal(lag.recovery.session !== null, starts, `tick ${tickAt} after the info (TTL 1000): ${starts ? 'starts' : 'too old'}`);
  }
});

t.test('recoveryInit validates its limits', async (t) => {
  t.throws(() => recoveryInit({ nodeId: 1, maxReadBytes: 128 * 1024 + 1, readTimeout: 1, peerInfoTtl: 1 }), RangeError);
  t.throws(() => recoveryInit({ nodeId: 1, maxInflightReads: 0, readTimeout: 1, peerInfoTtl: 1 }), RangeError);
  const s = recoveryInit({ nodeId: 1, readTimeout: 1, peerInfoTtl: 1 });
  const fx = recoveryStep(s, { kind: 'peerReadResult', now: 0, local: view(), requestId: 99, reply: { kind: 'PeerRefused', code: ProtocolErrorCodes.STALE_TERM, term: term(1), message: '' } });
  t.same(fx, [], 'an unknown reply is ignored');
});

t.test('a cut by recovery releases the held replies it would otherwise strand (found by the simulator, seed 1850)', async (t) => {
  // Proposer 1 leads term 2 on connection 1; its append is written, the flush is still running. Proposer 2
  // wins our vote for term 3 on connection 2, then dies. Recovery from a term-3 donor cuts our term-2 tail.
  const s = acceptor(1, { term: term(1), votedFor: 1, termHistory: h([1, START]) }, 1400);
  const sends: AcceptorEffect[] = [];
  const step = (input: AcceptorInput): AcceptorEffect[] => {
    const fx = acceptorStep(s, input);
    sends.push(...fx.filter((e) => e.kind === 'send'));
    for (const e of fx) if (e.kind === 'persistControl') step({ kind: 'controlPersisted', seq: e.seq });
    return fx;
  };
  const flushes: number[] = [];
  const track = (fx: AcceptorEffect[]): void => {
    for (const e of fx) if (e.kind === 'flushWal') flushes.push(e.epoch);
  };
  step({ kind: 'connectionOpened', connId: 1 });
  step({ kind: 'message', connId: 1, message: greeting(1) });
  step({ kind: 'message', connId: 1, message: { kind: 'VoteRequest', term: term(2) } });
  step({ kind: 'walFlushed', epoch: 0, flushLsn: lsn(1400) });
  step({ kind: 'message', connId: 1, message: { kind: 'ProposerElected', term: term(2), startLsn: lsn(1400), termHistory: h([1, START], [2, 1400]) } });
  track(step({ kind: 'message', connId: 1, message: { kind: 'AppendRequest', term: term(2), beginLsn: lsn(1400), endLsn: lsn(1600), commitLsn: lsn(START), truncateLsn: lsn(START), wal: new Uint8Array(200) } }));
  step({ kind: 'connectionOpened', connId: 2 });
  step({ kind: 'message', connId: 2, message: greeting(2) });
  step({ kind: 'message', connId: 2, message: { kind: 'VoteRequest', term: term(3) } });
  step({ kind: 'connectionClosed', connId: 2 });
  t.equal(acceptorRecoveryView(s).proposerEngaged, false, 'connection 1 is elected in an older term');
  const before = sends.length;
  const fx = step({ kind: 'recoveryStart', donorNodeId: 2, term: term(3), termHistory: h([1, START], [3, 1500]), donorCommitLsn: lsn(START) });
  t.match(fx.find((e) => e.kind === 'truncateWal'), { lsn: 1400 }, 'the term-2 tail is cut');
  step({ kind: 'walFlushed', epoch: flushes[0]!, flushLsn: lsn(1600) });
  const released = sends.slice(before).map((e) => (e.kind === 'send' ? e.message : null));
  t.match(released, [{ kind: 'AppendResponse', term: 3, flushLsn: 1400 }], 'the stranded ack goes out, with our new term: its proposer steps down');
});
