#!/usr/bin/env bash
# Print the path of the SARIF 2.1.0 JSON schema, fetching it once from the npm registry (the
# @microsoft/jest-sarif package ships it) into a cache outside the clone. tests/integration/test_audit.py
# validates `ragops audit -o sarif` against it with check-jsonschema (--regex-variant python: the
# schema's `language` pattern is not an ECMAScript regex).
set -euo pipefail
CACHE="${RAGOPS_SCHEMA_CACHE:-/var/cache/ragops-schemas}"
SCHEMA="$CACHE/sarif-2.1.0-rtm.5.json"
if [[ ! -s $SCHEMA ]]; then
    mkdir -p "$CACHE"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent @microsoft/jest-sarif@1.0.0-beta.0 >/dev/null)
    tar -xzf "$work"/microsoft-jest-sarif-1.0.0-beta.0.tgz -C "$work" package/lib/schemas/sarif-2.1.0-rtm.5.json
    mv "$work/package/lib/schemas/sarif-2.1.0-rtm.5.json" "$SCHEMA"
fi
echo "$SCHEMA"
