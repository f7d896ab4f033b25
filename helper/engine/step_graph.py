"""--step_graph (CUDA): the whole training step in one CUDA graph.

Student forward and backward, the method's loss and memory updates (CRD's memory bank), and the
fused optimizer step are captured once and replayed per batch; the batch and the teacher's
outputs are copied into static buffers first. The host then issues one replay per step instead of
hundreds of kernel launches. Same math as the eager step, other rounding.

The first `warmup` steps run eagerly (on a side stream, as CUDA graph capture requires: lazy
initialisation, compilation and the optimizer's momentum buffers happen there). A learning-rate
change is baked into the captured optimizer kernels, so the step is captured again when the rate
changes (at each milestone). A batch of another shape (a last partial batch) runs eagerly.
"""
import contextlib

import torch

from helper.engine.loops import forward_backward


class CudaGraphRunner:
    def __init__(self):
        self.graph = torch.cuda.CUDAGraph()

    def capture(self, fn):
        with torch.cuda.graph(self.graph):
            fn()

    def replay(self):
        self.graph.replay()


def _shape_of(batch, teacher_out):
    shapes = tuple((k, tuple(v.shape), v.dtype) for k, v in sorted(batch.items()))
    if teacher_out is not None:
        feats, logit = teacher_out
        shapes += tuple((tuple(f.shape), f.dtype) for f in feats) + ((tuple(logit.shape), logit.dtype),)
    return shapes


class StepGraph:
    """step(batch, teacher_out, epoch) -> (logit, terms), optimizer step included."""

    def __init__(self, step_module, optimizer, amp_dtype, preact, warmup=3, runner=CudaGraphRunner,
                 side_stream=None, log=print):
        self.module, self.optimizer, self.preact = step_module, optimizer, preact
        self.device_type = next(step_module.parameters()).device.type
        self.amp_dtype, self.warmup, self.make_runner = amp_dtype, warmup, runner
        self.side_stream = side_stream if side_stream is not None else (
            torch.cuda.Stream() if self.device_type == 'cuda' else None)
        self.runner = self.shape = self.lrs = None
        self.done_warmup = 0
        self.failed, self.log = False, log
        self.captures = self.replays = self.eager_steps = 0

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        # no weight-cast cache inside a graph: the cached copies would be stale across replays
        return torch.autocast(self.device_type, dtype=self.amp_dtype, cache_enabled=False)

    def _eager(self, batch, teacher_out, epoch=1):
        self.eager_steps += 1
        logit, terms = forward_backward(self.module, batch, teacher_out, epoch, self._autocast, self.optimizer,
                                        _NoScaler)
        self.optimizer.step()
        return logit, terms

    def _on_side_stream(self, fn, *args):
        if self.side_stream is None:
            return fn(*args)
        self.side_stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side_stream):
            out = fn(*args)
        torch.cuda.current_stream().wait_stream(self.side_stream)
        return out

    def _body(self):
        with self._autocast():
            logit, terms = self.module(self.static_batch, self.static_feats, self.static_logit, self.static_epoch)
        terms[0].backward()
        self.optimizer.step()
        self.static_out = (logit, terms)

    def _capture(self, batch, teacher_out, epoch):
        self.static_batch = {k: v.clone() for k, v in batch.items()}
        # the epoch as a buffer: warm-up schedules (DKD) read it, a replay must see the new one
        self.static_epoch = torch.as_tensor(epoch, dtype=torch.float32, device=batch['input'].device).clone()
        feats, logit = teacher_out if teacher_out is not None else (None, None)
        self.static_feats = [f.clone() for f in feats] if feats is not None else None
        self.static_logit = logit.clone() if logit is not None else None
        self.optimizer.zero_grad(set_to_none=True)  # the graph's backward allocates the grads it refills
        self.runner = self.make_runner()
        self.runner.capture(self._body)
        self.captures += 1

    def _copy_in(self, batch, teacher_out, epoch):
        self.static_epoch.copy_(torch.as_tensor(epoch, dtype=torch.float32))
        for k, v in batch.items():
            self.static_batch[k].copy_(v)
        if teacher_out is not None:
            for s, f in zip(self.static_feats, teacher_out[0]):
                s.copy_(f)
            self.static_logit.copy_(teacher_out[1])

    def step(self, batch, teacher_out, epoch=1):
        if self.done_warmup < self.warmup:
            self.done_warmup += 1
            return self._on_side_stream(self._eager, batch, teacher_out, epoch)
        shape = _shape_of(batch, teacher_out)
        if self.runner is not None and shape != self.shape:
            return self._eager(batch, teacher_out, epoch)
        if self.failed:
            return self._eager(batch, teacher_out, epoch)
        lrs = tuple(g['lr'] for g in self.optimizer.param_groups)
        if self.runner is None or lrs != self.lrs:
            self.shape, self.lrs = shape, lrs
            try:
                self._capture(batch, teacher_out, epoch)
            except RuntimeError as e:  # something in the step cannot be captured (a host sync, say)
                self.failed, self.runner = True, None
                self.log(f'--step_graph: the step could not be captured ({type(e).__name__}: '
                         f'{str(e).splitlines()[0] if str(e) else ""}); continuing without it')
                return self._eager(batch, teacher_out, epoch)
        self._copy_in(batch, teacher_out, epoch)
        self.runner.replay()
        self.replays += 1
        return self.static_out


class _NoScaler:
    @staticmethod
    def scale(loss):
        return loss


def make_step_graph(opt, device, step_module, optimizer, amp_dtype, preact, log):
    """The StepGraph for --step_graph, or None (with the reason logged) where it cannot run."""
    if not getattr(opt, 'step_graph', False):
        return None
    from helper import dist
    reason = None
    if device.type != 'cuda':
        reason = 'it needs CUDA'
    elif dist.active():
        reason = 'DistributedDataParallel synchronises gradients outside the graph'
    elif amp_dtype == torch.float16:
        reason = 'fp16 needs the GradScaler, which reads the gradients on the host'
    if reason:
        log(f'--step_graph off: {reason}; training runs without it')
        return None
    return StepGraph(step_module, optimizer, amp_dtype, preact, log=log)
