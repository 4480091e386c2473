#!/usr/bin/env bash
# `make release-local`: what .github/workflows/release.yml does on a version tag, against the
# node's registry ($REGISTRY) instead of ghcr.io. Every image of the platform is built (only
# what changed) and pushed as $REGISTRY/flotilla/<name>:VERSION, the names and tags the chart's
# defaults use; then scripts/release-charts.sh, the very script release.yml runs, stamps,
# packages, checks and pushes the charts to oci://$REGISTRY/charts.
# VERSION is the chart's appVersion with a -dev-<hash> suffix: the hash of the images' digests and
# the charts, so that any change is a new release and the same images and charts the same one.
# Prints version=, chart= and postgresql= lines on stdout (the PostgreSQL image is not part of
# a release: the chart's default is the official one, which this machine cannot pull).
set -euo pipefail
source "$(dirname "$0")/cluster/lib.sh"
export PATH="$BIN_DIR:$PATH"

started=$SECONDS
command -v helm >/dev/null || "$CLUSTER_SCRIPTS/build.sh" >&2
"$CLUSTER_SCRIPTS/registry.sh" up >&2
step "building the platform's images" >&2
images=$("$ROOT/scripts/images.sh" platform)
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$ROOT/charts/flotilla/Chart.yaml")
[ -n "$app_version" ] || die "charts/flotilla/Chart.yaml has no appVersion"
# The digest the registry serves for an image: what the release's tag will point at.
served_digest() {  # served_digest REFERENCE
  registry_manifest "$1" -I | tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: *//p'
}
# Hashed: the images' digests (a rebuild from the same sources is another image, so another
# release: a tag never moves to other content) and the charts.
digests=""
for reference in $(echo "$images" | cut -d= -f2); do
  digest=$(served_digest "$reference")
  [ -n "$digest" ] || die "the registry does not serve $reference (scripts/images.sh platform pushes it)"
  digests+="$reference@$digest"$'\n'
done
version="$app_version-dev-$(inputs_hash "$digests" -- charts operator/src/flotilla_operator/manifests scripts/release-charts.sh)"

step "tagging the images as release $version in $REGISTRY" >&2
for name in $(service_names) operator; do
  "$ROOT/scripts/images.sh" artifact "$name" "$REGISTRY/flotilla/$name:$version" >&2
done

"$ROOT/scripts/release-charts.sh" "$REGISTRY" "$version" --dist "$STATE_DIR/release" --plain-http >&2
note "release $version in $REGISTRY ($(elapsed $((SECONDS - started))))" >&2
echo "version=$version"
echo "chart=oci://$REGISTRY/charts/flotilla"
echo "postgresql=$(echo "$images" | sed -n 's/^postgresql=//p')"
