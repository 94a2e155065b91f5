// The wire codec: every message round-trips, and a fuzzer (seeded mutations, truncations, random bytes)
// proves the decoder only ever returns a message or throws a typed WireDecodeError, never anything else.
import t from 'tap';
import { MAX_APPEND_BYTES, PROTOCOL_VERSION, type AcceptorMessage, type ProposerMessage } from '../src/core/protocol_messages.js';
import { lsn } from '../src/lsn.js';
import { decodeAcceptorMessage, decodeProposerMessage, encodeAcceptorMessage, encodeProposerMessage, WireDecodeError } from '../src/protocol/wire_codec.js';
import { term } from '../src/storage/timeline_state.js';

const history = [{ term: term(1), lsn: lsn(0x100_0028) }, { term: term(3), lsn: lsn(0x2345_6789) }];
const proposerMessages: ProposerMessage[] = [
  { kind: 'ProposerGreeting', protocolVersion: PROTOCOL_VERSION, proposerId: 2 ** 53 - 1, tenantId: 'tenant-ü', timelineId: 'tl', systemId: 2n ** 64n - 1n, pgVersion: 150020, segmentSizeBytes: 16 << 20 },
  { kind: 'VoteRequest', term: term(7) },
  { kind: 'ProposerElected', term: term(7), startLsn: lsn(0x5000_0000), termHistory: history },
  { kind: 'AppendRequest', term: term(7), beginLsn: lsn(0x100_0000), endLsn: lsn(0x100_0000 + 300), commitLsn: lsn(0x100_0000), truncateLsn: lsn(0), wal: Buffer.alloc(300, 7) },
  { kind: 'AppendRequest', term: term(7), beginLsn: lsn(5), endLsn: lsn(5), commitLsn: lsn(3), truncateLsn: lsn(1), wal: Buffer.alloc(0) },
  { kind: 'ReadRequest', term: term(7), beginLsn: lsn(0x100_0000), endLsn: lsn(0x100_1000) },
];
const acceptorMessages: AcceptorMessage[] = [
  { kind: 'AcceptorGreeting', nodeId: 3, term: term(7), minTerm: term(2) },
  { kind: 'VoteResponse', term: term(7), granted: true, flushLsn: lsn(0x200_0000), truncateLsn: lsn(0x100_0000), lastLogTerm: term(3), termHistory: history },
  { kind: 'VoteResponse', term: term(9), granted: false, flushLsn: lsn(0), truncateLsn: lsn(0), lastLogTerm: term(0), termHistory: [] },
  { kind: 'AppendResponse', term: term(7), flushLsn: lsn(0x200_0000), durableLsn: lsn(0x200_0010), commitLsn: lsn(0x1ff_0000) },
  { kind: 'ReadResponse', term: term(7), beginLsn: lsn(0x100_0000), wal: Buffer.alloc(1000, 9) },
  { kind: 'Error', code: 'SK_PROTO_STALE_TERM', term: term(9), got: '7', expected: '>= 9', message: 'stale' },
];

t.test('every message round-trips', async (t) => {
  for (const m of proposerMessages) t.same(decodeProposerMessage(encodeProposerMessage(m)), m, m.kind);
  for (const m of acceptorMessages) t.same(decodeAcceptorMessage(encodeAcceptorMessage(m)), m, m.kind);
});

t.test('size limits are enforced', async (t) => {
  const big = { kind: 'AppendRequest', term: term(1), beginLsn: lsn(0), endLsn: lsn(MAX_APPEND_BYTES + 8), commitLsn: lsn(0), truncateLsn: lsn(0), wal: Buffer.alloc(MAX_APPEND_BYTES + 8) } as const;
  t.throws(() => decodeProposerMessage(encodeProposerMessage(big)), { code: 'SK_PROTO_TOO_LARGE' });
  const read = { kind: 'ReadRequest', term: term(1), beginLsn: lsn(0), endLsn: lsn(MAX_APPEND_BYTES + 1) } as const;
  t.throws(() => decodeProposerMessage(encodeProposerMessage(read)), { code: 'SK_PROTO_TOO_LARGE' });
  const frame = encodeProposerMessage({ kind: 'VoteRequest', term: term(1) });
  frame.writeBigUInt64BE(2n ** 60n, 2);
  t.throws(() => decodeProposerMessage(frame), { code: 'SK_PROTO_MALFORMED', message: /out of range/ });
});

t.test('fuzz: mutated, truncated, extended and random frames never escape as untyped errors', async (t) => {
  let seed = 12345;
  const rand = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
  const frames = [...proposerMessages.map(encodeProposerMessage), ...acceptorMessages.map(encodeAcceptorMessage)];
  let decoded = 0;
  let refused = 0;
  const untyped: string[] = [];
  for (let i = 0; i < 20_000; i++) {
    const base = frames[rand(frames.length)]!;
    let f: Buffer;
    switch (rand(5)) {
      case 0: f = Buffer.from(base); for (let k = 0; k <= rand(4); k++) f[rand(f.length)] = rand(256); break;
      case 1: f = base.subarray(0, rand(base.length + 1)); break;
      case 2: f = Buffer.concat([base, Buffer.from(Array.from({ length: 1 + rand(16) }, () => rand(256)))]); break;
      case 3: f = Buffer.from(Array.from({ length: rand(64) }, () => rand(256))); f[0] = PROTOCOL_VERSION; break;
      default: f = Buffer.from(base); f.writeUInt32BE(rand(2 ** 32 - 1) >>> 0, Math.min(2 + rand(Math.max(1, f.length - 6)), Math.max(0, f.length - 4))); break;
    }
    for (const decode of [decodeProposerMessage, decodeAcceptorMessage]) {
      try {
        decode(f);
        decoded++;
      } catch (err) {
        if (err instanceof WireDecodeError && typeof err.code === 'string') refused++;
        else untyped.push(`${(err as Error).name}: ${(err as Error).message} on ${f.toString('hex').slice(0, 80)}`);
      }
    }
  }
  t.same(untyped.slice(0, 5), [], 'no untyped error');
  t.ok(refused > 10_000 && decoded > 100, `${refused} refused with a typed error, ${decoded} decoded`);
});
