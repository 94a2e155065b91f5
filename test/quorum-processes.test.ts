// Three real safekeeper processes and a networked proposer writing real-format WAL: kill -9 one under
// load (commits go on), two (commits stall, then resume), all (nothing acknowledged lost); a stale
// proposer and a fenced term are refused.
import t from 'tap';
import { lsn, type Lsn } from '../src/lsn.js';
import { Proposer } from '../src/proposer/proposer_client.js';
import { WalStore } from '../src/storage/wal_store.js';
import { ControlFile } from '../src/storage/control_file.js';
import { startCluster, type SafekeeperProcess } from './helpers/safekeeper_process.js';
import { SEGMENT_SIZE, SYSTEM_ID, TestWalStream } from './helpers/wal_stream.js';

const TENANT = 'tenant1';
const TIMELINE = 'tl1';

let nodes: SafekeeperProcess[] = [];
/** The one WAL stream both tests continue: a new term resumes it at its start LSN (prev links must hold). */
let wal: TestWalStream;
const proposers: Proposer[] = [];

function newProposer(): Proposer {
  const p = new Proposer({
    safekeepers: nodes.map((n) => n.wsUrl),
    tenantId: TENANT, timelineId: TIMELINE, systemId: SYSTEM_ID, pgVersion: 150020, segmentSizeBytes: SEGMENT_SIZE,
    reconnectMinMs: 20, reconnectMaxMs: 200,
  });
  p.on('error', () => undefined);
  proposers.push(p);
  p.start();
  return p;
}

const withTimeout = <T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> =>
  Promise.race([p, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms))]);

/** What a safekeeper holds on disk, read with the store's own recovery once its process is stopped. */
async function durableWal(node: SafekeeperProcess, from: Lsn): Promise<{ flushLsn: Lsn; bytes: Buffer; commitLsn: Lsn }> {
  const dir = `${node.dataDir}/${TENANT}/${TIMELINE}`;
  const cf = await ControlFile.open(dir);
  const store = await WalStore.open({ dir, segmentSizeBytes: SEGMENT_SIZE, timelineStartLsn: cf.state!.timelineStartLsn, recoveryStartLsn: cf.state!.flushLsn });
  const bytes = await store.read(from, store.flushLsn);
  const out = { flushLsn: store.flushLsn, bytes, commitLsn: cf.state!.commitLsn };
  await store.close();
  return out;
}

t.before(async () => {
  nodes = await startCluster(3);
  for (const n of nodes) {
    const r = await n.api('POST', `/v1/tenant/${TENANT}/timeline/${TIMELINE}`, {});
    if (r.status !== 201) throw new Error(JSON.stringify(r));
  }
});
t.teardown(async () => {
  for (const p of proposers) await p.close().catch(() => undefined);
  for (const n of nodes) await n.kill();
});

t.test('quorum commits through kill -9 of one, stalls on two, resumes, and survives a full restart', { timeout: 180_000 }, async (t) => {
  const p1 = newProposer();
  const elected = await p1.waitElected();
  t.equal(elected.termStartLsn, SEGMENT_SIZE, 'first term starts at the timeline start');
  wal = new TestWalStream(elected.termStartLsn);
  let acked: Lsn = elected.termStartLsn;
  const appendMany = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const commit = await p1.append(wal.append(8192));
      t.ok(commit >= acked, 'commitLsn never goes backwards');
      acked = commit;
    }
  };
  await appendMany(50);
  t.ok(acked >= wal.endLsn - 8192 * 2, 'appends commit');

  // kill -9 one safekeeper under load: commits go on.
  const inflight = appendMany(100);
  await new Promise((r) => setTimeout(r, 30));
  await nodes[2]!.kill();
  await inflight;
  await appendMany(50);
  t.pass('commits continue with one of three down');

  // Two down: no quorum, an append stalls and the proposer says so.
  let lost = false;
  p1.once('quorumLost', () => { lost = true; });
  await nodes[1]!.kill();
  const stalled = p1.append(wal.append(8192));
  t.equal(await withTimeout(stalled, 1500), 'timeout', 'no commit without a quorum');
  t.ok(lost, 'quorumLost reported');
  // Restart one: the stalled append commits.
  await nodes[1]!.start();
  const resumed = await withTimeout(stalled, 15_000);
  t.not(resumed, 'timeout', 'commit resumes once a majority is back');
  acked = resumed as Lsn;
  await nodes[2]!.start();
  await appendMany(30);

  // Restart everything abruptly; a new proposer takes over with a higher term.
  for (const n of nodes) await n.kill();
  await p1.close();
  for (const n of nodes) await n.start();
  const p2 = newProposer();
  const e2 = await p2.waitElected();
  t.ok(e2.term > elected.term, 'new term is higher');
  t.ok(e2.termStartLsn >= acked, `new term starts at ${e2.termStartLsn}, at or past everything acknowledged (${acked})`);
  wal.resumeAt(e2.termStartLsn);
  let acked2: Lsn = e2.termStartLsn;
  for (let i = 0; i < 30; i++) acked2 = await p2.append(wal.append(8192));

  // Everything acknowledged is on a majority, byte-identical to what was written.
  await p2.close();
  for (const n of nodes) await n.stop();
  let holders = 0;
  for (const n of nodes) {
    const held = await durableWal(n, lsn(SEGMENT_SIZE));
    const upto = Math.min(held.flushLsn, acked2);
    t.ok(held.bytes.subarray(0, upto - SEGMENT_SIZE).equals(wal.slice(SEGMENT_SIZE, upto)), `sk${n.id} holds exactly the written WAL up to ${upto}`);
    if (held.flushLsn >= acked2) holders++;
  }
  t.ok(holders >= 2, `acknowledged WAL on ${holders} of 3 safekeepers`);
  for (const n of nodes) await n.start();
});

t.test('a stale proposer is refused and steps down; a fenced term is refused', { timeout: 120_000 }, async (t) => {
  const a = newProposer();
  const ea = await a.waitElected();
  wal.resumeAt(ea.termStartLsn);
  await a.append(wal.append(4096)).catch(() => undefined);
  const aDown = new Promise<string>((r) => a.once('steppedDown', r));
  const b = newProposer();
  const eb = await b.waitElected();
  t.ok(eb.term > ea.term, 'second proposer wins a higher term');
  const pending = a.append(wal.append(4096)).then(() => 'committed', (e: { code?: string }) => e.code ?? 'error');
  const reason = await withTimeout(aDown, 10_000);
  t.not(reason, 'timeout', `stale proposer stepped down (${String(reason)})`);
  t.equal(await withTimeout(pending, 5000), 'SK_PROPOSER_STEPPED_DOWN', 'its appends are refused');

  // Fence above b's term on every safekeeper: b is refused, and a new proposer campaigns above the fence.
  const bDown = new Promise<string>((r) => b.once('steppedDown', r));
  for (const n of nodes) {
    const r = await n.api('POST', `/v1/tenant/${TENANT}/timeline/${TIMELINE}/fence`, { minTerm: eb.term + 100 });
    t.equal(r.status, 200);
  }
  const stale = b.append(wal.append(4096)).then(() => 'committed', (e: { code?: string }) => e.code ?? 'error');
  t.not(await withTimeout(bDown, 10_000), 'timeout', 'fenced proposer stepped down');
  t.equal(await withTimeout(stale, 5000), 'SK_PROPOSER_STEPPED_DOWN');
  const c = newProposer();
  const ec = await c.waitElected();
  t.ok(ec.term >= eb.term + 100, `new proposer's term ${ec.term} respects the fence`);
});
