#!/usr/bin/env python3
"""The course's exec client: hmac handshake, then struct.pack('i', n) frames.

Usage: exec_client.py HOST PORT KEY_FILE [--big] COMMAND...

Prints one JSON line per answer: {"header": <the header text as received>,
"stdout": ..., "stderr": ...}, or {"verdict": ...} when the key is refused.
"""
import hmac
import json
import socket
import struct
import sys


def recv_exact(sock, size):
    data = b''
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError('the server closed the connection')
        data += chunk
    return data


def main():
    host, port, key_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    args = sys.argv[4:]
    fmt = 'i'
    if args and args[0] == '--big':
        fmt = '!I'
        args = args[1:]
    with open(key_file, 'rb') as f:
        secret_key = f.read()

    phone = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    phone.settimeout(20)
    phone.connect((host, port))

    # Authentication: answer the challenge with HMAC-SHA256.
    msg = recv_exact(phone, 32)
    digest = hmac.new(secret_key, msg, 'sha256').digest()
    phone.sendall(digest)
    header_size = struct.unpack(fmt, recv_exact(phone, 4))[0]
    verdict = json.loads(recv_exact(phone, header_size).decode('utf-8'))
    if verdict.get('status') != 'ok':
        print(json.dumps({'verdict': verdict}))
        return

    for cmd in args:
        cmd_bytes = cmd.encode('utf-8')
        phone.send(struct.pack(fmt, len(cmd_bytes)))
        phone.send(cmd_bytes)
        header_size = struct.unpack(fmt, recv_exact(phone, 4))[0]
        header_json = recv_exact(phone, header_size).decode('utf-8')
        header_dic = json.loads(header_json)
        stdout = recv_exact(phone, header_dic['stdout_size'])
        stderr = recv_exact(phone, header_dic['stderr_size'])
        print(json.dumps({'header': header_json,
                          'stdout': stdout.decode('utf-8', 'replace'),
                          'stderr': stderr.decode('utf-8', 'replace')}))
        sys.stdout.flush()
    phone.close()


if __name__ == '__main__':
    main()
