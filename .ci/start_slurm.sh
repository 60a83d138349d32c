#!/usr/bin/env bash
# A one-node SLURM cluster for tests/test_slurm_real.py, from Debian's
# slurm-wlm and munge: no systemd, no cgroups, no accounting database.
# Run as root. A second call while the node answers is a no-op. When a
# daemon does not come up, the reason (the daemon and the last lines of its
# log) goes to stderr and to $XDC_SLURM_DIR/start_failure.txt, which the
# tests quote when they skip.
set -euo pipefail

DIR=${XDC_SLURM_DIR:-/var/lib/xdc-slurm}
CONF=/etc/slurm/slurm.conf
NODE=$(hostname -s)
FAILURE=$DIR/start_failure.txt
WAIT_S=${XDC_SLURM_WAIT_S:-60}

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null; }
# Responding states; a trailing '*' (not responding), down or drained is not.
node_up() { [[ "$(node_state)" =~ ^(idle|mixed|allocated|completing)$ ]]; }

fail() {  # fail MESSAGE [LOG]
    mkdir -p "$DIR"
    {
        echo "SLURM test cluster did not start: $1"
        if [ -n "${2:-}" ] && [ -f "$2" ]; then
            echo "last lines of $2:"
            tail -n 15 "$2"
        fi
    } | tee "$FAILURE" >&2
    exit 1
}

if command -v sinfo >/dev/null && node_up; then
    echo "SLURM test cluster already up (node $NODE $(node_state))"
    exit 0
fi
[ "$(id -u)" = 0 ] || fail "must run as root (starts daemons)"

command -v slurmctld >/dev/null && command -v munged >/dev/null \
    || fail "slurmctld or munged not found: apt-get install slurm-wlm munge (.ci/run does)"
mkdir -p "$DIR"/{state,spool,log}
rm -f "$FAILURE"

# munge: nothing creates its run directory without systemd; munged refuses
# to run as root.
MUNGE_LOG=/var/log/munge/munged.log
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged || fail "munged exited" "$MUNGE_LOG"
    munge -n | unmunge >/dev/null || fail "munged does not answer" "$MUNGE_LOG"
fi

# Addresses are given, so the daemons need not resolve the hostname. At
# least 2 CPUs so that a 2-task job fits on a 1-core machine
# (config_overrides: slurmd trusts the node line, not the hardware).
CPUS=$(( $(nproc) > 2 ? $(nproc) : 2 ))
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
# Fast settings: a short credential lifetime and scheduler intervals let a
# requeued job start again in ~15 s (defaults: minutes); KillWait=5 stops
# the other tasks of a requeued job before they can finish on their own.
cat > "$CONF" <<EOF
ClusterName=xdc-ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SchedulerParameters=sched_interval=5,bf_interval=2
ReturnToService=2
JobRequeue=1
KillWait=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

running() { [ -s "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }
start_daemon() {  # start_daemon NAME, unless it runs
    running "$1" && return
    local out
    out=$("$1" 2>&1) || fail "$1 exited: $out" "$DIR/log/$1.log"
}
start_daemon slurmctld
start_daemon slurmd

for _ in $(seq "$((WAIT_S * 2))"); do
    if node_up; then
        echo "SLURM test cluster up: node $NODE $(node_state), $CPUS CPUs"
        exit 0
    fi
    sleep 0.5
done
if ! scontrol ping >/dev/null 2>&1; then
    fail "slurmctld does not answer after ${WAIT_S}s" "$DIR/log/slurmctld.log"
fi
running slurmd || fail "slurmd exited" "$DIR/log/slurmd.log"
fail "slurmd runs but node $NODE is '$(node_state)' after ${WAIT_S}s\
 (reason: $(sinfo -h -R -o %E))" "$DIR/log/slurmd.log"
