"""Label files: parsing, prompts, hierarchy and the errors that name their line."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipsort.errors import ExitCode, LabelFileError
from clipsort.labels.label_file import load_labels
from clipsort.labels.label_set import DEFAULT_TEMPLATES, parse_labels


def test_plain_labels_use_the_template_ensemble():
    labels = parse_labels("dog\ncat\n")
    assert labels.names == ["dog", "cat"]
    dog = labels.labels[0]
    assert not dog.custom_prompts
    assert dog.prompts == tuple(t.format("dog") for t in DEFAULT_TEMPLATES)
    assert "a photo of a dog." in dog.prompts


def test_own_prompts_comments_and_blank_lines():
    text = "# my labels\n\nbeach: a sandy beach | people swimming in the sea   # summer\n  C#  \n"
    labels = parse_labels(text)
    beach, csharp = labels.labels
    assert beach.prompts == ("a sandy beach", "people swimming in the sea")
    assert beach.custom_prompts and beach.line == 3
    assert csharp.name == "C#"  # a '#' inside a word is not a comment


def test_hierarchical_label_has_path_leaf_and_leaf_prompts():
    label = parse_labels("animals / dog\n").labels[0]
    assert label.path == ("animals", "dog")
    assert label.name == "animals/dog"
    assert label.leaf == "dog"
    assert label.prompts[0] == "a photo of a dog."


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", None, "no labels"),
        ("# only a comment\n\n", None, "no labels"),
        ("dog\ncat\nDog\n", 3, "duplicate label 'Dog' (first on line 1)"),
        ("dog\n: a prompt\n", 2, "empty label"),
        ("dog\nbeach:\n", 2, "no prompts"),
        ("beach: sand | | sea\n", 1, "empty prompt"),
        ("animals//dog\n", 1, "empty part"),
        ("/dog\n", 1, "empty part"),
        ("../dog\n", 1, "cannot be a label"),
        ("dog|cat\n", 1, "needs a 'label:'"),
        ("what?\n", 1, "not allowed"),
    ],
)
def test_malformed_files_name_the_line(text, line, words):
    with pytest.raises(LabelFileError) as info:
        parse_labels(text, "labels.txt")
    assert info.value.line == line
    assert words in str(info.value)
    assert str(info.value).startswith("labels.txt:" + (f"{line}:" if line else ""))
    assert info.value.exit_code == ExitCode.USAGE


def test_load_reads_utf8_with_bom_and_rejects_other_encodings(tmp_path: Path):
    good = tmp_path / "good.txt"
    good.write_bytes("\ufeffcafé\nörtchen\n".encode())
    assert load_labels(good).names == ["café", "örtchen"]
    bad = tmp_path / "bad.txt"
    bad.write_bytes("dog\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(LabelFileError) as info:
        load_labels(bad)
    assert info.value.line == 2 and "UTF-8" in str(info.value)


def test_missing_label_file(tmp_path: Path):
    with pytest.raises(LabelFileError, match="not found"):
        load_labels(tmp_path / "nope.txt")
