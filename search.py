"""Block composition search (BCS): retrain a my* student over block compositions, keep the best.

Takes every train_student.py flag, e.g.
    python search.py --path_t ./save/models/resnet110_vanilla/ckpt_epoch_240.pth --distill crd \
        --mc 1 --mc_weight 0.001 --model_s myresnet20 --block_depth 3,3,3 -a 0 -b 0.8 --trial 1
The search rule is documented in helper/launch/bcs.py and the README. Rerunning the same command skips
finished candidates and resumes an interrupted one. With --launcher slurm every candidate is a
SLURM job (helper/launch/slurm.py), and a rerun reattaches to the jobs still queued or running.
"""
import os
import sys

import models
from models import pretrained
from models.loader import read_state_dict, saved_block_depth
from helper.engine import identity
from helper.launch import bcs, cotrain
from helper.runs.checkpoint import WriteError, append_line, read_json, write_json
from helper.errors import UsageError, teacher_missing
from helper.engine.loops import NonFiniteLoss, Preempted
from helper.engine.options import (Parser, add_student_args, differing_option, finalize, options_argv, options_dict,
                            run_name, student_parser)
from helper.engine.run import exit_code, run_folder_of
from helper.runs.runlock import RunLock, check_free
from helper.launch.scheduler import Run, add_launcher_args, check_launcher_args, run_parallel, slots_for, slurm_backend
from train_student import train_student

TRAIN_STUDENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'train_student.py')


def search_parser():
    p = Parser(description='Block composition search over a my* student.')
    add_student_args(p)
    g = p.add_argument_group('search')
    g.add_argument('--search_epochs', type=int, default=None,
                   help='score candidates on a shortened schedule (LR milestones scaled), '
                        'then retrain only the winner on the full one')
    g.add_argument('--gpus', default=None, help='e.g. 0,1,2,3: train a phase\'s candidates in parallel')
    g.add_argument('--runs_per_gpu', type=int, default=1, help='candidates sharing one GPU')
    g.add_argument('--nproc_per_node', type=int, default=1, help='GPUs per candidate, through torchrun')
    g.add_argument('--no_cotrain', action='store_true',
                   help="train a phase's candidates as separate runs, not together in one process "
                        "sharing the teacher (docs/search.md, co-training)")
    add_launcher_args(p)
    return p


def candidate_options(opt, comp, short):
    """Options of one candidate run: its composition and, when short, the shortened schedule."""
    c = opt.request(block_depth=list(comp), resume=False)
    if short:
        scale = opt.search_epochs / opt.epochs
        c = c.request(epochs=opt.search_epochs, trial=f'{opt.trial}-bcs{opt.search_epochs}',
                      lr_decay_epochs=sorted({max(1, round(m * scale)) for m in opt.lr_decay_epochs
                                              if round(m * scale) < opt.search_epochs} or set()))
    return c


def previous_result(c):
    """'done' with its summary, 'resume', or None (fresh) for a candidate's run folder."""
    folder = run_folder_of(c, 'student')
    if folder.verdict()[0] == 'finished':
        s = folder.read_summary()
        # --fast picks autocast by device: a finished --fast run recorded the amp it resolved
        ignore = (('seed',) if c.seed_auto else ()) + (('amp',) if c.fast else ())
        key = differing_option(s.get('options', {}), options_dict(c), ignore)
        if key:
            raise UsageError(f'{folder.path} finished with a different --{key}; use another --trial')
        return 'done', s
    if folder.has_resumable():
        return 'resume', None
    return None, None


def search_dir(opt, readable):
    """readable + '_id-<hash>' of the start run's identity: a search with other epochs, weights or
    teacher keeps its own record. An older search's folder without the hash is still used when
    its search.json records the same options."""
    path = identity.folder_name(readable, identity.identity(opt, 'student'))
    if os.path.exists(path) or not os.path.isdir(readable):
        return path
    try:
        saved = read_json(os.path.join(readable, 'search.json')).get('options')
    except (OSError, ValueError, AttributeError):
        return path
    return readable if identity.records_this_run(saved, opt) else path


def candidate_argv(c):
    """train_student.py arguments for a candidate, from its options."""
    return options_argv(c, student_parser())


class Search:
    def __init__(self, opt):
        self.opt = opt
        # a shortened search scores other runs: it keeps its own record
        short = f'_bcs{opt.search_epochs}' if opt.search_epochs is not None else ''
        self.dir = search_dir(opt, os.path.join(opt.save_root, 'search', 'BCS_' + run_name(opt, 'student') + short))
        self.name = os.path.basename(self.dir)
        self.records = []
        # device time charged before, for candidates a rerun skips (co-trained ones had a share)
        self.charged = {}
        try:
            for r in read_json(os.path.join(self.dir, 'search.json')).get('candidates', []):
                self.charged[tuple(r['block_depth'])] = r['device_hours']
        except (OSError, ValueError, KeyError, TypeError):
            pass
        self.rates = bcs.exchange_rates(opt.model_s)
        # a my* teacher may have been trained at another depth: its checkpoint says which
        if not pretrained.is_torchvision(opt.path_t) and not os.path.isfile(opt.path_t):
            raise teacher_missing(opt.path_t)
        teacher_depth = (saved_block_depth(read_state_dict(opt.path_t)[1])
                         if models.is_variable_depth(opt.model_t) else None)
        self.limits = bcs.teacher_limits(opt.model_t, len(opt.block_depth), teacher_depth)
        self.planned = bcs.planned_count(opt.block_depth, self.rates, self.limits)
        self.gpus_per_run = max(1, opt.slurm_gpus_per_job if opt.launcher == 'slurm' else opt.nproc_per_node)
        # co-training shares one process (and teacher) between candidates: not with SLURM jobs
        self.cotrain = not opt.no_cotrain and opt.nproc_per_node == 1 and opt.launcher == 'local'
        # job ids by run folder: a rerun of the search reattaches to the jobs still queued or running
        self.jobs, self.backend = {}, None
        if opt.launcher == 'slurm':
            try:
                self.jobs = read_json(os.path.join(self.dir, 'search.json')).get('jobs', {})
            except (OSError, ValueError):
                pass
            self.backend = slurm_backend(opt, self.jobs, self.save)

    def score_phase(self, comps, phase):
        cands = [candidate_options(self.opt, comp, self.opt.search_epochs is not None) for comp in comps]
        todo = []
        for c in cands:
            state, summary = previous_result(c)
            c = c.replace(resume=state == 'resume')
            if state == 'done':
                self._record(c, phase, summary, skipped=True)
            else:
                todo.append(c)
        if self.backend is not None:
            self._train_slurm(todo, phase)
        elif self.opt.gpus:
            self._train_parallel(todo, phase)
        elif self.cotrain and len(todo) > 1:
            for i, c in enumerate(todo):
                self._announce(c, phase, len(self.records) + 1 + i)
            print(f'[BCS] co-training {len(todo)} candidates in one process (one teacher forward per '
                  f'batch for all)', flush=True)
            for c, summary in zip(todo, cotrain.cotrain(todo)):
                self._record(c, phase, summary, share=len(todo))
        else:
            for c in todo:
                self._announce(c, phase, len(self.records) + 1)
                self._record(c, phase, train_student(c))
        by_comp = {tuple(r['block_depth']): r for r in self.records}
        return [by_comp[tuple(c.block_depth)]['best_acc'] for c in cands]

    def _announce(self, c, phase, n):
        print(f'[BCS candidate {n} of ~{max(self.planned, n)}] phase {phase}: block_depth '
              f'{",".join(map(str, c.block_depth))}{" (resuming)" if c.resume else ""}', flush=True)

    def _train_parallel(self, todo, phase):
        slots = slots_for(self.opt.gpus, self.opt.runs_per_gpu, self.opt.nproc_per_node)
        if self.cotrain and len(todo) > len(slots):
            return self._cotrain_parallel(todo, phase, slots)

        def command(c, slot):
            # numbered by start order: the phase's records arrive only when all of it has ended
            self._announce(c, phase, len(self.records) + 1 + todo.index(c))
            script = [sys.executable, TRAIN_STUDENT]  # absolute: search.py may run from elsewhere
            if self.opt.nproc_per_node > 1:
                script = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
                          f'--nproc_per_node={self.opt.nproc_per_node}', TRAIN_STUDENT]
            env = dict(os.environ, CUDA_VISIBLE_DEVICES=slot)
            return script + candidate_argv(c), env

        failed = run_parallel(todo, slots, command)
        for i, c in enumerate(todo):
            if i in failed:
                raise UsageError(f'candidate {c.block_depth} failed (exit code {failed[i]}); see its output '
                                 f'above, then rerun this command to continue')
            self._record(c, phase, run_folder_of(c, 'student').read_summary())

    def _slurm_run(self, c):
        """A candidate (or the final run) as a job: the job adds --resume itself when it finds the
        checkpoint, so a requeued or resubmitted job continues the run."""
        folder = run_folder_of(c, 'student')
        return Run(','.join(map(str, c.block_depth)), [TRAIN_STUDENT] + candidate_argv(c.replace(resume=False)),
                   folder.path, folder.last_path)

    def _train_slurm(self, todo, phase):
        """The phase's candidates as one job array; this process only waits on it."""
        if not todo:
            return
        for i, c in enumerate(todo):
            self._announce(c, phase, len(self.records) + 1 + i)
        failed = self.backend.run([self._slurm_run(c) for c in todo], job_name=self.name)
        for i, c in enumerate(todo):
            if i in failed:
                raise UsageError(f'candidate {c.block_depth} failed: {failed[i]}; rerun this command to continue')
            self._record(c, phase, run_folder_of(c, 'student').read_summary())

    def _cotrain_parallel(self, todo, phase, slots):
        """More candidates than slots: each slot co-trains a group of them in one process."""
        groups = [todo[i::len(slots)] for i in range(len(slots))]

        def command(group, slot):
            argv = []
            for c in group:
                self._announce(c, phase, len(self.records) + 1 + todo.index(c))
                argv += (['--next'] if argv else []) + candidate_argv(c)
            root = os.path.dirname(os.path.abspath(__file__))
            env = dict(os.environ, CUDA_VISIBLE_DEVICES=slot,
                       PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get('PYTHONPATH')])))
            return [sys.executable, '-m', 'helper.launch.cotrain'] + argv, env
        failed = run_parallel(groups, slots, command)
        for g, group in enumerate(groups):
            if g in failed:
                raise UsageError(f'candidates {[c.block_depth for c in group]} failed (exit code {failed[g]}); '
                                 f'see the output above, then rerun this command to continue')
        group_size = {id(c): len(group) for group in groups for c in group}
        for c in todo:
            self._record(c, phase, run_folder_of(c, 'student').read_summary(), share=group_size[id(c)])

    def _record(self, c, phase, summary, skipped=False, share=1):
        """share: co-trained candidates' runs overlap in time; each is charged its share."""
        rec = {'block_depth': list(c.block_depth), 'phase': phase, 'params': summary['params'],
               'best_acc': summary['best_acc'], 'last_acc': summary['last_acc'], 'run_dir': summary['run_dir'],
               'status': summary['status'], 'wall_time_s': summary['wall_time_s'],
               'device_hours': summary['wall_time_s'] * self.gpus_per_run / 3600.0 / share}
        if skipped and tuple(c.block_depth) in self.charged:
            rec['device_hours'] = self.charged[tuple(c.block_depth)]
        job = self.jobs.get(summary['run_dir'])
        if job:
            rec['job_id'] = job['job_id']
        self.records.append(rec)
        line = (f'phase {phase} candidate {len(self.records)}: block_depth '
                f'{",".join(map(str, c.block_depth))} params {rec["params"]} '
                f'best_acc {rec["best_acc"]:.2f} last_acc {rec["last_acc"]:.2f}')
        result_path = os.path.join(self.dir, 'search-result.txt')
        if skipped:
            print(f'[BCS] already finished, skipped: {line}', flush=True)
        # a skipped candidate may have been trained outside this search (same options, same folder)
        if not skipped or line not in _lines(result_path):
            append_line(result_path, line)
        self.save()

    def save(self, winner=None, final=None, status='running'):
        o = self.opt
        out = {'status': status, 'model_s': o.model_s, 'model_t': o.model_t, 'distill': o.distill,
               'mc': o.mc, 'dataset': o.dataset, 'trial': o.trial, 'exchange_rates': self.rates,
               'search_epochs': o.search_epochs, 'candidates': self.records, 'winner': winner,
               'final': final, 'device_hours': sum(r['device_hours'] for r in self.records)
               + (final or {}).get('device_hours', 0.0), 'options': options_dict(o)}
        if self.jobs:
            out['jobs'] = self.jobs
        write_json(out, os.path.join(self.dir, 'search.json'))

    def run(self):
        with RunLock(self.dir, 'search'):  # a second search on this folder stops here, before any candidate
            return self._run()

    def plan(self):
        """How many candidates, why only one where no block can move, and the schedule."""
        o = self.opt
        if self.planned == 1:
            count = (f'1 candidate, the start composition alone: no block can move '
                     f'({bcs.why_no_moves(o.block_depth, self.rates, self.limits)})')
        else:
            count = f'about {self.planned} candidates (counted as if the start stays best)'
        if o.search_epochs is None:
            return f'{count}, each trained {o.epochs} epochs'
        return (f'{count}, each scored on {o.search_epochs} epochs; then the winner is retrained on '
                f'the full --epochs {o.epochs}')

    def dry_run(self):
        """The checks a search makes before its first candidate, and the plan: the candidates by
        phase, the schedule, and a dry run of the first candidate it would train."""
        check_free(self.dir, 'search')
        o, short = self.opt, self.opt.search_epochs is not None
        print(f'dry run: BCS over {o.model_s} from {o.block_depth} (teacher {o.model_t}); exchange rates '
              f'{self.rates}; {self.plan()}; results in {self.dir}', flush=True)
        first = None
        for phase, src, comps in bcs.phase_plan(o.block_depth, self.rates, self.limits):
            where = 'from the start' if phase == 1 else 'from the best so far, here the start'
            states = []
            for comp in comps:
                c = candidate_options(o, comp, short)
                state, _ = previous_result(c)  # a finished candidate made with other options: refused
                states.append(f'{",".join(map(str, comp))} ({state or "new"})')
                if first is None and state != 'done' and phase == 1:
                    first = c.replace(resume=state == 'resume')
            move = f'stage {src + 1} -> {src}, ' if src else ''
            print(f'  phase {phase} ({move}{where}): {"; ".join(states) or "no move fits"}', flush=True)
        if first is None:
            print('  phase 1 is finished: nothing to check by a dry run of a candidate', flush=True)
            return None
        print(f'first candidate to train, {",".join(map(str, first.block_depth))}:', flush=True)
        return train_student(first)

    def _run(self):
        print(f'BCS over {self.opt.model_s} from {self.opt.block_depth} (teacher {self.opt.model_t}); '
              f'exchange rates {self.rates}; {self.plan()}; results in {self.dir}', flush=True)
        _, best = bcs.search(self.opt.block_depth, self.rates, self.limits, self.score_phase)
        winner = next(r for r in self.records if tuple(r['block_depth']) == tuple(best))
        final = None
        if self.opt.search_epochs is not None:
            print(f'[BCS] retraining the winner {list(best)} on the full {self.opt.epochs}-epoch schedule',
                  flush=True)
            c = self.opt.replace(block_depth=list(best))
            state, summary = previous_result(c)
            if state != 'done' and self.backend is not None:
                failed = self.backend.run([self._slurm_run(c)], job_name=self.name + '_final')
                if failed:
                    raise UsageError(f'the final run failed: {failed[0]}; rerun this command to continue')
                summary = run_folder_of(c, 'student').read_summary()
            elif state != 'done':
                summary = train_student(c.replace(resume=state == 'resume'))
            final = {'block_depth': list(best), 'best_acc': summary['best_acc'], 'last_acc': summary['last_acc'],
                     'run_dir': summary['run_dir'],
                     'device_hours': summary['wall_time_s'] * self.gpus_per_run / 3600.0}
            if summary['run_dir'] in self.jobs:
                final['job_id'] = self.jobs[summary['run_dir']]['job_id']
        scores = bcs.winner_scores(winner, final, self.opt.search_epochs, self.opt.epochs)
        line = f'winner: block_depth {",".join(map(str, best))} params {winner["params"]} {scores}'
        result_path = os.path.join(self.dir, 'search-result.txt')
        lines = _lines(result_path)
        if not lines or lines[-1] != line:  # rerunning a finished search adds no duplicate
            append_line(result_path, line)
        self.save(winner, final, status='finished')
        print(f'[BCS] winner {list(best)}: {scores}; {os.path.join(self.dir, "search.json")}', flush=True)
        return {'winner': winner, 'final': final, 'candidates': self.records}


def _lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


def run_search(opt):
    opt = checked_options(opt)
    return Search(opt).dry_run() if opt.dry_run else Search(opt).run()


def checked_options(opt):
    """search.py's options, checked and completed (what any search command must pass first)."""
    opt = finalize(opt, 'student')
    if not models.is_variable_depth(opt.model_s):
        raise UsageError(f'search.py needs a variable-depth student (a my* name), got {opt.model_s!r}')
    if opt.block_depth is None:
        opt = opt.replace(block_depth=models.base_depth(opt.model_s))
    for flag in ('search_epochs', 'runs_per_gpu', 'nproc_per_node'):
        value = getattr(opt, flag)
        if value is not None and value <= 0:
            raise UsageError(f'--{flag} must be positive, got {value}')
    check_launcher_args(opt)
    if opt.launcher == 'slurm' and (opt.runs_per_gpu != 1 or opt.nproc_per_node != 1):
        raise UsageError('--runs_per_gpu and --nproc_per_node share out --gpus; with --launcher slurm '
                         'give each candidate its GPUs with --slurm_gpus_per_job')
    if not opt.gpus and (opt.runs_per_gpu != 1 or opt.nproc_per_node != 1):
        raise UsageError('--runs_per_gpu and --nproc_per_node schedule candidates over --gpus; '
                         'add --gpus (e.g. --gpus 0,1,2,3)')
    return opt


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        run_search(search_parser().parse_args(argv))
    except (UsageError, NonFiniteLoss) as e:
        print(f'error: {e}', file=sys.stderr)
        return exit_code(e)
    except Preempted as e:
        print('search stopped; rerun the same command to continue', file=sys.stderr)
        return exit_code(e)
    except WriteError as e:
        print(f'error: {e}; free space (or fix the permissions), then rerun this command', file=sys.stderr)
        return exit_code(e)
    return 0


if __name__ == '__main__':
    sys.exit(main())
