#!/usr/bin/env bash
# Builds kustomize (pinned in versions.env) if it is not built yet, and prints its path:
#   export GITOPSD_KUSTOMIZE=$(scripts/build-kustomize.sh | tail -n 1)
# The render stage runs it for directories that hold a kustomization.yaml.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/build-control-plane.sh" --kustomize
