"""The projects folder: projects own their media, a visit that changes nothing leaves nothing,
a project opens only for the browser that made it, caches clear without losing outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sparkvsr import workspace
from sparkvsr.errors import ClipMissing
from sparkvsr.project import Project
from sparkvsr.worker import (
    AccessDenied,
    InProcessClient,
    KeyframeRequest,
    OpenClipRequest,
    SessionRequest,
    WorkerConfig,
)
from tests.conftest import moving_frames, write_test_video


@pytest.fixture
def client(tmp_path):
    with InProcessClient(config=WorkerConfig(projects_root=tmp_path / "projects")) as client:
        yield client


def test_an_upload_is_stored_once_beside_the_projects_and_outlives_its_temp_file(tmp_path, client):
    (tmp_path / "upload-tmp").mkdir()
    temp = write_test_video(tmp_path / "upload-tmp" / "holiday clip.mp4", moving_frames(9, 32, 24))
    stored = client.upload_clip(temp)
    again = client.upload_clip(temp)
    assert stored.clip_path == again.clip_path  # the same content is stored once
    assert workspace.is_stored_media(tmp_path / "projects", stored.clip_path)
    assert stored.clip_path.endswith("holiday-clip.mp4") and stored.size == temp.stat().st_size
    info = client.open_clip(OpenClipRequest(clip_path=stored.clip_path, owner="browser-a"))
    client.close_session(SessionRequest(info.session_id))
    shutil.rmtree(tmp_path / "upload-tmp")  # the browser's temporary upload goes away
    reopened = client.open_clip(OpenClipRequest(project=info.project, owner="browser-a"))
    assert reopened.clip.num_frames == 9 and reopened.clip.path == stored.clip_path


def test_a_project_opens_only_for_the_browser_that_made_it(tmp_path, client):
    clip = write_test_video(tmp_path / "clip.mp4", moving_frames(9, 32, 24))
    info = client.open_clip(OpenClipRequest(clip_path=str(clip), owner="browser-a"))
    client.set_keyframe(KeyframeRequest(info.session_id, 4))
    client.close_session(SessionRequest(info.session_id))
    with pytest.raises(AccessDenied, match="belongs to another browser"):
        client.open_clip(OpenClipRequest(project=info.project, owner="browser-b"))
    # ...nor through "reuse": B gets a project of its own, A's keyframe stays A's
    other = client.open_clip(OpenClipRequest(clip_path=str(clip), owner="browser-b", reuse=True))
    assert other.project != info.project and other.keyframes == ()
    client.close_session(SessionRequest(other.session_id))
    mine = client.open_clip(OpenClipRequest(clip_path=str(clip), owner="browser-a", reuse=True))
    assert mine.project == info.project and mine.keyframes == (4,)
    client.close_session(SessionRequest(mine.session_id))
    # the host (no secret: CLI, the studio's own --project) still opens it
    host = client.open_clip(OpenClipRequest(project=info.project))
    assert host.keyframes == (4,)


def test_visits_that_change_nothing_reuse_one_project(tmp_path, client):
    clip = write_test_video(tmp_path / "demo.mp4", moving_frames(9, 32, 24))
    names = set()
    for visitor in ("a", "b", "c"):
        info = client.open_clip(OpenClipRequest(clip_path=str(clip), owner=visitor, reuse=True))
        names.add(info.project)
        client.close_session(SessionRequest(info.session_id))
    assert len(names) == 1 and workspace.project_names(tmp_path / "projects") == sorted(names)
    # two visitors at once cannot share it: the second gets another one
    first = client.open_clip(OpenClipRequest(clip_path=str(clip), owner="a", reuse=True))
    second = client.open_clip(OpenClipRequest(clip_path=str(clip), owner="b", reuse=True))
    assert first.project != second.project


def test_a_moved_clip_is_named_and_relinked(tmp_path, client):
    clip = write_test_video(tmp_path / "a.mp4", moving_frames(9, 32, 24))
    info = client.open_clip(OpenClipRequest(clip_path=str(clip), owner="me"))
    client.close_session(SessionRequest(info.session_id))
    moved = clip.rename(tmp_path / "b.mp4")
    with pytest.raises(ClipMissing, match="relink"):
        client.open_clip(OpenClipRequest(project=info.project, owner="me"))
    stored = client.upload_clip(moved)
    relinked = client.open_clip(
        OpenClipRequest(clip_path=stored.clip_path, project=info.project, owner="me")
    )
    assert relinked.clip.path == stored.clip_path


def test_clearing_caches_keeps_the_output_and_a_finished_render(tmp_path, client):
    clip = write_test_video(tmp_path / "clip.mp4", moving_frames(9, 32, 24))
    info = client.open_clip(OpenClipRequest(clip_path=str(clip), owner="me"))
    from sparkvsr.worker import RenderRequest

    list(client.render(RenderRequest(info.session_id)))
    client.close_session(SessionRequest(info.session_id))
    folder = tmp_path / "projects" / info.project
    (summary,) = workspace.list_projects(tmp_path / "projects", "me")
    assert summary.cache_bytes > 0 and summary.outputs == ("output.mp4",)
    assert workspace.list_projects(tmp_path / "projects", "someone-else") == []
    freed = workspace.clear_caches(folder)
    assert freed == summary.cache_bytes
    state = Project.open(folder).state
    assert state.render.complete and state.render.chunks == ()
    (after,) = workspace.list_projects(tmp_path / "projects", "me")
    assert after.cache_bytes == 0 and (folder / "output.mp4").is_file()


def test_projects_are_listed_renamed_duplicated_and_deleted_by_their_owner(tmp_path, client):
    from sparkvsr.worker import ProjectActionRequest, ProjectsRequest, RenderRequest

    stored = client.upload_clip(write_test_video(tmp_path / "c.mp4", moving_frames(9, 32, 24)))
    info = client.open_clip(OpenClipRequest(clip_path=stored.clip_path, owner="me"))
    client.set_keyframe(KeyframeRequest(info.session_id, 4))
    list(client.render(RenderRequest(info.session_id, output="c_x4.mp4")))
    with pytest.raises(workspace.ProjectError, match="is open"):
        client.project_action(ProjectActionRequest(info.project, "delete", owner="me"))
    client.close_session(SessionRequest(info.session_id))
    with pytest.raises(AccessDenied, match="another browser"):
        client.project_action(ProjectActionRequest(info.project, "delete", owner="you"))

    renamed = client.project_action(ProjectActionRequest(info.project, "rename", "film", "me"))
    copy = client.project_action(ProjectActionRequest("film", "duplicate", "film-2", "me"))
    assert (renamed.project, copy.project) == ("film", "film-2")
    listed = client.projects(ProjectsRequest("me")).projects
    assert {p.name for p in listed} == {"film", "film-2"}
    assert client.projects(ProjectsRequest("you")).projects == ()
    for name in ("film", "film-2"):  # each keeps its keyframe and its finished render
        opened = client.open_clip(OpenClipRequest(project=name, owner="me"))
        assert opened.keyframes == (4,) and opened.result == "c_x4.mp4"
        client.close_session(SessionRequest(opened.session_id))
    duplicate = next(p for p in listed if p.name == "film-2")
    assert duplicate.cache_bytes == 0 and duplicate.outputs == ("c_x4.mp4",)

    client.project_action(ProjectActionRequest("film", "delete", owner="me"))
    assert Path(stored.clip_path).exists()  # film-2 still uses the stored clip
    client.project_action(ProjectActionRequest("film-2", "delete", owner="me"))
    assert (
        not Path(stored.clip_path).exists()
        and client.projects(ProjectsRequest("me")).projects == ()
    )


def test_a_projects_thumbnail_is_a_frame_of_its_clip_once_the_proxy_exists(tmp_path, client):
    import io

    import numpy as np
    from PIL import Image

    from sparkvsr.media import open_clip
    from sparkvsr.media.proxy import filmstrip_frames, make_proxy
    from sparkvsr.worker import ProjectsRequest

    frames = moving_frames(12, 96, 64)
    frames[:, :, :, 0] = np.arange(12, dtype=np.uint8)[:, None, None] * 20  # red tells frames apart
    clip = write_test_video(tmp_path / "c.mp4", frames)
    info = client.open_clip(OpenClipRequest(clip_path=str(clip), owner="me"))
    client.close_session(SessionRequest(info.session_id))
    folder = tmp_path / "projects" / info.project
    shutil.rmtree(folder / "proxy", ignore_errors=True)  # before the proxy: no picture yet
    assert workspace.summarize(folder).thumbnail == b""

    with open_clip(clip) as opened:
        make_proxy(opened, folder)
        decoded = opened.read(0, 12)
    (listed,) = client.projects(ProjectsRequest("me")).projects  # through the worker's listing
    with Image.open(io.BytesIO(listed.thumbnail)) as image:
        thumb = np.asarray(image.convert("RGB"), dtype=float)
    wanted = filmstrip_frames(12)[len(filmstrip_frames(12)) // 2]
    small = [
        np.asarray(Image.fromarray(f).resize(image.size, Image.Resampling.BOX), dtype=float)
        for f in decoded
    ]
    errors = [np.abs(s - thumb)[..., 0].mean() for s in small]
    assert int(np.argmin(errors)) == wanted and errors[wanted] < 8
