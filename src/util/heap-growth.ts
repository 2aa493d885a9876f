import { setFlagsFromString } from 'node:v8';
import { ENV } from '../defaults.js';

/**
 * V8's old-generation growth factor for `cutover serve`. A proxy's live heap is small (config,
 * pools, metrics: ~20 MB) and nearly all it allocates dies with its request; but under many
 * concurrent requests those objects outlive a scavenge or two and are promoted, and V8's default
 * heuristics then let old space fill with that garbage to several times the live size before a
 * full collection. With 1,000 keep-alive connections that took cutover from ~75 MB idle to
 * 167-208 MB RSS (a bare undici forwarder: 164-194 MB); growing by 10% per collection kept it at
 * ~130 MB (bench connections scenario; numbers in README "Performance").
 */
export const DEFAULT_HEAP_GROWING_PERCENT = 10;
const MAX = 300;

/** What was applied: a percentage, V8's own heuristics (0), or a node flag the operator passed. */
export type HeapGrowth = number | 'node flag';

/**
 * Applies CUTOVER_HEAP_GROWING_PERCENT (default 10; 0 leaves V8's heuristics alone) unless node
 * itself was started with --heap-growing-percent, which wins. Throws on a malformed value,
 * before anything is applied.
 */
export function applyHeapGrowth(raw: string | undefined, execArgv: readonly string[] = process.execArgv): HeapGrowth {
  let percent = DEFAULT_HEAP_GROWING_PERCENT;
  if (raw !== undefined && raw.trim() !== '') {
    const t = raw.trim();
    percent = /^\d+$/.test(t) ? Number(t) : NaN;
    if (!(percent <= MAX)) throw new Error(`${ENV.heapGrowingPercent} must be a whole number from 0 to ${MAX} (0: V8's default heuristics), got ${JSON.stringify(raw)}`);
  }
  if (execArgv.some((a) => /^--heap[-_]growing[-_]percent\b/.test(a))) return 'node flag';
  if (percent > 0) setFlagsFromString(`--heap-growing-percent=${percent}`);
  return percent;
}
