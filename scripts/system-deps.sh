#!/usr/bin/env bash
# System libraries the renderers need: cairo (cairosvg) and the DejaVu font (deterministic <text>).
# Installs them with apt-get when missing and we are root; otherwise says what is missing.
set -euo pipefail
missing=()
ldconfig -p 2>/dev/null | grep -q 'libcairo.so.2' || missing+=(libcairo2)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "missing system packages: ${missing[*]} (install them, e.g. apt-get install ${missing[*]})" >&2
  exit 1
fi
