"""The studio page: components with stable element ids, and which event runs which handler.

Top to bottom: header (engine status), error panel, clip and timeline beside the guidance
preview, keyframes with their edit panel, render. Element ids are a public interface (tests and
users' own automation use them); see the issue's list.
"""

from functools import partial
from typing import Any

import gradio as gr

from sparkvsr.engines.base import COLOR_FIXES
from sparkvsr.keyframes import MIN_GAP
from sparkvsr.project import OUTPUT_PRESETS
from sparkvsr.references.base import DEFAULT_TASK_PROMPT
from ui import output as output_panel
from ui import projects
from ui.callbacks import (
    AUTO_MODES,
    DOWNLOAD_LABEL,
    OPEN_OUTPUTS,
    RANGE_TAB,
    REFERENCE_VIEW,
    Studio,
    progress_html,
)
from ui.callbacks.clip_media import MEDIA_POLL_S
from ui.shortcuts import shortcuts_help_html
from ui.viewer import ZOOMS

STATUS_REFRESH_S = 5.0
VIEWER_HEIGHT = 340
"""The viewer's height (CSS pixels): with the timeline under it, the main loop fits 1280x720."""


def build_blocks(studio: Studio, logo_svg: str = "") -> gr.Blocks:
    """The whole page wired to ``studio``'s handlers."""
    with gr.Blocks(title="SparkVSR Studio", delete_cache=(600, 3600)) as blocks:
        state = gr.State(None, delete_callback=studio.close_state)
        # The project this browser worked on last (its name only, in localStorage): a reload
        # reopens it instead of starting over (a second tab, while the first holds
        # it, starts a new project and says so).
        remembered = gr.BrowserState(
            "", storage_key="sparkvsr-studio-project", secret="sparkvsr-studio"
        )
        # This browser's owner secret (made on its first visit): the worker opens a project
        # only for the browser that made it, so a project's name alone gives nobody access.
        owner = gr.BrowserState("", storage_key="sparkvsr-studio-owner", secret="sparkvsr-studio")

        # Header: brand, the open clip, the engine ----------------------------------------------
        with gr.Row(elem_id="header", equal_height=True):
            gr.HTML(
                f'<div class="brand">{logo_svg}<div><h1>SparkVSR Studio</h1>'
                "<p>Pin a few keyframes, give each a high-quality reference, and propagate "
                "them through the whole clip.</p></div></div>",
                elem_id="brand",
            )
            title = gr.Markdown("", elem_id="clip-title")
            engine_status = gr.Markdown("**Engine** starting…", elem_id="engine-status")
        # Messages float at the bottom right of the window (inside any viewport, wherever the
        # page is scrolled) until dismissed or replaced: #error for the last action, and
        # #render-message for renders (progress never overwrites it).
        with gr.Column(elem_id="messages"):
            error = gr.HTML("", elem_id="error")
            render_message = gr.HTML("", elem_id="render-message")

        # The main loop, on one 1280x720 screen: the viewer and the timeline on the left; the
        # input frame, guidance, pin and render on the right ------------------------------------
        with gr.Row(elem_id="workspace", equal_height=False):
            with gr.Column(scale=7, elem_id="preview-column"):
                with gr.Tabs(elem_id="viewer-tabs") as viewer_tabs:
                    with gr.Tab("Preview", id="tab-preview") as tab_preview:
                        preview = gr.Image(
                            label="Restored frame",
                            elem_id="preview",
                            interactive=False,
                            buttons=["fullscreen", "download"],
                            height=VIEWER_HEIGHT,
                        )
                    with gr.Tab("Before / after", id="tab-compare") as tab_compare:
                        before_after = gr.ImageSlider(
                            label="Input (bicubic) vs restored",
                            elem_id="before-after",
                            interactive=False,
                            type="filepath",
                            max_height=VIEWER_HEIGHT,
                        )
                    # the wipe's two images: the same region, zoomed and panned together
                    with (
                        gr.Tab("Side by side", id="tab-side") as tab_side,
                        gr.Row(elem_id="side-by-side", equal_height=True),
                    ):
                        side_before = gr.Image(
                            label="Input (bicubic)",
                            elem_id="side-before",
                            interactive=False,
                            buttons=["fullscreen"],
                            height=VIEWER_HEIGHT,
                        )
                        side_after = gr.Image(
                            label="Restored",
                            elem_id="side-after",
                            interactive=False,
                            buttons=["fullscreen"],
                            height=VIEWER_HEIGHT,
                        )
                    with gr.Tab("Reference", id="tab-reference") as tab_reference:
                        # the keyframe's Reference in place: the editor's image vs the one
                        # registered onto the frame, and how it fits (badge, numbers, warning)
                        viewer_fit = gr.HTML("", elem_id="viewer-fit")
                        registration = gr.ImageSlider(
                            label="The editor's image vs registered (used)",
                            elem_id="registration",
                            interactive=False,
                            type="filepath",
                            max_height=VIEWER_HEIGHT - 40,
                        )
                    with gr.Tab("Range", id=RANGE_TAB):
                        # the range render at the clip's frame rate (the browser's player)
                        range_video = gr.Video(
                            label="Restored range",
                            elem_id="range-video",
                            interactive=False,
                            loop=True,
                            height=VIEWER_HEIGHT,
                        )
                # the viewer's tools: zoom (a click on the picture sets the centre), the display
                # size the page measures (previews are made at that size), the shortcuts
                with gr.Row(elem_id="viewer-tools", equal_height=True):
                    zoom = gr.Radio(
                        list(ZOOMS),
                        value="Fit",
                        show_label=False,
                        container=False,
                        elem_id="zoom",
                    )
                    viewport_box = gr.Textbox(elem_id="viewport", visible="hidden")
                    pan_at = gr.Textbox(elem_id="pan-at", visible="hidden")
                    # In / out points (keys I / O) and the range preview render
                    with gr.Row(elem_id="range-row", equal_height=True):
                        mark_in = gr.Button("In (I)", elem_id="mark-in", size="sm", min_width=60)
                        mark_out = gr.Button("Out (O)", elem_id="mark-out", size="sm", min_width=60)
                        clear_range = gr.Button(
                            "Clear", elem_id="clear-range", size="sm", min_width=60
                        )
                        range_render = gr.Button(
                            "Render range", elem_id="range-render", size="sm", min_width=110
                        )
                    gr.HTML(shortcuts_help_html(), elem_id="shortcut-help")
                scrubber = gr.Slider(
                    0,
                    1,
                    value=0,
                    step=1,
                    label="Timeline (← → one frame, shift ten)",
                    elem_id="scrubber",
                    interactive=False,
                    buttons=[],
                )
                # the filmstrip lies under the timeline's markers (made in the background)
                with gr.Column(elem_id="timeline-box"):
                    timeline = gr.HTML("", elem_id="timeline")
                    filmstrip = gr.Image(
                        elem_id="filmstrip",
                        show_label=False,
                        container=False,
                        interactive=False,
                        buttons=[],
                    )
                # the LR clip's proxy, over the viewer while it plays (Space)
                player = gr.Video(
                    elem_id="lr-player",
                    show_label=False,
                    interactive=False,
                    autoplay=False,
                    loop=False,
                    buttons=[],
                )

            with gr.Column(scale=3, elem_id="side-column"):
                frame_view = gr.Image(
                    label="Input frame (low resolution)",
                    elem_id="frame-view",
                    interactive=False,
                    buttons=["fullscreen"],
                    height=150,
                )
                frame_index = gr.HTML("", elem_id="frame-index")
                guidance = gr.Slider(
                    0.0,
                    2.0,
                    value=1.0,
                    step=0.05,
                    label="Guidance (0 = blind, 1 = follow the keyframes, 2 = stronger)",
                    elem_id="guidance",
                )
                with gr.Row(elem_id="pin-row"):
                    pin = gr.Button("Pin frame", elem_id="pin", variant="primary", scale=1)
                with gr.Row(elem_id="render-buttons"):
                    render = gr.Button("Render clip", elem_id="render", variant="primary")
                    cancel = gr.Button("Cancel", elem_id="cancel", variant="stop")
                progress = gr.HTML(progress_html(None), elem_id="progress")
                download = gr.DownloadButton(DOWNLOAD_LABEL, elem_id="download", interactive=False)
                range_info = gr.HTML("", elem_id="range-info")
                range_progress = gr.HTML("", elem_id="range-progress")
                color_fix = gr.Dropdown(
                    list(COLOR_FIXES),
                    value="none",
                    label="Colour correction against the input",
                    elem_id="color-fix",
                    visible=studio.color_fix_applies(),
                )

        # Keyframes and the edit panel ------------------------------------------------------
        with gr.Row(elem_id="keyframes-row"):
            with gr.Column(scale=4):
                gallery = gr.Gallery(
                    label="Keyframes (select one to edit its reference)",
                    elem_id="keyframe-gallery",
                    columns=4,
                    height=230,
                    allow_preview=False,
                    object_fit="contain",
                    interactive=False,
                )
                make_all = gr.Button(
                    "Make references for all keyframes without one", elem_id="make-all-references"
                )
                with gr.Accordion("Auto-pick keyframes", open=False, elem_id="auto-pick-panel"):
                    gr.Markdown(
                        f"Replaces the pinned set (references stay with their frames). "
                        f"Keyframes are always at least {MIN_GAP} frames apart."
                    )
                    with gr.Row():
                        auto_mode = gr.Radio(
                            list(AUTO_MODES), value="uniform", label="Mode", elem_id="auto-mode"
                        )
                        auto_n = gr.Number(
                            12,
                            precision=0,
                            label="Every N frames (uniform) / how many (random)",
                            elem_id="auto-n",
                        )
                        auto_seed = gr.Number(0, precision=0, label="Seed", elem_id="auto-seed")
                    auto_pick = gr.Button("Pick keyframes", elem_id="auto-pick")
            with gr.Column(scale=6, visible=False, elem_id="edit-panel") as edit_panel:
                edit_title = gr.Markdown("### Keyframe", elem_id="edit-title")
                with gr.Row():
                    # 220 px, not Gradio's 320: the two columns stay side by side on a laptop.
                    with gr.Column(scale=1, min_width=220):
                        names = studio.editor_names()
                        editor_choice = gr.Dropdown(
                            choices=names,
                            value=studio.config.default_editor
                            if studio.config.default_editor in names
                            else names[0],
                            label="Editor",
                            elem_id="editor-choice",
                        )
                        editor_note = gr.Markdown("", elem_id="editor-note")
                        task_prompt = gr.Textbox(
                            DEFAULT_TASK_PROMPT,
                            lines=3,
                            label="Task prompt",
                            elem_id="task-prompt",
                        )
                        content_prompt = gr.Textbox(
                            "",
                            lines=2,
                            label="Content prompt (optional: what should be in the frame)",
                            elem_id="content-prompt",
                        )
                        seed = gr.Number(-1, precision=0, label="Seed (-1 = any)", elem_id="seed")
                        with gr.Accordion("PiSA-SR", open=False, elem_id="pisa-panel"):
                            pixel_scale = gr.Slider(
                                0.0,
                                2.0,
                                1.0,
                                step=0.05,
                                label="Pixel (λ_pix)",
                                elem_id="pisa-pixel",
                            )
                            semantic_scale = gr.Slider(
                                0.0,
                                2.0,
                                1.0,
                                step=0.05,
                                label="Semantic (λ_sem)",
                                elem_id="pisa-semantic",
                            )
                    with gr.Column(scale=1, min_width=220):
                        upload = gr.Image(
                            label="Your own edited image (editor: upload)",
                            type="numpy",
                            sources=["upload", "clipboard"],
                            elem_id="reference-upload",
                            height=160,
                        )
                        make_reference = gr.Button(
                            "Make reference", elem_id="make-reference", variant="primary"
                        )
                        reference_fit = gr.HTML("", elem_id="reference-fit")
                        reference_compare = gr.ImageSlider(
                            label="Input vs reference",
                            elem_id="reference-compare",
                            interactive=False,
                            max_height=260,
                        )
                        provenance = gr.Markdown("", elem_id="reference-provenance")

        # Output settings and the restored clip ---------------------------------------------
        with gr.Row(elem_id="render-row"):
            with (
                gr.Column(scale=4),
                gr.Accordion("Output", open=True, elem_id="output-panel"),
            ):
                with gr.Row():
                    output_scale = gr.Dropdown(
                        list(output_panel.SCALES),
                        value="×4",
                        label="Size",
                        elem_id="output-scale",
                        min_width=120,
                    )
                    output_width = gr.Number(
                        0, precision=0, label="Custom width", elem_id="output-width"
                    )
                    output_codec = gr.Dropdown(
                        list(output_panel.CODECS),
                        value="H.264",
                        label="Codec",
                        elem_id="output-codec",
                        min_width=140,
                    )
                with gr.Row():
                    output_crf = gr.Slider(
                        0,
                        51,
                        value=18,
                        step=1,
                        label="CRF (lower = better)",
                        elem_id="output-crf",
                    )
                    output_preset = gr.Dropdown(
                        list(OUTPUT_PRESETS),
                        value="fast",
                        label="Preset",
                        elem_id="output-preset",
                        min_width=110,
                    )
                with gr.Row():
                    output_ten_bit = gr.Checkbox(False, label="10-bit", elem_id="output-ten-bit")
                    output_audio = gr.Checkbox(True, label="Keep audio", elem_id="output-audio")
                output_note = gr.Markdown("", elem_id="output-note")
                with gr.Row(equal_height=True):
                    estimate = gr.Button("Estimate", elem_id="estimate", size="sm", scale=1)
                    output_estimate = gr.Markdown("", elem_id="output-estimate")
            with gr.Column(scale=6):
                result_video = gr.Video(
                    label="Restored clip", elem_id="result-video", interactive=False, height=340
                )

        # Opening clips and projects ----------------------------------------------------------
        with (
            gr.Accordion("Open a clip or a saved project", open=False, elem_id="open"),
            gr.Row(),
        ):
            # No file_types filter: Gradio refuses other types with a bare "Error" badge;
            # the studio reads the file and says in words why it cannot be used.
            clip_upload = gr.File(
                label="Upload a clip (mp4, mkv, mov, avi, webm…)",
                type="filepath",
                elem_id="clip-upload",
                height=120,
                scale=3,
            )
            with gr.Column(scale=2):
                reopen_name = gr.Textbox(
                    label="Saved project name (shown after 'project' above)",
                    elem_id="reopen-project",
                )
                reopen = gr.Button("Reopen", elem_id="reopen")
            with gr.Column(scale=2, elem_id="relink-panel"):
                relink_name = gr.Textbox(
                    label="Relink… a project whose clip moved: its name",
                    elem_id="relink-project",
                )
                relink_upload = gr.File(
                    label="…and its clip (same frames and size)",
                    type="filepath",
                    elem_id="relink-upload",
                    height=90,
                )

        with gr.Accordion("Your projects", open=False, elem_id="projects-panel") as projects_panel:
            projects_table = gr.Dataframe(
                headers=projects.COLUMNS,
                interactive=False,
                elem_id="projects-list",
                wrap=True,
            )
            with gr.Row(equal_height=True):
                projects_name = gr.Textbox(
                    label="Project (click a row)", elem_id="projects-name", scale=2
                )
                projects_new_name = gr.Textbox(
                    label="New name (rename, duplicate)", elem_id="projects-new-name", scale=2
                )
                projects_open = gr.Button("Open", elem_id="projects-open", variant="primary")
                projects_rename = gr.Button("Rename", elem_id="projects-rename")
                projects_duplicate = gr.Button("Duplicate", elem_id="projects-duplicate")
                projects_clear = gr.Button("Clear caches", elem_id="projects-clear-caches")
                projects_delete = gr.Button("Delete", elem_id="projects-delete", variant="stop")
                projects_refresh = gr.Button("Refresh", elem_id="projects-refresh")
            projects_message = gr.HTML("", elem_id="projects-message")

        timer = gr.Timer(STATUS_REFRESH_S)
        media_timer = gr.Timer(MEDIA_POLL_S)

        # Wiring -------------------------------------------------------------------------------
        named = {
            "state": state,
            "title": title,
            "scrubber": scrubber,
            "frame_view": frame_view,
            "frame_index": frame_index,
            "timeline": timeline,
            "pin": pin,
            "gallery": gallery,
            "edit_panel": edit_panel,
            "guidance": guidance,
            "preview": preview,
            "before_after": before_after,
            "result_video": result_video,
            "download": download,
            "progress": progress,
            "engine_status": engine_status,
            "color_fix": color_fix,
            "remembered": remembered,
            "owner": owner,
            "render_message": render_message,
            "error": error,
        }
        open_outputs = [named[name] for name in OPEN_OUTPUTS]
        keyframe_outputs = [state, pin, timeline, gallery, edit_panel, error]
        reference_inputs = [
            state,
            editor_choice,
            task_prompt,
            content_prompt,
            seed,
            upload,
            pixel_scale,
            semantic_scale,
        ]
        named.update(
            reference_compare=reference_compare,
            provenance=provenance,
            reference_fit=reference_fit,
            registration=registration,
            viewer_fit=viewer_fit,
        )
        reference_view = [named[name] for name in REFERENCE_VIEW]
        reference_outputs = [state, *reference_view, gallery, timeline, error]
        quiet = {"show_progress": "hidden", "concurrency_limit": None}
        # A full-quality frame can take seconds (a new frame at 4x of 720p on the flow engine):
        # a small timer on the preview says it is coming, without covering the picture.
        computing = {
            "show_progress": "minimal",
            "show_progress_on": [preview],
            "concurrency_limit": None,
        }

        preview_inputs = [state, scrubber, guidance]
        preview_outputs = [preview, before_after, error]
        output_controls = [
            output_scale,
            output_width,
            output_codec,
            output_crf,
            output_preset,
            output_ten_bit,
            output_audio,
        ]
        show_output = (studio.output_values, [state], [*output_controls, output_note])
        loaded = blocks.load(
            studio.start, [state, remembered, owner], open_outputs, concurrency_limit=None
        )
        loaded.then(*show_output, **quiet)
        # A render keeps going without the page: a (re)loaded page follows it to its result.
        follow = (studio.follow_render, [state], [progress, result_video, download, render_message])
        loaded.then(*follow, **quiet)
        range_view = (studio.range_view, [state], [range_progress, range_video, range_info])
        loaded.then(*range_view, **quiet)
        range_outputs = [range_progress, range_video, viewer_tabs, render_message]
        loaded.then(studio.follow_range, [state], range_outputs, **quiet)
        loaded.then(studio.preview_full, preview_inputs, preview_outputs, **computing).then(
            studio.editor_info, [editor_choice], [editor_choice, editor_note], **quiet
        )
        blocks.unload(studio.unload)
        opened = clip_upload.upload(
            studio.open_upload,
            [state, clip_upload, owner],
            open_outputs,
            show_progress_on=[frame_view],
        )
        opened.success(studio.preview_full, preview_inputs, preview_outputs, **computing)
        opened.success(*show_output, **quiet)
        opened.success(*follow, **quiet)
        opened.success(*range_view, **quiet)
        # Empty the box again, good file or bad: the title names the open clip, and the next
        # file can be dropped straight away (a filled box hides its drop area).
        opened.then(lambda: None, None, clip_upload, **quiet)
        reopened = reopen.click(
            studio.reopen, [state, reopen_name, owner], open_outputs, show_progress_on=[frame_view]
        )
        reopened.success(studio.preview_full, preview_inputs, preview_outputs, **computing)
        reopened.success(*show_output, **quiet)
        reopened.success(*follow, **quiet)
        reopened.success(*range_view, **quiet)
        relinked = relink_upload.upload(
            studio.relink,
            [state, relink_name, relink_upload, owner],
            open_outputs,
            show_progress_on=[frame_view],
        )
        relinked.success(studio.preview_full, preview_inputs, preview_outputs, **computing)
        relinked.success(*show_output, **quiet)
        relinked.then(lambda: None, None, relink_upload, **quiet)

        scrubber.input(
            studio.scrub,
            [state, scrubber],
            [frame_view, frame_index, timeline, pin, error],
            trigger_mode="always_last",
            **quiet,
        )
        scrubber.release(
            studio.preview_full,
            [state, scrubber, guidance],
            [preview, before_after, error],
            trigger_mode="always_last",
            **computing,
        ).then(studio.reference_in_viewer, [state, scrubber], [registration, viewer_fit], **quiet)
        # Keyframes and References change the restored frame: each refreshes the preview, and
        # marks a finished render out of date.
        result_status = ([state], [progress, download, range_progress])
        pin.click(studio.toggle_pin, [state, scrubber], keyframe_outputs).then(
            studio.preview_full, preview_inputs, preview_outputs, **computing
        ).then(studio.status_after_change, *result_status, **quiet)
        auto_pick.click(
            studio.auto_pick,
            [state, auto_mode, auto_n, auto_seed, scrubber],
            keyframe_outputs,
            show_progress_on=[gallery],
        ).then(studio.preview_full, preview_inputs, preview_outputs, **computing).then(
            studio.status_after_change, *result_status, **quiet
        )
        gallery.select(
            studio.select_keyframe,
            [state],
            [
                state,
                edit_panel,
                edit_title,
                *reference_view,
                scrubber,
                frame_view,
                frame_index,
                timeline,
                pin,
                upload,
                error,
            ],
        ).then(studio.preview_full, preview_inputs, preview_outputs, **computing)
        upload.upload(lambda: "upload", None, editor_choice)
        # Progress shows once, where the reference will appear (not over every output).
        make_reference.click(
            studio.make_reference,
            reference_inputs,
            reference_outputs,
            show_progress_on=[reference_compare],
        ).then(studio.preview_full, preview_inputs, preview_outputs, **computing).then(
            studio.status_after_change, *result_status, **quiet
        )
        make_all.click(
            studio.make_all_references,
            reference_inputs,
            reference_outputs,
            show_progress_on=[gallery],
        ).then(studio.preview_full, preview_inputs, preview_outputs, **computing).then(
            studio.status_after_change, *result_status, **quiet
        )

        viewport_box.change(
            studio.set_viewer_size,
            [state, viewport_box, scrubber, guidance],
            preview_outputs,
            trigger_mode="always_last",
            **computing,
        )
        zoom.change(
            studio.set_zoom,
            [state, zoom, scrubber, guidance],
            preview_outputs,
            trigger_mode="always_last",
            **computing,
        )
        # a click on the preview, or on either side of the side by side view, pans them all
        # (both sides show one region)
        pan_at.change(
            studio.pan_to, [state, pan_at, scrubber, guidance], preview_outputs, **computing
        )
        for tab, mode in ((tab_preview, "preview"), (tab_compare, "wipe")):
            tab.select(partial(studio.set_viewer_mode, mode=mode), [state], None, **quiet)
        # side by side shows the wipe's two files (nothing is computed for it), while shown
        sides = ([state, before_after], [side_before, side_after])
        before_after.change(studio.side_by_side, *sides, **quiet)
        tab_side.select(studio.show_side_by_side, *sides, **quiet)
        tab_reference.select(
            studio.show_reference_tab,
            [state, scrubber],
            [registration, viewer_fit],
            show_progress_on=[registration],
            concurrency_limit=None,
        )

        # The cheap preview follows the hand; the release computes the exact frame.
        guidance.input(
            studio.preview_live,
            [state, scrubber, guidance],
            [preview, error],
            trigger_mode="always_last",
            **quiet,
        )
        guidance.release(
            studio.preview_full,
            [state, scrubber, guidance],
            [preview, before_after, error],
            trigger_mode="always_last",
            **computing,
        ).then(studio.remember_guidance, [state, guidance], None, **quiet).then(
            studio.status_after_change, *result_status, **quiet
        )
        color_fix.input(studio.set_color_fix, [state, color_fix], [error], **quiet).then(
            studio.status_after_change, *result_status, **quiet
        )

        # "multiple": Render pressed right after Cancel must reach the server (the default
        # "once" drops clicks while the cancelled render finishes its chunk); the handler
        # then waits for that chunk and resumes, or says a render is already running.
        render.click(
            studio.render,
            [state, guidance],
            [progress, result_video, download, render_message],
            concurrency_limit=None,
            show_progress="hidden",
            trigger_mode="multiple",
        )
        cancel.click(studio.cancel, [state], [progress, error], concurrency_limit=None)
        # In / out and the range render (its progress beside its button; cancel is #cancel)
        marks = ([state, scrubber], [state, timeline, range_info, error])
        mark_in.click(studio.mark_in, *marks, **quiet)
        mark_out.click(studio.mark_out, *marks, **quiet)
        clear_range.click(studio.clear_marks, *marks, **quiet)
        scrubber.change(
            studio.range_info, [state, scrubber], [range_info], trigger_mode="always_last", **quiet
        )
        range_render.click(
            studio.render_range,
            [state, scrubber, guidance],
            range_outputs,
            concurrency_limit=None,
            show_progress="hidden",
        )
        # Output panel: every change is saved at once (a running render keeps its own settings).
        set_output = (studio.set_output, [state, *output_controls], [state, output_note, error])
        for control in (output_scale, output_codec, output_preset, output_ten_bit, output_audio):
            control.input(*set_output, **quiet).then(
                studio.status_after_change, *result_status, **quiet
            ).then(lambda: "", None, output_estimate, **quiet)
        output_crf.release(*set_output, **quiet).then(
            studio.status_after_change, *result_status, **quiet
        )
        for event in (output_width.submit, output_width.blur):
            event(*set_output, **quiet).then(studio.status_after_change, *result_status, **quiet)

        estimate.click(
            studio.estimate,
            [state, guidance],
            [output_estimate],
            show_progress_on=[output_estimate],
            concurrency_limit=None,
        )

        # Projects panel: this browser's projects; each action answers beside its buttons.
        panel = projects.ProjectsPanel(studio.client)
        for event in (projects_panel.expand, projects_refresh.click):
            event(panel.refresh, [owner], [projects_table], **quiet)

        def pick(table: Any, evt: gr.SelectData) -> str:
            return projects.selected_name(table, evt.index)

        projects_table.select(pick, [projects_table], [projects_name], **quiet)
        for button, action in (
            (projects_rename, "rename"),
            (projects_duplicate, "duplicate"),
            (projects_delete, "delete"),
            (projects_clear, "clear_caches"),
        ):
            button.click(
                partial(panel.act, action),
                [state, projects_name, projects_new_name, owner],
                [projects_table, projects_message],
                concurrency_limit=None,
            )
        opened_here = projects_open.click(
            studio.reopen,
            [state, projects_name, owner],
            open_outputs,
            show_progress_on=[frame_view],
        )
        opened_here.success(studio.preview_full, preview_inputs, preview_outputs, **computing)
        opened_here.success(*show_output, **quiet)
        opened_here.success(*follow, **quiet)
        opened_here.success(*range_view, **quiet)
        opened_here.then(panel.refresh, [owner], [projects_table], **quiet)

        timer.tick(studio.engine_status, [state], [engine_status], **quiet)
        # The clip's filmstrip and player: asked for until ready, then the timer stops; every
        # newly opened clip starts it again.
        media_timer.tick(studio.clip_media, [state], [filmstrip, player, media_timer], **quiet)
        for event in (loaded, opened, reopened, relinked, opened_here):
            event.then(lambda: gr.Timer(active=True), None, media_timer, **quiet)
    return blocks
