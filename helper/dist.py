"""torchrun / DistributedDataParallel glue. Without torchrun every function is a no-op."""
import os

import torch
import torch.distributed as dist


def launched_by_torchrun():
    return 'RANK' in os.environ and 'WORLD_SIZE' in os.environ


def init(device):
    """Join the process group torchrun set up: nccl on CUDA, gloo elsewhere."""
    if launched_by_torchrun() and not dist.is_initialized():
        backend = 'nccl' if device.type == 'cuda' else 'gloo'
        dist.init_process_group(backend=backend)


def active():
    return dist.is_available() and dist.is_initialized()


def rank():
    return dist.get_rank() if active() else 0


def world_size():
    return dist.get_world_size() if active() else 1


def is_main():
    return rank() == 0


def barrier():
    if active():
        dist.barrier()


def all_reduce_sum(tensor):
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_cat(tensor):
    """Concatenate a tensor from every rank along dim 0 (equal sizes per rank: drop_last holds)."""
    if not active():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def broadcast_object(obj):
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup():
    if active():
        dist.destroy_process_group()


def average_gradients(params):
    """Mean of the gradients over ranks, for steps that run outside the DDP wrapper (init stage)."""
    if not active():
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world_size()


def wrap(step_module, device, sync_bn=False):
    """DistributedDataParallel around the student and the method's trainable modules (the frozen
    teacher stays outside). Without torchrun the module comes back unchanged."""
    if not active():
        return step_module
    method = getattr(getattr(step_module, 'method', None), 'core', None)
    if hasattr(method, 'gather'):
        method.gather = all_gather_cat  # every rank's CRD memory sees the global batch
    if sync_bn:
        step_module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(step_module)
    # Buffers that `gather` keeps equal on every rank (CRD's memory bank: 2 x n_data x feat_dim
    # floats) must not be broadcast from rank 0 before every forward, as DDP does with buffers.
    own_sync = [f'{prefix}.{name}' if prefix else name for prefix, module in step_module.named_modules()
                if getattr(module, 'synced_by_gather', False)
                for name, _ in module.named_buffers(recurse=False)]
    # Every student parameter gets a gradient; a method's frozen modules (AB's connector, FT's
    # paraphraser) get none in the main stage, and only they need DDP's search for unused ones.
    frozen = getattr(method, 'frozen', None)
    unused = frozen is not None and any(p.requires_grad for p in frozen.parameters())
    DDP = torch.nn.parallel.DistributedDataParallel
    DDP._set_params_and_buffers_to_ignore_for_model(step_module, own_sync)
    return DDP(step_module, device_ids=[device.index] if device.type == 'cuda' else None,
               find_unused_parameters=unused)
