// echo-upper with Go's standard library, written as Go's own servers are:
// a goroutine per TCP connection (the runtime's netpoller parks the idle
// ones), and one goroutine answering UDP datagrams in a ReadFrom/WriteTo
// loop. GOMAXPROCS is the runtime's default (one per CPU).
//
// `go-echo [-host HOST] [-port PORT] [-reuse-port]` binds TCP and UDP on
// HOST (default 127.0.0.1) and PORT (default 0), prints
// `listening on tcp://...` and `listening on udp://...`, and serves until
// killed. With -reuse-port the TCP listener sets SO_REUSEPORT, so that
// several processes can share one port.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
)

// The same buffer size as socketserver::services::EchoUpper.
const bufferSize = 16 * 1024

func serveConnection(conn net.Conn) {
	defer conn.Close()
	// Go sets TCP_NODELAY on every TCP connection by default.
	buf := make([]byte, bufferSize)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			upper(buf[:n])
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// upper uppercases ASCII letters in place, as Rust's make_ascii_uppercase
// and Python's bytes.upper() do (bytes.ToUpper would decode UTF-8).
func upper(b []byte) {
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
}

func serveDatagrams(conn net.PacketConn) {
	buf := make([]byte, 65536)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "go-echo: udp:", err)
			return
		}
		upper(buf[:n])
		if _, err := conn.WriteTo(buf[:n], from); err != nil {
			fmt.Fprintln(os.Stderr, "go-echo: udp:", err)
		}
	}
}

// soReusePort is SO_REUSEPORT on Linux (asm-generic/socket.h); the syscall
// package does not name it, and golang.org/x/sys would be a download.
const soReusePort = 0xf

func reusePort(network, address string, raw syscall.RawConn) error {
	var soErr error
	err := raw.Control(func(fd uintptr) {
		soErr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
	})
	if err != nil {
		return err
	}
	return soErr
}

func main() {
	host := flag.String("host", "127.0.0.1", "address to bind")
	port := flag.Int("port", 0, "port to bind (0: any free port)")
	reuse := flag.Bool("reuse-port", false, "set SO_REUSEPORT on the TCP listener")
	flag.Parse()
	address := net.JoinHostPort(*host, strconv.Itoa(*port))
	config := net.ListenConfig{}
	if *reuse {
		config.Control = reusePort
	}
	listener, err := config.Listen(context.Background(), "tcp", address)
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-echo:", err)
		os.Exit(1)
	}
	packets, err := net.ListenPacket("udp", net.JoinHostPort(*host, "0"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-echo:", err)
		os.Exit(1)
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "listening on tcp://%s\n", listener.Addr())
	fmt.Fprintf(&out, "listening on udp://%s\n", packets.LocalAddr())
	os.Stdout.Write(out.Bytes())
	go serveDatagrams(packets)
	for {
		conn, err := listener.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "go-echo: accept:", err)
			continue
		}
		go serveConnection(conn)
	}
}
