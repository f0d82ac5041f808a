"""The studio page: its components with stable element ids (``ui.wiring`` connects their events).

Top to bottom: header (the clip, the engine), the main loop on one 1280x720 screen (the viewer
with its tabs, tools and the timeline on the left; the input frame, guidance, pin and render on
the right), keyframes with their edit panel, output and the restored clip, opening clips and
projects. Messages float at the bottom right. Element ids are a public interface (tests and
users' own automation use them).
"""

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
    RANGE_TAB,
    Studio,
    progress_html,
)
from ui.callbacks.clip_media import MEDIA_POLL_S
from ui.shortcuts import shortcuts_help_html
from ui.viewer import ZOOMS
from ui.wiring import Page, wire

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

            with gr.Column(scale=3, elem_id="clip-column"):
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
            projects_gallery = gr.Gallery(
                label="Click a project to choose it",
                elem_id="projects-gallery",
                columns=8,
                height=130,
                allow_preview=False,
                object_fit="contain",
            )
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

        # Wiring: which event runs which handler (ui/wiring.py)
        wire(
            studio,
            blocks,
            Page(
                state=state,
                remembered=remembered,
                owner=owner,
                timer=timer,
                media_timer=media_timer,
                title=title,
                engine_status=engine_status,
                error=error,
                render_message=render_message,
                clip_upload=clip_upload,
                projects_panel=projects_panel,
                projects_table=projects_table,
                projects_gallery=projects_gallery,
                projects_message=projects_message,
                scrubber=scrubber,
                player=player,
                frame_view=frame_view,
                frame_index=frame_index,
                guidance=guidance,
                progress=progress,
                download=download,
                range_info=range_info,
                range_progress=range_progress,
                color_fix=color_fix,
                gallery=gallery,
                make_all=make_all,
                edit_panel=edit_panel,
                edit_title=edit_title,
                output_note=output_note,
                result_video=result_video,
                reopen_name=reopen_name,
                reopen=reopen,
                relink_name=relink_name,
                relink_upload=relink_upload,
                projects_name=projects_name,
                projects_new_name=projects_new_name,
                projects_open=projects_open,
                projects_rename=projects_rename,
                projects_duplicate=projects_duplicate,
                projects_clear=projects_clear,
                projects_delete=projects_delete,
                projects_refresh=projects_refresh,
                viewer_tabs=viewer_tabs,
                zoom=zoom,
                viewport_box=viewport_box,
                pan_at=pan_at,
                timeline=timeline,
                filmstrip=filmstrip,
                pin=pin,
                render=render,
                cancel=cancel,
                auto_pick=auto_pick,
                output_scale=output_scale,
                output_width=output_width,
                output_codec=output_codec,
                output_crf=output_crf,
                output_preset=output_preset,
                output_ten_bit=output_ten_bit,
                output_audio=output_audio,
                estimate=estimate,
                output_estimate=output_estimate,
                tab_preview=tab_preview,
                preview=preview,
                tab_compare=tab_compare,
                before_after=before_after,
                tab_side=tab_side,
                side_before=side_before,
                side_after=side_after,
                tab_reference=tab_reference,
                viewer_fit=viewer_fit,
                registration=registration,
                range_video=range_video,
                mark_in=mark_in,
                mark_out=mark_out,
                clear_range=clear_range,
                range_render=range_render,
                auto_mode=auto_mode,
                auto_n=auto_n,
                auto_seed=auto_seed,
                editor_choice=editor_choice,
                editor_note=editor_note,
                task_prompt=task_prompt,
                content_prompt=content_prompt,
                seed=seed,
                upload=upload,
                make_reference=make_reference,
                reference_fit=reference_fit,
                reference_compare=reference_compare,
                provenance=provenance,
                pixel_scale=pixel_scale,
                semantic_scale=semantic_scale,
            ),
        )
    return blocks
