# A stand-in for rayproject/ray:<pinned Ray>-py311-{cpu,gpu}, for a machine that
# reaches no container registry. Built by `make images-local`, offline
# (--network=none), on a Debian bookworm root filesystem made with debootstrap
# and `docker import`ed (ROOTFS_IMAGE); docker/Dockerfile is then built on top,
# unchanged, with BASE_IMAGE pointing here.
#
# What docker/Dockerfile relies on, as in rayproject/ray: user `ray` (uid 1000,
# group users = 100) with home /home/ray, `python` and `pip` on PATH and
# writable by that user (here a venv at /home/ray/venv; rayproject has conda at
# /home/ray/anaconda3), the pinned Ray installed, Python 3.11 (Debian's). One
# base serves both variants: torch's CUDA wheels bring their own CUDA libraries
# and the NVIDIA runtime brings the driver.
ARG ROOTFS_IMAGE=ray-rl-rootfs:bookworm
FROM ${ROOTFS_IMAGE}

ARG RAY_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV LANG=C.UTF-8 \
    LC_ALL=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1

RUN useradd --uid 1000 --gid 100 --create-home --home-dir /home/ray --shell /bin/bash ray

USER 1000:100
ENV HOME=/home/ray \
    VIRTUAL_ENV=/home/ray/venv \
    PATH=/home/ray/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /home/ray

# The pinned Ray from the wheelhouse that `make images-local` fills
# (docker/wheels/common), at the lock's versions so that the project layer on
# top adds packages instead of replacing them. The wheels are bind-mounted for
# this one step: they are in no layer.
RUN --mount=type=bind,source=docker/wheels,target=/tmp/wheels \
    --mount=type=bind,source=requirements.lock,target=/tmp/requirements.lock \
    test -n "${RAY_VERSION}" \
    && python3 -m venv "${VIRTUAL_ENV}" \
    && grep -v -E '^(#|pip==)' /tmp/requirements.lock > /tmp/constraints.txt \
    && python -m pip install --no-cache-dir --no-index --find-links /tmp/wheels/common \
         --constraint /tmp/constraints.txt "ray[default,rllib,tune]==${RAY_VERSION}" \
    && rm /tmp/constraints.txt \
    && ray --version

LABEL org.opencontainers.image.title="ray-rl stand-in base (Debian bookworm, Python 3.11, Ray ${RAY_VERSION})" \
      org.opencontainers.image.description="Local stand-in for rayproject/ray, built by make images-local"
