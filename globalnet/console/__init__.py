"""The debug console (netcat): commands.py parses and runs lines (no sockets),
text.py formats, view.py reads a running Node, server.py is the TCP shell."""
