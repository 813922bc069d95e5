"""Side-by-side columns: how a table that lays every adapter of a batch next to the others along one axis (LoRA's
rank columns, a bottleneck adapter's bottleneck columns) gives each adapter number its block of columns.

Columns freed by an adapter that left are reused; when a newcomer fits nowhere, the table grows to the next power
of two of what its adapters need and lays the present blocks out again from column 0 (`repack`). A table only
grows, so its tensors keep their shapes while adapters come and go (CUDA graphs read them).
"""

from __future__ import annotations

from dataclasses import dataclass

LEAST_COLUMNS = 16


@dataclass(frozen=True)
class Move:
    """One block of a repack: adapter `number`'s `width` columns go from `old` to `new`."""

    number: int
    old: int
    new: int
    width: int


class ColumnBlocks:
    def __init__(self, columns: int = LEAST_COLUMNS):
        self.columns = columns
        self.blocks: dict[int, tuple[int, int]] = {}  # adapter number -> (first column, width)

    def find(self, width: int) -> int | None:
        """The first start of `width` free columns, or None when they fit nowhere."""
        start = 0
        for begin, size in sorted(self.blocks.values()):
            if begin - start >= width:
                return start
            start = max(start, begin + size)
        return start if self.columns - start >= width else None

    def hold(self, number: int, start: int, width: int) -> None:
        self.blocks[number] = (start, width)

    def release(self, number: int) -> bool:
        """Free `number`'s columns; False when it held none."""
        return self.blocks.pop(number, None) is not None

    def repack(self, room_for: int) -> tuple[int, list[Move]]:
        """Grow to hold the present blocks plus `room_for` more columns; returns the first free column and where
        each present block moves (the table copies its tensors accordingly)."""
        needed = sum(width for _, width in self.blocks.values()) + room_for
        size = LEAST_COLUMNS
        while size < needed:
            size *= 2
        self.columns = size
        moves, start = [], 0
        for number, (old, width) in sorted(self.blocks.items()):
            moves.append(Move(number, old, start, width))
            self.blocks[number] = (start, width)
            start += width
        return start, moves
