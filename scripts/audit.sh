#!/usr/bin/env bash
# Dependency audit (CI): pip-audit over the installed environment, or over pinned requirement files.
#
#   scripts/audit.sh                    audit every package installed in the venv (the app itself,
#                                       installed editable, is skipped)
#   scripts/audit.sh -r FILE [-r ...]   audit pinned requirement files as they are (--no-deps)
#
# Exit codes:
#   0  every package was audited and none has a known vulnerability
#   1  known vulnerabilities (listed)
#   3  packages could NOT be audited: the vulnerability service is unreachable or does not know
#      them. This is not a pass; CI must show it (a network-less machine cannot audit).
#   2  usage, or pip-audit missing (pip install pip-audit==2.10.1)
#
# AUDIT_SERVICE=pypi|osv chooses the vulnerability service (default pypi). PYTHON picks the
# interpreter whose environment is audited (default .venv/bin/python).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
SERVICE="${AUDIT_SERVICE:-pypi}"

if ! "$PY" -m pip_audit --version >/dev/null 2>&1; then
  echo "audit: pip-audit is not installed for $PY (pip install pip-audit==2.10.1)" >&2
  exit 2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
args=(--format json --progress-spinner off --vulnerability-service "$SERVICE" --output "$work/report.json")
if [ $# -gt 0 ]; then
  args+=(--no-deps --disable-pip "$@")
  what="requirements: $*"
else
  args+=(--skip-editable)
  what="environment of $PY"
fi

"$PY" -m pip_audit "${args[@]}" >"$work/stdout" 2>"$work/stderr"
rc=$?

"$PY" - "$work/report.json" "$rc" "$SERVICE" "$what" "$work/stderr" <<'EOF'
import json, sys
report, rc, service, what, stderr = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
err = open(stderr, encoding="utf-8", errors="replace").read().strip().splitlines()
try:
    data = json.load(open(report, encoding="utf-8"))
except (OSError, ValueError):
    last = err[-1] if err else f"pip-audit exited {rc} with no report"
    print(f"audit: could not be audited: pip-audit failed against the '{service}' service ({what}): {last}")
    sys.exit(3)
deps = data.get("dependencies", data if isinstance(data, list) else [])
local = [d for d in deps if "editable" in (d.get("skip_reason") or "")]  # the app itself
deps = [d for d in deps if d not in local]
skipped = [d for d in deps if d.get("skip_reason")]
vulnerable = [d for d in deps if d.get("vulns")]
audited = len(deps) - len(skipped)
for d in vulnerable:
    for v in d["vulns"]:
        fix = ", ".join(v.get("fix_versions") or []) or "no fix listed"
        print(f"{d['name']} {d.get('version', '?')} {v['id']} (fixed in: {fix})")
print(f"audit: {what}: {len(deps)} packages, {audited} audited, {len(skipped)} could not be audited, "
      f"{sum(len(d['vulns']) for d in vulnerable)} known vulnerabilities in {len(vulnerable)} packages "
      f"(service: {service})")
if vulnerable:
    sys.exit(1)
if skipped:
    reasons = sorted({d["skip_reason"].split(":")[0] for d in skipped})
    names = ", ".join(f"{d['name']} {d.get('version', '')}".strip() for d in skipped[:8])
    more = f" and {len(skipped) - 8} more" if len(skipped) > 8 else ""
    print(f"audit: could not be audited ({'; '.join(reasons)}): {names}{more}. "
          f"The '{service}' vulnerability service is unreachable from here or does not know these "
          f"versions: this is NOT a pass.")
    sys.exit(3)
sys.exit(0)
EOF
