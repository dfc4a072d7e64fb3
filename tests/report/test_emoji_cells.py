"""Emoji sequences are measured in the columns a terminal draws them in: a skin-tone
modifier, a variation selector and a keycap draw into the emoji before them, and a
zero-width joiner reaches the table as its escape (clean())."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hopwatch.report.table import truncate_middle
from hopwatch.report.text import cells, clean, head_cells, tail_cells
from tests.report.conftest import Run
from tests.report.samples import line

RunCli = Callable[..., Run]

THUMBS_UP_MEDIUM = "\U0001f44d\U0001f3fd"  # thumbs up, medium skin tone
WAVE_DARK = "\U0001f44b\U0001f3ff"  # waving hand, dark skin tone
HEART = "\u2764\ufe0f"  # a red heart, asked for as emoji (VS16)
HEART_AS_TEXT = "\u2764\ufe0e"  # ... asked for as text (VS15)
KEYCAP = "#\ufe0f\u20e3"
FAMILY = "\U0001f468\U0001f3fd\u200d\U0001f469"  # man (medium tone), ZWJ, woman

#: (as logged, columns of what is printed): every emoji sequence in two columns; the
#: zero-width joiner escaped (six columns) between its two emoji.
SEQUENCES = [
    (THUMBS_UP_MEDIUM, 2),
    (WAVE_DARK + WAVE_DARK, 4),
    (f"/a/{THUMBS_UP_MEDIUM}/b/", 8),
    (HEART, 2),
    (HEART_AS_TEXT, 1),
    ("\U0001f44d\ufe0f", 2),
    ("a\ufe0f", 1),
    (KEYCAP, 2),
    (FAMILY, 10),
    ("/\u65e5\u672c/\U0001f600/", 9),
]


@pytest.mark.parametrize(("logged", "columns"), SEQUENCES)
def test_an_emoji_sequence_takes_the_columns_a_terminal_draws(logged: str, columns: int) -> None:
    printed = clean(logged)
    assert cells(printed) == columns
    rich_cells = pytest.importorskip("rich.cells")
    assert rich_cells.cell_len(printed) == columns


def test_a_skin_tone_alone_or_after_a_letter_is_its_own_swatch() -> None:
    assert cells("\U0001f3fd") == 2
    assert cells("x\U0001f3fd") == 3


def test_a_cut_never_parts_an_emoji_from_its_modifier() -> None:
    value = "ab" + THUMBS_UP_MEDIUM + HEART + KEYCAP + "cd"  # 2 + 2 + 2 + 2 + 2 columns
    assert [head_cells(value, width) for width in range(6)] == [
        "",
        "a",
        "ab",
        "ab",
        "ab" + THUMBS_UP_MEDIUM,
        "ab" + THUMBS_UP_MEDIUM,
    ]
    assert head_cells(value, 7) == "ab" + THUMBS_UP_MEDIUM + HEART
    assert [tail_cells(value, width) for width in range(4, 8)] == [
        KEYCAP + "cd",
        KEYCAP + "cd",
        HEART + KEYCAP + "cd",
        HEART + KEYCAP + "cd",
    ]
    for width in range(1, 12):
        cut = truncate_middle(value, width)
        assert cells(cut) <= width
        assert "\U0001f3fd" not in cut or THUMBS_UP_MEDIUM in cut
        assert "\ufe0f" not in cut.replace(HEART, "").replace(KEYCAP, "")


def test_the_table_stays_aligned_around_emoji_sequences(run_cli: RunCli, tmp_path: Path) -> None:
    routes = [f"/{logged}/" for logged, _columns in SEQUENCES] + ["/plain/"]
    log = tmp_path / "app.log"
    log.write_text(
        "".join(
            line(route=route, request_id=str(i), hops=i + 1) + "\n"
            for i, route in enumerate(routes)
        ),
        encoding="utf-8",
    )
    result = run_cli(log, "--format", "text", "--top", "0", "--no-legend")
    assert result.status == 0, result.err
    rows = [row for row in result.out.splitlines() if " GET /" in row]
    assert len(rows) == len(routes)
    # the column after the endpoint's ends at the same terminal column on every row, as
    # the sequences are drawn (each replaced by as many x's as it takes columns)
    drawn = sorted(((clean(logged), columns) for logged, columns in SEQUENCES), reverse=True)
    ends = set()
    for row in rows:
        before = row.split("  1  ")[0]
        for printed, columns in drawn:
            before = before.replace(printed, "x" * columns)
        assert before.isascii(), before
        ends.add(len(before))
    assert len(ends) == 1, rows
    rich_cells = pytest.importorskip("rich.cells")
    assert len({rich_cells.cell_len(row.split("  1  ")[0]) for row in rows}) == 1, rows
