#!/bin/sh
# The local environment's security scan: runbooks.security_scan in ragops.yaml, run by the
# pre-deploy runbook's security-scan gate (from the directory of ragops.yaml).
#   1. pip check: the packages of this environment (ragops and the service run from it) have
#      consistent, installed dependencies.
#   2. pip-audit, when installed: no known vulnerability in them (it needs the advisory database,
#      so network access). Without it the scan says so and checks consistency only.
# Production environments set their own scanner (image scan in CI, for example).
set -eu
py=${PYTHON:-python3}
"$py" -m pip check
if "$py" -m pip_audit --version >/dev/null 2>&1; then
    "$py" -m pip_audit --progress-spinner off --strict
else
    echo "pip-audit is not installed: dependency consistency checked only (pip install pip-audit for the vulnerability audit)"
fi
