import type { Logger } from '../observability/logger.js';
import type { RolloutFiles } from './files.js';
import type { RolloutLifecycle } from './lifecycle.js';
import { ACTIVE } from './model.js';
import { parsePlan, planHash, type Plan } from './plan.js';

/**
 * Plan files (`<flagsDir>/rollouts/<flag>.json`) into running plans: each distinct content of a
 * file starts its plan once, never over a plan still running or paused for that flag. Problems
 * are logged once per file content, since the directory is rescanned every few seconds.
 */
export class PlanFileScanner {
  private readonly warned = new Set<string>();
  /** Plan file hashes as last scanned. */
  private readonly hashes = new Map<string, string>();

  constructor(
    private readonly files: RolloutFiles,
    private readonly logger: Logger,
  ) {}

  /** The flag's plan file hash as last scanned (a rollout records the file it came with). */
  hashOf(flag: string): string | null {
    return this.hashes.get(flag) ?? null;
  }

  async scan(life: RolloutLifecycle): Promise<void> {
    let found;
    try {
      found = await this.files.scanPlans();
    } catch (err) {
      return this.warnOnce(`dir:${(err as Error).message}`, { dir: this.files.plansDir, err: (err as Error).message }, 'cannot read the rollout plans directory');
    }
    // A removed file has no hash: an API plan PUT after it must not be taken for the file's, or
    // the same content put back later would never start.
    for (const flag of [...this.hashes.keys()]) if (!found.has(flag)) this.hashes.delete(flag);
    for (const [flag, entry] of found) {
      const where = `rollouts/${flag}.json`;
      if (entry instanceof Error) {
        this.hashes.delete(flag);
        this.warnOnce(`${flag}:${entry.message}`, { file: where, err: entry.message }, 'rollout plan file is invalid; ignored');
        continue;
      }
      let plan: Plan;
      try {
        plan = parsePlan(entry.json);
      } catch (err) {
        this.hashes.delete(flag);
        this.warnOnce(`${flag}:${entry.text}`, { file: where, err: (err as Error).message }, 'rollout plan file is invalid; ignored');
        continue;
      }
      const hash = planHash(plan);
      this.hashes.set(flag, hash);
      const r = life.rollouts.get(flag);
      if (r !== undefined && (r.fileHash === hash || r.planHash === hash)) continue;
      if (r !== undefined && ACTIVE.has(r.state)) {
        this.warnOnce(`${flag}:${hash}:active`, { file: where, flag, state: r.state }, 'rollout plan file changed while a plan runs for its flag: abort that plan to start the file\'s');
        continue;
      }
      try {
        await life.begin(flag, plan, 'file', `file:${where}`, hash);
      } catch (err) {
        this.warnOnce(`${flag}:${hash}:begin`, { file: where, err: (err as Error).message }, 'cannot start the rollout plan file');
      }
    }
  }

  private warnOnce(key: string, fields: Record<string, unknown>, msg: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.logger.error(fields, msg);
  }
}
