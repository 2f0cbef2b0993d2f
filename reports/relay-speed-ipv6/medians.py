"""The table of ../relay-speed-ipv6.md from records/ (one-off: to move into `analyzer medians`)."""
import json, glob, os, statistics as st, collections
HERE = os.path.dirname(os.path.abspath(__file__))
rows = collections.defaultdict(lambda: collections.defaultdict(dict))
for path in glob.glob(os.path.join(HERE, 'records', 'r*-g*-h*-*-ipv?.json')):
    key = os.path.basename(path)[:-len('.json')]
    rep, mode, hops, pps, fam = key.split('-')
    d = json.load(open(path))
    hs = d['hops']
    relay = st.mean(h['perf']['task_clock_ns'] / h['counters']['rx'] for h in hs)
    hc = d['host_cpu']
    # busy_ns is already the host's busy time less other processes (analyzer ingest).
    host = hc['busy_ns'] / d['receiver']['received']
    rows[(mode[1:], int(hops[1:]), int(pps))][fam][rep] = (relay, host, d['receiver']['lost'], d['conservation'] if 'conservation' in d else None)
print("| sender | hops | offered | mcrd task clock per packet per hop, IPv4 / IPv6 (ns) | ratio | host CPU of the whole run per delivered packet, IPv4 / IPv6 (ns) | ratio | lost v4 / v6 | repeats |")
print("|---|---|---|---|---|---|---|---|---|")
for (mode, hops, pps) in sorted(rows, key=lambda k: (k[0] != '1', k[1], k[2])):
    r = rows[(mode, hops, pps)]
    reps = sorted(set(r['ipv4']) & set(r['ipv6']))
    if not reps:
        continue
    med = lambda fam, i: st.median(r[fam][x][i] for x in reps)
    pr = lambda i: st.median(r['ipv6'][x][i] / r['ipv4'][x][i] for x in reps)
    lost = lambda fam: sum(r[fam][x][2] for x in reps)
    sender = 'one datagram per call' if mode == '1' else 'GSO batches of 32'
    print(f"| {sender} | {hops} | {pps//1000}k pps | {med('ipv4',0):.0f} / {med('ipv6',0):.0f} | {pr(0):.2f} | {med('ipv4',1):.0f} / {med('ipv6',1):.0f} | {pr(1):.2f} | {lost('ipv4')} / {lost('ipv6')} | {len(reps)} |")
