#!/usr/bin/env bash
# Checks the GitHub workflows against scripts/setup.sh, the one package list (issue 18: the
# workflow installed six packages of its own and none of what the build needs, so its first
# build failed at libbpf). For every workflow that builds with cargo:
#   - it runs on a named runner image (ubuntu-24.04, not ubuntu-latest, whose archive moves);
#   - a step runs `scripts/setup.sh --deps-only` before the first cargo build;
#   - no step installs packages with apt-get or apt itself (that would be a second list);
#   - the runner image has a package of every name setup.sh installs: checked here against this
#     machine's apt archive when the image's distribution is Debian's or Ubuntu's (the names
#     are the same), skipped with a note elsewhere.
# Exit 0 when all hold, 1 naming the file, line and rule otherwise.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
failed=0
fail() { echo "check-workflows: $1: $2" >&2; failed=1; }

shopt -s nullglob
files=(.github/workflows/*.yml .github/workflows/*.yaml)
[ ${#files[@]} -gt 0 ] || { echo "check-workflows: no workflow under .github/workflows" >&2; exit 1; }
for f in "${files[@]}"; do
  grep -qE '^[^#]*\bcargo (build|test|run|install)\b' "$f" || continue
  while IFS=: read -r n line; do
    image=$(sed -E 's/.*runs-on:[[:space:]]*//; s/[[:space:]]*(#.*)?$//' <<<"$line")
    case $image in
      *-latest | *'${{'*) fail "$f:$n" "runs-on '$image' is not a named image (say ubuntu-24.04)" ;;
    esac
  done < <(grep -nE '^[[:space:]]*runs-on:' "$f")
  setup=$(grep -nE '^[^#]*scripts/setup\.sh[^#]*--deps-only' "$f" | head -1 | cut -d: -f1 || true)
  build=$(grep -nE '^[^#]*\bcargo (build|test|run|install)\b' "$f" | head -1 | cut -d: -f1 || true)
  if [ -z "$setup" ]; then
    fail "$f" "no step runs 'scripts/setup.sh --deps-only' (the package list the build needs)"
  elif [ "$setup" -gt "$build" ]; then
    fail "$f:$build" "cargo runs before 'scripts/setup.sh --deps-only' (line $setup)"
  fi
  while IFS=: read -r n _; do
    fail "$f:$n" "installs packages itself; add them to scripts/setup.sh instead (one list)"
  done < <(grep -nE '^[^#]*\bapt(-get)?[[:space:]]+(-[^[:space:]]+[[:space:]]+)*install\b' "$f")
done

# Every package of the list exists in this machine's archive (Debian and Ubuntu share the
# names); apt-cache knows nothing before an `apt-get update`, so this is skipped without one.
if command -v apt-cache >/dev/null && [ -n "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v lock)" ]; then
  pkgs=$(scripts/setup.sh --list-packages --deb) || fail scripts/setup.sh "--list-packages failed"
  for pkg in $pkgs; do
    apt-cache show "$pkg" >/dev/null 2>&1 || fail scripts/setup.sh "package $pkg is not in this machine's apt archive"
  done
else
  echo "check-workflows: no apt lists here: package names not checked against an archive"
fi
[ "$failed" -eq 0 ] && echo "check-workflows: ${#files[@]} workflow(s) OK"
exit "$failed"
