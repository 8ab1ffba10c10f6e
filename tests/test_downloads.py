"""Released weights: the table, downloads from file:// URLs written here, hash checks that leave
no partial file, and the command the missing-model_path errors name."""

import hashlib

import pytest

import train as train_script
import utils.downloads as downloads
from utils.downloads import RELEASES, DownloadError, Release, download

CONTENT = b"pretend these are weights"


@pytest.fixture
def release(tmp_path, monkeypatch):
    """A released file served from a file:// URL; `release(md5)` sets its published hash."""
    source = tmp_path / "server" / "unet_vgg_voc.h5"
    source.parent.mkdir()
    source.write_bytes(CONTENT)

    def publish(md5: str | None) -> Release:
        entry = Release("unet_vgg_voc.h5", source.as_uri(), md5, "a test file", "vgg", 21,
                        "512x512", "-")
        monkeypatch.setitem(RELEASES, "unet_vgg_voc", entry)
        return entry

    return publish


def test_download_checks_the_published_hash(tmp_path, release):
    release(hashlib.md5(CONTENT).hexdigest())
    path = download("unet_vgg_voc", tmp_path / "model_data")
    assert path == (tmp_path / "model_data" / "unet_vgg_voc.h5").resolve()
    assert path.read_bytes() == CONTENT
    assert [p.name for p in path.parent.iterdir()] == ["unet_vgg_voc.h5"]
    assert download("unet_vgg_voc", tmp_path / "model_data") == path  # present: kept


def test_a_hash_mismatch_is_an_error_and_leaves_no_file(tmp_path, release):
    release("0" * 32)
    folder = tmp_path / "model_data"
    with pytest.raises(DownloadError, match=r"unet_vgg_voc\.h5 could not be downloaded"):
        download("unet_vgg_voc", folder)
    assert list(folder.iterdir()) == []
    (folder / "unet_vgg_voc.h5").write_bytes(b"something else")
    with pytest.raises(DownloadError, match="MD5 differs.*delete it and run `python -m "
                                            "utils.downloads --weights unet_vgg_voc`"):
        download("unet_vgg_voc", folder)


def test_an_unreachable_url_is_an_error(tmp_path, monkeypatch):
    missing = Release("x.h5", (tmp_path / "nowhere.h5").as_uri(), None, "", "vgg", 2, "", "")
    monkeypatch.setitem(RELEASES, "unet_vgg_voc", missing)
    with pytest.raises(DownloadError, match="nowhere.h5 could not be downloaded"):
        download("unet_vgg_voc", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_command_line_lists_and_downloads(tmp_path, release, capsys, user_error):
    release(None)  # no published hash: downloaded as is
    downloads.main([])
    listing = capsys.readouterr().out
    for name in RELEASES:
        assert name in listing
    assert "64.12 on VOC-Val12" in listing  # unet_resnet_voc, as the original reports it
    downloads.main(["--weights", "unet_vgg_voc", "--model_dir", str(tmp_path / "md")])
    assert (tmp_path / "md" / "unet_vgg_voc.h5").read_bytes() == CONTENT
    message = user_error(downloads.main, ["--weights", "unet_vgg"])
    assert "weights has 'unet_vgg', which is not supported" in message


def test_the_published_hashes_are_keras_applications_own():
    assert RELEASES["vgg16_imagenet"].md5 == "6d6bbae143d832006294945121d1f1fc"
    assert RELEASES["resnet50_imagenet"].md5 == "4d473c1dd8becc155b73f8504c6f6626"
    for name in ("unet_vgg_voc", "unet_resnet_voc", "unet_voc_medical"):
        assert RELEASES[name].url.startswith("https://github.com/bubbliiiing/unet-keras/")


def test_train_names_the_download_command_for_a_missing_default(tmp_path, user_error,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)  # model_data/unet_vgg_voc.h5 does not exist here
    message = user_error(train_script.main, ["--VOCdevkit_path", str(tmp_path)])
    assert "model_path = 'model_data/unet_vgg_voc.h5' does not exist" in message
    assert "python -m utils.downloads --weights unet_vgg_voc" in message
