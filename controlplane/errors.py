"""Errors the control plane reports to the user (clear message, exit 1)."""

from jobs.common.errors import UserError


class ClusterError(UserError):
    """The cluster (or a server in it) is not in the state the command needs."""
