"""`worker`: the resident engine served over HTTP for a studio here or elsewhere."""

from __future__ import annotations

from pathlib import Path

from sparkvsr.cli.arguments import engine_settings, sub


def add_worker(commands, name: str) -> None:
    import os

    p = sub(
        commands,
        name,
        "Serve a resident worker over HTTP (FastAPI + uvicorn): the models stay loaded and the "
        "studio UI, on this or another machine, connects to it.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument("--port", type=int, default=7861)
    p.add_argument(
        "--token",
        default=os.environ.get("SPARKVSR_TOKEN"),
        help="clients must send 'Authorization: Bearer TOKEN' (default $SPARKVSR_TOKEN; at "
        "least 16 characters; 'auto' makes a random one and prints it); required to listen on "
        "a non-loopback address",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        help="a host name clients reach the worker by (the Host header; repeatable). Default: "
        "loopback names and the --host address only, so web pages cannot drive the worker",
    )
    p.add_argument(
        "--max-upload",
        type=float,
        default=4.0,
        help="largest clip a client may upload, in GiB (default 4; free disk space also counts)",
    )
    p.add_argument(
        "--preview-frames",
        type=int,
        default=32,
        help="flow: frames whose guidance-independent preview work is kept, for all sessions "
        "together (default 32; bounded by 512 MiB): moving the slider on a kept frame is cheap",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=30.0,
        help="minutes without requests after which a session closes (never while rendering)",
    )
    p.add_argument("--projects", type=Path, default=Path("projects"), help="project folders")
    p.add_argument(
        "--clips",
        type=Path,
        action="append",
        default=[],
        help="only open clips inside this folder (repeatable; default: anywhere; uploads always)",
    )
    p.add_argument("--engine", default="flow", help="flow (CPU, default) or dit (GPU, SparkVSR)")
    p.add_argument("--model", help="dit: pipeline folder or hub id (default JiongzeYu/SparkVSR)")
    p.add_argument("--device", help="dit: cuda, cuda:1, cpu (default: cuda when present)")
    p.add_argument("--offload", action="store_true", help="dit: model-level CPU offload")
    p.add_argument("--vae-tiling", action="store_true", help="dit: tiled VAE for large frames")
    p.add_argument(
        "--preview-interval",
        type=float,
        default=0.5,
        help="seconds between two previews of one session (newer requests supersede older)",
    )


def run_worker(args) -> int:
    from sparkvsr.server import ServeOptions, check_bind, new_token, serve
    from sparkvsr.worker import Worker, WorkerConfig

    # 1. Refuse an unsafe bind before loading any model.
    token = new_token() if args.token == "auto" else args.token
    options = ServeOptions(
        host=args.host,
        port=args.port,
        token=token,
        allowed_hosts=tuple(args.allowed_host),
        max_upload_bytes=int(args.max_upload * 2**30),
    )
    check_bind(options)
    # 2. Build the worker (the engine stays resident), then serve until interrupted.
    engine_config = engine_settings(args)
    if args.engine == "flow":
        engine_config["preview_cache"] = args.preview_frames
    config = WorkerConfig(
        engine=args.engine,
        engine_config=engine_config,
        projects_root=args.projects,
        preview_interval=args.preview_interval,
        clip_roots=tuple(args.clips),
        max_upload_bytes=options.max_upload_bytes,
        idle_timeout=args.idle_timeout * 60,
    )
    with Worker(config) as worker:
        auth = "token required" if token else "no token (loopback only)"
        if args.token == "auto":
            print(f"worker token (give it to clients): {token}", flush=True)
        print(f"worker: http://{args.host}:{args.port} engine {args.engine}, {auth}", flush=True)
        serve(worker, options)
    return 0
