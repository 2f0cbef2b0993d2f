"""The fast-path table of ../relay-speed-ipv6.md from records-fastpath/ (written by
campaign-fastpath.sh; one-off like medians.py: to move into `analyzer medians`).

Per run: host CPU per delivered datagram = the record's host_cpu.busy_ns (host busy less other
processes: the pipeline has already taken them out) / datagrams the receiver got. A run whose
host busy time is below its generator's own task clock has a host measure that cannot be right
(the /proc/stat idle and steal counters of this VM, see the report) and is left out, said below. Per hop = (chain - the direct run of the same repeat, family, mode and rate) / hops.
Ratio = median over repeats of each repeat's IPv6 / IPv4 per-hop cost; diff = median of the
paired IPv6 - IPv4 per-hop differences. Cells are medians over the repeats both families have.
Also checks every kept run: conservation OK, and on every hop the rule on path "kernel".
"""
import collections
import csv
import glob
import json
import os
import statistics as st
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, 'records-fastpath')

def delivered_cell(group, rate):
    """Datagrams got (lost) over a group of runs; unpaced, their median rate first."""
    got = sum(r['got'] for r in group)
    lost = sum(r['lost'] for r in group)
    cell = f'{got:,} ({lost:,})'
    if rate == 'unpaced':
        cell = f"{st.median(r['pps'] for r in group) / 1000:.0f}k pps, " + cell
    return cell


runs = {}  # (rep, seg, hops, rate, fam) -> dict
invalid = []  # runs whose host CPU measure is impossible
for path in glob.glob(os.path.join(REC, 'r*-g*-h*-*-ipv?.json')):
    key = os.path.basename(path)[:-len('.json')]
    rep, seg, hops, rate, fam = key.split('-')
    d = json.load(open(path))
    c = json.load(open(path[:-len('.json')] + '.conservation.json'))
    hc = d['host_cpu']
    got = d['receiver']['received']
    if hc['busy_ns'] < d['generator']['perf']['task_clock_ns']:
        invalid.append(f"{key} (host busy {hc['busy_ns'] / 1e6:.0f} ms < generator task clock {d['generator']['perf']['task_clock_ns'] / 1e6:.0f} ms)")
        continue
    runs[(int(rep[1:]), int(seg[1:]), int(hops[1:]), rate, fam)] = {
        'cpu': hc['busy_ns'] / got if got else float('nan'),
        'got': got,
        'sent': d['generator']['sent'],
        'lost': d['receiver']['lost'],
        'pps': d['receiver']['reported_pps'],
        'ok': c.get('ok'),
        'other': hc['other_processes_ns'] / hc['window_ns'],
    }

problems = []
with open(os.path.join(REC, 'runs.tsv')) as f:
    for row in csv.DictReader(f, delimiter='\t'):
        if row['exit'] != '0':
            problems.append(f"r{row['rep']}-g{row['segments']}-h{row['hops']}-{row['rate']}-{row['family']}: exit {row['exit']}")
        if row['hops'] != '0' and set(row['paths'].replace('+', ',').split(',')) != {'kernel'}:
            problems.append(f"r{row['rep']}-g{row['segments']}-h{row['hops']}-{row['rate']}-{row['family']}: paths {row['paths']}")
for k, r in runs.items():
    if r['ok'] is not True:
        problems.append(f'{k}: conservation not OK')

def rate_name(rate):
    return 'flat out' if rate == 'unpaced' else f'{int(rate) // 1000}k pps'

def rate_order(rate):
    return 10**9 if rate == 'unpaced' else int(rate)

def fmt(x, p=0):
    return f'{x:.{p}f}' if x == x else 'n/a'

reps_all = sorted({k[0] for k in runs})
print(f'Records: {len(runs) + len(invalid)} runs, repeats {reps_all}. Problems: {problems or "none"}. '
      f'Host CPU measure left out: {"; ".join(invalid) or "none"}.')
print(f"Other processes' share of a run's window: median {st.median(r['other'] for r in runs.values()):.1%}, max {max(r['other'] for r in runs.values()):.1%}.")
print()
print('| sender | offered | hops | per hop, IPv4 / IPv6 (ns) | IPv6 / IPv4 per hop (median of paired ratios) | IPv6 − IPv4 per hop (median of paired differences, ns) | per-repeat ratios | chain per delivered datagram, IPv4 / IPv6 (ns) | delivered v4 / v6 (lost) | repeats |')
print('|---|---|---:|---|---:|---:|---|---|---|---:|')
cells = sorted({(k[1], k[3], k[2]) for k in runs if k[2] > 0}, key=lambda c: (c[0], rate_order(c[1]), c[2]))
for seg, rate, hops in cells:
    per = collections.defaultdict(dict)
    for rep in reps_all:
        for fam in ('ipv4', 'ipv6'):
            ch = runs.get((rep, seg, hops, rate, fam))
            di = runs.get((rep, seg, 0, rate, fam))
            if ch and di:
                per[rep][fam] = ((ch['cpu'] - di['cpu']) / hops, ch)
    reps = [r for r in reps_all if len(per[r]) == 2]
    if not reps:
        continue
    hop = lambda fam: st.median(per[r][fam][0] for r in reps)
    chain = lambda fam: st.median(per[r][fam][1]['cpu'] for r in reps)
    ratios = [per[r]['ipv6'][0] / per[r]['ipv4'][0] for r in reps]
    diffs = [per[r]['ipv6'][0] - per[r]['ipv4'][0] for r in reps]
    delivered = lambda fam: delivered_cell([per[r][fam][1] for r in reps], rate)
    sender = '1 per message' if seg == 1 else 'GSO 32'
    print(f"| {sender} | {rate_name(rate)} | {hops} | {fmt(hop('ipv4'))} / {fmt(hop('ipv6'))} | "
          f"{fmt(st.median(ratios), 2)} | {fmt(st.median(diffs))} | {', '.join(fmt(x, 2) for x in ratios)} | "
          f"{fmt(chain('ipv4'))} / {fmt(chain('ipv6'))} | {delivered('ipv4')} / {delivered('ipv6')} | {len(reps)} |")

print()
print('Direct runs (generator -> receiver, no relay), host CPU per delivered datagram, medians:')
print()
print('| sender | offered | IPv4 (ns) | IPv6 (ns) | IPv6 / IPv4 (median of paired ratios) | delivered v4 / v6 (lost) |')
print('|---|---|---:|---:|---:|---|')
for seg, rate in sorted({(k[1], k[3]) for k in runs if k[2] == 0}, key=lambda c: (c[0], rate_order(c[1]))):
    reps = [r for r in reps_all if (r, seg, 0, rate, 'ipv4') in runs and (r, seg, 0, rate, 'ipv6') in runs]
    if not reps:
        continue
    g = lambda r, fam: runs[(r, seg, 0, rate, fam)]
    delivered = lambda fam: delivered_cell([g(r, fam) for r in reps], rate)
    sender = '1 per message' if seg == 1 else 'GSO 32'
    print(f"| {sender} | {rate_name(rate)} | {fmt(st.median(g(r, 'ipv4')['cpu'] for r in reps))} | "
          f"{fmt(st.median(g(r, 'ipv6')['cpu'] for r in reps))} | "
          f"{fmt(st.median(g(r, 'ipv6')['cpu'] / g(r, 'ipv4')['cpu'] for r in reps), 2)} | {delivered('ipv4')} / {delivered('ipv6')} |")

print()
print('Per hop without the direct run: (3-hop chain - 1-hop chain) / 2, same repeat, family, mode and rate, medians:')
print()
print('| sender | offered | per hop, IPv4 / IPv6 (ns) | IPv6 / IPv4 (median of paired ratios) | IPv6 − IPv4 (median of paired differences, ns) | repeats |')
print('|---|---|---|---:|---:|---:|')
for seg, rate in sorted({(k[1], k[3]) for k in runs}, key=lambda c: (c[0], rate_order(c[1]))):
    per = {}
    for rep in reps_all:
        v = {}
        for fam in ('ipv4', 'ipv6'):
            a, b = runs.get((rep, seg, 3, rate, fam)), runs.get((rep, seg, 1, rate, fam))
            if a and b:
                v[fam] = (a['cpu'] - b['cpu']) / 2
        if len(v) == 2:
            per[rep] = v
    if not per:
        continue
    m = lambda f: st.median(f(v) for v in per.values())
    sender = '1 per message' if seg == 1 else 'GSO 32'
    print(f"| {sender} | {rate_name(rate)} | {m(lambda v: v['ipv4']):.0f} / {m(lambda v: v['ipv6']):.0f} | "
          f"{m(lambda v: v['ipv6'] / v['ipv4']):.2f} | {m(lambda v: v['ipv6'] - v['ipv4']):.0f} | {len(per)} |")

# The program's own time (inprogram-fastpath.sh: kernel.bpf_stats_enabled, 1 hop, 100k pps).
ip = os.path.join(REC, 'inprogram.tsv')
if os.path.exists(ip):
    prog = collections.defaultdict(dict)  # (seg) -> rep -> fam -> ns per run
    with open(ip) as f:
        for row in csv.DictReader(f, delimiter='\t'):
            prog[int(row['segments'])].setdefault(int(row['rep']), {})[row['family']] = int(row['run_time_ns']) / int(row['run_cnt'])
    print()
    print("The fast path program's own time per datagram (kernel run statistics, 1 hop, 100k pps), medians:")
    print()
    print('| sender | IPv4 (ns) | IPv6 (ns) | IPv6 / IPv4 (median of paired ratios) | IPv6 − IPv4 (median of paired differences, ns) | per-repeat IPv4 / IPv6 (ns) | repeats |')
    print('|---|---:|---:|---:|---:|---|---:|')
    for seg in sorted(prog):
        reps = [r for r in sorted(prog[seg]) if len(prog[seg][r]) == 2]
        v = lambda fam: st.median(prog[seg][r][fam] for r in reps)
        ratio = st.median(prog[seg][r]['ipv6'] / prog[seg][r]['ipv4'] for r in reps)
        diff = st.median(prog[seg][r]['ipv6'] - prog[seg][r]['ipv4'] for r in reps)
        each = ', '.join(f"{prog[seg][r]['ipv4']:.0f}/{prog[seg][r]['ipv6']:.0f}" for r in reps)
        sender = '1 per message' if seg == 1 else 'GSO 32'
        print(f'| {sender} | {v("ipv4"):.0f} | {v("ipv6"):.0f} | {ratio:.2f} | {diff:.0f} | {each} | {len(reps)} |')
