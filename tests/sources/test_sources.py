"""immray.sources on real files and a real (local, moto) S3 server: which URIs are refused before
anything is read, and how reading fails for one file."""

from __future__ import annotations

import os
import threading

import pytest

from immray.settings import Settings
from immray.sources import (
    FileLocation,
    ObjectLocation,
    SourceRefused,
    Sources,
    SourceUnreadable,
    parse_uri,
)
from s3_testkit import bucket_settings, closed_port, moto_server, s3_client


@pytest.fixture()
def root(tmp_path):
    allowed = tmp_path / "allowed"
    (allowed / "album").mkdir(parents=True)
    (allowed / "album" / "a.jpg").write_bytes(b"jpeg bytes")
    (tmp_path / "secret.jpg").write_bytes(b"private")
    return allowed


def reader(*roots, **settings) -> Sources:
    return Sources.from_settings(Settings(allowed_roots=list(roots), **settings))


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("", "empty"),
        ("http://example.com/a.jpg", "http(s)"),
        ("HTTPS://example.com/a.jpg", "http(s)"),
        ("ftp://example.com/a.jpg", "ftp://"),
        ("pds://drive/a.jpg", "pds://"),
        ("a.jpg", "no scheme"),
        ("/abs/a.jpg", "no scheme"),
        ("file:relative/a.jpg", "relative"),
        ("file://server/share/a.jpg", "host"),
        ("file:///a/../b.jpg", "'..'"),
        ("file:///a/%2E%2e/b.jpg", "'..'"),
        ("file:///a/b%00.jpg", "NUL"),
        ("file:///a/b.jpg?x=1", "query"),
        ("file:///a/b.jpg#frag", "query"),
        ("file:///a/b\n.jpg", "control"),
        ("s3://Bad_Bucket/a.jpg", "bucket name"),
        ("oss://bucket", "no object"),
        ("oss://bucket/", "no object"),
        ("s3:bucket/a.jpg", "s3://bucket/key"),
        ("file:///" + "a" * 2100, "longer"),
    ],
)
def test_malformed_and_refused_uris(uri, words):
    with pytest.raises(SourceRefused) as refused:
        parse_uri(uri)
    assert words in refused.value.message and refused.value.uri == uri


def test_uris_that_parse():
    assert parse_uri("file:///p/a%20b%C3%BC.jpg") == FileLocation("file:///p/a%20b%C3%BC.jpg", "/p/a bü.jpg")
    assert parse_uri("file://localhost/p/a.jpg").path == "/p/a.jpg"
    assert parse_uri("file:/p/a.jpg").path == "/p/a.jpg"
    assert parse_uri("oss://my-bucket/dir/a b?#.jpg") == ObjectLocation(
        "oss://my-bucket/dir/a b?#.jpg", "oss", "my-bucket", "dir/a b?#.jpg"
    )
    assert parse_uri("S3://my.bucket/k").scheme == "s3"


def test_files_are_read_only_under_the_allowed_roots(root, tmp_path):
    sources = reader(root)
    location = sources.check((root / "album" / "a.jpg").as_uri())
    found = sources.read(location)
    assert found.data == b"jpeg bytes" and found.info.size == 10 and found.info.filename == "a.jpg"
    assert found.info.content_type == "image/jpeg"
    for outside in (tmp_path / "secret.jpg", tmp_path / "allowed-not" / "a.jpg", tmp_path):
        with pytest.raises(SourceRefused, match="not under an allowed root"):
            sources.check(outside.as_uri())
    with pytest.raises(SourceRefused, match="off on this server"):
        reader().check((root / "album" / "a.jpg").as_uri())


def test_symlinks_may_not_lead_out_of_the_roots(root, tmp_path):
    (root / "escape.jpg").symlink_to(tmp_path / "secret.jpg")
    (root / "escape-dir").symlink_to(tmp_path)
    (root / "inside.jpg").symlink_to(root / "album" / "a.jpg")
    sources = reader(root)
    for uri in ((root / "escape.jpg").as_uri(), (root / "escape-dir" / "secret.jpg").as_uri()):
        with pytest.raises(SourceRefused, match="symlink"):
            sources.check(uri)
    assert sources.read(sources.check((root / "inside.jpg").as_uri())).data == b"jpeg bytes"
    # accepted, then the link is pointed outside before the read: that file fails alone
    link = root / "later.jpg"
    link.symlink_to(root / "album" / "a.jpg")
    location = sources.check(link.as_uri())
    link.unlink()
    link.symlink_to(tmp_path / "secret.jpg")
    with pytest.raises(SourceUnreadable, match="outside"):
        sources.read(location)


def test_unreadable_files_fail_with_a_reason(root):
    sources = reader(root, max_source_bytes=64)
    missing = sources.check((root / "album" / "gone.jpg").as_uri())
    with pytest.raises(SourceUnreadable) as caught:
        sources.stat(missing)
    assert caught.value.reason == "[InvalidArgument] File does not exist."
    with pytest.raises(SourceUnreadable, match="not a regular file"):
        sources.read(sources.check((root / "album").as_uri()))
    (root / "big.jpg").write_bytes(b"x" * 65)
    with pytest.raises(SourceUnreadable) as big:
        sources.read(sources.check((root / "big.jpg").as_uri()))
    assert big.value.reason.startswith("[FileTooLarge]")


def test_a_fifo_under_a_root_does_not_hang_the_reader(root):
    fifo = root / "pipe.jpg"
    os.mkfifo(fifo)
    sources = reader(root)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            sources.read(sources.check(fifo.as_uri()))
        except SourceUnreadable as exc:
            outcome.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive() and "not a regular file" in str(outcome[0])


def test_the_fingerprint_follows_the_bytes(root):
    sources = reader(root)
    path = root / "album" / "a.jpg"
    location = sources.check(path.as_uri())
    first = sources.stat(location).fingerprint
    assert sources.stat(location).fingerprint == first
    path.write_bytes(b"other bytes!")
    assert sources.stat(location).fingerprint != first


def test_objects_are_read_through_the_endpoint_of_their_bucket():
    with moto_server() as url:
        store = s3_client(url)
        store.create_bucket(Bucket="photos")
        store.put_object(Bucket="photos", Key="2024/a b.jpg", Body=b"object bytes", ContentType="image/jpeg")
        store.put_object(Bucket="photos", Key="raw.png", Body=b"png")
        sources = reader(
            buckets={
                "photos": bucket_settings(url),
                "oss://dead": {**bucket_settings(url), "endpoint_url": f"http://127.0.0.1:{closed_port()}"},
            }
        )
        for scheme in ("s3", "oss"):
            found = sources.read(sources.check(f"{scheme}://photos/2024/a b.jpg"))
            assert found.data == b"object bytes" and found.info.etag and found.info.filename == "a b.jpg"
            assert found.info.content_type == "image/jpeg" and found.info.size == 12
        assert sources.stat(sources.check("s3://photos/raw.png")).content_type == "image/png"
        first = sources.stat(sources.check("s3://photos/raw.png")).fingerprint
        store.put_object(Bucket="photos", Key="raw.png", Body=b"png, changed")
        assert sources.stat(sources.check("s3://photos/raw.png")).fingerprint != first
        with pytest.raises(SourceUnreadable) as missing:
            sources.read(sources.check("oss://photos/nope.jpg"))
        assert missing.value.reason == "[InvalidArgument] File does not exist."
        with pytest.raises(SourceUnreadable) as down:
            sources.stat(sources.check("oss://dead/a.jpg"))
        assert down.value.reason.startswith("[SourceUnavailable]")
        with pytest.raises(SourceRefused, match="no endpoint"):
            sources.check("s3://dead/a.jpg")  # configured for oss:// only
        with pytest.raises(SourceRefused, match="no endpoint"):
            sources.check("s3://other/a.jpg")
