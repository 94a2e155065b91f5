// The on-disk WAL of one timeline (format: docs/ON_DISK.md). Accepts WAL bytes, validates every record
// with the native decoder, writes them into preallocated segment files and fdatasyncs them in batches.
// Never reports a flushLsn that is not durable, and never cuts WAL below the commit LSN.

import { open as openFile, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCodes, SafekeeperError, hasCode, invariant } from '../errors.js';
import { formatLsn, lsn, segmentNoOf, segmentStart, type Lsn } from '../lsn.js';
import { SegmentFile, WalDecoder, fsyncDir, prepareSegmentFile, renameDurable } from '../native.js';
import { SegmentPaths } from './segment_paths.js';
import type { WalStorage } from './wal_storage.js';

export type DirectIoMode = 'auto' | 'on' | 'off';

export interface WalStoreOptions {
  dir: string;
  segmentSizeBytes: number;
  /** Where the timeline's WAL begins: a record start, or a page start. */
  timelineStartLsn: Lsn;
  /** A durable record boundary to start the recovery scan at (the control file's flushLsn). */
  recoveryStartLsn?: Lsn;
  /** The persisted commitLsn: recovery refuses to end below it (that would mean acknowledged WAL is damaged). */
  commitLsn?: Lsn;
  direct?: DirectIoMode;
  /** Called once on an fsync failure; the default crashes the process (never ack after a failed fsync). */
  onFatal?: (err: Error) => void;
  /**
   * Crash-test failpoints: called at the named step. When set, write and fdatasync are issued as two
   * native calls so a test can kill the process between them; production leaves it unset.
   */
  failpoint?: (name: WalStoreFailpoint) => void;
}

export type WalStoreFailpoint = 'before-fdatasync' | 'before-segment-rename' | 'after-segment-rename';

export interface RecoveryReport {
  startLsn: Lsn;
  /** End of the WAL bytes kept (where writing continues); may be inside a record. */
  endLsn: Lsn;
  /** End of the last complete valid record. */
  flushLsn: Lsn;
  /** Start of that record, when this recovery decoded it. */
  lastRecordLsn: Lsn | null;
  scannedBytes: number;
  stopCode: string | null;
  removedSegments: number;
  durationMs: number;
}

interface Pending {
  lsn: Lsn;
  bytes: Buffer;
}

interface Waiter {
  target: Lsn;
  resolve: (flushLsn: Lsn) => void;
  reject: (err: Error) => void;
}

const crashProcess = (err: Error): void => {
  process.nextTick(() => {
    throw err;
  });
};

export class WalStore implements WalStorage {
  readonly paths: SegmentPaths;
  readonly segmentSizeBytes: number;
  readonly recovery: RecoveryReport;
  private readonly direct: DirectIoMode;
  private readonly onFatal: (err: Error) => void;
  private readonly failpoint: ((name: WalStoreFailpoint) => void) | undefined;

  private decoder: WalDecoder;
  private segment: SegmentFile | null = null;
  private segmentNo = -1;
  private prealloc: Promise<void> | null = null;
  private pending: Pending[] = [];
  private waiters: Waiter[] = [];
  private job: Promise<void> | null = null;
  private failed: Error | null = null;
  private closed = false;

  private writeEnd: Lsn;
  /** End of the bytes that are durable on disk (may be inside a record). */
  private durableEnd: Lsn;
  private flushEnd: Lsn;
  private oldestLsn: Lsn;
  /** Highest byte position ever handed to a write (bytes past it in a segment are zero). */
  private highWater: number;
  /** Start of the record that ends at flushLsn (its successor's xl_prev); -1 when not known. */
  private flushRecordStart = -1;
  /** Counters for tests and metrics: write batches issued (each one fdatasync per segment touched). */
  readonly stats = { batches: 0, bytes: 0 };

  private constructor(opts: WalStoreOptions, decoder: WalDecoder, report: RecoveryReport, localStart: Lsn) {
    this.paths = new SegmentPaths(opts.dir, opts.segmentSizeBytes);
    this.segmentSizeBytes = opts.segmentSizeBytes;
    this.direct = opts.direct ?? 'auto';
    this.onFatal = opts.onFatal ?? crashProcess;
    this.failpoint = opts.failpoint;
    this.decoder = decoder;
    this.writeEnd = report.endLsn;
    this.durableEnd = report.endLsn;
    // Recovery zeroed everything past its cut.
    this.highWater = report.endLsn;
    this.flushEnd = report.flushLsn;
    this.oldestLsn = localStart;
    this.recovery = report;
    this.flushRecordStart = report.lastRecordLsn ?? -1;
  }

  /** Opens (creating if needed) the WAL of a timeline directory and recovers the end of valid WAL. */
  static async open(opts: WalStoreOptions): Promise<WalStore> {
    const recovered = await recoverTimelineWal(opts);
    const store = new WalStore(opts, recovered.decoder, recovered.report, recovered.localStartLsn);
    // The segment the next write lands in may not exist yet (a new timeline, or WAL ending at a
    // segment boundary): zero-fill it now rather than on the first write's critical path.
    if (!(await exists(store.paths.partial(segmentNoOf(store.writeEnd, store.segmentSizeBytes))))) store.startPrealloc();
    return store;
  }

  get writeLsn(): Lsn {
    return this.writeEnd;
  }

  get flushLsn(): Lsn {
    return this.flushEnd;
  }

  /** End of durable bytes, possibly inside a record (flushLsn is the record boundary at or below it). */
  get durableLsn(): Lsn {
    return this.durableEnd;
  }

  /** Start of the last complete record below flushLsn (the next record's xl_prev), or null if unknown. */
  get lastRecordLsn(): Lsn | null {
    return this.flushRecordStart >= 0 && this.flushRecordStart < this.flushEnd ? lsn(this.flushRecordStart) : null;
  }

  /** Oldest WAL position still held locally. */
  get localStartLsn(): Lsn {
    return this.oldestLsn;
  }

  get isDirectIo(): boolean {
    return this.segment?.isDirect ?? false;
  }

  write(startLsn: Lsn, bytes: Uint8Array): void {
    this.assertUsable();
    if (startLsn !== this.writeEnd) {
      throw new SafekeeperError(
        ErrorCodes.WAL_GAP,
        `WAL write at ${formatLsn(startLsn)} does not continue the WAL, which ends at ${formatLsn(this.writeEnd)}`,
        { got: formatLsn(startLsn), expected: formatLsn(this.writeEnd) },
      );
    }
    if (bytes.length === 0) return;
    const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pending.push({ lsn: startLsn, bytes: buf });
    this.writeEnd = lsn(this.writeEnd + buf.length);
  }

  flush(): Promise<Lsn> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.writeEnd === this.durableEnd && this.job === null) return Promise.resolve(this.flushEnd);
    return new Promise<Lsn>((resolve, reject) => {
      this.waiters.push({ target: this.writeEnd, resolve, reject });
      this.pump();
    });
  }

  async truncate(at: Lsn, commitLsn: Lsn): Promise<void> {
    this.assertUsable();
    if (at < commitLsn) {
      throw new SafekeeperError(
        ErrorCodes.TRUNCATE_BELOW_COMMIT,
        `refusing to truncate WAL at ${formatLsn(at)}: below commitLsn ${formatLsn(commitLsn)}`,
        { got: formatLsn(at), expected: `>= ${formatLsn(commitLsn)}` },
      );
    }
    await this.drain();
    this.assertUsable();
    // Unflushed bytes past the cut are dropped with the tail; their flush() callers learn it.
    this.dropPending(new SafekeeperError(ErrorCodes.WAL_GAP, `WAL truncated at ${formatLsn(at)}`));
    if (at > this.durableEnd || at < this.oldestLsn) {
      throw new SafekeeperError(
        ErrorCodes.INVALID_ARGUMENT,
        `cannot truncate at ${formatLsn(at)}: WAL held is [${formatLsn(this.oldestLsn)}, ${formatLsn(this.durableEnd)})`,
      );
    }
    if (at === this.durableEnd) return;
    const cutSegmentNo = segmentNoOf(at, this.segmentSizeBytes);
    if (this.segment && this.segmentNo !== cutSegmentNo) await this.closeSegment();
    const names = await readdir(this.paths.dir);
    for (const entry of this.paths.parseListing(names)) {
      if (entry.segmentNo > cutSegmentNo) {
        await rm(join(this.paths.dir, entry.name), { force: true });
        await rm(this.paths.ready(entry.segmentNo), { force: true });
      } else if (entry.segmentNo === cutSegmentNo && !entry.partial) {
        // The cut falls inside a complete segment: it becomes the open, partial one again.
        await renameDurable(this.paths.complete(cutSegmentNo), this.paths.partial(cutSegmentNo));
        await rm(this.paths.ready(cutSegmentNo), { force: true });
      }
    }
    const base = segmentStart(cutSegmentNo, this.segmentSizeBytes);
    const offset = at - base;
    // Only what was ever written needs zeroing: the rest of the segment is zero since preallocation.
    const dirtyEnd = Math.min(this.segmentSizeBytes, Math.max(offset, this.highWater - base));
    const seg = await this.openSegment(cutSegmentNo);
    await seg.zero(offset, dirtyEnd, true);
    this.highWater = at;
    await fsyncDir(this.paths.dir);
    this.decoder = new WalDecoder({ startLsn: at, segmentSizeBytes: this.segmentSizeBytes });
    this.flushRecordStart = -1;
    this.writeEnd = at;
    this.durableEnd = at;
    this.flushEnd = at;
  }

  async read(from: Lsn, to: Lsn): Promise<Buffer> {
    if (from > to || from < this.oldestLsn || to > this.durableEnd) {
      throw new SafekeeperError(
        ErrorCodes.WAL_NOT_AVAILABLE,
        `WAL [${formatLsn(from)}, ${formatLsn(to)}) is not held here: have [${formatLsn(this.oldestLsn)}, ${formatLsn(this.durableEnd)})`,
        { from: formatLsn(from), to: formatLsn(to) },
      );
    }
    const out = Buffer.allocUnsafe(to - from);
    let pos: number = from;
    while (pos < to) {
      const segNo = segmentNoOf(pos as Lsn, this.segmentSizeBytes);
      const base = segmentStart(segNo, this.segmentSizeBytes);
      const n = Math.min(to, base + this.segmentSizeBytes) - pos;
      await this.readSegmentInto(segNo, pos - base, out.subarray(pos - from, pos - from + n));
      pos += n;
    }
    return out;
  }

  async removeSegmentsBelow(horizon: Lsn): Promise<number> {
    const names = await readdir(this.paths.dir);
    let removed = 0;
    for (const entry of this.paths.parseListing(names)) {
      const end = segmentStart(entry.segmentNo + 1, this.segmentSizeBytes);
      if (entry.partial || end > horizon || entry.segmentNo >= segmentNoOf(this.durableEnd, this.segmentSizeBytes)) continue;
      await rm(join(this.paths.dir, entry.name), { force: true });
      await rm(this.paths.ready(entry.segmentNo), { force: true });
      await rm(this.paths.done(entry.segmentNo), { force: true });
      this.oldestLsn = lsn(Math.max(this.oldestLsn, end));
      removed++;
    }
    if (removed > 0) await fsyncDir(this.paths.dir);
    return removed;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.drain();
    this.closed = true;
    this.dropPending(new SafekeeperError(ErrorCodes.STORE_CLOSED, 'WAL store closed'));
    await this.closeSegment();
    // A failed zero-fill of the next segment affects no WAL: its temp file is removed by the next recovery.
    if (this.prealloc) await this.prealloc.catch(() => undefined);
  }

  // ---- write pipeline -------------------------------------------------------------------------------

  private assertUsable(): void {
    if (this.failed) throw this.failed;
    if (this.closed) throw new SafekeeperError(ErrorCodes.STORE_CLOSED, 'WAL store closed');
  }

  /** Waits until no write job runs and nothing is pending. */
  private async drain(): Promise<void> {
    while (this.job) await this.job;
  }

  private pump(): void {
    if (this.job || this.pending.length === 0 || this.failed) return;
    const batch = this.pending;
    this.pending = [];
    this.stats.batches++;
    this.job = this.writeBatch(batch).then(
      () => {
        this.job = null;
        this.settleWaiters(null);
        this.pump();
      },
      (err: Error) => {
        this.job = null;
        this.onWriteError(err);
      },
    );
  }

  private settleWaiters(err: Error | null): void {
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.target <= this.durableEnd) w.resolve(this.flushEnd);
      else if (err) w.reject(err);
      else still.push(w);
    }
    this.waiters = still;
  }

  private dropPending(err: Error): void {
    this.pending = [];
    this.writeEnd = this.durableEnd;
    this.settleWaiters(err);
  }

  private onWriteError(err: Error): void {
    if (hasCode(err, ErrorCodes.FSYNC_FAILED) || !isExpectedWriteError(err)) {
      this.failed = err;
      this.pending = [];
      this.settleWaiters(err);
      this.onFatal(err);
      return;
    }
    // Invalid WAL, a full disk: nothing of the failed batch was acknowledged; what is durable stays.
    this.dropPending(err);
  }

  /** Writes a batch of contiguous chunks, one native write+fdatasync per segment touched. */
  private async writeBatch(batch: Pending[]): Promise<void> {
    const seg = this.segmentSizeBytes;
    let groupStart: Lsn = batch[0]!.lsn;
    invariant(groupStart === this.durableEnd, 'write batch must start at the durable end');
    let group: Buffer[] = [];
    let pos: number = groupStart;
    for (const chunk of batch) {
      let bytes = chunk.bytes;
      while (bytes.length > 0) {
        const segEnd = (Math.floor(pos / seg) + 1) * seg;
        const take = Math.min(bytes.length, segEnd - pos);
        group.push(bytes.subarray(0, take));
        bytes = bytes.subarray(take);
        pos += take;
        if (pos === segEnd) {
          await this.writeGroup(groupStart, group, true);
          group = [];
          groupStart = lsn(pos);
        }
      }
    }
    if (group.length > 0) await this.writeGroup(groupStart, group, false);
  }

  private async writeGroup(at: Lsn, chunks: Buffer[], completesSegment: boolean): Promise<void> {
    const segNo = segmentNoOf(at, this.segmentSizeBytes);
    const file = await this.openSegment(segNo);
    const offset = at - segmentStart(segNo, this.segmentSizeBytes);
    let length = 0;
    for (const c of chunks) length += c.length;
    // Raised before the write is issued: a write that fails midway may still have put bytes on disk.
    this.highWater = Math.max(this.highWater, at + length);
    let result;
    if (this.failpoint) {
      result = await file.write(offset, chunks, { sync: false, decoder: this.decoder });
      this.failpoint('before-fdatasync');
      await file.sync();
    } else {
      result = await file.write(offset, chunks, { sync: true, decoder: this.decoder });
    }
    this.durableEnd = lsn(at + length);
    this.stats.bytes += length;
    // After an XLOG_SWITCH the decoder's end is the segment's end, before the padding has arrived:
    // keep the previous boundary until the bytes up to that end are durable too.
    if (result.endLsn <= this.durableEnd) {
      this.flushEnd = lsn(result.endLsn);
      this.flushRecordStart = this.decoder.lastRecordStart;
    }
    if (completesSegment) await this.completeSegment(segNo);
  }

  /** Returns the open segment `segNo`, opening the existing .partial or creating it from the preallocated file. */
  private async openSegment(segNo: number): Promise<SegmentFile> {
    if (this.segment && this.segmentNo === segNo) return this.segment;
    await this.closeSegment();
    const path = this.paths.partial(segNo);
    if (!(await exists(path))) {
      if (!this.prealloc) this.startPrealloc();
      const ready = this.prealloc!;
      this.prealloc = null;
      await ready;
      await renameDurable(this.paths.prealloc(), path);
    }
    this.segment = await SegmentFile.open(path, this.segmentSizeBytes, { create: false, direct: this.direct });
    this.segmentNo = segNo;
    if (!this.prealloc) this.startPrealloc();
    return this.segment;
  }

  /** Zero-fills the next segment in the background so a segment switch never waits for it. */
  private startPrealloc(): void {
    const p = prepareSegmentFile(this.paths.prealloc(), this.segmentSizeBytes);
    // Observed when the file is needed; until then an error (ENOSPC) must not crash as unhandled.
    p.catch(() => undefined);
    this.prealloc = p;
  }

  private async closeSegment(): Promise<void> {
    const seg = this.segment;
    this.segment = null;
    this.segmentNo = -1;
    if (seg) await seg.close();
  }

  private async completeSegment(segNo: number): Promise<void> {
    await this.closeSegment();
    this.failpoint?.('before-segment-rename');
    await renameDurable(this.paths.partial(segNo), this.paths.complete(segNo));
    this.failpoint?.('after-segment-rename');
    // The .ready marker needs no fsync: recovery recreates it for any complete segment lacking one.
    await writeFile(this.paths.ready(segNo), '');
  }

  private async readSegmentInto(segNo: number, offset: number, into: Buffer): Promise<void> {
    let handle;
    try {
      handle = await openFile(this.paths.complete(segNo), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      handle = await openFile(this.paths.partial(segNo), 'r');
    }
    try {
      let done = 0;
      while (done < into.length) {
        const { bytesRead } = await handle.read(into, done, into.length - done, offset + done);
        if (bytesRead === 0) throw new SafekeeperError(ErrorCodes.IO, `short read in segment ${this.paths.name(segNo)}`);
        done += bytesRead;
      }
    } finally {
      await handle.close();
    }
  }
}

function isExpectedWriteError(err: unknown): boolean {
  return hasCode(err, ErrorCodes.WAL_INVALID) || hasCode(err, ErrorCodes.DISK_FULL);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

// ---- recovery -----------------------------------------------------------------------------------------

interface Recovered {
  decoder: WalDecoder;
  localStartLsn: Lsn;
  report: RecoveryReport;
}

/**
 * Finds the end of valid WAL and cuts everything after it (docs/ON_DISK.md, "Recovery on start").
 * Refuses to cut acknowledged WAL: a complete segment past the end, or an end below commitLsn, is an error.
 */
async function recoverTimelineWal(opts: WalStoreOptions): Promise<Recovered> {
  const started = performance.now();
  const seg = opts.segmentSizeBytes;
  const paths = new SegmentPaths(opts.dir, seg);
  await mkdir(paths.archiveStatusDir(), { recursive: true });
  const names = await readdir(opts.dir);
  for (const name of names) if (name.endsWith('.tmp')) await rm(join(opts.dir, name), { force: true });
  const entries = paths.parseListing(names);
  const byNo = new Map(entries.map((e) => [e.segmentNo, e]));

  const startLsn = lsn(Math.max(opts.recoveryStartLsn ?? 0, opts.timelineStartLsn));
  const decoder = new WalDecoder({ startLsn, segmentSizeBytes: seg });
  let scanned = 0;
  let stopCode: string | null = null;
  for (let segNo = segmentNoOf(startLsn, seg); byNo.has(segNo); segNo++) {
    const entry = byNo.get(segNo)!;
    const file = await SegmentFile.open(join(opts.dir, entry.name), seg, { create: false, direct: 'off' });
    try {
      // A previous run may have written through the page cache (buffered fallback): make it durable
      // before anything is derived from it.
      await file.sync();
      const from = Math.max(0, startLsn - segmentStart(segNo, seg));
      const bytes = await file.read(from, seg - from);
      scanned += bytes.length;
      const result = decoder.feed(bytes);
      if (result.stop) {
        stopCode = result.stop.code;
        break;
      }
    } finally {
      await file.close();
    }
  }
  // Where valid WAL ends: the last complete record (flushLsn), and the cut, past which nothing is kept.
  // Out of data without a stop, every byte read is valid (a record may continue into a segment that was
  // never created): keep them all. After a stop, cut at the last record's end, except that a complete
  // segment is never cut into: its bytes were fsynced before it was renamed.
  const stop = decoder.stop;
  const endLsn = lsn(decoder.endLsn);
  const stopSegNo = stop ? segmentNoOf(lsn(stop.lsn), seg) : -1;
  const stopEntry = stop ? byNo.get(stopSegNo) : undefined;
  const cutLsn = lsn(stop ? Math.max(endLsn, segmentStart(stopSegNo, seg)) : decoder.position);

  const broken = (why: string): never => {
    throw new SafekeeperError(ErrorCodes.TIMELINE_BROKEN, `timeline WAL in ${opts.dir} is damaged: ${why}`, {
      dir: opts.dir,
      endLsn: formatLsn(endLsn),
      stop: stopCode,
    });
  };
  if (stop && stopEntry && !stopEntry.partial) {
    broken(`complete segment ${stopEntry.name} is invalid at ${formatLsn(lsn(stop.lsn))}: ${stop.message}`);
  }
  if (opts.commitLsn !== undefined && endLsn < opts.commitLsn) {
    broken(`valid WAL ends at ${formatLsn(endLsn)} (${stopCode}), below commitLsn ${formatLsn(opts.commitLsn)}`);
  }
  const endSegNo = segmentNoOf(cutLsn, seg);
  const endOffset = cutLsn - segmentStart(endSegNo, seg);
  for (const e of entries) {
    if (!e.partial && (e.segmentNo > endSegNo || (e.segmentNo === endSegNo && endOffset > 0))) {
      broken(`complete segment ${e.name} lies beyond the end of valid WAL ${formatLsn(cutLsn)}`);
    }
  }

  let removed = 0;
  for (const e of entries) {
    if (e.segmentNo > endSegNo) {
      await rm(join(opts.dir, e.name), { force: true });
      removed++;
    } else if (e.segmentNo === endSegNo && e.partial) {
      // Zero whatever lies past the end (torn records, stale tails) so no later recovery can mistake it for WAL.
      const file = await SegmentFile.open(join(opts.dir, e.name), seg, { create: false, direct: 'off' });
      try {
        await file.zero(endOffset, seg, true);
      } finally {
        await file.close();
      }
    } else if (e.partial) {
      // Complete but never renamed (crash between its fdatasync and the rename).
      await renameDurable(join(opts.dir, e.name), paths.complete(e.segmentNo));
    }
  }
  const statusNames = new Set(await readdir(paths.archiveStatusDir()));
  for (const e of entries) {
    if (e.segmentNo >= endSegNo) continue;
    const name = paths.name(e.segmentNo);
    if (!statusNames.has(`${name}.ready`) && !statusNames.has(`${name}.done`)) await writeFile(paths.ready(e.segmentNo), '');
  }
  await fsyncDir(opts.dir);

  const kept = entries.filter((e) => e.segmentNo <= endSegNo);
  const localStartLsn = lsn(
    kept.length > 0 ? Math.max(opts.timelineStartLsn, segmentStart(kept[0]!.segmentNo, seg)) : cutLsn,
  );
  let writeDecoder = decoder;
  if (stop) {
    // Restart at the last record boundary and replay the valid prefix of the record that straddles
    // into the cut segment, so the decoder's state is exactly that of a stream ending at cutLsn.
    const prevLsn = decoder.lastRecordStart;
    writeDecoder = new WalDecoder({
      startLsn: endLsn,
      segmentSizeBytes: seg,
      // Only a record decoded in this scan gives the prev link; otherwise the first record goes unchecked.
      ...(prevLsn >= startLsn && prevLsn < endLsn ? { prevLsn } : {}),
    });
    for (let pos: number = endLsn; pos < cutLsn; ) {
      const segNo = segmentNoOf(lsn(pos), seg);
      const upto = Math.min(cutLsn, segmentStart(segNo + 1, seg));
      const file = await SegmentFile.open(paths.complete(segNo), seg, { create: false, direct: 'off' });
      try {
        const replay = writeDecoder.feed(await file.read(pos - segmentStart(segNo, seg), upto - pos));
        invariant(replay.stop === null, `replaying valid WAL stopped: ${replay.stop?.message}`);
      } finally {
        await file.close();
      }
      pos = upto;
    }
  }
  return {
    decoder: writeDecoder,
    localStartLsn,
    report: {
      startLsn,
      endLsn: cutLsn,
      flushLsn: endLsn,
      lastRecordLsn: decoder.lastRecordStart >= startLsn && decoder.lastRecordStart < endLsn ? lsn(decoder.lastRecordStart) : null,
      scannedBytes: scanned,
      stopCode,
      removedSegments: removed,
      durationMs: performance.now() - started,
    },
  };
}
