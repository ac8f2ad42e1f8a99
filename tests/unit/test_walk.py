"""What `label` and `classify` find in a folder: the order, and what is left out."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from tests.helpers import encode
from tricolor.walk import find_images, walk_folder


def make_tree(root: Path) -> None:
    png = encode(Image.new("RGB", (8, 8), "red"), "PNG")
    for relative in ["b.png", "a.JPG", "sub/z.png", "sub/deeper/y.png", "other/x.png"]:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(png)
    (root / "no_suffix").write_bytes(png)  # an image by its content
    (root / "broken.jpg").write_bytes(b"not a jpeg")  # kept: the server says why
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(png)
    (root / ".cache").mkdir()
    (root / ".cache" / "thumb.png").write_bytes(png)
    (root / "loop").symlink_to(root / "sub", target_is_directory=True)  # not followed
    (root / "link.png").symlink_to(root / "b.png")  # a link to a file is a file
    (root / "dangling.png").symlink_to(root / "gone.png")
    (root / "caf\udce9.png").write_bytes(png)  # not UTF-8: the file system's bytes kept


def test_a_folder_is_walked_files_first_sorted_without_hidden_or_linked_folders(
    tmp_path: Path,
) -> None:
    root = tmp_path / "photos"
    make_tree(root)
    found = list(walk_folder(root))
    assert [image.relative for image in found] == [
        "a.JPG",
        "b.png",
        "broken.jpg",
        "caf\udce9.png",
        "link.png",
        "no_suffix",
        "other/x.png",
        "sub/z.png",
        "sub/deeper/y.png",
    ]
    assert all(image.path == root / image.relative for image in found)
    assert os.fsencode(found[3].relative) == b"caf\xe9.png"


def test_a_file_reached_twice_is_found_once(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    make_tree(root)
    found = find_images([root, root / "b.png", root / "sub" / "z.png"])
    assert [image.relative for image in found] == [  # link.png is b.png
        image.relative for image in walk_folder(root) if image.relative != "link.png"
    ]
