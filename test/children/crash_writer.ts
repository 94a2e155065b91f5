// Child process for the crash tests: writes fixture WAL (or control files) and reports on stdout what
// was acknowledged as durable, until the parent or a failpoint SIGKILLs it. Only prints after an ack.
import { open } from 'node:fs/promises';
import { ControlFile } from '../../src/storage/control_file.js';
import { lsn } from '../../src/lsn.js';
import { term } from '../../src/storage/timeline_state.js';
import { WalStore, type WalStoreFailpoint } from '../../src/storage/wal_store.js';

const [mode, dir, walFile, crashAt, crashAfterText, seedText] = process.argv.slice(2);
const START = 0x0100_0000;
const END = 0x05c6_8588;
const SEGMENT = 16 * 1024 * 1024;
let seed = Number(seedText ?? 1);
const rand = (n: number): number => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed % n;
};

async function writeWal(): Promise<void> {
  let remaining = Number(crashAfterText ?? 0);
  const failpoint = crashAt && crashAt !== 'none'
    ? (name: WalStoreFailpoint) => {
        if (name === crashAt && remaining-- <= 0) process.kill(process.pid, 'SIGKILL');
      }
    : undefined;
  const store = await WalStore.open({
    dir: dir!, segmentSizeBytes: SEGMENT, timelineStartLsn: lsn(START), ...(failpoint ? { failpoint } : {}),
  });
  process.stdout.write(`R ${store.flushLsn}\n`);
  const wal = await open(walFile!, 'r');
  let pos: number = store.writeLsn;
  while (pos < END) {
    const burst = 1 + rand(8);
    for (let i = 0; i < burst && pos < END; i++) {
      const len = Math.min(END - pos, 1 + (rand(4) === 0 ? rand(400_000) : rand(20_000)));
      const buf = Buffer.alloc(len);
      await wal.read(buf, 0, len, pos - START);
      store.write(lsn(pos), buf);
      pos += len;
    }
    const flushed = await store.flush();
    process.stdout.write(`F ${flushed} ${store.durableLsn}\n`);
  }
  process.stdout.write('DONE\n');
  await store.close();
}

async function writeControl(): Promise<void> {
  const cf = await ControlFile.open(dir!);
  let t = cf.state?.term ?? 0;
  const base = { tenantId: 't', timelineId: 'l', votedFor: 1, minTerm: term(0), termHistory: [], flushLsn: lsn(0),
    commitLsn: lsn(0), backupLsn: lsn(0), peerHorizonLsn: lsn(0), timelineStartLsn: lsn(0), localStartLsn: lsn(0),
    pgVersion: 150000, systemId: 1n, segmentSizeBytes: SEGMENT };
  for (;;) {
    t++;
    // Vary the length so a torn write could not pass as a shorter valid file.
    const history = Array.from({ length: t % 50 }, (_, i) => ({ term: term(i + 1), lsn: lsn(i * 100) }));
    await cf.persist({ ...base, term: term(t), termHistory: history });
    process.stdout.write(`P ${t}\n`);
  }
}

(mode === 'control' ? writeControl() : writeWal()).catch((err: unknown) => {
  process.stderr.write(`child failed: ${String(err)}\n`);
  process.exit(3);
});
