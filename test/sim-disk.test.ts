// The simulator's building blocks: the simulated disk (durability, crash, torn writes), its adapters to the
// production WalStorage/ControlStore interfaces, the seeded PRNG and the in-order network lane.
import t from 'tap';
import { lsn } from '../src/lsn.js';
import { hasCode, ErrorCodes } from '../src/errors.js';
import { newTimelineState } from '../src/core/acceptor.js';
import { term } from '../src/storage/timeline_state.js';
import type { ControlStore, WalStorage } from '../src/storage/wal_storage.js';
import { EventQueue } from '../src/sim/event_queue.js';
import { Prng } from '../src/sim/prng.js';
import { SimDisk } from '../src/sim/sim_disk.js';
import { Lane } from '../src/sim/sim_network.js';
import { paramsForSeed } from '../src/sim/sim_params.js';
import { SimControlStore, SimWalStorage } from '../src/sim/sim_storage.js';

const START = lsn(4096);
const control = newTimelineState({ tenantId: 'aa', timelineId: 'bb', timelineStartLsn: START, segmentSizeBytes: 16 << 20 });
const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);

t.test('disk: only flushed WAL is guaranteed to survive a crash', async (t) => {
  for (let seed = 0; seed < 200; seed++) {
    const disk = new SimDisk(START, control);
    disk.write(START, bytes(100, 1));
    disk.flush();
    disk.write(lsn(START + 100), bytes(50, 2));
    disk.write(lsn(START + 150), bytes(50, 3));
    const report = disk.crash(new Prng(seed), 'none', 0.5);
    const { flushLsn } = disk.recover();
    t.ok(flushLsn >= START + 100, 'flushed bytes survive');
    t.ok([START + 100, START + 150, START + 200].includes(flushLsn), `ends at a write boundary (${flushLsn})`);
    t.equal(report.survivedUnflushedBytes + report.lostBytes, 100);
    if (report.tornWrite) t.ok(flushLsn < START + 200, 'a torn write is never recovered');
    if (flushLsn === START + 200) t.same(disk.read(lsn(START + 150), lsn(START + 200)), bytes(50, 3), 'surviving writes are intact');
  }
});

t.test('disk: a torn write fails its checksum and ends recovery', async (t) => {
  let torn = 0;
  for (let seed = 0; seed < 100; seed++) {
    const disk = new SimDisk(START, control);
    disk.write(START, bytes(64, 5));
    const report = disk.crash(new Prng(seed), 'none', 1);
    if (report.tornWrite) {
      torn++;
      t.equal(disk.recover().flushLsn, START, 'torn write dropped');
    }
  }
  t.ok(torn > 10, `tore ${torn} writes`);
});

t.test('disk: gaps, truncation below commit, reads outside the WAL are refused', async (t) => {
  const disk = new SimDisk(START, control);
  t.throws(() => disk.write(lsn(START + 1), bytes(1, 1)), { code: ErrorCodes.WAL_GAP });
  disk.write(START, bytes(100, 1));
  disk.flush();
  t.throws(() => disk.truncate(lsn(START + 10), lsn(START + 20)), { code: ErrorCodes.TRUNCATE_BELOW_COMMIT });
  t.throws(() => disk.read(lsn(START + 50), lsn(START + 101)), { code: ErrorCodes.WAL_NOT_AVAILABLE });
  disk.truncate(lsn(START + 40), lsn(START + 40));
  t.equal(disk.durableEnd, START + 40);
  t.equal(disk.takeChangedFrom(), START + 40, 'the checker learns where durable content changed');
  disk.write(lsn(START + 40), bytes(10, 9));
  t.equal(disk.durableEnd, START + 40, 'new writes are not durable before a flush');
});

t.test('disk: an interrupted control file replacement is all or nothing', async (t) => {
  const seen = new Set<number>();
  for (let seed = 0; seed < 50; seed++) {
    const disk = new SimDisk(START, control);
    disk.beginPersistControl({ ...control, term: term(5) });
    disk.crash(new Prng(seed), 'persistControl', 0);
    const loaded = disk.recover().control.term;
    t.ok(loaded === 0 || loaded === 5);
    seen.add(loaded);
  }
  t.same([...seen].sort(), [0, 5], 'both outcomes happen');
});

async function drain<T>(queue: EventQueue, p: Promise<T>): Promise<T> {
  let done = false;
  const result = p.finally(() => {
    done = true;
  });
  while (!done) {
    if (!queue.runNext()) await new Promise((r) => setImmediate(r));
    await Promise.resolve();
  }
  return result;
}

t.test('SimWalStorage implements WalStorage on the simulated clock, with group commit', async (t) => {
  const queue = new EventQueue();
  const disk = new SimDisk(START, control);
  const storage: WalStorage = new SimWalStorage(disk, queue, new Prng(1), paramsForSeed(1).disk);
  storage.write(START, bytes(10, 1));
  t.equal(storage.writeLsn, START + 10);
  t.equal(storage.flushLsn, START, 'not durable yet');
  const a = storage.flush();
  const b = storage.flush();
  const fsyncsBefore = disk.fsyncCount;
  t.equal(await drain(queue, a), START + 10);
  t.equal(await b, START + 10);
  t.equal(disk.fsyncCount - fsyncsBefore, 1, 'two waiters, one fdatasync');
  t.ok(queue.now > 0, 'the flush took simulated time');
  t.same(await drain(queue, storage.read(START, lsn(START + 4))), bytes(4, 1));
  await t.rejects(drain(queue, storage.truncate(START, lsn(START + 5))), { code: ErrorCodes.TRUNCATE_BELOW_COMMIT });
  await drain(queue, storage.truncate(lsn(START + 5), START));
  t.equal(storage.flushLsn, START + 5);
  await t.rejects(drain(queue, storage.read(START, lsn(START + 6))), { code: ErrorCodes.WAL_NOT_AVAILABLE });
  t.throws(() => storage.write(START, bytes(1, 1)), { code: ErrorCodes.WAL_GAP });
  t.equal(await storage.removeSegmentsBelow(START), 0);
  await storage.close();
  t.ok(hasCode((() => { try { storage.write(lsn(START + 5), bytes(1, 1)); } catch (e) { return e; } return null; })(), ErrorCodes.STORE_CLOSED), 'closed');
  const controlStore: ControlStore = new SimControlStore(disk, queue, new Prng(2), paramsForSeed(1).disk);
  await drain(queue, controlStore.persist({ ...control, term: term(3) }));
  t.equal(disk.durableControl.term, 3);
});

t.test('Prng: deterministic per seed, roughly uniform', async (t) => {
  const a = new Prng(99);
  const b = new Prng(99);
  const xs = Array.from({ length: 100 }, () => a.u32());
  t.same(Array.from({ length: 100 }, () => b.u32()), xs);
  t.not(new Prng(100).u32(), new Prng(99).u32());
  const r = new Prng(5);
  const buckets = [0, 0, 0, 0];
  for (let i = 0; i < 40_000; i++) buckets[r.int(4)]!++;
  for (const c of buckets) t.ok(c > 9000 && c < 11_000, `bucket ${c}`);
  t.equal(new Prng(0).bytes(7).length, 7);
});

t.test('Lane: in order, and a cut keeps a delayed prefix', async (t) => {
  const queue = new EventQueue();
  const got: number[] = [];
  const lane = new Lane<number>(queue, (x) => got.push(x));
  lane.push(1, 500);
  lane.push(2, 10); // may not overtake 1
  lane.push(3, 100);
  while (queue.runNext()) {
    /* drain */
  }
  t.same(got, [1, 2, 3]);
  got.length = 0;
  lane.push(4, 100);
  lane.push(5, 100);
  lane.push(6, 100);
  lane.cut(2, 1000);
  const at = queue.now;
  while (queue.runNext()) {
    /* drain */
  }
  t.same(got, [4, 5], 'prefix kept, tail lost');
  t.ok(queue.now >= at + 1000, 'late');
});
