#!/usr/bin/env bash
# Builds the test corpus (issue 14): published install manifests of well-known projects, laid
# out as a gitopsd config repo, and prints its directory (last line):
#   export GITOPSD_CORPUS=$(scripts/corpus.sh | tail -n 1)
#
# The files are never vendored: each comes from its project's Go module, downloaded from the
# Go module proxy at the version pinned in tests/fixtures/corpus/sources.tsv (the go command
# checks the module against the checksum database), and its sha256 is checked against the
# pinned one. The layout:
#   base/<project>/<path as the project ships it>
#   tiers/corpus/tier.yaml, tiers/corpus/istio-system.yaml   (tests/fixtures/corpus/tier/)
# It is kept in ${GITOPSD_CACHE:-~/.cache/gitopsd}/corpus/<key>/, <key> being a digest of the
# pinned list and the tier files, and built once.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sources=$root/tests/fixtures/corpus/sources.tsv
tier_files=$root/tests/fixtures/corpus/tier
cache=${GITOPSD_CACHE:-$HOME/.cache/gitopsd}

log() { printf '[corpus] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

key=$(cat "$sources" "$tier_files"/* | sha256sum | cut -c1-16)
out=$cache/corpus/$key
if [[ -f $out/.complete ]]; then
  echo "$out"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  for d in /usr/local/go/bin /usr/lib/go/bin; do
    [[ -x $d/go ]] && export PATH=$d:$PATH && break
  done
fi
command -v go >/dev/null 2>&1 || die "no Go toolchain: run scripts/build-control-plane.sh (it installs one) or install Go"
export GOMODCACHE=$cache/gomod GOFLAGS=-modcacherw GOTOOLCHAIN=local
mkdir -p "$cache/corpus"
tmp=$(mktemp -d "$cache/corpus/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# One download per module (the list repeats a module for each of its files).
declare -A dirs=()
while IFS=$'\t' read -r module version path dest sha license; do
  [[ -z $module || $module == \#* ]] && continue
  mv_key=$module@$version
  if [[ -z ${dirs[$mv_key]:-} ]]; then
    log "go mod download $mv_key"
    json=$(cd "$tmp" && go mod download -json "$mv_key") || die "go mod download $mv_key failed"
    dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p' <<<"$json")
    [[ -n $dir && -d $dir ]] || die "go mod download $mv_key gave no directory: $json"
    dirs[$mv_key]=$dir
  fi
  src=${dirs[$mv_key]}/$path
  [[ -f $src ]] || die "$mv_key has no file $path"
  got=$(sha256sum "$src" | cut -c1-64)
  [[ $got == "$sha" ]] || die "$mv_key $path: sha256 $got, pinned $sha (tests/fixtures/corpus/sources.tsv)"
  [[ $license == Apache-2.0 ]] || die "$mv_key: license $license is not one the corpus takes"
  install -D -m 0644 "$src" "$tmp/$dest"
done <"$sources"

install -D -m 0644 "$tier_files/tier.yaml" "$tmp/tiers/corpus/tier.yaml"
install -D -m 0644 "$tier_files/istio-system.yaml" "$tmp/tiers/corpus/istio-system.yaml"
touch "$tmp/.complete"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
log "corpus ready: $(find "$out" -name '*.yaml' | wc -l) files, $(du -sh "$out" | cut -f1)"
echo "$out"
