// The proposer step function: term choice, election and donor, per-safekeeper start points, recovery
// reads, streaming window, commit rule (acks below the term start ignored), step-down cases; and an
// in-memory cluster of pure cores that elects, recovers a laggard and commits.
import t from 'tap';
import { lsn, type Lsn } from '../src/lsn.js';
import { term, type Term, type TermHistory } from '../src/storage/timeline_state.js';
import {
  proposerInit,
  proposerReadWal,
  proposerStep,
  type ProposerConfig,
  type ProposerEffect,
  type ProposerState,
} from '../src/core/proposer.js';
import { acceptorRestore, acceptorStep, newTimelineState, type AcceptorEffect, type AcceptorState } from '../src/core/acceptor.js';
import { ProtocolErrorCodes } from '../src/core/protocol_errors.js';
import { protocolError } from '../src/core/protocol_messages.js';
import type { AcceptorMessage, ProposerMessage } from '../src/core/protocol_messages.js';

const TENANT = 'aa'.repeat(16);
const TIMELINE = 'bb'.repeat(16);
const START = 1000;

function h(...entries: [number, number][]): TermHistory {
  return entries.map(([tm, l]) => ({ term: term(tm), lsn: lsn(l) }));
}

function config(overrides: Partial<ProposerConfig> = {}): ProposerConfig {
  return { proposerId: 11, tenantId: TENANT, timelineId: TIMELINE, systemId: 42n, pgVersion: 160004, segmentSizeBytes: 16 << 20, acceptorCount: 3, ...overrides };
}

function sends(fx: ProposerEffect[], acceptor?: number): ProposerMessage[] {
  return fx.flatMap((e) => (e.kind === 'send' && (acceptor === undefined || e.acceptor === acceptor) ? [e.message] : []));
}

function greet(p: ProposerState, k: number, tm: number, minTerm = 0): ProposerEffect[] {
  proposerStep(p, { kind: 'connected', acceptor: k });
  return proposerStep(p, { kind: 'message', acceptor: k, message: { kind: 'AcceptorGreeting', nodeId: k + 1, term: term(tm), minTerm: term(minTerm) } });
}

function vote(p: ProposerState, k: number, granted: boolean, flush: number, history: TermHistory, tm = p.term): ProposerEffect[] {
  const last = history.filter((e) => e.lsn <= flush).pop()?.term ?? 0;
  return proposerStep(p, {
    kind: 'message',
    acceptor: k,
    message: { kind: 'VoteResponse', term: tm as Term, granted, flushLsn: lsn(flush), truncateLsn: lsn(START), lastLogTerm: term(last), termHistory: history },
  });
}

function ack(p: ProposerState, k: number, flush: number, tm = p.term): ProposerEffect[] {
  return proposerStep(p, { kind: 'message', acceptor: k, message: { kind: 'AppendResponse', term: tm as Term, flushLsn: lsn(flush), durableLsn: lsn(flush), commitLsn: lsn(0) } });
}

t.test('term: one above the highest greeting term of a quorum, at least minTerm', async (t) => {
  const p = proposerInit(config());
  t.same(sends(greet(p, 0, 3)), [], 'no vote before a quorum greeted');
  const fx = greet(p, 1, 5);
  t.equal(p.term, 6);
  t.same(sends(fx), [
    { kind: 'VoteRequest', term: 6 },
    { kind: 'VoteRequest', term: 6 },
  ]);
  t.same(sends(greet(p, 2, 1)), [{ kind: 'VoteRequest', term: 6 }], 'a late greeter is asked too');
  const fenced = proposerInit(config());
  greet(fenced, 0, 3, 9);
  greet(fenced, 1, 2);
  t.equal(fenced.term, 9, 'minTerm wins when higher');
});

/** A proposer that greeted safekeepers 0..2 with term 1 (so campaigns for term 2). */
function campaigning(overrides: Partial<ProposerConfig> = {}): ProposerState {
  const p = proposerInit(config(overrides));
  greet(p, 0, 1);
  greet(p, 1, 1);
  greet(p, 2, 1);
  return p;
}

t.test('election: donor, history, start points, recovery read from the donor', async (t) => {
  const p = campaigning();
  // sk0 has term-1 WAL to START+300 (lastLogTerm 1); sk1 to START+100; the donor is sk0.
  t.same(vote(p, 1, true, START + 100, h([1, START])).filter((e) => e.kind !== 'send'), [], 'one vote is not a quorum');
  const fx = vote(p, 0, true, START + 300, h([1, START]));
  t.equal(p.phase, 'leader');
  t.equal(p.donor, 0);
  t.equal(p.termStartLsn, START + 300);
  const history = h([1, START], [2, START + 300]);
  t.same(p.termHistory, history);
  t.match(fx.find((e) => e.kind === 'elected'), { kind: 'elected', term: 2, termStartLsn: START + 300 });
  t.same(sends(fx, 0).filter((m) => m.kind === 'ProposerElected'), [{ kind: 'ProposerElected', term: 2, startLsn: START + 300, termHistory: history }], 'donor starts at its own end');
  t.same(sends(fx, 1).filter((m) => m.kind === 'ProposerElected'), [{ kind: 'ProposerElected', term: 2, startLsn: START + 100, termHistory: history }], 'laggard starts at its end');
  t.same(sends(fx, 0).filter((m) => m.kind === 'ReadRequest'), [{ kind: 'ReadRequest', term: 2, beginLsn: START + 100, endLsn: START + 300 }], 'missing WAL read from the donor');
  // Late joiner with a diverged tail of an older term gets cut back to where it agrees.
  const late = vote(p, 2, true, START + 500, h([1, START]));
  t.same(sends(late, 2).filter((m) => m.kind === 'ProposerElected'), [{ kind: 'ProposerElected', term: 2, startLsn: START + 300, termHistory: history }]);
});

t.test('election: the donor is chosen by lastLogTerm before flushLsn', async (t) => {
  const p = proposerInit(config());
  greet(p, 0, 3);
  greet(p, 1, 3);
  t.equal(p.term, 4);
  vote(p, 0, true, START + 900, h([1, START]));
  vote(p, 1, true, START + 200, h([1, START], [3, START + 100]));
  t.equal(p.phase, 'leader');
  t.equal(p.donor, 1, 'lastLogTerm 3 beats a longer term-1 log');
  t.equal(p.termStartLsn, START + 200);
  t.same(p.termHistory, h([1, START], [3, START + 100], [4, START + 200]));
  t.match(sends(proposerStep(p, { kind: 'disconnected', acceptor: 2 })), [], 'nothing to send on a disconnect');
});

t.test('recovery: read responses fill the gap and laggards stream from it', async (t) => {
  const p = campaigning({ maxAppendBytes: 64, maxReadBytes: 128 });
  vote(p, 1, true, START + 100, h([1, START]));
  const fx = vote(p, 0, true, START + 300, h([1, START]));
  t.same(sends(fx, 0).filter((m) => m.kind === 'ReadRequest'), [
    { kind: 'ReadRequest', term: 2, beginLsn: START + 100, endLsn: START + 228 },
    { kind: 'ReadRequest', term: 2, beginLsn: START + 228, endLsn: START + 300 },
  ], 'reads of at most maxReadBytes');
  const chunk = new Uint8Array(128).fill(9);
  const first = proposerStep(p, { kind: 'message', acceptor: 0, message: { kind: 'ReadResponse', term: term(2), beginLsn: lsn(START + 100), wal: chunk } });
  t.match(sends(first, 1), [{ kind: 'AppendRequest', beginLsn: START + 100, endLsn: START + 164 }, { kind: 'AppendRequest', beginLsn: START + 164, endLsn: START + 228 }], 'streams what arrived, in maxAppendBytes chunks');
  proposerStep(p, { kind: 'message', acceptor: 0, message: { kind: 'ReadResponse', term: term(2), beginLsn: lsn(START + 228), wal: new Uint8Array(72).fill(8) } });
  t.equal(p.fetch, null, 'recovery done');
  t.equal(p.wal.startLsn, START + 100);
  t.same(proposerReadWal(p, lsn(START + 226), lsn(START + 230)), new Uint8Array([9, 9, 8, 8]));
});

t.test('streaming: window and chunk size; heartbeat carries the commit point', async (t) => {
  const p = campaigning({ maxAppendBytes: 10, maxInflightAppends: 2 });
  vote(p, 0, true, START, []);
  vote(p, 1, true, START, []);
  t.equal(p.termStartLsn, START);
  const fx = proposerStep(p, { kind: 'appendRequested', wal: new Uint8Array(35) });
  t.match(fx[0], { kind: 'walAppended', beginLsn: START, endLsn: START + 35 });
  t.same(sends(fx, 0).map((m) => (m.kind === 'AppendRequest' ? [m.beginLsn - START, m.endLsn - START] : m.kind)), [[0, 10], [10, 20]], 'two in flight, 10 bytes each');
  const a0 = ack(p, 0, START + 10);
  t.same(sends(a0, 0).map((m) => (m.kind === 'AppendRequest' ? [m.beginLsn - START, m.endLsn - START] : m.kind)), [[20, 30]]);
  const c = ack(p, 1, START + 10);
  t.match(c.find((e) => e.kind === 'committed'), { commitLsn: START + 10 });
  ack(p, 0, START + 30);
  ack(p, 0, START + 35);
  ack(p, 1, START + 20);
  ack(p, 1, START + 35);
  t.equal(p.commitLsn, START + 35);
  const idle = ack(p, 0, START + 35);
  t.same(sends(idle), [], 'nothing new to say');
});

t.test('commit: acknowledgements below the term start do not count', async (t) => {
  const p = campaigning();
  vote(p, 0, true, START + 300, h([1, START]));
  vote(p, 1, true, START + 100, h([1, START]));
  proposerStep(p, { kind: 'message', acceptor: 0, message: { kind: 'ReadResponse', term: term(2), beginLsn: lsn(START + 100), wal: new Uint8Array(200) } });
  proposerStep(p, { kind: 'appendRequested', wal: new Uint8Array(50) });
  t.same(ack(p, 1, START + 250).filter((e) => e.kind === 'committed'), [], 'one ack');
  t.same(ack(p, 0, START + 300).filter((e) => e.kind === 'committed'), [], 'a quorum, but one ack is below the term start');
  t.match(ack(p, 1, START + 320).filter((e) => e.kind === 'committed'), [{ commitLsn: START + 300 }], 'term start reached by a quorum');
  t.match(ack(p, 0, START + 350).filter((e) => e.kind === 'committed'), [{ commitLsn: START + 320 }]);
  t.match(ack(p, 1, START + 350).filter((e) => e.kind === 'committed'), [{ commitLsn: START + 350 }]);
  ack(p, 0, START + 340);
  t.equal(p.commitLsn, START + 350, 'never backwards');
});

t.test('step down: table', async (t) => {
  const cases: { name: string; act: (p: ProposerState) => ProposerEffect[]; stops: boolean }[] = [
    { name: 'vote response with a higher term', act: (p) => vote(p, 0, false, START, [], 7), stops: true },
    { name: 'vote refused in our term before we are elected', act: (p) => vote(p, 0, false, START, [], 2), stops: true },
    { name: 'STALE_TERM error', act: (p) => proposerStep(p, { kind: 'message', acceptor: 0, message: protocolError(ProtocolErrorCodes.STALE_TERM, term(5), 'stale', 2, 5) }), stops: true },
    { name: 'FENCED error', act: (p) => proposerStep(p, { kind: 'message', acceptor: 0, message: protocolError(ProtocolErrorCodes.FENCED, term(2), 'fenced', 2, 3) }), stops: true },
    { name: 'WAL_GAP error: only the connection closes', act: (p) => proposerStep(p, { kind: 'message', acceptor: 0, message: protocolError(ProtocolErrorCodes.WAL_GAP, term(2), 'gap', 5, 6) }), stops: false },
    { name: 'disconnect', act: (p) => proposerStep(p, { kind: 'disconnected', acceptor: 0 }), stops: false },
  ];
  for (const c of cases) {
    const p = campaigning();
    const fx = c.act(p);
    t.equal(p.phase === 'stopped', c.stops, c.name);
    t.equal(fx.some((e) => e.kind === 'steppedDown'), c.stops, `${c.name}: effect`);
    if (c.stops) t.same(proposerStep(p, { kind: 'appendRequested', wal: new Uint8Array(3) }), [], `${c.name}: inert afterwards`);
  }
  const leader = campaigning();
  vote(leader, 0, true, START, []);
  vote(leader, 1, true, START, []);
  ack(leader, 0, START, 9);
  t.equal(leader.phase, 'stopped', 'append response with a higher term');
});

t.test('a safekeeper that voted for a losing proposer in our term still follows us', async (t) => {
  const p = campaigning();
  vote(p, 0, true, START, []);
  vote(p, 1, true, START, []);
  const fx = vote(p, 2, false, START, [], 2);
  t.equal(p.phase, 'leader');
  t.match(sends(fx, 2), [{ kind: 'ProposerElected', term: 2, startLsn: START }]);
});

t.test('WAL appended while campaigning goes to the term start', async (t) => {
  const p = campaigning();
  proposerStep(p, { kind: 'appendRequested', wal: new Uint8Array(5) });
  vote(p, 0, true, START + 40, h([1, START]));
  const fx = vote(p, 1, true, START + 40, h([1, START]));
  t.match(fx.filter((e) => e.kind === 'walAppended'), [{ beginLsn: START + 40, endLsn: START + 45 }]);
});

t.test('quorum lost and regained are reported once each', async (t) => {
  const p = campaigning();
  vote(p, 0, true, START, []);
  vote(p, 1, true, START, []);
  t.match(proposerStep(p, { kind: 'disconnected', acceptor: 0 }), [{ kind: 'quorumLost' }]);
  t.same(proposerStep(p, { kind: 'disconnected', acceptor: 1 }).filter((e) => e.kind === 'quorumLost'), []);
  greet(p, 0, 2);
  const back = vote(p, 0, true, START, h([2, START]));
  t.match(back.filter((e) => e.kind === 'quorumRegained' || e.kind === 'quorumLost'), []);
  greet(p, 1, 2);
  t.match(vote(p, 1, true, START, h([2, START])).filter((e) => e.kind === 'quorumRegained'), [{ kind: 'quorumRegained' }]);
});

// ---- An in-memory cluster of pure cores with a synchronous, perfectly ordered driver. ----

class MiniCluster {
  readonly acceptors: AcceptorState[] = [];
  readonly wal: Uint8Array[] = [];
  readonly proposer: ProposerState;
  readonly committed: Lsn[] = [];
  private readonly queue: (() => void)[] = [];

  constructor(walPerAcceptor: { history: TermHistory; bytes: Uint8Array; term: number }[]) {
    walPerAcceptor.forEach((a, i) => {
      const base = newTimelineState({ tenantId: TENANT, timelineId: TIMELINE, timelineStartLsn: lsn(START), segmentSizeBytes: 16 << 20 });
      this.acceptors.push(acceptorRestore({ nodeId: i + 1 }, { ...base, term: term(a.term), termHistory: a.history }, lsn(START + a.bytes.length)));
      this.wal.push(a.bytes.slice());
    });
    this.proposer = proposerInit(config({ acceptorCount: walPerAcceptor.length, maxAppendBytes: 16, maxReadBytes: 32 }));
  }

  connect(k: number): void {
    this.toAcceptor(k, { kind: 'connectionOpened', connId: 1 });
    this.toProposer({ kind: 'connected', acceptor: k });
  }

  append(bytes: Uint8Array): void {
    this.toProposer({ kind: 'appendRequested', wal: bytes });
  }

  run(): void {
    while (this.queue.length > 0) this.queue.shift()!();
  }

  private toProposer(input: Parameters<typeof proposerStep>[1]): void {
    for (const e of proposerStep(this.proposer, input)) {
      if (e.kind === 'send') this.queue.push(() => this.toAcceptor(e.acceptor, { kind: 'message', connId: 1, message: e.message }));
      if (e.kind === 'committed') this.committed.push(e.commitLsn);
    }
  }

  private toAcceptor(k: number, input: Parameters<typeof acceptorStep>[1]): void {
    const s = this.acceptors[k]!;
    const effects: AcceptorEffect[] = [...acceptorStep(s, input)];
    while (effects.length > 0) {
      const e = effects.shift()!;
      switch (e.kind) {
        case 'writeWal': {
          const off = e.lsn - START;
          const w = this.wal[k]!;
          const grown = new Uint8Array(Math.max(w.length, off + e.wal.length));
          grown.set(w.subarray(0, off));
          grown.set(e.wal, off);
          this.wal[k] = grown.subarray(0, off + e.wal.length);
          break;
        }
        case 'truncateWal':
          this.wal[k] = this.wal[k]!.subarray(0, e.lsn - START);
          break;
        case 'flushWal':
          effects.push(...acceptorStep(s, { kind: 'walFlushed', epoch: e.epoch, flushLsn: lsn(START + this.wal[k]!.length) }));
          break;
        case 'persistControl':
          effects.push(...acceptorStep(s, { kind: 'controlPersisted', seq: e.seq }));
          break;
        case 'readWal':
          effects.push(...acceptorStep(s, { kind: 'walRead', connId: e.connId, term: e.term, beginLsn: e.beginLsn, wal: this.wal[k]!.slice(e.beginLsn - START, e.endLsn - START) }));
          break;
        case 'send': {
          const msg: AcceptorMessage = e.message;
          this.queue.push(() => this.toProposer({ kind: 'message', acceptor: k, message: msg }));
          break;
        }
        case 'closeConnection':
          throw new Error(`acceptor ${k} closed the connection: ${e.error?.code} ${e.error?.message}`);
      }
    }
  }
}

t.test('in-memory cluster: elect, cut a diverged tail, recover a laggard from the donor, commit', async (t) => {
  const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);
  // Term 1 wrote 100 bytes (all hold 60 of them); term 2's leader wrote 40 more on sk0 only, and sk2 holds
  // a term-1 tail [60, 100) that term 2 never had. sk1 is the laggard.
  const common = bytes(60, 1);
  const sk0 = new Uint8Array([...common, ...bytes(40, 2)]);
  const sk1 = common.slice(0, 30);
  const sk2 = new Uint8Array([...common, ...bytes(40, 1)]);
  const c = new MiniCluster([
    { history: h([1, START], [2, START + 60]), bytes: sk0, term: 2 },
    { history: h([1, START]), bytes: sk1, term: 1 },
    { history: h([1, START]), bytes: sk2, term: 1 },
  ]);
  for (let k = 0; k < 3; k++) c.connect(k);
  c.run();
  t.equal(c.proposer.phase, 'leader');
  t.equal(c.proposer.term, 3);
  t.equal(c.proposer.donor, 0, 'the safekeeper with lastLogTerm 2 is the donor, although sk2 is as long');
  c.append(bytes(50, 3));
  c.run();
  const expected = new Uint8Array([...sk0, ...bytes(50, 3)]);
  for (let k = 0; k < 3; k++) t.same(c.wal[k], expected, `sk${k} holds the leader's WAL`);
  t.equal(c.proposer.commitLsn, START + 150);
  t.same(c.committed, [...c.committed].sort((a, b) => a - b), 'commit reports increase');
  for (const a of c.acceptors) t.equal(a.commitLsn, START + 150, 'commitLsn reached every safekeeper');
});
