// Loads and durably replaces a timeline's safekeeper.control. Replacement goes through the native
// write-temp/fsync/rename/fsync-dir path; a crash leaves the old or the new file, never a mix.

import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCodes, SafekeeperError } from '../errors.js';
import { writeFileDurable } from '../native.js';
import { decodeControlFile, encodeControlFile } from './control_file_codec.js';
import type { TimelinePersistentState } from './timeline_state.js';
import type { ControlStore } from './wal_storage.js';

export const CONTROL_FILE_NAME = 'safekeeper.control';

export class ControlFile implements ControlStore {
  readonly path: string;
  private current: TimelinePersistentState | null;

  private constructor(path: string, state: TimelinePersistentState | null) {
    this.path = path;
    this.current = state;
  }

  /** Reads the control file of `timelineDir`; null state when there is none yet (a new timeline). */
  static async open(timelineDir: string): Promise<ControlFile> {
    const path = join(timelineDir, CONTROL_FILE_NAME);
    // An interrupted replacement leaves only the temp file behind; the real file is the previous version.
    await rm(`${path}.tmp`, { force: true });
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new ControlFile(path, null);
      throw new SafekeeperError(ErrorCodes.IO, `cannot read control file ${path}: ${(err as Error).message}`, { path }, { cause: err });
    }
    return new ControlFile(path, decodeControlFile(bytes, path));
  }

  get state(): TimelinePersistentState | null {
    return this.current;
  }

  async persist(state: TimelinePersistentState): Promise<void> {
    await writeFileDurable(this.path, encodeControlFile(state));
    this.current = state;
  }
}
