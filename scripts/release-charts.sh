#!/usr/bin/env bash
# Package the charts of a release and push them: what .github/workflows/release.yml runs, and
# `make release-local` against the node's registry.
#   scripts/release-charts.sh REGISTRY VERSION [--no-push] [--dist DIR] [HELM PUSH FLAG...]
# On a copy of charts/ (the checkout is left alone): every chart (the umbrella and its subcharts)
# gets version and appVersion VERSION, the umbrella's dependencies that version, and the default
# image registry REGISTRY; the umbrella and the operator chart are packaged into DIST (default
# ./dist); the umbrella must render exactly REGISTRY/flotilla/<name>:VERSION for every service
# of the list and the operator; then both are pushed to oci://REGISTRY/charts (flags such as
# --plain-http go to helm push). Prints the packages' paths.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage="usage: scripts/release-charts.sh REGISTRY VERSION [--no-push] [--dist DIR] [HELM PUSH FLAG...]"
registry=${1:?$usage}
version=${2:?$usage}
shift 2
push=1 dist="$PWD/dist" push_flags=()
while [ $# -gt 0 ]; do
  case $1 in
    --no-push) push=0 ;;
    --dist) dist=$(mkdir -p "${2:?$usage}" && cd "$2" && pwd); shift ;;
    *) push_flags+=("$1") ;;
  esac
  shift
done
registry=${registry%/}
# A chart's version is SemVer 2 (Helm refuses anything else): say so before packaging.
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$ ]] \
  || die "VERSION '$version' is not a SemVer version (X.Y.Z, optionally -prerelease): a chart cannot carry it"
command -v helm >/dev/null || die "helm is not on PATH (scripts/cluster/build.sh builds the pinned Helm 4)"
python=python3
[ -x "$VENV/bin/python" ] && python="$VENV/bin/python"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# -L: the operator chart links its CRD and RBAC to the operator's own manifests.
cp -rL "$ROOT/charts" "$work/charts"
rm -rf "$work"/charts/*/charts "$work"/charts/*/Chart.lock

step "stamping the charts with version $version and registry $registry"
"$python" - "$work/charts" "$registry" "$version" <<'EOF'
"""Every chart: version and appVersion; its file:// dependencies: that version; the default
image registry of the umbrella (global.imageRegistry) and of the operator chart installed alone.
Edited line by line, so that the packaged values keep their comments (helm show values), and
checked by reading each file back."""
import re
import sys
from pathlib import Path

import yaml

charts, registry, version = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
for chart_file in sorted(charts.glob("*/Chart.yaml")):
    text = re.sub(r"(?m)^version:.*$", f"version: {version}", chart_file.read_text())
    text = re.sub(r"(?m)^appVersion:.*$", f'appVersion: "{version}"', text)
    # Dependencies are listed as "- name: ..." items whose "version:" is indented.
    text = re.sub(r"(?m)^(\s+)version:.*$", rf"\g<1>version: {version}", text)
    chart_file.write_text(text)
    chart = yaml.safe_load(text)
    versions = {chart["version"], chart.get("appVersion", version)}
    versions |= {str(d["version"]) for d in chart.get("dependencies", [])}
    assert versions == {version}, f"{chart_file}: versions {versions} after stamping {version}"
for chart in ("flotilla", "flotilla-operator"):
    values_file = charts / chart / "values.yaml"
    text = values_file.read_text()
    if re.search(r"(?m)^global:", text):
        text, count = re.subn(r'(?m)^(  imageRegistry:) "".*$', rf"\g<1> {registry}", text)
        assert count == 1, f'{values_file}: no global.imageRegistry: "" line to set'
    else:
        text += f"\n# Set by scripts/release-charts.sh: the registry of this release's images.\nglobal:\n  imageRegistry: {registry}\n"
    values_file.write_text(text)
    assert yaml.safe_load(text)["global"]["imageRegistry"] == registry, values_file
EOF

step "packaging the umbrella chart and the operator chart into ${dist/#"$PWD"/.}"
mkdir -p "$dist"
helm dependency build "$work/charts/flotilla-operator" >/dev/null
helm dependency build "$work/charts/flotilla" >/dev/null
umbrella=$(helm package "$work/charts/flotilla" -d "$dist" | sed -n 's/^Successfully packaged chart and saved it to: //p')
operator=$(helm package "$work/charts/flotilla-operator" -d "$dist" | sed -n 's/^Successfully packaged chart and saved it to: //p')
[ -f "$umbrella" ] && [ -f "$operator" ] || die "helm package did not say where it saved the charts"

# Every image the umbrella renders by default is one the release pushes, under this version.
rendered=$(helm template flotilla "$umbrella")
for name in $(service_names) operator; do
  grep -qE "image: \"?$registry/flotilla/$name:$version\"?$" <<<"$rendered" \
    || die "the packaged chart does not render $registry/flotilla/$name:$version"
done
note "the umbrella renders every service's and the operator's image as $registry/flotilla/<name>:$version"

if [ "$push" = 1 ]; then
  step "pushing the charts to oci://$registry/charts"
  for package in "$umbrella" "$operator"; do
    helm push "$package" "oci://$registry/charts" "${push_flags[@]}" 2>&1 | sed 's/^/    /'
  done
fi
echo "$umbrella"
echo "$operator"
