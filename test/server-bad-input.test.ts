// A real safekeeper process fed bad input over its WebSocket and HTTP ports: every case gets a typed
// error (got/expected) and a closed connection, and the server and its other connections carry on.
import t from 'tap';
import WebSocket from 'ws';
import { decodeAcceptorMessage, encodeProposerMessage } from '../src/protocol/wire_codec.js';
import { PROTOCOL_VERSION, type AcceptorMessage, type ProposerMessage } from '../src/core/protocol_messages.js';
import { SafekeeperProcess } from './helpers/safekeeper_process.js';
import { lsn } from '../src/lsn.js';
import { term } from '../src/storage/timeline_state.js';

const sk = new SafekeeperProcess(1);
t.before(async () => {
  await sk.start();
  const created = await sk.api('POST', '/v1/tenant/t1/timeline/tl1', {});
  if (created.status !== 201) throw new Error(`create failed: ${JSON.stringify(created)}`);
});
t.teardown(() => sk.stop());

const greeting: ProposerMessage = {
  kind: 'ProposerGreeting', protocolVersion: PROTOCOL_VERSION, proposerId: 42, tenantId: 't1', timelineId: 'tl1',
  systemId: 7n, pgVersion: 150020, segmentSizeBytes: 16 * 1024 * 1024,
};

/** Opens a connection, sends the frames, and collects what comes back until the server closes. */
function exchange(frames: (Buffer | string)[], waitMs = 1500): Promise<{ messages: AcceptorMessage[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(sk.wsUrl);
    const messages: AcceptorMessage[] = [];
    let closed = false;
    const timer = setTimeout(() => { ws.terminate(); resolve({ messages, closed }); }, waitMs);
    ws.on('open', () => { for (const f of frames) ws.send(f); });
    ws.on('message', (data: Buffer) => messages.push(decodeAcceptorMessage(data)));
    ws.on('close', () => { closed = true; clearTimeout(timer); resolve({ messages, closed }); });
    ws.on('error', reject);
  });
}

const errorOf = (r: { messages: AcceptorMessage[] }) => r.messages.find((m) => m.kind === 'Error') as (AcceptorMessage & { kind: 'Error' }) | undefined;

t.test('malformed, truncated and oversized frames: typed error, connection closed', async (t) => {
  const cases: [string, Buffer | string, string][] = [
    ['empty frame', Buffer.alloc(0), 'SK_PROTO_MALFORMED'],
    ['wrong version', Buffer.from([99, 0x67]), 'SK_PROTO_VERSION'],
    ['unknown tag', Buffer.from([PROTOCOL_VERSION, 0x7a]), 'SK_PROTO_MALFORMED'],
    ['truncated greeting', encodeProposerMessage(greeting).subarray(0, 20), 'SK_PROTO_MALFORMED'],
    ['trailing bytes', Buffer.concat([encodeProposerMessage(greeting), Buffer.from([1])]), 'SK_PROTO_MALFORMED'],
    ['text frame', 'hello', 'SK_PROTO_MALFORMED'],
  ];
  for (const [name, frame, code] of cases) {
    const r = await exchange([frame]);
    t.equal(errorOf(r)?.code, code, name);
    t.ok(r.closed, `${name}: closed`);
  }
  // Oversized: above the frame limit, uWS itself closes the connection.
  const big = Buffer.alloc(512 * 1024, 1);
  big[0] = PROTOCOL_VERSION;
  big[1] = 0x61;
  const r = await exchange([big]);
  t.ok(r.closed, 'oversized frame closes the connection');
});

t.test('protocol violations: typed errors with got/expected', async (t) => {
  const vote = encodeProposerMessage({ kind: 'VoteRequest', term: term(1) });
  let r = await exchange([vote]);
  t.equal(errorOf(r)?.code, 'SK_PROTO_UNEXPECTED', 'vote before greeting');
  t.equal(errorOf(r)?.expected, 'ProposerGreeting');

  r = await exchange([encodeProposerMessage({ ...greeting, tenantId: 'nope' } as ProposerMessage)]);
  t.equal(errorOf(r)?.code, 'SK_PROTO_UNKNOWN_TIMELINE', 'unknown timeline');

  r = await exchange([encodeProposerMessage({ ...greeting, protocolVersion: 9 } as ProposerMessage)]);
  t.equal(errorOf(r)?.code, 'SK_PROTO_VERSION', 'greeting with a wrong protocol version');

  const append = encodeProposerMessage({ kind: 'AppendRequest', term: term(1), beginLsn: lsn(0x100_0000), endLsn: lsn(0x100_0000), commitLsn: lsn(0), truncateLsn: lsn(0), wal: Buffer.alloc(0) });
  r = await exchange([encodeProposerMessage(greeting), append]);
  t.match(errorOf(r)?.code, /SK_PROTO_(NOT_ELECTED|STALE_TERM)/, 'append from a term that was not elected');

  const badSize = encodeProposerMessage({ kind: 'AppendRequest', term: term(1), beginLsn: lsn(0x100_0000), endLsn: lsn(0x100_0010), commitLsn: lsn(0), truncateLsn: lsn(0), wal: Buffer.alloc(8) });
  r = await exchange([encodeProposerMessage(greeting), badSize]);
  t.equal(errorOf(r)?.code, 'SK_PROTO_MALFORMED', 'endLsn - beginLsn does not match the payload');
});

t.test('the server is unaffected: a good connection works after all of that', async (t) => {
  const r = await exchange([encodeProposerMessage(greeting), encodeProposerMessage({ kind: 'VoteRequest', term: term(5) })], 800);
  t.equal(r.messages[0]?.kind, 'AcceptorGreeting');
  const vote = r.messages.find((m) => m.kind === 'VoteResponse');
  t.ok(vote && vote.kind === 'VoteResponse' && vote.granted, 'vote granted');
  const status = await sk.api('GET', '/v1/tenant/t1/timeline/tl1');
  t.equal(status.body.term, 5, 'the vote is visible in the status');
});

t.test('HTTP API: bad requests get clear errors', async (t) => {
  t.equal((await sk.api('GET', '/v1/tenant/t1/timeline/none')).status, 404);
  const bad = await sk.api('POST', '/v1/tenant/t1/timeline/x2', { segmentSizeMiB: 3 });
  t.equal(bad.status, 400);
  t.match(String(bad.body.message), /segmentSizeMiB|power of two/);
  const badLsn = await sk.api('POST', '/v1/tenant/t1/timeline/x3', { startLsn: 'zz' });
  t.equal(badLsn.status, 400);
  const badId = await sk.api('POST', '/v1/tenant/t1/timeline/' + 'x'.repeat(70), {});
  t.equal(badId.status, 400);
  const res = await fetch(`${sk.url}/v1/tenant/t1/timeline/x4`, { method: 'POST', body: '{not json' });
  t.equal(res.status, 400);
  const fence = await sk.api('POST', '/v1/tenant/t1/timeline/tl1/fence', { minTerm: -1 });
  t.equal(fence.status, 400);
  const health = await sk.api('GET', '/v1/health');
  t.equal(health.status, 200);
});

t.test('fencing raises minTerm durably; a vote below it is refused', async (t) => {
  const fenced = await sk.api('POST', '/v1/tenant/t1/timeline/tl1/fence', { minTerm: 10 });
  t.equal(fenced.status, 200);
  t.equal(fenced.body.minTerm, 10);
  const r = await exchange([encodeProposerMessage(greeting), encodeProposerMessage({ kind: 'VoteRequest', term: term(8) })], 800);
  const vote = r.messages.find((m) => m.kind === 'VoteResponse');
  const err = errorOf(r);
  t.ok((vote && vote.kind === 'VoteResponse' && !vote.granted) || err?.code === 'SK_PROTO_FENCED', 'vote below minTerm refused');
  // Restart: the fence survives.
  await sk.stop();
  await sk.start();
  const status = await sk.api('GET', '/v1/tenant/t1/timeline/tl1');
  t.equal(status.body.minTerm, 10, 'minTerm persisted across restart');
});
