#!/usr/bin/env bash
# shellcheck shell=bash
#
# Pinned versions of the external binaries Switchboard's dev/test tooling
# needs, and where they are cached. Source this file (do not execute it):
#
#   source "$(git rev-parse --show-toplevel)/hack/versions.sh"
#
# Binaries are built from the Go module proxy (shellcheck: unpacked from
# Debian's package) by hack/install-deps.sh into
#   ${SWITCHBOARD_CACHE_DIR}/bin/<name>-<version>/<name>
# so bumping a version below automatically forces a rebuild.

SWITCHBOARD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

# Kubernetes control-plane components and kubectl (k8s.io/kubernetes). The
# staging modules (k8s.io/api, k8s.io/apiserver, ...) are used at the
# matching v0.X.Y version.
KUBE_VERSION="v1.37.2"
# etcd server (go.etcd.io/etcd/server/v3).
ETCD_VERSION="v3.7.3"
# kwok (sigs.k8s.io/kwok): fake nodes/pods.
KWOK_VERSION="v0.8.0"
# The version of Debian's shellcheck package (bookworm), for make
# verify-shellcheck; apt-get checks it against the archive's signed index.
SHELLCHECK_VERSION="0.9.0-1"

# Cache root (git-ignored). May be overridden from the environment.
SWITCHBOARD_CACHE_DIR="${SWITCHBOARD_CACHE_DIR:-${SWITCHBOARD_ROOT}/.cache}"
case "${SWITCHBOARD_CACHE_DIR}" in
  /*) ;;
  *) SWITCHBOARD_CACHE_DIR="${PWD}/${SWITCHBOARD_CACHE_DIR}" ;;
esac

# Convenience paths of the cached binaries (they exist only after
# hack/install-deps.sh has run).
KUBE_APISERVER_BIN="${SWITCHBOARD_CACHE_DIR}/bin/kube-apiserver-${KUBE_VERSION}/kube-apiserver"
KUBE_CONTROLLER_MANAGER_BIN="${SWITCHBOARD_CACHE_DIR}/bin/kube-controller-manager-${KUBE_VERSION}/kube-controller-manager"
# kubectl built from k8s.io/kubernetes/cmd/kubectl at KUBE_VERSION (the same
# throwaway module as the control plane), independent of any kubectl on PATH.
KUBECTL_BIN="${SWITCHBOARD_CACHE_DIR}/bin/kubectl-${KUBE_VERSION}/kubectl"
ETCD_BIN="${SWITCHBOARD_CACHE_DIR}/bin/etcd-${ETCD_VERSION}/etcd"
KWOK_BIN="${SWITCHBOARD_CACHE_DIR}/bin/kwok-${KWOK_VERSION}/kwok"
# kwok "fast" node/pod Stage definitions (node-initialize.yaml,
# pod-ready.yaml, pod-complete.yaml, pod-delete.yaml).
KWOK_STAGES_DIR="${SWITCHBOARD_CACHE_DIR}/bin/kwok-${KWOK_VERSION}/stages"
SHELLCHECK_BIN="${SWITCHBOARD_CACHE_DIR}/bin/shellcheck-${SHELLCHECK_VERSION}/shellcheck"

export SWITCHBOARD_ROOT SWITCHBOARD_CACHE_DIR
export KUBE_VERSION ETCD_VERSION KWOK_VERSION SHELLCHECK_VERSION
export KUBE_APISERVER_BIN KUBE_CONTROLLER_MANAGER_BIN KUBECTL_BIN ETCD_BIN KWOK_BIN KWOK_STAGES_DIR SHELLCHECK_BIN
