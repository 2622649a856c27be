#!/usr/bin/env bash
#
# Builds Switchboard's pinned external binaries (see hack/versions.sh) from
# the Go module proxy into ${SWITCHBOARD_CACHE_DIR}/bin/<name>-<version>/.
# No GitHub downloads or container images are needed: only `go` + GOPROXY,
# and for shellcheck apt-get and dpkg-deb, which unpack Debian's package
# there without installing it.
#
# Cached binaries that run and report the pinned version are skipped, so
# this is cheap to call from other scripts / make targets.

set -euo pipefail

usage() {
  cat <<'EOF'
Usage: hack/install-deps.sh [-f|--force] [component...]

Components: kube-apiserver kube-controller-manager kubectl etcd kwok shellcheck
            (default: all but shellcheck, which only make verify-shellcheck uses)

Builds each component (CGO_ENABLED=0, -trimpath) from the Go module proxy into
  ${SWITCHBOARD_CACHE_DIR:-<repo>/.cache}/bin/<name>-<version>/<name>
unless a working binary of the pinned version is already there. kwok's "fast"
node/pod Stage yaml files are copied to .../bin/kwok-<version>/stages/.
shellcheck is Debian's package of the pinned version, fetched with
apt-get download and unpacked with dpkg-deb: nothing is installed.

Options:
  -f, --force   rebuild even if a cached binary exists
  -h, --help    show this help

Environment:
  SWITCHBOARD_CACHE_DIR  cache root (default: <repo>/.cache)
  GO                     go command to use (default: go)
  GOPROXY, GOMODCACHE, GOCACHE, GOTOOLCHAIN are honoured; GOFLAGS and GOWORK
  are ignored for the builds.

Progress goes to stderr; one "<name> <version>: <path>" line per component
goes to stdout.
EOF
}

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=hack/versions.sh
source "${HACK_DIR}/versions.sh"
# shellcheck source=hack/lib/deps.sh
source "${HACK_DIR}/lib/deps.sh"

force=false
requested=()
for arg in "$@"; do
  case "${arg}" in
    -h | --help)
      usage
      exit 0
      ;;
    -f | --force) force=true ;;
    -*) deps::die "unknown flag '${arg}' (see --help)" ;;
    *)
      deps::is_component "${arg}" ||
        deps::die "unknown component '${arg}' (known: ${DEPS_COMPONENTS[*]})"
      requested+=("${arg}")
      ;;
  esac
done
if ((${#requested[@]} == 0)); then
  read -r -a requested <<<"$(deps::default_components)"
fi

# is_requested <component>
is_requested() {
  local r
  for r in "${requested[@]}"; do
    [[ "${r}" == "$1" ]] && return 0
  done
  return 1
}

trap deps::cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

deps::check_tools
mkdir -p "${SWITCHBOARD_CACHE_DIR}/bin" "${SWITCHBOARD_CACHE_DIR}/build"
deps::log "cache: ${SWITCHBOARD_CACHE_DIR} ($("${GO:-go}" version))"

# Result lines, in build order: "<component>|<cached|built|fetched>|<seconds>".
results=()
total_start=${SECONDS}

for group in kube etcd kwok shellcheck; do
  todo=()
  for c in $(deps::group_components "${group}"); do
    is_requested "${c}" || continue
    if ! ${force} && deps::is_cached "${c}"; then
      deps::log "[${c}] cached: $(deps::bin_path "${c}") (${DEPS_VERSION_LINE})"
      results+=("${c}|cached|0")
    else
      todo+=("${c}")
    fi
  done
  ((${#todo[@]} > 0)) || continue

  # Serialise concurrent invocations sharing a throwaway module (e.g. two
  # make targets asking for kube-apiserver and kubectl).
  lock="$(deps::build_dir "${group}").lock"
  exec 9>"${lock}"
  if command -v flock >/dev/null 2>&1; then
    if ! flock -n 9; then
      deps::log "[${group}] waiting for another install-deps.sh (lock ${lock})..."
      flock 9
    fi
  fi

  prepared=false
  for c in "${todo[@]}"; do
    start=${SECONDS}
    bin="$(deps::bin_path "${c}")"
    # Re-check under the lock: another process may have just built it.
    if ! ${force} && deps::verify_binary "${c}" "${bin}"; then
      deps::log "[${c}] binary present: ${bin}"
      status=cached
    elif deps::is_deb_group "${group}"; then
      deps::install_deb "${c}"
      status=fetched
    else
      if ! ${prepared}; then
        deps::prepare_module "${group}"
        prepared=true
      fi
      deps::build_binary "${c}"
      status=built
    fi
    if [[ "${c}" == kwok ]]; then
      deps::install_kwok_stages
    fi
    results+=("${c}|${status}|$((SECONDS - start))")
  done

  exec 9>&-
done

deps::log "done in $(deps::fmt_duration $((SECONDS - total_start)))"

for c in "${DEPS_COMPONENTS[@]}"; do
  for r in "${results[@]}"; do
    IFS='|' read -r name status secs <<<"${r}"
    [[ "${name}" == "${c}" ]] || continue
    if [[ "${status}" == built || "${status}" == fetched ]]; then
      status="${status} in $(deps::fmt_duration "${secs}")"
    fi
    echo "${c} $(deps::version "${c}"): $(deps::bin_path "${c}") (${status})"
    if [[ "${c}" == kwok ]]; then
      echo "kwok-stages $(deps::version kwok): $(deps::kwok_stages_dir)/"
    fi
  done
done
