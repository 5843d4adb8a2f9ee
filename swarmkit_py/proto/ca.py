"""The certificate authority's methods on the cluster port (served by ``manager/caserver.py``,
called by ``worker/join.py`` and ``worker/certs.py``; the parameters are documented there).
"""

from __future__ import annotations

CA_ROOT = "ca.root"
"""Anonymous (every other method checks the caller's certificate): ``{}`` -> ``{"ca_cert": PEM}``."""
CA_JOIN = "ca.join"
"""Anonymous: ``{token, csr, hostname, addr, availability?}`` -> a node certificate."""
CA_RENEW = "ca.renew"
"""Mutual TLS: ``{csr?}`` -> the caller's certificate re-issued with its current role."""
CA_RENEW_NOW = "ca.renew_now"
"""Manager -> node notification ``{node_id, role}``: renew your certificate now."""

ANONYMOUS_METHODS = frozenset({CA_ROOT, CA_JOIN})
"""The only methods a caller without a certificate may use on the cluster port; the RPC layer
closes the connection of a stranger that calls anything else (``manager/admission.py``)."""
