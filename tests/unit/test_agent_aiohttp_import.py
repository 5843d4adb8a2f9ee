"""The manager half imports aiohttp without its client's default TLS contexts loading the
system's CA bundle (issue 13: two contexts, ~60 ms of CPU apiece, on every manager's start).
The agent is never aiohttp's client; those contexts hold no trust anchor (fail closed), and
every other default context is made as before."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

RUN = textwrap.dedent("""
    import json, ssl
    from swarmkit_py.agent.agent import _import_manager_half
    _import_manager_half()
    import aiohttp.connector as c
    print(json.dumps([c._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509_ca"],
                      c._SSL_CONTEXT_UNVERIFIED.cert_store_stats()["x509_ca"],
                      "set_default_verify_paths" in ssl.SSLContext.__dict__,
                      ssl.create_default_context().cert_store_stats()["x509_ca"],
                      ssl.get_default_verify_paths().cafile is not None]))
""")


def test_the_manager_half_imports_aiohttp_without_loading_the_system_cas():
    r = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    verified, unverified, patched, default_after, has_bundle = json.loads(r.stdout.splitlines()[-1])
    assert (verified, unverified, patched) == (0, 0, False)
    if has_bundle:  # the system has a CA bundle: a default context made afterwards loads it as ever
        assert default_after > 0
