#!/usr/bin/env python3
"""Writes the seed corpora in corpus/<target>/ from real frames, requests and configs.

Run from relay/fuzz/ when the formats change; the files are committed. Inputs that once
crashed a target (crash-*) are committed beside them and are not written here. Frames carry the
one-byte context prefix that relay::fuzzing::frame reads (bit 0 vnet header, bit 1 stripped
VLAN tag, bits 2-3 checksum hint, bit 4 the 65,507-byte payload limit)."""
import os, struct

def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF

def ipv4(payload, src="10.99.0.1", dst="239.1.1.1", ttl=8, proto=17, flags_frag=0x4000,
         options=b"", total=None, ihl=None):
    a = bytes(map(int, src.split("."))); b = bytes(map(int, dst.split(".")))
    ihl = ihl if ihl is not None else 5 + len(options) // 4
    total = total if total is not None else 4 * (5 + len(options) // 4) + len(payload)
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0xB8, total, 0x1234, flags_frag, ttl, proto, 0, a, b) + options
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload, a, b

def udp(payload, sport=40000, dport=5000, src="10.99.0.1", dst="239.1.1.1", good=True, length=None):
    a = bytes(map(int, src.split("."))); b = bytes(map(int, dst.split(".")))
    length = length if length is not None else 8 + len(payload)
    h = struct.pack("!HHHH", sport, dport, length, 0)
    pseudo = a + b + struct.pack("!BBH", 0, 17, 8 + len(payload))
    c = csum(pseudo + h + payload) or 0xFFFF
    if not good:
        c ^= 0x5555
    return struct.pack("!HHHH", sport, dport, length, c) + payload

def eth(l3, ethertype=0x0800, vlan=None, dst=b"\x01\x00\x5e\x01\x01\x01"):
    src = b"\x02\x00\x00\x00\x00\x01"
    if vlan is not None:
        return dst + src + struct.pack("!HHH", 0x8100, vlan, ethertype) + l3
    return dst + src + struct.pack("!H", ethertype) + l3

def frame(payload=b"hello relay", **kw):
    u = udp(payload, **{k: v for k, v in kw.items() if k in ("sport", "dport", "good", "length")})
    ip, _, _ = ipv4(u, **{k: v for k, v in kw.items() if k in ("ttl", "flags_frag", "options", "total", "ihl", "proto")})
    return eth(ip, **{k: v for k, v in kw.items() if k in ("vlan", "ethertype")})

def ipv6_frame(payload=b"hello relay", ext=b"", first_next=17, good=True, zero_csum=False,
               plen=None, vlan=None):
    """Ethernet/IPv6/UDP from fd00::1 to [ff3e::1234]:5000; `ext` (already chained, the last
    header's next header UDP) between the fixed header and UDP."""
    a = bytes.fromhex("fd000000000000000000000000000001")
    b = bytes.fromhex("ff3e0000000000000000000000001234")
    length = 8 + len(payload)
    pseudo = a + b + struct.pack("!IxxxB", length, 17)
    h = struct.pack("!HHHH", 40000, 5000, length, 0)
    c = csum(pseudo + h + payload) or 0xFFFF
    if not good:
        c ^= 0x5555
    if zero_csum:
        c = 0
    u = struct.pack("!HHHH", 40000, 5000, length, c) + payload
    plen = plen if plen is not None else len(ext) + len(u)
    fixed = struct.pack("!IHBB", 0x6B900000, plen, first_next, 8) + a + b
    return eth(fixed + ext + u, ethertype=0x86DD, vlan=vlan, dst=b"\x33\x33\x00\x00\x12\x34")

def vnet(gso_type=0, gso_size=0, flags=0, hdr_len=42, csum_start=34, csum_offset=6):
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)

def write(target, name, data):
    os.makedirs(f"corpus/{target}", exist_ok=True)
    with open(f"corpus/{target}/{name}", "wb") as f:
        f.write(data)

seq = bytes(range(256)) * 40
frames = {
    "udp-small": (0, frame()),
    "udp-1400": (0, frame(seq[:1400])),
    "udp-empty-payload": (0, frame(b"")),
    "udp-verified": (4, frame(seq[:200])),
    "udp-partial-csum": (8, frame(seq[:200], good=False)),
    "udp-bad-csum": (0, frame(seq[:200], good=False)),
    "vlan-in-frame": (0, frame(seq[:300], vlan=7)),
    "vlan-stripped": (2, struct.pack("!H", 7) + frame(seq[:300])),
    "qinq-outer": (0, eth(frame(seq[:64])[14:], ethertype=0x88A8)),
    "jumbo-9000": (16, frame(seq[:8972])),
    "oversize-for-9216": (0, frame(seq[:9300])),
    "ip-options": (0, frame(options=b"\x94\x04\x00\x00")),
    "fragment-first": (0, frame(seq[:100], flags_frag=0x2000)),
    "fragment-later": (0, frame(seq[:100], flags_frag=0x0010)),
    "bad-ihl": (0, frame(ihl=4)),
    "bad-total-length": (0, frame(total=10)),
    "total-length-beyond-frame": (0, frame(total=2000)),
    "bad-udp-length": (0, frame(length=3)),
    "tcp": (0, frame(proto=6)),
    "arp": (0, eth(b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\0" * 20, ethertype=0x0806)),
    "ipv6": (0, eth(b"\x60" + b"\0" * 39, ethertype=0x86DD)),
    "truncated-eth": (0, frame()[:10]),
    "truncated-ip": (0, frame()[:25]),
    "truncated-udp": (0, frame()[:38]),
    "vnet-plain": (1, vnet(flags=2) + frame(seq[:500])),
    "vnet-needs-csum": (1, vnet(flags=1) + frame(seq[:500], good=False)),
    "vnet-gso-udp-l4": (17, vnet(gso_type=5, gso_size=1000, flags=1) + frame(seq[:4000])),
    "vnet-gso-bad-size": (17, vnet(gso_type=5, gso_size=0, flags=1) + frame(seq[:4000])),
    "vnet-gso-tcp": (1, vnet(gso_type=1, gso_size=1000) + frame(seq[:3000])),
    "empty": (0, b""),
    "ipv6-udp": (0, ipv6_frame(seq[:1200])),
    "ipv6-udp-vlan": (0, ipv6_frame(seq[:300], vlan=9)),
    "ipv6-zero-csum": (0, ipv6_frame(seq[:100], zero_csum=True)),
    "ipv6-bad-csum": (0, ipv6_frame(seq[:100], good=False)),
    "ipv6-hop-by-hop": (0, ipv6_frame(seq[:100], ext=bytes([17, 0, 5, 2, 0, 0, 1, 0]), first_next=0)),
    "ipv6-dest-opts-chain": (0, ipv6_frame(seq[:100], ext=bytes([60, 0, 1, 4, 0, 0, 0, 0]) * 8 + bytes([17, 0, 1, 4, 0, 0, 0, 0]), first_next=60)),
    "ipv6-fragment": (0, ipv6_frame(seq[:100], ext=bytes([17, 0, 0, 1, 0, 0, 0, 9]), first_next=44)),
    "ipv6-routing-left": (0, ipv6_frame(seq[:100], ext=bytes([17, 0, 0, 1, 0, 0, 0, 0]), first_next=43)),
    "ipv6-mld-report": (0, ipv6_frame(seq[:20], ext=bytes([58, 0, 5, 2, 0, 0, 1, 0]), first_next=0)),
    "ipv6-plen-beyond": (0, ipv6_frame(seq[:100], plen=4000)),
    "ipv6-gso": (17, vnet(gso_type=5, gso_size=1000, flags=1, hdr_len=62, csum_start=54) + ipv6_frame(seq[:4000])),
}
for name, (ctl, data) in frames.items():
    write("frame", name, bytes([ctl]) + data)

rule = ('{"name":"cam1","input":"eth0","group":"239.1.1.1","port":5000,'
        '"outputs":[{"dest":"239.2.2.2","port":6000,"interface":"eth1","ttl":16}]}')
requests = {
    "ping": '{"version":1,"request":"ping"}',
    "stats": '{"version":1,"request":"stats"}',
    "rules-list": '{"version":1,"request":"rules_list"}',
    "rules-add": '{"version":1,"request":{"rules_add":{"rule":%s}}}' % rule,
    "rules-remove": '{"version":1,"request":{"rules_remove":{"name":"cam1"}}}',
    "config-reload": '{"version":1,"request":"config_reload"}',
    "log-level": '{"version":1,"request":{"log_level":{"level":"debug"}}}',
    "log-level-bad": '{"version":1,"request":{"log_level":{"level":"[[["}}}',
    "add-list-remove-list": "\n".join([
        '{"version":1,"request":{"rules_add":{"rule":%s}}}' % rule,
        '{"version":1,"request":"rules_list"}',
        '{"version":1,"request":{"rules_remove":{"name":"cam1"}}}',
        '{"version":1,"request":"rules_list"}']),
    "add-duplicate": "\n".join(['{"version":1,"request":{"rules_add":{"rule":%s}}}' % rule] * 2),
    "add-evil-name": '{"version":1,"request":{"rules_add":{"rule":%s}}}' % rule.replace('"cam1"', '"a\\n\\u001b[31m"'),
    "add-dest-zero": '{"version":1,"request":{"rules_add":{"rule":%s}}}' % rule.replace('239.2.2.2', '0.0.0.0'),
    "add-ttl-zero": '{"version":1,"request":{"rules_add":{"rule":%s}}}' % rule.replace('"ttl":16', '"ttl":0'),
    "add-no-outputs": '{"version":1,"request":{"rules_add":{"rule":{"name":"x","input":"eth0","group":"239.1.1.1","port":5000,"outputs":[]}}}}',
    "add-source": '{"version":1,"request":{"rules_add":{"rule":%s}}}' % rule.replace('"port":5000,', '"port":5000,"source":"10.0.0.5",'),
    "add-bad-interface": '{"version":1,"request":{"rules_add":{"rule":%s}}}' % rule.replace('"eth0"', '"a/b"'),
    "version-2": '{"version":2,"request":"stats"}',
    "no-version": '{"request":"stats"}',
    "unknown-command": '{"version":1,"request":"explode"}',
    "extra-field": '{"version":1,"request":"stats","extra":1}',
    "not-json": "hello",
    "empty-object": "{}",
    "crlf": '{"version":1,"request":"ping"}\r',
    "blank-lines": '\n\n{"version":1,"request":"ping"}\n\n',
    "remove-missing": '{"version":1,"request":{"rules_remove":{"name":"zzz"}}}',
    "nested-deep": '[' * 200 + ']' * 200,
    "binary": "\xff\xfe\x00\x01",
    "add-dscp-source-port": '{"version":1,"request":{"rules_add":{"rule":%s}}}' % rule.replace('"ttl":16', '"ttl":16,"dscp":46,"source":"10.0.1.1","source_port":4000'),
    "add-dscp-64": '{"version":1,"request":{"rules_add":{"rule":%s}}}' % rule.replace('"ttl":16', '"ttl":16,"dscp":64'),
}
for name, text in requests.items():
    write("control", name, text.encode("latin-1") if name == "binary" else text.encode())

with open("../packaging/relay.toml", "rb") as f:
    write("config", "packaged-relay.toml", f.read())
r = '[[rule]]\nname = "{n}"\ninput = "eth0"\ngroup = "{g}"\nport = {p}\noutputs = [{{ dest = "{d}", port = 6000, interface = "eth1"{t} }}]\n'
configs = {
    "empty.toml": "",
    "log-level.toml": 'log_level = "debug"\n',
    "allow-empty.toml": "allow_empty = true\n",
    "one-rule.toml": r.format(n="cam1", g="239.1.1.1", p=5000, d="239.2.2.2", t=""),
    "two-rules-fanout.toml": r.format(n="a", g="239.1.1.1", p=5000, d="239.2.2.2", t=", ttl = 4")
        + '[[rule]]\ninput = "eth0"\ngroup = "239.1.1.2"\nport = 5000\nsource = "10.0.0.5"\noutputs = [\n  { dest = "239.2.2.3", port = 6000, interface = "eth1" },\n  { dest = "10.9.9.9", port = 7000, interface = "eth2" },\n]\n',
    "dataplane-all.toml": "[dataplane]\nworkers = 2\ncpus = [0, 1]\nring_frames = 4096\nring_frame_size = 2048\nbuffer_count = 4096\nbuffer_size = 9216\nuring_entries = 1024\nmax_in_flight_sends = 512\nbatch_size = 256\nmax_gso_segments = 44\nsocket_sndbuf = 4194304\ngso = true\nbusy_poll_us = 0\nrx_coalesce_us = 50\nrealtime_priority = 10\nmulticast_loop = false\n",
    "dataplane-inline.toml": "dataplane = { workers = 1, ring_frames = 64 }\n",
    "control.toml": '[control]\nsocket = "/run/mcr/mcrd.sock"\nmode = "0660"\ngroup = "mcr"\n',
    "bad-port.toml": r.format(n="a", g="239.1.1.1", p=70000, d="239.2.2.2", t=""),
    "bad-ttl.toml": r.format(n="a", g="239.1.1.1", p=5000, d="239.2.2.2", t=", ttl = 300"),
    "ttl-zero.toml": r.format(n="a", g="239.1.1.1", p=5000, d="239.2.2.2", t=", ttl = 0"),
    "dest-zero.toml": r.format(n="a", g="239.1.1.1", p=5000, d="0.0.0.0", t=""),
    "evil-name.toml": r.format(n="a\\nb\\u001b[31m", g="239.1.1.1", p=5000, d="239.2.2.2", t=""),
    "duplicate-name.toml": r.format(n="a", g="239.1.1.1", p=5000, d="239.2.2.2", t="") + r.format(n="a", g="239.1.1.9", p=5000, d="239.2.2.2", t=""),
    "duplicate-match.toml": r.format(n="a", g="239.1.1.1", p=5000, d="239.2.2.2", t="") + r.format(n="b", g="239.1.1.1", p=5000, d="239.2.2.2", t=""),
    "bad-group.toml": r.format(n="a", g="239.1.1", p=5000, d="239.2.2.2", t=""),
    "huge-pool.toml": "[dataplane]\nbuffer_count = 1048576\nbuffer_size = 65507\nworkers = 256\n",
    "unknown-field.toml": "[dataplane]\nwrokers = 2\n",
    "bad-mode.toml": '[control]\nmode = "rw"\n',
    "type-error.toml": '[dataplane]\nworkers = "two"\n',
    "syntax-error.toml": "[[rule]\nname = \n",
    "dscp-source-port.toml": r.format(n="a", g="239.1.1.1", p=5000, d="239.2.2.2", t=', dscp = 46, source = "10.0.1.1", source_port = 4000'),
    "dscp-64.toml": r.format(n="a", g="239.1.1.1", p=5000, d="239.2.2.2", t=", dscp = 64"),
    "source-port-0.toml": r.format(n="a", g="239.1.1.1", p=5000, d="239.2.2.2", t=", source_port = 0"),
}
for name, text in configs.items():
    write("config", name, text.encode())
