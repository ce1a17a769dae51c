#!/usr/bin/env bash
# Single-node SLURM "cluster" on this machine, for tests of the Snakemake
# SLURM profile (profiles/slurm). Debian packages, loopback only, as root.
#
#   tests/slurm/cluster.sh up      # install if missing, configure, start, wait for an idle node
#   tests/slurm/cluster.sh down    # stop exactly the daemons `up` started (by recorded pid)
#   tests/slurm/cluster.sh status  # show what runs; exit 0 iff the node is up and usable
#   tests/slurm/cluster.sh env     # print `export SLURM_CONF=...` for other shells
#
# All three commands are idempotent: `up` on a running cluster and `down` on a
# stopped one do nothing and exit 0.
#
# Environment:
#   ASSAY_SLURM_STATE    state dir (default /tmp/assay-slurm): slurm.conf, pid
#                        files, daemon logs, spool/state dirs, munge socket,
#                        jobcomp.log (one line per finished job)
#   ASSAY_SLURM_TIMEOUT  seconds `up` waits for the node to become idle (default 60)
#   ASSAY_SLURM_NODE     node name (default assay-node)
#   ASSAY_SLURM_PARTITION partition name (default main)
#   ASSAY_SLURM_CTLD_PORT / ASSAY_SLURMD_PORT   ports (default 6817 / 6818)
#   ASSAY_SLURMD_TIMEOUT  SlurmdTimeout: seconds before slurmctld marks a silent node
#                        DOWN and ends its jobs NODE_FAIL (default 300, SLURM's own;
#                        tests/test_slurm_faults.py uses 20 for its own cluster)
#   ASSAY_SLURM_CRED_EXPIRE  AuthInfo cred_expire: also how long a requeued job waits
#                        before it may start again (default 120, SLURM's own; the
#                        fault tests use 10)
#   ASSAY_SLURM_ETC_COPY  1 (default): copy the config to /etc/slurm/slurm.conf (see
#                        below); 0: never touch /etc/slurm/slurm.conf, for a second
#                        instance beside the shared one (its clients then need
#                        SLURM_CONF=$ASSAY_SLURM_STATE/slurm.conf, always)
#
# Design notes
# * Where the config lives. The canonical file is $STATE/slurm.conf; the
#   daemons get it with -f. Client commands (sinfo, sbatch, squeue, scontrol,
#   and srun/slurmstepd inside jobs) find their config through SLURM_CONF or,
#   failing that, /etc/slurm/slurm.conf. Relying on SLURM_CONF alone is
#   fragile: every process that calls a SLURM client (snakemake and its
#   executor plugin, pytest subprocesses, a developer's second shell) must
#   have it exported, and a missing one gives a confusing "Could not establish
#   a configuration source". So `up` ALSO copies the config to
#   /etc/slurm/slurm.conf -- but only when that file is absent or was written
#   by this script (it carries the marker line below); a foreign
#   /etc/slurm/slurm.conf is never touched, and then SLURM_CONF is required
#   (`cluster.sh env`). `down` removes the copy again if it is ours.
# * Our own munged, with its own socket, pid, log and seed file under $STATE
#   (AuthInfo=socket=...), so a system munged, if any, is neither needed nor
#   disturbed. It runs as the `munge` user (the package creates it) with the
#   package's key /etc/munge/munge.key (created here if missing).
# * Daemons run in the foreground (-F / -D) under setsid, so `$!` is the
#   daemon's own pid; that pid is written to $STATE/<daemon>.pid and is all
#   `down` ever signals (after checking /proc/<pid>/comm still names the
#   daemon, so a recycled pid is never hit).
# * No accounting storage (no slurmdbd/MariaDB): `sacct` exists but fails, so
#   the profile sets `slurm-status-command: squeue`, and MinJobAge=300 keeps
#   finished jobs visible to squeue for 5 minutes. Finished jobs are recorded
#   by jobcomp/filetxt in $STATE/jobcomp.log (JobId=... JobName=...
#   JobState=COMPLETED|FAILED|... ExitCode=...), which tests can read.
# * No cgroups here: proctrack/linuxproc + task/none. The daemons bind
#   0.0.0.0 (SLURM has no listen-address option); every address in the
#   config is loopback.
set -euo pipefail

STATE=${ASSAY_SLURM_STATE:-/tmp/assay-slurm}
TIMEOUT=${ASSAY_SLURM_TIMEOUT:-60}
NODE=${ASSAY_SLURM_NODE:-assay-node}
PARTITION=${ASSAY_SLURM_PARTITION:-main}
CTLD_PORT=${ASSAY_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${ASSAY_SLURMD_PORT:-6818}
ETC_COPY=${ASSAY_SLURM_ETC_COPY:-1}
SLURMD_TIMEOUT=${ASSAY_SLURMD_TIMEOUT:-300}
CRED_EXPIRE=${ASSAY_SLURM_CRED_EXPIRE:-120}

CONF=$STATE/slurm.conf
ETC_CONF=/etc/slurm/slurm.conf
MARKER="# assay-slurm managed file; state dir: $STATE"
MUNGE_DIR=$STATE/munge
MUNGE_SOCKET=$MUNGE_DIR/munge.socket
MUNGE_KEY=/etc/munge/munge.key
DAEMONS=(munged slurmctld slurmd)

export SLURM_CONF=$CONF

log() { printf 'cluster.sh: %s\n' "$*" >&2; }
UP_IN_PROGRESS=0
die() {
  log "ERROR: $*"
  # a failed `up` leaves nothing running (logs stay in $STATE/log)
  if ((UP_IN_PROGRESS)); then
    UP_IN_PROGRESS=0
    log "stopping what was started"
    local d
    for d in slurmd slurmctld munged; do stop "$d"; done
  fi
  exit 1
}

# ---------------------------------------------------------------- pids ----
pidfile() { echo "$STATE/$1.pid"; }

# Print the recorded pid of daemon $1 if that process is alive and still is
# that daemon; return 1 otherwise.
live_pid() {
  local f pid comm
  f=$(pidfile "$1")
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ $comm == "$1" ]] || return 1
  # a zombie (reaped later by init) does not count as running
  [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
  echo "$pid"
}

all_running() {
  local d
  for d in "${DAEMONS[@]}"; do live_pid "$d" >/dev/null || return 1; done
}

node_state() { sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n1; }

# ------------------------------------------------------------- install ----
ensure_packages() {
  local missing=() p
  for p in slurmctld slurmd slurm-client munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  [[ $(id -u) == 0 ]] || die "packages missing (${missing[*]}) and not root"
  log "installing ${missing[*]} (apt-get)"
  # Without systemd the postinst scripts fall back to invoke-rc.d and would
  # start munge/slurm system services; a policy-rc.d that says 101 ("action
  # forbidden") stops that. Only add one if none exists, and remove it after.
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; added_policy=1
  fi
  local rc=0
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      slurmctld slurmd slurm-client munge
  } >"/tmp/assay-slurm-apt.$$.log" 2>&1 || rc=$?
  ((added_policy)) && rm -f "$policy"
  if ((rc != 0)); then
    cat "/tmp/assay-slurm-apt.$$.log" >&2
    rm -f "/tmp/assay-slurm-apt.$$.log"
    die "apt-get install failed"
  fi
  rm -f "/tmp/assay-slurm-apt.$$.log"
}

ensure_munge_key() {
  if [[ ! -s $MUNGE_KEY ]]; then
    log "creating munge key $MUNGE_KEY"
    install -d -m 700 -o munge -g munge /etc/munge
    mungekey --create --keyfile="$MUNGE_KEY"
  fi
  # munged insists: owned by the user it runs as, not readable by others
  chown munge:munge "$MUNGE_KEY"
  chmod 600 "$MUNGE_KEY"
}

# -------------------------------------------------------------- config ----
write_config() {
  local cpus mem_total_mb real_mem tmp
  cpus=$(nproc)
  mem_total_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
  # slurmd drains the node if RealMemory exceeds what it measures; 90% of
  # MemTotal leaves a margin (slurmd -C reports ~MemTotal).
  real_mem=$(( mem_total_mb * 9 / 10 ))
  # NoInAddrAny makes slurmd (and srun/slurmstepd) bind the node's own
  # address instead of 0.0.0.0 -- but srun/slurmstepd then use whatever
  # `hostname` resolves to, so only when that is loopback. (slurmctld 22.05
  # binds 0.0.0.0 regardless.)
  local comm_params="# CommunicationParameters=NoInAddrAny: hostname is not loopback"
  if getent ahostsv4 "$(hostname)" 2>/dev/null | awk '{print $1}' | sort -u |
     { ips=$(cat); [[ -n $ips ]] && ! grep -qv '^127\.' <<<"$ips"; }; then
    comm_params="CommunicationParameters=NoInAddrAny"
  fi
  mkdir -p "$STATE"/{ctld,spool,log}
  tmp=$(mktemp "$STATE/slurm.conf.XXXXXX")
  cat >"$tmp" <<EOF
$MARKER
# generated by tests/slurm/cluster.sh -- do not edit, rerun \`cluster.sh up\`
ClusterName=assay
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: also how long a requeued job waits before it may start again
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=$CRED_EXPIRE
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
ReturnToService=2
# finished jobs stay visible to squeue this long (the profile uses squeue)
MinJobAge=300
# a node whose slurmd is silent this long is DOWN and its jobs end NODE_FAIL
SlurmdTimeout=$SLURMD_TIMEOUT
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.log
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/log/slurmctld.daemon.pid
SlurmdPidFile=$STATE/log/slurmd.daemon.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
# reject at submit time what can never run (e.g. more CPUs/memory than the
# node has) instead of leaving it PENDING (PartitionConfig) forever, which
# makes snakemake wait silently
EnforcePartLimits=ALL
$comm_params
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=$cpus RealMemory=$real_mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  if [[ -f $CONF ]] && cmp -s "$tmp" "$CONF"; then rm -f "$tmp"; else mv "$tmp" "$CONF"; fi
  chmod 644 "$CONF"

  # Copy to the default path so clients work without SLURM_CONF (see top).
  if [[ $ETC_COPY == 0 ]]; then
    :   # a second instance: its clients always get SLURM_CONF
  elif [[ ! -e $ETC_CONF ]] || head -n1 "$ETC_CONF" | grep -qxF "$MARKER"; then
    mkdir -p "$(dirname "$ETC_CONF")"
    cmp -s "$CONF" "$ETC_CONF" 2>/dev/null || cp "$CONF" "$ETC_CONF"
  else
    log "WARNING: $ETC_CONF exists and is not ours; left alone."
    log "         export SLURM_CONF=$CONF in every shell that uses this cluster"
  fi
}

# -------------------------------------------------------------- daemons ----
# start NAME CMD...: run CMD in the foreground under setsid, in the
# background of this script, output to $STATE/log/NAME.out; record its pid.
start() {
  local name=$1; shift
  local out=$STATE/log/$name.out
  # setsid without -f execs in place (a background job is no group leader),
  # so $! is the daemon itself; stdin from /dev/null detaches it fully.
  setsid "$@" </dev/null >>"$out" 2>&1 &
  local pid=$!
  echo "$pid" >"$(pidfile "$name")"
  # give it a moment to fail fast (bad config, port in use, ...)
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    sleep 0.2
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
      rm -f "$(pidfile "$name")"
      dump_logs
      die "$name exited right after start (see logs above)"
    fi
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] && break
  done
  log "started $name (pid $pid)"
}

start_munged() {
  live_pid munged >/dev/null && return 0
  install -d -m 755 -o munge -g munge "$MUNGE_DIR"
  rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
  start munged setpriv --reuid=munge --regid=munge --init-groups \
    munged --foreground --socket="$MUNGE_SOCKET" --key-file="$MUNGE_KEY" \
    --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log" \
    --seed-file="$MUNGE_DIR/munged.seed"
  for _ in $(seq 50); do [[ -S $MUNGE_SOCKET ]] && break; sleep 0.1; done
  munge -n --socket="$MUNGE_SOCKET" | unmunge --socket="$MUNGE_SOCKET" >/dev/null ||
    { dump_logs; die "munge round trip failed"; }
}

start_slurmctld() {
  live_pid slurmctld >/dev/null && return 0
  start slurmctld slurmctld -D -f "$CONF"
}

start_slurmd() {
  live_pid slurmd >/dev/null && return 0
  start slurmd slurmd -D -f "$CONF" -N "$NODE"
}

dump_logs() {
  local f
  # *.out: the daemons' stderr; in the foreground they log there as well as
  # to their log files, and fatal config errors only go there
  for f in "$MUNGE_DIR/munged.log" "$STATE"/log/*.out; do
    [[ -s $f ]] || continue
    printf '\n===== %s (last 40 lines) =====\n' "$f" >&2
    tail -n 40 "$f" >&2
  done
}

wait_idle() {
  local deadline=$((SECONDS + TIMEOUT)) st resumed=0 d
  while :; do
    st=$(node_state || true)
    case $st in
      idle|mixed|allocated) return 0 ;;
      drained*|draining|drain*|down)
        # e.g. left DOWN/DRAIN in saved state by an earlier run: resume once
        if ((resumed == 0)); then
          log "node $NODE is '$st'; resuming it"
          scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
          resumed=1
        fi ;;
    esac
    for d in "${DAEMONS[@]}"; do
      live_pid "$d" >/dev/null || { dump_logs; die "$d died while waiting for the node"; }
    done
    if ((SECONDS >= deadline)); then
      sinfo -N -l >&2 || true
      scontrol show node "$NODE" >&2 || true
      dump_logs
      die "node $NODE not idle after ${TIMEOUT}s (state: '${st:-no answer}')"
    fi
    sleep 0.5
  done
}

# ------------------------------------------------------------- commands ----
cmd_up() {
  [[ $(id -u) == 0 ]] || die "must run as root (SlurmUser=root)"
  if all_running && [[ $(node_state) =~ ^(idle|mixed|allocated)$ ]]; then
    log "already up (state dir $STATE)"
    return 0
  fi
  local t0=$SECONDS
  UP_IN_PROGRESS=1
  ensure_packages
  ensure_munge_key
  mkdir -p "$STATE"
  # Never rewrite the config under a running controller.
  live_pid slurmctld >/dev/null || write_config
  start_munged
  start_slurmctld
  start_slurmd
  wait_idle
  UP_IN_PROGRESS=0
  log "up in $((SECONDS - t0))s: node $NODE idle, partition $PARTITION, SLURM_CONF=$CONF"
}

# stop NAME: TERM the recorded pid, wait up to 20 s, then KILL; drop pid file
stop() {
  local name=$1 pid
  if pid=$(live_pid "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
      log "$name (pid $pid) ignored TERM; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
    fi
    # dead now; PID 1 reaps the zombie shortly -- wait so that nothing of
    # ours is left in the process table when `down` returns
    for _ in $(seq 50); do [[ -e /proc/$pid ]] || break; sleep 0.1; done
    log "stopped $name (pid $pid)"
  fi
  rm -f "$(pidfile "$name")"
}

cmd_down() {
  # Cancel whatever still runs in our cluster first, so no slurmstepd or job
  # process outlives slurmd. (Only our controller is asked: SLURM_CONF.)
  if live_pid slurmctld >/dev/null && live_pid slurmd >/dev/null; then
    if [[ -n $(squeue -h -t PD,R,CG -o %i 2>/dev/null) ]]; then
      log "cancelling remaining jobs"
      scancel -p "$PARTITION" 2>/dev/null || true
      for _ in $(seq 50); do
        [[ -z $(squeue -h -t PD,R,CG -o %i 2>/dev/null) ]] && break
        sleep 0.2
      done
    fi
  fi
  stop slurmd
  stop slurmctld
  stop munged
  if [[ $ETC_COPY != 0 && -f $ETC_CONF ]] && head -n1 "$ETC_CONF" | grep -qxF "$MARKER"; then
    rm -f "$ETC_CONF"
  fi
  log "down (state and logs kept in $STATE)"
}

cmd_status() {
  local d pid rc=0
  echo "state dir: $STATE"
  echo "SLURM_CONF=$CONF"
  for d in "${DAEMONS[@]}"; do
    if pid=$(live_pid "$d"); then echo "$d: running (pid $pid)"; else echo "$d: stopped"; rc=1; fi
  done
  if ((rc == 0)); then
    sinfo -N -o '%N %P %T %c %m' || rc=1
    [[ $(node_state) =~ ^(idle|mixed|allocated)$ ]] || rc=1
  fi
  return $rc
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
