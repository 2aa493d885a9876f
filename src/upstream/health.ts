import type { Client } from 'undici';
import type { HealthConfig, OutlierConfig } from '../config/schema.js';
import type { Logger } from '../observability/logger.js';
import type { Upstream } from './pools.js';

export const NO = 0;
export const YES = 1;
export const TRIAL = 2;
export type Admission = typeof NO | typeof YES | typeof TRIAL;
/**
 * Whose answer a verdict is: the trial admit() let through after an ejection, a request admitted
 * normally, or an upstream whose traffic is never gated (legacy: every answer counts).
 */
export type VerdictOf = 'trial' | 'admitted' | 'ungated';
const TRIAL_MAX_MS = 30_000;

/** Failures that count against an upstream on live traffic. */
export type LiveFailure = 'connect' | 'reset' | 'timeout' | '5xx';

export interface HealthView {
  healthy: boolean;
  /** Active probe verdict (true when not probed). */
  probe: boolean;
  /** Ejected by live-traffic failures until this time (ms since epoch), or 0. */
  ejectedUntil: number;
  ejections: number;
  consecutiveFailures: number;
  lastReason: string | undefined;
}

/**
 * One upstream's health: active probes plus Envoy-style outlier detection on live traffic.
 * `consecutiveFailures` failures eject it for baseEjection x (times ejected), capped at
 * maxEjection. When an ejection ends, exactly one request is let through as a trial: success
 * restores the upstream, failure ejects it again for longer. Unavailable upstreams get no traffic.
 */
export class UpstreamHealth {
  private probeHealthy = true;
  private probeFails = 0;
  private probeOks = 0;
  private failures = 0;
  private ejectedUntil = 0;
  private ejections = 0;
  private trialInFlight = false;
  private trialSince = 0;
  private lastReason: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The probe under way; aborted when its chain is replaced, so only one chain ever runs. */
  private inFlight: AbortController | undefined;
  private probeClient: Client | undefined;
  private intervalMs: number;
  private closed = false;

  constructor(
    readonly upstream: Upstream,
    private readonly outlier: OutlierConfig,
    private readonly probe: HealthConfig | undefined,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.intervalMs = probe?.interval ?? 0;
  }

  /**
   * Hot path: may this request go to the upstream? After an ejection the first request admitted is
   * the trial (TRIAL): its holder must end it with success(), failure() or released().
   */
  admit(): Admission {
    if (!this.probeHealthy) return NO;
    if (this.ejectedUntil === 0) return YES;
    const now = this.now();
    // A trial held this long lost its outcome somewhere: don't let it shut the upstream out forever.
    if (now < this.ejectedUntil || (this.trialInFlight && now - this.trialSince < TRIAL_MAX_MS)) return NO;
    this.trialInFlight = true;
    this.trialSince = now;
    return TRIAL;
  }

  /**
   * A response below the failure threshold arrived. While ejected only the trial's verdict counts:
   * a request admitted before the ejection that ends well says nothing about the upstream now.
   */
  success(of: VerdictOf = 'admitted'): void {
    if (this.ejectedUntil !== 0 && of === 'admitted') return;
    this.failures = 0;
    if (this.ejectedUntil !== 0) {
      this.logger.info({ upstream: this.upstream.name, reason: 'trial request succeeded', ejections: this.ejections }, 'upstream restored after ejection');
      this.ejectedUntil = 0;
      this.ejections = 0;
    }
    this.trialInFlight = false;
  }

  /** The attempt ended without a verdict (the client left): free the trial slot, count nothing. */
  released(): void {
    this.trialInFlight = false;
  }

  failure(kind: LiveFailure, route: string, of: VerdictOf = 'admitted'): void {
    // Already out: a late failure of a request admitted before the ejection neither lengthens it
    // nor ends the trial.
    if (this.ejectedUntil !== 0 && of === 'admitted') return;
    this.failures++;
    this.lastReason = `${kind} on route ${route}`;
    const trial = of === 'trial';
    if (trial) this.trialInFlight = false;
    if (trial || this.failures >= this.outlier.consecutiveFailures) this.eject(trial);
  }

  private eject(afterTrial: boolean): void {
    this.ejections++;
    const ms = Math.min(this.outlier.baseEjection * this.ejections, this.outlier.maxEjection);
    this.ejectedUntil = this.now() + ms;
    this.failures = 0;
    this.logger.warn(
      { upstream: this.upstream.name, reason: this.lastReason, ejectedMs: ms, ejections: this.ejections, afterTrial },
      'upstream ejected',
    );
  }

  /** Failing probes or ejected right now (a candidate waiting for its trial is not out). */
  out(): boolean {
    return !this.probeHealthy || (this.ejectedUntil !== 0 && this.ejectedUntil > this.now());
  }

  view(): HealthView {
    const ejectedUntil = this.ejectedUntil > this.now() ? this.ejectedUntil : 0;
    return {
      healthy: !this.out(),
      probe: this.probeHealthy,
      ejectedUntil,
      ejections: this.ejections,
      consecutiveFailures: this.failures,
      lastReason: this.lastReason,
    };
  }

  /** Starts probing (if configured or if an interval override asks for it). */
  start(): void {
    if (this.intervalMs > 0 && !this.closed) this.schedule(0);
  }

  /** A flag's health_check_interval overrides the configured probe interval for its candidate. */
  setInterval(ms: number | undefined): void {
    const next = ms ?? this.probe?.interval ?? 0;
    if (next === this.intervalMs) return;
    this.intervalMs = next;
    this.stopProbing();
    if (next > 0 && !this.closed) this.schedule(next);
    if (next === 0) {
      // Unprobed means no probe verdict: the streaks start over if probing comes back.
      this.probeHealthy = true;
      this.probeFails = 0;
      this.probeOks = 0;
      this.dropProbeClient();
    }
  }

  close(): void {
    this.closed = true;
    this.stopProbing();
    this.dropProbeClient();
  }

  /**
   * Ends the current chain: the pending timer and the probe in flight, whose verdict would
   * otherwise land after the change and reschedule a second chain (or, after probing was turned
   * off, mark the upstream unhealthy with nothing left to bring it back).
   */
  private stopProbing(): void {
    clearTimeout(this.timer);
    this.inFlight?.abort();
    this.inFlight = undefined;
  }

  private dropProbeClient(): void {
    void this.probeClient?.destroy().catch(() => undefined);
    this.probeClient = undefined;
  }

  private schedule(delay: number): void {
    this.timer = setTimeout(() => void this.runProbe(), delay);
    this.timer.unref();
  }

  private async runProbe(): Promise<void> {
    const cfg = this.probe ?? { path: '/health', timeout: 1000, unhealthyAfter: 3, healthyAfter: 2 };
    const chain = new AbortController();
    this.inFlight = chain;
    this.probeClient ??= this.upstream.openProbeClient();
    let ok = false;
    let reason = '';
    try {
      const r = await this.probeClient.request({
        method: 'GET',
        path: this.upstream.basePath + cfg.path,
        headers: { host: this.upstream.host, 'user-agent': 'cutover-health' },
        headersTimeout: cfg.timeout,
        bodyTimeout: cfg.timeout,
        signal: AbortSignal.any([chain.signal, AbortSignal.timeout(cfg.timeout)]),
      });
      await r.body.dump();
      ok = r.statusCode >= 200 && r.statusCode < 400;
      reason = `status ${r.statusCode}`;
    } catch (err) {
      reason = (err as Error).message;
    }
    if (chain.signal.aborted) return; // superseded or closed: a newer chain (if any) owns the verdict
    this.inFlight = undefined;
    this.recordProbe(ok, reason, cfg);
    if (this.intervalMs > 0) this.schedule(this.intervalMs);
  }

  private recordProbe(ok: boolean, reason: string, cfg: { unhealthyAfter: number; healthyAfter: number; path: string }): void {
    if (ok) {
      this.probeFails = 0;
      this.probeOks++;
      if (!this.probeHealthy && this.probeOks >= cfg.healthyAfter) {
        this.probeHealthy = true;
        const why = `probe ${cfg.path}: ${reason}, ${this.probeOks} in a row`;
        this.logger.info({ upstream: this.upstream.name, path: cfg.path, reason: why }, 'upstream healthy again (active probe)');
      }
      return;
    }
    this.probeOks = 0;
    this.probeFails++;
    if (this.probeHealthy && this.probeFails >= cfg.unhealthyAfter) {
      this.probeHealthy = false;
      this.lastReason = `probe ${cfg.path}: ${reason}`;
      this.logger.warn({ upstream: this.upstream.name, reason: this.lastReason }, 'upstream unhealthy (active probe)');
    }
  }
}
