import type { Unleash, ClientFeaturesResponse, Context } from 'unleash-client';
import { NEW_FLAG, type CompiledFlag, type FlagView, type UnleashToggleInfo } from './model.js';
import type { AdminFeature } from './unleash-admin-http.js';

/** A toggle as the SDK holds it. */
export type Feature = ClientFeaturesResponse['features'][number];

const NO_USER: Context = Object.freeze({});

/** The toggle as the hot path routes by it: the SDK decides per request, so every strategy works as in any app. */
export function compileToggle(client: Unleash, name: string, v: FlagView): CompiledFlag {
  return {
    name,
    groupId: name,
    enabled: v.enabled,
    percentage: v.percentage,
    cohort: undefined,
    exclude: undefined,
    anonymous: v.anonymous,
    autoDisableAfter: 0,
    healthIntervalMs: undefined,
    // Per request: one SDK call, as cheap as the SDK makes it (a map lookup, the strategy's
    // murmur3 of "<groupId>:<userId>", and a usage counter unless metrics are disabled).
    evaluate: (userId) => client.isEnabled(name, userId === undefined ? NO_USER : { userId }),
  };
}

/**
 * The routing part of a toggle's view: enabled, and the percentage it rolls out to when that can
 * be told (one flexibleRollout or gradualRolloutUserId strategy: its rollout; no strategy or
 * "default": 100). With several strategies, constraints or segments the percentage is the
 * largest rollout and `unleash.percentage_exact` is false: the SDK's evaluation decides.
 */
export function toggleState(f: Feature): FlagView {
  const strategies = (f.strategies ?? []).map((s) => {
    const p = s.parameters ?? {};
    const raw = s.name === 'flexibleRollout' ? p.rollout : s.name === 'gradualRolloutUserId' || s.name === 'gradualRolloutRandom' ? p.percentage : undefined;
    const rollout = s.name === 'default' ? 100 : raw !== undefined ? Number(raw) : undefined;
    return {
      name: s.name,
      ...(rollout !== undefined && Number.isFinite(rollout) && { rollout }),
      ...(typeof p.stickiness === 'string' && { stickiness: p.stickiness }),
      ...(typeof p.groupId === 'string' && { groupId: p.groupId }),
      constraints: s.constraints?.length ?? 0,
      segments: s.segments?.length ?? 0,
    };
  });
  const rollouts = strategies.map((s) => s.rollout);
  const percentage = strategies.length === 0 ? 100 : Math.max(0, ...rollouts.map((r) => r ?? 0));
  const simple = strategies.length <= 1 && strategies.every((s) => s.rollout !== undefined && s.constraints === 0 && s.segments === 0);
  const randomForAnonymous = strategies.some((s) => s.name === 'gradualRolloutRandom' || (s.name === 'flexibleRollout' && s.stickiness !== 'userId'));
  const alwaysOn = strategies.length === 0 || strategies.some((s) => s.name === 'default' && s.constraints === 0 && s.segments === 0);
  const unleash: UnleashToggleInfo = {
    project: f.project,
    type: f.type,
    stale: f.stale ?? false,
    strategies,
    percentage_exact: simple,
  };
  return {
    name: f.name,
    ...NEW_FLAG,
    enabled: f.enabled,
    percentage: Math.min(100, Math.round(percentage)),
    anonymous: alwaysOn ? 'candidate' : randomForAnonymous ? 'random' : 'legacy',
    source: 'unleash',
    unleash,
  };
}

/** What the SDK should show once it has the admin change. */
export function expectedOf(f: AdminFeature, env: string): { enabled: boolean; percentage: number | undefined } {
  const e = f.environments.find((x) => x.name === env);
  const active = (e?.strategies ?? []).filter((s) => s.disabled !== true);
  const only = active.length === 1 && active[0]?.name === 'flexibleRollout' ? Number(active[0].parameters.rollout) : undefined;
  return { enabled: e?.enabled ?? false, percentage: only };
}

/**
 * A toggle as the Admin API returned it, in the form the SDK's view has (undefined: no such
 * toggle, or not in `env`): what `expect` is checked against, so it compares like the flag's view.
 */
export function adminToggleState(f: AdminFeature | undefined, env: string): FlagView | undefined {
  const e = f?.environments.find((x) => x.name === env);
  if (f === undefined || e === undefined) return undefined;
  const strategies = e.strategies.filter((s) => s.disabled !== true).map(({ name, constraints, parameters, segments }) => ({ name, constraints, parameters, segments }));
  return toggleState({ name: f.name, project: f.project, type: f.type ?? 'release', stale: f.stale ?? false, enabled: e.enabled, strategies, variants: [] } as unknown as Feature);
}
