import { FlagOwnedError, FlagSourceError, SupersededError, UnleashChangeError } from './model.js';
import { AdminHttp, enc, NoAnswerError, type AdminFeature, type AdminStrategy } from './unleash-admin-http.js';

export { NotSeenHereError, UnleashChangeError } from './model.js';
export type { AdminFeature, AdminStrategy } from './unleash-admin-http.js';
import { expectedOf } from './unleash-toggles.js';

export interface UnleashAdminOptions {
  /** The Unleash API URL, as the SDK gets it (".../api"). */
  apiUrl: string;
  /** An admin token (`*:*.<secret>`) or a personal access token. */
  token: string;
  /** The environment of cutover's API token: the one whose state is changed. */
  environment: string;
  /** Project for toggles that don't exist yet. */
  project: string;
  timeoutMs?: number;
}

/** What a routing change asks of Unleash: cutover's two runbook fields. */
export interface RoutingChange {
  enabled?: boolean;
  percentage?: number;
}

/** What this replica's SDK must show once it has the change (undefined: not checked). */
export interface ExpectedState {
  enabled?: boolean;
  percentage?: number;
}

/** Why a change with `expect` is refused when Unleash cannot be read: it is never applied blind. */
export const UNCHECKED = '"expect" could not be checked against Unleash\'s current state, so nothing was changed';

export interface ApplyOptions {
  /** The toggle's project as the SDK knows it (else the configured one). */
  project?: string;
  /** Throws to refuse the change, given the toggle as just read (undefined: no such toggle). */
  check?: (feature: AdminFeature | undefined) => void;
  /** Given the toggle as just read, before `check`: the state this change starts from. */
  observe?: (feature: AdminFeature | undefined) => void;
  /** Aborted when a rollback of this flag arrives: no further step is taken, the done ones are undone. */
  superseded?: AbortSignal;
}

/** What apply did: the state the SDK must show once it has the change, and whether anything was written. */
export interface Applied {
  expected: ExpectedState;
  wrote: boolean;
}

interface Step {
  /** "turn the toggle on", for messages. */
  what: string;
  run: () => Promise<unknown>;
  /** Puts Unleash back as before the step; undefined: cannot be undone. */
  undo: (() => Promise<unknown>) | undefined;
  /** Safe to run even if the step was not applied (puts a known previous state back). */
  undoIsIdempotent: boolean;
  /** What stays changed in Unleash when the step is not undone. */
  left: string;
  field: keyof RoutingChange | undefined;
}

/**
 * Applies the runbooks' flag changes in Unleash through its Admin API, so
 * `curl -X POST .../api/v1/flags/NAME -d '{"enabled": true, "percentage": 25}'` keeps working
 * in fleet mode:
 * - `enabled` turns the toggle on or off in cutover's environment;
 * - `percentage` sets the `rollout` of the toggle's flexibleRollout strategy there (it must be
 *   the only active strategy, or one of several where it is the only flexibleRollout);
 * - a toggle or strategy that does not exist is created: the toggle as type "release" in the
 *   configured project, the strategy as flexibleRollout with stickiness userId and groupId = the
 *   toggle name (so buckets agree with cutover's file mode and every SDK), with rollout =
 *   the percentage, or 100 (as a new cutover flag: "enabled" alone means everyone).
 * Everything that cannot be mapped is refused (FlagOwnedError) before anything is changed.
 * Changes go in the safe order: when turning off, off first; when turning on, strategy first.
 * Unleash has no transactions, so a failure part-way undoes the steps already done, in reverse
 * (UnleashChangeError says what was undone and what is left), except a successful "off": the
 * rollback the operator asked for stays, the rollout they asked for with it does not.
 */
export class UnleashAdmin {
  private readonly http: AdminHttp;

  constructor(private readonly opts: UnleashAdminOptions) {
    this.http = new AdminHttp(opts.apiUrl, opts.token, opts.timeoutMs);
  }

  /**
   * The toggle as Unleash has it now (undefined: no such toggle), looked for in its known project
   * (the SDK's) and then the configured one. Throws FlagSourceError when Unleash cannot tell.
   */
  async read(name: string, knownProject?: string): Promise<{ project: string; feature: AdminFeature | undefined }> {
    try {
      let project = knownProject ?? this.opts.project;
      let feature = await this.http.feature(project, name);
      if (feature === undefined && knownProject !== undefined && knownProject !== this.opts.project) {
        project = this.opts.project;
        feature = await this.http.feature(project, name);
      }
      return { project, feature };
    } catch (err) {
      throw new FlagSourceError(`Unleash: could not read toggle "${name}" (${(err as Error).message})`);
    }
  }

  async apply(name: string, change: RoutingChange, opts: ApplyOptions = {}): Promise<Applied> {
    const env = this.opts.environment;
    const { project, feature } = await this.read(name, opts.project).catch((err: Error) => {
      throw new FlagSourceError(`${err.message}; ${opts.check ? UNCHECKED : 'nothing was changed'}`);
    });
    // The caller's precondition (`expect`), on the state this change is planned from: no extra read.
    opts.observe?.(feature);
    opts.check?.(feature);
    const envState = feature?.environments.find((e) => e.name === env);
    if (feature !== undefined && envState === undefined) {
      throw new FlagOwnedError(`toggle "${name}" in Unleash project "${project}" has no environment "${env}" (the environment of cutover's API token); change it in Unleash`, 'unleash');
    }
    const active = (envState?.strategies ?? []).filter((s) => s.disabled !== true);
    const rollouts = active.filter((s) => s.name === 'flexibleRollout');
    const featurePath = `/projects/${enc(project)}/features/${enc(name)}`;
    const envPath = `${featurePath}/environments/${enc(env)}`;

    // Plan first, so a change that cannot be mapped changes nothing.
    let strategyStep: Step | undefined;
    const wantRollout = change.percentage ?? 100;
    if (active.length === 0 && (change.percentage !== undefined || change.enabled === true || feature === undefined)) {
      let createdId: string | undefined;
      strategyStep = {
        what: `create a flexibleRollout strategy at ${wantRollout} %`,
        run: async () => {
          const created = (await this.call('POST', `${envPath}/strategies`, {
            name: 'flexibleRollout',
            constraints: [],
            parameters: { rollout: String(wantRollout), stickiness: 'userId', groupId: name },
          })) as Partial<AdminStrategy> | undefined;
          createdId = created?.id;
        },
        undo: async () => {
          if (createdId === undefined) throw new FlagSourceError("Unleash's answer did not give the new strategy's id");
          await this.call('DELETE', `${envPath}/strategies/${enc(createdId)}`, undefined);
        },
        undoIsIdempotent: false,
        left: `a flexibleRollout strategy at ${wantRollout} % (created)`,
        field: 'percentage',
      };
    } else if (change.percentage !== undefined) {
      if (rollouts.length !== 1) {
        const names = active.map((s) => s.name).join(', ');
        throw new FlagOwnedError(
          `toggle "${name}" has ${rollouts.length === 0 ? 'no flexibleRollout strategy' : `${rollouts.length} flexibleRollout strategies`} in "${env}" (active: ${names}): cutover only sets the rollout of a single flexibleRollout strategy; change it in Unleash`,
          'unleash',
        );
      }
      const s = rollouts[0] as AdminStrategy;
      const was = s.parameters.rollout;
      if (Number(was) !== change.percentage) {
        const put = (parameters: Record<string, string>) =>
          this.call('PUT', `${envPath}/strategies/${enc(s.id)}`, {
            name: s.name,
            title: s.title ?? undefined,
            disabled: s.disabled ?? false,
            constraints: s.constraints,
            parameters,
            segments: s.segments ?? [],
            variants: s.variants ?? [],
            sortOrder: s.sortOrder ?? 0,
          });
        strategyStep = {
          what: `set the rollout from ${was} to ${change.percentage} %`,
          run: () => put({ ...s.parameters, rollout: String(change.percentage) }),
          undo: () => put(s.parameters),
          undoIsIdempotent: true,
          left: `the rollout at ${change.percentage} % (was ${was})`,
          field: 'percentage',
        };
      }
    }
    const wasOn = envState?.enabled ?? false;
    const onOff = (on: boolean) => () => this.call('POST', `${envPath}/${on ? 'on' : 'off'}`, undefined);
    const toggleStep: Step | undefined =
      change.enabled !== undefined && change.enabled !== wasOn
        ? { what: `turn the toggle ${change.enabled ? 'on' : 'off'}`, run: onOff(change.enabled), undo: onOff(wasOn), undoIsIdempotent: true, left: `the toggle ${change.enabled ? 'on' : 'off'} in "${env}"`, field: 'enabled' }
        : undefined;
    const createStep: Step | undefined =
      feature === undefined
        ? {
            what: `create the toggle in project "${project}"`,
            run: () => this.call('POST', `/projects/${enc(project)}/features`, { name, type: 'release', description: 'created by cutover (routing flag)' }),
            undo: undefined,
            undoIsIdempotent: false,
            left: `the toggle "${name}" (created in project "${project}", off in "${env}": it sends nobody to the candidate)`,
            field: undefined,
          }
        : undefined;
    const steps = [createStep, ...(change.enabled === false ? [toggleStep, strategyStep] : [strategyStep, toggleStep])].filter((s): s is Step => s !== undefined);

    const done: Step[] = [];
    for (const step of steps) {
      if (opts.superseded?.aborted) {
        // A rollback of this flag arrived: going on would fight it. Undone like a failure.
        if (done.length === 0) throw new SupersededError(`a rollback of "${name}" arrived before this change reached Unleash: nothing of it was applied`, undefined, 'not applied');
        const e = await this.rollBack(name, env, done, step, new FlagSourceError('a rollback of this flag arrived meanwhile, so the change was not continued'), change);
        throw new SupersededError(e.message, e.applied, e.note);
      }
      try {
        await step.run();
      } catch (err) {
        throw await this.rollBack(name, env, done, step, err as FlagSourceError, change);
      }
      done.push(step);
    }
    // Read back what the SDK will get; if that read fails, the change is in all the same.
    const after = await this.http.feature(project, name).catch(() => undefined);
    const expected = after !== undefined ? expectedOf(after, env) : { ...(change.enabled !== undefined && { enabled: change.enabled }), ...(change.percentage !== undefined && { percentage: change.percentage }) };
    return { expected, wrote: done.length > 0 };
  }

  /**
   * Undoes the done steps in reverse, except a successful "off"; a step Unleash did not answer
   * may have happened, so it is undone too when that is safe (a known previous state put back,
   * never a toggle turned back on). Says what was undone and what is left.
   */
  private async rollBack(name: string, env: string, done: Step[], failed: Step, err: FlagSourceError, change: RoutingChange): Promise<UnleashChangeError> {
    const turningOff = (s: Step) => change.enabled === false && s.field === 'enabled';
    const keptOff = done.find(turningOff);
    const maybe = err instanceof NoAnswerError;
    const undoTheFailed = maybe && failed.undoIsIdempotent && !turningOff(failed);
    const undone: string[] = [];
    const left: Step[] = [];
    const undoFailures: string[] = [];
    let failedStays = maybe && !undoTheFailed;
    for (const s of [...(undoTheFailed ? [failed] : []), ...[...done].reverse().filter((x) => x !== keptOff)]) {
      try {
        if (s.undo === undefined) throw new Error('cannot be undone');
        await s.undo();
        if (s !== failed) undone.push(s.what);
      } catch (e) {
        if (s === failed) failedStays = true;
        else left.push(s);
        if (s.undo !== undefined) undoFailures.push(`undoing "${s.what}" failed too: ${(e as Error).message}`);
      }
    }
    const applied: RoutingChange = {};
    if (keptOff) applied.enabled = false;
    for (const s of left) {
      if (s.field === 'enabled') applied.enabled = change.enabled;
      if (s.field === 'percentage') applied.percentage = change.percentage ?? 100;
    }
    const routed = left.filter((s) => s.field !== undefined);
    const parts = [`Unleash: could not ${failed.what} for "${name}" in "${env}": ${err.message}.`];
    if (undone.length > 0) parts.push(`Undone: ${undone.join(', then ')}.`);
    if (keptOff) parts.push(`The toggle is OFF in Unleash for the whole fleet (kept: turning off is the safe direction)${failedStays ? '' : '; the rollout was not changed'}.`);
    if (routed.length > 0) parts.push(`LEFT CHANGED in Unleash: ${routed.map((s) => s.left).join('; ')} (${undoFailures.join('; ')}); set it back there or repeat the call.`);
    else if (!keptOff && !failedStays) parts.push('Nothing that routes was changed in Unleash.');
    for (const s of left.filter((x) => x.field === undefined)) parts.push(`Left in Unleash: ${s.left}.`);
    if (failedStays) parts.push(`Unleash did not answer, so "${failed.what}" may have happened: check the toggle in Unleash, or repeat the call.`);
    const note = keptOff
      ? `partly applied: the toggle is off, the rollout was not changed (${failed.what} failed)`
      : routed.length > 0
        ? `partly applied: ${routed.map((s) => s.left).join('; ')} (${failed.what} failed, and its undo)`
        : 'nothing applied';
    return new UnleashChangeError(parts.join(' '), Object.keys(applied).length > 0 ? applied : undefined, note);
  }

  close(): Promise<void> {
    return this.http.close();
  }

  private call(method: 'POST' | 'PUT' | 'DELETE', path: string, body: unknown): Promise<unknown> {
    return this.http.call(method, path, body);
  }
}
