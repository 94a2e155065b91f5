// `npm run bench:storage`: the WAL store's append+flush latency and ingest bandwidth, CRC-32C and WAL
// decoder throughput, each beside the floor this run measures on the same disk with the same addon.
// Uses the real PostgreSQL WAL fixtures, since the store validates every record it is given.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import * as hdr from 'hdr-histogram-js';
import { lsn } from '../src/lsn.js';
import { WalDecoder, crc32c, measureSequentialWriteFloor, measureWriteSyncFloor } from '../src/native.js';
import { WalStore } from '../src/storage/wal_store.js';
import { emit, progress } from './bench_output.js';

const SEGMENT = 16 * 1024 * 1024;
const START = 0x0100_0000;
const END = 0x05c6_8588;
const here = dirname(fileURLToPath(import.meta.url));
const fixtureDir = process.env.SK_FIXTURE_DIR ?? resolve(here, '../../../shared/fixtures/pg15-wal');
const benchRoot = process.env.SK_BENCH_DIR ?? tmpdir();

function loadFixture(): Buffer {
  const parts: Buffer[] = [];
  for (let s = 1; s <= 5; s++) parts.push(gunzipSync(readFileSync(join(fixtureDir, `00000001000000000000000${s}.gz`))));
  return Buffer.concat(parts).subarray(0, END - START);
}

function histogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
}

async function storeLatency(wal: Buffer, sizeBytes: number, ops: number): Promise<hdr.Histogram> {
  const h = histogram();
  let done = 0;
  while (done < ops) {
    const dir = await mkdtemp(join(benchRoot, 'sk-bench-store-'));
    const store = await WalStore.open({ dir, segmentSizeBytes: SEGMENT, timelineStartLsn: lsn(START) });
    // Warm up: the first segment's creation is not part of the steady state being measured.
    let pos = START;
    for (let i = 0; i < 16; i++, pos += sizeBytes) {
      store.write(lsn(pos), wal.subarray(pos - START, pos - START + sizeBytes));
      await store.flush();
    }
    while (done < ops && pos + sizeBytes <= END) {
      const t0 = process.hrtime.bigint();
      store.write(lsn(pos), wal.subarray(pos - START, pos - START + sizeBytes));
      await store.flush();
      h.recordValue(Number(process.hrtime.bigint() - t0) / 1000);
      pos += sizeBytes;
      done++;
    }
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
  return h;
}

async function floorLatency(sizeBytes: number, ops: number): Promise<hdr.Histogram> {
  const dir = await mkdtemp(join(benchRoot, 'sk-bench-floor-'));
  const samples = await measureWriteSyncFloor(join(dir, 'floor'), sizeBytes, ops + 16, true);
  await rm(dir, { recursive: true, force: true });
  const h = histogram();
  for (let i = 16; i < samples.length; i++) h.recordValue(samples[i]! / 1000);
  return h;
}

async function ingest(wal: Buffer): Promise<number> {
  const dir = await mkdtemp(join(benchRoot, 'sk-bench-ingest-'));
  const store = await WalStore.open({ dir, segmentSizeBytes: SEGMENT, timelineStartLsn: lsn(START) });
  const chunk = 1 << 20;
  const t0 = process.hrtime.bigint();
  let pos = START;
  let pendingSince = 0;
  while (pos < END) {
    const len = Math.min(chunk, END - pos);
    store.write(lsn(pos), wal.subarray(pos - START, pos - START + len));
    pos += len;
    pendingSince += len;
    // Like a proposer streaming: flush when a segment's worth is queued; group commit does the rest.
    if (pendingSince >= SEGMENT) {
      await store.flush();
      pendingSince = 0;
    }
  }
  await store.flush();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  await store.close();
  await rm(dir, { recursive: true, force: true });
  return (END - START) / seconds / 1e6;
}

async function main(): Promise<void> {
  progress(`loading fixtures from ${fixtureDir}; data on ${benchRoot}`);
  const wal = loadFixture();
  const bench = 'storage';
  for (const [size, ops] of [[8192, 4000], [131072, 600]] as const) {
    const label = size === 8192 ? '8k' : '128k';
    progress(`append+flush ${label}: floor`);
    const floor = await floorLatency(size, ops);
    progress(`append+flush ${label}: store`);
    const store = await storeLatency(wal, size, ops);
    for (const [p, name] of [[50, 'p50'], [99, 'p99'], [99.9, 'p99.9']] as const) {
      emit(bench, `append_flush_${label}_${name}`, store.getValueAtPercentile(p), 'us', floor.getValueAtPercentile(p));
    }
  }

  progress('sequential ingest');
  const floorDir = await mkdtemp(join(benchRoot, 'sk-bench-seq-'));
  const seqFloor = (await measureSequentialWriteFloor(join(floorDir, 'seq'), 256 * 1024 * 1024, 1 << 20, true)) / 1e6;
  await rm(floorDir, { recursive: true, force: true });
  const ingestMBs = await ingest(wal);
  emit(bench, 'ingest_sequential', ingestMBs, 'MB/s', seqFloor);

  progress('CRC-32C and decoder');
  const rounds = 10;
  let t0 = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) Buffer.from(wal);
  const copyGBs = (wal.length * rounds) / (Number(process.hrtime.bigint() - t0) / 1e9) / 1e9;
  t0 = process.hrtime.bigint();
  let sink = 0;
  for (let i = 0; i < rounds; i++) sink ^= crc32c(wal);
  const crcGBs = (wal.length * rounds) / (Number(process.hrtime.bigint() - t0) / 1e9) / 1e9;
  // Floor for CRC: copying the same bytes (memory bandwidth), the most any pass over them can reach.
  emit(bench, 'crc32c', crcGBs, 'GB/s', copyGBs);
  t0 = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) {
    const d = new WalDecoder({ startLsn: START, segmentSizeBytes: SEGMENT });
    const r = d.feed(wal);
    sink ^= r.recordCount;
  }
  const decoderMBs = (wal.length * rounds) / (Number(process.hrtime.bigint() - t0) / 1e9) / 1e6;
  // Floor for the decoder: the CRC it must compute over every byte.
  emit(bench, 'wal_decoder', decoderMBs, 'MB/s', crcGBs * 1000);
  if (sink === 0.5) process.stderr.write('');
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${String(err)}\n`);
  process.exit(1);
});
