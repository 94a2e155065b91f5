// The WAL storage contract the per-timeline driver depends on. Two implementations: the real on-disk
// WalStore (src/storage/wal_store.ts) and the simulator's disk (src/sim/), so the same consensus core
// and driver run in both. Implementations must never report a flushLsn that is not durable.

import type { Lsn } from '../lsn.js';
import type { TimelinePersistentState } from './timeline_state.js';

export interface WalStorage {
  /** End of the bytes accepted by write() (not yet necessarily durable). */
  readonly writeLsn: Lsn;
  /** End of the last complete WAL record that is durable (fdatasync'd). Only ever moves forward, except truncate(). */
  readonly flushLsn: Lsn;
  /** End of the durable bytes: >= flushLsn, inside a record when the WAL written so far ends mid-record. */
  readonly durableLsn: Lsn;

  /**
   * Accepts bytes that continue the WAL exactly at writeLsn. Throws SK_WAL_GAP if startLsn != writeLsn.
   * Content is validated asynchronously: a validation failure rejects the next flush() with SK_WAL_INVALID,
   * discards every unflushed byte (writeLsn falls back to the durable end) and leaves flushed WAL intact.
   */
  write(startLsn: Lsn, bytes: Uint8Array): void;

  /**
   * Makes everything written so far durable and resolves with the new flushLsn. Calls that arrive while a
   * flush is running share the next one (group commit): one fdatasync for all of them.
   */
  flush(): Promise<Lsn>;

  /**
   * Cuts the WAL at `at` (a record boundary), durably: later bytes are zeroed and later segments removed
   * before this resolves. Refuses (SK_TRUNCATE_BELOW_COMMIT) when `at` < commitLsn.
   */
  truncate(at: Lsn, commitLsn: Lsn): Promise<void>;

  /** Reads WAL in [from, to). Throws SK_WAL_NOT_AVAILABLE outside what is held. */
  read(from: Lsn, to: Lsn): Promise<Uint8Array>;

  /** Removes whole segments that end at or below `horizon`; resolves with the count removed. */
  removeSegmentsBelow(horizon: Lsn): Promise<number>;

  close(): Promise<void>;
}

export interface ControlStore {
  /** Durably replaces the persisted state (write temp, fsync, rename, fsync directory) before resolving. */
  persist(state: TimelinePersistentState): Promise<void>;
}
