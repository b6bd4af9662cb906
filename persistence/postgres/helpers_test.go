package postgres

import (
	"net"
	"strconv"
	"strings"
)

func splitHostPort(addr string) (string, uint16, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	return host, uint16(p), err
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
