// deploy/ci/validate.mjs - validate rendered Kubernetes manifests (one YAML
// stream) for deploy/check.sh.
//
//   node validate.mjs --variant gpu|cpu --options "OPT..." --metrics "NAME..."
//                     RENDERED.yaml [--same-as OTHER.yaml]
//
// 1. Schemas: every resource against the Kubernetes OpenAPI schemas as the
//    npm package kubernetes-models compiles them (ajv; Kubernetes 1.3x
//    core, apps, networking, policy), and the KEDA ScaledObject against
//    @kubernetes-models/keda: types, formats, enums, required fields.
// 2. Unknown fields: those compiled validators ignore properties they do
//    not know, which the API server refuses (kubectl apply validates
//    strictly). Each resource is validated through a Proxy that records
//    every property the validator reads; a property it never read is not
//    in the schema, and is an error (like kubeconform -strict).
// 3. demixd's own rules: the probes on /v1/health/live and
//    /v1/health/ready on the container's named port; the grace period
//    covers --drain-seconds plus the preStop pause; one GPU per pod (gpu)
//    or none (cpu, with --threads equal to the CPU limit and a -cpu image);
//    every demixd option the args use is one demixd has (--options); the
//    autoscaler's query uses only metrics demixd exports (--metrics) and
//    targets the Deployment; Service, Ingress and PodDisruptionBudget
//    select the Deployment's pods and name ports that exist; the Ingress
//    keeps WebSockets open (read/send timeouts >= 600 s).
// 4. --same-as: OTHER (kustomize's own rendering) holds the same resources,
//    field for field.
//
// Prints one line per resource and a summary; exit 0 when all is well,
// 1 otherwise.
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import YAML from "yaml";

const require = createRequire(import.meta.url);

// apiVersion/kind -> the compiled schema module (package, file).
const SCHEMAS = {
  "v1/Namespace": ["kubernetes-models", "IoK8sApiCoreV1Namespace"],
  "v1/Service": ["kubernetes-models", "IoK8sApiCoreV1Service"],
  "apps/v1/Deployment": ["kubernetes-models", "IoK8sApiAppsV1Deployment"],
  "networking.k8s.io/v1/Ingress": ["kubernetes-models", "IoK8sApiNetworkingV1Ingress"],
  "policy/v1/PodDisruptionBudget": ["kubernetes-models", "IoK8sApiPolicyV1PodDisruptionBudget"],
  "keda.sh/v1alpha1/ScaledObject": ["@kubernetes-models/keda", "KedaShV1alpha1ScaledObject"],
};

const errors = [];
const err = (where, msg) => errors.push(`${where}: ${msg}`);

function args() {
  const a = { variant: "", options: [], metrics: [], file: "", sameAs: "" };
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i++) {
    if (v[i] === "--variant") a.variant = v[++i];
    else if (v[i] === "--options") a.options = v[++i].split(/\s+/).filter(Boolean);
    else if (v[i] === "--metrics") a.metrics = v[++i].split(/\s+/).filter(Boolean);
    else if (v[i] === "--same-as") a.sameAs = v[++i];
    else if (!a.file) a.file = v[i];
    else throw new Error(`unexpected argument ${v[i]}`);
  }
  if (!["gpu", "cpu"].includes(a.variant) || !a.file || !a.options.length || !a.metrics.length)
    throw new Error("usage: validate.mjs --variant gpu|cpu --options OPTS --metrics NAMES FILE [--same-as FILE]");
  return a;
}

function load(file) {
  const out = [];
  for (const d of YAML.parseAllDocuments(fs.readFileSync(file, "utf8"))) {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
    const v = d.toJS();
    if (v) out.push(v);
  }
  return out;
}

const id = (r) => `${r.kind}/${r.metadata?.name}`;

async function schemaCheck(r) {
  const s = SCHEMAS[`${r.apiVersion}/${r.kind}`];
  if (!s) return err(id(r), `no schema known for ${r.apiVersion} ${r.kind} (add it to SCHEMAS)`);
  const pkgDir = path.dirname(require.resolve(`${s[0]}/package.json`));
  const mod = await import(pathToFileURL(path.join(pkgDir, "_schemas", `${s[1]}.mjs`)).href);
  const seen = new Set();
  const wrap = (o, p) => o === null || typeof o !== "object" ? o : new Proxy(o, {
    get(t, k) {
      if (typeof k === "string") seen.add(`${p}/${k}`);
      return wrap(t[k], `${p}/${k}`);
    },
  });
  if (!mod.validate(wrap(r, ""))) {
    for (const e of mod.validate.errors)
      err(id(r), `schema: ${e.instancePath || "/"} ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`);
  }
  const walk = (o, p) => {
    if (o === null || typeof o !== "object") return;
    for (const k of Object.keys(o)) {
      const q = `${p}/${k}`;
      if (!seen.has(q)) err(id(r), `unknown field ${q}`);
      else walk(o[k], q);
    }
  };
  walk(r, "");
}

function flagValue(argv, flag) {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
}

function demixdRules(all, a) {
  const by = (kind) => all.filter((r) => r.kind === kind);
  const [dep] = by("Deployment");
  if (!dep || by("Deployment").length !== 1) return err("Deployment", "exactly one Deployment expected");
  const podLabels = dep.spec.template.metadata?.labels ?? {};
  const selects = (sel) => sel && Object.keys(sel).length > 0 &&
    Object.entries(sel).every(([k, v]) => podLabels[k] === v);
  if (!selects(dep.spec.selector?.matchLabels)) err(id(dep), "selector does not match the pod labels");
  const pod = dep.spec.template.spec;
  const c = pod.containers.find((x) => x.name === "demixd");
  if (!c) return err(id(dep), "no container named demixd");
  const ports = Object.fromEntries((c.ports ?? []).map((p) => [p.name, p.containerPort]));
  if (ports.http !== 8080) err(id(dep), "container port http must be 8080 (the image's --port)");
  const probe = (name, want) => {
    const p = c[name];
    if (!p?.httpGet) return err(id(dep), `${name}: an httpGet probe is required`);
    if (p.httpGet.path !== want) err(id(dep), `${name}: path ${p.httpGet.path}, want ${want}`);
    if (!(p.httpGet.port in ports) && !Object.values(ports).includes(p.httpGet.port))
      err(id(dep), `${name}: port ${p.httpGet.port} is not a container port`);
  };
  probe("livenessProbe", "/v1/health/live");
  probe("readinessProbe", "/v1/health/ready");
  probe("startupProbe", "/v1/health/live");
  const argv = (c.args ?? []).map(String);
  for (const x of argv)
    if (x.startsWith("-") && !a.options.includes(x.split("=")[0]))
      err(id(dep), `args: demixd has no option ${x}`);
  const drain = Number(flagValue(argv, "--drain-seconds"));
  if (!Number.isFinite(drain)) err(id(dep), "args: --drain-seconds N is required (the SIGTERM drain)");
  const pre = c.lifecycle?.preStop?.exec?.command;
  const preS = pre && pre[0] === "sleep" ? Number(pre[1]) : 0;
  const grace = pod.terminationGracePeriodSeconds ?? 30;
  if (grace < drain + preS + 5)
    err(id(dep), `terminationGracePeriodSeconds ${grace} < drain ${drain} + preStop ${preS} + 5`);
  const limits = c.resources?.limits ?? {};
  if (a.variant === "gpu") {
    if (Number(limits["nvidia.com/gpu"]) !== 1) err(id(dep), "gpu: limits nvidia.com/gpu must be 1 (one process per GPU)");
  } else {
    if (JSON.stringify(dep).includes("nvidia.com/gpu")) err(id(dep), "cpu: mentions nvidia.com/gpu");
    if (limits.cpu === undefined || String(flagValue(argv, "--threads")) !== String(limits.cpu))
      err(id(dep), `cpu: --threads ${flagValue(argv, "--threads")} differs from the CPU limit ${limits.cpu}`);
    if (!/-cpu$|:cpu$/.test(c.image)) err(id(dep), `cpu: image ${c.image} is not a -cpu tag`);
  }
  if (c.securityContext?.allowPrivilegeEscalation !== false) err(id(dep), "allowPrivilegeEscalation must be false");
  if (pod.securityContext?.runAsNonRoot !== true) err(id(dep), "runAsNonRoot must be true");

  for (const s of by("Service")) {
    if (!selects(s.spec.selector)) err(id(s), "selector does not match the Deployment's pods");
    for (const p of s.spec.ports)
      if (typeof p.targetPort === "string" && !(p.targetPort in ports))
        err(id(s), `targetPort ${p.targetPort} is not a container port`);
  }
  for (const p of by("PodDisruptionBudget"))
    if (!selects(p.spec.selector?.matchLabels)) err(id(p), "selector does not match the Deployment's pods");
  for (const ing of by("Ingress")) {
    const an = ing.metadata.annotations ?? {};
    for (const k of ["proxy-read-timeout", "proxy-send-timeout"])
      if (!(Number(an[`nginx.ingress.kubernetes.io/${k}`]) >= 600))
        err(id(ing), `annotation nginx.ingress.kubernetes.io/${k} must be >= 600 (WebSockets)`);
    for (const rule of ing.spec.rules ?? [])
      for (const p of rule.http?.paths ?? []) {
        const svc = by("Service").find((s) => s.metadata.name === p.backend.service?.name);
        if (!svc) err(id(ing), `backend service ${p.backend.service?.name} is not defined`);
        else if (!svc.spec.ports.some((sp) => sp.name === p.backend.service.port.name || sp.port === p.backend.service.port.number))
          err(id(ing), "backend port is not a port of the Service");
      }
  }
  for (const so of by("ScaledObject")) {
    if (so.spec.scaleTargetRef.name !== dep.metadata.name) err(id(so), "scaleTargetRef is not the Deployment");
    for (const t of so.spec.triggers) {
      const names = (t.metadata?.query ?? "").match(/\bdemixd_[a-z_]+/g) ?? [];
      if (!names.length) err(id(so), "the query uses no demixd metric");
      for (const n of names) if (!a.metrics.includes(n)) err(id(so), `query: demixd exports no metric ${n}`);
      const ns = (t.metadata?.query ?? "").match(/namespace="([^"]*)"/g) ?? [];
      for (const m of ns)
        if (m !== `namespace="${dep.metadata.namespace}"`) err(id(so), `query: ${m} is not the Deployment's namespace`);
    }
  }
}

function sameAs(mine, theirs) {
  const key = (r) => `${r.kind}/${r.metadata.namespace ?? ""}/${r.metadata.name}`;
  const canon = (v) => Array.isArray(v) ? v.map(canon)
    : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])])) : v;
  const m = new Map(mine.map((r) => [key(r), JSON.stringify(canon(r))]));
  const t = new Map(theirs.map((r) => [key(r), JSON.stringify(canon(r))]));
  for (const k of new Set([...m.keys(), ...t.keys()])) {
    if (!m.has(k)) err(k, "in kustomize's rendering only");
    else if (!t.has(k)) err(k, "in render.mjs's rendering only");
    else if (m.get(k) !== t.get(k)) err(k, `render.mjs and kustomize differ:\n  ${m.get(k)}\n  ${t.get(k)}`);
  }
}

try {
  const a = args();
  const all = load(a.file);
  if (!all.length) err(a.file, "no resources");
  for (const r of all) {
    await schemaCheck(r);
    console.log(`  ${r.apiVersion} ${r.kind} ${r.metadata?.namespace ?? "-"}/${r.metadata?.name}`);
  }
  demixdRules(all, a);
  if (a.sameAs) sameAs(all, load(a.sameAs));
  for (const e of errors) console.error(`validate.mjs: ${e}`);
  console.log(`validate.mjs: ${a.file} (${a.variant}): ${all.length} resources, ${errors.length} errors` +
    (a.sameAs ? ", same as kustomize's" : ""));
  process.exit(errors.length ? 1 : 0);
} catch (e) {
  console.error(`validate.mjs: ${e.message}`);
  process.exit(1);
}
