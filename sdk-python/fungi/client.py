"""A small client of a Fungi server's REST API (``/api/v1``), on the standard library."""

import json
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Union


class FungiError(Exception):
    """The server refused a call: its HTTP status and the reason it gave."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Client:
    """Calls one server with one credential (an API key ``fgk_...`` or a JWT).

    ``ca_cert`` is a PEM file to trust for an ``https://`` server with a private CA.
    """

    def __init__(self, url: str, api_key: str, ca_cert: Optional[str] = None, timeout: float = 120.0):
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        import ssl  # here, not at the top: sandboxed plugins import fungi and have no ssl

        self._context = ssl.create_default_context(cafile=ca_cert) if ca_cert else None

    def _call(self, method: str, path: str, body: Any = None, raw: Optional[bytes] = None,
              headers: Optional[Dict[str, str]] = None) -> Any:
        data = raw
        all_headers = {"Authorization": f"Bearer {self.api_key}"}
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            try:
                message = json.loads(text)["error"]
            except (ValueError, KeyError, TypeError):
                message = text
            raise FungiError(e.code, message) from None
        return json.loads(text) if text else None

    # Jobs.
    def submit_job(self, sql: str, parallelism: Optional[int] = None, from_savepoint: Optional[str] = None) -> Dict:
        """Submits a SQL script with one ``INSERT INTO``; returns the job record."""
        return self._call("POST", "/api/v1/jobs",
                          {"sql": sql, "parallelism": parallelism, "from_savepoint": from_savepoint})

    def jobs(self) -> List[Dict]:
        """The tenant's jobs."""
        return self._call("GET", "/api/v1/jobs")

    def job(self, job_id: str) -> Dict:
        """A job with its graph, operator counters, checkpoints and savepoints."""
        return self._call("GET", f"/api/v1/jobs/{job_id}")

    def cancel(self, job_id: str) -> Dict:
        """Cancels a running job."""
        return self._call("POST", f"/api/v1/jobs/{job_id}/cancel")

    def savepoint(self, job_id: str, stop: bool = False) -> Dict:
        """Takes a savepoint (and stops the job); returns its id for ``from_savepoint``."""
        return self._call("POST", f"/api/v1/jobs/{job_id}/savepoint", {"stop": stop})

    # Plugins.
    def upload_plugin(self, name: str, component: Union[bytes, str], signature: Optional[str] = None) -> Dict:
        """Uploads a Wasm component (bytes or a file path), with its base64 signature."""
        if isinstance(component, str):
            with open(component, "rb") as f:
                component = f.read()
        headers = {"Content-Type": "application/wasm"}
        if signature:
            headers["x-fungi-signature"] = signature.strip()
        return self._call("PUT", f"/api/v1/plugins/{name}", raw=component, headers=headers)

    def plugins(self) -> List[Dict]:
        """The tenant's plugins."""
        return self._call("GET", "/api/v1/plugins")

    def plugin(self, name: str) -> Dict:
        """One plugin: kind, digest, manifest, functions, signature status, limits."""
        return self._call("GET", f"/api/v1/plugins/{name}")

    def delete_plugin(self, name: str) -> None:
        """Deletes a plugin."""
        self._call("DELETE", f"/api/v1/plugins/{name}")

    # The tenant's function catalog.
    def register_function(self, sql: str) -> Dict:
        """Registers a ``CREATE FUNCTION`` statement in the tenant's catalog (checked now,
        run before each of the tenant's jobs)."""
        return self._call("POST", "/api/v1/functions", {"sql": sql})

    def functions(self) -> List[Dict]:
        """The tenant's catalog functions."""
        return self._call("GET", "/api/v1/functions")

    def delete_function(self, name: str) -> None:
        """Removes a function from the tenant's catalog."""
        self._call("DELETE", f"/api/v1/functions/{name}")

    # Administration.
    def create_tenant(self, tenant_id: str, quotas: Optional[Dict] = None) -> Dict:
        """Creates a tenant (admins)."""
        return self._call("POST", "/api/v1/tenants", {"id": tenant_id, "quotas": quotas or {}})

    def create_key(self, role: str, tenant: Optional[str] = None, name: str = "") -> Dict:
        """Creates an API key; the result's ``key`` is shown only this once."""
        return self._call("POST", "/api/v1/keys", {"role": role, "tenant": tenant, "name": name})
