#!/usr/bin/env python3
"""The course's upload client ("custom protocol 2"): a struct.pack('i', n)
header length, a JSON header dict, the file's bytes, then close without
reading any answer.

Usage: files_put_course.py HOST PORT PATH [NAME]
"""
import json
import os
import socket
import struct
import sys


def main():
    host, port, filename = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    name = sys.argv[4] if len(sys.argv) > 4 else os.path.basename(filename)

    phone = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    phone.settimeout(20)
    phone.connect((host, port))

    header_dic = {
        'file_name': name,
        'file_size': os.path.getsize(filename),
    }
    header_json = json.dumps(header_dic)
    header_bytes = header_json.encode('utf-8')
    phone.send(struct.pack('i', len(header_bytes)))
    phone.send(header_bytes)
    with open(filename, 'rb') as f:
        for line in f:
            phone.send(line)
    phone.close()


if __name__ == '__main__':
    main()
