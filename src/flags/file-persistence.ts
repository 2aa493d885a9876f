import { createReadStream, watch, type FSWatcher } from 'node:fs';
import { createInterface } from 'node:readline';
import { mkdir, open, readdir, readFile, unlink } from 'node:fs/promises';
import { writeFileAtomic } from '../util/atomic-write.js';
import { join } from 'node:path';
import type { Logger } from '../observability/logger.js';
import { NAME_RE } from '../config/schema.js';
import { parseFlagFile, type FlagState } from './model.js';
import { actorLabel, type FlagChange, type FlagPersistence } from './persistence.js';

export const AUDIT_FILE = 'audit.log';

export interface FilePersistenceOptions {
  dir: string;
  logger: Logger;
  /** Rescan period as a safety net for file systems where watch events get lost (ms, 0 = off). */
  pollMs?: number;
  /**
   * false: no fs.watch, the poll alone notices edits. For tests (to prove the poll works on its
   * own) and for file systems where watch is broken rather than merely lossy.
   */
  watch?: boolean;
}

/**
 * Flags as one JSON file per flag (`<name>.json`) plus an append-only audit log (`audit.log`,
 * JSON lines) in the same directory. Writes are atomic: temp file, fsync, rename, fsync of the
 * directory, so a crash leaves either the old or the new file, never a torn one.
 */
export class FilePersistence implements FlagPersistence {
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly opts: FilePersistenceOptions) {}

  async load(): Promise<Map<string, FlagState>> {
    await mkdir(this.opts.dir, { recursive: true });
    const out = new Map<string, FlagState>();
    for (const [name, state] of await this.scan()) {
      if (state instanceof Error) {
        this.opts.logger.error({ flag: name, err: state.message }, 'flag file is invalid; flag ignored until fixed');
      } else out.set(name, state);
    }
    return out;
  }

  async scan(): Promise<Map<string, FlagState | Error>> {
    const out = new Map<string, FlagState | Error>();
    let entries: string[];
    try {
      entries = await readdir(this.opts.dir);
    } catch (err) {
      // A vanished directory must not read as "every flag deleted": report nothing changed.
      this.opts.logger.error({ dir: this.opts.dir, err: (err as Error).message }, 'cannot read flags directory');
      throw err;
    }
    for (const file of entries) {
      if (!file.endsWith('.json') || file.startsWith('.')) continue;
      const name = file.slice(0, -5);
      if (!NAME_RE.test(name)) continue;
      try {
        const text = await readFile(join(this.opts.dir, file), 'utf8');
        out.set(name, parseFlagFile(JSON.parse(text), name));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // removed between readdir and read
        out.set(name, err instanceof Error ? err : new Error(String(err)));
      }
    }
    return out;
  }

  write(name: string, state: FlagState): Promise<void> {
    return writeFileAtomic(this.where(name), JSON.stringify(state, null, 2) + '\n');
  }

  /** Unlinks the flag's file, then fsyncs the directory so the removal survives a crash too. */
  async remove(name: string): Promise<void> {
    try {
      await unlink(this.where(name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const d = await open(this.opts.dir, 'r');
    try {
      await d.sync();
    } catch {
      // Some file systems refuse fsync on directories; the unlink itself is atomic there.
    } finally {
      await d.close();
    }
  }

  async lastAudited(): Promise<Map<string, FlagState | undefined>> {
    const out = new Map<string, FlagState | undefined>();
    const input = createReadStream(join(this.opts.dir, AUDIT_FILE), 'utf8');
    try {
      for await (const line of createInterface({ input, crlfDelay: Infinity })) {
        let entry: { flag?: unknown; after?: unknown };
        try {
          entry = JSON.parse(line) as { flag?: unknown; after?: unknown };
        } catch {
          continue; // a torn last line (crash mid-append) says nothing
        }
        if (typeof entry.flag !== 'string') continue;
        out.set(entry.flag, entry.after === null || typeof entry.after !== 'object' ? undefined : (entry.after as FlagState));
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return out;
  }

  where(name: string): string {
    return join(this.opts.dir, `${name}.json`);
  }

  async audit(change: FlagChange): Promise<void> {
    const line =
      JSON.stringify({
        time: change.time,
        actor: actorLabel(change.actor),
        source: change.actor.source,
        reason: change.actor.reason,
        flag: change.name,
        before: change.before ?? null,
        after: change.after ?? null,
      }) + '\n';
    // One write() of one whole line on an O_APPEND descriptor: a crash leaves the line or nothing.
    const fh = await open(join(this.opts.dir, AUDIT_FILE), 'a', 0o644);
    try {
      await fh.write(line);
      await fh.datasync();
    } finally {
      await fh.close();
    }
  }

  watch(onExternal: () => void): void {
    const fire = () => {
      if (this.closed) return;
      clearTimeout(this.debounce);
      this.debounce = setTimeout(onExternal, 30);
    };
    if (this.opts.watch !== false) this.startWatcher(fire);
    const pollMs = this.opts.pollMs ?? 2000;
    if (pollMs > 0) {
      this.poll = setInterval(fire, pollMs);
      this.poll.unref();
    }
  }

  private startWatcher(fire: () => void): void {
    try {
      this.watcher = watch(this.opts.dir, (_event, file) => {
        if (file === null || (file.endsWith('.json') && !file.startsWith('.')) || file.startsWith('..')) fire();
      });
      this.watcher.on('error', (err) => this.opts.logger.warn({ err: err.message }, 'flags watcher failed; polling only'));
    } catch (err) {
      this.opts.logger.warn({ err: (err as Error).message }, 'cannot watch flags directory; polling only');
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watcher?.close();
    clearInterval(this.poll);
    clearTimeout(this.debounce);
  }
}
