"""The browser upload example of docs/clients.md, run as printed with node's own fetch,
FormData and Blob against the local stack: the photos it uploads arrive and are accepted.

moto stores a presigned POST whatever the order of its parts; S3 ignores every field after
the file, so the test reads each form that reaches moto and holds it to S3's rule itself.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

from local import photos
from local.client import ApiClient, wait_until
from local.stack import LocalStack
from tests.support.client_examples import examples

pytestmark = pytest.mark.integration

HARNESS = """
import { readFile } from "node:fs/promises";
import { uploadSelfies } from "./upload.mjs";

const [apiBase, token, modelId, ...paths] = process.argv.slice(2);
const files = await Promise.all(
  paths.map(async (path) => new Blob([await readFile(path)], { type: "image/jpeg" })),
);
console.log(JSON.stringify(await uploadSelfies(apiBase, token, modelId, files)));
"""


@pytest.fixture()
def forms_posted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[bytes]]]:
    """The part names, in order, of every multipart form POSTed to moto meanwhile."""
    forms: list[list[bytes]] = []
    original = DomainDispatcherApplication.__call__

    def recording(app: Any, environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] == "POST" and "multipart/form-data" in environ.get(
            "CONTENT_TYPE", ""
        ):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            forms.append(re.findall(rb'Content-Disposition: form-data; name="([^"]+)"', body))
        return original(app, environ, start_response)

    monkeypatch.setattr(DomainDispatcherApplication, "__call__", recording)
    yield forms


@pytest.fixture()
def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not installed: the browser example needs fetch and FormData")
    return found


def test_the_browser_example_uploads_selfies_the_stack_accepts(
    stack: LocalStack,
    client: ApiClient,
    user: str,
    node: str,
    tmp_path: Path,
    forms_posted: list[list[bytes]],
) -> None:
    # Given the page's browser example, saved as a module, and three photos
    language, code = examples()["browser-upload"]
    assert language == "js"
    (tmp_path / "upload.mjs").write_text(code)
    (tmp_path / "run.mjs").write_text(HARNESS)
    paths = []
    for seed in range(3):
        path = tmp_path / f"selfie-{seed}.jpg"
        path.write_bytes(photos.selfie_jpeg(seed, size=(600, 800)))
        paths.append(str(path))
    model_id = client.create_model("woman")["model_id"]
    # When node runs it against the API and the presigned S3 forms
    run = subprocess.run(  # noqa: S603 - our own file, run by the node on PATH
        [node, "run.mjs", stack.api_url, stack.token(user), model_id, *paths],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    selfie_ids = json.loads(run.stdout)
    # Then each form S3 received had every presigned field, and the file last (S3's rule)
    assert len(forms_posted) == 3
    for names in forms_posted:
        assert names[-1] == b"file"
        assert {b"key", b"policy", b"Content-Type"} <= set(names[:-1])
    # Then every photo arrived and was checked and accepted
    selfies = wait_until(
        lambda: client.list_selfies(model_id),
        lambda items: len(items) == 3 and all(s["status"] != "pending" for s in items),
        timeout=60,
    )
    assert sorted(s["selfie_id"] for s in selfies) == sorted(selfie_ids)
    assert [s["status"] for s in selfies] == ["accepted"] * 3
