// Control file: encoding round trip, every kind of corruption refused with a typed error naming the file,
// and atomic replacement (a stale temp file from an interrupted write never shadows the real one).
import t from 'tap';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlFile, CONTROL_FILE_NAME } from '../src/storage/control_file.js';
import { decodeControlFile, encodeControlFile } from '../src/storage/control_file_codec.js';
import { lsn } from '../src/lsn.js';
import { term, type TimelinePersistentState } from '../src/storage/timeline_state.js';

export function sampleState(overrides: Partial<TimelinePersistentState> = {}): TimelinePersistentState {
  return {
    tenantId: 'a1b2c3d4e5f60718293a4b5c6d7e8f90',
    timelineId: '0f1e2d3c4b5a69788796a5b4c3d2e1f0',
    term: term(7),
    votedFor: 3,
    minTerm: term(2),
    termHistory: [
      { term: term(1), lsn: lsn(0x0100_0028) },
      { term: term(4), lsn: lsn(0x0234_5678) },
      { term: term(7), lsn: lsn(0x0500_0000) },
    ],
    flushLsn: lsn(0x05c6_8588),
    commitLsn: lsn(0x05c6_8000),
    backupLsn: lsn(0x0500_0000),
    peerHorizonLsn: lsn(0x0400_0000),
    timelineStartLsn: lsn(0x0100_0028),
    localStartLsn: lsn(0x0100_0000),
    pgVersion: 150020,
    systemId: 7710768150544533954n,
    segmentSizeBytes: 16 * 1024 * 1024,
    ...overrides,
  };
}

t.test('round trip keeps every field', async (t) => {
  const state = sampleState();
  t.same(decodeControlFile(encodeControlFile(state), 'x'), state);
  const empty = sampleState({ termHistory: [], tenantId: '', timelineId: '', systemId: 2n ** 64n - 1n });
  t.same(decodeControlFile(encodeControlFile(empty), 'x'), empty);
});

t.test('any single flipped byte is refused as corrupt, naming the file', async (t) => {
  const bytes = encodeControlFile(sampleState());
  let refused = 0;
  for (let i = 0; i < bytes.length; i++) {
    const bad = Buffer.from(bytes);
    bad[i] = bad[i]! ^ 0x5a;
    try {
      decodeControlFile(bad, '/data/t/safekeeper.control');
    } catch (err) {
      const e = err as { code: string; message: string };
      if (['SK_CONTROL_FILE_CORRUPT', 'SK_CONTROL_FILE_VERSION'].includes(e.code) && e.message.includes('/data/t/safekeeper.control')) refused++;
    }
  }
  t.equal(refused, bytes.length, 'every corruption detected');
});

t.test('truncated, empty and oversized files are refused', async (t) => {
  const bytes = encodeControlFile(sampleState());
  for (const len of [0, 3, 12, 15, bytes.length - 1]) {
    t.throws(() => decodeControlFile(bytes.subarray(0, len), 'f'), { code: 'SK_CONTROL_FILE_CORRUPT' }, `length ${len}`);
  }
  t.throws(() => decodeControlFile(Buffer.concat([bytes, Buffer.alloc(1)]), 'f'), { code: 'SK_CONTROL_FILE_CORRUPT' });
});

t.test('a newer format version is refused with its own code', async (t) => {
  const bytes = encodeControlFile(sampleState());
  bytes.writeUInt32LE(2, 4);
  t.throws(() => decodeControlFile(bytes, 'f'), { code: 'SK_CONTROL_FILE_VERSION' });
});

t.test('persist replaces durably; a stale temp file is ignored and removed', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sk-cf-'));
  const cf = await ControlFile.open(dir);
  t.equal(cf.state, null, 'new timeline has no state');
  await cf.persist(sampleState({ term: term(1) }));
  await cf.persist(sampleState({ term: term(2) }));
  // An interrupted replacement: the temp file is torn garbage.
  await writeFile(join(dir, `${CONTROL_FILE_NAME}.tmp`), Buffer.from('torn half-written control file'));
  const again = await ControlFile.open(dir);
  t.equal(again.state?.term, 2);
  await t.rejects(readFile(join(dir, `${CONTROL_FILE_NAME}.tmp`)), { code: 'ENOENT' });
});

t.test('a corrupt control file stops the timeline with an error naming it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sk-cf-'));
  const cf = await ControlFile.open(dir);
  await cf.persist(sampleState());
  const path = join(dir, CONTROL_FILE_NAME);
  const bytes = await readFile(path);
  bytes[20] = bytes[20]! ^ 1;
  await writeFile(path, bytes);
  await t.rejects(ControlFile.open(dir), { code: 'SK_CONTROL_FILE_CORRUPT', message: new RegExp(path) });
});
