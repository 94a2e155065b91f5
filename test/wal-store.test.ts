// WalStore against real PostgreSQL 15 WAL: segments written byte-identical to pg_wal, flushLsn always a
// durable record boundary, garbage refused without losing flushed WAL, truncation, recovery of torn tails.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, open, readFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lsn, type Lsn } from '../src/lsn.js';
import { WalStore } from '../src/storage/wal_store.js';
import {
  FIXTURE_END_LSN, FIXTURE_START_LSN, SEGMENT_SIZE, fixtureSlice, fixtureWal, oracleRecords, recordEnds,
} from './helpers/fixtures.js';

const START = lsn(FIXTURE_START_LSN);
const END = lsn(FIXTURE_END_LSN);

async function newStore(dir?: string, extra: Partial<Parameters<typeof WalStore.open>[0]> = {}): Promise<WalStore> {
  return WalStore.open({
    dir: dir ?? (await mkdtemp(join(tmpdir(), 'sk-wal-'))),
    segmentSizeBytes: SEGMENT_SIZE,
    timelineStartLsn: START,
    ...extra,
  });
}

/** Deterministic chunk sizes, from tiny to 300 KiB, so records and pages are split everywhere. */
function* chunkSizes(seed: number): Generator<number> {
  let x = seed;
  for (;;) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const r = x % 100;
    yield r < 30 ? 1 + (x % 97) : r < 80 ? 1 + (x % 16384) : 1 + (x % 300_000);
  }
}

async function writeRange(store: WalStore, from: number, to: number, seed: number, flushEvery = 4): Promise<Lsn[]> {
  const flushes: Lsn[] = [];
  const sizes = chunkSizes(seed);
  let pos = from;
  let n = 0;
  while (pos < to) {
    const len = Math.min(sizes.next().value as number, to - pos);
    store.write(lsn(pos), fixtureSlice(pos, pos + len));
    pos += len;
    if (++n % flushEvery === 0) flushes.push(await store.flush());
  }
  flushes.push(await store.flush());
  return flushes;
}

t.test('writes the fixture WAL: byte-identical segments, record-boundary flushLsn, .ready markers', async (t) => {
  const store = await newStore();
  const ends = recordEnds();
  const flushes = await writeRange(store, START, END, 1);
  let prev = 0;
  for (const f of flushes) {
    t.ok(f >= prev, 'flushLsn never goes backwards');
    prev = f;
  }
  t.same(flushes.filter((f) => !ends.has(f)), [], 'every flushLsn is the end of a valid record');
  t.equal(store.flushLsn, END, 'flushLsn reaches the end of valid WAL');
  const dir = store.paths.dir;
  const names = (await readdir(dir)).sort();
  t.same(
    names.filter((n) => n.startsWith('0000')),
    ['000000010000000000000001', '000000010000000000000002', '000000010000000000000003', '000000010000000000000004', '000000010000000000000005.partial'],
  );
  for (let seg = 1; seg <= 4; seg++) {
    const ours = await readFile(join(dir, `00000001000000000000000${seg}`));
    t.ok(ours.equals(fixtureSlice(seg * SEGMENT_SIZE, (seg + 1) * SEGMENT_SIZE)), `segment ${seg} byte-identical to pg_wal`);
  }
  t.same((await readdir(join(dir, 'archive_status'))).sort(), [1, 2, 3, 4].map((s) => `00000001000000000000000${s}.ready`));
  const back = await store.read(lsn(0x0300_0000), lsn(0x0500_1000));
  t.ok(back.equals(fixtureSlice(0x0300_0000, 0x0500_1000)), 'read returns the bytes across segments');
  await t.rejects(store.read(lsn(0x0300_0000), lsn(END + 8)), { code: 'SK_WAL_NOT_AVAILABLE' });
  await store.close();

  const pgWaldump = '/usr/lib/postgresql/15/bin/pg_waldump';
  if (existsSync(pgWaldump)) {
    const out = execFileSync(pgWaldump, ['-p', dir, '000000010000000000000001', '000000010000000000000003'], { maxBuffer: 1 << 28 }).toString();
    const lines = out.split('\n').filter((l) => l.startsWith('rmgr:')).length;
    // A record that continues into segment 4 cannot be read from segments 1-3 alone.
    const expected = oracleRecords().filter((r) => r.start + r.totalLength <= 0x0400_0000).length;
    t.equal(lines, expected, 'pg_waldump reads our segments and sees every record');
  }
});

t.test('reopen recovers the same end; group commit shares syncs', async (t) => {
  const first = await newStore();
  await writeRange(first, START, lsn(0x0210_0000), 2, 1);
  const flushed = first.flushLsn;
  await first.close();
  const store = await newStore(first.paths.dir, { recoveryStartLsn: flushed });
  t.equal(store.recovery.endLsn, store.flushLsn);
  t.ok(store.flushLsn >= flushed, 'recovery ends at or past the last flushLsn');
  // Many writes and flushes without awaiting each: all resolve, with far fewer batches than calls.
  const from = store.writeLsn;
  const promises: Promise<Lsn>[] = [];
  let pos: number = from;
  for (let i = 0; i < 200; i++) {
    store.write(lsn(pos), fixtureSlice(pos, pos + 8192));
    pos += 8192;
    promises.push(store.flush());
  }
  const results = await Promise.all(promises);
  t.ok(results.every((r, i) => i === 0 || r >= results[i - 1]!), 'flush results are monotonic');
  t.ok(store.stats.batches < 200, `group commit: ${store.stats.batches} batches for 200 flushes`);
  t.equal(store.durableLsn, pos);
  await store.close();
});

t.test('garbage WAL is refused with a typed error naming the LSN; flushed WAL survives', async (t) => {
  const store = await newStore();
  await writeRange(store, START, lsn(0x0100_8000), 3);
  const flushed = store.flushLsn;
  const durable = store.durableLsn;
  const bad = Buffer.from(fixtureSlice(durable, durable + 65536));
  bad[30_000] = bad[30_000]! ^ 0xff;
  store.write(durable, bad);
  const err = await store.flush().then(() => null, (e: Error & { code: string }) => e);
  t.equal(err?.code, 'SK_WAL_INVALID');
  t.match(err?.message, /\d+\/[0-9A-F]{8}/, 'the error names an LSN');
  t.equal(store.flushLsn, flushed, 'flushLsn unchanged');
  t.equal(store.writeLsn, durable, 'unflushed bytes discarded');
  t.throws(() => store.write(lsn(durable + 8), Buffer.alloc(8)), { code: 'SK_WAL_GAP' });
  // The correct bytes are accepted afterwards.
  await writeRange(store, durable, lsn(0x0120_0000), 4);
  const onDisk = await store.read(START, lsn(0x0120_0000));
  t.ok(onDisk.equals(fixtureSlice(START, 0x0120_0000)), 'WAL on disk is exactly the valid stream');
  await store.close();
  const reopened = await newStore(store.paths.dir);
  t.equal(reopened.flushLsn, store.flushLsn);
  await reopened.close();
});

t.test('truncate: never below commit, zeroes the tail durably, recovery ends at the cut', async (t) => {
  const store = await newStore();
  await writeRange(store, START, lsn(0x0230_0000), 5);
  const recs = oracleRecords();
  const cut = lsn(recs.find((r) => r.start > 0x01f0_0000)!.start);
  await t.rejects(store.truncate(cut, lsn(cut + 8)), { code: 'SK_TRUNCATE_BELOW_COMMIT' });
  await store.truncate(cut, lsn(0x0100_0000));
  t.equal(store.flushLsn, cut);
  t.equal(store.writeLsn, cut);
  const names = await readdir(store.paths.dir);
  t.ok(names.includes('000000010000000000000001.partial'), 'the cut segment is partial again');
  t.notOk(names.some((n) => n.startsWith('000000010000000000000002')), 'later segments removed');
  await store.close();
  const raw = await readFile(join(store.paths.dir, '000000010000000000000001.partial'));
  t.ok(raw.subarray(cut - SEGMENT_SIZE).equals(Buffer.alloc(2 * SEGMENT_SIZE - cut)), 'tail zeroed');
  const reopened = await newStore(store.paths.dir);
  t.equal(reopened.flushLsn, cut, 'recovery ends at the cut');
  // History continues from the cut with the same (valid) bytes.
  await writeRange(reopened, cut, lsn(0x0210_0000), 6);
  t.ok((await reopened.read(START, lsn(0x0210_0000))).equals(fixtureSlice(START, 0x0210_0000)));
  await reopened.close();
});

t.test('recovery cuts a torn tail and zeroes it', async (t) => {
  const store = await newStore();
  await writeRange(store, START, lsn(0x0140_0000), 7);
  const end = store.flushLsn;
  const durable = store.durableLsn;
  await store.close();
  // A torn write past the end: half of the next bytes, then garbage.
  const path = join(store.paths.dir, '000000010000000000000001.partial');
  const fh = await open(path, 'r+');
  await fh.write(fixtureSlice(durable, durable + 5000), 0, 5000, durable - SEGMENT_SIZE);
  await fh.write(Buffer.alloc(3000, 0xab), 0, 3000, durable - SEGMENT_SIZE + 5000);
  await fh.close();
  const reopened = await newStore(store.paths.dir);
  t.ok(reopened.flushLsn >= end, 'nothing flushed is lost');
  t.ok(reopened.flushLsn <= durable + 5000, 'the garbage is not taken for WAL');
  t.equal(reopened.recovery.stopCode !== null, true);
  await reopened.close();
  const raw = await readFile(path);
  const off = reopened.flushLsn - SEGMENT_SIZE;
  t.ok(raw.subarray(off).equals(Buffer.alloc(SEGMENT_SIZE - off)), 'everything past the end is zero');
});

t.test('recovery refuses to cut below commitLsn or a complete segment', async (t) => {
  const store = await newStore();
  await writeRange(store, START, lsn(0x0230_0000), 8);
  await store.close();
  // Damage the middle of complete segment 1 (acknowledged, fsynced WAL).
  const path = join(store.paths.dir, '000000010000000000000001');
  const fh = await open(path, 'r+');
  await fh.write(Buffer.alloc(64, 0xee), 0, 64, 0x80_0000);
  await fh.close();
  await t.rejects(newStore(store.paths.dir), { code: 'SK_TIMELINE_BROKEN' });
  await t.rejects(newStore(store.paths.dir, { commitLsn: lsn(0x0220_0000) }), { code: 'SK_TIMELINE_BROKEN' });
});

t.test('removeSegmentsBelow removes only whole complete segments below the horizon', async (t) => {
  const store = await newStore();
  await writeRange(store, START, lsn(0x0430_0000), 9);
  t.equal(await store.removeSegmentsBelow(lsn(0x0380_0000)), 2, 'segments 1 and 2 removed');
  t.equal(store.localStartLsn, 0x0300_0000);
  await t.rejects(store.read(lsn(0x02ff_0000), lsn(0x0300_0010)), { code: 'SK_WAL_NOT_AVAILABLE' });
  t.ok((await store.read(lsn(0x0300_0000), lsn(0x0300_1000))).equals(fixtureSlice(0x0300_0000, 0x0300_1000)));
  await store.close();
  const reopened = await newStore(store.paths.dir, { recoveryStartLsn: lsn(store.flushLsn) });
  t.equal(reopened.localStartLsn, 0x0300_0000);
  await reopened.close();
});

t.test('the whole fixture in one write, then the WAL stream is exactly the fixture', async (t) => {
  const store = await newStore();
  store.write(START, fixtureSlice(START, END));
  t.equal(await store.flush(), END);
  t.ok((await store.read(START, END)).equals(fixtureWal().subarray(0, END - START)));
  await store.close();
});
