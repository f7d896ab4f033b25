"""Run every run a published CIFAR-100 table needs, N seeds each, then compare with it.

    bash scripts/reproduce.sh TABLE [TEACHER:STUDENT ...] [--methods kd,crd] [--seeds 3] [--gpus 0,1]
                              [--dry_run] [-- train flags for every run]

TABLE is a `table` of scripts/published_results.csv (repdistiller_same, dkd_same, ...). Each pair
gets its student trained from scratch and every method of the table (or those of --methods),
seeds 0..N-1, with each row's published command (helper/tools/recipe.py); the teachers are the fetched
checkpoints (scripts/fetch_pretrained_teachers.sh), never trained. Runs go over the --gpus slots
with the scheduler search.py uses. A run counts as the table's only when its identity (run folder)
is the recipe's: a rerun skips those finished and resumes those interrupted; other runs under
--save_root are listed with their first difference and left alone. It ends with
`report.py --compare`.
"""
import argparse
import csv
import os
import re
import shlex
import statistics
import sys
import time

from helper.runs.checkpoint import WriteError
from helper.errors import UsageError
from helper.runs.run_folder import summary_or_empty as read_summary
from helper.launch.scheduler import Run, add_launcher_args, check_launcher_args, run_parallel, slots_for, train_runs

from helper.tools.recipe import PER_PAIR_RECIPES, RECIPES, ROOT, TRAIN_SH, pair_recipe, recipe_command, row_flags  # noqa: F401

PUBLISHED = os.path.join(ROOT, 'scripts', 'published_results.csv')


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
    p.add_argument('--methods', default=None, metavar='M1,M2',
                   help='only these methods of each pair, e.g. kd,crd (scratch: the student alone)')
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
    args.methods = [m for m in (args.methods or '').split(',') if m] or None
    # relative to where the command is run, as fetch_pretrained_teachers.sh takes them; absolute
    # from here on, so runs on other nodes or in other folders find the same files
    args.save_root = os.path.abspath(args.save_root)
    args.teacher_dir = os.path.abspath(args.teacher_dir) if args.teacher_dir else None
    return args


def table_rows(path, table, pairs, only=None):
    """The (teacher, student) pairs of one published table in its order, and {pair: [row]}."""
    try:
        with open(path, newline='') as f:
            rows = [r for r in csv.DictReader(f)]
    except OSError as e:
        raise UsageError(f'cannot read {path}: {e.strerror}') from None
    tables = sorted({r['table'] for r in rows if r.get('student')})
    mine = [r for r in rows if r['table'] == table and r.get('student')]
    if not mine and any(r['table'] == table for r in rows):
        raise UsageError(f'{table} lists published teachers, which are fetched, not trained: '
                         f'bash scripts/fetch_pretrained_teachers.sh --eval NAME compares one with its '
                         f'published accuracy; tables of runs: {", ".join(tables)}')
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
    if only:
        known = sorted({r['method'] for r in mine} - {'teacher'})
        unknown = [m for m in only if m not in known]
        if unknown:
            raise UsageError(f'--methods: {unknown[0]} is not a method of {table}; methods: {", ".join(known)}')
    rows = {pair: [r for r in mine if (r['teacher'], r['student']) == pair and r['method'] != 'teacher'
                   and (not only or r['method'] in only)] for pair in order}
    return order, rows


class Job:
    """One training run: its command, run folder and state (done, resume or new)."""

    def __init__(self, kind, model, argv, teacher=None, method=None, seed=0):
        self.kind, self.model, self.argv = kind, model, argv
        self.teacher, self.method, self.seed = teacher, method, seed
        self.run_dir = self.problem = None
        self.state = 'new'
        self.epochs = self.options = None
        self.init_epochs = 0
        self.row = None  # the published row it reproduces

    @property
    def name(self):
        what = 'scratch' if self.kind == 'teacher' else f'{self.teacher} -> {self.method}'
        return f'{self.model} {what} seed {self.seed}'

    def script(self):
        return 'train_teacher.py' if self.kind == 'teacher' else 'train_student.py'


def plan(args):
    """Jobs for the table: one scratch run per student and seed, one run per method, pair and seed."""
    order, rows = table_rows(args.published, args.table, args.pairs, args.methods)
    teacher_dir = args.teacher_dir or os.path.join(args.save_root, 'models')
    common = ['--save_root', args.save_root] + args.extra
    jobs, students = [], []
    for teacher, student in order:
        path_t = os.path.join(teacher_dir, f'{teacher}_vanilla', 'ckpt_epoch_240.pth')
        for row in rows[(teacher, student)]:
            method = row['method']
            if method == 'scratch':
                if student in students:
                    continue
                students.append(student)
            try:
                kind, argv = recipe_command(method, teacher, student, path_t, row_flags(row))
            except UsageError as e:
                raise UsageError(f'{e} of {args.table}') from None
            for seed in range(args.seeds):
                own = ['--trial', f'rep{seed}', '--seed', str(seed)]
                if kind == 'teacher':
                    jobs.append(Job(kind, student, argv[:2] + own + argv[2:] + common, seed=seed))
                else:
                    jobs.append(Job(kind, student, argv + own + common, teacher=teacher, method=method, seed=seed))
                jobs[-1].row = row
    return jobs, order


def inspect(job):
    """Set job.run_dir, .state ('done', 'resume', 'new'), .epochs, .init_epochs and .options from
    its options and folder."""
    from helper.engine.options import finalize, options_dict, student_parser, teacher_parser
    from helper.engine.run import run_folder_of

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
    job.run_dir, job.epochs, job.options = folder.path, opt.epochs, options_dict(opt)
    job.init_epochs = opt.init_epochs if job.kind == 'student' and _has_init_stage(opt.distill) else 0
    if read_summary(job.run_dir).get('status') == 'finished':
        job.state = 'done'
    elif folder.has_resumable():
        job.state = 'resume'
    return job


def _has_init_stage(distill):
    from distiller_zoo import METHODS
    return bool(getattr(METHODS.get(distill), 'has_init_stage', False))


def epoch_seconds(jobs, fallback=None):
    """Measured seconds per epoch from the runs' summaries: keyed (model, teacher, method), then
    (model, method), and None: over all runs (else fallback)."""
    measured = {}
    for job in jobs:
        s = read_summary(job.run_dir) if job.run_dir else {}
        if s.get('epochs_done') and s.get('wall_time_s'):
            rate = s['wall_time_s'] / (s['epochs_done'] + (job.init_epochs or 0))
            measured.setdefault((job.model, job.teacher, job.method), []).append(rate)
            measured.setdefault((job.model, job.method), []).append(rate)
            measured.setdefault(None, []).append(rate)
    out = {k: statistics.mean(v) for k, v in measured.items()}
    out.setdefault(None, fallback)
    return out


def remaining_epochs(job):
    """Epochs the job still trains, its init stage included (counted until its first epoch ends)."""
    if job.state == 'done' or not job.epochs:
        return 0
    done = read_summary(job.run_dir).get('epochs_done') or 0
    return job.epochs - done + (0 if done else (job.init_epochs or 0))


def seconds_left(jobs, per_epoch):
    """Device-seconds the unfinished jobs still need, or None when no epoch time is known."""
    total = 0.0
    for job in jobs:
        left = remaining_epochs(job)
        if not left:
            continue
        rate = (per_epoch.get((job.model, job.teacher, job.method)) or per_epoch.get((job.model, job.method))
                or per_epoch.get(None))
        if rate is None:
            return None
        total += left * rate
    return total


def _hours(seconds):
    return 'unknown (no epoch measured yet; --epoch_s gives an estimate)' if seconds is None \
        else f'{seconds / 3600:.2f} device-hours'


def command_line(job):
    """The command as run_jobs starts it: this interpreter, the script by its path in the repository."""
    script = os.path.join(ROOT, job.script())
    if os.path.abspath(os.getcwd()) == ROOT:
        script = job.script()
    return shlex.join([sys.executable, script] + job.argv + (['--resume'] if job.state == 'resume' else []))


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
    off = off_recipe(jobs)
    if off:
        print(f'note: the flags after -- change the published recipe ({off}): report.py will show these '
              f'runs as not comparable', file=out, flush=True)
    for line in other_folders(args, jobs):
        print(line, file=out, flush=True)
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


def off_recipe(jobs):
    """The first way the planned runs differ from their rows' recipes (flags after --), or None."""
    from helper.engine.identity import first_difference
    from helper.tools.recipe import COMPARED, recipe_options
    for job in jobs:
        if job.options and getattr(job, 'row', None):
            try:
                why = first_difference(job.options, recipe_options(job.row), COMPARED)
            except UsageError:
                continue
            if why:
                return why
    return None


def other_folders(args, jobs):
    """One line each for the runs under SAVE_ROOT that are not this table's (with their first
    difference), and for folders that are incomplete or not runs at all. Nothing is changed."""
    from helper.engine.identity import IDENTITY_OPTIONS, first_difference
    from helper.runs.run_folder import RunFolder

    mine = {os.path.realpath(j.run_dir) for j in jobs if j.run_dir}
    teachers = {f'{j.teacher}_vanilla' for j in jobs if j.teacher}
    other, odd = {}, []
    for sub in ('models', 'student_model'):
        base = os.path.join(args.save_root, sub)
        for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            path = os.path.join(base, name)
            if not os.path.isdir(path) or os.path.realpath(path) in mine or name in teachers:
                continue
            try:
                summary = RunFolder(path).read_summary()
            except (OSError, ValueError):
                summary = None
            saved = summary.get('options') if summary else None
            if not isinstance(saved, dict):
                odd.append(os.path.join(sub, name))
                continue
            same = [j for j in jobs if j.options and j.model == summary.get('model_s')
                    and j.teacher == summary.get('model_t')]
            same.sort(key=lambda j: j.options.get('trial') != saved.get('trial'))
            why = (first_difference(saved, same[0].options, IDENTITY_OPTIONS + ('trial',)) or 'teacher checkpoint'
                   if same else 'not a run of this table')
            other.setdefault(why, []).append(name)
    lines = []
    if other:
        n = sum(len(v) for v in other.values())
        lines.append(f'other runs under {args.save_root}: {n}, left alone (differ in ' + '; '.join(
            f'{why}: {len(names)}' for why, names in other.items()) + ')')
    if odd:
        lines.append(f'incomplete or foreign folders under {args.save_root}: {len(odd)}, left alone '
                     f'(no readable summary.json with options): {", ".join(odd)}')
    return lines


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
        try:
            os.makedirs(os.path.dirname(log_path(args, job)), exist_ok=True)
        except OSError as err:
            raise WriteError(os.path.dirname(log_path(args, job)), err) from None
        print(f'start {job.name}' + (' (resume)' if job.state == 'resume' else '')
              + (f' on GPU {slot}' if slot is not None else ''), file=out, flush=True)
        starting.append(job)  # run_parallel starts it right after asking for its command
        return argv, env

    class Watched:
        """A child process that reports progress when it ends (run_parallel only polls it)."""

        def __init__(self, argv, env, job):
            self.job = job
            try:
                self.log = open(log_path(args, job), 'a')
            except OSError as err:
                raise WriteError(log_path(args, job), err) from None
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
    from helper.tools import report

    print('', file=out, flush=True)
    return report.main([args.save_root, '--compare', args.published])


def main(argv=None):
    from helper.engine.loops import Preempted
    try:
        return reproduce(parse_args(sys.argv[1:] if argv is None else argv))
    except UsageError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except WriteError as e:
        print(f'error: {e}; free space (or fix the permissions), then rerun the same command to continue',
              file=sys.stderr)
        return WriteError.exit_code
    except Preempted:  # the SLURM jobs keep running; a rerun reattaches to them
        print('reproduction stopped; rerun the same command to continue', file=sys.stderr)
        return 143


if __name__ == '__main__':
    sys.exit(main())
