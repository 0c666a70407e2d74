#!/usr/bin/env bash
# Reproduce report R1's table (shared REPORTS.md): train every row of conf/experiment/report_r1.yaml with
# several seeds in one Hydra multirun, then print our leaderboard beside the published values and say whether
# the orderings agree.
#   scripts/reproduce_r1.sh [budget=smoke|cpu|full] [more Hydra overrides...]
# Env: OTLAB_DATA (where MNIST / Fashion-MNIST live), JOBS (parallel jobs through the joblib launcher when it
# is installed, default 2; JOBS=1 runs one job at a time).
set -uo pipefail
REPORT=r1
exec "$(dirname "$0")/_reproduce.sh" "$REPORT" "$@"
