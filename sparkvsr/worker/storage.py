"""What the worker serves and keeps on disk for its callers (a mixin of ``Worker``): files of a
session's project folder, clips uploaded into the media store (size and free-space checks), the
projects list and project actions (rename, duplicate, delete, clear caches).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

from sparkvsr import workspace
from sparkvsr.errors import ProjectError
from sparkvsr.project import Project, safe_join
from sparkvsr.worker.limits import RequestError, TooLarge, upload_pixel_limit
from sparkvsr.worker.requests import (
    PROJECT_ACTIONS,
    AccessDenied,
    FileRequest,
    FileResponse,
    ProjectActionRequest,
    ProjectActionResponse,
    ProjectsRequest,
    ProjectsResponse,
    UploadResponse,
)
from sparkvsr.worker.sessions import output_size


class Storage:
    """The Worker's file, upload and project calls."""

    def get_file(self, request: FileRequest) -> FileResponse:
        """A file of the session's own project folder (refuses paths that leave it)."""
        session = self._session(request.session_id)
        try:
            path = safe_join(session.project.folder, request.path)
        except ProjectError as e:
            raise AccessDenied(str(e)) from e
        if not path.is_file():
            raise ProjectError(f"{request.path} does not exist in this session's project")
        return FileResponse(request.path, str(path), path.stat().st_size)

    def upload_clip(
        self, filename: str, data: Iterator[bytes], *, max_bytes: int | None = None
    ) -> UploadResponse:
        """Store a clip sent by a client in the media store beside the projects (content-
        addressed: the same clip twice is stored once); open it with
        ``OpenClipRequest(clip_path)``. Projects made from it own it: it outlives the upload.

        ``max_bytes``: refuse (TooLarge, nothing kept) a clip larger than this; default
        ``config.max_upload_bytes``. The disk must keep ``config.min_free_bytes`` free.
        """
        limit = self.config.max_upload_bytes if max_bytes is None else max_bytes
        self.uploads_root.mkdir(parents=True, exist_ok=True)
        self.check_upload_space(0)

        def limited() -> Iterator[bytes]:
            size = 0
            for block in data:
                size += len(block)
                if size > limit:
                    raise TooLarge(
                        f"the clip is larger than this worker accepts ({limit / 2**30:.2f} "
                        "GiB); trim it or start the worker with a larger --max-upload"
                    )
                yield block

        target = workspace.store_media(self.projects_root, filename, limited())
        return UploadResponse(str(target), target.stat().st_size)

    def check_upload_space(self, size: int) -> None:
        """Refuse (TooLarge) an upload of ``size`` bytes that would leave less than
        ``config.min_free_bytes`` free on the projects' disk, or exceed ``max_upload_bytes``."""
        if size > self.config.max_upload_bytes:
            raise TooLarge(
                f"the clip ({size / 2**30:.2f} GiB) is larger than this worker accepts "
                f"({self.config.max_upload_bytes / 2**30:.2f} GiB); trim it or start the worker "
                "with a larger --max-upload"
            )
        self.projects_root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.projects_root).free
        if free - size < self.config.min_free_bytes:
            raise TooLarge(
                f"not enough free space for the clip: {free / 2**30:.2f} GiB free, the clip needs "
                f"{size / 2**30:.2f} GiB and {self.config.min_free_bytes / 2**30:.2f} GiB must "
                "stay free"
            )

    def upload_pixel_limit(self, session_id: str) -> int:
        """The most pixels a Reference image uploaded to this session may decode to (checked
        from the image header before decoding)."""
        return upload_pixel_limit(output_size(self._session(session_id).project.state))

    # Projects -----------------------------------------------------------------------------
    def projects(self, request: ProjectsRequest) -> ProjectsResponse:
        """The projects the caller may open, most recently changed first."""
        listed = workspace.list_projects(self.projects_root, request.owner)
        return ProjectsResponse(tuple(listed))

    def project_action(self, request: ProjectActionRequest) -> ProjectActionResponse:
        """Rename, duplicate, delete a project, or clear its caches (finished renders stay).
        The project must be the caller's and not open in any session."""
        if request.action not in PROJECT_ACTIONS:
            raise RequestError(
                f"action {request.action!r} is unknown; choose one of {', '.join(PROJECT_ACTIONS)}"
            )
        folder = self._project_folder(request.project)
        if not Project.is_project(folder):
            raise ProjectError(f"there is no project named {request.project!r}")
        if not workspace.may_open(folder, request.owner):
            raise AccessDenied(f"project {request.project!r} belongs to another browser")
        new_name = request.new_name.strip()
        if request.action in ("rename", "duplicate"):
            self._project_folder(new_name)  # the name rule
        with self._lock:
            # a project stays in _projects while its render runs, even with no tab open on it
            busy = {*self._opening, *self._projects, *(s.name for s in self._sessions.values())}
            # a copy may be taken of an open project (its manifest is replaced atomically)
            open_here = request.project in busy and request.action != "duplicate"
            if open_here or new_name in busy:
                raise ProjectError(
                    f"project {request.project!r} is open or rendering; close it (or open another "
                    "project in its tab, or wait for its render) first"
                )
            held = request.project not in busy
            if held:
                self._opening.add(request.project)
        try:
            if request.action == "rename":
                workspace.rename_project(self.projects_root, request.project, new_name)
                return ProjectActionResponse(new_name)
            if request.action == "duplicate":
                workspace.duplicate_project(self.projects_root, request.project, new_name)
                return ProjectActionResponse(new_name)
            if request.action == "delete":
                freed = workspace.delete_project(self.projects_root, request.project)
                return ProjectActionResponse("", freed)
            freed = workspace.clear_caches(folder)
            return ProjectActionResponse(request.project, freed)
        finally:
            if held:
                with self._lock:
                    self._opening.discard(request.project)
