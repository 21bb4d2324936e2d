// deploy/ci/render.mjs DIR - render a kustomization the way `kustomize
// build DIR` does, for the subset of Kustomize that deploy/k8s uses, and
// print the resources as one YAML stream.
//
// Why: deploy/check.sh must render deploy/k8s on a plain Debian 12 machine,
// and Debian 12 has no kustomize (its kubernetes-client is kubectl 1.20,
// whose built-in kustomize v2.0.3 predates the `patches` field). Where a
// real kustomize is found (`kustomize`, or `kubectl kustomize` of v4 or
// later) check.sh renders with both and requires the same resources, so
// this renderer is held to kustomize's behaviour wherever one is at hand.
//
// Supported, and nothing else (anything else is an error, never ignored):
//   apiVersion, kind        kustomize.config.k8s.io/v1beta1 Kustomization
//   resources               YAML files, or directories with a kustomization
//   namespace               set on every namespaced resource
//   images                  name -> newName / newTag / digest in containers
//   patches                 JSON 6902 patches (path or inline patch) with a
//                           target (kind, name, group, version)
// Transformers run in kustomize's order: patches, namespace, images.
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";

const CLUSTER_SCOPED = new Set([
  "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
  "PersistentVolume", "StorageClass", "IngressClass", "PriorityClass",
  "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
  "APIService", "RuntimeClass", "ClusterIssuer", "ClusterTriggerAuthentication",
]);
const FIELDS = new Set(["apiVersion", "kind", "namespace", "resources", "images", "patches"]);

function fail(msg) {
  throw new Error(msg);
}

function readYamlDocs(file) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
  const out = [];
  for (const d of docs) {
    if (d.errors.length) fail(`${file}: ${d.errors[0].message}`);
    const v = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

function kustomizationFile(dir) {
  for (const n of ["kustomization.yaml", "kustomization.yml", "Kustomization"]) {
    const p = path.join(dir, n);
    if (fs.existsSync(p)) return p;
  }
  fail(`${dir}: no kustomization.yaml`);
}

// ---- JSON 6902 (RFC 6902) on plain objects
function pointer(p) {
  if (p === "") return [];
  if (!p.startsWith("/")) fail(`JSON pointer ${p} does not start with /`);
  return p.slice(1).split("/").map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function parentOf(doc, parts, op) {
  let cur = doc;
  for (const k of parts.slice(0, -1)) {
    if (cur === null || typeof cur !== "object" || !(k in cur))
      fail(`patch ${op.op} ${op.path}: ${k} does not exist`);
    cur = cur[k];
  }
  return cur;
}

function applyOp(doc, op) {
  const parts = pointer(op.path);
  if (!parts.length) fail(`patch ${op.op}: the whole document cannot be a target`);
  const parent = parentOf(doc, parts, op);
  const key = parts[parts.length - 1];
  const isArr = Array.isArray(parent);
  const index = (allowEnd) => {
    if (key === "-" && allowEnd) return parent.length;
    const i = Number(key);
    if (!/^(0|[1-9][0-9]*)$/.test(key) || i >= parent.length + (allowEnd ? 1 : 0))
      fail(`patch ${op.op} ${op.path}: bad array index ${key}`);
    return i;
  };
  switch (op.op) {
    case "add":
      if (isArr) parent.splice(index(true), 0, structuredClone(op.value));
      else parent[key] = structuredClone(op.value);
      break;
    case "remove":
      if (isArr) parent.splice(index(false), 1);
      else if (key in parent) delete parent[key];
      else fail(`patch remove ${op.path}: it does not exist`);
      break;
    case "replace":
      if (isArr) parent[index(false)] = structuredClone(op.value);
      else if (key in parent) parent[key] = structuredClone(op.value);
      else fail(`patch replace ${op.path}: it does not exist`);
      break;
    case "test": {
      const v = isArr ? parent[index(false)] : parent[key];
      if (JSON.stringify(v) !== JSON.stringify(op.value)) fail(`patch test ${op.path} failed`);
      break;
    }
    default:
      fail(`patch op ${op.op} is not supported by render.mjs (add, remove, replace, test)`);
  }
}

function matches(res, t) {
  const [group, version] = res.apiVersion.includes("/") ? res.apiVersion.split("/") : ["", res.apiVersion];
  for (const k of Object.keys(t))
    if (!["kind", "name", "group", "version"].includes(k))
      fail(`patch target field ${k} is not supported by render.mjs`);
  return (t.kind === undefined || t.kind === res.kind) &&
    (t.name === undefined || t.name === res.metadata?.name) &&
    (t.group === undefined || t.group === group) &&
    (t.version === undefined || t.version === version);
}

// ---- images
function splitImage(ref) {
  let name = ref, tag = "", digest = "";
  const at = name.indexOf("@");
  if (at >= 0) { digest = name.slice(at + 1); name = name.slice(0, at); }
  const colon = name.lastIndexOf(":");
  if (colon > name.lastIndexOf("/")) { tag = name.slice(colon + 1); name = name.slice(0, colon); }
  return { name, tag, digest };
}

function setImages(node, images) {
  if (Array.isArray(node)) { node.forEach((n) => setImages(n, images)); return; }
  if (node === null || typeof node !== "object") return;
  for (const [k, v] of Object.entries(node)) {
    if ((k === "containers" || k === "initContainers") && Array.isArray(v)) {
      for (const c of v) {
        if (typeof c?.image !== "string") continue;
        const cur = splitImage(c.image);
        const img = images.find((i) => i.name === cur.name);
        if (!img) continue;
        let ref = img.newName ?? cur.name;
        if (img.digest) ref += "@" + img.digest;
        else if (img.newTag) ref += ":" + img.newTag;
        else if (cur.digest) ref += "@" + cur.digest;
        else if (cur.tag) ref += ":" + cur.tag;
        c.image = ref;
      }
    }
    setImages(v, images);
  }
}

// ---- build
export function build(dir) {
  const kfile = kustomizationFile(dir);
  const [k] = readYamlDocs(kfile);
  for (const f of Object.keys(k))
    if (!FIELDS.has(f)) fail(`${kfile}: field ${f} is not supported by render.mjs (${[...FIELDS].join(", ")})`);
  if (k.apiVersion !== "kustomize.config.k8s.io/v1beta1" || k.kind !== "Kustomization")
    fail(`${kfile}: not a kustomize.config.k8s.io/v1beta1 Kustomization`);
  let res = [];
  for (const r of k.resources ?? []) {
    const p = path.join(dir, r);
    if (!fs.existsSync(p)) fail(`${kfile}: resource ${r} does not exist`);
    res = res.concat(fs.statSync(p).isDirectory() ? build(p) : readYamlDocs(p));
  }
  for (const r of res)
    if (!r.apiVersion || !r.kind || !r.metadata?.name) fail(`${kfile}: a resource lacks apiVersion, kind or metadata.name`);
  for (const p of k.patches ?? []) {
    if (!p.target) fail(`${kfile}: a patch without a target (render.mjs supports JSON 6902 patches only)`);
    const ops = p.path ? readYamlDocs(path.join(dir, p.path))[0] : YAML.parse(p.patch);
    if (!Array.isArray(ops)) fail(`${kfile}: patch ${p.path ?? "(inline)"} is not a JSON 6902 list (strategic merge is not supported by render.mjs)`);
    const hit = res.filter((r) => matches(r, p.target));
    if (!hit.length) fail(`${kfile}: patch target ${JSON.stringify(p.target)} matches no resource`);
    for (const r of hit) for (const op of ops) applyOp(r, op);
  }
  if (k.namespace) {
    for (const r of res) {
      if (r.kind === "Namespace") {
        if (r.metadata.name !== k.namespace)
          fail(`${kfile}: Namespace ${r.metadata.name} differs from namespace: ${k.namespace} (render.mjs does not rename it)`);
      } else if (!CLUSTER_SCOPED.has(r.kind)) {
        r.metadata.namespace = k.namespace;
      }
    }
  }
  if (k.images) setImages(res, k.images);
  return res;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv.length !== 3) {
    console.error("usage: node render.mjs KUSTOMIZATION_DIR");
    process.exit(2);
  }
  try {
    const out = build(process.argv[2]);
    process.stdout.write(out.map((r) => YAML.stringify(r)).join("---\n"));
  } catch (e) {
    console.error(`render.mjs: ${e.message}`);
    process.exit(1);
  }
}
