"""How a Reference fits its keyframe, as the page shows it: a badge, the numbers and, when the
Reference does not match its frame, a warning styled as one (issue 16, "the user sees it").

The fit itself is measured by ``sparkvsr.references.fit`` when the Reference is made; this module
only words it. Pure functions, HTML out.
"""

from __future__ import annotations

from html import escape

from sparkvsr.references.base import ReferenceFit

BADGES = {
    "fits": ("fits", "fit-ok"),
    "shifted": ("shifted (fixed)", "fit-fixed"),
    "recoloured": ("recoloured", "fit-colour"),
    "different content": ("different content", "fit-bad"),
}
"""verdict -> (badge text, css class)."""


def mismatched(fit: ReferenceFit) -> bool:
    """Whether the Reference does not match its frame somewhere: different content, a named
    region that differs, or a move registration could not undo."""
    return (
        fit.verdict == "different content" or bool(fit.region) or "not re-aligned" in (fit.message)
    )


def fit_numbers(fit: ReferenceFit) -> list[str]:
    """The fit's numbers in words, e.g. ``["31.2 dB against the frame", "moved 5.0 px", ...]``."""
    numbers = [f"{fit.psnr:.1f} dB against the frame"]
    if fit.shift:
        numbers.append(f"moved {fit.shift:.1f} px")
    numbers.append(f"colour change {fit.colour_change:.1f} levels")
    numbers.append(f"differs over {fit.disagreement:.0%}")
    numbers.append(f"weight {fit.weight:.2f}")
    return numbers


def fit_html(fit: ReferenceFit | None, frame: int) -> str:
    """The fit of keyframe ``frame``'s Reference: badge, numbers, and a note or a warning.

    ``data-verdict`` carries the verdict for scripts and tests; a warning has
    ``class="fit-warning"`` and ``role="alert"``.
    """
    if fit is None:
        return (
            f'<div class="fit" data-frame="{frame}" data-verdict="unknown"><span class="fit-badge '
            'fit-unknown">fit not measured</span><span class="fit-numbers">made before references '
            "were fitted: make it again to see how it fits its frame</span></div>"
        )
    text, kind = BADGES.get(fit.verdict, (fit.verdict, "fit-unknown"))
    numbers = " · ".join(escape(n) for n in fit_numbers(fit))
    message = escape(fit.message or "Fits its frame")
    if mismatched(fit):
        said = (
            f'<div class="fit-warning" role="alert"><b>Does not match frame {frame}:</b> '
            f"{message}</div>"
        )
    else:
        said = f'<div class="fit-note">{message}</div>'
    return (
        f'<div class="fit" data-frame="{frame}" data-verdict="{escape(fit.verdict)}">'
        f'<span class="fit-badge {kind}">{escape(text)}</span>'
        f'<span class="fit-numbers">{numbers}</span>{said}</div>'
    )


def no_reference_html(frame: int) -> str:
    """The Reference view when there is none to show."""
    return (
        f'<div class="fit" data-frame="{frame}" data-verdict="none"><span class="fit-numbers">'
        "No reference here: go to a keyframe with a reference (a green marker on the timeline) "
        "or select one in the keyframe gallery.</span></div>"
    )
