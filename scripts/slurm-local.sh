#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for tests and trying
# `lpo sweep --backend slurm` by hand.
#
#   scripts/slurm-local.sh start DIR   # installs slurm-wlm (apt-get) if missing,
#                                      # writes DIR/slurm.conf, starts munged,
#                                      # slurmctld and slurmd, waits for the node
#   scripts/slurm-local.sh stop DIR    # cancels its jobs, stops the daemons started in DIR
#   scripts/slurm-local.sh install     # only installs slurm-wlm and munge
#
# Then point the client commands at the cluster: `export SLURM_CONF=DIR/slurm.conf`.
# Works in a container without systemd or cgroups (proctrack/linuxproc,
# task/none) and without a database: there is no accounting storage, so
# `sacct` is unavailable and `lpo status` reads Slurm's state from `squeue`.
# Every daemon runs as root with its files, sockets and pid files in DIR.
# A requeued job may start again after 10 s (cred_expire; Slurm's default
# is 120 s) and the scheduler looks every 2 s: a test cluster, not a tuned one.
# Ports: LPO_SLURM_PORT (slurmctld, default 6817) and the next one (slurmd).
set -euo pipefail

usage() {
    echo "usage: $0 start|stop DIR | install" >&2
    exit 2
}
installed() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
        command -v sbatch >/dev/null && command -v munged >/dev/null
}

install() {
    installed && return
    if [ "$(id -u)" != 0 ]; then
        echo "slurm-wlm is not installed and this is not root: install slurm-wlm and munge" >&2
        exit 1
    fi
    # One installer at a time (scripts/test.sh starts one while it builds,
    # and a test may start a cluster meanwhile): the others wait for it.
    (
        if ! flock -w 1200 9; then
            echo "waited 20 minutes for another slurm-wlm install (/var/lock/lpo-slurm-install.lock)" >&2
            exit 1
        fi
        installed && exit 0
        echo "installing slurm-wlm and munge with apt-get" >&2
        export DEBIAN_FRONTEND=noninteractive
        timeout 600 apt-get update -qq >&2
        timeout 600 apt-get install -y -qq --no-install-recommends slurm-wlm munge >&2
    ) 9>/var/lock/lpo-slurm-install.lock
}

# The action and its arguments are checked before anything is written.
case "${1:-} $#" in
"install 1") install; exit 0 ;;
"start 2" | "stop 2") ;;
*) usage ;;
esac
action=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)
port=${LPO_SLURM_PORT:-6817}
host=$(hostname -s)

write_conf() {
    local cpus memory
    cpus=$(nproc)
    memory=$(awk '/MemTotal/ { print int($2 / 1024 / 2) }' /proc/meminfo)
    mkdir -p "$dir/state" "$dir/spool" "$dir/log"
    cat >"$dir/slurm.conf" <<EOF
ClusterName=lpo-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge.socket,cred_expire=10
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=5
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    install
    stop_daemons
    write_conf
    if [ ! -s "$dir/munge.key" ]; then
        dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
    fi
    chmod 0400 "$dir/munge.key"
    mkdir -p "$dir/munge"
    chmod 0700 "$dir/munge"
    munged --force --key-file="$dir/munge.key" --socket="$dir/munge.socket" \
        --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/seed"
    export SLURM_CONF=$dir/slurm.conf
    slurmctld -c -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF"
    # The node must be up before jobs are accepted: at most 60 s.
    local state=""
    for _ in $(seq 120); do
        state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
        case $state in
        idle* | mixed* | allocated*) echo "slurm up: SLURM_CONF=$SLURM_CONF" >&2; return ;;
        esac
        sleep 0.5
    done
    echo "the node did not come up (state: '${state}'); logs in $dir/log" >&2
    tail -n 20 "$dir"/log/*.log >&2 || true
    exit 1
}

# Stops the daemons whose pid files are in $dir (SIGTERM, then SIGKILL after 10 s).
stop_daemons() {
    local name pid
    for name in slurmd slurmctld munged; do
        [ -s "$dir/$name.pid" ] || continue
        pid=$(cat "$dir/$name.pid")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$dir/$name.pid"
    done
}

# Cancels every job of this cluster (their processes would outlive slurmd)
# and waits up to 30 s for them to end, then stops the daemons.
stop() {
    if [ -s "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
        export SLURM_CONF=$dir/slurm.conf
        timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 60); do
            [ -z "$(timeout 10 squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
    stop_daemons
}

case $action in
start) start ;;
stop) stop ;;
esac
