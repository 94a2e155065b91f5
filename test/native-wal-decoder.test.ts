// The native WAL decoder through its JS API, against real PostgreSQL 15 segments and pg_waldump's record
// list: whole stream, 8 KiB chunks, splits around every page boundary, random chunks, mid-record starts,
// corruptions, and feedAtomic rollback. Benchmarks belong in bench/, never here.
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { WalDecoder, crc32c, type FeedResult, type Stop } from '../native/index.js';
import { xorshift32 } from './helpers/prng.js';

const FIXTURE_DIR = new URL('../../shared/fixtures/pg15-wal/', import.meta.url);
const SEGMENT_SIZE = 16 * 1024 * 1024;
const START = 0x0100_0000;
/** End of the range pg_waldump listed (records.txt). */
const END_OF_ORACLE = 0x05c6_8588;
/** The segment holds one more valid record after the oracle's range (Standby RUNNING_XACTS, 50 bytes). */
const EXTRA = { start: 0x05c6_8588, prev: 0x05c6_8130, totalLength: 50, rmid: 8, info: 0x10 };
const END_OF_WAL = 0x05c6_85c0;
const BIG_RECORD = 0x0400_0808;
const PAGE = 8192;

const wal = Buffer.concat(
  [1, 2, 3, 4, 5].map((n) => gunzipSync(readFileSync(new URL(`00000001000000000000000${n}.gz`, FIXTURE_DIR)))),
);
const parseLsn = (s: string): number => {
  const [hi, lo] = s.split('/');
  return parseInt(hi!, 16) * 0x1_0000_0000 + parseInt(lo!, 16);
};
const oracle = gunzipSync(readFileSync(new URL('records.txt.gz', FIXTURE_DIR)))
  .toString('utf8')
  .split('\n')
  .filter((l) => l.length > 0)
  .map((l) => {
    const [start, prev, len] = l.split(' ');
    return { start: parseLsn(start!), prev: parseLsn(prev!), totalLength: Number(len) };
  });

const from = (lsn: number): Buffer => wal.subarray(lsn - START);
const hex = (n: number): string => `${Math.floor(n / 2 ** 32).toString(16).toUpperCase()}/${(n % 2 ** 32).toString(16).toUpperCase().padStart(8, '0')}`;

interface Run {
  starts: number[];
  prevs: number[];
  lengths: number[];
  rmids: number[];
  infos: number[];
  counted: number;
  stop: Stop | null;
  decoder: WalDecoder;
}

function run(decoder: WalDecoder, pieces: Iterable<Buffer>): Run {
  const r: Run = { starts: [], prevs: [], lengths: [], rmids: [], infos: [], counted: 0, stop: null, decoder };
  for (const piece of pieces) {
    const result: FeedResult = decoder.feed(piece);
    r.counted += result.recordCount;
    const recs = result.records!;
    for (let i = 0; i < recs.startLsn.length; i++) {
      r.starts.push(recs.startLsn[i]!);
      r.prevs.push(recs.prevLsn[i]!);
      r.lengths.push(recs.totalLength[i]!);
      r.rmids.push(recs.rmid[i]!);
      r.infos.push(recs.info[i]!);
    }
    if (result.stop) {
      r.stop = result.stop;
      break;
    }
  }
  return r;
}

const newDecoder = (startLsn: number, prevLsn?: number): WalDecoder =>
  new WalDecoder({ startLsn, segmentSizeBytes: SEGMENT_SIZE, collectRecords: true, ...(prevLsn === undefined ? {} : { prevLsn }) });

/** First index where the run differs from oracle[offset..], or -1; checks the count too. */
function firstMismatch(r: Run, expected: typeof oracle): string | null {
  if (r.starts.length !== expected.length) return `record count ${r.starts.length}, expected ${expected.length}`;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    if (r.starts[i] !== e.start || r.prevs[i] !== e.prev || r.lengths[i] !== e.totalLength) {
      return `record ${i}: got ${hex(r.starts[i]!)} prev ${hex(r.prevs[i]!)} len ${r.lengths[i]}, expected ${hex(e.start)} prev ${hex(e.prev)} len ${e.totalLength}`;
    }
  }
  return null;
}

const withExtra = (list: typeof oracle): typeof oracle => [...list, { start: EXTRA.start, prev: EXTRA.prev, totalLength: EXTRA.totalLength }];

function checkFullRun(t: Test, r: Run, label: string): void {
  t.equal(firstMismatch(r, withExtra(oracle)), null, `${label}: records match pg_waldump, then the extra record`);
  t.equal(r.counted, oracle.length + 1, `${label}: recordCount sums up`);
  t.equal(r.decoder.endLsn, END_OF_WAL, `${label}: endLsn`);
  t.match(r.stop, { kind: 'end', code: 'ZERO_RECORD', lsn: END_OF_WAL }, `${label}: ends at the zero tail`);
}

/** Cuts the stream from `base` at the given LSNs (ascending). */
function* cutAt(data: Buffer, base: number, cuts: Iterable<number>): Generator<Buffer> {
  let at = 0;
  for (const lsn of cuts) {
    const to = lsn - base;
    if (to > at && to < data.length) {
      yield data.subarray(at, to);
      at = to;
    }
  }
  yield data.subarray(at);
}

function* randomChunks(data: Buffer, seed: number): Generator<Buffer> {
  const { next } = xorshift32(seed);
  let at = 0;
  while (at < data.length) {
    const kind = next() % 4;
    const size = 1 + (kind === 0 ? next() % 8 : kind === 1 ? next() % 100 : kind === 2 ? next() % 20_000 : next() % (2 << 20));
    yield data.subarray(at, Math.min(at + size, data.length));
    at += size;
  }
}

t.test('crc32c', async (t) => {
  t.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  t.equal(crc32c(Buffer.from('56789'), crc32c(Buffer.from('1234'))), 0xe3069283, 'seed continues');
  t.equal(crc32c(Buffer.alloc(0)), 0);
});

t.test('the page magic of the fixtures is PostgreSQL 15 0xD110', async (t) => {
  t.equal(wal.readUInt16LE(0), 0xd110);
});

t.test('the oracle range decodes exactly and ends at 0/05C68588', async (t) => {
  const r = run(newDecoder(START), [wal.subarray(0, END_OF_ORACLE - START)]);
  t.equal(firstMismatch(r, oracle), null);
  t.equal(r.counted, 122_724);
  t.equal(r.decoder.endLsn, END_OF_ORACLE);
  t.equal(r.decoder.position, END_OF_ORACLE);
  t.equal(r.stop, null);
});

t.test('all five segments in one chunk', async (t) => {
  const r = run(newDecoder(START), [wal]);
  checkFullRun(t, r, 'one chunk');
  const last = r.starts.length - 1;
  t.same([r.starts[last], r.prevs[last], r.lengths[last], r.rmids[last], r.infos[last]], [EXTRA.start, EXTRA.prev, EXTRA.totalLength, EXTRA.rmid, EXTRA.info]);
  const sw = r.starts.indexOf(0x0404_9fb0);
  t.same([r.rmids[sw], r.infos[sw]! & 0xf0, r.starts[sw + 1]], [0, 0x40, 0x0500_0028], 'XLOG SWITCH, then segment 5');
  t.equal(r.decoder.lastRecordStart, EXTRA.start);
  t.match(r.decoder.stop, { kind: 'end', code: 'ZERO_RECORD', lsn: END_OF_WAL });
  t.match(r.stop!.message, /0\/05C685C0/);
});

t.test('8 KiB chunks', async (t) => {
  const pieces = function* () {
    for (let at = 0; at < wal.length; at += PAGE) yield wal.subarray(at, at + PAGE);
  };
  checkFullRun(t, run(newDecoder(START), pieces()), '8 KiB');
});

t.test('split at every page boundary ±1..30 bytes', async (t) => {
  const pages = wal.length / PAGE;
  for (let delta = 1; delta <= 30; delta++) {
    for (const sign of [-1, 1]) {
      const cuts = function* () {
        for (let p = 1; p < pages; p++) yield START + p * PAGE + sign * delta;
      };
      const r = run(newDecoder(START), cutAt(wal, START, cuts()));
      const ok = firstMismatch(r, withExtra(oracle)) === null && r.decoder.endLsn === END_OF_WAL && r.stop?.lsn === END_OF_WAL;
      if (!ok) checkFullRun(t, r, `delta ${sign * delta}`);
      else t.pass(`delta ${sign * delta}`);
    }
  }
});

t.test('random chunk sizes', async (t) => {
  for (const seed of [1, 42, 0xdeadbeef]) checkFullRun(t, run(newDecoder(START), randomChunks(wal, seed)), `seed ${seed}`);
});

t.test('starting at a page boundary inside the 300,061-byte record at 0/04000808', async (t) => {
  const next = oracle.findIndex((r) => r.start > BIG_RECORD);
  t.equal(oracle[next]!.start, 0x0404_9f88, 'the record after it');
  for (const start of [0x0400_2000, 0x0402_0000, 0x0404_8000]) {
    const decoder = newDecoder(start);
    t.equal(decoder.endLsn, start, 'endLsn starts at startLsn');
    const r = run(decoder, randomChunks(from(start), start));
    t.equal(firstMismatch(r, withExtra(oracle.slice(next))), null, `from ${hex(start)}`);
    t.equal(r.decoder.endLsn, END_OF_WAL);
  }
  const checked = run(newDecoder(0x0400_2000, BIG_RECORD), [from(0x0400_2000)]);
  t.equal(checked.starts.length, oracle.length - next + 1, 'a correct prevLsn is checked and accepted');
  const wrong = run(newDecoder(0x0400_2000, BIG_RECORD + 8), [from(0x0400_2000)]);
  t.match(wrong.stop, { kind: 'error', code: 'BAD_PREV_LINK', lsn: 0x0404_9f88 });
  t.match(wrong.stop!.message, /0\/04049F88.*got 0\/04000808.*expected 0\/04000810/);
});

t.test('starting at a record start with prevLsn, and at the segment after XLOG SWITCH', async (t) => {
  const k = 5000;
  const r = run(newDecoder(oracle[k]!.start, oracle[k - 1]!.start), randomChunks(from(oracle[k]!.start), 7));
  t.equal(firstMismatch(r, withExtra(oracle.slice(k))), null);
  const seg5 = oracle.findIndex((x) => x.start >= 0x0500_0000);
  const r5 = run(newDecoder(0x0500_0000), [from(0x0500_0000)]);
  t.equal(firstMismatch(r5, withExtra(oracle.slice(seg5))), null);
});

t.test('constructor arguments are checked', async (t) => {
  t.throws(() => new WalDecoder({ startLsn: START + 4, segmentSizeBytes: SEGMENT_SIZE }), { code: 'SK_INVALID_ARGUMENT' });
  t.throws(() => new WalDecoder({ startLsn: START + 16, segmentSizeBytes: SEGMENT_SIZE }), { code: 'SK_INVALID_ARGUMENT' }, 'inside the long header');
  t.throws(() => new WalDecoder({ startLsn: 1.5, segmentSizeBytes: SEGMENT_SIZE }), { code: 'SK_INVALID_ARGUMENT' });
  t.throws(() => new WalDecoder({ startLsn: START, segmentSizeBytes: 3 << 20 }), { code: 'SK_INVALID_ARGUMENT' });
});

/**
 * The stream from START with `edit` applied to a copy. Around `focus` (±64 KiB) it is fed in `chunk`-byte
 * pieces, elsewhere in large ones, so small chunk sizes stay cheap.
 */
function runEdited(edit: (b: Buffer) => void, chunk = wal.length, focus = START): Run {
  const copy = Buffer.from(wal);
  edit(copy);
  const lo = Math.max(0, focus - START - 65536);
  const hi = Math.min(copy.length, focus - START + 65536);
  const pieces = function* () {
    if (lo > 0) yield copy.subarray(0, lo);
    for (let at = lo; at < hi; at += chunk) yield copy.subarray(at, Math.min(at + chunk, hi));
    yield copy.subarray(hi);
  };
  return run(newDecoder(START), pieces());
}
const off = (lsn: number): number => lsn - START;

t.test('garbage is refused with the offending LSN', async (t) => {
  await t.test('a flipped byte in a record body is BAD_CRC', async (t) => {
    const big = oracle.findIndex((r) => r.start === BIG_RECORD);
    for (const [index, at] of [[777, 40], [big, 200_000]] as const) {
      const rec = oracle[index]!;
      for (const chunk of [wal.length, 4096, 333]) {
        const r = runEdited((b) => (b[off(rec.start) + at]! ^= 0x01), chunk, rec.start);
        t.match(r.stop, { kind: 'error', code: 'BAD_CRC', lsn: rec.start });
        t.match(r.stop!.message, new RegExp(hex(rec.start)));
        t.equal(r.starts.length, index, 'every record before it was accepted');
        t.equal(r.decoder.position, rec.start);
      }
    }
  });
  await t.test('a corrupted xl_prev is BAD_PREV_LINK', async (t) => {
    const rec = oracle[3000]!;
    const r = runEdited((b) => (b[off(rec.start) + 9]! ^= 0x04));
    t.match(r.stop, { kind: 'error', code: 'BAD_PREV_LINK', lsn: rec.start });
    t.match(r.stop!.message, /got .* expected /);
  });
  await t.test('a corrupted page magic is BAD_PAGE_MAGIC', async (t) => {
    const page = 0x0300_4000;
    for (const chunk of [wal.length, 7, PAGE]) {
      const r = runEdited((b) => b.writeUInt16LE(0xd113, off(page)), chunk, page);
      t.match(r.stop, { kind: 'error', code: 'BAD_PAGE_MAGIC', lsn: page });
      t.match(r.stop!.message, /0\/03004000/);
    }
  });
  await t.test('other page header corruptions', async (t) => {
    const page = 0x0200_6000;
    const cases: Array<[string, number, (b: Buffer) => void]> = [
      ['BAD_PAGE_ADDRESS', page, (b) => (b[off(page) + 10]! ^= 1)],
      ['BAD_PAGE_FLAGS', page, (b) => (b[off(page) + 2]! ^= 1)],
      ['BAD_REM_LEN', page, (b) => (b[off(page) + 16]! ^= 1)],
      ['BAD_LONG_HEADER', 0x0300_0000, (b) => b.writeUInt32LE(8 << 20, off(0x0300_0000) + 32)],
      ['BAD_RECORD_LENGTH', oracle[100]!.start, (b) => b.writeUInt32LE(12, off(oracle[100]!.start))],
    ];
    for (const [code, lsn, edit] of cases) t.match(runEdited(edit, 1000, lsn).stop, { kind: 'error', code, lsn }, code);
  });
  await t.test('a zero tail is a clean end', async (t) => {
    const rec = oracle[60_000]!;
    const r = runEdited((b) => b.fill(0, off(rec.start)));
    t.match(r.stop, { kind: 'end', code: 'ZERO_RECORD', lsn: rec.start });
    t.equal(r.decoder.endLsn, rec.start);
    const page = 0x0200_6000;
    const z = runEdited((b) => b.fill(0, off(page)), 5000, page);
    t.match(z.stop, { kind: 'end', code: 'ZERO_PAGE', lsn: page });
  });
});

t.test('a stopped decoder stays stopped', async (t) => {
  const decoder = newDecoder(START);
  const first = decoder.feed(Buffer.alloc(64, 0xff));
  t.match(first.stop, { kind: 'error', code: 'BAD_PAGE_MAGIC', lsn: START });
  const again = decoder.feed(wal);
  t.same(again.stop, first.stop);
  t.equal(again.recordCount, 0);
  t.same(decoder.feedAtomic(wal.subarray(0, 100)).stop, first.stop);
  t.equal(decoder.position, START);
});

t.test('feedAtomic rolls back a bad chunk and accepts the good continuation', async (t) => {
  const decoder = newDecoder(START);
  const split = 5 * PAGE + 123;
  const good1 = decoder.feedAtomic(wal.subarray(0, split));
  t.equal(good1.stop, null);
  const before = { endLsn: decoder.endLsn, position: decoder.position, last: decoder.lastRecordStart };
  t.equal(before.position, START + split);

  const victim = oracle.find((r) => r.start > START + split + 100)!;
  const bad = Buffer.from(wal.subarray(split, split + 200_000));
  bad[victim.start - START - split + 30]! ^= 0x80;
  const rejected = decoder.feedAtomic(bad);
  t.match(rejected.stop, { kind: 'error', code: 'BAD_CRC', lsn: victim.start });
  t.equal(rejected.recordCount, 0);
  t.equal(rejected.records?.startLsn.length, 0);
  t.same({ endLsn: decoder.endLsn, position: decoder.position, last: decoder.lastRecordStart }, before, 'state restored');
  t.equal(decoder.stop, null, 'a rolled-back decoder is not stopped');
  t.match(decoder.lastError, { code: 'BAD_CRC', lsn: victim.start });

  const good2 = decoder.feedAtomic(wal.subarray(split, split + 200_000));
  t.equal(good2.stop, null);
  t.equal(decoder.lastError, null);
  t.ok(good2.recordCount > 0);
  const rest = run(decoder, [wal.subarray(split + 200_000)]);
  t.equal(rest.decoder.endLsn, END_OF_WAL);

  // A chunk running into the zero tail is rejected whole as well.
  const tail = newDecoder(EXTRA.start, EXTRA.prev);
  t.match(tail.feedAtomic(from(EXTRA.start).subarray(0, 4096)).stop, { kind: 'end', code: 'ZERO_RECORD' });
  t.equal(tail.endLsn, EXTRA.start);
  t.equal(tail.feedAtomic(from(EXTRA.start).subarray(0, 50)).stop, null);
  t.equal(tail.endLsn, END_OF_WAL);
});
