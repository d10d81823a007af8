#!/usr/bin/env bash
# Vendor Google's <model-viewer> into the package, so that report.html works offline.
#   bash scripts/vendor_model_viewer.sh
# Takes the self-contained classic-script build (three.js and lit bundled in, their license
# headers kept): Chromium refuses module scripts and fetch() on file:// pages, so the
# module build would not load from a report opened from disk.
set -euo pipefail
VERSION=4.4.0
# The registry's sha512 of the tarball (npm view @google/model-viewer@$VERSION dist.integrity).
INTEGRITY="sha512-8z1SB5sPlzKoak5mdx/D31brBakPYm3Qi31EfAucHAUrtrHHCbabypkKvSwReYhUpPaxyJ46oT47uWE/hrs1Zw=="
cd "$(dirname "$0")/.."
dest=src/ssd3d/report/assets
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tarball="$tmp/google-model-viewer-$VERSION.tgz"
(cd "$tmp" && npm pack --silent "@google/model-viewer@$VERSION" >/dev/null)
got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$got" != "$INTEGRITY" ]; then
  echo "integrity mismatch for @google/model-viewer@$VERSION: $got" >&2
  exit 1
fi
tar xzf "$tarball" -C "$tmp"
mkdir -p "$dest"
cp "$tmp/package/dist/model-viewer-umd.min.js" "$dest/model-viewer-umd.min.js"
cp "$tmp/package/LICENSE" "$dest/model-viewer.LICENSE"
echo "$VERSION" > "$dest/model-viewer.VERSION"
echo "vendored @google/model-viewer $VERSION into $dest"
