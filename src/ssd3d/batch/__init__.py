"""Many runs: ``ssd3d batch`` (``ssd3d.batch.jobs``: a file of prompts) and the runner it
shares with ``ssd3d bench --ray`` (``ssd3d.batch.runner``: one after another here, or as
Ray tasks on a cluster). Nothing is imported here: the CLI reads the runner's address
rule without loading torch."""
