#!/usr/bin/env bash
# Build the CPU image offline with rootful podman, run it, run the compose stack, and break it.
#
#   bash docker/smoke.sh            (root; run by .ci/run after `make test`)
#
# No container registry is reachable from these machines, so nothing is pulled (--pull=never):
#   - the base image is a `debootstrap --variant=minbase` Debian bookworm with python3, python3-venv
#     and ca-certificates, imported with `podman import` (cached under $RLRF_SMOKE_CACHE, and as an
#     image in podman's store, between runs on one machine; built from nothing when absent, ~2 min);
#   - the Redis image of the compose file is built locally from Debian's redis-server package and
#     tagged with the name docker-compose.yml uses;
#   - pip inside the build verifies TLS with the host's CA bundle, mounted into the build steps only
#     (with a pip.conf naming it): nothing of it stays in the image.
# podman runs with the runc runtime (crun fails on these hosts' hybrid cgroups) and default ulimits
# no higher than the host's hard limits (the render sandbox cannot raise rlimits).
#
# Checks, in order (every wait bounded; see docker/smoke_checks.py):
#   1. the image builds (no torch in it);
#   2. one container, --read-only --cap-drop ALL as its non-root user, answers /readyz and POST /score;
#   3. the compose stack (redis, reward-api in Celery mode, cpu-worker, judge-proxy) answers POST /score
#      through Redis and the worker;
#   4. the cpu-worker container SIGKILLed mid-request and started again: every rollout answered once,
#      none an error;
#   5. the Redis container restarted mid-request: every rollout answered once, `error` only past the
#      deadline, then ready and scoring again. Known to fail until issue 13 (Redis resilience of the
#      Celery backend) lands: reported as KNOWN FAILURE and not fatal unless RLRF_SMOKE_STRICT=1.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${RLRF_SMOKE_CACHE:-/var/cache/rlrf-ci}
PYTHON=${PYTHON:-.venv/bin/python}
PROJECT=rlrf-smoke
BASE_IMAGE=localhost/rlrf-ci-base:bookworm
IMAGE=$(sed -n 's/^  image: \(rlrf:[^ ]*\)$/\1/p' docker-compose.yml | head -1)
REDIS_IMAGE=$(sed -n 's/^    image: \(redis:[^ ]*\)$/\1/p' docker-compose.yml | head -1)
API_PORT=${RLRF_SMOKE_API_PORT:-18000}
JUDGE_PORT=${RLRF_SMOKE_JUDGE_PORT:-18100}
REDIS_PORT=${RLRF_SMOKE_REDIS_PORT:-16379}
SINGLE_PORT=${RLRF_SMOKE_SINGLE_PORT:-18001}
DEADLINE_S=60
WORK=$(mktemp -d /tmp/rlrf-smoke.XXXXXX)
SINGLE=rlrf-smoke-single
STARTED=$SECONDS
PASSED=0

step() { printf '== smoke [%4ds] %s\n' "$((SECONDS - STARTED))" "$*"; }
compose() {
  "$CACHE/podman-compose/bin/podman-compose" -p "$PROJECT" -f docker-compose.yml "$@"
}
logs() {
  for c in $(podman ps -a -q --filter "label=io.podman.compose.project=$PROJECT") $SINGLE; do
    podman container exists "$c" 2>/dev/null || continue
    echo "---- logs of $(podman inspect --format '{{.Name}}' "$c") (last 40 lines)"
    podman logs --tail 40 "$c" 2>&1 || true
  done
}
cleanup() {
  rc=$?
  [ "$rc" -ne 0 ] && logs
  podman rm -f -t 0 "$SINGLE" >/dev/null 2>&1 || true
  [ -x "$CACHE/podman-compose/bin/podman-compose" ] && compose down -t 0 >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

# 0. Tools: podman with runc and debootstrap from Debian; podman-compose from PyPI in a venv of its own.
step "tools"
missing=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
fi
mkdir -p "$CACHE"
if [ ! -x "$CACHE/podman-compose/bin/podman-compose" ]; then
  python3 -m venv "$CACHE/podman-compose"
  "$CACHE/podman-compose/bin/pip" install -q 'podman-compose==1.6.0'
fi
cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF=$WORK/containers.conf
# The host's CA bundle verifies TLS to the package registry; mounted into RUN steps only.
CA_BUNDLE=${RLRF_SMOKE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$WORK/pip.conf"
BUILD_MOUNTS=(-v "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro" -v "$WORK/pip.conf:/etc/pip.conf:ro")

# 1. The base image: debootstrap once, then the cached tarball, then podman's own store.
step "base image $BASE_IMAGE"
if ! podman image exists "$BASE_IMAGE"; then
  if [ ! -s "$CACHE/bookworm-minbase.tar" ]; then
    # The Debian mirror this host's apt uses.
    MIRROR=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
    [ -n "$MIRROR" ] || MIRROR=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)
    rm -rf "$CACHE/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$CACHE/rootfs" "$MIRROR" \
      >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log"; exit 1; }
    rm -rf "$CACHE/rootfs/var/cache/apt/archives/"*.deb "$CACHE/rootfs/var/lib/apt/lists/"*
    tar -C "$CACHE/rootfs" -cf "$CACHE/bookworm-minbase.tar.tmp" . && mv "$CACHE/bookworm-minbase.tar.tmp" "$CACHE/bookworm-minbase.tar"
    rm -rf "$CACHE/rootfs"
  fi
  podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' "$CACHE/bookworm-minbase.tar" "$BASE_IMAGE" >/dev/null
fi

# 2. The CPU image, and a Redis image from Debian's redis-server under the compose file's name.
step "build $IMAGE (docker/Dockerfile)"
podman build --pull=never --network host "${BUILD_MOUNTS[@]}" --build-arg "PYTHON_IMAGE=$BASE_IMAGE" \
  -f docker/Dockerfile -t "$IMAGE" . >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; exit 1; }
podman image inspect --format '   {{.Size}} bytes, user {{.Config.User}}' "$IMAGE"
PASSED=$((PASSED + 1))
step "build $REDIS_IMAGE (Debian's redis-server)"
cat >"$WORK/Containerfile.redis" <<EOF
FROM $BASE_IMAGE
# The official image's redis user (uid 999, gid 1000), which docker-compose.yml runs as.
RUN groupadd --system --gid 1000 redis && useradd --system --uid 999 --gid 1000 --home-dir /data redis \\
 && apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \\
 && rm -rf /var/lib/apt/lists/* && mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER 999:1000
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
EOF
podman build --pull=never --network host -f "$WORK/Containerfile.redis" -t "$REDIS_IMAGE" "$WORK" \
  >"$WORK/build-redis.log" 2>&1 || { tail -40 "$WORK/build-redis.log"; exit 1; }

# 3. One container, embedded mode, read-only root, no capabilities, the image's non-root user.
step "one container: --read-only --cap-drop ALL, embedded mode"
podman rm -f -t 0 "$SINGLE" >/dev/null 2>&1 || true
podman run -d --name "$SINGLE" --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
  -p "127.0.0.1:$SINGLE_PORT:8000" "$IMAGE" serve --backend embedded --workers 2 >/dev/null
[ "$(podman exec "$SINGLE" id -u)" = 10001 ] || { echo "FAIL: the container does not run as uid 10001"; exit 1; }
podman exec "$SINGLE" python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)" \
  || { echo "FAIL: torch is in the CPU image"; exit 1; }
"$PYTHON" docker/smoke_checks.py basic --url "http://127.0.0.1:$SINGLE_PORT" --ready-timeout 90
podman rm -f -t 0 "$SINGLE" >/dev/null
PASSED=$((PASSED + 1))

# 4. The compose stack, in Celery mode, with limits short enough for redelivery inside the run.
step "compose stack: redis, reward-api (celery), cpu-worker, judge-proxy"
export PUBLISH_API_PORT=$API_PORT PUBLISH_JUDGE_PORT=$JUDGE_PORT PUBLISH_REDIS_PORT=$REDIS_PORT
# Chunks of 4: the faults below hit a group spread over several tasks, some of them still queued in Redis.
export RLRF_TASK_TIME_LIMIT_S=20 RLRF_VISIBILITY_TIMEOUT_S=30 RLRF_REQUEST_DEADLINE_S=$DEADLINE_S
export RLRF_CELERY_CHUNK_SIZE=4
compose down -t 0 >/dev/null 2>&1 || true
compose up -d --no-build redis reward-api cpu-worker judge-proxy >"$WORK/compose-up.log" 2>&1 \
  || { tail -40 "$WORK/compose-up.log"; exit 1; }
"$PYTHON" docker/smoke_checks.py basic --url "http://127.0.0.1:$API_PORT" --ready-timeout 180
curl -fsS "http://127.0.0.1:$JUDGE_PORT/healthz" >/dev/null || { echo "FAIL: judge-proxy /healthz"; exit 1; }
PASSED=$((PASSED + 1))

step "compose stack: SIGKILL the cpu-worker container mid-request"
"$PYTHON" docker/smoke_checks.py worker-kill --url "http://127.0.0.1:$API_PORT" --project "$PROJECT"
PASSED=$((PASSED + 1))

step "compose stack: restart the Redis container mid-request"
set +e
"$PYTHON" docker/smoke_checks.py redis-restart --url "http://127.0.0.1:$API_PORT" --project "$PROJECT" \
  --deadline "$DEADLINE_S" --ready-timeout 120
redis_rc=$?
set -e
KNOWN=0
if [ "$redis_rc" -eq 3 ]; then
  logs
  echo "== smoke KNOWN FAILURE (issue 13, Redis resilience of the Celery backend): the Redis-restart check failed as above"
  [ "${RLRF_SMOKE_STRICT:-0}" = 1 ] && exit 1
  KNOWN=1
elif [ "$redis_rc" -ne 0 ]; then
  exit "$redis_rc"
else
  PASSED=$((PASSED + 1))
  echo "== smoke: the Redis-restart check passed (issue 13 fixed? then set RLRF_SMOKE_STRICT=1 in .ci/run)"
fi
step "done"
# The known failure counts as skipped (not fatal; reported above).
echo "smoke: $PASSED passed, 0 failed, $KNOWN skipped"
