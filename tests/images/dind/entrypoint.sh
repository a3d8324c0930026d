#!/bin/sh
# Start sshd and dockerd once the test has handed over what they need:
#   $AUTHORIZED_KEY            the public key root may log in with
#   /certs/{ca,server-cert,server-key}.pem and then /certs/ready   (the server certificate
#                              names the container's address, known only once it runs)
# dockerd listens on its unix socket and on tcp 2376 with TLS, client certificates required.
# Its bridge is the default one, inside this container's own network namespace.
#
# Not --privileged (an engine whose bounding set lacks a capability cannot start privileged
# containers): the test runs it with the capabilities it has, unconfined seccomp, AppArmor and
# system paths, every device allowed, and a private cgroup namespace, where the cgroup
# hierarchies are mounted again read-write, rooted at this container's own cgroup.
set -eu

log() { echo "dind: $*"; }

ssh-keygen -A >/dev/null
if [ -n "${AUTHORIZED_KEY:-}" ]; then
    printf '%s\n' "$AUTHORIZED_KEY" >/root/.ssh/authorized_keys
    chmod 0600 /root/.ssh/authorized_keys
fi
/usr/sbin/sshd -e
log "sshd started"

mount -o remount,rw /sys
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    # cgroup v2: read-write again, our processes in a leaf, every controller for children
    umount /sys/fs/cgroup && mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
    mkdir -p /sys/fs/cgroup/init
    xargs -rn1 </sys/fs/cgroup/cgroup.procs >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || true
    sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers \
        >/sys/fs/cgroup/cgroup.subtree_control
else
    # cgroup v1: each hierarchy mounted again with its own options, read-write
    awk '$3 == "cgroup" { print $2, $4 }' /proc/self/mounts | while read -r point options; do
        kept=$(echo "$options" | tr ',' '\n' | grep -vxE 'ro|rw|nosuid|nodev|noexec|relatime' | paste -sd, -)
        umount "$point"
        mount -t cgroup -o "$kept" cgroup "$point"
    done
fi
mount --make-rshared / 2>/dev/null || true

waited=0
until [ -f /certs/ready ]; do
    if [ "$waited" -ge 600 ]; then
        log "no /certs/ready after 60 s"; exit 1
    fi
    sleep 0.1; waited=$((waited + 1))
done
log "certificates received"

# A container stopped by a kill keeps its files: a dockerd started again would refuse the
# pid file the killed one left (the swarm cluster's nodes are killed and started again).
rm -f /var/run/docker.pid

# --oom-score-adjust=0: lowering it needs CAP_SYS_RESOURCE, which the container may not have.
exec dockerd \
    --host=unix:///var/run/docker.sock \
    --host=tcp://0.0.0.0:2376 \
    --tlsverify \
    --tlscacert=/certs/ca.pem \
    --tlscert=/certs/server-cert.pem \
    --tlskey=/certs/server-key.pem \
    --storage-driver=overlay2 \
    --oom-score-adjust=0
