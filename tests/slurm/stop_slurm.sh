#!/usr/bin/env bash
# Stop the daemons that tests/slurm/start_slurm.sh started, by PID (never by name), and remove the
# /etc/slurm/*.conf it wrote (putting back any it replaced).   Usage: tests/slurm/stop_slurm.sh STATE_DIR
set -uo pipefail
D="${1:?usage: stop_slurm.sh STATE_DIR (the directory start_slurm.sh printed)}"
[ -f "$D/pids" ] || { echo "stop_slurm.sh: no $D/pids; nothing to stop" >&2; exit 0; }

# slurmd first, then slurmctld, then munged: the reverse of the start order.
for name in slurmd slurmctld munged; do
  pid="$(awk -v n="$name" '$1 == n {print $2}' "$D/pids")"
  [ -n "$pid" ] || continue
  kill "$pid" 2>/dev/null || continue
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "stop_slurm.sh: $name ($pid) ignored SIGTERM for 5 s; sending SIGKILL" >&2
    kill -9 "$pid" 2>/dev/null || true
  fi
done

# Remove our config (or put back the one it replaced): a slurm.conf naming a controller that is down makes
# every later `snakemake` call on this machine wait ~10 s (the slurm executor plugin runs `scontrol show config`).
for f in slurm.conf gres.conf; do
  if [ -f "/etc/slurm/$f.pre-ci" ]; then
    mv -f "/etc/slurm/$f.pre-ci" "/etc/slurm/$f"
  elif grep -q "^# written by tests/slurm/start_slurm.sh" "/etc/slurm/$f" 2>/dev/null; then
    rm -f "/etc/slurm/$f"
  fi
done
exit 0
