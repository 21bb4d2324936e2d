#!/usr/bin/env bash
# deploy/runtime-deps.sh BINARY... - the Debian/Ubuntu packages that hold
# the shared libraries BINARY loads, one name a line, sorted.
#
# The container build (deploy/Dockerfile) runs it in its build stage on
# the installed demixd and demix, and the runtime stage installs exactly
# those packages. So the runtime stage names no library package itself:
# the names differ between releases (libwebsockets17 on Debian 12,
# libwebsockets19t64 on Ubuntu 24.04) and this follows the build stage's
# release, whichever it is.
#
# lws loads its event-loop plugins with dlopen, which ldd does not see:
# where the binaries link libwebsockets, the package of its libev plugin
# (demixd's default --event-loop epoll) is added from beside it.
#
# Libraries under /usr/local/cuda* (the CUDA toolkit of the nvidia/cuda
# images, whose runtime image already has them) are left out. A library
# that no package owns is an error (exit 1, named on stderr): the runtime
# image would miss it.
set -euo pipefail

if [ $# -eq 0 ]; then
  echo "usage: $0 BINARY..." >&2
  exit 2
fi

# dpkg knows a file by the path its package installed; on a merged-/usr
# system the loader may name it through /lib (a link to /usr/lib).
owner() {
  local lib=$1 real cand out
  real=$(readlink -f "$lib")
  for cand in "$lib" "/usr$lib" "$real" "/usr$real" "${lib#/usr}" "${real#/usr}"; do
    [ -n "$cand" ] || continue
    if out=$(dpkg-query -S "$cand" 2>/dev/null); then
      # "libopus0:amd64: /usr/lib/x86_64-linux-gnu/libopus.so.0"
      printf '%s\n' "${out%%: *}" | sed 's/:[a-z0-9_]*$//' | head -n 1
      return 0
    fi
  done
  return 1
}

status=0
libs=$(
  for bin in "$@"; do
    if [ ! -x "$bin" ]; then
      echo "runtime-deps: $bin is not an executable" >&2
      exit 1
    fi
    # "libopus.so.0 => /lib/x86_64-linux-gnu/libopus.so.0 (0x...)"
    ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'
  done | sort -u
)
packages=()
for lib in $libs; do
  case "$lib" in
  /usr/local/cuda*) continue ;;
  esac
  if pkg=$(owner "$lib"); then
    packages+=("$pkg")
  else
    echo "runtime-deps: no package owns $lib" >&2
    status=1
  fi
done
for lib in $libs; do
  case "$lib" in
  */libwebsockets.so.*)
    plugin=$(dirname "$(readlink -f "$lib")")/libwebsockets-evlib_ev.so
    if [ -e "$plugin" ] && pkg=$(owner "$plugin"); then
      packages+=("$pkg")
    else
      echo "runtime-deps: no libev plugin of lws beside $lib (demixd falls back to poll)" >&2
    fi
    ;;
  esac
done
if [ ${#packages[@]} -gt 0 ]; then
  printf '%s\n' "${packages[@]}" | sort -u
fi
exit $status
