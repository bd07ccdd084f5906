module socketserver.bench/go-echo

go 1.19
