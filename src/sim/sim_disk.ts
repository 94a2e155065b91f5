// A simulated disk for one safekeeper's timeline: WAL bytes in a page cache that only fsync makes durable,
// a control file replaced atomically, and crashes that lose (or tear) the unflushed tail. Synchronous;
// latency is the driver's business. It must never let a crash lose a byte that flush() reported durable.

import { ErrorCodes, SafekeeperError, invariant } from '../errors.js';
import type { Lsn } from '../lsn.js';
import type { TimelinePersistentState } from '../storage/timeline_state.js';
import type { Prng } from './prng.js';

/** A write still in the page cache: recovery validates it by checksum, like a WAL record's CRC. */
interface UnflushedWrite {
  readonly lsn: Lsn;
  readonly end: Lsn;
  readonly crc: number;
}

/** What a crash does to an operation that was under way. */
export type InterruptedOperation = 'none' | 'persistControl' | 'truncateWal' | 'flushWal' | 'readWal';

export interface CrashReport {
  readonly lostBytes: number;
  readonly survivedUnflushedBytes: number;
  readonly tornWrite: boolean;
  readonly interruptedApplied: boolean;
}

export class SimDisk {
  /** WAL begins here (the timeline's localStartLsn); data[0] is the byte at baseLsn. */
  readonly baseLsn: Lsn;
  private data: Uint8Array;
  private durableEndLsn: Lsn;
  private writtenEndLsn: Lsn;
  private unflushed: UnflushedWrite[] = [];
  private control: TimelinePersistentState;
  /** Lowest LSN whose durable content changed since the last takeChangedFrom() (checker bookkeeping). */
  private changedFrom: Lsn | null = null;
  /** Pending operation payload for crash-time resolution. */
  private pendingControl: TimelinePersistentState | null = null;
  private pendingTruncate: { at: Lsn; commitLsn: Lsn } | null = null;
  fsyncCount = 0;
  /** Bumped whenever durable state (WAL or control file) changes: lets the checkers skip unchanged disks. */
  version = 0;

  constructor(baseLsn: Lsn, initialControl: TimelinePersistentState) {
    this.baseLsn = baseLsn;
    this.data = new Uint8Array(4096);
    this.durableEndLsn = baseLsn;
    this.writtenEndLsn = baseLsn;
    this.control = initialControl;
  }

  get durableEnd(): Lsn {
    return this.durableEndLsn;
  }

  get writtenEnd(): Lsn {
    return this.writtenEndLsn;
  }

  get durableControl(): TimelinePersistentState {
    return this.control;
  }

  /** The byte at `lsn` (caller checks the range); used by the checkers to compare replicas. */
  byteAt(lsn: Lsn): number {
    return this.data[lsn - this.baseLsn]!;
  }

  /** Raw view of [from, to) of what is written (durable or not). */
  view(from: Lsn, to: Lsn): Uint8Array {
    return this.data.subarray(from - this.baseLsn, to - this.baseLsn);
  }

  takeChangedFrom(): Lsn | null {
    const c = this.changedFrom;
    this.changedFrom = null;
    return c;
  }

  /** Hands bytes to the page cache; they must continue the WAL exactly. */
  write(lsn: Lsn, bytes: Uint8Array): void {
    if (lsn !== this.writtenEndLsn) {
      throw new SafekeeperError(ErrorCodes.WAL_GAP, `write at ${lsn}, WAL ends at ${this.writtenEndLsn}`, { got: lsn, expected: this.writtenEndLsn });
    }
    if (bytes.length === 0) return;
    const end = (lsn + bytes.length) as Lsn;
    this.ensureCapacity(end - this.baseLsn);
    this.data.set(bytes, lsn - this.baseLsn);
    this.unflushed.push({ lsn, end, crc: checksum(bytes) });
    this.writtenEndLsn = end;
  }

  /** fdatasync: everything written is durable. Returns the durable end. */
  flush(): Lsn {
    this.fsyncCount++;
    if (this.durableEndLsn !== this.writtenEndLsn) this.version++;
    this.durableEndLsn = this.writtenEndLsn;
    this.unflushed = [];
    return this.durableEndLsn;
  }

  /** Marks the start of a truncation (so a crash in the middle can resolve it either way). */
  beginTruncate(at: Lsn, commitLsn: Lsn): void {
    this.pendingTruncate = { at, commitLsn };
  }

  /** Durably cuts WAL at `at`: later bytes are gone, earlier unflushed bytes stay unflushed. */
  truncate(at: Lsn, commitLsn: Lsn): void {
    this.pendingTruncate = null;
    if (at < commitLsn) {
      throw new SafekeeperError(ErrorCodes.TRUNCATE_BELOW_COMMIT, `truncate at ${at} below commitLsn ${commitLsn}`, { got: at, expected: commitLsn });
    }
    invariant(at >= this.baseLsn, `truncate at ${at} below the WAL start ${this.baseLsn}`);
    if (at >= this.writtenEndLsn) return;
    this.fsyncCount++;
    this.version++;
    this.writtenEndLsn = at;
    if (this.durableEndLsn > at) {
      this.durableEndLsn = at;
      this.noteChanged(at);
    }
    const kept: UnflushedWrite[] = [];
    for (const w of this.unflushed) {
      if (w.end <= at) kept.push(w);
      else if (w.lsn < at) kept.push({ lsn: w.lsn, end: at, crc: checksum(this.view(w.lsn, at)) });
    }
    this.unflushed = kept;
  }

  beginPersistControl(state: TimelinePersistentState): void {
    this.pendingControl = state;
  }

  /** write temp + fsync + rename + fsync dir: atomic and durable. */
  persistControl(state: TimelinePersistentState): void {
    this.pendingControl = null;
    this.fsyncCount++;
    this.version++;
    this.control = state;
  }

  /** Reads WAL [from, to); reads are only ever asked for below the durable end. */
  read(from: Lsn, to: Lsn): Uint8Array {
    if (from < this.baseLsn || to > this.writtenEndLsn || from > to) {
      throw new SafekeeperError(ErrorCodes.WAL_NOT_AVAILABLE, `read ${from}..${to} outside ${this.baseLsn}..${this.writtenEndLsn}`);
    }
    return this.view(from, to).slice();
  }

  /**
   * Power loss. Unflushed writes survive as a random prefix (the kernel wrote some pages back), the next one
   * may be torn (part new bytes, part garbage: its checksum fails and recovery stops there), the rest is
   * lost. An operation under way either completed or did not.
   */
  crash(rng: Prng, interrupted: InterruptedOperation, tearProbability: number): CrashReport {
    let interruptedApplied = false;
    if (interrupted === 'persistControl' && this.pendingControl) {
      interruptedApplied = rng.chance(0.5);
      if (interruptedApplied) this.control = this.pendingControl;
    }
    if (interrupted === 'truncateWal' && this.pendingTruncate) {
      interruptedApplied = rng.chance(0.5);
      if (interruptedApplied) this.truncate(this.pendingTruncate.at, this.pendingTruncate.commitLsn);
    }
    this.pendingControl = null;
    this.pendingTruncate = null;
    const total = this.writtenEndLsn - this.durableEndLsn;
    const survivors = this.unflushed.length === 0 ? 0 : rng.int(this.unflushed.length + 1);
    let tornWrite = false;
    if (survivors < this.unflushed.length && rng.chance(tornProbabilityOr(tearProbability))) {
      // Tear the first lost write: scribble over part of it, keeping its (now wrong) checksum.
      const w = this.unflushed[survivors]!;
      const len = w.end - w.lsn;
      const from = w.lsn + rng.int(len);
      // Garbage that surely differs from what was meant to be written there.
      for (let p = from - this.baseLsn; p < w.end - this.baseLsn; p++) this.data[p] = this.data[p]! ^ (1 + rng.int(255));
      tornWrite = true;
    }
    // Recovery: scan forward from the durable end, validating each write's checksum.
    // The lost writes never reached the platter: only the survivors and the torn one are on disk.
    let end = this.durableEndLsn;
    for (const w of this.unflushed.slice(0, survivors + (tornWrite ? 1 : 0))) {
      if (w.lsn !== end || checksum(this.view(w.lsn, w.end)) !== w.crc) break;
      end = w.end;
    }
    const survived = end - this.durableEndLsn;
    this.version++;
    this.durableEndLsn = end;
    this.writtenEndLsn = end;
    this.unflushed = [];
    return { lostBytes: total - survived, survivedUnflushedBytes: survived, tornWrite, interruptedApplied };
  }

  /** What a restarting safekeeper loads: the control file and the recovered end of WAL. */
  recover(): { control: TimelinePersistentState; flushLsn: Lsn } {
    invariant(this.unflushed.length === 0 && this.writtenEndLsn === this.durableEndLsn, 'recover() only after crash()');
    return { control: this.control, flushLsn: this.durableEndLsn };
  }

  private noteChanged(at: Lsn): void {
    if (this.changedFrom === null || at < this.changedFrom) this.changedFrom = at;
  }

  private ensureCapacity(bytes: number): void {
    if (bytes <= this.data.length) return;
    let size = this.data.length;
    while (size < bytes) size *= 2;
    const bigger = new Uint8Array(size);
    bigger.set(this.data.subarray(0, this.writtenEndLsn - this.baseLsn));
    this.data = bigger;
  }
}

function tornProbabilityOr(p: number): number {
  return p < 0 ? 0 : p > 1 ? 1 : p;
}

/** FNV-1a: a stand-in for the WAL record CRC; only has to notice garbage. */
export function checksum(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return h >>> 0;
}
