#!/usr/bin/env python3
"""Runs one of the course's clients, unchanged, over TLS.

Usage: tls_wrap.py CAFILE SCRIPT HOST PORT [ARGS...]

Every TCP socket the script makes is wrapped as the specification says a
course client is: `ssl.create_default_context(cafile=CAFILE)
.wrap_socket(sock, server_hostname=HOST)`, so that its connect() also runs
the handshake, verifying the server's certificate for HOST against CAFILE.
UDP sockets stay as they are (datagrams are never encrypted). The script
then runs as `python3 SCRIPT HOST PORT ARGS...` would; it prints the
negotiated protocol version on standard error once per connection.
"""
import runpy
import socket
import ssl
import sys


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    cafile, script, host = sys.argv[1], sys.argv[2], sys.argv[3]
    context = ssl.create_default_context(cafile=cafile)
    plain_socket = socket.socket

    class TlsSocket(ssl.SSLSocket):
        def connect(self, address):
            super().connect(address)
            print('tls_wrap: %s' % self.version(), file=sys.stderr, flush=True)

    context.sslsocket_class = TlsSocket

    def tls_socket(family=socket.AF_INET, type=socket.SOCK_STREAM, proto=0, fileno=None):
        sock = plain_socket(family, type, proto, fileno)
        if type == socket.SOCK_STREAM:
            return context.wrap_socket(sock, server_hostname=host)
        return sock

    socket.socket = tls_socket
    sys.argv = [script] + sys.argv[3:]
    runpy.run_path(script, run_name='__main__')


if __name__ == '__main__':
    main()
