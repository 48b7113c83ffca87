"""Hostile result endpoints, for proving the copier refuses what it must.

Scripted as a job's result URLs (``result_urls``), they stand in for a provider that was
compromised or misconfigured. They are only ever served on loopback by the emulator.
"""

from __future__ import annotations

import io

from flask import Blueprint, Response, redirect
from PIL import Image

METADATA_URL = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"


def _jpeg_head() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 90, 60)).save(buffer, "JPEG")
    return buffer.getvalue()


def make_blueprint() -> Blueprint:
    blueprint = Blueprint("hostile", __name__)

    @blueprint.get("/redirect-to-metadata")
    def to_metadata() -> Response:
        return redirect(METADATA_URL, code=302)  # type: ignore[return-value]

    @blueprint.get("/not-an-image")
    def not_an_image() -> Response:
        return Response("<html><body>definitely a cat</body></html>", mimetype="image/jpeg")

    @blueprint.get("/huge/<int:megabytes>")
    def huge(megabytes: int) -> Response:
        head = _jpeg_head()

        def body():  # type: ignore[no-untyped-def]
            yield head
            chunk = b"\0" * (1024 * 1024)
            for _ in range(min(megabytes, 512)):
                yield chunk

        return Response(body(), mimetype="image/jpeg")

    return blueprint
