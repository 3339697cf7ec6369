"""GlobalNet: an anonymous, decentralized overlay network (see DESIGN.md)."""

__version__ = "0.1.0"
