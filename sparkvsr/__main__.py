"""`python -m sparkvsr ...`: the command line (see sparkvsr/cli.py)."""

from sparkvsr.runtime import configure_process

configure_process()  # before anything imports cv2 (see sparkvsr/runtime.py)

from sparkvsr.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
