#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the cluster path's tests and for trying sbatch files.
#   scripts/local-slurm.sh start    install slurm-wlm + munge when missing, write the config, start the daemons
#   scripts/local-slurm.sh stop     cancel jobs, stop the daemons
#   scripts/local-slurm.sh status   sinfo
# Needs root (it writes /etc/slurm and /etc/munge). The node is this host, with all its CPUs. A start that has to
# launch the controller clears its saved queue: jobs left from before a restart are not run again.
set -euo pipefail

NODE="$(hostname -s)"
CONF=/etc/slurm/slurm.conf

install_packages() {
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        echo "installing slurm-wlm and munge (Debian packages)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
    fi
}

write_config() {
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /etc/munge /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown -R munge:munge /etc/munge /run/munge 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    local cpus memory
    # the machine's CPUs: nproc alone honours OMP_NUM_THREADS, which a test worker sets to its share of them
    cpus="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
    memory="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
    cat >"$CONF" <<EOF
# written by hashlab scripts/local-slurm.sh: one node, this host
ClusterName=hashlab-local
SlurmctldHost=${NODE}
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
JobCompType=jobcomp/none
NodeName=${NODE} CPUs=${cpus} RealMemory=${memory} State=UNKNOWN
PartitionName=local Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

start() {
    install_packages
    write_config
    pgrep -x munged >/dev/null || munged --force
    # -c: start from an empty queue. A machine restored from a disk image (CI) finds the jobs that were running
    # when the image was taken in the saved state; recovered, they are requeued and hold the CPUs for minutes.
    pgrep -x slurmctld >/dev/null || slurmctld -c
    pgrep -x slurmd >/dev/null || slurmd -c
    for _ in $(seq 1 60); do
        if sinfo -h -o "%T" 2>/dev/null | grep -qE "idle|mixed|allocated"; then
            sinfo
            return 0
        fi
        sleep 1
    done
    echo "SLURM did not come up; see /var/log/slurm/" >&2
    return 1
}

stop() {
    scancel --user=root >/dev/null 2>&1 || true
    pkill -x slurmd || true
    pkill -x slurmctld || true
    pkill -x munged || true
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) sinfo ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
