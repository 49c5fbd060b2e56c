"""Where workload plug-ins written before the package layout of issue 24 import their option helpers from
(`from orchestrator.typed import ConfigError, rng`): kept so they still load; new code imports orchestrator.config.typed."""
from orchestrator.config.typed import ConfigError, flatten, from_dict, rng, to_dict  # noqa: F401
