#!/bin/sh
# The local environment's security scan: runbooks.security_scan in ragops.yaml
# (sh "$RAGOPS_SCRIPTS/security-scan.sh"), run by the pre-deploy runbook's security-scan gate from the
# directory of ragops.yaml. It ships inside the ragops package (ragops/scripts/), so a wheel has it too.
#   1. pip check: the packages of this environment (ragops and the service run from it) have
#      consistent, installed dependencies.
#   2. pip-audit, when installed: no known vulnerability in them (it needs the advisory database,
#      so network access). Without it the scan says so and checks consistency only.
# Production environments set their own scanner (image scan in CI, for example).
set -eu
py=${PYTHON:-${RAGOPS_PYTHON:-python3}}   # ragops sets RAGOPS_PYTHON: the environment it runs in
"$py" -m pip check
if "$py" -m pip_audit --version >/dev/null 2>&1; then
    "$py" -m pip_audit --progress-spinner off --strict
else
    echo "pip-audit is not installed: dependency consistency checked only (pip install pip-audit for the vulnerability audit)"
fi
