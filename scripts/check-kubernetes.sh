#!/usr/bin/env bash
# The Kubernetes manifests (deploy/kubernetes): every overlay renders with kustomize and
# validates strictly against the Kubernetes schemas, offline (kubernetes-validate from
# PyPI carries them). kustomize is kubectl's own when kubectl is installed, or else
# built from the Go module proxy into the tools cache.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${FUNGI_TOOLS:-$HOME/.cache/fungi/tools}"
venv="$HOME/.cache/fungi/k8s-venv"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==1.37.0"
fi
# kubectl 1.21+ embeds kustomize v4+, which reads these kustomizations (`labels`).
render() {
  if command -v kubectl >/dev/null 2>&1 && kubectl version --client 2>/dev/null | grep -q "Kustomize Version: v[45]"; then
    kubectl kustomize "$1"
  else
    if [ ! -x "$tools/bin/kustomize" ]; then
      echo "installing kustomize into $tools (from the Go module proxy, once)" >&2
      GOBIN="$tools/bin" go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0
    fi
    "$tools/bin/kustomize" build "$1"
  fi
}
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for overlay in deploy/kubernetes/overlays/*/; do
  name="$(basename "$overlay")"
  render "$overlay" > "$out/$name.yaml"
  "$venv/bin/kubernetes-validate" --strict --quiet "$out/$name.yaml"
  echo "deploy/kubernetes/overlays/$name: $(grep -c '^kind:' "$out/$name.yaml") resources render and validate"
done
