#!/usr/bin/env bash
# Installs every build and test dependency of demixd from Debian packages.
# Used by the README's quick start, by scripts/test.sh and so by .ci/run.
# Skips apt-get entirely when everything is already installed.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libkissfft-dev libcjson-dev
  libsndfile1-dev libsoxr-dev libopus-dev libwebsockets-dev
  libcmocka-dev
  clang
  sndfile-programs
  chromium
  shellcheck systemd nginx openssl
  python3-numpy fluidsynth timgm6mb-soundfont
)
# train/synth's test (unit_train_synth): numpy, and fluidsynth with the
# small TimGM6mb soundfont for its render.
# deploy/check.sh (ctest label deploy): shellcheck, systemd-analyze
# (package systemd; it runs without systemd as PID 1), nginx and openssl
# for the TLS front's test. Its npm packages come from
# deploy/ci/package-lock.json (npm ci, on first use).
# The browser test (tests/browser) also needs node >= 20 and npm; a nodejs
# that is already there (it may bundle npm) is kept.
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Another apt (unattended-upgrades on a fresh machine) may hold the dpkg
# lock: wait for it up to 10 minutes instead of failing at once.
lock_wait=(-o DPkg::Lock::Timeout=600)
$sudo apt-get "${lock_wait[@]}" update -qq
$sudo apt-get "${lock_wait[@]}" install -y -qq --no-install-recommends "${missing[@]}"
