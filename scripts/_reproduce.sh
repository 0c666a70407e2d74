#!/usr/bin/env bash
# Shared body of scripts/reproduce_rN.sh: `_reproduce.sh rN [Hydra overrides...]`.
# 1. otlab train experiment=report_rN (a multirun preset) into a known sweep dir;
# 2. otlab table <sweep dir> --report rN, also written to <sweep dir>/table.md and table.csv.
# The table is printed even when the sweep stopped early (a row whose method is not there yet, or a job that
# crashed): finished runs have their result.json, failed ones are rows marked failed.
set -uo pipefail
report="$1"; shift
budget=cpu
for arg in "$@"; do
  case "$arg" in budget=*) budget="${arg#budget=}" ;; esac
done
sweep_dir="${SWEEP_DIR:-outputs/sweeps/report_${report}_${budget}_$(date +%Y-%m-%d_%H-%M-%S)}"
launcher=()
jobs="${JOBS:-2}"
if [ "$jobs" -gt 1 ] && python -c "import hydra_plugins.hydra_joblib_launcher" 2>/dev/null; then
  # one intra-op thread per job: two single-threaded jobs beat one two-threaded job on small nets
  launcher=(hydra/launcher=joblib "hydra.launcher.n_jobs=${jobs}" num_threads=1)
fi
otlab train "experiment=report_${report}" "hydra.sweep.dir=${sweep_dir}" "${launcher[@]}" "$@"
train_status=$?
if [ "$train_status" -ne 0 ]; then
  echo "reproduce_${report}: the sweep ended with status ${train_status}; tabulating the runs it left" >&2
fi
otlab table "$sweep_dir" --report "$report" --out "${sweep_dir}/table.md" || exit $?
otlab table "$sweep_dir" --report "$report" --format csv --out "${sweep_dir}/table.csv" > /dev/null
echo "sweep dir: ${sweep_dir}"
exit "$train_status"
