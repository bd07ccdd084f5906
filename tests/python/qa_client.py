"""The course's Q&A client: plain socket, one question per line, one answer
per line.

Usage: python3 qa_client.py HOST PORT QUESTION...
Prints each answer on its own line.
"""
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
client.settimeout(10)
client.connect((host, port))

pending = b''
for question in sys.argv[3:]:
    client.send((question + '\n').encode('utf-8'))
    # An answer is one line; recv may return less (or more) than one.
    while b'\n' not in pending:
        data = client.recv(1024)
        if not data:
            sys.exit('the server closed the connection')
        pending += data
    answer, pending = pending.split(b'\n', 1)
    print(answer.decode('utf-8'))

client.close()
