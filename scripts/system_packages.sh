#!/usr/bin/env bash
# System packages the suite uses: ffmpeg (media), espeak-ng (speech for the synthetic corpus) and, with
# --with-browser, chromium + chromium-driver (the live-demo browser test). Installs with apt when run as
# root; otherwise prints exactly what is missing and how to install it.
set -uo pipefail
pkgs=(ffmpeg espeak-ng)
cmds=(ffmpeg espeak-ng)
if [ "${1:-}" = "--with-browser" ]; then pkgs+=(chromium chromium-driver); cmds+=(chromium chromedriver); fi
missing=()
for i in "${!cmds[@]}"; do command -v "${cmds[$i]}" >/dev/null 2>&1 || missing+=("${pkgs[$i]}"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { echo "setup: apt-get failed for: ${missing[*]}" >&2; exit 1; }
else
  echo "setup: missing system packages: ${missing[*]}" >&2
  echo "setup: install them with: sudo apt-get install ${missing[*]}   (the suite falls back where it can:" >&2
  echo "       a built-in voice without espeak-ng; PyAV's own FFmpeg without ffmpeg)" >&2
fi
exit 0
