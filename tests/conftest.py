import os
import sys
import threading

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
FIXTURES = os.path.join(ROOT, 'tests', 'fixtures')

from helpers_data import train_tiny_teacher, write_tiny_cifar100  # noqa: E402 (needs ROOT on the path)


@pytest.fixture(scope='session', autouse=True)
def one_thread():
    """One intra-op thread: the suite's batches are tiny and it shares the cores with the
    subprocesses some tests start, where a second OpenMP thread slows small forwards a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_thread_everywhere(monkeypatch):
    """For bitwise comparisons: one intra-op thread in this thread, in every thread started during the
    test (co-trained runs) and, through the environment, in every process it starts. Returns the
    names of the threads that set it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    for name in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
        monkeypatch.setenv(name, '1')
    started, run = [], threading.Thread.run

    def run_with_one_thread(self):
        torch.set_num_threads(1)
        started.append(self.name)
        run(self)
    monkeypatch.setattr(threading.Thread, 'run', run_with_one_thread)
    yield started
    torch.set_num_threads(before)


@pytest.fixture(scope='session', autouse=True)
def private_cache_dir(tmp_path_factory):
    """--fast's measured compile costs go to a per-session cache (subprocesses inherit it): the
    suite neither reads nor changes the user's."""
    before = os.environ.get('XDG_CACHE_HOME')
    os.environ['XDG_CACHE_HOME'] = str(tmp_path_factory.mktemp('xdg_cache'))
    yield
    if before is None:
        os.environ.pop('XDG_CACHE_HOME', None)
    else:
        os.environ['XDG_CACHE_HOME'] = before


@pytest.fixture(scope='session')
def shared_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp('shared_train_data'))


@pytest.fixture(scope='session')
def data(shared_dir):
    """The tiny CIFAR-100-layout --data_folder every training test reads (never writes)."""
    return write_tiny_cifar100(os.path.join(shared_dir, 'data'))


@pytest.fixture(scope='session')
def teachers(shared_dir, data):
    """teachers(model='resnet8', block_depth=None): the path of a 1-epoch teacher checkpoint,
    trained once per session."""
    cache = {}

    def get(model='resnet8', block_depth=None):
        if (model, block_depth) not in cache:
            cache[model, block_depth] = train_tiny_teacher(data, os.path.join(shared_dir, 'teachers'), model,
                                                           block_depth)
        return cache[model, block_depth]
    return get


@pytest.fixture(scope='session')
def teacher(teachers):
    return teachers()
