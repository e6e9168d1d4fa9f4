"""What runs ON the Ray cluster: training and evaluation entrypoints, and the
experiment files they read. Submitted with `ray job submit --working-dir .`."""
