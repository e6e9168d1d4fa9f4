"""The small library the job entrypoints share, one package per concern:
schema (experiment and sweep files), cluster (worker groups, capacity),
rllib (plans and the PPOConfig), run (RunState and the training loop),
storage (the bucket's layout, objects, checkpoint writes), sweeps (Tune
wiring and the trial), reports (tables, plots, sweep reports)."""
