#!/usr/bin/env bash
# System packages the gateway needs outside the virtualenv (idempotent).
#   espeak-ng: the offline speech synthesizer behind TTS engine "espeak".
#   chromium, chromium-driver: the browser the survey pages are tested in (tests/test_survey_browser*.py);
#     fonts-wqy-microhei: a Chinese font, so its screenshots show the text.
#   libfst-tools, libfst22-plugins-base: OpenFst's tools and FST-type plugins, which
#     compile the speech model's static decoding graph once (gateway/model/graph.py).
# Installs via apt-get only when missing; skips quietly without root or apt,
# so it is safe to call from CI and from developer machines alike.
set -euo pipefail

# package:file that shows it is installed
packages=(espeak-ng:/usr/bin/espeak-ng libfst-tools:/usr/bin/fstcompose chromium:/usr/bin/chromium chromium-driver:/usr/bin/chromedriver fonts-wqy-microhei:/usr/share/fonts/truetype/wqy/wqy-microhei.ttc)

missing=()
for entry in "${packages[@]}"; do
  [ -e "${entry#*:}" ] || missing+=("${entry%%:*}")
done
# The plugins' package and folder carry OpenFst's library version (libfst22 on Debian 12).
need_plugins=0
compgen -G "/usr/lib/*/fst/*/olabel_lookahead-fst.so" >/dev/null || need_plugins=1
[ "${#missing[@]}" -eq 0 ] && [ "$need_plugins" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  [ "$need_plugins" -eq 1 ] && missing+=("OpenFst plugins (libfst*-plugins-base)")
  echo "note: not installing ${missing[*]} (needs root and apt-get); install them yourself" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [ "$need_plugins" -eq 1 ]; then
  plugins=$(apt-cache pkgnames libfst | grep -E '^libfst[0-9]+-plugins-base$' | sort -V | tail -n 1 || true)
  [ -n "$plugins" ] && missing+=("$plugins")
fi
[ "${#missing[@]}" -eq 0 ] && exit 0
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
