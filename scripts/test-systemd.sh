#!/usr/bin/env bash
# Runs the packaged mcrd unit under a real systemd: a minimal Debian 12 booted with
# `systemd-nspawn --boot` in a network namespace of its own, the package `mcr` installed in it,
# then `systemctl start` (Type=notify: active only once mcrd says READY), `systemctl reload`
# with a file mcrd refuses (must fail, the rules in force stay, the journal has the refusal at
# WARN with who asked), a good reload, the worker CPU counters under the unit's system-call
# filter, and `systemctl stop` (the final counters in the StateDirectory, which outlives it).
#
#   scripts/test-systemd.sh MCR_DEB
#
# The container's root is made once with debootstrap (from the Debian mirror apt uses) into
# ROOT (default /var/tmp/mcr-nspawn-root) and copied for each run, so a run starts clean.
# Removes the container, its copy and its processes on every exit. Exit codes: 0 passed, 1 a
# check failed, 2 cannot run here (not root, a tool missing, systemd does not boot).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-systemd: FAIL: $*" >&2; exit 1; }
cannot() { echo "test-systemd: cannot run: $*" >&2; exit 2; }
step() { echo "test-systemd: $*" >&2; }

[ $# -eq 1 ] || { echo "usage: scripts/test-systemd.sh MCR_DEB" >&2; exit 2; }
deb=$(realpath "$1")
[ -f "$deb" ] || cannot "$1 is not a file"
[ "$(id -u)" -eq 0 ] || cannot "needs root (systemd-nspawn)"
for cmd in systemd-nspawn debootstrap nsenter jq; do
  command -v "$cmd" >/dev/null || cannot "$cmd is missing (scripts/setup.sh --deb installs it)"
done
root=${ROOT:-/var/tmp/mcr-nspawn-root}
if [ ! -x "$root/lib/systemd/systemd" ]; then
  step "making the container's root in $root (debootstrap, once)"
  rm -rf "$root.partial"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,iproute2,adduser,libelf1,zlib1g \
    bookworm "$root.partial" http://deb.debian.org/debian >/dev/null ||
    cannot "debootstrap of Debian 12 failed (no access to the Debian mirror?)"
  mv "$root.partial" "$root"
fi

work=$(mktemp -d /var/tmp/mcr-systemd.XXXXXX)
nspawn_pid=""
cleanup() {
  if [ -n "$nspawn_pid" ]; then
    kill "$nspawn_pid" 2>/dev/null || true
    wait "$nspawn_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
step "copying the root"
cp -a "$root" "$work/root"
cp "$deb" "$work/root/root/mcr.deb"

# --register=no and --keep-unit: no machined or host systemd is needed to start it. CAP_BPF
# and CAP_PERFMON are outside nspawn's default capability set, so without them the unit's
# AmbientCapabilities could not give mcrd the fast path's; with them the program's load is
# still refused in the container here (EPERM, nspawn's own limits), and the rule runs in
# userspace with that reason, which the run prints.
systemd-nspawn -q -D "$work/root" --boot --private-network --register=no --keep-unit \
  --capability=CAP_BPF,CAP_PERFMON \
  --machine="mcrsd$$" >"$work/console.log" 2>&1 &
nspawn_pid=$!
# The container's PID 1 is the child of systemd-nspawn whose command is systemd (the first
# child seen may be nspawn's own intermediate process, gone a moment later).
leader=""
for _ in $(seq 150); do
  leader=$(ps -o pid=,comm= --ppid "$nspawn_pid" 2>/dev/null |
    awk '$2 == "systemd" { print $1; exit }') || true
  [ -n "$leader" ] && break
  sleep 0.1
done
[ -n "$leader" ] || { cat "$work/console.log" >&2; cannot "systemd-nspawn started no systemd"; }
# Every command in the container is bounded in time (a systemctl that cannot reach its
# manager would wait).
inside() { timeout 60 nsenter -t "$leader" -a -- "$@"; }
state=""
for _ in $(seq 150); do
  state=$(timeout 5 nsenter -t "$leader" -a -- systemctl is-system-running 2>/dev/null || true)
  case "$state" in running|degraded) break ;; esac
  sleep 0.2
done
case "$state" in
  running|degraded) step "systemd is up in the container ($state)" ;;
  *) tail -20 "$work/console.log" >&2; cannot "systemd did not finish booting (state: ${state:-none})" ;;
esac

step "installing $(basename "$deb")"
inside dpkg -i /root/mcr.deb >/dev/null
inside ip link set lo up
cat >"$work/root/etc/mcr/relay.toml" <<'EOF'
[dataplane]
fast_path = "auto"

[[rule]]
name = "lo-stream"
input = "lo"
group = "239.9.9.9"
port = 5000
outputs = [{ dest = "239.9.9.10", port = 5001, interface = "lo" }]
EOF
good=$(cat "$work/root/etc/mcr/relay.toml")

step "systemctl start mcrd"
inside systemctl start mcrd || {
  inside journalctl -u mcrd --no-pager | tail -20 >&2
  fail "systemctl start mcrd failed"
}
[ "$(inside systemctl is-active mcrd)" = active ] || fail "mcrd is not active after start"
[ "$(inside systemctl show -p Type --value mcrd)" = notify ] || fail "the unit is not Type=notify"
ctl() { inside /usr/bin/mcrctl --socket /run/mcr/mcrd.sock "$@"; }
ctl ping >/dev/null || fail "mcrctl ping through /run/mcr/mcrd.sock failed"
stats=$(ctl stats --json)
task=$(jq -r '.workers[0].perf.task_clock_ns' <<<"$stats")
case "$task" in
  ''|null|*[!0-9]*) fail "worker CPU (task clock) is not measured under the unit: $task" ;;
esac
step "active, READY reached, worker task clock measured ($task ns)"
step "path: $(ctl rules list | grep lo-stream)"

step "systemctl reload with a file mcrd refuses"
printf '%s\n[[rule]]\nbogus = true\n' "$good" >"$work/root/etc/mcr/relay.toml"
if inside systemctl reload mcrd 2>/dev/null; then
  fail "systemctl reload succeeded although mcrd refused the file"
fi
[ "$(inside systemctl is-active mcrd)" = active ] || fail "mcrd stopped after a refused reload"
ctl rules list | grep -q lo-stream || fail "the rules in force did not stay after a refused reload"
# ExecReload runs mcrctl as the unit's user: the audit line names mcr's uid.
mcr_uid=$(inside id -u mcr)
inside journalctl -u mcrd -p warning --no-pager | grep -q "config reload by uid $mcr_uid .*refused" ||
  fail "the journal has no WARN audit line of the refused reload naming uid $mcr_uid"
printf '%s\n' "$good" >"$work/root/etc/mcr/relay.toml"
inside systemctl reload mcrd || fail "systemctl reload of the good file failed"

step "systemctl stop mcrd"
inside systemctl stop mcrd
final=$(inside cat /var/lib/mcr/final-stats.json) || fail "no final stats in the StateDirectory"
[ "$(jq -r .final_report <<<"$final")" = true ] || fail "final-stats.json is not a final report"
inside test -e /run/mcr/mcrd.sock && fail "the control socket outlived the stop"
inside journalctl -u mcrd --no-pager -o short | tail -n 5 >&2
step "PASS"
