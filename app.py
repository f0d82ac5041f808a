"""SparkVSR Studio: ``python app.py`` opens the demo clip on the flow engine in your browser.

Thin by design: parse flags, build the worker client (in-process by default, HTTP with
``--worker``), launch the UI. ``python app.py --help`` lists the flags.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

DEFAULT_PROJECTS = Path("projects")
PREVIEW_CACHE_BYTES = 64 << 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="app.py",
        description="SparkVSR Studio: keyframe-guided video restoration in the browser.",
    )
    parser.add_argument(
        "clip",
        nargs="?",
        default="",
        help="clip to open in every new browser session (default: the demo clip)",
    )
    parser.add_argument("--engine", choices=("flow", "dit"), default="flow", help="engine")
    parser.add_argument(
        "--model", default="", help="dit engine: pipeline folder or hub id (default: released)"
    )
    parser.add_argument(
        "--worker", default="", help="URL of a remote worker (python -m sparkvsr worker)"
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("SPARKVSR_TOKEN", ""),
        help="the remote worker's token (or set SPARKVSR_TOKEN)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve the studio on")
    parser.add_argument("--port", type=int, default=7860, help="port to serve the studio on")
    parser.add_argument("--share", action="store_true", help="also make a public gradio link")
    parser.add_argument(
        "--auth",
        default=os.environ.get("SPARKVSR_AUTH", ""),
        help="user:password the page asks for (or set SPARKVSR_AUTH); required with --share "
        "or a --host other than this machine",
    )
    parser.add_argument(
        "--project",
        default="",
        help="projects folder (default ./projects); if it is itself a project, it is reopened",
    )
    parser.add_argument(
        "--editor",
        default="classic",
        help="editor preselected in the edit panel (classic, upload, pisa-sr, nano-banana-pro)",
    )
    args = parser.parse_args(argv)
    if args.model and args.engine != "dit":
        parser.error("--model applies to --engine dit")
    if args.worker and (args.engine != "flow" or args.model):
        parser.error("--engine/--model belong to the remote worker's own command line")
    if args.auth and not _valid_auth(args.auth):
        parser.error("--auth takes user:password (both non-empty), e.g. --auth editor:s3cret-words")
    exposed = "--share" if args.share else ("" if is_loopback(args.host) else f"--host {args.host}")
    if exposed and not args.auth:
        parser.error(
            f"{exposed} lets other machines reach the studio (its clips, projects and your "
            "compute): add --auth user:password so the page asks who is there"
        )
    return args


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def _valid_auth(auth: str) -> bool:
    user, _, password = auth.partition(":")
    return bool(user and password)


def projects_and_name(project: str) -> tuple[Path, str]:
    """``--project`` as (projects root, project to reopen or "")."""
    from sparkvsr.project import Project

    if not project:
        return DEFAULT_PROJECTS.absolute(), ""
    folder = Path(project).expanduser().absolute()
    if Project.is_project(folder):
        return folder.parent, folder.name
    return folder, ""


def build_client(args: argparse.Namespace, projects: Path):
    from sparkvsr.worker import HttpClient, InProcessClient, WorkerConfig

    if args.worker:
        return HttpClient(args.worker, token=args.token or None)
    engine_config = {"model": args.model} if args.model else {}
    if args.engine == "flow":
        # Renders and previews share the server's memory: the render holds one chunk of
        # output frames (sparkvsr.render.RENDER_CHUNK_BYTES), the preview cache this much
        # (at 4x of 720p one cached frame; the slider on that frame stays instant).
        engine_config["preview_cache_bytes"] = PREVIEW_CACHE_BYTES
    config = WorkerConfig(
        engine=args.engine,
        engine_config=engine_config,
        projects_root=projects,
        # The page already coalesces slider events; keep the worker's own pacing short.
        preview_interval=0.1,
    )
    return InProcessClient(config=config)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from sparkvsr.runtime import configure_process

    configure_process()  # before anything imports cv2 (see sparkvsr/runtime.py)

    from sparkvsr.demo import ensure_demo
    from sparkvsr.errors import SparkVSRError
    from ui import StudioConfig, build_studio

    projects, reopen = projects_and_name(args.project)
    if args.worker and args.project:
        reopen = Path(args.project).name  # a project name on the worker's machine
    clip = args.clip
    if not clip and not reopen and not args.worker:
        clip = str(ensure_demo().lr)
    if clip and not args.worker:
        clip = str(Path(clip).expanduser().absolute())
    try:
        client = build_client(args, projects)
    except SparkVSRError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    app = build_studio(
        client,
        StudioConfig(
            clip=clip, clip_named=bool(args.clip), project=reopen, default_editor=args.editor
        ),
        allowed_paths=() if args.worker else (projects,),
    )
    # SIGTERM (service managers, test harnesses) ends the server like Ctrl-C, so the cleanup
    # below runs: renders are cancelled after their chunk, the page's temp images removed.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        auth = tuple(args.auth.split(":", 1)) if args.auth else None
        app.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth)
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
        client.close()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
