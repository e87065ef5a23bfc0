"""An agent for the MCP tests, on the official Python MCP client (`mcp` from PyPI).

Usage: python mcp_agent.py (http|stdio) SERVER_URL KEY SCENARIO [ARG]

Connects over streamable HTTP (SERVER_URL/mcp, the key as a bearer token) or over stdio
(`$FUNGI_BIN mcp --server SERVER_URL` with FUNGI_API_KEY), runs one scenario and prints
what it saw as one JSON object on the last line of its output.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def result(r):
    """A tool result as data: error flag, structured content, text."""
    text = "".join(getattr(c, "text", "") for c in r.content)
    return {"error": bool(r.is_error), "data": r.structured_content, "text": text}


async def call(session, name, args):
    try:
        return result(await session.call_tool(name, args))
    except Exception as e:  # a protocol error (unknown tool, bad arguments)
        return {"protocol_error": str(e)}


async def scenario(session, which, arg):
    out = {}
    init = await session.initialize()
    out["server"] = init.server_info.name
    out["tools"] = sorted(t.name for t in (await session.list_tools()).tools)
    annotations = {}
    for t in (await session.list_tools()).tools:
        a = t.annotations
        annotations[t.name] = {"read_only": a.read_only_hint, "destructive": a.destructive_hint}
    out["annotations"] = annotations
    if which == "explore":
        out["explain_bad"] = await call(session, "explain_sql", {"sql": "INSERT INTO nowhere SELECT 1"})
        out["validate_bad"] = await call(session, "validate_sql", {"sql": "SELECT FROM WHERE"})
        out["unknown_tool"] = await call(session, "drop_everything", {})
        out["wrong_types"] = await call(session, "job_details", {"job_id": 42})
        out["oversized"] = await call(session, "explain_sql", {"sql": "-- " + "x" * (2 << 20)})
        out["resources"] = sorted(r.uri for r in (await session.list_resources()).resources)
        doc = await session.read_resource("fungi://docs/sql")
        out["sql_doc_chars"] = sum(len(getattr(c, "text", "")) for c in doc.contents)
        prompts = await session.list_prompts()
        out["prompts"] = sorted(p.name for p in prompts.prompts)
        p = await session.get_prompt("diagnose_slow_job", {"job_id": "job-x"})
        out["prompt_text"] = "".join(getattr(m.content, "text", "") for m in p.messages)
    elif which == "run":
        sql = arg
        out["explain"] = await call(session, "explain_sql", {"sql": sql})
        submitted = await call(session, "submit_job", {"sql": sql})
        out["submit"] = submitted
        job = (submitted.get("data") or {}).get("id")
        out["job"] = job
        details = None
        for _ in range(300):
            details = await call(session, "job_details", {"job_id": job})
            data = details.get("data") or {}
            checkpoints = data.get("checkpoints") or {}
            letters = sum((data.get("dead_letters") or {}).values())
            if checkpoints.get("completed", 0) > 0 and letters > 0:
                break
            await asyncio.sleep(0.1)
        out["details"] = details
        out["dead_letters"] = await call(session, "job_dead_letters", {"job_id": job, "limit": 3})
        out["graph"] = json.loads((await session.read_resource(f"fungi://jobs/{job}/graph")).contents[0].text)
        out["savepoint"] = await call(session, "take_savepoint", {"job_id": job})
        out["list"] = await call(session, "list_jobs", {"limit": 5})
        out["cancel"] = await call(session, "cancel_job", {"job_id": job})
    elif which == "refused":
        out["submit"] = await call(session, "submit_job", {"sql": arg})
        out["other_job"] = await call(session, "job_details", {"job_id": os.environ.get("OTHER_JOB", "")})
        out["audit"] = await call(session, "audit_log", {})
    return out


async def main():
    transport, url, key, which = sys.argv[1:5]
    arg = sys.argv[5] if len(sys.argv) > 5 else ""
    if transport == "http":
        client = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
        async with client:
            async with streamable_http_client(f"{url}/mcp", http_client=client) as (read, write):
                async with ClientSession(read, write) as session:
                    out = await scenario(session, which, arg)
    else:
        params = StdioServerParameters(
            command=os.environ["FUNGI_BIN"],
            args=["mcp", "--server", url],
            env={"FUNGI_API_KEY": key},
        )
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                out = await scenario(session, which, arg)
    print(json.dumps(out))


asyncio.run(main())
