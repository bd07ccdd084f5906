#!/usr/bin/env python3
"""Side-by-side benchmark of socketserver against its peers.

One command builds everything, runs every scenario against every server on
this machine, interleaved (scenario by scenario, the servers' order rotating
from round to round), and regenerates the results:

    python3 benches/compare/run.py            # the full run (30 minutes and more)
    python3 benches/compare/run.py --smoke    # seconds per point: checks the tooling only

The servers, each started fresh for every measurement, all on 127.0.0.1:
  socketserver          `socketserver serve echo-upper` (ThreadingTcpServer and
                        ThreadingUdpServer; `serve http` and `serve chat` for
                        those scenarios)
  socketserver-reactor  the same with `--dispatch reactor`, when the program
                        has that option (probed with `serve SERVICE --help`)
  std                   peers/std-echo: std only, a thread per connection
  tokio                 peers/tokio-echo: tokio multi-thread, a task per connection
  tokio-tls             peers/tokio-tls-echo: the same over TLS with tokio-rustls (ring),
                        the TLS scenarios' peer
  go                    peers/go-echo: Go's net, a goroutine per connection
                        (built with Debian's golang-go, installed when missing)
  may                   peers/may-echo: may's stackful coroutines, a coroutine
                        per connection (TCP only)
  python                peers/python/echo_upper_server.py: the course's
                        socketserver.ThreadingTCPServer/ThreadingUDPServer
  nginx                 peers/nginx: the HTTP scenario's peer, serving the
                        bytes of socketserver's built-in page

The load comes from `socketserver bench` (every answer checked) on the same
machine, and from wrk for HTTP. The TLS scenarios use one certificate for
every server (ECDSA P-256, self-signed, made by the tokio-tls peer at the
start and kept in a temporary directory for the run). Results go to benches/compare/results/
(results.json, results.csv, plot.png) and into the generated part of
BENCHMARKS.md.
"""

import argparse
import atexit
import csv
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
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
LOCALHOST = '127.0.0.1'
# Loopback source addresses for many connections to one port: each has its
# own ephemeral ports (about 28,000 here), and the fewer of them a source has
# in use, the less the kernel searches for a free one at each connect (19,000
# connections to one port open in 5.4 s from one source, 2.3 s from four).
SOURCES_4 = ['127.0.0.%d' % i for i in range(1, 5)]
SOURCES_8 = ['127.0.0.%d' % i for i in range(1, 9)]
# How many connections socketserver serves by default, and threads it starts.
DEFAULT_MAX_CONNECTIONS = 10000

SERVERS = ['socketserver', 'socketserver-reactor', 'std', 'tokio', 'tokio-tls', 'go', 'may',
           'python', 'nginx']
PEER_NAMES = {
    'socketserver': 'socketserver (threaded: ThreadingTcpServer / ThreadingUdpServer)',
    'socketserver-reactor': 'socketserver --dispatch reactor',
    'std': 'std thread per connection (floor)',
    'tokio': 'tokio multi-thread',
    'tokio-tls': 'tokio-rustls (tokio multi-thread, ring)',
    'go': "Go net, a goroutine per connection",
    'may': 'may, a stackful coroutine per connection',
    'python': "Python socketserver.Threading*Server (the course's)",
    'nginx': 'nginx (static page, keep-alive)',
}
SHORT_NAMES = {
    'socketserver': 'socketserver', 'socketserver-reactor': 'reactor', 'std': 'std',
    'tokio': 'tokio', 'tokio-tls': 'tokio-rustls', 'go': 'Go', 'may': 'may', 'python': 'Python', 'nginx': 'nginx',
}
# The transports each echo-upper server speaks.
TRANSPORTS = {
    'socketserver': {'tcp', 'udp'}, 'socketserver-reactor': {'tcp', 'udp'},
    'std': {'tcp', 'udp'}, 'tokio': {'tcp', 'udp'}, 'tokio-tls': {'tcp'}, 'go': {'tcp', 'udp'},
    'may': {'tcp'},
    'python': {'tcp', 'udp'},
}
ECHO_SERVERS = ['socketserver', 'socketserver-reactor', 'std', 'tokio', 'go', 'may', 'python']
# The course's server (listen backlog 5, a thread per connection) cannot open
# these many connections in any useful time: see hold-10000.
NOT_PYTHON = [s for s in ECHO_SERVERS if s != 'python']
# Servers that can share one port between processes (SO_REUSEPORT): the
# program with --reuse-port (probed), and the peers that take the option.
REUSE_PORT_SERVERS = ['socketserver', 'socketserver-reactor', 'tokio', 'go']
# The TLS scenarios: both of socketserver's modes against tokio-rustls, with
# the same provider (ring) and certificate.
TLS_SERVERS = ['socketserver', 'socketserver-reactor', 'tokio-tls']

# kind: echo (ping-pong, connect rate), hold, http (wrk), chat (fan-out).
SCENARIOS = [
    dict(id='tcp-64-c1', kind='echo', transport='tcp', mode='ping-pong', connections=1,
         size=64, label='TCP ping-pong, 64 B, 1 connection'),
    dict(id='tcp-64-c16', kind='echo', transport='tcp', mode='ping-pong', connections=16,
         size=64, label='TCP ping-pong, 64 B, 16 connections'),
    dict(id='tcp-64-c128', kind='echo', transport='tcp', mode='ping-pong', connections=128,
         size=64, label='TCP ping-pong, 64 B, 128 connections'),
    dict(id='tcp-64-c1000', kind='echo', transport='tcp', mode='ping-pong', connections=1000,
         size=64, label='TCP ping-pong, 64 B, 1,000 connections'),
    dict(id='tcp-64-c10000', kind='echo', transport='tcp', mode='ping-pong',
         connections=10000, size=64, servers=NOT_PYTHON, sources=SOURCES_4,
         label='TCP ping-pong, 64 B, 10,000 connections'),
    dict(id='tcp-16k-c16', kind='echo', transport='tcp', mode='ping-pong', connections=16,
         size=16384, label='TCP ping-pong, 16 KiB, 16 connections'),
    dict(id='udp-64-c1', kind='echo', transport='udp', mode='ping-pong', connections=1,
         size=64, label='UDP ping-pong, 64 B, 1 client'),
    dict(id='udp-64-c16', kind='echo', transport='udp', mode='ping-pong', connections=16,
         size=64, label='UDP ping-pong, 64 B, 16 clients'),
    dict(id='connect-rate-c16', kind='echo', transport='tcp', mode='connect-rate',
         connections=16, size=64, label='Connection rate (connect, 64 B, close), 16 at once'),
    dict(id='hold-1000', kind='hold', transport='tcp', mode='hold', connections=1000, size=64,
         label='1,000 idle connections held, then each answers'),
    dict(id='hold-5000', kind='hold', transport='tcp', mode='hold', connections=5000, size=64,
         label='5,000 idle connections held, then each answers'),
    dict(id='hold-10000', kind='hold', transport='tcp', mode='hold', connections=10000,
         size=64, label='10,000 idle connections held, then each answers'),
    dict(id='hold-19000', kind='hold', transport='tcp', mode='hold', connections=19000,
         size=64, servers=NOT_PYTHON, sources=SOURCES_4,
         label='19,000 idle connections held by one server process, then each answers'),
    dict(id='hold-95000-reuseport', kind='hold', transport='tcp', mode='hold',
         connections=95000, size=64, server_processes=5, client_processes=5,
         sources=SOURCES_8, servers=REUSE_PORT_SERVERS,
         label='95,000 idle connections over five --reuse-port server processes'),
    dict(id='http-keepalive-c1000', kind='http', transport='tcp', mode='keep-alive',
         connections=1000, size=None, servers=['socketserver', 'socketserver-reactor', 'nginx'],
         label='HTTP/1.1 keep-alive GET / (built-in page), 1,000 connections, wrk'),
    # TLS (`tls=True`): every connection shakes hands first; `bench --tls`
    # resumes no session, so each connect-rate cycle is a full handshake.
    dict(id='tls-handshakes-c16', kind='echo', transport='tcp', mode='connect-rate',
         connections=16, size=64, tls=True, servers=TLS_SERVERS,
         label='TLS 1.3 handshakes (ECDSA P-256; connect, handshake, 64 B, close), 16 at once'),
    dict(id='tls-64-c16', kind='echo', transport='tcp', mode='ping-pong', connections=16,
         size=64, tls=True, servers=TLS_SERVERS,
         label='TLS ping-pong, 64 B, 16 connections'),
    dict(id='tls-64-c1000', kind='echo', transport='tcp', mode='ping-pong', connections=1000,
         size=64, tls=True, servers=TLS_SERVERS,
         label='TLS ping-pong, 64 B, 1,000 connections'),
    dict(id='tls-hold-1000', kind='hold', transport='tcp', mode='hold', connections=1000,
         size=64, tls=True, servers=TLS_SERVERS,
         label='1,000 idle TLS connections held, then each answers'),
    dict(id='tls-hold-5000', kind='hold', transport='tcp', mode='hold', connections=5000,
         size=64, tls=True, servers=TLS_SERVERS,
         label='5,000 idle TLS connections held, then each answers'),
    # Once per run: the room announces every join to every member before the
    # line (50 million lines for 10,000), which takes the threaded server
    # many minutes; the percentiles are over the 9,999 members.
    dict(id='chat-10000', kind='chat', transport='tcp', mode='fan-out', connections=10000,
         size=64, servers=['socketserver', 'socketserver-reactor'], max_rounds=1,
         label='Chat room of 10,000 members: one line to all'),
]
TCP_CURVE = ['tcp-64-c1', 'tcp-64-c16', 'tcp-64-c128', 'tcp-64-c1000', 'tcp-64-c10000']
SLOPE = ['hold-1000', 'hold-5000', 'hold-10000', 'hold-19000']
TLS_SLOPE = ['tls-hold-1000', 'tls-hold-5000']
SERVICE_OF_KIND = {'echo': 'echo-upper', 'hold': 'echo-upper', 'http': 'http', 'chat': 'chat'}


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def run(cmd, **kwargs):
    log('+', ' '.join('<script>' if '\n' in str(c) else str(c) for c in cmd))
    subprocess.run(cmd, check=True, **kwargs)


def find_tool(name):
    """`name` on PATH, or in the sbin directories a non-login PATH may lack."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ['/usr/sbin', '/sbin', '/usr/local/sbin']:
        candidate = Path(directory) / name
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def ensure_tool(name, package, notes):
    """`name`'s path; installs Debian's `package` with apt-get when it is
    missing. None, with a note saying why, when that cannot be done."""
    found = find_tool(name)
    if found:
        return found
    if not shutil.which('apt-get'):
        notes.append('`%s` is missing and there is no apt-get to install Debian\'s `%s`'
                     % (name, package))
        return None
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    for attempt in (['apt-get', 'install', '-y', '-q', package],
                    ['apt-get', 'update', '-q'],
                    ['apt-get', 'install', '-y', '-q', package]):
        log('+', ' '.join(attempt))
        done = subprocess.run(attempt, env=env, capture_output=True, text=True)
        if attempt[1] == 'install' and done.returncode == 0:
            break
    found = find_tool(name)
    if not found:
        why = (done.stderr or done.stdout).strip().splitlines()
        notes.append('`%s` is missing and `apt-get install %s` failed (%s)'
                     % (name, package, why[-1] if why else 'no output'))
    return found


def program_help(binary, service):
    try:
        out = subprocess.run([binary, 'serve', service, '--help'], capture_output=True,
                             text=True, timeout=30)
        return out.stdout + out.stderr
    except (OSError, subprocess.TimeoutExpired):
        return ''


def build(args, notes):
    """Builds the program and the peers; returns the commands and what the
    program offers (probed from its --help)."""
    run(['cargo', 'build', '--release', '--quiet', '--features', 'cli', '--bin',
         'socketserver'], cwd=ROOT)
    binary = str(ROOT / 'target' / 'release' / 'socketserver')
    env = dict(os.environ, CARGO_TARGET_DIR=str(PEER_TARGET))
    rust_peers = [('std', 'std-echo'), ('tokio', 'tokio-echo'), ('tokio-tls', 'tokio-tls-echo'),
                  ('may', 'may-echo')]
    commands = {
        'program': binary,
        'bench': [binary, 'bench'],
        'python': [shutil.which('python3') or sys.executable,
                   str(PEERS / 'python' / 'echo_upper_server.py')],
    }
    for name, peer in rust_peers:
        if name in SERVERS:
            run(['cargo', 'build', '--release', '--quiet', '--manifest-path',
                 str(PEERS / peer / 'Cargo.toml')], env=env)
            commands[name] = [str(PEER_TARGET / 'release' / peer)]
    if 'go' in SERVERS:
        go = ensure_tool('go', 'golang-go', notes)
        if go:
            out = PEER_TARGET / 'go' / 'go-echo'
            out.parent.mkdir(parents=True, exist_ok=True)
            # Offline: no module downloads, no toolchain downloads.
            go_env = dict(os.environ, GOCACHE=str(PEER_TARGET / 'go-cache'),
                          GOPATH=str(PEER_TARGET / 'go-path'), GOPROXY='off',
                          GOTOOLCHAIN='local', GOFLAGS='-mod=mod')
            run([go, 'build', '-o', str(out), '.'], cwd=PEERS / 'go-echo', env=go_env)
            commands['go'] = [str(out)]
        else:
            notes.append('Go skipped: ' + notes.pop())
    offers = {}
    for service in ['echo-upper', 'http', 'chat']:
        text = program_help(binary, service)
        offers[service] = {'dispatch': '--dispatch' in text,
                           'reuse-port': '--reuse-port' in text}
    return commands, offers


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
        # The first line, whatever the exit status (`wrk --version` prints
        # its version, then its usage, and exits 1).
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return 'unknown'

    def sysctl(path):
        try:
            return Path(path).read_text().strip()
        except OSError:
            return 'unknown'

    return {
        'cpu': model,
        'nproc': nproc,
        'memory': memory,
        'kernel': platform.release(),
        'rustc': version(['rustc', '--version']),
        'python': version([sys.executable, '--version']),
        'go': version([find_tool('go') or 'go', 'version']),
        'nginx': version([find_tool('nginx') or 'nginx', '-v']),
        'wrk': version([find_tool('wrk') or 'wrk', '--version']),
        'open_files': '%d soft, %d hard' % resource.getrlimit(resource.RLIMIT_NOFILE),
        # What bounds threads: a Rust thread maps four areas (stack, guard,
        # signal stack, its guard), and every thread takes a pid.
        'max_map_count': sysctl('/proc/sys/vm/max_map_count'),
        'pid_max': sysctl('/proc/sys/kernel/pid_max'),
        'threads_max': sysctl('/proc/sys/kernel/threads-max'),
        'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
    }


# --- /proc: CPU time, memory and threads of a server's processes ----------

CLOCK_TICKS = os.sysconf('SC_CLK_TCK')


def proc_children(pid):
    """The children of `pid` (from /proc/PID/task/*/children, or by ppid)."""
    children = []
    try:
        for task in Path('/proc/%d/task' % pid).iterdir():
            children += [int(c) for c in (task / 'children').read_text().split()]
        return children
    except (OSError, ValueError):
        pass
    for entry in Path('/proc').iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / 'stat').read_text()
                if int(stat.rsplit(')', 1)[1].split()[1]) == pid:
                    children.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
    return children


def process_tree(pid):
    """`pid` and all its descendants (nginx: the master and its workers)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += proc_children(p)
    return pids


def cpu_seconds(pids):
    """utime + stime of every process of `pids`, in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path('/proc/%d/stat' % pid).read_text().rsplit(')', 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            return None
    return total / CLOCK_TICKS


def memory_sample(pids):
    """VmRSS (KiB) and threads of every process of `pids`, added up."""
    rss = threads = 0
    for pid in pids:
        try:
            for line in Path('/proc/%d/status' % pid).read_text().splitlines():
                if line.startswith('VmRSS:'):
                    rss += int(line.split()[1])
                elif line.startswith('Threads:'):
                    threads += int(line.split()[1])
        except (OSError, ValueError):
            return None
    return {'pids': pids, 'rss_kib': rss, 'threads': threads}


# --- Servers -----------------------------------------------------------------

class ServerProcess:
    """A server's process, its standard error kept (the first 200 lines) for
    the messages of a failure; `stop` ends it with SIGTERM, then SIGKILL
    after 15 s. Subclasses start `self.proc` with stderr piped, set
    `self.stderr = []` and start `_drain_stderr` on a thread."""

    def _drain_stderr(self):
        for line in self.proc.stderr:
            if len(self.stderr) < 200:
                self.stderr.append(line)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Server(ServerProcess):
    """A server process started for one measurement, stopped on exit; waits
    for its `listening on URL` lines for the transports in `want`."""

    def __init__(self, cmd, want):
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True,
                                     preexec_fn=raise_fd_limit)
        self.urls = {}
        self.stderr = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        found = threading.Event()

        def read_urls():
            for line in self.proc.stdout:
                if line.startswith('listening on '):
                    url = line.split('listening on ', 1)[1].strip()
                    self.urls.setdefault(url.split('://')[0], url)
                    if want <= set(self.urls):
                        found.set()
            found.set()

        threading.Thread(target=read_urls, daemon=True).start()
        found.wait(30)
        if not want <= set(self.urls):
            self.stop()
            raise RuntimeError('%s announced no %s address: %s'
                               % (' '.join(cmd), '/'.join(sorted(want)),
                                  ''.join(self.stderr[-10:]).strip()))


class Nginx(ServerProcess):
    """nginx in the foreground with its own configuration and temporary
    directory, serving `page` at / on a free loopback port."""

    def __init__(self, binary, page):
        self.temp = Path(tempfile.mkdtemp(prefix='socketserver-bench-nginx-'))
        root = self.temp / 'root'
        root.mkdir()
        (root / 'index.html').write_bytes(page)
        # Readable by the workers' user when nginx starts as root.
        for path in [self.temp, root]:
            path.chmod(0o755)
        (root / 'index.html').chmod(0o644)
        self.port = free_port()
        conf = (PEERS / 'nginx' / 'nginx.conf.in').read_text()
        conf = (conf.replace('@PORT@', str(self.port)).replace('@ROOT@', str(root))
                .replace('@TEMP@', str(self.temp)))
        (self.temp / 'nginx.conf').write_text(conf)
        self.stderr = []
        self.proc = subprocess.Popen(
            [binary, '-p', str(self.temp), '-c', str(self.temp / 'nginx.conf'), '-e', 'stderr',
             '-g', 'daemon off;'],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, preexec_fn=raise_fd_limit)
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.urls = {'tcp': 'tcp://%s:%d' % (LOCALHOST, self.port)}
        if not wait_for_port(self.port, 15, self.proc):
            self.stop()
            raise RuntimeError('nginx did not listen on %d: %s'
                               % (self.port, ''.join(self.stderr[-10:]).strip()))

    def stop(self):
        super().stop()
        shutil.rmtree(self.temp, ignore_errors=True)


def free_port():
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]


def wait_for_port(port, seconds, proc):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection((LOCALHOST, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def server_command(commands, name, scenario, port=0, reuse=False):
    """The command line of server `name` for `scenario`."""
    if name in ('socketserver', 'socketserver-reactor'):
        service = SERVICE_OF_KIND[scenario['kind']]
        cmd = [commands['program'], 'serve', service,
               '--bind', '%s://%s:%d' % (scenario['transport'], LOCALHOST, port)]
        if name == 'socketserver-reactor':
            cmd += ['--dispatch', 'reactor']
        if reuse:
            cmd += ['--reuse-port']
        # Room for every connection (plus the bench's reconnects): a process
        # of several behind one port may get more than its even share. In
        # threads mode the most threads follows --max-connections (lowered,
        # with a warning, to what the system can start: vm.max_map_count).
        connections = scenario.get('connections') or 0
        processes = scenario.get('server_processes', 1)
        share = connections if processes == 1 else -(-connections // processes) * 5 // 4
        room = share + 64
        if room > DEFAULT_MAX_CONNECTIONS:
            cmd += ['--max-connections', str(room)]
        if scenario.get('tls'):
            cmd += ['--tls-cert', commands['tls']['cert'], '--tls-key', commands['tls']['key']]
        return cmd
    cmd = list(commands[name])
    if name == 'tokio-tls':
        cmd += ['--cert', commands['tls']['cert'], '--key', commands['tls']['key']]
    if reuse or port:
        if name == 'tokio':
            cmd += ['--port', str(port), '--reuse-port']
        elif name == 'go':
            cmd += ['-port', str(port), '-reuse-port']
        else:
            raise RuntimeError('%s cannot share a port' % name)
    return cmd


def start_servers(commands, name, scenario):
    """Starts the server processes of one measurement."""
    want = {scenario['transport']}
    count = scenario.get('server_processes', 1)
    if count == 1:
        return [Server(server_command(commands, name, scenario), want)]
    first = Server(server_command(commands, name, scenario, reuse=True), want)
    servers = [first]
    try:
        port = int(first.urls['tcp'].rsplit(':', 1)[1])
        for _ in range(count - 1):
            servers.append(Server(server_command(commands, name, scenario, port=port,
                                                 reuse=True), want))
    except Exception:
        for server in servers:
            server.stop()
        raise
    return servers


# --- Measurements ------------------------------------------------------------

def bench_json(cmd, limit):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=limit,
                         preexec_fn=raise_fd_limit)
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        raise RuntimeError('bench printed no JSON (exit %s): %s %s'
                           % (out.returncode, out.stdout[-2000:], out.stderr[-2000:]))


def measure_bench(commands, servers, scenario, args):
    """Runs `socketserver bench` against the servers."""
    url = servers[0].urls[scenario['transport']]
    pids = ','.join(str(s.pid) for s in servers)
    kind = scenario['kind']
    service = 'chat' if kind == 'chat' else 'echo-upper'
    cmd = list(commands['bench']) + [
        service, '--connect', url, '--connections', str(scenario['connections']),
        '--size', str(scenario['size']), '--timeout', str(args.timeout),
        '--watch-pid', pids, '--json']
    if scenario.get('sources'):
        cmd += ['--sources', ','.join(scenario['sources'])]
    if scenario.get('tls'):
        cmd += ['--tls', '--tls-ca', commands['tls']['cert']]
    if kind == 'echo':
        cmd += ['--mode', scenario['mode'], '--duration', str(args.duration),
                '--warmup', str(args.warmup)]
        limit = args.duration + args.warmup + 180
    elif kind == 'hold':
        cmd += ['--mode', 'hold', '--duration', str(args.hold)]
        if scenario.get('client_processes', 1) > 1:
            cmd += ['--processes', str(scenario['client_processes'])]
        limit = args.hold + 300
    else:
        limit = 1800
    return bench_json(cmd, limit)


WRK_UNITS = {'us': 1, 'ms': 1000, 's': 1000000, 'm': 60000000}


def parse_wrk(text):
    """requests, requests/s, latency percentiles and errors from wrk's
    output (with --latency)."""
    def number_with_unit(value):
        m = re.fullmatch(r'([\d.]+)(us|ms|s|m)', value)
        return float(m.group(1)) * WRK_UNITS[m.group(2)] if m else None

    latency = {}
    for pct, value in re.findall(r'^\s+(50|75|90|99)%\s+(\S+)', text, re.M):
        latency['p' + pct] = number_with_unit(value)
    m = re.search(r'Latency\s+(\S+)\s+(\S+)\s+(\S+)', text)
    if m:
        latency['mean'] = number_with_unit(m.group(1))
        latency['max'] = number_with_unit(m.group(3))
    requests = re.search(r'(\d+) requests in ([\d.]+)(us|ms|s|m)', text)
    rps = re.search(r'Requests/sec:\s+([\d.]+)', text)
    errors = {'connect': 0, 'read': 0, 'write': 0, 'timeout': 0, 'status': 0}
    m = re.search(r'Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)', text)
    if m:
        errors.update(connect=int(m.group(1)), read=int(m.group(2)), write=int(m.group(3)),
                      timeout=int(m.group(4)))
    m = re.search(r'Non-2xx or 3xx responses: (\d+)', text)
    if m:
        errors['status'] = int(m.group(1))
    if not requests or not rps or 'p50' not in latency:
        raise RuntimeError('cannot read wrk\'s output: %s' % text)
    return {
        'requests': int(requests.group(1)),
        'duration_s': float(requests.group(2)) * WRK_UNITS[requests.group(3)] / 1e6,
        'requests_per_sec': float(rps.group(1)),
        'latency_us': {'p50': latency.get('p50'), 'p90': latency.get('p90'),
                       'p99': latency.get('p99'), 'max': latency.get('max'),
                       'mean': latency.get('mean')},
        'wrk_errors': errors,
        'errors': sum(errors.values()),
    }


def http_get(port, path='/'):
    conn = http.client.HTTPConnection(LOCALHOST, port, timeout=10)
    try:
        conn.request('GET', path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def builtin_page(commands):
    """The bytes `socketserver serve http` serves at / (its built-in page)."""
    scenario = dict(kind='http', transport='tcp', connections=1)
    server = Server(server_command(commands, 'socketserver', scenario), {'tcp'})
    try:
        status, body = http_get(int(server.urls['tcp'].rsplit(':', 1)[1]))
        if status != 200 or not body:
            raise RuntimeError('the built-in page answered %s' % status)
        return body
    finally:
        server.stop()


def measure_wrk(commands, servers, scenario, args):
    """Runs wrk against an HTTP server, after checking the page it serves;
    reads the server's CPU time around the counted run."""
    server = servers[0]
    port = int(server.urls['tcp'].rsplit(':', 1)[1])
    status, body = http_get(port)
    page_ok = status == 200 and body == commands['page']
    url = 'http://%s:%d/' % (LOCALHOST, port)
    base = [commands['wrk'], '-t1', '-c', str(scenario['connections']),
            '--timeout', '%gs' % args.timeout]
    limit = args.duration + args.warmup + 120
    if args.warmup > 0:
        subprocess.run(base + ['-d', '%gs' % max(1, args.warmup), url], capture_output=True,
                       text=True, timeout=limit, preexec_fn=raise_fd_limit)
    pids = process_tree(server.pid)
    sample = {}

    def sample_memory():
        sample['server'] = memory_sample(process_tree(server.pid))

    timer = threading.Timer(max(0.2, args.duration / 2), sample_memory)
    cpu_start = cpu_seconds(pids)
    timer.start()
    out = subprocess.run(base + ['-d', '%gs' % max(1, args.duration), '--latency', url],
                         capture_output=True, text=True, timeout=limit,
                         preexec_fn=raise_fd_limit)
    timer.join()
    cpu_end = cpu_seconds(process_tree(server.pid))
    result = parse_wrk(out.stdout)
    result.update(service='http', url=url, transport='tcp', mode='keep-alive',
                  connections=scenario['connections'], size=len(commands['page']),
                  lost=0, server=sample.get('server'), page_ok=page_ok)
    if not page_ok:
        result['errors'] += 1
    if cpu_start is not None and cpu_end is not None:
        result['server_cpu_s'] = max(0.0, cpu_end - cpu_start)
        if result['requests']:
            result['server_cpu_us_per_request'] = (result['server_cpu_s'] * 1e6
                                                   / result['requests'])
    return result


def applicable(name, scenario, offers):
    """Why server `name` does not run `scenario` (None: it runs)."""
    if name not in scenario.get('servers', ECHO_SERVERS):
        return 'not a server of this scenario'
    service = SERVICE_OF_KIND[scenario['kind']]
    if name in TRANSPORTS and scenario['kind'] != 'http' and \
            scenario['transport'] not in TRANSPORTS[name]:
        return 'speaks no %s' % scenario['transport']
    if name == 'socketserver-reactor' and not offers[service]['dispatch']:
        return '`socketserver serve %s --help` has no --dispatch' % service
    if scenario.get('server_processes', 1) > 1 and name.startswith('socketserver') and \
            not offers[service]['reuse-port']:
        return '`socketserver serve %s --help` has no --reuse-port' % service
    return None


def measure(commands, name, scenario, args):
    """Starts the server(s), runs one scenario against them, stops them."""
    if scenario['kind'] == 'http' and name == 'nginx':
        servers = [Nginx(commands['nginx'], commands['page'])]
    else:
        servers = start_servers(commands, name, scenario)
    try:
        if scenario['kind'] == 'http':
            result = measure_wrk(commands, servers, scenario, args)
        else:
            result = measure_bench(commands, servers, scenario, args)
        result['server_alive'] = all(s.alive() for s in servers)
        for s in servers:
            s.stop()
        if result['errors']:
            # What the server said about it, for the raw results.
            result['server_stderr'] = ''.join(line for s in servers for line in s.stderr[-20:])
        return result
    finally:
        for s in servers:
            s.stop()


# --- Aggregation -------------------------------------------------------------

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

            def lowest(key):
                return min((r[key] for r in res if r.get(key) is not None), default=None)

            def highest_server(key):
                return max((r['server'][key] for r in res if r.get('server')), default=None)

            table[(scenario['id'], name)] = {
                'rounds': len(res),
                'rps': median([r.get('requests_per_sec') for r in res]),
                'p50_us': median([r['latency_us'].get('p50') for r in res]),
                'p99_us': median([r['latency_us'].get('p99') for r in res]),
                'cpu_us_per_request': median([r.get('server_cpu_us_per_request') for r in res]),
                'cpu_s': median([r.get('server_cpu_s') for r in res]),
                'errors': sum(r['errors'] for r in res),
                'lost': sum(r.get('lost', 0) for r in res),
                'held': lowest('held'),
                'answered': lowest('answered'),
                'connected': lowest('connected'),
                'delivered': lowest('delivered'),
                'fanout_ms': median([r.get('fanout_ms') for r in res]),
                'connect_s': median([r.get('connect_s') for r in res]),
                'rss_kib': highest_server('rss_kib'),
                'threads': highest_server('threads'),
                # The server exited during a round (the bench then says why
                # it could not read it).
                'exited': any(not r.get('server_alive', True) for r in res),
            }
    return table


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return '—' if r is None else '%.2f×' % r


def fmt(value, spec='%.1f'):
    return '—' if value is None else spec % value


def fit_line(points):
    """Least squares y = a + b x over (x, y) points: (a, b, r²)."""
    n = len(points)
    if n < 2:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    sxy = sum((x - mx) * (y - my) for x, y in points)
    b = sxy / sxx
    a = my - b * mx
    syy = sum((y - my) ** 2 for _, y in points)
    r2 = 1.0 if syy == 0 else (sxy * sxy) / (sxx * syy)
    return a, b, r2


def memory_slopes(table, holds=None):
    """Per server: KiB per held connection over the `holds` (default: the
    SLOPE holds)."""
    slopes = {}
    for name in SERVERS:
        points = []
        for sid in holds or SLOPE:
            row = table.get((sid, name))
            if row and row['held'] and row['rss_kib'] is not None:
                points.append((row['held'], row['rss_kib']))
        fit = fit_line(points)
        if fit:
            a, b, r2 = fit
            slopes[name] = dict(points=len(points), intercept_kib=a, kib_per_connection=b,
                                r2=r2, projected_100k_mib=(a + b * 100000) / 1024)
    return slopes


def targets(table):
    """Each target of issues 4, 10, 11 and 13: (text, measured, met)."""
    rows = []

    def get(sid, name, key):
        return table.get((sid, name), {}).get(key)

    for sid in TCP_CURVE[:4]:
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
    # Issue 13: the threads mode at the std floor's cost, UDP without a
    # thread hop, and every idle connection answered with the defaults.
    for sid in TCP_CURVE[:4]:
        cpu = ratio(get(sid, 'socketserver', 'cpu_us_per_request'),
                    get(sid, 'std', 'cpu_us_per_request'))
        rows.append(('%s: server CPU per request ≤ std\'s' % sid, fmt_ratio(cpu),
                     cpu is not None and cpu <= 1.0))
    for sid in ('udp-64-c1',):
        a = ratio(get(sid, 'socketserver', 'rps'), get(sid, 'std', 'rps'))
        b = ratio(get(sid, 'socketserver', 'rps'), get(sid, 'tokio', 'rps'))
        rows.append(('%s: ≥ 1.0× std requests/s' % sid, fmt_ratio(a), a is not None and a >= 1.0))
        rows.append(('%s: ≥ 1.2× tokio requests/s' % sid, fmt_ratio(b),
                     b is not None and b >= 1.2))
    held = get('hold-5000', 'socketserver', 'answered')
    rows.append(('hold-5000 with default options: all 5,000 answer',
                 '—' if held is None else '%d answered' % held, held == 5000))
    # Issue 10: the reactor against tokio, and what one process holds.
    for sid in TCP_CURVE[1:]:
        rps = ratio(get(sid, 'socketserver-reactor', 'rps'), get(sid, 'tokio', 'rps'))
        cpu = ratio(get(sid, 'socketserver-reactor', 'cpu_us_per_request'),
                    get(sid, 'tokio', 'cpu_us_per_request'))
        p99 = ratio(get(sid, 'socketserver-reactor', 'p99_us'), get(sid, 'tokio', 'p99_us'))
        met = (rps is not None and cpu is not None and p99 is not None and rps >= 1.1
               and cpu < 1.0 and p99 <= 1.05)
        rows.append(('%s (reactor): ≥ 1.1× tokio requests/s, CPU per request below tokio\'s, '
                     'p99 no worse (within 5%%)' % sid,
                     'requests/s %s, CPU %s, p99 %s' % (fmt_ratio(rps), fmt_ratio(cpu),
                                                      fmt_ratio(p99)), met))
    held = table.get(('hold-19000', 'socketserver-reactor'), {})
    answered, rss, threads = held.get('answered'), held.get('rss_kib'), held.get('threads')
    cpus = os.cpu_count() or 1
    # Two loops per CPU at most, the pool's core (one per CPU), and the
    # signal-handling thread.
    most_threads = 2 * cpus + cpus + 1
    rows.append(('hold-19000 (reactor): all answer, RSS ≤ 35 MiB, threads ≤ 2 × CPUs + the '
                 'pool\'s core (+ the signal thread: %d here)' % most_threads,
                 '%s answered, %s, %s threads' % (
                     answered if answered is not None else '—',
                     '—' if rss is None else '%.1f MiB' % (rss / 1024),
                     threads if threads is not None else '—'),
                 answered == 19000 and rss is not None and rss <= 35 * 1024
                 and threads is not None and threads <= most_threads))
    fit = memory_slopes(table).get('socketserver-reactor')
    rows.append(('100,000 connections in reactor mode, projected from the slope over %s: '
                 '≤ 150 MiB' % ', '.join(SLOPE),
                 '—' if fit is None else '%.1f MiB (%.2f KiB per connection)'
                 % (fit['projected_100k_mib'], fit['kib_per_connection']),
                 fit is not None and fit['projected_100k_mib'] <= 150))
    answered = get('hold-95000-reuseport', 'socketserver-reactor', 'answered')
    rows.append(('hold-95000-reuseport (reactor, five processes): all 95,000 answer',
                 '—' if answered is None else '%d answered' % answered, answered == 95000))
    for name in ('socketserver', 'socketserver-reactor'):
        r = ratio(get('http-keepalive-c1000', name, 'rps'),
                  get('http-keepalive-c1000', 'nginx', 'rps'))
        rows.append(('http-keepalive-c1000 (%s): ≥ 1.0× nginx requests/s' % SHORT_NAMES[name],
                     fmt_ratio(r), r is not None and r >= 1.0))
    # Issue 11 (TLS), against tokio-rustls with the same provider and
    # certificate.
    for name in ('socketserver', 'socketserver-reactor'):
        r = ratio(get('tls-handshakes-c16', name, 'rps'),
                  get('tls-handshakes-c16', 'tokio-tls', 'rps'))
        rows.append(('tls-handshakes-c16 (%s): ≥ 0.9× tokio-rustls handshakes/s'
                     % SHORT_NAMES[name], fmt_ratio(r), r is not None and r >= 0.9))
    for sid in ('tls-64-c16', 'tls-64-c1000'):
        r = ratio(get(sid, 'socketserver-reactor', 'rps'), get(sid, 'tokio-tls', 'rps'))
        rows.append(('%s (reactor): ≥ 1.0× tokio-rustls requests/s' % sid, fmt_ratio(r),
                     r is not None and r >= 1.0))
    fit = memory_slopes(table, TLS_SLOPE).get('socketserver-reactor')
    rows.append(('memory per idle TLS connection in reactor mode, measured (slope over %s)'
                 % ', '.join(TLS_SLOPE),
                 '—' if fit is None else '%.2f KiB' % fit['kib_per_connection'],
                 fit is not None))
    return rows


# --- The report ----------------------------------------------------------------

def scenario_servers(table, scenarios):
    return [n for n in SERVERS if any((s['id'], n) in table for s in scenarios)]


def metric_table(out, table, scenarios, key, title, convert, spec):
    """One table: a row per scenario, a column per server."""
    names = scenario_servers(table, scenarios)
    if not names:
        return
    out.append('### %s' % title)
    out.append('')
    out.append('| scenario | %s |' % ' | '.join(SHORT_NAMES[n] for n in names))
    out.append('|---|%s' % ('---|' * len(names)))
    for s in scenarios:
        cells = []
        for n in names:
            value = table.get((s['id'], n), {}).get(key)
            cells.append('—' if value is None else spec % convert(value))
        out.append('| %s | %s |' % (s['label'], ' | '.join(cells)))
    out.append('')


def markdown(table, info, args, notes):
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
    out.append('| open files (`ulimit -n`) | %s |' % info.get('open_files', 'unknown'))
    out.append('| threads: `vm.max_map_count`, `kernel.pid_max`, `kernel.threads-max` | '
               '%s, %s, %s |' % (info.get('max_map_count', 'unknown'),
                                 info.get('pid_max', 'unknown'),
                                 info.get('threads_max', 'unknown')))
    out.append('| toolchain | %s; %s; %s |' % (info['rustc'], info['python'],
                                                info.get('go', 'unknown')))
    out.append('| HTTP | %s; %s |' % (info.get('nginx', 'unknown'), info.get('wrk', 'unknown')))
    out.append('')
    if notes:
        out.append('Not measured in this run:')
        out.append('')
        for note in notes:
            out.append('- %s' % note)
        out.append('')
    out.append('### Targets')
    out.append('')
    out.append('| target | measured | met? |')
    out.append('|---|---|---|')
    for text, measured, met in targets(table):
        verdict = 'not run' if set(measured.split()) <= {'—', '—,', 'answered,', 'requests/s',
                                                         'p99'} else \
            'yes' if met else '**MISSED**'
        out.append('| %s | %s | %s |' % (text, measured, verdict))
    out.append('')
    echo = [s for s in SCENARIOS if s['kind'] == 'echo']
    peers = [n for n in scenario_servers(table, echo)
             if n not in ('socketserver', 'socketserver-reactor')]
    subjects = [n for n in ('socketserver', 'socketserver-reactor')
                if any((s['id'], n) in table for s in echo)]
    for key, title in [('rps', 'Throughput: socketserver ÷ peer (higher is better)'),
                       ('p99_us', 'p99 latency: socketserver ÷ peer (lower is better)')]:
        if not subjects or not peers:
            break
        out.append('### %s' % title)
        out.append('')
        out.append('| scenario | %s |' % ' | '.join('÷ %s' % SHORT_NAMES[p] for p in peers))
        out.append('|---|%s' % ('---|' * len(peers)))
        for subject in subjects:
            for s in echo:
                ours = table.get((s['id'], subject), {}).get(key)
                if ours is None:
                    continue
                cells = [fmt_ratio(ratio(ours, table.get((s['id'], p), {}).get(key)))
                         for p in peers]
                label = s['label'] if subject == 'socketserver' else \
                    '%s (%s)' % (s['label'], SHORT_NAMES[subject])
                out.append('| %s | %s |' % (label, ' | '.join(cells)))
        out.append('')
    loaded = [s for s in SCENARIOS if s['kind'] in ('echo', 'http')]
    metric_table(out, table, loaded, 'rps', 'Requests per second', lambda v: v, '%.0f')
    metric_table(out, table, loaded, 'p99_us', 'p99 latency (ms)', lambda v: v / 1000, '%.3f')
    metric_table(out, table, loaded, 'cpu_us_per_request',
                 'Server CPU per request (µs: utime + stime of the server over the counted '
                 'window ÷ requests answered in it)', lambda v: v, '%.1f')
    holds = [s for s in SCENARIOS if s['kind'] == 'hold']
    hold_rows = [(s, n) for s in holds for n in SERVERS if (s['id'], n) in table]
    if hold_rows:
        out.append('### Idle connections held (server read from `/proc/PID/status` while all '
                   'are open)')
        out.append('')
        out.append('| scenario | server | opened | held | answered | RSS (MiB) | '
                   'RSS ÷ held (KiB) | threads | server CPU over the hold (s) |')
        out.append('|---|---|---|---|---|---|---|---|---|')
        for s, n in hold_rows:
            row = table[(s['id'], n)]
            rss, held = row['rss_kib'], row['held']
            per = rss / held if rss is not None and held else None
            name = PEER_NAMES[n] + (' — **exited during the run**' if row.get('exited') else '')
            out.append('| %s | %s | %s | %s | %s | %s | %s | %s | %s |' % (
                s['id'], name, fmt(row['connected'], '%d'), fmt(held, '%d'),
                fmt(row['answered'], '%d'), fmt(None if rss is None else rss / 1024), fmt(per),
                fmt(row['threads'], '%d'),
                '—' if row.get('exited') else fmt(row['cpu_s'], '%.2f')))
        out.append('')
    for holds, what in [(SLOPE, 'connection'), (TLS_SLOPE, 'idle TLS connection')]:
        slopes = memory_slopes(table, holds)
        if not slopes:
            continue
        out.append('### Memory per %s: the slope over %s' % (what, ', '.join(holds)))
        out.append('')
        out.append('Least squares of the server\'s resident memory against the connections '
                   'held; the projection extends the line to 100,000 connections in one '
                   'process (which this machine\'s open-file limit does not allow).')
        out.append('')
        out.append('| server | points | KiB per connection | at 0 connections (MiB) | r² | '
                   'projected for 100,000 (MiB) |')
        out.append('|---|---|---|---|---|---|')
        for name, fit in slopes.items():
            out.append('| %s | %d | %.2f | %.1f | %.4f | %.0f |' % (
                PEER_NAMES[name], fit['points'], fit['kib_per_connection'],
                fit['intercept_kib'] / 1024, fit['r2'], fit['projected_100k_mib']))
        out.append('')
    chats = [s for s in SCENARIOS if s['kind'] == 'chat']
    chat_rows = [(s, n) for s in chats for n in SERVERS if (s['id'], n) in table]
    if chat_rows:
        out.append('### Chat fan-out (one line to every member)')
        out.append('')
        out.append('| scenario | server | in the room | delivered | joins announced (s) | '
                   'to the last member (ms) | p50 (ms) | p99 (ms) | RSS (MiB) | threads | '
                   'server CPU per copy (µs) |')
        out.append('|---|---|---|---|---|---|---|---|---|---|---|')
        for s, n in chat_rows:
            row = table[(s['id'], n)]
            out.append('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' % (
                s['id'], PEER_NAMES[n] + (' — **exited during the run**'
                                          if row.get('exited') else ''), fmt(row['connected'], '%d'),
                fmt(row['delivered'], '%d'), fmt(row['connect_s'], '%.2f'),
                fmt(row['fanout_ms'], '%.2f'),
                fmt(None if row['p50_us'] is None else row['p50_us'] / 1000, '%.2f'),
                fmt(None if row['p99_us'] is None else row['p99_us'] / 1000, '%.2f'),
                fmt(None if row['rss_kib'] is None else row['rss_kib'] / 1024),
                fmt(row['threads'], '%d'), fmt(row['cpu_us_per_request'])))
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
        scenario = next((s for s in SCENARIOS if s['id'] == sid), None)
        if scenario is None:
            continue
        for name in SERVERS:
            row = table.get((sid, name))
            if row and row['p99_us'] is not None:
                points.append(dict(server=name, connections=scenario['connections'],
                                   rps=row['rps'], p99_us=row['p99_us']))
    if not points:
        log('no TCP ping-pong points: no plot')
        return
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


def tls_certificate(commands, notes):
    """The certificate and key every TLS run uses (ECDSA P-256, for
    localhost and 127.0.0.1, self-signed): made by the tokio-tls peer when
    it starts without one, copied to a directory of this run, removed at
    exit. None, with a note, when the peer is not available."""
    if not commands.get('tokio-tls'):
        notes.append('TLS scenarios skipped: the tokio-tls peer, which makes their certificate, '
                     'is not built')
        return None
    proc = subprocess.Popen(commands['tokio-tls'], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    made = {}
    try:
        for line in proc.stdout:
            if line.startswith('certificate '):
                made['cert'] = line.split(' ', 1)[1].strip()
            elif line.startswith('key '):
                made['key'] = line.split(' ', 1)[1].strip()
            elif line.startswith('listening on '):
                break
        if set(made) != {'cert', 'key'}:
            raise RuntimeError('the tokio-tls peer printed no certificate: %s'
                               % proc.stderr.read()[-500:])
        temp = Path(tempfile.mkdtemp(prefix='socketserver-bench-tls-'))
        atexit.register(shutil.rmtree, temp, True)
        kept = {}
        for part in ('cert', 'key'):
            kept[part] = str(temp / ('%s.pem' % part))
            shutil.copyfile(made[part], kept[part])
        return kept
    except (OSError, RuntimeError) as e:
        notes.append('TLS scenarios skipped: %s' % e)
        return None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def prepare(args, notes):
    """Builds, installs what the chosen scenarios need, and probes."""
    commands, offers = build(args, notes)
    if any(s.get('tls') for s in SCENARIOS):
        commands['tls'] = tls_certificate(commands, notes)
    if any(s['kind'] == 'http' for s in SCENARIOS):
        commands['page'] = builtin_page(commands)
        commands['wrk'] = ensure_tool('wrk', 'wrk', notes)
        if not commands['wrk']:
            notes.append('HTTP scenarios skipped: ' + notes.pop())
        if 'nginx' in SERVERS:
            commands['nginx'] = ensure_tool('nginx', 'nginx', notes)
            if not commands['nginx']:
                notes.append('nginx skipped: ' + notes.pop())
    return commands, offers


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
    parser.add_argument('--list', action='store_true', help='list the scenarios and servers')
    parser.add_argument('--out', type=Path,
                        help='where results go (default benches/compare/results, '
                             'or results-smoke with --smoke)')
    parser.add_argument('--no-doc', action='store_true', help='leave BENCHMARKS.md alone')
    parser.add_argument('--report-only', action='store_true',
                        help='run nothing: regenerate the tables and plot from the results '
                             'already in --out')
    args = parser.parse_args()
    global SCENARIOS, SERVERS
    if args.list:
        for s in SCENARIOS:
            print('%-22s %s (servers: %s)' % (s['id'], s['label'],
                                              ', '.join(s.get('servers', ECHO_SERVERS))))
        print('servers: %s' % ', '.join(SERVERS))
        return
    if args.smoke:
        args.duration, args.warmup, args.hold, args.rounds = 1, 0.3, 1, 1
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
        report(saved['runs'], saved['machine'], args, saved.get('notes', []))
        return

    raise_fd_limit()
    notes = []
    commands, offers = prepare(args, notes)
    info = machine()
    log('machine: %s' % info)
    log('the program offers: %s' % offers)
    plan = []
    skipped = {}
    for scenario in SCENARIOS:
        names = []
        for name in SERVERS:
            why = applicable(name, scenario, offers)
            if why is None and not commands.get(name) and name not in (
                    'socketserver', 'socketserver-reactor'):
                why = 'not available (see above)'
            if why is None and scenario['kind'] == 'http' and not commands.get('wrk'):
                why = 'no wrk'
            if why is None and scenario.get('tls') and not commands.get('tls'):
                why = 'no certificate for the TLS scenarios (see above)'
            if why is None:
                names.append(name)
            elif name in scenario.get('servers', ECHO_SERVERS) and why != 'speaks no udp':
                skipped.setdefault((name, why), []).append(scenario['id'])
        plan.append((scenario, names))
    for (name, why), ids in skipped.items():
        notes.append('%s in %s: %s' % (name, ', '.join(ids), why))
    for note in notes:
        log('note: %s' % note)
    runs = []
    for round_no in range(args.rounds):
        for scenario, names in plan:
            if not names or round_no >= scenario.get('max_rounds', args.rounds):
                continue
            shift = round_no % len(names)
            for name in names[shift:] + names[:shift]:
                log('round %d/%d, %s, %s' % (round_no + 1, args.rounds, scenario['id'], name))
                try:
                    result = measure(commands, name, scenario, args)
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                    log('  failed: %s' % e)
                    runs.append(dict(round=round_no + 1, scenario=scenario['id'], server=name,
                                     failed=str(e)[-2000:]))
                    continue
                log('  ' + summary(result))
                runs.append(dict(round=round_no + 1, scenario=scenario['id'], server=name,
                                 result=result))
    failed = [r for r in runs if 'failed' in r]
    for r in failed:
        notes.append('%s against %s failed in round %d: %s' % (
            r['scenario'], r['server'], r['round'], r['failed'].strip().splitlines()[-1][:300]
            if r['failed'].strip() else 'no message'))
    report([r for r in runs if 'result' in r], info, args, notes, failed)


def summary(result):
    """One line about a measurement, for the log."""
    parts = []
    rps = result.get('requests_per_sec')
    if rps is not None:
        parts.append('%.0f req/s' % rps)
    p99 = result['latency_us'].get('p99')
    if p99 is not None:
        parts.append('p99 %.1f us' % p99)
    if result.get('server_cpu_us_per_request') is not None:
        parts.append('server CPU %.1f us/request' % result['server_cpu_us_per_request'])
    parts.append('errors %d' % result['errors'])
    if result.get('answered') is not None:
        parts.append('answered %s of %s' % (result['answered'], result['connections']))
    if result.get('delivered') is not None:
        parts.append('delivered %s of %s, last after %s ms' % (
            result['delivered'], result['connections'] - 1, fmt(result.get('fanout_ms'), '%.2f')))
    server = result.get('server') or {}
    if server.get('rss_kib') is not None:
        parts.append('server %.1f MiB, %s threads' % (server['rss_kib'] / 1024,
                                                      server.get('threads')))
    return ', '.join(parts)


def report(runs, info, args, notes, failed=()):
    """Writes results.json, results.csv, plot.png and the generated block."""
    table = aggregate(runs)
    (args.out / 'results.json').write_text(json.dumps(dict(
        machine=info, smoke=args.smoke, duration=args.duration, warmup=args.warmup,
        hold=args.hold, rounds=args.rounds, notes=notes, runs=runs, failed=list(failed),
        medians=[dict(scenario=k[0], server=k[1], **v) for k, v in table.items()],
        memory_slopes=memory_slopes(table),
        tls_memory_slopes=memory_slopes(table, TLS_SLOPE),
    ), indent=1) + '\n')
    with open(args.out / 'results.csv', 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['round', 'scenario', 'server', 'connections', 'size', 'requests',
                    'requests_per_sec', 'p50_us', 'p90_us', 'p99_us', 'max_us', 'errors',
                    'lost', 'held', 'answered', 'delivered', 'fanout_ms', 'server_rss_kib',
                    'server_threads', 'server_kib_per_connection', 'server_cpu_s',
                    'server_cpu_us_per_request'])
        for r in runs:
            res = r['result']
            server = res.get('server') or {}
            rss, held = server.get('rss_kib'), res.get('held')
            lat = res['latency_us']
            w.writerow([r['round'], r['scenario'], r['server'], res.get('connections'),
                        res.get('size'), res.get('requests'), res.get('requests_per_sec'),
                        lat.get('p50'), lat.get('p90'), lat.get('p99'), lat.get('max'),
                        res['errors'], res.get('lost'), held, res.get('answered'),
                        res.get('delivered'), res.get('fanout_ms'), rss, server.get('threads'),
                        rss / held if rss is not None and held else None,
                        res.get('server_cpu_s'), res.get('server_cpu_us_per_request')])
    plot(table, args, info)
    text = markdown(table, info, args, notes)
    if not args.no_doc:
        write_doc(text)
    print(text)


if __name__ == '__main__':
    main()
