#!/usr/bin/env bash
# Chromium (headless, to render certificates to PDF and their DOM) and
# poppler-utils (pdftotext, to read the PDF back), from Debian's packages.
# Nothing runs: `up` installs what is missing and records the paths.
# Usage: pdf.sh build|up|down|status
source "$(dirname "$0")/../lib.sh"

chromium_bin() { command -v chromium || command -v chromium-browser || true; }

build() {
  local want=()
  [ -n "$(chromium_bin)" ] || want+=(chromium)
  command -v pdftotext >/dev/null || want+=(poppler-utils)
  if [ ${#want[@]} -gt 0 ]; then
    log "installing ${want[*]} from Debian's packages"
    apt_install "${want[@]}"
  fi
}

up() {
  build
  write_env pdf <<ENV
CHROMIUM=$(chromium_bin)
PDFTOTEXT=$(command -v pdftotext)
ENV
}

down() { rm -f "$DELENDA_STATE/env.d/pdf.env"; }

status() {
  local c; c=$(chromium_bin)
  if [ -n "$c" ]; then echo "chromium: installed ($c)"; else echo "chromium: not installed"; fi
  if command -v pdftotext >/dev/null; then echo "pdftotext: installed ($(command -v pdftotext))"; else echo "pdftotext: not installed"; fi
}

"${1:?usage: pdf.sh build|up|down|status}"
