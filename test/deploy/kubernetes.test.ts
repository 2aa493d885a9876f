import t from 'tap';
import { readFile, readdir } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import { DEFAULTS, ENV } from '../../src/defaults.js';
import { parseDuration } from '../../src/util/duration.js';
import { parseConfigSources } from '../../src/config/load.js';

const dir = new URL('../../deploy/kubernetes/', import.meta.url);

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- parsed YAML

async function manifests(): Promise<Obj[]> {
  const out: Obj[] = [];
  for (const f of (await readdir(dir)).filter((n) => n.endsWith('.yaml'))) {
    for (const doc of parseAllDocuments(await readFile(new URL(f, dir), 'utf8'))) {
      t.equal(doc.errors.length, 0, `${f} parses`);
      out.push(doc.toJS() as Obj);
    }
  }
  return out;
}

const argValue = (args: string[], name: string) => args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];

t.test('the Deployment agrees with the code: ports, probes, env, drain, non-root', async (t) => {
  const all = await manifests();
  const deploy = all.find((m) => m.kind === 'Deployment');
  t.ok(deploy, 'has a Deployment');
  const pod = deploy!.spec.template.spec;
  const c = pod.containers[0];
  const args: string[] = c.args;
  t.equal(args[0], 'serve');
  const port = Number(argValue(args, 'port') ?? DEFAULTS.port);
  const adminPort = Number(argValue(args, 'admin-port') ?? DEFAULTS.adminPort);
  const ports = Object.fromEntries(c.ports.map((p: Obj) => [p.name, p.containerPort]));
  t.same(ports, { http: port, admin: adminPort }, 'container ports are the ports cutover listens on');
  const portOf = (p: number | string) => (typeof p === 'string' ? ports[p] : p);
  t.equal(c.readinessProbe.httpGet.path, DEFAULTS.readinessPath);
  t.equal(portOf(c.readinessProbe.httpGet.port), adminPort, 'readiness on the admin listener');
  t.equal(c.livenessProbe.httpGet.path, DEFAULTS.livenessPath);
  t.equal(portOf(c.livenessProbe.httpGet.port), adminPort);
  const drainMs = parseDuration(argValue(args, 'drain-timeout') ?? `${DEFAULTS.drainTimeoutMs}ms`)!;
  const delayMs = parseDuration(argValue(args, 'drain-delay') ?? `${DEFAULTS.drainDelayMs}ms`)!;
  // cutover's own --drain-delay keeps serving (with /readyz red) while endpoints drop the pod;
  // a preStop sleep on top would only stretch every rollout.
  t.notOk(c.lifecycle?.preStop, 'no preStop pause: --drain-delay does that job');
  t.ok(delayMs >= 2 * c.readinessProbe.periodSeconds * 1000, 'the drain delay outlasts two readiness probes');
  t.ok(pod.terminationGracePeriodSeconds * 1000 > delayMs + drainMs, 'grace period outlasts drain delay + drain timeout');
  const envNames: string[] = c.env.map((e: Obj) => e.name);
  const known = new Set<string>(Object.values(ENV));
  for (const n of envNames) t.ok(known.has(n), `env ${n} is one cutover reads`);
  if (argValue(args, 'admin-host') && argValue(args, 'admin-host') !== '127.0.0.1') {
    t.ok(envNames.includes(ENV.adminToken), 'admin beyond loopback comes with a token (cutover refuses otherwise)');
  }
  t.equal(pod.securityContext.runAsNonRoot, true);
  t.equal(c.securityContext.allowPrivilegeEscalation, false);
  t.ok(c.resources.requests.cpu && c.resources.limits.memory, 'resources set');
  const mounts = Object.fromEntries(c.volumeMounts.map((m: Obj) => [m.mountPath, m.name]));
  t.equal(mounts[argValue(args, 'routes')!], 'routes', '--routes is the mounted ConfigMap');
  t.equal(mounts[argValue(args, 'flags')!], 'flags', '--flags is the mounted volume');
});

t.test('Services, ServiceMonitor and the ConfigMap', async (t) => {
  const all = await manifests();
  const deploy = all.find((m) => m.kind === 'Deployment')!;
  const labels = deploy.spec.template.metadata.labels;
  const services = all.filter((m) => m.kind === 'Service');
  for (const s of services) t.match(labels, s.spec.selector, `${s.metadata.name} selects the pods`);
  const portNames = new Set(deploy.spec.template.spec.containers[0].ports.map((p: Obj) => p.name));
  for (const s of services) for (const p of s.spec.ports) t.ok(portNames.has(p.targetPort), `${s.metadata.name} targets port ${p.targetPort}`);
  const sm = all.find((m) => m.kind === 'ServiceMonitor')!;
  t.equal(sm.spec.endpoints[0].path, DEFAULTS.metricsPath);
  t.ok(services.some((s) => Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => s.metadata.labels[k] === v) && s.spec.ports.some((p: Obj) => p.name === sm.spec.endpoints[0].port)), 'ServiceMonitor finds the admin service port');
  const cm = all.find((m) => m.kind === 'ConfigMap')!;
  const cfg = parseConfigSources(Object.entries(cm.data as Record<string, string>).map(([file, text]) => ({ file, text })));
  t.ok(cfg.routes.length > 0, 'the ConfigMap holds a valid routes config');
});
