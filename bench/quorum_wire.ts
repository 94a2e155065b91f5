// Raw wire clients for the quorum benchmark: a greeting round trip (the election floor's unit) and a
// "rogue" proposer that wins a term on every safekeeper but streams its WAL to one of them only, leaving
// an uncommitted divergent tail there. The rogue runs the real pure proposer core (src/core/proposer.ts),
// so everything it sends is protocol-correct; only the transport drops AppendRequests to the others.

import WebSocket from 'ws';
import type { Lsn } from '../src/lsn.js';
import { proposerInit, proposerStep, type ProposerEffect, type ProposerInput } from '../src/core/proposer.js';
import { PROTOCOL_VERSION, type AcceptorMessage } from '../src/core/protocol_messages.js';
import { decodeAcceptorMessage, encodeProposerMessage, MAX_FRAME_BYTES } from '../src/protocol/wire_codec.js';
import { randomProposerId } from '../src/proposer/proposer_client.js';

export interface TimelineIdentity {
  readonly tenantId: string;
  readonly timelineId: string;
  readonly systemId: bigint;
  readonly pgVersion: number;
  readonly segmentSizeBytes: number;
}

function openSocket(url: string, timeoutMs: number): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: MAX_FRAME_BYTES });
    ws.binaryType = 'nodebuffer';
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`connect to ${url} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    ws.once('open', () => {
      clearTimeout(timer);
      resolve(ws);
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

function closeSocket(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve();
  return new Promise((resolve) => {
    ws.once('close', () => resolve());
    if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
    else ws.close(1000, 'bench done');
    setTimeout(() => ws.terminate(), 1000).unref();
  });
}

/**
 * One ProposerGreeting -> AcceptorGreeting round trip on an already open connection, in microseconds
 * (connection set-up is not timed). A greeting is allowed once per connection, so each sample is a new one.
 */
export async function greetingRoundTripUs(url: string, id: TimelineIdentity, timeoutMs = 5000): Promise<number> {
  const ws = await openSocket(url, timeoutMs);
  try {
    const frame = encodeProposerMessage({
      kind: 'ProposerGreeting',
      protocolVersion: PROTOCOL_VERSION,
      proposerId: randomProposerId(),
      tenantId: id.tenantId,
      timelineId: id.timelineId,
      systemId: id.systemId,
      pgVersion: id.pgVersion,
      segmentSizeBytes: id.segmentSizeBytes,
    });
    const reply = new Promise<bigint>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no AcceptorGreeting from ${url} within ${timeoutMs} ms`)), timeoutMs);
      ws.once('message', (data: Buffer) => {
        const t1 = process.hrtime.bigint();
        clearTimeout(timer);
        const m = decodeAcceptorMessage(data);
        if (m.kind !== 'AcceptorGreeting') reject(new Error(`expected AcceptorGreeting, got ${m.kind}${m.kind === 'Error' ? ` ${m.code}: ${m.message}` : ''}`));
        else resolve(t1);
      });
      ws.once('close', () => reject(new Error(`${url} closed before answering the greeting`)));
    });
    const t0 = process.hrtime.bigint();
    ws.send(frame, { binary: true });
    const t1 = await reply;
    return Number(t1 - t0) / 1000;
  } finally {
    await closeSocket(ws);
  }
}

export interface RogueResult {
  readonly term: number;
  readonly termStartLsn: Lsn;
  /** End of the WAL the target safekeeper acknowledged as flushed. */
  readonly endLsn: Lsn;
}

/**
 * Runs an election on every safekeeper in `urls` (all must vote), then appends `makeWal(termStartLsn)`
 * and delivers the AppendRequests to `urls[target]` only. Resolves once the target acknowledged all of it
 * as flushed, after closing every connection. Nothing it wrote can commit: one safekeeper is no quorum.
 */
export async function writeDivergentTail(
  urls: readonly string[],
  id: TimelineIdentity,
  target: number,
  makeWal: (termStartLsn: Lsn) => Uint8Array,
  timeoutMs = 10_000,
): Promise<RogueResult> {
  const core = proposerInit({ proposerId: randomProposerId(), acceptorCount: urls.length, ...id });
  const sockets: (WebSocket | null)[] = urls.map(() => null);
  const effects: ProposerEffect[] = [];
  let draining = false;
  let failure: Error | null = null;
  let termStartLsn: Lsn | null = null;
  let wantEnd: Lsn | null = null;
  let votes = 0;
  let finish!: (r: RogueResult) => void;
  let fail!: (e: Error) => void;
  const done = new Promise<RogueResult>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  done.catch(() => undefined); // may reject before it is awaited (a connect still pending)
  const abort = (e: Error) => {
    if (failure) return;
    failure = e;
    fail(e);
  };

  const step = (input: ProposerInput) => {
    if (failure) return;
    effects.push(...proposerStep(core, input));
    if (draining) return;
    draining = true;
    try {
      while (effects.length > 0) {
        const e = effects.shift()!;
        switch (e.kind) {
          case 'send': {
            if (e.message.kind === 'AppendRequest' && e.acceptor !== target) break; // the partition
            const ws = sockets[e.acceptor];
            if (ws && ws.readyState === WebSocket.OPEN) ws.send(encodeProposerMessage(e.message), { binary: true });
            break;
          }
          case 'elected':
            termStartLsn = e.termStartLsn;
            break;
          case 'committed':
            abort(new Error(`rogue proposer committed ${e.commitLsn}: its WAL reached a quorum`));
            break;
          case 'steppedDown':
            abort(new Error(`rogue proposer stepped down: ${e.reason}`));
            break;
          default:
            break;
        }
      }
    } finally {
      draining = false;
    }
  };

  const timer = setTimeout(() => abort(new Error(`rogue proposer did not finish within ${timeoutMs} ms (votes ${votes}, termStart ${termStartLsn}, want ${wantEnd})`)), timeoutMs);
  try {
    const opened = await Promise.all(urls.map((u) => openSocket(u, timeoutMs)));
    opened.forEach((ws, i) => {
      sockets[i] = ws;
      ws.on('message', (data: Buffer) => {
        let m: AcceptorMessage;
        try {
          m = decodeAcceptorMessage(data);
        } catch (err) {
          abort(err as Error);
          return;
        }
        if (m.kind === 'Error') {
          abort(new Error(`safekeeper ${i} refused the rogue proposer: ${m.code} ${m.message} (got ${m.got}, expected ${m.expected})`));
          return;
        }
        if (m.kind === 'VoteResponse' && m.granted) votes++;
        step({ kind: 'message', acceptor: i, message: m });
        // Wait for every vote so that every safekeeper got ProposerElected (its history has our term).
        if (termStartLsn !== null && wantEnd === null && votes === urls.length && !failure) {
          const wal = makeWal(termStartLsn);
          wantEnd = (termStartLsn + wal.length) as Lsn;
          step({ kind: 'appendRequested', wal });
        }
        if (m.kind === 'AppendResponse' && i === target && wantEnd !== null && m.flushLsn >= wantEnd) {
          finish({ term: core.term, termStartLsn: termStartLsn!, endLsn: m.flushLsn });
        }
      });
      ws.on('close', () => abort(new Error(`safekeeper ${i} closed the rogue proposer's connection`)));
    });
    for (let i = 0; i < urls.length; i++) step({ kind: 'connected', acceptor: i });
    return await done;
  } finally {
    clearTimeout(timer);
    failure ??= new Error('finished');
    for (const ws of sockets) ws?.removeAllListeners('close');
    await Promise.all(sockets.map((ws) => (ws ? closeSocket(ws) : Promise.resolve())));
  }
}
