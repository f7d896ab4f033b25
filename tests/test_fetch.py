"""The teacher fetcher against a local HTTP server (loopback only)."""
import io
import os
import socket
import subprocess
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from helper.tools import fetch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CKPT = 'ckpt_epoch_240.pth'
MIRROR_PATH = '/releases/download/checkpoints/cifar_teachers.tar'


def primary_path(name):
    return f'/repo/{name}_vanilla/{CKPT}'


class Server:
    """Serves `routes` (path -> bytes); any other path is a 404. Logs (path, Range) pairs."""

    def __init__(self):
        self.routes, self.log, self.honour_range = {}, [], True
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                wanted = self.headers.get('Range')
                outer.log.append((self.path, wanted))
                body = outer.routes.get(self.path)
                if body is None:
                    return self.send_error(404)
                start = int(wanted[len('bytes='):].split('-')[0]) if wanted else 0
                if not (wanted and outer.honour_range):
                    self.send_response(200)
                    start = 0
                elif start >= len(body):
                    self.send_response(416)
                    self.send_header('Content-Range', f'bytes */{len(body)}')
                    self.send_header('Content-Length', '0')
                    return self.end_headers()
                else:
                    self.send_response(206)
                    self.send_header('Content-Range', f'bytes {start}-{len(body) - 1}/{len(body)}')
                self.send_header('Content-Length', str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.base = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def paths(self):
        return [path for path, _ in self.log]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def make_tar(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w') as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope='module')
def resnet56_bytes():
    """A resnet56 checkpoint in the published layout (random weights, fixed seed)."""
    from models import model_dict
    torch.manual_seed(0)
    model = model_dict['resnet56'](num_classes=100)
    buffer = io.BytesIO()
    torch.save({'model': model.state_dict(), 'epoch': 240,
                'accuracy': torch.tensor(72.34), 'optimizer': {'state': {}, 'param_groups': []}},
               buffer)
    return buffer.getvalue()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


def fetch_into(tmp_path, server, names, mirror_path=MIRROR_PATH):
    return fetch.fetch(names, save_root=str(tmp_path / 'save'),
                       link_root=str(tmp_path / 'checkpoints' / 'cifar100'),
                       primary=server.base + '/repo/{name}_vanilla/' + CKPT,
                       mirror=server.base + mirror_path, timeout=5)


def saved(tmp_path, name):
    return tmp_path / 'save' / 'models' / f'{name}_vanilla' / CKPT


@pytest.mark.slow
def test_shell_script_falls_back_to_mirror_and_links_both_path_styles(tmp_path, server,
                                                                        resnet56_bytes):
    # Published layout: a leading cifar_teachers/ folder; a path-traversal entry comes first.
    server.routes[MIRROR_PATH] = make_tar({
        f'../resnet56_vanilla/{CKPT}': b'evil',
        f'cifar_teachers/resnet56_vanilla/{CKPT}': resnet56_bytes,
        f'cifar_teachers/resnet110_vanilla/{CKPT}': b'not needed',
    })
    env = dict(os.environ, CRD_TEACHER_URL_PRIMARY=server.base + '/repo/{name}_vanilla/' + CKPT,
               CRD_TEACHER_URL_MIRROR=server.base + MIRROR_PATH)
    run = subprocess.run(['sh', os.path.join(ROOT, 'scripts', 'fetch_pretrained_teachers.sh'),
                          'resnet56'], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert server.paths() == [primary_path('resnet56'), MIRROR_PATH]
    assert saved(tmp_path, 'resnet56').read_bytes() == resnet56_bytes
    assert '(100%)' in run.stderr
    assert 'test accuracy 72.34' in run.stdout
    assert not (tmp_path / 'save' / 'models' / 'resnet110_vanilla').exists()
    assert not (tmp_path / 'save' / 'resnet56_vanilla').exists()  # the traversal entry

    link = tmp_path / 'checkpoints' / 'cifar100' / 'resnet56_vanilla'
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert (link / CKPT).read_bytes() == resnet56_bytes
    assert not list((tmp_path / 'save' / 'models' / 'resnet56_vanilla').glob('*.part'))

    # Second run: already present and valid, so nothing is requested.
    before = len(server.log)
    assert fetch_into(tmp_path, server, ['resnet56']) == 0
    assert len(server.log) == before


def test_primary_source_is_used_when_it_serves_the_file(tmp_path, server, resnet56_bytes):
    server.routes[primary_path('resnet56')] = resnet56_bytes
    assert fetch_into(tmp_path, server, ['resnet56']) == 0
    assert server.paths() == [primary_path('resnet56')]
    assert saved(tmp_path, 'resnet56').read_bytes() == resnet56_bytes


def test_primary_page_that_is_not_a_checkpoint_falls_back(tmp_path, server, resnet56_bytes):
    server.routes[primary_path('resnet56')] = b'<html>moved</html>'
    server.routes[MIRROR_PATH] = make_tar({f'resnet56_vanilla/{CKPT}': resnet56_bytes})
    assert fetch_into(tmp_path, server, ['resnet56']) == 0
    assert server.paths() == [primary_path('resnet56'), MIRROR_PATH]
    assert saved(tmp_path, 'resnet56').read_bytes() == resnet56_bytes


def test_files_that_do_not_load_are_rejected(tmp_path, server, resnet56_bytes, capsys):
    server.routes[MIRROR_PATH] = make_tar({
        f'cifar_teachers/resnet110_vanilla/{CKPT}': resnet56_bytes,  # wrong architecture
        f'cifar_teachers/wrn_40_2_vanilla/{CKPT}': os.urandom(4096),  # garbage
    })
    assert fetch_into(tmp_path, server, ['resnet110', 'wrn_40_2']) == 3
    err = capsys.readouterr().err
    for name in ('resnet110', 'wrn_40_2'):
        assert f'error: {name}: the mirror file does not load' in err
        assert not saved(tmp_path, name).exists()
        assert not os.path.exists(str(saved(tmp_path, name)) + '.part')
        assert not (tmp_path / 'checkpoints' / 'cifar100' / f'{name}_vanilla').exists()


def test_existing_garbage_file_is_fetched_again(tmp_path, server, resnet56_bytes, capsys):
    target = saved(tmp_path, 'resnet56')
    target.parent.mkdir(parents=True)
    target.write_bytes(b'garbage')
    server.routes[MIRROR_PATH] = make_tar({f'cifar_teachers/resnet56_vanilla/{CKPT}':
                                           resnet56_bytes})
    assert fetch_into(tmp_path, server, ['resnet56']) == 0
    assert target.read_bytes() == resnet56_bytes
    assert 'existing file does not load' in capsys.readouterr().out


@pytest.mark.parametrize('honour_range', [True, False])
@pytest.mark.parametrize('have', ['half', 'all'])
def test_partial_mirror_download_resumes(tmp_path, server, resnet56_bytes, honour_range, have):
    tar_bytes = make_tar({f'cifar_teachers/resnet56_vanilla/{CKPT}': resnet56_bytes})
    server.routes[MIRROR_PATH] = tar_bytes
    server.honour_range = honour_range
    kept = len(tar_bytes) // 2 if have == 'half' else len(tar_bytes)
    part = tmp_path / 'save' / 'downloads' / 'cifar_teachers.tar.part'
    part.parent.mkdir(parents=True)
    part.write_bytes(tar_bytes[:kept])

    assert fetch_into(tmp_path, server, ['resnet56']) == 0
    mirror_requests = [r for p, r in server.log if p == MIRROR_PATH]
    assert mirror_requests == [f'bytes={kept}-']
    assert saved(tmp_path, 'resnet56').read_bytes() == resnet56_bytes
    # The finished archive is kept (other teachers are still missing), intact, under its name.
    assert (part.parent / 'cifar_teachers.tar').read_bytes() == tar_bytes


def test_offline_gives_one_clear_error_per_teacher(tmp_path, capsys):
    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(('127.0.0.1', 0))
        base = f'http://127.0.0.1:{probe.getsockname()[1]}'
    code = fetch.fetch(['resnet56', 'vgg13'], save_root=str(tmp_path / 'save'),
                       link_root=str(tmp_path / 'links'), primary=base + '/{name}.pth',
                       mirror=base + '/cifar_teachers.tar', timeout=5)
    out, err = capsys.readouterr()
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith('error: ')]
    assert [line.split(':')[1].strip() for line in lines[:2]] == ['resnet56', 'vgg13']
    assert all('both sources failed' in line and 'cannot connect' in line for line in lines[:2])
    assert 'summary: 0 downloaded, 0 already present, 2 failed: resnet56, vgg13' in out
    assert not saved(tmp_path, 'resnet56').exists()


def test_links_fall_back_to_hardlinks_without_symlinks(tmp_path, resnet56_bytes, monkeypatch):
    target = saved(tmp_path, 'resnet56')
    target.parent.mkdir(parents=True)
    target.write_bytes(resnet56_bytes)

    def refuse(*args, **kwargs):
        raise OSError('symlinks not allowed here')
    monkeypatch.setattr(os, 'symlink', refuse)
    code = fetch.fetch(['resnet56'], save_root=str(tmp_path / 'save'),
                       link_root=str(tmp_path / 'links'), primary='http://127.0.0.1:9/{name}',
                       mirror='http://127.0.0.1:9/none', timeout=1)
    assert code == 0
    linked = tmp_path / 'links' / 'resnet56_vanilla' / CKPT
    assert not linked.parent.is_symlink()
    assert os.path.samefile(linked, target)


@pytest.mark.slow
def test_unknown_name_is_a_usage_error():
    run = subprocess.run(['sh', os.path.join(ROOT, 'scripts', 'fetch_pretrained_teachers.sh'),
                          'resnet57'], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip().count('\n') == 0
    assert "unknown teacher 'resnet57'" in run.stderr and "'resnet56'" in run.stderr


def test_default_is_every_published_teacher():
    assert fetch.parse_names([]) == ['resnet56', 'resnet110', 'resnet32x4', 'wrn_40_2',
                                     'vgg13', 'ResNet50']
    assert fetch.parse_names(['vgg13', 'vgg13']) == ['vgg13']


def test_eval_prints_test_accuracy_beside_the_published_one(tmp_path, capsys):
    """A resnet56 whose classifier always answers class 7 scores exactly 1% on a test set with
    one image per class; the published resnet56 accuracy is 72.34."""
    from helpers_data import write_tiny_cifar100
    from models import model_dict
    model = model_dict['resnet56'](num_classes=100)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.zero_()
        model.fc.bias[7] = 1.0
    path = saved(tmp_path, 'resnet56')
    path.parent.mkdir(parents=True)
    torch.save({'model': model.state_dict(), 'epoch': 240, 'accuracy': 72.34}, path)
    data = write_tiny_cifar100(str(tmp_path / 'data'))
    argv = ['resnet56', '--save_root', str(tmp_path / 'save'), '--link_root', str(tmp_path / 'links'), '--eval']
    assert fetch.main(argv + ['--data_folder', data]) == 0
    out = capsys.readouterr().out
    assert 'resnet56: CIFAR-100 test top-1 1.00 (published 72.34, difference -71.34)' in out
    assert fetch.main(argv + ['--data_folder', str(tmp_path / 'nothing')]) == 0
    assert '--eval: no CIFAR-100 test set at' in capsys.readouterr().out
