// Regression: a new leader's ProposerElected cuts this safekeeper's WAL below the control file's flushLsn
// hint. If the process dies right after the cut, recovery scans from that hint; the driver must have
// lowered it first, or recovery would start inside the zeroed tail and report WAL that no longer exists.
import t from 'tap';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newTimelineState } from '../src/core/acceptor.js';
import { PROTOCOL_VERSION, type AcceptorMessage, type ErrorMessage } from '../src/core/protocol_messages.js';
import { TimelineDriver } from '../src/driver/timeline_driver.js';
import { lsn, type Lsn } from '../src/lsn.js';
import { ControlFile } from '../src/storage/control_file.js';
import { term } from '../src/storage/timeline_state.js';
import { WalStore } from '../src/storage/wal_store.js';
import { SEGMENT_SIZE, SYSTEM_ID, TestWalStream } from './helpers/wal_stream.js';

const START = lsn(SEGMENT_SIZE);

t.test('the recovery hint is lowered before a truncation below it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sk-drv-'));
  const control = await ControlFile.open(dir);
  await control.persist(newTimelineState({ tenantId: 't', timelineId: 'l', timelineStartLsn: START, segmentSizeBytes: SEGMENT_SIZE }));
  const open = async () => {
    const store = await WalStore.open({ dir, segmentSizeBytes: SEGMENT_SIZE, timelineStartLsn: START, recoveryStartLsn: control.state!.flushLsn });
    return store;
  };
  let store = await open();
  // Write 1 MiB of WAL the way term 1's leader would, with a control file hint at its end.
  const wal = new TestWalStream(START);
  const cutAt = lsn(START + 256 * 1024);
  let boundary: Lsn = START;
  while (wal.endLsn < START + 1024 * 1024) {
    store.write(wal.endLsn, wal.append(8192));
    if (wal.endLsn <= cutAt) boundary = wal.endLsn;
  }
  await store.flush();
  await control.persist({ ...control.state!, term: term(1), termHistory: [{ term: term(1), lsn: START }], flushLsn: store.flushLsn });
  t.ok(control.state!.flushLsn > boundary, 'hint is past the future cut');

  const sent: AcceptorMessage[] = [];
  let crash = false;
  // The store's truncate runs, then the process "dies" before anything else (the term history persist).
  const crashingStore = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'truncate') {
        return async (at: Lsn, commit: Lsn) => {
          await target.truncate(at, commit);
          crash = true;
          throw Object.assign(new Error('simulated crash after truncate'), { code: 'SK_TEST_CRASH' });
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const driver = await TimelineDriver.open({
    config: { nodeId: 1 },
    control,
    store: crashingStore,
    sink: { send: (_c, m) => sent.push(m), close: (_c: number, _e: ErrorMessage | null) => undefined },
    onFatal: () => undefined,
  });
  const send = (message: Parameters<typeof driver.input>[0] & { kind: 'message' }) => driver.input(message);
  driver.input({ kind: 'connectionOpened', connId: 1 });
  send({ kind: 'message', connId: 1, message: { kind: 'ProposerGreeting', protocolVersion: PROTOCOL_VERSION, proposerId: 9, tenantId: 't', timelineId: 'l', systemId: SYSTEM_ID, pgVersion: 150020, segmentSizeBytes: SEGMENT_SIZE } });
  send({ kind: 'message', connId: 1, message: { kind: 'VoteRequest', term: term(2) } });
  await driver.whenIdle();
  // Term 2's leader never saw term 1's tail past `boundary`: its history says term 1 ended there.
  send({ kind: 'message', connId: 1, message: { kind: 'ProposerElected', term: term(2), startLsn: boundary, termHistory: [{ term: term(1), lsn: START }, { term: term(2), lsn: boundary }] } });
  await new Promise((r) => setTimeout(r, 200));
  t.ok(crash, 'the truncation ran, then the process died');
  store = await WalStore.open({ dir, segmentSizeBytes: SEGMENT_SIZE, timelineStartLsn: START, recoveryStartLsn: (await ControlFile.open(dir)).state!.flushLsn });
  t.equal(store.flushLsn, boundary, 'recovery ends at the cut, not at the stale hint');
  await store.close();
});
