"""Teacher outputs for the training loop: per step, batched across steps, or shared between runs.

A frozen teacher in eval mode gives each sample the same output whatever else is in its batch
(batch norm uses its running statistics), so one forward over the next K batches serves K steps
(--teacher_batch K): fewer, larger launches where a GPU is launch-bound. The outputs equal the
per-step ones up to rounding (kernels may pick other algorithms for the larger batch).

A SharedTeacher lets the co-trained candidates of a BCS phase (helper/launch/cotrain.py), which see the
same batches, run the teacher once per batch for all of them.
"""
import torch

from helper.engine.loops import teacher_forward, to_device


class SharedTeacher:
    """The latest teacher outputs, keyed by where in the data stream they were computed.

    On CUDA each co-trained run has its own stream (helper/launch/cotrain.py): a run reading outputs that
    another computed waits for them, and the allocator is told which streams still read them."""

    def __init__(self):
        self.key = None
        self.value = None
        self.ready = None  # (stream, event) on CUDA
        self.computed = 0
        self.served = 0
        # The group's one teacher module, prepared (and compiled) by its first run, and its test
        # accuracy: the candidates share the teacher checkpoint, so it is set up and measured once.
        self.module = None
        self.module_compiled = False
        self.accuracy = None

    def get(self, key, compute):
        if key != self.key:
            self.key, self.value, self.ready = None, None, None  # free the old outputs first
            self.value = compute()
            self.key = key
            self.computed += 1
            tensors = _tensors(self.value)
            if tensors and tensors[0].is_cuda:
                event = torch.cuda.Event()
                event.record()
                self.ready = (torch.cuda.current_stream(), event)
        elif self.ready is not None and torch.cuda.current_stream() != self.ready[0]:
            stream = torch.cuda.current_stream()
            stream.wait_event(self.ready[1])
            for t in _tensors(self.value):
                t.record_stream(stream)
        self.served += 1
        return self.value


def _tensors(value):
    out = []
    for feats, logit in value or []:
        out += list(feats) + [logit]
    return out


def batched_teacher_forward(teacher, inputs, preact, autocast, channels_last=False):
    """One teacher forward over several batches; returns [(t_feats, t_logit)] per batch."""
    if len(inputs) == 1:
        return [teacher_forward(teacher, inputs[0], preact, autocast)]
    x = torch.cat(inputs)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    feats, logit = teacher_forward(teacher, x, preact, autocast)
    sizes = [t.shape[0] for t in inputs]
    per_feat = [f.split(sizes) for f in feats]
    return [([pf[i] for pf in per_feat], chunk) for i, chunk in enumerate(logit.split(sizes))]


def teacher_stream(ctx, epoch, skip, preact):
    """Yield (iteration, batch on the device, (t_feats, t_logit) or None) for one epoch,
    skipping the first `skip` iterations (a resumed epoch). epoch: the epoch's key, which the
    outputs a group shares are found by (ctx.context: helper.engine.context.RunContext)."""
    k = max(1, int(getattr(ctx.opt, 'teacher_batch', 1) or 1))
    shared = ctx.context.shared_teacher
    pending = []

    def flush():
        ctx.context.take_turn()  # co-trained runs take turns here, a chunk of steps each
        if ctx.teacher is None:
            outs = [None] * len(pending)
        else:
            def compute():
                return batched_teacher_forward(ctx.teacher, [b['input'] for _, b in pending], preact,
                                               ctx.autocast, ctx.channels_last)
            key = (epoch, pending[0][0], len(pending))
            outs = shared.get(key, compute) if shared is not None else compute()
        for (it, batch), out in zip(pending, outs):
            yield it, batch, out

    for it, batch in enumerate(ctx.train_loader):
        if it < skip:  # resuming mid-epoch: the order is replayed, finished steps are skipped
            continue
        pending.append((it, to_device(batch, ctx.device, ctx.channels_last)))
        if len(pending) == k:
            yield from flush()
            pending = []
    if pending:
        yield from flush()
