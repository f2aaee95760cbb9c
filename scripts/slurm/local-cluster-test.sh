#!/usr/bin/env bash
# Starts a real single-node Slurm on this machine from Debian's packages
# (munge, slurmctld, slurmd), submits a 4-task datagen array of
# manifests/demo.yaml with sparse IDs (--array=1-7:2), merges it with a
# dependent job, and checks the merged dataset is byte-identical to a local
# single-process run. Needs root; not part of `make test`.
#
#   sudo bash scripts/slurm/local-cluster-test.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
build=${1:-build}
opforge="$root/$build/cli/opforge"
[ "$(id -u)" -eq 0 ] || { echo "local-cluster-test: run as root (it starts munged, slurmctld and slurmd)" >&2; exit 2; }
[ -x "$opforge" ] || { echo "local-cluster-test: build first (make build); $opforge is missing" >&2; exit 2; }

missing=()
for pkg in munge slurmctld slurmd slurm-client; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

work=$(mktemp -d /tmp/opforge-slurm.XXXXXX)
chmod 755 "$work"
node=$(hostname -s)
cleanup() {
  for pidfile in "$work/slurmd.pid" "$work/slurmctld.pid" "$work/munged.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  sleep 1
}
trap cleanup EXIT

# munge: a key of our own and a private socket, so nothing on the machine changes.
mkdir -p "$work/munge"
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chown -R munge:munge "$work/munge"
chmod 700 "$work/munge"
chmod 400 "$work/munge/munge.key"
mkdir -p /run/munge && chown munge:munge /run/munge
runuser -u munge -- /usr/sbin/munged --key-file="$work/munge/munge.key" --pid-file="$work/munge/munged.pid" \
  --socket=/run/munge/munge.socket.2 --log-file="$work/munge/munged.log" --seed-file="$work/munge/seed" --force
cp "$work/munge/munged.pid" "$work/munged.pid" 2>/dev/null || true

cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
cat > "$work/slurm.conf" <<CONF
ClusterName=opforgetest
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=$node CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=opforge Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
mkdir -p "$work/state" "$work/spool"
export SLURM_CONF=$work/slurm.conf
/usr/sbin/slurmctld -f "$SLURM_CONF"
/usr/sbin/slurmd -f "$SLURM_CONF"

for _ in $(seq 60); do
  state=$(sinfo -h -n "$node" -o %t 2>/dev/null || true)
  [ "$state" = "idle" ] && break
  sleep 1
done
[ "$state" = "idle" ] || { echo "local-cluster-test: node never became idle (state '$state'); see $work/*.log" >&2; exit 1; }
echo "slurm up: node $node ($cpus CPUs), partition opforge"

out=$work/sharded
jobid=$(sbatch --parsable --array=1-7:2 --cpus-per-task=1 --chdir="$root" --output="$work/task-%A_%a.log" \
  --export=ALL,OPFORGE="$opforge" scripts/slurm/datagen-array.sbatch manifests/demo.yaml - "$out")
merge_id=$(sbatch --parsable --dependency=afterok:"$jobid" --chdir="$root" --output="$work/merge-%j.log" \
  --export=ALL,OPFORGE="$opforge" scripts/slurm/merge.sbatch "$out")
echo "submitted array $jobid (IDs 1,3,5,7) and merge $merge_id"

for _ in $(seq 600); do
  [ -z "$(squeue -h -j "$jobid,$merge_id" 2>/dev/null)" ] && break
  sleep 1
done
for log in "$work"/task-*.log "$work"/merge-*.log; do echo "--- $(basename "$log")"; cat "$log"; done
[ -f "$out/metadata.jsonl" ] || { echo "local-cluster-test: FAILED: the merge wrote no metadata.jsonl" >&2; exit 1; }

"$opforge" datagen manifests/demo.yaml --out "$work/local" --quiet
if diff -r --exclude=.opforge "$work/local" "$out" > "$work/diff.txt"; then
  echo "local-cluster-test: PASSED: the 4-shard Slurm array + merge equals the single-process run" \
       "($(wc -l < "$out/metadata.jsonl") pairs, $(find "$out" -path "$out/.opforge" -prune -o -type f -print | wc -l) files)"
else
  echo "local-cluster-test: FAILED: the datasets differ:" >&2
  head -20 "$work/diff.txt" >&2
  exit 1
fi
