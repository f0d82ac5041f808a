"""Which event runs which handler: the studio page's wiring (``ui.layout`` builds the page).

Cheap events run with ``quiet`` (no progress, no concurrency limit); full-quality previews with
``computing`` (a small timer on the preview). Nothing but the preview itself runs on the
preview's path: views only one viewer tab shows are made while it is shown.
"""

from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from ui import projects
from ui.callbacks import OPEN_OUTPUTS, REFERENCE_VIEW, Studio


@dataclass(frozen=True)
class Page:
    """The page's components that events read or write, by name (built by ``ui.layout``)."""

    state: Any
    remembered: Any
    owner: Any
    timer: Any
    media_timer: Any
    title: Any
    engine_status: Any
    error: Any
    render_message: Any
    clip_upload: Any
    projects_panel: Any
    projects_table: Any
    projects_gallery: Any
    projects_message: Any
    scrubber: Any
    player: Any
    frame_view: Any
    frame_index: Any
    guidance: Any
    progress: Any
    download: Any
    range_info: Any
    range_progress: Any
    color_fix: Any
    gallery: Any
    make_all: Any
    edit_panel: Any
    edit_title: Any
    output_note: Any
    result_video: Any
    reopen_name: Any
    reopen: Any
    relink_name: Any
    relink_upload: Any
    projects_name: Any
    projects_new_name: Any
    projects_open: Any
    projects_rename: Any
    projects_duplicate: Any
    projects_clear: Any
    projects_delete: Any
    projects_refresh: Any
    viewer_tabs: Any
    zoom: Any
    viewport_box: Any
    pan_at: Any
    timeline: Any
    filmstrip: Any
    pin: Any
    render: Any
    cancel: Any
    auto_pick: Any
    output_scale: Any
    output_width: Any
    output_codec: Any
    output_crf: Any
    output_preset: Any
    output_ten_bit: Any
    output_audio: Any
    estimate: Any
    output_estimate: Any
    tab_preview: Any
    preview: Any
    tab_compare: Any
    before_after: Any
    tab_side: Any
    side_before: Any
    side_after: Any
    tab_reference: Any
    viewer_fit: Any
    registration: Any
    range_video: Any
    mark_in: Any
    mark_out: Any
    clear_range: Any
    range_render: Any
    auto_mode: Any
    auto_n: Any
    auto_seed: Any
    editor_choice: Any
    editor_note: Any
    task_prompt: Any
    content_prompt: Any
    seed: Any
    upload: Any
    make_reference: Any
    reference_fit: Any
    reference_compare: Any
    provenance: Any
    pixel_scale: Any
    semantic_scale: Any


def wire(studio: Studio, blocks: gr.Blocks, page: Page) -> None:
    """Connect the events of ``page`` to ``studio``'s handlers (inside ``blocks``' context)."""
    named = {
        "state": page.state,
        "title": page.title,
        "scrubber": page.scrubber,
        "frame_view": page.frame_view,
        "frame_index": page.frame_index,
        "timeline": page.timeline,
        "pin": page.pin,
        "gallery": page.gallery,
        "edit_panel": page.edit_panel,
        "guidance": page.guidance,
        "preview": page.preview,
        "before_after": page.before_after,
        "result_video": page.result_video,
        "download": page.download,
        "progress": page.progress,
        "engine_status": page.engine_status,
        "color_fix": page.color_fix,
        "remembered": page.remembered,
        "owner": page.owner,
        "render_message": page.render_message,
        "error": page.error,
    }
    open_outputs = [named[name] for name in OPEN_OUTPUTS]
    keyframe_outputs = [
        page.state,
        page.pin,
        page.timeline,
        page.gallery,
        page.edit_panel,
        page.error,
    ]
    reference_inputs = [
        page.state,
        page.editor_choice,
        page.task_prompt,
        page.content_prompt,
        page.seed,
        page.upload,
        page.pixel_scale,
        page.semantic_scale,
    ]
    named.update(
        reference_compare=page.reference_compare,
        provenance=page.provenance,
        reference_fit=page.reference_fit,
        registration=page.registration,
        viewer_fit=page.viewer_fit,
    )
    reference_view = [named[name] for name in REFERENCE_VIEW]
    reference_outputs = [page.state, *reference_view, page.gallery, page.timeline, page.error]
    quiet = {"show_progress": "hidden", "concurrency_limit": None}
    # A full-quality frame can take seconds (a new frame at 4x of 720p on the flow engine):
    # a small timer on the preview says it is coming, without covering the picture.
    computing = {
        "show_progress": "minimal",
        "show_progress_on": [page.preview],
        "concurrency_limit": None,
    }

    preview_inputs = [page.state, page.scrubber, page.guidance]
    preview_outputs = [page.preview, page.before_after, page.error]
    output_controls = [
        page.output_scale,
        page.output_width,
        page.output_codec,
        page.output_crf,
        page.output_preset,
        page.output_ten_bit,
        page.output_audio,
    ]
    show_output = (studio.output_values, [page.state], [*output_controls, page.output_note])
    loaded = blocks.load(
        studio.start,
        [page.state, page.remembered, page.owner],
        open_outputs,
        concurrency_limit=None,
    )
    loaded.then(*show_output, **quiet)
    # A render keeps going without the page: a (re)loaded page follows it to its result.
    follow = (
        studio.follow_render,
        [page.state],
        [page.progress, page.result_video, page.download, page.render_message],
    )
    loaded.then(*follow, **quiet)
    range_view = (
        studio.range_view,
        [page.state],
        [page.range_progress, page.range_video, page.range_info],
    )
    loaded.then(*range_view, **quiet)
    range_outputs = [page.range_progress, page.range_video, page.viewer_tabs, page.render_message]
    loaded.then(studio.follow_range, [page.state], range_outputs, **quiet)
    loaded.then(studio.preview_full, preview_inputs, preview_outputs, **computing).then(
        studio.editor_info, [page.editor_choice], [page.editor_choice, page.editor_note], **quiet
    )
    blocks.unload(studio.unload)
    opened = page.clip_upload.upload(
        studio.open_upload,
        [page.state, page.clip_upload, page.owner],
        open_outputs,
        show_progress_on=[page.frame_view],
    )
    opened.success(studio.preview_full, preview_inputs, preview_outputs, **computing)
    opened.success(*show_output, **quiet)
    opened.success(*follow, **quiet)
    opened.success(*range_view, **quiet)
    # Empty the box again, good file or bad: the title names the open clip, and the next
    # file can be dropped straight away (a filled box hides its drop area).
    opened.then(lambda: None, None, page.clip_upload, **quiet)
    reopened = page.reopen.click(
        studio.reopen,
        [page.state, page.reopen_name, page.owner],
        open_outputs,
        show_progress_on=[page.frame_view],
    )
    reopened.success(studio.preview_full, preview_inputs, preview_outputs, **computing)
    reopened.success(*show_output, **quiet)
    reopened.success(*follow, **quiet)
    reopened.success(*range_view, **quiet)
    relinked = page.relink_upload.upload(
        studio.relink,
        [page.state, page.relink_name, page.relink_upload, page.owner],
        open_outputs,
        show_progress_on=[page.frame_view],
    )
    relinked.success(studio.preview_full, preview_inputs, preview_outputs, **computing)
    relinked.success(*show_output, **quiet)
    relinked.success(*follow, **quiet)
    relinked.success(*range_view, **quiet)
    relinked.then(lambda: None, None, page.relink_upload, **quiet)

    page.scrubber.input(
        studio.scrub,
        [page.state, page.scrubber],
        [page.frame_view, page.frame_index, page.timeline, page.pin, page.error],
        trigger_mode="always_last",
        **quiet,
    )
    page.scrubber.release(
        studio.preview_full,
        [page.state, page.scrubber, page.guidance],
        [page.preview, page.before_after, page.error],
        trigger_mode="always_last",
        **computing,
    ).then(
        studio.reference_in_viewer,
        [page.state, page.scrubber],
        [page.registration, page.viewer_fit],
        **quiet,
    )
    # Keyframes and References change the restored frame: each refreshes the preview, and
    # marks a finished render out of date.
    result_status = ([page.state], [page.progress, page.download, page.range_progress])
    page.pin.click(studio.toggle_pin, [page.state, page.scrubber], keyframe_outputs).then(
        studio.preview_full, preview_inputs, preview_outputs, **computing
    ).then(studio.status_after_change, *result_status, **quiet)
    page.auto_pick.click(
        studio.auto_pick,
        [page.state, page.auto_mode, page.auto_n, page.auto_seed, page.scrubber],
        keyframe_outputs,
        show_progress_on=[page.gallery],
    ).then(studio.preview_full, preview_inputs, preview_outputs, **computing).then(
        studio.status_after_change, *result_status, **quiet
    )
    page.gallery.select(
        studio.select_keyframe,
        [page.state],
        [
            page.state,
            page.edit_panel,
            page.edit_title,
            *reference_view,
            page.scrubber,
            page.frame_view,
            page.frame_index,
            page.timeline,
            page.pin,
            page.upload,
            page.error,
        ],
    ).then(studio.preview_full, preview_inputs, preview_outputs, **computing)
    page.upload.upload(lambda: "upload", None, page.editor_choice)
    # Progress shows once, where the reference will appear (not over every output).
    page.make_reference.click(
        studio.make_reference,
        reference_inputs,
        reference_outputs,
        show_progress_on=[page.reference_compare],
    ).then(studio.preview_full, preview_inputs, preview_outputs, **computing).then(
        studio.status_after_change, *result_status, **quiet
    )
    page.make_all.click(
        studio.make_all_references,
        reference_inputs,
        reference_outputs,
        show_progress_on=[page.gallery],
    ).then(studio.preview_full, preview_inputs, preview_outputs, **computing).then(
        studio.status_after_change, *result_status, **quiet
    )

    page.viewport_box.change(
        studio.set_viewer_size,
        [page.state, page.viewport_box, page.scrubber, page.guidance],
        preview_outputs,
        trigger_mode="always_last",
        **computing,
    )
    page.zoom.change(
        studio.set_zoom,
        [page.state, page.zoom, page.scrubber, page.guidance],
        preview_outputs,
        trigger_mode="always_last",
        **computing,
    )
    # a click on the preview, or on either side of the side by side view, pans them all
    # (both sides show one region)
    page.pan_at.change(
        studio.pan_to,
        [page.state, page.pan_at, page.scrubber, page.guidance],
        preview_outputs,
        **computing,
    )
    for tab, mode in ((page.tab_preview, "preview"), (page.tab_compare, "wipe")):
        tab.select(partial(studio.set_viewer_mode, mode=mode), [page.state], None, **quiet)
    # side by side shows the wipe's two files (nothing is computed for it), while shown
    sides = ([page.state, page.before_after], [page.side_before, page.side_after])
    page.before_after.change(studio.side_by_side, *sides, **quiet)
    page.tab_side.select(studio.show_side_by_side, *sides, **quiet)
    page.tab_reference.select(
        studio.show_reference_tab,
        [page.state, page.scrubber],
        [page.registration, page.viewer_fit],
        show_progress_on=[page.registration],
        concurrency_limit=None,
    )

    # The cheap preview follows the hand; the release computes the exact frame.
    page.guidance.input(
        studio.preview_live,
        [page.state, page.scrubber, page.guidance],
        [page.preview, page.error],
        trigger_mode="always_last",
        **quiet,
    )
    page.guidance.release(
        studio.preview_full,
        [page.state, page.scrubber, page.guidance],
        [page.preview, page.before_after, page.error],
        trigger_mode="always_last",
        **computing,
    ).then(studio.remember_guidance, [page.state, page.guidance], None, **quiet).then(
        studio.status_after_change, *result_status, **quiet
    )
    page.color_fix.input(
        studio.set_color_fix, [page.state, page.color_fix], [page.error], **quiet
    ).then(studio.status_after_change, *result_status, **quiet)

    # "multiple": Render pressed right after Cancel must reach the server (the default
    # "once" drops clicks while the cancelled render finishes its chunk); the handler
    # then waits for that chunk and resumes, or says a render is already running.
    page.render.click(
        studio.render,
        [page.state, page.guidance],
        [page.progress, page.result_video, page.download, page.render_message],
        concurrency_limit=None,
        show_progress="hidden",
        trigger_mode="multiple",
    )
    page.cancel.click(
        studio.cancel, [page.state], [page.progress, page.error], concurrency_limit=None
    )
    # In / out and the range render (its progress beside its button; cancel is #cancel)
    marks = ([page.state, page.scrubber], [page.state, page.timeline, page.range_info, page.error])
    page.mark_in.click(studio.mark_in, *marks, **quiet)
    page.mark_out.click(studio.mark_out, *marks, **quiet)
    page.clear_range.click(studio.clear_marks, *marks, **quiet)
    page.scrubber.change(
        studio.range_info,
        [page.state, page.scrubber],
        [page.range_info],
        trigger_mode="always_last",
        **quiet,
    )
    page.range_render.click(
        studio.render_range,
        [page.state, page.scrubber, page.guidance],
        range_outputs,
        concurrency_limit=None,
        show_progress="hidden",
    )
    # Output panel: every change is saved at once (a running render keeps its own settings).
    set_output = (
        studio.set_output,
        [page.state, *output_controls],
        [page.state, page.output_note, page.error],
    )
    for control in (
        page.output_scale,
        page.output_codec,
        page.output_preset,
        page.output_ten_bit,
        page.output_audio,
    ):
        control.input(*set_output, **quiet).then(
            studio.status_after_change, *result_status, **quiet
        ).then(lambda: "", None, page.output_estimate, **quiet)
    page.output_crf.release(*set_output, **quiet).then(
        studio.status_after_change, *result_status, **quiet
    )
    for event in (page.output_width.submit, page.output_width.blur):
        event(*set_output, **quiet).then(studio.status_after_change, *result_status, **quiet)

    page.estimate.click(
        studio.estimate,
        [page.state, page.guidance],
        [page.output_estimate],
        show_progress_on=[page.output_estimate],
        concurrency_limit=None,
    )

    # Projects panel: this browser's projects; each action answers beside its buttons.
    panel = projects.ProjectsPanel(studio.client)
    for event in (page.projects_panel.expand, page.projects_refresh.click):
        event(panel.refresh, [page.owner], [page.projects_table, page.projects_gallery], **quiet)

    def pick(table: Any, evt: gr.SelectData) -> str:
        return projects.selected_name(table, evt.index)

    page.projects_table.select(pick, [page.projects_table], [page.projects_name], **quiet)

    def pick_picture(evt: gr.SelectData) -> str:
        return projects.gallery_name(evt.value)

    page.projects_gallery.select(pick_picture, None, [page.projects_name], **quiet)
    for button, action in (
        (page.projects_rename, "rename"),
        (page.projects_duplicate, "duplicate"),
        (page.projects_delete, "delete"),
        (page.projects_clear, "clear_caches"),
    ):
        button.click(
            partial(panel.act, action),
            [page.state, page.projects_name, page.projects_new_name, page.owner],
            [page.projects_table, page.projects_gallery, page.projects_message],
            concurrency_limit=None,
        )
    opened_here = page.projects_open.click(
        studio.reopen,
        [page.state, page.projects_name, page.owner],
        open_outputs,
        show_progress_on=[page.frame_view],
    )
    opened_here.success(studio.preview_full, preview_inputs, preview_outputs, **computing)
    opened_here.success(*show_output, **quiet)
    opened_here.success(*follow, **quiet)
    opened_here.success(*range_view, **quiet)
    opened_here.then(
        panel.refresh, [page.owner], [page.projects_table, page.projects_gallery], **quiet
    )

    page.timer.tick(studio.engine_status, [page.state], [page.engine_status], **quiet)
    # The clip's filmstrip and player: asked for until ready, then the timer stops; every
    # newly opened clip starts it again.
    page.media_timer.tick(
        studio.clip_media, [page.state], [page.filmstrip, page.player, page.media_timer], **quiet
    )
    for event in (loaded, opened, reopened, relinked, opened_here):
        event.then(lambda: gr.Timer(active=True), None, page.media_timer, **quiet)
