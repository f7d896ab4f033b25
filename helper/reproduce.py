"""Run every run a published CIFAR-100 table needs, N seeds each, then compare with it.

    bash scripts/reproduce.sh TABLE [TEACHER:STUDENT ...] [--seeds 3] [--gpus 0,1] [--dry_run]
                              [-- train flags for every run]

TABLE is a `table` of scripts/published_results.csv (repdistiller_same, dkd_same, ...). Each pair
gets its student trained from scratch and every method of the table, seeds 0..N-1; the teachers
are the fetched checkpoints (scripts/fetch_pretrained_teachers.sh), never trained. Runs go over the
--gpus slots with the scheduler search.py uses. A rerun skips finished runs and resumes interrupted
ones (--resume from their last checkpoint). It ends with `report.py --compare`.
"""
import argparse
import csv
import os
import re
import shlex
import statistics
import sys
import time

from helper.errors import UsageError
from helper.run_folder import summary_or_empty as read_summary
from helper.scheduler import Run, add_launcher_args, check_launcher_args, run_parallel, slots_for, train_runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUBLISHED = os.path.join(ROOT, 'scripts', 'published_results.csv')

# The published weights of each method (RepDistiller's scripts/run_cifar_distill.sh); the
# methods of later papers take their --distill defaults.
RECIPES = {
    'kd': ['--distill', 'kd', '-r', '0.1', '-a', '0.9', '-b', '0'],
    'hint': ['--distill', 'hint', '-a', '0', '-b', '100'],
    'attention': ['--distill', 'attention', '-a', '0', '-b', '1000'],
    'similarity': ['--distill', 'similarity', '-a', '0', '-b', '3000'],
    'correlation': ['--distill', 'correlation', '-a', '0', '-b', '0.02'],
    'vid': ['--distill', 'vid', '-a', '0', '-b', '1'],
    'rkd': ['--distill', 'rkd', '-a', '0', '-b', '1'],
    'pkt': ['--distill', 'pkt', '-a', '0', '-b', '30000'],
    'abound': ['--distill', 'abound', '-a', '0', '-b', '1'],
    'factor': ['--distill', 'factor', '-a', '0', '-b', '200'],
    'fsp': ['--distill', 'fsp', '-a', '0', '-b', '50'],
    'nst': ['--distill', 'nst', '-a', '0', '-b', '50'],
    'crd': ['--distill', 'crd', '-a', '0', '-b', '0.8'],
    'crd+kd': ['--distill', 'crd', '-a', '1', '-b', '0.8'],
    'dkd': ['--distill', 'dkd'],
    'dist': ['--distill', 'dist'],
    'kd+ls': ['--distill', 'kd', '--logit_stand'],
    'dkd+ls': ['--distill', 'dkd', '--logit_stand'],
    'reviewkd': ['--distill', 'reviewkd'],
    'ofd': ['--distill', 'ofd'],
    'kd+dot': ['--distill', 'kd', '-r', '0.1', '-a', '0.9', '-b', '0', '--optimizer', 'dot', '--dot_delta', '0.075'],
}


def parse_args(argv):
    argv = list(argv)
    extra = []
    if '--' in argv:
        cut = argv.index('--')
        argv, extra = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(prog='scripts/reproduce.sh', description=__doc__.split('\n')[0])
    p.add_argument('table', help='a table of the published results, e.g. repdistiller_same')
    p.add_argument('pairs', nargs='*', metavar='TEACHER:STUDENT', help='only these pairs (default: all)')
    p.add_argument('--seeds', type=int, default=3, help='runs per method: --seed 0..N-1')
    p.add_argument('--gpus', default=None, help='e.g. 0,1,2,3: one run per GPU at a time')
    p.add_argument('--save_root', default='./save')
    p.add_argument('--teacher_dir', default=None,
                   help='holds <teacher>_vanilla/ckpt_epoch_240.pth (default: SAVE_ROOT/models)')
    p.add_argument('--published', default=PUBLISHED, help='the published results CSV')
    p.add_argument('--epoch_s', type=float, default=None,
                   help='seconds per epoch for --dry_run estimates before any epoch is measured')
    p.add_argument('--dry_run', action='store_true', help='list the commands and the device-hours, run nothing')
    add_launcher_args(p)
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        if e.code:
            raise UsageError('bad arguments (see scripts/reproduce.sh -h)') from None
        raise
    if args.seeds < 1:
        raise UsageError(f'--seeds must be at least 1, got {args.seeds}')
    check_launcher_args(args)
    args.extra = extra
    return args


def table_rows(path, table, pairs):
    """The (teacher, student) pairs and methods of one published table, in its order."""
    try:
        with open(path, newline='') as f:
            rows = [r for r in csv.DictReader(f)]
    except OSError as e:
        raise UsageError(f'cannot read {path}: {e.strerror}') from None
    tables = sorted({r['table'] for r in rows if r.get('student')})
    mine = [r for r in rows if r['table'] == table and r.get('student')]
    if not mine:
        raise UsageError(f'no table {table!r} in {path}; tables: {", ".join(tables)}')
    order = list(dict.fromkeys((r['teacher'], r['student']) for r in mine))
    if pairs:
        wanted = []
        for text in pairs:
            pair = tuple(text.split(':'))
            if pair not in order:
                raise UsageError(f'{text} is not a pair of {table}; pairs: '
                                 + ', '.join(f'{t}:{s}' for t, s in order))
            wanted.append(pair)
        order = wanted
    methods = {pair: [r['method'] for r in mine if (r['teacher'], r['student']) == pair] for pair in order}
    return order, methods


# Methods whose authors set weights per pair: their lines in scripts/train.sh are the one record.
PER_PAIR_RECIPES = {'dkd': 'dkd', 'kd+ls': 'kd_ls', 'dkd+ls': 'dkd_ls', 'reviewkd': 'reviewkd'}
TRAIN_SH = os.path.join(ROOT, 'scripts', 'train.sh')


def pair_recipe(method, teacher, student, train_sh=TRAIN_SH):
    """The method's flags for this pair from its train.sh recipe, else its RECIPES entry."""
    name = PER_PAIR_RECIPES.get(method)
    if name is not None:
        with open(train_sh) as f:
            block = re.search(rf'^{re.escape(name)}\)(.*?);;', f.read(), re.M | re.S)
        for line in (block.group(1).splitlines() if block else []):
            if 'train_student.py' not in line:
                continue
            argv = shlex.split(line.split('train_student.py', 1)[1])
            flags = dict(zip(argv, argv[1:]))
            if (flags.get('--model_t'), flags.get('--model_s')) == (teacher, student):
                own = argv[argv.index('--model_s') + 2:]
                return own[:own.index('--trial')] if '--trial' in own else own
    return RECIPES[method]


class Job:
    """One training run: its command, run folder and state (done, resume or new)."""

    def __init__(self, kind, model, argv, teacher=None, method=None, seed=0):
        self.kind, self.model, self.argv = kind, model, argv
        self.teacher, self.method, self.seed = teacher, method, seed
        self.run_dir = self.problem = None
        self.state = 'new'
        self.epochs = None

    @property
    def name(self):
        what = 'scratch' if self.kind == 'teacher' else f'{self.teacher} -> {self.method}'
        return f'{self.model} {what} seed {self.seed}'

    def script(self):
        return 'train_teacher.py' if self.kind == 'teacher' else 'train_student.py'


def plan(args):
    """Jobs for the table: one scratch run per student and seed, one run per method, pair and seed."""
    order, methods = table_rows(args.published, args.table, args.pairs)
    teacher_dir = args.teacher_dir or os.path.join(args.save_root, 'models')
    common = ['--save_root', args.save_root] + args.extra
    jobs, students = [], []
    for teacher, student in order:
        if 'scratch' in methods[(teacher, student)] and student not in students:
            students.append(student)
            for seed in range(args.seeds):
                jobs.append(Job('teacher', student, ['--model', student, '--trial', f'rep{seed}',
                                                     '--seed', str(seed)] + common, seed=seed))
        path_t = os.path.join(teacher_dir, f'{teacher}_vanilla', 'ckpt_epoch_240.pth')
        for method in methods[(teacher, student)]:
            if method in ('teacher', 'scratch'):
                continue
            if method not in RECIPES:
                raise UsageError(f'no recipe for method {method!r} of {args.table}')
            for seed in range(args.seeds):
                jobs.append(Job('student', student,
                                ['--path_t', path_t, '--model_t', teacher, '--model_s', student,
                                 *pair_recipe(method, teacher, student), '--trial', f'rep{seed}',
                                 '--seed', str(seed)] + common,
                                teacher=teacher, method=method, seed=seed))
    return jobs, order


def inspect(job):
    """Set job.run_dir, .state ('done', 'resume', 'new') and .epochs from its options and folder."""
    from helper.options import finalize, student_parser, teacher_parser
    from helper.run import run_folder_of

    parser = teacher_parser() if job.kind == 'teacher' else student_parser()
    schedule = argparse.ArgumentParser(add_help=False)
    schedule.add_argument('--epochs', type=int, default=parser.get_default('epochs'))
    job.epochs = schedule.parse_known_args(job.argv)[0].epochs  # known even when the rest fails
    try:
        opt = finalize(parser.parse_args(job.argv), job.kind)
    except UsageError as e:  # e.g. a method this build lacks
        job.problem = str(e)
        return job
    folder = run_folder_of(opt, job.kind)
    job.run_dir, job.epochs = folder.path, opt.epochs
    if read_summary(job.run_dir).get('status') == 'finished':
        job.state = 'done'
    elif folder.has_resumable():
        job.state = 'resume'
    return job


def epoch_seconds(jobs, fallback=None):
    """{(model, method): measured seconds per epoch} from the runs' summaries, plus None: overall."""
    measured = {}
    for job in jobs:
        s = read_summary(job.run_dir) if job.run_dir else {}
        if s.get('epochs_done') and s.get('wall_time_s'):
            measured.setdefault((job.model, job.method), []).append(s['wall_time_s'] / s['epochs_done'])
    out = {k: statistics.mean(v) for k, v in measured.items()}
    everything = [x for v in measured.values() for x in v]
    out[None] = statistics.mean(everything) if everything else fallback
    return out


def remaining_epochs(job):
    if job.state == 'done' or not job.epochs:
        return 0
    return job.epochs - (read_summary(job.run_dir).get('epochs_done') or 0)


def seconds_left(jobs, per_epoch):
    """Device-seconds the unfinished jobs still need, or None when no epoch time is known."""
    total = 0.0
    for job in jobs:
        left = remaining_epochs(job)
        if not left:
            continue
        rate = per_epoch.get((job.model, job.method)) or per_epoch.get(None)
        if rate is None:
            return None
        total += left * rate
    return total


def _hours(seconds):
    return 'unknown (no epoch measured yet; --epoch_s gives an estimate)' if seconds is None \
        else f'{seconds / 3600:.2f} device-hours'


def command_line(job, python=None):
    return ' '.join([python or 'python', job.script()] + job.argv + (['--resume'] if job.state == 'resume' else []))


def reproduce(args, out=None, popen=None):
    out = out or sys.stdout
    jobs, order = plan(args)
    for job in jobs:
        inspect(job)
    missing = sorted({j.teacher for j in jobs if j.kind == 'student' and not os.path.isfile(j.argv[1])})
    per_epoch = epoch_seconds(jobs, args.epoch_s)
    todo = [j for j in jobs if j.state != 'done']
    print(f'{args.table}: {len(order)} pairs, {len(jobs)} runs ({args.seeds} seeds), '
          f'{len(jobs) - len(todo)} finished, {sum(j.state == "resume" for j in todo)} to resume, '
          f'{sum(j.state == "new" for j in todo)} to start; {_hours(seconds_left(todo, per_epoch))}',
          file=out, flush=True)
    if args.dry_run:
        for job in jobs:
            note = {'done': '# finished, skipped', 'resume': '# resumes', 'new': ''}[job.state]
            if job.problem:
                note = f'# cannot run in this build: {job.problem}'
            print(f'{command_line(job)}  {note}'.rstrip(), file=out)
        for name in missing:
            print(f'# teacher {name} is not fetched yet: bash scripts/fetch_pretrained_teachers.sh {name}', file=out)
        return 0
    problems = [j for j in todo if j.problem]
    if problems:
        raise UsageError(f'{problems[0].name}: {problems[0].problem}')
    if missing:
        raise UsageError(f'teacher checkpoint missing for {", ".join(missing)}: run '
                         f'bash scripts/fetch_pretrained_teachers.sh {" ".join(missing)} (or pass --teacher_dir)')
    if args.launcher == 'slurm':
        failed = run_on_slurm(todo, args)
    else:
        failed = [(j, f'exit {c}, log {log_path(args, j)}') for j, c in run_jobs(todo, jobs, args, out, popen)]
    code = report_at_end(args, out)
    if failed:
        print(f'{len(failed)} runs failed: ' + '; '.join(f'{j.name} ({why})' for j, why in failed), file=out)
        return 1
    return code


def log_path(args, job):
    return os.path.join(args.save_root, 'reproduce_logs', os.path.basename(job.run_dir) + '.log')


def run_jobs(todo, jobs, args, out, popen=None):
    """Run the jobs over the GPU slots, one progress line whenever one ends; [(job, exit code)]."""
    import subprocess

    slots = slots_for(args.gpus) if args.gpus else [None]
    started = time.time()
    ended, starting = [], []

    def command(job, slot):
        argv = [sys.executable, os.path.join(ROOT, job.script())] + job.argv
        argv += ['--resume'] if job.state == 'resume' else []
        env = dict(os.environ, PYTHONUNBUFFERED='1')
        if slot is not None:
            env['CUDA_VISIBLE_DEVICES'] = slot
        os.makedirs(os.path.dirname(log_path(args, job)), exist_ok=True)
        print(f'start {job.name}' + (' (resume)' if job.state == 'resume' else '')
              + (f' on GPU {slot}' if slot is not None else ''), file=out, flush=True)
        starting.append(job)  # run_parallel starts it right after asking for its command
        return argv, env

    class Watched:
        """A child process that reports progress when it ends (run_parallel only polls it)."""

        def __init__(self, argv, env, job):
            self.job = job
            self.log = open(log_path(args, job), 'a')
            self.proc = (popen or subprocess.Popen)(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)

        def poll(self):
            code = self.proc.poll()
            if code is not None and self.log is not None:
                self.log.close()
                self.log = None
                self.job.state = 'done' if code == 0 else 'failed'
                ended.append((self.job, code))
                progress(self.job, code)
            return code

    def progress(job, code):
        done = sum(j.state == 'done' for j in jobs)
        left = seconds_left([j for j in todo if j.state not in ('done', 'failed')], epoch_seconds(jobs, args.epoch_s))
        eta = 'unknown' if left is None else _duration(left / len(slots))
        word = 'finished' if code == 0 else f'FAILED (exit {code}, see {log_path(args, job)})'
        print(f'{job.name} {word} | {done}/{len(jobs)} runs done | {_duration(time.time() - started)} '
              f'elapsed, about {eta} left', file=out, flush=True)

    def launch(argv, env):
        return Watched(argv, env, starting.pop())

    run_parallel(todo, slots, command, popen=launch)
    return [(j, c) for j, c in ended if c != 0]


def run_on_slurm(todo, args):
    """Each run a SLURM job (one array); job ids kept in SAVE_ROOT/reproduce_<table>.json, so a
    rerun reattaches to jobs still queued or running. [(job, why it failed)]"""
    runs = [Run(job.name, [os.path.join(ROOT, job.script())] + job.argv, job.run_dir,
                os.path.join(job.run_dir, f'{job.model}_last.pth')) for job in todo]
    state = os.path.join(args.save_root, f'reproduce_{args.table}.json')
    failed = train_runs(runs, args, state, job_name=f'reproduce_{args.table}')
    return [(todo[i], why) for i, why in sorted(failed.items())]


def _duration(seconds):
    seconds = int(seconds)
    if seconds >= 3600:
        return f'{seconds // 3600} h {seconds % 3600 // 60:02d} min'
    return f'{seconds // 60} min {seconds % 60:02d} s'


def report_at_end(args, out):
    import report

    print('', file=out, flush=True)
    return report.main([args.save_root, '--compare', args.published])


def main(argv=None):
    from helper.loops import Preempted
    try:
        return reproduce(parse_args(sys.argv[1:] if argv is None else argv))
    except UsageError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except Preempted:  # the SLURM jobs keep running; a rerun reattaches to them
        print('reproduction stopped; rerun the same command to continue', file=sys.stderr)
        return 143


if __name__ == '__main__':
    sys.exit(main())
