// deploy/ci/context.mjs ROOT OUT - copy the Docker build context of ROOT
// into OUT as `docker build ROOT` would send it: ROOT's files less those
// its .dockerignore excludes. deploy/check.sh then configures the copy the
// way deploy/Dockerfile's build stages do, so a .dockerignore that leaves
// out something the build needs fails here, without a container engine.
//
// .dockerignore rules (Docker's, as implemented by moby's patternmatcher):
// one pattern a line, `#` comments, paths relative to the context root
// (a leading / is dropped), `*` and `?` within one path segment, `**` any
// number of segments, `!` re-includes; the last matching line decides, and
// a pattern that matches a directory excludes everything in it.
import fs from "node:fs";
import path from "node:path";

function toRegex(pattern) {
  let re = "";
  const segs = pattern.split("/");
  segs.forEach((seg, i) => {
    const last = i === segs.length - 1;
    if (seg === "**") {
      re += last ? ".*" : "(?:.*/)?";
      return;
    }
    for (let j = 0; j < seg.length; j++) {
      const ch = seg[j];
      if (ch === "*") re += "[^/]*";
      else if (ch === "?") re += "[^/]";
      else if (ch === "[") {
        const end = seg.indexOf("]", j);
        if (end < 0) throw new Error(`bad pattern ${pattern}`);
        re += seg.slice(j, end + 1).replace(/^\[!/, "[^");
        j = end;
      } else re += ch.replace(/[.+^${}()|\\]/g, "\\$&");
    }
    if (!last) re += "/";
  });
  return new RegExp(`^${re}$`);
}

function rules(root) {
  const f = path.join(root, ".dockerignore");
  if (!fs.existsSync(f)) return [];
  return fs.readFileSync(f, "utf8").split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const neg = l.startsWith("!");
      let p = path.posix.normalize((neg ? l.slice(1) : l).trim()).replace(/^\/+/, "").replace(/\/+$/, "");
      return { neg, re: toRegex(p) };
    });
}

function excluded(rel, rs) {
  // The file or any of its parent directories.
  const parts = rel.split("/");
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join("/"));
  let ex = false;
  for (const r of rs) if (prefixes.some((p) => r.re.test(p))) ex = !r.neg;
  return ex;
}

const [root, out] = process.argv.slice(2);
if (!root || !out) {
  console.error("usage: node context.mjs ROOT OUT");
  process.exit(2);
}
const rs = rules(root);
let files = 0, skipped = 0;
const walk = (dir) => {
  for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory()) {
      // A directory still has to be walked when a later ! may re-include.
      if (excluded(rel, rs) && !rs.some((r) => r.neg)) { skipped++; continue; }
      walk(rel);
    } else if (excluded(rel, rs)) {
      skipped++;
    } else {
      fs.mkdirSync(path.join(out, dir), { recursive: true });
      fs.cpSync(path.join(root, rel), path.join(out, rel), { verbatimSymlinks: true });
      files++;
    }
  }
};
walk("");
console.log(`context.mjs: ${files} files in the context, ${skipped} files or directories excluded`);
