// Command echo is the benchmark's app: it answers every request with 200 and the request body.
//
//	echo <port>
//
// It listens on 127.0.0.1:<port> only, and reuses one buffer per request so the app is never
// the bottleneck of bench/vs_go.py.
package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
)

var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func echo(w http.ResponseWriter, r *http.Request) {
	buf := buffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer buffers.Put(buf)
	if _, err := io.Copy(buf, r.Body); err != nil {
		http.Error(w, "reading the request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: echo <port>")
		os.Exit(2)
	}
	port, err := strconv.Atoi(os.Args[1])
	if err != nil || port <= 0 || port > 65535 {
		fmt.Fprintf(os.Stderr, "echo: port %q: want an integer in 1..65535\n", os.Args[1])
		os.Exit(2)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	fmt.Fprintf(os.Stderr, "echo: listening on %s\n", addr)
	if err := http.ListenAndServe(addr, http.HandlerFunc(echo)); err != nil {
		fmt.Fprintf(os.Stderr, "echo: %v\n", err)
		os.Exit(1)
	}
}
