#!/usr/bin/env sh
# METEOR needs WordNet 3.0. Debian's wordnet-base provides it; install it when we can
# (root with apt), otherwise say so: METEOR is then reported as unavailable.
if [ -d /usr/share/wordnet ] || [ -n "${DPL_WORDNET_DIR:-}" ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's wordnet-base for METEOR"
  (apt-get install -y -q wordnet-base >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q wordnet-base >/dev/null 2>&1; }) \
    || echo "could not install wordnet-base: METEOR tests will be skipped"
else
  echo "WordNet not found (install Debian's wordnet-base): METEOR tests will be skipped"
fi
exit 0
