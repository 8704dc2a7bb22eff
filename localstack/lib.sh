# shellcheck shell=bash
# Shared by localstack/up, down, status, deploy: paths, checks and the LocalStack settings.
# Sourced, not executed.

# shellcheck disable=SC2034 # the variables are used by the scripts that source this file
LS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LS_VENV="$LS_DIR/.venv"
LS_CACHE="$LS_DIR/.cache"
LS_STATE="$LS_DIR/.state"
LS_LOGS="$LS_STATE/logs"
LS_FS_ROOT="$LS_STATE/fs"
LS_PIDFILE="$LS_STATE/localstack.pid"
LS_PORT="${SHARDFLOW_LOCALSTACK_PORT:-4566}"
LS_HOST=127.0.0.1
LS_URL="http://$LS_HOST:$LS_PORT"
# localstack-core 2026.3.0 uses Python 3.12 syntax, and its package installer
# (localstack.packages.api: `Lock | None` with threading.Lock) needs 3.13
LS_PYTHON_MIN_MINOR=13
LS_JAVA_MIN=17         # DynamoDB Local 3.x

ls_log() { printf '%s %s\n' "[localstack]" "$*" >&2; }
ls_die() {
	printf '%s ERROR: %s\n' "[localstack]" "$*" >&2
	exit 1
}

# The Python that builds the venv: $SHARDFLOW_PYTHON, else a 3.13+ found on PATH or in pyenv.
ls_find_python() {
	local candidates=() c v
	if [[ -n "${SHARDFLOW_PYTHON:-}" ]]; then
		candidates=("$SHARDFLOW_PYTHON")
	else
		for c in python3.13 python3.14 python3; do
			command -v "$c" >/dev/null 2>&1 && candidates+=("$(command -v "$c")")
		done
		local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
		for c in "$pyenv_root"/versions/3.13*/bin/python "$pyenv_root"/versions/3.14*/bin/python; do
			[[ -x "$c" ]] && candidates+=("$c")
		done
	fi
	for c in "${candidates[@]}"; do
		v="$("$c" -c 'import sys; print(sys.version_info[0], sys.version_info[1])' 2>/dev/null)" || continue
		if [[ "${v% *}" == 3 && "${v#* }" -ge "$LS_PYTHON_MIN_MINOR" ]]; then
			echo "$c"
			return 0
		fi
	done
	ls_die "LocalStack needs Python >= 3.$LS_PYTHON_MIN_MINOR (on 3.11 it fails with a misleading \"No component plugins found\", on 3.12 its package installer fails with \"unsupported operand type(s) for |\"). None found among: ${candidates[*]:-python3.13 python3 ~/.pyenv/versions/3.13*}. Install one or point SHARDFLOW_PYTHON at it."
}

# JAVA_HOME of a Java >= 17: $JAVA_HOME if set, else the `java` on PATH.
ls_find_java_home() {
	local java home version
	if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
		home="$JAVA_HOME"
	else
		java="$(command -v java 2>/dev/null)" || ls_die "Java is missing: DynamoDB Local needs a Java >= $LS_JAVA_MIN runtime (Debian: apt-get install openjdk-17-jdk-headless), or set JAVA_HOME."
		home="$(dirname "$(dirname "$(readlink -f "$java")")")"
	fi
	version="$("$home/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
	[[ "$version" =~ ^[0-9]+$ ]] || ls_die "cannot tell the version of $home/bin/java"
	((version >= LS_JAVA_MIN)) || ls_die "$home/bin/java is Java $version; DynamoDB Local needs Java >= $LS_JAVA_MIN (set JAVA_HOME to one)."
	echo "$home"
}

# The settings of the LocalStack process (and of anything that reads its config, like provision).
ls_export_settings() {
	export OVERRIDE_IN_DOCKER=0                 # this machine may have a /.dockerenv: we run on the host
	export GATEWAY_SERVER=hypercorn             # the default server ignores the host of GATEWAY_LISTEN
	export GATEWAY_LISTEN="$LS_HOST:$LS_PORT"
	export LOCALSTACK_HOST="$LS_HOST:$LS_PORT"
	export SQS_ENDPOINT_STRATEGY=path           # queue URLs http://127.0.0.1:4566/<account>/<queue>
	export DNS_ADDRESS=0                        # no DNS server (it would want port 53)
	export SKIP_SSL_CERT_DOWNLOAD=1
	export DISABLE_EVENTS=1                     # no analytics
	export FILESYSTEM_ROOT="$LS_FS_ROOT"
	# LocalStack unpacks Lambda code under tempfile.gettempdir()/lambda: keep it in .state
	# (TMP, not TMPDIR: LocalStack warns that TMPDIR is a deprecated setting of its own)
	unset TMPDIR
	export TMP="$LS_STATE/tmp"
	export LAMBDA_RUNTIME_EXECUTOR=host         # shardflow_localstack: bootstraps as host processes
	export SHARDFLOW_LAMBDA_LOG_DIR="$LS_LOGS/lambda"
	export PERSISTENCE=0
	export DYNAMODB_IN_MEMORY="${DYNAMODB_IN_MEMORY:-1}"
	export LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT="${LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT:-30}"
	# SHARDFLOW_LOCALSTACK_OFFLINE=1 proves that nothing is downloaded at run time: any
	# request that leaves the machine goes to a proxy that does not exist, and fails
	if [[ "${SHARDFLOW_LOCALSTACK_OFFLINE:-0}" == 1 ]]; then
		export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9
		export http_proxy="$HTTP_PROXY" https_proxy="$HTTPS_PROXY"
		export NO_PROXY=127.0.0.1,localhost,::1 no_proxy=127.0.0.1,localhost,::1
	fi
	# marks every process LocalStack starts (they inherit its environment): see ls_our_pids
	export SHARDFLOW_LOCALSTACK_HOME="$LS_DIR"
}

ls_pid() {
	local pid
	[[ -f "$LS_PIDFILE" ]] || return 1
	pid="$(cat "$LS_PIDFILE")"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	echo "$pid"
}

# Is the pid in the pidfile our LocalStack (not a recycled pid)?
ls_running_pid() {
	local pid
	pid="$(ls_pid)" || return 1
	[[ -r "/proc/$pid/cmdline" ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'localstack.runtime.main' || return 1
	echo "$pid"
}

ls_healthy() {
	curl -fsS --max-time 2 "$LS_URL/_localstack/health" >/dev/null 2>&1
}

# Every process that belongs to this LocalStack: its session (LocalStack and all it
# started, bootstraps included) plus anything carrying our marker in its environment.
ls_our_pids() {
	local sid="${1:-}"
	{
		if [[ -n "$sid" ]]; then
			ps -e -o pid=,sid= | awk -v s="$sid" '$2 == s { print $1 }'
		fi
		grep -lzxF "SHARDFLOW_LOCALSTACK_HOME=$LS_DIR" /proc/[0-9]*/environ 2>/dev/null |
			sed -n 's|^/proc/\([0-9]*\)/environ$|\1|p' || true
	} | grep -vxF -e "$$" -e "$BASHPID" | sort -un || true
}

# "pid command" of whoever listens on the port, if anyone.
ls_port_owner() {
	ss -Hltnp "sport = :$LS_PORT" 2>/dev/null | sed -n 's/.*users:((\("[^"]*"\),pid=\([0-9]*\).*/\2 \1/p' | head -n1
}

ls_port_in_use() {
	[[ -n "$(ss -Hltn "sport = :$LS_PORT" 2>/dev/null)" ]]
}

ls_sha() { cat "$@" | sha256sum | cut -c1-16; }
