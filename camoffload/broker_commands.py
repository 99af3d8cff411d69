"""``camoffload broker``: run a dev, hardened or edge-site bridge Mosquitto, or provision
one with ``camoffload broker init``.

::

    camoffload broker [--kind auto|mosquitto|embedded] [--port 1883]          (dev)
    camoffload broker init --out FOLDER --devices cam1,cam2 --workers worker1
        [--dashboards dash1] [--site lobby=cam1,cam2] [--prefix camoffload]
        [--hostname broker.example.com] [--port 8883]
    camoffload broker --config hardened --dir FOLDER [--port 8883] [--bind 0.0.0.0]
    camoffload broker --config bridge --dir FOLDER/clients/lobby [--cloud mqtts://h:8883]

No secret is ever taken from or printed to the command line: passwords live in 0600
files that ``init`` writes, and the bridge reads its own through its client settings
(``broker.password_file``, or ``CAMOFFLOAD_BROKER_PASSWORD``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camoffload.lifecycle import run_with_signals
from pipeline.config import load_config
from pipeline.errors import BrokerError, ConfigError

if TYPE_CHECKING:
    from broker import BrokerProcess

__all__ = ["add_broker_command", "run_broker_command"]

logger = logging.getLogger("camoffload")

_LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _site(text: str) -> tuple[str, list[str]]:
    name, sep, devices = text.partition("=")
    if not sep or not name.strip() or not _names(devices):
        raise argparse.ArgumentTypeError(f"--site wants NAME=DEVICE1,DEVICE2, got {text!r}")
    return name.strip(), _names(devices)


def add_broker_command(sub: Any) -> None:  # argparse's subparsers action type is private
    """Add ``broker`` (and ``broker init``) to the CLI's subcommands."""
    p = sub.add_parser(
        "broker",
        help="run a broker (dev, hardened, edge-site bridge) in the foreground, or `init` one",
        description="Run a broker in the foreground; `camoffload broker init` provisions "
        "the hardened one (CA, certificates, passwords, ACL, client settings).",
    )
    p.add_argument(
        "--config",
        dest="broker_config",
        choices=["dev", "hardened", "bridge"],
        default="dev",
        help="dev: loopback, anonymous (default); hardened: TLS, passwords, ACLs, from --dir; "
        "bridge: an edge-site broker bridged to the cloud, from a site's client folder",
    )
    p.add_argument("--kind", choices=["auto", "mosquitto", "embedded"], default="auto")
    p.add_argument(
        "--port", type=int, default=None, help="dev/bridge 1883, hardened 8883; 0 picks a free port"
    )
    p.add_argument("--dir", type=Path, help="hardened: the `init` folder; bridge: clients/SITE")
    p.add_argument(
        "--bind",
        choices=["127.0.0.1", "0.0.0.0"],  # noqa: S104 - a deliberate choice of the operator
        default="127.0.0.1",
        help="hardened (or bridge with --local-dir): 0.0.0.0 serves other machines",
    )
    p.add_argument(
        "--require-client-cert",
        action="store_true",
        help="hardened: mutual TLS, every client also shows a certificate from the CA",
    )
    p.add_argument("--cloud", help="bridge: the cloud broker's URL (default: the site's settings)")
    p.add_argument(
        "--local-dir",
        type=Path,
        help="bridge: serve the site's LAN with TLS, passwords and ACL from this `init` folder "
        "(default: anonymous, 127.0.0.1 only)",
    )
    p.add_argument("--log-level", default="INFO", choices=_LOG_LEVELS)
    actions = p.add_subparsers(dest="broker_action", metavar="ACTION")
    init = actions.add_parser(
        "init", help="create the CA, certificates, passwords, ACL and client settings"
    )
    init.add_argument("--out", type=Path, required=True, help="a new or empty folder")
    init.add_argument("--devices", type=_names, default=[], help="edge ids: cam1,cam2")
    init.add_argument("--workers", type=_names, default=[], help="worker ids: worker1,worker2")
    init.add_argument("--dashboards", type=_names, default=[], help="read-only status/events")
    init.add_argument(
        "--site",
        dest="sites",
        type=_site,
        action="append",
        default=[],
        metavar="NAME=DEV1,DEV2",
        help="an edge-site bridge identity and the devices behind it (repeatable)",
    )
    init.add_argument("--prefix", default="camoffload", help="topic prefix (default camoffload)")
    init.add_argument(
        "--hostname",
        dest="hostnames",
        action="append",
        default=[],
        help="a name or address clients use for the broker (repeatable; the first goes "
        "into the client settings, default 127.0.0.1)",
    )
    init.add_argument(
        "--port", dest="init_port", type=int, default=8883, help="the broker's TLS port"
    )


def run_broker_command(args: argparse.Namespace) -> int:
    # Imported here: building the parser must not load the broker tooling (cryptography).
    from broker import HardenedFiles, hardened_broker, local_broker

    if args.broker_action == "init":
        return _init(args)
    if args.broker_config == "hardened":
        if args.dir is None:
            raise ConfigError("--config hardened needs --dir FOLDER (from `broker init`)")
        port = args.port if args.port is not None else _manifest_port(args.dir)
        files = HardenedFiles(args.dir)
        proc = hardened_broker(
            args.dir,
            port=port,
            bind=args.bind,
            data_dir=files.data_dir,
            require_client_cert=args.require_client_cert,
        )
    elif args.broker_config == "bridge":
        proc = _bridge(args)
    else:
        proc = local_broker(args.kind, port=1883 if args.port is None else args.port)
    return _serve(proc)


def _manifest_port(folder: Path) -> int:
    from broker import read_manifest

    port = read_manifest(folder).get("port", 8883)
    if not isinstance(port, int):
        raise BrokerError(f"{folder}/broker.json: port is not an integer")
    return port


def _init(args: argparse.Namespace) -> int:
    from broker import identities_from, init_broker_folder

    identities = identities_from(
        devices=args.devices, workers=args.workers, dashboards=args.dashboards, sites=args.sites
    )
    if not identities:
        raise ConfigError("broker init: give at least one of --devices, --workers, --dashboards")
    done = init_broker_folder(
        args.out,
        identities,
        prefix=args.prefix,
        hostnames=args.hostnames,
        port=args.init_port,
    )
    print(f"provisioned {done.files.folder} (0700) for {done.url}, prefix {done.prefix!r}")
    for identity in done.identities:
        print(f"  {identity.role:9} {identity.name:16} {done.client(identity.name).config_file}")
    print(f"run it:   camoffload broker --config hardened --dir {done.files.folder}")
    print(f"keep {done.files.ca_key} offline once every certificate is issued")
    return 0


def _bridge(args: argparse.Namespace) -> BrokerProcess:
    from broker import BridgeSettings, HardenedFiles, bridge_broker

    if args.dir is None:
        raise ConfigError("--config bridge needs --dir FOLDER/clients/SITE (from `broker init`)")
    path = args.dir / "bridge.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        prefix, devices = str(meta["prefix"]), tuple(str(d) for d in meta["devices"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BrokerError(f"cannot read the site description {path}: {exc}") from exc
    overrides = [f"broker.url={args.cloud}"] if args.cloud else []
    config = load_config(args.dir / "camoffload.toml", overrides=overrides)
    settings = BridgeSettings(cloud=config.broker, prefix=prefix, devices=devices)
    return bridge_broker(
        settings,
        port=1883 if args.port is None else args.port,
        data_dir=args.dir / "site-data",
        local=None if args.local_dir is None else HardenedFiles(args.local_dir),
        bind=args.bind,
    )


def _serve(proc: BrokerProcess) -> int:
    async def main(stop: asyncio.Event) -> int:
        info = await asyncio.to_thread(proc.start)
        try:
            print(f"{info.kind} broker listening on {info.url} (Ctrl-C to stop)", flush=True)
            if info.limitations:
                logger.warning("the %s broker lacks: %s", info.kind, info.limitations)
            while not stop.is_set():
                code = proc.returncode()
                if code is not None:
                    logger.error("the %s broker exited with code %d", info.kind, code)
                    return 1
                try:
                    async with asyncio.timeout(0.5):
                        await stop.wait()
                except TimeoutError:
                    pass
            return 0
        finally:
            await asyncio.to_thread(proc.stop)

    return run_with_signals(main)
