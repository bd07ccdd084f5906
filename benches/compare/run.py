#!/usr/bin/env python3
"""Side-by-side benchmark of socketserver's echo-upper against its peers.

One command builds everything, runs every scenario against every server on
this machine, interleaved (scenario by scenario, the servers' order rotating
from round to round), and regenerates the results:

    python3 benches/compare/run.py            # the full run (about 30 minutes)
    python3 benches/compare/run.py --smoke    # seconds per point: checks the tooling only

The servers, each started fresh for every measurement, all on 127.0.0.1:
  socketserver  `socketserver serve echo-upper` (ThreadingTcpServer/ThreadingUdpServer)
  std           benches/compare/peers/std-echo: std only, a thread per connection
  tokio         benches/compare/peers/tokio-echo: tokio multi-thread, a task per connection
  python        benches/compare/peers/python/echo_upper_server.py: the course's
                socketserver.ThreadingTCPServer/ThreadingUDPServer

The load comes from `socketserver bench echo-upper` (every answer checked) on
the same machine. Results go to benches/compare/results/ (results.json,
results.csv, plot.png) and into the generated part of BENCHMARKS.md.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPARE = ROOT / 'benches' / 'compare'
PEERS = COMPARE / 'peers'
PEER_TARGET = ROOT / 'target' / 'compare-peers'
VENV = ROOT / 'target' / 'compare-venv'
BENCHMARKS_MD = ROOT / 'BENCHMARKS.md'
BEGIN = '<!-- BEGIN GENERATED: benches/compare/run.py -->'
END = '<!-- END GENERATED -->'

SERVERS = ['socketserver', 'std', 'tokio', 'python']
PEER_NAMES = {
    'socketserver': 'socketserver (ThreadingTcpServer / ThreadingUdpServer)',
    'std': 'std thread per connection (floor)',
    'tokio': 'tokio multi-thread',
    'python': "Python socketserver.Threading*Server (the course's)",
}

# id, transport, mode, connections, size; label for tables.
SCENARIOS = [
    dict(id='tcp-64-c1', transport='tcp', mode='ping-pong', connections=1, size=64,
         label='TCP ping-pong, 64 B, 1 connection'),
    dict(id='tcp-64-c16', transport='tcp', mode='ping-pong', connections=16, size=64,
         label='TCP ping-pong, 64 B, 16 connections'),
    dict(id='tcp-64-c128', transport='tcp', mode='ping-pong', connections=128, size=64,
         label='TCP ping-pong, 64 B, 128 connections'),
    dict(id='tcp-64-c1000', transport='tcp', mode='ping-pong', connections=1000, size=64,
         label='TCP ping-pong, 64 B, 1,000 connections'),
    dict(id='tcp-16k-c16', transport='tcp', mode='ping-pong', connections=16, size=16384,
         label='TCP ping-pong, 16 KiB, 16 connections'),
    dict(id='udp-64-c1', transport='udp', mode='ping-pong', connections=1, size=64,
         label='UDP ping-pong, 64 B, 1 client'),
    dict(id='udp-64-c16', transport='udp', mode='ping-pong', connections=16, size=64,
         label='UDP ping-pong, 64 B, 16 clients'),
    dict(id='connect-rate-c16', transport='tcp', mode='connect-rate', connections=16, size=64,
         label='Connection rate (connect, 64 B, close), 16 at once'),
    dict(id='hold-10000', transport='tcp', mode='hold', connections=10000, size=64,
         label='10,000 idle connections held, then each answers'),
]
TCP_CURVE = ['tcp-64-c1', 'tcp-64-c16', 'tcp-64-c128', 'tcp-64-c1000']


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def run(cmd, **kwargs):
    log('+', ' '.join(str(c) for c in cmd))
    subprocess.run(cmd, check=True, **kwargs)


def build(args):
    """Builds the socketserver program and the Rust peers in release mode."""
    run(['cargo', 'build', '--release', '--quiet', '--bin', 'socketserver'], cwd=ROOT)
    env = dict(os.environ, CARGO_TARGET_DIR=str(PEER_TARGET))
    for peer in ['std-echo', 'tokio-echo']:
        run(['cargo', 'build', '--release', '--quiet', '--manifest-path',
             str(PEERS / peer / 'Cargo.toml')], env=env)
    python = shutil.which('python3') or sys.executable
    return {
        'bench': [str(ROOT / 'target' / 'release' / 'socketserver'), 'bench', 'echo-upper'],
        'socketserver': [str(ROOT / 'target' / 'release' / 'socketserver'), 'serve', 'echo-upper',
                         '--bind', 'tcp://127.0.0.1:0', '--bind', 'udp://127.0.0.1:0'],
        'std': [str(PEER_TARGET / 'release' / 'std-echo')],
        'tokio': [str(PEER_TARGET / 'release' / 'tokio-echo')],
        'python': [python, str(PEERS / 'python' / 'echo_upper_server.py')],
    }


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def machine():
    """What this machine is, read at run time."""
    model = 'unknown'
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                model = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = subprocess.run(['nproc'], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        nproc = str(os.cpu_count())
    memory = 'unknown'
    try:
        for line in Path('/proc/meminfo').read_text().splitlines():
            if line.startswith('MemTotal:'):
                memory = '%.1f GiB' % (int(line.split()[1]) / 1024 / 1024)
    except OSError:
        pass

    def version(cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):
            return 'unknown'

    return {
        'cpu': model,
        'nproc': nproc,
        'memory': memory,
        'kernel': platform.release(),
        'rustc': version(['rustc', '--version']),
        'python': version([sys.executable, '--version']),
        'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
    }


class Server:
    """A server process started for one measurement, stopped on exit."""

    def __init__(self, cmd):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True,
                                     preexec_fn=raise_fd_limit)
        self.urls = {}
        self.stderr = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        deadline = time.monotonic() + 30
        found = threading.Event()

        def read_urls():
            for line in self.proc.stdout:
                if line.startswith('listening on '):
                    url = line.split('listening on ', 1)[1].strip()
                    self.urls[url.split('://')[0]] = url
                    if len(self.urls) == 2:
                        found.set()
            found.set()

        threading.Thread(target=read_urls, daemon=True).start()
        found.wait(max(0, deadline - time.monotonic()))
        if len(self.urls) < 2:
            self.stop()
            raise RuntimeError('%s announced no addresses: %s' % (cmd, ''.join(self.stderr)))

    def _drain_stderr(self):
        for line in self.proc.stderr:
            if len(self.stderr) < 200:
                self.stderr.append(line)

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def measure(commands, server_name, scenario, args):
    """Starts `server_name`, runs one scenario against it, stops it."""
    cmd = list(commands[server_name])
    if server_name == 'socketserver' and scenario['mode'] == 'hold':
        # A thread per held connection: the default cap of 1,024 is raised.
        cmd += ['--max-threads', str(scenario['connections'])]
    server = Server(cmd)
    try:
        url = server.urls[scenario['transport']]
        bench = list(commands['bench']) + [
            '--connect', url, '--mode', scenario['mode'],
            '--connections', str(scenario['connections']),
            '--size', str(scenario['size']),
            '--timeout', str(args.timeout),
            '--watch-pid', str(server.pid),
        ]
        if scenario['mode'] == 'hold':
            bench += ['--duration', str(args.hold)]
        else:
            bench += ['--duration', str(args.duration), '--warmup', str(args.warmup)]
        limit = args.duration + args.warmup + args.hold + 120
        out = subprocess.run(bench, capture_output=True, text=True, timeout=limit,
                             preexec_fn=raise_fd_limit)
        lines = out.stdout.strip().splitlines()
        try:
            result = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            raise RuntimeError('bench printed no JSON (exit %s): %s %s'
                               % (out.returncode, out.stdout, out.stderr))
        result['server_alive'] = server.proc.poll() is None
        server.stop()
        if result['errors']:
            # What the server said about it, for the raw results.
            result['server_stderr'] = ''.join(server.stderr[-20:])
        return result
    finally:
        server.stop()


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def aggregate(runs):
    """Medians per scenario and server over the rounds."""
    table = {}
    for scenario in SCENARIOS:
        for name in SERVERS:
            mine = [r for r in runs if r['scenario'] == scenario['id'] and r['server'] == name]
            if not mine:
                continue
            res = [r['result'] for r in mine]
            table[(scenario['id'], name)] = {
                'rounds': len(res),
                'rps': median([r.get('requests_per_sec') for r in res]),
                'p50_us': median([r['latency_us']['p50'] for r in res]),
                'p99_us': median([r['latency_us']['p99'] for r in res]),
                'errors': sum(r['errors'] for r in res),
                'lost': sum(r.get('lost', 0) for r in res),
                'held': min((r['held'] for r in res if r.get('held') is not None), default=None),
                'answered': min((r['answered'] for r in res if r.get('answered') is not None),
                                default=None),
                'rss_kib': max((r['server']['rss_kib'] for r in res if r.get('server')),
                               default=None),
                'threads': max((r['server']['threads'] for r in res if r.get('server')),
                               default=None),
            }
    return table


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return '—' if r is None else '%.2f×' % r


def targets(table):
    """Each target of issue 4: (text, measured, met)."""
    rows = []

    def get(sid, name, key):
        return table.get((sid, name), {}).get(key)

    for sid in TCP_CURVE:
        rps = ratio(get(sid, 'socketserver', 'rps'), get(sid, 'std', 'rps'))
        p99 = ratio(get(sid, 'socketserver', 'p99_us'), get(sid, 'std', 'p99_us'))
        met = rps is not None and p99 is not None and rps >= 0.95 and p99 <= 1.05
        rows.append(('%s: ≥ 0.95× std requests/s, p99 no worse than std (within 5%%)'
                     % sid, 'requests/s %s, p99 %s' % (fmt_ratio(rps), fmt_ratio(p99)), met))
    r = ratio(get('tcp-64-c1000', 'socketserver', 'rps'), get('tcp-64-c1000', 'python', 'rps'))
    rows.append(('tcp-64-c1000: ≥ 2× Python requests/s', fmt_ratio(r), r is not None and r >= 2))
    p50 = get('tcp-16k-c16', 'socketserver', 'p50_us')
    rows.append(('tcp-16k-c16: p50 under 1 ms (no Nagle/delayed-ACK stall)',
                 '—' if p50 is None else '%.3f ms' % (p50 / 1000), p50 is not None and p50 < 1000))
    a = ratio(get('udp-64-c16', 'socketserver', 'rps'), get('udp-64-c16', 'std', 'rps'))
    b = ratio(get('udp-64-c16', 'socketserver', 'rps'), get('udp-64-c16', 'tokio', 'rps'))
    rows.append(('udp-64-c16: ≥ 1.0× std requests/s', fmt_ratio(a), a is not None and a >= 1.0))
    rows.append(('udp-64-c16: ≥ 1.2× tokio requests/s', fmt_ratio(b), b is not None and b >= 1.2))
    c = ratio(get('connect-rate-c16', 'socketserver', 'rps'), get('connect-rate-c16', 'std', 'rps'))
    rows.append(('connect-rate-c16: ≥ 1.2× std connections/s', fmt_ratio(c),
                 c is not None and c >= 1.2))
    held = table.get(('hold-10000', 'socketserver'), {})
    answered, rss = held.get('answered'), held.get('rss_kib')
    rows.append(('hold-10000: all 10,000 answer, server RSS under 100 MiB',
                 '%s answered, %s' % (answered if answered is not None else '—',
                                      '—' if rss is None else '%.1f MiB' % (rss / 1024)),
                 answered == 10000 and rss is not None and rss < 100 * 1024))
    return rows


def markdown(table, info, args, runs):
    """The generated part of BENCHMARKS.md."""
    out = []
    if args.smoke:
        out.append('> **SMOKE RUN: not a measurement.** %s s per point after %s s of warm-up, '
                   '%d round(s), on a machine shared with other work: it shows that the '
                   'tooling runs end to end, and its numbers mean nothing. Regenerate on a '
                   'quiet machine with the command above.' % (args.duration, args.warmup,
                                                               args.rounds))
        out.append('')
    out.append('Run of %s: %s s per point after %s s of warm-up (hold: %s s), %d round(s), '
               'medians over rounds.' % (info['date'], args.duration, args.warmup, args.hold,
                                         args.rounds))
    out.append('')
    out.append('| machine | |')
    out.append('|---|---|')
    out.append('| CPU (`/proc/cpuinfo`) | %s |' % info['cpu'])
    out.append('| `nproc` | %s |' % info['nproc'])
    out.append('| memory | %s |' % info['memory'])
    out.append('| kernel | %s |' % info['kernel'])
    out.append('| toolchain | %s; %s |' % (info['rustc'], info['python']))
    out.append('')
    out.append('### Targets')
    out.append('')
    out.append('| target | measured | met? |')
    out.append('|---|---|---|')
    for text, measured, met in targets(table):
        out.append('| %s | %s | %s |' % (text, measured, 'yes' if met else '**MISSED**'))
    out.append('')
    out.append('### Throughput: socketserver ÷ peer (higher is better)')
    out.append('')
    out.append('| scenario | ÷ std | ÷ tokio | ÷ Python |')
    out.append('|---|---|---|---|')
    for s in SCENARIOS:
        if s['mode'] == 'hold':
            continue
        ours = table.get((s['id'], 'socketserver'), {}).get('rps')
        cells = [fmt_ratio(ratio(ours, table.get((s['id'], p), {}).get('rps')))
                 for p in ['std', 'tokio', 'python']]
        out.append('| %s | %s |' % (s['label'], ' | '.join(cells)))
    out.append('')
    out.append('### p99 latency: socketserver ÷ peer (lower is better)')
    out.append('')
    out.append('| scenario | ÷ std | ÷ tokio | ÷ Python |')
    out.append('|---|---|---|---|')
    for s in SCENARIOS:
        if s['mode'] == 'hold':
            continue
        ours = table.get((s['id'], 'socketserver'), {}).get('p99_us')
        cells = [fmt_ratio(ratio(ours, table.get((s['id'], p), {}).get('p99_us')))
                 for p in ['std', 'tokio', 'python']]
        out.append('| %s | %s |' % (s['label'], ' | '.join(cells)))
    out.append('')
    out.append('### 10,000 idle connections (from `/proc/PID/status` while all are open)')
    out.append('')
    out.append('| server | held | answered | RSS (MiB) | threads |')
    out.append('|---|---|---|---|---|')
    for name in SERVERS:
        row = table.get(('hold-10000', name))
        if not row:
            continue
        rss = row['rss_kib']
        out.append('| %s | %s | %s | %s | %s |' % (
            PEER_NAMES[name], row['held'], row['answered'],
            '—' if rss is None else '%.1f' % (rss / 1024), row['threads']))
    out.append('')
    out.append('### Errors')
    out.append('')
    bad = [(s['id'], n, table[(s['id'], n)]) for s in SCENARIOS for n in SERVERS
           if (s['id'], n) in table and (table[(s['id'], n)]['errors'] or table[(s['id'], n)]['lost'])]
    if not bad:
        out.append('Every answer of every server was checked and right: no errors, no lost '
                   'datagrams.')
    else:
        out.append('| scenario | server | errors | lost datagrams |')
        out.append('|---|---|---|---|')
        for sid, name, row in bad:
            out.append('| %s | %s | %d | %d |' % (sid, name, row['errors'], row['lost']))
    out.append('')
    out.append('![requests/s and p99 latency against connections, TCP 64 B ping-pong]'
               '(%s)' % os.path.relpath(args.out / 'plot.png', ROOT))
    out.append('')
    out.append('Raw results: [`%s`](%s) and [`%s`](%s).' % (
        os.path.relpath(args.out / 'results.json', ROOT),
        os.path.relpath(args.out / 'results.json', ROOT),
        os.path.relpath(args.out / 'results.csv', ROOT),
        os.path.relpath(args.out / 'results.csv', ROOT)))
    return '\n'.join(out)


def write_doc(text):
    doc = BENCHMARKS_MD.read_text()
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < start:
        raise RuntimeError('BENCHMARKS.md has no generated block (%s ... %s)' % (BEGIN, END))
    BENCHMARKS_MD.write_text(doc[:start + len(BEGIN)] + '\n' + text + '\n' + doc[end:])


def matplotlib_python():
    """A Python with matplotlib: this one, or a venv the script makes."""
    check = 'import matplotlib'
    if subprocess.run([sys.executable, '-c', check], capture_output=True).returncode == 0:
        return sys.executable
    python = VENV / 'bin' / 'python'
    if not python.exists():
        run([sys.executable, '-m', 'venv', str(VENV)])
    if subprocess.run([str(python), '-c', check], capture_output=True).returncode != 0:
        run([str(python), '-m', 'pip', 'install', '--quiet', 'matplotlib'])
    return str(python)


PLOT = r'''
import json, sys
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
data = json.load(open(sys.argv[1]))
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
for name, label in data['servers']:
    points = [p for p in data['points'] if p['server'] == name and p['rps']]
    if not points:
        continue
    x = [p['connections'] for p in points]
    left.plot(x, [p['rps'] for p in points], marker='o', label=label)
    right.plot(x, [p['p99_us'] / 1000 for p in points], marker='o', label=label)
ticks = sorted({p['connections'] for p in data['points']})
for ax, title, unit in [(left, 'Throughput', 'requests/s'), (right, 'p99 latency', 'ms')]:
    ax.set_xscale('log')
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.set_xlabel('connections')
    ax.set_ylabel(unit)
    ax.set_title(title + ', TCP ping-pong, 64 B')
    ax.grid(True, which='both', alpha=0.3)
right.set_yscale('log')
left.legend(fontsize=8)
fig.suptitle(data['title'], fontsize=9)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
'''


def plot(table, args, info):
    points = []
    for sid in TCP_CURVE:
        scenario = next(s for s in SCENARIOS if s['id'] == sid)
        for name in SERVERS:
            row = table.get((sid, name))
            if row:
                points.append(dict(server=name, connections=scenario['connections'],
                                   rps=row['rps'], p99_us=row['p99_us']))
    title = '%s, %s CPUs, %s' % (info['cpu'], info['nproc'], info['date'])
    if args.smoke:
        title = 'SMOKE RUN (not a measurement): ' + title
    data = dict(points=points, title=title,
                servers=[(n, PEER_NAMES[n]) for n in SERVERS])
    spec = args.out / 'plot-data.json'
    spec.write_text(json.dumps(data))
    try:
        python = matplotlib_python()
        run([python, '-c', PLOT, str(spec), str(args.out / 'plot.png')])
    except (OSError, subprocess.CalledProcessError) as e:
        log('warning: no plot (%s)' % e)
    finally:
        spec.unlink(missing_ok=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--duration', type=float, default=10, help='seconds counted per point')
    parser.add_argument('--warmup', type=float, default=2, help='seconds of warm-up per point')
    parser.add_argument('--hold', type=float, default=5, help='seconds to hold idle connections')
    parser.add_argument('--rounds', type=int, default=3, help='rounds of every scenario')
    parser.add_argument('--timeout', type=float, default=5, help='seconds before an answer is late')
    parser.add_argument('--smoke', action='store_true',
                        help='1 s per point, 1 round: checks the tooling, measures nothing')
    parser.add_argument('--scenarios', help='comma-separated scenario ids (default: all)')
    parser.add_argument('--servers', help='comma-separated servers (default: all)')
    parser.add_argument('--out', type=Path,
                        help='where results go (default benches/compare/results, '
                             'or results-smoke with --smoke)')
    parser.add_argument('--no-doc', action='store_true', help='leave BENCHMARKS.md alone')
    parser.add_argument('--report-only', action='store_true',
                        help='run nothing: regenerate the tables and plot from the results '
                             'already in --out')
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.warmup, args.hold, args.rounds = 1, 0.3, 1, 1
    global SCENARIOS, SERVERS
    if args.scenarios:
        wanted = args.scenarios.split(',')
        unknown = set(wanted) - {s['id'] for s in SCENARIOS}
        if unknown:
            parser.error('unknown scenario(s): %s' % ', '.join(sorted(unknown)))
        SCENARIOS = [s for s in SCENARIOS if s['id'] in wanted]
    if args.servers:
        wanted = args.servers.split(',')
        unknown = set(wanted) - set(SERVERS)
        if unknown:
            parser.error('unknown server(s): %s' % ', '.join(sorted(unknown)))
        SERVERS = [s for s in SERVERS if s in wanted]
    if args.out is None:
        args.out = COMPARE / ('results-smoke' if args.smoke else 'results')
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)

    if args.report_only:
        saved = json.loads((args.out / 'results.json').read_text())
        args.smoke, args.duration, args.warmup = saved['smoke'], saved['duration'], saved['warmup']
        args.hold, args.rounds = saved['hold'], saved['rounds']
        report(saved['runs'], saved['machine'], args)
        return

    raise_fd_limit()
    commands = build(args)
    info = machine()
    log('machine: %s' % info)
    runs = []
    for round_no in range(args.rounds):
        for scenario in SCENARIOS:
            shift = round_no % len(SERVERS)
            for name in SERVERS[shift:] + SERVERS[:shift]:
                log('round %d/%d, %s, %s' % (round_no + 1, args.rounds, scenario['id'], name))
                try:
                    result = measure(commands, name, scenario, args)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    log('  failed: %s' % e)
                    continue
                rps = result.get('requests_per_sec')
                log('  %s req/s, p99 %.1f us, errors %d%s' % (
                    'n/a' if rps is None else '%.0f' % rps, result['latency_us']['p99'],
                    result['errors'],
                    '' if result.get('answered') is None else
                    ', answered %s of %s' % (result['answered'], result['connections'])))
                runs.append(dict(round=round_no + 1, scenario=scenario['id'], server=name,
                                 result=result))
    report(runs, info, args)


def report(runs, info, args):
    """Writes results.json, results.csv, plot.png and the generated block."""
    table = aggregate(runs)
    (args.out / 'results.json').write_text(json.dumps(dict(
        machine=info, smoke=args.smoke, duration=args.duration, warmup=args.warmup,
        hold=args.hold, rounds=args.rounds, runs=runs,
        medians=[dict(scenario=k[0], server=k[1], **v) for k, v in table.items()],
    ), indent=1) + '\n')
    with open(args.out / 'results.csv', 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['round', 'scenario', 'server', 'connections', 'size', 'requests_per_sec',
                    'p50_us', 'p90_us', 'p99_us', 'max_us', 'errors', 'lost', 'held',
                    'answered', 'server_rss_kib', 'server_threads'])
        for r in runs:
            res = r['result']
            server = res.get('server') or {}
            w.writerow([r['round'], r['scenario'], r['server'], res['connections'], res['size'],
                        res.get('requests_per_sec'), res['latency_us']['p50'],
                        res['latency_us']['p90'], res['latency_us']['p99'],
                        res['latency_us']['max'], res['errors'], res.get('lost'),
                        res.get('held'), res.get('answered'), server.get('rss_kib'),
                        server.get('threads')])
    plot(table, args, info)
    text = markdown(table, info, args, runs)
    if not args.no_doc:
        write_doc(text)
    print(text)


if __name__ == '__main__':
    main()
