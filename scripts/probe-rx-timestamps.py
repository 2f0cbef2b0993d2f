#!/usr/bin/env python3
"""Do a packet socket's ring and a TC ingress program see the same receive timestamp for the
same frame? mcrd's path switches rely on it (relay/src/fastpath/switch.rs).

Two namespaces joined by a veth pair; the sender's namespace sends N UDP datagrams (payload:
a sequence number) to the receiver's; there a TPACKET_V2 ring (as mcrd's workers read it)
records tp_sec/tp_nsec and TP_STATUS_TS_SOFTWARE per datagram, and a TC ingress program
(scripts/probe/rx_timestamps.bpf.c, compiled here with clang) records __sk_buff->tstamp.
Cases:

  on      a socket with SO_TIMESTAMPNS is open (what mcrd does): both should hold the same,
          non-zero value for every datagram;
  off     none is (unless another process on the host holds one: the switch is host-wide),
          so the program should read 0 and the ring report no software timestamp;
  txtime  the sender sets a delivery time (SO_TXTIME, CLOCK_MONOTONIC), which crosses the
          veth (skb_scrub_packet keeps a delivery time): the program should read 0 and the
          ring report none, timestamps on or not.

Run as root: scripts/probe-rx-timestamps.py [N]. Cleans up its namespaces. Prints one line
per case with the counts; exit status 1 if a datagram was seen with two different stamps.
"""

import json
import mmap
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PORT = 7777
TP_STATUS_USER = 1
TP_STATUS_TS_SOFTWARE = 1 << 29
SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_VERSION = 10
TPACKET_V2 = 1
SO_TIMESTAMPNS = 35
SO_TXTIME = 61
CLOCK_MONOTONIC = 1
FRAME = 2048
BLOCK = 1 << 16
BLOCKS = 64


def sh(*args, ns=None, check=True):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def receive(iface, n, stamps_on, ready_fd):
    """In the receiver's namespace: ring on `iface` until n datagrams or 5 s; prints JSON."""
    keep = None
    if stamps_on:
        keep = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        keep.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
    frames = BLOCK // FRAME * BLOCKS
    s.setsockopt(SOL_PACKET, PACKET_RX_RING, struct.pack("IIII", BLOCK, BLOCKS, FRAME, frames))
    ring = mmap.mmap(s.fileno(), BLOCK * BLOCKS)
    s.bind((iface, 0))
    os.write(ready_fd, b"r")
    os.close(ready_fd)
    seen = {}
    head = 0
    deadline = time.time() + 5
    while len(seen) < n and time.time() < deadline:
        off = head * FRAME
        status, _len, snap, mac, _net, sec, nsec = struct.unpack_from("IIIHHII", ring, off)
        if not status & TP_STATUS_USER:
            time.sleep(0.0005)
            continue
        f = ring[off + mac : off + mac + snap]
        if len(f) >= 46 and f[12:14] == b"\x08\x00" and f[23] == 17:
            if struct.unpack("!H", f[36:38])[0] == PORT:
                seq = struct.unpack("!I", f[42:46])[0]
                sw = bool(status & TP_STATUS_TS_SOFTWARE)
                seen[seq] = sec * 1_000_000_000 + nsec if sw else None
        struct.pack_into("I", ring, off, 0)
        head = (head + 1) % frames
    del keep
    print(json.dumps(seen))


def send(dest, n, txtime):
    """In the sender's namespace: n datagrams, 200 µs apart."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if txtime:
        s.setsockopt(socket.SOL_SOCKET, SO_TXTIME, struct.pack("iI", CLOCK_MONOTONIC, 0))
    for seq in range(n):
        payload = struct.pack("!I", seq) + bytes(60)
        if txtime:
            at = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            s.sendmsg([payload], [(socket.SOL_SOCKET, SO_TXTIME, struct.pack("Q", at))], 0, (dest, PORT))
        else:
            s.sendto(payload, (dest, PORT))
        time.sleep(0.0002)


def map_values(prog_ns):
    """The probe map's values by key, via bpftool (the program runs in `prog_ns`)."""
    out = sh("bpftool", "-j", "map", "show").stdout
    ids = [m["id"] for m in json.loads(out) if m.get("name") == "probe_tstamp"]
    vals = {}
    for mid in ids:
        dump = json.loads(sh("bpftool", "-j", "map", "dump", "id", str(mid)).stdout)
        for e in dump:
            k = e.get("key")
            v = e.get("value")
            if isinstance(k, int):
                vals[k] = v
            else:
                vals[int.from_bytes(bytes(int(b, 16) for b in k), "little")] = int.from_bytes(
                    bytes(int(b, 16) for b in v), "little"
                )
    return vals


def case(name, n, stamps_on, txtime, obj):
    a, b = f"mcr-probe-a-{os.getpid()}", f"mcr-probe-b-{os.getpid()}"
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
        sh("ip", "link", "add", "pa", "netns", a, "type", "veth", "peer", "name", "pb", "netns", b)
        sh("ip", "addr", "add", "10.77.0.1/24", "dev", "pa", ns=a)
        sh("ip", "addr", "add", "10.77.0.2/24", "dev", "pb", ns=b)
        sh("ip", "link", "set", "pa", "up", ns=a)
        sh("ip", "link", "set", "pb", "up", ns=b)
        sh("tc", "qdisc", "add", "dev", "pb", "clsact", ns=b)
        sh("tc", "filter", "add", "dev", "pb", "ingress", "bpf", "da", "obj", obj, "sec", "tc", ns=b)
        r, w = os.pipe()
        rx = subprocess.Popen(
            ["ip", "netns", "exec", b, sys.executable, __file__, "--recv", "pb", str(n), str(int(stamps_on)), str(w)],
            stdout=subprocess.PIPE,
            text=True,
            pass_fds=(w,),
        )
        os.close(w)
        os.read(r, 1)
        os.close(r)
        time.sleep(0.2)  # the netstamp key is switched on by a work item
        sh(sys.executable, __file__, "--send", "10.77.0.2", str(n), str(int(txtime)), ns=a)
        ring = {int(k): v for k, v in json.loads(rx.communicate(timeout=20)[0]).items()}
        prog = map_values(b)
    finally:
        sh("ip", "netns", "del", a, check=False)
        sh("ip", "netns", "del", b, check=False)
    same = differ = both_none = ring_only = prog_only = 0
    for seq, t_ring in ring.items():
        t_prog = prog.get(seq % 8192, 0) or None
        if t_ring == t_prog:
            if t_ring is None:
                both_none += 1
            else:
                same += 1
        elif t_ring is None:
            prog_only += 1
        elif t_prog is None:
            ring_only += 1
        else:
            differ += 1
    print(
        f"{name}: {len(ring)} of {n} datagrams seen in the ring; same stamp {same}, "
        f"neither stamped {both_none}, different stamps {differ}, only the ring stamped "
        f"{ring_only}, only the program {prog_only}"
    )
    return differ + ring_only + prog_only


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--recv":
        receive(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--send":
        send(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1")
        return 0
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as d:
        obj = os.path.join(d, "rx_timestamps.bpf.o")
        multiarch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True).stdout.strip() or "x86_64-linux-gnu"
        subprocess.run(
            ["clang", "-O2", "-g", "-target", "bpf", f"-I/usr/include/{multiarch}", "-c",
             os.path.join(HERE, "probe", "rx_timestamps.bpf.c"), "-o", obj],
            check=True,
        )
        print(f"kernel {os.uname().release}")
        bad = 0
        bad += case("on", n, True, False, obj)
        case("off", n, False, False, obj)
        bad += case("txtime", n, True, True, obj)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
