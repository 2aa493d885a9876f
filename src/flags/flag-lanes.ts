import { SupersededError } from './model.js';
import { RollbackArrived } from './fleet.js';

/** A change that has started: queued ones in their turn, rollbacks (and their re-asserts) at once. */
interface Running {
  settled: Promise<unknown>;
  /** A rollback's (or its re-assert's) patch; undefined for a queued change. */
  rollback: Record<string, unknown> | undefined;
  superseded: AbortController;
}

/** Does a later rollback `b` set something `a` (a change under way) sets otherwise? Then their order matters. */
function overrides(a: Running, b: Record<string, unknown>): boolean {
  return a.rollback === undefined || Object.keys(b).some((k) => k in (a.rollback as object) && JSON.stringify(a.rollback?.[k]) !== JSON.stringify(b[k]));
}

interface Lane {
  /** The queued changes, one after another (a rollback's re-assert takes a turn too). */
  tail: Promise<unknown>;
  /** Queued changes whose turn has not come: a rollback refuses them. */
  waiting: Set<(err: Error) => void>;
  running: Set<Running>;
  /** Changes, rollbacks and re-asserts not settled yet: the lane goes when this is 0. */
  jobs: number;
}

/**
 * Fleet mode's per-flag order of changes that call the source (Unleash). Changes to one flag run
 * one at a time, in order, but a rollback (`enabled: false`) never waits: with Unleash slow (calls
 * time out after 10 s), an operator's rollback queued behind a ramp would wait for it, and for
 * every change queued after it. So a rollback
 * - refuses the changes still waiting their turn (SupersededError: not applied after it),
 * - tells the ones under way (`superseded` aborted): they stop before their next call to Unleash,
 *   earlier rollbacks (and re-asserts) too unless this one sets nothing they set otherwise
 *   ({"enabled": false} twice: no order to keep),
 * - is applied at once, alongside them,
 * - and is applied again once they have settled (`reassert`): Unleash applies concurrent calls in
 *   an order nobody can tell, and an "on" of theirs (or another rollback's percentage) may land
 *   after the rollback's. One itself overtaken by a later rollback is not re-asserted.
 * Changes queued after a rollback run after it and its re-assert, so the flag ends as the operator said last.
 */
export class FlagLanes {
  /** Only flags with a change queued or running: any valid name may be POSTed, and typos must not pile up. */
  private readonly lanes = new Map<string, Lane>();

  /** Runs `job` when the flag's earlier changes are done (or rejects it if a rollback comes first). */
  run<T>(name: string, job: (superseded: AbortSignal) => Promise<T>): Promise<T> {
    const lane = this.lane(name);
    return this.counted(
      name,
      lane,
      new Promise<T>((resolve, reject) => {
        const refuse = (err: Error) => reject(err);
        lane.waiting.add(refuse);
        lane.tail = lane.tail.then(() => {
          if (!lane.waiting.delete(refuse)) return; // refused by a rollback while it waited
          return this.start(lane, undefined, job).result.then(resolve, reject);
        });
      }),
    );
  }

  /**
   * Runs a rollback `job` (setting `patch`) at once; `reassert` runs once the changes it overtook
   * have settled, if `isLive` says its outcome left its "off" in the source (one that failed
   * outright changed nothing, its caller was told so: not repeated behind their back).
   */
  rollback<T>(name: string, patch: Record<string, unknown>, job: (superseded: AbortSignal) => Promise<T>, isLive: (answer: Promise<T>) => Promise<boolean>, reassert: (superseded: AbortSignal) => Promise<unknown>, refusal: string): Promise<T> {
    const lane = this.lane(name);
    for (const refuse of lane.waiting) refuse(new SupersededError(refusal, undefined, 'not applied'));
    lane.waiting.clear();
    const overtaken = [...lane.running].filter((r) => overrides(r, patch));
    let settle!: (live: Promise<boolean>) => void;
    const live = new Promise<boolean>((resolve) => (settle = resolve));
    for (const r of overtaken) r.superseded.abort(new RollbackArrived(live));
    const self = this.start(lane, patch, job);
    settle(isLive(self.result));
    const done = Promise.allSettled([self.result, ...overtaken.map((r) => r.settled)]);
    // Changes sent after the rollback take their turn after it (and its re-assert), even when it
    // overtook nothing: run alongside it, an "on" could land before its slow "off" and be undone.
    // Its re-assert runs as one of the changes under way: a later rollback overtakes it too.
    const turn = lane.tail.then(async () => {
      await done;
      if (overtaken.length > 0 && !self.superseded.signal.aborted && (await live)) await this.start(lane, patch, reassert).result.catch(() => undefined);
    });
    lane.tail = turn;
    void this.counted(name, lane, turn);
    return this.counted(name, lane, self.result);
  }

  /** Resolves once every change queued or running so far (and its re-assert) has settled. */
  async idle(): Promise<void> {
    await Promise.all([...this.lanes.values()].map((l) => Promise.allSettled([l.tail, ...[...l.running].map((r) => r.settled)])));
  }

  /** Resolves once the flag's changes queued or running now have settled (at once if none). */
  settled(name: string): Promise<unknown> {
    const lane = this.lanes.get(name);
    return lane === undefined ? Promise.resolve() : Promise.allSettled([lane.tail, ...[...lane.running].map((r) => r.settled)]);
  }

  /** Flags with a change queued or running, for tests. */
  get size(): number {
    return this.lanes.size;
  }

  private lane(name: string): Lane {
    let lane = this.lanes.get(name);
    if (lane === undefined) this.lanes.set(name, (lane = { tail: Promise.resolve(), waiting: new Set(), running: new Set(), jobs: 0 }));
    return lane;
  }

  private start<T>(lane: Lane, rollback: Record<string, unknown> | undefined, job: (superseded: AbortSignal) => Promise<T>): { result: Promise<T>; superseded: AbortController } {
    const superseded = new AbortController();
    const result = Promise.resolve().then(() => job(superseded.signal));
    const r: Running = { settled: result.catch(() => undefined), rollback, superseded };
    lane.running.add(r);
    void r.settled.then(() => lane.running.delete(r));
    return { result, superseded };
  }

  private counted<T>(name: string, lane: Lane, p: Promise<T>): Promise<T> {
    lane.jobs++;
    // The last one out drops the lane; one started meanwhile keeps it (and the order).
    return p.finally(() => {
      if (--lane.jobs === 0 && this.lanes.get(name) === lane) this.lanes.delete(name);
    });
  }
}
