#!/usr/bin/env bash
# Runs an N-node jet cluster on this machine, for trying replication by hand.
#
#   deploy/local-cluster.sh start N [--base-port P] [-- EXTRA_JET_FLAGS...]
#   deploy/local-cluster.sh add [-- EXTRA_JET_FLAGS...]
#   deploy/local-cluster.sh stop
#   deploy/local-cluster.sh status
#
# Node i (1..N) gets node id i, the Kafka port P+i-1, the peer (Raft, TCP) and gossip (UDP) port
# P+100+i-1, the HTTP port P+200+i-1, and its own directory DIR/node-i holding data/, jet.log and
# jet.pid, where DIR is ${JET_CLUSTER_DIR:-./jet-cluster}. P defaults to the one DIR was started
# with before, else 19092. Every node starts with --bootstrap-expect N and --seeds listing every
# node's gossip address, so all N must be up before any answers Kafka clients; `start` launches them together, waits (at most
# ${JET_CLUSTER_START_TIMEOUT_S:-90} s) until every Kafka port answers ApiVersions, and prints
# the bootstrap servers. Starting again on an existing DIR restarts the same nodes on their data;
# nodes that still run are left alone, so `start` after killing one node restarts just that one.
#
# `add` starts one more node (the next id) with an empty data dir and --seeds only (no
# --bootstrap-expect): it joins the running cluster, and replicas move onto it. Later `start`s
# count it among the N nodes.
#
# `stop` sends SIGTERM, waits up to ${JET_CLUSTER_STOP_TIMEOUT_S:-30} s, then SIGKILLs what is
# left; it is a no-op when nothing runs. `status` prints one line per node and exits 0 only when
# every node runs and answers.
#
# The binary is $JET_BIN, else `jet` on PATH, else ${CARGO_TARGET_DIR:-~/.cache/jet-target}/
# release/jet. JET_* variables in the environment reach the nodes as usual (flags given here win).
set -euo pipefail

prog="local-cluster"
dir="$(realpath -m -- "${JET_CLUSTER_DIR:-./jet-cluster}")"
start_timeout_s="${JET_CLUSTER_START_TIMEOUT_S:-90}"
stop_timeout_s="${JET_CLUSTER_STOP_TIMEOUT_S:-30}"

die() {
    echo "$prog: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 start N [--base-port P] [-- EXTRA_JET_FLAGS...] | add [-- EXTRA_JET_FLAGS...] | stop | status" >&2
    exit 2
}

is_uint() {
    [[ "$1" =~ ^[0-9]+$ ]]
}

find_bin() {
    if [ -n "${JET_BIN:-}" ]; then
        [ -x "$JET_BIN" ] || die "JET_BIN=$JET_BIN is not an executable file"
        echo "$JET_BIN"
    elif command -v jet >/dev/null 2>&1; then
        command -v jet
    else
        local b="${CARGO_TARGET_DIR:-$HOME/.cache/jet-target}/release/jet"
        [ -x "$b" ] || die "no jet binary: set JET_BIN, put jet on PATH, or build $b"
        echo "$b"
    fi
}

# Sends a Kafka ApiVersions v0 request (correlation id 0x4a455401) and checks the reply's
# correlation id and error code; true when the node serves Kafka clients.
kafka_ready() {
    local host="$1" port="$2" hex
    # shellcheck disable=SC2016  # $1 and $2 are the inner shell's arguments
    hex="$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf "\x00\x00\x00\x0f\x00\x12\x00\x00\x4a\x45\x54\x01\x00\x05probe" >&3
        head -c 10 <&3 | od -An -tx1
    ' _ "$host" "$port" 2>/dev/null)" || return 1
    hex="${hex//[$' \n']/}"
    [ "${hex:8:12}" = "4a4554010000" ]
}

port_in_use() {
    # shellcheck disable=SC2016  # $1 is the inner shell's argument
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# The pid of node $1 if it runs (and is a jet on that node's data dir), else nothing.
node_pid() {
    local pidfile="$dir/node-$1/jet.pid" pid
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    is_uint "$pid" || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    # A pid reused by some other process must not be signalled.
    if [ -r "/proc/$pid/cmdline" ] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$dir/node-$1/data"; then
        return 0
    fi
    echo "$pid"
}

node_ids() {
    local d
    for d in "$dir"/node-*; do
        [ -d "$d" ] || continue
        echo "${d##*/node-}"
    done | sort -n
}

load_conf() {
    [ -f "$dir/cluster.conf" ] || return 1
    nodes="$(sed -n 's/^nodes=//p' "$dir/cluster.conf")"
    base_port="$(sed -n 's/^base_port=//p' "$dir/cluster.conf")"
    if ! { is_uint "$nodes" && is_uint "$base_port"; }; then
        die "$dir/cluster.conf is damaged; remove $dir"
    fi
}

bootstrap_line() {
    local i out=""
    for ((i = 0; i < nodes; i++)); do
        out+="${out:+,}127.0.0.1:$((base_port + i))"
    done
    echo "$out"
}

cmd_start() {
    [ $# -ge 1 ] || usage
    local n="$1"
    shift
    local base="" extra=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --base-port)
                [ $# -ge 2 ] || usage
                base="$2"
                shift 2
                ;;
            --base-port=*)
                base="${1#*=}"
                shift
                ;;
            --)
                shift
                extra=("$@")
                break
                ;;
            *) usage ;;
        esac
    done
    if ! { is_uint "$n" && [ "$n" -ge 1 ] && [ "$n" -le 99 ]; }; then
        die "N must be a number from 1 to 99, not '$n'"
    fi
    if load_conf; then
        [ "$nodes" = "$n" ] || die "$dir holds a $nodes-node cluster; stop it and remove $dir to start $n nodes"
        # A restart keeps the ports the nodes' data was made with, unless told otherwise.
        base="${base:-$base_port}"
    fi
    base="${base:-19092}"
    if ! { is_uint "$base" && [ "$base" -ge 1 ] && [ $((base + 299)) -le 65535 ]; }; then
        die "--base-port must be a port from 1 to 65236, not '$base'"
    fi
    is_uint "$start_timeout_s" || die "JET_CLUSTER_START_TIMEOUT_S must be a number of seconds"

    nodes="$n"
    base_port="$base"
    local i id
    # Nodes that already run are left alone: `start` on a cluster with a killed node restarts
    # just that node, on its data.
    local running=()
    for ((i = 0; i < nodes; i++)); do
        id=$((i + 1))
        if [ -n "$(node_pid "$id")" ]; then
            running[id]=1
            echo "node $id already runs (pid $(node_pid "$id")); leaving it" >&2
        fi
    done
    local bin port
    bin="$(find_bin)"
    for ((i = 0; i < nodes; i++)); do
        [ -z "${running[i + 1]:-}" ] || continue
        for port in $((base + i)) $((base + 100 + i)) $((base + 200 + i)); do
            ! port_in_use "$port" || die "port $port is in use; pick another --base-port"
        done
    done

    mkdir -p "$dir"
    printf 'nodes=%s\nbase_port=%s\n' "$nodes" "$base_port" >"$dir/cluster.conf"
    # The cluster aims for 3 replicas (capped by the node count; shards grow as nodes join).
    local seeds="" rf=3
    for ((i = 0; i < nodes; i++)); do
        seeds+="${seeds:+,}127.0.0.1:$((base + 100 + i))"
    done

    # All nodes start together: with --bootstrap-expect none serves until all have met.
    for ((i = 0; i < nodes; i++)); do
        id=$((i + 1))
        [ -z "${running[id]:-}" ] || continue
        local nd="$dir/node-$id"
        mkdir -p "$nd/data"
        local args=(
            --node-id "$id"
            --listen "127.0.0.1:$((base + i))"
            --peer-listen "127.0.0.1:$((base + 100 + i))"
            --gossip-listen "127.0.0.1:$((base + 100 + i))"
            --http-listen "127.0.0.1:$((base + 200 + i))"
            --data-dir "$nd/data"
            --seeds "$seeds"
            --bootstrap-expect "$nodes"
            --replication-factor "$rf"
            ${extra[@]+"${extra[@]}"}
        )
        printf -- '--- %s start %s %s\n' "$(date -u +%FT%TZ)" "$bin" "${args[*]}" >>"$nd/jet.log"
        nohup "$bin" "${args[@]}" >>"$nd/jet.log" 2>&1 </dev/null &
        echo "$!" >"$nd/jet.pid"
    done

    local deadline=$((SECONDS + start_timeout_s)) pending
    while :; do
        pending=0
        for ((i = 0; i < nodes; i++)); do
            id=$((i + 1))
            if [ -z "$(node_pid "$id")" ]; then
                local last
                last="$(grep -v '^--- ' "$dir/node-$id/jet.log" | tail -n 1 || true)"
                cmd_stop >/dev/null 2>&1 || true
                die "node $id exited while starting (${last:-no output}); log: $dir/node-$id/jet.log"
            fi
            kafka_ready 127.0.0.1 $((base + i)) || pending=$((pending + 1))
        done
        [ "$pending" -gt 0 ] || break
        if [ "$SECONDS" -ge "$deadline" ]; then
            cmd_stop >/dev/null 2>&1 || true
            die "$pending of $nodes nodes did not answer Kafka clients within ${start_timeout_s}s (stopped them all); logs: $dir/node-*/jet.log"
        fi
        sleep 0.5
    done
    echo "$nodes nodes up in $dir"
    echo "bootstrap.servers=$(bootstrap_line)"
}

# Waits until node $1 answers Kafka clients; stops nothing on failure (the others run on).
wait_node_ready() {
    local id="$1" deadline=$((SECONDS + start_timeout_s))
    while ! kafka_ready 127.0.0.1 $((base_port + id - 1)); do
        if [ -z "$(node_pid "$id")" ]; then
            local last
            last="$(grep -v '^--- ' "$dir/node-$id/jet.log" | tail -n 1 || true)"
            die "node $id exited while starting (${last:-no output}); log: $dir/node-$id/jet.log"
        fi
        [ "$SECONDS" -lt "$deadline" ] || die "node $id did not answer Kafka clients within ${start_timeout_s}s; log: $dir/node-$id/jet.log"
        sleep 0.5
    done
}

cmd_add() {
    local extra=()
    if [ $# -gt 0 ]; then
        [ "$1" = "--" ] || usage
        shift
        extra=("$@")
    fi
    load_conf || die "no cluster in $dir: start one first"
    is_uint "$start_timeout_s" || die "JET_CLUSTER_START_TIMEOUT_S must be a number of seconds"
    local i seeds="" up=0
    for ((i = 0; i < nodes; i++)); do
        seeds+="${seeds:+,}127.0.0.1:$((base_port + 100 + i))"
        [ -z "$(node_pid $((i + 1)))" ] || up=$((up + 1))
    done
    [ "$up" -gt 0 ] || die "no node of $dir runs: start the cluster first"
    local id=$((nodes + 1)) port
    [ "$id" -le 99 ] || die "a local cluster has at most 99 nodes"
    for port in $((base_port + id - 1)) $((base_port + 100 + id - 1)) $((base_port + 200 + id - 1)); do
        ! port_in_use "$port" || die "port $port is in use"
    done
    local bin nd="$dir/node-$id"
    bin="$(find_bin)"
    rm -rf "$nd"
    mkdir -p "$nd/data"
    local args=(
        --node-id "$id"
        --listen "127.0.0.1:$((base_port + id - 1))"
        --peer-listen "127.0.0.1:$((base_port + 100 + id - 1))"
        --gossip-listen "127.0.0.1:$((base_port + 100 + id - 1))"
        --http-listen "127.0.0.1:$((base_port + 200 + id - 1))"
        --data-dir "$nd/data"
        --seeds "$seeds"
        ${extra[@]+"${extra[@]}"}
    )
    printf -- '--- %s start %s %s\n' "$(date -u +%FT%TZ)" "$bin" "${args[*]}" >>"$nd/jet.log"
    nohup "$bin" "${args[@]}" >>"$nd/jet.log" 2>&1 </dev/null &
    echo "$!" >"$nd/jet.pid"
    nodes="$id"
    printf 'nodes=%s\nbase_port=%s\n' "$nodes" "$base_port" >"$dir/cluster.conf"
    wait_node_ready "$id"
    echo "node $id joined the cluster in $dir"
    echo "bootstrap.servers=$(bootstrap_line)"
}

cmd_stop() {
    is_uint "$stop_timeout_s" || die "JET_CLUSTER_STOP_TIMEOUT_S must be a number of seconds"
    local id pid pids=() ids=()
    while read -r id; do
        [ -n "$id" ] || continue
        pid="$(node_pid "$id")"
        if [ -n "$pid" ]; then
            pids+=("$pid")
            ids+=("$id")
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done < <(node_ids)
    if [ "${#pids[@]}" -eq 0 ]; then
        echo "no node runs in $dir"
        return 0
    fi
    local deadline=$((SECONDS + stop_timeout_s)) alive k
    while :; do
        alive=0
        for k in "${!pids[@]}"; do
            if kill -0 "${pids[$k]}" 2>/dev/null; then alive=$((alive + 1)); fi
        done
        if [ "$alive" -eq 0 ] || [ "$SECONDS" -ge "$deadline" ]; then break; fi
        sleep 0.2
    done
    for k in "${!pids[@]}"; do
        if kill -0 "${pids[$k]}" 2>/dev/null; then
            echo "$prog: node ${ids[$k]} (pid ${pids[$k]}) ignored SIGTERM for ${stop_timeout_s}s; killing it" >&2
            kill -KILL "${pids[$k]}" 2>/dev/null || true
        fi
        rm -f "$dir/node-${ids[$k]}/jet.pid"
    done
    echo "stopped ${#pids[@]} node(s) in $dir"
}

cmd_status() {
    load_conf || {
        echo "no cluster in $dir"
        return 1
    }
    local i id pid up=0 state
    for ((i = 0; i < nodes; i++)); do
        id=$((i + 1))
        pid="$(node_pid "$id")"
        if [ -z "$pid" ]; then
            state="stopped"
        elif kafka_ready 127.0.0.1 $((base_port + i)); then
            state="up (pid $pid)"
            up=$((up + 1))
        else
            state="running, not serving Kafka yet (pid $pid)"
        fi
        printf 'node %s  kafka 127.0.0.1:%s  peer/gossip 127.0.0.1:%s  http 127.0.0.1:%s  %s\n' \
            "$id" $((base_port + i)) $((base_port + 100 + i)) $((base_port + 200 + i)) "$state"
    done
    echo "bootstrap.servers=$(bootstrap_line)"
    [ "$up" -eq "$nodes" ]
}

[ $# -ge 1 ] || usage
cmd="$1"
shift
case "$cmd" in
    start) cmd_start "$@" ;;
    add) cmd_add "$@" ;;
    stop)
        [ $# -eq 0 ] || usage
        cmd_stop
        ;;
    status)
        [ $# -eq 0 ] || usage
        cmd_status
        ;;
    *) usage ;;
esac
