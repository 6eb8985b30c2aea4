#!/bin/sh
# The image's entrypoint: fills the Redis password into imgate's config from a secret file, then runs imgate.
#
# `[store] url` carries Redis's password, but the config is not a secret (a ConfigMap, a plain file).
# With IMGATE_CONFIG_TEMPLATE set, every `__REDIS_PASSWORD__` in that file is replaced by the
# content of IMGATE_REDIS_PASSWORD_FILE and the result is written, private to this user, to
# IMGATE_CONFIG (default /run/imgate/imgate.toml: a tmpfs), which `imgate serve` reads.
# Without IMGATE_CONFIG_TEMPLATE it only runs `imgate "$@"`.
set -eu

if [ -n "${IMGATE_CONFIG_TEMPLATE:-}" ]; then
    out=${IMGATE_CONFIG:-/run/imgate/imgate.toml}
    password=""
    if [ -n "${IMGATE_REDIS_PASSWORD_FILE:-}" ]; then
        password=$(cat "$IMGATE_REDIS_PASSWORD_FILE")
        # It goes into a URL and a sed replacement: only characters that need no escaping in either.
        case $password in
            "" | *[!A-Za-z0-9._~-]*)
                echo "imgate-entrypoint: $IMGATE_REDIS_PASSWORD_FILE must hold one line of [A-Za-z0-9._~-] (e.g. openssl rand -hex 32)" >&2
                exit 1
                ;;
        esac
    fi
    if grep -q __REDIS_PASSWORD__ "$IMGATE_CONFIG_TEMPLATE" && [ -z "$password" ]; then
        echo "imgate-entrypoint: $IMGATE_CONFIG_TEMPLATE names __REDIS_PASSWORD__ but IMGATE_REDIS_PASSWORD_FILE is not set" >&2
        exit 1
    fi
    umask 077
    sed "s|__REDIS_PASSWORD__|$password|g" "$IMGATE_CONFIG_TEMPLATE" > "$out.tmp"
    mv "$out.tmp" "$out"
    export IMGATE_CONFIG="$out"
fi

exec imgate "$@"
