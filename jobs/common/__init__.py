"""The small library the job entrypoints share: experiment parsing, RLlib
config building, storage (S3 or local) and user-facing errors."""
