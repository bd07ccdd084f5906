#!/usr/bin/env python3
"""A files client that reads the answers: put (with an uppercase sha256),
list and get on one connection, course style (struct.pack('i', n) and JSON
header dicts).

Usage: files_ops.py HOST PORT PATH [--big]

Prints one JSON line per answer header; for the get, the body's sha256 too.
"""
import hashlib
import json
import os
import socket
import struct
import sys


def recv_exact(sock, size):
    data = b''
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 65536))
        if not chunk:
            raise EOFError('the server closed the connection')
        data += chunk
    return data


def send_header(sock, fmt, header_dic):
    header_bytes = json.dumps(header_dic).encode('utf-8')
    sock.sendall(struct.pack(fmt, len(header_bytes)) + header_bytes)


def recv_header(sock, fmt):
    size = struct.unpack(fmt, recv_exact(sock, 4))[0]
    return json.loads(recv_exact(sock, size).decode('utf-8'))


def main():
    host, port, filename = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    fmt = '!I' if '--big' in sys.argv[4:] else 'i'
    name = os.path.basename(filename)
    with open(filename, 'rb') as f:
        data = f.read()

    sock = socket.create_connection((host, port), timeout=20)
    send_header(sock, fmt, {'op': 'put', 'file_name': name, 'file_size': len(data),
                            'sha256': hashlib.sha256(data).hexdigest().upper()})
    sock.sendall(data)
    print(json.dumps(recv_header(sock, fmt)))

    send_header(sock, fmt, {'op': 'list'})
    print(json.dumps(recv_header(sock, fmt)))

    send_header(sock, fmt, {'op': 'get', 'file_name': name})
    answer = recv_header(sock, fmt)
    body = recv_exact(sock, answer['file_size'])
    answer['body_sha256'] = hashlib.sha256(body).hexdigest()
    print(json.dumps(answer))
    sock.close()


if __name__ == '__main__':
    main()
