"""A node's side of overlay networking: engine networks + VXLAN (links), the routing mesh
and virtual IPs (mesh), the embedded DNS (dns), applied from the leader's map (plane)."""

from .plane import NetAttachment, NetworkPlane

__all__ = ["NetAttachment", "NetworkPlane"]
