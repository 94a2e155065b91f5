// The networked Proposer against three in-process fake safekeepers: the pure acceptor core behind a real
// `ws` server on 127.0.0.1, effects executed in order against in-memory storage (flushes can be held).
// Election, quorum commit, safekeepers killed and restarted, a stale proposer stepping down.
import t, { type Test } from 'tap';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  acceptorRestore,
  acceptorStep,
  newTimelineState,
  type AcceptorEffect,
  type AcceptorInput,
  type AcceptorState,
} from '../src/core/acceptor.js';
import { decodeProposerMessage, encodeAcceptorMessage } from '../src/protocol/wire_codec.js';
import { WalDecoder } from '../src/native.js';
import { formatLsn, lsn, type Lsn } from '../src/lsn.js';
import type { TimelinePersistentState } from '../src/storage/timeline_state.js';
import { Proposer, type ProposerOptions } from '../src/proposer/proposer_client.js';
import { ProposerErrorCodes } from '../src/proposer/proposer_errors.js';
import { reconnectDelayMs } from '../src/proposer/reconnect_backoff.js';
import { WalGenerator } from '../src/wal/wal_generator.js';

const TENANT_ID = '3aa8fcc61f6d357410b7de754b1d9001';
const TIMELINE_ID = 'de200bd42b49cc1814412c7e592dd6e9';
const SYSTEM_ID = 7_312_001_234_567_890_123n;
const PG_VERSION = 150_004;
const SEGMENT_SIZE = 16 << 20;
const TIMELINE_START = lsn(0x0100_0000);

/** One safekeeper: the acceptor core, its effect FIFO, in-memory durable state, a ws server. */
class FakeSafekeeper {
  core: AcceptorState | null = null;
  /** Durable control file. */
  control: TimelinePersistentState;
  /** WAL bytes from TIMELINE_START; [0, flushLsn) durable, [flushLsn, writeLsn) written only. */
  private wal = Buffer.alloc(1 << 20);
  writeLsn: Lsn = TIMELINE_START;
  flushLsn: Lsn = TIMELINE_START;
  port = 0;
  private server: WebSocketServer | null = null;
  private readonly sockets = new Map<number, WebSocket>();
  private nextConnId = 1;
  private fifo: AcceptorEffect[] = [];
  private busy = false;
  private incarnation = 0;
  /** While true, flushes do not complete (a stalled disk); release() lets the held one finish. */
  holdFlushes = false;
  private heldFlush: (() => void) | null = null;
  appendsReceived = 0;
  connectionsAccepted = 0;
  /** Validates every written byte, like the real store; its endLsn is the last complete record's end. */
  private decoder: WalDecoder | null = null;
  readonly invalid: string[] = [];

  /**
   * recordAlignedFlush: report the end of the last complete record as flushLsn (the real WalStore's
   * contract); otherwise the byte end of what was written (the simulator's disk). SK_FAKE_BYTE_FLUSH=1
   * switches every fake to byte ends.
   */
  constructor(readonly nodeId: number, readonly recordAlignedFlush = process.env.SK_FAKE_BYTE_FLUSH !== '1') {
    this.control = newTimelineState({ tenantId: TENANT_ID, timelineId: TIMELINE_ID, timelineStartLsn: TIMELINE_START, segmentSizeBytes: SEGMENT_SIZE });
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/v1/wal`;
  }

  get up(): boolean {
    return this.core !== null;
  }

  async start(): Promise<void> {
    this.incarnation++;
    this.core = acceptorRestore({ nodeId: this.nodeId }, this.control, this.flushLsn);
    this.decoder = new WalDecoder({ startLsn: this.flushLsn, segmentSizeBytes: SEGMENT_SIZE });
    this.fifo = [];
    this.busy = false;
    const server = new WebSocketServer({ host: '127.0.0.1', port: this.port, perMessageDeflate: false });
    await once(server, 'listening');
    this.port = (server.address() as { port: number }).port;
    this.server = server;
    server.on('connection', (ws) => this.accept(ws));
  }

  /** Kill: connections drop, unflushed WAL is lost, the core and its queue vanish. */
  async stop(): Promise<void> {
    this.incarnation++;
    this.core = null;
    this.fifo = [];
    this.busy = false;
    this.heldFlush = null;
    this.writeLsn = this.flushLsn;
    for (const ws of this.sockets.values()) ws.terminate();
    this.sockets.clear();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Stops reading every open connection (no pongs, no replies), like a hung process. */
  freeze(): void {
    for (const ws of this.sockets.values()) (ws as unknown as { _socket: Socket })._socket.pause();
  }

  /** Sends a frame no decoder accepts (wrong version byte) on every open connection. */
  sendGarbage(): void {
    for (const ws of this.sockets.values()) ws.send(Buffer.from([0x7f, 0x47, 1, 2, 3]));
  }

  release(): void {
    this.holdFlushes = false;
    const f = this.heldFlush;
    this.heldFlush = null;
    f?.();
  }

  /** Durable WAL [from, to). */
  read(from: number, to: number): Buffer {
    if (to > this.flushLsn) throw new Error(`read beyond flushLsn ${formatLsn(this.flushLsn)}`);
    return Buffer.from(this.wal.subarray(from - TIMELINE_START, to - TIMELINE_START));
  }

  private accept(ws: WebSocket): void {
    const connId = this.nextConnId++;
    this.connectionsAccepted++;
    const incarnation = this.incarnation;
    this.sockets.set(connId, ws);
    this.input({ kind: 'connectionOpened', connId });
    ws.on('message', (data: Buffer) => {
      if (this.incarnation !== incarnation) return;
      let message;
      try {
        message = decodeProposerMessage(data);
      } catch {
        ws.terminate();
        return;
      }
      if (message.kind === 'AppendRequest' && message.wal.length > 0) this.appendsReceived++;
      this.input({ kind: 'message', connId, message });
    });
    ws.on('close', () => {
      if (this.incarnation !== incarnation) return;
      this.sockets.delete(connId);
      this.input({ kind: 'connectionClosed', connId });
    });
    ws.on('error', () => {});
  }

  private input(input: AcceptorInput): void {
    if (!this.core) return;
    this.fifo.push(...acceptorStep(this.core, input));
    this.pump();
  }

  /** Executes effects in order; a storage effect blocks the ones behind it until it completes. */
  private pump(): void {
    while (!this.busy && this.fifo.length > 0 && this.core) {
      this.execute(this.fifo.shift()!);
    }
  }

  private later(fn: () => void): () => void {
    const incarnation = this.incarnation;
    return () => {
      if (this.incarnation !== incarnation) return;
      this.busy = false;
      fn();
      this.pump();
    };
  }

  private execute(e: AcceptorEffect): void {
    switch (e.kind) {
      case 'send': {
        const ws = this.sockets.get(e.connId);
        if (ws && ws.readyState === ws.OPEN) ws.send(encodeAcceptorMessage(e.message));
        return;
      }
      case 'closeConnection': {
        const ws = this.sockets.get(e.connId);
        this.sockets.delete(e.connId);
        if (!ws) return;
        if (e.error && ws.readyState === ws.OPEN) ws.send(encodeAcceptorMessage(e.error));
        ws.close(1000);
        return;
      }
      case 'writeWal': {
        if (e.lsn !== this.writeLsn) throw new Error(`write at ${formatLsn(e.lsn)}, store ends at ${formatLsn(this.writeLsn)}`);
        const end = e.lsn - TIMELINE_START + e.wal.length;
        if (end > this.wal.length) {
          const bigger = Buffer.alloc(Math.max(end, this.wal.length * 2));
          this.wal.copy(bigger);
          this.wal = bigger;
        }
        this.wal.set(e.wal, e.lsn - TIMELINE_START);
        this.writeLsn = (e.lsn + e.wal.length) as Lsn;
        const r = this.decoder!.feed(Buffer.from(e.wal.buffer, e.wal.byteOffset, e.wal.byteLength));
        if (r.stop) this.invalid.push(`${r.stop.code} at ${formatLsn(r.stop.lsn)}: ${r.stop.message}`);
        return;
      }
      case 'truncateWal':
        this.busy = true;
        setImmediate(this.later(() => {
          if (this.writeLsn > e.lsn) this.writeLsn = e.lsn;
          if (this.flushLsn > e.lsn) this.flushLsn = e.lsn;
          this.decoder = new WalDecoder({ startLsn: e.lsn, segmentSizeBytes: SEGMENT_SIZE });
        }));
        return;
      case 'persistControl':
        this.busy = true;
        setImmediate(this.later(() => {
          this.control = e.state;
          this.input({ kind: 'controlPersisted', seq: e.seq });
        }));
        return;
      case 'flushWal': {
        this.busy = true;
        const done = this.later(() => {
          this.flushLsn = this.recordAlignedFlush ? (this.decoder!.endLsn as Lsn) : this.writeLsn;
          this.input({ kind: 'walFlushed', epoch: e.epoch, flushLsn: this.flushLsn, durableLsn: this.writeLsn });
        });
        if (this.holdFlushes) this.heldFlush = done;
        else setImmediate(done);
        return;
      }
      case 'readWal':
        this.busy = true;
        setImmediate(this.later(() => {
          const wal = this.read(e.beginLsn, e.endLsn);
          this.input({ kind: 'walRead', connId: e.connId, term: e.term, beginLsn: e.beginLsn, wal });
        }));
        return;
    }
  }
}

async function startCluster(t: Test, n = 3): Promise<FakeSafekeeper[]> {
  const sks: FakeSafekeeper[] = [];
  for (let i = 0; i < n; i++) {
    const sk = new FakeSafekeeper(i + 1);
    await sk.start();
    sks.push(sk);
  }
  t.teardown(async () => {
    for (const sk of sks) await sk.stop();
  });
  return sks;
}

function newProposer(t: Test, sks: FakeSafekeeper[], extra: Partial<ProposerOptions> = {}): Proposer {
  const p = new Proposer({
    safekeepers: sks.map((s) => s.url),
    tenantId: TENANT_ID,
    timelineId: TIMELINE_ID,
    systemId: SYSTEM_ID,
    pgVersion: PG_VERSION,
    segmentSizeBytes: SEGMENT_SIZE,
    reconnectMinMs: 20,
    reconnectMaxMs: 200,
    ...extra,
  });
  t.teardown(() => p.close());
  return p;
}

function newGenerator(at: Lsn = TIMELINE_START): WalGenerator {
  return new WalGenerator({ startLsn: at, segmentSizeBytes: SEGMENT_SIZE, systemId: SYSTEM_ID });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** Tracks whether a promise settled, without awaiting it. */
function track<T>(p: Promise<T>): { settled: () => boolean; value: () => T | undefined; error: () => unknown; promise: Promise<T> } {
  let settled = false;
  let value: T | undefined;
  let error: unknown;
  p.then(
    (v) => { settled = true; value = v; },
    (e: unknown) => { settled = true; error = e; },
  );
  return { settled: () => settled, value: () => value, error: () => error, promise: p };
}

/**
 * Appends WAL with at most `budgetBytes` handed over and not yet committed (128 KiB by default), the way a
 * bounded writer would. See the 'bursts' todo test for why tests stay within one append's worth.
 */
class BoundedWriter {
  readonly parts: Buffer[] = [];
  readonly results: { end: Lsn; result: ReturnType<typeof track<Lsn>> }[] = [];
  private outstanding: { bytes: number; promise: Promise<unknown> }[] = [];
  private outstandingBytes = 0;

  constructor(private readonly p: Proposer, readonly gen: WalGenerator, private readonly budgetBytes = 128 * 1024) {}

  async append(wal: Buffer): Promise<void> {
    while (this.outstanding.length > 0 && this.outstandingBytes + wal.length > this.budgetBytes) {
      const o = this.outstanding.shift()!;
      this.outstandingBytes -= o.bytes;
      await o.promise.catch(() => undefined);
    }
    this.parts.push(wal);
    const result = track(this.p.append(wal));
    this.results.push({ end: this.gen.lsn, result });
    this.outstanding.push({ bytes: wal.length, promise: result.promise });
    this.outstandingBytes += wal.length;
  }

  async drain(): Promise<void> {
    await Promise.all(this.outstanding.map((o) => o.promise.catch(() => undefined)));
    this.outstanding = [];
    this.outstandingBytes = 0;
  }
}

/** The safekeeper's durable WAL equals the stream and decodes cleanly up to `end`. */
function checkReplica(t: Test, sk: FakeSafekeeper, stream: Buffer, end: number): void {
  const got = sk.read(TIMELINE_START, end);
  t.ok(got.equals(stream.subarray(0, end - TIMELINE_START)), `sk${sk.nodeId} holds the stream byte for byte up to ${formatLsn(end)}`);
  const d = new WalDecoder({ startLsn: TIMELINE_START, segmentSizeBytes: SEGMENT_SIZE });
  const r = d.feed(got);
  t.equal(r.stop, null, `sk${sk.nodeId}: its WAL decodes with no stop`);
  t.equal(d.endLsn, end, `sk${sk.nodeId}: decoder ends at ${formatLsn(end)}`);
  t.same(sk.invalid, [], `sk${sk.nodeId}: every byte it was sent was valid WAL`);
}

t.test('reconnect delays: exponential, capped, jittered into [base/2, base]', async (t) => {
  const o = { minMs: 50, maxMs: 2000 };
  t.equal(reconnectDelayMs(0, o, 0), 25);
  t.equal(reconnectDelayMs(0, o, 0.999999), 50);
  t.equal(reconnectDelayMs(3, o, 0.999999), 400);
  t.equal(reconnectDelayMs(10, o, 0.999999), 2000);
  t.equal(reconnectDelayMs(1000, o, 0), 1000, 'no overflow for huge attempt counts');
});

t.test('election, then appends resolve with a commitLsn covering them; every safekeeper gets the WAL', async (t) => {
  const sks = await startCluster(t);
  const p = newProposer(t, sks);
  t.equal(p.state, 'campaigning');
  const committed: Lsn[] = [];
  p.on('committed', (c) => committed.push(c));
  p.start();
  const elected = await p.waitElected();
  t.equal(elected.term, 1, 'term 1 on a fresh timeline');
  t.equal(elected.termStartLsn, TIMELINE_START, 'termStartLsn = the timeline start');
  t.same(elected.termHistory, [{ term: 1, lsn: TIMELINE_START }]);
  t.equal(p.state, 'leader');
  t.equal(p.term, 1);

  const gen = newGenerator(elected.termStartLsn);
  const w = new BoundedWriter(p, gen);
  for (let i = 0; i < 300; i++) await w.append(i % 10 === 9 ? gen.chunk(100_000, { maxPayloadBytes: 30_000 }) : gen.chunk(8192));
  await w.drain();
  const parts = w.parts;
  const commits = w.results.map((r) => r.result.value()!);
  t.ok(w.results.every((r) => r.result.value() !== undefined && r.result.value()! >= r.end), 'each append resolved with a commitLsn >= its end');
  t.ok(commits.every((c, i) => i === 0 || c >= commits[i - 1]!), 'resolved commitLsns never go backwards');
  t.equal(p.commitLsn, gen.lsn, 'commitLsn = end of the stream');
  t.ok(committed.every((c, i) => i === 0 || c > committed[i - 1]!), "'committed' events strictly increase");
  const stream = Buffer.concat(parts);
  await until('all safekeepers flushed everything', () => sks.every((s) => s.flushLsn === gen.lsn));
  for (const sk of sks) checkReplica(t, sk, stream, gen.lsn);
  t.ok(sks.every((s) => s.control.term === 1 && s.control.termHistory.length === 1), 'safekeepers persisted term 1 and its history');
});

t.test('an append resolves only after a majority (2 of 3) flushed it', async (t) => {
  const sks = await startCluster(t);
  const p = newProposer(t, sks);
  p.start();
  const { termStartLsn } = await p.waitElected();
  const gen = newGenerator(termStartLsn);
  t.equal(await p.append(gen.chunk(8192)), gen.lsn, 'a first append commits');

  sks[1]!.holdFlushes = true;
  sks[2]!.holdFlushes = true;
  const wal = gen.chunk(8192);
  const a = track(p.append(wal));
  await until('sk1 flushed the append', () => sks[0]!.flushLsn === gen.lsn);
  await until('sk2 and sk3 received it', () => sks[1]!.writeLsn === gen.lsn && sks[2]!.writeLsn === gen.lsn);
  await sleep(100);
  t.notOk(a.settled(), 'one flush of three: the append is not resolved');
  t.ok(p.commitLsn < gen.lsn, 'commitLsn did not move');

  sks[1]!.release();
  const c = await a.promise;
  t.equal(c, gen.lsn, 'two flushes of three: resolved with commitLsn = its end');
  t.ok(sks[2]!.flushLsn < gen.lsn, 'while sk3 still holds its flush');
  sks[2]!.release();
  await until('sk3 catches up', () => sks[2]!.flushLsn === gen.lsn);
});

t.test('appends made before the election are placed at termStartLsn, in order', async (t) => {
  const sks = await startCluster(t);
  const p = newProposer(t, sks);
  // A fresh timeline's first leader starts at the timeline start, so the WAL can be made in advance.
  const gen = newGenerator(TIMELINE_START);
  const early = [gen.chunk(3000), gen.chunk(20_000), gen.chunk(100)];
  const ends = [0, 0, 0].map((_, i) => TIMELINE_START + early.slice(0, i + 1).reduce((n, b) => n + b.length, 0));
  const results = early.map((w) => track(p.append(w)));
  await sleep(20);
  t.notOk(results.some((r) => r.settled()), 'nothing resolves before start()');
  p.start();
  const values = await Promise.all(results.map((r) => r.promise));
  t.ok(values.every((v, i) => v >= ends[i]!), 'each resolves with a commitLsn covering its place');
  t.equal(p.commitLsn, gen.lsn);
  await until('replicas flushed', () => sks.every((s) => s.flushLsn === gen.lsn));
  for (const sk of sks) checkReplica(t, sk, Buffer.concat(early), gen.lsn);
});

t.test('one safekeeper killed: appends still commit; two killed: they stall and quorumLost; restart: resume', async (t) => {
  const sks = await startCluster(t);
  const p = newProposer(t, sks);
  const events: string[] = [];
  p.on('quorumLost', () => events.push('quorumLost'));
  p.on('quorumRegained', () => events.push('quorumRegained'));
  p.start();
  const { termStartLsn } = await p.waitElected();
  const gen = newGenerator(termStartLsn);
  const parts: Buffer[] = [];
  const append = (bytes = 8192) => {
    const w = gen.chunk(bytes);
    parts.push(w);
    return p.append(w);
  };
  for (let i = 0; i < 20; i++) await append();

  await sks[2]!.stop();
  let short = 0;
  for (let i = 0; i < 20; i++) if ((await append()) < gen.lsn) short++;
  t.equal(short, 0, 'with one of three down, appends commit');
  t.equal(p.commitLsn, gen.lsn);
  t.same(events, [], 'no quorum event with two of three up');

  await sks[1]!.stop();
  const stalled = [track(append()), track(append(50_000))];
  await until('quorumLost', () => events.includes('quorumLost'));
  await sleep(200);
  t.notOk(stalled.some((s) => s.settled()), 'with two of three down, appends stall');
  t.equal(p.state, 'leader', 'still the leader: losing connections is not a step-down');

  await sks[1]!.start();
  const values = await Promise.all(stalled.map((s) => s.promise));
  t.equal(values[1], gen.lsn, 'after one restart, the stalled appends commit');
  t.same(events, ['quorumLost', 'quorumRegained']);

  await sks[2]!.start();
  for (let i = 0; i < 5; i++) await append();
  await until('all three caught up', () => sks.every((s) => s.flushLsn === gen.lsn), 20_000);
  const stream = Buffer.concat(parts);
  for (const sk of sks) checkReplica(t, sk, stream, gen.lsn);
  t.equal(p.term, 1, 'no new term was needed');
});

t.test('a second proposer wins a higher term: the first steps down and rejects its pending appends', async (t) => {
  const sks = await startCluster(t);
  const p1 = newProposer(t, sks);
  p1.start();
  const e1 = await p1.waitElected();
  const gen = newGenerator(e1.termStartLsn);
  const stream1: Buffer[] = [];
  for (let i = 0; i < 10; i++) {
    stream1.push(gen.chunk(8192));
    await p1.append(stream1[i]!);
  }
  let reason: string | null = null;
  p1.on('steppedDown', (r) => (reason = r));

  // p1 keeps streaming (appends in flight, not awaited) while p2 campaigns.
  const writer = new BoundedWriter(p1, gen);
  const writing = (async () => {
    for (let i = 0; i < 400 && p1.state === 'leader'; i++) await writer.append(gen.chunk(16 * 1024, { maxPayloadBytes: 4000 }));
  })();
  const inflight = writer.results;
  await until('p1 streamed a while', () => inflight.length > 20);
  const p2 = newProposer(t, sks);
  p2.start();
  const e2 = await p2.waitElected();
  t.equal(e2.term, 2, 'p2 is elected in term 2');
  // Whatever p1 still had in flight, one more append after p2's election cannot commit in term 1.
  await writing;
  const late = track(p1.append(gen.chunk(8192)));
  await writer.drain();
  await late.promise.catch(() => undefined);
  stream1.push(...writer.parts);
  t.equal(p1.state, 'stopped', 'p1 stepped down');
  t.ok(reason !== null && /term 2|STALE_TERM|refused/.test(reason), `'steppedDown' emitted: ${reason}`);
  t.equal((late.error() as { code?: string } | undefined)?.code, ProposerErrorCodes.STEPPED_DOWN, 'the pending append rejects with SK_PROPOSER_STEPPED_DOWN');

  // Appends that resolved are a prefix; the rest rejected with SK_PROPOSER_STEPPED_DOWN.
  const resolved = inflight.filter((a) => a.result.value() !== undefined);
  const rejected = inflight.filter((a) => a.result.error() !== undefined);
  t.equal(resolved.length + rejected.length, inflight.length, 'every in-flight append settled');
  t.ok(resolved.every((a, i) => a === inflight[i]), `the ${resolved.length} resolved appends are a prefix`);
  t.ok(rejected.every((a) => (a.result.error() as { code?: string }).code === ProposerErrorCodes.STEPPED_DOWN), `the ${rejected.length} others rejected with SK_PROPOSER_STEPPED_DOWN`);
  t.ok(rejected.length > 0 || resolved.length === inflight.length, 'some were still pending when p1 learned it was deposed');
  // Nothing acknowledged to p1's application is lost: p2's term starts at or after it.
  const lastAcked = resolved.length > 0 ? resolved[resolved.length - 1]!.result.value()! : gen.lsn;
  if (resolved.length > 0) t.ok(e2.termStartLsn >= lastAcked, `p2's term starts at ${formatLsn(e2.termStartLsn)}, at or after p1's last acknowledged commit ${formatLsn(lastAcked)}`);
  t.same(e2.termHistory, [{ term: 1, lsn: TIMELINE_START }, { term: 2, lsn: e2.termStartLsn }]);
  await t.rejects(p1.append(gen.chunk(100)), { code: ProposerErrorCodes.STEPPED_DOWN }, 'later appends reject at once');
  await t.rejects(p1.waitElected(), { code: ProposerErrorCodes.STEPPED_DOWN });

  // p2 continues the WAL where its term starts (a record boundary of p1's stream).
  const p1Wal = Buffer.concat(stream1);
  const d = new WalDecoder({ startLsn: TIMELINE_START, segmentSizeBytes: SEGMENT_SIZE });
  d.feed(p1Wal.subarray(0, e2.termStartLsn - TIMELINE_START));
  t.equal(d.endLsn, e2.termStartLsn, "p2's termStartLsn is a record boundary of p1's stream");
  const gen2 = WalGenerator.resume({ lsn: e2.termStartLsn, prevLsn: d.lastRecordStart as Lsn, segmentSizeBytes: SEGMENT_SIZE, systemId: SYSTEM_ID });
  const w2 = gen2.chunk(300_000, { maxPayloadBytes: 20_000 });
  t.equal(await p2.append(w2), gen2.lsn, "p2's appends commit");
  await until('replicas flushed', () => sks.every((s) => s.flushLsn === gen2.lsn));
  const stream = Buffer.concat([p1Wal.subarray(0, e2.termStartLsn - TIMELINE_START), w2]);
  for (const sk of sks) checkReplica(t, sk, stream, gen2.lsn);
});

t.test('an idle deposed proposer learns it on its next append', async (t) => {
  const sks = await startCluster(t);
  const p1 = newProposer(t, sks);
  p1.start();
  const e1 = await p1.waitElected();
  const gen = newGenerator(e1.termStartLsn);
  await p1.append(gen.chunk(8192));
  const p2 = newProposer(t, sks);
  p2.start();
  await p2.waitElected();
  t.equal(p1.state, 'leader', 'p1 has not heard of term 2 yet (nothing tells an idle leader)');
  const err = await p1.append(gen.chunk(8192)).then(() => null, (e: { code?: string }) => e);
  t.equal(err?.code, ProposerErrorCodes.STEPPED_DOWN, 'its next append is refused with a stale term: SK_PROPOSER_STEPPED_DOWN');
  t.equal(p1.state, 'stopped');
});

t.test('close() rejects pending appends with SK_PROPOSER_CLOSED', async (t) => {
  const sks = await startCluster(t);
  const p = newProposer(t, sks);
  p.start();
  const { termStartLsn } = await p.waitElected();
  for (const sk of sks) sk.holdFlushes = true;
  const gen = newGenerator(termStartLsn);
  const a = t.rejects(p.append(gen.chunk(8192)), { code: ProposerErrorCodes.CLOSED });
  await p.close();
  await a;
  t.equal(p.state, 'stopped');
  await t.rejects(p.append(gen.chunk(10)), { code: ProposerErrorCodes.CLOSED });
  for (const sk of sks) sk.release();
});

t.test('a proposer started while safekeepers are down connects when they come up', async (t) => {
  const sks = await startCluster(t);
  for (const sk of sks) await sk.stop();
  const p = newProposer(t, sks);
  p.start();
  await sleep(150);
  t.equal(p.term, 0, 'no term without a quorum of greetings');
  await sks[0]!.start();
  await sks[2]!.start();
  const e = await p.waitElected();
  t.equal(e.term, 1);
  const gen = newGenerator(e.termStartLsn);
  t.equal(await p.append(gen.chunk(8192)), gen.lsn);
  await sks[1]!.start();
  await until('the late safekeeper catches up', () => sks[1]!.flushLsn === gen.lsn);
});

t.test('a connection that stops answering pings, or sends an undecodable frame, is dropped and re-established', async (t) => {
  const sks = await startCluster(t);
  const p = newProposer(t, sks, { keepaliveIntervalMs: 100 });
  p.start();
  const { termStartLsn } = await p.waitElected();
  const gen = newGenerator(termStartLsn);
  await p.append(gen.chunk(8192));

  const before0 = sks[0]!.connectionsAccepted;
  sks[0]!.freeze();
  t.equal(await p.append(gen.chunk(8192)), gen.lsn, 'appends commit on the other two meanwhile');
  await until('a new connection to the hung safekeeper', () => sks[0]!.connectionsAccepted > before0, 5000);
  t.pass('no pong within the keepalive interval: the connection was dropped and re-established');

  const before1 = sks[1]!.connectionsAccepted;
  sks[1]!.sendGarbage();
  await until('a new connection after the bad frame', () => sks[1]!.connectionsAccepted > before1, 5000);
  t.pass('an undecodable frame: the connection was dropped and re-established');

  t.equal(await p.append(gen.chunk(8192)), gen.lsn, 'appends keep committing');
  await until('every safekeeper caught up', () => sks.every((s) => s.flushLsn === gen.lsn));
  t.equal(p.term, 1, 'same term throughout');
  t.equal(p.state, 'leader');
});

// Regression: the acceptor core used to hold an AppendResponse (and a VoteResponse) until flushLsn >=
// writeLsn, while the real WalStore reports flushLsn = end of the last complete record. The proposer cuts
// its stream into 128 KiB AppendRequests regardless of record boundaries, so with more than
// maxInflightAppends pieces outstanding the last one ended mid-record, no acknowledgement was released and
// the window never reopened; a proposer that died with a partial record left the votes held too. Held
// replies now wait for the durable bytes (durableLsn), and the window is freed by them.
t.test('bursts beyond the in-flight window, with record-aligned flushLsn (real WalStore contract)', async (t) => {
  const sks = await startCluster(t);
  const p1 = newProposer(t, sks);
  p1.start();
  const { termStartLsn } = await p1.waitElected();
  const gen = newGenerator(termStartLsn);
  const burst = track(p1.append(gen.chunk(2 << 20, { maxPayloadBytes: 30_000 })));
  await Promise.race([burst.promise, sleep(3000)]);
  const where = sks.map((s) => `sk${s.nodeId} write ${formatLsn(s.writeLsn)} flush ${formatLsn(s.flushLsn)}`).join(', ');
  t.ok(burst.settled(), `a 2 MiB append commits within 3 s (${where})`);
  await p1.close();
  const p2 = newProposer(t, sks);
  p2.start();
  const elected = track(p2.waitElected());
  await Promise.race([elected.promise, sleep(3000)]);
  t.ok(elected.settled(), 'a new proposer is elected although the safekeepers hold a partial record');
});
