#!/usr/bin/env bash
# Packs the built m2fleet (dist/, package.json) with its production
# dependencies from node_modules/ into one archive for deploy/ansible:
#
#   npm ci && npm run build && deploy/make-release.sh [OUT.tar.gz]
#
# (default OUT: deploy/release/m2fleet.tar.gz). Nothing is downloaded: the
# dependencies are copied from node_modules/, so make the archive on a
# machine like the hosts (same CPU and libc; the ZeroMQ addon is native).
# The same inputs give the same archive, byte for byte, so a rebuild of
# the same code deploys nothing new. Prints the archive's path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/deploy/release/m2fleet.tar.gz}"
case $out in /*) ;; *) out="$PWD/$out" ;; esac

[[ -f $root/dist/node/cli.js ]] || { echo "make-release: no dist/node/cli.js; run npm run build" >&2; exit 1; }

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp -a "$root/package.json" "$root/dist" "$stage/"
[[ -f $root/package-lock.json ]] && cp -a "$root/package-lock.json" "$stage/"

# npm lists the production dependency tree; copy each top-level package
# (nested node_modules come along with their parent).
mkdir -p "$stage/node_modules"
deps="$(cd "$root" && npm ls --omit=dev --all --parseable)" || {
  echo "make-release: npm ls --omit=dev failed (run npm ci first)" >&2
  exit 1
}
count=0
while IFS= read -r dir; do
  rel="${dir#"$root"/}"
  [[ $rel =~ ^node_modules/(@[^/]+/)?[^/]+$ ]] || continue
  mkdir -p "$stage/$(dirname "$rel")"
  cp -a "$dir" "$stage/$rel"
  count=$((count + 1))
done <<<"$deps"
((count > 0)) || { echo "make-release: no production dependencies found" >&2; exit 1; }

mkdir -p "$(dirname "$out")"
chmod 0755 "$stage"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode='go-w' \
  -C "$stage" -cf - . | gzip -n -1 >"$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
