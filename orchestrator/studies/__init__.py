"""Studies on Ray Tune: variants of a config -> Tune trials -> nested MLflow runs -> a summary table and plots.

`svgap sweep` (a grid over any config keys x seeds), `svgap allocate` (a grid over external.strategy) and the
scaling study (a grid over resources.generation.actors) are one machinery:

    variants.py     grid parsing and the validated config of every (grid point, seed); the study's identity
    placement.py    the bundles a trial reserves (its own small share + every pool's PoolSpec.bundle)
    trial.py        the Tune trainable: one experiment inside the trial's Ray and placement group
    theory_stop.py  a Tune TrialScheduler that stops a trial shown (Bonferroni) not to reach a comparable one's limit
    progress.py     trials done / running / queued lines, and what a theory stop wrote to the trial's run
    study.py        the driver: checks, parent MLflow run, Tuner (or Tuner.restore), outcomes, summary
    outcomes.py     Tune's results, the child runs and stops.json read back as one outcome per variant
    table.py        the sweep's summary table per grid point, and its plots
    allocation.py   the allocation study's strategies and its paper-style table
"""
