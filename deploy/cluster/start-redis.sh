#!/bin/sh
# Starts redis-server or redis-sentinel from the shipped files with the passwords from the
# environment in place of their CHANGE-ME placeholders (compose.yaml's cluster profile; the
# Sentinel test starts its servers and sentinels with it too).
#
#   start-redis.sh server   [redis-server options...]    redis.conf + users.acl
#   start-redis.sh sentinel [redis-sentinel options...]  sentinel.conf
#
# Environment: CAMSERVER_REDIS_PASSWORD (the nodes' user, camserver), REDIS_REPLICA_PASSWORD,
# REDIS_SENTINEL_PASSWORD, REDIS_ADMIN_PASSWORD (letters and digits); RUN_DIR (default
# /data): where the filled-in copies go. A sentinel, or a server the sentinels reconfigure,
# rewrites its file there (CONFIG REWRITE), so those copies are made once and kept; users.acl
# is made afresh at every start. A sentinel watches REDIS_MASTER_HOST:REDIS_MASTER_PORT
# (default 127.0.0.1:6379; a host name is resolved).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
run=${RUN_DIR:-/data}

for name in CAMSERVER_REDIS_PASSWORD REDIS_REPLICA_PASSWORD REDIS_SENTINEL_PASSWORD REDIS_ADMIN_PASSWORD; do
    eval "value=\${$name:-}"
    case $value in
        "" | *[!A-Za-z0-9]* | CHANGE-ME*)
            echo "start-redis.sh: set $name to a password of letters and digits" >&2
            exit 2 ;;
    esac
done

fill() {
    sed -e "s/CHANGE-ME-camserver/$CAMSERVER_REDIS_PASSWORD/" \
        -e "s/CHANGE-ME-replica/$REDIS_REPLICA_PASSWORD/" \
        -e "s/CHANGE-ME-sentinel/$REDIS_SENTINEL_PASSWORD/" \
        -e "s/CHANGE-ME-admin/$REDIS_ADMIN_PASSWORD/" "$1"
}

mode=${1:-}
[ $# -gt 0 ] && shift
mkdir -p "$run"
case $mode in
    server)
        fill "$here/users.acl" > "$run/users.acl"
        [ -f "$run/redis.conf" ] || fill "$here/redis.conf" > "$run/redis.conf"
        exec redis-server "$run/redis.conf" --aclfile "$run/users.acl" "$@" ;;
    sentinel)
        if [ ! -f "$run/sentinel.conf" ]; then
            master="${REDIS_MASTER_HOST:-127.0.0.1} ${REDIS_MASTER_PORT:-6379}"
            {
                echo "sentinel resolve-hostnames yes"
                fill "$here/sentinel.conf" |
                    sed -e "s/^sentinel monitor camserver 127.0.0.1 6379 /sentinel monitor camserver $master /"
            } > "$run/sentinel.conf"
        fi
        exec redis-sentinel "$run/sentinel.conf" "$@" ;;
    *)
        echo "usage: start-redis.sh server|sentinel [options...]" >&2
        exit 2 ;;
esac
