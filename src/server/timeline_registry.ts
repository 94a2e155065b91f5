// The timelines one safekeeper serves: found on disk at start, created and deleted through the API. Owns
// each timeline's control file, WAL store and driver; the network layer only looks them up.

import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCodes, SafekeeperError } from '../errors.js';
import { isValidSegmentSize, lsn, type Lsn } from '../lsn.js';
import { newTimelineState } from '../core/acceptor.js';
import { TimelineDriver, type ConnectionSink, type PeerLink } from '../driver/timeline_driver.js';
import { ControlFile, CONTROL_FILE_NAME } from '../storage/control_file.js';
import { WalStore, type DirectIoMode } from '../storage/wal_store.js';

const ID_PATTERN = /^[0-9A-Za-z_-]{1,64}$/;

export interface Timeline {
  readonly tenantId: string;
  readonly timelineId: string;
  readonly dir: string;
  readonly control: ControlFile;
  readonly store: WalStore;
  readonly driver: TimelineDriver;
}

export interface CreateTimelineOptions {
  startLsn?: Lsn;
  segmentSizeBytes?: number;
  pgVersion?: number;
  systemId?: bigint;
}

export interface TimelineRegistryOptions {
  nodeId: number;
  dataDir: string;
  sink: ConnectionSink;
  direct?: DirectIoMode;
  onFatal: (err: Error) => void;
  /** Peer recovery transport for a timeline (absent: no peers configured). */
  peerLink?: (tenantId: string, timelineId: string) => PeerLink;
}

export const DEFAULT_SEGMENT_SIZE_BYTES = 16 * 1024 * 1024;
export const DEFAULT_TIMELINE_START_LSN = lsn(DEFAULT_SEGMENT_SIZE_BYTES);

export function checkId(kind: string, id: string): void {
  if (!ID_PATTERN.test(id)) {
    throw new SafekeeperError(ErrorCodes.INVALID_ARGUMENT, `${kind} must be 1-64 characters of [0-9A-Za-z_-]: ${JSON.stringify(id)}`);
  }
}

export class TimelineRegistry {
  private readonly timelines = new Map<string, Timeline>();
  /** Timelines whose directory failed to open: kept out of service, reported by status. */
  readonly broken = new Map<string, string>();

  constructor(private readonly opts: TimelineRegistryOptions) {}

  static key(tenantId: string, timelineId: string): string {
    return `${tenantId}/${timelineId}`;
  }

  /** Opens every timeline under the data directory. A damaged one is reported, not fatal for the others. */
  async loadAll(): Promise<void> {
    await mkdir(this.opts.dataDir, { recursive: true });
    for (const tenantId of await readdir(this.opts.dataDir)) {
      if (!ID_PATTERN.test(tenantId)) continue;
      const tenantDir = join(this.opts.dataDir, tenantId);
      if (!(await stat(tenantDir)).isDirectory()) continue;
      for (const timelineId of await readdir(tenantDir)) {
        if (!ID_PATTERN.test(timelineId)) continue;
        const dir = join(tenantDir, timelineId);
        const hasControl = await stat(join(dir, CONTROL_FILE_NAME)).then(() => true, () => false);
        if (!hasControl) continue;
        try {
          await this.open(tenantId, timelineId);
        } catch (err) {
          this.broken.set(TimelineRegistry.key(tenantId, timelineId), (err as Error).message);
        }
      }
    }
  }

  get(tenantId: string, timelineId: string): Timeline | undefined {
    return this.timelines.get(TimelineRegistry.key(tenantId, timelineId));
  }

  list(): Timeline[] {
    return [...this.timelines.values()];
  }

  async create(tenantId: string, timelineId: string, opts: CreateTimelineOptions = {}): Promise<Timeline> {
    checkId('tenantId', tenantId);
    checkId('timelineId', timelineId);
    const key = TimelineRegistry.key(tenantId, timelineId);
    const existing = this.timelines.get(key);
    if (existing) return existing;
    const segmentSizeBytes = opts.segmentSizeBytes ?? DEFAULT_SEGMENT_SIZE_BYTES;
    if (!isValidSegmentSize(segmentSizeBytes)) {
      throw new SafekeeperError(ErrorCodes.INVALID_ARGUMENT, `segment size ${segmentSizeBytes} is not a power of two from 1 MiB to 1 GiB`);
    }
    const dir = this.dirOf(tenantId, timelineId);
    await mkdir(dir, { recursive: true });
    const control = await ControlFile.open(dir);
    if (!control.state) {
      await control.persist(
        newTimelineState({
          tenantId,
          timelineId,
          timelineStartLsn: opts.startLsn ?? lsn(segmentSizeBytes),
          segmentSizeBytes,
          ...(opts.pgVersion !== undefined ? { pgVersion: opts.pgVersion } : {}),
          ...(opts.systemId !== undefined ? { systemId: opts.systemId } : {}),
        }),
      );
    }
    return this.open(tenantId, timelineId);
  }

  async delete(tenantId: string, timelineId: string): Promise<boolean> {
    const key = TimelineRegistry.key(tenantId, timelineId);
    const tl = this.timelines.get(key);
    if (!tl) return false;
    this.timelines.delete(key);
    tl.driver.shutdown();
    await tl.store.close();
    await rm(tl.dir, { recursive: true, force: true });
    return true;
  }

  async closeAll(): Promise<void> {
    for (const tl of this.timelines.values()) {
      tl.driver.shutdown();
      await tl.store.close();
    }
    this.timelines.clear();
  }

  private dirOf(tenantId: string, timelineId: string): string {
    return join(this.opts.dataDir, tenantId, timelineId);
  }

  private async open(tenantId: string, timelineId: string): Promise<Timeline> {
    const dir = this.dirOf(tenantId, timelineId);
    const control = await ControlFile.open(dir);
    const state = control.state;
    if (!state) throw new SafekeeperError(ErrorCodes.TIMELINE_BROKEN, `${dir} has no control file`);
    const store = await WalStore.open({
      dir,
      segmentSizeBytes: state.segmentSizeBytes,
      timelineStartLsn: state.timelineStartLsn,
      recoveryStartLsn: state.flushLsn,
      commitLsn: state.commitLsn,
      ...(this.opts.direct ? { direct: this.opts.direct } : {}),
    });
    const driver = await TimelineDriver.open({
      config: { nodeId: this.opts.nodeId },
      control,
      store,
      sink: this.opts.sink,
      onFatal: this.opts.onFatal,
      ...(this.opts.peerLink ? { peers: this.opts.peerLink(tenantId, timelineId) } : {}),
    });
    const tl: Timeline = { tenantId, timelineId, dir, control, store, driver };
    this.timelines.set(TimelineRegistry.key(tenantId, timelineId), tl);
    return tl;
  }
}
