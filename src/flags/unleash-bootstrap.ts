import { writeFileAtomic } from '../util/atomic-write.js';
import { readFile } from 'node:fs/promises';
import type { ClientFeaturesResponse, UnleashConfig } from 'unleash-client';
import type { Logger } from '../observability/logger.js';

type StorageProvider = NonNullable<UnleashConfig['storageProvider']>;

/** What the bootstrap file holds: the SDK's own payload plus when and from where it was fetched. */
export interface BootstrapFile extends ClientFeaturesResponse {
  saved_at: string;
  url: string;
}

export interface BootstrapInfo {
  file: string;
  savedAt: string | undefined;
  toggles: number;
}

/**
 * unleash-client's storage provider for a proxy: the toggles live in memory, and every payload
 * fetched from Unleash is also written to one file (temp file, fsync, rename, fsync of the
 * directory), so a restart while Unleash is down routes on the last good state instead of
 * sending everyone to legacy. The SDK asks `get` once at start (its "backup") and applies it
 * unless live data arrived first; it calls `set` after each successful fetch that brought data.
 * Nothing else ever calls `set`: cutover passes no `bootstrap` option, so a `set` always means
 * "fetched from Unleash".
 */
export class BootstrapStorage implements StorageProvider {
  private readonly memory = new Map<string, ClientFeaturesResponse>();
  private lastWritten: string | undefined;
  private writing: Promise<void> = Promise.resolve();
  /** Set once `get` has read the file: what it held, or undefined when there was none. */
  loaded: BootstrapInfo | undefined;
  /** Resolves when the start-up read of the file is over (found or not). */
  readonly settled: Promise<void>;
  private settle!: () => void;

  constructor(
    private readonly file: string | undefined,
    private readonly url: string,
    private readonly logger: Logger,
    /** Called after every `set`: a successful fetch that brought data. */
    private readonly onFetched: () => void,
  ) {
    this.settled = new Promise((r) => (this.settle = r));
  }

  async get(key: string): Promise<ClientFeaturesResponse | undefined> {
    try {
      const inMemory = this.memory.get(key);
      if (inMemory || this.file === undefined) return inMemory;
      const parsed = await readBootstrap(this.file);
      if (parsed instanceof Error) {
        this.logger.error({ file: this.file, err: parsed.message }, 'Unleash bootstrap file is unreadable; ignored');
        return undefined;
      }
      if (parsed === undefined) return undefined;
      this.loaded = { file: this.file, savedAt: parsed.saved_at, toggles: parsed.features.length };
      this.lastWritten = JSON.stringify(payloadOf(parsed));
      return parsed;
    } finally {
      this.settle();
    }
  }

  async set(key: string, data: ClientFeaturesResponse): Promise<void> {
    this.memory.set(key, data);
    this.onFetched();
    if (this.file === undefined) return;
    const payload = payloadOf(data);
    const text = JSON.stringify(payload);
    if (text === this.lastWritten) return;
    this.lastWritten = text;
    const file = this.file;
    const body: BootstrapFile = { saved_at: new Date().toISOString(), url: this.url, ...payload };
    // One write at a time, in order; a failed write is logged and retried with the next change.
    this.writing = this.writing.then(() =>
      writeFileAtomic(file, JSON.stringify(body, null, 1) + '\n').catch((err: Error) => {
        this.lastWritten = undefined;
        this.logger.error({ file, err: err.message }, 'cannot save the Unleash bootstrap file; a restart during an Unleash outage would not have the latest flags');
      }),
    );
    await this.writing;
  }

  /** Waits for the file write in progress, if any. */
  flush(): Promise<void> {
    return this.writing;
  }
}

function payloadOf(data: ClientFeaturesResponse): ClientFeaturesResponse {
  return { version: data.version, features: data.features, segments: data.segments ?? [] };
}

/** The bootstrap file's content, undefined when there is none, or an Error when it is bad. */
export async function readBootstrap(file: string): Promise<BootstrapFile | undefined | Error> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return err as Error;
  }
  try {
    const parsed = JSON.parse(text) as Partial<BootstrapFile>;
    if (typeof parsed !== 'object' || parsed === null || !Array.isArray(parsed.features)) return new Error('no "features" array');
    return { version: 2, saved_at: '', url: '', segments: [], ...parsed } as BootstrapFile;
  } catch (err) {
    return err as Error;
  }
}

