"""--dry_run: everything a run checks before it trains, with nothing written.

helper.engine.run checks the options and the run folder (its lock, a finished or resumable run) as the
real run does; this module then finds the data, loads the teacher, builds the student and the
method (MC's stage shapes), runs them once on a dummy batch and prints the plan. Whatever the
real command would refuse ends here too, as the same UsageError (exit code 2).
"""
import os

import torch

from dataset import get_loaders
from dataset.cifar import DownloadNeeded
from helper import dist
from helper.engine.experiment import build_models, make_autocast, needs_contrast, trained_model_name
from helper.engine.loops import StudentWithLoss, teacher_forward
from helper.engine.options import run_name
from helper.errors import UsageError
from helper.engine.util import learning_rate_at


def no_trained_model(folder):
    """--test 1 on a folder without its best weights."""
    return UsageError(f'--test 1: no trained model at {folder.best_path}; train it first '
                      f'(same options, without --test)')


def dry_run(opt, kind, folder, device, amp_dtype, ckpt):
    """Check what can be checked without training; print the plan. The summary-like result."""
    if opt.test and not os.path.exists(folder.best_path):
        raise no_trained_model(folder)
    data_note, info, steps = _data(opt, kind, device)
    student, teacher, method = build_models(opt, kind, info)
    terms = forward_dummy(opt, student, teacher, method, info, device, make_autocast(device, amp_dtype))
    if dist.is_main():
        for line in plan(opt, kind, folder, device, amp_dtype, ckpt, data_note, steps, student, teacher, terms):
            print(line, flush=True)
    return {'status': 'dry_run', 'run_dir': folder.path}


def _data(opt, kind, device):
    """(what the data check found, the set's info, train steps per epoch or None). The loaders
    are built as the run builds them, less the device copy (a dry run loads no data set)."""
    try:
        train_loader, _, info = get_loaders(opt.replace(data_on_device=False), device, needs_contrast(opt, kind))
    except DownloadNeeded as e:  # the run would fetch it: not an error
        return f'{e} first', e.info, None
    steps = len(train_loader)
    return f"{opt.dataset} in {opt.data_folder}: {info['n_data']:,} training images", info, steps


def forward_dummy(opt, student, teacher, method, info, device, autocast):
    """One forward of teacher, student and method on a random batch: shapes that do not fit, a
    teacher that does not match its features, fail here. Returns the loss terms by name."""
    module = StudentWithLoss(student, method).to(device)
    n, size = 2, info.get('image_size', 32)
    batch = {'input': torch.randn(n, 3, size, size, device=device),
             'target': torch.randint(info['num_classes'], (n,), device=device),
             'index': torch.randint(info['n_data'], (n,), device=device)}
    t_feats = t_logit = None
    if teacher is not None:
        teacher.to(device).eval()
        t_feats, t_logit = teacher_forward(teacher, batch['input'], module.preact, autocast)
    module.eval()
    with torch.no_grad(), autocast():
        _, terms = module(batch, t_feats, t_logit, 1)
    return {k: v for k, v in zip(module.names, terms.float().tolist()) if k == 'loss' or k in method.weights}


def plan(opt, kind, folder, device, amp_dtype, ckpt, data_note, steps, student, teacher, terms):
    """The lines a dry run prints."""
    start = 'evaluate its best checkpoint (--test 1)' if opt.test else (
        f"resume after epoch {ckpt['epoch']}" if ckpt is not None else 'start a new run')
    depth = f" ({','.join(map(str, opt.block_depth))})" if opt.block_depth else ''
    params = sum(p.numel() for p in student.parameters())
    lines = [f'dry run: {run_name(opt, kind)}',
             f'  run folder: {folder.path} (free; this command would {start})',
             f'  data: {data_note}',
             f'  {kind} {trained_model_name(opt, kind)}{depth}: {params:,} parameters']
    if teacher is not None:
        lines.append(f'  teacher {opt.model_t}: {opt.path_t} (loaded)')
    if kind == 'student':
        mc = f' + MC (weight {opt.mc_weight:g})' if opt.mc else ''
        lines.append(f'  loss: {opt.distill}{mc}, -r {opt.gamma:g} -a {opt.alpha:g} -b {opt.beta:g}; on a '
                     f"dummy batch: {', '.join(f'{k} {v:.4g}' for k, v in terms.items())}")
    decays = ','.join(map(str, opt.lr_decay_epochs)) or 'none'
    per_epoch = f', {steps} steps of {opt.batch_size} per epoch' if steps else f', batch {opt.batch_size}'
    lines.append(f'  schedule: {opt.epochs} epochs{per_epoch}; lr {learning_rate_at(1, opt):g}, x{opt.lr_decay_rate:g} '
                 f'at epochs {decays}')
    amp = {torch.bfloat16: 'bf16 autocast', torch.float16: 'fp16 autocast'}.get(amp_dtype, 'fp32')
    lines.append(f'  device: {device}, {amp}; seed {opt.seed}')
    lines.append('dry run OK: nothing was written')
    return lines
