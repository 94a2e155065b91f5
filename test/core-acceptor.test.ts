// The acceptor step function: vote granted/refused table, durability holding of replies, elected
// truncation (order, bounds, the commitLsn assert), append gap/term cases, reads, fencing, peer info.
import t from 'tap';
import { lsn, type Lsn } from '../src/lsn.js';
import { term, type TermHistory, type TimelinePersistentState } from '../src/storage/timeline_state.js';
import {
  acceptorRestore,
  acceptorStep,
  newTimelineState,
  type AcceptorEffect,
  type AcceptorState,
  type AcceptorTestingFaults,
} from '../src/core/acceptor.js';
import { MAX_APPEND_BYTES, PROTOCOL_VERSION, type AcceptorMessage, type ProposerMessage } from '../src/core/protocol_messages.js';
import { ProtocolErrorCodes } from '../src/core/protocol_errors.js';

const TENANT = 'aa'.repeat(16);
const TIMELINE = 'bb'.repeat(16);
const START = 1000;

function h(...entries: [number, number][]): TermHistory {
  return entries.map(([tm, l]) => ({ term: term(tm), lsn: lsn(l) }));
}

function acceptor(overrides: Partial<TimelinePersistentState> = {}, walFlushLsn = START, faults?: AcceptorTestingFaults): AcceptorState {
  const base = newTimelineState({ tenantId: TENANT, timelineId: TIMELINE, timelineStartLsn: lsn(START), segmentSizeBytes: 16 << 20, pgVersion: 160004, systemId: 42n });
  return acceptorRestore({ nodeId: 7, ...(faults ? { unsafeTestingFaults: faults } : {}) }, { ...base, ...overrides }, lsn(walFlushLsn));
}

function greeting(proposerId = 1, extra: Partial<Extract<ProposerMessage, { kind: 'ProposerGreeting' }>> = {}): ProposerMessage {
  return { kind: 'ProposerGreeting', protocolVersion: PROTOCOL_VERSION, proposerId, tenantId: TENANT, timelineId: TIMELINE, systemId: 42n, pgVersion: 160004, segmentSizeBytes: 16 << 20, ...extra };
}

function append(tm: number, begin: number, bytes: number, commit = 0, truncate = 0): ProposerMessage {
  return { kind: 'AppendRequest', term: term(tm), beginLsn: lsn(begin), endLsn: lsn(begin + bytes), commitLsn: lsn(commit), truncateLsn: lsn(truncate), wal: new Uint8Array(bytes).fill(7) };
}

function elected(tm: number, start: number, history: TermHistory): ProposerMessage {
  return { kind: 'ProposerElected', term: term(tm), startLsn: lsn(start), termHistory: history };
}

/** Steps and then completes every storage effect (persist, flush, read) as a correct driver would, in order. */
function run(s: AcceptorState, input: Parameters<typeof acceptorStep>[1], complete = true): AcceptorEffect[] {
  const all: AcceptorEffect[] = [];
  const pending: AcceptorEffect[] = [...acceptorStep(s, input)];
  while (pending.length > 0) {
    const e = pending.shift()!;
    all.push(e);
    if (!complete) continue;
    if (e.kind === 'persistControl') pending.push(...acceptorStep(s, { kind: 'controlPersisted', seq: e.seq }));
    if (e.kind === 'flushWal') pending.push(...acceptorStep(s, { kind: 'walFlushed', epoch: e.epoch, flushLsn: s.writeLsn }));
  }
  return all;
}

function sent(effects: AcceptorEffect[]): AcceptorMessage[] {
  return effects.flatMap((e) => (e.kind === 'send' ? [e.message] : e.kind === 'closeConnection' && e.error ? [e.error] : []));
}

function closedWith(effects: AcceptorEffect[]): string | null {
  const c = effects.find((e) => e.kind === 'closeConnection');
  return c && c.kind === 'closeConnection' ? (c.error?.code ?? 'closed') : null;
}

/** An acceptor with connection 1 greeted by proposer 1. */
function greeted(overrides: Partial<TimelinePersistentState> = {}, walFlushLsn = START, faults?: AcceptorTestingFaults): AcceptorState {
  const s = acceptor(overrides, walFlushLsn, faults);
  run(s, { kind: 'connectionOpened', connId: 1 });
  run(s, { kind: 'message', connId: 1, message: greeting(1) });
  return s;
}

/** Greeted, voted for term `tm` and elected with `history` starting at `start`. */
function leaderConnection(tm: number, history: TermHistory, start: number, overrides: Partial<TimelinePersistentState> = {}, walFlushLsn = START): AcceptorState {
  const s = greeted(overrides, walFlushLsn);
  run(s, { kind: 'message', connId: 1, message: { kind: 'VoteRequest', term: term(tm) } });
  run(s, { kind: 'message', connId: 1, message: elected(tm, start, history) });
  return s;
}

t.test('greeting: checks and reply', async (t) => {
  const s = greeted();
  t.equal(s.connections.get(1)?.proposerId, 1);
  const cases: { name: string; msg: ProposerMessage; code: string }[] = [
    { name: 'protocol version', msg: greeting(2, { protocolVersion: 99 }), code: ProtocolErrorCodes.VERSION },
    { name: 'tenant', msg: greeting(2, { tenantId: 'cc'.repeat(16) }), code: ProtocolErrorCodes.TIMELINE_MISMATCH },
    { name: 'timeline', msg: greeting(2, { timelineId: 'cc'.repeat(16) }), code: ProtocolErrorCodes.TIMELINE_MISMATCH },
    { name: 'segment size', msg: greeting(2, { segmentSizeBytes: 1 << 20 }), code: ProtocolErrorCodes.SYSTEM_MISMATCH },
    { name: 'PostgreSQL major', msg: greeting(2, { pgVersion: 150004 }), code: ProtocolErrorCodes.SYSTEM_MISMATCH },
    { name: 'system id', msg: greeting(2, { systemId: 43n }), code: ProtocolErrorCodes.SYSTEM_MISMATCH },
  ];
  for (const c of cases) {
    const x = acceptor();
    run(x, { kind: 'connectionOpened', connId: 5 });
    const fx = run(x, { kind: 'message', connId: 5, message: c.msg });
    t.equal(closedWith(fx), c.code, c.name);
    t.notOk(x.connections.has(5), `${c.name}: connection forgotten`);
  }
  const minor = acceptor();
  run(minor, { kind: 'connectionOpened', connId: 5 });
  t.same(sent(run(minor, { kind: 'message', connId: 5, message: greeting(2, { pgVersion: 160009 }) })).map((m) => m.kind), ['AcceptorGreeting'], 'minor version differences are fine');
  const before = acceptor();
  run(before, { kind: 'connectionOpened', connId: 5 });
  t.equal(closedWith(run(before, { kind: 'message', connId: 5, message: { kind: 'VoteRequest', term: term(1) } })), ProtocolErrorCodes.UNEXPECTED, 'vote before greeting');
  t.equal(closedWith(run(s, { kind: 'message', connId: 1, message: greeting(1) })), ProtocolErrorCodes.UNEXPECTED, 'second greeting');
});

t.test('greeting: a new system id is adopted and persisted before the reply', async (t) => {
  const s = acceptor({ systemId: 0n, pgVersion: 0 });
  run(s, { kind: 'connectionOpened', connId: 1 });
  const fx = acceptorStep(s, { kind: 'message', connId: 1, message: greeting(1) });
  t.same(fx.map((e) => e.kind), ['persistControl'], 'reply held until persisted');
  const persisted = fx[0]!;
  t.equal(persisted.kind === 'persistControl' && persisted.state.systemId, 42n);
  const after = acceptorStep(s, { kind: 'controlPersisted', seq: 1 });
  t.same(sent(after), [{ kind: 'AcceptorGreeting', nodeId: 7, term: 0, minTerm: 0 }]);
});

t.test('greeting from the same proposer supersedes its older connections', async (t) => {
  const s = greeted();
  run(s, { kind: 'connectionOpened', connId: 2 });
  const fx = run(s, { kind: 'message', connId: 2, message: greeting(1) });
  t.equal(closedWith(fx), ProtocolErrorCodes.SUPERSEDED);
  t.notOk(s.connections.has(1));
  t.same(run(s, { kind: 'message', connId: 1, message: elected(1, START, h([1, START])) }), [], 'late messages on the old connection are ignored');
});

t.test('vote: granted/refused table', async (t) => {
  // state term, votedFor, minTerm, request term, requesting proposer -> granted, response term, persisted
  const table: [number, number, number, number, number, boolean, number, boolean][] = [
    [0, 0, 0, 1, 1, true, 1, true],
    [3, 2, 0, 4, 1, true, 4, true],
    [3, 2, 0, 9, 1, true, 9, true],
    [3, 2, 0, 3, 1, false, 3, false], // same term, voted for someone else
    [3, 1, 0, 3, 1, true, 3, false], // same term, same proposer: re-vote after reconnect, nothing to persist
    [3, 2, 0, 2, 1, false, 3, false], // lower term
    [3, 2, 5, 4, 1, false, 3, false], // fenced: below minTerm
    [3, 2, 5, 5, 1, true, 5, true], // exactly minTerm
    [3, 1, 5, 3, 1, false, 3, false], // re-vote below minTerm
  ];
  for (const [st, voted, minT, req, pid, granted, respTerm, persisted] of table) {
    const s = acceptor({ term: term(st), votedFor: voted, minTerm: term(minT) });
    run(s, { kind: 'connectionOpened', connId: 1 });
    run(s, { kind: 'message', connId: 1, message: greeting(pid) });
    const fx = run(s, { kind: 'message', connId: 1, message: { kind: 'VoteRequest', term: term(req) } });
    const name = `term ${st} votedFor ${voted} minTerm ${minT}, request ${req} from ${pid}`;
    const reply = sent(fx)[0];
    t.equal(reply?.kind === 'VoteResponse' && reply.granted, granted, `${name}: granted=${granted}`);
    t.equal(reply?.kind === 'VoteResponse' && reply.term, respTerm, `${name}: response term ${respTerm}`);
    t.equal(fx.some((e) => e.kind === 'persistControl'), persisted, `${name}: persisted=${persisted}`);
    if (persisted) {
      const p = fx.find((e) => e.kind === 'persistControl');
      t.equal(p?.kind === 'persistControl' && p.state.term, req, `${name}: term persisted`);
      t.equal(p?.kind === 'persistControl' && p.state.votedFor, pid, `${name}: votedFor persisted`);
      t.ok(fx.indexOf(p!) < fx.findIndex((e) => e.kind === 'send'), `${name}: persisted before the reply`);
    }
  }
});

t.test('vote: response held until the control file is persisted and written WAL is flushed', async (t) => {
  const s = leaderConnection(1, h([1, START]), START);
  acceptorStep(s, { kind: 'message', connId: 1, message: append(1, START, 100) }); // written, flush in flight
  run(s, { kind: 'connectionOpened', connId: 2 });
  run(s, { kind: 'message', connId: 2, message: greeting(2) });
  const fx = acceptorStep(s, { kind: 'message', connId: 2, message: { kind: 'VoteRequest', term: term(2) } });
  t.same(fx.map((e) => e.kind), ['persistControl'], 'only the persist; no reply yet');
  t.same(acceptorStep(s, { kind: 'controlPersisted', seq: s.persistSeqIssued }).filter((e) => e.kind === 'send'), [], 'still waiting for the flush');
  const flushed = acceptorStep(s, { kind: 'walFlushed', epoch: s.walEpoch, flushLsn: lsn(START + 100) });
  const vote = sent(flushed).find((m) => m.kind === 'VoteResponse');
  t.match(vote, { kind: 'VoteResponse', granted: true, term: 2, flushLsn: START + 100, lastLogTerm: 1, termHistory: h([1, START]) });
  t.equal(closedWith(run(s, { kind: 'message', connId: 1, message: append(1, START + 100, 10) })), ProtocolErrorCodes.STALE_TERM, 'the old leader is refused after the vote');
});

t.test('vote: the reply reports the term decided for this request, not a later unpersisted one', async (t) => {
  const s = greeted();
  run(s, { kind: 'connectionOpened', connId: 2 });
  run(s, { kind: 'message', connId: 2, message: greeting(2) });
  acceptorStep(s, { kind: 'message', connId: 1, message: { kind: 'VoteRequest', term: term(1) } });
  acceptorStep(s, { kind: 'message', connId: 2, message: { kind: 'VoteRequest', term: term(2) } });
  const first = sent(acceptorStep(s, { kind: 'controlPersisted', seq: 1 }));
  t.match(first, [{ kind: 'VoteResponse', term: 1, granted: true }], 'first vote released with its own term');
  const second = sent(acceptorStep(s, { kind: 'controlPersisted', seq: 2 }));
  t.match(second, [{ kind: 'VoteResponse', term: 2, granted: true }]);
});

t.test('elected: truncates at the start point before persisting the history', async (t) => {
  // WAL of term 1 up to START+300; a term-3 leader whose donor stopped term 1 at START+200.
  const s = greeted({ term: term(1), votedFor: 9, termHistory: h([1, START]) }, START + 300);
  run(s, { kind: 'message', connId: 1, message: { kind: 'VoteRequest', term: term(3) } });
  const history = h([1, START], [3, START + 200]);
  const fx = run(s, { kind: 'message', connId: 1, message: elected(3, START + 200, history) }, false);
  t.same(fx.map((e) => e.kind), ['truncateWal', 'persistControl'], 'cut, then history');
  t.match(fx[0], { kind: 'truncateWal', lsn: START + 200 });
  t.match(fx[1], { kind: 'persistControl', state: { termHistory: history } });
  t.equal(s.writeLsn, START + 200);
  t.equal(s.flushLsn, START + 200);
  const early = acceptorStep(s, { kind: 'message', connId: 1, message: append(3, START + 200, 50) });
  t.same(early.map((e) => e.kind), ['writeWal', 'flushWal']);
  const flushed = acceptorStep(s, { kind: 'walFlushed', epoch: s.walEpoch, flushLsn: lsn(START + 250) });
  t.same(sent(flushed), [], 'flushed, but the history is not durable yet: no acknowledgement');
  const persisted = acceptorStep(s, { kind: 'controlPersisted', seq: s.persistSeqIssued });
  t.match(sent(persisted), [{ kind: 'AppendResponse', term: 3, flushLsn: START + 250 }], 'acknowledged once both are durable');
});

t.test('elected: start bounds and term checks', async (t) => {
  const base = { term: term(1), votedFor: 9, termHistory: h([1, START]) };
  const voted = (): AcceptorState => {
    const s = greeted(base, START + 300);
    run(s, { kind: 'message', connId: 1, message: { kind: 'VoteRequest', term: term(3) } });
    return s;
  };
  const cases: { name: string; msg: ProposerMessage; code: string | null }[] = [
    { name: 'start at the divergence point', msg: elected(3, START + 200, h([1, START], [3, START + 200])), code: null },
    { name: 'start below the divergence point is safe', msg: elected(3, START + 100, h([1, START], [3, START + 200])), code: null },
    { name: 'start above the divergence point', msg: elected(3, START + 250, h([1, START], [3, START + 200])), code: ProtocolErrorCodes.BAD_START },
    { name: 'start above our WAL', msg: elected(3, START + 400, h([1, START], [3, START + 500])), code: ProtocolErrorCodes.BAD_START },
    { name: 'start below our WAL', msg: elected(3, START - 10, h([1, START], [3, START + 200])), code: ProtocolErrorCodes.BAD_START },
    { name: 'lower term', msg: elected(2, START + 200, h([1, START], [2, START + 200])), code: ProtocolErrorCodes.STALE_TERM },
    { name: 'term we are not in', msg: elected(4, START + 200, h([1, START], [4, START + 200])), code: ProtocolErrorCodes.TERM_NOT_VOTED },
    { name: 'history not ending in the term', msg: elected(3, START + 200, h([1, START], [2, START + 200])), code: ProtocolErrorCodes.BAD_HISTORY },
    { name: 'history out of order', msg: elected(3, START, h([3, START], [1, START + 5])), code: ProtocolErrorCodes.BAD_HISTORY },
    { name: 'history conflicting with ours', msg: elected(3, START, h([1, START + 10], [3, START + 200])), code: ProtocolErrorCodes.BAD_HISTORY },
  ];
  for (const c of cases) {
    const s = voted();
    t.equal(closedWith(run(s, { kind: 'message', connId: 1, message: c.msg })), c.code, c.name);
  }
  const s = voted();
  run(s, { kind: 'message', connId: 1, message: elected(3, START + 200, h([1, START], [3, START + 200])) });
  run(s, { kind: 'connectionOpened', connId: 2 });
  run(s, { kind: 'message', connId: 2, message: greeting(5) });
  t.equal(closedWith(run(s, { kind: 'message', connId: 2, message: elected(3, START + 200, h([1, START], [3, START + 200])) })), ProtocolErrorCodes.TERM_NOT_VOTED, 'a second proposer elected in the same term');
});

t.test('elected: cutting below commitLsn is a broken invariant (crash)', async (t) => {
  const s = greeted({ term: term(1), votedFor: 9, termHistory: h([1, START]), commitLsn: lsn(START + 250) }, START + 300);
  run(s, { kind: 'message', connId: 1, message: { kind: 'VoteRequest', term: term(3) } });
  t.throws(() => acceptorStep(s, { kind: 'message', connId: 1, message: elected(3, START + 200, h([1, START], [3, START + 200])) }), /below commitLsn/);
  const ok = greeted({ term: term(1), votedFor: 9, termHistory: h([1, START]), commitLsn: lsn(START + 200) }, START + 300);
  run(ok, { kind: 'message', connId: 1, message: { kind: 'VoteRequest', term: term(3) } });
  t.doesNotThrow(() => acceptorStep(ok, { kind: 'message', connId: 1, message: elected(3, START + 200, h([1, START], [3, START + 200])) }), 'exactly at commitLsn is fine');
});

t.test('elected: a flush that ran before the cut only counts below it', async (t) => {
  // Defensive path: a re-election on a new connection while a flush of the old connection's WAL runs.
  const s = leaderConnection(1, h([1, START]), START);
  run(s, { kind: 'message', connId: 1, message: append(1, START, 100) });
  acceptorStep(s, { kind: 'message', connId: 1, message: append(1, START + 100, 200) }); // flush in flight
  const epoch = s.walEpoch;
  run(s, { kind: 'connectionOpened', connId: 2 });
  run(s, { kind: 'message', connId: 2, message: greeting(1) });
  const fx = acceptorStep(s, { kind: 'message', connId: 2, message: elected(1, START + 100, h([1, START])) });
  t.match(fx, [{ kind: 'truncateWal', lsn: START + 100 }]);
  t.equal(s.writeLsn, START + 100);
  acceptorStep(s, { kind: 'walFlushed', epoch, flushLsn: lsn(START + 300) });
  t.equal(s.flushLsn, START + 100, 'capped at the cut');
});

t.test('append: term, election, gap and size cases', async (t) => {
  const history = h([2, START]);
  const cases: { name: string; setup: (s: AcceptorState) => void; msg: ProposerMessage; code: string | null }[] = [
    { name: 'in order', setup: () => {}, msg: append(2, START, 10), code: null },
    { name: 'heartbeat at the write position', setup: () => {}, msg: append(2, START, 0), code: null },
    { name: 'gap', setup: () => {}, msg: append(2, START + 5, 10), code: ProtocolErrorCodes.WAL_GAP },
    {
      name: 'rewrite of accepted WAL',
      setup: (s) => run(s, { kind: 'message', connId: 1, message: append(2, START, 10) }),
      msg: append(2, START, 10),
      code: ProtocolErrorCodes.WAL_GAP,
    },
    { name: 'lower term', setup: () => {}, msg: append(1, START, 10), code: ProtocolErrorCodes.STALE_TERM },
    { name: 'higher term', setup: () => {}, msg: append(3, START, 10), code: ProtocolErrorCodes.NOT_ELECTED },
    { name: 'too large', setup: () => {}, msg: append(2, START, MAX_APPEND_BYTES + 1), code: ProtocolErrorCodes.TOO_LARGE },
    {
      name: 'endLsn does not match the bytes',
      setup: () => {},
      msg: { kind: 'AppendRequest', term: term(2), beginLsn: lsn(START), endLsn: lsn(START + 5), commitLsn: lsn(0), truncateLsn: lsn(0), wal: new Uint8Array(3) },
      code: ProtocolErrorCodes.TOO_LARGE,
    },
  ];
  for (const c of cases) {
    const s = leaderConnection(2, history, START);
    c.setup(s);
    t.equal(closedWith(run(s, { kind: 'message', connId: 1, message: c.msg })), c.code, c.name);
  }
  const notElected = greeted();
  run(notElected, { kind: 'message', connId: 1, message: { kind: 'VoteRequest', term: term(2) } });
  t.equal(closedWith(run(notElected, { kind: 'message', connId: 1, message: append(2, START, 10) })), ProtocolErrorCodes.NOT_ELECTED, 'before ProposerElected');
});

t.test('append: the response waits for the flush and one response covers a flush', async (t) => {
  const s = leaderConnection(2, h([2, START]), START);
  const a = acceptorStep(s, { kind: 'message', connId: 1, message: append(2, START, 10, 0) });
  t.same(a.map((e) => e.kind), ['writeWal', 'flushWal'], 'no response before the flush');
  const b = acceptorStep(s, { kind: 'message', connId: 1, message: append(2, START + 10, 10, 0) });
  t.same(b.map((e) => e.kind), ['writeWal'], 'one flush in flight at a time');
  const first = acceptorStep(s, { kind: 'walFlushed', epoch: s.walEpoch, flushLsn: lsn(START + 10) });
  t.same(first.map((e) => e.kind), ['flushWal'], 'partial flush: the response covering the second append waits');
  const second = acceptorStep(s, { kind: 'walFlushed', epoch: s.walEpoch, flushLsn: lsn(START + 20) });
  t.match(sent(second), [{ kind: 'AppendResponse', term: 2, flushLsn: START + 20 }]);
  t.equal(sent(second).length, 1, 'one response for both appends');
});

t.test('append: commitLsn is the leader commit capped at our flushLsn, never backwards', async (t) => {
  const s = leaderConnection(2, h([2, START]), START);
  run(s, { kind: 'message', connId: 1, message: append(2, START, 100, START + 50) });
  t.equal(s.commitLsn, START + 50);
  run(s, { kind: 'message', connId: 1, message: append(2, START + 100, 0, START + 500) });
  t.equal(s.commitLsn, START + 100, 'capped at flushLsn');
  run(s, { kind: 'message', connId: 1, message: append(2, START + 100, 100, START + 20) });
  t.equal(s.commitLsn, START + 200, 'the earlier, higher commit applies once flushed; a lower one never lowers it');
});

t.test('ackBeforeFlush fault acknowledges unflushed WAL (for the simulator to catch)', async (t) => {
  const s = greeted({}, START, { ackBeforeFlush: true });
  run(s, { kind: 'message', connId: 1, message: { kind: 'VoteRequest', term: term(1) } });
  run(s, { kind: 'message', connId: 1, message: elected(1, START, h([1, START])) });
  const fx = acceptorStep(s, { kind: 'message', connId: 1, message: append(1, START, 10) });
  t.match(sent(fx), [{ kind: 'AppendResponse', flushLsn: START + 10 }]);
});

t.test('read: served in the voted term, within durable WAL', async (t) => {
  const s = leaderConnection(2, h([1, START], [2, START + 100]), START + 100, { term: term(1), votedFor: 9, termHistory: h([1, START]) }, START + 100);
  const ok = run(s, { kind: 'message', connId: 1, message: { kind: 'ReadRequest', term: term(2), beginLsn: lsn(START), endLsn: lsn(START + 100) } });
  t.match(ok, [{ kind: 'readWal', beginLsn: START, endLsn: START + 100 }]);
  const wal = new Uint8Array(100).fill(3);
  t.match(sent(acceptorStep(s, { kind: 'walRead', connId: 1, term: term(2), beginLsn: lsn(START), wal })), [{ kind: 'ReadResponse', term: 2, beginLsn: START }]);
  const cases: { name: string; from: number; to: number; tm: number; code: string }[] = [
    { name: 'beyond flushLsn', from: START, to: START + 101, tm: 2, code: ProtocolErrorCodes.WAL_NOT_AVAILABLE },
    { name: 'below the WAL start', from: START - 1, to: START + 10, tm: 2, code: ProtocolErrorCodes.WAL_NOT_AVAILABLE },
    { name: 'older term', from: START, to: START + 10, tm: 1, code: ProtocolErrorCodes.STALE_TERM },
    { name: 'newer term', from: START, to: START + 10, tm: 3, code: ProtocolErrorCodes.TERM_NOT_VOTED },
  ];
  for (const c of cases) {
    const x = leaderConnection(2, h([1, START], [2, START + 100]), START + 100, { term: term(1), votedFor: 9, termHistory: h([1, START]) }, START + 100);
    t.equal(closedWith(run(x, { kind: 'message', connId: 1, message: { kind: 'ReadRequest', term: term(c.tm), beginLsn: lsn(c.from), endLsn: lsn(c.to) } })), c.code, c.name);
  }
  const moved = leaderConnection(2, h([1, START], [2, START + 100]), START + 100, { term: term(1), votedFor: 9, termHistory: h([1, START]) }, START + 100);
  run(moved, { kind: 'message', connId: 1, message: { kind: 'ReadRequest', term: term(2), beginLsn: lsn(START), endLsn: lsn(START + 10) } });
  moved.persistent = { ...moved.persistent, term: term(3) };
  t.equal(closedWith(acceptorStep(moved, { kind: 'walRead', connId: 1, term: term(2), beginLsn: lsn(START), wal: new Uint8Array(10) })), ProtocolErrorCodes.STALE_TERM, 'term moved while reading');
});

t.test('fence: raises minTerm durably, closes lower elected connections, refuses lower votes', async (t) => {
  const s = leaderConnection(2, h([2, START]), START);
  const fx = run(s, { kind: 'fence', minTerm: term(5) });
  t.match(fx.find((e) => e.kind === 'persistControl'), { state: { minTerm: 5 } });
  t.equal(closedWith(fx), ProtocolErrorCodes.FENCED);
  t.same(run(s, { kind: 'fence', minTerm: term(4) }), [], 'never lowered');
  run(s, { kind: 'connectionOpened', connId: 2 });
  run(s, { kind: 'message', connId: 2, message: greeting(3) });
  t.match(sent(run(s, { kind: 'message', connId: 2, message: { kind: 'VoteRequest', term: term(4) } })), [{ kind: 'VoteResponse', granted: false }]);
  t.match(sent(run(s, { kind: 'message', connId: 2, message: { kind: 'VoteRequest', term: term(5) } })), [{ kind: 'VoteResponse', granted: true, term: 5 }]);
});

t.test('peer info: commitLsn adopted only with an equal lastLogTerm, capped at our flushLsn', async (t) => {
  const mk = (): AcceptorState => acceptor({ term: term(2), termHistory: h([1, START], [2, START + 100]) }, START + 300);
  const cases: { name: string; lastLogTerm: number; commit: number; want: number }[] = [
    { name: 'same last term', lastLogTerm: 2, commit: START + 200, want: START + 200 },
    { name: 'same last term, capped', lastLogTerm: 2, commit: START + 900, want: START + 300 },
    { name: 'different last term', lastLogTerm: 3, commit: START + 200, want: START },
    { name: 'lower commit ignored', lastLogTerm: 2, commit: START - 1, want: START },
  ];
  for (const c of cases) {
    const s = mk();
    run(s, { kind: 'peerInfo', info: { nodeId: 8, term: term(2), lastLogTerm: term(c.lastLogTerm), flushLsn: lsn(START + 900), commitLsn: lsn(c.commit) } });
    t.equal(s.commitLsn, c.want, c.name);
  }
});

t.test('restore refuses WAL that ends below the persisted commitLsn', async (t) => {
  t.throws(() => acceptor({ commitLsn: lsn(START + 10) }, START + 5), /below the persisted commitLsn/);
});

export type { Lsn };
