import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { chmod, cp, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULTS, ENV } from '../../src/defaults.js';
import { spawnCutover, tempDir } from '../helpers/servers.js';

// README, "Docker": "It runs as the unprivileged `node` user, ships only `dist/` and production
// dependencies, and has a `HEALTHCHECK` on `/healthz`." Docker cannot build here, so the
// Dockerfile is read as text (static), and what it names is checked against the code: its
// ENTRYPOINT + CMD are run from dist/ with the repo's routes/ and flags/, and its HEALTHCHECK
// command is run against that process. What stays unchecked: that the base image has a `node`
// user, and that `docker build` succeeds.

const root = new URL('../../', import.meta.url).pathname;

interface Instruction {
  op: string;
  args: string;
}

/** Dockerfile instructions by stage (continuations joined, comments and the syntax line dropped). */
function parseDockerfile(text: string): Instruction[][] {
  const logical = text
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const stages: Instruction[][] = [];
  let current: Instruction[] = [];
  for (const line of logical) {
    const [, op = '', args = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    const ins = { op: op.toUpperCase(), args };
    if (ins.op === 'FROM') stages.push((current = []));
    current.push(ins);
  }
  return stages;
}

// CUTOVER_TEST_DOCKERFILE points at a (deliberately broken) copy, to see these checks fail.
const dockerfile = process.env.CUTOVER_TEST_DOCKERFILE ?? join(root, 'Dockerfile');
const stages = parseDockerfile(await readFile(dockerfile, 'utf8'));
const final = stages.at(-1) ?? [];
const all = (op: string, stage = final) => stage.filter((i) => i.op === op);
const jsonArgs = (op: string): string[] => JSON.parse(all(op).at(-1)?.args ?? '[]') as string[];
const flag = (args: string[], name: string) => {
  const i = args.indexOf(name);
  return i === -1 ? undefined : args[i + 1];
};

t.test('static: the final stage runs as the node user', async (t) => {
  const users = all('USER');
  t.equal(users.at(-1)?.args, 'node', 'the last USER is node');
  const userAt = final.lastIndexOf(users.at(-1) as Instruction);
  t.notOk(final.slice(userAt + 1).some((i) => i.op === 'RUN'), 'nothing runs as root after it');
  t.ok(final.findIndex((i) => i.op === 'ENTRYPOINT') > userAt, 'the entrypoint runs as node');
});

t.test('static: the image ships only dist/ and production dependencies (plus routes/ and flags/)', async (t) => {
  t.ok(stages.length >= 2, 'a build stage and a runtime stage');
  const build = stages.find((s) => /\bAS\s+build\b/i.test(s[0]?.args ?? '')) ?? [];
  const runs = all('RUN', build).map((i) => i.args).join(' && ');
  const built = runs.indexOf('npm run build');
  const pruned = runs.search(/npm prune --omit=dev|npm prune --production/);
  t.ok(built !== -1 && pruned > built, `dev dependencies are pruned after the build (${runs})`);
  const copies = all('COPY').map((i) => i.args.split(/\s+/));
  const fromBuild = copies.filter((c) => c[0]?.startsWith('--from=')).map((c) => c.slice(1, -1)).flat();
  t.same(fromBuild.sort(), ['/app/dist', '/app/node_modules'], 'from the build stage: dist/ and the pruned node_modules only');
  const fromContext = copies.filter((c) => !c[0]?.startsWith('--')).map((c) => c.slice(0, -1)).flat();
  t.same(fromContext.sort(), ['flags', 'package.json', 'routes'], 'from the context: package.json and config, no sources');
  t.match(all('ENV').map((i) => i.args), [/NODE_ENV=production/], 'NODE_ENV=production');
  const entry = jsonArgs('ENTRYPOINT');
  t.same(entry, ['node', ...(await shebangFlags()), 'dist/cli.js'], "runs the compiled CLI under the node flags of the CLI's shebang");
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  t.equal(pkg.bin.cutover, entry.at(-1), "the package's own bin");
});

/** The node flags cutover ships with: its bin's shebang, `#!/usr/bin/env -S node FLAGS` (README "Performance"). */
async function shebangFlags(): Promise<string[]> {
  const first = (await readFile(join(root, 'src', 'cli.ts'), 'utf8')).split('\n', 1)[0] ?? '';
  const m = /^#!\/usr\/bin\/env(?: -S)? node((?: --\S+)*)$/.exec(first);
  if (!m) throw new Error(`src/cli.ts does not start with a node shebang: ${first}`);
  return (m[1] ?? '').split(' ').filter(Boolean);
}

t.test('the bin runs as its shebang says (env -S passes node its flags)', async (t) => {
  const cli = join(root, 'dist', 'cli.js');
  await chmod(cli, 0o755); // as npm makes a bin executable when it installs it
  const out = await new Promise<string>((resolve, reject) =>
    execFile(cli, ['--version'], { timeout: 10_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message} ${stderr}`)) : resolve(stdout))),
  );
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string };
  t.equal(out.trim(), pkg.version);
  t.ok((await shebangFlags()).length > 0, 'with flags: a plain `#!/usr/bin/env node` would not exercise env -S');
});

const cmd = jsonArgs('CMD');
const healthcheck = all('HEALTHCHECK').at(-1)?.args ?? '';
const probeUrl = /https?:\/\/[^'"\s)]+/.exec(healthcheck)?.[0] ?? '';

t.test('static: the HEALTHCHECK probes /healthz on the admin port the image listens on', async (t) => {
  t.ok(healthcheck !== '', 'has a HEALTHCHECK');
  const u = new URL(probeUrl);
  t.equal(u.pathname, DEFAULTS.livenessPath, 'the liveness path');
  t.equal(u.hostname, '127.0.0.1', 'from inside the container, over loopback (the admin default host)');
  t.equal(Number(u.port), Number(flag(cmd, '--admin-port') ?? DEFAULTS.adminPort), "the CMD's admin port");
  t.equal(DEFAULTS.adminPort, Number(u.port), "and the CLI's default, for a `docker run ... serve` that overrides CMD (README)");
  const exposed = all('EXPOSE').flatMap((i) => i.args.split(/\s+/)).map(Number);
  t.ok(exposed.includes(Number(u.port)), 'the admin port is exposed');
  t.ok(exposed.includes(Number(flag(cmd, '--port') ?? DEFAULTS.port)), 'the proxy port is exposed');
});

/** Runs the HEALTHCHECK's command with its port replaced; resolves with the exit code. */
function runProbe(port: number): Promise<number | null> {
  const script = /node -e "(.*)"\s*$/.exec(healthcheck)?.[1];
  if (script === undefined) throw new Error(`HEALTHCHECK is not \`node -e "..."\`: ${healthcheck}`);
  const local = script.replace(probeUrl, probeUrl.replace(/:\d+\//, `:${port}/`));
  return new Promise((resolve) => {
    const child = execFile(process.execPath, ['-e', local], { timeout: 5000 });
    child.on('exit', (code) => resolve(code));
  });
}

/** The repo's routes/ and flags/ in a temp dir, standing for /app/routes and /app/flags. */
async function appDir(t: Test): Promise<string> {
  const app = await tempDir(t, 'cutover-docker-');
  await cp(join(root, 'routes'), join(app, 'routes'), { recursive: true });
  await cp(join(root, 'flags'), join(app, 'flags'), { recursive: true });
  return app;
}

const onFreePorts = (args: string[], app: string) => {
  const out = args.map((a) => a.replace(/^\/app\//, `${app}/`));
  for (const f of ['--port', '--admin-port']) {
    const i = out.indexOf(f);
    if (i === -1) out.push(f, '0');
    else out[i + 1] = '0';
  }
  return [...out, '--drain-delay', '0'];
};

// Both processes start together: startup dominates this file's time.
t.test("the image's command, and README's docker run, start from dist/ and pass the HEALTHCHECK", async (t) => {
  const readme = await readFile(join(root, 'README.md'), 'utf8');
  const readmeRun = /docker run[^\n]*\\\n[^\n]*\\\n\s*cutover (serve[^\n]*)/.exec(readme)?.[1];
  t.ok(readmeRun, "README's docker run command found");
  const [image, documented] = await Promise.all([
    appDir(t).then((app) => spawnCutover(t, onFreePorts(cmd, app), {}, jsonArgs('ENTRYPOINT').slice(1, -1))),
    // README's run puts the admin listener on 0.0.0.0, so it needs the token; the probe must not.
    appDir(t).then((app) => spawnCutover(t, onFreePorts(readmeRun?.trim().split(/\s+/) ?? [], app), { [ENV.adminToken]: 'change-me' })),
  ]);
  const portOf = (url: string) => Number(new URL(url).port);
  t.equal(await runProbe(portOf(image.admin)), 0, "the image's command: healthy while it runs");
  t.equal((await fetch(`${documented.admin}/api/v1/status`)).status, 401, "README's run: the admin API wants the token");
  t.equal(await runProbe(portOf(documented.admin)), 0, "README's run: the probe passes without it");
  image.child.kill('SIGKILL');
  await image.exited;
  t.equal(await runProbe(portOf(image.admin)), 1, 'unhealthy once the process is gone');
});
