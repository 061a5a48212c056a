#!/usr/bin/env bash
# A throwaway MLflow tracking server on 127.0.0.1, for the MLflow tests and
# for trying `[tracking] mlflow = "http://127.0.0.1:PORT"` by hand:
#
#   scripts/mlflow-local.sh start DIR PORT   # installs MLflow if missing, starts
#                                            # the server, waits until it answers
#   scripts/mlflow-local.sh stop DIR         # stops it
#   scripts/mlflow-local.sh install          # only installs MLflow
#
# MLflow is installed with pip into a virtualenv outside the clone,
# ${XDG_CACHE_HOME:-$HOME/.cache}/lpo/mlflow-$VERSION (reused by later runs).
# The server keeps its runs in DIR/mlflow.db (SQLite) and proxies artifacts
# into DIR/artifacts; its log is DIR/server.log and its pid DIR/server.pid.
set -euo pipefail
VERSION=3.17.2
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/lpo/mlflow-$VERSION"

install() {
    mkdir -p "$(dirname "$VENV")"
    # One installer at a time (scripts/test.sh starts one while it builds);
    # the lock is held by this subshell only, never by a server.
    (
        if ! flock -w 1200 9; then
            echo "waited 20 minutes for another MLflow install ($VENV.lock)" >&2
            exit 1
        fi
        if [ -f "$VENV/.lpo-complete" ]; then
            exit 0
        fi
        echo "installing mlflow==$VERSION into $VENV (pip)" >&2
        rm -rf "$VENV"
        python3 -m venv "$VENV"
        timeout 900 "$VENV/bin/pip" install --quiet --disable-pip-version-check "mlflow==$VERSION" >&2
        touch "$VENV/.lpo-complete"
    ) 9> "$VENV.lock"
}

start() {
    local dir=$1 port=$2
    install
    mkdir -p "$dir/artifacts"
    dir=$(cd "$dir" && pwd)
    # Its own process group: the server's workers and job consumers are
    # its descendants, and `stop` ends them all.
    setsid "$VENV/bin/mlflow" server --host 127.0.0.1 --port "$port" \
        --backend-store-uri "sqlite:///$dir/mlflow.db" \
        --artifacts-destination "$dir/artifacts" --workers 1 \
        > "$dir/server.log" 2>&1 &
    echo $! > "$dir/server.pid"
    for _ in $(seq 1 240); do
        if "$VENV/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=2)" 2> /dev/null; then
            return
        fi
        if ! kill -0 "$(cat "$dir/server.pid")" 2> /dev/null; then
            echo "mlflow server exited; its log:" >&2
            cat "$dir/server.log" >&2
            exit 1
        fi
        sleep 0.5
    done
    echo "mlflow server did not answer on port $port within 120 s; its log:" >&2
    cat "$dir/server.log" >&2
    exit 1
}

stop() {
    local dir=$1
    if [ -f "$dir/server.pid" ]; then
        local pid
        pid=$(cat "$dir/server.pid")
        kill -TERM -- "-$pid" 2> /dev/null || true
        for _ in $(seq 1 50); do
            kill -0 -- "-$pid" 2> /dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2> /dev/null || true
        rm -f "$dir/server.pid"
    fi
}

case "${1:-}" in
    install) install ;;
    start) start "$2" "$3" ;;
    stop) stop "$2" ;;
    *) echo "usage: $0 install | start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
