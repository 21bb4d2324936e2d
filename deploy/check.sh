#!/usr/bin/env bash
# deploy/check.sh [STEP...] - the checks of deploy/ (and of the project's
# shell scripts) that CI runs: ctest's tests labelled `deploy`, one per
# step (tests/CMakeLists.txt), so scripts/test.sh and .ci/run run them.
# Without STEP, every step runs. Exit status: 0 passed, 1 failed, 77 the
# step cannot run on this machine (ctest reports it as skipped, with the
# reason printed; only `image` does that, where no container engine runs).
#
#   * shellcheck: every *.sh of the project (scripts/, bench/, train/,
#               deploy/, tests/): no finding at any severity
#   * systemd: systemd-analyze verify on demixd.service and demixd@.service
#               (ExecStart pointed at the built demixd, which must exist);
#               verify prints nothing for a clean unit, so any output fails;
#               systemd-analyze security --offline: exposure <= 3.0; the
#               stop timeout is the drain + 15 s; LimitNOFILE; every demixd
#               option the units and demixd.env use exists
#   * k8s: deploy/k8s/overlays/{gpu,cpu} rendered by deploy/ci/render.mjs
#               and, where one is installed, by kustomize itself (the two
#               must agree); validated by deploy/ci/validate.mjs against the
#               Kubernetes schemas (npm kubernetes-models), strictly (no
#               unknown fields), and demixd's own rules; a broken copy must
#               fail validation (the validator is not vacuous)
#   * dockerfile: deploy/Dockerfile linted by dockerfilelint (npm; hadolint is
#               not in Debian or npm); the runtime stages run as uid 10001,
#               have a HEALTHCHECK and only known demixd options; the build
#               context (.dockerignore, deploy/ci/context.mjs) configures
#               with the build stages' options; deploy/runtime-deps.sh finds
#               a package for every library the built binaries load
#   * install: cmake --install (DESTDIR) puts demixd, the model and the web
#               page where demixd looks by default (demixd --help)
#   * proxy: two demixd (CPU, tiny model) behind nginx with the files
#               deploy/multi-gpu.sh writes (least_conn) and
#               deploy/nginx/demixd.conf (TLS, self-signed here): two
#               WebSocket sessions over wss:// land on different processes,
#               stream and close cleanly; the probes answer through it
#   * image: docker build --target cpu and a run with its HEALTHCHECK,
#               where a container engine answers (`docker info`); else 77
#
# Environment: DEMIXD_BIN (default build/server/demixd), DEMIX_TEST_DATA
# (default tests/data), DEMIX_BUILD_DIR (default build).
# Options demixd does not have yet but the deploy files pass are listed in
# PENDING_OPTIONS below: they pass with a warning until demixd has them,
# and fail once it does (then remove them from the list).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${DEMIX_BUILD_DIR:-$root/build}
demixd=${DEMIXD_BIN:-$build/server/demixd}
test_data=${DEMIX_TEST_DATA:-$root/tests/data}

# None pending now (--drain-seconds and --device landed).
PENDING_OPTIONS=()

tmp=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

say() { printf 'check.sh: %s\n' "$*"; }
fail() {
  printf 'check.sh: FAIL: %s\n' "$*" >&2
  exit 1
}
need() {
  command -v "$1" >/dev/null 2>&1 ||
    fail "$1 is not installed (scripts/install-deps.sh installs ${2:-$1})"
}
need_demixd() {
  [ -x "$demixd" ] || fail "$demixd is not there: build first (scripts/build.sh), or set DEMIXD_BIN"
}

# The options demixd knows (from --help), plus the pending ones.
demixd_options() {
  need_demixd
  {
    "$demixd" --help 2>&1 | grep -oE -- '--[a-z][a-z0-9-]*' || true
    printf '%s\n' "${PENDING_OPTIONS[@]}"
  } | sort -u | tr '\n' ' '
}

# Every option of a command line (words starting with --) must be known.
check_options() {
  local where=$1 words=$2 known w
  known=" $(demixd_options) "
  for w in $words; do
    case "$w" in
    --*)
      w=${w%%=*}
      case "$known" in
      *" $w "*) ;;
      *) fail "$where: demixd has no option $w" ;;
      esac
      ;;
    esac
  done
}

pending_status() {
  local have o
  need_demixd
  have=" $("$demixd" --help 2>&1 | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u | tr '\n' ' ') "
  for o in "${PENDING_OPTIONS[@]}"; do
    case "$have" in
    *" $o "*) fail "demixd now has $o: remove it from PENDING_OPTIONS in deploy/check.sh" ;;
    *) say "WARNING: the deploy files pass $o, which this demixd does not have yet (issue 14)" ;;
    esac
  done
}

npm_deps() {
  need node nodejs
  need npm
  if [ ! -f "$here/ci/node_modules/kubernetes-models/package.json" ] ||
    [ ! -f "$here/ci/node_modules/dockerfilelint/package.json" ]; then
    say "installing deploy/ci's npm packages (npm ci)"
    (cd "$here/ci" && npm ci --no-audit --no-fund --loglevel=error) ||
      fail "npm ci in deploy/ci failed (is the npm registry reachable?)"
  fi
}

# ---------------------------------------------------------------- steps

step_shellcheck() {
  need shellcheck
  local files=()
  # the project's own scripts: tracked ones (git), else every *.sh outside
  # build and git-ignored folders (a tree without .git)
  if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
    mapfile -t files < <(cd "$root" && git ls-files '*.sh' | sort)
  else
    mapfile -t files < <(cd "$root" && find . \( -name 'build*' -o -name node_modules -o -name .git -o -name '.carry' -o -name '.debs' \) -prune -o \
      -name '*.sh' -type f -print | sort)
  fi
  [ ${#files[@]} -gt 0 ] || fail "no shell scripts found"
  (cd "$root" && shellcheck --severity=style "${files[@]}") || fail "shellcheck found problems (above)"
  say "shellcheck: ${#files[@]} scripts clean: ${files[*]}"
}

step_systemd() {
  need systemd-analyze systemd
  need_demixd
  local u out score drain stop nofile args
  for u in demixd.service demixd@.service; do
    sed "s|/usr/local/bin/demixd|$demixd|g" "$here/$u" >"$tmp/$u"
  done
  for u in demixd.service demixd@0.service; do
    # verify works without systemd as PID 1 (a container, a CI runner):
    # it loads the unit and its dependencies from the unit files only.
    if ! out=$(systemd-analyze verify "$tmp/$u" 2>&1) || [ -n "$out" ]; then
      printf '%s\n' "$out" >&2
      fail "systemd-analyze verify $u"
    fi
    out=$(systemd-analyze security --offline=yes "$tmp/${u/@0/@}" 2>&1 | tail -n 1) ||
      fail "systemd-analyze security $u: $out"
    score=$(printf '%s\n' "$out" | grep -oE 'level for [^:]*: [0-9.]+' | awk '{print $NF}')
    [ -n "$score" ] || fail "systemd-analyze security $u printed no exposure level: $out"
    awk -v s="$score" 'BEGIN { exit !(s <= 3.0) }' || fail "$u: exposure $score > 3.0"
    say "systemd: $u verified; exposure $score (systemd-analyze security)"
  done
  for u in demixd.service demixd@.service; do
    drain=$(grep -oE 'DEMIXD_DRAIN_SECONDS=[0-9]+' "$here/$u" | head -n 1 | cut -d= -f2)
    stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)$/\1/p' "$here/$u")
    nofile=$(sed -n 's/^LimitNOFILE=\([0-9]*\)$/\1/p' "$here/$u")
    if [ -z "$drain" ] || [ -z "$stop" ]; then
      fail "$u: no DEMIXD_DRAIN_SECONDS default or TimeoutStopSec"
    fi
    [ "$stop" -eq $((drain + 15)) ] || fail "$u: TimeoutStopSec=$stop is not the drain ($drain) + 15"
    [ "${nofile:-0}" -ge 16448 ] || fail "$u: LimitNOFILE=${nofile:-unset} < 16384 sessions + 64"
    grep -q '^NoNewPrivileges=yes$' "$here/$u" || fail "$u: NoNewPrivileges=yes missing"
    grep -q '^ProtectSystem=strict$' "$here/$u" || fail "$u: ProtectSystem=strict missing"
    grep -q '^User=demixd$' "$here/$u" || fail "$u: User=demixd missing"
    args=$(sed -n 's/^ExecStart=[^ ]*//p' "$here/$u")
    check_options "$u ExecStart" "$args"
  done
  grep -q "^DEMIXD_DRAIN_SECONDS=$drain\$" "$here/demixd.env" ||
    fail "demixd.env: DEMIXD_DRAIN_SECONDS is not the units' $drain"
  check_options "demixd.env DEMIXD_ARGS" "$(sed -n 's/^DEMIXD_ARGS=//p' "$here/demixd.env")"
  check_options "demixd.env examples" "$(sed -n 's/^#   \(--[a-z-]*\).*/\1/p' "$here/demixd.env")"
  pending_status
}

kustomize_render() {
  # A real kustomize, when there is one: kustomize, or kubectl's built-in
  # one from v4 on (Debian 12's kubectl 1.20 has v2.0.3, too old).
  local dir=$1 out=$2 v
  if command -v kustomize >/dev/null 2>&1; then
    kustomize build "$dir" >"$out" && return 0
    fail "kustomize build $dir"
  fi
  if command -v kubectl >/dev/null 2>&1; then
    v=$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p')
    if [ -n "$v" ] && [ "$v" -ge 4 ]; then
      kubectl kustomize "$dir" >"$out" && return 0
      fail "kubectl kustomize $dir"
    fi
  fi
  return 1
}

step_k8s() {
  npm_deps
  local opts metrics o same
  opts=$(demixd_options)
  metrics=$(grep -oE '# TYPE demixd_[a-z_]+' "$root/server/metrics.c" | awk '{print $3}' | sort -u | tr '\n' ' ')
  [ -n "$metrics" ] || fail "no metric names found in server/metrics.c"
  for o in gpu cpu; do
    node "$here/ci/render.mjs" "$here/k8s/overlays/$o" >"$tmp/$o.yaml" ||
      fail "render.mjs deploy/k8s/overlays/$o"
    same=()
    if kustomize_render "$here/k8s/overlays/$o" "$tmp/$o.kustomize.yaml"; then
      same=(--same-as "$tmp/$o.kustomize.yaml")
      say "k8s: overlays/$o rendered by render.mjs and by kustomize"
    else
      say "k8s: overlays/$o rendered by render.mjs only (no kustomize >= v4 here to compare with)"
    fi
    node "$here/ci/validate.mjs" --variant "$o" --options "$opts" --metrics "$metrics" \
      "$tmp/$o.yaml" "${same[@]}" || fail "deploy/k8s/overlays/$o does not validate"
  done
  # The validator must catch a typo'd field and a wrong type.
  sed 's/readinessProbe:/readinesProbe:/; s/containerPort: 8080/containerPort: "8080"/' \
    "$tmp/gpu.yaml" >"$tmp/broken.yaml"
  if node "$here/ci/validate.mjs" --variant gpu --options "$opts" --metrics "$metrics" \
    "$tmp/broken.yaml" >"$tmp/broken.log" 2>&1; then
    cat "$tmp/broken.log" >&2
    fail "validate.mjs accepted a broken manifest"
  fi
  grep -q 'unknown field /spec/template/spec/containers/0/readinesProbe' "$tmp/broken.log" ||
    fail "validate.mjs did not report the unknown field"
  grep -q 'containerPort' "$tmp/broken.log" || fail "validate.mjs did not report the wrong type"
  say "k8s: a broken copy is refused, as it must be"
  pending_status
}

step_dockerfile() {
  npm_deps
  need_demixd
  local df="$here/Dockerfile" json stage line opts
  # dockerfilelint 1.8.0 misreads HEALTHCHECK --start-period (its option
  # regex stops at the '-'), so a HEALTHCHECK "Invalid Argument Format" is
  # dropped here after checking the options ourselves; anything else fails.
  json=$("$here/ci/node_modules/.bin/dockerfilelint" -o json "$df" || true)
  # shellcheck disable=SC2016 # JavaScript in single quotes
  node -e '
    const r = JSON.parse(process.argv[1]);
    const ok = /^HEALTHCHECK( --(interval|timeout|start-period|retries)=[0-9]+[a-z]*)+ \\?$/;
    const bad = r.files.flatMap((f) => f.issues).filter((i) =>
      !(i.title === "Invalid Argument Format" && ok.test(i.content.trim())));
    for (const i of bad) console.error(`deploy/Dockerfile:${i.line}: ${i.category}: ${i.title}: ${i.content}`);
    process.exit(bad.length ? 1 : 0);
  ' "$json" || fail "dockerfilelint found problems (above)"
  for stage in cpu gpu; do
    # The stage's lines, from its FROM to the next FROM.
    # (continuation lines joined).
    awk -v s="$stage" '/^FROM /{on = ($NF == s)} on' "$df" |
      sed -e ':a' -e '/\\$/N; s/\\\n//; ta' >"$tmp/stage-$stage"
    [ -s "$tmp/stage-$stage" ] || fail "Dockerfile: no stage $stage"
    grep -q '^USER 10001:10001$' "$tmp/stage-$stage" || fail "Dockerfile $stage: USER 10001:10001 missing"
    grep -q '^HEALTHCHECK .*/v1/health/live' "$tmp/stage-$stage" || fail "Dockerfile $stage: HEALTHCHECK on /v1/health/live missing"
    grep -q 'useradd --system --uid 10001' "$tmp/stage-$stage" || fail "Dockerfile $stage: the user is not created"
    grep -q '^COPY --from=build-.* /out/usr/local/ /usr/local/$' "$tmp/stage-$stage" || fail "Dockerfile $stage: the install tree is not copied"
    line=$(grep '^ENTRYPOINT ' "$tmp/stage-$stage") || fail "Dockerfile $stage: no ENTRYPOINT"
    opts=$(printf '%s\n' "$line" | grep -oE -- '--[a-z][a-z0-9-]*' | tr '\n' ' ')
    check_options "Dockerfile $stage ENTRYPOINT" "$opts"
  done
  say "dockerfile: dockerfilelint clean (but for its --start-period bug); stages cpu and gpu: uid 10001, HEALTHCHECK, known options"
  # The build context: what .dockerignore lets through must configure with
  # the build stages' options, and hold the model and the page.
  node "$here/ci/context.mjs" "$root" "$tmp/context" || fail "context.mjs"
  for f in models/default.safetensors web/index.html deploy/runtime-deps.sh CMakeLists.txt; do
    [ -e "$tmp/context/$f" ] || fail ".dockerignore leaves $f out of the build context"
  done
  cmake -S "$tmp/context" -B "$tmp/context-build" -DCMAKE_INSTALL_PREFIX=/usr/local \
    -DDEMIX_CUDA=OFF -DDEMIX_TESTS=OFF -DDEMIX_BENCH=OFF >"$tmp/context.log" 2>&1 ||
    { cat "$tmp/context.log" >&2; fail "the build context does not configure (above)"; }
  say "dockerfile: the build context (.dockerignore) configures as the cpu build stage does"
  "$here/runtime-deps.sh" "$demixd" "$(dirname "$demixd")/../tools/demix" >"$tmp/runtime-packages" ||
    fail "runtime-deps.sh"
  grep -q '^libwebsockets' "$tmp/runtime-packages" || fail "runtime-deps.sh did not find libwebsockets"
  say "dockerfile: runtime-deps.sh: $(tr '\n' ' ' <"$tmp/runtime-packages")"
}

step_install() {
  need_demixd
  local data web model
  [ -f "$build/CMakeCache.txt" ] || fail "$build is not a configured build directory (DEMIX_BUILD_DIR)"
  DESTDIR="$tmp/root" cmake --install "$build" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "cmake --install"; }
  # The installed locations demixd looks at first (its --help names them).
  local help
  help=$("$demixd" --help 2>&1) || true
  web=$(printf '%s\n' "$help" | sed -n '/--web DIR/{n; s/^[[:space:]]*\([^,]*\),.*/\1/p;}')
  model=$(printf '%s\n' "$help" | grep -oE '[^ ,]*/models/default\.safetensors' | sed -n 1p)
  if [ -z "$web" ] || [ -z "$model" ]; then
    fail "demixd --help names no default web dir or model"
  fi
  data=${web%/web}
  for f in "$web/index.html" "$web/app.js" "$web/demo/potassium.opus" "$model"; do
    [ -f "$tmp/root$f" ] || fail "cmake --install did not install $f"
  done
  [ -x "$tmp/root$(dirname "$data")/../bin/demixd" ] || [ -x "$tmp/root/usr/local/bin/demixd" ] ||
    fail "cmake --install did not install bin/demixd"
  [ ! -e "$tmp/root$web/demo/make-demo.c" ] || fail "the demo generator's source was installed"
  say "install: demixd, $model and $web/ (index.html, ...) installed where demixd looks"
}

free_ports() {
  # N consecutive free loopback ports: the first one printed.
  node -e '
    const net = require("net");
    const n = Number(process.argv[1]);
    const tryBase = (b) => new Promise((res) => {
      const ss = []; let ok = 0, done = 0;
      for (let i = 0; i < n; i++) {
        const s = net.createServer();
        s.once("error", () => { if (++done === n) fin(); });
        s.listen(b + i, "127.0.0.1", () => { ss.push(s); ok++; if (++done === n) fin(); });
      }
      function fin() { ss.forEach((s) => s.close()); res(ok === n); }
    });
    (async () => {
      for (let t = 0; t < 50; t++) {
        const b = 20000 + Math.floor(Math.random() * 30000);
        if (await tryBase(b)) { console.log(b); return; }
      }
      process.exit(1);
    })();
  ' "$1"
}

step_proxy() {
  need nginx
  need openssl
  need node nodejs
  need_demixd
  local model="$test_data/tiny.safetensors" base tls http i conf p
  [ -f "$model" ] || fail "$model is missing"
  base=$(free_ports 4) || fail "no free ports"
  tls=$((base + 2))
  http=$((base + 3))
  # The files deploy/multi-gpu.sh writes, for two "GPUs".
  "$here/multi-gpu.sh" --gpus 2 --base-port "$base" --root "$tmp/root" >/dev/null
  conf="$tmp/root/etc/nginx/conf.d"
  grep -q '^    least_conn;$' "$conf/demixd-upstream.conf" || fail "the upstream has no least_conn"
  for i in 0 1; do
    p=$(sed -n 's/^DEMIXD_PORT=//p' "$tmp/root/etc/demixd/gpu-$i.env")
    [ "$p" = $((base + i)) ] || fail "gpu-$i.env: port $p, want $((base + i))"
    "$demixd" --model "$model" --backend cpu --threads 1 --host 127.0.0.1 --port "$p" \
      --max-sessions 4 >"$tmp/demixd-$i.log" 2>&1 &
    pids+=($!)
  done
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=demixd.example.com \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" >/dev/null 2>&1 || fail "openssl req"
  # deploy/nginx/demixd.conf as it is, but for the ports, addresses and
  # certificate of this test.
  sed -e "s|listen 80;|listen 127.0.0.1:$http;|; s|listen 443 ssl;|listen 127.0.0.1:$tls ssl;|" \
    -e '/listen \[::\]/d' \
    -e "s|/etc/letsencrypt/live/demixd.example.com/fullchain.pem|$tmp/cert.pem|" \
    -e "s|/etc/letsencrypt/live/demixd.example.com/privkey.pem|$tmp/key.pem|" \
    "$here/nginx/demixd.conf" >"$conf/demixd.conf"
  mkdir -p "$tmp/nginx/logs"
  cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log warn;
events { worker_connections 256; }
http {
    access_log $tmp/nginx/logs/access.log;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    include $conf/demixd-upstream.conf;
    include $conf/demixd.conf;
}
EOF
  if [ "$(id -u)" -eq 0 ]; then
    sed -i '1i user root;' "$tmp/nginx/nginx.conf"
  fi
  nginx -t -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" >"$tmp/nginx-t.log" 2>&1 ||
    { cat "$tmp/nginx-t.log" >&2; fail "nginx -t on deploy/nginx/demixd.conf"; }
  say "proxy: nginx -t accepts deploy/nginx/demixd.conf and the upstream of multi-gpu.sh"
  nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' >"$tmp/nginx/logs/stderr" 2>&1 &
  pids+=($!)
  for i in 0 1; do
    for _ in $(seq 1 300); do
      grep -q 'listening on' "$tmp/demixd-$i.log" && break
      sleep 0.1
    done
    grep -q 'listening on' "$tmp/demixd-$i.log" || { cat "$tmp/demixd-$i.log" >&2; fail "demixd $i did not start"; }
  done
  NODE_TLS_REJECT_UNAUTHORIZED=0 node --no-warnings --experimental-websocket \
    "$here/ci/proxy_test.mjs" "$tls" "$base" "$((base + 1))" "$http" ||
    { cat "$tmp/nginx/logs/error.log" >&2; fail "sessions through the nginx front"; }
}

step_image() {
  if ! command -v docker >/dev/null 2>&1; then
    say "SKIP image: no docker client here, so the CPU image is not built (docs/deploy.md)"
    exit 77
  fi
  local why
  if ! why=$(docker info 2>&1 >/dev/null); then
    say "SKIP image: docker has no engine to talk to, so the CPU image is not built or started here"
    say "  (docker info: $(printf '%s' "$why" | tail -n 1))"
    exit 77
  fi
  local tag="demixd-check:$$" cid state=""
  docker build -f "$here/Dockerfile" --target cpu -t "$tag" "$root" || fail "docker build --target cpu"
  cid=$(docker run -d --rm -P "$tag" --max-sessions 2) || fail "docker run"
  for _ in $(seq 1 90); do
    state=$(docker inspect -f '{{.State.Health.Status}}' "$cid" 2>/dev/null || echo gone)
    [ "$state" = healthy ] && break
    sleep 2
  done
  docker logs "$cid" 2>&1 | tail -n 20
  docker stop -t 75 "$cid" >/dev/null || true
  docker rmi "$tag" >/dev/null || true
  [ "$state" = healthy ] || fail "the CPU image did not become healthy (state: $state)"
  say "image: built the cpu target; the container became healthy"
}

# ---------------------------------------------------------------- main

all=(shellcheck systemd k8s dockerfile install proxy)
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=("${all[@]}" image)
for s in "${steps[@]}"; do
  case "$s" in
  shellcheck | systemd | k8s | dockerfile | install | proxy | image)
    say "== $s"
    "step_$s"
    ;;
  *) fail "unknown step $s (steps: ${all[*]} image)" ;;
  esac
done
say "passed: ${steps[*]}"
