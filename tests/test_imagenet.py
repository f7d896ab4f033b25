"""ImageNet as the papers run it, on a generated ImageFolder of small JPEGs: the torchvision-style
zoo and strict loading of torchvision's weights, torchvision teachers as --path_t, the published
and the device-decode loaders, every method and MC on the ImageNet networks, BCS on a
variable-depth ImageNet ResNet."""
import argparse
import json
import io
import math
import os

import pytest
import torch
import torchvision
from PIL import Image
from torchvision import transforms

import dataset
import models
from dataset import imagenet_gpu
from distiller_zoo import (METHODS, MilestoneChecking, build_distiller, check_mc_shapes,
                           feature_shapes, mc_stage_count, mc_weights, published_option_values)
from helper.launch import bcs
from dataset.datafiles import DataFileError
from helper.errors import UsageError
from helper.engine.options import finalize, student_parser
from helpers_imagenet import WNIDS, colour_class, write_imagenet
from models import pretrained

SIZE = 64  # small inputs: the networks are fully convolutional up to an adaptive pool


def options(**kw):
    base = dict(dataset='imagenet', data_folder='.', batch_size=4, num_workers=0, distill='kd',
                nce_k=4, mode='exact', data_on_device=False, seed=0, compile=False,
                imagenet_transform='standard', tiny_imagenet_transform='emkd')
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return write_imagenet(str(tmp_path_factory.mktemp('imagenet_data')))


def batches(loader):
    return list(loader)


# ---- the zoo ---------------------------------------------------------------------------------

@pytest.mark.parametrize('arch', ['resnet18', 'resnet34', 'resnet50'])
def test_torchvision_weights_load_strictly_and_give_torchvision_outputs(arch, tmp_path):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, arch)(weights=None).eval()
    path = tmp_path / 'hub' / f'{arch}-0123abcd.pth'  # torchvision's file name and format
    path.parent.mkdir()
    torch.save(reference.state_dict(), path)
    model, meta = models.load_model(str(path), num_classes=1000)  # the name comes from the file
    assert type(model).__name__ == 'ImageNetResNet' and meta == {}
    assert list(model.state_dict()) == list(reference.state_dict())
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        feats, logits = model.eval()(x, is_feat=True)
        torch.testing.assert_close(logits, reference(x), rtol=1e-4, atol=1e-5)
    width = 512 * (4 if arch == 'resnet50' else 1)
    assert [tuple(f.shape)[1:] for f in feats] == [
        (64, 32, 32), (width // 8, 16, 16), (width // 4, 8, 8), (width // 2, 4, 4),
        (width, 2, 2), (width,)]


def test_torchvision_weights_under_another_name_are_recognised(tmp_path):
    path = tmp_path / 'teachers' / 'weights.pth'
    path.parent.mkdir()
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(UsageError, match='the weights match resnet34_imagenet'):
        models.load_model(str(path), num_classes=1000)
    model, _ = models.load_model(str(path), 'resnet34_imagenet', num_classes=1000)
    assert models.base_depth('myresnet34_imagenet') == [3, 4, 6, 3]


def test_mobilenetv1_is_mdistillers():
    model = models.build_model('mobilenetv1_imagenet', num_classes=1000).eval()
    sd = model.state_dict()
    # mdistiller's layout: model.0 the stem, model.1-13 depthwise-separable blocks, fc
    assert list(sd)[:2] == ['model.0.0.weight', 'model.0.1.weight'] and 'model.13.3.weight' in sd
    assert tuple(sd['model.13.3.weight'].shape) == (1024, 1024, 1, 1)
    assert sum(p.numel() for p in model.parameters()) == 4231976
    with torch.no_grad():
        feats, logits = model(torch.randn(1, 3, 224, 224), is_feat=True)
        pre, _ = model(torch.randn(1, 3, 224, 224), is_feat=True, preact=True)
    assert [tuple(f.shape)[1:] for f in feats] == [(32, 112, 112), (128, 56, 56), (256, 28, 28),
                                                  (512, 14, 14), (1024, 7, 7), (1024,)]
    assert (pre[2] < 0).any() and (feats[2] >= 0).all()
    assert len(model.get_bn_before_relu()) == 4


def test_imagenet_names_are_distinct_from_cifar():
    assert models.IMAGENET_MODELS == {
        'resnet18_imagenet', 'resnet34_imagenet', 'resnet50_imagenet', 'mobilenetv1_imagenet',
        'myresnet18_imagenet', 'myresnet34_imagenet', 'myresnet50_imagenet'}
    with pytest.raises(UsageError, match='fixed depth'):
        models.parse_block_depth('resnet18_imagenet', '1,1,1,1')
    cifar = models.build_model('ResNet18')
    assert cifar.conv1.kernel_size == (3, 3) and not hasattr(cifar, 'maxpool')
    assert models.name_from_path('save/models/resnet34_imagenet_imagenet_lr_0.1_decay_0.0001_trial_0/'
                                 'ckpt_epoch_100.pth') == 'resnet34_imagenet'
    assert models.name_from_path('save/models/myresnet18_imagenet-1-2-1-2_imagenet_lr_0.1_decay_'
                                 '0.0001_trial_0/x.pth') == 'myresnet18_imagenet'
    assert models.name_from_path('/root/.cache/torch/hub/checkpoints/resnet50-0676ba61.pth') == \
        'resnet50_imagenet'


# ---- torchvision teachers as --path_t --------------------------------------------------------

@pytest.fixture
def hub(tmp_path, monkeypatch):
    before = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / 'hub'))
    yield tmp_path / 'hub' / 'checkpoints'
    torch.hub.set_dir(before)


def test_torchvision_teacher_from_the_hub_cache(hub, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError('must not download a file that is in the cache')
    monkeypatch.setattr(torch.hub, 'download_url_to_file', no_network)
    hub.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), hub / 'resnet18-f37072fd.pth')
    assert pretrained.resolve('torchvision:resnet18') == str(hub / 'resnet18-f37072fd.pth')
    assert pretrained.resolve('./save/x.pth') == './save/x.pth'


def test_torchvision_teacher_offline_is_one_line_saying_where_to_put_it(hub, monkeypatch):
    def offline(url, dst, *args, **kwargs):
        raise OSError('Temporary failure in name resolution')
    monkeypatch.setattr(torch.hub, 'download_url_to_file', offline)
    with pytest.raises(UsageError) as err:
        pretrained.resolve('torchvision:resnet34')
    message = str(err.value)
    assert '\n' not in message
    assert 'resnet34-b627a593.pth' in message and str(hub) in message
    assert 'https://download.pytorch.org/models/resnet34-b627a593.pth' in message
    with pytest.raises(UsageError, match='torchvision:resnet18, torchvision:resnet34'):
        pretrained.resolve('torchvision:vgg16')


def test_torchvision_path_t_names_the_teacher_without_downloading(tmp_path):
    opt = student_parser().parse_args(['--path_t', 'torchvision:resnet50', '--model_s',
                                       'mobilenetv1_imagenet', '--dataset', 'imagenet'])
    opt = finalize(opt, 'student')
    assert opt.model_t == 'resnet50_imagenet'


# ---- loaders ---------------------------------------------------------------------------------

def test_published_loader_reads_the_imagefolder(folder):
    train, test, info = dataset.get_loaders(options(data_folder=folder, distill='crd'), 'cpu', contrast=True)
    assert info['n_data'] == 9 and info['num_classes'] == 3 and info['image_size'] == 224
    seen = []
    for b in batches(train):
        assert b['input'].shape[1:] == (3, 224, 224) and b['contrast_idx'].shape[1] == 5
        assert torch.equal(colour_class(b['input'], info['mean'], info['std']), b['target'])
        seen += b['index'].tolist()
    assert sorted(seen) == list(range(9))


def test_fast_path_eval_matches_the_published_transforms(folder):
    _, published, info = dataset.get_loaders(options(data_folder=folder), 'cpu')
    _, fast, _ = dataset.get_loaders(options(data_folder=folder, data_on_device=True), 'cpu')
    (want,), (got,) = batches(published), batches(fast)
    assert torch.equal(got['target'], want['target']) and torch.equal(got['index'], want['index'])
    assert got['input'].dtype == torch.float32 and got['input'].shape == want['input'].shape
    # same decoder family, PIL's antialiased bilinear against torch's: within ~1/255
    assert (got['input'] - want['input']).abs().max() < 0.03


def test_fast_path_train_batches(folder):
    train, _, info = dataset.get_loaders(
        options(data_folder=folder, data_on_device=True, distill='crd'), 'cpu', contrast=True)
    assert isinstance(train, imagenet_gpu.JpegDeviceLoader) and len(train) == 3

    def epoch(n):
        dataset.loader_set_epoch(train, n)
        return batches(train)
    first, again, other = epoch(1), epoch(1), epoch(2)
    seen = []
    for b in first:
        assert b['input'].shape[1:] == (3, 224, 224) and b['contrast_idx'].shape[1] == 5
        assert torch.equal(colour_class(b['input'], info['mean'], info['std']), b['target'])
        assert torch.equal(b['contrast_idx'][:, 0], b['index'])
        seen += b['index'].tolist()
    assert sorted(seen) == list(range(9))  # the CMYK file too
    for a, b in zip(first, again):  # an epoch's order, crops and flips replay exactly (resume)
        assert all(torch.equal(a[k], b[k]) for k in ('input', 'target', 'index'))
    assert not all(torch.equal(a['input'], b['input']) for a, b in zip(first, other))


def test_decode_falls_back_for_files_the_jpeg_decoder_refuses():
    loader = imagenet_gpu.JpegDeviceLoader([], 'cpu', True, (0.5,) * 3, (0.5,) * 3)
    encoded = []
    for fmt, mode in (('JPEG', 'L'), ('PNG', 'RGB'), ('JPEG', 'RGB')):
        buffer = io.BytesIO()
        Image.new(mode, (30, 20), 200 if mode == 'L' else (200, 20, 20)).save(buffer, fmt)
        encoded.append(torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8))
    images = loader.decode(encoded)
    assert [tuple(im.shape) for im in images] == [(3, 20, 30)] * 3
    assert images[1][:, 5, 5].tolist() == [200, 20, 20]


@pytest.mark.parametrize('damage', ['truncated', 'not an image'])
def test_fast_path_names_a_file_it_cannot_decode_in_one_line(tmp_path, damage):
    root = write_imagenet(str(tmp_path), odd_files=False)
    bad = os.path.join(root, 'imagenet', 'train', WNIDS[1], f'{WNIDS[1]}_2.JPEG')
    good = open(bad, 'rb').read()
    with open(bad, 'wb') as f:
        f.write(good[:len(good) // 3] if damage == 'truncated' else b'\xff\xd8 not really a jpeg')
    train, _, _ = dataset.get_loaders(options(data_folder=root, data_on_device=True), 'cpu')
    with pytest.raises(DataFileError) as err:
        batches(train)
    message = str(err.value)
    assert message.startswith(f'cannot read image {bad} (') and '\n' not in message


def rrc_statistics(boxes, height, width):
    top, left, h, w = boxes.double().unbind(1)
    return torch.stack([(h * w / (height * width)).mean(), (w / h).log().mean(),
                        (top / (height - h + 1)).mean(), (left / (width - w + 1)).mean()])


@pytest.mark.parametrize('height,width', [(375, 500), (500, 333), (64, 64)])
def test_crop_boxes_have_torchvisions_distribution(height, width):
    n = 20000
    ours = imagenet_gpu.crop_boxes([height] * n, [width] * n, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    image = torch.empty(1, height, width)
    theirs = torch.tensor([transforms.RandomResizedCrop.get_params(
        image, scale=[0.08, 1.0], ratio=[3 / 4, 4 / 3]) for _ in range(n)])
    for boxes in (ours, theirs):
        top, left, h, w = boxes.unbind(1)
        assert (top >= 0).all() and (left >= 0).all()
        assert (top + h <= height).all() and (left + w <= width).all() and (h > 0).all()
    torch.testing.assert_close(rrc_statistics(ours, height, width),
                               rrc_statistics(theirs, height, width), atol=0.01, rtol=0)


@pytest.mark.parametrize('height,width', [(10, 1000), (1000, 10)])
def test_crop_boxes_fall_back_like_torchvision(height, width):
    ours = imagenet_gpu.crop_boxes([height], [width], torch.Generator().manual_seed(0))
    theirs = transforms.RandomResizedCrop.get_params(torch.empty(1, height, width),
                                                     scale=[0.08, 1.0], ratio=[3 / 4, 4 / 3])
    assert ours[0].tolist() == list(theirs)


# ---- methods, MC and BCS on the ImageNet networks --------------------------------------------

PAIRS = [('resnet34_imagenet', 'resnet18_imagenet'), ('resnet50_imagenet', 'mobilenetv1_imagenet')]
SAME_CHANNELS_ONLY = {'fsp', 'kdsvd'}
N_DATA, NCE_K = 32, 8


@pytest.fixture(scope='module')
def nets():
    torch.manual_seed(0)
    built = {}

    def get(name):
        if name not in built:
            built[name] = models.build_model(name, num_classes=10)
        return built[name]
    return get


def method_opt(model_s):
    return argparse.Namespace(**dict(published_option_values(),   # a new method's options too
                                     kd_T=4.0, hint_layer=2, feat_dim=16, nce_k=NCE_K, nce_t=0.07,
                              nce_m=0.5, mode='exact', model_s=model_s, learning_rate=0.01, dkd_alpha=1.0,
                              dkd_beta=8.0, dkd_T=4.0, dkd_warmup=20.0, dist_beta=1.0, dist_gamma=1.0,
                              dist_tau=4.0, logit_stand=False, gamma=1.0, alpha=0.0, beta=1.0))


@pytest.mark.parametrize('pair', PAIRS, ids='->'.join)
@pytest.mark.parametrize('name', sorted(METHODS))
def test_every_method_takes_a_step_on_imagenet_networks(name, pair, nets):
    t_name, s_name = pair
    teacher, student = nets(t_name).eval(), nets(s_name).train()
    preact = METHODS[name].preact
    s_shapes = feature_shapes(student, preact, SIZE)
    t_shapes = feature_shapes(teacher, preact, SIZE)
    if name in SAME_CHANNELS_ONLY and 'mobilenet' in s_name:
        with pytest.raises(UsageError, match='same channels'):
            build_distiller(name, method_opt(s_name), s_shapes, t_shapes, N_DATA)
        return
    torch.manual_seed(1)
    method = build_distiller(name, method_opt(s_name), s_shapes, t_shapes, N_DATA).train()
    x = torch.randn(2, 3, SIZE, SIZE)
    index = torch.tensor([3, 7])
    contrast = torch.randint(0, N_DATA, (2, NCE_K + 1))
    contrast[:, 0] = index
    batch = {'input': x, 'target': torch.tensor([1, 2]), 'index': index, 'contrast_idx': contrast}
    modules = method.init_modules(student) if method.has_init_stage else None
    with torch.no_grad():
        t_feats, t_logit = teacher(x, is_feat=True, preact=preact)
    s_feats, s_logit = student(x, is_feat=True, preact=preact)
    if modules is not None:  # the init stage is where AB, FT and FSP learn
        loss = method.init_loss(s_feats if name != 'factor' else None, t_feats)
        params = list(modules.parameters())
    else:
        loss = sum(method(s_feats, s_logit, t_feats, t_logit, batch).values())  # with CE
        params = list(student.parameters()) + list(method.trainable.parameters())
    assert loss.shape == () and torch.isfinite(loss)
    optimizer = torch.optim.SGD(params, lr=0.01)
    optimizer.zero_grad()
    loss.backward()
    before = [p.detach().clone() for p in params]
    optimizer.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, params))
    assert all(p.grad is None for p in teacher.parameters())


def test_milestone_checking_on_a_variable_depth_imagenet_resnet(nets):
    student = models.build_model('myresnet18_imagenet', num_classes=10, block_depth=[1, 3, 2, 1])
    teacher = nets('resnet34_imagenet').eval()
    assert mc_stage_count('myresnet18_imagenet') == 4 == mc_stage_count('mobilenetv1_imagenet')
    weights = mc_weights('myresnet18_imagenet', [1, 3, 2, 1], 4)
    assert weights == [2.0, 2 / 3, 1.0, 2.0]
    s_shapes, t_shapes = feature_shapes(student, image_size=SIZE), feature_shapes(teacher, image_size=SIZE)
    check_mc_shapes(s_shapes, t_shapes, 4)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        t_feats, _ = teacher(x, is_feat=True)
    s_feats, _ = student(x, is_feat=True)
    loss = MilestoneChecking(4.0, weights)(s_feats, t_feats)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert student.layer2[2].conv2.weight.grad.abs().sum() > 0
    with pytest.raises(UsageError, match='equal stage shapes'):
        check_mc_shapes(feature_shapes(nets('mobilenetv1_imagenet'), image_size=SIZE), t_shapes, 4)


def test_bcs_moves_blocks_between_imagenet_stages():
    rates = bcs.exchange_rates('myresnet18_imagenet', num_classes=1000)
    assert rates == [4, 4, 4]  # stages double their width: a block costs 4x the one before
    limits = bcs.teacher_limits('resnet34_imagenet', 4)
    assert limits == [3, 4, 6, 3]
    scores = {}

    def score_phase(compositions, phase):  # a deeper third stage scores best
        out = [c[2] - 0.1 * sum(c) for c in compositions]
        scores.update(zip(compositions, out))
        return out
    visited, best = bcs.search((2, 2, 2, 2), rates, limits, score_phase)
    assert [c for c, _, _ in visited] == [(2, 2, 2, 2), (2, 2, 6, 1)]
    assert best == (2, 2, 6, 1)
    for composition in scores:  # every candidate builds and keeps about the parameter count
        n = sum(p.numel() for p in models.build_model(
            'myresnet18_imagenet', 1000, list(composition)).parameters())
        assert math.isclose(n, 11689512, rel_tol=0.1)


# ---- end to end ------------------------------------------------------------------------------

@pytest.mark.slow
def test_crd_mc_student_and_a_bcs_phase_on_generated_imagenet(folder, tmp_path):
    """train_student with a torchvision-format teacher, the device-decode path, CRD + MC on a
    variable-depth student; then search.py through a phase that moves a block."""
    import search
    from helper.engine.run import run
    torch.manual_seed(0)
    teacher_file = tmp_path / 'resnet34-b627a593.pth'
    torch.save(torchvision.models.resnet34(weights=None, num_classes=3).state_dict(), teacher_file)
    common = ['--path_t', str(teacher_file), '--dataset', 'imagenet', '--data_folder', folder,
              '--save_root', str(tmp_path / 'save'), '--epochs', '1', '--batch_size', '4',
              '--nce_k', '4', '--num_workers', '0', '--seed', '0', '--device', 'cpu',
              '--print_freq', '1000', '--distill', 'crd', '--mc', '1', '--data_on_device',
              '--model_s', 'myresnet18_imagenet']
    summary = run(student_parser().parse_args(common + ['--block_depth', '1,2,1,1']), 'student')
    assert summary['status'] == 'finished' and summary['model_t'] == 'resnet34_imagenet'
    assert summary['block_depth'] == [1, 2, 1, 1] and math.isfinite(summary['best_acc'])
    # within the teacher's (3,4,6,3): phase 1 moves one block of stage 4 into 4 of stage 3; no
    # later phase has a block to spare
    assert search.main(common + ['--block_depth', '1,1,1,2', '--trial', 'bcs']) == 0
    (folder_name,) = os.listdir(tmp_path / 'save' / 'search')
    found = json.load(open(tmp_path / 'save' / 'search' / folder_name / 'search.json'))
    assert found['exchange_rates'] == [4, 4, 4]
    assert [c['block_depth'] for c in found['candidates']] == [[1, 1, 1, 2], [1, 1, 5, 1]]
    assert found['status'] == 'finished'


def test_loader_benchmark_runs_on_generated_jpegs(tmp_path, monkeypatch):
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    'scripts'))
    import bench_imagenet_loader
    seen = []  # per loader: (--data_on_device, [(images, batch shape, dtype) per pass])
    get_loaders = bench_imagenet_loader.get_loaders

    class Counted:
        def __init__(self, loader):
            self.loader, self.passes = loader, []

        def __getattr__(self, name):
            return getattr(self.loader, name)

        def __len__(self):
            return len(self.loader)

        def __iter__(self):
            n, kinds = 0, set()
            for batch in self.loader:
                n += batch['input'].shape[0]
                kinds.add((tuple(batch['input'].shape[1:]), batch['input'].dtype))
                yield batch
            self.passes.append((n, kinds))

    def counting_get_loaders(opt, device):
        train, test, info = get_loaders(opt, device)
        train = Counted(train)
        seen.append((opt.data_on_device, train.passes))
        return train, test, info
    monkeypatch.setattr(bench_imagenet_loader, 'get_loaders', counting_get_loaders)
    out = tmp_path / 'bench.json'
    result = bench_imagenet_loader.main(['--images', '12', '--batch_size', '4', '--workers', '0',
                                         '--epochs', '1', '--device', 'cpu', '--json', str(out)])
    # both sides ran: the published pipeline, then the device path, each a warm-up pass and one timed
    # pass over all 12 images, yielding the same kind of batch
    assert [on_device for on_device, _ in seen] == [False, True]
    for _, passes in seen:
        assert [n for n, _ in passes] == [12, 12]
        assert all(kinds == {((3, 224, 224), torch.float32)} for _, kinds in passes)
    assert result['published'] > 0 and result['fast'] > 0
    saved = json.loads(out.read_text())
    assert saved == result and saved['device'] == 'cpu'
    assert (saved['workers'], saved['batch_size']) == (0, 4)


@pytest.mark.parametrize('problem', ['fewer images than a batch', 'no such folder'])
def test_loader_benchmark_refuses_bad_input_in_one_line(tmp_path, capsys, problem):
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'scripts'))
    import bench_imagenet_loader
    argv = ['--batch_size', '16', '--workers', '0', '--epochs', '1', '--device', 'cpu']
    if problem == 'no such folder':
        argv += ['--data_folder', str(tmp_path / 'missing')]
    else:
        argv += ['--images', '10']  # one per class
    with pytest.raises(SystemExit) as end:
        bench_imagenet_loader.main(argv)
    assert end.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith('error: ') and 'Traceback' not in err
    assert ('fewer than one batch of 16' if problem != 'no such folder' else str(tmp_path / 'missing')) in err


def _ddp_loader_worker(rank, store, folder, out_dir):
    import torch.distributed as tdist
    torch.set_num_threads(1)
    tdist.init_process_group('gloo', init_method=f'file://{store}', rank=rank, world_size=2)
    try:
        train, test, _ = dataset.get_loaders(
            options(data_folder=folder, data_on_device=True, distill='crd', batch_size=2), 'cpu')
        dataset.loader_set_epoch(train, 1)
        first = batches(train)
        torch.save({'train': torch.cat([b['index'] for b in first]),
                    'inputs': torch.cat([b['input'] for b in first]),
                    'test': torch.cat([b['index'] for b in batches(test)])},
                   os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        tdist.destroy_process_group()


@pytest.mark.slow
def test_fast_path_shards_under_ddp(folder, tmp_path):
    import torch.multiprocessing as mp
    mp.start_processes(_ddp_loader_worker, args=(str(tmp_path / 'store'), folder, str(tmp_path)),
                       nprocs=2, start_method='spawn')
    a, b = (torch.load(tmp_path / f'rank{r}.pt') for r in range(2))
    assert len(a['train']) == len(b['train']) == 5  # 9 images: padded to 10, as DistributedSampler
    assert set(a['train'].tolist()) | set(b['train'].tolist()) == set(range(9))
    assert sorted(a['test'].tolist() + b['test'].tolist()) == [0, 1, 2]  # no duplicates
    assert not torch.equal(a['inputs'], b['inputs'])


# mdistiller's configs/imagenet/{r34_r18,r50_mv1}/{kd,crd}.yaml: total batch, lr, loss weights
PUBLISHED_RECIPES = {
    ('resnet34_imagenet', 'resnet18_imagenet', 'kd'): (512, 0.2, (0.5, 0.5, 0.0), 1.0),
    ('resnet34_imagenet', 'resnet18_imagenet', 'crd'): (256, 0.1, (1.0, 0.0, 0.8), 4.0),
    ('resnet50_imagenet', 'mobilenetv1_imagenet', 'kd'): (512, 0.2, (0.5, 0.5, 0.0), 1.0),
    ('resnet50_imagenet', 'mobilenetv1_imagenet', 'crd'): (256, 0.1, (1.0, 0.0, 0.8), 4.0),
    ('resnet34_imagenet', 'resnet18_imagenet', 'dkd'): (512, 0.2, (1.0, 0.0, 1.0), 4.0),
    ('resnet50_imagenet', 'mobilenetv1_imagenet', 'dkd'): (512, 0.2, (1.0, 0.0, 1.0), 4.0),
}
# mdistiller configs/imagenet/*/dkd.yaml over its cfg.py defaults (ALPHA 1.0)
PUBLISHED_DKD = {'resnet18_imagenet': (1.0, 0.5, 1.0, 1), 'mobilenetv1_imagenet': (1.0, 2.0, 1.0, 1)}


def test_train_sh_imagenet_recipes_are_the_published_settings_on_8_gpus():
    from test_cli import commands_in
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, 'scripts', 'train.sh')) as f:
        found = [argv for script, argv in commands_in(f.read())
                 if script == 'train_student' and 'imagenet' in argv]
    recipes = {}
    for argv in found:
        opt = finalize(student_parser().parse_args(argv), 'student')
        recipes[(opt.model_t, opt.model_s, opt.distill)] = opt
    assert set(recipes) == set(PUBLISHED_RECIPES)
    for key, (batch, lr, weights, kd_T) in PUBLISHED_RECIPES.items():
        opt = recipes[key]
        assert opt.scale_lr and opt.batch_size * 8 == batch
        assert opt.learning_rate * 8 == pytest.approx(lr)
        assert (opt.gamma, opt.alpha, opt.beta) == weights and opt.kd_T == kd_T
        assert (opt.epochs, opt.lr_decay_epochs, opt.lr_decay_rate) == (100, [30, 60, 90], 0.1)
        assert (opt.weight_decay, opt.momentum) == (1e-4, 0.9)
        assert opt.dataset == 'imagenet' and opt.data_on_device
        if opt.distill == 'crd':
            assert (opt.nce_k, opt.feat_dim, opt.nce_t, opt.nce_m) == (16384, 128, 0.07, 0.5)
        if opt.distill == 'dkd':
            assert (opt.dkd_alpha, opt.dkd_beta, opt.dkd_T, opt.dkd_warmup) == PUBLISHED_DKD[opt.model_s]
