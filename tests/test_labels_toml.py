"""The TOML label form, learned files as label files, and 'labels check'."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipsort.errors import ExitCode, LabelFileError
from clipsort.labels.label_file import load_labels
from clipsort.labels.label_set import DEFAULT_TEMPLATES
from clipsort.labels.labels_toml import parse_toml_labels
from clipsort.run.classifier import threshold_of

RICH = """\
templates = ["a photo of a {}.", "a picture of a {label}."]
threshold = 0.6
margin = 1.5
tag_root = "auto"

[labels.dog]
aliases = ["puppy"]
threshold = 0.7

[labels."animals/cat"]
prompts = ["a photo of a cat", "a kitten"]
folder = "Pets/Cats"

[labels.screenshot]
exclude = true
"""


def test_rich_file_loads_every_field_into_one_label_set():
    labels = parse_toml_labels(RICH, "labels.toml")
    dog, cat, screenshot = labels.labels
    assert labels.kind == "toml" and labels.names == ["dog", "animals/cat", "screenshot"]
    assert labels.tag_root == "auto" and labels.margin == 1.5 and labels.threshold == 0.6
    assert dog.prompts == ("a photo of a dog.", "a picture of a dog.", "a photo of a puppy.", "a picture of a puppy.")
    assert dog.threshold == 0.7 and dog.threshold_source == "labels.toml:8" and dog.line == 6
    assert cat.prompts == ("a photo of a cat", "a kitten") and cat.custom_prompts
    assert cat.path == ("animals", "cat") and cat.folder_path == ("Pets", "Cats")
    assert screenshot.exclude and not dog.exclude


def test_threshold_precedence_label_then_flag_then_file_then_default(tmp_path: Path):
    labels = parse_toml_labels(RICH, "labels.toml")
    dog, cat, _ = labels.labels
    assert threshold_of(dog, labels, 0.2) == (0.7, "labels.toml:8")
    assert threshold_of(cat, labels, 0.2) == (0.2, "--threshold")
    assert threshold_of(cat, labels, None) == (0.6, "labels.toml:2 (file default)")
    plain = parse_toml_labels("[labels.dog]\n", "plain.toml")
    assert threshold_of(plain.labels[0], plain, None) == (0.5, "built-in default")
    assert plain.labels[0].prompts == tuple(t.format("dog") for t in DEFAULT_TEMPLATES)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("[labels.dog]\nthreshold = 1.5\n", 2, "threshold must be a number from 0 to 1"),
        ("[labels.dog]\ncolour = 'red'\n", 2, "unknown key 'colour'"),
        ("[labels.dog]\nprompts = []\n", 2, "prompts is empty"),
        ("threshold = 'high'\n[labels.dog]\n", 1, "threshold must be a number"),
        ('templates = ["a photo"]\n[labels.dog]\n', 1, "must hold {} (or {label}) exactly once"),
        ("[labels.dog]\n[labels.Dog]\n", 2, "duplicate label 'Dog' (first on line 1)"),
        ('[labels."a//b"]\n', 1, "empty part"),
        ("[labels.dog]\nexclude = 'yes'\n", 2, "exclude must be true or false"),
        ("[labels.dog\n", 1, "not valid TOML"),
        ("colour = 1\n", 1, "unknown setting 'colour'"),
        ("", None, "no labels"),
    ],
)
def test_malformed_toml_names_file_and_line(text, line, words):
    with pytest.raises(LabelFileError) as info:
        parse_toml_labels(text, "labels.toml")
    assert info.value.line == line, str(info.value)
    assert words in str(info.value)
    assert str(info.value).startswith("labels.toml:" + (f"{line}:" if line else ""))
    assert info.value.exit_code == ExitCode.USAGE


def test_load_labels_chooses_the_form_by_file(tmp_path: Path):
    (tmp_path / "a.toml").write_text("[labels.dog]\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("dog\n", encoding="utf-8")
    (tmp_path / "bad.json").write_text('{"format": "something else"}', encoding="utf-8")
    assert load_labels(tmp_path / "a.toml").kind == "toml"
    assert load_labels(tmp_path / "a.txt").kind == "text"
    with pytest.raises(LabelFileError, match="not a file made by 'clipsort learn'"):
        load_labels(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text('{"format": \n', encoding="utf-8")
    with pytest.raises(LabelFileError, match="not valid JSON") as info:
        load_labels(tmp_path / "broken.json")
    assert info.value.line == 2
