"""The local provider: a real multi-node Ray cluster and a real S3 server on
this machine, every server bound to 127.0.0.1 where it can be told to."""
