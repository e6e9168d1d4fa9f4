"""The ports Ray listens on inside every head, as k8s/base/raycluster.yaml declares them (a unit
test holds the two together). The dashboard's is also the default on 127.0.0.1 for every provider
(`DASHBOARD_PORT=<port>` picks another), so that `ray job submit` finds it where Ray's docs say."""

GCS_PORT = 6379
DASHBOARD_PORT = 8265
