import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
FIXTURES = os.path.join(ROOT, 'tests', 'fixtures')


@pytest.fixture(scope='session', autouse=True)
def one_thread():
    """One intra-op thread: the suite's batches are tiny and it shares 2 cores with the
    subprocesses some tests start; a second OpenMP thread made small forwards up to 100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
