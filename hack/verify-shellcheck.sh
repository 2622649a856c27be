#!/usr/bin/env bash
# Copyright The Switchboard Authors.
# SPDX-License-Identifier: Apache-2.0

# Runs shellcheck, at the version hack/versions.sh pins, over every shell
# script in the repository: the *.sh files, hack/lib/, and any other file
# that starts with a sh or bash shebang (such as .ci/run). hack/install-deps.sh
# fetches that shellcheck into .cache/ the first time.
#
#   hack/verify-shellcheck.sh    (make verify-shellcheck)

set -o errexit
set -o nounset
set -o pipefail

# shellcheck source=hack/versions.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/versions.sh"
cd "${SWITCHBOARD_ROOT}"

# Its progress is shown only when it fails.
if ! out="$("${SWITCHBOARD_ROOT}/hack/install-deps.sh" shellcheck 2>&1 >/dev/null)"; then
  printf '%s\n' "${out}" >&2
  exit 1
fi

# Tracked files and new ones that are not ignored.
files="$(git ls-files --cached --others --exclude-standard)"
scripts=()
while IFS= read -r f; do
  [[ -f "${f}" ]] || continue # deleted in the working tree
  case "${f}" in
    *.sh | hack/lib/*) scripts+=("${f}") ;;
    *)
      if head -n 1 -- "${f}" | grep -Eq '^#!.*[/ ](ba)?sh([[:space:]]|$)'; then
        scripts+=("${f}")
      fi
      ;;
  esac
done <<<"${files}"
((${#scripts[@]} > 0)) || {
  echo "verify-shellcheck: found no shell scripts" >&2
  exit 1
}

# --external-sources follows the "# shellcheck source=" files, which are
# named from the repository root.
"${SHELLCHECK_BIN}" --external-sources "${scripts[@]}"
echo "shellcheck ${SHELLCHECK_VERSION%-*}: ${#scripts[@]} scripts, no findings."
