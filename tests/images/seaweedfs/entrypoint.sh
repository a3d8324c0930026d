#!/bin/sh
# Same argument handling as the official chrislusf/seaweedfs image's entrypoint:
#   server -> weed server -dir=/data -volume.max=0 -master.volumePreallocate -master.volumeSizeLimitMB=1024 ...
#   master / volume / filer / s3 get their usual defaults; anything else -> weed "$@".
# Later flags win (Go flag parsing), so callers override the defaults by passing
# them again, e.g. -master.volumePreallocate=false -master.volumeSizeLimitMB=64.
# One addition: anonymous usage telemetry is off unless a -master.telemetry /
# -telemetry flag is given (the test machines have no route to it).

has_arg() {
    name=$1
    shift
    for a in "$@"; do
        case $a in
            "$name" | "$name"=* | "-$name" | "-$name"=*) return 0 ;;
        esac
    done
    return 1
}

cmd=$1
[ $# -gt 0 ] && shift

case $cmd in
    server)
        args="-dir=/data -volume.max=0 -master.volumePreallocate -master.volumeSizeLimitMB=1024"
        if has_arg -volume.max "$@"; then
            args="-dir=/data -master.volumePreallocate -master.volumeSizeLimitMB=1024"
        fi
        has_arg -master.telemetry "$@" || args="$args -master.telemetry=false"
        # shellcheck disable=SC2086
        exec /usr/bin/weed -logtostderr=true server $args "$@"
        ;;
    mini)
        args=""
        has_arg -master.telemetry "$@" || args="-master.telemetry=false"
        # shellcheck disable=SC2086
        exec /usr/bin/weed -logtostderr=true mini $args "$@"
        ;;
    master)
        args="-mdir=/data -volumePreallocate -volumeSizeLimitMB=1024"
        has_arg -telemetry "$@" || args="$args -telemetry=false"
        # shellcheck disable=SC2086
        exec /usr/bin/weed -logtostderr=true master $args "$@"
        ;;
    volume)
        args="-dir=/data -max=0"
        has_arg -max "$@" && args="-dir=/data"
        # shellcheck disable=SC2086
        exec /usr/bin/weed -logtostderr=true volume $args "$@"
        ;;
    filer)
        exec /usr/bin/weed -logtostderr=true filer "$@"
        ;;
    s3)
        exec /usr/bin/weed -logtostderr=true s3 \
            -domainName="${S3_DOMAIN_NAME:-}" -key.file="${S3_KEY_FILE:-}" -cert.file="${S3_CERT_FILE:-}" "$@"
        ;;
    *)
        if [ -n "$cmd" ]; then
            exec /usr/bin/weed "$cmd" "$@"
        fi
        exec /usr/bin/weed
        ;;
esac
