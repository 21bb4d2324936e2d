#!/usr/bin/env bash
# deploy/multi-gpu.sh - one demixd per GPU on this machine, behind one
# nginx listener that sends each new session to the process with the
# fewest connections (docs/deploy.md, "Several GPUs on one host").
#
#   deploy/multi-gpu.sh [--gpus N] [--base-port P] [--root DIR] [--no-start]
#
#   --gpus N       how many GPUs (processes); default: the GPUs nvidia-smi
#                  lists
#   --base-port P  process i listens on 127.0.0.1:(P + i); default 8100
#   --root DIR     write the files under DIR instead of / (a staging tree;
#                  implies --no-start); deploy/check.sh uses this
#   --no-start     write the files only: no user, no systemctl, no nginx
#
# Writes (under the root):
#   etc/systemd/system/demixd@.service     from deploy/demixd@.service
#   etc/demixd/demixd.env                  from deploy/demixd.env, if absent
#   etc/demixd/gpu-I.env                   DEMIXD_PORT of instance I
#   etc/nginx/conf.d/demixd-upstream.conf  upstream demixd { least_conn; ... }
#   etc/nginx/conf.d/demixd.conf           from deploy/nginx/, if absent
# Then (unless --no-start, as root): the demixd user, systemctl
# daemon-reload, enable --now demixd@0 .. demixd@(N-1), nginx -t, reload.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
gpus=""
base_port=8100
root="/"
start=1

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
  --gpus) gpus=${2:?--gpus needs a number}; shift 2 ;;
  --base-port) base_port=${2:?--base-port needs a number}; shift 2 ;;
  --root) root=${2:?--root needs a directory}; start=0; shift 2 ;;
  --no-start) start=0; shift ;;
  -h | --help) usage ;;
  *) echo "multi-gpu.sh: unknown argument $1" >&2; usage ;;
  esac
done

if [ -z "$gpus" ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "multi-gpu.sh: nvidia-smi not found; give --gpus N" >&2
    exit 1
  fi
  gpus=$(nvidia-smi -L | grep -c '^GPU ' || true)
fi
case "$gpus" in
'' | *[!0-9]*) echo "multi-gpu.sh: --gpus must be a number, not '$gpus'" >&2; exit 2 ;;
esac
case "$base_port" in
'' | *[!0-9]*) echo "multi-gpu.sh: --base-port must be a number" >&2; exit 2 ;;
esac
if [ "$gpus" -lt 1 ]; then
  echo "multi-gpu.sh: no GPU found (nvidia-smi -L lists none); for the CPU engine use demixd.service" >&2
  exit 1
fi
if [ $((base_port + gpus - 1)) -gt 65535 ]; then
  echo "multi-gpu.sh: ports $base_port.. do not fit" >&2
  exit 2
fi

etc="${root%/}/etc"
install -d -m 755 "$etc/systemd/system" "$etc/demixd" "$etc/nginx/conf.d"
install -m 644 "$here/demixd@.service" "$etc/systemd/system/demixd@.service"
if [ ! -e "$etc/demixd/demixd.env" ]; then
  install -m 644 "$here/demixd.env" "$etc/demixd/demixd.env"
fi
if [ ! -e "$etc/nginx/conf.d/demixd.conf" ]; then
  install -m 644 "$here/nginx/demixd.conf" "$etc/nginx/conf.d/demixd.conf"
fi

upstream="$etc/nginx/conf.d/demixd-upstream.conf"
{
  echo "# Written by deploy/multi-gpu.sh: one demixd per GPU (demixd@I.service)."
  echo "# least_conn: a new session goes to the process with the fewest open"
  echo "# connections, i.e. sessions, so the GPUs fill evenly (docs/deploy.md)."
  echo "upstream demixd {"
  echo "    least_conn;"
  for ((i = 0; i < gpus; i++)); do
    port=$((base_port + i))
    printf 'DEMIXD_PORT=%d\n' "$port" >"$etc/demixd/gpu-$i.env"
    chmod 644 "$etc/demixd/gpu-$i.env"
    echo "    server 127.0.0.1:$port max_fails=1 fail_timeout=5s;"
  done
  echo "}"
} >"$upstream.tmp"
mv "$upstream.tmp" "$upstream"
echo "multi-gpu.sh: $gpus processes on 127.0.0.1:$base_port..$((base_port + gpus - 1)); files under $root"

if [ "$start" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "multi-gpu.sh: run as root to start the services (or give --no-start)" >&2
  exit 1
fi
if ! id demixd >/dev/null 2>&1; then
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin demixd
fi
systemctl daemon-reload
units=()
for ((i = 0; i < gpus; i++)); do
  units+=("demixd@$i.service")
done
systemctl enable --now "${units[@]}"
nginx -t
systemctl reload nginx
echo "multi-gpu.sh: started ${units[*]}; nginx reloaded"
