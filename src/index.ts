export { createCutover, type Cutover, type CutoverOptions, type Handler } from './cutover.js';
export { serve, type ServeOptions, type Running } from './server.js';
export { loadConfigDir, configFromObject, ConfigError, type Config, type ConfigProblem } from './config/load.js';
export type { ConfigInput } from './config/schema.js';
export { FlagStore, type Actor, type FlagChange } from './flags/store.js';
export { FlagValidationError, type FlagView, type FlagPatch, type FlagState } from './flags/model.js';
export { bucketOf, inRollout } from './routing/bucket.js';
export { decide, type Decision, type Target, type Why } from './routing/decide.js';
