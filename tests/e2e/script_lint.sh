#!/usr/bin/env bash
# The tree's shell scripts never pipe a command into `grep -q` (issue 22). Under `set -o pipefail` that pattern fails
# at random: grep exits at its first match, and the writer, still writing, dies of SIGPIPE, which fails the pipe
# (it once made `make test` fail at random, and tests/e2e/cuda_build.sh had it again). Capture the output first:
#   out=$(cmd); grep -q PATTERN <<< "$out"
# Comment lines are skipped; the program under test is not used.
set -euo pipefail
. "$(dirname "$0")/common.inc"
mapfile -t scripts < <(git ls-files '*.sh' '*.inc' 'Makefile' 2> /dev/null || true)
[ "${#scripts[@]}" -gt 0 ] || mapfile -t scripts < <(find tests tools -name '*.sh' -o -name '*.inc')
[ "${#scripts[@]}" -gt 0 ] || skip "no scripts found from $(pwd)"
found=$(grep -nE '(^|[^|])\|[[:space:]]*grep[[:space:]]+(-[A-Za-z]*q|--quiet|--silent)' "${scripts[@]}" \
  | grep -vE '^[^:]+:[0-9]+:[[:space:]]*#' || true)
[ -z "$found" ] || { echo "$found"; fail "a command piped into grep -q (capture its output first)"; }
echo "script_lint: ok (${#scripts[@]} scripts)"
