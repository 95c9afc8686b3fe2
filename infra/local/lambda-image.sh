#!/usr/bin/env bash
# A local Lambda emulation image for the template's runtime (python3.13), built from Debian
# packages, for `sam local … --invoke-image <tag> --skip-pull-image` (issue 17).
#
#   infra/local/lambda-image.sh [build] [--keep-docker]   build or reuse; prints the tag last
#   infra/local/lambda-image.sh docker-up                 dockerd answering (started if needed)
#   infra/local/lambda-image.sh docker-down               stop the dockerd docker-up started
#
# `build` stops the dockerd it started at the end of the run (and removes its bridge and
# iptables chains) unless --keep-docker; `docker-up` keeps it and leaves a note in $STATE_DIR
# so that a later `docker-down` stops that one dockerd, and nothing it did not start.
#
# The image: a `debootstrap --variant=minbase` root of Debian 13 (trixie, whose python3 is
# 3.13) with python3.13 and ca-certificates; boto3 and awslambdaric pip-installed into
# /var/runtime (on the managed runtime's sys.path as there); /var/lang/bin/python3.13 linked to
# Debian's python; /var/runtime/bootstrap running `python -m awslambdaric "$_HANDLER"` with
# /var/task and /opt/python on PYTHONPATH. The tag is a hash of this file, so a rerun reuses it.
#
# Traps met on the way (keep them in mind when changing this):
# - The SAM CLI only pulls `public.ecr.aws/lambda/python:3.13` unless given --invoke-image and
#   --skip-pull-image; with both it builds its runtime image FROM ours offline, adding the RIE
#   it carries (samcli/local/rapid/aws-lambda-rie-*) and running /var/rapid/aws-lambda-rie,
#   which starts /var/runtime/bootstrap. Nothing else of the AWS base image is needed, but
#   /var/runtime/bootstrap must be executable and LAMBDA_TASK_ROOT set (`docker import`
#   drops everything a Dockerfile would set, hence the --change lines below).
# - bookworm's debootstrap (1.0.128) knows trixie, and bookworm's debian-archive-keyring
#   (2023.3+deb12u2) carries trixie's keys: no --no-check-gpg needed.
# - awslambdaric and boto3 are installed with the host's pip for Python 3.13 (the project's
#   .venv) with --target, binary wheels only: no compiler, cmake or pip inside the root.
#   awslambdaric has a C extension (cp313 manylinux wheel); a host Python of another minor
#   version would fetch the wrong wheel, so the script refuses one.
# - boto3: the managed runtime ships its own pinned boto3/botocore (AWS docs, "Runtime-included
#   SDK versions"); the API's kick needs it and the function packages do not carry it.
#   Debian's python3-boto3 is a different version with Debian patches, so pip it instead.
# - `docker import` wants a tar stream of the root; tar it with --numeric-owner, from inside
#   the root (-C), or paths start with the temporary directory's name.
# - dockerd creates the docker0 bridge, turns net.ipv4.ip_forward on and adds iptables chains
#   (DOCKER, DOCKER-USER, DOCKER-ISOLATION-STAGE-1/2 in filter, DOCKER in nat, plus jumps in
#   FORWARD, PREROUTING, OUTPUT, POSTROUTING); none of that goes away when it stops. The
#   cleanup deletes exactly those, the bridge, and restores ip_forward and the FORWARD policy
#   (dockerd sets it to DROP). Under `set -o pipefail` a grep that finds nothing fails the
#   cleanup's pipeline: each one ends in `|| true`.
# - Debian's docker.io comes with a docker.socket/systemd unit; on these machines there is no
#   systemd, so nothing starts dockerd by itself: we run it in the background with its log in
#   $STATE_DIR/dockerd.log. Images stay in /var/lib/docker after it stops (that is the cache).
# - The Debian docker.io daemon (20.10) is older than a docker CLI found in /usr/local/bin
#   (28.x); the client negotiates the API version down, which works.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$HERE/../.." && pwd)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
STATE_DIR="${STORYQ_DOCKER_STATE:-/run/storyq-docker}"
SUITE="${LAMBDA_IMAGE_SUITE:-trixie}"
MIRROR="${LAMBDA_IMAGE_MIRROR:-http://deb.debian.org/debian}"
PY="python3.13"
# The SDK the python3.13 managed runtime ships, as AWS's table listed it (override to match a
# region's current runtime: print boto3.__version__ from a deployed function).
BOTO3_VERSION="${BOTO3_VERSION:-1.40.4}"
HOST_PY="${HOST_PY:-$ROOT_DIR/.venv/bin/python}"
REPO="storyq-lambda-python3.13"
TAG="$REPO:$(sha256sum "$SELF" | cut -c1-12)"

log() { echo "lambda-image: $*" >&2; }

need_packages() {
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v iptables >/dev/null || missing+=(iptables)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

docker_answers() { timeout 5 docker info >/dev/null 2>&1; }

docker_up() {
    need_packages
    if docker_answers; then
        return 0
    fi
    mkdir -p "$STATE_DIR"
    # What dockerd changes and does not undo, recorded before it starts.
    sysctl -n net.ipv4.ip_forward >"$STATE_DIR/ip_forward"
    # dockerd also sets the FORWARD policy to DROP (because it turns ip_forward on).
    iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3}' >"$STATE_DIR/forward_policy" || true
    ip link show docker0 >/dev/null 2>&1 && touch "$STATE_DIR/had-docker0"
    log "starting dockerd (log: $STATE_DIR/dockerd.log)"
    setsid dockerd >"$STATE_DIR/dockerd.log" 2>&1 </dev/null &
    echo $! >"$STATE_DIR/dockerd.pid"
    for _ in $(seq 1 150); do
        docker_answers && return 0
        kill -0 "$(cat "$STATE_DIR/dockerd.pid")" 2>/dev/null || break
        sleep 0.2
    done
    log "dockerd did not answer; its log:"
    tail -20 "$STATE_DIR/dockerd.log" >&2
    docker_down
    return 1
}

# Deletes the rules dockerd added (those naming a DOCKER chain or docker0), then its chains.
drop_docker_iptables() {
    local cmd table rule chain
    for cmd in iptables ip6tables; do
        command -v "$cmd" >/dev/null || continue
        for table in filter nat; do
            "$cmd" -t "$table" -S >/dev/null 2>&1 || continue
            "$cmd" -t "$table" -S | grep -E '^-A ' | grep -E 'DOCKER|docker0' |
                grep -vE '^-A DOCKER' | while read -r rule; do
                # shellcheck disable=SC2086  # the rule's words, as iptables -S printed them
                eval "$cmd -t $table -D ${rule#-A }" || true
            done || true # (grep finding nothing fails the pipeline: set -e, pipefail)
            for chain in $("$cmd" -t "$table" -S | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
                "$cmd" -t "$table" -F "$chain" || true
            done
            for chain in $("$cmd" -t "$table" -S | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
                "$cmd" -t "$table" -X "$chain" || true
            done
        done
    done
}

docker_down() {
    local pid_file="$STATE_DIR/dockerd.pid"
    [[ -f "$pid_file" ]] || return 0
    local pid
    pid="$(cat "$pid_file")"
    if kill -0 "$pid" 2>/dev/null; then
        # Containers first (sam local removes its own; this catches a killed run's).
        local left
        left="$(docker ps -aq 2>/dev/null || true)"
        [[ -z "$left" ]] || docker rm -f $left >/dev/null 2>&1 || true
        log "stopping dockerd $pid"
        kill -TERM "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    [[ -f "$STATE_DIR/had-docker0" ]] || ip link delete docker0 2>/dev/null || true
    drop_docker_iptables
    if [[ -s "$STATE_DIR/forward_policy" ]]; then
        iptables -P FORWARD "$(cat "$STATE_DIR/forward_policy")" || true
    fi
    if [[ -f "$STATE_DIR/ip_forward" ]]; then
        sysctl -qw net.ipv4.ip_forward="$(cat "$STATE_DIR/ip_forward")"
    fi
    rm -f "$pid_file" "$STATE_DIR/ip_forward" "$STATE_DIR/had-docker0" "$STATE_DIR/forward_policy"
}

build_image() {
    if docker image inspect "$TAG" >/dev/null 2>&1; then
        log "reusing $TAG"
        return 0
    fi
    [[ -x "$HOST_PY" ]] || { log "no $HOST_PY: run make venv first"; return 1; }
    "$HOST_PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' ||
        { log "$HOST_PY is not Python 3.13: the wheels would not match the image"; return 1; }
    local root
    root="$(mktemp -d /tmp/storyq-lambda-root.XXXXXX)"
    # shellcheck disable=SC2064
    trap "rm -rf '$root'" RETURN
    log "debootstrap $SUITE into $root"
    debootstrap --variant=minbase --include="$PY,ca-certificates" "$SUITE" "$root" "$MIRROR" \
        >"$root.debootstrap.log" 2>&1 || { tail -20 "$root.debootstrap.log" >&2; return 1; }
    rm -f "$root.debootstrap.log"
    log "boto3==$BOTO3_VERSION and awslambdaric into /var/runtime"
    mkdir -p "$root/var/runtime" "$root/var/task" "$root/opt/python" "$root/var/lang/bin"
    "$HOST_PY" -m pip install --quiet --disable-pip-version-check --no-compile \
        --only-binary=:all: --target "$root/var/runtime" "boto3==$BOTO3_VERSION" awslambdaric
    ln -sf "/usr/bin/$PY" "$root/var/lang/bin/$PY"
    ln -sf "$PY" "$root/var/lang/bin/python3"
    ln -sf "$PY" "$root/var/lang/bin/python"
    cat >"$root/var/runtime/bootstrap" <<'EOF'
#!/bin/sh
# Started by the Runtime Interface Emulator; serves $_HANDLER as the managed runtime would.
export PYTHONPATH="/var/task:/opt/python:/var/runtime${PYTHONPATH:+:$PYTHONPATH}"
exec /var/lang/bin/python3.13 -m awslambdaric "$_HANDLER"
EOF
    chmod 0755 "$root/var/runtime/bootstrap"
    # Smaller image: apt lists and docs are of no use in a function container.
    rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"* "$root/usr/share/doc" \
        "$root/usr/share/man" "$root/usr/share/locale"
    chroot "$root" "/var/lang/bin/$PY" -c \
        'import sys; sys.path[:0] = ["/var/runtime"]; import awslambdaric, boto3' ||
        { log "the root's python cannot import awslambdaric and boto3"; return 1; }
    log "docker import as $TAG"
    tar --numeric-owner -C "$root" -c . | docker import \
        --change 'ENV LAMBDA_TASK_ROOT=/var/task' \
        --change 'ENV LAMBDA_RUNTIME_DIR=/var/runtime' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV TZ=:/etc/localtime' \
        --change 'ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin' \
        --change 'ENV LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib' \
        --change 'WORKDIR /var/task' \
        --change 'ENTRYPOINT ["/var/runtime/bootstrap"]' \
        - "$TAG" >/dev/null
    # Older images of this recipe are of no more use.
    docker images --format '{{.Repository}}:{{.Tag}}' "$REPO" | grep -vx "$TAG" |
        xargs -r docker rmi >/dev/null 2>&1 || true
}

main() {
    local verb="build" keep=0 arg
    for arg in "$@"; do
        case "$arg" in
            build | docker-up | docker-down | tag) verb="$arg" ;;
            --keep-docker) keep=1 ;;
            *) log "unknown argument $arg"; exit 2 ;;
        esac
    done
    [[ $EUID -eq 0 ]] || { log "run as root (dockerd, debootstrap)"; exit 1; }
    case "$verb" in
        tag) echo "$TAG" ;;
        docker-up) docker_up ;;
        docker-down) docker_down ;;
        build)
            local started=0
            [[ -f "$STATE_DIR/dockerd.pid" ]] || started=1
            docker_up
            [[ -f "$STATE_DIR/dockerd.pid" ]] || started=0
            if ((started && !keep)); then trap docker_down EXIT; fi
            local t0=$SECONDS
            build_image
            log "image ready in $((SECONDS - t0)) s"
            echo "$TAG"
            ;;
    esac
}

main "$@"
