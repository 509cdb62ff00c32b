#!/usr/bin/env bash
# Start a one-node SLURM (munged, slurmctld, slurmd) on this machine, as root: munge key, slurm.conf with one node and its GPUs, then the daemons.
#
# Usage: tests/slurm/start_slurm.sh [STATE_DIR]      (default: a fresh /tmp/slurm-ci.XXXXXX)
# Prints the state directory on its last line. PIDs of the daemons this script started are written to
# STATE_DIR/pids (one "name pid" per line); tests/slurm/stop_slurm.sh STATE_DIR stops exactly those.
#
# Installs Debian's slurm-wlm and munge with apt-get when missing. Writes /etc/slurm/slurm.conf and
# /etc/slurm/gres.conf (the default path is required: the job step strips SLURM_CONF); existing files are
# saved as *.pre-ci and put back by stop_slurm.sh. One node "localhost" with this machine's CPUs, a memory
# size below the machine's (SLURM rejects jobs asking more than RealMemory, snakemake-executor-plugin-slurm
# issue #320) and one fake GPU (gres gpu:1 on /dev/null) so `--gpus=1` jobs schedule. No cgroups, no
# accounting: Snakemake must use `slurm-status-command: squeue` (see profiles/slurm/config.yaml).
set -euo pipefail

if [ "$(id -u)" != "0" ]; then
  echo "start_slurm.sh: must run as root (it writes /etc/slurm and starts daemons)" >&2
  exit 2
fi

D="${1:-$(mktemp -d /tmp/slurm-ci.XXXXXX)}"
mkdir -p "$D"/state "$D"/spool "$D"/log
: > "$D/pids"

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1 || ! command -v sbatch >/dev/null 2>&1; then
  echo "start_slurm.sh: installing slurm-wlm and munge with apt-get" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# A controller already answering would shadow ours (same port): refuse rather than test the wrong cluster.
if [ -f /etc/slurm/slurm.conf ] && timeout 5 scontrol ping 2>/dev/null | grep -q "is UP"; then
  echo "start_slurm.sh: a SLURM controller is already running (scontrol ping); stop it first" >&2
  exit 1
fi

CPUS="$(nproc)"
# slurmd -C prints e.g. "NodeName=x CPUs=2 ... RealMemory=24000"; keep 1 GB for the OS and cap at 16000 MB.
MEM="$(/usr/sbin/slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)"
MEM="${MEM:-4000}"
MEM=$(( MEM > 17000 ? 16000 : MEM - 1000 ))

mkdir -p /etc/slurm
for f in slurm.conf gres.conf; do
  if [ -f "/etc/slurm/$f" ] && ! grep -q "^# written by tests/slurm/start_slurm.sh" "/etc/slurm/$f"; then
    cp -p "/etc/slurm/$f" "/etc/slurm/$f.pre-ci"
  fi
done
cat > /etc/slurm/slurm.conf <<CONF
# written by tests/slurm/start_slurm.sh (state in $D)
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
GresTypes=gpu
ReturnToService=2
MinJobAge=300
NodeName=localhost CPUs=$CPUS RealMemory=$MEM Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
cat > /etc/slurm/gres.conf <<CONF
# written by tests/slurm/start_slurm.sh: one fake GPU so --gpus=1 jobs schedule (CUDA_VISIBLE_DEVICES=0)
AutoDetect=off
NodeName=localhost Name=gpu Count=1 File=/dev/null
CONF

# munged: reuse a running one (not ours to stop), else start it and record its PID.
mkdir -p /run/munge && chown munge:munge /run/munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  echo "start_slurm.sh: reusing the running munged" >&2
else
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  echo "munged $(cat /run/munge/munged.pid)" >> "$D/pids"
  munge -n | unmunge | grep -q "STATUS:.*Success" || { echo "start_slurm.sh: munge self-test failed" >&2; exit 1; }
fi

# Wait for a daemon's PID file, record the PID, and check the process is still alive a moment later.
started() {
  local name="$1" pidfile="$2" pid=""
  for _ in $(seq 100); do [ -s "$pidfile" ] && break; sleep 0.1; done
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  if [ -z "$pid" ]; then
    echo "start_slurm.sh: $name wrote no PID file $pidfile; see $D/log/$name.log" >&2
    tail -5 "$D/log/$name.log" >&2 || true
    exit 1
  fi
  echo "$name $pid" >> "$D/pids"
  sleep 0.5
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "start_slurm.sh: $name ($pid) exited right after starting; see $D/log/$name.log" >&2
    tail -5 "$D/log/$name.log" >&2 || true
    exit 1
  fi
}
/usr/sbin/slurmctld
started slurmctld "$D/slurmctld.pid"
/usr/sbin/slurmd -N localhost   # -N: the container's hostname is not "localhost"
started slurmd "$D/slurmd.pid"

# Wait until the node is idle (slurmd registered), at most 30 s.
for _ in $(seq 60); do
  state="$(sinfo -h -N -o '%t' 2>/dev/null | head -1 || true)"
  [ "$state" = "idle" ] && break
  sleep 0.5
done
if [ "$state" != "idle" ]; then
  echo "start_slurm.sh: node not idle after 30 s (state '$state'); see $D/log/slurmctld.log and $D/log/slurmd.log" >&2
  exit 1
fi
echo "$D"
