#!/usr/bin/env python3
"""The threads mode before and after a change, side by side in one run.

Builds `socketserver` at a git revision (in a temporary copy made with
`git archive`) and from the working tree, then runs the threads-mode
scenarios of run.py against both, interleaved (the order alternates from
round to round), with the working tree's load generator for both:

    python3 benches/compare/before_after.py 7829e96
    python3 benches/compare/before_after.py 7829e96 --duration 5 --rounds 3

It prints a Markdown table of requests/s and server CPU per request (from
/proc/PID/stat), each as after ÷ before, medians over the rounds. Nothing
is written to BENCHMARKS.md; paste the table where it belongs.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (run.py beside this file: servers, measurements)

DEFAULT_SCENARIOS = ['tcp-64-c1', 'tcp-64-c16', 'tcp-64-c128', 'tcp-64-c1000',
                     'udp-64-c1', 'udp-64-c16', 'connect-rate-c16']


def build_revision(rev):
    """The program built at `rev`: its path."""
    target = run.ROOT / 'target' / 'before-after'
    with tempfile.TemporaryDirectory(prefix='socketserver-before-') as src:
        archive = subprocess.run(['git', 'archive', rev], cwd=run.ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(['tar', '-x', '-C', src], input=archive, check=True)
        manifest = Path(src, 'Cargo.toml').read_text()
        # Before the program moved behind the `cli` feature, it built alone.
        features = ['--features', 'cli'] if '\ncli = ' in manifest else []
        subprocess.run(['cargo', 'build', '--release', '--quiet', '--bin', 'socketserver']
                       + features, cwd=src, check=True,
                       env=dict(os.environ, CARGO_TARGET_DIR=str(target)))
    binary = target / 'release' / 'socketserver'
    kept = target / ('socketserver-' + rev)
    binary.replace(kept)
    return str(kept)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('rev', help='the git revision to compare with (e.g. 7829e96)')
    parser.add_argument('--duration', type=float, default=5)
    parser.add_argument('--warmup', type=float, default=1)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--timeout', type=float, default=5)
    parser.add_argument('--scenarios', default=','.join(DEFAULT_SCENARIOS))
    args = parser.parse_args()
    args.hold = args.duration

    before = build_revision(args.rev)
    subprocess.run(['cargo', 'build', '--release', '--quiet', '--features', 'cli', '--bin',
                    'socketserver'], cwd=run.ROOT, check=True)
    after = str(run.ROOT / 'target' / 'release' / 'socketserver')
    programs = {'before': before, 'after': after}
    bench = [after, 'bench']
    wanted = args.scenarios.split(',')
    scenarios = [s for s in run.SCENARIOS if s['id'] in wanted]

    results = {}
    for round_no in range(args.rounds):
        for scenario in scenarios:
            order = ['before', 'after'] if round_no % 2 == 0 else ['after', 'before']
            for which in order:
                commands = {'program': programs[which], 'bench': bench}
                result = run.measure(commands, 'socketserver', scenario, args)
                results.setdefault((scenario['id'], which), []).append(result)
                print('round %d %-18s %-6s %10.0f req/s %6.2f us/req errors %d'
                      % (round_no + 1, scenario['id'], which,
                         result.get('requests_per_sec') or 0,
                         result.get('server_cpu_us_per_request') or 0,
                         result['errors']), file=sys.stderr, flush=True)

    def med(sid, which, key):
        return run.median([r.get(key) for r in results.get((sid, which), [])])

    print('Threads mode, `%s` (before) and the working tree (after): %d round(s) of %g s, '
          'medians.\n' % (args.rev, args.rounds, args.duration))
    print('| scenario | requests/s before | after | after ÷ before '
          '| CPU µs/request before | after | after ÷ before |')
    print('|---|---|---|---|---|---|---|')
    for scenario in scenarios:
        sid = scenario['id']
        rps = [med(sid, w, 'requests_per_sec') for w in ('before', 'after')]
        cpu = [med(sid, w, 'server_cpu_us_per_request') for w in ('before', 'after')]

        def ratio(pair):
            return '%.2f×' % (pair[1] / pair[0]) if pair[0] and pair[1] else 'n/a'

        def fmt(value, spec):
            return spec % value if value is not None else 'n/a'
        print('| %s | %s | %s | %s | %s | %s | %s |'
              % (scenario['label'], fmt(rps[0], '%.0f'), fmt(rps[1], '%.0f'), ratio(rps),
                 fmt(cpu[0], '%.2f'), fmt(cpu[1], '%.2f'), ratio(cpu)))


if __name__ == '__main__':
    main()
