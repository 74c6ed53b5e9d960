"""bosun.fstree.rmtree: any depth, never through a symlink."""

from __future__ import annotations

import os

import pytest

from bosun.fstree import rmtree


def deep(root, depth: int) -> None:
    """root/a/a/…/a (depth levels, past PATH_MAX), a file and a symlink at the bottom."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("a", dir_fd=fd)
        child = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
        f.write("x")
    os.symlink("/", "root-link", dir_fd=fd)
    os.close(fd)


def test_removes_a_tree_deeper_than_the_interpreter_recurses(tmp_path):
    top = tmp_path / "top"
    top.mkdir()
    deep(str(top), 3000)
    for i in range(50):  # and a wide level beside it
        (top / f"w{i}").mkdir()
        (top / f"w{i}" / "f").write_text("x")
    rmtree(str(top))
    assert os.listdir(tmp_path) == []


def test_never_follows_symlinks(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    top = tmp_path / "top"
    (top / "d").mkdir(parents=True)
    (top / "d" / "to-outside").symlink_to(outside)
    (tmp_path / "link-to-top").symlink_to(top)
    with pytest.raises(OSError):
        rmtree(str(tmp_path / "link-to-top"))
    rmtree(str(top))
    assert (outside / "keep").exists() and not top.exists()


def test_relative_to_a_directory_fd_and_missing(tmp_path):
    (tmp_path / "x" / "y").mkdir(parents=True)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        rmtree("x", dir_fd=fd)
        with pytest.raises(FileNotFoundError):
            rmtree("x", dir_fd=fd)
    finally:
        os.close(fd)
    assert os.listdir(tmp_path) == []
