"""The REST client against a real `fungi server` (FUNGI_BIN names the binary)."""

import os
import re
import socket
import subprocess
import time

import pytest

import fungi

FUNGI_BIN = os.environ.get("FUNGI_BIN")
pytestmark = pytest.mark.skipif(not FUNGI_BIN, reason="set FUNGI_BIN to a built `fungi` binary")

SHORT = """CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '10');
CREATE TABLE out (id BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO out SELECT id FROM g;"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [FUNGI_BIN, "server", "--data-dir", str(tmp_path), "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.PIPE, text=True,
    )
    key = None
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"admin key.*: (fgk_\S+)", line)
        if m:
            key = m.group(1)
        if "(REST /api/v1)" in line:
            break
    assert key, "the server printed no admin key"
    yield f"http://127.0.0.1:{port}", key
    proc.kill()
    proc.wait()


def test_the_client_runs_jobs_and_reports_refusals(server):
    url, admin_key = server
    admin = fungi.Client(url, admin_key)
    admin.create_tenant("py", {"max_jobs": 5})
    dev = fungi.Client(url, admin.create_key("developer", tenant="py")["key"])
    job = dev.submit_job(SHORT)
    assert job["tenant"] == "py" and job["status"] == "RUNNING"
    deadline = time.time() + 30
    while dev.job(job["id"])["status"] == "RUNNING":
        assert time.time() < deadline
        time.sleep(0.1)
    details = dev.job(job["id"])
    assert details["status"] == "FINISHED"
    assert [j["id"] for j in dev.jobs()] == [job["id"]]
    with pytest.raises(fungi.FungiError) as refused:
        dev.submit_job("INSERT INTO nowhere SELECT 1")
    assert refused.value.status == 400 and "does not plan" in refused.value.message
    with pytest.raises(fungi.FungiError) as refused:
        dev.upload_plugin("junk", b"not wasm")
    assert refused.value.status == 400 and "does not load" in refused.value.message
    with pytest.raises(fungi.FungiError) as refused:
        fungi.Client(url, "fgk_00_11").jobs()
    assert refused.value.status == 401
    assert dev.plugins() == []
    assert dev.functions() == []
    with pytest.raises(fungi.FungiError, match="expected CREATE FUNCTION"):
        dev.register_function("SELECT 1")
