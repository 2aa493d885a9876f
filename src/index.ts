export { createCutover, type Cutover, type CutoverOptions, type FlagsApi, type Handler, type ProxyHandler } from './cutover.js';
export { serve, type ServeOptions, type Running } from './server.js';
export { loadConfigDir, configFromObject, ConfigError, type Config, type ConfigProblem } from './config/load.js';
export type { ConfigInput } from './config/schema.js';
export { FlagStore, type Actor, type FlagChange } from './flags/store.js';
export { FlagValidationError, type FlagView, type FlagPatch, type FlagState } from './flags/model.js';
export { bucketOf, inRollout } from './routing/bucket.js';
export { decide, type Decision, type Target, type Why } from './routing/decide.js';
export type { Observer, AttemptRecord, RequestRecord, FallbackReason } from './observability/observer.js';
/** Sample "legacy"/"new" backends, as used by `cutover demo` and the examples. */
export { sampleBackend, listenBackend } from './demo/backends.js';
