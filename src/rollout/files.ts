import { writeFileAtomic } from '../util/atomic-write.js';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NAME_RE } from '../config/schema.js';

/** Plans you write (API-equivalent JSON), one per flag: `<flagsDir>/rollouts/<flag>.json`. */
export const PLANS_DIR = 'rollouts';
/** Plan state cutover writes (never edit by hand): `<flagsDir>/.rollouts/<flag>.json`. */
export const STATE_DIR = '.rollouts';

/**
 * The files of rollout plans, beside the flags. Writes are atomic the way flag files are (temp
 * file, fsync, rename, fsync of the directory): a crash leaves the old state or the new one.
 */
export class RolloutFiles {
  readonly plansDir: string;
  readonly stateDir: string;

  constructor(flagsDir: string) {
    this.plansDir = join(flagsDir, PLANS_DIR);
    this.stateDir = join(flagsDir, STATE_DIR);
  }

  /** Every state file: flag -> parsed JSON (or the Error that reading it gave). */
  async loadStates(): Promise<Map<string, unknown>> {
    await mkdir(this.stateDir, { recursive: true });
    return readJsonDir(this.stateDir);
  }

  /** Every plan file: flag -> { text, json } (or the Error that parsing it gave). */
  async scanPlans(): Promise<Map<string, { text: string; json: unknown } | Error>> {
    const out = new Map<string, { text: string; json: unknown } | Error>();
    let entries: string[];
    try {
      entries = await readdir(this.plansDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out;
      throw err;
    }
    for (const file of entries.sort()) {
      const name = flagOf(file);
      if (name === undefined) continue;
      try {
        const text = await readFile(join(this.plansDir, file), 'utf8');
        try {
          out.set(name, { text, json: JSON.parse(text) });
        } catch (err) {
          out.set(name, new Error(`not valid JSON: ${(err as Error).message}`));
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') out.set(name, err as Error);
      }
    }
    return out;
  }

  async writeState(flag: string, state: unknown): Promise<void> {
    await writeFileAtomic(join(this.stateDir, `${flag}.json`), JSON.stringify(state, null, 2) + '\n');
  }
}

function flagOf(file: string): string | undefined {
  if (!file.endsWith('.json') || file.startsWith('.')) return undefined;
  const name = file.slice(0, -5);
  return NAME_RE.test(name) ? name : undefined;
}

async function readJsonDir(dir: string): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  for (const file of (await readdir(dir)).sort()) {
    const name = flagOf(file);
    if (name === undefined) continue;
    try {
      out.set(name, JSON.parse(await readFile(join(dir, file), 'utf8')));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') out.set(name, err instanceof Error ? err : new Error(String(err)));
    }
  }
  return out;
}

