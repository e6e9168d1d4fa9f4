"""PROVIDER=docker: the cluster as containers of the project's images on a Docker Engine.

daemon.py    which Docker Engine (DOCKER_HOST, the system one, or our own dockerd, by PID)
images.py    `make images-local`: a stand-in base from Debian's packages, then docker/Dockerfile on it
provider.py  `make cluster-up|cluster-down|cluster-status PROVIDER=docker`

(Not named `docker`, so as not to shadow the Docker SDK.)
"""
