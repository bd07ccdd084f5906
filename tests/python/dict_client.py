"""The course's UDP dictionary client: one datagram per word, one datagram
back.

Usage: python3 dict_client.py HOST PORT WORD...
Prints each answer on its own line.
"""
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
client.settimeout(5)

for word in sys.argv[3:]:
    client.sendto(word.encode('utf-8'), (host, port))
    data, server = client.recvfrom(65535)
    if data.endswith(b'\n'):
        sys.exit('a UDP answer must not end with a newline')
    print(data.decode('utf-8'))

client.close()
