import type { WindowSnapshot } from '../../observability/windows.js';

// What the dashboard's browser code reads from the admin API. Types only: erased at compile time,
// so the shipped function text (client.ts, format.ts) still references nothing.

/** What /api/v1/status reports per window (observability/windows.ts). */
export type Snap = Omit<WindowSnapshot, 'window_s'>;
export interface Health {
  healthy: boolean;
  ejectedUntil?: number;
  lastReason?: string;
}
export interface TargetView {
  upstream: string;
  health: Health | null;
  requests_total: number;
  codes: Record<string, number>;
  '1m': Snap;
  '5m': Snap;
}
export interface RouteStatus {
  name: string;
  match: { path: string; methods?: string[] } | null;
  flag: string | null;
  flag_state: { exists: boolean; enabled: boolean; percentage: number } | null;
  legacy: TargetView;
  candidate: TargetView | null;
  fallbacks: { total: number; by_reason: Record<string, number>; '1m': number; '5m': number };
  shadow?: Record<'1m' | '5m', { compared: number; mismatched: number; rate: number | null }>;
}
export interface FlagView {
  name: string;
  enabled: boolean;
  percentage: number;
  description?: string;
  auto_disable_on_failure?: boolean;
  updated_at?: string;
  updated_by?: string;
  routes: string[];
}
export interface Status {
  time: string;
  uptime_s: number;
  routes: RouteStatus[];
  flags: FlagView[];
  upstreams: Array<{ name: string; health: Health | null; routes: string[] }>;
  /** Fleet mode only (src/admin/flags-api.ts sourceJson). */
  flag_source?: FlagSource;
}
export interface FlagSource {
  kind: string;
  up: boolean;
  serving_from: 'source' | 'bootstrap' | 'nothing';
  last_success_at: string | null;
  seconds_since_success: number | null;
  last_error: string | null;
}

export interface GateView {
  value: number | null;
  limit: number;
  state: string;
  detail: string;
}
export interface PlanView {
  flag: string;
  state: string;
  step: number;
  steps: number;
  percentage: number;
  nextStepAt: string | null;
  reason: string | null;
  gates: Record<string, GateView>;
  window: { seconds: number; candidateRequests: number; minRequests: number };
  verdict: string;
  plan: { steps: Array<{ percentage: number; hold: string }> };
  time: string;
}
