import type { Unleash } from 'unleash-client';
import { FlagOwnedError, FlagSourceError, NotSeenHereError, SupersededError, UnleashChangeError, type CompiledFlag, type FlagPatch, type FlagView } from './model.js';
import { rollbackLive, type ExternalApplyOptions, type ExternalChange, type ExternalFlags, type FlagSourceStatus } from './fleet.js';
import type { Actor } from './persistence.js';
import { BootstrapStorage } from './unleash-bootstrap.js';
import { UNCHECKED, UnleashAdmin, type ExpectedState, type RoutingChange } from './unleash-admin.js';
import { environmentOfToken, sdkConfig, type UnleashSourceOptions } from './unleash-options.js';
import { adminToggleState, compileToggle, toggleState, type Feature } from './unleash-toggles.js';

export { bootstrapFileIn, environmentOfToken, UNLEASH_BOOTSTRAP_FILE, type UnleashSourceOptions } from './unleash-options.js';

const OVERRIDDEN = 'a rollback of this flag arrived while it was being applied and overrides it (re-asserted in Unleash once this call settled)';

/**
 * Routing flags from a real Unleash server through unleash-client (fleet mode).
 *
 * - Decisions: a route's `flag` is an Unleash toggle name; each request asks the SDK's
 *   `isEnabled(toggle, { userId })` through `CompiledFlag.evaluate`, so flexibleRollout,
 *   constraints, segments and every other strategy work as in any app using the Node SDK.
 * - State: the SDK polls every `refreshIntervalMs`; the last payload fetched is written to the
 *   bootstrap file and loaded at start, so a restart while Unleash is down keeps routing.
 * - Outages: a failed fetch changes nothing (the SDK keeps its last state); `status()` says
 *   down, and the transition is logged once each way.
 * - Admin changes: refused (FlagOwnedError, 409) unless an admin token is configured, in which
 *   case they are applied in Unleash (UnleashAdmin) and awaited until this replica sees them.
 */
export class UnleashSource implements ExternalFlags {
  readonly kind = 'unleash';
  private client: Unleash | undefined;
  private readonly storage: BootstrapStorage;
  private readonly admin: UnleashAdmin | undefined;
  private readonly compiledFlags = new Map<string, CompiledFlag>();
  private readonly views = new Map<string, FlagView>();
  private readonly fingerprints = new Map<string, string>();
  private onChange: ((changes: ExternalChange[]) => void) | undefined;
  private readonly refreshIntervalMs: number;
  readonly environment: string;

  private up = false;
  private everUp = false;
  private lastSuccessAt: number | undefined;
  private lastFailureAt: number | undefined;
  private lastError: string | undefined;
  private downSince: number | undefined;
  private failureLogged = false;
  private synced = false;
  private closed = false;

  constructor(private readonly opts: UnleashSourceOptions) {
    this.refreshIntervalMs = opts.refreshIntervalMs ?? 1000;
    this.environment = opts.environment ?? environmentOfToken(opts.apiToken) ?? 'development';
    this.storage = new BootstrapStorage(opts.bootstrapFile, opts.url, opts.logger, () => this.fetched());
    this.admin = opts.adminToken
      ? new UnleashAdmin({ apiUrl: opts.url, token: opts.adminToken, environment: this.environment, project: opts.project ?? 'default' })
      : undefined;
  }

  async start(onChange: (changes: ExternalChange[]) => void): Promise<void> {
    const log = this.opts.logger;
    // Loaded only in fleet mode: the SDK and its dependencies cost ~19 MB of RSS otherwise.
    const { Unleash } = await import('unleash-client');
    const client = new Unleash(sdkConfig(this.opts, this.environment, this.refreshIntervalMs, this.storage));
    this.client = client;
    client.on('changed', () => this.sync());
    client.on('ready', () => this.sync());
    client.on('unchanged', () => this.fetched());
    client.on('error', (err: Error) => {
      // Repository errors are failed fetches; metrics errors only cost Unleash's usage counts.
      if (/Repository error/.test(err.message)) this.failed(err.message);
      else log.warn({ err: err.message }, 'Unleash SDK error');
    });
    client.on('warn', (msg: unknown) => {
      const text = msg instanceof Error ? msg.message : String(msg);
      // The fetcher warns (instead of erroring) on 404/429/5xx and on a reset keep-alive socket.
      if (/ responded |Socket keep alive error/.test(text)) this.failed(text);
      else log.debug({ msg: text }, 'Unleash SDK warning');
    });

    // Wait for the first fetch: up to startupWaitMs without a bootstrap file; with one, at most
    // a second (fresh data if Unleash answers at once), and not past the first failed fetch.
    const first = new Promise<void>((resolve) => {
      let timer = setTimeout(resolve, this.opts.startupWaitMs ?? 5000);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      client.once('synchronized', done);
      void this.storage.settled.then(() => {
        if (!this.storage.loaded) return;
        clearTimeout(timer);
        timer = setTimeout(resolve, Math.min(this.opts.startupWaitMs ?? 5000, 1000));
      });
      this.onFirstFailure = () => void this.storage.settled.then(() => this.storage.loaded && done());
    });
    client.start().catch((err: Error) => this.failed(err.message));
    await first;
    this.onFirstFailure = undefined;
    await this.storage.settled;
    await new Promise((r) => setImmediate(r)); // let the SDK apply what get() returned
    this.sync();
    this.onChange = onChange;

    const loaded = this.storage.loaded;
    if (this.synced) {
      log.info({ url: this.opts.url, toggles: this.views.size, environment: this.environment }, 'flags from Unleash');
    } else if (loaded && this.views.size > 0) {
      log.warn({ url: this.opts.url, file: loaded.file, savedAt: loaded.savedAt, toggles: this.views.size, err: this.lastError }, 'Unleash not reachable yet: routing on the bootstrap file (the last state fetched)');
    } else {
      log.error({ url: this.opts.url, err: this.lastError, waitedMs: this.opts.startupWaitMs ?? 5000 }, 'Unleash not reachable and no bootstrap file: every route goes to legacy until the first fetch');
    }
  }

  private onFirstFailure: (() => void) | undefined;

  /** Hot path. */
  compiled(name: string): CompiledFlag | undefined {
    return this.compiledFlags.get(name);
  }

  view(name: string): FlagView | undefined {
    return this.views.get(name);
  }

  names(): string[] {
    return [...this.views.keys()];
  }

  status(): FlagSourceStatus {
    return {
      kind: this.kind,
      up: this.up,
      lastSuccessAt: this.lastSuccessAt,
      lastFailureAt: this.lastFailureAt,
      lastError: this.lastError,
      servingFrom: this.synced ? 'source' : this.views.size > 0 ? 'bootstrap' : 'nothing',
      flags: this.views.size,
    };
  }

  /** Seconds since the last successful fetch (undefined: never), for a metric. */
  secondsSinceSuccess(now = Date.now()): number | undefined {
    return this.lastSuccessAt === undefined ? undefined : (now - this.lastSuccessAt) / 1000;
  }

  async apply(name: string, patch: FlagPatch, actor: Actor, opts: ExternalApplyOptions = {}): Promise<boolean> {
    const unsupported = (['cohort', 'exclude', 'anonymous'] as const).filter((k) => patch[k] !== undefined);
    if (unsupported.length > 0) {
      throw new FlagOwnedError(
        `flag "${name}" is owned by Unleash: ${unsupported.join(', ')} ${unsupported.length > 1 ? 'have' : 'has'} no place there; use a strategy constraint (e.g. userId IN [...]) in Unleash instead`,
        'unleash',
      );
    }
    const admin = this.adminFor(name);
    const { check, observe, superseded } = opts;
    const change = { enabled: patch.enabled, percentage: patch.percentage };
    const waitMs = this.refreshIntervalMs * 2 + 3000;
    let want: ExpectedState;
    let wrote = false;
    let failure: UnleashChangeError | undefined;
    try {
      ({ expected: want, wrote } = await admin.apply(name, change, { project: this.projectOf(name), check: check && ((f) => check(adminToggleState(f, this.environment))), observe: observe && ((f) => observe(adminToggleState(f, this.environment))), superseded }));
    } catch (err) {
      // Part of it is live in Unleash (a kept "off", a failed undo): say whether we route by it.
      if (!(err instanceof UnleashChangeError) || err.applied === undefined) throw err;
      failure = err;
      want = err.applied;
    }
    const seen = await this.seenHere(name, want, Date.now() + waitMs, superseded);
    const overridden = !seen && superseded?.aborted === true && (await rollbackLive(superseded));
    if (failure !== undefined) {
      failure.message += seen ? ' This replica already routes by that.' : overridden ? ` ${OVERRIDDEN}.` : ` This replica has not seen that within ${waitMs / 1000} s (${this.sdkState()}).`;
      throw failure;
    }
    this.opts.logger.info({ flag: name, who: actor.who, source: actor.source, enabled: patch.enabled, percentage: patch.percentage, seen }, 'flag change applied in Unleash');
    if (!seen) {
      const applied = Object.fromEntries(Object.entries(change).filter(([, v]) => v !== undefined)) as RoutingChange;
      if (overridden) {
        throw new SupersededError(`the change ${JSON.stringify(applied)} was applied in Unleash for the whole fleet, but ${OVERRIDDEN}.`, applied, 'applied, then overridden by a rollback that arrived during it', want);
      }
      // Not a 200: the body would show the old state, and an operator rolling back would think
      // this replica had stopped sending users to the candidate while it still does.
      throw new NotSeenHereError(
        `the change ${JSON.stringify(applied)} was applied in Unleash for the whole fleet (environment "${this.environment}"), but THIS replica has not seen it within ${waitMs / 1000} s and still routes by the old state (${this.sdkState()}). Other replicas follow within a poll. Check this one with GET /api/v1/flags ("source"); an SDK stopped by a 401/403 on UNLEASH_API_TOKEN polls again only after a restart.`,
        applied,
        `NOT seen by this replica within ${waitMs / 1000} s (answered 504)`,
      );
    }
    return wrote;
  }

  async read(name: string): Promise<FlagView | undefined> {
    // Without an admin token there is no Admin API to ask: the SDK's last poll is all there is.
    if (this.admin === undefined) return this.views.get(name);
    try {
      return adminToggleState((await this.admin.read(name, this.projectOf(name))).feature, this.environment);
    } catch (err) {
      throw new FlagSourceError(`${(err as Error).message}; ${UNCHECKED}`);
    }
  }

  private adminFor(name: string): UnleashAdmin {
    if (this.admin !== undefined) return this.admin;
    throw new FlagOwnedError(
      `flag "${name}" is owned by Unleash (fleet mode): change it in Unleash (${this.opts.url.replace(/\/api\/?$/, '')}, environment "${this.environment}"), or give cutover UNLEASH_ADMIN_TOKEN to apply such changes there`,
      'unleash',
    );
  }

  private projectOf(name: string): string | undefined {
    return (this.client?.getFeatureToggleDefinition(name) as Feature | undefined)?.project;
  }

  /** Waits until this replica's SDK shows `want` (true), or the deadline, or `stop` aborted (false). */
  private async seenHere(name: string, want: ExpectedState, deadline: number, stop: AbortSignal | undefined): Promise<boolean> {
    for (;;) {
      const v = this.views.get(name);
      if (v && (want.enabled === undefined || v.enabled === want.enabled) && (want.percentage === undefined || v.percentage === want.percentage)) return true;
      if (Date.now() >= deadline || this.closed) return false;
      if (stop?.aborted === true && (await rollbackLive(stop))) return false; // one that failed outright overrides nothing: still ours to see
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The SDK's fetch state in a few words, for messages. */
  private sdkState(): string {
    const ago = this.lastSuccessAt === undefined ? 'never' : `${Math.round((Date.now() - this.lastSuccessAt) / 100) / 10} s ago`;
    return `its last successful fetch from Unleash: ${ago}${this.lastError !== undefined && !this.up ? `; last error: ${this.lastError}` : ''}`;
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    client?.destroy();
    // destroy() drops the SDK repository's listeners, but a fetch in its retries (up to ~3 s
    // during an outage) still emits 'error' there when it gives up: with no listener that is an
    // uncaught exception, mid-drain on SIGTERM. Nothing is left to tell about it.
    (client as unknown as { repository?: { on(event: 'error', fn: () => void): unknown } } | undefined)?.repository?.on('error', () => undefined);
    await this.storage.flush();
    await this.admin?.close();
  }

  /** A fetch succeeded (new data or 304). */
  private fetched(): void {
    this.lastSuccessAt = Date.now();
    this.synced = true;
    if (this.up) return;
    this.up = true;
    if (this.everUp && this.downSince !== undefined) {
      this.opts.logger.warn({ url: this.opts.url, downForS: Math.round((Date.now() - this.downSince) / 100) / 10 }, 'Unleash reachable again: flags in sync');
    }
    this.everUp = true;
    this.downSince = undefined;
    this.failureLogged = false;
  }

  private failed(message: string): void {
    this.lastFailureAt = Date.now();
    this.lastError = message;
    this.onFirstFailure?.();
    if (this.up || !this.failureLogged) {
      this.up = false;
      this.downSince ??= Date.now();
      this.failureLogged = true;
      this.opts.logger.error(
        { url: this.opts.url, err: message, lastSuccessAt: this.lastSuccessAt && new Date(this.lastSuccessAt).toISOString(), toggles: this.views.size },
        'Unleash unreachable: routing stays on the last good flag state',
      );
    }
  }

  /** Rebuilds compiled flags and views from the SDK's toggles; reports what changed. */
  private sync(): void {
    const client = this.client;
    if (client === undefined || this.closed) return;
    const features = client.getFeatureToggleDefinitions() as Feature[];
    const seen = new Set<string>();
    const changes: ExternalChange[] = [];
    const now = new Date().toISOString();
    for (const f of features) {
      seen.add(f.name);
      const state = toggleState(f);
      const fp = JSON.stringify(state);
      if (this.fingerprints.get(f.name) === fp) continue;
      const before = this.views.get(f.name);
      const view: FlagView = { ...state, updated_at: now, updated_by: 'unleash' };
      this.fingerprints.set(f.name, fp);
      this.views.set(f.name, view);
      this.compiledFlags.set(f.name, compileToggle(client, f.name, view));
      changes.push({ name: f.name, before, after: view });
    }
    for (const name of [...this.views.keys()]) {
      if (seen.has(name)) continue;
      changes.push({ name, before: this.views.get(name), after: undefined });
      this.views.delete(name);
      this.fingerprints.delete(name);
      this.compiledFlags.delete(name);
    }
    if (changes.length > 0) this.onChange?.(changes);
  }
}
