#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for trying (and testing) profiles/slurm.
#
#   tests/cluster/start_slurm.sh [start]   # install if needed, configure, start, wait for idle
#   tests/cluster/start_slurm.sh stop      # cancel its jobs, stop its daemons (by their pids)
#   tests/cluster/start_slurm.sh env       # print the line that points clients at it
#
# Everything (munge key and socket, slurm.conf, state, logs, pid files) lives in
# $SLURM_TEST_DIR (default: ${TMPDIR:-/tmp}/gantrace-slurm); the system's /etc/slurm and
# /etc/munge are neither read nor written. Client commands (sbatch, squeue, ...) find this
# cluster through SLURM_CONF (and PATH, see write_config): `source "$SLURM_TEST_DIR/env.sh"`.
#
# The node has this machine's CPUs and memory (at least 16 GB declared), two partitions on
# it (`cpu`, the default, and `gpu`) and one stand-in GPU (gres.conf `File=/dev/null`):
# `--gpus=1` jobs are scheduled and get CUDA_VISIBLE_DEVICES / SLURM_JOB_GPUS, but no CUDA
# device exists.
# There is no accounting database (no slurmdbd): `sacct` knows no jobs, so Snakemake's
# SLURM plugin must poll with `--slurm-status-command squeue`, and MinJobAge keeps finished
# jobs visible to squeue for 10 minutes.
#
# Needs root (slurmd runs jobs as their user). Missing packages (slurm-wlm, munge) are
# installed with apt-get when run as root. Exit status 3: cannot run here (not root, or
# the packages cannot be installed); the message says why.
set -euo pipefail

DIR="${SLURM_TEST_DIR:-${TMPDIR:-/tmp}/gantrace-slurm}"
PORT="${SLURM_TEST_PORT:-26817}" # slurmctld; slurmd listens on PORT+1
MIN_MEM_MB="${SLURM_TEST_MIN_MEM_MB:-16384}"
NODE="$(hostname -s 2>/dev/null || uname -n)"
NODE="${NODE%%.*}"
CONF="$DIR/etc/slurm.conf"
DAEMONS=(slurmd slurmctld munged) # stop order
COMMANDS=(munged slurmctld slurmd sbatch srun squeue sinfo scontrol scancel)

say() { echo "[slurm-test] $*" >&2; }
cannot() {
    say "cannot run here: $*"
    exit 3
}

pid_of() { # pid from a daemon's pid file, if that process is alive and is that daemon
    local f="$DIR/run/$1.pid" pid
    [[ -s $f ]] || return 1
    pid="$(tr -dc 0-9 <"$f")"
    [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] && echo "$pid"
}

install_packages() {
    local missing=()
    for c in "${COMMANDS[@]}"; do
        command -v "$c" >/dev/null || missing+=("$c")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || cannot "no apt-get to install slurm-wlm and munge"
    say "installing slurm-wlm and munge (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends slurm-wlm munge >"$DIR/log/apt.log" 2>&1; then
        apt-get update -q >>"$DIR/log/apt.log" 2>&1 || true
        apt-get install -y -q --no-install-recommends slurm-wlm munge >>"$DIR/log/apt.log" 2>&1 ||
            cannot "apt-get install slurm-wlm munge failed: $(tail -n 3 "$DIR/log/apt.log" | tr '\n' ' ')"
    fi
    for c in "${COMMANDS[@]}"; do
        command -v "$c" >/dev/null || cannot "$c still missing after installing slurm-wlm and munge"
    done
}

write_config() {
    # CPUs, sockets and cores as slurmd detects them on this machine; its memory, but at
    # least MIN_MEM_MB: sbatch refuses a --mem above the node's, and the profile asks up to
    # 16 GB per job. Memory is not a consumable here (CR_Core), so nothing is overbooked.
    local hw mem
    hw="$(slurmd -C 2>/dev/null | head -n 1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ RealMemory=[0-9]*//')"
    [[ $hw == *CPUs=* ]] || hw="CPUs=$(nproc)"
    mem=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024))
    ((mem >= MIN_MEM_MB)) || mem=$MIN_MEM_MB
    cat >"$CONF" <<EOF
# Written by tests/cluster/start_slurm.sh: a throwaway one-node cluster.
ClusterName=gantrace-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
MailProg=/bin/true
# No cgroups (containers, CI runners): track processes by parent pid, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
# cons_tres schedules --gpus; cores are consumed, memory requests are only checked
# against the node's memory (a test box runs several 4-16 GB jobs side by side).
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
# No accounting database: squeue is the only record, keep finished jobs in it 10 min.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
# A job past its time limit is killed quickly (SIGTERM, then SIGKILL 5 s later).
KillWait=5
OverTimeLimit=0
ReturnToService=2
# config_overrides: the node is as declared here (memory above), not as slurmd measures it.
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 $hw RealMemory=$mem Gres=gpu:1 State=UNKNOWN
# Two jobs per core (OverSubscribe=FORCE:2): a test box has few cores, and test jobs mostly
# wait (Python start-up, a deliberate overrun); the stand-in GPU is never shared.
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE OverSubscribe=FORCE:2 State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE OverSubscribe=FORCE:2 State=UP
EOF
    # A stand-in GPU: SLURM only needs a device file to hand out.
    echo "NodeName=$NODE Name=gpu File=/dev/null" >"$DIR/etc/gres.conf"
    # snakemake-executor-plugin-slurm-jobstep clears SLURM_* variables (SLURM_CONF too)
    # before its `srun` inside a job; a site cluster, configured at /etc/slurm, does not
    # notice, this private one would be lost: an `srun` first on PATH puts SLURM_CONF back.
    local srun
    srun="$(PATH="${PATH//$DIR\/bin:/}" command -v srun)"
    printf '#!/bin/sh\nSLURM_CONF=%s exec %s "$@"\n' "$CONF" "$srun" >"$DIR/bin/srun"
    chmod +x "$DIR/bin/srun"
    printf 'export SLURM_CONF=%s PATH=%s/bin:$PATH\n' "$CONF" "$DIR" >"$DIR/env.sh"
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2 t=0
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((t++ < limit * 5)) || {
            say "timed out after ${limit}s waiting for $what"
            return 1
        }
        sleep 0.2
    done
}

# One line per partition the node is in; idle in all of them.
node_idle() { [[ $(sinfo -h -N -n "$NODE" -o %T 2>/dev/null | sort -u) == idle ]]; }

start() {
    [[ $(id -u) == 0 ]] || cannot "not root (slurmd runs jobs as their user; apt-get installs)"
    mkdir -p "$DIR"/{bin,etc,munge,state,spool,run,log}
    install_packages
    if pid_of slurmctld >/dev/null || pid_of slurmd >/dev/null || pid_of munged >/dev/null; then
        say "already running in $DIR; stopping it first"
        stop
    fi
    trap 'say "start failed; logs in $DIR/log"; tail -n 5 "$DIR"/log/*.log >&2 || true; stop' ERR
    write_config
    export SLURM_CONF="$CONF"
    local t0=$SECONDS

    # munge: a fresh key, its own socket (no system munged needed or touched).
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1 count=1024 status=none
    chmod 755 "$DIR/munge" && chmod 400 "$DIR/munge/munge.key"
    munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munged.seed"
    wait_for 20 munged pid_of munged

    # -c: a clean start, no jobs or node state from an earlier cluster in this folder.
    slurmctld -c -f "$CONF"
    wait_for 30 slurmctld scontrol ping
    slurmd -f "$CONF" -N "$NODE"
    wait_for 60 "node $NODE to be idle" node_idle
    trap - ERR
    say "up in $((SECONDS - t0)) s: $(sinfo -h -o '%P %D %c %m %G %T' | tr '\n' ';')"
    say "pids: slurmctld $(pid_of slurmctld) slurmd $(pid_of slurmd) munged $(pid_of munged)"
    cat "$DIR/env.sh"
}

stop() {
    # Jobs first: a job's processes (slurmstepd) outlive slurmd.
    if pid_of slurmctld >/dev/null && [[ -f $CONF ]]; then
        SLURM_CONF="$CONF" scancel --quiet --user "$(id -un)" 2>/dev/null || true
        local t=0
        while SLURM_CONF="$CONF" squeue -h -t running,completing -o %i 2>/dev/null | grep -q . &&
            ((t++ < 50)); do
            sleep 0.2
        done
    fi
    local d pid t
    for d in "${DAEMONS[@]}"; do
        pid="$(pid_of "$d")" || continue
        kill -TERM "$pid" 2>/dev/null || true
        t=0
        while kill -0 "$pid" 2>/dev/null && ((t++ < 50)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            say "$d ($pid) ignored SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "stopped $d ($pid)"
    done
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
env) cat "$DIR/env.sh" ;;
*)
    echo "usage: $0 [start|stop|env]" >&2
    exit 2
    ;;
esac
