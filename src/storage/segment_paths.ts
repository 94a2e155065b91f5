// File names inside a timeline directory (docs/ON_DISK.md): segments, the .partial one, archive status.
// Pure string functions; the only place that knows how these names are spelled.

import { join } from 'node:path';
import { parseSegmentFileName, segmentFileName } from '../lsn.js';

export const PARTIAL_SUFFIX = '.partial';
export const PREALLOC_FILE_NAME = 'prealloc.tmp';
export const ARCHIVE_STATUS_DIR = 'archive_status';

export interface SegmentEntry {
  segmentNo: number;
  partial: boolean;
  name: string;
}

export class SegmentPaths {
  constructor(
    readonly dir: string,
    readonly segmentSizeBytes: number,
  ) {}

  name(segmentNo: number): string {
    return segmentFileName(segmentNo, this.segmentSizeBytes);
  }

  complete(segmentNo: number): string {
    return join(this.dir, this.name(segmentNo));
  }

  partial(segmentNo: number): string {
    return join(this.dir, this.name(segmentNo) + PARTIAL_SUFFIX);
  }

  prealloc(): string {
    return join(this.dir, PREALLOC_FILE_NAME);
  }

  archiveStatusDir(): string {
    return join(this.dir, ARCHIVE_STATUS_DIR);
  }

  ready(segmentNo: number): string {
    return join(this.dir, ARCHIVE_STATUS_DIR, `${this.name(segmentNo)}.ready`);
  }

  done(segmentNo: number): string {
    return join(this.dir, ARCHIVE_STATUS_DIR, `${this.name(segmentNo)}.done`);
  }

  /** Parses a directory listing into segment entries, sorted by segment number; other names are ignored. */
  parseListing(names: readonly string[]): SegmentEntry[] {
    const out: SegmentEntry[] = [];
    for (const name of names) {
      const partial = name.endsWith(PARTIAL_SUFFIX);
      const base = partial ? name.slice(0, -PARTIAL_SUFFIX.length) : name;
      const parsed = parseSegmentFileName(base, this.segmentSizeBytes);
      if (parsed) out.push({ segmentNo: parsed.segmentNo, partial, name });
    }
    return out.sort((a, b) => a.segmentNo - b.segmentNo || Number(a.partial) - Number(b.partial));
  }
}
