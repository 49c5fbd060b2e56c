"""Experiments as Ray jobs: connecting to a cluster's job server with Ray's token auth (client.py), the working dir
that travels with a job (workdir.py), and submitting / following one (jobs.py). Built on Ray's own
JobSubmissionClient and runtime_env; the commands in orchestrator/commands/{submit,jobs,logs,stop}.py are thin."""
