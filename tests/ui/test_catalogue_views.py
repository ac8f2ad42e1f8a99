"""The Catalogue tab's summary line: "N of M matches" counts only what the gallery shows."""

from __future__ import annotations

from tricolor.catalogue.search import Hit, Page, Query
from ui import views


def hit(name: str) -> Hit:
    return Hit(
        labels=["tabby"],
        scores=[0.9],
        class_ids=[281],
        color_rgb="#FF0000",
        color_ryb="#FE2712",
        color_rgb_shares=[1.0] + [0.0] * 11,
        color_ryb_shares=[1.0] + [0.0] * 11,
        second_look=False,
        path=f"/photos/{name}",
        sha256="0" * 64,
        size=1,
        width=1,
        height=1,
        provenance={},
    )


def test_hits_whose_file_is_gone_are_not_counted() -> None:
    page = Page(total=5, hits=[hit("a.png"), hit("b.png"), hit("c.png")])
    shown = views.catalogue_summary(page, Query(label="tabby"), held="9", hidden=1)
    assert "**2 of 4 matches**" in shown and "1 not found on disk" in shown
    assert "**3 of 5 matches**" in views.catalogue_summary(page, Query(label="tabby"), held="9")


def test_a_page_whose_files_are_all_gone_matches_nothing() -> None:
    page = Page(total=1, hits=[hit("a.png")])
    shown = views.catalogue_summary(page, Query(label="tabby"), held="9", hidden=1)
    assert shown.startswith("**Nothing matches**") and "1 not found on disk" in shown


def test_a_capped_count_says_more_than() -> None:
    page = Page(total=1000, hits=[hit("a.png"), hit("b.png")], capped=True)
    shown = views.catalogue_summary(page, Query(label="tabby"), held=None)
    assert "**2 of more than 1,000 matches**" in shown
