"""`python -m controlplane.containers images|daemon ...`: what `make images-local` and
`make docker-engine` / `make docker-engine-stop` run."""

from __future__ import annotations

import argparse
import sys

from controlplane.containers import daemon, images
from jobs.common.errors import exits_cleanly


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controlplane.containers", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("images", help="build the stand-in base and the project's images here (no registry)")
    build.add_argument("--variants", nargs="+", default=list(images.VARIANTS), choices=images.VARIANTS)
    build.add_argument("--mirror", default=images.DEBIAN_MIRROR, help="Debian mirror for debootstrap")
    engine_cmd = commands.add_parser("engine", help="the project's own dockerd (when no other engine answers)")
    engine_cmd.add_argument("action", choices=("start", "stop", "status"))
    args = parser.parse_args(argv)

    if args.command == "images":
        engine, started = daemon.connect(start=True)
        try:
            builder = images.ImageBuilder(
                engine, images.ImageNames.from_env(), variants=tuple(args.variants), mirror=args.mirror
            )
            builder.build_all()
        finally:
            daemon.stop_if_idle(engine, started)
        return 0

    own = daemon.project_daemon()
    if args.action == "start":
        engine, _ = daemon.connect(start=True)
        print(f"export DOCKER_HOST={engine.host}")
    elif args.action == "stop":
        if not own.stop():
            print(f"the project's dockerd is not running ({own.host})")
    else:
        engine, _ = daemon.connect(start=False)
        version = engine.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
        print(f"DOCKER_HOST={engine.host}: Docker Engine {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
