// Peer recovery with real processes: a safekeeper that was down while the others committed WAL catches
// up from its peers with no proposer connected, byte for byte.
import t from 'tap';
import { parseLsn, lsn } from '../src/lsn.js';
import { Proposer } from '../src/proposer/proposer_client.js';
import { ControlFile } from '../src/storage/control_file.js';
import { WalStore } from '../src/storage/wal_store.js';
import { startCluster, type SafekeeperProcess } from './helpers/safekeeper_process.js';
import { SEGMENT_SIZE, SYSTEM_ID, TestWalStream } from './helpers/wal_stream.js';

const TENANT = 'tp';
const TIMELINE = 'tlp';
let nodes: SafekeeperProcess[] = [];

t.before(async () => {
  nodes = await startCluster(3, [], { peers: true });
  for (const n of nodes) await n.api('POST', `/v1/tenant/${TENANT}/timeline/${TIMELINE}`, {});
});
t.teardown(async () => {
  for (const n of nodes) await n.kill();
});

t.test('a lagging safekeeper catches up from its peers without a proposer', { timeout: 120_000 }, async (t) => {
  const lagging = nodes[2]!;
  await lagging.kill();
  const p = new Proposer({
    safekeepers: nodes.map((n) => n.wsUrl), tenantId: TENANT, timelineId: TIMELINE, systemId: SYSTEM_ID,
    pgVersion: 150020, segmentSizeBytes: SEGMENT_SIZE, reconnectMinMs: 20, reconnectMaxMs: 200,
  });
  p.on('error', () => undefined);
  p.start();
  const elected = await p.waitElected();
  const wal = new TestWalStream(elected.termStartLsn, 3);
  let committed = elected.termStartLsn;
  // 20 MiB: crosses a segment boundary, so the recovering node also completes and renames a segment.
  while (wal.endLsn < elected.termStartLsn + 20 * 1024 * 1024) committed = await p.append(wal.append(128 * 1024));
  // One more empty-ish round so both live nodes learn the final commitLsn.
  committed = await p.append(wal.append(8192));
  await p.close();

  await lagging.start();
  const deadline = Date.now() + 60_000;
  let flush = 0;
  while (Date.now() < deadline) {
    const st = await lagging.api('GET', `/v1/tenant/${TENANT}/timeline/${TIMELINE}`);
    flush = parseLsn(String(st.body.flushLsn));
    if (flush >= committed) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  t.ok(flush >= committed, `the lagging node reached ${flush} (committed ${committed}) from its peers`);
  await lagging.stop();
  const dir = `${lagging.dataDir}/${TENANT}/${TIMELINE}`;
  const cf = await ControlFile.open(dir);
  const store = await WalStore.open({ dir, segmentSizeBytes: SEGMENT_SIZE, timelineStartLsn: cf.state!.timelineStartLsn, recoveryStartLsn: cf.state!.flushLsn });
  const bytes = await store.read(lsn(elected.termStartLsn), lsn(committed));
  t.ok(bytes.equals(wal.slice(elected.termStartLsn, committed)), 'recovered WAL is byte-identical to what the proposer wrote');
  t.same(cf.state!.termHistory.map((e) => e.term), [elected.term], 'it adopted the donor term history');
  await store.close();
});
