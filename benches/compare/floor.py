#!/usr/bin/env python3
"""Where a request's time goes: socketserver's threads mode beside the std floor.

Counts that repeat on a noisy machine, per echo-upper request (64 B
ping-pong), over a fixed number of requests after a warm-up:

  syscalls    every system call of the server's threads, from `strace -f -c`
              attached to the running server for exactly the counted requests
  instr       user-space instructions of the server's threads, from
              `valgrind --tool=callgrind` (counters zeroed with
              `callgrind_control -z` before the counted requests, dumped with
              `callgrind_control -d` after)
  switches    voluntary and involuntary context switches, summed over the
              server's threads from /proc/PID/task/*/status (no tool attached)
  cpu         the server's utime + stime from /proc/PID/stat (no tool
              attached; clock ticks of 10 ms, so coarse under 1 s)

    python3 benches/compare/floor.py                      # every scenario, socketserver and std
    python3 benches/compare/floor.py --servers socketserver,std,tokio --scenarios tcp-c16,udp-c1
    python3 benches/compare/floor.py --program target/socketserver-before --json out.json

The load is this script's own client (epoll, one thread): each connection (or
UDP socket) does request, answer, next request, every answer checked, the
same number of requests on every connection. Under strace every system call
stops the server, and under valgrind its threads run one at a time, so what
waits in a socket at each read differs from an untraced run: that moves the
16-client UDP figures (several datagrams found per receive), not the
one-at-a-time ones.
"""

import argparse
import json
import os
import queue
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as compare  # noqa: E402  (the comparison's build and server helpers)

SIZE = 64
SCENARIOS = {
    'tcp-c1': ('tcp', 1), 'tcp-c16': ('tcp', 16), 'tcp-c128': ('tcp', 128),
    'tcp-c1000': ('tcp', 1000), 'udp-c1': ('udp', 1), 'udp-c16': ('udp', 16),
}
SERVERS = ['socketserver', 'std', 'tokio']
TIMEOUT = 30.0


def request_bytes(i):
    base = b'hello, world %08d ' % i
    return (base * (SIZE // len(base) + 1))[:SIZE]


class Load:
    """Open connections (or UDP sockets) to one server, and drive fixed
    numbers of ping-pong round trips over all of them at once."""

    def __init__(self, transport, port, count):
        self.transport = transport
        self.socks = []
        for _ in range(count):
            if transport == 'tcp':
                s = socket.create_connection((compare.LOCALHOST, port), timeout=TIMEOUT)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            else:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.connect((compare.LOCALHOST, port))
            s.setblocking(False)
            self.socks.append(s)
        self.request = request_bytes(0)
        self.answer = self.request.upper()

    def round_trips(self, each):
        """`each` round trips on every socket, all sockets at once; the
        requests answered (every answer checked)."""
        if each == 0:
            return 0
        ep = select.epoll()
        left = {}
        got = {}
        for s in self.socks:
            ep.register(s.fileno(), select.EPOLLIN)
            left[s.fileno()] = each
            got[s.fileno()] = b''
            s.send(self.request)
        by_fd = {s.fileno(): s for s in self.socks}
        done = 0
        deadline = time.monotonic() + TIMEOUT + each * len(self.socks) * 0.01
        active = len(self.socks)
        while active:
            if time.monotonic() > deadline:
                raise RuntimeError('answers stopped coming (%d done)' % done)
            for fd, _ in ep.poll(1.0):
                s = by_fd[fd]
                data = s.recv(65536)
                if self.transport == 'tcp':
                    if not data:
                        raise RuntimeError('the server closed a connection')
                    got[fd] += data
                    if len(got[fd]) < SIZE:
                        continue
                    data, got[fd] = got[fd], b''
                if data != self.answer:
                    raise RuntimeError('a wrong answer: %r' % data[:80])
                done += 1
                left[fd] -= 1
                if left[fd]:
                    s.send(self.request)
                else:
                    ep.unregister(fd)
                    active -= 1
        ep.close()
        return done

    def close(self):
        for s in self.socks:
            s.close()


# --- Reading a process from /proc -------------------------------------------

def switches(pid):
    """Voluntary and involuntary context switches over the process's threads."""
    vol = invol = 0
    for task in os.listdir('/proc/%d/task' % pid):
        try:
            with open('/proc/%d/task/%s/status' % (pid, task)) as f:
                for line in f:
                    if line.startswith('voluntary_ctxt_switches:'):
                        vol += int(line.split()[1])
                    elif line.startswith('nonvoluntary_ctxt_switches:'):
                        invol += int(line.split()[1])
        except FileNotFoundError:
            pass
    return vol, invol


def cpu_ticks(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])


def threads(pid):
    return len(os.listdir('/proc/%d/task' % pid))


# --- Servers -----------------------------------------------------------------

def server_command(commands, name, program):
    if name == 'socketserver':
        return [program, 'serve', 'echo-upper', '--bind', 'tcp://127.0.0.1:0',
                '--bind', 'udp://127.0.0.1:0']
    return list(commands[name])


def start(cmd, wrapper=()):
    server = compare.Server(list(wrapper) + cmd, {'tcp', 'udp'})
    # Under a wrapper (valgrind) the server is the wrapper's own process.
    return server


def port_of(server, transport):
    return int(server.urls[transport].rsplit(':', 1)[1])


def measure_plain(cmd, transport, conns, each, warm):
    server = start(cmd)
    try:
        load = Load(transport, port_of(server, transport), conns)
        load.round_trips(warm)
        pid = server.pid
        vol0, invol0 = switches(pid)
        cpu0 = cpu_ticks(pid)
        t0 = time.monotonic()
        done = load.round_trips(each)
        elapsed = time.monotonic() - t0
        vol1, invol1 = switches(pid)
        cpu1 = cpu_ticks(pid)
        n_threads = threads(pid)
        load.close()
    finally:
        server.stop()
    ticks = os.sysconf('SC_CLK_TCK')
    return {
        'requests': done,
        'voluntary_per_request': (vol1 - vol0) / done,
        'involuntary_per_request': (invol1 - invol0) / done,
        'cpu_us_per_request': (cpu1 - cpu0) / ticks / done * 1e6,
        'client_seconds': elapsed,
        'threads': n_threads,
    }


STRACE_LINE = re.compile(r'^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$')


def parse_strace(text):
    calls = {}
    errors = {}
    for line in text.splitlines():
        m = STRACE_LINE.match(line)
        if m and m.group(3) != 'total':
            calls[m.group(3)] = int(m.group(1))
            if m.group(2):
                errors[m.group(3)] = int(m.group(2))
    return calls, errors


def measure_strace(cmd, transport, conns, each, warm):
    server = start(cmd)
    out = tempfile.NamedTemporaryFile(prefix='floor-strace-', suffix='.txt', delete=False)
    out.close()
    try:
        load = Load(transport, port_of(server, transport), conns)
        load.round_trips(warm)
        want = threads(server.pid)
        tracer = subprocess.Popen(['strace', '-f', '-c', '-o', out.name, '-p', str(server.pid)],
                                  stderr=subprocess.PIPE, text=True)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in tracer.stderr],
                         daemon=True).start()
        attached = 0
        deadline = time.monotonic() + 60
        # strace says "Process N attached with M threads", or "attached" once
        # per thread.
        while attached < want and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            m = re.search(r'attached with (\d+) threads', line)
            if m:
                attached = int(m.group(1))
            elif 'attached' in line:
                attached += 1
        if attached < want:
            raise RuntimeError('strace attached to %d of %d threads' % (attached, want))
        done = load.round_trips(each)
        tracer.send_signal(signal.SIGINT)
        tracer.communicate(timeout=60)
        load.close()
        calls, errors = parse_strace(Path(out.name).read_text())
    finally:
        server.stop()
        os.unlink(out.name)
    total = sum(calls.values())
    return {
        'requests': done,
        'syscalls_per_request': total / done,
        'by_call': {k: v / done for k, v in sorted(calls.items(), key=lambda kv: -kv[1])},
        'errors': {k: v / done for k, v in errors.items()},
    }


# The system calls counted one by one; `raw_syscalls:sys_enter` counts them all.
PERF_CALLS = ['recvfrom', 'sendto', 'recvmmsg', 'sendmmsg', 'recvmsg', 'sendmsg', 'read',
              'write', 'writev', 'futex', 'epoll_wait', 'epoll_pwait', 'poll', 'sched_yield',
              'clock_nanosleep', 'accept4', 'setsockopt', 'mmap', 'munmap', 'mprotect',
              'madvise', 'clone', 'clone3', 'rt_sigprocmask', 'sigaltstack']


def measure_perf(cmd, transport, conns, each, warm):
    """System calls counted in the kernel by `perf stat` on tracepoints: no
    ptrace stop per call, so the server runs at its own pace."""
    server = start(cmd)
    out = tempfile.NamedTemporaryFile(prefix='floor-perf-', suffix='.csv', delete=False)
    out.close()
    events = ['raw_syscalls:sys_enter'] + ['syscalls:sys_enter_%s' % c for c in PERF_CALLS]
    try:
        load = Load(transport, port_of(server, transport), conns)
        load.round_trips(warm)
        tracer = subprocess.Popen(['perf', 'stat', '-x', ',', '-o', out.name,
                                   '-e', ','.join(events), '-p', str(server.pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # perf attaches to every thread in turn (a second per thousand, or
        # so); the server is idle meanwhile.
        time.sleep(0.3 + threads(server.pid) / 500)
        done = load.round_trips(each)
        tracer.send_signal(signal.SIGINT)
        tracer.communicate(timeout=60)
        load.close()
        counts = {}
        for line in Path(out.name).read_text().splitlines():
            fields = line.split(',')
            if len(fields) > 2 and fields[0].strip().isdigit():
                name = fields[2].split(':')[-1].replace('sys_enter_', '')
                counts[name] = int(fields[0])
    finally:
        server.stop()
        os.unlink(out.name)
    total = counts.pop('sys_enter', 0)
    calls = {k: v for k, v in counts.items() if v}
    other = total - sum(calls.values())
    if other > 0:
        calls['other'] = other
    return {
        'requests': done,
        'syscalls_per_request': total / done,
        'by_call': {k: v / done for k, v in sorted(calls.items(), key=lambda kv: -kv[1])},
        'errors': {},
    }


def callgrind_total(path):
    for line in Path(path).read_text().splitlines():
        if line.startswith('summary:') or line.startswith('totals:'):
            return int(line.split()[1])
    raise RuntimeError('no totals in %s' % path)


def measure_callgrind(cmd, transport, conns, each, warm):
    outdir = Path(tempfile.mkdtemp(prefix='floor-callgrind-'))
    wrapper = ['valgrind', '--tool=callgrind', '--max-threads=%d' % (conns + 200),
               '--callgrind-out-file=%s/callgrind.out.%%p' % outdir]
    server = start(cmd, wrapper)
    try:
        load = Load(transport, port_of(server, transport), conns)
        load.round_trips(warm)
        pid = server.pid
        subprocess.run(['callgrind_control', '-z', str(pid)], check=True,
                       capture_output=True, timeout=120)
        done = load.round_trips(each)
        before = set(outdir.iterdir())
        subprocess.run(['callgrind_control', '-d', str(pid)], check=True,
                       capture_output=True, timeout=120)
        dumps = sorted(set(outdir.iterdir()) - before)
        if not dumps:
            raise RuntimeError('callgrind wrote no dump')
        instructions = sum(callgrind_total(d) for d in dumps)
        load.close()
    finally:
        server.stop()
        for f in outdir.iterdir():
            f.unlink()
        outdir.rmdir()
    return {'requests': done, 'instructions_per_request': instructions / done}


# --- The run -----------------------------------------------------------------

def median_round(rounds):
    """The round with the median CPU per request, with every round's CPU
    figure beside it."""
    ordered = sorted(rounds, key=lambda r: r['cpu_us_per_request'])
    chosen = dict(ordered[len(ordered) // 2])
    chosen['cpu_us_per_request_rounds'] = [r['cpu_us_per_request'] for r in rounds]
    return chosen


def markdown(results, servers, scenarios):
    rows = ['| scenario | server | syscalls / request (strace) | of which '
            '| syscalls / request (perf) | instructions / request '
            '| context switches / request (voluntary + involuntary) | CPU µs / request '
            '| CPU vs std | threads |',
            '|---|---|---|---|---|---|---|---|---|---|']
    for scenario in scenarios:
        for name in servers:
            r = results.get(scenario, {}).get(name)
            if not r:
                continue
            s = r.get('strace') or r.get('perf') or {}
            by = ', '.join('%s %.2f' % (k, v) for k, v in s.get('by_call', {}).items()
                           if v >= 0.01)
            errs = ', '.join('%s %.2f' % kv for kv in s.get('errors', {}).items()
                             if kv[1] >= 0.01)
            if errs:
                by += ' (failing: %s)' % errs
            p = r.get('plain', {})
            c = r.get('callgrind', {})
            floor = results.get(scenario, {}).get('std', {}).get('plain')
            ratio = ('%.2f×' % (p['cpu_us_per_request'] / floor['cpu_us_per_request'])
                     if p and floor and floor['cpu_us_per_request'] else '—')
            perf = r.get('perf')
            rows.append('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' % (
                scenario, name,
                '%.2f' % s['syscalls_per_request'] if s else '—',
                by or '—',
                # perf opens every event on every thread: at 1,000 threads that
                # is past the open-file limit, and it counts nothing.
                '%.2f' % perf['syscalls_per_request']
                if perf and perf['syscalls_per_request'] else '—',
                '{:,.0f}'.format(c['instructions_per_request']) if c else '—',
                '%.2f + %.2f' % (p['voluntary_per_request'], p['involuntary_per_request'])
                if p else '—',
                '%.1f' % p['cpu_us_per_request'] if p else '—',
                ratio,
                p.get('threads', '—') if p else '—'))
    return '\n'.join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--servers', default='socketserver,std')
    parser.add_argument('--scenarios', default=','.join(SCENARIOS))
    parser.add_argument('--requests', type=int, default=200000,
                        help='requests counted per point (rounded to a multiple of the '
                             'connections)')
    parser.add_argument('--traced-requests', type=int, default=20000,
                        help='requests counted per point under strace and callgrind, which '
                             'slow the server down many times')
    parser.add_argument('--rounds', type=int, default=3,
                        help='plain measurements per point (the median is reported; a '
                             'server started fresh for each)')
    parser.add_argument('--warmup', type=int, default=2000, help='requests before counting')
    parser.add_argument('--measures', default='plain,perf,strace,callgrind',
                        help='plain (switches, CPU), perf (system calls from tracepoints), '
                             'strace (system calls, strace -f -c), callgrind (instructions)')
    parser.add_argument('--program', default=None,
                        help='the socketserver binary (default: target/release/socketserver)')
    parser.add_argument('--no-build', action='store_true')
    parser.add_argument('--json', type=Path, default=None, help='also write the results here')
    parser.add_argument('--report', type=Path, default=None,
                        help='measure nothing: print the table of a --json file')
    args = parser.parse_args()
    servers = args.servers.split(',')
    if args.report:
        saved = json.loads(args.report.read_text())
        names = [n for n in SERVERS if any(n in v for v in saved.values())]
        print(markdown(saved, names, [sc for sc in SCENARIOS if sc in saved]))
        return
    scenarios = args.scenarios.split(',')
    measures = args.measures.split(',')
    if args.no_build:
        commands = {'std': [str(compare.PEER_TARGET / 'release' / 'std-echo')],
                    'tokio': [str(compare.PEER_TARGET / 'release' / 'tokio-echo')]}
    else:
        compare.SERVERS = servers
        commands, _ = compare.build(args, [])
    program = args.program or str(compare.ROOT / 'target' / 'release' / 'socketserver')
    compare.raise_fd_limit()
    results = {}
    for scenario in scenarios:
        transport, conns = SCENARIOS[scenario]
        each = max(1, args.requests // conns)
        traced = max(1, args.traced_requests // conns)
        warm = max(1, args.warmup // conns)
        for name in servers:
            cmd = server_command(commands, name, program)
            point = results.setdefault(scenario, {}).setdefault(name, {})
            for measure in measures:
                fn = {'plain': measure_plain, 'strace': measure_strace, 'perf': measure_perf,
                      'callgrind': measure_callgrind}[measure]
                compare.log('%s %s %s' % (scenario, name, measure))
                if measure == 'plain':
                    rounds = [fn(cmd, transport, conns, each, warm) for _ in range(args.rounds)]
                    point[measure] = median_round(rounds)
                else:
                    count = each if measure == 'perf' else traced
                    point[measure] = fn(cmd, transport, conns, count, warm)
                compare.log('  ' + json.dumps(point[measure])[:300])
    print(markdown(results, servers, scenarios))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == '__main__':
    main()
