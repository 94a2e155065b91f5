// The simulated disk behind the production storage interfaces (WalStorage, ControlStore), with latency on
// the simulator's clock, so code written against those interfaces runs unchanged in simulation. Must
// never resolve a flush before the simulated fsync completed.

import { SafekeeperError, ErrorCodes } from '../errors.js';
import type { Lsn } from '../lsn.js';
import type { TimelinePersistentState } from '../storage/timeline_state.js';
import type { ControlStore, WalStorage } from '../storage/wal_storage.js';
import type { EventQueue } from './event_queue.js';
import type { Prng } from './prng.js';
import type { SimDisk } from './sim_disk.js';
import type { DiskParams } from './sim_params.js';

export class SimWalStorage implements WalStorage {
  private flushWaiters: { resolve: (lsn: Lsn) => void }[] = [];
  private flushScheduled = false;
  private closed = false;

  constructor(
    private readonly disk: SimDisk,
    private readonly queue: EventQueue,
    private readonly rng: Prng,
    private readonly params: DiskParams,
  ) {}

  get writeLsn(): Lsn {
    return this.disk.writtenEnd;
  }

  get flushLsn(): Lsn {
    return this.disk.durableEnd;
  }

  /** The simulated WAL is opaque bytes: every durable byte counts as a record end. */
  get durableLsn(): Lsn {
    return this.disk.durableEnd;
  }

  write(startLsn: Lsn, bytes: Uint8Array): void {
    this.assertOpen();
    this.disk.write(startLsn, bytes);
  }

  /** Group commit: every call that arrives before the simulated fdatasync starts shares it. */
  flush(): Promise<Lsn> {
    this.assertOpen();
    return new Promise((resolve) => {
      this.flushWaiters.push({ resolve });
      if (this.flushScheduled) return;
      this.flushScheduled = true;
      this.queue.schedule(this.fsyncLatency(), () => {
        this.flushScheduled = false;
        const flushed = this.disk.flush();
        const waiters = this.flushWaiters;
        this.flushWaiters = [];
        for (const w of waiters) w.resolve(flushed);
      });
    });
  }

  truncate(at: Lsn, commitLsn: Lsn): Promise<void> {
    this.assertOpen();
    this.disk.beginTruncate(at, commitLsn);
    return this.later(this.fsyncLatency(), () => this.disk.truncate(at, commitLsn));
  }

  read(from: Lsn, to: Lsn): Promise<Uint8Array> {
    this.assertOpen();
    return this.later(this.params.readUs, () => this.disk.read(from, to));
  }

  /** The simulated disk has no segment files: nothing to remove. */
  removeSegmentsBelow(_horizon: Lsn): Promise<number> {
    this.assertOpen();
    return Promise.resolve(0);
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  private fsyncLatency(): number {
    return this.rng.range(this.params.fsyncMinUs, this.params.fsyncMaxUs);
  }

  private later<T>(delayUs: number, fn: () => T): Promise<T> {
    return new Promise((resolve, reject) => {
      this.queue.schedule(delayUs, () => {
        try {
          resolve(fn());
        } catch (err) {
          reject(err);
        }
      });
    });
  }

  private assertOpen(): void {
    if (this.closed) throw new SafekeeperError(ErrorCodes.STORE_CLOSED, 'simulated WAL storage is closed');
  }
}

export class SimControlStore implements ControlStore {
  constructor(
    private readonly disk: SimDisk,
    private readonly queue: EventQueue,
    private readonly rng: Prng,
    private readonly params: DiskParams,
  ) {}

  persist(state: TimelinePersistentState): Promise<void> {
    this.disk.beginPersistControl(state);
    return new Promise((resolve) => {
      this.queue.schedule(this.rng.range(this.params.controlPersistMinUs, this.params.controlPersistMaxUs), () => {
        this.disk.persistControl(state);
        resolve();
      });
    });
  }
}
