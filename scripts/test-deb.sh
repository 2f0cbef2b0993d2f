#!/usr/bin/env bash
# Installs the Debian packages `mcr` and `mcr-bench` on this machine, checks that their files
# are where they belong and that the installed /etc/mcr/relay.toml forwards nothing, runs the
# installed mcrd the way its systemd unit does (user mcr, only the unit's AmbientCapabilities,
# LimitRTPRIO=10) with the packaged example config inside a network namespace, sends traffic
# through it, reloads it with the unit's ExecReload (a refused file must fail it), then purges
# both packages and checks that everything they added is gone but the system user and group,
# which Debian practice keeps.
#
#   [S-src] eth0 10.1.1.50 --veth-- eth0 10.0.0.2 [S-relay: mcrd] eth1 192.0.2.1 --veth-- eth0 [S-dst1]
#                                                                  eth2 198.51.100.1 --veth-- eth0 [S-dst2]
#
# The packaged example's rules (eth0 -> eth1 + eth2 fan-out; source-specific eth0 -> unicast
# 192.0.2.10:7000 on eth1) are used as shipped; only the CPU pinning and the control socket
# path are changed for the test. S is `mcrdeb<pid>`.
#
#   scripts/test-deb.sh [MCR_DEB MCR_BENCH_DEB]   # default: build them with scripts/build-deb.sh
#
# Removes the namespaces, its processes and the package (if it installed it) on every exit.
# Refuses to run when package mcr or mcr-bench is installed already. Exit codes: 0 passed,
# 1 a check failed, 2 cannot run here (not root, mcr already installed, missing tools).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
cannot() { echo "test-deb: cannot run: $*" >&2; exit 2; }
step() { echo "test-deb: $*" >&2; }

[ "$(id -u)" -eq 0 ] || cannot "needs root (dpkg, network namespaces)"
for cmd in dpkg ip setpriv prlimit jq ethtool; do
  command -v "$cmd" >/dev/null || cannot "$cmd is missing (scripts/setup.sh installs it)"
done
for pkg in mcr mcr-bench; do
  if dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'installed'; then
    cannot "package $pkg is installed already; this test installs and purges it"
  fi
done
# A user mcr from an earlier install stays after purge (Debian practice); postinst reuses it.
user_before=0
getent passwd mcr >/dev/null && user_before=1

debs=("$@")
if [ ${#debs[@]} -eq 0 ]; then
  step "building the packages"
  read -r -a debs < <(scripts/build-deb.sh | tail -n 1)
fi
[ ${#debs[@]} -eq 2 ] || cannot "give the two package files, mcr's and mcr-bench's (got ${#debs[@]})"
for deb in "${debs[@]}"; do [ -f "$deb" ] || cannot "$deb: no such package file"; done

S=mcrdeb$$
NS=("$S-src" "$S-relay" "$S-dst1" "$S-dst2")
WORK=$(mktemp -d)
PIDS=()
installed=0
cleanup() {
  local status=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  if [ "$installed" = 1 ]; then
    dpkg --purge mcr mcr-bench >/dev/null 2>&1 ||
      echo "test-deb: could not purge; run: dpkg --purge mcr mcr-bench" >&2
  fi
  if [ "$status" -ne 0 ] && [ -f "$WORK/mcrd.log" ]; then
    echo "--- mcrd log" >&2; cat "$WORK/mcrd.log" >&2
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

for deb in "${debs[@]}"; do step "installing $deb ($(du -k "$deb" | cut -f1) KiB)"; done
installed=1
dpkg -i "${debs[@]}" >"$WORK/dpkg-install.log" 2>&1 || { cat "$WORK/dpkg-install.log" >&2; fail "dpkg -i"; }
dpkg-query -L mcr mcr-bench | sort >"$WORK/files"

step "checking the installed files"
# package:path of every program, as Debian places a daemon (sbin) and user commands (bin)
for pf in mcr:/usr/sbin/mcrd mcr:/usr/bin/mcrctl mcr-bench:/usr/bin/trafficgen mcr-bench:/usr/bin/analyzer; do
  f=${pf#*:}
  [ -x "$f" ] || fail "$f is not installed as an executable"
  dpkg-query -L "${pf%%:*}" | grep -qx "$f" || fail "$f is not in package ${pf%%:*}"
  "$f" --version >/dev/null || fail "$f --version"
done
[ -f /etc/mcr/relay.toml ] || fail "/etc/mcr/relay.toml is missing"
dpkg-query -W -f '${Conffiles}\n' mcr | grep -q '^ /etc/mcr/relay.toml ' ||
  fail "/etc/mcr/relay.toml is not a conffile"
# As installed it forwards nothing: no rule until the operator writes one.
grep -q '^\[\[rule\]\]' /etc/mcr/relay.toml && fail "/etc/mcr/relay.toml has rules as installed"
/usr/bin/mcrctl config check /etc/mcr/relay.toml | grep -q 'OK (0 rules' ||
  fail "/etc/mcr/relay.toml is not a valid config with no rules"
example=/usr/share/doc/mcr/examples/relay.toml
[ -f "$example" ] || fail "$example is missing"
unit=$(grep -E '/systemd/system/mcrd\.service$' "$WORK/files") || fail "no mcrd.service in the package"
grep -qx 'ExecStart=/usr/sbin/mcrd .*' "$unit" || fail "$unit does not start /usr/sbin/mcrd"
grep -qx 'ExecReload=/usr/bin/mcrctl .*config reload' "$unit" || fail "$unit does not reload through mcrctl"
for page in man8/mcrd.8.gz man5/relay.toml.5.gz man1/mcrctl.1.gz man1/mcrctl-rules-add.1.gz \
            man1/trafficgen.1.gz man1/trafficgen-send.1.gz man1/analyzer.1.gz; do
  gzip -t "/usr/share/man/$page" 2>/dev/null || fail "/usr/share/man/$page is missing or not gzip"
done
for b in mcrd mcrctl trafficgen analyzer; do
  [ -f "/usr/share/bash-completion/completions/$b" ] || fail "bash completion of $b is missing"
  [ -f "/usr/share/zsh/vendor-completions/_$b" ] || fail "zsh completion of $b is missing"
  [ -f "/usr/share/fish/vendor_completions.d/$b.fish" ] || fail "fish completion of $b is missing"
done
getent passwd mcr >/dev/null || fail "postinst did not create user mcr"
getent group mcr >/dev/null || fail "postinst did not create group mcr"
[ "$(id -gn mcr)" = mcr ] || fail "user mcr's group is $(id -gn mcr), not mcr"
mcr_uid=$(id -u mcr) mcr_gid=$(getent group mcr | cut -d: -f3)

step "namespaces $S-*"
for n in "${NS[@]}"; do ip netns add "$n"; ip -n "$n" link set lo up; done
# shellcheck source=scripts/lib/veth_link.sh
. scripts/lib/veth_link.sh
# The sender's subnet is unknown to the relay's namespace (its kernel would drop the traffic).
veth_link "$S" "$S-src" eth0 10.1.1.50/24 "$S-relay" eth0 10.0.0.2/24
veth_link "$S" "$S-relay" eth1 192.0.2.1/24 "$S-dst1" eth0 192.0.2.10/24
veth_link "$S" "$S-relay" eth2 198.51.100.1/24 "$S-dst2" eth0 198.51.100.10/24
ip netns exec "$S-relay" sysctl -qw net.ipv4.conf.all.rp_filter=1
ip -n "$S-src" route add 224.0.0.0/4 dev eth0

# The packaged example, with the CPU pinning dropped (this machine may have fewer cores) and the
# control socket in a directory of the test's, owned by mcr as systemd's RuntimeDirectory is.
chmod 0755 "$WORK"
install -d -m 0750 -o mcr -g mcr "$WORK/run"
sed -e '/^cpus *=/d' -e "s|^socket = .*|socket = \"$WORK/run/mcrd.sock\"|" "$example" \
  >"$WORK/relay.toml"
grep -q "$WORK/run/mcrd.sock" "$WORK/relay.toml" || fail "the packaged example has no [control] socket line to adjust"
# The unit's LimitRTPRIO=10 and LimitMEMLOCK=infinity, where this machine lets root raise
# them (a container without CAP_SYS_RESOURCE does not: then the workers run unprivileged
# without real-time priority, and the test says so).
limits=(prlimit --rtprio=10 --memlock=unlimited)
if ! "${limits[@]}" true 2>/dev/null; then
  step "NOTE: cannot raise RLIMIT_RTPRIO/RLIMIT_MEMLOCK here; running with realtime_priority = 0"
  sed -i 's/^realtime_priority *=.*/realtime_priority = 0/' "$WORK/relay.toml"
  limits=()
fi

# The capabilities are read from the installed unit, so the test follows it when it changes.
unit_caps=$(sed -n 's/^AmbientCapabilities=//p' "$unit")
[ -n "$unit_caps" ] || fail "$unit has no AmbientCapabilities line"
caps=-all
for c in $unit_caps; do
  c=${c#CAP_}
  caps="$caps,+${c,,}"
done
step "starting /usr/sbin/mcrd as user mcr with only $unit_caps (as the unit does)"
ip netns exec "$S-relay" "${limits[@]}" \
  setpriv --reuid="$mcr_uid" --regid="$mcr_gid" --init-groups \
    --inh-caps="$caps" --ambient-caps="$caps" --bounding-set="$caps" \
    /usr/sbin/mcrd --config "$WORK/relay.toml" >"$WORK/mcrd.out" 2>"$WORK/mcrd.log" &
PIDS+=($!)
mcrd_pid=$!
# A member of group mcr (here: nobody with mcr as supplementary group) may use mcrctl.
as_member() { setpriv --reuid=65534 --regid=65534 --groups="$mcr_gid" "$@"; }
for _ in $(seq 100); do
  as_member /usr/bin/mcrctl --socket "$WORK/run/mcrd.sock" ping >/dev/null 2>&1 && break
  kill -0 "$mcrd_pid" 2>/dev/null || fail "mcrd exited at start"
  sleep 0.1
done
as_member /usr/bin/mcrctl --socket "$WORK/run/mcrd.sock" ping >/dev/null ||
  fail "a member of group mcr cannot reach the control socket"
sock_group=$(stat -c %G "$WORK/run/mcrd.sock")
[ "$sock_group" = mcr ] || fail "control socket group is $sock_group, not mcr"

step "traffic: 2000 datagrams to each rule's group, receivers behind every output"
recv() { # recv NS ADDR:PORT NAME
  ip netns exec "$1" /usr/bin/trafficgen recv --group "$2" --iface eth0 --duration 20s \
    --idle-timeout 2s --exit-on-end --ready-line --json "$WORK/$3.json" >"$WORK/$3.out" 2>&1 &
  PIDS+=($!)
  RECVS+=($!)
}
RECVS=()
recv "$S-dst1" 239.10.1.1:5000 cam1-eth1
recv "$S-dst2" 239.20.1.1:5000 cam1-eth2
recv "$S-dst1" 192.0.2.10:7000 archive
for name in cam1-eth1 cam1-eth2 archive; do
  for _ in $(seq 50); do grep -q ready "$WORK/$name.out" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$WORK/$name.out" || fail "receiver $name did not start"
done
send() { # send GROUP:PORT
  ip netns exec "$S-src" /usr/bin/trafficgen send --dst "$1" --iface eth0 --src 10.1.1.50 \
    --pps 2000 --count 2000 --size 200 >/dev/null
}
send 239.1.1.1:5000
send 239.1.1.2:5000
for p in "${RECVS[@]}"; do wait "$p" || true; done
for name in cam1-eth1 cam1-eth2 archive; do
  got=$(jq .totals.received "$WORK/$name.json" 2>/dev/null) || fail "receiver $name wrote no record"
  step "  $name received $got of 2000"
  [ "$got" = 2000 ] || fail "receiver $name got $got of 2000 datagrams"
done
as_member /usr/bin/mcrctl --socket "$WORK/run/mcrd.sock" stats

# systemctl reload runs the unit's ExecReload as the unit's user: a file mcrd refuses must
# fail it (with kill -HUP it "succeeded" and the operator never knew).
reload=$(sed -n 's/^ExecReload=//p' "$unit" | sed "s|/run/mcr/mcrd.sock|$WORK/run/mcrd.sock|")
read -r -a reload <<<"$reload"
step "reload with the unit's ExecReload (${reload[*]})"
cp "$WORK/relay.toml" "$WORK/relay.good"
printf 'this is = not a config\n' >"$WORK/relay.bad" && mv "$WORK/relay.bad" "$WORK/relay.toml"
if as_member "${reload[@]}" >"$WORK/reload-bad.out" 2>&1; then
  fail "the unit's ExecReload succeeded on a file mcrd refuses: $(cat "$WORK/reload-bad.out")"
fi
step "  refused: $(head -1 "$WORK/reload-bad.out")"
mv "$WORK/relay.good" "$WORK/relay.toml"
as_member "${reload[@]}" >"$WORK/reload-good.out" 2>&1 ||
  fail "the unit's ExecReload failed on the good file: $(cat "$WORK/reload-good.out")"

step "stopping mcrd"
kill -TERM "$mcrd_pid"
wait "$mcrd_pid" || fail "mcrd exited with status $? after SIGTERM"

step "purging the packages"
dpkg --purge mcr mcr-bench >"$WORK/dpkg-purge.log" 2>&1 || { cat "$WORK/dpkg-purge.log" >&2; fail "dpkg --purge"; }
installed=0
while read -r f; do
  if [ -d "$f" ]; then continue; fi   # shared directories (/usr/bin, ...) stay
  if [ -e "$f" ]; then fail "$f is still there after purge"; fi
done <"$WORK/files"
if [ -e /etc/mcr ]; then fail "/etc/mcr is still there after purge"; fi
getent passwd mcr >/dev/null || fail "purge removed user mcr (Debian practice keeps system users)"
getent group mcr >/dev/null || fail "purge removed group mcr"
[ "$user_before" = 1 ] && step "user mcr existed before (kept by an earlier purge) and was reused"
step "PASS"
