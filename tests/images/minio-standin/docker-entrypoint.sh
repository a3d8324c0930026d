#!/bin/sh
# Same argument handling as MinIO's image: a command that is not `minio` gets
# `minio` put in front, so `docker run IMAGE server /data ...` works.
# The `minio` here is a STAND-IN (nanio behind a MinIO-style launcher).
set -e
if [ "$1" != "minio" ] && [ -n "$1" ]; then
    case $1 in
        server | -* | version | help) set -- minio "$@" ;;
    esac
fi
exec "$@"
