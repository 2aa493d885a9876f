// The CLI's help texts, kept apart so cli.ts reads as what each command does.
import { ENV } from './defaults.js';
import { DEFAULT_HEAP_GROWING_PERCENT } from './util/heap-growth.js';

export const SERVE_HELP = `Usage: cutover serve [options]

Runs the proxy and the admin API.

Options:
  --routes DIR          route config directory (*.yaml, merged)        [./routes]
  --flags DIR           flag state directory (one JSON file per flag)  [./flags]
  --port N              proxy port                                     [8080]
  --host ADDR           proxy bind address                             [0.0.0.0]
  --admin-port N        admin API port                                 [9090]
  --admin-host ADDR     admin bind address (non-loopback needs a token) [127.0.0.1]
  --drain-delay DUR     on SIGTERM, /readyz is 503 but the proxy still
                        serves this long before it stops accepting     [5s]
  --drain-timeout DUR   then, time in-flight requests get to finish    [10s]
  --no-watch            don't reload when files in --routes change (SIGHUP still reloads)
  -h, --help            this help

Fleet mode (routing flags from Unleash; every option also from the environment):
  --unleash-url URL               Unleash API URL, e.g. http://unleash:4242/api   (UNLEASH_URL)
  --unleash-token TOKEN           backend token <project>:<env>.<secret>          (UNLEASH_API_TOKEN)
  --unleash-app-name NAME         application name shown in Unleash [cutover]     (UNLEASH_APP_NAME)
  --unleash-refresh-interval MS   poll period, ms or a duration like 2s [1000]    (UNLEASH_REFRESH_INTERVAL)
  --unleash-admin-token TOKEN     apply admin flag changes in Unleash (else 409)  (UNLEASH_ADMIN_TOKEN)

Environment:
  CUTOVER_ADMIN_TOKEN   when set, admin calls need "Authorization: Bearer <token>"
                        (a trailing newline is ignored; blank or inner whitespace: refused)
  LOG_LEVEL             pino level: trace, debug, info, warn, error    [info]
  ${ENV.heapGrowingPercent}  V8 old-space growth per full GC, %; 0 = V8's own [${DEFAULT_HEAP_GROWING_PERCENT}]
`;

export const CHECK_HELP = `Usage: cutover check --routes DIR [--flags DIR]

Validates route config (and flag files, if --flags is given) and exits non-zero, printing every
problem with its file and key path, when anything is wrong. Keys are parsed and secretEnv
variables read from this environment, as serve does: run it where serve runs.
`;

export const DEMO_HELP = `Usage: cutover demo [options]

Starts two sample backends ("legacy" on :7001, "new" on :7002) and the proxy on the shipped
example config in routes/, then prints curl lines to try. Flag changes are kept in
.cutover-demo/flags (seeded from the shipped flags/).

Options:
  --port N          proxy port       [8080]
  --admin-port N    admin API port   [9090]
  --flags DIR       flag directory   [.cutover-demo/flags]
  -h, --help        this help
`;

export const mainHelp = (version: string): string => `cutover ${version}: route users between a legacy backend and new services by flag and percentage.

Usage: cutover <command> [options]

Commands:
  serve     run the proxy and the admin API
  check     validate routes/ (and flags/) and exit
  demo      run sample backends and the proxy on the example config

Run "cutover <command> --help" for a command's options.
`;
