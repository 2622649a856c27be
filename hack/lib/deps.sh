#!/usr/bin/env bash
# shellcheck shell=bash
#
# Shared helpers for obtaining Switchboard's pinned external binaries
# (kube-apiserver, kube-controller-manager, kubectl, etcd, kwok) by building
# them from the Go module proxy, and shellcheck by unpacking Debian's
# package. Source hack/versions.sh before this file.
#
# Layout under ${SWITCHBOARD_CACHE_DIR}:
#   bin/<name>-<version>/<name>        the binaries (atomically installed)
#   bin/kwok-<version>/stages/*.yaml   kwok "fast" node/pod Stage definitions
#   build/<group>-<version>/           generated throwaway Go modules
#                                      (kube, etcd, kwok)
#   apt/                               apt's own package lists, used only
#                                      when the system's lack the pinned
#                                      version of a Debian package

# All components, in build order.
DEPS_COMPONENTS=(kube-apiserver kube-controller-manager kubectl etcd kwok shellcheck)

# Temporary paths to remove on exit (see deps::cleanup).
DEPS_TMP_PATHS=()

# Set by deps::verify_binary: first line of the binary's --version output.
DEPS_VERSION_LINE=""

deps::log() {
  printf 'install-deps: %s\n' "$*" >&2
}

deps::die() {
  printf 'install-deps: ERROR: %s\n' "$*" >&2
  exit 1
}

deps::cleanup() {
  local p
  for p in "${DEPS_TMP_PATHS[@]+"${DEPS_TMP_PATHS[@]}"}"; do
    rm -rf -- "${p}"
  done
}

# deps::default_components: what hack/install-deps.sh installs when no
# component is named, the binaries the local topology runs. shellcheck only
# serves make verify-shellcheck.
deps::default_components() {
  echo kube-apiserver kube-controller-manager kubectl etcd kwok
}

# deps::fmt_duration <seconds>
deps::fmt_duration() {
  printf '%dm%02ds' $(($1 / 60)) $(($1 % 60))
}

# deps::is_component <name>
deps::is_component() {
  local c
  for c in "${DEPS_COMPONENTS[@]}"; do
    [[ "${c}" == "$1" ]] && return 0
  done
  return 1
}

# deps::version <component|group>: pinned version.
deps::version() {
  case "$1" in
    kube | kube-apiserver | kube-controller-manager | kubectl) echo "${KUBE_VERSION}" ;;
    etcd) echo "${ETCD_VERSION}" ;;
    kwok) echo "${KWOK_VERSION}" ;;
    shellcheck) echo "${SHELLCHECK_VERSION}" ;;
    *) deps::die "unknown component '$1' (known: ${DEPS_COMPONENTS[*]})" ;;
  esac
}

# deps::group <component>: which throwaway module builds the component.
# kube-apiserver, kube-controller-manager and kubectl share one module so
# that the module download, go.sum and build cache work is shared. The
# group named shellcheck is Debian's package, not a module.
deps::group() {
  case "$1" in
    kube-apiserver | kube-controller-manager | kubectl) echo kube ;;
    etcd) echo etcd ;;
    kwok) echo kwok ;;
    shellcheck) echo shellcheck ;;
    *) deps::die "unknown component '$1'" ;;
  esac
}

# deps::group_components <group>: components built by a group's module.
deps::group_components() {
  case "$1" in
    kube) echo kube-apiserver kube-controller-manager kubectl ;;
    etcd) echo etcd ;;
    kwok) echo kwok ;;
    shellcheck) echo shellcheck ;;
    *) deps::die "unknown group '$1'" ;;
  esac
}

# deps::is_deb_group <group>: succeeds for groups unpacked from a Debian
# package rather than built from the Go module proxy.
deps::is_deb_group() {
  [[ "$1" == shellcheck ]]
}

# deps::group_module <group>: the upstream module the group builds from.
deps::group_module() {
  case "$1" in
    kube) echo k8s.io/kubernetes ;;
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    kwok) echo sigs.k8s.io/kwok ;;
    *) deps::die "unknown group '$1'" ;;
  esac
}

# deps::replace_version <group>: version to use for the upstream module's
# local (filesystem) replacements, e.g. k8s.io/kubernetes v1.37.2 ships its
# staging modules (k8s.io/api, ...) as v0.37.2.
deps::replace_version() {
  local v
  v="$(deps::version "$1")"
  case "$1" in
    kube) echo "v0.${v#v1.}" ;;
    *) echo "${v}" ;;
  esac
}

# deps::package <component>: the main package to build.
deps::package() {
  case "$1" in
    kube-apiserver) echo k8s.io/kubernetes/cmd/kube-apiserver ;;
    kube-controller-manager) echo k8s.io/kubernetes/cmd/kube-controller-manager ;;
    kubectl) echo k8s.io/kubernetes/cmd/kubectl ;;
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    kwok) echo sigs.k8s.io/kwok/cmd/kwok ;;
    *) deps::die "unknown component '$1'" ;;
  esac
}

deps::bin_dir() {
  echo "${SWITCHBOARD_CACHE_DIR}/bin/$1-$(deps::version "$1")"
}

deps::bin_path() {
  echo "$(deps::bin_dir "$1")/$1"
}

deps::build_dir() {
  echo "${SWITCHBOARD_CACHE_DIR}/build/$1-$(deps::version "$1")"
}

deps::kwok_stages_dir() {
  echo "$(deps::bin_dir kwok)/stages"
}

# deps::go <args...>: run the go command isolated from the caller's
# workspace/flags, building static binaries.
deps::go() {
  GOWORK=off GOFLAGS='' CGO_ENABLED=0 "${GO:-go}" "$@"
}

deps::check_tools() {
  command -v "${GO:-go}" >/dev/null 2>&1 ||
    deps::die "the go command was not found (set GO=/path/to/go or add it to PATH)"
  if ! command -v jq >/dev/null 2>&1 && ! command -v python3 >/dev/null 2>&1; then
    deps::die "jq (or python3) is required to read go.mod JSON; install jq"
  fi
}

# deps::version_args <component>: arguments that make the binary print its
# version. kubectl has no --version flag; "version --client" never contacts
# a server (KUBERC=off below keeps a user's ~/.kube/kuberc out of it too).
deps::version_args() {
  case "$1" in
    kubectl) echo "version --client" ;;
    *) echo "--version" ;;
  esac
}

# deps::reported_version <component>: what the binary's version output must
# contain. A Debian package's version ends in the Debian revision ("-1"),
# which the program does not know.
deps::reported_version() {
  local v
  v="$(deps::version "$1")"
  case "$1" in
    shellcheck) echo "version: ${v%-*}" ;;
    *) echo "${v#v}" ;;
  esac
}

# deps::verify_binary <component> <path>: succeeds if the binary runs and its
# version output mentions the pinned version. Sets DEPS_VERSION_LINE.
deps::verify_binary() {
  local component="$1" bin="$2" version out
  local -a runner=() args
  version="$(deps::reported_version "${component}")"
  read -r -a args <<<"$(deps::version_args "${component}")"
  DEPS_VERSION_LINE=""
  [[ -f "${bin}" && -x "${bin}" ]] || return 1
  if command -v timeout >/dev/null 2>&1; then
    runner=(timeout 60)
  fi
  out="$(KUBERC=off "${runner[@]+"${runner[@]}"}" "${bin}" "${args[@]}" 2>&1)" || return 1
  # kube: "Kubernetes v1.37.2"; kubectl: "Client Version: v1.37.2
  # Kustomize Version: v5..."; etcd: "etcd Version: 3.7.3";
  # kwok: "kwok version v0.8.0 ..."; shellcheck: "ShellCheck - shell
  # script analysis tool version: 0.9.0 ...".
  [[ "${out}" == *"${version}"* ]] || return 1
  DEPS_VERSION_LINE="$(printf '%s\n' "${out}" | tr '\n' ' ' | sed -e 's/ *$//')"
  return 0
}

# deps::is_cached <component>
deps::is_cached() {
  deps::verify_binary "$1" "$(deps::bin_path "$1")" || return 1
  if [[ "$1" == kwok ]]; then
    [[ -d "$(deps::kwok_stages_dir)" ]] || return 1
  fi
  return 0
}

# deps::neutral_dir: a directory holding a minimal go.mod, so that module
# queries never depend on (or touch) the Switchboard go.mod/go.work.
deps::neutral_dir() {
  local dir="${SWITCHBOARD_CACHE_DIR}/build/_query"
  if [[ ! -f "${dir}/go.mod" ]]; then
    mkdir -p "${dir}"
    printf 'module switchboard.local/deps/query\n' >"${dir}/go.mod"
  fi
  echo "${dir}"
}

# deps::module_field <module@version> <go-template>: e.g. '{{.Dir}}'.
# Downloads the module (source zip included) if needed.
deps::module_field() {
  local dir
  dir="$(deps::neutral_dir)"
  (cd "${dir}" && deps::go mod download "$1") ||
    deps::die "cannot download $1 from the module proxy (GOPROXY=$("${GO:-go}" env GOPROXY))"
  (cd "${dir}" && deps::go list -m -f "$2" "$1") ||
    deps::die "cannot query module $1"
}

# deps::gomod_directives <go.mod file>: prints the directives of the file that
# a throwaway module depending on it must mirror, one per line:
#   replace<TAB><old path>[@<old version>]   local replace of a required module
#   skip<TAB><old path>[@<old version>]      local replace of a module the
#                                            file does not require (e.g. etcd's
#                                            "=> ./FORBIDDEN_DEPENDENCY" guards,
#                                            k8s sample-* modules): not mirrored
#   godebug<TAB><key>=<value>
#   exclude<TAB><path>@<version>
# Non-local replaces are not mirrored (MVS already sees the real versions).
deps::gomod_directives() {
  local json
  json="$(deps::go mod edit -json "$1")" || deps::die "cannot parse $1"
  if command -v jq >/dev/null 2>&1; then
    jq -r '
      ([(.Require // [])[].Path]) as $required
      | ((.Replace // [])[]
        | select((.New.Version // "") == "")
        | (if (.Old.Path | IN($required[])) then "replace" else "skip" end)
          + "\t" + .Old.Path
          + (if (.Old.Version // "") != "" then "@" + .Old.Version else "" end)),
      ((.Godebug // [])[] | "godebug\t" + .Key + "=" + .Value),
      ((.Exclude // [])[] | "exclude\t" + .Path + "@" + .Version)
    ' <<<"${json}" || deps::die "jq failed on $1"
  else
    python3 -c '
import json, sys
d = json.load(sys.stdin)
required = {r["Path"] for r in d.get("Require") or []}
for r in d.get("Replace") or []:
    if not r["New"].get("Version"):
        old = r["Old"]["Path"]
        kind = "replace" if old in required else "skip"
        if r["Old"].get("Version"):
            old += "@" + r["Old"]["Version"]
        print(kind + "\t" + old)
for g in d.get("Godebug") or []:
    print("godebug\t%s=%s" % (g["Key"], g["Value"]))
for e in d.get("Exclude") or []:
    print("exclude\t%s@%s" % (e["Path"], e["Version"]))
' <<<"${json}" || deps::die "python3 failed on $1"
  fi
}

# deps::prepare_module <group>: (re)generates the throwaway module in
# build/<group>-<version>/ that requires the upstream module, mirrors its
# local replaces with published versions, declares the components' main
# packages as tools, and runs go mod tidy.
deps::prepare_module() {
  local group="$1" dir module version repl_version gomod gover kind value
  local n_replace=0 start directives
  local -a edits=() skipped=()
  start=${SECONDS}
  dir="$(deps::build_dir "${group}")"
  module="$(deps::group_module "${group}")"
  version="$(deps::version "${group}")"
  repl_version="$(deps::replace_version "${group}")"

  deps::log "[${group}] preparing throwaway module ${dir}"
  gomod="$(deps::module_field "${module}@${version}" '{{.GoMod}}')"
  gover="$(deps::module_field "${module}@${version}" '{{.GoVersion}}')"
  [[ -f "${gomod}" ]] || deps::die "go.mod of ${module}@${version} not found at '${gomod}'"

  # Not a process substitution: a failure here must abort the script.
  directives="$(deps::gomod_directives "${gomod}")"

  edits+=("-require=${module}@${version}")
  [[ -n "${gover}" ]] && edits+=("-go=${gover}")
  while IFS=$'\t' read -r kind value; do
    case "${kind}" in
      replace)
        # "k8s.io/api" => "k8s.io/api=k8s.io/api@v0.37.2"
        edits+=("-replace=${value}=${value%@*}@${repl_version}")
        n_replace=$((n_replace + 1))
        ;;
      skip) skipped+=("${value}") ;;
      godebug) edits+=("-godebug=${value}") ;;
      exclude) edits+=("-exclude=${value}") ;;
      '') ;;
      *) deps::die "unexpected directive '${kind}'" ;;
    esac
  done <<<"${directives}"

  local c
  for c in $(deps::group_components "${group}"); do
    edits+=("-tool=$(deps::package "${c}")")
  done

  mkdir -p "${dir}"
  # Regenerate go.mod from scratch every time (go.sum is kept: it only
  # speeds up tidy and is pruned by it).
  {
    printf '// Code generated by hack/install-deps.sh. DO NOT EDIT.\n'
    printf '// Throwaway module used to build %s %s.\n' "${module}" "${version}"
    printf 'module switchboard.local/deps/%s\n' "${group}"
  } >"${dir}/go.mod"
  (cd "${dir}" && deps::go mod edit "${edits[@]}") ||
    deps::die "[${group}] go mod edit failed in ${dir}"
  deps::log "[${group}] requires ${module}@${version}; mirrored ${n_replace} local replace(s) of its go.mod as @${repl_version}"
  if ((${#skipped[@]} > 0)); then
    deps::log "[${group}] not mirrored (local replaces of modules ${module} does not require): ${skipped[*]}"
  fi
  deps::log "[${group}] go mod tidy (downloads dependencies on first run)..."
  (cd "${dir}" && deps::go mod tidy) ||
    deps::die "[${group}] go mod tidy failed in ${dir} (see errors above)"
  deps::log "[${group}] module ready in $(deps::fmt_duration $((SECONDS - start)))"
}

# deps::ldflags <component>
deps::ldflags() {
  local flags="-s -w" v kv date
  case "$1" in
    kube-apiserver | kube-controller-manager | kubectl)
      v="$(deps::version "$1")"
      # Same -X flags as k8s.io/kubernetes hack/lib/version.sh. The build
      # date is the tag's time from the proxy, so builds are reproducible.
      date="$(deps::module_field "k8s.io/kubernetes@${v}" '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}')"
      local minor="${v#v*.}"
      minor="${minor%%.*}"
      local major="${v#v}"
      major="${major%%.*}"
      for kv in "gitVersion=${v}" "gitMajor=${major}" "gitMinor=${minor}" \
        "gitCommit=" "gitTreeState=clean" "buildDate=${date:-1970-01-01T00:00:00Z}"; do
        flags+=" -X k8s.io/component-base/version.${kv}"
        flags+=" -X k8s.io/client-go/pkg/version.${kv}"
      done
      ;;
  esac
  echo "${flags}"
}

# deps::tags <component>
deps::tags() {
  case "$1" in
    # As in k8s.io/kubernetes hack/lib/golang.sh for non-debug builds.
    kube-apiserver | kube-controller-manager | kubectl) echo "selinux,notest,grpcnotrace" ;;
    *) echo "" ;;
  esac
}

# deps::build_binary <component>: builds into a temp dir next to the final
# location, checks that it runs, then renames it into place (atomic).
deps::build_binary() {
  local component="$1" group dir pkg bin_dir tmpd ldflags tags start
  local -a args
  start=${SECONDS}
  group="$(deps::group "${component}")"
  dir="$(deps::build_dir "${group}")"
  pkg="$(deps::package "${component}")"
  bin_dir="$(deps::bin_dir "${component}")"
  ldflags="$(deps::ldflags "${component}")"
  tags="$(deps::tags "${component}")"

  mkdir -p "${SWITCHBOARD_CACHE_DIR}/bin"
  tmpd="$(mktemp -d "${SWITCHBOARD_CACHE_DIR}/bin/.tmp-${component}.XXXXXX")"
  DEPS_TMP_PATHS+=("${tmpd}")

  args=(build -trimpath -buildvcs=false -ldflags "${ldflags}")
  [[ -n "${tags}" ]] && args+=(-tags "${tags}")
  args+=(-o "${tmpd}/${component}" "${pkg}")
  deps::log "[${component}] go ${args[*]:0:3} ${tags:+-tags ${tags} }-o <tmp> ${pkg} (CGO_ENABLED=0)"
  (cd "${dir}" && deps::go "${args[@]}") ||
    deps::die "[${component}] go build of ${pkg} failed (module: ${dir})"

  deps::verify_binary "${component}" "${tmpd}/${component}" ||
    deps::die "[${component}] the freshly built binary does not run or does not report version $(deps::version "${component}") (try: ${tmpd}/${component} --version)"

  mkdir -p "${bin_dir}"
  mv -f "${tmpd}/${component}" "${bin_dir}/${component}"
  rm -rf -- "${tmpd}"
  deps::log "[${component}] built in $(deps::fmt_duration $((SECONDS - start))): ${DEPS_VERSION_LINE}"
}

# deps::install_kwok_stages: copies the Stage yaml files of the kwok module's
# kustomize/stage/{node,pod}/fast into bin/kwok-<version>/stages/.
deps::install_kwok_stages() {
  local moddir stages tmpd src f base n=0
  moddir="$(deps::module_field "sigs.k8s.io/kwok@${KWOK_VERSION}" '{{.Dir}}')"
  [[ -d "${moddir}" ]] || deps::die "kwok module source not found at '${moddir}'"
  stages="$(deps::kwok_stages_dir)"
  mkdir -p "$(dirname "${stages}")"
  tmpd="$(mktemp -d "$(dirname "${stages}")/.tmp-stages.XXXXXX")"
  DEPS_TMP_PATHS+=("${tmpd}")
  for src in kustomize/stage/node/fast kustomize/stage/pod/fast; do
    [[ -d "${moddir}/${src}" ]] || deps::die "kwok ${KWOK_VERSION} has no ${src} directory"
    for f in "${moddir}/${src}"/*.yaml; do
      [[ -f "${f}" ]] || continue
      base="$(basename "${f}")"
      # Only Stage objects (skip kustomization.yaml).
      grep -q '^kind: *Stage *$' "${f}" || continue
      [[ ! -e "${tmpd}/${base}" ]] || deps::die "duplicate kwok stage file name ${base}"
      # Module cache files are read-only; make the copies writable.
      cp "${f}" "${tmpd}/${base}"
      chmod 0644 "${tmpd}/${base}"
      n=$((n + 1))
    done
  done
  ((n > 0)) || deps::die "no kwok Stage yaml found in ${moddir}/kustomize/stage/{node,pod}/fast"
  chmod 0755 "${tmpd}" # mktemp -d creates it 0700
  rm -rf -- "${stages}"
  mv "${tmpd}" "${stages}"
  deps::log "[kwok] installed ${n} stage file(s) into ${stages}: $(cd "${stages}" && echo ./*.yaml | sed -e 's|\./||g')"
}

# deps::deb_package <component>: the Debian package that ships the component.
deps::deb_package() {
  case "$1" in
    shellcheck) echo shellcheck ;;
    *) deps::die "component '$1' is not a Debian package" ;;
  esac
}

# deps::apt_get <args...>: apt-get downloading as the calling user, into
# directories of that user (as root, apt would try its _apt user and warn
# that it cannot write there).
deps::apt_get() {
  apt-get -q -o "APT::Sandbox::User=$(id -un)" "$@"
}

# deps::apt <args...>: deps::apt_get reading the package lists in
# ${SWITCHBOARD_CACHE_DIR}/apt instead of the system's, so that neither an
# update nor a download changes the system.
deps::apt() {
  local dir="${SWITCHBOARD_CACHE_DIR}/apt"
  mkdir -p "${dir}/lists/partial" "${dir}/cache"
  deps::apt_get \
    -o "Dir::State::Lists=${dir}/lists" \
    -o "Dir::Cache=${dir}/cache" \
    -o Debug::NoLocking=1 \
    "$@"
}

# deps::install_deb <component>: downloads the pinned version of the
# component's Debian package with apt-get download, which checks it against
# the archive's signed index, and unpacks its binary into
# bin/<name>-<version>/ (checked, then renamed into place). Nothing is
# installed: when the system's package lists do not know that version (a
# fresh machine has none), apt reads lists of its own (see deps::apt).
deps::install_deb() {
  local component="$1" pkg version bin_dir tmpd start
  local -a debs
  start=${SECONDS}
  pkg="$(deps::deb_package "${component}")"
  version="$(deps::version "${component}")"
  bin_dir="$(deps::bin_dir "${component}")"
  if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
    deps::die "[${component}] apt-get and dpkg-deb are needed to fetch Debian's ${pkg} ${version}; elsewhere, put a ${component} that reports $(deps::reported_version "${component}") at $(deps::bin_path "${component}")"
  fi

  mkdir -p "${SWITCHBOARD_CACHE_DIR}/bin"
  tmpd="$(mktemp -d "${SWITCHBOARD_CACHE_DIR}/bin/.tmp-${component}.XXXXXX")"
  DEPS_TMP_PATHS+=("${tmpd}")
  chmod 0755 "${tmpd}" # mktemp -d creates it 0700

  if apt-cache show "${pkg}=${version}" >/dev/null 2>&1; then
    deps::log "[${component}] apt-get download ${pkg}=${version}"
    (cd "${tmpd}" && deps::apt_get download "${pkg}=${version}") >&2 ||
      deps::die "[${component}] apt-get download ${pkg}=${version} failed"
  else
    deps::log "[${component}] the system's package lists do not have ${pkg} ${version}; reading apt's lists into ${SWITCHBOARD_CACHE_DIR}/apt"
    deps::apt update >&2 ||
      deps::die "[${component}] apt-get update into ${SWITCHBOARD_CACHE_DIR}/apt failed"
    (cd "${tmpd}" && deps::apt download "${pkg}=${version}") >&2 ||
      deps::die "[${component}] apt-get download ${pkg}=${version} failed: the pinned version is not in this system's Debian release (/etc/apt/sources.list*)"
  fi
  debs=("${tmpd}/${pkg}_"*.deb)
  [[ -f "${debs[0]}" ]] || deps::die "[${component}] apt-get download left no ${pkg}_*.deb in ${tmpd}"

  dpkg-deb -x "${debs[0]}" "${tmpd}/root" ||
    deps::die "[${component}] dpkg-deb -x ${debs[0]} failed"
  [[ -f "${tmpd}/root/usr/bin/${component}" ]] ||
    deps::die "[${component}] ${pkg} ${version} has no usr/bin/${component}"
  mv "${tmpd}/root/usr/bin/${component}" "${tmpd}/${component}"
  deps::verify_binary "${component}" "${tmpd}/${component}" ||
    deps::die "[${component}] the unpacked binary does not run or does not report $(deps::reported_version "${component}") (try: ${tmpd}/${component} --version; ldd shows missing libraries)"

  mkdir -p "${bin_dir}"
  mv -f "${tmpd}/${component}" "${bin_dir}/${component}"
  rm -rf -- "${tmpd}"
  deps::log "[${component}] unpacked in $(deps::fmt_duration $((SECONDS - start))): ${DEPS_VERSION_LINE}"
}
