import os

# As the CLI does (ssd3d/cli.py): idle OpenMP threads must not spin on a shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test, restored after: on a busy 2-core machine each parallel
    region of a tiny network can wait a scheduler slice for its second thread (measured:
    1.7 s instead of 0.02 s per forward)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
