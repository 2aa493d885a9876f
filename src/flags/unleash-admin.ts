import { Agent, request } from 'undici';
import { FlagOwnedError, FlagSourceError } from './model.js';

/** A strategy as Unleash's Admin API returns it. */
export interface AdminStrategy {
  id: string;
  name: string;
  title?: string | null;
  disabled?: boolean | null;
  constraints: unknown[];
  parameters: Record<string, string>;
  segments?: number[];
  variants?: unknown[];
  sortOrder?: number;
}

export interface AdminFeature {
  name: string;
  project: string;
  environments: Array<{ name: string; enabled: boolean; strategies: AdminStrategy[] }>;
}

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
 */
export class UnleashAdmin {
  private readonly agent = new Agent({ keepAliveTimeout: 2000, connect: { timeout: 5000 } });
  private readonly base: string;

  constructor(private readonly opts: UnleashAdminOptions) {
    this.base = opts.apiUrl.replace(/\/+$/, '') + '/admin';
  }

  async apply(name: string, change: RoutingChange, knownProject?: string): Promise<AdminFeature> {
    const env = this.opts.environment;
    let project = knownProject ?? this.opts.project;
    let feature = await this.feature(project, name);
    if (feature === undefined && knownProject !== undefined && knownProject !== this.opts.project) {
      project = this.opts.project;
      feature = await this.feature(project, name);
    }
    const envState = feature?.environments.find((e) => e.name === env);
    if (feature !== undefined && envState === undefined) {
      throw new FlagOwnedError(`toggle "${name}" in Unleash project "${project}" has no environment "${env}" (the environment of cutover's API token); change it in Unleash`, 'unleash');
    }
    const active = (envState?.strategies ?? []).filter((s) => s.disabled !== true);
    const rollouts = active.filter((s) => s.name === 'flexibleRollout');

    // Plan first, so a change that cannot be mapped changes nothing.
    let strategyStep: (() => Promise<unknown>) | undefined;
    const wantRollout = change.percentage ?? 100;
    const newStrategy = () =>
      this.call('POST', `/projects/${enc(project)}/features/${enc(name)}/environments/${enc(env)}/strategies`, {
        name: 'flexibleRollout',
        constraints: [],
        parameters: { rollout: String(wantRollout), stickiness: 'userId', groupId: name },
      });
    if (active.length === 0 && (change.percentage !== undefined || change.enabled === true || feature === undefined)) {
      strategyStep = newStrategy;
    } else if (change.percentage !== undefined) {
      if (rollouts.length !== 1) {
        const names = active.map((s) => s.name).join(', ');
        throw new FlagOwnedError(
          `toggle "${name}" has ${rollouts.length === 0 ? 'no flexibleRollout strategy' : `${rollouts.length} flexibleRollout strategies`} in "${env}" (active: ${names}): cutover only sets the rollout of a single flexibleRollout strategy; change it in Unleash`,
          'unleash',
        );
      }
      const s = rollouts[0] as AdminStrategy;
      if (Number(s.parameters.rollout) !== change.percentage) {
        strategyStep = () =>
          this.call('PUT', `/projects/${enc(project)}/features/${enc(name)}/environments/${enc(env)}/strategies/${enc(s.id)}`, {
            name: s.name,
            title: s.title ?? undefined,
            disabled: s.disabled ?? false,
            constraints: s.constraints,
            parameters: { ...s.parameters, rollout: String(change.percentage) },
            segments: s.segments ?? [],
            variants: s.variants ?? [],
            sortOrder: s.sortOrder ?? 0,
          });
      }
    }
    const toggleStep =
      change.enabled !== undefined && change.enabled !== (envState?.enabled ?? false)
        ? () => this.call('POST', `/projects/${enc(project)}/features/${enc(name)}/environments/${enc(env)}/${change.enabled ? 'on' : 'off'}`, undefined)
        : undefined;

    if (feature === undefined) {
      await this.call('POST', `/projects/${enc(project)}/features`, { name, type: 'release', description: 'created by cutover (routing flag)' });
    }
    if (change.enabled === false) {
      await toggleStep?.();
      await strategyStep?.();
    } else {
      await strategyStep?.();
      await toggleStep?.();
    }
    const after = await this.feature(project, name);
    if (after === undefined) throw new FlagSourceError(`Unleash: toggle "${name}" is missing right after the change`);
    return after;
  }

  async feature(project: string, name: string): Promise<AdminFeature | undefined> {
    return (await this.call('GET', `/projects/${enc(project)}/features/${enc(name)}`, undefined, true)) as AdminFeature | undefined;
  }

  close(): Promise<void> {
    return this.agent.close();
  }

  private async call(method: 'GET' | 'POST' | 'PUT', path: string, body: unknown, allow404 = false): Promise<unknown> {
    const url = this.base + path;
    let res;
    try {
      res = await request(url, {
        method,
        dispatcher: this.agent,
        headers: { authorization: this.opts.token, 'content-type': 'application/json', accept: 'application/json' },
        body: body === undefined ? null : JSON.stringify(body),
        headersTimeout: this.opts.timeoutMs ?? 10_000,
        bodyTimeout: this.opts.timeoutMs ?? 10_000,
      });
    } catch (err) {
      throw new FlagSourceError(`Unleash Admin API ${method} ${url}: ${(err as Error).message}`);
    }
    const text = await res.body.text();
    if (allow404 && res.statusCode === 404) return undefined;
    if (res.statusCode >= 300) {
      let message = text.slice(0, 300);
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? message;
      } catch {
        /* not JSON */
      }
      throw new FlagSourceError(`Unleash Admin API ${method} ${path} answered ${res.statusCode}: ${message}`);
    }
    return text ? (JSON.parse(text) as unknown) : undefined;
  }
}

function enc(s: string): string {
  return encodeURIComponent(s);
}
