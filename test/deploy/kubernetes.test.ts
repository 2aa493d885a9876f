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

/** The README section, from its heading to the next "## ". */
async function readmeSection(title: string): Promise<string> {
  const text = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  const start = text.indexOf(`\n## ${title}\n`);
  if (start < 0) throw new Error(`README has no "## ${title}"`);
  const end = text.indexOf('\n## ', start + 1);
  return text.slice(start, end < 0 ? undefined : end);
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
  t.ok(delayMs >= c.readinessProbe.failureThreshold * c.readinessProbe.periodSeconds * 1000, 'the drain delay outlasts the readiness failures that mark the pod unready');
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

t.test('probes tolerate a saturated event loop: one slow probe keeps the endpoint, saturation does not restart', async (t) => {
  const deploy = (await manifests()).find((m) => m.kind === 'Deployment')!;
  const c = deploy.spec.template.spec.containers[0];
  // The admin listener shares the proxy's event loop; a saturated proxy leaves new connections in
  // the accept queue for up to seconds (README "Operations"). Kubernetes' default timeout is 1 s.
  t.ok(c.readinessProbe.timeoutSeconds >= 3, `readiness timeoutSeconds ${c.readinessProbe.timeoutSeconds} >= 3`);
  t.ok(c.readinessProbe.failureThreshold >= 2, 'readiness: one failed probe does not remove the only endpoint');
  t.ok(c.livenessProbe.timeoutSeconds >= 5, `liveness timeoutSeconds ${c.livenessProbe.timeoutSeconds} >= 5`);
  const livenessS = c.livenessProbe.periodSeconds * c.livenessProbe.failureThreshold;
  t.ok(livenessS >= 60, `liveness restarts after ${livenessS} s of failures, not ~30 s of saturation`);
});

t.test('README "Deploy on Kubernetes" says what the manifests do', async (t) => {
  const all = await manifests();
  const deploy = all.find((m) => m.kind === 'Deployment')!;
  const pod = deploy.spec.template.spec;
  const c = pod.containers[0];
  const section = await readmeSection('Deploy on Kubernetes');
  const probe = (kind: string, path: string) => {
    const m = new RegExp(`${kind} \`${path}\` every (\\d+) s with \`timeoutSeconds: (\\d+)\`, \`failureThreshold: (\\d+)\``).exec(section.replace(/\s+/g, ' '));
    return m ? m.slice(1).map(Number) : undefined;
  };
  t.same(probe('readiness', '/readyz'), [c.readinessProbe.periodSeconds, c.readinessProbe.timeoutSeconds, c.readinessProbe.failureThreshold], 'readiness as in the manifest');
  t.same(probe('liveness', '/healthz'), [c.livenessProbe.periodSeconds, c.livenessProbe.timeoutSeconds, c.livenessProbe.failureThreshold], 'liveness as in the manifest');
  t.match(section, `\`terminationGracePeriodSeconds: ${pod.terminationGracePeriodSeconds}\``);

  // Recreate is there because of the ReadWriteOnce flags volume; with one replica that is downtime.
  const pvc = all.find((m) => m.kind === 'PersistentVolumeClaim' && m.metadata.name === pod.volumes.find((v: Obj) => v.name === 'flags')?.persistentVolumeClaim?.claimName);
  t.same(pvc?.spec.accessModes, ['ReadWriteOnce'], 'flags on a ReadWriteOnce volume');
  t.equal(deploy.spec.strategy.type, 'Recreate', 'so the old pod lets go of it first');
  t.equal(deploy.spec.replicas, 1);
  t.match(section, `\`replicas: ${deploy.spec.replicas}\` with \`strategy: ${deploy.spec.strategy.type}\``);
  t.match(section, /downtime on every rollout/, 'the README says one replica in file mode means downtime');

  // The fleet snippet: at least 2 replicas, a rolling update that never drops below the count,
  // and a PodDisruptionBudget that selects these pods.
  const block = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
  t.ok(block, 'a fleet snippet');
  const docs = parseAllDocuments(block ?? '').map((d) => d.toJS() as Obj);
  const fleet = docs.find((d) => d.kind === 'Deployment');
  const pdb = docs.find((d) => d.kind === 'PodDisruptionBudget');
  t.equal(fleet?.metadata.name, deploy.metadata.name, 'patches this Deployment');
  t.ok(fleet?.spec.replicas >= 2, 'at least two replicas');
  t.same(fleet?.spec.strategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
  t.equal(pdb?.apiVersion, 'policy/v1');
  t.same(pdb?.spec.selector.matchLabels, deploy.spec.selector.matchLabels, 'the budget selects the pods');
  t.ok(pdb?.spec.minAvailable >= 1 && pdb?.spec.minAvailable < fleet?.spec.replicas, 'the budget leaves room to evict one pod');
});
