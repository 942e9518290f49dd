#!/usr/bin/env bash
# System packages the gateway needs outside the virtualenv (idempotent).
#   espeak-ng: the offline speech synthesizer behind TTS engine "espeak".
# Installs via apt-get only when missing; skips quietly without root or apt,
# so it is safe to call from CI and from developer machines alike.
set -euo pipefail

packages=(espeak-ng)

missing=()
for pkg in "${packages[@]}"; do
  if ! command -v "$pkg" >/dev/null 2>&1; then
    missing+=("$pkg")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: not installing ${missing[*]} (needs root and apt-get); install it yourself" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
