#!/usr/bin/env bash
# `make harden`: the hardening suites with the slow parts included, then the figures.
#
#   load      64-concurrent bursts, a 150-call and a 1,000-call soak (calls/s, RSS growth)
#   hostile   atheris fuzzing of the image loader (60 s), its regressions, a 1,000-file hostile folder
#   faults    downloads cut or answered with garbage, disk full, port taken, read-only data, index broken
#   kill      SIGKILL during a scan, LOUPE_KILL_ROUNDS (50) rounds per writer mode
#   security  hostile requests over every route, pickled weights, the dependency audit
#   offline   a whole session with no connection leaving loopback
#
# Figures: printed as "[hardening] ..." lines and kept in artifacts/hardening.json.
# Knobs: LOUPE_KILL_ROUNDS (50), LOUPE_FUZZ_SLOW_SECONDS (60), LOUPE_SOAK_CALLS (1000), PYTHON.
# Exit: non-zero when a suite failed; the dependency audit's own code is reported separately
# (3 = could not be audited here: no vulnerability service; that is not a pass).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
export LOUPE_KILL_ROUNDS="${LOUPE_KILL_ROUNDS:-50}"
export LOUPE_FUZZ_SLOW_SECONDS="${LOUPE_FUZZ_SLOW_SECONDS:-60}"
export LOUPE_HARDEN_SLOW=1
mkdir -p artifacts
rm -f artifacts/hardening.json

# -m '' overrides pyproject's addopts (-m 'not slow'): without it the soak and the long fuzz are
# deselected and their figures would read "(not run)". LOUPE_HARDEN_SLOW=1 lifts their own skip.
"$PY" -m pytest -s -p no:cacheprovider -q -m '' \
  tests/test_hardening_load.py tests/test_hardening_hostile.py tests/test_hardening_faults.py \
  tests/test_library_kill.py tests/test_hardening_security.py tests/test_hardening_offline.py \
  2>&1 | tee artifacts/harden.log \
  | { grep -E '^\[hardening\]|kill rounds|passed|failed|skipped|deselected|^(SKIPPED|FAILED|ERROR)' || true; }
status=${PIPESTATUS[0]}

# Every test named above must have run, the slow ones included: a deselected or slow-skipped
# test means the figures below are not all from this run.
deselected=$(grep -Eo '[0-9]+ deselected' artifacts/harden.log | tail -n 1 | grep -Eo '[0-9]+')
slow_skipped=$(grep -c 'slow: run with -m slow' artifacts/harden.log)
if [ "${deselected:-0}" -gt 0 ] || [ "${slow_skipped:-0}" -gt 0 ]; then
  echo
  echo "HARDEN FAILED: ${deselected:-0} test(s) deselected, ${slow_skipped:-0} slow test(s) skipped;"
  echo "make harden must run every test it names (check -m and LOUPE_HARDEN_SLOW in scripts/harden.sh)."
  [ "$status" -ne 0 ] || status=1
fi

echo
echo "== dependency audit (scripts/audit.sh)"
bash scripts/audit.sh
audit=$?
case $audit in
  0) echo "audit: clean" ;;
  1) echo "audit: KNOWN VULNERABILITIES (see above)" ;;
  3) echo "audit: NOT AUDITED here (no vulnerability service reachable) - run where PyPI's JSON API or OSV answers" ;;
  *) echo "audit: failed to run (exit $audit)" ;;
esac

echo
echo "== figures (artifacts/hardening.json)"
"$PY" - <<'EOF'
import json
from pathlib import Path

data = json.loads(Path("artifacts/hardening.json").read_text()) if Path("artifacts/hardening.json").exists() else {}
def g(section, *keys):
    d = data.get(section, {})
    return ", ".join(f"{k}={d.get(k)}" for k in keys) if d else "(not run)"
print("load burst 64      :", g("load_burst_64", "completed", "busy", "calls_per_s", "rss_mb", "rss_growth_last_round_pct"))
print("load soak 150      :", g("load_soak_150", "completed", "busy", "calls_per_s", "rss_growth_pct"))
for k in sorted(data):
    if k.startswith("load_soak_") and k != "load_soak_150":
        print(f"{k:19s}:", g(k, "completed", "busy", "calls_per_s", "rss_growth_pct"))
print("busy answer        :", g("load_busy_answer", "busy", "busy_status", "client_message"))
print("fuzz (fast)        :", g("fuzz_load_image_fast", "executions", "wall_s", "execs_per_s", "findings"))
print("fuzz (slow)        :", g("fuzz_load_image_slow", "executions", "wall_s", "execs_per_s", "findings"))
print("hostile folder     :", g("hostile_folder_scan", "entries", "photos_found", "captioned", "unreadable", "seconds"))
print("faults survived    :", g("faults_survived", "count"))
print("route probes       :", g("security_route_probes", "probes_refused", "probes_tried", "routes"))
print("pickled weights    :", g("security_pickle_resnet18", "refused"), "/", g("security_pickle_blip-base", "refused"))
print("offline session    :", g("offline_session", "non_loopback", "socket_events", "tokens_differ", "token_in_log"))
EOF
grep -h "kill rounds" artifacts/harden.log || true
exit "$status"
