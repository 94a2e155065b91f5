// Native segment file I/O through its JS API: unaligned O_DIRECT writes read back byte-exact, random
// offsets and zero() against an in-memory model, tmpfs fallback, durable helpers, coded errors, and a
// decoder-rejected write that leaves the file untouched. Timing belongs in bench/, never here.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import {
  SegmentFile,
  WalDecoder,
  fsyncDir,
  measureSequentialWriteFloor,
  measureWriteSyncFloor,
  prepareSegmentFile,
  renameDurable,
  writeFileDurable,
} from '../native/index.js';
import { xorshift32 } from './helpers/prng.js';

const SIZE = 1 << 20;
const WAL_SEGMENT_SIZE = 16 << 20;

async function scratch(t: { teardown: (fn: () => Promise<void>) => void }, base = tmpdir()): Promise<string> {
  const dir = await mkdtemp(join(base, 'sk-native-io-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A small deterministic PRNG (see helpers/prng.ts). */
function rng(seed: number): { below: (n: number) => number; bytes: (n: number) => Buffer } {
  return xorshift32(seed);
}

/** Splits `data` into 1..4 chunks at random points. */
function chunked(r: ReturnType<typeof rng>, data: Buffer): Buffer[] {
  const cuts = Array.from({ length: r.below(4) }, () => r.below(data.length + 1)).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const c of cuts) {
    out.push(data.subarray(from, c));
    from = c;
  }
  out.push(data.subarray(from));
  return out;
}

/** Appends, random writes, zeros and reads against a model; returns whether the file was O_DIRECT. */
async function exercise(t: Parameters<Parameters<typeof t.test>[1]>[0], dir: string, direct: 'auto' | 'on' | 'off', seed: number): Promise<boolean> {
  const path = join(dir, '000000010000000000000001');
  const file = await SegmentFile.open(path, SIZE, { create: true, direct });
  t.equal(file.path, path);
  const model = Buffer.alloc(SIZE);
  const r = rng(seed);
  t.ok((await file.read(0, SIZE)).equals(model), 'created zero-filled');

  // Sequential appends of odd sizes, as the WAL path does, some with sync.
  let at = 0;
  for (let i = 0; i < 150; i++) {
    const data = r.bytes(1 + r.below(i % 10 === 0 ? 30_000 : 600));
    const res = await file.write(at, chunked(r, data), { sync: i % 25 === 0 });
    if (i === 0) t.equal(res.endLsn, -1, 'no decoder: endLsn -1');
    data.copy(model, at);
    at += data.length;
  }
  t.ok((await file.read(0, SIZE)).equals(model), 'appends read back byte-exact');
  t.ok(readFileSync(path).equals(model), 'appends are on disk byte-exact');

  // Random offsets (overlapping earlier data), zero() ranges, random reads.
  let readsOk = true;
  for (let i = 0; i < 200; i++) {
    const offset = r.below(SIZE);
    const data = r.bytes(r.below(Math.min(SIZE - offset, 20_000)));
    await file.write(offset, chunked(r, data), { sync: false });
    data.copy(model, offset);
    if (r.below(8) === 0) {
      const from = r.below(SIZE);
      const to = from + r.below(SIZE - from + 1);
      await file.zero(from, to, false);
      model.fill(0, from, to);
    }
    const ro = r.below(SIZE);
    const rl = r.below(9000);
    readsOk &&= (await file.read(ro, rl)).equals(model.subarray(ro, Math.min(ro + rl, SIZE)));
  }
  t.ok(readsOk, 'random reads match the model');
  await file.sync();
  t.ok(readFileSync(path).equals(model), 'random writes and zeros are on disk byte-exact');

  // Issued without awaiting in between: they run in call order, so the last overlapping write wins.
  const ops = [];
  for (let i = 0; i < 20; i++) {
    const data = Buffer.alloc(5000, i + 1);
    ops.push(file.write(100_000 + i * 100, [data], { sync: i === 19 }));
    data.copy(model, 100_000 + i * 100);
  }
  ops.push(file.zero(100_050, 100_070, false));
  model.fill(0, 100_050, 100_070);
  const readBack = file.read(99_000, 10_000);
  await Promise.all(ops);
  t.ok((await readBack).equals(model.subarray(99_000, 109_000)), 'concurrently issued ops apply in call order');
  await file.close();

  // Reopened: the tail block is not in memory any more, so unaligned writes read it from disk first.
  const again = await SegmentFile.open(path, SIZE, { create: false, direct });
  for (let i = 0; i < 50; i++) {
    const offset = r.below(SIZE);
    const data = r.bytes(r.below(Math.min(SIZE - offset, 7000)));
    await again.write(offset, [data], { sync: false });
    data.copy(model, offset);
  }
  await again.zero(300_001, SIZE, true);
  model.fill(0, 300_001);
  const tail = r.bytes(4321);
  await again.write(300_001, [tail.subarray(0, 1), tail.subarray(1)], { sync: true });
  tail.copy(model, 300_001);
  t.ok(readFileSync(path).equals(model), 'after reopen, writes and truncation are byte-exact');
  const isDirect = again.isDirect;
  await again.close();
  return isDirect;
}

t.test('O_DIRECT on the temp directory: unaligned chunks, random offsets, zero()', async (t) => {
  t.equal(await exercise(t, await scratch(t), 'on', 7), true, 'O_DIRECT is in use');
});

t.test('buffered mode behaves the same', async (t) => {
  t.equal(await exercise(t, await scratch(t), 'off', 8), false);
});

t.test('tmpfs: direct auto falls back to buffered if O_DIRECT is refused', { skip: !existsSync('/dev/shm') && 'no /dev/shm' }, async (t) => {
  const dir = await scratch(t, '/dev/shm');
  const isDirect = await exercise(t, dir, 'auto', 9);
  t.comment(`tmpfs O_DIRECT: ${isDirect}`);
  const onPath = join(dir, 'on');
  try {
    const f = await SegmentFile.open(onPath, SIZE, { create: true, direct: 'on' });
    t.equal(f.isDirect, true, "'on' accepted: this kernel's tmpfs takes O_DIRECT");
    await f.close();
  } catch (err) {
    t.match(err, { code: 'SK_IO' }, "'on' refused with SK_IO");
    t.notOk(existsSync(onPath), 'the refused file is not left behind');
  }
});

t.test('durable helpers', async (t) => {
  const dir = await scratch(t);
  const control = join(dir, 'safekeeper.control');
  await writeFileDurable(control, Buffer.from('version one'));
  await writeFileDurable(control, Buffer.from('v2'));
  t.equal(await readFile(control, 'utf8'), 'v2', 'replaced whole');
  t.same(await readdir(dir), ['safekeeper.control'], 'no temp file left');

  const seg = join(dir, 'prealloc');
  await prepareSegmentFile(seg, SIZE);
  const bytes = await readFile(seg);
  t.equal(bytes.length, SIZE);
  t.ok(bytes.every((b) => b === 0), 'zero-filled');
  await t.rejects(prepareSegmentFile(seg, SIZE), { code: 'SK_IO' }, 'refuses an existing path');

  const sub = join(dir, 'sub');
  await (await import('node:fs/promises')).mkdir(sub);
  await renameDurable(seg, join(sub, '000000010000000000000001.partial'));
  t.notOk(existsSync(seg));
  t.ok(existsSync(join(sub, '000000010000000000000001.partial')));
  await fsyncDir(dir);
  await t.rejects(fsyncDir(join(dir, 'missing')), { code: 'SK_IO' });
  await t.rejects(renameDurable(join(dir, 'missing'), join(dir, 'x')), { code: 'SK_IO', message: /missing/ });
});

t.test('errors carry SK_* codes and name the path', async (t) => {
  const dir = await scratch(t);
  const missing = join(dir, 'nope');
  const err = await SegmentFile.open(missing, SIZE, { create: false }).catch((e: unknown) => e);
  t.ok(err instanceof Error);
  t.match(err, { code: 'SK_IO', message: /nope.*No such file/ });

  const path = join(dir, 'seg');
  const file = await SegmentFile.open(path, SIZE, { create: true });
  await t.rejects(SegmentFile.open(path, SIZE, { create: true }), { code: 'SK_IO', message: /seg/ }, 'create is exclusive');
  await t.rejects(SegmentFile.open(path, 2 * SIZE, { create: false }), { code: 'SK_IO', message: /wrong size/ });
  await t.rejects(SegmentFile.open(join(dir, 'x'), 1000, { create: true }), { code: 'SK_INVALID_ARGUMENT' });
  await t.rejects(SegmentFile.open(join(dir, 'y'), SIZE, { create: true, direct: 'maybe' as 'on' }), { code: 'SK_INVALID_ARGUMENT' });
  await t.rejects(file.write(SIZE - 1, [Buffer.from('ab')], { sync: false }), { code: 'SK_INVALID_ARGUMENT' });
  await t.rejects(file.write(-1, [Buffer.from('ab')], { sync: false }), { code: 'SK_INVALID_ARGUMENT' });
  await t.rejects(file.read(SIZE + 1, 1), { code: 'SK_INVALID_ARGUMENT' });
  t.equal((await file.read(SIZE - 3, 100)).length, 3, 'short read at the end of the file');
  await file.close();
  await t.rejects(file.write(0, [Buffer.from('x')], { sync: false }), { code: 'SK_IO', message: /closed/ });
  await writeFile(join(dir, 'plain'), 'x');
  await t.rejects(writeFileDurable(join(dir, 'no-such-dir', 'f'), Buffer.from('x')), { code: 'SK_IO' });
});

t.test('a write validated by the decoder: rejected bytes are not written', async (t) => {
  const dir = await scratch(t);
  const wal = gunzipSync(readFileSync(new URL('../../shared/fixtures/pg15-wal/000000010000000000000001.gz', import.meta.url)));
  const path = join(dir, '000000010000000000000001');
  const file = await SegmentFile.open(path, WAL_SEGMENT_SIZE, { create: true, direct: 'auto' });
  const decoder = new WalDecoder({ startLsn: 0x0100_0000, segmentSizeBytes: WAL_SEGMENT_SIZE });

  const first = await file.write(0, [wal.subarray(0, 10_000), wal.subarray(10_000, 30_001)], { sync: true, decoder });
  t.ok(first.endLsn > 0x0100_0000 && first.endLsn <= 0x0100_0000 + 30_001, 'resolves with the decoder endLsn');
  t.equal(decoder.endLsn, first.endLsn);

  const bad = Buffer.from(wal.subarray(30_001, 200_000));
  bad[50_000]! ^= 0xff;
  const err = (await file.write(30_001, [bad], { sync: true, decoder }).catch((e: unknown) => e)) as Error & {
    code: string;
    stop: { code: string; lsn: number };
  };
  t.ok(err instanceof Error);
  t.equal(err.code, 'SK_WAL_INVALID');
  const stop = decoder.lastError!;
  t.ok(stop, 'the stop stays available as decoder.lastError');
  t.equal(err.stop.lsn, stop.lsn);
  const lsnText = `0/${stop.lsn.toString(16).toUpperCase().padStart(8, '0')}`;
  t.match(err.message, lsnText, 'the message names the LSN');
  t.equal(decoder.endLsn, first.endLsn, 'the decoder did not move');
  t.equal(decoder.stop, null, 'and is not stopped');
  const onDisk = readFileSync(path);
  t.ok(onDisk.subarray(0, 30_001).equals(wal.subarray(0, 30_001)));
  t.ok(onDisk.subarray(30_001).every((b) => b === 0), 'nothing was written');

  const good = await file.write(30_001, [wal.subarray(30_001, 200_000)], { sync: true, decoder });
  t.ok(good.endLsn > first.endLsn, 'the good continuation is accepted');
  t.equal(decoder.lastError, null);
  t.ok(readFileSync(path).subarray(0, 200_000).equals(wal.subarray(0, 200_000)));
  await file.close();
});

t.test('floor measurement helpers', async (t) => {
  const dir = await scratch(t);
  const lat = await measureWriteSyncFloor(join(dir, 'floor'), 8192, 10, true);
  t.ok(lat instanceof Float64Array);
  t.equal(lat.length, 10);
  t.ok(lat.every((ns) => ns > 0));
  const bps = await measureSequentialWriteFloor(join(dir, 'seq'), 8 << 20, 1 << 20, true);
  t.ok(bps > 0);
  t.same(await readdir(dir), [], 'scratch files removed');
  await t.rejects(measureWriteSyncFloor(join(dir, 'f'), 1000, 1, true), { code: 'SK_INVALID_ARGUMENT' });
});
