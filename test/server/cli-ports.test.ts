// Port options of the CLI: a Deployment with --port "$PORT" and PORT unset used to start quietly on
// an ephemeral port ('' is 0 to Number()), and --port 0x1F91 was taken as 8081.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { serveArgs, startUpstream, tempDir, twoSided, writeConfig } from '../helpers/servers.js';

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;

function cli(args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 5000 }); // a refused option exits at once
}

t.test('serve: --port and --admin-port take decimal digits 0-65535 only', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate));
  const withOpt = (name: string, value: string) => {
    const args = serveArgs(dirs);
    args[args.indexOf(name) + 1] = value;
    return args;
  };
  // One process per case and the machine is shared: every shape on --port, the main ones on --admin-port.
  const cases: Array<[string, string]> = [
    ...['', ' ', '0x1F91', '1e3', ' 8080', '8080.0', '65536', '+80'].map((v): [string, string] => ['--port', v]),
    ['--admin-port', ''],
    ['--admin-port', '0x2382'],
  ];
  for (const [name, bad] of cases) {
    const r = cli(withOpt(name, bad));
    t.equal(r.error, undefined, `${name} ${JSON.stringify(bad)}: exited by itself (did not start serving)`);
    t.equal(r.status, 2, `${name} ${JSON.stringify(bad)}: usage error`);
    t.equal(r.stderr, `cutover: ${name} must be a port number (0-65535, decimal digits), got ${JSON.stringify(bad)}\n`, `${name} ${JSON.stringify(bad)}: named in the error`);
  }
});

t.test('demo: a bad port is refused before anything is created or bound', async (t) => {
  const root = await tempDir(t);
  const flags = join(root, 'flags');
  const r = cli(['demo', '--admin-port', '0x2382', '--flags', flags]);
  t.equal(r.error, undefined, 'exited by itself');
  t.equal(r.status, 2);
  t.equal(r.stderr, 'cutover: --admin-port must be a port number (0-65535, decimal digits), got "0x2382"\n');
  t.same(await readdir(root), [], 'no flags dir was created');
});
