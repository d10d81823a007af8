import os

# As the CLI does (ssd3d/cli.py): idle OpenMP threads must not spin on a shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
