#!/usr/bin/env python3
"""echo-upper as the socket-programming course writes it: Python's
socketserver.ThreadingTCPServer and ThreadingUDPServer with a
BaseRequestHandler each (a new thread per connection, and per datagram).

Binds TCP and UDP on 127.0.0.1 (or argv[1]), port 0, prints
`listening on tcp://...` and `listening on udp://...`, and serves until killed.
The course's defaults are kept: recv(1024), a listen backlog of 5
(request_queue_size), Nagle's algorithm on.
"""

import socketserver
import sys
import threading


class MyTCPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        conn = self.request
        while True:
            data = conn.recv(1024)
            if not data:
                break
            conn.sendall(data.upper())


class MyUDPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data.upper(), self.client_address)


if __name__ == '__main__':
    host = sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1'
    tcp = socketserver.ThreadingTCPServer((host, 0), MyTCPHandler)
    udp = socketserver.ThreadingUDPServer((host, 0), MyUDPHandler)
    print('listening on tcp://%s:%d' % tcp.server_address[:2], flush=True)
    print('listening on udp://%s:%d' % udp.server_address[:2], flush=True)
    threading.Thread(target=udp.serve_forever, daemon=True).start()
    tcp.serve_forever()
