#!/usr/bin/env bash
# Prepares a Debian 12 machine with Node 20 to build and test m2fleet:
# installs Mongrel2 (Debian package mongrel2-core: /usr/bin/mongrel2 and
# /usr/bin/m2sh), curl, iproute2, nftables, nginx (the uwsgi and FastCGI
# socket tests put a real nginx in front), Ansible (the deploy tests), and
# the benchmark peers (wrk, python3-zmq, uWSGI) and rsvg-convert when missing, installs the
# npm dependencies, and builds dist/. Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'setup: %s\n' "$*"; }

# 1. System packages, only when something is missing (apt-get update is slow).
missing=()
[[ -x /usr/bin/mongrel2 && -x /usr/bin/m2sh ]] || missing+=(mongrel2-core)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# m2fleet's --sched-policy batch runs chrt; the bench pins with taskset.
# Both are util-linux (essential in Debian), checked for slim images.
command -v chrt >/dev/null 2>&1 && command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
# The cluster tests build their own hosts from network namespaces (ip) and
# drop datagrams at random with nftables inside them.
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
[[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v ansible-playbook >/dev/null 2>&1 || missing+=(ansible-core)
command -v ansible-lint >/dev/null 2>&1 || missing+=(ansible-lint)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
# The bench draws its chart as SVG and converts it to PNG with rsvg-convert.
command -v rsvg-convert >/dev/null 2>&1 || missing+=(librsvg2-bin)
/usr/bin/python3 -c 'import zmq' >/dev/null 2>&1 || missing+=(python3-zmq)
[[ -x /usr/bin/uwsgi && -e /usr/lib/uwsgi/plugins/python3_plugin.so ]] || missing+=(uwsgi-core uwsgi-plugin-python3)
if ((${#missing[@]} > 0)); then
  sudo=()
  if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { say "need root (or sudo) to install: ${missing[*]}"; exit 1; }
    sudo=(sudo)
  fi
  say "installing ${missing[*]} with apt-get"
  "${sudo[@]}" apt-get update -qq
  # nginx and uWSGI packages start a system-wide service on install (nginx
  # would bind port 80 on every interface). The tests start their own
  # instances on 127.0.0.1, so tell invoke-rc.d to start nothing, and put
  # back whatever policy the machine had.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    made_policy=1
  fi
  rc=0
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null || rc=$?
  ((made_policy)) && "${sudo[@]}" rm -f "$policy"
  ((rc == 0)) || { say "apt-get install failed ($rc)"; exit "$rc"; }
else
  say "system packages already installed"
fi
say "$(/usr/bin/m2sh version 2>/dev/null | head -n 1 || echo 'm2sh present')"

# 2. Node: the package needs >= 20.6 (node --import).
node -e 'const [a,b]=process.versions.node.split(".").map(Number);
  if (a < 20 || (a === 20 && b < 6)) { console.error("setup: need Node >= 20.6, have " + process.version); process.exit(1); }'

# 3. npm dependencies. npm writes node_modules/.package-lock.json on every
# install; when it is newer than both package files, nothing changed since.
stamp=node_modules/.package-lock.json
if [[ -f "$stamp" && "$stamp" -nt package.json && ( ! -f package-lock.json || "$stamp" -nt package-lock.json ) ]]; then
  say "npm dependencies up to date"
elif [[ -f package-lock.json ]]; then
  say "npm ci"
  npm ci --no-audit --no-fund
else
  say "npm install (no package-lock.json)"
  npm install --no-audit --no-fund
fi

# 4. Build dist/.
say "npm run build"
npm run build --silent
say "done"
